"""MATLAB's ``imresize``, ``imresize3`` and ``rescale``, written from MATLAB's algorithm.

Grad-CAM upsamples its map to the input size with these (``resize_map``). The
derivation, the sources and every choice are in ``docs/resize.md``.

Layout: MATLAB's. ``imresize`` resizes axes 0 and 1 of an ``h x w x ...``
array, ``imresize3`` axes 0, 1 and 2 of ``h x w x d x ...``; trailing axes
(channels, one map per class) are carried along untouched.

Formula, per resized axis (1-based pixel centres, as MATLAB)::

    scale = out / in                (or the scale factor the caller gave)
    u(x)  = x / scale + 0.5 * (1 - 1/scale)          x = 1..out
    h(t)  = scale * k(scale * t), width w / scale     when shrinking with antialiasing
    h(t)  = k(t), width w                              otherwise
    taps  j = floor(u - width/2) + 0 .. ceil(width) + 1
    out(x) = sum_j  h(u - j) / sum_j' h(u - j')  *  in(mirror(j))

with the kernels ``k`` (Keys cubic a = -0.5 width 4, triangle width 2, box
width 1: ``1`` on ``[-0.5, 0.5)``) and ``mirror`` the half-sample symmetric
reflection (``numpy.pad(mode="symmetric")``); ``boundary="clamp"`` replicates
the edge instead, as releases up to about 2013 did. Tap columns whose weight is
zero for every output are dropped. Axes are resized one at a time in ascending
order of scale (stable: rows first on ties). Each pass sums in float64, tap by
tap in tap order, then casts back to the input dtype (float32, or integers
rounded to nearest, ties away from zero, and saturated), so an integer image
is rounded after every pass, as MATLAB's ``imresizemex`` does.

Output size: ``output_size`` entries as given; a scale factor ``s`` gives
``ceil(s * in)`` per axis and the mapping uses ``s`` itself; NaN entries are
filled as ``ceil(known * in_i / in_known)`` and every axis then uses the scale
``known / in_known`` (MATLAB's keep-aspect-ratio rule).

Resizing is linear in the data with weights fixed by the sizes; it is applied
after Grad-CAM's backward pass, so it is not recorded on the tape and has no
VJP (no non-differentiable points arise).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..backend import get_xp
from ..errors import InputDtypeError, InputError, ShapeError

Kernel = Callable[[np.ndarray], np.ndarray]


# --- kernels (evaluated on the host: they depend on sizes only) ---------------
def cubic_kernel(t: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (support ``|t| <= 2``)."""
    abs_t = np.abs(t)
    abs_t2 = abs_t * abs_t
    abs_t3 = np.power(abs_t, 3.0)
    inner = (1.5 * abs_t3 - 2.5 * abs_t2 + 1.0) * (abs_t <= 1.0)
    outer = (-0.5 * abs_t3 + 2.5 * abs_t2 - 4.0 * abs_t + 2.0) * ((1.0 < abs_t) & (abs_t <= 2.0))
    return inner + outer


def triangle_kernel(t: np.ndarray) -> np.ndarray:
    """Linear interpolation kernel ``max(1 - |t|, 0)`` (support ``|t| <= 1``)."""
    rising = (t + 1.0) * ((-1.0 <= t) & (t < 0.0))
    falling = (1.0 - t) * ((0.0 <= t) & (t <= 1.0))
    return rising + falling


def box_kernel(t: np.ndarray) -> np.ndarray:
    """Nearest-neighbour kernel: 1 on ``[-0.5, 0.5)``, so ties go to the higher index."""
    return ((-0.5 <= t) & (t < 0.5)).astype(np.float64)


@dataclass(frozen=True)
class ResizeKernel:
    """An interpolation kernel, its width and whether MATLAB antialiases with it by default."""

    name: str
    function: Kernel
    width: float
    antialias_by_default: bool


_CUBIC = ResizeKernel("cubic", cubic_kernel, 4.0, True)
_TRIANGLE = ResizeKernel("triangle", triangle_kernel, 2.0, True)
_BOX = ResizeKernel("box", box_kernel, 1.0, True)
_NEAREST = ResizeKernel("nearest", box_kernel, 1.0, False)

IMRESIZE_METHODS = {"bicubic": _CUBIC, "cubic": _CUBIC, "bilinear": _TRIANGLE,
                    "triangle": _TRIANGLE, "nearest": _NEAREST, "box": _BOX}
