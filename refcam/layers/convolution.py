"""Convolution layers: ``convolution1dLayer``, ``convolution2dLayer``, ``convolution3dLayer``, ``groupedConvolution2dLayer``.

One N-d implementation (:class:`ConvolutionLayer`), thin subclasses per rank.
Cross-correlation, no kernel flip, output channels group-major
(:mod:`refcam.ops.conv`)::

    y[b, f, o] = bias[f] + sum_{c in group(f)} sum_k weights[f, c - g*C/G, k] * x_pad[b, c, o*s + k*d]

Output size per axis (input ``n``, filter ``k``, stride ``s``, dilation ``d``)::

    explicit padding:  out = floor((n + p_begin + p_end - ((k - 1) d + 1)) / s) + 1
    'same':            out = ceil(n / s)   (odd extra padding at the end)
    'causal' (1-D):    p_begin = (k - 1) d, p_end = 0

Parameters (internal layout): ``weights (F, C/G, *k)``, ``bias (F,)`` (optional).
From MATLAB: 2-D ``H x W x C x F`` -> ``transpose(3, 2, 0, 1)``; 1-D ``K x C x F``
-> ``transpose(2, 1, 0)``; 3-D ``H x W x D x C x F`` -> ``transpose(4, 3, 0, 1, 2)``;
grouped 2-D ``H x W x C/G x F/G x G`` -> ``transpose(4, 3, 2, 0, 1)`` then
reshape to ``(F, C/G, H, W)``; bias ``1 x 1 x F`` -> ``(F,)``.

Padding property: ``"same"``, ``"causal"`` (1-D only) or numbers in MATLAB order,
per-axis ``[begin end]`` pairs (``[top bottom left right]`` in 2-D), kept in that
order and converted to the kernels' ``(begins..., ends...)`` at forward time.

Limits (:mod:`refcam.layers.common`): ``filter_size``, ``stride`` and
``dilation_factor`` are integers from 1 to ``MAX_WINDOW_PROPERTY`` (2**16),
padding integers from 0 to it; ``num_filters``, ``num_channels`` and ``groups``
from 1 to ``MAX_OBSERVATION_ELEMENTS`` (2**28). Per observation, the zero-padded
input, the output and the column matrix of one output row ``(C, *k, *O[1:])``
may hold at most ``MAX_OBSERVATION_ELEMENTS`` elements (SizeLimitError).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..autodiff import Tensor
from ..errors import LayerConfigError, LayerShapeError
from ..ops import conv
from .base import Layer, param, register
from .common import (as_array, check_channels, check_elements, check_input_count, check_param_shape,
                     check_rank, constant, describe_owner, forward_padding, int_tuple, matlab_padding,
                     optional_positive_int, padding_text, positive_int, size_text, vector_text,
                     window_output_spatial)


@dataclass(eq=False, kw_only=True)
class ConvolutionLayer(Layer):
    """N-d convolution with ``spatial_rank`` spatial axes (see the module docstring)."""

    filter_size: Any
    num_filters: int
    stride: Any = 1
    dilation_factor: Any = 1
    padding: Any = 0
    num_channels: int | None = None
    groups: Any = 1
    weights: Any = param(default=None)
    bias: Any = param(default=None)

    spatial_rank: ClassVar[int] = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        rank = self.spatial_rank
        self.filter_size = int_tuple(self, "filter_size", self.filter_size, rank)
        self.num_filters = positive_int(self, "num_filters", self.num_filters)
        self.stride = int_tuple(self, "stride", self.stride, rank)
        self.dilation_factor = int_tuple(self, "dilation_factor", self.dilation_factor, rank)
        modes = ("same", "causal") if rank == 1 else ("same",)
        self.padding = matlab_padding(self, self.padding, rank, modes)
        self.num_channels = optional_positive_int(self, "num_channels", self.num_channels)
        self.weights, self.bias = as_array(self, "weights", self.weights), as_array(self, "bias", self.bias)
        self.groups = self._resolved_groups(self.groups)
        if self.num_channels is None and self.weights is not None:
            self.num_channels = int(self.weights.shape[1]) * self.groups if self.weights.ndim > 1 else None
        self._check_groups()
        self._check_params()

    def _resolved_groups(self, groups: Any) -> int:
        if isinstance(groups, str):
            if groups.lower() != "channel-wise":
                raise LayerConfigError(
                    f"{describe_owner(self)}: groups {groups!r} must be a positive integer or 'channel-wise'.")
            if self.num_channels is None:
                raise LayerConfigError(
                    f"{describe_owner(self)}: groups 'channel-wise' needs num_channels (the input "
                    "channel count), which fixes the number of groups.")
            return self.num_channels
        return positive_int(self, "groups", groups)

    def _check_groups(self) -> None:
        if self.num_filters % self.groups:
            raise LayerConfigError(
                f"{describe_owner(self)}: num_filters {self.num_filters} is not divisible by "
                f"groups {self.groups}.")
        if self.num_channels is not None and self.num_channels % self.groups:
            raise LayerConfigError(
                f"{describe_owner(self)}: num_channels {self.num_channels} is not divisible by "
                f"groups {self.groups}.")

    def _check_params(self) -> None:
        per_group = None if self.num_channels is None else self.num_channels // self.groups
        if self.weights is not None:
            check_param_shape(self, "weights", self.weights,
                              (self.num_filters, per_group, *self.filter_size))
        if self.bias is not None:
            check_param_shape(self, "bias", self.bias, (self.num_filters,))

    # -- shapes ---------------------------------------------------------------------
    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """``(F, *O)`` for an input ``(C, *S)``; see the module docstring for ``O``.

        Raises SizeLimitError when the zero-padded input, the output or the
        column matrix of one output row ``(C, *k, *O[1:])`` (the smallest tile
        :mod:`refcam.ops.conv` builds) would hold more than
        ``MAX_OBSERVATION_ELEMENTS`` per observation.
        """
        check_input_count(self, shapes)
        (shape,) = shapes
        check_rank(self, shape, self.spatial_rank)
        check_channels(self, shape[0], self.num_channels)
        if shape[0] % self.groups:
            raise LayerShapeError(
                f"{describe_owner(self)}: the input has {shape[0]} channels, not divisible by "
                f"groups {self.groups}.")
        spatial = window_output_spatial(self, shape, self.filter_size, self.stride,
                                        self.dilation_factor, self.padding)
        check_elements(self, "output", (self.num_filters, *spatial))
        check_elements(self, "column matrix for one output row", (shape[0], *self.filter_size, *spatial[1:]))
        return (self.num_filters, *spatial)

    # -- maths ----------------------------------------------------------------------
    def forward(self, *xs: Tensor) -> Tensor:
        """``conv.conv`` with the padding resolved for ``x``'s spatial shape."""
        (x,) = xs
        self.output_shape(x.shape[1:])
        padding = forward_padding(self.padding, x.shape[2:], self.filter_size, self.stride,
                                  self.dilation_factor)
        bias = None if self.bias is None else constant(self, "bias", x)
        return conv.conv(x, constant(self, "weights", x), bias, stride=self.stride,
                         dilation=self.dilation_factor, padding=padding, groups=self.groups)

    def describe(self) -> str:
        """``8 3x3x1 convolutions with stride [1  1] and padding 'same'`` (grouped: ``2 groups of 128 ...``)."""
        size = self.filter_size
        if self.num_channels is not None:
            size = size + (self.num_channels // self.groups,)
        filters = f"{self.num_filters} {size_text(size)} convolutions"
        if self.groups > 1:
            filters = f"{self.groups} groups of {self.num_filters // self.groups} {size_text(size)} convolutions"
        dilation = ("" if all(d == 1 for d in self.dilation_factor)
                    else f", dilation factor {vector_text(self.dilation_factor)}")
        return (f"{filters} with stride {vector_text(self.stride)}{dilation} "
                f"and padding {padding_text(self.padding)}")


@register
@dataclass(eq=False, kw_only=True)
class Convolution1dLayer(ConvolutionLayer):
    """MATLAB ``convolution1dLayer(filterSize, numFilters)``: 1-D convolution of ``(B, C, T)``.

    ``y[b, f, t] = bias[f] + sum_{c, k} weights[f, c, k] * x_pad[b, c, t*s + k*d]``;
    padding ``"same"``, ``"causal"`` or ``[left right]``.
    """

    kind = "convolution1d"
    type = "1-D Convolution"
    spatial_rank = 1


@register
@dataclass(eq=False, kw_only=True)
class Convolution2dLayer(ConvolutionLayer):
    """MATLAB ``convolution2dLayer(filterSize, numFilters)``: 2-D convolution of ``(B, C, H, W)``.

    ``y[b, f, i, j] = bias[f] + sum_{c, u, v} weights[f, c, u, v] * x_pad[b, c, i*s1 + u*d1, j*s2 + v*d2]``;
    padding ``"same"`` or MATLAB ``[top bottom left right]``.
    """

    kind = "convolution2d"
    type = "2-D Convolution"
    spatial_rank = 2


@register
@dataclass(eq=False, kw_only=True)
class Convolution3dLayer(ConvolutionLayer):
    """MATLAB ``convolution3dLayer(filterSize, numFilters)``: 3-D convolution of ``(B, C, H, W, D)``.

    ``y[b, f, o] = bias[f] + sum_{c, k} weights[f, c, k] * x_pad[b, c, o*s + k*d]`` over three axes;
    padding ``"same"`` or MATLAB ``[top left front; bottom right back]`` given as the 2x3
    nested sequence or its column-major flattening ``[top bottom left right front back]``.
    """

    kind = "convolution3d"
    type = "3-D Convolution"
    spatial_rank = 3


@register
@dataclass(eq=False, kw_only=True)
class GroupedConvolution2dLayer(Convolution2dLayer):
    """MATLAB ``groupedConvolution2dLayer(filterSize, numFiltersPerGroup, numGroups)``.

    ``groups = numGroups`` (or ``"channel-wise"`` = depthwise, ``groups = num_channels``);
    ``num_filters = numFiltersPerGroup * numGroups`` (the total, group-major). Output
    channels ``[g*F/G, (g+1)*F/G)`` see input channels ``[g*C/G, (g+1)*C/G)``.
    MATLAB weights ``H x W x C/G x F/G x G`` -> ``transpose(4, 3, 2, 0, 1)`` and
    reshape to ``(F, C/G, H, W)``.
    """

    kind = "grouped_convolution2d"
    type = "2-D Grouped Convolution"
