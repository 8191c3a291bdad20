"""The shapes a golden's datasets must have, worked out from the embedded network before any array is read.

A golden file describes one Grad-CAM run, so its shapes are not free: with
``B`` observations of internal shape ``(C_in, *S_in)`` (``/input_internal``,
checked against the network's input layer), the network's shape inference
gives the feature layer's output ``(C, *S)`` and the reduction layer's output
``(R, *S_R)``; ``K`` is the number of scores (``/gradients``' first axis).
Then (docs/golden-format.md, section "Consistency")::

    activations  (B, C, *S)          gradients  (K, B, C, *S)     weights  (K, B, C)
                                                                  ((K, B, C, *S) for HiResCAM, LayerCAM)
    scores       (K, B)              labels     (K,), each in 0..R-1
    raw_map      map_axes at S       map        map_axes at S or at S_in
    mask         S_R (or 1 x n for one axis), values 0 or 1
    input        as many values as input_internal

``map_axes`` must be what the writer derives from ``options["format"]`` and
the label (:func:`refcam.golden.record.map_axes`): one ``S``/``T`` letter per
spatial axis of A (``1`` first for a ``1 x t`` row), ``K`` when a list of
labels was given, ``B`` when the format has one. Letter by letter the map's
sizes are 1, the spatial sizes, K and B (1 for the ``keras-example``
convention, which maps observation 0 only).

Everything here works on declared shapes, so a golden that does not fit
together is refused without reading its arrays; :func:`check_values` then
checks the few values that carry structure (labels, mask).
"""
from __future__ import annotations

import re
from math import prod
from typing import Any

import numpy as np

from ..errors import RefcamError
from ..network import Network
from .record import ELEMENTWISE_WEIGHT_METHODS, METHOD, GoldenShapeError, map_axes

Shape = tuple[int, ...]
FORMAT_LETTERS = re.compile(r"[SCBT]+")
LAYOUTS = {"input_internal": "(B, C_in, *S_in)", "input": "the caller's layout", "activations": "(B, C, *S)",
           "gradients": "(K, B, C, *S)", "weights": "(K, B, C), or (K, B, C, *S) for HiResCAM and LayerCAM", "scores": "(K, B)", "labels": "(K,)",
           "raw_map": "map_axes at S", "map": "map_axes at S or S_in", "mask": "S_R"}


def expected_shapes(declared: dict[str, Shape], attributes: dict[str, str], options: dict[str, Any],
                    network: Network, source: str) -> dict[str, Shape]:
    """The shape each present dataset must have (see the module docstring); GoldenShapeError when none fits."""
    batch, per_observation = _input_internal(declared["input_internal"], network, source)
    shapes = _layer_shapes(network, per_observation, source)
    feature = _feature_shape(shapes, attributes["feature_layer"], source)
    labels = _label_count(declared["gradients"], source)
    channels, spatial = feature[0], feature[1:]
    expected = {"input_internal": declared["input_internal"],
                "input": _input(declared["input"], declared["input_internal"], source),
                "activations": (batch, *feature), "gradients": (labels, batch, *feature),
                "weights": ((labels, batch, *feature) if attributes.get(METHOD) in ELEMENTWISE_WEIGHT_METHODS
                            else (labels, batch, channels)), "scores": (labels, batch)}
    letters = _map_axes(attributes, options, spatial, batch, labels, source)
    mapped = 1 if attributes["convention"] == "keras-example" else batch
    sizes = {"1": 1, "K": labels, "B": mapped}
    expected["raw_map"] = _map_shape(letters, spatial, sizes)
    expected["map"] = _final_map(declared["map"], letters, spatial, per_observation[1:], sizes, source)
    if "labels" in declared:
        expected["labels"] = (labels,)
    if "mask" in declared:
        expected["mask"] = _mask(declared["mask"], shapes[attributes["reduction_layer"]], source)
    return expected


def check_declared(declared: dict[str, Shape], expected: dict[str, Shape], source: str) -> None:
    """GoldenShapeError for the first dataset whose declared shape is not the expected one."""
    for name, shape in expected.items():
        if declared[name] != shape:
            raise GoldenShapeError(f"{source}: /{name} has shape {declared[name]}, expected {shape} = "
                                   f"{LAYOUTS[name]} from the embedded network, /input_internal and the number "
                                   "of scores (docs/golden-format.md, 'Consistency').")


def check_values(arrays: dict[str, np.ndarray], attributes: dict[str, str], network: Network,
                 source: str) -> None:
    """Labels are channels of the reduction layer's output; a mask holds 0 and 1 only."""
    if "labels" in arrays:
        per_observation = arrays["input_internal"].shape[1:]
        classes = network.infer_shapes(per_observation)[attributes["reduction_layer"]][0]
        labels = arrays["labels"]
        outside = labels[(labels < 0) | (labels >= classes)]
        if outside.size:
            raise GoldenShapeError(
                f"{source}: /labels holds {outside[:5].tolist()}, outside 0..{classes - 1}: the reduction layer "
                f"{attributes['reduction_layer']!r} has {classes} channels (labels are 0-based).")
    if "mask" in arrays and not np.isin(arrays["mask"], (0, 1)).all():
        raise GoldenShapeError(f"{source}: /mask holds values other than 0 and 1.")


