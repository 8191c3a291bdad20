"""Max and average pooling over N spatial dimensions (1-D, 2-D, 3-D), local and global.

Layout: ``x`` is ``(B, C, *S)`` with ``N = len(S)`` spatial axes; ``kernel`` and
``stride`` have N entries, ``padding`` is ``(begin_1..begin_N, end_1..end_N)``.
Pooling has no dilation.

Output size on one axis (input ``n``, kernel ``k``, stride ``s``, padding
``p_b + p_e``, padded length ``L = n + p_b + p_e``)::

    floor mode:  out = floor((L - k) / s) + 1                  (padding.output_length)
    ceil mode:   out = ceil((L - k) / s) + 1,
                 minus 1 if the last window would start at or after n + p_b

so in ceil mode the last window may run past the padded input but always
starts inside the input or its begin padding (the PyTorch and ONNX rule).
Window ``i`` covers padded positions ``i*s .. i*s + k - 1`` on each axis.

Max pooling::

    y[b, c, i] = max over offsets o of x_pad[b, c, i*s + o]

``x_pad`` is ``x`` padded with ``-inf``, so padded cells never win; every
window holds at least one real cell because each padding is smaller than the
kernel (validated).

Average pooling::

    y[b, c, i] = (1 / D(i)) * sum over offsets o of x_zero[b, c, i*s + o]

with ``x_zero`` padded with zeros. ``D(i)`` is the product over axes of the
number of cells the window counts on that axis:

* ``count_include_pad=True`` (MATLAB PaddingValue 0, the default; PyTorch
  ``count_include_pad=True``): real and padded cells,
  ``min(i*s + k, L) - i*s``. This is ``k`` except for a ceil-mode window
  running past the padded input, whose cells beyond it are not counted.
* ``count_include_pad=False`` (MATLAB PaddingValue "mean"): real cells only,
  ``min(i*s + k, p_b + n) - max(i*s, p_b)``.

Global pooling reduces over all spatial axes and keeps them with size 1:
output ``(B, C, 1, ..., 1)`` (MATLAB's 1x1xC).

Derivatives (``g = dL/dy``):

* average: each window cell receives ``g[i] / D(i)``; overlapping windows add.
* max: ``g[i]`` goes to one cell of window ``i``, the maximum. **At ties the
  gradient goes to the first maximum in row-major window order** (lowest
  offset along the first spatial axis, then the next, ...), as PyTorch's and
  ONNX's argmax; overlapping windows add. ``global_max_pool`` follows the same
  rule over the whole spatial extent.

Kernels loop over kernel offsets (``prod(kernel)`` steps), never over output
positions: windows are strided views of the padded input. The max-pool forward
keeps a running maximum, ``y = max(y, x_pad[i*s + o])`` over the offsets ``o``
(one strided slice each, updated in place), which gives the same array as a
reduction over a window view (maximum is exact and order-free; a NaN in a
window propagates either way) without the slow reduction over short strided
axes. Average pooling sums over a window view.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Sequence

from ..autodiff import Tensor, record
from ..backend import get_xp
from ..errors import LayerConfigError, ShapeError
from .padding import Padding, output_length, pad_constant, unpad


# --- geometry -----------------------------------------------------------------
def pooled_length(n: int, kernel: int, stride: int, pad_begin: int, pad_end: int,
                  ceil_mode: bool = False) -> int:
    """Number of windows on one axis (see the module docstring).

    >>> pooled_length(4, 2, 3, 1, 1), pooled_length(4, 2, 3, 1, 1, ceil_mode=True)
    (2, 2)
    >>> pooled_length(5, 2, 2, 0, 0), pooled_length(5, 2, 2, 0, 0, ceil_mode=True)
    (2, 3)
    """
    if not ceil_mode:
        return output_length(n, kernel, stride, 1, pad_begin, pad_end)
    out = -(-(n + pad_begin + pad_end - kernel) // stride) + 1
    if (out - 1) * stride >= n + pad_begin:
        out -= 1
    return out


@dataclass(frozen=True)
class PoolGeometry:
    """Validated window geometry of one pooling call.

    ``padding`` is the requested ``(begins..., ends...)``; ``extended_padding``
    adds, at the ends, the cells a ceil-mode window runs past the padded input,
    so that every window lies inside the padded array.
    """

    spatial: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: Padding
    out: tuple[int, ...]
    extended_padding: Padding

    @property
    def nd(self) -> int:
        return len(self.spatial)

    @property
    def extended_spatial(self) -> tuple[int, ...]:
        """Spatial shape of the input padded with ``extended_padding``."""
        nd = self.nd
        return tuple(n + b + e for n, b, e in zip(self.spatial, self.extended_padding[:nd],
                                                  self.extended_padding[nd:]))


def _int_tuple(name: str, value: Sequence[int], length: int, minimum: int) -> tuple[int, ...]:
    values = tuple(int(v) for v in value) if isinstance(value, (tuple, list)) else ()
    if len(values) != length or any(v < minimum for v in values):
        raise LayerConfigError(
            f"pooling {name} {value!r} is invalid: give a tuple of {length} integers >= {minimum}.")
    return values


def pool_geometry(shape: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                  padding: Sequence[int], ceil_mode: bool = False) -> PoolGeometry:
    """Check a pooling configuration against an input shape ``(B, C, *S)`` and size its output.

    Raises :class:`ShapeError` when the input has no spatial axis or a kernel is
    larger than the padded input, and :class:`LayerConfigError` when kernel,
    stride or padding have the wrong length or values, or a padding is not
    smaller than the kernel (a window could then lie entirely in padding).
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) < 3:
        raise ShapeError(f"pooling expects an input (B, C, *spatial) with at least one spatial "
                         f"axis; found shape {shape}.")
    spatial = shape[2:]
    nd = len(spatial)
    kernel = _int_tuple("kernel", kernel, nd, 1)
    stride = _int_tuple("stride", stride, nd, 1)
    padding = _int_tuple("padding", padding, 2 * nd, 0)
    begins, ends = padding[:nd], padding[nd:]
    if any(p >= k for p, k in zip(begins + ends, kernel + kernel)):
        raise LayerConfigError(
            f"pooling padding {padding} (begins..., ends...) must be smaller than the kernel "
            f"{kernel} on every side, otherwise a window can hold only padding; reduce the padding.")
    padded = tuple(n + b + e for n, b, e in zip(spatial, begins, ends))
    if any(length < k for length, k in zip(padded, kernel)):
        raise ShapeError(
            f"pooling kernel {kernel} is larger than the padded input {padded} "
            f"(input shape {shape}, padding {padding}); use a smaller kernel or a larger input.")
    out = tuple(pooled_length(n, k, s, b, e, ceil_mode)
                for n, k, s, b, e in zip(spatial, kernel, stride, begins, ends))
    overhang = tuple(max((o - 1) * s + k - length, 0)
                     for o, s, k, length in zip(out, stride, kernel, padded))
    extended = begins + tuple(e + h for e, h in zip(ends, overhang))
    return PoolGeometry(spatial, kernel, stride, padding, out, extended)


