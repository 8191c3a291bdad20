"""Ops that merge several branches of a network: concatenation and n-ary sum.

Layout: (B, C, *spatial) tensors.

* ``concat(xs, axis=1)``: ``y`` is the ``x_k`` laid one after another along
  ``axis``, in input order (MATLAB ``depthConcatenationLayer`` on channels).
  Every other axis must agree; ``y.shape[axis] = sum_k x_k.shape[axis]``.
  VJP: ``g`` split along ``axis`` back into pieces of the input sizes.
* ``add(xs)``: ``y = x_1 + ... + x_n`` for tensors of one shape (MATLAB
  ``additionLayer``; no broadcasting). VJP: ``g`` to every input.
* ``multiply(xs)``: ``y = x_1 * ... * x_n`` element-wise (MATLAB
  ``multiplicationLayer``, ONNX ``Mul``, Keras ``Multiply``, the
  squeeze-and-excitation gate ``(B, C, 1, 1) * (B, C, H, W)``). Broadcasting:
  every input has the same number of axes and the same batch size; on every
  other axis each input has size 1 or the output's size ``n_a`` (the one size
  other than 1 found on axis ``a``, or 1), and a size-1 axis is repeated::

      y[b, i_1, ..., i_k] = prod_j x_j[b, i_1 or 0, ..., i_k or 0]   (0 where x_j has size 1)

  VJP (product rule)::

      dL/dx_i = unbroadcast(g * prod_{j != i} x_j, shape of x_i)

  where ``unbroadcast`` (:func:`refcam.autodiff.unbroadcast`) sums over the
  axes on which ``x_i`` had size 1, keeping them. The product of the other
  inputs is multiplied out, never ``y / x_i``, so zeros in the inputs are
  exact. Smooth everywhere (a polynomial).

concat and add are linear. The output dtype is that of the first input (the
others are cast to it).
"""
from __future__ import annotations

from itertools import accumulate
from typing import Any, Sequence

from ..autodiff import Tensor, record, unbroadcast
from ..backend import get_xp
from ..errors import ShapeError


def _check_not_empty(op: str, xs: Sequence[Tensor]) -> None:
    if not xs:
        raise ShapeError(f"{op}: needs at least one input tensor, got none.")


# --- concatenation ---------------------------------------------------------------
def concat_forward(xs: Sequence[Any], axis: int) -> Any:
    """The arrays ``xs`` joined along ``axis`` in order, in ``xs[0]``'s dtype."""
    return get_xp(*xs).concatenate(tuple(xs), axis=axis, dtype=xs[0].dtype)


def concat_vjp(grad_y: Any, sizes: Sequence[int], axis: int) -> list[Any]:
    """``grad_y`` cut along ``axis`` into consecutive pieces of lengths ``sizes``."""
    boundaries = list(accumulate(sizes[:-1]))  # where each piece after the first begins
    return get_xp(grad_y).split(grad_y, boundaries, axis=axis)


def _check_concat_shapes(xs: Sequence[Tensor], axis: int) -> int:
    """Return ``axis`` as a non-negative index; raise ShapeError unless all shapes agree off ``axis``."""
    ndim = xs[0].ndim
    shapes = [x.shape for x in xs]
    if any(x.ndim != ndim for x in xs) or not -ndim <= axis < ndim:
        raise ShapeError(f"concat: inputs of shapes {shapes} cannot be joined along axis {axis}: "
                         "they need the same number of axes, and the axis must exist.")
    axis %= ndim
    off_axis = {shape[:axis] + shape[axis + 1:] for shape in shapes}
    if len(off_axis) > 1:
        raise ShapeError(f"concat: inputs of shapes {shapes} differ on axes other than {axis}; "
                         "every branch must have the same batch and spatial sizes (resize or crop "
                         "the branches first).")
    return axis


def concat(xs: Sequence[Tensor], axis: int = 1) -> Tensor:
    """Concatenate tensors along ``axis`` (channels by default) in input order.

    >>> import numpy as np
    >>> a, b = Tensor(np.zeros((1, 1, 2))), Tensor(np.ones((1, 2, 2)))
    >>> concat([a, b]).shape
    (1, 3, 2)
    """
    xs = tuple(xs)
    _check_not_empty("concat", xs)
    axis = _check_concat_shapes(xs, axis)
    sizes = [x.shape[axis] for x in xs]
    y = concat_forward([x.data for x in xs], axis)
    return record("concat", y, xs, lambda g, needs: tuple(concat_vjp(g, sizes, axis)))


