"""Helpers every layer family shares: property validation, MATLAB-style text, parameter tensors.

* Validation: :func:`int_tuple` turns a MATLAB-style size (a scalar or N values)
  into a tuple of N ints and raises :class:`~refcam.errors.LayerConfigError`
  naming the layer when it does not fit; :func:`check_param_shape` does the same
  for array parameters.
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
from typing import Any, Sequence

from ..autodiff import Tensor
from ..backend import get_xp, is_cupy_array, to_device
from ..errors import BackendError, LayerConfigError, LayerShapeError, MissingParameterError, ParameterShapeError
from ..ops.padding import effective_kernel, output_length, resolve_padding
from .base import Layer



# --- validation ----------------------------------------------------------------
def int_tuple(layer: Any, prop: str, value: Any, length: int, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (a scalar or ``length`` numbers) as a tuple of ``length`` ints ``>= minimum``.

    >>> int_tuple(None, "stride", 2, 2)
    (2, 2)
    """
    values = (value,) * length if _is_scalar(value) else tuple(value)
    if len(values) != length or not all(_is_integral(v) for v in values):
        raise LayerConfigError(
            f"{describe_owner(layer)}: {prop} {value!r} must be an integer or {length} integers.")
    ints = tuple(int(v) for v in values)
    if any(v < minimum for v in ints):
        raise LayerConfigError(f"{describe_owner(layer)}: {prop} {value!r} must hold integers >= {minimum}.")
    return ints


def positive_int(layer: Any, prop: str, value: Any) -> int:
    """``value`` as an int ``>= 1``."""
    return int_tuple(layer, prop, value, 1)[0]


def optional_positive_int(layer: Any, prop: str, value: Any) -> int | None:
    """``value`` as an int ``>= 1``, or None (MATLAB's 'auto')."""
    if value is None or (isinstance(value, str) and value.lower() == "auto"):
        return None
    return positive_int(layer, prop, value)


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


def _is_integral(value: Any) -> bool:
    try:
        return float(value) == int(value)
    except (TypeError, ValueError):
        return False


# --- padding -------------------------------------------------------------------
def matlab_padding(layer: Any, padding: Any, rank: int, modes: Sequence[str]) -> str | tuple[int, ...]:
    """Normalise a padding property: a mode name in ``modes`` or 2N ints in MATLAB order.

    Accepted numbers: one (every side), N (symmetric per axis), 2N per-axis
    ``[begin end]`` pairs (MATLAB's ``[top bottom left right]``), or a 2xN nested
    sequence ``[[begins], [ends]]`` (MATLAB's 3-D matrix).
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode not in modes:
            raise LayerConfigError(
                f"{describe_owner(layer)}: padding {padding!r} is not one of {list(modes)} or numbers.")
        return mode
    if not _is_scalar(padding) and len(padding) == 2 and all(not _is_scalar(row) for row in padding):
        begins, ends = (int_tuple(layer, "padding", row, rank, 0) for row in padding)
        return tuple(v for pair in zip(begins, ends) for v in pair)
    values = (padding,) * (2 * rank) if _is_scalar(padding) else tuple(padding)
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
    hit = layer.__dict__.get(CONSTANT_CACHE, {}).get((param, str(dtype), on_gpu))
    return hit[1] if hit is not None and hit[0] is getattr(layer, param) else None


def _keep(layer: Any, param: str, source: Any, dtype: Any, on_gpu: bool, array: Any) -> Tensor:
    tensor = Tensor(array)
    layer.__dict__.setdefault(CONSTANT_CACHE, {})[(param, str(dtype), on_gpu)] = (source, tensor)
    return tensor


def as_array(value: Any) -> Any:
    """A parameter as given: NumPy and CuPy arrays unchanged, anything else through ``numpy.asarray``."""
    if value is None or hasattr(value, "shape"):
        return value
    return get_xp().asarray(value, dtype=float)


# --- window geometry (convolution and pooling) -------------------------------------
def forward_padding(padding: str | Sequence[int], spatial: Sequence[int], kernel: Sequence[int],
                    stride: Sequence[int], dilation: Sequence[int]) -> tuple[int, ...]:
    """Internal ``(begins..., ends...)`` for a padding property (a mode or MATLAB-ordered numbers)."""
    spec = padding if isinstance(padding, str) else internal_padding(padding)
    return resolve_padding(spec, spatial, kernel, stride, dilation)


def window_output_spatial(layer: Any, spatial: Sequence[int | None], kernel: Sequence[int],
                          stride: Sequence[int], dilation: Sequence[int],
                          padding: str | Sequence[int]) -> tuple[int | None, ...]:
    """Output spatial sizes of a window op; a free axis (None) stays free.

    Raises LayerShapeError naming the layer when the (padded) input is smaller
    than the dilated window on some axis.
    """
    out: list[int | None] = []
    for i, n in enumerate(spatial):
        if n is None:
            out.append(None)
            continue
        begin, end = forward_padding(padding, (n,), (kernel[i],), (stride[i],), (dilation[i],)) \
            if isinstance(padding, str) else (padding[2 * i], padding[2 * i + 1])
        length = output_length(n, kernel[i], stride[i], dilation[i], begin, end)
        if length < 1:
            raise LayerShapeError(
                f"{describe_owner(layer)}: spatial axis {i} of the input has size {n}, padded "
                f"{begin}+{end}, smaller than the window of extent {effective_kernel(kernel[i], dilation[i])}; "
                f"found input spatial shape {tuple(spatial)}.")
        out.append(length)
    return tuple(out)


class SameShapeLayer(Layer):
    """Base of one-input layers whose output has the input's shape (activations, dropout, outputs)."""

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int | None, ...]:
        """The input shape, unchanged."""
        check_input_count(self, shapes)
        return tuple(shapes[0])
