"""N-d resampling of the spatial axes, nearest and linear, with the coordinate rules of ONNX ``Resize``.

Layout
------
``x`` is ``(B, C, S_1, ..., S_N)``; the output is ``(B, C, m_1, ..., m_N)``. Each
spatial axis is resampled on its own (the op is separable), in axis order.

Output size
-----------
Given sizes ``m_i`` are used as they are. Given scales ``s_i`` give
``m_i = floor(S_i * s_i)`` (the float64 product; ONNX Resize-13/18/19 "Each
dimension value of the output tensor is floor(input_dimension * scale)"),
see :func:`resize_output_size`.

Source coordinate
-----------------
For output index ``i`` on an axis of input size ``n``, output size ``m``, with
``s`` the scale that was given, or ``s = m / n`` when sizes were given (what the
ONNX reference evaluator of onnx 1.23, ``onnx/reference/ops/op_resize.py``,
does with each input)::

    half-pixel          x = (i + 0.5) / s - 0.5
    pytorch-half-pixel  x = (i + 0.5) / s - 0.5,   x = 0 when m == 1
    align-corners       x = i (n - 1) / (m - 1),   x = 0 when m == 1
    asymmetric          x = i / s

(ONNX ``coordinate_transformation_mode`` ``half_pixel``, ``pytorch_half_pixel``,
``align_corners``, ``asymmetric``.) ``align-corners`` uses the integer output
size ``m`` as the ONNX specification text and PyTorch do; the onnx 1.23
reference evaluator divides by ``s n - 1`` instead when a scale is given, which
differs only when ``s n`` is not an integer. For ``pytorch-half-pixel`` at
``m == 1`` that evaluator uses ``x = -0.5``, which gives the same cell as 0
after the clamping below.

Sampling
--------
* ``nearest``: ``j = round(x)`` by ``nearest_rounding_mode`` (ONNX
  ``nearest_mode``): ``round-prefer-floor`` (a tie ``x = k + 0.5`` goes to
  ``k``), ``round-prefer-ceil`` (to ``k + 1``), ``floor``, ``ceil``; then
  ``j`` is clamped to ``[0, n - 1]`` and ``y[i] = x_in[j]`` (an exact copy).
* ``linear``: ``x`` is clamped to ``[0, n - 1]``, ``j0 = floor(x)``,
  ``j1 = min(j0 + 1, n - 1)``, ``w1 = x - j0``, ``w0 = 1 - w1``, and
  ``y[i] = w0 x_in[j0] + w1 x_in[j1]``. Over N axes this is N-linear
  interpolation (bilinear, trilinear). ONNX's edge padding and PyTorch's clamp
  of negative source coordinates (``F.interpolate``, ``align_corners=False``)
  give the same values up to rounding: they weight the edge cell twice,
  ``w0 + w1`` times, where the clamp takes it once.

Derivative
----------
The op is linear in ``x``: along one axis ``y = A x`` with ``A`` the ``(m, n)``
interpolation matrix, ``A[i, j0(i)] += w0(i)``, ``A[i, j1(i)] += w1(i)``
(nearest: one 1 per row). The VJP is the adjoint ``A^T`` applied axis by axis
in reverse order. It is computed without forming ``A`` and without atomic
scatter: for a tap whose indices ``j(i)`` are non-decreasing in ``i`` (every
mode here), the outputs that read input cell ``j`` form one run
``[start_j, stop_j)``, and ``dL/dx_in[j] = sum_{i in run} w(i) g[i]`` is a
fixed-width gather and sum over the run, in order. The coordinates are
constants, so there are no non-differentiable points in ``x``.

The per-axis indices and weights depend only on the sizes, the scale and the
modes; they are built with the input's array module (on its device).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ..autodiff import Tensor, record
from ..backend import get_xp
from ..errors import LayerConfigError, ShapeError

Ints = tuple[int, ...]

METHODS = ("nearest", "linear")
GEOMETRIC_TRANSFORM_MODES = ("half-pixel", "pytorch-half-pixel", "align-corners", "asymmetric")
NEAREST_ROUNDING_MODES = ("round-prefer-floor", "round-prefer-ceil", "floor", "ceil")


# --- geometry ------------------------------------------------------------------
def resize_output_size(spatial: Sequence[int], scale: Sequence[float]) -> Ints:
    """``floor(S_i * s_i)`` per spatial axis (ONNX Resize with ``scales``).

    >>> resize_output_size((4, 5), (2.0, 1.5))
    (8, 7)
    """
    return tuple(int(math.floor(int(n) * float(s))) for n, s in zip(spatial, scale))


def _check_settings(method: str, coordinate_mode: str, rounding_mode: str) -> None:
    for what, value, options in (("method", method, METHODS),
                                 ("geometric_transform_mode", coordinate_mode, GEOMETRIC_TRANSFORM_MODES),
                                 ("nearest_rounding_mode", rounding_mode, NEAREST_ROUNDING_MODES)):
        if value not in options:
            raise LayerConfigError(f"resize {what} {value!r} is not one of {list(options)}.")


def _check_geometry(x_shape: Sequence[int], output_size: Sequence[int], scale: Sequence[float] | None) -> Ints:
    """``output_size`` as N ints >= 1 for an input ``(B, C, *S)`` with N spatial axes; scale checked too."""
    nd = len(x_shape) - 2
    sizes = tuple(int(m) for m in output_size)
    if nd < 1 or len(sizes) != nd:
        raise ShapeError(f"resize got x of shape {tuple(x_shape)} ({max(nd, 0)} spatial axes) and output size "
                         f"{sizes}; give one output size per spatial axis of a (B, C, *spatial) input.")
    if any(m < 1 for m in sizes):
        raise LayerConfigError(f"resize output size {sizes} must hold integers >= 1.")
    if scale is not None:
        scales = tuple(float(s) for s in scale)
        if len(scales) != nd or not all(math.isfinite(s) and s > 0.0 for s in scales):
            raise LayerConfigError(f"resize scale {scales} must hold {nd} finite numbers > 0.")
    return sizes


def _source_coordinates(xp: Any, n: int, m: int, scale: float | None, mode: str) -> Any:
    """The input coordinate ``x`` (float64, shape ``(m,)``) of each output index (module docstring)."""
    s = float(scale) if scale is not None else m / n
    i = xp.arange(m, dtype=xp.float64)
    if mode in ("pytorch-half-pixel", "align-corners") and m == 1:
        return xp.zeros(1, dtype=xp.float64)
    if mode in ("half-pixel", "pytorch-half-pixel"):
        return (i + 0.5) / s - 0.5
    if mode == "align-corners":
        return i * float(n - 1) / float(m - 1)
    return i / s


def axis_taps(xp: Any, n: int, m: int, scale: float | None, method: str, coordinate_mode: str,
              rounding_mode: str) -> tuple[list[Any], list[Any]]:
    """Indices and weights of one axis: ``y[i] = sum_t weights[t][i] * x_in[indices[t][i]]``.

    ``indices[t]`` are int64 arrays of shape ``(m,)``, non-decreasing in ``i``,
    in ``[0, n - 1]``; ``weights[t]`` float64 of shape ``(m,)``. One tap for
    nearest (weight 1), two for linear.

    >>> import numpy as np
    >>> idx, w = axis_taps(np, 2, 4, None, "linear", "half-pixel", "round-prefer-floor")
    >>> idx[0], idx[1], w[1]
    (array([0, 0, 0, 1]), array([1, 1, 1, 1]), array([0.  , 0.25, 0.75, 0.  ]))
    """
    x = _source_coordinates(xp, n, m, scale, coordinate_mode)
    if method == "nearest":
        floor = xp.floor(x)
        fraction = x - floor
        if rounding_mode == "round-prefer-floor":
            rounded = xp.where(fraction <= 0.5, floor, floor + 1.0)
        elif rounding_mode == "round-prefer-ceil":
            rounded = xp.where(fraction < 0.5, floor, floor + 1.0)
        elif rounding_mode == "floor":
            rounded = floor
        else:
            rounded = xp.ceil(x)
        index = xp.clip(rounded, 0.0, float(n - 1)).astype(xp.int64)
        return [index], [xp.ones(m, dtype=xp.float64)]
    clamped = xp.clip(x, 0.0, float(n - 1))
    low = xp.floor(clamped)
    upper_weight = clamped - low
    low_index = low.astype(xp.int64)
    high_index = xp.minimum(low_index + 1, n - 1)
    return [low_index, high_index], [1.0 - upper_weight, upper_weight]


def _run_width(n: int, m: int, scale: float | None, method: str, coordinate_mode: str,
               rounding_mode: str) -> int:
    """The longest run of equal indices in any tap of the axis, plus one spare (computed on the host).

    The run width fixes the shape of the VJP's gather; it depends on sizes and
    modes only, so it is computed from the same formulas with NumPy (Python
    numbers in, one int out) and never reads the device.
    """
    indices, _ = axis_taps(np, n, m, scale, method, coordinate_mode, rounding_mode)
    longest = max(int(np.bincount(index, minlength=n).max()) for index in indices)
    return min(longest + 1, m)


# --- array kernels -------------------------------------------------------------
def _along(axis: int, ndim: int, values: Any) -> Any:
    """``values (m,)`` shaped to broadcast along ``axis`` of an ``ndim``-axis array."""
    return values.reshape((1,) * axis + (-1,) + (1,) * (ndim - axis - 1))


def resize_forward(x: Any, output_size: Sequence[int], scale: Sequence[float] | None = None,
                   method: str = "nearest", geometric_transform_mode: str = "half-pixel",
                   nearest_rounding_mode: str = "round-prefer-floor") -> Any:
    """``y`` of shape ``(B, C, *output_size)``: one gather (nearest) or two weighted gathers per axis.

    >>> import numpy as np
    >>> resize_forward(np.array([[[1.0, 3.0]]]), (4,), method="linear")
    array([[[1. , 1.5, 2.5, 3. ]]])
    """
    _check_settings(method, geometric_transform_mode, nearest_rounding_mode)
    sizes = _check_geometry(x.shape, output_size, scale)
    xp = get_xp(x)
    y = x
    for a, m in enumerate(sizes):
        axis, n = 2 + a, y.shape[2 + a]
        indices, weights = axis_taps(xp, n, m, None if scale is None else scale[a], method,
                                     geometric_transform_mode, nearest_rounding_mode)
        if method == "nearest":
            y = xp.take(y, indices[0], axis=axis)
            continue
        w0, w1 = (_along(axis, y.ndim, w.astype(x.dtype)) for w in weights)
        y = w0 * xp.take(y, indices[0], axis=axis) + w1 * xp.take(y, indices[1], axis=axis)
    return y


def _adjoint_along(grad: Any, axis: int, n: int, index: Any, weight: Any, width: int) -> Any:
    """``sum_i weight[i] grad[..., i, ...]`` into cell ``index[i]`` of an axis of size ``n`` (one tap).

    ``index`` is non-decreasing, so the outputs reading cell ``j`` are the run
    ``[start_j, stop_j)`` (found by ``searchsorted``), at most ``width`` long;
    each cell gathers its run, masked to its length, and sums it in order.
    """
    xp = get_xp(grad)
    m = grad.shape[axis]
    cells = xp.arange(n)
    start = xp.searchsorted(index, cells, side="left")
    stop = xp.searchsorted(index, cells, side="right")
    rows = start[:, None] + xp.arange(width)[None, :]                 # (n, width) output indices
    inside = rows < stop[:, None]
    rows = xp.minimum(rows, m - 1)
    coefficient = xp.where(inside, weight[rows], 0.0).astype(grad.dtype)  # (n, width)
    gathered = xp.take(grad, rows.reshape(-1), axis=axis)             # axis of length n * width
    shape = grad.shape[:axis] + (n, width) + grad.shape[axis + 1:]
    coefficient = coefficient.reshape((1,) * axis + (n, width) + (1,) * (grad.ndim - axis - 1))
    return (gathered.reshape(shape) * coefficient).sum(axis=axis + 1)


def resize_vjp_x(grad_y: Any, x_shape: Sequence[int], output_size: Sequence[int],
                 scale: Sequence[float] | None = None, method: str = "nearest",
                 geometric_transform_mode: str = "half-pixel",
                 nearest_rounding_mode: str = "round-prefer-floor") -> Any:
    """``dL/dx`` of shape ``x_shape``: the adjoint of each axis's interpolation, last axis first."""
    _check_settings(method, geometric_transform_mode, nearest_rounding_mode)
    x_shape = tuple(int(v) for v in x_shape)
    sizes = _check_geometry(x_shape, output_size, scale)
    expected = x_shape[:2] + sizes
    if tuple(grad_y.shape) != expected:
        raise ShapeError(f"resize VJP got grad_y of shape {tuple(grad_y.shape)}; the output has shape {expected}.")
    xp = get_xp(grad_y)
    grad = grad_y
    for a in reversed(range(len(sizes))):
        axis, n, m = 2 + a, x_shape[2 + a], sizes[a]
        axis_scale = None if scale is None else scale[a]
        indices, weights = axis_taps(xp, n, m, axis_scale, method, geometric_transform_mode,
                                     nearest_rounding_mode)
        width = _run_width(n, m, axis_scale, method, geometric_transform_mode, nearest_rounding_mode)
        parts = [_adjoint_along(grad, axis, n, index, weight, width) for index, weight in zip(indices, weights)]
        grad = parts[0] if len(parts) == 1 else parts[0] + parts[1]
    return grad


