"""Pictures of Grad-CAM maps: overlays, the E2 side-by-side figure, sequence plots, volume montages.

Two layers, so that ``refcam demo`` works with the core dependencies only:

* **built in** (NumPy and :mod:`zlib`): MATLAB's ``jet`` colormap, the overlay
  of a map on an image, a montage of volume slices, and a small PNG encoder
  (:func:`jet`, :func:`colorize`, :func:`overlay_image`, :func:`montage_image`,
  :func:`side_by_side_image`, :func:`encode_png`, :func:`write_png`,
  :func:`save_overlay`). Output pixels are exact: one PNG pixel per input pixel
  (times an integer enlargement factor for small inputs).
* **matplotlib** (``pip install "refcam[viz]"``): figures with titles, axes
  and colour bars, returned as :class:`matplotlib.figure.Figure` objects made
  without ``pyplot`` (no window opens, no global state): :func:`plot_image`,
  :func:`plot_overlay`, :func:`plot_side_by_side`, :func:`plot_sequence`, :func:`plot_volume`;
  :func:`save_figure` writes them. Without matplotlib they raise
  :class:`~refcam.errors.OptionalDependencyError` saying what to install.
  :mod:`refcam.figures` builds titled figures on these, with any colormap.

Colour rule (MATLAB's ``imagesc`` with its default ``'scaled'`` mapping and a
256-entry colormap)::

    t     = (m - min m) / (max m - min m)          (t = 0 everywhere when the map is constant)
    index = min(floor(256 t), 255)
    color = jet(256)[index]

over all entries of the map given (a whole volume shares one scale). The
overlay is MATLAB's ``imshow(X); hold on; imagesc(scoreMap, 'AlphaData', alpha)``::

    pixel = (1 - alpha) * image + alpha * color

with the image shown as ``imshow`` shows it: integers divided by their
dtype's maximum (uint8 / 255), floats in [0, 1] as they are; refcam's choice
for floats outside [0, 1] (``imshow`` would clip them) is to rescale them to
[0, 1]. One channel is grey, three are RGB, four are RGBA (alpha dropped),
any other count is shown as the channels' mean. A map whose size differs from
the image's (``upsampling="none"``) is enlarged by nearest neighbour.
"""
from __future__ import annotations

import math
import os
import struct
import zlib
from typing import Any, Sequence

import numpy as np

from .errors import InputError, OptionalDependencyError, ShapeError

__all__ = ["colorize", "display_image", "encode_png", "enlarge", "enlargement_for", "has_matplotlib", "jet",
           "montage_image", "overlay_image", "plot_image", "plot_overlay", "plot_sequence", "plot_side_by_side",
           "plot_volume", "save_figure", "save_overlay", "side_by_side_image", "write_png"]

COLORMAP_SIZE = 256
DEFAULT_ALPHA = 0.5
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MIN_PNG_SIDE = 256
MIN_TILE_SIDE = 128
MONTAGE_GAP = 2


# --- colours ---------------------------------------------------------------------------------------
def jet(n: int = COLORMAP_SIZE) -> np.ndarray:
    """MATLAB's ``jet(n)`` colormap: ``(n, 3)`` float64 RGB in [0, 1], dark blue to dark red.

    With ``q = ceil(n / 4)`` and the ramp ``u = [1..q, q x 1 (q - 1 times), q..1] / q``
    (length ``3q - 1``), green holds ``u`` from row ``ceil(q / 2) - [n mod 4 == 1]``
    (1-based, next row), red the same ramp ``q`` rows later and blue ``q`` rows
    earlier; rows outside ``1..n`` are dropped (blue keeps the ramp's tail).

    >>> jet(256)[[0, 255]]
    array([[0.     , 0.     , 0.515625],
           [0.5    , 0.     , 0.     ]])
    """
    if n < 1:
        raise ValueError(f"a colormap needs at least one colour, not n={n}.")
    q = math.ceil(n / 4)
    ramp = np.concatenate([np.arange(1, q + 1), np.full(q - 1, q), np.arange(q, 0, -1)]) / q
    green_rows = math.ceil(q / 2) - (n % 4 == 1) + np.arange(len(ramp))   # 0-based rows
    colors = np.zeros((n, 3))
    for channel, shift in ((0, q), (1, 0), (2, -q)):
        rows = green_rows + shift
        keep = (rows >= 0) & (rows < n)
        values = ramp[:keep.sum()] if shift >= 0 else ramp[len(ramp) - keep.sum():]
        colors[rows[keep], channel] = values
    return colors


