"""Helpers every layer family shares: property validation, MATLAB-style text, parameter tensors.

* Validation: :func:`int_tuple` turns a MATLAB-style size (a scalar or N values)
  into a tuple of N ints and raises :class:`~refcam.errors.LayerConfigError`
  naming the layer when it does not fit; :func:`positive_int` (counts),
  :func:`finite_float`, :func:`choice` (mode strings), :func:`name_tuple` and
  :func:`as_array` (parameters) do the same for the other properties, and
  :func:`check_param_shape` for parameter shapes. Every layer validates through
  these, so the rules live here:

  - an integer property is an int or an integral float (never a bool, string,
    NaN, Inf or 1.5, which is refused, not truncated);
  - window sizes, strides and dilations are integers from 1 to
    :data:`MAX_WINDOW_PROPERTY` (2**16), paddings from 0 to it;
  - counts (filters, channels, groups, sizes, inputs, ``min_length``) are
    integers from 1 (2 for ``num_inputs``) to :data:`MAX_OBSERVATION_ELEMENTS`;
  - float properties are finite real numbers, with the layer's own range;
  - mode strings are compared case-insensitively with a fixed set.
* Sizes: :func:`check_elements` raises :class:`~refcam.errors.SizeLimitError`
  when a per-observation tensor (an output, a zero-padded input, a
  convolution's column matrix for one output row) would hold more than
  :data:`MAX_OBSERVATION_ELEMENTS` (2**28) elements.
* MATLAB text: :func:`num2str` reproduces MATLAB's ``num2str`` of a row of
  integers (columns right-aligned, two spaces between, so ``[1 1]`` prints as
  ``1  1``); :func:`size_text` joins sizes with ``x`` (``3x3x1``).
* Parameters: :func:`constant` wraps a stored parameter as a constant Tensor of
  the input's dtype and array module, cast once per (parameter, dtype, module)
  and cached on the layer instance (no global state).
* Padding: MATLAB orders explicit padding per axis, ``[begin end]`` pairs
  (``[top bottom left right]`` in 2-D; in 3-D the 2x3 matrix
  ``[top left front; bottom right back]`` read column-major); refcam's kernels take
  ``(begins..., ends...)``. :func:`matlab_padding` normalises what a user gives,
  :func:`internal_padding` and :func:`matlab_padding_from_internal` convert.
"""
from __future__ import annotations

import math
import numbers
import operator
from typing import Any, Sequence

import numpy as np

from ..autodiff import Tensor
from ..backend import get_xp, is_cupy_array, to_device
from ..errors import (BackendError, LayerConfigError, LayerShapeError, MissingParameterError, ParameterError,
                      ParameterShapeError, SizeLimitError)
from ..ops.padding import effective_kernel, output_length, resolve_padding
from .base import Layer



# --- validation ----------------------------------------------------------------
MAX_WINDOW_PROPERTY = 2 ** 16
"""Largest filter or pool size, stride and dilation factor on an axis, and padding on a side (65536)."""

MAX_OBSERVATION_ELEMENTS = 2 ** 28
"""Largest element count of one observation's tensor (2 GiB of float64, like ``refcam.io.safe``'s
``DEFAULT_MAX_TENSOR_BYTES``); also the largest count property (filters, channels, sizes, inputs)."""


def int_tuple(layer: Any, prop: str, value: Any, length: int, minimum: int = 1,
              maximum: int = MAX_WINDOW_PROPERTY) -> tuple[int, ...]:
    """``value`` (a scalar or ``length`` numbers) as a tuple of ``length`` ints in ``[minimum, maximum]``.

    Rule: each entry is an integer (an int, or a float with no fraction; never a
    bool, string, NaN or Inf, and 1.5 is refused rather than truncated). The
    default bounds are those of a window property: 1 to :data:`MAX_WINDOW_PROPERTY`.

    >>> int_tuple(None, "stride", 2, 2)
    (2, 2)
    """
    values = (value,) * length if _is_scalar(value) else _entries(value)
    ints = () if values is None else tuple(_integer(v) for v in values)
    if len(ints) != length or None in ints:
        raise LayerConfigError(
            f"{describe_owner(layer)}: {prop} {value!r} must be an integer or {length} integers.")
    if any(v < minimum for v in ints):
        raise LayerConfigError(f"{describe_owner(layer)}: {prop} {value!r} must hold integers >= {minimum}.")
    if any(v > maximum for v in ints):
        raise LayerConfigError(
            f"{describe_owner(layer)}: {prop} {value!r} must hold integers <= {maximum} (refcam's limit, "
            "docs/layers.md 'Limits').")
    return ints


