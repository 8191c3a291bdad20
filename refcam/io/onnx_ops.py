"""ONNX operators as refcam layers: one converter per operator type.

A converter reads one node (attributes, constant weights, the :class:`Value` of
its data input) and adds the refcam layer computing the same function, or
records its output as an alias of its input when the node does not change the
numbers (Identity, a Reshape that flattens nothing, a Transpose). The maths of
every layer is in :mod:`refcam.layers`; here only the parameter mapping lives:

=====================  ===================================================================
ONNX                   refcam
=====================  ===================================================================
Conv                   Convolution{1,2,3}dLayer (GroupedConvolution2dLayer when group > 1);
                       weights ``(F, C/group, *k)`` as they are; ``pads`` ``(begins, ends)``
Pad (constant) + Conv  the Pad's zero padding added to the Conv's (PyTorch's causal conv)
Pad (constant)         PaddingLayer(padding, value)
BatchNormalization     BatchNormalizationLayer(mean, var, scale, B, epsilon)
LayerNormalization     LayerNormalizationLayer("channel-only") when it normalises the channel
                       axis alone (axis=-1 after a Transpose moving channels last, or on 2-D)
Relu, LeakyRelu        ReLULayer, LeakyReLULayer(alpha)
Clip(0, max)           ClippedReLULayer(max) (ReLU6); Clip(0, +inf) is a ReLULayer
Sigmoid, Tanh          SigmoidLayer, TanhLayer (``x * Sigmoid(x)``: SwishLayer, :mod:`.onnx_elementwise`)
HardSigmoid/HardSwish  HardSigmoidLayer, HardSwishLayer; Gelu, Erf: GELULayer, ErfLayer; Pow by
                       1 to 4: MultiplicationLayer of copies (:mod:`.onnx_elementwise`)
MaxPool, AveragePool   MaxPooling / AveragePooling{1,2,3}dLayer; ``ceil_mode`` as extra end
                       padding; ``count_include_pad`` 0 -> PaddingValue "mean", 1 -> 0
GlobalAveragePool/Max  GlobalAveragePooling / GlobalMaxPooling{1,2,3}dLayer
ReduceMean/ReduceMax   the same global pooling when the axes are exactly the spatial axes;
                       other axes ReduceLayer (:mod:`.onnx_shape_ops`)
Split, Slice           ChannelSliceLayer per part (channels), CroppingLayer (spatial axes)
Unsqueeze, Squeeze     nothing: the inserted or removed size-1 axes are remembered
Reshape/Transpose      ChannelShuffleLayer for ShuffleNet's reshape-transpose-reshape
                       (:mod:`.onnx_shape_ops`)
Flatten, Reshape       FlattenLayer("row-major"), or "channels-last"/"matlab" after a Transpose
Gemm                   FullyConnectedLayer: weights ``alpha * (B if transB else B^T)``,
                       bias ``beta * C``
MatMul (+ Add)         FullyConnectedLayer: weights ``B^T``, the Add's constant as bias; on a
                       channels-last tensor a 1x1 convolution (:mod:`.onnx_resample_ops`)
Resize, Upsample       ResizeLayer (:mod:`.onnx_resample_ops`)
ConvTranspose          TransposedConvolution{1,2,3}dLayer (:mod:`.onnx_resample_ops`)
Reshape [-1] + Gather  nothing, when the Gather's indices rebuild the tensor (dynamo's as_strided)
Softmax                SoftmaxLayer when the axis is the channel axis
Concat (axis 1)        DepthConcatenationLayer; a one-input Concat is the tensor itself
Add, Sum               AdditionLayer (tensors); Add/Sub/Mul/Div by a constant: ScalingLayer
Mul                    MultiplicationLayer (two tensors, size-1 axes broadcast; :mod:`.onnx_elementwise`)
Dropout                DropoutLayer(ratio)
Identity, Cast         nothing (the tensor itself)
=====================  ===================================================================

Window padding (Conv and pooling), per spatial axis with input size ``n``,
kernel ``k``, stride ``s``, dilation ``d``: ``auto_pad`` NOTSET uses ``pads``;
VALID is no padding; SAME_UPPER is refcam's ``"same"`` (``out = ceil(n / s)``,
total ``max((out - 1) s + (k - 1) d + 1 - n, 0)``, the odd cell at the end);
SAME_LOWER puts the odd cell at the beginning (explicit numbers, so ``n`` must
be known unless ``s = 1``).

Pooling ``ceil_mode``: ``out = ceil((L - k) / s) + 1`` for the padded length
``L = n + p_b + p_e``, less one if the last window would start at or after
``n + p_b``. The importer adds ``extra = (out - 1) s + k - L`` cells of end
padding; padded cells never win a max, and average pooling with
``count_include_pad = 0`` does not count them, so both are exact. With
``count_include_pad = 1`` ONNX does not count the extra cells either while
refcam's PaddingValue 0 would, so that case is refused when ``extra > 0``.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import FileFormatError, UnsupportedOperationError, WeightShapeError
from ..layers import (AVERAGE_POOLING_BY_RANK, CONVOLUTION_BY_RANK, GLOBAL_AVERAGE_POOLING_BY_RANK,
                      GLOBAL_MAX_POOLING_BY_RANK, MAX_POOLING_BY_RANK)
from ..layers.activation import ClippedReLULayer, LeakyReLULayer, ReLULayer, SoftmaxLayer
from ..layers.combine import AdditionLayer, DepthConcatenationLayer
from ..layers.common import matlab_padding_from_internal
from ..layers.convolution import GroupedConvolution2dLayer
from ..layers.extra import PaddingLayer, ScalingLayer, SigmoidLayer, TanhLayer
from ..layers.linear import DropoutLayer, FlattenLayer, FullyConnectedLayer
from ..layers.normalization import BatchNormalizationLayer, LayerNormalizationLayer
from .onnx_fold import reshape_request, reshape_target
from .onnx_graph import (FLOAT_ELEMENT_TYPES, REQUIRED, ImportState, Node, Value, check_axes, check_axis, check_permutation,
                         int_list, ints_attribute)
from .onnx_resample_ops import (RESAMPLE_CONVERTERS, convert_channels_last_matmul, is_channels_last,
                                strided_identity)
from .safe import check_finite

Converter = Callable[[ImportState, Node], None]


# --- convolution and padding -------------------------------------------------------------
def convert_conv(state: ImportState, node: Node) -> None:
    """Conv -> Convolution{1,2,3}dLayer (GroupedConvolution2dLayer for group > 1 in 2-D)."""
    x = state.value(node, 0, pending_padding_ok=True)
    weight = state.constant(node, 1)
    bias = state.constant(node, 2, optional=True)
    rank = len(x.shape) - 1
    if rank not in CONVOLUTION_BY_RANK:
        raise UnsupportedOperationError(f"{node.label}: {rank}-D convolution; refcam has 1-, 2- and 3-D.")
    groups = node.attr("group", "int", 1)
    if groups < 1:
        raise FileFormatError(f"{node.label}: group {groups}; ONNX's group is a positive integer.")
    channels = x.shape[0]
    kernel = tuple(node.attr("kernel_shape", "ints", weight.shape[2:]))
    if weight.ndim != rank + 2 or weight.shape[1] * groups != channels or weight.shape[2:] != kernel \
            or weight.shape[0] % groups:
        per_group = f"{channels} // {groups} = {channels // groups}" if groups > 1 else f"{channels}"
        raise WeightShapeError(
            f"{node.label}: weight {node.inputs[1]!r} has shape {weight.shape}; the input has {channels} "
            f"channels and kernel_shape is {list(kernel)}, so ONNX needs (F, {per_group}, "
            f"{', '.join(map(str, kernel))})" + (f" with F divisible by group={groups}." if groups > 1 else "."))
    filters = int(weight.shape[0])
    if bias is not None and bias.shape != (filters,):
        raise WeightShapeError(f"{node.label}: bias {node.inputs[2]!r} has shape {bias.shape}; "
                               f"expected ({filters},).")
    stride = ints_attribute(node, "strides", rank, 1)
    dilation = ints_attribute(node, "dilations", rank, 1)
    padding = window_padding(node, x.shape[1:], kernel, stride, dilation)
    if x.pending_padding is not None:
        if isinstance(padding, str):
            raise UnsupportedOperationError(f"{node.label}: a Pad before a Conv with auto_pad "
                                            f"{node.attr('auto_pad', 'string')!r} cannot be fused.")
        padding = tuple(a + b for a, b in zip(padding, x.pending_padding))
    cls = GroupedConvolution2dLayer if rank == 2 and groups > 1 else CONVOLUTION_BY_RANK[rank]
    state.add(node, cls, [x], filter_size=kernel, num_filters=filters, stride=stride,
              dilation_factor=dilation, num_channels=channels, groups=groups, weights=weight, bias=bias,
              padding=padding if isinstance(padding, str) else matlab_padding_from_internal(padding))


def convert_pad(state: ImportState, node: Node) -> None:
    """Pad (constant mode) -> fused into the next Conv when it pads with zeros, else PaddingLayer."""
    x = state.value(node, 0)
    mode = node.attr("mode", "string", "constant")
    if mode != "constant":
        raise UnsupportedOperationError(f"{node.label}: Pad mode {mode!r}; refcam imports constant padding only.")
    rank = x.onnx_rank
    if state.opset < 11:
        pads, fill = list(node.attr("pads", "ints")), node.attr("value", "float", 0.0)
    else:
        pads = int_list(node, state.constant(node, 1), "input #1 (pads)")
        fill = state.scalar(node, 2, 0.0)
        axes = state.constant(node, 3, optional=True)
        if axes is not None:
            pads = _pads_on_all_axes(node, pads, check_axes(node, int_list(node, axes, "input #3 (axes)"), rank),
                                     rank)
    if len(pads) != 2 * rank:
        raise FileFormatError(f"{node.label}: pads {pads} should hold {2 * rank} numbers (2 per axis).")
    begins, ends = pads[:rank], pads[rank:]
    if any(begins[:2]) or any(ends[:2]) or min(pads) < 0:
        raise UnsupportedOperationError(
            f"{node.label}: pads {pads} pad the batch or channel axis or crop (negative); refcam "
            "pads spatial axes only, by non-negative amounts.")
    padding = tuple(begins[2:]) + tuple(ends[2:])
    consumer = state.sole_consumer(node.outputs[0])
    fusable = (fill == 0.0 and consumer is not None and consumer.op_type == "Conv"
               and consumer.inputs[0] == node.outputs[0]
               and consumer.attr("auto_pad", "string", "NOTSET") in ("NOTSET", "VALID"))
    if fusable:
        state.alias(node, Value(x.layer, x.shape, pending_padding=padding))
        return
    state.add(node, PaddingLayer, [x], padding=padding, value=fill)


def _pads_on_all_axes(node: Node, pads: list[int], axes: list[int], rank: int) -> list[int]:
    """Pad's ``pads`` for the given ``axes`` (begins, then ends) spread over all ``rank`` axes."""
    if len(pads) != 2 * len(axes):
        raise FileFormatError(f"{node.label}: pads {pads} should hold {2 * len(axes)} numbers (2 per axis of "
                              f"axes {axes}).")
    full = [0] * (2 * rank)
    for i, axis in enumerate(axes):
        full[axis], full[rank + axis] = pads[i], pads[len(axes) + i]
    return full


