"""Activation layers: ``reluLayer``, ``leakyReluLayer``, ``clippedReluLayer``, ``softmaxLayer``,
``swishLayer``, ``geluLayer``.

Element-wise on any (B, C, *S) input, output shape = input shape
(:mod:`refcam.ops.activation`; derivative rules at the kinks are stated there)::

    ReLU          y = max(0, x)
    Leaky ReLU    y = x if x > 0 else scale * x        (scale 0.01 by default)
    Clipped ReLU  y = min(max(0, x), ceiling)
    Softmax       y[b, c, s] = exp(x[b, c, s]) / sum_c' exp(x[b, c', s])   (over channels, per position)
    Swish         y = x / (1 + exp(-x))                (PyTorch SiLU, Keras swish/silu)
    GELU          y = x (1 + erf(x / sqrt 2)) / 2      (approximation "none", the default)
                  y = x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2   (approximation "tanh")

``scale`` is any finite number and ``ceiling`` a finite number > 0 (bools,
strings, NaN and Inf raise LayerConfigError); ``approximation`` is "none" or
"tanh" (case-insensitive, stored lower-case). The hard sigmoid, hard swish and
erf layers, which MATLAB lacks, are in :mod:`refcam.layers.extra`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..autodiff import Tensor
from ..ops import activation
from .base import register
from .common import SameShapeLayer, choice, finite_float, scalar2str


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


@register
@dataclass(eq=False, kw_only=True)
class SwishLayer(SameShapeLayer):
    """MATLAB ``swishLayer``: ``y = x * sigmoid(x) = x / (1 + exp(-x))``.

    The same function as PyTorch ``nn.SiLU``, Keras ``swish``/``silu`` and ONNX
    ``Sigmoid`` followed by ``Mul``. No properties.
    """

    kind = "swish"
    type = "Swish"

    def forward(self, *xs: Tensor) -> Tensor:
        """``activation.swish(x)``."""
        (x,) = xs
        return activation.swish(x)

    def describe(self) -> str:
        """``swish``."""
        return "swish"


@register
@dataclass(eq=False, kw_only=True)
class GELULayer(SameShapeLayer):
    """MATLAB ``geluLayer(Approximation=...)``: ``y = x Phi(x)``, ``Phi`` the standard normal CDF.

    ``approximation``: "none" (default; ``Phi(x) = (1 + erf(x / sqrt 2)) / 2``,
    PyTorch ``nn.GELU()``, ONNX ``Gelu``, Keras ``gelu(approximate=False)``) or
    "tanh" (``Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2``, PyTorch
    ``nn.GELU(approximate="tanh")``, ONNX ``Gelu(approximate="tanh")``, Keras
    ``gelu(approximate=True)``).
    """

    approximation: str = "none"

    kind = "gelu"
    type = "GELU"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.approximation = choice(self, "approximation", self.approximation, activation.GELU_APPROXIMATIONS)

    def forward(self, *xs: Tensor) -> Tensor:
        """``activation.gelu(x, approximation)``."""
        (x,) = xs
        return activation.gelu(x, approximation=self.approximation)

    def describe(self) -> str:
        """``GELU``, or ``GELU with tanh approximation``."""
        return "GELU" if self.approximation == "none" else "GELU with tanh approximation"