def positive_int(layer: Any, prop: str, value: Any, minimum: int = 1) -> int:
    """``value`` as a count: an int from ``minimum`` to :data:`MAX_OBSERVATION_ELEMENTS`."""
    return int_tuple(layer, prop, value, 1, minimum, MAX_OBSERVATION_ELEMENTS)[0]


def optional_positive_int(layer: Any, prop: str, value: Any) -> int | None:
    """``value`` as a count (:func:`positive_int`), or None (MATLAB's 'auto')."""
    if value is None or (isinstance(value, str) and value.lower() == "auto"):
        return None
    return positive_int(layer, prop, value)


_COMPARISONS = ((">=", operator.ge), (">", operator.gt), ("<", operator.lt))  # minimum, above, below


def finite_float(layer: Any, prop: str, value: Any, *, minimum: float | None = None,
                 above: float | None = None, below: float | None = None) -> float:
    """``value`` as a finite Python float, ``>= minimum``, ``> above`` and ``< below`` when given.

    A real number (int, float, NumPy scalar or 0-d array); never a bool or string.

    >>> finite_float(None, "epsilon", 1e-5, above=0.0)
    1e-05
    """
    bounds = [(symbol, compare, limit) for (symbol, compare), limit in zip(_COMPARISONS, (minimum, above, below))
              if limit is not None]
    number = _real(value)
    if number is None or not math.isfinite(number) or not all(compare(number, limit) for _, compare, limit in bounds):
        condition = "".join(f" {'and ' if i else ''}{symbol} {limit}" for i, (symbol, _, limit) in enumerate(bounds))
        raise LayerConfigError(f"{describe_owner(layer)}: {prop} {value!r} must be a finite number{condition}.")
    return number


def is_zero(value: Any) -> bool:
    """True for a real number equal to 0 (``0``, ``0.0``; not ``False``)."""
    return _real(value) == 0.0


def choice(layer: Any, prop: str, value: Any, options: Sequence[str]) -> str:
    """``value`` lower-cased, which must be one of ``options`` (compared case-insensitively)."""
    if not isinstance(value, str) or value.lower() not in options:
        raise LayerConfigError(f"{describe_owner(layer)}: {prop} {value!r} is not one of {list(options)}.")
    return value.lower()


def name_tuple(layer: Any, prop: str, value: Any) -> tuple[str, ...]:
    """``value`` (a list of strings, e.g. class names) as a tuple of ``str``."""
    names = None if isinstance(value, (str, bytes, dict)) else _entries(value)
    if names is None or not all(isinstance(n, str) for n in names):
        raise LayerConfigError(f"{describe_owner(layer)}: {prop} {value!r} must be a list of strings.")
    return tuple(str(n) for n in names)


def check_elements(layer: Any, what: str, shape: Sequence[int | None]) -> None:
    """Raise SizeLimitError when a per-observation ``shape`` holds more than :data:`MAX_OBSERVATION_ELEMENTS`.

    A shape with a free (None) axis is not checked; it is checked again with the real sizes.

    >>> check_elements(None, "output", (8, 32, 32))   # 8192 elements: fine
    """
    if any(n is None for n in shape):
        return
    count = math.prod(shape)
    if count > MAX_OBSERVATION_ELEMENTS:
        raise SizeLimitError(
            f"{describe_owner(layer)}: its {what} would have per-observation shape {tuple(shape)}, "
            f"{count} elements, more than refcam's limit of {MAX_OBSERVATION_ELEMENTS} (2**28, 2 GiB of "
            "float64) per observation (docs/layers.md, 'Limits'); use a smaller input or a smaller "
            "padding, stride, dilation or number of filters.")


def check_param_shape(layer: Any, param: str, array: Any, expected: Sequence[int | None]) -> None:
    """Raise LayerConfigError unless ``array.shape`` equals ``expected`` (None matches any size)."""
    found = tuple(array.shape)
    if len(found) != len(expected) or any(e is not None and e != f for e, f in zip(expected, found)):
        shown = "(" + ", ".join("any" if e is None else str(e) for e in expected) + ")"
        raise ParameterShapeError(
            f"{describe_owner(layer)}: parameter {param!r} has shape {found}; expected {shown} "
            "(refcam's internal layout, see docs/layers.md).", param)


