"""Layers that importers need beyond MATLAB's core set: sigmoid, tanh, hard sigmoid, hard swish,
erf, constant padding, scaling.

All take ``(B, C, *S)`` Tensors and call :mod:`refcam.ops`::

    Sigmoid       y = 1 / (1 + exp(-x))                    (MATLAB sigmoidLayer)
    Tanh          y = tanh(x)                              (MATLAB tanhLayer)
    Hard Sigmoid  y = max(0, min(1, alpha x + beta))       (ONNX HardSigmoid; alpha 0.2, beta 0.5)
    Hard Swish    y = x max(0, min(1, alpha x + beta))     (ONNX HardSwish, PyTorch Hardswish;
                                                            alpha 1/6, beta 0.5)
    Erf           y = erf(x)                               (ONNX Erf)
    Padding   y = x with padding[i] cells of ``value`` before (i < N) or after (i >= N)
              spatial axis i mod N; out_i = S_i + begin_i + end_i
                                                           (Keras ZeroPadding1D/2D/3D, ONNX Pad)
    Scaling   y = x * scale + offset                       (Keras Rescaling, ONNX Mul/Add/Sub/Div
                                                            by constants; MATLAB scalingLayer)

Sigmoid, tanh, erf, padding and scaling are smooth everywhere (padding and
scaling are affine); the hard sigmoid and hard swish have kinks where
``alpha x + beta`` is 0 or 1, with PyTorch's derivative there
(:mod:`refcam.ops.activation`). ``alpha`` and ``beta`` are any finite numbers
(0 and negative included, as ONNX allows; bools, strings, NaN and Inf raise
LayerConfigError).

Hard-sigmoid constants differ between frameworks; give them explicitly when
importing: ONNX ``HardSigmoid`` defaults to alpha 0.2, beta 0.5, as does
tf-keras 2.x ``hard_sigmoid`` (``clip(0.2 x + 0.5, 0, 1)``); PyTorch
``Hardsigmoid`` is ``relu6(x + 3) / 6`` (alpha 1/6, beta 0.5), as is Keras 3
``hard_sigmoid``. ONNX ``HardSwish`` (no attributes), PyTorch ``Hardswish``
and Keras 3 ``hard_swish``/``hard_silu`` are all ``x relu6(x + 3) / 6``
(alpha 1/6, beta 0.5). ``padding`` is
in refcam's internal order ``(begins..., ends...)``, integers from 0 to
``MAX_WINDOW_PROPERTY`` (2**16); ``describe()`` shows it in MATLAB's per-axis
``[begin end]`` order like the convolution layers do. ``value`` is a finite
number; the padded output of one observation holds at most
``MAX_OBSERVATION_ELEMENTS`` (2**28) elements (SizeLimitError).

``scale`` and ``offset`` are arrays in the internal layout of one observation:
0-d (one number), or one axis per observation axis ``(C, *S)``, each of size 1
or the observation's (per channel: ``(C, 1, ..., 1)``). They broadcast against
``(B, C, *S)``.

Convolutions that Keras and ONNX write and MATLAB names differently are plain
:mod:`refcam.layers.convolution` layers: depthwise = grouped convolution with
``groups = C`` (``num_filters = C * multiplier``, output channel
``c * multiplier + j`` sees input channel ``c``); separable = that depthwise
layer followed by a 1x1 convolution; ReLU6 = ``ClippedReLULayer(ceiling=6)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..autodiff import Tensor
from ..backend import get_xp
from ..errors import LayerConfigError, LayerShapeError
from ..ops import activation
from ..ops.shape import pad
from .base import Layer, param, register
from .common import (SameShapeLayer, as_array, check_elements, check_input_count, check_rank, constant,
                     describe_owner, finite_float, int_tuple, matlab_padding_from_internal, padding_text,
                     scalar2str, size_text)


@register
@dataclass(eq=False, kw_only=True)
class SigmoidLayer(SameShapeLayer):
    """MATLAB ``sigmoidLayer``: ``y = 1 / (1 + exp(-x))`` element-wise."""

    kind = "sigmoid"
    type = "Sigmoid"

    def forward(self, *xs: Tensor) -> Tensor:
        """``activation.sigmoid(x)``."""
        (x,) = xs
        return activation.sigmoid(x)

    def describe(self) -> str:
        """``sigmoid``."""
        return "sigmoid"


@register
@dataclass(eq=False, kw_only=True)
class TanhLayer(SameShapeLayer):
    """MATLAB ``tanhLayer``: ``y = tanh(x)`` element-wise."""

    kind = "tanh"
    type = "Tanh"

    def forward(self, *xs: Tensor) -> Tensor:
        """``activation.tanh(x)``."""
        (x,) = xs
        return activation.tanh(x)

    def describe(self) -> str:
        """``Hyperbolic tangent``."""
        return "Hyperbolic tangent"


@dataclass(eq=False, kw_only=True)
class HardGateLayer(SameShapeLayer):
    """Base of the two piecewise-linear gates ``h(x) = max(0, min(1, alpha x + beta))``: finite ``alpha``, ``beta``."""

    alpha: float
    beta: float

    label: ClassVar[str] = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.alpha = finite_float(self, "alpha", self.alpha)
        self.beta = finite_float(self, "beta", self.beta)

    def describe(self) -> str:
        """``Hard sigmoid with alpha 0.2 and beta 0.5``."""
        return f"{self.label} with alpha {scalar2str(self.alpha)} and beta {scalar2str(self.beta)}"


@register
@dataclass(eq=False, kw_only=True)
class HardSigmoidLayer(HardGateLayer):
    """``y = max(0, min(1, alpha x + beta))``; MATLAB has no such layer: this is ONNX ``HardSigmoid``.

    Defaults alpha 0.2, beta 0.5 are ONNX's (and tf-keras 2.x ``hard_sigmoid``'s);
    PyTorch ``nn.Hardsigmoid`` and Keras 3 ``hard_sigmoid`` are alpha 1/6, beta 0.5.
    """

    alpha: float = 0.2
    beta: float = 0.5

    kind = "hard_sigmoid"
    type = "Hard Sigmoid"
    label = "Hard sigmoid"

    def forward(self, *xs: Tensor) -> Tensor:
        """``activation.hard_sigmoid(x, alpha, beta)``."""
        (x,) = xs
        return activation.hard_sigmoid(x, alpha=self.alpha, beta=self.beta)


@register
@dataclass(eq=False, kw_only=True)
class HardSwishLayer(HardGateLayer):
    """``y = x max(0, min(1, alpha x + beta))``; MATLAB has no such layer: this is ONNX ``HardSwish``.

    Defaults alpha 1/6, beta 0.5 give ``x relu6(x + 3) / 6``: ONNX ``HardSwish``
    (which has no attributes), PyTorch ``nn.Hardswish``, Keras 3
    ``hard_swish``/``hard_silu`` (MobileNetV3).
    """

    alpha: float = 1.0 / 6.0
    beta: float = 0.5

    kind = "hard_swish"
    type = "Hard Swish"
    label = "Hard swish"

    def forward(self, *xs: Tensor) -> Tensor:
        """``activation.hard_swish(x, alpha, beta)``."""
        (x,) = xs
        return activation.hard_swish(x, alpha=self.alpha, beta=self.beta)


@register
@dataclass(eq=False, kw_only=True)
class ErfLayer(SameShapeLayer):
    """``y = erf(x)``; MATLAB has no such layer: this is ONNX ``Erf`` (torch's exact-GELU export uses it)."""

    kind = "erf"
    type = "Erf"

    def forward(self, *xs: Tensor) -> Tensor:
        """``activation.erf(x)``."""
        (x,) = xs
        return activation.erf(x)

    def describe(self) -> str:
        """``Error function``."""
        return "Error function"


@register
@dataclass(eq=False, kw_only=True)
class PaddingLayer(Layer):
    """Constant padding of the spatial axes: ``padding = (begins..., ends...)``, cells set to ``value``.

    The number of spatial axes is ``len(padding) // 2``. Keras ``ZeroPadding2D(((1, 2), (3, 4)))``
    is ``PaddingLayer(padding=(1, 3, 2, 4))``.
    """

    padding: Any
    value: float = 0.0

    kind = "padding"
    type = "Padding"

    def __post_init__(self) -> None:
        super().__post_init__()
        padding = tuple(self.padding) if isinstance(self.padding, (tuple, list)) else (self.padding,)
        if not padding or len(padding) % 2:
            raise LayerConfigError(
                f"{describe_owner(self)}: padding {self.padding!r} must hold 2N integers "
                "(begins..., ends...) for N spatial axes.")
        self.padding = int_tuple(self, "padding", padding, len(padding), 0)
        self.value = finite_float(self, "value", self.value)

    @property
    def spatial_rank(self) -> int:
        """Number of padded spatial axes."""
        return len(self.padding) // 2

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """``(C, S_1 + begin_1 + end_1, ...)``; a free axis (None) stays free.

        Raises SizeLimitError when that holds more than ``MAX_OBSERVATION_ELEMENTS``.
        """
        check_input_count(self, shapes)
        (shape,) = shapes
        rank = self.spatial_rank
        check_rank(self, shape, rank)
        spatial = tuple(None if n is None else n + self.padding[i] + self.padding[rank + i]
                        for i, n in enumerate(shape[1:]))
        check_elements(self, "output", (shape[0], *spatial))
        return (shape[0], *spatial)

    def forward(self, *xs: Tensor) -> Tensor:
        """``shape.pad(x, padding, value)``."""
        (x,) = xs
        self.output_shape(x.shape[1:])
        return pad(x, self.padding, self.value)

    def describe(self) -> str:
        """``Padding [1  2  3  4] with value 0`` (per-axis ``[begin end]``, MATLAB's order)."""
        return (f"Padding {padding_text(matlab_padding_from_internal(self.padding))} "
                f"with value {scalar2str(self.value)}")


@register
@dataclass(eq=False, kw_only=True)
class ScalingLayer(Layer):
    """``y = x * scale + offset``; ``scale`` (default 1) and ``offset`` (default 0) broadcast per observation.

    Shapes: 0-d, or ``(C, *S)`` with each axis of size 1 or the observation's
    (module docstring). Keras ``Rescaling(scale=1/255, offset=-0.5)`` is
    ``ScalingLayer(scale=1/255, offset=-0.5)``.
    """

    scale: Any = param(default=None)
    offset: Any = param(default=None)

    kind = "scaling"
    type = "Scaling"

    def __post_init__(self) -> None:
        super().__post_init__()
        xp = get_xp(self.scale, self.offset)
        self.scale = xp.asarray(1.0) if self.scale is None else as_array(self, "scale", self.scale)
        self.offset = xp.asarray(0.0) if self.offset is None else as_array(self, "offset", self.offset)
        for name in ("scale", "offset"):
            array = getattr(self, name)
            if array.dtype.kind != "f" or not bool(get_xp(array).isfinite(array).all()):
                raise LayerConfigError(
                    f"{describe_owner(self)}: {name} must hold finite floating-point numbers; found "
                    f"dtype {array.dtype} with shape {tuple(array.shape)}.")

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """The input shape; ``scale`` and ``offset`` must broadcast to it."""
        check_input_count(self, shapes)
        (shape,) = shapes
        for name in ("scale", "offset"):
            self._check_broadcast(name, tuple(shape))
        return tuple(shape)

    def _check_broadcast(self, name: str, shape: tuple[int | None, ...]) -> None:
        found = tuple(getattr(self, name).shape)
        if not found:
            return
        fits = len(found) == len(shape) and all(f == 1 or f == n for f, n in zip(found, shape))
        if not fits:
            raise LayerShapeError(
                f"{describe_owner(self)}: {name} has shape {found}, which does not broadcast to an "
                f"observation of internal shape {shape} (C, *S); give a 0-d array or one axis per "
                "observation axis, each of size 1 or the observation's.")

    def forward(self, *xs: Tensor) -> Tensor:
        """``x * scale + offset``."""
        (x,) = xs
        self.output_shape(x.shape[1:])
        return x * constant(self, "scale", x) + constant(self, "offset", x)

    def describe(self) -> str:
        """``Scaling by 0.0039216 with offset -0.5`` (arrays: ``Scaling by a 3x1x1 array ...``)."""
        return f"Scaling by {_array_text(self.scale)} with offset {_array_text(self.offset)}"


def _array_text(array: Any) -> str:
    if array.ndim == 0:
        return scalar2str(float(array))
    return f"a {size_text(array.shape)} array"

