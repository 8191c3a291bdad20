"""ONNX resampling operators as refcam layers: Resize, Upsample, ConvTranspose, and a Linear per position.

Converters of the same form as :mod:`refcam.io.onnx_ops` (merged into its
``CONVERTERS``); the maths lives in :class:`~refcam.layers.ResizeLayer` and the
transposed convolution layers, here only the mapping of ONNX's attributes:

=====================  ===================================================================
ONNX                   refcam
=====================  ===================================================================
Resize (opset 10-19)   ResizeLayer: ``scales`` -> ``scale``, ``sizes`` -> ``output_size``
                       (spatial entries; batch and channel entries must keep their size);
                       mode nearest / linear -> method; coordinate_transformation_mode
                       half_pixel, pytorch_half_pixel, align_corners, asymmetric ->
                       geometric_transform_mode; nearest_mode -> nearest_rounding_mode
Upsample (opset 7-9)   ResizeLayer(scale, "asymmetric", "floor"), scales of at least 1
ConvTranspose          TransposedConvolution{1,2,3}dLayer (group 1): weights ``(C, F, *k)``
                       as they are, ``pads`` -> cropping ``(begins..., ends...)``,
                       output_padding, strides, dilations; auto_pad and output_shape as
                       cropping
MatMul (+ Add)         a 1x1 Convolution{1,2,3}dLayer on a tensor held channels-last (a
                       Transpose moved the channel axis last): weights ``B^T``, the Add's
                       constant as bias, the layout kept
Reshape [-1] + Gather  nothing: the tensor itself when the Gather's constant indices are
                       ``0, 1, ...`` shaped like the Reshape's input (dynamo's as_strided)
=====================  ===================================================================

Resize (ONNX operator definition, opsets 10, 11, 13, 18, 19). Per spatial axis
with input size ``n``: given ``scales`` ``s``, ``out = floor(n s)`` and output
cell ``y`` samples the input at ``x = T(y)`` with the scale ``s``; given
``sizes``, ``s = out / n``. ``T`` is ``(y + 1/2) / s - 1/2`` (half_pixel;
pytorch_half_pixel the same but ``-1/2`` when ``out = 1``), ``y (n - 1) / (out - 1)``
(align_corners) or ``y / s`` (asymmetric). Opset 10 and Upsample use
asymmetric with ``floor`` for nearest (what ONNX Runtime does for these versions
when upsampling; it rounds up when downsampling, so scales below 1 are refused
for nearest there). ``half_pixel_symmetric`` (opset 19) is half_pixel when
``n s`` is a whole number on every axis (its offset is then 0), else refused.
Refused: cubic (PyTorch's bicubic), antialias 1, tf_crop_and_resize and
tf_half_pixel_for_nn, exclude_outside 1 with nearest (ONNX then gives 0 where
the chosen cell lies outside the input; with linear it changes nothing, an
outside neighbour holding the edge cell's value), keep_aspect_ratio_policy
not_larger / not_smaller unless ``floor(n s)`` of the common scale ``s`` is the
size ONNX rounds to on every axis, computed scales or sizes.

ConvTranspose (ONNX operator definition): ``out = s (n - 1) + output_padding +
(k - 1) d + 1 - p_begin - p_end``. With ``output_shape`` (or auto_pad SAME_UPPER /
SAME_LOWER, ``output_shape = n s``) the total padding is ``s (n - 1) + output_padding
+ (k - 1) d + 1 - output_shape``: SAME_UPPER puts the odd cell at the end,
SAME_LOWER at the beginning; for ``output_shape`` with auto_pad NOTSET the
definition and the runtimes disagree on the odd cell, so an odd total is refused
there; a negative total (an output past the full transposed convolution) is refused.

Channels-last MatMul: PyTorch's ``nn.Linear`` on a ``(B, H, W, C)`` tensor
(ConvNeXt's pointwise layers after ``permute(0, 2, 3, 1)``) is ``MatMul`` by a
constant ``(C, Out)`` and an ``Add`` of the bias. refcam holds the tensor as
``(C, H, W)`` with a pending transpose; at every position the product is
``y[o] = sum_c B[c, o] x[c] + bias[o]``, a 1x1 convolution with weights
``B^T`` reshaped to ``(Out, C, 1, 1)``, and the output keeps the transposed layout.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ..errors import FileFormatError, UnsupportedOperationError, WeightShapeError
from ..layers import CONVOLUTION_BY_RANK, TRANSPOSED_CONVOLUTION_BY_RANK, ResizeLayer
from .onnx_graph import ImportState, Node, Value, check_axes, int_list, ints_attribute

TRANSFORM_MODES = {"half_pixel": "half-pixel", "pytorch_half_pixel": "pytorch-half-pixel",
                   "align_corners": "align-corners", "asymmetric": "asymmetric"}
NEAREST_MODES = {"round_prefer_floor": "round-prefer-floor", "round_prefer_ceil": "round-prefer-ceil",
                 "floor": "floor", "ceil": "ceil"}
RESIZE_METHODS = ("nearest", "linear")
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")


# --- Resize and Upsample ------------------------------------------------------------------
def convert_resize(state: ImportState, node: Node) -> None:
    """Resize -> ResizeLayer (module docstring: the forms accepted and refused)."""
    x = state.value(node, 0)
    rank = x.onnx_rank
    mode = _resize_method(node, node.attr("mode", "string", "nearest"))
    if state.opset < 11:
        scales = _resize_operand(state, node, 1)
        if scales is None:
            raise FileFormatError(f"{node.label} lacks its required input #1 (scales).")
        _upsample(state, node, x, _scales_list(node, scales, rank), mode)
        return
    transform = node.attr("coordinate_transformation_mode", "string", "half_pixel")
    nearest = node.attr("nearest_mode", "string", "round_prefer_floor")
    if node.attr("antialias", "int", 0):
        raise UnsupportedOperationError(f"{node.label}: Resize with antialias=1 (a widened, downsampling "
                                        "filter); the refcam ResizeLayer interpolates without antialiasing.")
    if node.attr("exclude_outside", "int", 0) and mode == "nearest":
        raise UnsupportedOperationError(f"{node.label}: nearest Resize with exclude_outside=1; the refcam "
                                        "ResizeLayer clamps to the edge.")
    if nearest not in NEAREST_MODES:
        raise UnsupportedOperationError(f"{node.label}: nearest_mode {nearest}; refcam rounds "
                                        f"{', '.join(NEAREST_MODES)}.")
    scales, sizes = _resize_operand(state, node, 2), _resize_operand(state, node, 3)
    if (scales is None) == (sizes is None):
        raise FileFormatError(f"{node.label}: gives {'both' if scales is not None else 'neither of'} scales and "
                              "sizes; Resize takes exactly one of them.")
    axes = _resize_axes(node, rank)
    spatial = x.shape[1:]
    if scales is not None:
        given = _on_all_axes(_scales_list(node, scales, len(axes)), axes, rank)
        full_scales = [1.0 if s is None else s for s in given]
        _check_kept(node, full_scales[:2], (1.0, 1.0), "scales", "a scale of 1")
        scale, output_size = tuple(full_scales[2:]), None
    else:
        full_sizes = _on_all_axes(_sizes_list(node, sizes, len(axes)), axes, rank)
        batch = full_sizes[0] if full_sizes[0] in (1, state.graph.input.dims[0]) else 1
        _check_kept(node, full_sizes[:2], (batch, x.shape[0]), "sizes",
                    "the batch (1, or the input's fixed batch) and the channel count")
        scale, output_size = _aspect_policy(node, full_sizes[2:], spatial)
    transform = _transform_mode(node, transform, spatial, scale, output_size)
    state.add(node, ResizeLayer, [x], scale=scale, output_size=output_size, method=mode,
              geometric_transform_mode=transform, nearest_rounding_mode=NEAREST_MODES[nearest])


def convert_upsample(state: ImportState, node: Node) -> None:
    """Upsample (opset 7: ``scales`` attribute; 9: input #1) -> ResizeLayer, asymmetric, floor."""
    x = state.value(node, 0)
    mode = _resize_method(node, node.attr("mode", "string", "nearest"))
    if state.opset < 9:
        scales = node.attr("scales", "floats")
    else:
        scales = _resize_operand(state, node, 1)
        if scales is None:
            raise FileFormatError(f"{node.label} lacks its required input #1 (scales).")
    _upsample(state, node, x, _scales_list(node, scales, x.onnx_rank), mode)


def _upsample(state: ImportState, node: Node, x: Value, scales: list[float], mode: str) -> None:
    """Upsample and opset-10 Resize: asymmetric coordinates, nearest rounds down (scales at least 1)."""
    _check_kept(node, scales[:2], (1.0, 1.0), "scales", "a scale of 1")
    if mode == "nearest" and min(scales) < 1.0:
        raise UnsupportedOperationError(
            f"{node.label}: nearest {node.op_type} (opset {state.opset}) with scales {scales} below 1; ONNX "
            "leaves the rounding of a downsampling nearest resize of this version open (ONNX Runtime rounds "
            "up). Export with opset 11 or later.")
    state.add(node, ResizeLayer, [x], scale=tuple(scales[2:]), method=mode, geometric_transform_mode="asymmetric",
              nearest_rounding_mode="floor")


def _resize_method(node: Node, mode: str) -> str:
    if mode == "cubic":
        raise UnsupportedOperationError(
            f"{node.label}: cubic interpolation (mode cubic, bicubic in PyTorch); the refcam ResizeLayer "
            "interpolates nearest and linear only. Export with mode bilinear or nearest.")
    if mode not in RESIZE_METHODS:
        raise FileFormatError(f"{node.label}: mode {mode!r}; ONNX's modes are nearest, linear and cubic.")
    return mode


def _resize_operand(state: ImportState, node: Node, index: int) -> np.ndarray | None:
    """Optional constant input ``index`` (scales or sizes); None when omitted or empty (ONNX's 'not given')."""
    if not state.has_input(node, index):
        return None
    if not state.is_constant(node.inputs[index]):
        raise UnsupportedOperationError(
            f"{node.label}: input #{index} ({node.inputs[index]!r}) is computed from the values of the network; "
            "refcam imports Resize with constant scales or sizes (or ones folded from the tracked shapes).")
    array = state.constants[node.inputs[index]]
    return None if array.size == 0 else array


def _scales_list(node: Node, scales: Sequence[float] | np.ndarray, count: int) -> list[float]:
    values = [float(v) for v in np.asarray(scales, dtype=np.float64).reshape(-1)]
    if np.asarray(scales).ndim > 1 or len(values) != count:
        raise FileFormatError(f"{node.label}: scales {values} should hold {count} numbers (one per axis).")
    if min(values) <= 0.0:
        raise FileFormatError(f"{node.label}: scales {values} must be positive.")
    return values


def _sizes_list(node: Node, sizes: np.ndarray, count: int) -> list[int]:
    values = int_list(node, sizes, "input #3 (sizes)")
    if len(values) != count or min(values) < 1:
        raise FileFormatError(f"{node.label}: sizes {values} should hold {count} positive sizes (one per axis).")
    return values


def _resize_axes(node: Node, rank: int) -> list[int]:
    axes = node.attr("axes", "ints", list(range(rank)))
    return check_axes(node, axes, rank)


def _on_all_axes(values: list, axes: list[int], rank: int) -> list:
    """``values`` given for ``axes`` spread over all ``rank`` axes (None elsewhere: that axis keeps its size)."""
    full: list = [None] * rank
    for axis, value in zip(axes, values):
        full[axis] = value
    return full


def _check_kept(node: Node, given: Sequence, kept: Sequence, what: str, meaning: str) -> None:
    """The batch and channel entries of scales or sizes must keep those axes (``None``: not given)."""
    if any(g is not None and g != k for g, k in zip(given, kept)):
        raise UnsupportedOperationError(
            f"{node.label}: {what} {list(given)} for the batch and channel axes; refcam resizes spatial axes "
            f"only ({meaning} there).")


def _aspect_policy(node: Node, sizes: list[int | None],
                   spatial: Sequence[int | None]) -> tuple[tuple[float, ...] | None, tuple[int, ...] | None]:
    """``(scale, output_size)`` for ``sizes`` under keep_aspect_ratio_policy (module docstring)."""
    if None in spatial:
        raise UnsupportedOperationError(f"{node.label}: Resize to sizes of a tensor with a dynamic axis.")
    policy = node.attr("keep_aspect_ratio_policy", "string", "stretch")
    if policy not in ASPECT_POLICIES:
        raise FileFormatError(f"{node.label}: keep_aspect_ratio_policy {policy!r}; ONNX's are "
                              f"{', '.join(ASPECT_POLICIES)}.")
    resized = [i for i, n in enumerate(sizes) if n is not None]
    if policy == "stretch":
        return None, tuple(n if n is not None else spatial[i] for i, n in enumerate(sizes))
    ratios = [sizes[i] / spatial[i] for i in resized]
    common = min(ratios) if policy == "not_larger" else max(ratios)
    rounded = [int(common * spatial[i] + 0.5) if i in resized else spatial[i] for i in range(len(spatial))]
    scale = tuple(common if i in resized else 1.0 for i in range(len(spatial)))
    if any(math.floor(n * s) != r for n, s, r in zip(spatial, scale, rounded)):
        raise UnsupportedOperationError(
            f"{node.label}: keep_aspect_ratio_policy {policy} rounds the sizes to {rounded}, which the refcam "
            f"ResizeLayer with the common scale {common} does not give (it rounds down).")
    return scale, None


def _transform_mode(node: Node, mode: str, spatial: Sequence[int | None], scale: tuple[float, ...] | None,
                    output_size: tuple[int, ...] | None) -> str:
    if mode == "half_pixel_symmetric":
        whole = output_size is not None or all(n is not None and float(n * s).is_integer()
                                               for n, s in zip(spatial, scale))
        if whole:
            return TRANSFORM_MODES["half_pixel"]
        raise UnsupportedOperationError(
            f"{node.label}: half_pixel_symmetric with scales {list(scale)} that do not give whole output sizes "
            f"of {list(spatial)}; the refcam ResizeLayer has half_pixel, pytorch_half_pixel, align_corners and "
            "asymmetric.")
    if mode not in TRANSFORM_MODES:
        raise UnsupportedOperationError(
            f"{node.label}: coordinate_transformation_mode {mode}; the refcam ResizeLayer has "
            f"{', '.join(TRANSFORM_MODES)} (and half_pixel_symmetric where it equals half_pixel).")
    return TRANSFORM_MODES[mode]


# --- ConvTranspose ------------------------------------------------------------------------
def convert_conv_transpose(state: ImportState, node: Node) -> None:
    """ConvTranspose (group 1) -> TransposedConvolution{1,2,3}dLayer."""
    x = state.value(node, 0)
    weight = state.constant(node, 1)
    bias = state.constant(node, 2, optional=True)
    rank = len(x.shape) - 1
    if rank not in TRANSPOSED_CONVOLUTION_BY_RANK:
        raise UnsupportedOperationError(f"{node.label}: {rank}-D transposed convolution; refcam has 1-, 2- and "
                                        "3-D.")
    groups = node.attr("group", "int", 1)
    if groups != 1:
        raise UnsupportedOperationError(f"{node.label}: grouped transposed convolution (group {groups}); refcam "
                                        "imports ConvTranspose with group 1.")
    channels = x.shape[0]
    kernel = tuple(node.attr("kernel_shape", "ints", weight.shape[2:]))
    if weight.ndim != rank + 2 or weight.shape[0] != channels or weight.shape[2:] != kernel:
        raise WeightShapeError(
            f"{node.label}: weight {node.inputs[1]!r} has shape {weight.shape}; the input has {channels} channels "
            f"and kernel_shape is {list(kernel)}, so ONNX needs ({channels}, F, {', '.join(map(str, kernel))}).")
    filters = int(weight.shape[1])
    if bias is not None and bias.shape != (filters,):
        raise WeightShapeError(f"{node.label}: bias {node.inputs[2]!r} has shape {bias.shape}; expected ({filters},).")
    stride = ints_attribute(node, "strides", rank, 1)
    dilation = ints_attribute(node, "dilations", rank, 1)
    output_padding = ints_attribute(node, "output_padding", rank, 0, minimum=0)
    cropping = _transposed_cropping(node, x.shape[1:], kernel, stride, dilation, output_padding)
    state.add(node, TRANSPOSED_CONVOLUTION_BY_RANK[rank], [x], filter_size=kernel, num_filters=filters,
              stride=stride, dilation=dilation, cropping=cropping, output_padding=output_padding,
              num_channels=channels, weights=weight, bias=bias)


def _transposed_cropping(node: Node, spatial: Sequence[int | None], kernel: Sequence[int], stride: Sequence[int],
                         dilation: Sequence[int], output_padding: Sequence[int]) -> tuple[int, ...]:
    """Internal ``(begins..., ends...)`` cropping from pads, auto_pad or output_shape (module docstring)."""
    rank = len(kernel)
    auto_pad = node.attr("auto_pad", "string", "NOTSET")
    if auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise FileFormatError(f"{node.label}: auto_pad {auto_pad!r} is not an ONNX padding mode.")
    target = node.attr("output_shape", "ints", None)
    if target is None and auto_pad in ("NOTSET", "VALID"):
        return (0,) * (2 * rank) if auto_pad == "VALID" else ints_attribute(node, "pads", 2 * rank, 0, minimum=0)
    if None in spatial:
        raise UnsupportedOperationError(f"{node.label}: output_shape or auto_pad {auto_pad} on an axis of "
                                        "unknown size; export with a fixed size.")
    if target is None:
        target = [n * s for n, s in zip(spatial, stride)]
    target = list(target)[-rank:]
    if len(target) != rank:
        raise FileFormatError(f"{node.label}: output_shape {target} should give {rank} spatial sizes.")
    totals = [s * (n - 1) + p + (k - 1) * d + 1 - t
              for n, k, s, d, p, t in zip(spatial, kernel, stride, dilation, output_padding, target)]
    if min(totals) < 0:
        raise UnsupportedOperationError(
            f"{node.label}: output_shape {target} is larger than the full output of the transposed convolution "
            f"(total padding {totals}); refcam crops, it does not pad.")
    if auto_pad == "SAME_UPPER":
        return tuple(t // 2 for t in totals) + tuple(t - t // 2 for t in totals)
    if auto_pad == "SAME_LOWER":
        return tuple(t - t // 2 for t in totals) + tuple(t // 2 for t in totals)
    if any(t % 2 for t in totals):
        raise UnsupportedOperationError(
            f"{node.label}: output_shape {target} needs an odd total padding {totals}; where the odd cell goes is "
            "not settled for ConvTranspose with auto_pad NOTSET (the ONNX definition and the runtimes differ). "
            "Give pads instead.")
    return tuple(t // 2 for t in totals) * 2


# --- MatMul on a channels-last tensor -------------------------------------------------------
def is_channels_last(x: Value) -> bool:
    """True when ONNX holds ``x`` with spatial axes and the channel axis last (e.g. after Permute(0, 2, 3, 1))."""
    return not x.squeezed and len(x.shape) > 1 and x.perm[-1] == 0


def convert_channels_last_matmul(state: ImportState, node: Node, x: Value, b: np.ndarray) -> None:
    """MatMul of a channels-last tensor by a constant ``(C, Out)`` -> a 1x1 convolution keeping the layout;
    a following Add of a constant ``(Out,)`` (or one number) is its bias."""
    channels, rank = x.shape[0], len(x.shape) - 1
    if b.ndim != 2 or b.shape[0] != channels:
        raise WeightShapeError(
            f"{node.label}: weight {node.inputs[1]!r} has shape {b.shape}; the input holds {channels} channels on "
            f"its last axis (per-observation shape {x.onnx_shape}), so ({channels}, outputs) is expected.")
    if rank not in CONVOLUTION_BY_RANK:
        raise UnsupportedOperationError(f"{node.label}: MatMul per position of a tensor with {rank} spatial axes.")
    outputs = int(b.shape[1])
    output, bias = node.outputs[0], None
    add = state.sole_consumer(output)
    if add is not None and add.op_type == "Add" and len(add.inputs) == 2:
        other = add.inputs[1] if add.inputs[0] == output else add.inputs[0]
        c = state.constants.get(other)
        if c is not None and (c.size == 1 or (c.size == outputs and c.shape[-1] == outputs)):
            bias = np.broadcast_to(c.reshape(-1), (outputs,)).astype(np.float64)
            output = add.outputs[0]
            state.fused.add(add.name)
    weights = np.ascontiguousarray(b.T).reshape((outputs, channels) + (1,) * rank)    # (Out, C, 1, ..., 1)
    state.add(node, CONVOLUTION_BY_RANK[rank], [x], output=output, layout_from=x, filter_size=(1,) * rank,
              num_filters=outputs, num_channels=channels, weights=weights, bias=bias)


# --- Reshape + Gather that change nothing (the dynamo exporter's as_strided) ----------------
def strided_identity(state: ImportState, node: Node, x: Value, resolved: Sequence[int]) -> bool:
    """True (and the pair aliased to ``x``) when Reshape ``node`` flattens ``x`` to 1-D and its only reader is a
    Gather on axis 0 whose constant indices are ``0, 1, ...`` in the shape ``(1, *x.onnx_shape)``: together
    they rebuild ``x`` (what the dynamo exporter writes for ``as_strided`` of a contiguous view)."""
    gather = state.sole_consumer(node.outputs[0])
    if len(resolved) != 1 or gather is None or gather.op_type != "Gather" or gather.inputs[0] != node.outputs[0]:
        return False
    indices = state.constants.get(gather.inputs[1]) if len(gather.inputs) > 1 else None
    full = (1, *x.onnx_shape)
    if (indices is None or gather.attr("axis", "int", 0) not in (0, -1) or indices.shape != full
            or not np.array_equal(indices.reshape(-1), np.arange(resolved[0]))):
        return False
    state.fused.add(gather.name)
    state.values[gather.outputs[0]] = x
    return True


RESAMPLE_CONVERTERS = {
    "Resize": convert_resize,
    "Upsample": convert_upsample,
    "ConvTranspose": convert_conv_transpose,
}

__all__ = ["RESAMPLE_CONVERTERS", "convert_resize", "convert_upsample", "convert_conv_transpose",
           "convert_channels_last_matmul", "is_channels_last", "strided_identity"]
