"""N-d convolution (cross-correlation, no kernel flip), written once for N = 1, 2, 3.

Layout
------
``x`` is ``(B, C, *S)``, ``weight`` is ``(F, C/G, *k)``, ``bias`` is ``(F,)`` or
absent, the output is ``(B, F, *O)``; ``N = len(k)`` spatial axes. Padding is
``(begin_1..begin_N, end_1..end_N)`` with zeros (see :mod:`refcam.ops.padding`).

Formula
-------
With ``x_pad`` the zero-padded input, ``G`` groups, ``group(f) = f // (F/G)`` and
channel ``c`` of group ``g`` running over ``[g*C/G, (g+1)*C/G)``::

    y[b, f, o] = bias[f] + sum_{c in group(f)} sum_{k} w[f, c - g*C/G, k] * x_pad[b, c, o*s + k*d]

for every multi-index ``o`` (output) and ``k`` (kernel), products taken per axis.
Output channels are group-major: channels ``[g*F/G, (g+1)*F/G)`` read input
channels ``[g*C/G, (g+1)*C/G)``. Depthwise convolution is ``G = C`` (channel
multiplier ``F/C``).

Output size on each axis (input ``n``, kernel ``k``, stride ``s``, dilation ``d``)::

    out = floor((n + p_begin + p_end - ((k - 1) * d + 1)) / s) + 1

Implementation (im2col + GEMM)
------------------------------
The column matrix ``cols[c, k, b, o] = x_pad[b, c, o*s + k*d]`` of shape
``(C, *k, B, *O)``, read as ``(G, (C/G)*K, B*P)`` (``K = prod(k)``,
``P = prod(O)``), is one copy of a strided window view of the zero-padded
input (padded once per call, or per tile below: only the rows the tile reads).
With ``W`` the weight as ``(G, F/G, (C/G)*K)``, one GEMM covers the whole batch::

    y = W @ cols                      # (G, F/G, B*P) -> (F, B, *O) -> (B, F, *O)

When the column matrix would exceed ``COLUMN_BUDGET_BYTES`` (large 3-D
inputs), the output is computed in tiles of consecutive indices on its first
spatial axis, each with its own smaller column matrix; every output element is
still one dot product of the same terms.

VJPs (``g_y = dL/dy`` of shape ``(B, F, *O)``, as ``(B, G, F/G, P)``)
-----------------------------------------------------------------
* bias:   ``dL/dbias[f] = sum_{b, o} g_y[b, f, o]``.
* weight: ``dL/dW = g_y @ cols^T`` with ``g_y`` as ``(G, F/G, B*P)`` (shape
  ``(G, F/G, (C/G)*K)``); the columns are rebuilt from ``x`` rather than kept
  from the forward pass.
* input (col2im, a transposed convolution):
  ``g_cols = W^T @ g_y`` (shape ``(B, G, (C/G)*K, P)`` viewed as ``(B, C, *k, *O)``), then
  ``dL/dx_pad[b, c, o*s + k*d] += g_cols[b, c, k, o]`` accumulated with one
  strided slice per kernel offset ``k`` (never a loop over positions), and
  ``dL/dx`` is ``dL/dx_pad`` with the padding cropped off. Padded cells and input
  cells no window reaches (a remainder when ``s`` does not divide the span)
  receive zero.

Both VJPs use the forward pass's tiles: when ``cols`` (weight) or ``g_cols``
(input) would exceed the budget, they are built for one tile of output rows
at a time, and the weight gradient sums the tiles' GEMMs (``dL/dW = sum over
tiles of g_y_tile @ cols_tile^T``) while the input gradient adds each tile's
``g_cols`` onto ``dL/dx_pad``. With a single tile (every input within the
budget) the operations and their order are those written above; with several,
only the order of the additions changes.

Convolution is linear in each argument, so it has no non-differentiable points.

Only the gradients whose ``needs[i]`` is true are computed.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

from ..autodiff import Tensor, record
from ..backend import get_xp
from ..errors import LayerConfigError, ShapeError
from .padding import effective_kernel, output_length, unpad

Ints = tuple[int, ...]


# --- geometry and validation ---------------------------------------------------
def as_ints(name: str, values: Sequence[int], length: int, minimum: int, nd: int, op: str = "conv") -> Ints:
    """``values`` as a tuple of ``length`` ints, each at least ``minimum`` (``op`` names the caller in errors)."""
    ints = tuple(int(v) for v in values)
    if len(ints) != length:
        raise ShapeError(f"{op} {name} {ints!r} has {len(ints)} entries; the weight has {nd} "
                         f"spatial axes, so give {length}.")
    if any(v < minimum for v in ints):
        raise LayerConfigError(f"{op} {name} {ints!r} must hold integers >= {minimum}.")
    return ints


def conv_output_shape(x_shape: Sequence[int], w_shape: Sequence[int], stride: Sequence[int],
                      dilation: Sequence[int], padding: Sequence[int], groups: int = 1) -> Ints:
    """Validate a convolution's shapes and return its output shape ``(B, F, *O)``.

    Raises :class:`~refcam.errors.ShapeError` when the shapes do not fit and
    :class:`~refcam.errors.LayerConfigError` for a stride or dilation below 1,
    negative padding or ``groups`` below 1.

    >>> conv_output_shape((2, 4, 9, 9), (8, 2, 3, 3), (2, 2), (1, 1), (1, 1, 1, 1), groups=2)
    (2, 8, 5, 5)
    """
    x_shape, w_shape = tuple(x_shape), tuple(w_shape)
    nd = len(w_shape) - 2
    if nd < 1 or len(x_shape) != nd + 2:
        raise ShapeError(f"conv needs x (B, C, *spatial) and weight (F, C/groups, *kernel) with the same "
                         f"number of spatial axes (1, 2 or 3); got x {x_shape} and weight {w_shape}.")
    stride = as_ints("stride", stride, nd, 1, nd)
    dilation = as_ints("dilation", dilation, nd, 1, nd)
    padding = as_ints("padding", padding, 2 * nd, 0, nd)
    if int(groups) < 1:
        raise LayerConfigError(f"conv groups must be >= 1, got {groups!r}.")
    channels, filters, channels_per_group = x_shape[1], w_shape[0], w_shape[1]
    if channels % groups or filters % groups:
        raise ShapeError(f"conv groups={groups} must divide the input channels ({channels}, x {x_shape}) "
                         f"and the filters ({filters}, weight {w_shape}).")
    if channels_per_group * groups != channels:
        raise ShapeError(f"conv weight {w_shape} expects {channels_per_group} channels per group x "
                         f"{groups} group(s) = {channels_per_group * groups} input channels; "
                         f"x {x_shape} has {channels}.")
    kernel, spatial = w_shape[2:], x_shape[2:]
    out = tuple(output_length(n, k, s, d, padding[i], padding[nd + i])
                for i, (n, k, s, d) in enumerate(zip(spatial, kernel, stride, dilation)))
    if any(o < 1 for o in out):
        extents = tuple(effective_kernel(k, d) for k, d in zip(kernel, dilation))
        padded = tuple(n + padding[i] + padding[nd + i] for i, n in enumerate(spatial))
        raise ShapeError(f"conv kernel {kernel} with dilation {dilation} spans {extents}, larger than the "
                         f"padded input {padded} (x {x_shape}, padding {padding}); pad more or use a "
                         "smaller kernel.")
    return (x_shape[0], filters) + out


def _check_bias(bias_shape: Sequence[int], w_shape: Sequence[int]) -> None:
    if tuple(bias_shape) != (w_shape[0],):
        raise ShapeError(f"conv bias has shape {tuple(bias_shape)}; the weight {tuple(w_shape)} "
                         f"has {w_shape[0]} filters, so the bias must be ({w_shape[0]},).")


def _check_grad_y(grad_y: Any, expected: Ints) -> None:
    if tuple(grad_y.shape) != expected:
        raise ShapeError(f"conv VJP got grad_y of shape {tuple(grad_y.shape)}; the output has shape {expected}.")


# --- im2col and col2im ---------------------------------------------------------
COLUMN_BUDGET_BYTES = 1 << 26  # largest column buffer built at once (64 MiB); larger ones are tiled


def _padded_slab(x: Any, padding: Ints, first_row: int, stop_row: int) -> Any:
    """Rows ``[first_row, stop_row)`` on the first spatial axis of the zero-padded input.

    Shape ``(B, C, stop_row - first_row, *Sp[1:])``. A view of ``x`` when nothing
    is padded; else a new zero-filled array with the real cells copied in.
    """
    nd = x.ndim - 2
    spatial = tuple(x.shape[2:])
    if not any(padding):
        return x[:, :, first_row:stop_row]
    begins = padding[:nd]
    padded_rest = tuple(n + padding[a] + padding[nd + a] for a, n in enumerate(spatial) if a > 0)
    slab = get_xp(x).zeros(tuple(x.shape[:2]) + (stop_row - first_row,) + padded_rest, dtype=x.dtype)
    lo = max(first_row - begins[0], 0)                  # real input rows the slab holds: [lo, hi)
    hi = min(stop_row - begins[0], spatial[0])
    if lo < hi:
        rows = slice(lo + begins[0] - first_row, hi + begins[0] - first_row)
        rest = tuple(slice(p, p + n) for p, n in zip(begins[1:], spatial[1:]))
        slab[(slice(None), slice(None), rows) + rest] = x[(slice(None), slice(None), slice(lo, hi))]
    return slab


def _im2col(x: Any, kernel: Ints, out: Ints, stride: Ints, dilation: Ints, padding: Ints,
            groups: int, rows: tuple[int, int] | None = None) -> Any:
    """The column matrices ``(G, (C/G)*K, B*P_rows)`` of a convolution (see module docstring).

    Laid out as ``(C, *k, B, *O)``: one row per (channel, kernel offset), the
    batch and the output positions along the row, so that one GEMM serves the
    whole batch. ``rows = (first, stop)`` restricts the output positions to
    those whose index on the first spatial axis lies in ``[first, stop)`` (a
    tile); default all. Only the padded input rows the tile reads are padded
    (:func:`_padded_slab`); the matrix is one copy of a strided window view of
    them: ``cols[c, k, b, o] = slab[b, c, o*s + k*d]``.
    """
    xp = get_xp(x)
    first, stop = rows if rows is not None else (0, out[0])
    slab = _padded_slab(x, padding, first * stride[0],
                        (stop - 1) * stride[0] + (kernel[0] - 1) * dilation[0] + 1)
    batch, channels = x.shape[:2]
    steps = slab.strides[2:]
    windows = xp.lib.stride_tricks.as_strided(
        slab, shape=(channels,) + tuple(kernel) + (batch, stop - first) + tuple(out[1:]),
        strides=((slab.strides[1],) + tuple(t * d for t, d in zip(steps, dilation))
                 + (slab.strides[0],) + tuple(t * s for t, s in zip(steps, stride))))
    cols = xp.ascontiguousarray(windows)
    return cols.reshape(groups, (channels // groups) * math.prod(kernel), -1)


def _row_tiles(x_shape: Ints, kernel: Ints, out: Ints, itemsize: int) -> list[tuple[int, int]]:
    """Split the first output axis into tiles whose column buffer fits ``COLUMN_BUDGET_BYTES``."""
    row_bytes = x_shape[0] * x_shape[1] * math.prod(kernel) * math.prod(out[1:]) * itemsize
    per_tile = max(1, COLUMN_BUDGET_BYTES // max(row_bytes, 1))
    return [(first, min(first + per_tile, out[0])) for first in range(0, out[0], per_tile)]


def _col2im_add(grad_x_pad: Any, grad_cols: Any, stride: Ints, dilation: Ints, first: int = 0) -> None:
    """Adjoint of :func:`_im2col`, in place: add ``grad_cols (B, C, *k, *O_tile)`` onto ``grad_x_pad``.

    ``grad_x_pad[b, c, o*s + k*d] += grad_cols[b, c, k, o - first]`` for the
    output positions ``o`` of the tile whose first index on the first spatial
    axis is ``first``; one strided slice per kernel offset ``k``.
    """
    nd = len(stride)
    kernel, out = grad_cols.shape[2:2 + nd], grad_cols.shape[2 + nd:]
    starts = (first * stride[0],) + (0,) * (nd - 1)
    every = (slice(None), slice(None))
    for offset in itertools.product(*(range(k) for k in kernel)):
        target = tuple(slice(start + k * d, start + k * d + (o - 1) * s + 1, s)
                       for start, k, d, o, s in zip(starts, offset, dilation, out, stride))
        grad_x_pad[every + target] += grad_cols[every + offset]


# --- array kernels -------------------------------------------------------------
def conv_forward(x: Any, w: Any, b: Any | None, stride: Sequence[int], dilation: Sequence[int],
                 padding: Sequence[int], groups: int = 1) -> Any:
    """``y[b, f, o] = bias[f] + sum_{c in group(f), k} w[f, c, k] * x_pad[b, c, o*s + k*d]``.

    Arrays: x ``(B, C, *S)``, w ``(F, C/groups, *k)``, b ``(F,)`` or None; returns
    ``(B, F, *O)`` (see the module docstring for ``O``).

    >>> import numpy as np
    >>> conv_forward(np.arange(5.0)[None, None], np.ones((1, 1, 2)), None, (1,), (1,), (0, 0))
    array([[[1., 3., 5., 7.]]])
    """
    y_shape = conv_output_shape(x.shape, w.shape, stride, dilation, padding, groups)
    if b is not None:
        _check_bias(b.shape, w.shape)
    xp = get_xp(x, w, b)
    kernel, out = tuple(w.shape[2:]), y_shape[2:]
    stride, dilation, padding = tuple(stride), tuple(dilation), tuple(padding)
    w_mat = w.reshape(groups, w.shape[0] // groups, -1)  # (G, F/G, (C/G)*K)
    batch, filters, positions = x.shape[0], w.shape[0], math.prod(out)
    tiles = _row_tiles(tuple(x.shape), kernel, out, x.dtype.itemsize)
    if len(tiles) == 1:
        y = xp.matmul(w_mat, _im2col(x, kernel, out, stride, dilation, padding, groups))  # (G, F/G, B*P)
    else:
        y = xp.empty((groups, filters // groups, batch, positions), dtype=xp.result_type(x.dtype, w.dtype))
        row = math.prod(out[1:])
        for first, stop in tiles:
            cols = _im2col(x, kernel, out, stride, dilation, padding, groups, (first, stop))
            y[..., first * row:stop * row] = xp.matmul(w_mat, cols).reshape(
                groups, filters // groups, batch, (stop - first) * row)
            del cols  # freed before the next tile's slab and columns are built
    y = y.reshape(filters, batch, positions)
    if b is not None:
        y += b.reshape(filters, 1, 1)
    y = xp.swapaxes(y, 0, 1)  # (B, F, P): a view when B = 1, else made contiguous below
    return (y if batch == 1 else xp.ascontiguousarray(y)).reshape(y_shape)


def conv_vjp_input(grad_y: Any, w: Any, x_shape: Sequence[int], stride: Sequence[int],
                   dilation: Sequence[int], padding: Sequence[int], groups: int = 1) -> Any:
    """``dL/dx`` of shape ``x_shape``: ``g_cols = W^T @ g_y``, then col2im, tile by tile (module docstring)."""
    x_shape, stride, dilation, padding = tuple(x_shape), tuple(stride), tuple(dilation), tuple(padding)
    _check_grad_y(grad_y, conv_output_shape(x_shape, w.shape, stride, dilation, padding, groups))
    xp = get_xp(grad_y, w)
    nd, (batch, channels) = len(stride), x_shape[:2]
    filters, kernel, out = w.shape[0], tuple(w.shape[2:]), tuple(grad_y.shape[2:])
    w_mat_t = xp.swapaxes(w.reshape(groups, filters // groups, -1), 1, 2)  # (G, (C/G)*K, F/G)
    grad_y_mat = grad_y.reshape(batch, groups, filters // groups, -1)  # (B, G, F/G, P)
    padded_spatial = tuple(n + padding[i] + padding[nd + i] for i, n in enumerate(x_shape[2:]))
    grad_x_pad = xp.zeros(x_shape[:2] + padded_spatial, dtype=xp.result_type(grad_y.dtype, w.dtype))
    row = math.prod(out[1:])
    for first, stop in _row_tiles(x_shape, kernel, out, grad_x_pad.dtype.itemsize):
        grad_cols = xp.matmul(w_mat_t, grad_y_mat[..., first * row:stop * row])
        _col2im_add(grad_x_pad, grad_cols.reshape((batch, channels) + kernel + (stop - first,) + out[1:]),
                    stride, dilation, first)
        del grad_cols  # freed before the next tile's
    return unpad(grad_x_pad, padding)


def conv_vjp_weight(grad_y: Any, x: Any, w_shape: Sequence[int], stride: Sequence[int],
                    dilation: Sequence[int], padding: Sequence[int], groups: int = 1) -> Any:
    """``dL/dw`` of shape ``w_shape``: ``sum_b g_y[b] @ cols[b]^T``, columns rebuilt from ``x`` tile by tile."""
    w_shape, stride, dilation, padding = tuple(w_shape), tuple(stride), tuple(dilation), tuple(padding)
    y_shape = conv_output_shape(x.shape, w_shape, stride, dilation, padding, groups)
    _check_grad_y(grad_y, y_shape)
    xp = get_xp(grad_y, x)
    kernel, out = w_shape[2:], y_shape[2:]
    grad_y_3d = grad_y.reshape(x.shape[0], w_shape[0], -1)                 # (B, F, P)
    row = math.prod(out[1:])
    grad_w_mat = None
    for first, stop in _row_tiles(tuple(x.shape), kernel, out, x.dtype.itemsize):
        cols = _im2col(x, kernel, out, stride, dilation, padding, groups, (first, stop))  # (G, CK/G, B*P_tile)
        grad_y_mat = xp.swapaxes(grad_y_3d[..., first * row:stop * row], 0, 1).reshape(
            groups, w_shape[0] // groups, -1)                              # (G, F/G, B*P_tile)
        part = xp.matmul(grad_y_mat, xp.swapaxes(cols, -1, -2))           # (G, F/G, (C/G)*K)
        grad_w_mat = part if grad_w_mat is None else grad_w_mat + part
        del cols  # freed before the next tile's
    return grad_w_mat.reshape(w_shape)


def conv_vjp_bias(grad_y: Any) -> Any:
    """``dL/dbias[f] = sum over batch and every output position of grad_y[:, f]``."""
    return grad_y.sum(axis=(0,) + tuple(range(2, grad_y.ndim)))


# --- Tensor level --------------------------------------------------------------
def conv(x: Tensor, weight: Tensor, bias: Tensor | None, *, stride: Sequence[int],
         dilation: Sequence[int], padding: Sequence[int], groups: int = 1) -> Tensor:
    """N-d convolution (cross-correlation) of ``x (B, C, *S)`` with ``weight (F, C/groups, *k)``.

    Records one node ``"conv"`` with inputs ``(x, weight)`` or ``(x, weight, bias)``;
    its VJP computes only the gradients asked for.

    Parameters
    ----------
    x, weight, bias : Tensor
        Input, filters and per-filter bias ``(F,)`` (or None).
    stride, dilation : tuple of N ints
        Step between output positions and between kernel taps (1 = dense).
    padding : tuple of 2N ints
        Zero padding ``(begins..., ends...)``; turn 'same'/'causal' into numbers
        with :func:`refcam.ops.padding.resolve_padding`.
    groups : int
        Channel groups (1 = dense, C = depthwise); must divide C and F.

    >>> import numpy as np
    >>> x = Tensor(np.ones((1, 2, 4, 4)))
    >>> w = Tensor(np.ones((3, 2, 3, 3)))
    >>> conv(x, w, None, stride=(1, 1), dilation=(1, 1), padding=(1, 1, 1, 1)).shape
    (1, 3, 4, 4)
    """
    stride, dilation, padding = tuple(stride), tuple(dilation), tuple(padding)
    inputs = (x, weight) if bias is None else (x, weight, bias)
    y = conv_forward(x.data, weight.data, None if bias is None else bias.data,
                     stride, dilation, padding, groups)

    def vjp(grad_y: Any, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        grad_x = (conv_vjp_input(grad_y, weight.data, x.shape, stride, dilation, padding, groups)
                  if needs[0] else None)
        grad_w = (conv_vjp_weight(grad_y, x.data, weight.shape, stride, dilation, padding, groups)
                  if needs[1] else None)
        if bias is None:
            return grad_x, grad_w
        return grad_x, grad_w, conv_vjp_bias(grad_y) if needs[2] else None

    return record("conv", y, inputs, vjp)
