"""ONNX shape operators of modern CNNs: reductions, channel splits and slices, shuffles, (un)squeezes.

Converters of the same form as :mod:`refcam.io.onnx_ops` (merged with its
``CONVERTERS`` by :mod:`refcam.io.onnx_import`). Several ops make no layer: they
change how ONNX sees a tensor, which the importer remembers on the
:class:`~refcam.io.onnx_graph.Value` (its ``perm``, ``squeezed``,
``channel_groups`` and ``inserted``) until a later op undoes it:

=========================  ===============================================================
ONNX                       refcam
=========================  ===============================================================
ReduceMean, ReduceMax      global average / max pooling when the axes are exactly the spatial
                           axes (as before); other axes (channels, some spatial axes) a
                           ReduceLayer("mean" | "max", axes) with keepdims 1; keepdims 0 only
                           over all spatial axes (the squeezed ``(B, C)`` view). ``axes`` as
                           attribute (opset < 18) or input; no axes with
                           ``noop_with_empty_axes`` 1 is the tensor itself
Split (channel axis)       one ChannelSliceLayer per output that something reads, named
                           ``<node>:<k>``; sizes from ``split`` (attribute before opset 13,
                           input after), ``num_outputs`` (opset 18: ``ceil(C / n)`` each, the
                           last smaller) or equal parts
Slice                      ChannelSliceLayer on the channel axis (``torch.chunk``, ``x[:, a:b]``),
                           CroppingLayer on spatial axes; step 1, constant bounds (clamped as
                           ONNX clamps them)
Reshape to (B, g, C/g, S)  no layer: the channels held in ``g`` groups
Transpose of such a view   no layer: the groups' order remembered (batch axis first)
Reshape back to (B, C, S)  ChannelShuffleLayer(g) after the Transpose ``[0, 2, 1, 3, ...]`` of
                           ShuffleNet's channel shuffle; nothing when not transposed
Reshape to inserted 1s     no layer (like Unsqueeze); back to (B, C, S) or from the squeezed
                           ``(B, C)`` to ``(B, C, 1, ...)``: nothing
Unsqueeze                  no layer: size-1 axes after the channel axis remembered
                           (``inserted``); of the squeezed ``(B, C)`` back to ``(B, C, 1, ...)``
Squeeze                    no layer: removes inserted axes, or all the size-1 spatial axes
                           (the squeezed ``(B, C)`` view); the axes must be given
AveragePool, MaxPool       on a tensor with inserted axes (the dynamo exporter's 1-D adaptive
                           pooling: Unsqueeze -> pool (1, k) -> Squeeze) the pooling of the
                           real axes, when the inserted axes have kernel 1, stride 1, no pad
=========================  ===============================================================

Refused: reductions over the batch axis, keepdims 0 that drops other axes,
Split or a spatial-and-channel Slice at once, strided Slices, a Slice keeping
nothing, Split or Slice of the batch axis, Unsqueeze before the channel axis,
Squeeze without axes (it would squeeze a batch of 1), any other op reading a
grouped or unsqueezed tensor (a Reshape, Transpose or Unsqueeze not undone).
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Sequence

from ..errors import FileFormatError, UnsupportedOperationError
from ..layers import (GLOBAL_AVERAGE_POOLING_BY_RANK, GLOBAL_MAX_POOLING_BY_RANK, ChannelShuffleLayer,
                      ChannelSliceLayer, CroppingLayer, ReduceLayer)
from .onnx_fold import reshape_request, reshape_target
from .onnx_graph import ImportState, Node, Value, check_axes, check_axis, check_permutation, int_list
from .onnx_ops import CONVERTERS as BASE_CONVERTERS

REDUCTIONS = {"ReduceMean": ("mean", GLOBAL_AVERAGE_POOLING_BY_RANK), "ReduceMax": ("max", GLOBAL_MAX_POOLING_BY_RANK)}
POOL_ATTRIBUTES = ("kernel_shape", "strides", "dilations")   # one entry per spatial axis (pads: two)


# --- reductions ----------------------------------------------------------------------------------
def convert_reduce(state: ImportState, node: Node) -> None:
    """ReduceMean / ReduceMax -> global pooling (exactly the spatial axes) or ReduceLayer (module docstring)."""
    x = state.value(node, 0, plain=False, views_ok=True)
    rank = x.onnx_rank
    axes = _reduce_axes(state, node)
    if not axes:
        if state.opset >= 18 and node.attr("noop_with_empty_axes", "int", 0):
            state.alias(node, x)
            return
        raise UnsupportedOperationError(f"{node.label}: reduces every axis of a rank-{rank} tensor, the batch "
                                        "axis included; refcam reduces axes of one observation.")
    onnx_axes = sorted(check_axes(node, axes, rank))
    keepdims = bool(node.attr("keepdims", "int", 1))
    if onnx_axes[0] == 0 or x.squeezed or x.channel_groups is not None:
        raise UnsupportedOperationError(
            f"{node.label}: reduces axes {axes} of a tensor with per-observation shape {x.onnx_shape}, the batch "
            "axis or a squeezed or grouped view; refcam reduces channel and spatial axes of one observation.")
    positions = [axis - 1 for axis in onnx_axes]
    reduced = sorted({refcam_axis(x, p) for p in positions if p not in x.inserted})
    kept_inserted = _shifted([p for p in x.inserted if p not in positions], [] if keepdims else positions)
    spatial = list(range(1, len(x.shape)))
    if not keepdims and (reduced != spatial or not spatial or kept_inserted):
        raise UnsupportedOperationError(
            f"{node.label}: reduces axes {axes} of a rank-{rank} tensor with keepdims=0; refcam keeps reduced "
            "axes (size 1) except when all the spatial axes are reduced (global pooling to (batch, channels)).")
    if not reduced:                                          # only inserted size-1 axes
        state.alias(node, replace(x, inserted=kept_inserted))
        return
    operation, global_pooling = REDUCTIONS[node.op_type]
    if reduced == spatial and len(spatial) in global_pooling:
        value = state.add(node, global_pooling[len(spatial)], [x], layout_from=x)
    else:
        value = state.add(node, ReduceLayer, [x], layout_from=x, operation=operation, axes=tuple(reduced))
    if not keepdims:
        state.alias(node, Value(value.layer, value.shape, squeezed=True))


def _reduce_axes(state: ImportState, node: Node) -> list[int]:
    if state.opset >= 18:
        given = state.constant(node, 1, optional=True)
        return [] if given is None else int_list(node, given, "input #1 (axes)")
    return list(node.attr("axes", "ints", []))


def refcam_axis(x: Value, position: int) -> int:
    """refcam's observation axis (0 = channels) at ONNX per-observation ``position`` of ``x`` (not inserted)."""
    real = [p for p in range(len(x.onnx_shape)) if p not in x.inserted]
    return x.perm[real.index(position)]


