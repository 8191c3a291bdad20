"""Import an ONNX model as a refcam :class:`~refcam.network.Network` (optional dependency ``onnx``).

``load_onnx(path)`` parses the file with ``onnx.load_model_from_string`` (protobuf
parsing only: nothing in the file is executed, no runtime runs the graph, and no
external data file is opened), then:

1. reads the graph (:mod:`refcam.io.onnx_graph`): one input, one output, only
   the nodes the output needs, in data-flow order; a cycle raises CycleError;
2. lists every node whose operator refcam cannot import and raises **one**
   :class:`~refcam.errors.UnsupportedOperationError` naming them all;
3. makes the input layer from the graph input's shape ``(B, C, *S)``:
   4-D -> ImageInputLayer ``(h, w, c)``, 5-D -> Image3dInputLayer ``(h, w, d, c)``,
   3-D -> SequenceInputLayer ``c`` (time may be dynamic), all with normalisation
   "none" (an exporter writes input normalisation as Sub/Div nodes, imported as
   ScalingLayers);
4. walks the nodes: constants are folded (:mod:`refcam.io.onnx_fold`), every
   other node is converted (:mod:`refcam.io.onnx_ops`) into a refcam layer named
   after the node, with the initializers as its weights (float64);
5. builds the Network. For a sequence input of dynamic length the input layer's
   ``min_length`` is the shortest length every layer accepts (found by bisection);
   for a fixed length it is that length.

Layouts: ONNX and refcam both hold activations as (batch, channel, spatial...)
and convolution weights as ``(F, C/groups, *k)``, so weights are copied as they
are; fully connected weights are ``(out, in)`` and PyTorch's flatten order is
refcam's "row-major".

>>> net = load_onnx("model.onnx")      # doctest: +SKIP
>>> print(net)                          # doctest: +SKIP
"""
from __future__ import annotations

import os
from typing import Any

from ..errors import (FileFormatError, LayerShapeError, OptionalDependencyError,
                      UnsupportedOperationError)
from ..layers.input import Image3dInputLayer, ImageInputLayer, SequenceInputLayer
from ..network import Network
from .onnx_fold import FOLDERS, fold, shape_of
from .onnx_graph import DEFAULT_DOMAINS, FLOAT_ELEMENT_TYPES, Graph, ImportState, Node, Value, read_graph
from .onnx_ops import CONVERTERS

MAX_SEQUENCE_LENGTH = 2 ** 20
MODEL_FIELD_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72})


def load_onnx(path: str | os.PathLike) -> Network:
    """Read an ONNX model file and return the equivalent refcam Network.

    Raises
    ------
    OptionalDependencyError
        The ``onnx`` package is not installed (``pip install refcam[onnx]``).
    FileNotFoundError
        ``path`` does not exist.
    FileFormatError
        The file is not an ONNX model, or is truncated or corrupt; subclasses:
        WeightShapeError (an initializer of the wrong shape for its node),
        UnsupportedOperationError (operators or forms refcam cannot represent,
        all unsupported operators listed in one message).
    CycleError
        The graph has a cycle.

    >>> net = load_onnx("resnet_tiny.onnx")                  # doctest: +SKIP
    >>> scores = net.predict(image, format="CSS")            # doctest: +SKIP
    """
    source = os.fspath(path)
    model = parse_model(source)
    graph = read_graph(model, source)
    _check_operators(graph, source)
    _check_input(graph, source)
    state = ImportState(graph)
    state.values[graph.input.name] = Value(graph.input.name, tuple(graph.input.dims[1:]))  # (C, *S)
    for node in graph.nodes:
        try:
            _convert_node(state, node)
        except FileFormatError as err:
            raise type(err)(f"{source}: {err}") from err
    _check_output(state, source)
    return _build_network(state.layers, graph, source)


def parse_model(source: str) -> Any:
    """The file's ``ModelProto``; OptionalDependencyError without ``onnx``, FileFormatError if unparsable."""
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
    except (DecodeError, ValueError, RuntimeError) as err:
        raise FileFormatError(
            f"{source}: the file cannot be parsed as an ONNX model (protobuf ModelProto); it is "
            f"truncated, corrupt or of another format ({err}).") from err


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
def _check_operators(graph: Graph, source: str) -> None:
    """One UnsupportedOperationError naming every node whose operator refcam does not import."""
    unknown = [node for node in graph.nodes
               if node.domain not in DEFAULT_DOMAINS or not (node.op_type in CONVERTERS or node.op_type in FOLDERS)]
    if unknown:
        listed = ", ".join(f"{_qualified(node)} (node {node.name!r})" for node in unknown)
        kinds = sorted({_qualified(node) for node in unknown})
        raise UnsupportedOperationError(
            f"{source}: the ONNX graph uses {len(kinds)} operator type(s) refcam cannot import "
            f"({', '.join(kinds)}) in {len(unknown)} node(s): {listed}. Supported operators are listed "
            "in docs/import.md; replace these in the model before exporting.")


def _qualified(node: Node) -> str:
    return node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"


def _convert_node(state: ImportState, node: Node) -> None:
    """Fold ``node`` when its inputs are constants, else convert it to a refcam layer."""
    if node.name in state.fused:
        return
    given = [tensor for tensor in node.inputs if tensor]
    if node.op_type in FOLDERS and all(state.is_constant(t) for t in given):
        operands = [state.constants[t] if t else None for t in node.inputs]
        state.constants[node.outputs[0]] = fold(node, operands, state.opset)
    elif node.op_type == "Shape":
        state.constants[node.outputs[0]] = shape_of(node, state.value(node, 0, plain=False).onnx_shape)
    elif node.op_type in CONVERTERS:
        CONVERTERS[node.op_type](state, node)
    else:
        raise UnsupportedOperationError(
            f"{node.label} acts on a tensor the network computes; refcam folds {node.op_type} only "
            "when all its inputs are constants.")


def _check_input(graph: Graph, source: str) -> None:
    """The graph input must be a float (B, C, T), (B, C, H, W) or (B, C, H, W, D) tensor with fixed C, H, W, D."""
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
    if value.perm != tuple(range(len(value.shape))):
        raise UnsupportedOperationError(
            f"{source}: the graph output {output!r} is a transposed tensor (per-observation shape "
            f"{value.onnx_shape}); refcam outputs are laid out (channel, spatial...).")


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


__all__ = ["load_onnx", "looks_like_onnx", "parse_model"]
