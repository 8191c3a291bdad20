"""Mean and maximum over chosen axes of each observation, the reduced axes kept with size 1.

Layout: ``x`` is ``(B, C, S_1, ..., S_N)``; ``axes`` are tensor axes from 1
(channels) to ``N + 1``, distinct, in any order (the batch axis 0 is never
reduced: observations stay independent). ``R`` is the set of cells a reduced
output cell covers, ``|R| = prod_{a in axes} x.shape[a]``::

    reduce_mean:  y[b, k] = (1 / |R|) sum_{r in R(k)} x[b, r]
    reduce_max:   y[b, k] = max_{r in R(k)} x[b, r]

Output shape: ``x.shape`` with every axis in ``axes`` set to 1 (keepdims; ONNX
``ReduceMean``/``ReduceMax`` with ``keepdims=1``, ``torch.mean``/``torch.amax``
with ``keepdim=True``). Global average pooling is ``reduce_mean`` over axes
``2..N+1``.

Derivatives (``g = dL/dy``):

* mean: ``dL/dx[b, r] = g[b, k] / |R|`` (linear, smooth).
* max: **at ties the gradient is split evenly among the maxima**:
  ``dL/dx[b, r] = g[b, k] / T(k)`` for each of the ``T(k)`` cells of ``R(k)``
  equal to ``y[b, k]``, 0 elsewhere. This is the rule of ``torch.amax``
  (PyTorch 2.x, "amax/amin evenly distributes gradient between equal
  values"), HIPS autograd and ``refcam.autodiff``'s ``Tensor.max``: of the
  subgradients of ``max`` at a tie (the convex combinations of the tied
  cells' unit vectors) it is the one that treats the tied cells alike. A NaN
  in ``R(k)`` makes ``y[b, k]`` NaN and gives that set no gradient.

  :func:`refcam.ops.pooling.global_max_pool` reduces the same cells but sends
  the whole gradient to the *first* maximum in row-major order: it is a max
  pooling whose window is the whole input, and follows the argmax rule of
  max pooling in PyTorch (``MaxPool``/``AdaptiveMaxPool``) and ONNX
  (``MaxPool`` indices). The two agree except at ties. A reduce-max layer
  stands for ``ReduceMax``/``amax``, so it takes their rule.
"""
from __future__ import annotations

import math
import operator
from typing import Any, Sequence

from ..autodiff import Tensor, record
from ..backend import get_xp
from ..errors import ShapeError


def check_reduce_axes(op: str, shape: Sequence[int], axes: Sequence[int]) -> tuple[int, ...]:
    """``axes`` as sorted distinct ints in ``[1, len(shape))``, or ShapeError naming the shape.

    >>> check_reduce_axes("reduce_mean", (2, 3, 4, 5), (3, 1))
    (1, 3)
    """
    values = tuple(operator.index(a) for a in axes)
    ndim = len(shape)
    if not values or len(set(values)) != len(values) or not all(1 <= a < ndim for a in values):
        raise ShapeError(
            f"{op}: axes {list(values)} do not fit an input of shape {tuple(shape)} (B, C, *S): give one "
            f"or more distinct axes from 1 (channels) to {ndim - 1}; the batch axis 0 is never reduced.")
    return tuple(sorted(values))


# --- mean --------------------------------------------------------------------------
def reduce_mean_forward(x: Any, axes: tuple[int, ...]) -> Any:
    """Mean over ``axes``, kept with size 1."""
    return x.mean(axis=axes, keepdims=True)


def reduce_mean_vjp_x(grad_y: Any, x_shape: Sequence[int], axes: tuple[int, ...]) -> Any:
    """``g / |R|`` broadcast back over the reduced axes."""
    count = math.prod(x_shape[a] for a in axes)
    return get_xp(grad_y).broadcast_to(grad_y / float(count), tuple(x_shape)).copy()


def reduce_mean(x: Tensor, axes: Sequence[int]) -> Tensor:
    """Mean of ``x`` (B, C, *S) over tensor ``axes`` (1 = channels), kept with size 1.

    >>> import numpy as np
    >>> reduce_mean(Tensor(np.arange(6.0).reshape(1, 2, 3)), (2,)).data
    array([[[1.],
            [4.]]])
    """
    axes = check_reduce_axes("reduce_mean", x.shape, axes)
    x_shape = x.shape
    return record("reduce_mean", reduce_mean_forward(x.data, axes), (x,),
                  lambda g, needs: (reduce_mean_vjp_x(g, x_shape, axes),))


# --- max ---------------------------------------------------------------------------
def reduce_max_forward(x: Any, axes: tuple[int, ...]) -> Any:
    """Maximum over ``axes``, kept with size 1."""
    return x.max(axis=axes, keepdims=True)


def reduce_max_vjp_x(grad_y: Any, x: Any, y: Any, axes: tuple[int, ...]) -> Any:
    """``g / T`` to each of the ``T`` cells equal to the maximum (ties share evenly), 0 elsewhere."""
    xp = get_xp(grad_y, x, y)
    is_max = x == y                                                    # y broadcasts over the axes
    ties = is_max.sum(axis=axes, keepdims=True, dtype=grad_y.dtype)    # T, shape of y
    return xp.where(is_max, grad_y / xp.maximum(ties, 1.0), 0.0)


def reduce_max(x: Tensor, axes: Sequence[int]) -> Tensor:
    """Maximum of ``x`` (B, C, *S) over tensor ``axes`` (1 = channels), kept with size 1.

    At ties the gradient is split evenly among the maxima (``torch.amax``).

    >>> import numpy as np
    >>> reduce_max(Tensor(np.array([[[1.0, 5.0], [7.0, 2.0]]])), (1, 2)).data
    array([[[7.]]])
    """
    axes = check_reduce_axes("reduce_max", x.shape, axes)
    y = reduce_max_forward(x.data, axes)
    return record("reduce_max", y, (x,), lambda g, needs: (reduce_max_vjp_x(g, x.data, y, axes),))


REDUCTIONS = {"mean": reduce_mean, "max": reduce_max}
"""The reduce op of each ``ReduceLayer`` operation."""
