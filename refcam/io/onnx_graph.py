"""The ONNX graph as the importer walks it: parsed nodes, data-flow order, constants, refcam values.

Reading (:func:`read_graph`) turns a ``ModelProto`` into plain Python objects and
checks the structure before anything is converted:

* every name and string attribute must be UTF-8 text (ONNX's rule; protobuf hands
  other bytes over undecoded), otherwise :class:`~refcam.errors.FileFormatError`;
* exactly one graph input that is not an initializer, and exactly one output;
* only the nodes the output depends on are kept (walking back from the output);
* every tensor a kept node reads is produced by one node, an initializer or the
  graph input, otherwise :class:`~refcam.errors.FileFormatError`;
* the kept nodes are put in data-flow order by Kahn's algorithm (file order among
  the ready ones); nodes left over lie on a cycle: :class:`~refcam.errors.CycleError`
  names one;
* the kept nodes whose operator refcam does not import are marked
  (``Graph.unknown``) and never decoded; the importer lists them, with every
  node refused for its form, in one :class:`~refcam.errors.UnsupportedOperationError`.
  The other nodes' attributes and the initializers they read are decoded.

Every tensor in the file (initializers, ``TENSOR``/``TENSORS`` attributes such as
``Constant`` and ``ConstantOfShape`` values) is decoded by
:func:`refcam.io.safe.onnx_tensor_array` only: its type and declared dims are
checked against the budget ``max_tensor_bytes`` first. An initializer whose data
lives in an external data file (``torch.onnx.export``'s default) is read from the
model's own folder only, with its location, offset and length checked first; any
other tensor whose data lives in another file is an
:class:`~refcam.errors.ExternalReferenceError` (onnx would resolve the location
against the working directory). Sparse tensors are
refused the same way, then as unsupported; subgraph and type attributes are never
decoded (no operator refcam imports has one); a tensor attribute of *any* node,
kept or not, that points at another file is refused before anything is decoded. Floats become float64 (exact for
float32, float16 and bfloat16), integers and booleans int64. A float initializer,
tensor attribute or float attribute holding NaN or Inf is a
:class:`~refcam.errors.NonFiniteParameterError` naming the node and the tensor or
attribute. An attribute is read with the type ONNX defines for it
(:meth:`Node.attr`); another type is a FileFormatError.

Node names become refcam layer names: the node's own name, or ``<OpType>_<k>``
when it is empty (k counts the nodes in file order), with ``_2``, ``_3`` ...
appended to repeats so that every name is unique (the graph input's name is
taken first).

While converting, every tensor the graph computes is either a constant (an
initializer, a ``Constant`` node, or folded from constants) or a :class:`Value`:
the output of a refcam layer, seen through how ONNX lays it out (a pending
transpose, squeezed singleton axes, a pad waiting to be fused into the next
convolution).
"""
from __future__ import annotations

import heapq
import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Collection, Iterable, Sequence

import numpy as np

from ..errors import (CycleError, DeclaredSizeError, FileFormatError, LayerConfigError, LayerShapeError,
                      NonFiniteParameterError, SizeLimitError, UnsupportedOperationError)
from .safe import DEFAULT_MAX_TENSOR_BYTES, check_finite, onnx_tensor_array, refuse_external_data

DEFAULT_DOMAINS = ("", "ai.onnx")
FLOAT_ELEMENT_TYPES = (1, 10, 11, 16)   # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (TensorProto enum)
ATTRIBUTE_KINDS = {1: "float", 2: "int", 3: "string", 4: "tensor", 5: "graph", 6: "floats", 7: "ints",
                   8: "strings", 9: "tensors", 10: "graphs", 11: "sparse_tensor", 12: "sparse_tensors",
                   13: "type_proto", 14: "type_protos"}   # AttributeProto.AttributeType, 0 = UNDEFINED
REQUIRED = object()                     # Node.attr's default: the attribute must be present
MAX_NODES = 2 ** 18                     # nodes in a graph; real CNNs have thousands
MAX_LIST_ENTRIES = 2 ** 20              # entries of a list attribute or of a shape-like operand