def colorize(score_map: Any, n: int = COLORMAP_SIZE, colors: np.ndarray | None = None) -> np.ndarray:
    """The map's colours under the colour rule of the module docstring: shape ``map.shape + (3,)``, float64.

    ``colors`` is an ``(n, 3)`` RGB table in [0, 1] (default ``jet(n)``; another
    colormap from :func:`refcam.figures.colormap_colors`).

    >>> colorize(np.array([[0.0, 1.0]]))[0, :, 2]
    array([0.515625, 0.      ])
    """
    values = _as_real_array(score_map, "score_map")
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    table = jet(n) if colors is None else np.asarray(colors, dtype=np.float64)
    index = np.minimum(np.floor(scaled * len(table)), len(table) - 1).astype(np.intp)
    return table[index]


def display_image(image: Any) -> np.ndarray:
    """The image as ``imshow`` would show it: ``(h, w, 3)`` float64 RGB in [0, 1] (rules in the module docstring).

    ``image`` is ``(h, w)`` or ``(h, w, c)``.
    """
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ShapeError(f"an image is (h, w) or (h, w, c); got shape {array.shape}.")
    if array.dtype.kind == "b":
        values = array.astype(np.float64)
    elif array.dtype.kind in "ui":
        values = array.astype(np.float64) / float(np.iinfo(array.dtype).max)
    elif array.dtype.kind == "f":
        values = array.astype(np.float64)
        low, high = float(values.min()), float(values.max())
        if not (np.isfinite(low) and np.isfinite(high)):
            raise InputError("the image holds NaN or Inf; it cannot be shown.")
        if low < 0.0 or high > 1.0:
            values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    else:
        raise InputError(f"an image has a real dtype; got {array.dtype}.")
    channels = values.shape[2]
    if channels in (3, 4):
        return np.clip(values[:, :, :3], 0.0, 1.0)
    grey = values[:, :, :1] if channels == 1 else values.mean(axis=2, keepdims=True)
    return np.repeat(np.clip(grey, 0.0, 1.0), 3, axis=2)


def overlay_image(image: Any, score_map: Any, alpha: float = DEFAULT_ALPHA,
                  colors: np.ndarray | None = None) -> np.ndarray:
    """The map in jet (or ``colors``, see :func:`colorize`) blended over the image: ``(h, w, 3)`` uint8.

    At ``alpha=0.5`` in jet this is MATLAB's E1 figure.

    >>> overlay_image(np.zeros((2, 2)), np.array([[0.0, 1.0], [1.0, 0.0]])).shape
    (2, 2, 3)
    """
    background = display_image(image)
    blended = (1.0 - alpha) * background + alpha * colorize(_fit_map(score_map, background.shape[:2]), colors=colors)
    return _to_uint8(blended)


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] to uint8 (rounded to nearest)."""
    return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def _as_real_array(values: Any, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise InputError(f"{what} must hold real numbers, not {array.dtype}.")
    array = array.astype(np.float64)
    if array.size == 0 or not np.isfinite(array).all():
        raise InputError(f"{what} is empty or holds NaN/Inf (shape {array.shape}).")
    return array


def _without_trailing_singletons(values: np.ndarray, rank: int) -> np.ndarray:
    """``values`` without trailing axes of size 1 beyond the first ``rank`` (a label or batch axis of one)."""
    while values.ndim > rank and values.shape[-1] == 1:
        values = values[..., 0]
    return values


def _fit_map(score_map: Any, size: tuple[int, int]) -> np.ndarray:
    """A 2-D map at ``size``: squeezed, and enlarged by nearest neighbour when smaller (upsampling="none")."""
    values = _without_trailing_singletons(_as_real_array(score_map, "score_map"), 2)
    if values.ndim != 2:
        raise ShapeError(f"an image overlay needs a 2-D map (h x w); got shape {np.shape(score_map)}. "
                         "Give one label and one observation (a stacked map has a label or batch axis).")
    if values.shape == tuple(size):
        return values
    rows = np.minimum((np.arange(size[0]) + 0.5) * values.shape[0] / size[0], values.shape[0] - 1).astype(int)
    cols = np.minimum((np.arange(size[1]) + 0.5) * values.shape[1] / size[1], values.shape[1] - 1).astype(int)
    return values[np.ix_(rows, cols)]


# --- built-in pictures -----------------------------------------------------------------------------
def enlarge(pixels: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel repeated ``factor x factor`` times (nearest neighbour)."""
    return np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1)