# --- Tensor level --------------------------------------------------------------
def resize(x: Tensor, output_size: Sequence[int], *, scale: Sequence[float] | None = None,
           method: str = "nearest", geometric_transform_mode: str = "half-pixel",
           nearest_rounding_mode: str = "round-prefer-floor") -> Tensor:
    """Resample the spatial axes of ``x (B, C, *S)`` to ``output_size`` (see the module docstring).

    Records one node ``"resize"``. ``scale`` (one per axis), when given, is the
    scale the coordinate transform divides by (ONNX ``scales``); otherwise it is
    ``m / n`` per axis (ONNX ``sizes``). Compute ``output_size`` from a scale
    with :func:`resize_output_size`.

    >>> import numpy as np
    >>> y = resize(Tensor(np.ones((1, 2, 3, 3))), (6, 6), scale=(2.0, 2.0), method="linear")
    >>> y.shape
    (1, 2, 6, 6)
    """
    settings = (method, geometric_transform_mode, nearest_rounding_mode)
    sizes = tuple(int(m) for m in output_size)
    scales = None if scale is None else tuple(float(s) for s in scale)
    y = resize_forward(x.data, sizes, scales, *settings)

    def vjp(grad_y: Any, needs: tuple[bool, ...]) -> tuple[Any, ...]:
        return (resize_vjp_x(grad_y, x.shape, sizes, scales, *settings) if needs[0] else None,)

    return record("resize", y, (x,), vjp)