IMRESIZE3_METHODS = {"cubic": _CUBIC, "tricubic": _CUBIC, "bicubic": _CUBIC, "linear": _TRIANGLE,
                     "trilinear": _TRIANGLE, "triangle": _TRIANGLE, "nearest": _NEAREST, "box": _BOX}
BOUNDARIES = ("mirror", "clamp")


# --- per-axis weights ----------------------------------------------------------
def _boundary_indices(one_based: np.ndarray, in_length: int, boundary: str) -> np.ndarray:
    """Map 1-based tap indices into ``0..in_length-1``: mirror (symmetric) or clamp."""
    if boundary == "mirror":
        period = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
        return period[np.mod(one_based - 1, 2 * in_length)]
    return np.clip(one_based, 1, in_length) - 1


def resize_weights(in_length: int, out_length: int, scale: float, method: str = "bicubic",
                   antialiasing: bool | None = None,
                   boundary: str = "mirror") -> tuple[np.ndarray, np.ndarray]:
    """Weights and 0-based input indices of a 1-D MATLAB resize (MATLAB's ``contributions``).

    Returns ``(weights, indices)``, both ``(out_length, taps)``: output ``x`` is
    ``sum_j weights[x, j] * in[indices[x, j]]``. Each row sums to 1; columns
    that are zero for every row are dropped. ``method`` is any name
    :func:`imresize` or :func:`imresize3` accepts.

    >>> w, i = resize_weights(2, 4, 2.0)
    >>> w[0].tolist(), i[0].tolist()
    ([-0.0234375, 0.2265625, 0.8671875, -0.0703125], [1, 0, 0, 1])
    """
    kernel = _method(method, {**IMRESIZE_METHODS, **IMRESIZE3_METHODS}, "resize_weights")
    antialias = _antialiasing(antialiasing, kernel)
    _check_boundary(boundary)
    width = kernel.width
    if scale < 1.0 and antialias:
        width = width / scale

        def taper(t: np.ndarray) -> np.ndarray:
            return scale * kernel.function(scale * t)
    else:
        taper = kernel.function
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - width / 2.0).astype(np.int64)
    one_based = left[:, None] + np.arange(math.ceil(width) + 2)[None, :]
    weights = taper(u[:, None] - one_based)
    weights = weights / _row_sums_in_order(weights)[:, None]
    indices = _boundary_indices(one_based, in_length, boundary)
    used = np.any(weights != 0.0, axis=0)
    return weights[:, used], indices[:, used]


def _row_sums_in_order(weights: np.ndarray) -> np.ndarray:
    """Row sums accumulated column by column, left to right (MATLAB's order, not pairwise)."""
    total = np.zeros(weights.shape[0])
    for column in weights.T:
        total = total + column
    return total


# --- argument checks -------------------------------------------------------------
def _method(method: str, table: dict[str, ResizeKernel], function: str) -> ResizeKernel:
    key = method.lower() if isinstance(method, str) else method
    if key not in table:
        raise InputError(f"{function}: unknown method {method!r}; use one of {sorted(table)}.")
    return table[key]


def _antialiasing(antialiasing: bool | None, kernel: ResizeKernel) -> bool:
    if antialiasing is None:
        return kernel.antialias_by_default
    if not isinstance(antialiasing, (bool, np.bool_)):
        raise InputError(f"antialiasing must be True, False or None (MATLAB's default), "
                         f"not {antialiasing!r}.")
    return bool(antialiasing)


def _check_boundary(boundary: str) -> None:
    if boundary not in BOUNDARIES:
        raise InputError(f"boundary must be 'mirror' (current MATLAB) or 'clamp' (releases up to "
                         f"about 2013), not {boundary!r}.")


def _is_scale_factor(output_size: Any) -> bool:
    return (isinstance(output_size, numbers.Real) and not isinstance(output_size, (bool, np.bool_))) or (
        isinstance(output_size, np.ndarray) and output_size.ndim == 0)


def _positive_int(value: Any, function: str, what: str) -> int:
    ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) \
        and math.isfinite(value) and value > 0 and float(value).is_integer()
    if not ok:
        raise InputError(f"{function}: {what} must be a positive integer, got {value!r}.")
    return int(value)