def enlargement_for(shape: Sequence[int], min_side: int = MIN_PNG_SIDE) -> int:
    """The integer factor that brings the longer side of ``shape`` (h, w) to at least ``min_side``."""
    return max(1, math.ceil(min_side / max(shape[0], shape[1])))


def side_by_side_image(image: Any, score_map: Any, alpha: float = DEFAULT_ALPHA,
                       gap: int = MONTAGE_GAP) -> np.ndarray:
    """The image, a white gap, and the overlay, side by side: ``(h, 2w + gap, 3)`` uint8 (the E2 layout)."""
    left = _to_uint8(display_image(image))
    right = overlay_image(image, score_map, alpha)
    white = np.full((left.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([left, white, right], axis=1)


def montage_image(volume: Any, score_map: Any, *, axis: int = 2, slices: Sequence[int] | None = None,
                  alpha: float = DEFAULT_ALPHA, columns: int | None = None, gap: int = MONTAGE_GAP,
                  min_tile_side: int = MIN_TILE_SIDE, colors: np.ndarray | None = None) -> np.ndarray:
    """Overlays of slices of a 3-D input, tiled: uint8 RGB.

    ``volume`` is ``(h, w, d)`` or ``(h, w, d, c)`` (MATLAB's layout), ``score_map``
    ``(h, w, d)``; ``slices`` (0-based, along ``axis``) default to up to 8 evenly
    spaced ones. The colour scale is the whole map's, shared by every slice.
    Small slices are enlarged by an integer factor to at least ``min_tile_side`` pixels;
    ``colors`` as for :func:`colorize`.
    """
    volume_rgb, map_rgb = _volume_layers(volume, score_map, colors)
    picked = _default_slices(map_rgb.shape[axis]) if slices is None else [int(k) for k in slices]
    tiles = [_to_uint8((1.0 - alpha) * np.take(volume_rgb, k, axis=axis) + alpha * np.take(map_rgb, k, axis=axis))
             for k in picked]
    factor = enlargement_for(tiles[0].shape, min_tile_side)
    return _tile([enlarge(picture, factor) for picture in tiles], columns, gap)


def _volume_layers(volume: Any, score_map: Any, colors: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(h, w, d, 3)`` display colours of the volume and of the map (one scale for the whole volume)."""
    array = np.asarray(volume)
    if array.ndim == 3:
        array = array[..., None]
    values = _without_trailing_singletons(_as_real_array(score_map, "score_map"), 3)
    if array.ndim != 4 or values.shape != array.shape[:3]:
        raise ShapeError(f"a volume montage needs a volume (h, w, d[, c]) and a map (h, w, d) of the same size; "
                         f"got {np.shape(volume)} and {np.shape(score_map)}.")
    h, w, d, c = array.shape
    flat = display_image(array.reshape(h, w * d, c))          # (h, w*d, 3): one image, one brightness scale
    return flat.reshape(h, w, d, 3), colorize(values, colors=colors)


def _default_slices(depth: int, count: int = 8) -> list[int]:
    """Up to ``count`` evenly spaced 0-based slice indices of ``depth`` slices."""
    return sorted({int(round(k)) for k in np.linspace(0, depth - 1, min(count, depth))})


def _tile(tiles: Sequence[np.ndarray], columns: int | None = None, gap: int = MONTAGE_GAP) -> np.ndarray:
    """Equal-size uint8 RGB tiles in a grid with white gaps (row by row)."""
    columns = columns or math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / columns)
    h, w = tiles[0].shape[:2]
    canvas = np.full((rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, 3), 255, dtype=np.uint8)
    for k, picture in enumerate(tiles):
        top, left = (k // columns) * (h + gap), (k % columns) * (w + gap)
        canvas[top:top + h, left:left + w] = picture
    return canvas


# --- PNG -------------------------------------------------------------------------------------------
def encode_png(pixels: np.ndarray) -> bytes:
    """A PNG file (8-bit, no interlace, filter 0 on every row) of ``(h, w)`` grey or ``(h, w, 3)`` RGB uint8 pixels.

    >>> encode_png(np.zeros((1, 1), np.uint8))[:8] == PNG_SIGNATURE
    True
    """
    array = np.asarray(pixels)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ShapeError(f"PNG pixels are uint8 (h, w) or (h, w, 3); got {array.dtype} {array.shape}.")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ShapeError(f"a PNG needs at least one pixel; got shape {array.shape}.")
    color_type = 0 if array.ndim == 2 else 2
    rows = np.ascontiguousarray(array).reshape(height, -1)
    scanlines = np.concatenate([np.zeros((height, 1), np.uint8), rows], axis=1)   # filter byte 0, then the row
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    return (PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(scanlines.tobytes(), 9))
            + _chunk(b"IEND", b""))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png(path: str | os.PathLike, pixels: np.ndarray) -> str:
    """Write ``pixels`` (see :func:`encode_png`) to ``path``; returns the path written."""
    data = encode_png(pixels)
    with open(path, "wb") as f:
        f.write(data)
    return os.fspath(path)


def save_overlay(path: str | os.PathLike, image: Any, score_map: Any, *, alpha: float = DEFAULT_ALPHA,
                 min_side: int = MIN_PNG_SIDE, colors: np.ndarray | None = None) -> str:
    """Write the overlay of :func:`overlay_image` as a PNG, with the built-in encoder (no matplotlib needed).

    Inputs smaller than ``min_side`` pixels are enlarged by an integer factor
    (nearest neighbour), so a 28 x 28 digit becomes 280 x 280. ``colors`` as for :func:`colorize`.

    >>> save_overlay("overlay.png", image, result.map)      # doctest: +SKIP
    'overlay.png'
    """
    pixels = overlay_image(image, score_map, alpha, colors)
    return write_png(path, enlarge(pixels, enlargement_for(pixels.shape, min_side)))


# --- matplotlib figures ----------------------------------------------------------------------------
def has_matplotlib() -> bool:
    """True when matplotlib can be imported (the ``viz`` extra)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(width: float, height: float) -> Any:
    """A new matplotlib Figure (inches), not registered with pyplot."""
    try:
        from matplotlib.figure import Figure
    except ImportError as err:
        raise OptionalDependencyError(
            "refcam.viz figures need matplotlib: pip install \"refcam[viz]\" (or pip install matplotlib). "
            "Without it, refcam.viz.save_overlay writes overlay PNGs with the built-in encoder.") from err
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _jet_colormap() -> Any:
    from matplotlib.colors import ListedColormap
    return ListedColormap(jet(), name="matlab_jet")


def _colorbar(figure: Any, ax: Any, score_map: Any) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    values = _as_real_array(score_map, "score_map")
    low, high = float(values.min()), float(values.max())
    mappable = ScalarMappable(Normalize(low, high if high > low else low + 1.0), _jet_colormap())
    figure.colorbar(mappable, ax=ax, shrink=0.8)


def plot_image(image: Any, *, title: str | None = None) -> Any:
    """The image alone, as ``imshow`` shows it (grey for one channel; a 5 x 5 inch, 500 x 500 px figure)."""
    figure = _figure(5.0, 5.0)
    ax = figure.add_subplot()
    ax.imshow(display_image(image), interpolation="nearest")
    _image_axes(ax, title)
    return figure


def plot_overlay(image: Any, score_map: Any, *, alpha: float = DEFAULT_ALPHA, title: str | None = None,
                 colorbar: bool = True) -> Any:
    """The E1 figure of MATLAB's gradCAM page: the map in jet at ``alpha`` over the image (6 x 5 inches, 600 x 500 px at 100 dpi).

    >>> fig = refcam.viz.plot_overlay(image, result.map)   # doctest: +SKIP
    >>> refcam.viz.save_figure(fig, "overlay.png")          # doctest: +SKIP
    """
    figure = _figure(6.0 if colorbar else 5.0, 5.0)
    ax = figure.add_subplot()
    ax.imshow(overlay_image(image, score_map, alpha), interpolation="nearest")
    _image_axes(ax, title)
    if colorbar:
        _colorbar(figure, ax, score_map)
    return figure


def plot_side_by_side(image: Any, score_map: Any, *, left_title: str = "", right_title: str = "Grad-CAM",
                      alpha: float = DEFAULT_ALPHA) -> Any:
    """The E2 figure of MATLAB's gradCAM page: the image (grey when it has one channel) beside the map over it (8 x 4.2 in).

    MATLAB's E2 draws the map opaque (``imagesc`` without ``AlphaData``): pass
    ``alpha=1`` for that picture; the default 0.5 keeps the digit visible.

    >>> fig = refcam.viz.plot_side_by_side(digit, result.map,
    ...                                     left_title="True Rotation = 29\\nPred Rotation = 27")  # doctest: +SKIP
    """
    figure = _figure(8.0, 4.2)
    left, right = figure.subplots(1, 2)
    left.imshow(display_image(image), interpolation="nearest")
    _image_axes(left, left_title)
    right.imshow(overlay_image(image, score_map, alpha), interpolation="nearest")
    _image_axes(right, right_title)
    _colorbar(figure, right, score_map)
    return figure


def plot_sequence(sequence: Any, score_map: Any = None, *, feature_names: Sequence[str] | None = None,
                  title: str | None = None) -> Any:
    """The E3 figures of MATLAB's gradCAM page: the features over time, above the Grad-CAM importance curve when a map is given.

    ``sequence`` is ``(c, t)`` (MATLAB's layout), ``score_map`` ``(1, t)`` or ``(t,)``
    (9 x 6 in with a map, 9 x 3.5 without). Time steps are numbered from 1, as in MATLAB's plot.

    >>> fig = refcam.viz.plot_sequence(x, result.map)      # doctest: +SKIP
    """
    values = np.asarray(sequence, dtype=np.float64)
    importance = None if score_map is None else _as_real_array(score_map, "score_map").reshape(-1)
    if values.ndim != 2 or (importance is not None and values.shape[1] != importance.size):
        raise ShapeError(f"a sequence figure needs a (c, t) sequence and a (1, t) map of the same length; "
                         f"got {np.shape(sequence)} and {np.shape(score_map)}.")
    names = list(feature_names) if feature_names is not None else [f"Feature {k + 1}" for k in range(len(values))]
    steps = np.arange(1, values.shape[1] + 1)
    figure = _figure(9.0, 3.5 if importance is None else 6.0)
    axes = [figure.add_subplot()] if importance is None else list(figure.subplots(2, 1))
    for row, name in zip(values, names):
        axes[0].plot(steps, row, label=name)
    if title:
        axes[0].set_title(title)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    if importance is not None:
        axes[1].plot(steps, importance, color="tab:blue")
        axes[1].set_ylabel("Grad-CAM Importance")
    for ax in axes:
        ax.set_xlabel("Time Step")
        ax.set_xlim(steps[0], steps[-1])
        ax.xaxis.get_major_locator().set_params(integer=True)
    return figure


def plot_volume(volume: Any, score_map: Any, *, axis: int = 2, slices: Sequence[int] | None = None,
                alpha: float = DEFAULT_ALPHA, columns: int | None = None) -> Any:
    """A montage of slices of a 3-D input with the map over each (one colour scale), titled by slice.

    ``volume`` ``(h, w, d[, c])``, ``score_map`` ``(h, w, d)``; ``slices`` are
    0-based along ``axis`` (default: up to 8 evenly spaced). 2.4 inches per tile.
    """
    volume_rgb, colors = _volume_layers(volume, score_map)
    picked = _default_slices(colors.shape[axis]) if slices is None else [int(k) for k in slices]
    columns = columns or math.ceil(math.sqrt(len(picked)))
    rows = math.ceil(len(picked) / columns)
    figure = _figure(2.4 * columns + 0.8, 2.4 * rows)
    axes = np.atleast_1d(figure.subplots(rows, columns, squeeze=False)).reshape(-1)
    for ax, k in zip(axes, picked):
        picture = (1.0 - alpha) * np.take(volume_rgb, k, axis=axis) + alpha * np.take(colors, k, axis=axis)
        ax.imshow(_to_uint8(picture), interpolation="nearest")
        _image_axes(ax, f"slice {k} of axis {axis}")
    for ax in axes[len(picked):]:
        ax.set_axis_off()
    _colorbar(figure, list(axes), score_map)
    return figure


def _image_axes(ax: Any, title: str | None) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title)


def save_figure(figure: Any, path: str | os.PathLike, dpi: int = 100) -> str:
    """Write a figure of this module to ``path`` (PNG by its suffix); the size in pixels is inches x ``dpi``."""
    figure.savefig(path, dpi=dpi)
    return os.fspath(path)
