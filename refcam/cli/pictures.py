"""The PNG pictures ``refcam gradcam`` writes for one input: overlays, figures, sequence plots, volume montages.

``--figure plain`` (the default) is the map blended over the image with one PNG
pixel per image pixel (:func:`refcam.viz.save_overlay`; a montage of slices
for volumes; MATLAB's two-panel plot for sequences), with no matplotlib needed
except for sequences. ``--figure overlay`` and ``--figure panel`` are the
titled figures of :mod:`refcam.figures` (colour bar; image | map | overlay for
``panel``; several labels of an image make one grid). ``--colormap`` is jet
(MATLAB's default) or a matplotlib name; ``--alpha`` the map's opacity.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..input_files import Input
from .common import OutputTargets

FIGURES = ("plain", "overlay", "panel")
PLOT_EXTRA = "pip install \"refcam[viz]\" (or pip install matplotlib)"


@dataclass
class Style:
    """How the pictures look: ``--figure``, ``--colormap`` and its 256 colours, ``--alpha``; and the method's name."""

    figure: str
    colormap: str
    colors: np.ndarray
    alpha: float
    method: str


def picture_style(args: argparse.Namespace) -> Style:
    """The style of the run's pictures; without matplotlib, the plain overlay in jet and a note on stderr saying why.

    An unknown ``--colormap`` (with matplotlib) is an InputError naming the closest names.
    """
    from .. import viz
    from ..figures import colormap_colors
    figure, colormap = args.figure, args.colormap
    writes_png = args.png and os.path.splitext(args.output)[1].lower() != ".npy"
    if not viz.has_matplotlib():
        if figure != "plain" and writes_png:
            print(f"refcam gradcam: note: --figure {figure} (title, colour bar) needs matplotlib: {PLOT_EXTRA}; "
                  "writing the plain overlay instead.", file=sys.stderr)
        if colormap != "jet" and writes_png:
            print(f"refcam gradcam: note: --colormap {colormap} needs matplotlib: {PLOT_EXTRA}; drawing in "
                  "MATLAB's jet instead.", file=sys.stderr)
        figure, colormap = "plain", "jet"
    try:
        colors = colormap_colors(colormap)
    except InputError as err:
        raise InputError(f"--colormap {err}") from None
    return Style(figure, colormap, colors, args.alpha, args.method)


def figure_titles(prediction: Any, result: Any, classes: Any, method: str) -> tuple[str, list[str]]:
    """The figure's title and one title per label: method, class name, index, score, feature layer."""
    from ..labels import class_text
    name = "Grad-CAM" if method == "gradcam" else method
    layer = f"feature layer {result.feature_layer!r}"
    scores = np.asarray(result.scores, dtype=np.float64)                  # (K, B)
    if prediction.reduction is not None:
        return f"{name} of the sum of {result.reduction_layer!r}, value {scores.reshape(-1)[0]:.4g}\n{layer}", [""]
    texts = [class_text(int(index), classes, score) for index, score in zip(result.labels, scores[:, 0])]
    if len(texts) == 1:
        return f"{name} of class {texts[0]}\n{layer}", [""]
    return f"{name}, {layer}", texts


def write_pictures(targets: OutputTargets, stem: str, net: Any, item: Input, result: Any, prediction: Any,
                   style: Style) -> list[str]:
    """The PNGs of one input (rules in the module docstring); returns the paths written."""
    from .. import viz
    kind = net.input_layer.default_format                        # "SSC", "SSSC" or "CT"
    stacked = isinstance(prediction.label, list)
    score_map = result.map
    if "B" in item.format.upper():
        if np.shape(score_map)[-1] != 1:
            targets.note("inputs with several observations (a B axis): no PNG is written; the .npy holds "
                         "every map (MATLAB's layout, observations last).")
            return []
        score_map = score_map[..., 0]                              # one observation: drop the B axis
    if carries_channels(kind, score_map, stacked):
        targets.note(f"{style.method} maps have the input's channels: no PNG is written; the .npy holds the map.")
        return []
    if kind == "CT" and not viz.has_matplotlib():
        targets.note(f"sequence figures need matplotlib: {PLOT_EXTRA}; the .npy maps were written.")
        return []
    x = item.x if item.format == kind else matlab_layout(net, item)
    maps = [np.take(score_map, k, axis=-1) for k in range(len(result.labels))] if stacked else [score_map]
    if item.original is not None and np.shape(score_map)[:2] == item.geometry.input_size:
        from ..preprocess import map_to_original                     # an image file: drawn on the photo
        x = item.original
        maps = [map_to_original(one_map, item.geometry) for one_map in maps]
    suffixes = [f"_label{index}" for index in result.labels] if stacked else [""]
    title, titles = figure_titles(prediction, result, net.classes, style.method)
    if kind == "SSC" and style.figure != "plain":
        return [draw_image_figure(targets.path(stem, ".png"), x, maps, title, titles, style, result)]
    headings = [f"{title}\n{label_title}" if label_title else title for label_title in titles]
    return [draw_one(targets.path(stem + suffix, ".png"), kind, x, one_map, heading, style, result)
            for suffix, one_map, heading in zip(suffixes, maps, headings)]


def draw_image_figure(path: str, image: np.ndarray, maps: list[np.ndarray], title: str, titles: list[str],
                      style: Style, result: Any) -> str:
    """The titled overlay (or panel) of an image; several maps make one grid."""
    from .. import viz
    from ..figures import overshoot_caption, plot_gradcam
    lowest = min(float(np.min(one_map)) for one_map in maps)            # the maps as drawn, on the photo
    figure = plot_gradcam(image, maps, titles=titles, figure=style.figure, title=title, colormap=style.colormap,
                          alpha=style.alpha, caption=overshoot_caption(lowest, result.raw_map))
    return viz.save_figure(figure, path)


def draw_one(path: str, kind: str, x: np.ndarray, score_map: np.ndarray, title: str, style: Style,
             result: Any) -> str:
    """One label's picture: a sequence plot, a volume montage (titled unless plain) or the plain overlay."""
    from .. import viz
    from ..figures import overshoot_caption, plot_montage
    plain = style.figure == "plain"
    if kind == "CT":
        return viz.save_figure(viz.plot_sequence(x, score_map, title=None if plain else title), path)
    if kind == "SSSC" and plain:
        return viz.write_png(path, viz.montage_image(x, score_map, alpha=style.alpha, colors=style.colors))
    if kind == "SSSC":
        return viz.save_figure(plot_montage(x, score_map, title=title, colormap=style.colormap, alpha=style.alpha,
                                            caption=overshoot_caption(score_map, result.raw_map)), path)
    return viz.save_overlay(path, x, score_map, alpha=style.alpha, colors=style.colors)


def carries_channels(kind: str, score_map: Any, stacked: bool) -> bool:
    """True for a map with the input's channels (guided backpropagation), which no overlay can show."""
    if kind == "CT":
        return np.shape(score_map)[0] != 1                         # Grad-CAM's sequence map is 1 x t
    return np.ndim(score_map) > (3 if kind == "SSSC" else 2) + int(stacked)


def matlab_layout(net: Any, item: Input) -> np.ndarray:
    """The (first) observation in MATLAB's layout (h x w [x d] x c, or c x t), for its picture."""
    from ..layout import to_internal
    internal, _ = to_internal(item.x, net.input_layer, format=item.format)   # (B, C, *S)
    if net.input_layer.default_format == "CT":
        return internal[0]
    return np.moveaxis(internal[0], 0, -1)
