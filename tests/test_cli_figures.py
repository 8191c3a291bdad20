"""``refcam gradcam --figure/--colormap/--method``, :mod:`refcam.figures`, and the command line as a package.

The photo is ``fixtures/preprocess/chelsea.png`` (150 x 226); the networks
are the E1 fixture (227 x 227 x 3, five named classes), the ONNX residual
network ``fixtures/onnx/fire_torchscript.onnx``, the E3 sequence network and
the 3-D fixture. Every flag of docs/cli.md's **Pictures** and **Methods**
paragraphs has a test here.
"""
from __future__ import annotations

import importlib.util
import os
import struct
import sys

import h5py
import numpy as np
import pytest

import refcam
from refcam import cli, figures, viz
from refcam.cli import pictures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "fixtures")
PHOTO = os.path.join(FIXTURES, "preprocess", "chelsea.png")
E1 = os.path.join(FIXTURES, "e1_squeezenet_mini.h5")
E3 = os.path.join(FIXTURES, "e3_japanese_vowels.h5")
VOLUME = os.path.join(FIXTURES, "volume3d.h5")
FIRE = os.path.join(FIXTURES, "onnx", "fire_torchscript.onnx")
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
pytestmark = pytest.mark.skipif(importlib.util.find_spec("PIL") is None, reason="reading images needs Pillow")
needs_matplotlib = pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed")
needs_onnx = pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="onnx is not installed")


def run(capsys, *arguments: str) -> tuple[int, str, str]:
    code = cli.main(list(arguments))
    out, err = capsys.readouterr()
    return code, out, err


