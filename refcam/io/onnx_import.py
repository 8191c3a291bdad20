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
   after the node, with the initializers as its weights (float64);
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

import os
from typing import Any

from ..errors import (FileFormatError, LayerShapeError, OptionalDependencyError, RefcamError,
                      UnsupportedOperationError)
from ..layers.input import Image3dInputLayer, ImageInputLayer, SequenceInputLayer
from ..network import Network
from .onnx_fold import FOLDERS, fold, shape_of
from .onnx_graph import FLOAT_ELEMENT_TYPES, Graph, ImportState, Node, Value, read_graph
from .onnx_ops import CONVERTERS
from .safe import DEFAULT_MAX_TENSOR_BYTES, check_budget, check_declared_size, check_regular_file

MAX_SEQUENCE_LENGTH = 2 ** 20
MODEL_FIELD_TAGS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72})
KNOWN_OPERATORS = frozenset(CONVERTERS) | frozenset(FOLDERS)
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
        (operators or forms refcam cannot represent, all unsupported operators
        listed in one message), ExternalReferenceError (a tensor kept in another
        file), DeclaredSizeError (a tensor over ``max_tensor_bytes``, a negative
        size), NonFiniteParameterError (a NaN or Inf weight or attribute).
    CycleError
        The graph has a cycle.

    >>> net = load_onnx("resnet_tiny.onnx")                  # doctest: +SKIP
    >>> scores = net.predict(image, format="CSS")            # doctest: +SKIP
    """
    max_tensor_bytes = check_budget(max_tensor_bytes)
    source = check_regular_file(path)
    model = parse_model(source)
    graph = read_graph(model, source, KNOWN_OPERATORS, max_tensor_bytes)
    _check_input(graph, source, max_tensor_bytes)
    state = ImportState(graph, max_tensor_bytes)
    state.values[graph.input.name] = Value(graph.input.name, tuple(graph.input.dims[1:]))  # (C, *S)
    for node in graph.nodes:
        _convert_node_of(state, node, source)
    _check_output(state, source)
    return _build_network(state.layers, graph, source)


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