def _windows(x_pad: Any, geometry: PoolGeometry) -> Any:
    """Strided view ``(B, C, *out, *kernel)`` of the padded input; no copy."""
    xp = get_xp(x_pad)
    axis_strides = x_pad.strides[2:]
    shape = x_pad.shape[:2] + geometry.out + geometry.kernel
    strides = (x_pad.strides[:2]
               + tuple(st * s for st, s in zip(axis_strides, geometry.stride))
               + axis_strides)
    return xp.lib.stride_tricks.as_strided(x_pad, shape=shape, strides=strides)


def _window_axes(geometry: PoolGeometry) -> tuple[int, ...]:
    return tuple(range(2 + geometry.nd, 2 + 2 * geometry.nd))


def _offsets(geometry: PoolGeometry) -> Any:
    """Kernel offsets in row-major order (last spatial axis fastest)."""
    return itertools.product(*(range(k) for k in geometry.kernel))


def _offset_slices(offset: Sequence[int], geometry: PoolGeometry) -> tuple[slice, ...]:
    """Index of the padded cells ``i*s + offset`` for all windows ``i``: shape ``(B, C, *out)``."""
    return (slice(None), slice(None)) + tuple(
        slice(o, o + (n - 1) * s + 1, s) for o, n, s in zip(offset, geometry.out, geometry.stride))


def _divisor(xp: Any, geometry: PoolGeometry, count_include_pad: bool, dtype: Any) -> Any:
    """``D(i)`` of the module docstring, shape ``(*out)``, in ``dtype``."""
    nd = geometry.nd
    divisor = xp.ones((1,) * nd, dtype=dtype)
    for axis in range(nd):
        n, k, s = geometry.spatial[axis], geometry.kernel[axis], geometry.stride[axis]
        begin, end = geometry.padding[axis], geometry.padding[nd + axis]
        start = xp.arange(geometry.out[axis]) * s
        if count_include_pad:
            count = xp.minimum(start + k, n + begin + end) - start
        else:
            count = xp.minimum(start + k, begin + n) - xp.maximum(start, begin)
        per_axis_shape = [1] * nd
        per_axis_shape[axis] = geometry.out[axis]
        divisor = divisor * count.astype(dtype).reshape(per_axis_shape)
    return divisor


