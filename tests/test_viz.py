"""refcam.viz: MATLAB's jet against a transcription of its definition, the colour and overlay rules,
the PNG encoder (decoded here independently), and every figure's pixel size."""
from __future__ import annotations

import math
import struct
import sys
import zlib

import numpy as np
import pytest

from refcam import viz
from refcam.errors import OptionalDependencyError, ShapeError

needs_matplotlib = pytest.mark.skipif(not viz.has_matplotlib(), reason="matplotlib is not installed")


# --- naive twins -----------------------------------------------------------------------------------
def jet_loop(m: int) -> np.ndarray:
    """MATLAB's jet(m) transcribed with 1-based indices and explicit loops."""
    n = math.ceil(m / 4)
    u = [k / n for k in range(1, n + 1)] + [1.0] * (n - 1) + [k / n for k in range(n, 0, -1)]
    g = [math.ceil(n / 2) - (1 if m % 4 == 1 else 0) + k for k in range(1, len(u) + 1)]
    r = [i + n for i in g if i + n <= m]
    b = [i - n for i in g if i - n >= 1]
    g = [i for i in g if i <= m]
    colors = [[0.0, 0.0, 0.0] for _ in range(m)]
    for k, row in enumerate(r):
        colors[row - 1][0] = u[k]
    for k, row in enumerate(g):
        colors[row - 1][1] = u[k]
    for k, row in enumerate(b):
        colors[row - 1][2] = u[len(u) - len(b) + k]
    return np.array(colors)


def colorize_loop(values: np.ndarray, m: int = 256) -> np.ndarray:
    """imagesc's scaled mapping, element by element."""
    low, high = values.min(), values.max()
    table = jet_loop(m)
    out = np.zeros(values.shape + (3,))
    for index in np.ndindex(values.shape):
        t = 0.0 if high == low else (values[index] - low) / (high - low)
        out[index] = table[min(int(math.floor(t * m)), m - 1)]
    return out