def _shifted(positions: Sequence[int], removed: Sequence[int]) -> tuple[int, ...]:
    """``positions`` after the axes at ``removed`` (none of them) are taken out."""
    return tuple(p - sum(r < p for r in removed) for p in positions)


# --- inserted and removed size-1 axes ----------------------------------------------------------------
def _listed_axes(state: ImportState, node: Node, since: int) -> list[int] | None:
    """Axes as the attribute (before opset ``since``) or the optional input #1; None when absent."""
    if state.opset >= since:
        given = state.constant(node, 1, optional=True)
        return None if given is None else int_list(node, given, "input #1 (axes)")
    return node.attr("axes", "ints", None)


def convert_unsqueeze(state: ImportState, node: Node) -> None:
    """Unsqueeze of a network tensor: size-1 axes after the channel axis, remembered on the Value."""
    x = state.value(node, 0, plain=False, views_ok=True)
    axes = _listed_axes(state, node, 13)
    if not axes:
        raise FileFormatError(f"{node.label} gives no axes; Unsqueeze needs the axes to insert.")
    new = sorted(check_axes(node, axes, x.onnx_rank + len(axes)))
    if x.squeezed and new == list(range(2, len(x.shape) + 1)):
        state.alias(node, Value(x.layer, x.shape))               # (B, C) back to (B, C, 1, ...)
        return
    if x.squeezed or x.channel_groups is not None or x.perm != tuple(range(len(x.shape))) or new[0] < 2:
        raise UnsupportedOperationError(
            f"{node.label}: inserts axes {axes} into a tensor with per-observation shape {x.onnx_shape} held "
            "transposed, squeezed or grouped, or before its channel axis; refcam imports Unsqueeze after the "
            "channel axis of a (batch, channel, spatial...) tensor.")
    flags = [p in x.inserted for p in range(len(x.onnx_shape))]
    for axis in new:
        flags.insert(axis - 1, True)
    state.alias(node, replace(x, inserted=tuple(p for p, flag in enumerate(flags) if flag)))


