"""Normalisation layers: ``batchNormalizationLayer`` (inference form) and ``layerNormalizationLayer``.

Batch normalisation with the trained statistics, per channel (:func:`refcam.ops.normalization.batch_norm`)::

    y[b, c, s] = scale[c] * (x[b, c, s] - trained_mean[c]) / sqrt(trained_variance[c] + epsilon) + offset[c]

Layer normalisation of each observation over the axes ``A`` chosen by
``operation_dimension`` (:func:`refcam.ops.normalization.layer_norm`; biased variance)::

    mu = mean_A(x),  var = mean_A((x - mu)**2)
    y  = scale[c] * (x - mu) / sqrt(var + epsilon) + offset[c]

``operation_dimension`` -> internal axes ``A`` for an input of ``ndim`` axes (B, C, *S):

* ``"channel-only"``: ``(1,)``;
* ``"spatial-channel"``, ``"batch-excluded"``: ``(1, ..., ndim - 1)`` (refcam's
  layout does not tell time from space, so on (B, C, T) both include T; MATLAB's
  "spatial-channel" on a sequence would not);
* ``"auto"`` (default): ``(1,)`` for inputs with at most one spatial/time axis
  (sequences, 1-D images, features), ``(1, ..., ndim - 1)`` for 2-D and 3-D images.

All parameters are ``(C,)``; MATLAB stores ``C x 1`` (or ``1 x 1 x C``) vectors,
which flatten to ``(C,)``. Both maps are smooth (epsilon > 0).

Limits: ``epsilon`` is a finite number > 0 (MATLAB's floor of 1e-5 is not
enforced: imports use less); ``num_channels`` an integer from 1 to
``MAX_OBSERVATION_ELEMENTS`` (2**28) or None; ``operation_dimension`` one of the
names above (case-insensitive).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..autodiff import Tensor
from ..errors import LayerConfigError
from ..ops import normalization
from .base import param, register
from .common import (SameShapeLayer, as_array, check_channels, check_param_shape, choice, constant,
                     describe_owner, finite_float, optional_positive_int)

OPERATION_DIMENSIONS = ("auto", "channel-only", "spatial-channel", "batch-excluded")


@dataclass(eq=False, kw_only=True)
class ChannelParameterLayer(SameShapeLayer):
    """A layer whose parameters are all per-channel vectors ``(C,)`` and whose output has the input's shape."""

    epsilon: float = 1e-5
    num_channels: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.epsilon = finite_float(self, "epsilon", self.epsilon, above=0.0)
        self.num_channels = optional_positive_int(self, "num_channels", self.num_channels)
        for name in self.param_names():
            setattr(self, name, as_array(self, name, getattr(self, name)))
            array = getattr(self, name)
            if array is None:
                continue
            check_param_shape(self, name, array, (self.num_channels,))
            if self.num_channels is None:
                self.num_channels = int(array.shape[0])

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """The input shape ``(C, *S)``; C must equal ``num_channels`` when that is known."""
        shape = super().output_shape(*shapes)
        check_channels(self, shape[0] if shape else None, self.num_channels)
        return shape

    def _channels_text(self) -> str:
        return "" if self.num_channels is None else f" with {self.num_channels} channels"


@register
@dataclass(eq=False, kw_only=True)
class BatchNormalizationLayer(ChannelParameterLayer):
    """MATLAB ``batchNormalizationLayer`` at prediction.

    ``y = scale * (x - trained_mean) / sqrt(trained_variance + epsilon) + offset``, per channel.
    """

    trained_mean: Any = param(default=None)
    trained_variance: Any = param(default=None)
    scale: Any = param(default=None)
    offset: Any = param(default=None)

    kind = "batch_normalization"
    type = "Batch Normalization"

    def __post_init__(self) -> None:
        super().__post_init__()
        variance = self.trained_variance
        if variance is not None and bool((variance + self.epsilon <= 0.0).any()):
            raise LayerConfigError(
                f"{describe_owner(self)}: trained_variance + epsilon must be positive for every channel.")

    def forward(self, *xs: Tensor) -> Tensor:
        """``normalization.batch_norm`` with the stored statistics."""
        (x,) = xs
        self.output_shape(x.shape[1:])
        return normalization.batch_norm(
            x, constant(self, "trained_mean", x), constant(self, "trained_variance", x),
            constant(self, "scale", x), constant(self, "offset", x), epsilon=self.epsilon)

    def describe(self) -> str:
        """``Batch normalization with 8 channels``."""
        return f"Batch normalization{self._channels_text()}"


@register
@dataclass(eq=False, kw_only=True)
class LayerNormalizationLayer(ChannelParameterLayer):
    """MATLAB ``layerNormalizationLayer``.

    ``y = scale * (x - mean_A(x)) / sqrt(var_A(x) + epsilon) + offset`` with ``A`` the axes
    chosen by ``operation_dimension`` (module docstring).
    """

    operation_dimension: str = "auto"
    scale: Any = param(default=None)
    offset: Any = param(default=None)

    kind = "layer_normalization"
    type = "Layer Normalization"

    def __post_init__(self) -> None:
        self.operation_dimension = choice(self, "operation_dimension", self.operation_dimension,
                                          OPERATION_DIMENSIONS)
        super().__post_init__()

    def normalized_axes(self, ndim: int) -> tuple[int, ...]:
        """Internal axes normalised together for an input with ``ndim`` axes (B, C, *S)."""
        every = tuple(range(1, ndim))
        mode = self.operation_dimension
        if mode == "channel-only" or (mode == "auto" and ndim <= 3):
            return (1,)
        return every

    def forward(self, *xs: Tensor) -> Tensor:
        """``normalization.layer_norm`` over :meth:`normalized_axes`."""
        (x,) = xs
        self.output_shape(x.shape[1:])
        return normalization.layer_norm(x, constant(self, "scale", x), constant(self, "offset", x),
                                        axes=self.normalized_axes(x.ndim), epsilon=self.epsilon)

    def describe(self) -> str:
        """``Layer normalization with 8 channels``."""
        return f"Layer normalization{self._channels_text()}"