def require_param(layer: Any, param: str) -> Any:
    """The array of parameter ``param``, or a LayerConfigError when it was never set."""
    array = getattr(layer, param)
    if array is None:
        raise MissingParameterError(
            f"{describe_owner(layer)} has no {param!r}; give it when constructing the layer "
            "(or load a trained network).", param)
    return array


def describe_owner(layer: Any) -> str:
    """``"layer 'conv_1' (2-D Convolution)"`` for messages."""
    if layer is None:
        return "layer"
    return f"layer {layer.name!r} ({type(layer).type or type(layer).__name__})"


def check_input_count(layer: Any, shapes: Sequence[Any]) -> None:
    """Raise LayerShapeError unless ``len(shapes)`` fits ``layer.num_inputs`` (None: 2 or more)."""
    expected = layer.num_inputs
    count = len(shapes)
    if expected is None and count < 2:
        raise LayerShapeError(f"{describe_owner(layer)} needs 2 or more inputs, got {count}.")
    if expected is not None and count != expected:
        raise LayerShapeError(f"{describe_owner(layer)} takes {expected} input(s), got {count}.")


def check_rank(layer: Any, shape: Sequence[Any], spatial_rank: int, what: str = "input") -> None:
    """Raise LayerShapeError unless a per-observation ``shape`` is ``(C, *S)`` with ``spatial_rank`` axes S."""
    if len(shape) != spatial_rank + 1:
        raise LayerShapeError(
            f"{describe_owner(layer)} expects a per-observation {what} of shape (C, {_axes(spatial_rank)}) "
            f"with {spatial_rank} spatial axis/axes; found shape {tuple(shape)}.")


def check_channels(layer: Any, found: int | None, expected: int | None) -> None:
    """Raise LayerShapeError when both channel counts are known and differ."""
    if expected is not None and found is not None and found != expected:
        raise LayerShapeError(
            f"{describe_owner(layer)} expects {expected} input channels; found {found}.")


def _axes(n: int) -> str:
    return ", ".join(["S"] * n) if n else ""


def _is_scalar(value: Any) -> bool:
    return not isinstance(value, (tuple, list)) and getattr(value, "ndim", 0) == 0


def _entries(value: Any) -> tuple[Any, ...] | None:
    """The entries (rows) of a list, tuple or array of one or more axes; None for anything else."""
    if isinstance(value, (tuple, list)) or getattr(value, "ndim", 0) >= 1:
        return tuple(value)
    return None


def _unwrapped(value: Any) -> Any:
    """A 0-d array as its scalar; anything else unchanged."""
    if isinstance(value, (str, bytes)) or getattr(value, "shape", None) != ():
        return value
    try:
        return value[()]
    except (TypeError, IndexError, KeyError, ValueError):
        return value


