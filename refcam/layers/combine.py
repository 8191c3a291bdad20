"""N-ary layers: ``additionLayer``, ``multiplicationLayer`` and ``depthConcatenationLayer``.

Addition (:func:`refcam.ops.combine.add`), all inputs of one shape::

    y = x_1 + x_2 + ... + x_n

Multiplication (:func:`refcam.ops.combine.multiply`), element-wise with size-1
axes broadcast: every input has the same number of axes ``(C, *S)`` and on
each axis size 1 or the output's size (the one size other than 1 there)::

    y = x_1 * x_2 * ... * x_n        e.g. a squeeze-and-excitation gate (C, 1, 1) * (C, H, W)

A free axis (None, a sequence's time) is taken to be 1 or the output's size;
the output axis is None when no input fixes it, and ``forward`` checks the
real sizes.

Depth concatenation (:func:`refcam.ops.combine.concat`), inputs of one spatial
shape, channels stacked in input order::

    y[b, :, s] = [x_1[b, :, s]; x_2[b, :, s]; ...; x_n[b, :, s]]     (C = C_1 + ... + C_n)

``num_inputs`` (MATLAB ``NumInputs``, at least 2) is an instance property; when
omitted it is taken from ``inputs``; given, it is an integer from 2 to
``MAX_OBSERVATION_ELEMENTS``. The class attribute is None ("any number >= 2").
"""
from __future__ import annotations

from dataclasses import dataclass

from ..autodiff import Tensor
from ..errors import LayerConfigError, LayerShapeError
from ..ops import combine
from .base import Layer, register
from .common import check_input_count, describe_owner, positive_int


@dataclass(eq=False, kw_only=True)
class MultiInputLayer(Layer):
    """A layer with ``num_inputs >= 2`` inputs."""

    num_inputs: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_inputs is None and self.inputs:
            self.num_inputs = len(self.inputs)
        if self.num_inputs is not None:
            self.num_inputs = positive_int(self, "num_inputs", self.num_inputs, minimum=2)
        if self.inputs and self.num_inputs != len(self.inputs):
            raise LayerConfigError(
                f"{describe_owner(self)}: num_inputs is {self.num_inputs} but {len(self.inputs)} "
                f"inputs are named {list(self.inputs)}.")

    def _count_text(self) -> str:
        return "" if self.num_inputs is None else f" of {self.num_inputs} inputs"


@register
@dataclass(eq=False, kw_only=True)
class AdditionLayer(MultiInputLayer):
    """MATLAB ``additionLayer(numInputs)``: ``y = x_1 + ... + x_n`` (element-wise, equal shapes)."""

    kind = "addition"
    type = "Addition"

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """The common input shape."""
        check_input_count(self, shapes)
        first = tuple(shapes[0])
        if any(tuple(s) != first for s in shapes[1:]):
            raise LayerShapeError(
                f"{describe_owner(self)} adds inputs of one shape; found shapes {[tuple(s) for s in shapes]}.")
        return first

    def forward(self, *xs: Tensor) -> Tensor:
        """``combine.add(xs)``."""
        self.output_shape(*(x.shape[1:] for x in xs))
        return combine.add(xs)

    def describe(self) -> str:
        """``Element-wise addition of 2 inputs``."""
        return f"Element-wise addition{self._count_text()}"


@register
@dataclass(eq=False, kw_only=True)
class MultiplicationLayer(MultiInputLayer):
    """MATLAB ``multiplicationLayer(numInputs)``: ``y = x_1 * ... * x_n`` element-wise, size-1 axes broadcast.

    MATLAB asks for inputs of one size or "the same across at least one
    dimension with other dimensions as singleton dimensions"; refcam takes any
    size-1 broadcast (ONNX ``Mul``, Keras ``Multiply``), which includes both.
    """

    kind = "multiplication"
    type = "Multiplication"

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """The broadcast shape: per axis the one size other than 1 (None when only free or 1)."""
        check_input_count(self, shapes)
        shapes = tuple(tuple(s) for s in shapes)
        if len({len(s) for s in shapes}) != 1:
            raise LayerShapeError(
                f"{describe_owner(self)} multiplies inputs with one number of axes (C, *S); found shapes "
                f"{list(shapes)}.")
        out: list[int | None] = []
        for axis, sizes in enumerate(zip(*shapes)):
            stretched = {n for n in sizes if n is not None and n != 1}
            if len(stretched) > 1:
                raise LayerShapeError(
                    f"{describe_owner(self)} multiplies element-wise, broadcasting axes of size 1; found shapes "
                    f"{list(shapes)}, whose axis {axis} has sizes {list(sizes)}: on every axis each input must "
                    "have size 1 or the one size the others have.")
            out.append(stretched.pop() if stretched else (None if None in sizes else 1))
        return tuple(out)

    def forward(self, *xs: Tensor) -> Tensor:
        """``combine.multiply(xs)``."""
        self.output_shape(*(x.shape[1:] for x in xs))
        return combine.multiply(xs)

    def describe(self) -> str:
        """``Element-wise multiplication of 2 inputs``."""
        return f"Element-wise multiplication{self._count_text()}"


@register
@dataclass(eq=False, kw_only=True)
class DepthConcatenationLayer(MultiInputLayer):
    """MATLAB ``depthConcatenationLayer(numInputs)``: channels of the inputs stacked in input order."""

    kind = "depth_concatenation"
    type = "Depth concatenation"

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """``(C_1 + ... + C_n, *S)`` for inputs ``(C_i, *S)``."""
        check_input_count(self, shapes)
        spatial = tuple(shapes[0][1:])
        if any(len(s) == 0 or tuple(s[1:]) != spatial for s in shapes):
            raise LayerShapeError(
                f"{describe_owner(self)} concatenates channels of inputs with one spatial shape; found "
                f"shapes {[tuple(s) for s in shapes]}.")
        return (sum(s[0] for s in shapes), *spatial)

    def forward(self, *xs: Tensor) -> Tensor:
        """``combine.concat(xs, axis=1)``."""
        self.output_shape(*(x.shape[1:] for x in xs))
        return combine.concat(xs, axis=1)

    def describe(self) -> str:
        """``Depth concatenation of 2 inputs``."""
        return f"Depth concatenation{self._count_text()}"