def png_size(path) -> tuple[int, int]:
    """(width, height) of a PNG file."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


@pytest.fixture
def saved_figures(monkeypatch) -> list:
    """The matplotlib figures the command line saves, in order (each is still written)."""
    kept, save = [], viz.save_figure

    def keep(figure, path, *args, **kwargs):
        kept.append(figure)
        return save(figure, path, *args, **kwargs)

    monkeypatch.setattr(viz, "save_figure", keep)
    return kept


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from PIL import Image
    with Image.open(PHOTO) as image:
        return np.asarray(image.convert("RGB"))


def fixture_input(name: str) -> np.ndarray:
    with h5py.File(os.path.join(FIXTURES, f"{name}.golden.h5"), "r") as f:
        return f["input"][()]


def texts(figure) -> list[str]:
    """Every text of a figure: its title, caption, axes titles and labels."""
    found = [text.get_text() for text in figure.findobj(lambda artist: hasattr(artist, "get_text"))]
    return [text for text in found if text]


# --- --figure ---------------------------------------------------------------------------------------
@needs_matplotlib
def test_figure_overlay_is_titled_with_class_score_and_layer(tmp_path, capsys, saved_figures) -> None:
    target = tmp_path / "daisy.png"
    code, out, err = run(capsys, "gradcam", E1, PHOTO, "--label", "daisy", "--figure", "overlay", "-o", str(target))
    assert code == 0 and err == "" and os.path.isfile(target)
    (figure,) = saved_figures
    assert figure._suptitle.get_text() == ("Grad-CAM of class 'daisy' (index 4, score 0.2641)\n"
                                           "feature layer 'relu_conv10'")
    assert len(figure.axes) == 2                                     # the overlay and its colour bar
    assert png_size(target) == (460, 375)                            # 4.6 x 3.75 in at 100 dpi, not the photo size


@needs_matplotlib
def test_the_caption_explains_values_below_zero(tmp_path, capsys, saved_figures) -> None:
    code, _, _ = run(capsys, "gradcam", E1, PHOTO, "--label", "toy poodle", "--figure", "overlay", "-o", str(tmp_path))
    score_map = np.load(tmp_path / "chelsea_gradcam.npy")
    raw_map = refcam.gradcam(refcam.load(E1), refcam.imresize(read_png(PHOTO), (227, 227)), "toy poodle").raw_map
    assert code == 0 and score_map.min() < 0 <= raw_map.min()         # bicubic overshoot below a ReLU map
    (figure,) = saved_figures
    assert figures.OVERSHOOT_NOTE in texts(figure) and "MATLAB does not clip it" in figures.OVERSHOOT_NOTE


@needs_matplotlib
def test_figure_panel_and_the_grid_of_several_labels(tmp_path, capsys, saved_figures) -> None:
    code, _, _ = run(capsys, "gradcam", E1, PHOTO, "--label", "daisy", "espresso", "--figure", "panel",
                     "-o", str(tmp_path))
    assert code == 0 and sorted(os.listdir(tmp_path)) == ["chelsea_gradcam.npy", "chelsea_gradcam.png"]
    panel = saved_figures[-1]
    assert len(panel.axes) == 2 * 3 + 2 * 2                          # two rows of image | map | overlay, 4 bars
    assert {"'daisy' (index 4, score 0.2641)", "'espresso' (index 2, score 0.1589)", "map", "overlay"} <= set(
        texts(panel))
    code, out, _ = run(capsys, "gradcam", E1, PHOTO, "--label", "top5", "--figure", "overlay", "-o",
                       str(tmp_path / "top5"))
    assert code == 0 and sorted(os.listdir(tmp_path / "top5")) == ["chelsea_gradcam.npy", "chelsea_gradcam.png"]
    grid = saved_figures[-1]
    assert grid._suptitle.get_text() == "Grad-CAM, feature layer 'relu_conv10'"
    tiles = [ax for ax in grid.axes if ax.get_title()]
    assert [ax.get_title().split(" (")[0] for ax in tiles] == ["'toy poodle'", "'daisy'", "'espresso'", "'tabby'",
                                                               "'space shuttle'"]


@needs_matplotlib
@needs_onnx
def test_the_quickstart_command_titles_the_predicted_class_on_the_photo(tmp_path, capsys, saved_figures,
                                                                        photo) -> None:
    code, out, _ = run(capsys, "gradcam", FIRE, PHOTO, "--preprocess", "imagenet-torchvision", "--figure", "overlay",
                       "-o", str(tmp_path / "quickstart.png"))
    x, geometry = refcam.preprocess(photo, "imagenet-torchvision", (9, 10))
    top1 = int(np.argmax(refcam.load(FIRE).predict(x)))
    assert code == 0 and f"class {top1} (score" in out
    (figure,) = saved_figures
    assert figure._suptitle.get_text().startswith(f"Grad-CAM of class {top1} (score ")
    (image,) = figure.axes[0].get_images()
    assert image.get_array().shape[:2] == photo.shape[:2]             # drawn on the photo, not the 9 x 10 input
    assert png_size(tmp_path / "quickstart.png") == png_size(os.path.join(REPO, "docs", "figures", "quickstart.png"))


@needs_matplotlib
def test_sequences_and_volumes_get_titled_figures(tmp_path, capsys, saved_figures) -> None:
    np.save(tmp_path / "vowels.npy", fixture_input("e3_japanese_vowels__test0"))
    np.save(tmp_path / "blobs.npy", fixture_input("volume3d__blobs"))
    code, _, _ = run(capsys, "gradcam", E3, str(tmp_path / "vowels.npy"), "--figure", "overlay", "-o", str(tmp_path))
    assert code == 0 and png_size(tmp_path / "vowels_gradcam.png") == (900, 600)
    assert saved_figures[-1].axes[0].get_title().startswith("Grad-CAM of class '1' (index 0, score 0.9")
    code, _, _ = run(capsys, "gradcam", VOLUME, str(tmp_path / "blobs.npy"), "--label", "1", "--figure", "overlay",
                     "--colormap", "viridis", "-o", str(tmp_path))
    assert code == 0 and os.path.isfile(tmp_path / "blobs_gradcam.png")
    montage = saved_figures[-1]
    assert montage._suptitle.get_text().startswith("Grad-CAM of class 'two blobs' (index 1")
    assert "slices 0, 2, 4, 6, 9, 11, 13, 15 of the third axis (row by row)" in texts(montage)


# --- --colormap -------------------------------------------------------------------------------------
@needs_matplotlib
def test_colormap_colours_the_plain_overlay(tmp_path, capsys, photo) -> None:
    code, _, _ = run(capsys, "gradcam", E1, PHOTO, "--label", "daisy", "--colormap", "viridis", "-o", str(tmp_path))
    assert code == 0
    x, geometry = refcam.preprocess(photo, "none", refcam.load(E1))
    on_photo = refcam.map_to_original(np.load(tmp_path / "chelsea_gradcam.npy"), geometry)
    expected = viz.enlarge(viz.overlay_image(photo, on_photo, 0.5, figures.colormap_colors("viridis")), 2)
    np.testing.assert_array_equal(read_png(tmp_path / "chelsea_gradcam.png"), expected)


def read_png(path) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as image:
        return np.asarray(image)


@needs_matplotlib
def test_a_bad_colormap_exits_2_with_the_closest_names(tmp_path, capsys) -> None:
    code, out, err = run(capsys, "gradcam", E1, PHOTO, "--colormap", "virdis", "-o", str(tmp_path))
    assert code == cli.EXIT_ERROR and out == "" and not os.listdir(tmp_path)
    assert err.startswith("refcam gradcam: error: --colormap 'virdis' is not a colormap. Did you mean 'viridis'")


def test_colormap_tables() -> None:
    np.testing.assert_array_equal(figures.colormap_colors("jet"), viz.jet())
    np.testing.assert_array_equal(viz.colorize(np.array([[0.0, 1.0]]), colors=figures.colormap_colors("jet")),
                                  viz.colorize(np.array([[0.0, 1.0]])))
    if HAS_MATPLOTLIB:
        import matplotlib
        turbo = figures.colormap_colors("turbo")
        assert turbo.shape == (256, 3)
        np.testing.assert_allclose(turbo[[0, -1]], np.asarray(matplotlib.colormaps["turbo"]([0.0, 1.0]))[:, :3])
        assert figures.colormap_names()[0] == "jet" and "viridis" in figures.colormap_names()


# --- without matplotlib -------------------------------------------------------------------------------
def test_without_matplotlib_the_plain_overlay_is_written_and_stderr_says_how(tmp_path, capsys, monkeypatch,
                                                                              photo) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)             # import matplotlib raises ImportError
    assert not viz.has_matplotlib()
    code, out, err = run(capsys, "gradcam", E1, PHOTO, "--label", "daisy", "--figure", "panel", "--colormap", "turbo",
                         "-o", str(tmp_path))
    assert code == 0
    assert "note: --figure panel (title, colour bar) needs matplotlib: pip install \"refcam[viz]\"" in err
    assert "note: --colormap turbo needs matplotlib" in err and "MATLAB's jet instead" in err
    assert png_size(tmp_path / "chelsea_gradcam.png") == (226 * 2, 150 * 2)       # the plain overlay, in jet
    code, _, err = run(capsys, "gradcam", E1, PHOTO, "--label", "daisy", "--colormap", "turbo", "-o",
                       str(tmp_path / "map.npy"))
    assert code == 0 and err == ""                                   # no picture, nothing to say
    with pytest.raises(refcam.errors.OptionalDependencyError, match="refcam\\[viz\\]"):
        figures.colormap_colors("viridis")


# --- --method -----------------------------------------------------------------------------------------
def test_method_computes_refcam_explains_map(tmp_path, capsys) -> None:
    npy = tmp_path / "photo.npy"
    photo = fixture_input("e1_squeezenet_mini__chelsea")
    np.save(npy, photo)
    code, out, _ = run(capsys, "gradcam", E1, str(npy), "--method", "layercam", "--label", "daisy", "-o", str(tmp_path))
    assert code == 0 and "given by --label; method layercam, feature layer 'relu_conv10'" in out
    expected = refcam.explain(refcam.load(E1), photo, "daisy", method="layercam").map
    np.testing.assert_array_equal(np.load(tmp_path / "photo_gradcam.npy"), expected)
    code, out, _ = run(capsys, "gradcam", E1, str(npy), "--method", "guided-backprop", "-o", str(tmp_path / "g"))
    assert code == 0 and "no PNG is written" in out and os.listdir(tmp_path / "g") == ["photo_gradcam.npy"]


def test_method_names_come_from_refcam_explain_at_run_time(capsys, monkeypatch) -> None:
    from refcam.cam import explain
    monkeypatch.setattr(explain, "METHOD_NAMES", (*explain.METHOD_NAMES, "newcam"))
    assert cli.options.method_name("newcam") == "newcam"
    with pytest.raises(SystemExit) as stop:
        cli.main(["gradcam", E1, PHOTO, "--help"])
    assert stop.value.code == 0 and "newcam" in capsys.readouterr().out


def test_bad_methods_exit_2(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:                              # argparse's own refusal
        cli.main(["gradcam", E1, PHOTO, "--method", "gradcam+"])
    err = capsys.readouterr().err
    assert stop.value.code == cli.EXIT_ERROR
    assert "argument --method: 'gradcam+' is not a CAM method. Did you mean 'gradcam++'" in err
    code, _, err = run(capsys, "gradcam", E1, PHOTO, "--method", "layercam", "--convention", "captum")
    assert code == cli.EXIT_ERROR
    assert "--convention captum has no --method layercam; that method exists in --convention pytorch-grad-cam " \
        "or torchcam or matlab" in err


def test_method_in_a_peer_convention(tmp_path, capsys) -> None:
    npy = tmp_path / "photo.npy"
    photo = fixture_input("e1_squeezenet_mini__chelsea")
    np.save(npy, photo)
    code, out, _ = run(capsys, "gradcam", E1, str(npy), "--method", "layercam", "--convention", "torchcam",
                       "--label", "daisy", "--no-png", "-o", str(tmp_path))
    assert code == 0
    expected = refcam.explain(refcam.load(E1), photo, "daisy", method="layercam", convention="torchcam").map
    np.testing.assert_array_equal(np.load(tmp_path / "photo_gradcam.npy"), expected)
    assert expected.min() == 0.0 and 0.999 < expected.max() < 1.0     # torchcam: (L - min) / (max + 1e-8)


def test_golden_records_a_cam_method_and_refuses_guided_backpropagation(tmp_path, capsys) -> None:
    path = tmp_path / "g.h5"
    code, _, err = run(capsys, "golden", E1, PHOTO, "--method", "guided-backprop", "-o", str(path))
    assert code == cli.EXIT_ERROR and not path.exists()
    assert "--method guided-backprop: golden files record the CAM methods" in err and "refcam gradcam MODEL" in err
    code, out, _ = run(capsys, "golden", E1, PHOTO, "--method", "layercam", "-o", str(path))
    assert code == 0 and "method layercam" in out
    golden = refcam.golden.read(path)
    assert golden.method == "layercam" and golden.weights.shape == golden.gradients.shape
    np.testing.assert_array_equal(golden.recompute().map, golden.map)


# --- refcam.figures -----------------------------------------------------------------------------------
def test_overshoot_caption_only_when_the_resize_made_the_negatives() -> None:
    assert figures.overshoot_caption(np.array([-1e-4, 1.0]), np.array([0.0, 1.0])) == figures.OVERSHOOT_NOTE
    assert figures.overshoot_caption(np.array([0.0, 1.0]), np.array([0.0, 1.0])) is None
    assert figures.overshoot_caption(np.array([-1.0, 1.0]), np.array([-1.0, 1.0])) is None   # the method's own
    assert figures.overshoot_caption(np.array([-1.0]), None) is None


@needs_matplotlib
def test_plot_gradcam_checks_its_arguments_and_names_a_constant_map() -> None:
    image = np.zeros((4, 6, 3), np.uint8)
    with pytest.raises(refcam.errors.InputError, match="choose one of overlay, panel"):
        figures.plot_gradcam(image, np.zeros((4, 6)), figure="side")
    with pytest.raises(refcam.errors.InputError, match="2 titles for 1 maps"):
        figures.plot_gradcam(image, np.zeros((4, 6)), titles=["a", "b"])
    figure = figures.plot_gradcam(image, np.zeros((4, 6)))
    assert len(figure.axes) == 1 and figure.axes[0].get_xlabel() == "the map is 0 everywhere"
    figure = figures.plot_gradcam(image, [np.ones((2, 3)), np.eye(4, 6)], titles=["a", "b"], figure="overlay")
    assert [ax.get_title() for ax in figure.axes if ax.get_title()] == ["a", "b"]


def test_the_pictures_say_which_maps_carry_channels() -> None:
    assert pictures.carries_channels("SSC", np.zeros((4, 6, 3)), stacked=False)
    assert not pictures.carries_channels("SSC", np.zeros((4, 6, 3)), stacked=True)
    assert pictures.carries_channels("CT", np.zeros((12, 19)), stacked=False)
    assert not pictures.carries_channels("SSSC", np.zeros((4, 4, 4)), stacked=False)


# --- the command line as a package --------------------------------------------------------------------
def test_one_module_per_subcommand() -> None:
    for name, module in cli.COMMANDS.items():
        assert module.__name__ == f"refcam.cli.{name}"
        assert module.SUMMARY and f"refcam {name}" in module.EPILOG and callable(module.add_arguments)
        assert cli.HANDLERS[name] is getattr(module, f"run_{name}")
    sources = os.path.join(REPO, "refcam", "cli")
    for name in os.listdir(sources):
        if name.endswith(".py"):
            with open(os.path.join(sources, name), encoding="utf-8") as f:
                assert len(f.readlines()) < 500, name


def test_the_demos_default_output_is_ignored_by_git() -> None:
    with open(os.path.join(REPO, ".gitignore"), encoding="utf-8") as f:
        assert f"/{cli.DEMO_OUTPUT}" in f.read().splitlines()