# --- max pooling --------------------------------------------------------------
def max_pool_forward(x: Any, *, kernel: Sequence[int], stride: Sequence[int],
                     padding: Sequence[int], ceil_mode: bool = False) -> Any:
    """Array kernel of :func:`max_pool`: ``(B, C, *S) -> (B, C, *out)``."""
    xp = get_xp(x)
    geometry = pool_geometry(x.shape, kernel, stride, padding, ceil_mode)
    x_pad = pad_constant(x, geometry.extended_padding, -math.inf)
    offsets = _offsets(geometry)
    y = x_pad[_offset_slices(next(offsets), geometry)].copy()
    for offset in offsets:
        xp.maximum(y, x_pad[_offset_slices(offset, geometry)], out=y)
    return y


def max_pool_vjp_x(grad_y: Any, x: Any, y: Any, *, kernel: Sequence[int], stride: Sequence[int],
                   padding: Sequence[int], ceil_mode: bool = False) -> Any:
    """``dL/dx`` of max pooling: ``grad_y[i]`` goes to the first maximum of window ``i``.

    Visits the kernel offsets in row-major order; an offset whose cell equals
    ``y[i]`` and comes before any other such cell of window ``i`` takes the
    gradient. Overlapping windows accumulate.
    """
    xp = get_xp(grad_y, x, y)
    geometry = pool_geometry(x.shape, kernel, stride, padding, ceil_mode)
    x_pad = pad_constant(x, geometry.extended_padding, -math.inf)
    grad_pad = xp.zeros(x_pad.shape, dtype=grad_y.dtype)
    taken = xp.zeros(y.shape, dtype=bool)
    for offset in _offsets(geometry):
        cells = _offset_slices(offset, geometry)
        first_max = (x_pad[cells] == y) & ~taken
        taken |= first_max
        grad_pad[cells] += xp.where(first_max, grad_y, 0.0)
    return unpad(grad_pad, geometry.extended_padding)


def max_pool(x: Tensor, *, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
             ceil_mode: bool = False) -> Tensor:
    """Max pooling of ``x (B, C, *S)`` over windows ``kernel`` moved by ``stride``.

    Padded cells never win. At ties the gradient goes to the first maximum in
    row-major window order. Formulas and output size: module docstring.

    >>> import numpy as np
    >>> x = Tensor(np.array([[[1.0, 3.0, 3.0, 2.0]]]), requires_grad=True)
    >>> y = max_pool(x, kernel=(2,), stride=(1,), padding=(0, 0))
    >>> y.data
    array([[[3., 3., 3.]]])
    >>> y.backward(); x.grad
    array([[[0., 2., 1., 0.]]])
    """
    config = dict(kernel=kernel, stride=stride, padding=padding, ceil_mode=ceil_mode)
    y = max_pool_forward(x.data, **config)

    def vjp(grad_y, needs):
        return (max_pool_vjp_x(grad_y, x.data, y, **config),)
    return record("max_pool", y, (x,), vjp)


# --- average pooling ----------------------------------------------------------
def avg_pool_forward(x: Any, *, kernel: Sequence[int], stride: Sequence[int],
                     padding: Sequence[int], count_include_pad: bool = True,
                     ceil_mode: bool = False) -> Any:
    """Array kernel of :func:`avg_pool`: ``(B, C, *S) -> (B, C, *out)``."""
    xp = get_xp(x)
    geometry = pool_geometry(x.shape, kernel, stride, padding, ceil_mode)
    x_pad = pad_constant(x, geometry.extended_padding, 0.0)
    window_sum = _windows(x_pad, geometry).sum(axis=_window_axes(geometry))
    return window_sum / _divisor(xp, geometry, count_include_pad, x.dtype)


def avg_pool_vjp_x(grad_y: Any, x_shape: Sequence[int], *, kernel: Sequence[int],
                   stride: Sequence[int], padding: Sequence[int], count_include_pad: bool = True,
                   ceil_mode: bool = False) -> Any:
    """``dL/dx`` of average pooling: every cell of window ``i`` gets ``grad_y[i] / D(i)``."""
    xp = get_xp(grad_y)
    geometry = pool_geometry(x_shape, kernel, stride, padding, ceil_mode)
    share = grad_y / _divisor(xp, geometry, count_include_pad, grad_y.dtype)
    grad_pad = xp.zeros(tuple(x_shape[:2]) + geometry.extended_spatial, dtype=grad_y.dtype)
    for offset in _offsets(geometry):
        grad_pad[_offset_slices(offset, geometry)] += share
    return unpad(grad_pad, geometry.extended_padding)


