"""Tensor operators a reduction function needs, each with its vector-Jacobian product.

Notation: ``y = f(x)``, ``g = dL/dy`` (the incoming gradient, shape of ``y``);
each VJP returns ``dL/dx = J^T g`` (shape of ``x``).

Broadcasting: when ``x`` was broadcast to the shape of ``y``, its gradient is
``g`` summed over the broadcast axes (:func:`unbroadcast`).

Non-differentiable points: ``max`` shares the gradient equally among all
elements that attain the maximum (the rule of HIPS autograd and
``torch.amax``).
"""
from __future__ import annotations

from typing import Any

from ..backend import get_xp, scatter_add
from .tensor import Tensor, as_tensor, record

Axis = int | tuple[int, ...] | None


def unbroadcast(g: Any, shape: tuple[int, ...]) -> Any:
    """Sum ``g`` down to ``shape``: the adjoint of broadcasting ``shape`` to ``g.shape``."""
    extra = g.ndim - len(shape)
    if extra:
        g = g.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    if stretched:
        g = g.sum(axis=stretched, keepdims=True)
    return g


def _operands(a: Any, b: Any) -> tuple[Tensor, Tensor]:
    like = a if isinstance(a, Tensor) else b
    return as_tensor(a, like), as_tensor(b, like)


def add(a: Any, b: Any) -> Tensor:
    """``y = a + b`` (broadcasting). VJP: ``(g, g)``, each unbroadcast."""
    a, b = _operands(a, b)

    def vjp(g, needs):
        return (unbroadcast(g, a.shape) if needs[0] else None,
                unbroadcast(g, b.shape) if needs[1] else None)
    return record("add", a.data + b.data, (a, b), vjp)


def subtract(a: Any, b: Any) -> Tensor:
    """``y = a - b`` (broadcasting). VJP: ``(g, -g)``, each unbroadcast."""
    a, b = _operands(a, b)

    def vjp(g, needs):
        return (unbroadcast(g, a.shape) if needs[0] else None,
                unbroadcast(-g, b.shape) if needs[1] else None)
    return record("subtract", a.data - b.data, (a, b), vjp)


def multiply(a: Any, b: Any) -> Tensor:
    """``y = a * b`` (broadcasting). VJP: ``(g * b, g * a)``, each unbroadcast."""
    a, b = _operands(a, b)

    def vjp(g, needs):
        return (unbroadcast(g * b.data, a.shape) if needs[0] else None,
                unbroadcast(g * a.data, b.shape) if needs[1] else None)
    return record("multiply", a.data * b.data, (a, b), vjp)


def divide(a: Any, b: Any) -> Tensor:
    """``y = a / b`` (broadcasting). VJP: ``(g / b, -g * a / b**2)``, each unbroadcast."""
    a, b = _operands(a, b)

    def vjp(g, needs):
        return (unbroadcast(g / b.data, a.shape) if needs[0] else None,
                unbroadcast(-g * a.data / (b.data * b.data), b.shape) if needs[1] else None)
    return record("divide", a.data / b.data, (a, b), vjp)


def negative(a: Tensor) -> Tensor:
    """``y = -a``. VJP: ``-g``."""
    return record("negative", -a.data, (a,), lambda g, needs: (-g,))


def power(a: Tensor, exponent: float) -> Tensor:
    """``y = a ** p`` for a constant Python number ``p``. VJP: ``g * p * a**(p-1)``."""
    p = float(exponent)
    return record("power", a.data ** p, (a,), lambda g, needs: (g * p * a.data ** (p - 1.0),))


def exp(a: Tensor) -> Tensor:
    """``y = exp(a)``. VJP: ``g * y``."""
    y = a.xp.exp(a.data)
    return record("exp", y, (a,), lambda g, needs: (g * y,))


def log(a: Tensor) -> Tensor:
    """``y = log(a)`` (natural). VJP: ``g / a``."""
    return record("log", a.xp.log(a.data), (a,), lambda g, needs: (g / a.data,))


def _normalise_axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    return tuple(sorted(ax % ndim for ax in axes))


def _expand_reduced(g: Any, axes: tuple[int, ...], keepdims: bool) -> Any:
    """Put back, as size-1 axes, the axes a reduction without keepdims removed."""
    if keepdims:
        return g
    xp = get_xp(g)
    return xp.expand_dims(g, axes) if axes else g


