"""Element-wise activations and the channel softmax.

Layout: any shape; ``softmax`` normalises along one axis (axis 1, the channels,
by default, so a (B, C, *spatial) input gets one distribution per position).
Every output has the input's shape and dtype.

Formulas (``g`` is the incoming gradient ``dL/dy``; ``s(z) = 1 / (1 + exp(-z))``;
``Phi(x) = (1 + erf(x / sqrt 2)) / 2 = erfc(-x / sqrt 2) / 2`` and
``phi(x) = exp(-x**2 / 2) / sqrt(2 pi)`` the standard normal distribution and
density; ``erf(x) = 2 / sqrt(pi) int_0^x exp(-v**2) dv``; for GELU "tanh"
``t = tanh(z)``, ``z = k (x + c x**3)``, ``k = sqrt(2 / pi)``, ``c = 0.044715``;
for the hard functions ``u = alpha x + beta``, ``h = min(max(0, u), 1)``):

============  ================================  =========================================================
op            forward ``y``                     VJP ``dL/dx``
============  ================================  =========================================================
relu          ``max(0, x)``                     ``g * [x > 0]``
leaky_relu    ``x if x > 0 else scale * x``     ``g if x > 0 else scale * g``
clipped_relu  ``min(max(0, x), ceiling)``       ``g * [0 < x < ceiling]``
softmax       ``exp(x - m) / sum(exp(x - m))``  ``y * (g - sum(g * y))``
sigmoid       ``1 / (1 + exp(-x))``             ``g * y * (1 - y)``
tanh          ``tanh(x)``                       ``g * (1 - y**2)``
swish         ``x s(x)``                        ``g * s (1 + x (1 - s))``, ``s = s(x)``
gelu "none"   ``x Phi(x)``                      ``g * (Phi(x) + x phi(x))``
gelu "tanh"   ``x (1 + t) / 2``                 ``g * ((1 + t) / 2 + x (1 - t**2) k (1 + 3 c x**2) / 2)``
hard_sigmoid  ``h``                             ``g * alpha * [0 < u < 1]``
hard_swish    ``x h``                           ``g * (h + alpha x [0 < u < 1])``
erf           ``erf(x)``                        ``g * 2 / sqrt(pi) * exp(-x**2)``
============  ================================  =========================================================

Non-differentiable points (the one-sided rule is PyTorch's, so cross-checks
hold even there):

* ``relu`` at ``x = 0``: derivative 0.
* ``leaky_relu`` at ``x = 0``: derivative ``scale`` (the left branch).
* ``clipped_relu`` at ``x = 0`` and at ``x = ceiling``: derivative 0 at both.
* ``hard_sigmoid`` where ``u = 0`` or ``u = 1`` (``u`` as computed in floating
  point): derivative 0 at both, the flat side, as PyTorch 2.13's
  ``F.hardsigmoid`` at ``x = -3`` and ``x = 3``.
* ``hard_swish`` there: derivative ``h``, the outer side (0 where ``u = 0``,
  1 where ``u = 1``), as PyTorch 2.13's ``F.hardswish`` at ``x = -3`` and ``x = 3``.

The hard functions take any finite ``alpha`` and ``beta`` (0 and negative
included: ONNX restricts neither). Defaults: ``hard_sigmoid`` alpha 0.2, beta
0.5 (ONNX ``HardSigmoid``, tf-keras 2.x ``hard_sigmoid``); ``hard_swish`` alpha
1/6, beta 0.5 (ONNX ``HardSwish``, PyTorch ``Hardswish``; PyTorch's
``Hardsigmoid`` is ``hard_sigmoid`` with alpha 1/6). Sources: swish
(= SiLU), Ramachandran et al. 2017 and Elfwing et al. 2017; GELU and its tanh
form, Hendrycks and Gimpel 2016 (arXiv 1606.08415), MATLAB ``geluLayer`` and
PyTorch ``F.gelu(approximate="none" | "tanh")``; hard swish, Howard et al.
2019 (MobileNetV3, arXiv 1905.02244); the hard functions' formulas, ONNX opset
22 ``HardSigmoid``/``HardSwish``.

Numerical stability: ``softmax`` subtracts the maximum ``m`` along its axis
before exponentiating (the result is unchanged, no ``exp`` overflows);
``sigmoid`` only exponentiates ``-|x|``: ``e = exp(-|x|)``, ``y = 1 / (1 + e)``
for ``x >= 0`` and ``y = e / (1 + e)`` for ``x < 0``, accurate in relative terms
in both tails. ``swish`` uses that sigmoid. ``gelu "none"`` uses ``erfc``
(``Phi(x) = erfc(-x / sqrt 2) / 2``), which keeps its relative accuracy for
``x << 0`` where ``1 + erf`` cancels to 0; ``gelu "tanh"`` uses
``(1 + tanh(z)) / 2 = s(2 z)`` through the same sigmoid, for the same reason.
Squares and cubes of ``x`` are taken of ``x`` clipped to ``[-40, 40]``
(:data:`GAUSSIAN_TAIL`): beyond it ``exp(-x**2 / 2)`` and ``s(2 z)`` or
``1 - s(2 z)`` are exactly 0 in float64 and float32, so the clip changes no
value and nothing overflows for large ``|x|``. The special functions come from
``scipy.special`` or ``cupyx.scipy.special``, whichever matches the array
(:func:`refcam.backend.special_functions`).
"""
from __future__ import annotations

