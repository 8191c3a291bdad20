"""Constant padding of the spatial axes as a Tensor op, with its adjoint (cropping).

Layout: ``x`` is ``(B, C, S_1, ..., S_N)``; ``padding`` is
``(begin_1, ..., begin_N, end_1, ..., end_N)`` in spatial-axis order (refcam's
order, :mod:`refcam.ops.padding`), every entry ``>= 0``. Per spatial axis ``i``::

    y[b, c, ..., t_i, ...] = x[b, c, ..., t_i - begin_i, ...]   if 0 <= t_i - begin_i < S_i
                           = value                                otherwise

Output size per axis: ``S_i + begin_i + end_i``. ``value`` is a constant (Keras
``ZeroPadding`` and ONNX ``Pad`` in constant mode use 0).

VJP: the padded cells do not depend on ``x``, so ``dL/dx`` is ``g`` cropped back to
the input's extent, ``g[:, :, begin_1 : begin_1 + S_1, ...]``. The map is linear,
differentiable everywhere.
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

from ..autodiff import Tensor, record
from ..errors import LayerConfigError, ShapeError
from .padding import pad_constant, unpad


def check_padding(padding: Sequence[int], spatial_rank: int) -> tuple[int, ...]:
    """``padding`` as a tuple of ``2 * spatial_rank`` non-negative ints, or LayerConfigError.

    >>> check_padding([1, 0, 2, 3], 2)
    (1, 0, 2, 3)
    """
    try:
        values = tuple(operator.index(v) for v in padding)
    except TypeError:
        values = ()
    if len(values) != 2 * spatial_rank or any(v < 0 for v in values):
        raise LayerConfigError(
            f"padding {list(padding)} must be {2 * spatial_rank} non-negative integers "
            f"(begins..., ends...) for {spatial_rank} spatial axis/axes.")
    return values


def pad_forward(x: Any, padding: tuple[int, ...], value: float) -> Any:
    """``x`` (B, C, *S) with ``padding`` cells of ``value`` around its spatial axes."""
    return pad_constant(x, padding, value)


def pad_vjp_x(grad_y: Any, padding: tuple[int, ...]) -> Any:
    """``g`` cropped to the unpadded extent: the adjoint of padding."""
    return unpad(grad_y, padding)


def pad(x: Tensor, padding: Sequence[int], value: float = 0.0) -> Tensor:
    """Pad the spatial axes of ``x`` (B, C, *S) with the constant ``value``.

    ``padding`` is ``(begins..., ends...)``, one begin and one end per spatial
    axis. Raises :class:`~refcam.errors.ShapeError` when ``x`` has no spatial
    axes and :class:`~refcam.errors.LayerConfigError` for a malformed padding.

    >>> import numpy as np
    >>> pad(Tensor(np.ones((1, 1, 2))), (1, 0), value=5.0).data
    array([[[5., 1., 1.]]])
    """
    rank = x.ndim - 2
    if rank < 1:
        raise ShapeError(f"pad takes (B, C, *spatial) with at least one spatial axis; found shape {x.shape}.")
    widths = check_padding(padding, rank)
    value = float(value)
    return record("pad", pad_forward(x.data, widths, value), (x,),
                  lambda g, needs: (pad_vjp_x(g, widths),))