def output_geometry(in_shape: Sequence[int], output_size: Any,
                    function: str = "imresize") -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Resolve ``output_size`` (sizes, one scale factor, or sizes with NaN) to (sizes, scales).

    >>> output_geometry((4, 6), (8, float("nan")))
    ((8, 12), (2.0, 2.0))
    >>> output_geometry((3, 5), 0.5)
    ((2, 3), (0.5, 0.5))
    """
    n_dims = len(in_shape)
    if _is_scale_factor(output_size):
        scale = float(output_size)
        if not (math.isfinite(scale) and scale > 0.0):
            raise InputError(f"{function}: a scale factor must be positive and finite, got {output_size!r}.")
        return tuple(math.ceil(scale * n) for n in in_shape), (scale,) * n_dims
    sizes = list(output_size) if isinstance(output_size, (Sequence, np.ndarray)) else None
    if sizes is None or len(sizes) != n_dims:
        raise InputError(f"{function}: output_size must be a scale factor or {n_dims} sizes "
                         f"(rows, columns{', planes' if n_dims == 3 else ''}), got {output_size!r}.")
    is_nan = [isinstance(s, numbers.Real) and math.isnan(s) for s in sizes]
    if not any(is_nan):
        out = tuple(_positive_int(s, function, f"output size {i}") for i, s in enumerate(sizes))
        return out, tuple(o / n for o, n in zip(out, in_shape))
    known = [i for i, nan in enumerate(is_nan) if not nan]
    if len(known) != 1:
        raise InputError(f"{function}: with NaN in output_size exactly one entry must be a size (the "
                         f"others follow the aspect ratio), got {output_size!r}.")
    axis = known[0]
    target = _positive_int(sizes[axis], function, f"output size {axis}")
    out = tuple(target if i == axis else math.ceil(target * n / in_shape[axis])
                for i, n in enumerate(in_shape))
    return out, (target / in_shape[axis],) * n_dims


def _checked_array(a: Any, n_dims: int, function: str) -> Any:
    xp = get_xp(a)
    a = xp.asarray(a)
    kind, size = a.dtype.kind, a.dtype.itemsize
    if kind == "b":
        raise InputDtypeError(
            f"{function}: bool arrays are not resized (MATLAB converts logical images to uint8, "
            f"resizes, and thresholds at 128); convert explicitly, e.g. a.astype(np.uint8) * 255.")
    if not (kind in "iu" or (kind == "f" and size in (4, 8))):
        raise InputDtypeError(f"{function}: dtype {a.dtype} is not supported; use float64, float32 "
                              f"or an integer dtype.")
    if a.ndim < n_dims or 0 in a.shape:
        raise ShapeError(f"{function}: expected a non-empty array with at least {n_dims} dimensions "
                         f"(the first {n_dims} are resized), got shape {tuple(a.shape)}.")
    return a


# --- applying the weights ----------------------------------------------------------
def _round_half_away(x: Any, xp: Any) -> Any:
    """Round to nearest, ties away from zero (MATLAB's double -> integer rule), exactly."""
    fraction, whole = xp.modf(x)
    return xp.where(xp.abs(fraction) == 0.5, whole + xp.sign(x), xp.rint(x))


def cast_like_matlab(x: Any, dtype: Any) -> Any:
    """Cast float64 ``x`` to ``dtype``: floats round, integers round half away and saturate."""
    xp = get_xp(x)
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return x.astype(dtype, copy=False)
    info = np.iinfo(dtype)
    top = float(info.max)
    if int(top) != info.max:  # 64-bit: the max is not a double; clip below it, fix up after
        top = float(np.nextafter(top, 0.0))
    rounded = _round_half_away(x, xp)
    in_range = xp.clip(rounded, float(info.min), top).astype(dtype)
    return xp.where(rounded > top, dtype.type(info.max), in_range)


def resize_along_axis(x: Any, axis: int, weights: np.ndarray, indices: np.ndarray) -> Any:
    """One MATLAB pass: ``out[.., i, ..] = sum_j weights[i, j] * x[.., indices[i, j], ..]``.

    Summed in float64 tap by tap (in tap order), then cast back to ``x.dtype``.
    A pure nearest-neighbour pass (one tap of weight 1) is a plain gather.
    """
    xp = get_xp(x)
    if weights.shape[1] == 1 and bool(np.all(weights == 1.0)):
        return xp.take(x, xp.asarray(indices[:, 0]), axis=axis)
    weights_dev = xp.asarray(weights)
    indices_dev = xp.asarray(indices)
    broadcast = [1] * x.ndim
    broadcast[axis] = weights.shape[0]
    out_shape = list(x.shape)
    out_shape[axis] = weights.shape[0]
    total = xp.zeros(out_shape, dtype=np.float64)
    for tap in range(weights.shape[1]):
        samples = xp.take(x, indices_dev[:, tap], axis=axis).astype(np.float64, copy=False)
        total += weights_dev[:, tap].reshape(broadcast) * samples
    return cast_like_matlab(total, x.dtype)


def _resize_leading_axes(a: Any, n_dims: int, output_size: Any, kernel: ResizeKernel,
                         antialiasing: bool | None, boundary: str, function: str) -> Any:
    a = _checked_array(a, n_dims, function)
    antialias = _antialiasing(antialiasing, kernel)
    _check_boundary(boundary)
    out_sizes, scales = output_geometry(tuple(a.shape[:n_dims]), output_size, function)
    result = a
    for axis in np.argsort(np.asarray(scales), kind="stable"):
        axis = int(axis)
        weights, indices = resize_weights(a.shape[axis], out_sizes[axis], scales[axis],
                                          kernel.name, antialias, boundary)
        result = resize_along_axis(result, axis, weights, indices)
    return result


# --- public functions -----------------------------------------------------------------
def imresize(a: Any, output_size: Any, method: str = "bicubic", antialiasing: bool | None = None,
             *, boundary: str = "mirror") -> Any:
    """MATLAB's ``imresize``: resize the first two axes of ``a`` (``h x w x ...``).

    Parameters
    ----------
    a : NumPy or CuPy array, float64, float32 or any integer dtype
        The image; axes beyond the second (channels, maps) are kept.
    output_size : (rows, cols), or a scale factor
        One entry may be NaN: it follows the aspect ratio of the other.
    method : "bicubic" (default), "bilinear", "nearest"; also "cubic", "triangle", "box"
    antialiasing : bool or None
        None is MATLAB's default: True except for "nearest". Acts only when shrinking.
    boundary : "mirror" (current MATLAB, default) or "clamp" (releases up to about 2013)

    Returns
    -------
    array of ``a``'s dtype and module; integers are rounded and saturated.

    >>> imresize(np.array([[1.0, 2.0], [3.0, 4.0]]), (4, 4))[0].tolist()
    [0.71875, 1.015625, 1.609375, 1.90625]
    """
    kernel = _method(method, IMRESIZE_METHODS, "imresize")
    return _resize_leading_axes(a, 2, output_size, kernel, antialiasing, boundary, "imresize")


def imresize3(v: Any, output_size: Any, method: str = "cubic", antialiasing: bool | None = None,
              *, boundary: str = "mirror") -> Any:
    """MATLAB's ``imresize3``: resize the first three axes of ``v`` (``h x w x d x ...``).

    ``output_size`` is (rows, cols, planes), a scale factor, or one size with
    two NaN (MATLAB's keep-aspect-ratio form). Methods: "cubic" (default; also
    "tricubic", "bicubic"), "linear" (also "trilinear", "triangle"),
    "nearest", "box". Antialiasing defaults as in :func:`imresize`. MATLAB
    accepts only 3-D volumes; refcam also carries trailing axes (one volume per
    class), resizing only the first three.

    >>> imresize3(np.ones((2, 2, 2)), (3, 4, 5)).shape
    (3, 4, 5)
    """
    kernel = _method(method, IMRESIZE3_METHODS, "imresize3")
    return _resize_leading_axes(v, 3, output_size, kernel, antialiasing, boundary, "imresize3")


_MAP_METHODS_3D = {"bicubic": "cubic", "bilinear": "linear", "nearest": "nearest"}


def resize_map(score_map: Any, output_size: Sequence[int], method: str = "bicubic") -> Any:
    """Resize Grad-CAM maps ``(*spatial, K)`` to ``(*output_size, K)`` as MATLAB's gradCAM does.

    ``len(output_size)`` (1, 2 or 3) is the number of spatial axes. 2-D maps go
    through :func:`imresize`; 3-D maps through :func:`imresize3` ("bicubic" ->
    "cubic"); a 1-D (sequence) map of length t is resized as the 1 x t image
    MATLAB stores it as, so only its time axis changes. ``method`` is
    "bicubic", "bilinear" or "nearest"; antialiasing is MATLAB's default.

    >>> resize_map(np.ones((3, 2)), (7,)).shape
    (7, 2)
    """
    sizes = tuple(output_size)
    if not 1 <= len(sizes) <= 3 or getattr(score_map, "ndim", None) != len(sizes) + 1:
        raise ShapeError(f"resize_map: expected a map (*spatial, K) with {len(sizes)} spatial axes to "
                         f"match output_size {sizes!r}, got shape {tuple(getattr(score_map, 'shape', ()))}.")
    if method not in _MAP_METHODS_3D:
        raise InputError(f"resize_map: method must be one of {sorted(_MAP_METHODS_3D)}, not {method!r}.")
    if len(sizes) == 3:
        return imresize3(score_map, sizes, _MAP_METHODS_3D[method])
    if len(sizes) == 2:
        return imresize(score_map, sizes, method)
    as_image = score_map.reshape(1, *score_map.shape)  # (t, K) -> (1, t, K)
    return imresize(as_image, (1, sizes[0]), method)[0]


def _next_pow2(x: Any, xp: Any) -> Any:
    """MATLAB's ``nextpow2``: the smallest p with ``2**p >= |x|`` (0 for 0)."""
    mantissa, exponent = xp.frexp(xp.abs(x))
    return exponent - (mantissa == 0.5)


def rescale(m: Any, lower: float = 0.0, upper: float = 1.0) -> Any:
    """MATLAB's ``rescale``: map ``[min(m), max(m)]`` linearly onto ``[lower, upper]``.

    ``R = lower + (m - min) / (max - min) * (upper - lower)``, evaluated in
    MATLAB's order (centred and scaled by powers of two against overflow),
    then clipped to ``[lower, upper]``. NaN entries are ignored by min/max and
    stay NaN. A constant array maps to ``lower``. Float input keeps its dtype;
    integer and bool input give float64 (MATLAB returns double).

    >>> rescale(np.array([1.0, 2.0, 3.0, 4.0, 5.0])).tolist()
    [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    lower, upper = float(lower), float(upper)
    if not lower <= upper:
        raise InputError(f"rescale: lower ({lower}) must not exceed upper ({upper}).")
    xp = get_xp(m)
    data = xp.asarray(m)
    if data.dtype.kind not in "fiub" or (data.dtype.kind == "f" and data.dtype.itemsize not in (4, 8)):
        raise InputDtypeError(f"rescale: dtype {data.dtype} is not supported; use a real float, "
                              f"integer or bool array.")
    if data.dtype.kind != "f":
        data = data.astype(np.float64)
    if data.size == 0:
        return data
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return _rescale_matlab_order(data, lower, upper, xp)


def _rescale_matlab_order(data: Any, lower: float, upper: float, xp: Any) -> Any:
    """The arithmetic of MATLAB's rescale.m, on 0-d arrays (no host sync)."""
    nan = xp.isnan(data)
    in_min = xp.min(xp.where(nan, xp.inf, data))
    in_max = xp.max(xp.where(nan, -xp.inf, data))
    constant = (in_min == in_max).astype(data.dtype)
    sigma = xp.maximum(xp.minimum(0.0, in_max), in_min)
    in_min, in_max = in_min - sigma, in_max - sigma
    e1 = _next_pow2(xp.maximum(xp.abs(in_max), xp.abs(in_min)), xp)
    e2 = _next_pow2(np.float64(max(abs(lower), abs(upper))), np)
    one = xp.ones((), dtype=data.dtype)
    r1 = xp.ldexp(one, e1 - 1)
    r2 = float(np.ldexp(1.0, e2 - 1))
    r3 = xp.ldexp(one, xp.trunc((e1 + int(e2)) / 2.0).astype(np.int32) - 1)
    z = ((in_max / r1) * (lower / r3) - (in_min / r1) * (upper / r3) + (lower / r3) * (constant / r1)) \
        / ((in_max / r1) - (in_min / r1) + (constant / r1))
    slope = ((upper / r2) - (lower / r2)) / ((in_max / r3) - (in_min / r3) + (constant / r3))
    result = r2 * (slope / r3 * (data - sigma) + (r3 / r2) * z)
    return xp.minimum(xp.maximum(result, lower), upper).astype(data.dtype, copy=False)
