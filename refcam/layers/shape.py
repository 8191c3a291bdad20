"""Layers that rearrange, select or reduce cells: channel shuffle, channel slice, reduce, cropping.

All take one ``(B, C, *S)`` Tensor and call :mod:`refcam.ops.shape` or
:mod:`refcam.ops.reduce`; an observation is ``(C, S_1, ..., S_N)``::

    ChannelShuffle  y[:, j * g + i] = x[:, i * (C / g) + j]      g = groups, divides C
                                                          (ShuffleNet; PyTorch nn.ChannelShuffle)
    ChannelSlice    y = x[:, start:stop]                         0-based, stop exclusive, stop <= C
                                                          (ONNX Slice/Split on channels, torch.chunk)
    Reduce          y = mean or max over the observation axes ``axes`` (0 = channels, 1..N = spatial),
                    each kept with size 1               (ONNX ReduceMean/ReduceMax keepdims=1,
                                                          torch.mean/torch.amax keepdim=True)
    Cropping        y = x[:, :, b_1 : S_1 - e_1, ..., b_N : S_N - e_N],  out_i = S_i - b_i - e_i >= 1
                                                          (Keras Cropping1D/2D/3D)

MATLAB has no channel shuffle, channel slice or reduce layer. Its
``crop2dLayer``/``crop3dLayer`` crop to the size of a second, reference input
(centred or at a given location); :class:`CroppingLayer` is the one-input form
with explicit amounts, in refcam's internal order ``(begins..., ends...)`` like
:class:`~refcam.layers.PaddingLayer`.

Rules at non-differentiable points: all are linear except reduce-max, whose
gradient is split evenly among tied maxima (``torch.amax``; see
:mod:`refcam.ops.reduce`, which also says why global max pooling differs).

Validation: ``groups`` is a count (1 to ``MAX_OBSERVATION_ELEMENTS``);
``start`` an integer from 0 and ``stop`` from 1 to ``MAX_OBSERVATION_ELEMENTS``
with ``start < stop``; ``axes`` one or more distinct integers from 0 to
``MAX_WINDOW_PROPERTY`` (stored sorted); ``cropping`` 2N integers from 0 to
``MAX_WINDOW_PROPERTY``. What depends on the input (``groups`` divides C,
``stop <= C``, every axis exists, a cropped axis keeps a cell) is checked by
``output_shape`` (LayerShapeError); a free axis (None) stays free and is
checked by ``forward`` against the real size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..autodiff import Tensor
from ..errors import LayerConfigError, LayerShapeError
from ..ops import shape as shape_ops
from ..ops.reduce import REDUCTIONS
from .base import Layer, register
from .common import (MAX_OBSERVATION_ELEMENTS, MAX_WINDOW_PROPERTY, check_input_count, check_rank, choice,
                     describe_owner, int_tuple, matlab_padding_from_internal, padding_text, positive_int,
                     vector_text)


def _single_shape(layer: Layer, shapes: tuple[tuple[int | None, ...], ...]) -> tuple[int | None, ...]:
    """The one input shape ``(C, *S)``, or LayerShapeError."""
    check_input_count(layer, shapes)
    shape = tuple(shapes[0])
    if not shape:
        raise LayerShapeError(f"{describe_owner(layer)} expects a per-observation input (C, *S); found shape ().")
    return shape


@register
@dataclass(eq=False, kw_only=True)
class ChannelShuffleLayer(Layer):
    """ShuffleNet's channel shuffle with ``groups`` groups (MATLAB has none; PyTorch ``nn.ChannelShuffle``).

    ``y[:, j * groups + i] = x[:, i * (C / groups) + j]``: reshape to
    ``(groups, C / groups, *S)``, swap the first two axes, reshape back.
    """

    groups: Any

    kind = "channel_shuffle"
    type = "Channel Shuffle"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.groups = positive_int(self, "groups", self.groups)

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """The input shape; ``groups`` must divide its channels."""
        shape = _single_shape(self, shapes)
        channels = shape[0]
        if channels is not None and channels % self.groups:
            raise LayerShapeError(
                f"{describe_owner(self)}: {self.groups} groups do not divide the {channels} channels of its "
                f"input of shape {shape}; the number of channels must be a multiple of groups.")
        return shape

    def forward(self, *xs: Tensor) -> Tensor:
        """``shape.channel_shuffle(x, groups)``."""
        (x,) = xs
        self.output_shape(x.shape[1:])
        return shape_ops.channel_shuffle(x, self.groups)

    def describe(self) -> str:
        """``Channel shuffle with 4 groups``."""
        return f"Channel shuffle with {self.groups} groups"


@register
@dataclass(eq=False, kw_only=True)
class ChannelSliceLayer(Layer):
    """Channels ``start`` to ``stop - 1`` (0-based; MATLAB has none; ONNX Slice/Split on channels, ``torch.chunk``).

    ``y = x[:, start:stop]``. ``describe()`` numbers channels from 1 like
    MATLAB: ``ChannelSliceLayer(start=2, stop=4)`` is ``Channels 3 to 4``.
    """

    start: Any
    stop: Any

    kind = "channel_slice"
    type = "Channel Slice"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.start = int_tuple(self, "start", self.start, 1, 0, MAX_OBSERVATION_ELEMENTS)[0]
        self.stop = positive_int(self, "stop", self.stop)
        if self.start >= self.stop:
            raise LayerConfigError(
                f"{describe_owner(self)}: start {self.start} must be smaller than stop {self.stop} "
                "(0-based channels start..stop-1; at least one channel).")

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """``(stop - start, *S)``; ``stop`` must not exceed the input's channels."""
        shape = _single_shape(self, shapes)
        channels = shape[0]
        if channels is not None and self.stop > channels:
            raise LayerShapeError(
                f"{describe_owner(self)} takes channels {self.start}:{self.stop} (0-based, stop exclusive) of "
                f"an input of shape {shape} with {channels} channels; stop must be at most {channels}.")
        return (self.stop - self.start, *shape[1:])

    def forward(self, *xs: Tensor) -> Tensor:
        """``shape.channel_slice(x, start, stop)``."""
        (x,) = xs
        self.output_shape(x.shape[1:])
        return shape_ops.channel_slice(x, self.start, self.stop)

    def describe(self) -> str:
        """``Channels 3 to 4`` (1-based, inclusive, like MATLAB indexing)."""
        return f"Channels {self.start + 1} to {self.stop}"


