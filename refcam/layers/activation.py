"""Activation layers: ``reluLayer``, ``leakyReluLayer``, ``clippedReluLayer``, ``softmaxLayer``.

Element-wise on any (B, C, *S) input, output shape = input shape
(:mod:`refcam.ops.activation`; derivative rules at the kinks are stated there)::

    ReLU          y = max(0, x)
    Leaky ReLU    y = x if x > 0 else scale * x        (scale 0.01 by default)
    Clipped ReLU  y = min(max(0, x), ceiling)
    Softmax       y[b, c, s] = exp(x[b, c, s]) / sum_c' exp(x[b, c', s])   (over channels, per position)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..autodiff import Tensor
from ..errors import LayerConfigError
from ..ops import activation
from .base import register
from .common import SameShapeLayer, describe_owner, scalar2str


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
        self.scale = _finite_float(self, "scale", self.scale)

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
        self.ceiling = _finite_float(self, "ceiling", self.ceiling)
        if not self.ceiling > 0.0:
            raise LayerConfigError(f"{describe_owner(self)}: ceiling {self.ceiling!r} must be positive.")

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


def _finite_float(layer: SameShapeLayer, prop: str, value: object) -> float:
    """``value`` as a finite Python float, or a LayerConfigError."""
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise LayerConfigError(f"{describe_owner(layer)}: {prop} {value!r} must be a finite number.")
    return number