import math
from typing import Any

from ..autodiff import Tensor, record
from ..backend import get_xp, special_functions
from ..errors import LayerConfigError

GAUSSIAN_TAIL = 40.0
"""``|x|`` beyond which ``exp(-x**2 / 2)`` (and the GELU tanh form's ``s(2 z)`` tails) are exactly 0."""
GELU_APPROXIMATIONS = ("none", "tanh")
SQRT_HALF = math.sqrt(0.5)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
GELU_TANH_SCALE = math.sqrt(2.0 / math.pi)  # k
GELU_TANH_CUBIC = 0.044715                  # c


# --- ReLU --------------------------------------------------------------------
def relu_forward(x: Any) -> Any:
    """``max(0, x)`` element-wise."""
    return get_xp(x).maximum(x, 0.0)


def relu_vjp_x(x: Any, grad_y: Any) -> Any:
    """``g * [x > 0]``: the derivative at 0 is taken as 0."""
    return grad_y * (x > 0.0)


def relu(x: Tensor) -> Tensor:
    """Rectified linear unit ``max(0, x)`` (MATLAB ``reluLayer``).

    >>> import numpy as np
    >>> relu(Tensor(np.array([-1.0, 0.0, 2.0]))).data
    array([0., 0., 2.])
    """
    return record("relu", relu_forward(x.data), (x,),
                  lambda g, needs: (relu_vjp_x(x.data, g),))


# --- leaky ReLU ----------------------------------------------------------------
def leaky_relu_forward(x: Any, scale: float) -> Any:
    """``x`` where ``x > 0``, else ``scale * x``."""
    return get_xp(x).where(x > 0.0, x, scale * x)


def leaky_relu_vjp_x(x: Any, grad_y: Any, scale: float) -> Any:
    """``g`` where ``x > 0``, else ``scale * g`` (so ``scale`` at ``x = 0``)."""
    return get_xp(x).where(x > 0.0, grad_y, scale * grad_y)


def leaky_relu(x: Tensor, scale: float = 0.01) -> Tensor:
    """Leaky ReLU ``x if x > 0 else scale * x`` (MATLAB ``leakyReluLayer``, Scale 0.01 by default).

    >>> import numpy as np
    >>> leaky_relu(Tensor(np.array([-2.0, 3.0])), scale=0.5).data
    array([-1.,  3.])
    """
    scale = float(scale)
    return record("leaky_relu", leaky_relu_forward(x.data, scale), (x,),
                  lambda g, needs: (leaky_relu_vjp_x(x.data, g, scale),))


# --- clipped ReLU --------------------------------------------------------------
def clipped_relu_forward(x: Any, ceiling: float) -> Any:
    """``min(max(0, x), ceiling)`` element-wise."""
    xp = get_xp(x)
    return xp.minimum(xp.maximum(x, 0.0), ceiling)


def clipped_relu_vjp_x(x: Any, grad_y: Any, ceiling: float) -> Any:
    """``g * [0 < x < ceiling]``: the derivative is 0 at both kinks."""
    return grad_y * ((x > 0.0) & (x < ceiling))