def convert_squeeze(state: ImportState, node: Node) -> None:
    """Squeeze of inserted axes (undone) or of every size-1 spatial axis (the squeezed (B, C) view)."""
    x = state.value(node, 0, plain=False, views_ok=True)
    axes = _listed_axes(state, node, 13)
    if not axes:
        raise UnsupportedOperationError(
            f"{node.label}: Squeeze without axes removes every size-1 axis, a batch of 1 included; refcam "
            "imports Squeeze with its axes given.")
    onnx_axes = check_axes(node, axes, x.onnx_rank)
    positions = sorted(axis - 1 for axis in onnx_axes)
    sizes = [x.onnx_shape[p] if p >= 0 else None for p in positions]
    if -1 in positions or None in sizes:
        raise UnsupportedOperationError(f"{node.label}: squeezes axes {axes} of a tensor with per-observation "
                                        f"shape {x.onnx_shape}: the batch axis or an axis of unknown size.")
    if any(size != 1 for size in sizes):
        raise FileFormatError(f"{node.label}: squeezes axes {axes} of a tensor with per-observation shape "
                              f"{x.onnx_shape}; only axes of size 1 can be squeezed.")
    if x.inserted and set(positions) <= set(x.inserted):
        kept = [p for p in x.inserted if p not in positions]
        state.alias(node, replace(x, inserted=_shifted(kept, positions)))
        return
    if not x.is_view and not x.squeezed and {x.perm[p] for p in positions} == set(range(1, len(x.shape))):
        state.alias(node, Value(x.layer, x.shape, squeezed=True))
        return
    raise UnsupportedOperationError(
        f"{node.label}: squeezes axes {axes} of a tensor with per-observation shape {x.onnx_shape}; refcam "
        "imports a Squeeze that removes inserted axes or all the spatial axes of size 1.")


# --- channel splits and slices -------------------------------------------------------------------------
def convert_split(state: ImportState, node: Node) -> None:
    """Split along the channel axis -> one ChannelSliceLayer per output that is read (module docstring)."""
    x = state.value(node, 0)
    axis = check_axis(node, node.attr("axis", "int", 0), x.onnx_rank)
    if axis != 1:
        raise UnsupportedOperationError(f"{node.label}: Split along axis {axis}; refcam splits along the "
                                        "channel axis (1) only.")
    channels = x.shape[0]
    sizes = _split_sizes(state, node, channels, len(node.outputs))
    if len(sizes) == 1:
        state.alias(node, x)
        return
    start = 0
    for k, (tensor, size) in enumerate(zip(node.outputs, sizes)):
        if tensor and (state.consumers(tensor) or tensor == state.graph.output):
            if size == 0:
                raise UnsupportedOperationError(f"{node.label}: output #{k} is an empty part (0 channels) that "
                                                "another node reads; refcam layers keep at least one channel.")
            state.add(replace(node, name=part_name(state, node, k)), ChannelSliceLayer, [x], output=tensor,
                      start=start, stop=start + size)
        start += size


