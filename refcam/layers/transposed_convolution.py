"""Transposed convolution layers: ``transposedConv1dLayer``, ``transposedConv2dLayer``, ``transposedConv3dLayer``.

One N-d implementation (:class:`TransposedConvolutionLayer`), thin subclasses
per rank, on :mod:`refcam.ops.conv_transpose` (the adjoint of a convolution in
its input)::

    full[b, f, o s + k d] += weights[c, f, k] * x[b, c, o]
    y[b, f, t] = bias[f] + full[b, f, t + crop_begin]        (0 beyond the full output)

Output size per axis (input ``n``, filter ``k``, stride ``s``, dilation ``d``)::

    out = (n - 1) s + (k - 1) d + 1 - crop_begin - crop_end + output_padding
    'same' cropping:  out = n s   (total crop (k - 1) d + 1 - s, the odd cell at the beginning)

Parameters (internal layout, PyTorch's and ONNX's): ``weights (C, F, *k)``,
``bias (F,)`` (optional). From MATLAB (``h x w x F x C``, filters before
channels): 1-D ``K x F x C`` -> ``transpose(2, 1, 0)``; 2-D ``H x W x F x C`` ->
``transpose(3, 2, 0, 1)``; 3-D ``H x W x D x F x C`` -> ``transpose(4, 3, 0, 1, 2)``;
bias ``1 x 1 x F`` -> ``(F,)``.

Cropping property: ``"same"`` (MATLAB's ``CroppingMode`` 'same'; needs
``(k - 1) d + 1 >= s`` on every axis) or numbers in refcam's internal order
``(begins..., ends...)`` (ONNX ``pads``, PyTorch ``padding`` on both sides):
one number (every side), N (symmetric per axis: MATLAB's ``[a b]``), 2N, or
the 2xN nested ``[[begins], [ends]]`` (MATLAB's 3-D ``[t l f; b r k]``). In
2-D MATLAB's four numbers are ``[t b l r]``: give ``internal_padding([t, b, l, r])``.
``output_padding`` (N numbers, default 0) is PyTorch's, ONNX's and Keras's
(MATLAB has none). ``dilation`` (default 1) spaces the kernel taps.

"same" crops ``ceil(total / 2)`` at the beginning and ``floor(total / 2)`` at
the end, the extra cell at the top (left, front), as MATLAB's
``transposedConv2dLayer`` documentation describes it; this rule is not checked
against MATLAB output (PyTorch has no 'same' here; Keras and ONNX
``SAME_UPPER`` put the extra cell at the end, so their importers give numbers).

Limits (:mod:`refcam.layers.common`): ``filter_size``, ``stride`` and
``dilation`` are integers from 1 to ``MAX_WINDOW_PROPERTY`` (2**16), cropping
and ``output_padding`` from 0 to it; ``num_filters`` and ``num_channels`` from
1 to ``MAX_OBSERVATION_ELEMENTS`` (2**28). Per observation, the output, the
full output ``(F, *L)`` and the column matrix of one input row
``(F, *k, *S[1:])`` may hold at most ``MAX_OBSERVATION_ELEMENTS`` elements
(SizeLimitError).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..autodiff import Tensor
from ..errors import LayerConfigError, LayerShapeError
from ..ops import conv_transpose
from ..ops.padding import effective_kernel
from .base import Layer, param, register
from .common import (as_array, check_channels, check_elements, check_input_count, check_param_shape, check_rank,
                     constant, describe_owner, int_tuple, matlab_padding_from_internal, optional_positive_int,
                     padding_text, positive_int, size_text, vector_text)


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (tuple, list)) or getattr(value, "ndim", 0) >= 1


def transposed_cropping(layer: Any, value: Any, rank: int) -> str | tuple[int, ...]:
    """A cropping property as ``"same"`` or ``2 * rank`` ints ``(begins..., ends...)`` in ``[0, 2**16]``.

    >>> transposed_cropping(None, 1, 2), transposed_cropping(None, [1, 2], 2), transposed_cropping(None, [[1, 2], [3, 4]], 2)
    ((1, 1, 1, 1), (1, 2, 1, 2), (1, 2, 3, 4))
    """
    if isinstance(value, str):
        if value.lower() != "same":
            raise LayerConfigError(f"{describe_owner(layer)}: cropping {value!r} is not 'same' or numbers.")
        return "same"
    if not _is_sequence(value):
        return int_tuple(layer, "cropping", value, 2 * rank, 0)
    rows = tuple(value)
    if len(rows) == 2 and all(_is_sequence(row) for row in rows):
        return int_tuple(layer, "cropping", rows[0], rank, 0) + int_tuple(layer, "cropping", rows[1], rank, 0)
    if len(rows) == rank:
        return int_tuple(layer, "cropping", rows, rank, 0) * 2
    return int_tuple(layer, "cropping", rows, 2 * rank, 0)


@dataclass(eq=False, kw_only=True)
class TransposedConvolutionLayer(Layer):
    """N-d transposed convolution with ``spatial_rank`` spatial axes (see the module docstring)."""

    filter_size: Any
    num_filters: int
    stride: Any = 1
    dilation: Any = 1
    cropping: Any = 0
    output_padding: Any = 0
    num_channels: int | None = None
    weights: Any = param(default=None)
    bias: Any = param(default=None)

    spatial_rank: ClassVar[int] = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        rank = self.spatial_rank
        self.filter_size = int_tuple(self, "filter_size", self.filter_size, rank)
        self.num_filters = positive_int(self, "num_filters", self.num_filters)
        self.stride = int_tuple(self, "stride", self.stride, rank)
        self.dilation = int_tuple(self, "dilation", self.dilation, rank)
        self.cropping = transposed_cropping(self, self.cropping, rank)
        self.output_padding = int_tuple(self, "output_padding", self.output_padding, rank, 0)
        self.num_channels = optional_positive_int(self, "num_channels", self.num_channels)
        self.weights, self.bias = as_array(self, "weights", self.weights), as_array(self, "bias", self.bias)
        if self.num_channels is None and self.weights is not None and self.weights.ndim > 0:
            self.num_channels = int(self.weights.shape[0])
        if self.cropping == "same":
            extents = tuple(effective_kernel(k, d) for k, d in zip(self.filter_size, self.dilation))
            if any(e < s for e, s in zip(extents, self.stride)):
                raise LayerConfigError(
                    f"{describe_owner(self)}: cropping 'same' needs a filter extent (k - 1) d + 1 of at least "
                    f"the stride on every axis; the extents are {extents} and the stride {self.stride}. Give "
                    "the cropping as numbers (and output_padding for the missing cells).")
        if self.weights is not None:
            check_param_shape(self, "weights", self.weights, (self.num_channels, self.num_filters, *self.filter_size))
        if self.bias is not None:
            check_param_shape(self, "bias", self.bias, (self.num_filters,))

    def internal_cropping(self) -> tuple[int, ...]:
        """The cropping as ``(begins..., ends...)``; 'same' crops ``(k - 1) d + 1 - s``, the odd cell first."""
        if self.cropping != "same":
            return self.cropping
        totals = [effective_kernel(k, d) - s for k, d, s in zip(self.filter_size, self.dilation, self.stride)]
        return tuple(t - t // 2 for t in totals) + tuple(t // 2 for t in totals)

    # -- shapes ---------------------------------------------------------------------
    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """``(F, *O)`` for an input ``(C, *S)``; see the module docstring for ``O``.

        Raises LayerShapeError when the cropping removes every computed cell
        of an axis, and SizeLimitError when the output, the full output or the
        column matrix of one input row would hold more than
        ``MAX_OBSERVATION_ELEMENTS`` per observation.
        """
        check_input_count(self, shapes)
        (shape,) = shapes
        check_rank(self, shape, self.spatial_rank)
        check_channels(self, shape[0], self.num_channels)
        rank, cropping = self.spatial_rank, self.internal_cropping()
        out: list[int | None] = []
        full: list[int | None] = []
        for a, n in enumerate(shape[1:]):
            if n is None:
                out.append(None)
                full.append(None)
                continue
            length = conv_transpose.full_length(n, self.filter_size[a], self.stride[a], self.dilation[a])
            begin, end, extra = cropping[a], cropping[rank + a], self.output_padding[a]
            if length - begin - max(end - extra, 0) < 1:
                raise LayerShapeError(
                    f"{describe_owner(self)}: on spatial axis {a} the input of size {n} gives a full output of "
                    f"{length} cells, and cropping {begin} + {end} (output padding {extra}) removes all of "
                    f"them; found input spatial shape {tuple(shape[1:])}.")
            out.append(length - begin - end + extra)
            full.append(length)
        check_elements(self, "output", (self.num_filters, *out))
        check_elements(self, "full output before cropping", (self.num_filters, *full))
        check_elements(self, "column matrix for one input row", (self.num_filters, *self.filter_size, *shape[2:]))
        return (self.num_filters, *out)

    # -- maths ----------------------------------------------------------------------
    def forward(self, *xs: Tensor) -> Tensor:
        """``conv_transpose.conv_transpose`` with the cropping resolved."""
        (x,) = xs
        self.output_shape(x.shape[1:])
        bias = None if self.bias is None else constant(self, "bias", x)
        return conv_transpose.conv_transpose(x, constant(self, "weights", x), bias, stride=self.stride,
                                             dilation=self.dilation, cropping=self.internal_cropping(),
                                             output_padding=self.output_padding)

    def describe(self) -> str:
        """``8 3x3x1 transposed convolutions with stride [2  2] and cropping 'same'``."""
        size = self.filter_size + (() if self.num_channels is None else (self.num_channels,))
        dilation = "" if all(d == 1 for d in self.dilation) else f", dilation {vector_text(self.dilation)}"
        extra = ("" if not any(self.output_padding)
                 else f", output padding {vector_text(self.output_padding)}")
        cropping = self.cropping if self.cropping == "same" else matlab_padding_from_internal(self.cropping)
        return (f"{self.num_filters} {size_text(size)} transposed convolutions with stride "
                f"{vector_text(self.stride)}{dilation}{extra} and cropping {padding_text(cropping)}")


@register
@dataclass(eq=False, kw_only=True)
class TransposedConvolution1dLayer(TransposedConvolutionLayer):
    """MATLAB ``transposedConv1dLayer(filterSize, numFilters)``: 1-D transposed convolution of ``(B, C, T)``.

    ``full[b, f, t*s + k*d] += weights[c, f, k] * x[b, c, t]``; cropping ``"same"`` or ``[left right]``.
    MATLAB weights ``K x F x C`` -> ``transpose(2, 1, 0)``.
    """

    kind = "transposed_convolution1d"
    type = "1-D Transposed Convolution"
    spatial_rank = 1


@register
@dataclass(eq=False, kw_only=True)
class TransposedConvolution2dLayer(TransposedConvolutionLayer):
    """MATLAB ``transposedConv2dLayer(filterSize, numFilters)``: 2-D transposed convolution of ``(B, C, H, W)``.

    ``full[b, f, i*s1 + u*d1, j*s2 + v*d2] += weights[c, f, u, v] * x[b, c, i, j]``; cropping ``"same"``
    or internal ``(top, left, bottom, right)``. MATLAB weights ``H x W x F x C`` -> ``transpose(3, 2, 0, 1)``.
    """

    kind = "transposed_convolution2d"
    type = "2-D Transposed Convolution"
    spatial_rank = 2


@register
@dataclass(eq=False, kw_only=True)
class TransposedConvolution3dLayer(TransposedConvolutionLayer):
    """MATLAB ``transposedConv3dLayer(filterSize, numFilters)``: 3-D transposed convolution of ``(B, C, H, W, D)``.

    ``full[b, f, o*s + k*d] += weights[c, f, k] * x[b, c, o]`` over three axes; cropping ``"same"`` or
    internal ``(top, left, front, bottom, right, back)``. MATLAB weights ``H x W x D x F x C`` ->
    ``transpose(4, 3, 0, 1, 2)``.
    """

    kind = "transposed_convolution3d"
    type = "3-D Transposed Convolution"
    spatial_rank = 3
