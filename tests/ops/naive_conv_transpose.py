"""Loop twin of :mod:`refcam.ops.conv_transpose`: every input cell scatters itself times the kernel.

From the definition only: input cell ``x[b, c, o]`` adds ``w[c, f', k] * x[b, c, o]``
to full-output position ``p = o*s + k*d`` of channel ``group(c) * F/G + f'``, which
is output index ``t = p - crop_begin`` when ``0 <= t < out``. No convolution,
padding, strided view or matrix product is used.
"""
from __future__ import annotations

import itertools
from typing import Iterator, Sequence

import numpy as np

Index = tuple[int, ...]


def naive_output_spatial(spatial, kernel, stride, dilation, cropping, output_padding) -> Index:
    """``(n - 1) s + (k - 1) d + 1 - crop_begin - crop_end + output_padding`` per axis."""
    nd = len(spatial)
    return tuple((spatial[a] - 1) * stride[a] + (kernel[a] - 1) * dilation[a] + 1 - cropping[a] - cropping[nd + a]
                 + output_padding[a] for a in range(nd))


def taps(x_shape, w_shape, stride, dilation, cropping, output_padding,
         groups: int) -> Iterator[tuple[Index, Index, Index]]:
    """Every ``(y_index, w_index, x_index)`` with ``y[y_index] += w[w_index] * x[x_index]``."""
    batch, channels, *spatial = x_shape
    _, filters_per_group, *kernel = w_shape
    out = naive_output_spatial(spatial, kernel, stride, dilation, cropping, output_padding)
    channels_per_group = channels // groups
    for b, c in itertools.product(range(batch), range(channels)):
        group = c // channels_per_group
        for o in itertools.product(*(range(n) for n in spatial)):
            for f in range(filters_per_group):
                for k in itertools.product(*(range(n) for n in kernel)):
                    t = tuple(o[a] * stride[a] + k[a] * dilation[a] - cropping[a] for a in range(len(o)))
                    if all(0 <= t[a] < out[a] for a in range(len(t))):
                        yield (b, group * filters_per_group + f) + t, (c, f) + k, (b, c) + o


def naive_conv_transpose(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, stride, dilation, cropping,
                         output_padding, groups: int = 1) -> np.ndarray:
    out = naive_output_spatial(x.shape[2:], w.shape[2:], stride, dilation, cropping, output_padding)
    y = np.zeros((x.shape[0], w.shape[1] * groups) + out, dtype=x.dtype)
    for y_index, w_index, x_index in taps(x.shape, w.shape, stride, dilation, cropping, output_padding, groups):
        y[y_index] += w[w_index] * x[x_index]
    if b is not None:
        for index in np.ndindex(*y.shape):
            y[index] += b[index[1]]
    return y


def naive_conv_transpose_vjp_input(grad_y: np.ndarray, w: np.ndarray, x_shape, stride, dilation, cropping,
                                   output_padding, groups: int = 1) -> np.ndarray:
    grad_x = np.zeros(x_shape, dtype=grad_y.dtype)
    for y_index, w_index, x_index in taps(x_shape, w.shape, stride, dilation, cropping, output_padding, groups):
        grad_x[x_index] += w[w_index] * grad_y[y_index]
    return grad_x


def naive_conv_transpose_vjp_weight(grad_y: np.ndarray, x: np.ndarray, w_shape: Sequence[int], stride, dilation,
                                    cropping, output_padding, groups: int = 1) -> np.ndarray:
    grad_w = np.zeros(w_shape, dtype=grad_y.dtype)
    for y_index, w_index, x_index in taps(x.shape, w_shape, stride, dilation, cropping, output_padding, groups):
        grad_w[w_index] += x[x_index] * grad_y[y_index]
    return grad_w
