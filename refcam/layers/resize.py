"""Resize layer: MATLAB ``resize2dLayer``/``resize3dLayer``, ONNX ``Resize``, Keras ``UpSampling1D/2D/3D``.

One class for 1, 2 and 3 spatial axes (:class:`ResizeLayer`, kind ``"resize"``),
on :mod:`refcam.ops.resample`::

    out_i = floor(S_i * scale_i)        when scale is given (a free axis stays free)
    out_i = output_size_i               when output_size is given

For output index ``t`` on an axis of input size ``n``, output size ``m`` and
scale ``s`` (the given scale, or ``m / n`` for a given output size), the source
coordinate ``x`` is, per ``geometric_transform_mode``:

    "half-pixel"          x = (t + 0.5) / s - 0.5
    "pytorch-half-pixel"  x = (t + 0.5) / s - 0.5,  0 when m == 1
    "align-corners"       x = t (n - 1) / (m - 1),  0 when m == 1
    "asymmetric"          x = t / s

``method="nearest"`` copies cell ``round(x)`` (``nearest_rounding_mode``
"round-prefer-floor", "round-prefer-ceil", "floor" or "ceil"; clamped to the
input); ``method="linear"`` interpolates between ``floor(x)`` and the next cell
after clamping ``x`` to ``[0, n - 1]`` (bilinear in 2-D, trilinear in 3-D).

Names: the modes are ONNX's (``half_pixel`` -> "half-pixel", ``round_prefer_floor``
-> "round-prefer-floor"; the underscore spellings are accepted). MATLAB's
``Method`` "bilinear" and "trilinear" are accepted for "linear". MATLAB's
``NearestRoundingMode`` "round" is accepted as "round-prefer-ceil" (MATLAB's
ONNX importer maps ONNX ``round_prefer_ceil`` to it, and MATLAB's ``round``
takes ties away from zero, which is up for the coordinates here); its
"onnx-10" is refused: its rule is not documented where refcam could check it.
Equivalents: Keras ``UpSampling2D(size=2, interpolation="nearest")`` is
``scale=(2, 2)``, "asymmetric", "floor" (so is PyTorch ``mode="nearest"``);
PyTorch ``mode="bilinear"``, ``align_corners=False`` is "linear", "half-pixel";
``align_corners=True`` is "linear", "align-corners".

Limits: ``scale`` entries are finite numbers > 0 and at most
``MAX_OBSERVATION_ELEMENTS``; ``output_size`` entries integers from 1 to
``MAX_OBSERVATION_ELEMENTS``; the output of one observation holds at most
``MAX_OBSERVATION_ELEMENTS`` elements (SizeLimitError).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..autodiff import Tensor
from ..errors import LayerConfigError, LayerShapeError
from ..ops import resample
from .base import Layer, register
from .common import (MAX_OBSERVATION_ELEMENTS, check_elements, check_input_count, check_rank, choice,
                     describe_owner, finite_float, int_tuple, scalar2str, vector_text)

ALIASES = {
    "method": {"bilinear": "linear", "trilinear": "linear"},
    "geometric_transform_mode": {mode.replace("-", "_"): mode for mode in resample.GEOMETRIC_TRANSFORM_MODES},
    "nearest_rounding_mode": dict({mode.replace("-", "_"): mode for mode in resample.NEAREST_ROUNDING_MODES},
                                  round="round-prefer-ceil"),
}


def _per_axis(layer: Any, prop: str, value: Any) -> tuple[Any, ...]:
    """The entries of a per-axis property: a list, tuple or 1-D array of 1 to 3 values."""
    is_sequence = isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) == 1
    entries = tuple(value) if is_sequence else ()
    if not 1 <= len(entries) <= 3:
        raise LayerConfigError(
            f"{describe_owner(layer)}: {prop} {value!r} must give one value per spatial axis (1, 2 or 3 "
            "values, e.g. [2, 2]); the number of values sets the number of resized axes.")
    return entries


def _mode(layer: Any, prop: str, value: Any, options: tuple[str, ...]) -> str:
    aliases = ALIASES[prop]
    chosen = choice(layer, prop, value, options + tuple(aliases))
    return aliases.get(chosen, chosen)


@register
@dataclass(eq=False, kw_only=True)
class ResizeLayer(Layer):
    """MATLAB ``resize2dLayer``/``resize3dLayer`` (``Scale`` or ``OutputSize``, ``Method``,
    ``GeometricTransformMode``, ``NearestRoundingMode``); ONNX ``Resize``; 1 to 3 spatial axes.

    Exactly one of ``scale`` (floats > 0) and ``output_size`` (ints >= 1) is
    given, one entry per spatial axis. See the module docstring for the maths.
    """

    scale: Any = None
    output_size: Any = None
    method: str = "nearest"
    geometric_transform_mode: str = "half-pixel"
    nearest_rounding_mode: str = "round-prefer-floor"

    kind = "resize"
    type = "Resize"

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.scale is None) == (self.output_size is None):
            raise LayerConfigError(
                f"{describe_owner(self)}: give exactly one of scale and output_size (got scale {self.scale!r} "
                f"and output_size {self.output_size!r}).")
        if self.scale is not None:
            self.scale = tuple(finite_float(self, "scale", s, above=0.0) for s in _per_axis(self, "scale", self.scale))
            if any(s > MAX_OBSERVATION_ELEMENTS for s in self.scale):
                raise LayerConfigError(
                    f"{describe_owner(self)}: scale {list(self.scale)} must hold numbers <= "
                    f"{MAX_OBSERVATION_ELEMENTS} (refcam's limit, docs/layers.md 'Limits').")
        else:
            sizes = _per_axis(self, "output_size", self.output_size)
            self.output_size = int_tuple(self, "output_size", sizes, len(sizes), 1, MAX_OBSERVATION_ELEMENTS)
        self.method = _mode(self, "method", self.method, resample.METHODS)
        self.geometric_transform_mode = _mode(self, "geometric_transform_mode", self.geometric_transform_mode,
                                              resample.GEOMETRIC_TRANSFORM_MODES)
        if isinstance(self.nearest_rounding_mode, str) and self.nearest_rounding_mode.lower() == "onnx-10":
            raise LayerConfigError(
                f"{describe_owner(self)}: nearest_rounding_mode 'onnx-10' (MATLAB) is not supported: refcam "
                f"does not know its exact rule; use one of {list(resample.NEAREST_ROUNDING_MODES)}.")
        self.nearest_rounding_mode = _mode(self, "nearest_rounding_mode", self.nearest_rounding_mode,
                                           resample.NEAREST_ROUNDING_MODES)

    @property
    def spatial_rank(self) -> int:
        """Number of resized spatial axes: the length of ``scale`` or ``output_size``."""
        return len(self.scale if self.scale is not None else self.output_size)

    # -- shapes ---------------------------------------------------------------------
    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """``(C, *out)``: ``floor(S_i * scale_i)`` (free axes stay free) or ``output_size``.

        Raises LayerShapeError when a scale leaves an axis empty and
        SizeLimitError when the output holds more than ``MAX_OBSERVATION_ELEMENTS``.
        """
        check_input_count(self, shapes)
        (shape,) = shapes
        check_rank(self, shape, self.spatial_rank)
        if self.output_size is not None:
            spatial: tuple[int | None, ...] = self.output_size
        else:
            spatial = tuple(None if n is None else self._scaled(i, n, s)
                            for i, (n, s) in enumerate(zip(shape[1:], self.scale)))
        check_elements(self, "output", (shape[0], *spatial))
        return (shape[0], *spatial)

    def _scaled(self, axis: int, n: int, scale: float) -> int:
        product = n * scale
        if product > MAX_OBSERVATION_ELEMENTS:   # beyond any allowed output; the size check reports it
            return MAX_OBSERVATION_ELEMENTS + 1
        size = int(math.floor(product))
        if size < 1:
            raise LayerShapeError(
                f"{describe_owner(self)}: spatial axis {axis} of the input has size {n}, and scale {scale} "
                f"gives floor({n} * {scale}) = {size} output cells; use a larger scale or input.")
        return size

    # -- maths ----------------------------------------------------------------------
    def forward(self, *xs: Tensor) -> Tensor:
        """``resample.resize`` to the output size of ``x``'s spatial shape."""
        (x,) = xs
        out = self.output_shape(x.shape[1:])
        return resample.resize(x, out[1:], scale=self.scale, method=self.method,
                               geometric_transform_mode=self.geometric_transform_mode,
                               nearest_rounding_mode=self.nearest_rounding_mode)

    def describe(self) -> str:
        """``Resize with scale [2  2], method 'nearest', geometric transform mode 'half-pixel' ...``."""
        if self.scale is not None:
            values = [scalar2str(s) for s in self.scale]
            target = "with scale " + (values[0] if len(values) == 1 else f"[{'  '.join(values)}]")
        else:
            target = f"to output size {vector_text(self.output_size)}"
        rounding = (f" and nearest rounding mode '{self.nearest_rounding_mode}'"
                    if self.method == "nearest" else "")
        return (f"Resize {target}, method '{self.method}', geometric transform mode "
                f"'{self.geometric_transform_mode}'{rounding}")