def clipped_relu(x: Tensor, ceiling: float) -> Tensor:
    """Clipped ReLU ``min(max(0, x), ceiling)`` (MATLAB ``clippedReluLayer``).

    Raises :class:`~refcam.errors.LayerConfigError` unless ``ceiling > 0``.

    >>> import numpy as np
    >>> clipped_relu(Tensor(np.array([-1.0, 0.5, 9.0])), ceiling=6.0).data
    array([0. , 0.5, 6. ])
    """
    ceiling = float(ceiling)
    if not ceiling > 0.0:
        raise LayerConfigError(f"clipped ReLU needs a positive ceiling, got {ceiling!r}.")
    return record("clipped_relu", clipped_relu_forward(x.data, ceiling), (x,),
                  lambda g, needs: (clipped_relu_vjp_x(x.data, g, ceiling),))


# --- softmax -------------------------------------------------------------------
def softmax_forward(x: Any, axis: int) -> Any:
    """``exp(x - m) / sum(exp(x - m))`` along ``axis``, ``m`` the maximum along ``axis``."""
    xp = get_xp(x)
    exps = xp.exp(x - x.max(axis=axis, keepdims=True))
    return exps / exps.sum(axis=axis, keepdims=True)


def softmax_vjp_x(y: Any, grad_y: Any, axis: int) -> Any:
    """``y * (g - sum(g * y))`` along ``axis`` (the Jacobian is ``diag(y) - y y^T``)."""
    return y * (grad_y - (grad_y * y).sum(axis=axis, keepdims=True))


def softmax(x: Tensor, axis: int = 1) -> Tensor:
    """Softmax along ``axis`` (the channels by default; per position for spatial inputs).

    MATLAB ``softmaxLayer``. Stable for large inputs: the maximum is subtracted first.

    >>> import numpy as np
    >>> softmax(Tensor(np.array([[1000.0, 1000.0]]))).data
    array([[0.5, 0.5]])
    """
    y = softmax_forward(x.data, axis)
    return record("softmax", y, (x,), lambda g, needs: (softmax_vjp_x(y, g, axis),))


# --- sigmoid -------------------------------------------------------------------
def sigmoid_forward(x: Any) -> Any:
    """``1 / (1 + exp(-x))``, evaluated through ``e = exp(-|x|)`` so nothing overflows."""
    xp = get_xp(x)
    decay = xp.exp(-xp.abs(x))  # in (0, 1]: never overflows
    denominator = 1.0 + decay
    return xp.where(x >= 0.0, 1.0 / denominator, decay / denominator)


def sigmoid_vjp_x(y: Any, grad_y: Any) -> Any:
    """``g * y * (1 - y)``."""
    return grad_y * y * (1.0 - y)


def sigmoid(x: Tensor) -> Tensor:
    """Logistic sigmoid ``1 / (1 + exp(-x))`` (MATLAB ``sigmoidLayer``).

    >>> import numpy as np
    >>> sigmoid(Tensor(np.array([0.0, -1000.0]))).data
    array([0.5, 0. ])
    """
    y = sigmoid_forward(x.data)
    return record("sigmoid", y, (x,), lambda g, needs: (sigmoid_vjp_x(y, g),))


# --- tanh ----------------------------------------------------------------------
def tanh_forward(x: Any) -> Any:
    """``tanh(x)`` element-wise."""
    return get_xp(x).tanh(x)


def tanh_vjp_x(y: Any, grad_y: Any) -> Any:
    """``g * (1 - y**2)``."""
    return grad_y * (1.0 - y * y)


def tanh(x: Tensor) -> Tensor:
    """Hyperbolic tangent (MATLAB ``tanhLayer``).

    >>> import numpy as np
    >>> tanh(Tensor(np.array([0.0]))).data
    array([0.])
    """
    y = tanh_forward(x.data)
    return record("tanh", y, (x,), lambda g, needs: (tanh_vjp_x(y, g),))


# --- swish (SiLU) --------------------------------------------------------------
def swish_forward(x: Any) -> Any:
    """``x * s(x)`` with the stable sigmoid."""
    return x * sigmoid_forward(x)


def swish_vjp_x(x: Any, grad_y: Any) -> Any:
    """``g * s (1 + x (1 - s))``: ``d/dx x s(x) = s + x s (1 - s)``."""
    s = sigmoid_forward(x)
    return grad_y * s * (1.0 + x * (1.0 - s))


