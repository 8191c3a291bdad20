"""Output layers: ``classificationLayer`` and ``regressionLayer``.

Both are the identity at prediction (``y = x``): they only define a training
loss (cross-entropy, mean squared error). They carry the class names and the
response names (lists of strings), and ``is_output_layer = True``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..autodiff import Tensor
from ..errors import LayerShapeError
from .base import register
from .common import SameShapeLayer, describe_owner, name_tuple


@register
@dataclass(eq=False, kw_only=True)
class ClassificationLayer(SameShapeLayer):
    """MATLAB ``classificationLayer``: ``y = x`` at prediction; ``classes`` names the channels in order."""

    classes: Any = ()

    kind = "classification_output"
    type = "Classification Output"
    is_output_layer = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.classes = name_tuple(self, "classes", self.classes)

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """The input shape; its channel count must equal the number of classes when they are known."""
        shape = super().output_shape(*shapes)
        if self.classes and (not shape or shape[0] != len(self.classes)):
            raise LayerShapeError(
                f"{describe_owner(self)} has {len(self.classes)} classes but its input has shape "
                f"{shape}; the channel axis must hold one score per class.")
        return shape

    def forward(self, *xs: Tensor) -> Tensor:
        """``x`` unchanged."""
        (x,) = xs
        return x

    def describe(self) -> str:
        """``crossentropyex with '0' and 9 other classes``."""
        count = len(self.classes)
        if count == 0:
            return "crossentropyex"
        if count == 1:
            return f"crossentropyex with '{self.classes[0]}'"
        if count == 2:
            return f"crossentropyex with classes '{self.classes[0]}' and '{self.classes[1]}'"
        return f"crossentropyex with '{self.classes[0]}' and {count - 1} other classes"


@register
@dataclass(eq=False, kw_only=True)
class RegressionLayer(SameShapeLayer):
    """MATLAB ``regressionLayer``: ``y = x`` at prediction; ``response_names`` names the responses."""

    response_names: Any = ()

    kind = "regression_output"
    type = "Regression Output"
    is_output_layer = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.response_names = name_tuple(self, "response_names", self.response_names)

    def forward(self, *xs: Tensor) -> Tensor:
        """``x`` unchanged."""
        (x,) = xs
        return x

    def describe(self) -> str:
        """``mean-squared-error with response 'Response'``."""
        names = self.response_names
        if not names:
            return "mean-squared-error"
        if len(names) == 1:
            return f"mean-squared-error with response '{names[0]}'"
        return f"mean-squared-error with '{names[0]}' and {len(names) - 1} other responses"