@dataclass(frozen=True)
class Node:
    """One ONNX node: its unique refcam name, op type, tensor names ('' = omitted input) and attributes.

    ``attributes`` holds the decoded values (ints, floats, str, lists, tensors as
    arrays; None for subgraphs and types, never decoded), ``kinds`` their ONNX
    attribute types (``"int"``, ``"floats"``, ``"tensor"``, ...).
    """

    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    kinds: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    proto: Any = field(default=None, hash=False, compare=False, repr=False)

    def attr(self, key: str, kind: str, default: Any = REQUIRED) -> Any:
        """Attribute ``key``, which must be of ONNX type ``kind``; ``default`` when the node lacks it.

        Rule: an attribute of another type (an int where ONNX defines a float, a
        string where it defines ints, ...) is a FileFormatError naming the node,
        the attribute and both types; a missing attribute without a ``default`` is
        one too (ONNX requires it).

        >>> Node("n", "Conv", "", ("x",), ("y",), {"group": 2}, {"group": "int"}).attr("group", "int", 1)
        2
        """
        if key not in self.attributes:
            if default is REQUIRED:
                raise FileFormatError(f"{self.label} lacks its required attribute {key!r} ({kind}).")
            return default
        if self.kinds[key] != kind:
            raise FileFormatError(f"{self.label}: attribute {key!r} is of type {self.kinds[key]}, but ONNX "
                                  f"defines it as {kind}; the file is corrupt or hand-edited.")
        return self.attributes[key]

    @property
    def label(self) -> str:
        """``node 'conv1' (Conv)`` for messages."""
        return f"node {self.name!r} ({self.op_type})"


@dataclass(frozen=True)
class GraphInput:
    """The graph input: its name, element type and dims (None for a named or missing dim)."""

    name: str
    elem_type: int
    dims: tuple[int | None, ...]


@dataclass
class Graph:
    """What the importer needs from a model: constants, the input, the output and nodes in data-flow order."""

    name: str
    opset: int
    initializers: dict[str, np.ndarray]
    input: GraphInput
    output: str
    nodes: list[Node]
    consumers: dict[str, list[Node]]
    unknown: frozenset[str] = frozenset()   # names of the nodes whose operator refcam does not import