@register
@dataclass(eq=False, kw_only=True)
class ReduceLayer(Layer):
    """Mean or maximum over observation ``axes``, kept with size 1 (MATLAB has none; ONNX ReduceMean/ReduceMax).

    ``axes`` count from 0 = channels, 1..N = spatial axes of the observation
    ``(C, *S)`` (the batch is never reduced). ``ReduceLayer(operation="mean",
    axes=(1, 2))`` on ``(C, H, W)`` is a global average pooling; with
    ``operation="max"`` ties share the gradient evenly (``torch.amax``), unlike
    :class:`~refcam.layers.GlobalMaxPooling2dLayer` (first maximum).
    """

    operation: str = "mean"
    axes: Any

    kind = "reduce"
    type = "Reduce"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.operation = choice(self, "operation", self.operation, tuple(REDUCTIONS))
        listed = isinstance(self.axes, (tuple, list)) or getattr(self.axes, "ndim", 0) >= 1
        entries = tuple(self.axes) if listed else (self.axes,)
        axes = int_tuple(self, "axes", entries, len(entries), 0, MAX_WINDOW_PROPERTY)
        if not axes or len(set(axes)) != len(axes):
            raise LayerConfigError(
                f"{describe_owner(self)}: axes {self.axes!r} must be one or more distinct observation axes "
                "(0 = channels, 1..N = spatial).")
        self.axes = tuple(sorted(axes))

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """The input shape with every axis in ``axes`` set to 1."""
        shape = _single_shape(self, shapes)
        if self.axes[-1] >= len(shape):
            raise LayerShapeError(
                f"{describe_owner(self)} reduces observation axes {list(self.axes)} (0 = channels) of an input "
                f"of shape {shape}, which has axes 0 to {len(shape) - 1} only.")
        return tuple(1 if axis in self.axes else n for axis, n in enumerate(shape))

    def forward(self, *xs: Tensor) -> Tensor:
        """``reduce.reduce_mean`` or ``reduce.reduce_max`` over tensor axes ``axes + 1``."""
        (x,) = xs
        self.output_shape(x.shape[1:])
        return REDUCTIONS[self.operation](x, tuple(axis + 1 for axis in self.axes))

    def describe(self) -> str:
        """``Mean over spatial axes [1  2]``, ``Max over channels``, ``Mean over channels and spatial axis 1``."""
        spatial = [axis for axis in self.axes if axis > 0]
        parts = ["channels"] if 0 in self.axes else []
        if spatial:
            parts.append(f"spatial axis {spatial[0]}" if len(spatial) == 1 else f"spatial axes {vector_text(spatial)}")
        return f"{self.operation.capitalize()} over {' and '.join(parts)}"


@register
@dataclass(eq=False, kw_only=True)
class CroppingLayer(Layer):
    """Crop ``cropping = (begins..., ends...)`` cells off the spatial axes (Keras ``Cropping1D/2D/3D``).

    MATLAB's ``crop2dLayer``/``crop3dLayer`` take a second input whose size the
    output takes; this is the one-input form with explicit amounts. Keras
    ``Cropping2D(((1, 2), (3, 4)))`` is ``CroppingLayer(cropping=(1, 3, 2, 4))``.
    """

    cropping: Any

    kind = "cropping"
    type = "Cropping"

    def __post_init__(self) -> None:
        super().__post_init__()
        cropping = tuple(self.cropping) if isinstance(self.cropping, (tuple, list)) else (self.cropping,)
        if not cropping or len(cropping) % 2:
            raise LayerConfigError(
                f"{describe_owner(self)}: cropping {self.cropping!r} must hold 2N integers "
                "(begins..., ends...) for N spatial axes.")
        self.cropping = int_tuple(self, "cropping", cropping, len(cropping), 0)

    @property
    def spatial_rank(self) -> int:
        """Number of cropped spatial axes."""
        return len(self.cropping) // 2

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """``(C, S_1 - begin_1 - end_1, ...)``; a free axis (None) stays free."""
        check_input_count(self, shapes)
        (shape,) = shapes
        rank = self.spatial_rank
        check_rank(self, shape, rank)
        spatial = tuple(None if n is None else n - self.cropping[i] - self.cropping[rank + i]
                        for i, n in enumerate(shape[1:]))
        if any(n is not None and n < 1 for n in spatial):
            raise LayerShapeError(
                f"{describe_owner(self)}: cropping {list(self.cropping)} (begins..., ends...) of an input of "
                f"shape {tuple(shape)} would leave spatial shape {spatial}; every axis must keep at least "
                "one cell. Crop less.")
        return (shape[0], *spatial)

    def forward(self, *xs: Tensor) -> Tensor:
        """``shape.crop(x, cropping)``."""
        (x,) = xs
        self.output_shape(x.shape[1:])
        return shape_ops.crop(x, self.cropping)

    def describe(self) -> str:
        """``Cropping [1  2  3  4]`` (per-axis ``[begin end]``, MATLAB's order, like the padding layer)."""
        return f"Cropping {padding_text(matlab_padding_from_internal(self.cropping))}"