def avg_pool(x: Tensor, *, kernel: Sequence[int], stride: Sequence[int], padding: Sequence[int],
             count_include_pad: bool = True, ceil_mode: bool = False) -> Tensor:
    """Average pooling of ``x (B, C, *S)`` over windows ``kernel`` moved by ``stride``.

    ``count_include_pad=True`` is MATLAB's PaddingValue 0 (padded zeros are
    averaged in); ``False`` is PaddingValue "mean" (only real cells are
    averaged). Formulas and output size: module docstring.

    >>> import numpy as np
    >>> x = Tensor(np.array([[[2.0, 4.0]]]))
    >>> avg_pool(x, kernel=(2,), stride=(2,), padding=(1, 1)).data
    array([[[1., 2.]]])
    >>> avg_pool(x, kernel=(2,), stride=(2,), padding=(1, 1), count_include_pad=False).data
    array([[[2., 4.]]])
    """
    config = dict(kernel=kernel, stride=stride, padding=padding,
                  count_include_pad=count_include_pad, ceil_mode=ceil_mode)
    y = avg_pool_forward(x.data, **config)
    x_shape = x.shape

    def vjp(grad_y, needs):
        return (avg_pool_vjp_x(grad_y, x_shape, **config),)
    return record("avg_pool", y, (x,), vjp)


# --- global pooling -----------------------------------------------------------
def _spatial_axes(shape: Sequence[int]) -> tuple[int, ...]:
    if len(shape) < 3:
        raise ShapeError(f"global pooling expects an input (B, C, *spatial) with at least one "
                         f"spatial axis; found shape {tuple(shape)}.")
    return tuple(range(2, len(shape)))


def global_avg_pool_forward(x: Any) -> Any:
    """Mean over all spatial axes: ``(B, C, *S) -> (B, C, 1, ..., 1)``."""
    return x.mean(axis=_spatial_axes(x.shape), keepdims=True)


def global_avg_pool_vjp_x(grad_y: Any, x_shape: Sequence[int]) -> Any:
    """``dL/dx = grad_y / prod(S)`` broadcast over the spatial axes."""
    xp = get_xp(grad_y)
    count = math.prod(x_shape[2:])
    return xp.broadcast_to(grad_y / float(count), tuple(x_shape)).copy()


def global_avg_pool(x: Tensor) -> Tensor:
    """Mean over every spatial axis, kept with size 1: ``(B, C, *S) -> (B, C, 1, ..., 1)``.

    >>> import numpy as np
    >>> global_avg_pool(Tensor(np.arange(4.0).reshape(1, 1, 2, 2))).data
    array([[[[1.5]]]])
    """
    y = global_avg_pool_forward(x.data)
    x_shape = x.shape
    return record("global_avg_pool", y, (x,),
                  lambda grad_y, needs: (global_avg_pool_vjp_x(grad_y, x_shape),))


def global_max_pool_forward(x: Any) -> Any:
    """Maximum over all spatial axes: ``(B, C, *S) -> (B, C, 1, ..., 1)``."""
    return x.max(axis=_spatial_axes(x.shape), keepdims=True)


def global_max_pool_vjp_x(grad_y: Any, x: Any, y: Any) -> Any:
    """``dL/dx``: ``grad_y[b, c]`` goes to the first maximum of ``x[b, c]`` in row-major order.

    The first maximum is the cell equal to ``y`` that is the first such cell in
    the flattened row-major order (a running count of the maxima equals 1 there).
    """
    xp = get_xp(grad_y, x, y)
    batch, channels = x.shape[:2]
    is_max = x.reshape(batch, channels, -1) == y.reshape(batch, channels, 1)   # (B, C, prod(S))
    first_max = is_max & (xp.cumsum(is_max, axis=-1) == 1)
    grad_flat = xp.where(first_max, grad_y.reshape(batch, channels, 1), 0.0)
    return grad_flat.reshape(x.shape)


def global_max_pool(x: Tensor) -> Tensor:
    """Maximum over every spatial axis, kept with size 1: ``(B, C, *S) -> (B, C, 1, ..., 1)``.

    At ties the gradient goes to the first maximum in row-major order.

    >>> import numpy as np
    >>> global_max_pool(Tensor(np.array([[[1.0, 5.0, 2.0]]]))).data
    array([[[5.]]])
    """
    y = global_max_pool_forward(x.data)
    return record("global_max_pool", y, (x,),
                  lambda grad_y, needs: (global_max_pool_vjp_x(grad_y, x.data, y),))
