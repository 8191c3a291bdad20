"""Loop twins of :mod:`refcam.ops.conv`: plain Python loops over every index (tiny shapes only).

Everything is derived from the definition: ``y[b, f, o] += w[f, c', k] * x[b, c, i]``
with ``c = group(f) * C/G + c'`` and ``i = o*s + k*d - p_begin`` on each axis; taps
with ``i`` outside the input read zero padding and are skipped. No padding,
strided view or matrix product is used.
"""
from __future__ import annotations

import itertools
from typing import Iterator, Sequence

import numpy as np

Index = tuple[int, ...]


def naive_output_spatial(spatial: Sequence[int], kernel: Sequence[int], stride: Sequence[int],
                         dilation: Sequence[int], padding: Sequence[int]) -> Index:
    """Count, per axis, the window starts ``o*s`` whose last tap ``o*s + (k-1)*d`` fits the padded input."""
    nd = len(spatial)
    out = []
    for axis in range(nd):
        padded = spatial[axis] + padding[axis] + padding[nd + axis]
        last_tap = (kernel[axis] - 1) * dilation[axis]
        out.append(sum(1 for start in range(0, padded, stride[axis]) if start + last_tap < padded))
    return tuple(out)


def taps(x_shape: Sequence[int], w_shape: Sequence[int], stride: Sequence[int],
         dilation: Sequence[int], padding: Sequence[int], groups: int) -> Iterator[tuple[Index, Index, Index]]:
    """Every ``(y_index, w_index, x_index)`` with ``y[y_index] += w[w_index] * x[x_index]``."""
    batch, _, *spatial = x_shape
    filters, channels_per_group, *kernel = w_shape
    filters_per_group = filters // groups
    out = naive_output_spatial(spatial, kernel, stride, dilation, padding)
    for b, f in itertools.product(range(batch), range(filters)):
        group = f // filters_per_group
        for o in itertools.product(*(range(n) for n in out)):
            for c_in_group in range(channels_per_group):
                for k in itertools.product(*(range(n) for n in kernel)):
                    i = tuple(o[a] * stride[a] + k[a] * dilation[a] - padding[a] for a in range(len(o)))
                    if all(0 <= i[a] < spatial[a] for a in range(len(i))):
                        c = group * channels_per_group + c_in_group
                        yield (b, f) + o, (f, c_in_group) + k, (b, c) + i


def naive_conv(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride, dilation, padding,
               groups: int) -> np.ndarray:
    """The convolution, one multiply-add per tap."""
    out = naive_output_spatial(x.shape[2:], w.shape[2:], stride, dilation, padding)
    y = np.zeros((x.shape[0], w.shape[0]) + out, dtype=x.dtype)
    for y_index, w_index, x_index in taps(x.shape, w.shape, stride, dilation, padding, groups):
        y[y_index] += w[w_index] * x[x_index]
    if b is not None:
        for index in np.ndindex(*y.shape):
            y[index] += b[index[1]]
    return y


def naive_conv_vjp_input(grad_y: np.ndarray, w: np.ndarray, x_shape, stride, dilation, padding,
                         groups: int) -> np.ndarray:
    """``dL/dx[x_index] = sum over taps of w[w_index] * grad_y[y_index]``."""
    grad_x = np.zeros(x_shape, dtype=grad_y.dtype)
    for y_index, w_index, x_index in taps(x_shape, w.shape, stride, dilation, padding, groups):
        grad_x[x_index] += w[w_index] * grad_y[y_index]
    return grad_x


def naive_conv_vjp_weight(grad_y: np.ndarray, x: np.ndarray, w_shape, stride, dilation, padding,
                          groups: int) -> np.ndarray:
    """``dL/dw[w_index] = sum over taps of x[x_index] * grad_y[y_index]``."""
    grad_w = np.zeros(w_shape, dtype=grad_y.dtype)
    for y_index, w_index, x_index in taps(x.shape, w_shape, stride, dilation, padding, groups):
        grad_w[w_index] += x[x_index] * grad_y[y_index]
    return grad_w


def naive_conv_vjp_bias(grad_y: np.ndarray) -> np.ndarray:
    """``dL/dbias[f] = sum of grad_y[b, f, o]`` over every batch index and position."""
    grad_b = np.zeros(grad_y.shape[1], dtype=grad_y.dtype)
    for index in np.ndindex(*grad_y.shape):
        grad_b[index[1]] += grad_y[index]
    return grad_b