def swish(x: Tensor) -> Tensor:
    """Swish ``x * sigmoid(x)`` (MATLAB ``swishLayer``; PyTorch ``SiLU``, Keras ``swish``/``silu``).

    >>> import numpy as np
    >>> swish(Tensor(np.array([0.0, -1000.0]))).data
    array([ 0., -0.])
    """
    return record("swish", swish_forward(x.data), (x,), lambda g, needs: (swish_vjp_x(x.data, g),))


# --- GELU ----------------------------------------------------------------------
def _gelu_tanh_gate(x: Any) -> Any:
    """``s(2 z) = (1 + tanh(z)) / 2``, ``z = k (x + c x**3)``, with ``x`` clipped to the Gaussian tail."""
    xp = get_xp(x)
    x_bounded = xp.clip(x, -GAUSSIAN_TAIL, GAUSSIAN_TAIL)  # beyond it s(2z) is exactly 0 or 1
    z = GELU_TANH_SCALE * x_bounded * (1.0 + GELU_TANH_CUBIC * x_bounded * x_bounded)
    return sigmoid_forward(2.0 * z)


def gelu_forward(x: Any, approximation: str) -> Any:
    """``x Phi(x)`` ("none", through ``erfc``) or ``x (1 + tanh(z)) / 2 = x s(2 z)`` ("tanh")."""
    if approximation == "tanh":
        return x * _gelu_tanh_gate(x)
    xp = get_xp(x)
    return 0.5 * x * special_functions(xp).erfc(-SQRT_HALF * x)


def gelu_vjp_x(x: Any, grad_y: Any, approximation: str) -> Any:
    """``g * (Phi(x) + x phi(x))`` ("none"), or for "tanh", with ``t = tanh(z)``,
    ``g * ((1 + t) / 2 + x (1 - t**2) k (1 + 3 c x**2) / 2)``, evaluated as
    ``s + 2 x s (1 - s) k (1 + 3 c x**2)`` with ``s = s(2 z) = (1 + t) / 2``.
    """
    xp = get_xp(x)
    x_bounded = xp.clip(x, -GAUSSIAN_TAIL, GAUSSIAN_TAIL)  # x**2 stays finite; the density is 0 beyond
    if approximation == "tanh":
        s = _gelu_tanh_gate(x)
        dz_dx = GELU_TANH_SCALE * (1.0 + 3.0 * GELU_TANH_CUBIC * x_bounded * x_bounded)
        return grad_y * (s + 2.0 * x_bounded * s * (1.0 - s) * dz_dx)
    cdf = 0.5 * special_functions(xp).erfc(-SQRT_HALF * x)
    density = INV_SQRT_2PI * xp.exp(-0.5 * x_bounded * x_bounded)
    return grad_y * (cdf + x_bounded * density)


def gelu(x: Tensor, approximation: str = "none") -> Tensor:
    """Gaussian error linear unit ``x Phi(x)`` (MATLAB ``geluLayer``; PyTorch ``F.gelu``).

    ``approximation="tanh"`` uses ``Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x**3))) / 2``
    (BERT, GPT-2; PyTorch ``approximate="tanh"``). Raises
    :class:`~refcam.errors.LayerConfigError` for any other string than "none" or "tanh".

    >>> import numpy as np
    >>> gelu(Tensor(np.array([0.0, 50.0]))).data
    array([ 0., 50.])
    """
    if approximation not in GELU_APPROXIMATIONS:
        raise LayerConfigError(
            f"GELU approximation must be one of {list(GELU_APPROXIMATIONS)}, got {approximation!r}.")
    return record("gelu", gelu_forward(x.data, approximation), (x,),
                  lambda g, needs: (gelu_vjp_x(x.data, g, approximation),))


# --- hard sigmoid and hard swish ---------------------------------------------------
def _finite_coefficients(op: str, alpha: Any, beta: Any) -> tuple[float, float]:
    """``alpha`` and ``beta`` as Python floats, or LayerConfigError unless both are finite."""
    alpha, beta = float(alpha), float(beta)
    if not (math.isfinite(alpha) and math.isfinite(beta)):
        raise LayerConfigError(f"{op} needs finite alpha and beta, got alpha={alpha!r}, beta={beta!r}.")
    return alpha, beta