# --- n-ary sum ---------------------------------------------------------------------
def add_forward(xs: Sequence[Any]) -> Any:
    """``xs[0] + xs[1] + ... `` (same shapes), in ``xs[0]``'s dtype."""
    total = xs[0].copy()
    for x in xs[1:]:
        total += x
    return total


def add(xs: Sequence[Tensor]) -> Tensor:
    """Element-wise sum of tensors of one shape (no broadcasting).

    >>> import numpy as np
    >>> add([Tensor(np.ones(2)), Tensor(np.ones(2)), Tensor(np.ones(2))]).data
    array([3., 3.])
    """
    xs = tuple(xs)
    _check_not_empty("add", xs)
    shapes = [x.shape for x in xs]
    if len(set(shapes)) > 1:
        raise ShapeError(f"add: inputs have shapes {shapes}; all must have the same shape "
                         "(addition does not broadcast). Check the branches feeding this layer.")
    y = add_forward([x.data for x in xs])
    return record("add", y, xs, lambda g, needs: tuple(g if need else None for need in needs))


# --- n-ary product (broadcasting) ------------------------------------------------------
def broadcast_shape(shapes: Sequence[tuple[int, ...]]) -> tuple[int, ...] | None:
    """The shape ``shapes`` broadcast to (module docstring), or None when they do not broadcast.

    Same number of axes, equal first (batch) axis; on every other axis one size
    other than 1 at most.

    >>> broadcast_shape([(2, 3, 1, 1), (2, 3, 4, 5)])
    (2, 3, 4, 5)
    """
    if len({len(shape) for shape in shapes}) != 1 or len({shape[0] for shape in shapes}) != 1:
        return None
    out = []
    for sizes in zip(*shapes):
        stretched = {n for n in sizes if n != 1}
        if len(stretched) > 1:
            return None
        out.append(stretched.pop() if stretched else 1)
    return tuple(out)


def multiply_forward(xs: Sequence[Any]) -> Any:
    """``xs[0] * xs[1] * ...`` with size-1 axes broadcast, in ``xs[0]``'s dtype (left to right)."""
    xp = get_xp(*xs)
    product = xs[0]
    for x in xs[1:]:
        product = xp.multiply(product, x, dtype=xs[0].dtype)
    return product


def multiply_vjp(grad_y: Any, xs: Sequence[Any], i: int) -> Any:
    """``dL/dx_i = unbroadcast(g * prod_{j != i} x_j)``: the other inputs multiplied in, no division."""
    xp = get_xp(grad_y)
    others = grad_y
    for j, x in enumerate(xs):
        if j != i:
            others = xp.multiply(others, x, dtype=grad_y.dtype)
    return unbroadcast(others, tuple(xs[i].shape))


def multiply(xs: Sequence[Tensor]) -> Tensor:
    """Element-wise product of two or more tensors, size-1 axes broadcast (module docstring).

    Raises :class:`~refcam.errors.ShapeError` listing every input shape when
    they do not broadcast.

    >>> import numpy as np
    >>> gate = Tensor(np.array([[[[2.0]], [[0.5]]]]))          # (1, 2, 1, 1)
    >>> multiply([gate, Tensor(np.ones((1, 2, 1, 3)))]).data[0, :, 0]
    array([[2. , 2. , 2. ],
           [0.5, 0.5, 0.5]])
    """
    xs = tuple(xs)
    if len(xs) < 2:
        raise ShapeError(f"multiply: needs at least two input tensors, got {len(xs)}.")
    shapes = [x.shape for x in xs]
    if broadcast_shape(shapes) is None:
        raise ShapeError(
            f"multiply: inputs of shapes {shapes} do not broadcast: they need the same number of axes "
            "and the same batch size, and on every other axis each input must have size 1 or the one "
            "size the others have there.")
    arrays = [x.data for x in xs]
    y = multiply_forward(arrays)

    def vjp(grad_y: Any, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return tuple(multiply_vjp(grad_y, arrays, i) if need else None for i, need in enumerate(needs))
    return record("multiply", y, xs, vjp)
