"""Figures people keep: titled overlays with a colour bar, image | map | overlay panels, grids, montages.

Built on :mod:`refcam.viz` (the same colour rule: MATLAB's ``imagesc``
``'scaled'`` mapping over a 256-entry colormap, and the same blend
``(1 - alpha) * image + alpha * color``), with any colormap:

* ``"jet"``: MATLAB's ``jet(256)`` (:func:`refcam.viz.jet`), MATLAB's default,
  needs no matplotlib;
* any other matplotlib colormap name (``"viridis"``, ``"turbo"``, ...), sampled
  at 256 evenly spaced points of [0, 1] (:func:`colormap_colors`).

The figures need matplotlib (``pip install "refcam[viz]"``); they are
:class:`matplotlib.figure.Figure` objects made without ``pyplot`` (no window,
no global state), written with :func:`refcam.viz.save_figure`.

**Why a map can go below zero.** Grad-CAM's raw map is a ReLU, so it is >= 0;
the map resized to the input with MATLAB's bicubic ``imresize`` (Keys' cubic
kernel, ``a = -0.5``) overshoots next to steep edges of the raw map and can
dip slightly below zero. MATLAB does not clip it, and neither does refcam:
the colour bar then starts below 0 (:data:`OVERSHOOT_NOTE`, shown as the
figure's caption by :func:`overshoot_caption`).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from . import viz
from .errors import InputError, OptionalDependencyError

__all__ = ["FIGURE_KINDS", "OVERSHOOT_NOTE", "colormap_colors", "colormap_names", "overshoot_caption",
           "plot_gradcam", "plot_montage"]

FIGURE_KINDS = ("overlay", "panel")
OVERSHOOT_NOTE = ("Values below 0: MATLAB's bicubic imresize overshoots next to steep edges of the map; "
                  "MATLAB does not clip it.")
TILE_INCHES = 4.0
MAX_COLUMNS = 3


def colormap_names() -> list[str]:
    """The colormap names :func:`colormap_colors` takes: ``"jet"`` and, with matplotlib, every registered name."""
    try:
        import matplotlib
    except ImportError:
        return ["jet"]
    return ["jet", *sorted(name for name in matplotlib.colormaps if name != "jet")]


def colormap_colors(name: str = "jet", n: int = viz.COLORMAP_SIZE) -> np.ndarray:
    """The ``(n, 3)`` float64 RGB table in [0, 1] of colormap ``name``.

    ``"jet"`` is MATLAB's ``jet(n)``; any other name is matplotlib's colormap
    sampled at ``linspace(0, 1, n)`` (alpha dropped). An unknown name raises
    :class:`~refcam.errors.InputError` naming the closest ones.

    >>> colormap_colors("jet")[0]
    array([0.      , 0.      , 0.515625])
    """
    if name == "jet":
        return viz.jet(n)
    try:
        import matplotlib
    except ImportError as err:
        raise OptionalDependencyError(f"the colormap {name!r} comes from matplotlib: pip install \"refcam[viz]\" "
                                      "(or pip install matplotlib); without it refcam draws MATLAB's jet.") from err
    if name not in matplotlib.colormaps:
        from .preprocess import close_match_hint
        raise InputError(f"{name!r} is not a colormap.{close_match_hint(name, colormap_names())} Give jet "
                         "(MATLAB's default), viridis, turbo or another matplotlib colormap name.")
    return np.asarray(matplotlib.colormaps[name](np.linspace(0.0, 1.0, n)), dtype=np.float64)[:, :3]


def overshoot_caption(score_map: Any, raw_map: Any) -> str | None:
    """:data:`OVERSHOOT_NOTE` when the map goes below zero but the map before resizing does not, else None.

    ``score_map``: the map as drawn (or its minimum); ``raw_map``: the map before upsampling.
    """
    if raw_map is None or np.size(raw_map) == 0:
        return None
    return OVERSHOOT_NOTE if float(np.min(score_map)) < 0.0 <= float(np.min(raw_map)) else None


def plot_gradcam(image: Any, score_maps: Any, *, titles: Sequence[str] | None = None, figure: str = "overlay",
                 title: str | None = None, colormap: str = "jet", alpha: float = viz.DEFAULT_ALPHA,
                 caption: str | None = None) -> Any:
    """A titled figure of one or several maps over an image, each with its colour bar.

    ``image`` is ``(h, w)`` or ``(h, w, c)``; ``score_maps`` one ``(h, w)`` map
    or a list of them (one per label; a smaller map is enlarged by nearest
    neighbour), ``titles`` one per map. ``figure="overlay"``: each map over
    the image, in a grid of up to 3 columns; ``figure="panel"``: one row per
    map, image | map | overlay. ``title`` heads the figure, ``caption`` goes
    below it. Each map has its own colour scale (its min to its max), as
    MATLAB's ``imagesc`` does. About 4 inches (400 px) per tile.

    >>> fig = plot_gradcam(photo, res.map, titles=["'tabby' (index 281, score 9.2)"])   # doctest: +SKIP
    >>> refcam.viz.save_figure(fig, "tabby.png")                                      # doctest: +SKIP
    """
    if figure not in FIGURE_KINDS:
        raise InputError(f"figure={figure!r}: choose one of {', '.join(FIGURE_KINDS)}.")
    maps = list(score_maps) if isinstance(score_maps, (list, tuple)) else [score_maps]
    names = list(titles) if titles is not None else [""] * len(maps)
    if len(names) != len(maps):
        raise InputError(f"{len(names)} titles for {len(maps)} maps: give one title per map.")
    colors = colormap_colors(colormap)
    rows, columns = ((len(maps), 3) if figure == "panel"
                     else (math.ceil(len(maps) / min(len(maps), MAX_COLUMNS)), min(len(maps), MAX_COLUMNS)))
    height, width = np.shape(image)[:2]
    tile_height = TILE_INCHES * min(1.0, height / width) + 0.5
    fig = viz._figure(TILE_INCHES * columns + 0.6 * columns, tile_height * rows + (0.6 if caption else 0.2))
    axes = np.asarray(fig.subplots(rows, columns, squeeze=False))
    for k, (name, one_map) in enumerate(zip(names, maps)):
        if figure == "panel":
            _panel_row(fig, axes[k], image, one_map, name, colors, alpha)
        else:
            ax = axes[k // columns, k % columns]
            _show(fig, ax, viz.overlay_image(image, one_map, alpha, colors), one_map, colors, name)
    for ax in axes.reshape(-1)[len(maps) * (3 if figure == "panel" else 1):]:
        ax.set_axis_off()
    _headings(fig, title, caption)
    return fig


def plot_montage(volume: Any, score_map: Any, *, title: str | None = None, colormap: str = "jet",
                 alpha: float = viz.DEFAULT_ALPHA, caption: str | None = None) -> Any:
    """The montage of :func:`refcam.viz.montage_image` (up to 8 slices of the third axis) with a title and colour bar.

    ``volume`` ``(h, w, d[, c])``, ``score_map`` ``(h, w, d)``: one colour scale for the whole volume.
    """
    colors = colormap_colors(colormap)
    pixels = viz.montage_image(volume, score_map, alpha=alpha, colors=colors)
    fig = viz._figure(6.0, 5.0 + (0.4 if caption else 0.0))
    ax = fig.add_subplot()
    slices = viz._default_slices(np.shape(score_map)[2])
    _show(fig, ax, pixels, score_map, colors, f"slices {', '.join(map(str, slices))} of the third axis (row by row)")
    _headings(fig, title, caption)
    return fig


def _panel_row(fig: Any, axes: Sequence[Any], image: Any, score_map: Any, name: str, colors: np.ndarray,
               alpha: float) -> None:
    """image | map | overlay in three axes; ``name`` on the row's first axes."""
    axes[0].imshow(viz.display_image(image), interpolation="nearest")
    viz._image_axes(axes[0], name or "image")
    fitted = viz._fit_map(score_map, np.shape(image)[:2])
    _show(fig, axes[1], viz.colorize(fitted, colors=colors), fitted, colors, "map")
    _show(fig, axes[2], viz.overlay_image(image, fitted, alpha, colors), fitted, colors, "overlay")


def _show(fig: Any, ax: Any, pixels: np.ndarray, score_map: Any, colors: np.ndarray, name: str) -> None:
    """``pixels`` in ``ax`` with ``name`` above and the colour bar of ``score_map``'s range beside."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import ListedColormap, Normalize
    ax.imshow(pixels, interpolation="nearest")
    viz._image_axes(ax, name)
    low, high = float(np.min(score_map)), float(np.max(score_map))
    if high > low:
        fig.colorbar(ScalarMappable(Normalize(low, high), ListedColormap(colors)), ax=ax, shrink=0.8)
    else:                                                        # no scale to show: say the one value
        ax.set_xlabel(f"the map is {low:.4g} everywhere")


def _headings(fig: Any, title: str | None, caption: str | None) -> None:
    if title:
        fig.suptitle(title, wrap=True)                           # long class names: no cut-off title
    if caption:
        fig.supxlabel(caption, fontsize="small", wrap=True)