def _real(value: Any) -> float | None:
    """A real number (not a bool or string; a 0-d array is unwrapped) as a float, else None."""
    value = _unwrapped(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond float range
        return math.inf


def _integer(value: Any) -> int | None:
    """An integer value (an int, or a finite float without fraction) as an int, else None."""
    value = _unwrapped(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    number = _real(value)
    return int(number) if number is not None and number.is_integer() else None


# --- padding -------------------------------------------------------------------
def matlab_padding(layer: Any, padding: Any, rank: int, modes: Sequence[str]) -> str | tuple[int, ...]:
    """Normalise a padding property: a mode name in ``modes`` or 2N ints in MATLAB order.

    Accepted numbers: one (every side), N (symmetric per axis), 2N per-axis
    ``[begin end]`` pairs (MATLAB's ``[top bottom left right]``), or a 2xN nested
    sequence ``[[begins], [ends]]`` (MATLAB's 3-D matrix); each an integer from 0
    to :data:`MAX_WINDOW_PROPERTY`.
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in modes:
            raise LayerConfigError(
                f"{describe_owner(layer)}: padding {padding!r} is not one of {list(modes)} or numbers.")
        return mode
    entries = None if _is_scalar(padding) else _entries(padding)
    if entries is not None and len(entries) == 2 and all(not _is_scalar(row) for row in entries):
        begins, ends = (int_tuple(layer, "padding", row, rank, 0) for row in entries)
        return tuple(v for pair in zip(begins, ends) for v in pair)
    values = (padding,) * (2 * rank) if entries is None else entries
    if len(values) == rank:
        values = tuple(v for v in values for _ in range(2))
    return int_tuple(layer, "padding", values, 2 * rank, 0)


def internal_padding(matlab_pairs: Sequence[int]) -> tuple[int, ...]:
    """MATLAB per-axis ``(b1, e1, b2, e2, ...)`` -> internal ``(b1, b2, ..., e1, e2, ...)``.

    >>> internal_padding((1, 2, 3, 4))   # [top bottom left right]
    (1, 3, 2, 4)
    """
    return tuple(matlab_pairs[0::2]) + tuple(matlab_pairs[1::2])


def matlab_padding_from_internal(padding: Sequence[int]) -> tuple[int, ...]:
    """Internal ``(begins..., ends...)`` -> MATLAB per-axis pairs (the inverse of :func:`internal_padding`).

    >>> matlab_padding_from_internal((1, 3, 2, 4))
    (1, 2, 3, 4)
    """
    rank = len(padding) // 2
    return tuple(v for i in range(rank) for v in (padding[i], padding[rank + i]))


# --- MATLAB text -----------------------------------------------------------------
def num2str(values: Sequence[int]) -> str:
    """MATLAB ``num2str`` of a row of integers: right-aligned columns two spaces apart.

    >>> num2str([1, 1]), num2str([10, 2])
    ('1  1', '10   2')
    """
    ints = [int(v) for v in values]
    width = max(len(str(v)) for v in ints) + 2
    return "".join(f"{v:>{width}d}" for v in ints).lstrip()


def scalar2str(value: float) -> str:
    """MATLAB ``num2str`` of one number: integers exactly, others to ``max(floor(log10|x|) + 5, 5)`` digits.

    >>> scalar2str(20.0), scalar2str(0.01), scalar2str(12.5)
    ('20', '0.01', '12.5')
    """
    value = float(value)
    if value == int(value):
        return str(int(value))
    digits = max(int(math.floor(math.log10(abs(value)))) + 5, 5)
    return f"{value:.{digits}g}"


def vector_text(values: Sequence[int]) -> str:
    """``[1  1]`` for several values, ``1`` for one (MATLAB's text for strides and sizes)."""
    return num2str(values) if len(values) == 1 else f"[{num2str(values)}]"


def size_text(values: Sequence[int]) -> str:
    """``3x3x1``."""
    return "x".join(str(int(v)) for v in values)


def padding_text(padding: str | Sequence[int]) -> str:
    """``'same'`` for a mode, ``[0  0  0  0]`` for numbers (MATLAB order)."""
    return f"'{padding}'" if isinstance(padding, str) else f"[{num2str(padding)}]"


# --- parameters as tensors -------------------------------------------------------
CONSTANT_CACHE = "_constant_cache"  # per-layer copies of parameters in a compute dtype and device


def constant(layer: Any, param: str, like: Tensor) -> Tensor:
    """Parameter ``param`` of ``layer`` as a constant Tensor with ``like``'s dtype and array module.

    When the stored array already matches it is wrapped without a copy; otherwise
    a cast on the same device is made once and kept on the layer, keyed by the
    parameter, dtype and device, and redone if the stored array is replaced.
    A parameter on the other device must have been staged before the pass
    (:func:`stage_parameters`, which ``Network.forward_tensors`` calls): no
    host/device copy is made here, inside the graph.

    Raises :class:`~refcam.errors.BackendError` for an unstaged parameter on
    the other device.
    """
    array = require_param(layer, param)
    on_gpu = is_cupy_array(like.data)
    if array.dtype == like.dtype and is_cupy_array(array) == on_gpu:
        return Tensor(array)
    hit = _cached(layer, param, like.dtype, on_gpu)
    if hit is not None:
        return hit
    if is_cupy_array(array) != on_gpu:
        where, there = ("CPU", "GPU") if on_gpu else ("GPU", "CPU")
        raise BackendError(
            f"{describe_owner(layer)}: parameter {param!r} is on the {where} but the input is on the {there}, "
            "and refcam copies parameters between devices only before a forward pass: run the network "
            "through Network.forward_tensors/predict/activations or refcam.gradcam (they stage it), or move it "
            f"first with net.to_device({there.lower()!r}).")
    return _keep(layer, param, array, like.dtype, on_gpu, get_xp(array).asarray(array, dtype=like.dtype))


def stage_parameters(layer: Any, dtype: Any, on_gpu: bool) -> None:
    """Copy each parameter of ``layer`` that is on the other device to this one, cast to ``dtype``, once.

    The copies are kept where :func:`constant` finds them (and remade only
    when a stored array is replaced), so a forward pass on that device and
    dtype makes no host/device copy. Parameters already on the device are left
    alone (a dtype cast stays with :func:`constant`).
    """
    for param, array in layer.params().items():
        if is_cupy_array(array) == on_gpu or _cached(layer, param, dtype, on_gpu) is not None:
            continue
        moved = to_device(array, "gpu" if on_gpu else "cpu")
        _keep(layer, param, array, dtype, on_gpu, get_xp(moved).asarray(moved, dtype=dtype))


def _cached(layer: Any, param: str, dtype: Any, on_gpu: bool) -> Tensor | None:
    """The kept copy of ``param`` for ``dtype`` and device, if it was made from the array stored now."""
    hit = layer.__dict__.get(CONSTANT_CACHE, {}).get((param, np.dtype(dtype), on_gpu))
    return hit[1] if hit is not None and hit[0] is getattr(layer, param) else None


def _keep(layer: Any, param: str, source: Any, dtype: Any, on_gpu: bool, array: Any) -> Tensor:
    tensor = Tensor(array)
    layer.__dict__.setdefault(CONSTANT_CACHE, {})[(param, np.dtype(dtype), on_gpu)] = (source, tensor)
    return tensor


def as_array(layer: Any, param: str, value: Any) -> Any:
    """Parameter ``param`` as given: an array unchanged, numbers through ``numpy.asarray(value, float)``.

    Raises :class:`~refcam.errors.ParameterError` naming the layer and the
    parameter for anything that is not an array of real numbers (strings,
    dicts, ragged lists, bool, complex or object arrays).
    """
    if value is None:
        return None
    array = value if hasattr(value, "shape") else _float_array(value)
    dtype = getattr(array, "dtype", None)
    if getattr(dtype, "kind", None) not in ("f", "i", "u"):
        found = f"an array of dtype {dtype}" if dtype is not None else f"a {type(value).__name__}"
        raise ParameterError(f"{describe_owner(layer)}: parameter {param!r} is {found}; give an array of "
                             "real numbers (floating point).", param)
    return array


def _float_array(value: Any) -> Any:
    """``numpy.asarray(value, dtype=float)``; None for a string or what NumPy cannot convert."""
    if isinstance(value, (str, bytes)):
        return None
    try:
        return get_xp().asarray(value, dtype=float)
    except (TypeError, ValueError, OverflowError):
        return None


# --- window geometry (convolution and pooling) -------------------------------------
def forward_padding(padding: str | Sequence[int], spatial: Sequence[int], kernel: Sequence[int],
                    stride: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    """Internal ``(begins..., ends...)`` for a padding property (a mode or MATLAB-ordered numbers)."""
    spec = padding if isinstance(padding, str) else internal_padding(padding)
    return resolve_padding(spec, spatial, kernel, stride, dilation)


def window_output_spatial(layer: Any, shape: Sequence[int | None], kernel: Sequence[int],
                          stride: Sequence[int], dilation: Sequence[int],
                          padding: str | Sequence[int]) -> tuple[int | None, ...]:
    """Output spatial sizes of a window op on an input ``(C, *S)``; a free axis (None) stays free.

    Raises LayerShapeError naming the layer when the (padded) input is smaller
    than the dilated window on some axis, and SizeLimitError when the
    zero-padded input ``(C, *(S + p_begin + p_end))`` would hold more than
    :data:`MAX_OBSERVATION_ELEMENTS` elements.
    """
    spatial = tuple(shape[1:])
    out: list[int | None] = []
    padded: list[int | None] = []
    for i, n in enumerate(spatial):
        if n is None:
            out.append(None)
            padded.append(None)
            continue
        begin, end = forward_padding(padding, (n,), (kernel[i],), (stride[i],), (dilation[i],)) \
            if isinstance(padding, str) else (padding[2 * i], padding[2 * i + 1])
        length = output_length(n, kernel[i], stride[i], dilation[i], begin, end)
        if length < 1:
            raise LayerShapeError(
                f"{describe_owner(layer)}: spatial axis {i} of the input has size {n}, padded "
                f"{begin}+{end}, smaller than the window of extent {effective_kernel(kernel[i], dilation[i])}; "
                f"found input spatial shape {spatial}.")
        out.append(length)
        padded.append(n + begin + end)
    check_elements(layer, "zero-padded input", (shape[0], *padded))
    return tuple(out)


class SameShapeLayer(Layer):
    """Base of one-input layers whose output has the input's shape (activations, dropout, outputs)."""

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """The input shape, unchanged."""
        check_input_count(self, shapes)
        return tuple(shapes[0])
