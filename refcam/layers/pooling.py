"""Pooling layers: max, average, global average and global max, each for 1, 2 and 3 spatial axes.

One implementation per family, thin subclasses per rank (:mod:`refcam.ops.pooling`)::

    max pooling      y[b, c, o] = max_{k}  x_pad[b, c, o*s + k]      (padded cells never win)
    average pooling  y[b, c, o] = mean_{k} x_pad[b, c, o*s + k]      (PaddingValue 0: padded cells count
                                                                       as zeros; "mean": they are left out)
    global average   y[b, c, 1, ..., 1] = mean_{s} x[b, c, s]
    global max       y[b, c, 1, ..., 1] = max_{s}  x[b, c, s]

Output size per axis (window ``k``, stride ``s``)::

    explicit padding:  out = floor((n + p_begin + p_end - k) / s) + 1
    'same':            out = ceil(n / s)

MATLAB's default stride is 1 on every axis (not the pool size). Padding: ``"same"``
or numbers in MATLAB order, per-axis ``[begin end]`` pairs (``[top bottom left right]``),
each smaller than the pool size on its axis (as MATLAB requires).

Limits (:mod:`refcam.layers.common`): ``pool_size`` and ``stride`` are integers
from 1 to ``MAX_WINDOW_PROPERTY`` (2**16); the padded input of one observation
holds at most ``MAX_OBSERVATION_ELEMENTS`` (2**28) elements (SizeLimitError).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..autodiff import Tensor
from ..errors import LayerConfigError
from ..ops import pooling
from .base import Layer, register
from .common import (check_input_count, check_rank, describe_owner, forward_padding, int_tuple, is_zero,
                     matlab_padding, padding_text, size_text, vector_text, window_output_spatial)


@dataclass(eq=False, kw_only=True)
class WindowPoolingLayer(Layer):
    """Max or average pooling over a ``pool_size`` window with ``spatial_rank`` spatial axes."""

    pool_size: Any
    stride: Any = 1
    padding: Any = 0

    spatial_rank: ClassVar[int] = 0
    operation: ClassVar[str] = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        rank = self.spatial_rank
        self.pool_size = int_tuple(self, "pool_size", self.pool_size, rank)
        self.stride = int_tuple(self, "stride", self.stride, rank)
        self.padding = matlab_padding(self, self.padding, rank, ("same",))
        if not isinstance(self.padding, str) and any(
                p >= self.pool_size[i // 2] for i, p in enumerate(self.padding)):
            raise LayerConfigError(
                f"{describe_owner(self)}: padding {list(self.padding)} (MATLAB order) must be smaller "
                f"than pool_size {list(self.pool_size)} on every side, or a window could hold only padding.")

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """``(C, *O)`` for an input ``(C, *S)``; see the module docstring for ``O``."""
        check_input_count(self, shapes)
        (shape,) = shapes
        check_rank(self, shape, self.spatial_rank)
        ones = (1,) * self.spatial_rank
        return (shape[0], *window_output_spatial(self, shape, self.pool_size, self.stride, ones,
                                                 self.padding))

    def _window_arguments(self, x: Tensor) -> dict[str, Any]:
        self.output_shape(x.shape[1:])
        ones = (1,) * self.spatial_rank
        padding = forward_padding(self.padding, x.shape[2:], self.pool_size, self.stride, ones)
        return {"kernel": self.pool_size, "stride": self.stride, "padding": padding}

    def describe(self) -> str:
        """``2x2 max pooling with stride [2  2] and padding [0  0  0  0]``."""
        return (f"{size_text(self.pool_size)} {self.operation} pooling with stride "
                f"{vector_text(self.stride)} and padding {padding_text(self.padding)}")


@dataclass(eq=False, kw_only=True)
class MaxPoolingLayer(WindowPoolingLayer):
    """Max pooling: ``y = max over the window``; padded cells never win."""

    operation = "max"

    def forward(self, *xs: Tensor) -> Tensor:
        """``pooling.max_pool`` with the padding resolved for ``x``."""
        (x,) = xs
        return pooling.max_pool(x, **self._window_arguments(x))


@dataclass(eq=False, kw_only=True)
class AveragePoolingLayer(WindowPoolingLayer):
    """Average pooling: ``y = mean over the window``; ``padding_value`` 0 counts padded cells, "mean" does not."""

    padding_value: Any = 0

    operation = "average"

    def __post_init__(self) -> None:
        super().__post_init__()
        value = self.padding_value
        if isinstance(value, str) and value.lower() == "mean":
            self.padding_value = "mean"
        elif is_zero(value):
            self.padding_value = 0
        else:
            raise LayerConfigError(
                f"{describe_owner(self)}: padding_value {value!r} must be 0 or 'mean'.")

    def forward(self, *xs: Tensor) -> Tensor:
        """``pooling.avg_pool``; ``count_include_pad`` is True for padding_value 0, False for 'mean'."""
        (x,) = xs
        return pooling.avg_pool(x, count_include_pad=self.padding_value == 0, **self._window_arguments(x))


@dataclass(eq=False, kw_only=True)
class GlobalPoolingLayer(Layer):
    """Pooling over every spatial (or time) axis: output ``(C, 1, ..., 1)``."""

    spatial_rank: ClassVar[int] = 0
    operation: ClassVar[str] = ""

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int, ...]:
        """``(C, 1, ..., 1)`` for an input ``(C, *S)``."""
        check_input_count(self, shapes)
        (shape,) = shapes
        check_rank(self, shape, self.spatial_rank)
        return (shape[0],) + (1,) * self.spatial_rank

    def describe(self) -> str:
        """``1-D global average pooling``, ``2-D global max pooling``, ... (MATLAB's text)."""
        return f"{self.spatial_rank}-D global {self.operation} pooling"


@dataclass(eq=False, kw_only=True)
class GlobalAveragePoolingLayer(GlobalPoolingLayer):
    """``y[b, c, 1, ..., 1] = mean over s of x[b, c, s]``."""

    operation = "average"

    def forward(self, *xs: Tensor) -> Tensor:
        """``pooling.global_avg_pool``."""
        (x,) = xs
        self.output_shape(x.shape[1:])
        return pooling.global_avg_pool(x)


@dataclass(eq=False, kw_only=True)
class GlobalMaxPoolingLayer(GlobalPoolingLayer):
    """``y[b, c, 1, ..., 1] = max over s of x[b, c, s]``."""

    operation = "max"

    def forward(self, *xs: Tensor) -> Tensor:
        """``pooling.global_max_pool``."""
        (x,) = xs
        self.output_shape(x.shape[1:])
        return pooling.global_max_pool(x)


# --- the MATLAB layers -------------------------------------------------------------
@register
@dataclass(eq=False, kw_only=True)
class MaxPooling1dLayer(MaxPoolingLayer):
    """MATLAB ``maxPooling1dLayer(poolSize)``: ``y[b, c, t] = max_k x_pad[b, c, t*s + k]``."""

    kind = "max_pooling1d"
    type = "1-D Max Pooling"
    spatial_rank = 1


@register
@dataclass(eq=False, kw_only=True)
class MaxPooling2dLayer(MaxPoolingLayer):
    """MATLAB ``maxPooling2dLayer(poolSize)``: ``y[b, c, i, j] = max_{u, v} x_pad[b, c, i*s1 + u, j*s2 + v]``."""

    kind = "max_pooling2d"
    type = "2-D Max Pooling"
    spatial_rank = 2


@register
@dataclass(eq=False, kw_only=True)
class MaxPooling3dLayer(MaxPoolingLayer):
    """MATLAB ``maxPooling3dLayer(poolSize)``: ``y[b, c, o] = max_k x_pad[b, c, o*s + k]`` over three axes."""

    kind = "max_pooling3d"
    type = "3-D Max Pooling"
    spatial_rank = 3


@register
@dataclass(eq=False, kw_only=True)
class AveragePooling1dLayer(AveragePoolingLayer):
    """MATLAB ``averagePooling1dLayer(poolSize)``: ``y[b, c, t] = mean_k x_pad[b, c, t*s + k]``."""

    kind = "average_pooling1d"
    type = "1-D Average Pooling"
    spatial_rank = 1


@register
@dataclass(eq=False, kw_only=True)
class AveragePooling2dLayer(AveragePoolingLayer):
    """MATLAB ``averagePooling2dLayer(poolSize)``: ``y[b, c, i, j] = mean_{u, v} x_pad[b, c, i*s1 + u, j*s2 + v]``."""

    kind = "average_pooling2d"
    type = "2-D Average Pooling"
    spatial_rank = 2


@register
@dataclass(eq=False, kw_only=True)
class AveragePooling3dLayer(AveragePoolingLayer):
    """MATLAB ``averagePooling3dLayer(poolSize)``: ``y[b, c, o] = mean_k x_pad[b, c, o*s + k]`` over three axes."""

    kind = "average_pooling3d"
    type = "3-D Average Pooling"
    spatial_rank = 3


@register
@dataclass(eq=False, kw_only=True)
class GlobalAveragePooling1dLayer(GlobalAveragePoolingLayer):
    """MATLAB ``globalAveragePooling1dLayer``: ``y[b, c, 1] = mean_t x[b, c, t]``."""

    kind = "global_average_pooling1d"
    type = "1-D Global Average Pooling"
    spatial_rank = 1


@register
@dataclass(eq=False, kw_only=True)
class GlobalAveragePooling2dLayer(GlobalAveragePoolingLayer):
    """MATLAB ``globalAveragePooling2dLayer``: ``y[b, c, 1, 1] = mean_{i, j} x[b, c, i, j]``."""

    kind = "global_average_pooling2d"
    type = "2-D Global Average Pooling"
    spatial_rank = 2


@register
@dataclass(eq=False, kw_only=True)
class GlobalAveragePooling3dLayer(GlobalAveragePoolingLayer):
    """MATLAB ``globalAveragePooling3dLayer``: ``y[b, c, 1, 1, 1] = mean_{i, j, k} x[b, c, i, j, k]``."""

    kind = "global_average_pooling3d"
    type = "3-D Global Average Pooling"
    spatial_rank = 3


@register
@dataclass(eq=False, kw_only=True)
class GlobalMaxPooling1dLayer(GlobalMaxPoolingLayer):
    """MATLAB ``globalMaxPooling1dLayer``: ``y[b, c, 1] = max_t x[b, c, t]``."""

    kind = "global_max_pooling1d"
    type = "1-D Global Max Pooling"
    spatial_rank = 1


@register
@dataclass(eq=False, kw_only=True)
class GlobalMaxPooling2dLayer(GlobalMaxPoolingLayer):
    """MATLAB ``globalMaxPooling2dLayer``: ``y[b, c, 1, 1] = max_{i, j} x[b, c, i, j]``."""

    kind = "global_max_pooling2d"
    type = "2-D Global Max Pooling"
    spatial_rank = 2


@register
@dataclass(eq=False, kw_only=True)
class GlobalMaxPooling3dLayer(GlobalMaxPoolingLayer):
    """MATLAB ``globalMaxPooling3dLayer``: ``y[b, c, 1, 1, 1] = max_{i, j, k} x[b, c, i, j, k]``."""

    kind = "global_max_pooling3d"
    type = "3-D Global Max Pooling"
    spatial_rank = 3
