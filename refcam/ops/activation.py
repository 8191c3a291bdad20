"""Element-wise activations and the channel softmax.

Layout: any shape; ``softmax`` normalises along one axis (axis 1, the channels,
by default, so a (B, C, *spatial) input gets one distribution per position).
Every output has the input's shape and dtype.

Formulas (``g`` is the incoming gradient ``dL/dy``):

=================  ======================================  =====================================
op                 forward ``y``                           VJP ``dL/dx``
=================  ======================================  =====================================
relu               ``max(0, x)``                           ``g * [x > 0]``
leaky_relu         ``x if x > 0 else scale * x``           ``g if x > 0 else scale * g``
clipped_relu       ``min(max(0, x), ceiling)``             ``g * [0 < x < ceiling]``
softmax            ``exp(x - m) / sum(exp(x - m))``        ``y * (g - sum(g * y))``
sigmoid            ``1 / (1 + exp(-x))``                   ``g * y * (1 - y)``
tanh               ``tanh(x)``                             ``g * (1 - y**2)``
=================  ======================================  =====================================

Non-differentiable points (the one-sided rule is PyTorch's, so cross-checks
hold even there):

* ``relu`` at ``x = 0``: derivative 0.
* ``leaky_relu`` at ``x = 0``: derivative ``scale`` (the left branch).
* ``clipped_relu`` at ``x = 0`` and at ``x = ceiling``: derivative 0 at both.

Numerical stability: ``softmax`` subtracts the maximum ``m`` along its axis
before exponentiating (the result is unchanged, no ``exp`` overflows);
``sigmoid`` only exponentiates ``-|x|``: ``e = exp(-|x|)``, ``y = 1 / (1 + e)``
for ``x >= 0`` and ``y = e / (1 + e)`` for ``x < 0``, accurate in relative terms
in both tails.
"""
from __future__ import annotations

from typing import Any

from ..autodiff import Tensor, record
from ..backend import get_xp
from ..errors import LayerConfigError


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
