"""Import an ONNX model as a refcam :class:`~refcam.network.Network` (optional dependency ``onnx``).

``load_onnx(path)`` checks that ``path`` is a regular file, reads it once and
parses it with ``onnx.load_model_from_string`` (protobuf parsing only: nothing in
the file is executed, no runtime runs the graph, and no external data file is
opened), then:

1. reads the graph (:mod:`refcam.io.onnx_graph`): one input, one output, only
   the nodes the output needs, in data-flow order; a cycle raises CycleError;
   every node whose operator refcam cannot import is listed in **one**
   :class:`~refcam.errors.UnsupportedOperationError`; then the attributes and
   initializers are decoded, every tensor within ``max_tensor_bytes`` and
   without external data, every float finite;
2. makes the input layer from the graph input's shape ``(B, C, *S)``:
   4-D -> ImageInputLayer ``(h, w, c)``, 5-D -> Image3dInputLayer ``(h, w, d, c)``,
   3-D -> SequenceInputLayer ``c`` (time may be dynamic), all with normalisation
   "none" (an exporter writes input normalisation as Sub/Div nodes, imported as
   ScalingLayers);
3. walks the nodes: constants are folded (:mod:`refcam.io.onnx_fold`), every
   other node is converted (:mod:`refcam.io.onnx_ops`) into a refcam layer named
   after the node, with the initializers as its weights (float64). A node in a
   form refcam cannot represent (a Mul of two computed tensors, a Reshape that
   is no flatten, ...) does not stop the walk: every such node is collected
   (:func:`_convert_nodes`) and **one** UnsupportedOperationError lists them,
   grouped by op type, then by reason, with counts and node names
   (:func:`refusal_message`);
4. builds the Network. For a sequence input of dynamic length the input layer's
   ``min_length`` is the shortest length every layer accepts (found by bisection);
   for a fixed length it is that length.

Layouts: ONNX and refcam both hold activations as (batch, channel, spatial...)
and convolution weights as ``(F, C/groups, *k)``, so weights are copied as they
are; fully connected weights are ``(out, in)`` and PyTorch's flatten order is
refcam's "row-major".

Every way a file can be wrong ends in a :class:`~refcam.errors.RefcamError`
naming the file and, while converting, the node: a missing file is
FileNotFoundError; a folder, device or FIFO, an unparsable file, a malformed node
(missing or mistyped attribute, axis out of range, bad shape) a FileFormatError
or subclass. As a last resort, an exception of Python's own (KeyError,
ValueError, ...) raised while a node is converted becomes a FileFormatError
naming that node; a RefcamError passes through unchanged.

>>> net = load_onnx("model.onnx")      # doctest: +SKIP
>>> print(net)                          # doctest: +SKIP
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, replace
from typing import Any, Sequence

from ..errors import (FileFormatError, LayerShapeError, OptionalDependencyError, RefcamError,
                      UnsupportedOperationError)
from ..layers.input import Image3dInputLayer, ImageInputLayer, SequenceInputLayer
from ..network import Network
from .onnx_fold import FOLDERS, fold, shape_of
from .onnx_graph import FLOAT_ELEMENT_TYPES, Graph, ImportState, Node, Value, qualified_op_type, read_graph
from .onnx_elementwise import ELEMENTWISE_CONVERTERS, ELEMENTWISE_SHAPE_KEEPING
from .onnx_ops import CONVERTERS as BASE_CONVERTERS
from .onnx_shape_ops import SHAPE_CONVERTERS
from .safe import DEFAULT_MAX_TENSOR_BYTES, check_budget, check_declared_size, check_regular_file

MAX_SEQUENCE_LENGTH = 2 ** 20
MODEL_FIELD_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72})
# onnx_ops' converters, and those of the newer forms, which fall back on onnx_ops' for the older ones
CONVERTERS = {**BASE_CONVERTERS, **ELEMENTWISE_CONVERTERS, **SHAPE_CONVERTERS}
KNOWN_OPERATORS = frozenset(CONVERTERS) | frozenset(FOLDERS)
UNKNOWN_OPERATOR = "an operator refcam does not import (docs/import.md lists those it does)"
MAX_NAMES_PER_REASON = 10   # node names listed for one reason in a refusal message
MAX_REASONS_PER_TYPE = 5    # reasons listed for one op type (then a count of the others)
# refused ops whose first output has the shape and layout of their widest input (a stand-in keeps converting)
SHAPE_KEEPING = frozenset({"Add", "Sub", "Mul", "Div", "Sum", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip",
                           "Softmax", "BatchNormalization", "LayerNormalization", "Dropout", "Identity", "Cast"}
                          ) | ELEMENTWISE_SHAPE_KEEPING
PARSE_ERRORS = (ValueError, RuntimeError, TypeError, OverflowError, MemoryError, RecursionError)
# Python's own exceptions that a malformed node could still raise inside a converter (the last-resort net)
CONVERSION_ERRORS = (KeyError, TypeError, ValueError, IndexError, OverflowError, ZeroDivisionError, MemoryError,
                     RecursionError, AttributeError)


def load_onnx(path: str | os.PathLike, *, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> Network:
    """Read an ONNX model file and return the equivalent refcam Network.

    ``max_tensor_bytes`` bounds every tensor the file declares or the importer
    folds (counted in float64; default 2 GiB), checked before it is allocated.

    Raises
    ------
    OptionalDependencyError
        The ``onnx`` package is not installed (``pip install refcam[onnx]``).
    FileNotFoundError
        ``path`` does not exist.
    FileFormatError
        ``path`` is a folder, device or FIFO; the file is not an ONNX model, or is
        truncated, corrupt or malformed; subclasses: WeightShapeError (an
        initializer of the wrong shape for its node), UnsupportedOperationError
        (operators or forms refcam cannot represent: all unsupported operators
        listed in one message, else all refused forms in one message),
        ExternalReferenceError (a tensor kept in another file), DeclaredSizeError (a tensor over ``max_tensor_bytes``, a negative
        size), NonFiniteParameterError (a NaN or Inf weight or attribute).
    CycleError
        The graph has a cycle.

    >>> net = load_onnx("resnet_tiny.onnx")                  # doctest: +SKIP
    >>> scores = net.predict(image, format="CSS")            # doctest: +SKIP
    """
    return load_onnx_with_tensors(path, max_tensor_bytes=max_tensor_bytes)[0]


def load_onnx_with_tensors(path: str | os.PathLike, *, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
                           ) -> tuple[Network, dict[str, str]]:
    """:func:`load_onnx`, and which refcam layer holds each tensor the network computes.

    The map is ``{ONNX tensor name: layer name}`` for the graph input (the input
    layer) and every tensor computed from it. A tensor the importer did not turn
    into a layer of its own maps to the layer whose output holds its values, up
    to layout: the input of an Identity, Transpose, Squeeze or a Flatten of a flat
    tensor; the layer before a Pad fused into the next convolution; the
    fully connected layer of a MatMul for the Add of its bias. Constants are not
    in the map. Same arguments and errors as :func:`load_onnx`.

    >>> net, tensor_layers = load_onnx_with_tensors("resnet_tiny.onnx")   # doctest: +SKIP
    >>> tensor_layers["/layer1/layer1.0/relu_1/Relu_output_0"]           # doctest: +SKIP
    '/layer1/layer1.0/relu_1/Relu'
    """
    max_tensor_bytes = check_budget(max_tensor_bytes)
    source = check_regular_file(path)
    model = parse_model(source)
    graph = read_graph(model, source, KNOWN_OPERATORS, max_tensor_bytes)
    _check_input(graph, source, max_tensor_bytes)
    state = ImportState(graph, max_tensor_bytes)
    state.values[graph.input.name] = Value(graph.input.name, tuple(graph.input.dims[1:]))  # (C, *S)
    refusals = _convert_nodes(state, source)
    if refusals:
        raise UnsupportedOperationError(refusal_message(refusals, source))
    _check_output(state, source)
    network = _build_network(state.layers, graph, source)
    return network, {tensor: value.layer for tensor, value in state.values.items()}


def parse_model(source: str) -> Any:
    """The file's ``ModelProto``; OptionalDependencyError without ``onnx``, FileFormatError if unparsable.

    Rule: the file is read once, whole; any failure of the protobuf parser
    (DecodeError, recursion or size limits) is a FileFormatError.
    """
    try:
        import onnx
        from google.protobuf.message import DecodeError
    except ImportError as err:
        raise OptionalDependencyError(
            "reading ONNX files needs the 'onnx' package: pip install refcam[onnx] "
            "(or pip install onnx).") from err
    with open(source, "rb") as f:
        content = f.read()
    if not content:
        raise FileFormatError(f"{source}: the file is empty, not an ONNX model.")
    try:
        return onnx.load_model_from_string(content)
    except (DecodeError, *PARSE_ERRORS) as err:
        raise FileFormatError(
            f"{source}: the file cannot be parsed as an ONNX model (protobuf ModelProto); it is "
            f"truncated, corrupt or of another format ({type(err).__name__}: {err}).") from err


def looks_like_onnx(head: bytes) -> bool:
    """True when ``head`` (a file's first bytes) starts like a serialised ONNX ModelProto.

    ONNX writers put ``ir_version`` (field 1, a small varint: bytes ``08 nn``)
    first, followed by another ModelProto field (producer_name, graph,
    opset_import, ...). A cheap sniff for format detection; :func:`parse_model`
    is the real test.

    >>> looks_like_onnx(bytes([0x08, 0x08, 0x12, 0x07]) + b"pytorch")
    True
    """
    return len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 0x7F and head[2] in MODEL_FIELD_TAGS


# --- steps -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Refusal:
    """A node refcam cannot import in the form the file uses, and the reason (without node-specific names)."""

    node: Node
    reason: str


def _convert_nodes(state: ImportState, source: str) -> list[Refusal]:
    """Convert every node in data-flow order, collecting the refused ones instead of stopping at the first.

    Rule: a node whose operator refcam does not import (``graph.unknown``) is
    recorded as a :class:`Refusal`, its outputs unavailable; a node raising
    UnsupportedOperationError is recorded as a
    :class:`Refusal`; its first output becomes a stand-in of the same shape when
    the op keeps its input's shape (:data:`SHAPE_KEEPING`), else its outputs are
    unavailable. A node reading an unavailable tensor is skipped, its outputs
    unavailable too (not reported: it may be fine once its inputs are). A node
    reading a stand-in (or anything computed from one) that fails otherwise is
    skipped the same way; every other error is raised at once.
    """
    refusals: list[Refusal] = []
    unavailable: set[str] = set()
    tainted: set[str] = set()
    for node in state.graph.nodes:
        reads = {tensor for tensor in node.inputs if tensor}
        if node.name in state.graph.unknown:
            refusals.append(Refusal(node, UNKNOWN_OPERATOR))
            unavailable.update(node.outputs)
            continue
        if reads & unavailable:
            unavailable.update(node.outputs)
            continue
        try:
            _convert_node_of(state, node, source)
        except UnsupportedOperationError as err:
            refusals.append(Refusal(node, _reason(str(err), node, source)))
            _stand_in(state, node, unavailable, tainted)
            continue
        except RefcamError:
            if not reads & tainted:
                raise
            unavailable.update(node.outputs)
            continue
        if reads & tainted:
            tainted.update(node.outputs)
    return refusals


def _stand_in(state: ImportState, node: Node, unavailable: set[str], tainted: set[str]) -> None:
    """Record a refused node's outputs: a stand-in Value for a shape-keeping op, else unavailable."""
    inputs = [state.values[t] for t in node.inputs if t in state.values]
    unavailable.update(t for t in node.outputs if t not in state.values and t not in state.constants)
    if node.op_type not in SHAPE_KEEPING or not inputs or not node.outputs:
        return
    widest = max(inputs, key=lambda value: math.prod(n or 1 for n in value.onnx_shape))
    state.alias(node, replace(widest, layer=node.name, pending_padding=None))
    unavailable.discard(node.outputs[0])
    tainted.add(node.outputs[0])


def _reason(message: str, node: Node, source: str) -> str:
    """The reason a node was refused: its message without the file, the node label and tensor names."""
    reason = message.removeprefix(f"{source}: ").removeprefix(node.label).removeprefix(":").strip()
    reason = re.sub(r"\s*\('[^']*'\)", "", reason)
    return re.sub(r"'[^']*'", "a tensor", reason).rstrip(".")


def refusal_message(refusals: Sequence[Refusal], source: str) -> str:
    """One message for every refused node, grouped by op type, then by reason, with counts and names.

    >>> node = Node("/features/1/Mul", "Mul", "", ("a", "b"), ("c",))
    >>> print(refusal_message([Refusal(node, "a product of two tensors")], "m.onnx"))  # doctest: +NORMALIZE_WHITESPACE
    m.onnx: refcam cannot import 1 node(s) of the ONNX graph, of 1 operator type(s) (Mul):
      Mul (1 node): a product of two tensors: node '/features/1/Mul'
    Nodes reading a refused Reshape, Concat, ... (an output of unknown shape) were not checked.
    docs/import.md lists the operators and forms refcam imports; change these parts of the model
    (or how it is exported) and load it again.
    """
    by_type: dict[str, dict[str, list[str]]] = {}
    for refusal in refusals:
        by_type.setdefault(qualified_op_type(refusal.node), {}).setdefault(refusal.reason, []).append(
            refusal.node.name)
    lines = [f"{source}: refcam cannot import {len(refusals)} node(s) of the ONNX graph, of {len(by_type)} "
             f"operator type(s) ({', '.join(by_type)}):"]
    for op_type, reasons in by_type.items():
        lines += _type_lines(op_type, reasons)
    lines.append("Nodes reading a refused Reshape, Concat, ... (an output of unknown shape) were not checked. "
                 "docs/import.md lists the operators and forms refcam imports; change these parts of the model "
                 "(or how it is exported) and load it again.")
    return "\n".join(lines)


def _type_lines(op_type: str, reasons: dict[str, list[str]]) -> list[str]:
    """The lines of one op type: one line when every node has the same reason, else one per reason
    (at most :data:`MAX_REASONS_PER_TYPE`, then how many nodes and reasons more)."""
    count = sum(len(names) for names in reasons.values())
    header = f"  {op_type} ({_nodes(count)})"
    if len(reasons) == 1:
        ((reason, names),) = reasons.items()
        return [f"{header}: {reason}: {_names(names)}"]
    groups = list(reasons.items())
    lines = [f"{header}:"] + [f"    - {_nodes(len(names))}: {reason}: {_names(names)}"
                              for reason, names in groups[:MAX_REASONS_PER_TYPE]]
    rest = groups[MAX_REASONS_PER_TYPE:]
    if rest:
        lines.append(f"    - and {_nodes(sum(len(names) for _, names in rest))} for {len(rest)} other reason(s), "
                     f"e.g. {rest[0][0]}: {_names(rest[0][1])}")
    return lines


def _nodes(count: int) -> str:
    return f"{count} node" if count == 1 else f"{count} nodes"


def _names(names: Sequence[str]) -> str:
    """``node 'a'`` or ``nodes 'a', 'b', ... and N more`` (at most :data:`MAX_NAMES_PER_REASON` names)."""
    shown = ", ".join(repr(name) for name in names[:MAX_NAMES_PER_REASON])
    more = f" and {len(names) - MAX_NAMES_PER_REASON} more" if len(names) > MAX_NAMES_PER_REASON else ""
    return f"node {shown}" if len(names) == 1 else f"nodes {shown}{more}"


def _convert_node_of(state: ImportState, node: Node, source: str) -> None:
    """:func:`_convert_node`, with errors named after the file and the node.

    Rule: a FileFormatError gets the file's name in front (same type); any other
    RefcamError passes unchanged; Python's own exceptions (:data:`CONVERSION_ERRORS`),
    which the checks should have prevented, become a FileFormatError naming the
    node, chained to the original.
    """
    try:
        _convert_node(state, node)
    except FileFormatError as err:
        if str(err).startswith(f"{source}: "):
            raise
        raise type(err)(f"{source}: {err}") from err
    except RefcamError:
        raise
    except CONVERSION_ERRORS as err:
        raise FileFormatError(
            f"{source}: {node.label} cannot be converted ({type(err).__name__}: {err}); its inputs or "
            "attributes are malformed. Check the node against the ONNX operator definition.") from err


def _convert_node(state: ImportState, node: Node) -> None:
    """Fold ``node`` when its inputs are constants, else convert it to a refcam layer."""
    if node.name in state.fused:
        return
    given = [tensor for tensor in node.inputs if tensor]
    if node.op_type in FOLDERS and all(state.is_constant(t) for t in given):
        operands = [state.constants[t] if t else None for t in node.inputs]
        state.constants[node.outputs[0]] = fold(node, operands, state.opset, state.max_tensor_bytes)
    elif node.op_type == "Shape":
        state.constants[node.outputs[0]] = shape_of(node, state.value(node, 0, plain=False).onnx_shape)
    elif node.op_type in CONVERTERS:
        CONVERTERS[node.op_type](state, node)
    else:
        raise UnsupportedOperationError(
            f"{node.label} acts on a tensor the network computes; refcam folds {node.op_type} only "
            "when all its inputs are constants.")


def _check_input(graph: Graph, source: str, max_tensor_bytes: int) -> None:
    """The graph input must be a float (B, C, T), (B, C, H, W) or (B, C, H, W, D) tensor with fixed C, H, W, D.

    Rule: the fixed sizes are positive, and one observation (a dynamic time axis
    counted as 1) fits ``max_tensor_bytes``.
    """
    name, dims = graph.input.name, graph.input.dims
    if graph.input.elem_type not in FLOAT_ELEMENT_TYPES:
        raise UnsupportedOperationError(
            f"{source}: the graph input {name!r} has element type {graph.input.elem_type} "
            "(TensorProto enum); refcam imports networks with a floating-point input.")
    fixed_axes = dims[1:2] if len(dims) == 3 else dims[1:]
    if len(dims) not in (3, 4, 5) or None in fixed_axes:
        raise UnsupportedOperationError(
            f"{source}: the graph input {name!r} has shape {list(dims)} (None: dynamic); refcam "
            "imports (batch, channel, time) sequences, (batch, channel, h, w) images and "
            "(batch, channel, h, w, d) volumes, with fixed channel and spatial sizes.")
    if min(fixed_axes) < 1:
        raise FileFormatError(f"{source}: the graph input {name!r} has shape {list(dims)}; its channel and "
                              "spatial sizes must be positive.")
    check_declared_size([n or 1 for n in dims[1:]], f"one observation of the graph input {name!r}", source,
                        max_tensor_bytes)


def _input_layer(graph: Graph, min_length: int) -> Any:
    """The input layer for the graph input; ``min_length`` is used for a dynamic-length sequence."""
    name, dims = graph.input.name, graph.input.dims
    if len(dims) == 4:
        return ImageInputLayer(name=name, input_size=(dims[2], dims[3], dims[1]), normalization="none")
    if len(dims) == 5:
        return Image3dInputLayer(name=name, input_size=(dims[2], dims[3], dims[4], dims[1]),
                                 normalization="none")
    return SequenceInputLayer(name=name, input_size=dims[1], normalization="none",
                              min_length=dims[2] or min_length)


def _check_output(state: ImportState, source: str) -> None:
    """The graph output must be a network tensor laid out (channel, spatial...)."""
    output = state.graph.output
    if output not in state.values:
        raise UnsupportedOperationError(f"{source}: the graph output {output!r} does not depend on the "
                                        "graph input (it is a constant).")
    value = state.values[output]
    if value.perm != tuple(range(len(value.shape))) or value.is_view:
        raise UnsupportedOperationError(
            f"{source}: the graph output {output!r} is a transposed, grouped or unsqueezed tensor "
            f"(per-observation shape {value.onnx_shape}); refcam outputs are laid out (channel, spatial...).")


def _build_network(layers: list[Any], graph: Graph, source: str) -> Network:
    """The Network; a dynamic-length sequence input gets the shortest length every layer accepts."""
    name = graph.name or os.path.splitext(os.path.basename(source))[0]
    if len(graph.input.dims) != 3 or graph.input.dims[2] is not None:
        return Network([_input_layer(graph, 1)] + layers, name=name)

    def attempt(length: int) -> Network | None:
        try:
            return Network([_input_layer(graph, length)] + layers, name=name)
        except LayerShapeError:
            if length >= MAX_SEQUENCE_LENGTH:
                raise
            return None

    too_short, length = 0, 1
    network = attempt(length)
    while network is None:                      # doubling: an accepted length
        too_short, length = length, 2 * length
        network = attempt(length)
    while length - too_short > 1:               # bisection: the shortest accepted length
        middle = (too_short + length) // 2
        candidate = attempt(middle)
        if candidate is None:
            too_short = middle
        else:
            length, network = middle, candidate
    return network


__all__ = ["load_onnx", "load_onnx_with_tensors", "looks_like_onnx", "parse_model"]
