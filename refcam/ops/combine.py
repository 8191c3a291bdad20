"""Ops that merge several branches of a network: concatenation and n-ary sum.

Layout: (B, C, *spatial) tensors.

* ``concat(xs, axis=1)``: ``y`` is the ``x_k`` laid one after another along
  ``axis``, in input order (MATLAB ``depthConcatenationLayer`` on channels).
  Every other axis must agree; ``y.shape[axis] = sum_k x_k.shape[axis]``.
  VJP: ``g`` split along ``axis`` back into pieces of the input sizes.
* ``add(xs)``: ``y = x_1 + ... + x_n`` for tensors of one shape (MATLAB
  ``additionLayer``; no broadcasting). VJP: ``g`` to every input.

Both are linear, so smooth everywhere. The output dtype is that of the first
input (the others are cast to it).
"""
from __future__ import annotations

from itertools import accumulate
from typing import Any, Sequence

from ..autodiff import Tensor, record
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