def _input_internal(shape: Shape, network: Network, source: str) -> tuple[int, Shape]:
    input_layer = network.input_layer
    wanted = input_layer.per_observation_shape()
    fits = (len(shape) == 1 + len(wanted) and shape[0] >= 1
            and all(w is None or w == n for w, n in zip(wanted, shape[1:])))
    if not fits:
        shown = ", ".join("T" if w is None else str(w) for w in wanted)
        raise GoldenShapeError(f"{source}: /input_internal has shape {shape}; the embedded network's input layer "
                               f"{input_layer.name!r} takes (B, {shown}) with B >= 1.")
    return shape[0], shape[1:]


def _layer_shapes(network: Network, per_observation: Shape, source: str) -> dict[str, Shape]:
    try:
        return network.infer_shapes(per_observation)
    except RefcamError as err:
        raise GoldenShapeError(f"{source}: the embedded network cannot take /input_internal's observations of "
                               f"shape {per_observation}: {err}") from err


def _feature_shape(shapes: dict[str, Shape], feature_layer: str, source: str) -> Shape:
    feature = shapes[feature_layer]
    if len(feature) < 2:
        raise GoldenShapeError(f"{source}: the feature layer {feature_layer!r} outputs {feature}, with no spatial "
                               "or time axis, so it has no Grad-CAM map; a golden's feature layer has one.")
    return feature


def _label_count(gradients: Shape, source: str) -> int:
    if len(gradients) < 1 or gradients[0] < 1:
        raise GoldenShapeError(f"{source}: /gradients has shape {gradients}; it must be (K, B, C, *S) with K >= 1 "
                               "scores.")
    return gradients[0]


def _input(declared: Shape, internal: Shape, source: str) -> Shape:
    if prod(declared) != prod(internal):
        raise GoldenShapeError(f"{source}: /input has shape {declared} ({prod(declared)} values) but "
                               f"/input_internal {internal} holds {prod(internal)}; they are the same input.")
    return declared


def _map_axes(attributes: dict[str, str], options: dict[str, Any], spatial: Shape, batch: int, labels: int,
              source: str) -> str:
    """``map_axes`` checked against the options; its letters."""
    input_format = options["format"]
    if not isinstance(input_format, str) or not FORMAT_LETTERS.fullmatch(input_format) \
            or any(input_format.count(letter) > 1 for letter in "CB"):
        raise GoldenShapeError(f"{source}: options['format'] is {input_format!r}; it must be dimension letters "
                               "such as 'SSC', 'SSCB' or 'CT' (one C, at most one B).")
    stacked = isinstance(options["label"], list)
    wanted = map_axes(input_format, stacked=stacked)
    found = attributes["map_axes"]
    if found != wanted:
        raise GoldenShapeError(f"{source}: map_axes is {found!r}, but input format {input_format!r} and "
                               f"{'a list of labels' if stacked else 'one label'} give {wanted!r}.")
    if len(wanted.replace("1", "").replace("K", "").replace("B", "")) != len(spatial):
        raise GoldenShapeError(f"{source}: map_axes {wanted!r} names a different number of spatial axes from the "
                               f"feature layer's {len(spatial)} {spatial}.")
    for letter, count, what in (("K", labels, "scores"), ("B", batch, "observations")):
        if letter not in wanted and count != 1:
            raise GoldenShapeError(f"{source}: map_axes {wanted!r} has no {letter} axis, but the file holds "
                                   f"{count} {what}.")
    return wanted


def _map_shape(letters: str, spatial: Shape, sizes: dict[str, int]) -> Shape:
    spatial_sizes = iter(spatial)
    return tuple(next(spatial_sizes) if letter in "ST" else sizes[letter] for letter in letters)


def _final_map(declared: Shape, letters: str, feature: Shape, input_spatial: Shape, sizes: dict[str, int],
               source: str) -> Shape:
    """The map is at the feature layer's resolution or resized to the input's."""
    candidates = [_map_shape(letters, feature, sizes)]
    if len(input_spatial) == len(feature):
        candidates.append(_map_shape(letters, input_spatial, sizes))
    if declared in candidates:
        return declared
    raise GoldenShapeError(f"{source}: /map has shape {declared}; with map_axes {letters!r} it must be "
                           f"{' or '.join(str(c) for c in candidates)} (the feature layer's or the input's size).")


def _mask(declared: Shape, reduction: Shape, source: str) -> Shape:
    spatial = reduction[1:]
    allowed = [spatial] + ([(1, *spatial)] if len(spatial) == 1 else [])
    if spatial and declared in allowed:
        return declared
    raise GoldenShapeError(f"{source}: /mask has shape {declared}; it selects positions of the reduction layer's "
                           f"output {reduction}, so it must be {' or '.join(str(a) for a in allowed)}"
                           + ("" if spatial else " - but that output has no spatial axes, so no mask applies")
                           + ".")