def _split_sizes(state: ImportState, node: Node, channels: int, count: int) -> list[int]:
    """Channels per output: ``split`` as given, else ``num_outputs`` (opset 18) or equal parts."""
    if state.opset >= 13:
        given = state.constant(node, 1, optional=True)
        sizes = None if given is None else int_list(node, given, "input #1 (split)")
    else:
        sizes = node.attr("split", "ints", None)
    if sizes is not None:
        if len(sizes) != count or min(sizes) < 0 or sum(sizes) != channels:
            raise FileFormatError(f"{node.label}: split {sizes} for {count} outputs of {channels} channels; the "
                                  "parts must be non-negative, one per output, and add up to the channels.")
        return sizes
    if state.opset >= 18:
        parts = node.attr("num_outputs", "int")
        chunk = -(-channels // parts) if parts > 0 else 0
        last = channels - chunk * (parts - 1)
        if parts != count or last < 0:
            raise FileFormatError(f"{node.label}: num_outputs {parts} with {count} outputs of {channels} channels; "
                                  "they must agree and leave the last part non-negative.")
        return [chunk] * (parts - 1) + [last]
    if channels % count:
        raise FileFormatError(f"{node.label}: {channels} channels do not split into {count} equal parts.")
    return [channels // count] * count


def part_name(state: ImportState, node: Node, index: int) -> str:
    """``<node>:<index>``, the layer of output ``index``; ``_2``, ``_3`` ... appended if that name is taken."""
    taken = {n.name for n in state.graph.nodes} | {layer.name for layer in state.layers} | {state.graph.input.name}
    base = name = f"{node.name}:{index}"
    repeat = 1
    while name in taken:
        repeat += 1
        name = f"{base}_{repeat}"
    return name


def convert_slice(state: ImportState, node: Node) -> None:
    """Slice of a network tensor -> ChannelSliceLayer (channel axis) or CroppingLayer (spatial axes)."""
    x = state.value(node, 0)
    full = (1, *x.onnx_shape)
    starts, ends, axes, steps = _slice_operands(state, node, len(full))
    if any(step != 1 for step in steps):
        raise UnsupportedOperationError(f"{node.label}: Slice with steps {steps}; refcam slices with step 1.")
    bounds: dict[int, tuple[int, int]] = {}
    for start, end, axis in zip(starts, ends, axes):
        size = full[axis]
        if axis == 0 or size is None:
            raise UnsupportedOperationError(f"{node.label}: slices axis {axis} of a tensor of shape {full} (None: "
                                            "free), the batch axis or one of unknown size.")
        begin, stop = (min(max(v + size if v < 0 else v, 0), size) for v in (start, end))
        if stop <= begin:
            raise UnsupportedOperationError(f"{node.label}: slices axis {axis} from {start} to {end}, which keeps "
                                            "nothing; refcam layers keep at least one element per axis.")
        if (begin, stop) != (0, size):
            bounds[axis] = (begin, stop)
    if 1 in bounds and len(bounds) > 1:
        raise UnsupportedOperationError(f"{node.label}: slices the channel axis and spatial axes at once; refcam "
                                        "imports a Slice of channels or of spatial axes.")
    if not bounds:
        state.alias(node, x)
    elif 1 in bounds:
        state.add(node, ChannelSliceLayer, [x], start=bounds[1][0], stop=bounds[1][1])
    else:
        spatial = range(2, len(full))
        begins = tuple(bounds.get(axis, (0, full[axis]))[0] for axis in spatial)
        ends = tuple(full[axis] - bounds.get(axis, (0, full[axis]))[1] for axis in spatial)
        state.add(node, CroppingLayer, [x], cropping=begins + ends)


def _slice_operands(state: ImportState, node: Node, rank: int) -> tuple[list[int], list[int], list[int], list[int]]:
    """starts, ends, axes (normalised) and steps of a Slice: inputs from opset 10, attributes before."""
    if state.opset >= 10:
        starts = int_list(node, state.constant(node, 1), "input #1 (starts)")
        ends = int_list(node, state.constant(node, 2), "input #2 (ends)")
        axes_given, steps_given = state.constant(node, 3, optional=True), state.constant(node, 4, optional=True)
        axes = None if axes_given is None else int_list(node, axes_given, "input #3 (axes)")
        steps = [1] * len(starts) if steps_given is None else int_list(node, steps_given, "input #4 (steps)")
    else:
        starts, ends = list(node.attr("starts", "ints")), list(node.attr("ends", "ints"))
        axes, steps = node.attr("axes", "ints", None), [1] * len(starts)
    axes = check_axes(node, range(len(starts)) if axes is None else axes, rank)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise FileFormatError(f"{node.label}: starts {starts}, ends {ends}, axes {axes} and steps {steps} must "
                              "have the same length.")
    return starts, ends, axes, steps


# --- reshapes into channel groups (ShuffleNet's channel shuffle) and inserted axes ------------------------
def convert_reshape(state: ImportState, node: Node) -> None:
    """Reshape into channel groups or inserted axes, or back (a ChannelShuffleLayer after a transpose of
    the groups); every other Reshape as :mod:`refcam.io.onnx_ops` imports it."""
    x = state.value(node, 0, plain=False, views_ok=True)
    full = (1, *x.onnx_shape)
    identity = x.perm == tuple(range(len(x.perm)))
    if None in full or (not x.is_view and not identity):
        BASE_CONVERTERS["Reshape"](state, node)
        return
    target = reshape_request(node, state.constant(node, 1) if state.opset >= 5 else None, state.opset)
    resolved = reshape_target(node, full, target)
    observation, channels = resolved[1:], x.shape[0]
    if x.channel_groups is not None:
        shuffled = (1, 0) + tuple(range(2, len(x.perm)))
        if resolved[0] == 1 and observation == x.shape and x.perm in (tuple(range(len(x.perm))), shuffled):
            if x.perm == shuffled:
                state.add(node, ChannelShuffleLayer, [Value(x.layer, x.shape)], groups=x.channel_groups)
            else:
                state.alias(node, Value(x.layer, x.shape))
            return
        raise UnsupportedOperationError(
            f"{node.label}: Reshape from {full} to {list(resolved)} of a tensor whose channels are held in "
            f"{x.channel_groups} groups; refcam imports the reshape back to (batch, channels, spatial...) "
            "(plain or after swapping the group axes: a channel shuffle).")
    if resolved[0] == 1:
        if observation == x.shape:                              # undoes an insert or a squeeze
            state.alias(node, Value(x.layer, x.shape))
            return
        inserted = None if x.squeezed else _inserted_ones(x.shape, observation)
        if inserted is not None:
            state.alias(node, replace(x, inserted=inserted))
            return
        if (not x.is_view and not x.squeezed and len(observation) == len(x.shape) + 1 and observation[0] > 1
                and observation[0] * observation[1] == channels and observation[2:] == x.shape[1:]):
            state.alias(node, Value(x.layer, x.shape, channel_groups=observation[0]))
            return
    BASE_CONVERTERS["Reshape"](state, node)


def _inserted_ones(shape: Sequence[int | None], target: Sequence[int]) -> tuple[int, ...] | None:
    """The positions of the 1s that turn ``shape`` into ``target`` (inserted after the channel axis), or None."""
    if len(target) <= len(shape) or not target or target[0] != shape[0]:
        return None
    inserted, source = [], 0
    for position, size in enumerate(target):
        if source < len(shape) and size == shape[source]:
            source += 1
        elif size == 1:
            inserted.append(position)
        else:
            return None
    return tuple(inserted) if source == len(shape) else None


def convert_transpose(state: ImportState, node: Node) -> None:
    """Transpose of a grouped view (batch axis first): no layer; every other as :mod:`refcam.io.onnx_ops`."""
    x = state.value(node, 0, plain=False, views_ok=True)
    if x.channel_groups is None:
        BASE_CONVERTERS["Transpose"](state, node)
        return
    perm = check_permutation(node, node.attr("perm", "ints", list(range(x.onnx_rank - 1, -1, -1))), x.onnx_rank)
    if perm[0] != 0:
        raise UnsupportedOperationError(f"{node.label}: Transpose {list(perm)} of a grouped view moves the batch "
                                        "axis.")
    state.alias(node, x.transposed(perm))


# --- pooling of a tensor with inserted axes ----------------------------------------------------------------
def convert_pool(state: ImportState, node: Node) -> None:
    """AveragePool / MaxPool: on a tensor with inserted axes, the pooling of its real axes (module docstring)."""
    x = state.value(node, 0, plain=False, views_ok=True)
    if not x.inserted or x.channel_groups is not None:
        BASE_CONVERTERS[node.op_type](state, node)
        return
    spatial = len(x.onnx_shape) - 1
    dropped = [p - 1 for p in x.inserted]                       # ONNX spatial axes that refcam lacks
    attributes = dict(node.attributes)
    for key in POOL_ATTRIBUTES:
        values = node.attr(key, "ints", [1] * spatial)
        if len(values) != spatial or any(values[i] != 1 for i in dropped):
            raise UnsupportedOperationError(
                f"{node.label}: {key} {list(values)} on a tensor with size-1 axes inserted at per-observation "
                f"positions {list(x.inserted)}; refcam pools those axes only with kernel 1, stride 1, dilation 1.")
        if key in node.attributes:
            attributes[key] = [v for i, v in enumerate(values) if i not in dropped]
    pads = node.attr("pads", "ints", [0] * (2 * spatial))
    if len(pads) == 2 * spatial and any(pads[i] or pads[spatial + i] for i in dropped):
        raise UnsupportedOperationError(f"{node.label}: pads {list(pads)} pad an inserted size-1 axis.")
    if "pads" in node.attributes and len(pads) == 2 * spatial:
        attributes["pads"] = [v for i, v in enumerate(pads) if i % spatial not in dropped]
    plain_input = f"{node.inputs[0]} (without its inserted axes)"
    state.values[plain_input] = Value(x.layer, x.shape)
    try:
        BASE_CONVERTERS[node.op_type](state, replace(node, inputs=(plain_input, *node.inputs[1:]),
                                                     attributes=attributes))
    finally:
        del state.values[plain_input]
    pooled = state.values[node.outputs[0]]
    state.values[node.outputs[0]] = replace(pooled, inserted=x.inserted)


SHAPE_CONVERTERS = {
    "ReduceMean": convert_reduce,
    "ReduceMax": convert_reduce,
    "Unsqueeze": convert_unsqueeze,
    "Squeeze": convert_squeeze,
    "Split": convert_split,
    "Slice": convert_slice,
    "Reshape": convert_reshape,
    "Transpose": convert_transpose,
    "AveragePool": convert_pool,
    "MaxPool": convert_pool,
}

__all__ = ["SHAPE_CONVERTERS", "convert_reduce", "convert_unsqueeze", "convert_squeeze", "convert_split",
           "convert_slice", "convert_reshape", "convert_transpose", "convert_pool", "part_name", "refcam_axis"]