def window_padding(node: Node, spatial: Sequence[int | None], kernel: Sequence[int],
                   stride: Sequence[int], dilation: Sequence[int]) -> str | tuple[int, ...]:
    """``"same"`` or internal ``(begins..., ends...)`` from ``auto_pad`` and ``pads`` (module docstring)."""
    rank = len(kernel)
    auto_pad = node.attr("auto_pad", "string", "NOTSET")
    if auto_pad == "NOTSET":
        return ints_attribute(node, "pads", 2 * rank, 0, minimum=0)
    if auto_pad == "VALID":
        return (0,) * (2 * rank)
    if auto_pad == "SAME_UPPER":
        return "same"
    if auto_pad == "SAME_LOWER":
        totals = [_same_total(node, n, k, s, d) for n, k, s, d in zip(spatial, kernel, stride, dilation)]
        return tuple(t - t // 2 for t in totals) + tuple(t // 2 for t in totals)
    raise UnsupportedOperationError(f"{node.label}: auto_pad {auto_pad!r} is not an ONNX padding mode.")


def _same_total(node: Node, n: int | None, k: int, s: int, d: int) -> int:
    if n is None:
        if s != 1:
            raise UnsupportedOperationError(f"{node.label}: SAME_LOWER padding with stride {s} on an "
                                            "axis of unknown size; export with a fixed size.")
        return (k - 1) * d
    out = -(-n // s)
    return max((out - 1) * s + (k - 1) * d + 1 - n, 0)


# --- pooling -------------------------------------------------------------------------------
def convert_max_pool(state: ImportState, node: Node) -> None:
    """MaxPool -> MaxPooling{1,2,3}dLayer."""
    x, kernel, stride, padding, _ = _pool_geometry(state, node)
    state.check_unused_outputs(node)
    state.add(node, MAX_POOLING_BY_RANK[len(kernel)], [x], pool_size=kernel, stride=stride, padding=padding)


def convert_average_pool(state: ImportState, node: Node) -> None:
    """AveragePool -> AveragePooling{1,2,3}dLayer (count_include_pad 0 -> PaddingValue "mean")."""
    x, kernel, stride, padding, ceil_extended = _pool_geometry(state, node)
    include_pad = bool(node.attr("count_include_pad", "int", 0))
    if include_pad and ceil_extended:
        raise UnsupportedOperationError(
            f"{node.label}: ceil_mode with count_include_pad=1 makes windows that run past the padded "
            "input; ONNX divides them by the cells inside it, which refcam's average pooling layer "
            "cannot express. Use count_include_pad=0 or ceil_mode=0.")
    state.add(node, AVERAGE_POOLING_BY_RANK[len(kernel)], [x], pool_size=kernel, stride=stride, padding=padding,
              padding_value=0 if include_pad else "mean")


def _pool_geometry(state: ImportState, node: Node) -> tuple[Value, tuple, tuple, Any, bool]:
    """Input, kernel, stride, padding (MATLAB order, or "same") of a pooling node, and whether
    ceil mode added cells."""
    x = state.value(node, 0)
    rank = len(x.shape) - 1
    if rank not in MAX_POOLING_BY_RANK:
        raise UnsupportedOperationError(f"{node.label}: pooling of an input with {rank} spatial axes; refcam "
                                        "pools 1-, 2- and 3-D inputs.")
    kernel = tuple(node.attr("kernel_shape", "ints"))
    if len(kernel) != rank:
        raise FileFormatError(f"{node.label}: kernel_shape {list(kernel)} on an input with {rank} spatial axes.")
    stride = ints_attribute(node, "strides", rank, 1)
    if any(d != 1 for d in ints_attribute(node, "dilations", rank, 1)):
        raise UnsupportedOperationError(f"{node.label}: dilated pooling is not supported.")
    padding = window_padding(node, x.shape[1:], kernel, stride, (1,) * rank)
    if isinstance(padding, str):
        return x, kernel, stride, padding, False   # 'same' windows tile the padded input exactly
    extended = _with_ceil_extra(node, padding, x.shape[1:], kernel, stride) if node.attr("ceil_mode", "int", 0) \
        else padding
    return x, kernel, stride, matlab_padding_from_internal(extended), extended != padding


def _with_ceil_extra(node: Node, padding: tuple[int, ...], spatial: Sequence[int | None],
                     kernel: Sequence[int], stride: Sequence[int]) -> tuple[int, ...]:
    """``padding`` with the ceil-mode extra cells added at the end of each axis (module docstring)."""
    rank = len(kernel)
    ends = list(padding[rank:])
    for i, (n, k, s) in enumerate(zip(spatial, kernel, stride)):
        if n is None:
            if s != 1:
                raise UnsupportedOperationError(f"{node.label}: ceil_mode with stride {s} on an axis of "
                                                "unknown size; export with a fixed size.")
            continue
        begin = padding[i]
        length = n + begin + ends[i]
        out = -(-(length - k) // s) + 1
        if (out - 1) * s >= n + begin:
            out -= 1
        ends[i] += max((out - 1) * s + k - length, 0)
    return tuple(padding[:rank]) + tuple(ends)


def convert_global_pool(state: ImportState, node: Node) -> None:
    """GlobalAveragePool / GlobalMaxPool -> GlobalAveragePooling / GlobalMaxPooling{1,2,3}dLayer."""
    x = state.value(node, 0)
    table = GLOBAL_AVERAGE_POOLING_BY_RANK if node.op_type == "GlobalAveragePool" else GLOBAL_MAX_POOLING_BY_RANK
    rank = len(x.shape) - 1
    if rank not in table:
        raise UnsupportedOperationError(f"{node.label}: global pooling of an input with {rank} spatial axes.")
    state.add(node, table[rank], [x])


def convert_reduce(state: ImportState, node: Node) -> None:
    """ReduceMean / ReduceMax over exactly the spatial axes -> global average / max pooling."""
    x = state.value(node, 0)
    rank = x.onnx_rank
    if state.opset >= 18:
        axes_array = state.constant(node, 1, optional=True)
        axes = [] if axes_array is None else int_list(node, axes_array, "input #1 (axes)")
    else:
        axes = list(node.attr("axes", "ints", []))
    spatial = list(range(2, rank))
    if sorted(check_axes(node, axes, rank)) != spatial or not spatial:
        raise UnsupportedOperationError(
            f"{node.label}: reduces axes {axes or 'all'} of a rank-{rank} tensor; refcam imports "
            f"{node.op_type} only over exactly the spatial axes {spatial} (global pooling).")
    table = GLOBAL_AVERAGE_POOLING_BY_RANK if node.op_type == "ReduceMean" else GLOBAL_MAX_POOLING_BY_RANK
    value = state.add(node, table[rank - 2], [x])
    if not node.attr("keepdims", "int", 1):
        state.alias(node, Value(value.layer, value.shape, squeezed=True))


# --- activations and normalisation ----------------------------------------------------------
def convert_activation(state: ImportState, node: Node) -> None:
    """Relu, LeakyRelu, Sigmoid, Tanh -> the element-wise layer (any layout)."""
    x = state.value(node, 0, plain=False)
    if node.op_type == "LeakyRelu":
        state.add(node, LeakyReLULayer, [x], layout_from=x, scale=node.attr("alpha", "float", 0.01))
        return
    cls = {"Relu": ReLULayer, "Sigmoid": SigmoidLayer, "Tanh": TanhLayer}[node.op_type]
    state.add(node, cls, [x], layout_from=x)


def convert_clip(state: ImportState, node: Node) -> None:
    """Clip(min=0, max) -> ClippedReLULayer(max); Clip(min=0) -> ReLULayer."""
    x = state.value(node, 0, plain=False)
    if state.opset < 11:
        low, high = node.attr("min", "float", -math.inf), node.attr("max", "float", math.inf)
    else:
        low, high = state.scalar(node, 1, -math.inf), state.scalar(node, 2, math.inf)
    if low != 0.0:
        raise UnsupportedOperationError(
            f"{node.label}: Clip to [{low}, {high}]; refcam imports Clip with min 0 only (ReLU, ReLU6 "
            "and clipped ReLU).")
    if math.isinf(high):
        state.add(node, ReLULayer, [x], layout_from=x)
    else:
        state.add(node, ClippedReLULayer, [x], layout_from=x, ceiling=high)


def convert_softmax(state: ImportState, node: Node) -> None:
    """Softmax over the channel axis -> SoftmaxLayer."""
    x = state.value(node, 0, plain=False)
    rank = x.onnx_rank
    axis = check_axis(node, node.attr("axis", "int", 1 if state.opset < 13 else -1), rank)
    coerced_2d = state.opset < 13 and rank > 2
    if coerced_2d or axis == 0 or (not x.squeezed and x.perm[axis - 1] != 0):
        raise UnsupportedOperationError(
            f"{node.label}: softmax over axis {axis} of a rank-{rank} tensor (opset {state.opset}) is "
            "not over the channel axis alone; refcam's softmax normalises over channels.")
    state.add(node, SoftmaxLayer, [x], layout_from=x)


def convert_batch_norm(state: ImportState, node: Node) -> None:
    """BatchNormalization (inference) -> BatchNormalizationLayer."""
    x = state.value(node, 0)
    if node.attr("training_mode", "int", 0) or not node.attr("spatial", "int", 1):
        raise UnsupportedOperationError(f"{node.label}: training mode or per-element (spatial=0) batch "
                                        "normalisation is not supported.")
    state.check_unused_outputs(node)
    scale, offset, mean, variance = (state.constant(node, i) for i in range(1, 5))
    _check_channel_vectors(node, x.shape[0], scale=scale, B=offset, mean=mean, var=variance)
    state.add(node, BatchNormalizationLayer, [x], trained_mean=mean, trained_variance=variance, scale=scale,
              offset=offset, epsilon=node.attr("epsilon", "float", 1e-5), num_channels=x.shape[0])


def convert_layer_norm(state: ImportState, node: Node) -> None:
    """LayerNormalization over the channel axis alone -> LayerNormalizationLayer("channel-only")."""
    x = state.value(node, 0, plain=False)
    rank = x.onnx_rank
    axis = check_axis(node, node.attr("axis", "int", -1), rank)
    normalized = [a - 1 for a in range(max(axis, 1), rank)]     # per-observation ONNX axes
    refcam_axes = {0} if x.squeezed and normalized == [0] else {x.perm[a] for a in normalized}
    if axis == 0 or refcam_axes != {0}:
        raise UnsupportedOperationError(
            f"{node.label}: normalises ONNX axes {list(range(axis, rank))} of a tensor with "
            f"per-observation shape {x.onnx_shape}; refcam imports channel-only layer normalisation "
            "(the channel axis alone, e.g. PyTorch's Transpose -> LayerNorm(C) -> Transpose).")
    state.check_unused_outputs(node)
    channels = x.shape[0]
    scale = state.constant(node, 1)
    offset = state.constant(node, 2, optional=True)
    offset = np.zeros(channels) if offset is None else offset
    _check_channel_vectors(node, channels, Scale=scale, B=offset)
    state.add(node, LayerNormalizationLayer, [x], layout_from=x, operation_dimension="channel-only",
              scale=scale.reshape(channels), offset=offset.reshape(channels),
              epsilon=node.attr("epsilon", "float", 1e-5), num_channels=channels)


def _check_channel_vectors(node: Node, channels: int, **vectors: np.ndarray) -> None:
    for name, vector in vectors.items():
        if vector.size != channels or vector.ndim != 1:
            raise WeightShapeError(f"{node.label}: parameter {name} has shape {vector.shape}; the input "
                                   f"has {channels} channels, so ({channels},) is expected.")


# --- shape operations ---------------------------------------------------------------------
def convert_flatten(state: ImportState, node: Node) -> None:
    """Flatten(axis=1) -> FlattenLayer in the order the pending transpose gives."""
    x = state.value(node, 0, plain=False)
    axis = node.attr("axis", "int", 1)
    if check_axis(node, axis, x.onnx_rank, end_allowed=True) != 1:
        raise UnsupportedOperationError(f"{node.label}: Flatten with axis {axis}; refcam flattens everything "
                                        "but the batch axis (axis 1).")
    _flatten(state, node, x)


def convert_reshape(state: ImportState, node: Node) -> None:
    """Reshape used as a flatten to (batch, features), or one that changes nothing."""
    x = state.value(node, 0, plain=False)
    full = (1, *x.onnx_shape)
    target = reshape_request(node, state.constant(node, 1) if state.opset >= 5 else None, state.opset)
    if any(n is None for n in full):
        raise UnsupportedOperationError(f"{node.label}: Reshape of a tensor with a dynamic axis "
                                        f"(shape {full}) to {target}.")
    resolved = reshape_target(node, full, target)
    if resolved == full:
        state.alias(node, x)
    elif len(resolved) == 2 and resolved[0] == 1:
        _flatten(state, node, x)
    elif strided_identity(state, node, x, resolved):    # dynamo's as_strided: Reshape [-1] + Gather, no change
        return
    else:
        raise UnsupportedOperationError(
            f"{node.label}: Reshape from {full} to {list(resolved)} (batch taken as 1); refcam imports "
            "a Reshape only as a flatten to (batch, features).")


def _flatten(state: ImportState, node: Node, x: Value) -> None:
    if len(x.onnx_shape) == 1:
        state.alias(node, x)
        return
    state.add(node, FlattenLayer, [Value(x.layer, x.shape)], order=_flatten_order(node, x.perm))


def _flatten_order(node: Node, perm: tuple[int, ...]) -> str:
    """refcam's flatten order for a tensor ONNX holds as ``refcam_obs.transpose(perm)``.

    Row-major over ``(C, S_1..S_N)``: "row-major"; over ``(S_1..S_N, C)``:
    "channels-last"; over ``(C, S_N..S_1)`` (column-major over ``(S_1..S_N, C)``): "matlab".
    """
    n = len(perm) - 1
    orders = {tuple(range(n + 1)): "row-major", tuple(range(1, n + 1)) + (0,): "channels-last",
              (0,) + tuple(range(n, 0, -1)): "matlab"}
    if perm not in orders:
        raise UnsupportedOperationError(
            f"{node.label}: flattens a tensor transposed by {list(perm)} (per observation); refcam "
            "flattens (C, S...), (S..., C) or (C, reversed S...) order only.")
    return orders[perm]


def convert_transpose(state: ImportState, node: Node) -> None:
    """Transpose keeping the batch axis first: no layer, the layout is remembered on the Value."""
    x = state.value(node, 0, plain=False)
    perm = check_permutation(node, node.attr("perm", "ints", list(range(x.onnx_rank - 1, -1, -1))), x.onnx_rank)
    if x.squeezed or perm[0] != 0:
        raise UnsupportedOperationError(
            f"{node.label}: Transpose {list(perm)} of a tensor with per-observation shape {x.onnx_shape} "
            "moves the batch axis or a squeezed tensor; refcam imports transposes that keep the batch "
            "axis first and are undone (or consumed by a flatten or layer normalisation) later.")
    state.alias(node, x.transposed(perm))


def convert_identity(state: ImportState, node: Node) -> None:
    """Identity, and Cast between float types: the input tensor itself."""
    if node.op_type == "Cast" and node.attr("to", "int") not in FLOAT_ELEMENT_TYPES:
        raise UnsupportedOperationError(f"{node.label}: Cast of a network tensor to a non-float type "
                                        f"({node.attr('to', 'int')}).")
    state.alias(node, state.value(node, 0, plain=False))


def convert_dropout(state: ImportState, node: Node) -> None:
    """Dropout -> DropoutLayer (the identity at inference)."""
    x = state.value(node, 0, plain=False)
    state.check_unused_outputs(node)
    if state.opset < 12:
        ratio = node.attr("ratio", "float", 0.5)
    else:
        ratio = state.scalar(node, 1, 0.5)
        if state.scalar(node, 2, 0.0):
            raise UnsupportedOperationError(f"{node.label}: Dropout in training mode.")
    state.add(node, DropoutLayer, [x], layout_from=x, probability=ratio)


# --- linear layers ------------------------------------------------------------------------
def convert_gemm(state: ImportState, node: Node) -> None:
    """Gemm -> FullyConnectedLayer with weights ``alpha * op(B)`` (Out, In), bias ``beta * C``."""
    x = state.value(node, 0, plain=False)
    if node.attr("transA", "int", 0) or len(x.onnx_shape) != 1:
        raise UnsupportedOperationError(f"{node.label}: Gemm with transA=1 or a rank-{x.onnx_rank} "
                                        "input; refcam imports Gemm on (batch, features).")
    b = state.constant(node, 1)
    if b.ndim != 2:
        raise WeightShapeError(f"{node.label}: B {node.inputs[1]!r} has shape {b.shape}; Gemm's B is a matrix.")
    weights = node.attr("alpha", "float", 1.0) * (b if node.attr("transB", "int", 0) else b.T)
    c = state.constant(node, 2, optional=True)
    bias = None if c is None else node.attr("beta", "float", 1.0) * _bias_vector(node, c, weights.shape[0])
    check_finite(weights, "alpha * B", node.label)
    if bias is not None:
        check_finite(bias, "beta * C", node.label)
    _fully_connected(state, node, x, weights, bias)


def convert_matmul(state: ImportState, node: Node) -> None:
    """MatMul by a constant (In, Out) -> FullyConnectedLayer; a following Add of a constant is its bias."""
    x = state.value(node, 0, plain=False)
    b = state.constant(node, 1)
    if is_channels_last(x):     # nn.Linear on a (B, H, W, C) tensor: a 1x1 convolution (onnx_resample_ops)
        convert_channels_last_matmul(state, node, x, b)
        return
    if len(x.onnx_shape) != 1 or b.ndim != 2:
        raise UnsupportedOperationError(
            f"{node.label}: MatMul of a rank-{x.onnx_rank} tensor by a rank-{b.ndim} constant; refcam "
            "imports MatMul of (batch, features) by a (features, outputs) matrix.")
    output, bias = node.outputs[0], None
    add = state.sole_consumer(output)
    if add is not None and add.op_type == "Add" and len(add.inputs) == 2:
        other = add.inputs[1] if add.inputs[0] == output else add.inputs[0]
        if state.is_constant(other):
            bias = _bias_vector(add, state.constants[other], b.shape[1])
            output = add.outputs[0]
            state.fused.add(add.name)
    _fully_connected(state, node, x, b.T, bias, output=output)


def _fully_connected(state: ImportState, node: Node, x: Value, weights: np.ndarray, bias: np.ndarray | None,
                     output: str | None = None) -> None:
    features = x.onnx_shape[0]
    if weights.ndim != 2 or weights.shape[1] != features:
        raise WeightShapeError(
            f"{node.label}: weight {node.inputs[1]!r} gives a ({', '.join(map(str, weights.shape))}) "
            f"(outputs, inputs) matrix, but the input has {features} features per observation.")
    state.add(node, FullyConnectedLayer, [x], output=output, output_size=int(weights.shape[0]),
              weights=np.ascontiguousarray(weights), bias=bias, flatten_order="row-major")


def _bias_vector(node: Node, c: np.ndarray, outputs: int) -> np.ndarray:
    if c.size not in (1, outputs) or (c.ndim == 2 and c.shape[0] != 1) or c.ndim > 2:
        raise WeightShapeError(f"{node.label}: bias of shape {c.shape} does not broadcast to ({outputs},).")
    return np.broadcast_to(c.reshape(-1), (outputs,)).astype(np.float64)


# --- combining --------------------------------------------------------------------------------
def convert_concat(state: ImportState, node: Node) -> None:
    """Concat of network tensors along the channel axis -> DepthConcatenationLayer.

    Rule: a Concat of one input (valid ONNX; the TorchScript exporter writes one
    in DenseNet) is that tensor itself, in any layout and along any valid axis.
    """
    if not node.inputs:
        raise FileFormatError(f"{node.label} has no inputs; Concat needs at least one.")
    plain = len(node.inputs) > 1
    sources = [state.value(node, i, plain=plain) for i in range(len(node.inputs))]
    rank = sources[0].onnx_rank
    axis = check_axis(node, node.attr("axis", "int", 1 if state.opset < 4 else REQUIRED), rank)
    if not plain:
        state.alias(node, sources[0])
        return
    if axis != 1:
        raise UnsupportedOperationError(f"{node.label}: Concat along axis {axis}; refcam "
                                        "concatenates along the channel axis (1) only.")
    state.add(node, DepthConcatenationLayer, sources, num_inputs=len(sources))


def convert_sum(state: ImportState, node: Node) -> None:
    """Sum of network tensors -> AdditionLayer (one input: the tensor itself)."""
    sources = [state.value(node, i, plain=False) for i in range(len(node.inputs))]
    if not sources:
        raise FileFormatError(f"{node.label} has no inputs; Sum needs at least one.")
    _add_tensors(state, node, sources)


def _add_tensors(state: ImportState, node: Node, sources: list[Value]) -> None:
    if len(sources) == 1:
        state.alias(node, sources[0])
        return
    if any((v.perm, v.squeezed) != (sources[0].perm, sources[0].squeezed) for v in sources):
        raise UnsupportedOperationError(f"{node.label}: adds tensors held in different layouts.")
    state.add(node, AdditionLayer, sources, layout_from=sources[0], num_inputs=len(sources))


def convert_arithmetic(state: ImportState, node: Node) -> None:
    """Add of two tensors -> AdditionLayer; Add/Sub/Mul/Div with one constant -> ScalingLayer."""
    if len(node.inputs) != 2:
        raise FileFormatError(f"{node.label} has {len(node.inputs)} inputs; {node.op_type} has two.")
    a, b = node.inputs
    if node.op_type == "Add" and not state.is_constant(a) and not state.is_constant(b):
        _add_tensors(state, node, [state.value(node, 0, plain=False), state.value(node, 1, plain=False)])
        return
    if not state.is_constant(a) and not state.is_constant(b):
        raise UnsupportedOperationError(
            f"{node.label}: {node.op_type} of two tensors the network computes; refcam imports "
            f"{node.op_type} by a constant only (an element-wise scaling).")
    constant_first = state.is_constant(a)
    x = state.value(node, 1 if constant_first else 0, plain=False)
    c = scaling_array(node, x, state.constants[a if constant_first else b])
    one, zero = np.ones(()), np.zeros(())
    if node.op_type == "Add":
        scale, offset = one, c
    elif node.op_type == "Mul":
        scale, offset = c, zero
    elif node.op_type == "Sub":
        scale, offset = (-one, c) if constant_first else (one, -c)
    elif constant_first:
        raise UnsupportedOperationError(f"{node.label}: division of a constant by a network tensor.")
    else:
        with np.errstate(divide="ignore", over="ignore"):
            scale, offset = 1.0 / c, zero
        check_finite(scale, f"1 / the divisor {b!r} (0 or too close to it)", node.label)
    state.add(node, ScalingLayer, [x], layout_from=x, scale=scale, offset=offset)


def scaling_array(node: Node, x: Value, c: np.ndarray) -> np.ndarray:
    """A constant operand of an element-wise op in refcam's per-observation layout.

    ONNX broadcasts ``c`` against ``(B, *onnx_shape)`` from the right; refcam's
    ScalingLayer wants ``()`` or one axis per observation axis ``(C, *S)``, each of
    size 1 or the observation's.
    """
    rank = x.onnx_rank
    c = np.asarray(c, dtype=np.float64)
    if c.ndim > rank:
        raise UnsupportedOperationError(f"{node.label}: constant of shape {c.shape} for a rank-{rank} tensor.")
    full = c.reshape((1,) * (rank - c.ndim) + c.shape)
    observation = full[0]
    fits = full.shape[0] == 1 and all(m == 1 or m == n for m, n in zip(observation.shape, x.onnx_shape))
    if not fits:
        raise WeightShapeError(
            f"{node.label}: constant of shape {c.shape} does not broadcast to one observation of shape "
            f"(1, {', '.join(map(str, x.onnx_shape))}) per element.")
    if observation.size == 1:
        return observation.reshape(())
    if x.squeezed:
        return observation.reshape(observation.shape + (1,) * (len(x.shape) - 1))
    return np.ascontiguousarray(observation.transpose(np.argsort(x.perm)))


CONVERTERS: dict[str, Converter] = {
    "Conv": convert_conv,
    "Pad": convert_pad,
    "MaxPool": convert_max_pool,
    "AveragePool": convert_average_pool,
    "GlobalAveragePool": convert_global_pool,
    "GlobalMaxPool": convert_global_pool,
    "ReduceMean": convert_reduce,
    "ReduceMax": convert_reduce,
    "Relu": convert_activation,
    "LeakyRelu": convert_activation,
    "Sigmoid": convert_activation,
    "Tanh": convert_activation,
    "Clip": convert_clip,
    "Softmax": convert_softmax,
    "BatchNormalization": convert_batch_norm,
    "LayerNormalization": convert_layer_norm,
    "Flatten": convert_flatten,
    "Reshape": convert_reshape,
    "Transpose": convert_transpose,
    "Identity": convert_identity,
    "Cast": convert_identity,
    "Dropout": convert_dropout,
    "Gemm": convert_gemm,
    "MatMul": convert_matmul,
    "Concat": convert_concat,
    "Sum": convert_sum,
    "Add": convert_arithmetic,
    "Sub": convert_arithmetic,
    "Mul": convert_arithmetic,
    "Div": convert_arithmetic,
    **RESAMPLE_CONVERTERS,
}