def decode_png(data: bytes) -> np.ndarray:
    """Decode an 8-bit, non-interlaced, filter-0 PNG (grey or RGB), checking every chunk's CRC."""
    assert data[:8] == viz.PNG_SIGNATURE
    position, chunks = 8, {}
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position:position + 8])
        body = data[position + 8:position + 8 + length]
        (crc,) = struct.unpack(">I", data[position + 8 + length:position + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks[kind] = chunks.get(kind, b"") + body
        position += 12 + length
    width, height, depth, color_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert depth == 8 and interlace == 0 and b"IEND" in chunks
    channels = {0: 1, 2: 3}[color_type]
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, 1 + width * channels)
    assert (rows[:, 0] == 0).all()
    pixels = rows[:, 1:].reshape(height, width, channels)
    return pixels[:, :, 0] if channels == 1 else pixels


# --- colours ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 7, 8, 9, 63, 64, 65, 255, 256, 257])
def test_jet_equals_matlab_definition(m: int) -> None:
    np.testing.assert_array_equal(viz.jet(m), jet_loop(m))


def test_jet_known_rows() -> None:
    np.testing.assert_array_equal(viz.jet(64)[[0, 63]], [[0.0, 0.0, 0.5625], [0.5, 0.0, 0.0]])
    np.testing.assert_array_equal(viz.jet(256)[[0, 255]], [[0.0, 0.0, 0.515625], [0.5, 0.0, 0.0]])


@pytest.mark.parametrize("seed", range(4))
def test_colorize_equals_imagesc_scaling(seed: int) -> None:
    values = np.random.default_rng(seed).standard_normal((5, 7))
    np.testing.assert_array_equal(viz.colorize(values), colorize_loop(values))


def test_colorize_constant_map_is_lowest_colour() -> None:
    np.testing.assert_array_equal(viz.colorize(np.zeros((2, 3))), np.broadcast_to(viz.jet()[0], (2, 3, 3)))


def test_display_image_rules() -> None:
    grey = np.array([[0, 255]], dtype=np.uint8)
    np.testing.assert_array_equal(viz.display_image(grey), [[[0, 0, 0], [1, 1, 1]]])
    inside = np.array([[0.25, 0.5]])
    np.testing.assert_array_equal(viz.display_image(inside)[..., 0], inside)
    outside = np.array([[-2.0, 0.0, 2.0]])
    np.testing.assert_array_equal(viz.display_image(outside)[..., 1], [[0.0, 0.5, 1.0]])
    rgba = np.zeros((1, 1, 4), np.uint8) + np.array([255, 0, 0, 7], np.uint8)
    np.testing.assert_array_equal(viz.display_image(rgba), [[[1.0, 0.0, 0.0]]])
    with pytest.raises(ShapeError):
        viz.display_image(np.zeros(4))


def test_overlay_blends_image_and_colours() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    score_map = rng.random((6, 5))
    blended = viz.overlay_image(image, score_map, alpha=0.3)
    expected = (0.7 * image / 255.0 + 0.3 * colorize_loop(score_map)) * 255.0
    assert np.abs(blended - expected).max() <= 0.5 + 1e-9                  # rounded to the nearest level
    assert blended.dtype == np.uint8
    np.testing.assert_array_equal(viz.overlay_image(image, score_map, alpha=0.0), image)


def test_overlay_enlarges_a_small_map_by_nearest_neighbour() -> None:
    score_map = np.array([[0.0, 1.0], [1.0, 0.0]])
    pixels = viz.overlay_image(np.zeros((4, 6)), score_map, alpha=1.0)
    high, low = np.round(viz.jet()[255] * 255), np.round(viz.jet()[0] * 255)
    np.testing.assert_array_equal(pixels[:2, :3], np.broadcast_to(low, (2, 3, 3)))
    np.testing.assert_array_equal(pixels[:2, 3:], np.broadcast_to(high, (2, 3, 3)))
    with pytest.raises(ShapeError, match="2-D map"):
        viz.overlay_image(np.zeros((4, 6)), np.zeros((4, 6, 2)))


# --- PNG -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (7, 2, 3), (1, 9, 3)])
def test_png_round_trip(shape: tuple[int, ...]) -> None:
    pixels = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_array_equal(decode_png(viz.encode_png(pixels)), pixels)


def test_png_decoded_by_pillow(tmp_path) -> None:
    image_module = pytest.importorskip("PIL.Image")
    pixels = np.random.default_rng(2).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    viz.write_png(tmp_path / "x.png", pixels)
    with image_module.open(tmp_path / "x.png") as image:
        np.testing.assert_array_equal(np.asarray(image), pixels)


def test_png_refuses_other_pixels() -> None:
    for bad in (np.zeros((2, 2), np.float64), np.zeros((2, 2, 4), np.uint8), np.zeros((0, 3), np.uint8)):
        with pytest.raises(ShapeError):
            viz.encode_png(bad)


def test_save_overlay_enlarges_small_inputs(tmp_path) -> None:
    path = viz.save_overlay(tmp_path / "digit.png", np.zeros((28, 28, 1)), np.eye(28))
    pixels = decode_png(open(path, "rb").read())
    assert pixels.shape == (280, 280, 3)
    np.testing.assert_array_equal(pixels[::10, ::10], viz.overlay_image(np.zeros((28, 28, 1)), np.eye(28)))


def test_montage_tiles_enlarged_slices_with_one_colour_scale() -> None:
    volume = np.random.default_rng(3).random((16, 16, 16, 1))
    score_map = np.arange(16.0 ** 3).reshape(16, 16, 16)
    pixels = viz.montage_image(volume, score_map, alpha=1.0)
    assert pixels.shape == (3 * 128 + 2 * 2, 3 * 128 + 2 * 2, 3)
    colours = viz.colorize(score_map)
    np.testing.assert_array_equal(pixels[0, 0], np.round(colours[0, 0, 0] * 255))
    np.testing.assert_array_equal(pixels[-1, 130], np.round(colours[15, 0, 15] * 255))   # tile 8: slice 15
    assert (pixels[128:130] == 255).all()                                                # the gap


# --- matplotlib figures ----------------------------------------------------------------------------
def png_size(path) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == viz.PNG_SIGNATURE
    return struct.unpack(">II", head[16:24])


@needs_matplotlib
def test_figures_are_pngs_of_the_documented_size(tmp_path) -> None:
    rng = np.random.default_rng(4)
    image, score_map = rng.random((20, 30, 3)), rng.random((20, 30))
    figures = {
        "image": (viz.plot_image(image), (500, 500)),
        "overlay": (viz.plot_overlay(image, score_map, title="E1"), (600, 500)),
        "side": (viz.plot_side_by_side(image[..., :1], score_map, left_title="True Rotation = 1"), (800, 420)),
        "sequence": (viz.plot_sequence(rng.random((12, 19)), rng.random((1, 19))), (900, 600)),
        "features": (viz.plot_sequence(rng.random((3, 9)), title="Observation 1"), (900, 350)),
        "volume": (viz.plot_volume(rng.random((8, 8, 16)), rng.random((8, 8, 16))), (800, 720)),
    }
    for name, (figure, size) in figures.items():
        path = viz.save_figure(figure, tmp_path / f"{name}.png")
        assert png_size(path) == size, name


@needs_matplotlib
def test_figures_check_shapes() -> None:
    with pytest.raises(ShapeError, match="same length"):
        viz.plot_sequence(np.zeros((12, 19)), np.zeros((1, 18)))
    with pytest.raises(ShapeError, match="same size"):
        viz.plot_volume(np.zeros((4, 4, 4)), np.zeros((4, 4, 3)))


def test_figures_without_matplotlib_say_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert not viz.has_matplotlib()
    with pytest.raises(OptionalDependencyError, match=r"refcam\[viz\]"):
        viz.plot_overlay(np.zeros((2, 2)), np.zeros((2, 2)))
