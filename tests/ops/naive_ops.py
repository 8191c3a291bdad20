"""Loop twins of the vectorised kernels in activation, normalization, linear and combine.

Each twin computes one output element (or one observation) at a time with
explicit Python loops and scalar maths, straight from the formula in the op's
docstring, so a vectorisation slip (a wrong axis, a wrong broadcast, a wrong
flatten order) cannot hide in both. Slow: small shapes only.
"""
from __future__ import annotations

import itertools
import math

import numpy as np


def softmax_loops(x: np.ndarray, axis: int) -> np.ndarray:
    """Softmax along ``axis``: for every position off the axis, ``exp(v - max v) / sum``."""
    moved = np.moveaxis(x, axis, -1)
    y = np.empty_like(moved)
    for position in np.ndindex(*moved.shape[:-1]):
        values = [float(v) for v in moved[position]]
        top = max(values)
        exps = [math.exp(v - top) for v in values]
        total = sum(exps)
        for k, e in enumerate(exps):
            y[position + (k,)] = e / total
    return np.moveaxis(y, -1, axis)


def batch_norm_loops(x: np.ndarray, mean: np.ndarray, variance: np.ndarray, scale: np.ndarray,
                     offset: np.ndarray, epsilon: float) -> np.ndarray:
    """``scale[c] * (x - mean[c]) / sqrt(variance[c] + epsilon) + offset[c]`` element by element."""
    y = np.empty_like(x)
    for index in np.ndindex(*x.shape):
        c = index[1]
        y[index] = scale[c] * (x[index] - mean[c]) / math.sqrt(variance[c] + epsilon) + offset[c]
    return y


def layer_norm_loops(x: np.ndarray, scale: np.ndarray, offset: np.ndarray, axes: tuple[int, ...],
                     epsilon: float) -> np.ndarray:
    """Layer norm: for each group of elements sharing the indices off ``axes``, standardise, then scale."""
    kept = [a for a in range(x.ndim) if a not in axes]
    y = np.empty_like(x)
    for fixed in itertools.product(*(range(x.shape[a]) for a in kept)):
        group = [index for index in np.ndindex(*x.shape)
                 if all(index[a] == v for a, v in zip(kept, fixed))]
        values = [float(x[index]) for index in group]
        mu = sum(values) / len(values)
        var = sum((v - mu) ** 2 for v in values) / len(values)
        for index, v in zip(group, values):
            c = index[1]
            y[index] = scale[c] * (v - mu) / math.sqrt(var + epsilon) + offset[c]
    return y


def flat_index(order: str, channel: int, position: tuple[int, ...], channels: int,
               spatial: tuple[int, ...]) -> int:
    """The column of element ``(c, s_1..s_N)`` in a flattened observation, by the docstring formulas."""
    if order == "matlab":  # s_1 + S_1 (s_2 + S_2 (... + S_N c))
        index = channel
        for s, size in zip(reversed(position), reversed(spatial)):
            index = index * size + s
        return index
    if order == "row-major":  # (((c S_1 + s_1) S_2 + s_2) ...)
        index = channel
        for s, size in zip(position, spatial):
            index = index * size + s
        return index
    if order == "channels-last":  # (((s_1 S_2 + s_2) ...) S_N + s_N) C + c
        index = 0
        for s, size in zip(position, spatial):
            index = index * size + s
        return index * channels + channel
    raise ValueError(order)


def flatten_loops(x: np.ndarray, order: str) -> np.ndarray:
    """Place every element of (B, C, *S) at its :func:`flat_index` column."""
    batch, channels, *spatial = x.shape
    y = np.full((batch, x[0].size), np.nan)
    for index in np.ndindex(*x.shape):
        b, c, *position = index
        y[b, flat_index(order, c, tuple(position), channels, tuple(spatial))] = x[index]
    return y


def fully_connected_loops(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``y[b, o] = sum_i x[b, i] * weight[o, i] + bias[o]``."""
    batch, inputs = x.shape
    outputs = weight.shape[0]
    y = np.zeros((batch, outputs))
    for b in range(batch):
        for o in range(outputs):
            total = 0.0 if bias is None else float(bias[o])
            for i in range(inputs):
                total += x[b, i] * weight[o, i]
            y[b, o] = total
    return y


def concat_loops(xs: list[np.ndarray], axis: int) -> np.ndarray:
    """Copy each input's elements to ``y`` with its index along ``axis`` shifted by the sizes before it."""
    shape = list(xs[0].shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    y = np.full(shape, np.nan)
    start = 0
    for x in xs:
        for index in np.ndindex(*x.shape):
            target = list(index)
            target[axis] += start
            y[tuple(target)] = x[index]
        start += x.shape[axis]
    return y