def sum(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """``y = sum over axis of a``. VJP: ``g`` broadcast back over the summed axes."""
    axes = _normalise_axes(axis, a.ndim)
    y = a.data.sum(axis=axes, keepdims=keepdims)

    def vjp(g, needs):
        xp = get_xp(g)
        return (xp.broadcast_to(_expand_reduced(g, axes, keepdims), a.shape).copy(),)
    return record("sum", y, (a,), vjp)


def mean(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:
    """``y = (1/N) sum over axis of a``, N the number of elements reduced. VJP: ``g / N`` broadcast back."""
    axes = _normalise_axes(axis, a.ndim)
    count = 1
    for ax in axes:
        count *= a.shape[ax]
    y = a.data.mean(axis=axes, keepdims=keepdims)

    def vjp(g, needs):
        xp = get_xp(g)
        return (xp.broadcast_to(_expand_reduced(g, axes, keepdims) / count, a.shape).copy(),)
    return record("mean", y, (a,), vjp)


def max(a: Tensor, axis: Axis = None, keepdims: bool = False) -> Tensor:  # noqa: A001
    """``y = max over axis of a``.

    VJP: ``g`` goes to the elements equal to the maximum, divided by how many
    there are (ties share the gradient equally).
    """
    axes = _normalise_axes(axis, a.ndim)
    y_kept = a.data.max(axis=axes, keepdims=True)
    y = y_kept if keepdims else a.data.max(axis=axes, keepdims=False)

    def vjp(g, needs):
        winners = (a.data == y_kept).astype(a.dtype)
        share = winners / winners.sum(axis=axes, keepdims=True)
        return (share * _expand_reduced(g, axes, keepdims),)
    return record("max", y, (a,), vjp)


def reshape(a: Tensor, shape: Any) -> Tensor:
    """Row-major reshape. VJP: ``g`` reshaped back to ``a.shape``."""
    return record("reshape", a.data.reshape(shape), (a,), lambda g, needs: (g.reshape(a.shape),))


def transpose(a: Tensor, axes: tuple[int, ...] | None = None) -> Tensor:
    """Permute axes. VJP: ``g`` permuted by the inverse permutation."""
    perm = tuple(reversed(range(a.ndim))) if axes is None else tuple(ax % a.ndim for ax in axes)
    inverse = tuple(perm.index(i) for i in range(a.ndim))
    return record("transpose", a.data.transpose(perm), (a,), lambda g, needs: (g.transpose(inverse),))


def _unwrap_index(index: Any) -> Any:
    """Replace Tensors inside an index by their arrays (indices are never differentiated)."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(_unwrap_index(i) for i in index)
    return index


def getitem(a: Tensor, index: Any) -> Tensor:
    """``y = a[index]``: basic slicing, integer arrays or a boolean mask.

    VJP: a zero array of ``a``'s shape with ``g`` added at ``index``; an index that
    picks an element twice adds both gradients (scatter-add).
    """
    index = _unwrap_index(index)
    y = a.data[index]

    def vjp(g, needs):
        xp = get_xp(g)
        grad = xp.zeros(a.shape, dtype=g.dtype)
        scatter_add(xp, grad, index, g)
        return (grad,)
    return record("getitem", y, (a,), vjp)


def matmul(a: Any, b: Any) -> Tensor:
    """``y = a @ b`` with NumPy's rules (1-D operands, batched and broadcast stacks).

    VJP: ``dA = g @ b^T`` and ``dB = a^T @ g`` (on the last two axes), unbroadcast
    over stacked axes; a 1-D operand is treated as a row (a) or column (b).
    """
    a, b = _operands(a, b)
    xp = a.xp

    def vjp(g, needs):
        a2 = a.data[None, :] if a.ndim == 1 else a.data
        b2 = b.data[:, None] if b.ndim == 1 else b.data
        g2 = g
        if b.ndim == 1:  # g (..., k) -> (..., k, 1); done first so 1-D @ 1-D goes () -> (1,) -> (1, 1)
            g2 = xp.expand_dims(g2, -1)
        if a.ndim == 1:  # g (..., m) -> (..., 1, m)
            g2 = xp.expand_dims(g2, -2)
        grad_a = grad_b = None
        if needs[0]:
            grad_a = unbroadcast(g2 @ xp.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
        if needs[1]:
            grad_b = unbroadcast(xp.swapaxes(a2, -1, -2) @ g2, b2.shape).reshape(b.shape)
        return grad_a, grad_b
    return record("matmul", a.data @ b.data, (a, b), vjp)
