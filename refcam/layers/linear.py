"""``fullyConnectedLayer``, ``flattenLayer`` and ``dropoutLayer``.

Flatten (:func:`refcam.ops.linear.flatten`): an observation ``(C, *S)`` becomes a
vector of ``C * prod(S)`` entries. MATLAB's order (``"matlab"``) is column-major
over ``(S..., C)``: for ``h x w x c`` the first spatial index varies fastest,
then the next, channel last. Importers set ``"row-major"`` (PyTorch, over
``(C, S...)``) or ``"channels-last"`` (Keras, row-major over ``(S..., C)``).

Fully connected (:func:`refcam.ops.linear.fully_connected`)::

    y[b, o] = sum_i weights[o, i] * flatten(x)[b, i] + bias[o]

``weights`` is ``(OutputSize, InputSize)``, the same as MATLAB's; ``bias`` is
``(OutputSize,)`` (MATLAB ``OutputSize x 1``). The output of one observation is
``(OutputSize,)``.

Dropout at prediction is the identity: ``y = x`` (the mask and the ``1/(1-p)``
scaling apply only in training).

Limits: ``output_size`` and ``input_size`` are integers from 1 to
``MAX_OBSERVATION_ELEMENTS`` (2**28); ``probability`` a finite number in [0, 1);
the orders are names from ``FLATTEN_ORDERS`` (case-insensitive).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..autodiff import Tensor
from ..errors import LayerShapeError
from ..ops import linear
from ..ops.linear import FLATTEN_ORDERS
from .base import Layer, param, register
from .common import (SameShapeLayer, as_array, check_input_count, check_param_shape, choice, constant,
                     describe_owner, finite_float, optional_positive_int, positive_int, scalar2str)


@dataclass(eq=False, kw_only=True)
class FlatteningLayer(Layer):
    """A layer that flattens a ``(C, *S)`` observation in ``flatten_order``."""

    def _check_order(self, prop: str, order: str) -> str:
        return choice(self, prop, order, FLATTEN_ORDERS)

    def flattened_size(self, shape: tuple[int | None, ...]) -> int:
        """``C * prod(S)`` of an observation ``(C, *S)``; a free (None) axis cannot be flattened."""
        if not shape or any(n is None for n in shape):
            raise LayerShapeError(
                f"{describe_owner(self)} cannot flatten an observation of shape {tuple(shape)}: every "
                "axis needs a fixed size (a sequence's time axis has none).")
        return math.prod(shape)


@register
@dataclass(eq=False, kw_only=True)
class FlattenLayer(FlatteningLayer):
    """MATLAB ``flattenLayer``: ``(C, *S) -> (C * prod(S),)``, column-major over ``(S..., C)`` by default."""

    order: str = "matlab"

    kind = "flatten"
    type = "Flatten"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.order = self._check_order("order", self.order)

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int, ...]:
        """``(C * prod(S),)``."""
        check_input_count(self, shapes)
        return (self.flattened_size(tuple(shapes[0])),)

    def forward(self, *xs: Tensor) -> Tensor:
        """``linear.flatten(x, order)``."""
        (x,) = xs
        return linear.flatten(x, self.order)

    def describe(self) -> str:
        """``Flatten``."""
        return "Flatten"


@register
@dataclass(eq=False, kw_only=True)
class FullyConnectedLayer(FlatteningLayer):
    """MATLAB ``fullyConnectedLayer(outputSize)``: ``y = weights @ flatten(x) + bias``.

    ``weights (output_size, input_size)``, ``bias (output_size,)``; a spatial input
    is flattened in ``flatten_order`` ("matlab": column-major over ``(S..., C)``).
    """

    output_size: int
    input_size: int | None = None
    flatten_order: str = "matlab"
    weights: Any = param(default=None)
    bias: Any = param(default=None)

    kind = "fully_connected"
    type = "Fully Connected"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.output_size = positive_int(self, "output_size", self.output_size)
        self.input_size = optional_positive_int(self, "input_size", self.input_size)
        self.flatten_order = self._check_order("flatten_order", self.flatten_order)
        self.weights, self.bias = as_array(self, "weights", self.weights), as_array(self, "bias", self.bias)
        if self.weights is not None:
            check_param_shape(self, "weights", self.weights, (self.output_size, self.input_size))
            self.input_size = int(self.weights.shape[1])
        if self.bias is not None:
            check_param_shape(self, "bias", self.bias, (self.output_size,))

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int, ...]:
        """``(output_size,)``; the flattened input must have ``input_size`` entries."""
        check_input_count(self, shapes)
        size = self.flattened_size(tuple(shapes[0]))
        if self.input_size is not None and size != self.input_size:
            raise LayerShapeError(
                f"{describe_owner(self)} expects {self.input_size} input values per observation; found "
                f"shape {tuple(shapes[0])} = {size} values.")
        return (self.output_size,)

    def forward(self, *xs: Tensor) -> Tensor:
        """Flatten (if spatial), then ``linear.fully_connected``."""
        (x,) = xs
        self.output_shape(x.shape[1:])
        flat = x if x.ndim == 2 else linear.flatten(x, self.flatten_order)
        bias = None if self.bias is None else constant(self, "bias", x)
        return linear.fully_connected(flat, constant(self, "weights", x), bias)

    def describe(self) -> str:
        """``10 fully connected layer``."""
        return f"{self.output_size} fully connected layer"


@register
@dataclass(eq=False, kw_only=True)
class DropoutLayer(SameShapeLayer):
    """MATLAB ``dropoutLayer(probability)``: the identity at prediction, ``y = x``."""

    probability: float = 0.5

    kind = "dropout"
    type = "Dropout"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.probability = finite_float(self, "probability", self.probability, minimum=0.0, below=1.0)

    def forward(self, *xs: Tensor) -> Tensor:
        """``x`` unchanged (inference)."""
        (x,) = xs
        return x

    def describe(self) -> str:
        """``20% dropout``."""
        return f"{scalar2str(100.0 * self.probability)}% dropout"
