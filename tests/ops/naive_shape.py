"""Naive loop twins of the broadcasting product and the shape ops, written from the formulas.

Each loops over output (or input) cells with plain Python indexing, so it
shares no code with the vectorised ops in refcam/ops/combine.py,
refcam/ops/shape.py and refcam/ops/reduce.py.
"""
from __future__ import annotations

import itertools

import numpy as np


def _source(index: tuple[int, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    """The cell of an input of ``shape`` that output cell ``index`` reads (0 on size-1 axes)."""
    return tuple(0 if n == 1 else i for i, n in zip(index, shape))


def multiply_loops(xs: list[np.ndarray]) -> np.ndarray:
    """``y[k] = prod_j x_j[k with 0 on x_j's size-1 axes]``."""
    out_shape = tuple(max(sizes) for sizes in zip(*(x.shape for x in xs)))
    y = np.empty(out_shape)
    for index in itertools.product(*map(range, out_shape)):
        product = 1.0
        for x in xs:
            product *= x[_source(index, x.shape)]
        y[index] = product
    return y


def multiply_vjp_loops(xs: list[np.ndarray], g: np.ndarray) -> list[np.ndarray]:
    """``dL/dx_i[s] = sum over output cells k reading s of g[k] * prod_{j != i} x_j[...]``."""
    grads = [np.zeros(x.shape) for x in xs]
    for index in itertools.product(*map(range, g.shape)):
        for i, x in enumerate(xs):
            others = 1.0
            for j, other in enumerate(xs):
                if j != i:
                    others *= other[_source(index, other.shape)]
            grads[i][_source(index, x.shape)] += g[index] * others
    return grads


def channel_shuffle_loops(x: np.ndarray, groups: int) -> np.ndarray:
    """Output channel ``j * groups + i`` is input channel ``i * (C / groups) + j``."""
    channels = x.shape[1]
    per_group = channels // groups
    y = np.empty_like(x)
    for out in range(channels):
        j, i = divmod(out, groups)
        y[:, out] = x[:, i * per_group + j]
    return y


def channel_slice_loops(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Channels ``start .. stop - 1``, copied one by one."""
    y = np.empty((x.shape[0], stop - start, *x.shape[2:]))
    for c in range(start, stop):
        y[:, c - start] = x[:, c]
    return y


def crop_loops(x: np.ndarray, cropping: tuple[int, ...]) -> np.ndarray:
    """``y[b, c, t] = x[b, c, t + begin]`` for ``0 <= t_i < S_i - begin_i - end_i``."""
    rank = x.ndim - 2
    begins, ends = cropping[:rank], cropping[rank:]
    spatial = tuple(n - b - e for n, b, e in zip(x.shape[2:], begins, ends))
    y = np.empty(x.shape[:2] + spatial)
    for b, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for t in itertools.product(*map(range, spatial)):
            y[(b, c) + t] = x[(b, c) + tuple(ti + bi for ti, bi in zip(t, begins))]
    return y


def reduce_loops(x: np.ndarray, axes: tuple[int, ...], operation: str) -> np.ndarray:
    """Mean or max of the cells of ``x`` that agree with each output cell off ``axes`` (kept as size 1)."""
    out_shape = tuple(1 if a in axes else n for a, n in enumerate(x.shape))
    y = np.empty(out_shape)
    for out in itertools.product(*map(range, out_shape)):
        cells = [x[index] for index in itertools.product(*map(range, x.shape))
                 if all(index[a] == out[a] for a in range(x.ndim) if a not in axes)]
        y[out] = max(cells) if operation == "max" else sum(cells) / len(cells)
    return y
