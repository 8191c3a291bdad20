"""Loop twin of :mod:`refcam.cam.resize`: MATLAB's imresize algorithm, pixel by pixel (tiny shapes only).

A line-by-line transcription of MATLAB's ``contributions`` / ``imresizemex`` in
plain Python scalars: for every output pixel along an axis, compute its input
coordinate, the taps and their kernel weights, normalise, reflect or clamp the
indices; drop tap columns that are zero for every output; then, for every
output element, accumulate ``weight * double(input)`` from 0.0 and convert back
to the input's class. Nothing is shared with the module under test.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Sequence

import numpy as np

ScalarKernel = Callable[[float], float]


def naive_cubic(t: float) -> float:
    """Keys cubic, a = -0.5."""
    a = abs(t)
    if a <= 1.0:
        return 1.5 * a ** 3 - 2.5 * a ** 2 + 1.0
    if a <= 2.0:
        return -0.5 * a ** 3 + 2.5 * a ** 2 - 4.0 * a + 2.0
    return 0.0


def naive_triangle(t: float) -> float:
    """Hat function on [-1, 1]."""
    if -1.0 <= t < 0.0:
        return t + 1.0
    if 0.0 <= t <= 1.0:
        return 1.0 - t
    return 0.0


def naive_box(t: float) -> float:
    """1 on [-0.5, 0.5)."""
    return 1.0 if -0.5 <= t < 0.5 else 0.0


# method name -> (kernel, width, antialias by default)
NAIVE_METHODS: dict[str, tuple[ScalarKernel, float, bool]] = {
    "bicubic": (naive_cubic, 4.0, True), "cubic": (naive_cubic, 4.0, True),
    "tricubic": (naive_cubic, 4.0, True),
    "bilinear": (naive_triangle, 2.0, True), "linear": (naive_triangle, 2.0, True),
    "trilinear": (naive_triangle, 2.0, True), "triangle": (naive_triangle, 2.0, True),
    "nearest": (naive_box, 1.0, False), "box": (naive_box, 1.0, True),
}


def naive_source_index(j: int, n: int, boundary: str) -> int:
    """1-based tap index j -> 0-based pixel: walk the reflection, or clamp."""
    if boundary == "clamp":
        return min(max(j, 1), n) - 1
    while j < 1 or j > n:
        j = 1 - j if j < 1 else 2 * n + 1 - j
    return j - 1


def naive_contributions(n_in: int, n_out: int, scale: float, method: str, antialias: bool,
                        boundary: str) -> tuple[list[list[float]], list[list[int]]]:
    """Per output pixel: the weights and 0-based source indices (zero columns dropped)."""
    kernel, width, _ = NAIVE_METHODS[method]
    shrink = scale < 1.0 and antialias
    if shrink:
        width = width / scale
    taps = math.ceil(width) + 2
    rows_w, rows_i = [], []
    for x in range(1, n_out + 1):
        u = x / scale + 0.5 * (1.0 - 1.0 / scale)
        left = math.floor(u - width / 2.0)
        weights, indices = [], []
        for p in range(taps):
            j = left + p
            weights.append(scale * kernel(scale * (u - j)) if shrink else kernel(u - j))
            indices.append(naive_source_index(j, n_in, boundary))
        total = 0.0
        for w in weights:
            total += w
        rows_w.append([w / total for w in weights])
        rows_i.append(indices)
    keep = [p for p in range(taps) if any(row[p] != 0.0 for row in rows_w)]
    return [[row[p] for p in keep] for row in rows_w], [[row[p] for p in keep] for row in rows_i]


def naive_to_class(value: float, dtype: np.dtype):
    """double -> MATLAB class: floats round; integers round half away from zero and saturate."""
    if dtype.kind == "f":
        return dtype.type(value)
    exact = Fraction(value)  # exact arithmetic: no rounding in value - floor(value)
    floor = math.floor(exact)
    frac = exact - floor
    rounded = floor + 1 if frac > Fraction(1, 2) or (frac == Fraction(1, 2) and value > 0) else floor
    info = np.iinfo(dtype)
    return dtype.type(min(max(rounded, int(info.min)), int(info.max)))


def naive_resize_axis(a: np.ndarray, axis: int, n_out: int, scale: float, method: str,
                      antialias: bool, boundary: str) -> np.ndarray:
    """One pass along ``axis``, element by element."""
    weights, indices = naive_contributions(a.shape[axis], n_out, scale, method, antialias, boundary)
    out_shape = list(a.shape)
    out_shape[axis] = n_out
    out = np.empty(out_shape, dtype=a.dtype)
    for position in np.ndindex(*out_shape):
        total = 0.0
        for w, i in zip(weights[position[axis]], indices[position[axis]]):
            source = list(position)
            source[axis] = i
            total = total + w * float(a[tuple(source)])
        out[position] = naive_to_class(total, a.dtype)
    return out


def naive_geometry(in_shape: Sequence[int], output_size) -> tuple[list[int], list[float]]:
    """MATLAB's size/scale rules: scale factor -> ceil(s*n); sizes -> out/in; NaN -> aspect ratio."""
    if np.isscalar(output_size):
        return [math.ceil(output_size * n) for n in in_shape], [float(output_size)] * len(in_shape)
    known = [k for k, s in enumerate(output_size) if not math.isnan(s)]
    if len(known) == len(in_shape):
        return [int(s) for s in output_size], [s / n for s, n in zip(output_size, in_shape)]
    k = known[0]
    sizes = [int(output_size[k]) if d == k else math.ceil(output_size[k] * in_shape[d] / in_shape[k])
             for d in range(len(in_shape))]
    return sizes, [output_size[k] / in_shape[k]] * len(in_shape)


def naive_resize(a: np.ndarray, n_dims: int, output_size, method: str, antialiasing: bool | None = None,
                 boundary: str = "mirror") -> np.ndarray:
    """MATLAB imresize (n_dims = 2) or imresize3 (n_dims = 3): smallest scale first, ties by axis."""
    sizes, scales = naive_geometry(a.shape[:n_dims], output_size)
    antialias = NAIVE_METHODS[method][2] if antialiasing is None else antialiasing
    order = sorted(range(n_dims), key=lambda d: (scales[d], d))
    out = a
    for d in order:
        out = naive_resize_axis(out, d, sizes[d], scales[d], method, antialias, boundary)
    return out