def hard_sigmoid_forward(x: Any, alpha: float, beta: float) -> Any:
    """``min(max(0, alpha x + beta), 1)``."""
    xp = get_xp(x)
    return xp.minimum(xp.maximum(alpha * x + beta, 0.0), 1.0)


def hard_sigmoid_vjp_x(x: Any, grad_y: Any, alpha: float, beta: float) -> Any:
    """``g * alpha * [0 < u < 1]``, ``u = alpha x + beta``: 0 at both kinks (PyTorch's rule)."""
    u = alpha * x + beta
    return grad_y * alpha * ((u > 0.0) & (u < 1.0))


def hard_sigmoid(x: Tensor, alpha: float = 0.2, beta: float = 0.5) -> Tensor:
    """Hard sigmoid ``min(max(0, alpha x + beta), 1)`` (ONNX ``HardSigmoid``; MATLAB has no such layer).

    Defaults are ONNX's (alpha 0.2, beta 0.5); PyTorch's ``Hardsigmoid`` is
    alpha 1/6, beta 0.5. Raises :class:`~refcam.errors.LayerConfigError` unless
    both are finite.

    >>> import numpy as np
    >>> hard_sigmoid(Tensor(np.array([-5.0, 0.0, 1.0, 5.0]))).data
    array([0. , 0.5, 0.7, 1. ])
    """
    alpha, beta = _finite_coefficients("hard sigmoid", alpha, beta)
    return record("hard_sigmoid", hard_sigmoid_forward(x.data, alpha, beta), (x,),
                  lambda g, needs: (hard_sigmoid_vjp_x(x.data, g, alpha, beta),))


def hard_swish_forward(x: Any, alpha: float, beta: float) -> Any:
    """``x * min(max(0, alpha x + beta), 1)``."""
    return x * hard_sigmoid_forward(x, alpha, beta)


def hard_swish_vjp_x(x: Any, grad_y: Any, alpha: float, beta: float) -> Any:
    """``g * (h + alpha x [0 < u < 1])``: ``h`` at the kinks, 0 where ``u = 0``, 1 where ``u = 1`` (PyTorch's rule)."""
    u = alpha * x + beta
    gate = hard_sigmoid_forward(x, alpha, beta)
    return grad_y * (gate + alpha * x * ((u > 0.0) & (u < 1.0)))


def hard_swish(x: Tensor, alpha: float = 1.0 / 6.0, beta: float = 0.5) -> Tensor:
    """Hard swish ``x * min(max(0, alpha x + beta), 1)`` (ONNX ``HardSwish``, PyTorch ``Hardswish``;
    MATLAB has no such layer).

    Defaults alpha 1/6, beta 0.5 give ``x * relu6(x + 3) / 6`` (MobileNetV3). Raises
    :class:`~refcam.errors.LayerConfigError` unless both are finite.

    >>> import numpy as np
    >>> hard_swish(Tensor(np.array([-4.0, 0.0, 3.0, 4.0]))).data
    array([-0.,  0.,  3.,  4.])
    """
    alpha, beta = _finite_coefficients("hard swish", alpha, beta)
    return record("hard_swish", hard_swish_forward(x.data, alpha, beta), (x,),
                  lambda g, needs: (hard_swish_vjp_x(x.data, g, alpha, beta),))


# --- erf -------------------------------------------------------------------------
def erf_forward(x: Any) -> Any:
    """``erf(x)`` from the special-function module of ``x``'s array module."""
    return special_functions(get_xp(x)).erf(x)


def erf_vjp_x(x: Any, grad_y: Any) -> Any:
    """``g * 2 / sqrt(pi) * exp(-x**2)`` (``x`` clipped to the Gaussian tail: ``x**2`` stays finite)."""
    xp = get_xp(x)
    x_bounded = xp.clip(x, -GAUSSIAN_TAIL, GAUSSIAN_TAIL)
    return grad_y * (TWO_OVER_SQRT_PI * xp.exp(-(x_bounded * x_bounded)))


def erf(x: Tensor) -> Tensor:
    """Error function ``erf(x) = 2 / sqrt(pi) int_0^x exp(-t**2) dt`` (ONNX ``Erf``; MATLAB has no such layer).

    >>> import numpy as np
    >>> erf(Tensor(np.array([0.0, 10.0]))).data
    array([0., 1.])
    """
    return record("erf", erf_forward(x.data), (x,), lambda g, needs: (erf_vjp_x(x.data, g),))
