"""Ops that move or select cells without arithmetic: padding, cropping, channel shuffle and slice.

Layout: ``x`` is ``(B, C, S_1, ..., S_N)``. Every op here is linear and
differentiable everywhere; each VJP is the adjoint map (the transpose of a
0/1 matrix).

**Padding** ``pad(x, padding, value)``: ``padding`` is
``(begin_1, ..., begin_N, end_1, ..., end_N)`` in spatial-axis order (refcam's
order, :mod:`refcam.ops.padding`), every entry ``>= 0``. Per spatial axis ``i``::

    y[b, c, ..., t_i, ...] = x[b, c, ..., t_i - begin_i, ...]   if 0 <= t_i - begin_i < S_i
                           = value                                otherwise

Output size per axis: ``S_i + begin_i + end_i``. ``value`` is a constant (Keras
``ZeroPadding`` and ONNX ``Pad`` in constant mode use 0).
VJP: the padded cells do not depend on ``x``, so ``dL/dx`` is ``g`` cropped back to
the input's extent, ``g[:, :, begin_1 : begin_1 + S_1, ...]``.

**Cropping** ``crop(x, cropping)`` (Keras ``Cropping1D/2D/3D``; ONNX ``Slice``
on spatial axes), ``cropping`` in the same ``(begins..., ends...)`` order::

    y[b, c, ..., t_i, ...] = x[b, c, ..., t_i + begin_i, ...],   0 <= t_i < S_i - begin_i - end_i

Output size per axis: ``S_i - begin_i - end_i``, at least 1. VJP: ``g`` padded
with ``begin_i`` zeros before and ``end_i`` after on each axis (cropping is the
adjoint of zero padding and the other way round).

**Channel shuffle** ``channel_shuffle(x, groups)`` (ShuffleNet, Zhang et al.
2018, Sec. 3.1; PyTorch ``nn.ChannelShuffle``), ``C = groups * m``::

    (B, C, *S) -> reshape (B, groups, m, *S) -> swap axes 1, 2 -> (B, m, groups, *S) -> reshape (B, C, *S)
    y[:, j * groups + i] = x[:, i * m + j]        (0 <= i < groups, 0 <= j < m)

VJP: the inverse permutation, which is the shuffle with ``m`` groups.

**Channel slice** ``channel_slice(x, start, stop)`` (ONNX ``Slice``/``Split`` on
axis 1, ``torch.chunk``/``torch.split``; 0-based, ``stop`` exclusive)::

    y = x[:, start:stop],    0 <= start < stop <= C

VJP: a zero array of ``x``'s shape holding ``g`` in channels ``start:stop``.

Cropping and slicing return views of ``x`` (refcam never writes into an op's
input or output).
"""
from __future__ import annotations

import operator
from typing import Any, Sequence

from ..autodiff import Tensor, record
from ..backend import get_xp
from ..errors import LayerConfigError, ShapeError
from .padding import pad_constant, unpad


