"""Flattening and the fully connected (dense) product.

Flatten: ``(B, C, S_1, ..., S_N) -> (B, C * S_1 * ... * S_N)`` (N = 0..3). A
permutation of the elements of each observation, so the VJP puts ``g`` back
through the inverse permutation. Three orders, for element ``(c, s_1..s_N)``:

* ``"matlab"``: column-major over a MATLAB ``S_1 x ... x S_N x C`` array,
  ``s_1`` fastest, then ``s_2``, ..., then ``c`` (for an ``h x w x c`` image
  ``i = h + H w + H W c``)::

      i = s_1 + S_1 (s_2 + S_2 (... + S_{N-1} (s_N + S_N c)))

  computed as the row-major reshape of ``(B, C, S_N, ..., S_1)`` (spatial axes
  reversed).
* ``"row-major"`` (PyTorch ``flatten``, ONNX ``Flatten``): row-major over
  ``(C, S_1, ..., S_N)``::

      i = (((c S_1 + s_1) S_2 + s_2) ...) S_N + s_N

* ``"channels-last"`` (Keras ``Flatten`` on NHWC data): row-major over
  ``(S_1, ..., S_N, C)``::

      i = (((s_1 S_2 + s_2) ...) S_N + s_N) C + c

With no spatial axes the three orders agree (the identity).

Fully connected: ``x`` (B, In), ``weight`` (Out, In), ``bias`` (Out,) or None::

    y = x W^T + b                      (B, Out)
    dx = g W,   dW = g^T x,   db = sum_B g

Both ops are linear, so smooth everywhere. Output dtype is ``x``'s: ``weight`` and
``bias`` are cast to it, and their gradients are in it too.
"""
from __future__ import annotations

from typing import Any

from ..autodiff import Tensor, record
from ..errors import LayerConfigError, ShapeError

FLATTEN_ORDERS = ("matlab", "row-major", "channels-last")


# --- flatten ---------------------------------------------------------------------
def flatten_permutation(ndim: int, order: str) -> tuple[int, ...]:
    """Axis permutation of a (B, C, *S) array after which a row-major reshape gives ``order``.

    Raises :class:`~refcam.errors.LayerConfigError` for an unknown order.
    """
    spatial = tuple(range(2, ndim))
    if order == "matlab":
        return (0, 1) + spatial[::-1]  # (B, C, S_N, ..., S_1)
    if order == "row-major":
        return (0, 1) + spatial  # (B, C, S_1, ..., S_N)
    if order == "channels-last":
        return (0,) + spatial + (1,)  # (B, S_1, ..., S_N, C)
    raise LayerConfigError(f"unknown flatten order {order!r}; use one of {FLATTEN_ORDERS}.")


def flatten_forward(x: Any, order: str) -> Any:
    """``x`` (B, C, *S) as (B, C * prod(S)) in ``order`` (see the module docstring)."""
    return x.transpose(flatten_permutation(x.ndim, order)).reshape(x.shape[0], -1)


def flatten_vjp_x(grad_y: Any, x_shape: tuple[int, ...], order: str) -> Any:
    """Undo :func:`flatten_forward`: ``grad_y`` (B, C * prod(S)) back to ``x_shape``."""
    perm = flatten_permutation(len(x_shape), order)
    inverse = tuple(perm.index(axis) for axis in range(len(x_shape)))
    permuted_shape = tuple(x_shape[axis] for axis in perm)
    return grad_y.reshape(permuted_shape).transpose(inverse)


def flatten(x: Tensor, order: str) -> Tensor:
    """Flatten (B, C, *S) to (B, C * prod(S)); ``order`` is "matlab", "row-major" or "channels-last".

    Raises :class:`~refcam.errors.ShapeError` for fewer than 2 axes.

    >>> import numpy as np
    >>> x = Tensor(np.arange(4.0).reshape(1, 1, 2, 2))   # [[0, 1], [2, 3]] (H, W)
    >>> flatten(x, "matlab").data                         # down the columns first
    array([[0., 2., 1., 3.]])
    >>> flatten(x, "row-major").data
    array([[0., 1., 2., 3.]])
    """
    if x.ndim < 2:
        raise ShapeError(f"flatten: the input must be (B, C, *spatial), got shape {x.shape}.")
    y = flatten_forward(x.data, order)
    return record("flatten", y, (x,), lambda g, needs: (flatten_vjp_x(g, x.shape, order),))


# --- fully connected ---------------------------------------------------------------
def fully_connected_forward(x: Any, weight: Any, bias: Any | None) -> Any:
    """``x W^T + b``: (B, In), (Out, In), (Out,) or None -> (B, Out)."""
    y = x @ weight.astype(x.dtype, copy=False).T
    return y if bias is None else y + bias.astype(x.dtype, copy=False)


def fully_connected_vjp(x: Any, weight: Any, grad_y: Any,
                        needs: tuple[bool, ...]) -> tuple[Any, ...]:
    """``(g W, g^T x, sum_B g)`` for ``(x, weight, bias)`` in ``x``'s dtype, ``None`` where not needed.

    ``needs`` has 2 entries (no bias) or 3; the bias gradient is ``None`` with 2.
    """
    grad_x = grad_y @ weight.astype(x.dtype, copy=False) if needs[0] else None  # (B, In)
    grad_weight = grad_y.T @ x if needs[1] else None  # (Out, In)
    grad_bias = grad_y.sum(axis=0) if len(needs) == 3 and needs[2] else None  # (Out,)
    return grad_x, grad_weight, grad_bias


def _check_fully_connected_shapes(x: Tensor, weight: Tensor, bias: Tensor | None) -> None:
    """Raise ShapeError unless x is (B, In), weight (Out, In) and bias (Out,) or None."""
    expected_bias = (weight.shape[0],) if weight.ndim == 2 else None
    if (x.ndim != 2 or weight.ndim != 2 or weight.shape[1] != x.shape[1]
            or (bias is not None and bias.shape != expected_bias)):
        found_bias = None if bias is None else bias.shape
        raise ShapeError(
            f"fully_connected: got x {x.shape}, weight {weight.shape}, bias {found_bias}; expected "
            "x (B, In), weight (Out, In) and bias (Out,) or None. Flatten spatial inputs first "
            "and check the layer's InputSize.")


def fully_connected(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """Dense layer ``y = x W^T + b``: x (B, In), weight (Out, In), bias (Out,) or None.

    >>> import numpy as np
    >>> w = Tensor(np.array([[1.0, 2.0]]))
    >>> fully_connected(Tensor(np.array([[3.0, 4.0]])), w, Tensor(np.array([0.5]))).data
    array([[11.5]])
    """
    _check_fully_connected_shapes(x, weight, bias)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    y = fully_connected_forward(x.data, weight.data, None if bias is None else bias.data)

    def vjp(g, needs):
        return fully_connected_vjp(x.data, weight.data, g, needs)[:len(inputs)]
    return record("fully_connected", y, inputs, vjp)
