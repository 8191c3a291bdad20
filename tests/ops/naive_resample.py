"""Loop twin of :mod:`refcam.ops.resample`: one output cell at a time, in plain Python (tiny shapes only).

Every output cell maps back to one source coordinate per axis (Python floats
and ``math``); nearest reads the rounded cell, linear sums the ``2**N`` corners
of the surrounding cell with the products of the per-axis weights. No
gathers, no separable passes, no arrays of weights.
"""
from __future__ import annotations

import itertools
import math
from typing import Sequence

import numpy as np


def source_coordinate(i: int, n: int, m: int, scale: float | None, mode: str) -> float:
    """The input coordinate of output index ``i`` (ONNX Resize's coordinate_transformation_mode)."""
    s = scale if scale is not None else m / n
    if mode == "half-pixel":
        return (i + 0.5) / s - 0.5
    if mode == "pytorch-half-pixel":
        return (i + 0.5) / s - 0.5 if m > 1 else 0.0
    if mode == "align-corners":
        return i * (n - 1) / (m - 1) if m > 1 else 0.0
    return i / s


def nearest_index(x: float, n: int, rounding: str) -> int:
    """``x`` rounded (ties by the mode), clamped to ``[0, n - 1]``."""
    rounded = {"round-prefer-floor": math.ceil(x - 0.5), "round-prefer-ceil": math.floor(x + 0.5),
               "floor": math.floor(x), "ceil": math.ceil(x)}[rounding]
    return min(max(rounded, 0), n - 1)


def linear_corners(x: float, n: int) -> list[tuple[int, float]]:
    """``[(j0, w0), (j1, w1)]`` for ``x`` clamped to ``[0, n - 1]``."""
    x = min(max(x, 0.0), n - 1.0)
    j0 = math.floor(x)
    return [(j0, 1.0 - (x - j0)), (min(j0 + 1, n - 1), x - j0)]


def taps(x_shape: Sequence[int], output_size: Sequence[int], scale: Sequence[float] | None, method: str,
         coordinate_mode: str, rounding: str):
    """Every ``(output_index, input_index, weight)`` with ``y[output] += weight * x[input]``."""
    batch, channels, *spatial = x_shape
    for b, c in itertools.product(range(batch), range(channels)):
        for out in itertools.product(*(range(m) for m in output_size)):
            per_axis = []
            for a, i in enumerate(out):
                n, m = spatial[a], output_size[a]
                x = source_coordinate(i, n, m, None if scale is None else scale[a], coordinate_mode)
                per_axis.append([(nearest_index(x, n, rounding), 1.0)] if method == "nearest"
                                else linear_corners(x, n))
            for corner in itertools.product(*per_axis):
                weight = math.prod(w for _, w in corner)
                yield (b, c) + out, (b, c) + tuple(j for j, _ in corner), weight


def naive_resize(x: np.ndarray, output_size, scale, method, coordinate_mode, rounding) -> np.ndarray:
    y = np.zeros(x.shape[:2] + tuple(output_size), dtype=x.dtype)
    for out, source, weight in taps(x.shape, output_size, scale, method, coordinate_mode, rounding):
        y[out] += weight * x[source]
    return y


def naive_resize_vjp(grad_y: np.ndarray, x_shape, output_size, scale, method, coordinate_mode,
                     rounding) -> np.ndarray:
    """``dL/dx[source] += weight * grad_y[out]`` over every tap (the scatter the op avoids)."""
    grad_x = np.zeros(x_shape, dtype=grad_y.dtype)
    for out, source, weight in taps(x_shape, output_size, scale, method, coordinate_mode, rounding):
        grad_x[source] += weight * grad_y[out]
    return grad_x
