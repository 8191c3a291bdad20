"""Loop twins of refcam.ops.pooling: one output cell at a time, written from the definitions.

Positions are in input coordinates: window ``i`` on an axis covers
``i*s - p_b .. i*s - p_b + k - 1``; a position is real when ``0 <= pos < n``
and padding when ``-p_b <= pos < n + p_e``; beyond that (a ceil-mode window
running past the padded input) it is counted nowhere.
"""
from __future__ import annotations

import itertools
import math

import numpy as np


def naive_pooled_length(n: int, k: int, s: int, p_b: int, p_e: int, ceil_mode: bool) -> int:
    """Place windows one by one from the start of the padded input.

    Floor mode: a window is placed while it ends inside the padded input.
    Ceil mode: windows are placed until one reaches the end of the padded input,
    but never one that starts in the end padding.
    """
    padded_end = n + p_e
    starts = []
    start = -p_b
    while True:
        if ceil_mode:
            if (starts and starts[-1] + k >= padded_end) or start >= n:
                break
        elif start + k > padded_end:
            break
        starts.append(start)
        start += s
    return len(starts)


def _out_shape(spatial, kernel, stride, padding, ceil_mode):
    nd = len(spatial)
    return tuple(naive_pooled_length(spatial[d], kernel[d], stride[d], padding[d], padding[nd + d],
                                     ceil_mode) for d in range(nd))


def _window_cells(index, kernel, stride, padding):
    """Yield, in row-major offset order, the input position of every cell of window ``index``."""
    nd = len(kernel)
    for offset in itertools.product(*(range(k) for k in kernel)):
        yield tuple(index[d] * stride[d] - padding[d] + offset[d] for d in range(nd))


def _is_real(pos, spatial):
    return all(0 <= p < n for p, n in zip(pos, spatial))


def _is_padded_input(pos, spatial, padding):
    nd = len(spatial)
    return all(-padding[d] <= pos[d] < spatial[d] + padding[nd + d] for d in range(nd))


def naive_max_pool(x, kernel, stride, padding, ceil_mode=False):
    """Return ``(y, grad_fn)``; ``grad_fn(g)`` sends ``g[b, c, i]`` to the first maximum of window i."""
    batch, channels, *spatial = x.shape
    out = _out_shape(spatial, kernel, stride, padding, ceil_mode)
    y = np.zeros((batch, channels) + out, dtype=x.dtype)
    winner = {}
    for b, c in itertools.product(range(batch), range(channels)):
        for index in itertools.product(*(range(o) for o in out)):
            best, best_pos = -math.inf, None
            for pos in _window_cells(index, kernel, stride, padding):
                if _is_real(pos, spatial) and x[(b, c) + pos] > best:
                    best, best_pos = x[(b, c) + pos], pos
            y[(b, c) + index] = best
            winner[(b, c) + index] = (b, c) + best_pos

    def grad_fn(g):
        grad_x = np.zeros_like(x)
        for out_index, in_index in winner.items():
            grad_x[in_index] += g[out_index]
        return grad_x
    return y, grad_fn


def naive_avg_pool(x, kernel, stride, padding, count_include_pad=True, ceil_mode=False):
    """Return ``(y, grad_fn)`` of average pooling, dividing by the cells counted in each window."""
    batch, channels, *spatial = x.shape
    out = _out_shape(spatial, kernel, stride, padding, ceil_mode)
    y = np.zeros((batch, channels) + out, dtype=x.dtype)
    members = {}
    for index in itertools.product(*(range(o) for o in out)):
        cells = list(_window_cells(index, kernel, stride, padding))
        real = [pos for pos in cells if _is_real(pos, spatial)]
        counted = [pos for pos in cells if _is_padded_input(pos, spatial, padding)]
        members[index] = (real, len(counted) if count_include_pad else len(real))
    for b, c in itertools.product(range(batch), range(channels)):
        for index, (real, divisor) in members.items():
            y[(b, c) + index] = sum(x[(b, c) + pos] for pos in real) / divisor

    def grad_fn(g):
        grad_x = np.zeros_like(x)
        for b, c in itertools.product(range(batch), range(channels)):
            for index, (real, divisor) in members.items():
                for pos in real:
                    grad_x[(b, c) + pos] += g[(b, c) + index] / divisor
        return grad_x
    return y, grad_fn
