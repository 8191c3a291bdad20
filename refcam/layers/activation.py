"""Activation layers: ``reluLayer``, ``leakyReluLayer``, ``clippedReluLayer``, ``softmaxLayer``.

Element-wise on any (B, C, *S) input, output shape = input shape
(:mod:`refcam.ops.activation`; derivative rules at the kinks are stated there)::

    ReLU          y = max(0, x)
    Leaky ReLU    y = x if x > 0 else scale * x        (scale 0.01 by default)
    Clipped ReLU  y = min(max(0, x), ceiling)
    Softmax       y[b, c, s] = exp(x[b, c, s]) / sum_c' exp(x[b, c', s])   (over channels, per position)

``scale`` is any finite number and ``ceiling`` a finite number > 0 (bools,
strings, NaN and Inf raise LayerConfigError).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..autodiff import Tensor
from ..ops import activation
from .base import register
from .common import SameShapeLayer, finite_float, scalar2str


@register
@dataclass(eq=False, kw_only=True)
class ReLULayer(SameShapeLayer):
    """MATLAB ``reluLayer``: ``y = max(0, x)``."""

    kind = "relu"
    type = "ReLU"

    def forward(self, *xs: Tensor) -> Tensor:
        """``max(0, x)``."""
        (x,) = xs
        return activation.relu(x)

    def describe(self) -> str:
        """``ReLU``."""
        return "ReLU"


@register
@dataclass(eq=False, kw_only=True)
class LeakyReLULayer(SameShapeLayer):
    """MATLAB ``leakyReluLayer(scale)``: ``y = x if x > 0 else scale * x`` (scale 0.01)."""

    scale: float = 0.01

    kind = "leaky_relu"
    type = "Leaky ReLU"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.scale = finite_float(self, "scale", self.scale)

    def forward(self, *xs: Tensor) -> Tensor:
        """``x if x > 0 else scale * x``."""
        (x,) = xs
        return activation.leaky_relu(x, scale=self.scale)

    def describe(self) -> str:
        """``Leaky ReLU with scale 0.01``."""
        return f"Leaky ReLU with scale {scalar2str(self.scale)}"


@register
@dataclass(eq=False, kw_only=True)
class ClippedReLULayer(SameShapeLayer):
    """MATLAB ``clippedReluLayer(ceiling)``: ``y = min(max(0, x), ceiling)``, ``ceiling > 0``."""

    ceiling: float

    kind = "clipped_relu"
    type = "Clipped ReLU"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.ceiling = finite_float(self, "ceiling", self.ceiling, above=0.0)

    def forward(self, *xs: Tensor) -> Tensor:
        """``min(max(0, x), ceiling)``."""
        (x,) = xs
        return activation.clipped_relu(x, ceiling=self.ceiling)

    def describe(self) -> str:
        """``Clipped ReLU with ceiling 6``."""
        return f"Clipped ReLU with ceiling {scalar2str(self.ceiling)}"


@register
@dataclass(eq=False, kw_only=True)
class SoftmaxLayer(SameShapeLayer):
    """MATLAB ``softmaxLayer``: softmax over the channel axis, per position.

    ``y[b, c, s] = exp(x[b, c, s]) / sum_c' exp(x[b, c', s])``.
    """

    kind = "softmax"
    type = "Softmax"

    def forward(self, *xs: Tensor) -> Tensor:
        """Softmax along axis 1 (channels)."""
        (x,) = xs
        return activation.softmax(x, axis=1)

    def describe(self) -> str:
        """``softmax``."""
        return "softmax"