def check_padding(padding: Sequence[int], spatial_rank: int, what: str = "padding") -> tuple[int, ...]:
    """``padding`` (or a cropping: ``what``) as ``2 * spatial_rank`` non-negative ints, or LayerConfigError.

    >>> check_padding([1, 0, 2, 3], 2)
    (1, 0, 2, 3)
    """
    try:
        values = tuple(operator.index(v) for v in padding)
    except TypeError:
        values = ()
    if len(values) != 2 * spatial_rank or any(v < 0 for v in values):
        raise LayerConfigError(
            f"{what} {list(padding)} must be {2 * spatial_rank} non-negative integers "
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


# --- cropping ----------------------------------------------------------------------
def crop_forward(x: Any, cropping: tuple[int, ...]) -> Any:
    """``x[:, :, b_1 : S_1 - e_1, ...]``, a view of ``x`` (B, C, *S)."""
    return unpad(x, cropping)


def crop_vjp_x(grad_y: Any, cropping: tuple[int, ...]) -> Any:
    """``g`` padded with zeros back to the uncropped extent: the adjoint of cropping."""
    return pad_constant(grad_y, cropping, 0.0)


def cropped_spatial(spatial: Sequence[int], cropping: Sequence[int]) -> tuple[int, ...]:
    """``S_i - begin_i - end_i`` per spatial axis (may be < 1: the caller checks)."""
    rank = len(spatial)
    return tuple(n - cropping[i] - cropping[rank + i] for i, n in enumerate(spatial))


def crop(x: Tensor, cropping: Sequence[int]) -> Tensor:
    """Remove ``cropping = (begins..., ends...)`` cells from the spatial axes of ``x`` (B, C, *S).

    Raises :class:`~refcam.errors.ShapeError` when ``x`` has no spatial axes or
    an axis would keep fewer than one cell, and
    :class:`~refcam.errors.LayerConfigError` for a malformed cropping.

    >>> import numpy as np
    >>> crop(Tensor(np.arange(5.0).reshape(1, 1, 5)), (1, 2)).data
    array([[[1., 2.]]])
    """
    rank = x.ndim - 2
    if rank < 1:
        raise ShapeError(f"crop takes (B, C, *spatial) with at least one spatial axis; found shape {x.shape}.")
    widths = check_padding(cropping, rank, "cropping")
    kept = cropped_spatial(x.shape[2:], widths)
    if any(n < 1 for n in kept):
        raise ShapeError(
            f"crop: cropping {list(widths)} (begins..., ends...) of an input of shape {x.shape} would leave "
            f"spatial shape {kept}; every axis must keep at least one cell. Crop less.")
    return record("crop", crop_forward(x.data, widths), (x,), lambda g, needs: (crop_vjp_x(g, widths),))


# --- channel shuffle ---------------------------------------------------------------
def channel_shuffle_forward(x: Any, groups: int) -> Any:
    """Channel ``i * m + j`` of ``x`` (B, C, *S) moved to ``j * groups + i``, ``m = C / groups``."""
    batch, channels, *spatial = x.shape
    per_group = channels // groups
    grouped = x.reshape(batch, groups, per_group, *spatial)            # (B, groups, m, *S)
    swapped = get_xp(x).swapaxes(grouped, 1, 2)                         # (B, m, groups, *S)
    return swapped.reshape(batch, channels, *spatial)                   # (B, C, *S)


def channel_shuffle_vjp_x(grad_y: Any, groups: int) -> Any:
    """The inverse shuffle of ``g``: a shuffle with ``C / groups`` groups."""
    return channel_shuffle_forward(grad_y, grad_y.shape[1] // groups)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """ShuffleNet's channel shuffle of ``x`` (B, C, *S) with ``groups`` dividing ``C``.

    Raises :class:`~refcam.errors.ShapeError` when ``x`` has no channel axis or
    ``groups`` does not divide ``C``.

    >>> import numpy as np
    >>> channel_shuffle(Tensor(np.arange(6.0).reshape(1, 6)), 2).data
    array([[0., 3., 1., 4., 2., 5.]])
    """
    groups = operator.index(groups)
    if x.ndim < 2 or groups < 1 or x.shape[1] % groups:
        raise ShapeError(f"channel_shuffle: {groups} groups do not divide the channels of an input of shape "
                         f"{x.shape} (B, C, *S); use a number of groups that divides C.")
    return record("channel_shuffle", channel_shuffle_forward(x.data, groups), (x,),
                  lambda g, needs: (channel_shuffle_vjp_x(g, groups),))


# --- channel slice -----------------------------------------------------------------
def channel_slice_forward(x: Any, start: int, stop: int) -> Any:
    """``x[:, start:stop]``, a view."""
    return x[:, start:stop]


def channel_slice_vjp_x(grad_y: Any, x_shape: Sequence[int], start: int, stop: int) -> Any:
    """Zeros of ``x_shape`` with ``g`` in channels ``start:stop``."""
    grad_x = get_xp(grad_y).zeros(tuple(x_shape), dtype=grad_y.dtype)
    grad_x[:, start:stop] = grad_y
    return grad_x


def channel_slice(x: Tensor, start: int, stop: int) -> Tensor:
    """Channels ``start`` to ``stop - 1`` (0-based) of ``x`` (B, C, *S).

    Raises :class:`~refcam.errors.ShapeError` unless ``0 <= start < stop <= C``.

    >>> import numpy as np
    >>> channel_slice(Tensor(np.arange(4.0).reshape(1, 4)), 1, 3).data
    array([[1., 2.]])
    """
    start, stop = operator.index(start), operator.index(stop)
    if x.ndim < 2 or not 0 <= start < stop <= x.shape[1]:
        raise ShapeError(f"channel_slice: channels {start}:{stop} (0-based, stop exclusive) are not a "
                         f"non-empty range inside the channels of an input of shape {x.shape} (B, C, *S); "
                         "give 0 <= start < stop <= C.")
    x_shape = x.shape
    return record("channel_slice", channel_slice_forward(x.data, start, stop), (x,),
                  lambda g, needs: (channel_slice_vjp_x(g, x_shape, start, stop),))