@dataclass(frozen=True)
class Value:
    """A tensor computed by the network: the output of refcam layer ``layer``.

    ``shape`` is the refcam per-observation shape ``(C, *S)`` (None: a free time
    axis). ONNX may see the same numbers laid out differently:

    * ``perm``: ONNX's per-observation axes are refcam's permuted,
      ``onnx_obs = refcam_obs.transpose(perm)`` (a Transpose not yet undone);
    * ``squeezed``: ONNX dropped the size-1 spatial axes (a reduction with
      ``keepdims=0``), so it sees ``(C,)``;
    * ``pending_padding``: internal ``(begins..., ends...)`` zero padding of a Pad
      node that the next (and only) consumer, a convolution, absorbs;
    * ``channel_groups``: ONNX holds the channel axis split in two, ``(g, C / g)``
      (a Reshape, as in a channel shuffle), so
      ``onnx_obs = refcam_obs.reshape(g, C / g, *S).transpose(perm)`` with ``perm``
      over those ``N + 2`` axes;
    * ``inserted``: ONNX holds extra size-1 axes at these per-observation
      positions (an Unsqueeze not yet undone; ``perm`` is then the identity).

    The last two are views only a few converters read (``views_ok`` of
    :meth:`ImportState.value`); every other converter refuses them.
    """

    layer: str
    shape: tuple[int | None, ...]
    perm: tuple[int, ...] = ()
    squeezed: bool = False
    pending_padding: tuple[int, ...] | None = None
    channel_groups: int | None = None
    inserted: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.perm:
            split = 0 if self.channel_groups is None else 1
            object.__setattr__(self, "perm", tuple(range(len(self.shape) + split)))

    @property
    def onnx_shape(self) -> tuple[int | None, ...]:
        """The per-observation shape ONNX sees (without the batch axis)."""
        if self.squeezed:
            return (self.shape[0],)
        axes = self.shape
        if self.channel_groups is not None:
            axes = (self.channel_groups, self.shape[0] // self.channel_groups, *self.shape[1:])
        seen = [axes[axis] for axis in self.perm]
        for position in self.inserted:
            seen.insert(position, 1)
        return tuple(seen)

    @property
    def is_view(self) -> bool:
        """True when ONNX holds the channel axis split in groups or extra size-1 axes."""
        return self.channel_groups is not None or bool(self.inserted)

    @property
    def onnx_rank(self) -> int:
        """ONNX rank including the batch axis."""
        return 1 + len(self.onnx_shape)

    @property
    def is_plain(self) -> bool:
        """True when ONNX and refcam lay the tensor out alike and no pad is pending."""
        return (self.perm == tuple(range(len(self.shape))) and not self.squeezed
                and self.pending_padding is None and not self.is_view)

    def transposed(self, onnx_perm: tuple[int, ...]) -> "Value":
        """The Value after an ONNX Transpose with ``onnx_perm`` (batch axis first, kept in place)."""
        per_observation = [axis - 1 for axis in onnx_perm[1:]]
        return replace(self, perm=tuple(self.perm[axis] for axis in per_observation))


# --- reading the model ------------------------------------------------------------
def read_graph(model: Any, source: str, known_operators: Collection[str],
               max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> Graph:
    """Check ``model`` (a ``ModelProto``) and return its :class:`Graph` (module docstring).

    ``known_operators``: the op types of the default domain that refcam imports;
    the attributes and initializers of the kept nodes are decoded only after
    every kept node passed that check.
    """
    graph = model.graph
    if not graph.output or (not graph.node and not graph.input):
        raise FileFormatError(
            f"{source}: the ONNX model has no graph (no nodes, inputs or outputs); the file is not "
            "an ONNX model, or it is truncated.")
    if len(graph.node) > MAX_NODES:
        raise DeclaredSizeError(f"{source}: the graph has {len(graph.node)} nodes; refcam imports graphs of at "
                                f"most {MAX_NODES} nodes.")
    opset = _default_opset(model, source)
    initializer_protos = _initializer_protos(graph, source)
    graph_input = _single_input(graph, initializer_protos, source)
    if len(graph.output) != 1:
        raise UnsupportedOperationError(
            f"{source}: the graph has {len(graph.output)} outputs "
            f"({_listed([o.name for o in graph.output])}); a refcam network has exactly one.")
    output = text(graph.output[0].name, "the name of the graph output", source)
    available = set(initializer_protos) | {graph_input.name}
    kept = _needed_nodes(_named_nodes(graph, graph_input.name, source), output, available, source)
    ordered = _data_flow_order(kept, available)
    unknown = unknown_operator_nodes(ordered, known_operators)
    ordered = [node if node.name in unknown else _with_attributes(node, source, max_tensor_bytes)
               for node in ordered]
    consumers: dict[str, list[Node]] = {}
    for node in ordered:
        for tensor in node.inputs:
            if tensor:
                consumers.setdefault(tensor, []).append(node)
    return Graph(name=text(graph.name, "the graph name", source), opset=opset,
                 initializers=_initializer_arrays(initializer_protos,
                                                  [node for node in ordered if node.name not in unknown],
                                                  source, max_tensor_bytes),
                 input=graph_input, output=output, nodes=ordered, consumers=consumers, unknown=unknown)


def text(value: Any, what: str, source: str) -> str:
    """A protobuf string field as ``str``.

    Rule: ONNX strings are UTF-8; protobuf hands other bytes over undecoded, and
    those are a FileFormatError naming the field (``what``).
    """
    if isinstance(value, str):
        return value
    raise FileFormatError(f"{source}: {what} {bytes(value)[:40]!r} is not UTF-8 text, as ONNX requires; the "
                          "file is corrupt.")


def _listed(names: Sequence[Any], limit: int = 10) -> str:
    """``['a', 'b', ...]`` with at most ``limit`` names, then how many more."""
    shown = ", ".join(repr(n) for n in names[:limit])
    return f"[{shown}" + (f", ... and {len(names) - limit} more]" if len(names) > limit else "]")


def _default_opset(model: Any, source: str) -> int:
    """The version of the default operator set; a model importing none, or a version below 1, is refused."""
    versions = [entry.version for entry in model.opset_import
                if text(entry.domain, "an opset_import domain", source) in DEFAULT_DOMAINS]
    if not versions:
        raise FileFormatError(f"{source}: the model imports no version of the default ONNX operator "
                              "set (opset_import), so its operators cannot be interpreted.")
    if versions[0] < 1:
        raise FileFormatError(f"{source}: the model imports version {versions[0]} of the default ONNX "
                              "operator set; versions start at 1.")
    return int(versions[0])


def _initializer_protos(graph: Any, source: str) -> dict[str, Any]:
    """The initializers by name, undecoded (external data is read later, inside the model's folder only).

    A sparse initializer is refused (its parts kept in another file, as external references).
    """
    for sparse in graph.sparse_initializer:
        for part in (sparse.values, sparse.indices):
            refuse_external_data(part, "a sparse initializer", source)
    if len(graph.sparse_initializer):
        raise UnsupportedOperationError(f"{source}: sparse initializers are not supported; store the "
                                        "weights as dense tensors.")
    protos: dict[str, Any] = {}
    for tensor in graph.initializer:
        name = text(tensor.name, "the name of an initializer", source)
        if name in protos:
            raise FileFormatError(f"{source}: two initializers are named {name!r}; tensor names must be unique.")
        protos[name] = tensor
    return protos


def _initializer_arrays(protos: dict[str, Any], nodes: list[Node], source: str,
                        max_tensor_bytes: int) -> dict[str, np.ndarray]:
    """The initializers the kept nodes read, decoded by :func:`decoded_tensor` (named with their first reader)."""
    readers: dict[str, Node] = {}
    for node in nodes:
        for tensor in node.inputs:
            if tensor in protos:
                readers.setdefault(tensor, node)
    data_folder = os.path.dirname(os.path.abspath(source))
    return {name: decoded_tensor(protos[name], f"initializer {name!r} (read by {node.label})", source,
                                 max_tensor_bytes, data_folder=data_folder)
            for name, node in readers.items()}


def decoded_tensor(tensor: Any, where: str, source: str, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
                   *, data_folder: str | None = None) -> np.ndarray:
    """A ``TensorProto`` as float64 or int64, from the model file or (initializers) its folder.

    Rule: decoded by :func:`refcam.io.safe.onnx_tensor_array` only (element type and
    declared dims checked against the budget first; external data read only with
    ``data_folder``, from a file inside it, else refused), then
    :func:`as_number_array`; a float tensor holding NaN or Inf is a
    NonFiniteParameterError naming ``where``.
    """
    array = as_number_array(onnx_tensor_array(tensor, where, source, max_tensor_bytes, data_folder=data_folder),
                            f"{source}: {where}")
    if array.dtype.kind == "f":
        check_finite(array, where, source)
    return array


def as_number_array(array: Any, where: str = "a tensor") -> np.ndarray:
    """Floats as float64, integers and booleans as int64; any other dtype is an UnsupportedOperationError."""
    array = np.asarray(array)
    if array.dtype.kind == "f" or array.dtype.name == "bfloat16":
        return array.astype(np.float64)
    if array.dtype.kind in "iub":
        return array.astype(np.int64)
    raise UnsupportedOperationError(f"{where} has the element type {array.dtype}; refcam imports float, "
                                    "integer and boolean tensors.")


def _single_input(graph: Any, initializers: dict[str, Any], source: str) -> GraphInput:
    inputs = [value for value in graph.input
              if text(value.name, "the name of a graph input", source) not in initializers]
    if len(inputs) != 1:
        raise UnsupportedOperationError(
            f"{source}: the graph has {len(inputs)} inputs that are not initializers "
            f"({_listed([value.name for value in inputs])}); a refcam network has exactly one input.")
    (value,) = inputs
    tensor_type = value.type.tensor_type
    dims = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    return GraphInput(name=value.name or "input", elem_type=int(tensor_type.elem_type), dims=dims)


def _named_nodes(graph: Any, input_name: str, source: str) -> list[Node]:
    """Every node with a unique refcam name (module docstring), its names checked, attributes not yet decoded."""
    taken = {input_name}
    next_suffix: dict[str, int] = {}
    nodes = []
    for index, proto in enumerate(graph.node):
        what = f"node #{index}"
        op_type = text(proto.op_type, f"the op_type of {what}", source)
        base = text(proto.name, f"the name of {what}", source) or f"{op_type}_{index}"
        name, suffix = base, next_suffix.get(base, 2)
        while name in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        next_suffix[base] = suffix
        taken.add(name)
        _refuse_external_attributes(proto, f"node {name!r} ({op_type})", source)
        nodes.append(Node(name=name, op_type=op_type, domain=text(proto.domain, f"the domain of {what}", source),
                          inputs=tuple(text(t, f"an input name of {what}", source) for t in proto.input),
                          outputs=tuple(text(t, f"an output name of {what}", source) for t in proto.output),
                          proto=proto))
    return nodes


def _refuse_external_attributes(proto: Any, label: str, source: str) -> None:
    """ExternalReferenceError when a tensor attribute of node ``proto`` (dense or sparse) keeps its data in
    another file; checked for every node of the graph, kept or not, before anything is decoded."""
    for attribute in proto.attribute:
        tensors = [attribute.t, *attribute.tensors]
        for sparse in [attribute.sparse_tensor, *attribute.sparse_tensors]:
            tensors += [sparse.values, sparse.indices]
        for tensor in tensors:
            refuse_external_data(tensor, f"{label}: attribute {attribute.name!r}", source)


def unknown_operator_nodes(nodes: list[Node], known_operators: Collection[str]) -> frozenset[str]:
    """The names of the nodes whose operator (or domain) refcam does not import.

    Rule: such a node is never decoded (its attributes and the initializers only it
    reads stay unread); the importer lists it with every other refused node in one
    UnsupportedOperationError.
    """
    return frozenset(node.name for node in nodes
                     if node.domain not in DEFAULT_DOMAINS or node.op_type not in known_operators)


def qualified_op_type(node: Node) -> str:
    """``Relu`` for the default domain, ``com.example::Mystery`` for another."""
    return node.op_type if node.domain in DEFAULT_DOMAINS else f"{node.domain}::{node.op_type}"


def _with_attributes(node: Node, source: str, max_tensor_bytes: int) -> Node:
    """``node`` with its attributes decoded (:func:`_attribute_value`).

    Rule: every attribute has a unique UTF-8 name and a defined ONNX type
    (UNDEFINED is a FileFormatError).
    """
    values: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    for proto in node.proto.attribute:
        key = text(proto.name, f"an attribute name of {node.label}", source)
        where = f"{node.label}: attribute {key!r}"
        if key in values:
            raise FileFormatError(f"{source}: {node.label} has two attributes named {key!r}.")
        kinds[key] = ATTRIBUTE_KINDS.get(int(proto.type), "")
        if not kinds[key]:
            raise FileFormatError(f"{source}: {where} has no valid ONNX type (AttributeProto type "
                                  f"{proto.type}); the file is corrupt.")
        values[key] = _attribute_value(proto, kinds[key], where, source, max_tensor_bytes)
    return replace(node, attributes=values, kinds=kinds)


def _attribute_value(proto: Any, kind: str, where: str, source: str, max_tensor_bytes: int) -> Any:
    """The value of an ``AttributeProto`` of type ``kind``.

    Rule: floats must be finite (NonFiniteParameterError), strings UTF-8, lists at
    most :data:`MAX_LIST_ENTRIES` long, tensors go through :func:`decoded_tensor`;
    sparse tensors, subgraphs and type protos are left undecoded (None): no
    operator refcam imports reads one.
    """
    repeated = {"ints": proto.ints, "floats": proto.floats, "strings": proto.strings,
                "tensors": proto.tensors}.get(kind, ())
    if len(repeated) > MAX_LIST_ENTRIES:
        raise DeclaredSizeError(f"{source}: {where} lists {len(repeated)} values; refcam reads attribute lists of "
                                f"at most {MAX_LIST_ENTRIES}.")
    if kind in ("int", "ints"):
        return int(proto.i) if kind == "int" else [int(v) for v in repeated]
    if kind in ("float", "floats"):
        values = finite_floats([proto.f] if kind == "float" else repeated, where, source)
        return values[0] if kind == "float" else values
    if kind in ("string", "strings"):
        values = [_utf8(s, where, source) for s in ([proto.s] if kind == "string" else repeated)]
        return values[0] if kind == "string" else values
    if kind in ("tensor", "tensors"):
        if kind == "tensor":
            return decoded_tensor(proto.t, where, source, max_tensor_bytes)
        return [decoded_tensor(t, f"{where} #{i}", source, max_tensor_bytes) for i, t in enumerate(repeated)]
    return None


def finite_floats(values: Iterable[Any], where: str, source: str) -> list[float]:
    """``values`` as Python floats; NonFiniteParameterError naming ``where`` when one is NaN or Inf."""
    floats = [float(v) for v in values]
    bad = [v for v in floats if not math.isfinite(v)]
    if bad:
        raise NonFiniteParameterError(f"{source}: {where} holds {len(bad)} NaN or Inf value(s) ({bad[0]}); "
                                      "weights and attributes must be finite.")
    return floats


def _utf8(raw: bytes, where: str, source: str) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as err:
        raise FileFormatError(f"{source}: {where} is not UTF-8 text ({bytes(raw)[:40]!r}); the file is "
                              "corrupt.") from err


def _needed_nodes(nodes: list[Node], output: str, available: set[str], source: str) -> list[Node]:
    """The nodes ``output`` depends on, in file order; a tensor nobody produces is a FileFormatError."""
    producer: dict[str, Node] = {}
    for node in nodes:
        for tensor in node.outputs:
            if tensor in producer and tensor:
                raise FileFormatError(f"{source}: tensor {tensor!r} is produced by two nodes, "
                                      f"{producer[tensor].name!r} and {node.name!r}.")
            producer[tensor] = node
    needed: set[str] = set()
    stack = [(output, "the graph output")]
    while stack:
        tensor, reader = stack.pop()
        if not tensor or tensor in available:
            continue
        if tensor not in producer:
            raise FileFormatError(f"{source}: tensor {tensor!r} (read by {reader}) is produced by no "
                                  "node, initializer or graph input; the graph is incomplete.")
        node = producer[tensor]
        if node.name not in needed:
            needed.add(node.name)
            stack.extend((name, node.label) for name in node.inputs)
    return [node for node in nodes if node.name in needed]


def _data_flow_order(nodes: list[Node], available: set[str]) -> list[Node]:
    """Kahn's algorithm over tensors, earliest file position first; CycleError names a cycle."""
    producer = {tensor: index for index, node in enumerate(nodes) for tensor in node.outputs if tensor}
    waiting = [{producer[t] for t in node.inputs if t and t not in available and t in producer}
               for node in nodes]
    readers: dict[int, list[int]] = {}
    for index, sources in enumerate(waiting):
        for source_index in sources:
            readers.setdefault(source_index, []).append(index)
    ready = [index for index, sources in enumerate(waiting) if not sources]
    heapq.heapify(ready)
    order: list[int] = []
    remaining = [len(sources) for sources in waiting]
    while ready:
        index = heapq.heappop(ready)
        order.append(index)
        for reader in readers.get(index, []):
            remaining[reader] -= 1
            if remaining[reader] == 0:
                heapq.heappush(ready, reader)
    if len(order) < len(nodes):
        unordered = {index for index, count in enumerate(remaining) if count > 0}
        raise CycleError(
            "the ONNX graph has a cycle: " + " -> ".join(_cycle(unordered, waiting, nodes))
            + "; an ONNX graph must be acyclic.")
    return [nodes[index] for index in order]


def _cycle(unordered: set[int], waiting: list[set[int]], nodes: list[Node]) -> list[str]:
    """Names along one cycle among the nodes Kahn's algorithm could not order (data-flow order)."""
    path: list[int] = []
    current = min(unordered)
    while current not in path:
        path.append(current)
        current = min(source for source in waiting[current] if source in unordered)
    loop = path[path.index(current):][::-1]
    return [nodes[index].name for index in loop + loop[:1]]


# --- checks shared by the folders and the converters ------------------------------------
def check_axis(node: Node, axis: int, rank: int, what: str = "axis", *, end_allowed: bool = False) -> int:
    """``axis`` as an index from 0, after checking it lies in ``[-rank, rank - 1]`` (``[-rank, rank]``
    when ``end_allowed``, Flatten's rule); a negative axis counts from the end.

    Rule: any other axis is a FileFormatError naming the node, the axis and the
    rank (NumPy would wrap it or fail).

    >>> check_axis(Node("n", "Softmax", "", ("x",), ("y",)), -1, 4)
    3
    """
    top = rank if end_allowed else rank - 1
    if not -rank <= axis <= top:
        raise FileFormatError(f"{node.label}: {what} {axis} is out of range for a rank-{rank} tensor; ONNX "
                              f"allows {-rank} to {top}.")
    return axis + rank if axis < 0 else axis


def check_axes(node: Node, axes: Iterable[int], rank: int, what: str = "axes") -> list[int]:
    """Every entry of ``axes`` through :func:`check_axis`; an axis named twice is a FileFormatError."""
    listed = list(axes)
    normalized = [check_axis(node, axis, rank, f"{what} {listed}: axis") for axis in listed]
    if len(set(normalized)) != len(normalized):
        raise FileFormatError(f"{node.label}: {what} {listed} name an axis twice (rank {rank}).")
    return normalized


def check_permutation(node: Node, perm: Sequence[int], rank: int) -> tuple[int, ...]:
    """``perm`` as a tuple after checking it is a permutation of ``0 .. rank - 1``, else a FileFormatError."""
    if sorted(perm) != list(range(rank)):
        raise FileFormatError(f"{node.label}: perm {list(perm)} is not a permutation of the axes 0 to "
                              f"{rank - 1} of its rank-{rank} input.")
    return tuple(perm)


def ints_attribute(node: Node, key: str, count: int, default: int, minimum: int = 1) -> tuple[int, ...]:
    """The ints attribute ``key`` (``default`` repeated when absent): ``count`` entries, each ``>= minimum``.

    Rule: strides, dilations and kernel sizes are at least 1, pads at least 0;
    a wrong count or a smaller entry is a FileFormatError (a stride of 0 would
    divide by zero). Upper bounds are the layers' (LayerConfigError).
    """
    values = tuple(node.attr(key, "ints", [default] * count))
    if len(values) != count:
        raise FileFormatError(f"{node.label}: {key} {list(values)} should hold {count} numbers.")
    if any(v < minimum for v in values):
        raise FileFormatError(f"{node.label}: {key} {list(values)} must be integers of at least {minimum}.")
    return values


def int_list(node: Node, array: Any, what: str) -> list[int]:
    """A constant operand ONNX defines as a 1-D integer tensor (a shape, axes, pads, starts ...) as Python ints.

    Rule: a float or higher-rank tensor is a FileFormatError naming the node and
    the operand; more than :data:`MAX_LIST_ENTRIES` entries a DeclaredSizeError.
    """
    array = np.asarray(array)
    if array.dtype.kind not in "iu" or array.ndim > 1:
        raise FileFormatError(f"{node.label}: {what} is a {array.dtype} tensor of shape {array.shape}; ONNX "
                              "defines it as a 1-D integer tensor.")
    if array.size > MAX_LIST_ENTRIES:
        raise DeclaredSizeError(f"{node.label}: {what} holds {array.size} entries; refcam reads at most "
                                f"{MAX_LIST_ENTRIES}.")
    return [int(v) for v in array.reshape(-1)]


# --- the conversion in progress ---------------------------------------------------------
class ImportState:
    """Constants, values and refcam layers built so far, and the nodes fused into earlier layers."""

    def __init__(self, graph: Graph, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> None:
        self.graph = graph
        self.max_tensor_bytes = max_tensor_bytes
        self.constants: dict[str, np.ndarray] = dict(graph.initializers)
        self.values: dict[str, Value] = {}
        self.layers: list[Any] = []
        self.fused: set[str] = set()

    @property
    def opset(self) -> int:
        """Version of the default ONNX operator set the model uses."""
        return self.graph.opset

    def has_input(self, node: Node, index: int) -> bool:
        """True when input ``index`` of ``node`` is given (not omitted)."""
        return index < len(node.inputs) and bool(node.inputs[index])

    def is_constant(self, tensor: str) -> bool:
        """True for initializers, Constant outputs and folded tensors."""
        return tensor in self.constants

    def constant(self, node: Node, index: int, *, optional: bool = False) -> np.ndarray | None:
        """Input ``index`` of ``node`` as a constant array (None when optional and omitted)."""
        if not self.has_input(node, index):
            if optional:
                return None
            raise FileFormatError(f"{node.label} lacks its required input #{index}.")
        tensor = node.inputs[index]
        if tensor not in self.constants:
            raise UnsupportedOperationError(
                f"{node.label}: input #{index} ({tensor!r}) must be a constant (an initializer or a "
                "Constant node), but the network computes it; refcam imports this operation with "
                "constant weights only.")
        return self.constants[tensor]

    def scalar(self, node: Node, index: int, default: float) -> float:
        """Optional constant input ``index`` holding one number, as a float (``default`` when omitted or empty).

        Rule: a constant of more than one element is a FileFormatError (ONNX defines a scalar).
        """
        array = self.constant(node, index, optional=True)
        if array is None or array.size == 0:
            return default
        if array.size != 1:
            raise FileFormatError(f"{node.label}: input #{index} ({node.inputs[index]!r}) has shape {array.shape}; "
                                  "ONNX defines it as a single number.")
        return float(array.reshape(-1)[0])

    def value(self, node: Node, index: int, *, plain: bool = True,
              pending_padding_ok: bool = False, views_ok: bool = False) -> Value:
        """Input ``index`` of ``node`` as a network-computed :class:`Value`.

        ``plain``: refuse a tensor ONNX holds transposed or squeezed (the op is
        imported in the (batch, channel, spatial...) layout only). ``views_ok``:
        accept a tensor whose channels ONNX holds split in groups or that has
        inserted size-1 axes (refused otherwise, whatever ``plain`` says).
        """
        tensor = node.inputs[index] if index < len(node.inputs) else ""
        if tensor not in self.values:
            what = "a constant" if tensor in self.constants else "not computed by an imported layer"
            raise UnsupportedOperationError(
                f"{node.label}: input #{index} ({tensor!r}) is {what}, but refcam imports this "
                "operation only on tensors the network computes from its input.")
        value = self.values[tensor]
        if value.pending_padding is not None and not pending_padding_ok:
            raise UnsupportedOperationError(f"{node.label} reads the output of a Pad fused elsewhere.")
        if value.is_view and not views_ok:
            raise UnsupportedOperationError(
                f"{node.label} reads {tensor!r}, which ONNX holds with per-observation shape "
                f"{value.onnx_shape} ({_layout_text(value)}); refcam imports this operation only on tensors "
                "laid out (batch, channel, spatial...): the Reshape or Unsqueeze must be undone first.")
        if plain and (value.squeezed or value.perm != tuple(range(len(value.shape)))):
            raise UnsupportedOperationError(
                f"{node.label} reads {tensor!r}, which ONNX holds with per-observation shape "
                f"{value.onnx_shape} ({_layout_text(value)}); refcam imports this operation only on "
                "tensors laid out (batch, channel, spatial...).")
        return value

    def consumers(self, tensor: str) -> list[Node]:
        """The kept nodes reading ``tensor``."""
        return self.graph.consumers.get(tensor, [])

    def sole_consumer(self, tensor: str) -> Node | None:
        """The one node reading ``tensor`` when there is exactly one and ``tensor`` is not the graph output."""
        readers = self.consumers(tensor)
        if len(readers) == 1 and tensor != self.graph.output:
            return readers[0]
        return None

    def add(self, node: Node, cls: type, sources: list[Value], *, output: str | None = None,
            layout_from: Value | None = None, **properties: Any) -> Value:
        """Build layer ``cls`` named after ``node`` on ``sources`` and record its output tensor.

        ``layout_from``: an element-wise layer keeps that input's ONNX layout
        (transposed or squeezed) for its output. The layer's own validation
        errors are re-raised as FileFormatError naming the node (DeclaredSizeError
        for a layer over refcam's size limits).
        """
        try:
            layer = cls(name=node.name, inputs=tuple(value.layer for value in sources), **properties)
            shape = tuple(layer.output_shape(*(value.shape for value in sources)))
        except (LayerConfigError, LayerShapeError) as err:
            raise FileFormatError(f"{node.label}: {err}") from err
        except SizeLimitError as err:
            raise DeclaredSizeError(f"{node.label}: {err}") from err
        self.layers.append(layer)
        value = Value(layer.name, shape) if layout_from is None else replace(
            layout_from, layer=layer.name, shape=shape)
        self.values[output or node.outputs[0]] = value
        return value

    def alias(self, node: Node, value: Value, index: int = 0) -> None:
        """Output ``index`` of ``node`` is ``value`` itself (Identity, no-op reshapes, transposes)."""
        self.values[node.outputs[index]] = value

    def check_unused_outputs(self, node: Node, first_unused: int = 1) -> None:
        """Refuse a node whose optional outputs (masks, indices, statistics) something reads."""
        used = [t for t in node.outputs[first_unused:] if t and (self.consumers(t) or t == self.graph.output)]
        if used:
            raise UnsupportedOperationError(
                f"{node.label}: its extra output(s) {used} are used; refcam imports only the first "
                "output (inference).")


def _layout_text(value: Value) -> str:
    if value.squeezed:
        return "its size-1 spatial axes squeezed away"
    if value.channel_groups is not None:
        return f"its channel axis reshaped into {value.channel_groups} groups"
    if value.inserted:
        return f"size-1 axes inserted at per-observation positions {list(value.inserted)}"
    return f"transposed by {list(value.perm)} relative to (channel, spatial...)"
