"""The ONNX graph as the importer walks it: parsed nodes, data-flow order, constants, refcam values.

Reading (:func:`read_graph`) turns a ``ModelProto`` into plain Python objects and
checks the structure before anything is converted:

* initializers become NumPy arrays (floats as float64, which holds float32 and
  float16 exactly; integers as int64); an initializer stored in an external file
  is refused (refcam reads one file and nothing it points to);
* exactly one graph input that is not an initializer, and exactly one output;
* only the nodes the output depends on are kept (walking back from the output);
* every tensor a kept node reads is produced by one node, an initializer or the
  graph input, otherwise :class:`~refcam.errors.FileFormatError`;
* the kept nodes are put in data-flow order by Kahn's algorithm (file order among
  the ready ones); nodes left over lie on a cycle: :class:`~refcam.errors.CycleError`
  names one.

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
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import (CycleError, FileFormatError, LayerConfigError, LayerShapeError,
                      UnsupportedOperationError)

DEFAULT_DOMAINS = ("", "ai.onnx")
FLOAT_ELEMENT_TYPES = (1, 10, 11, 16)   # FLOAT, FLOAT16, DOUBLE, BFLOAT16 (TensorProto enum)
EXTERNAL = 1                            # TensorProto.DataLocation.EXTERNAL


@dataclass(frozen=True)
class Node:
    """One ONNX node: its unique refcam name, op type, tensor names ('' = omitted input) and attributes."""

    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def attr(self, key: str, default: Any = None) -> Any:
        """Attribute ``key`` (ints, floats, strings decoded, tensors as arrays), or ``default``."""
        return self.attributes.get(key, default)

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
      node that the next (and only) consumer, a convolution, absorbs.
    """

    layer: str
    shape: tuple[int | None, ...]
    perm: tuple[int, ...] = ()
    squeezed: bool = False
    pending_padding: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.perm:
            object.__setattr__(self, "perm", tuple(range(len(self.shape))))

    @property
    def onnx_shape(self) -> tuple[int | None, ...]:
        """The per-observation shape ONNX sees (without the batch axis)."""
        if self.squeezed:
            return (self.shape[0],)
        return tuple(self.shape[axis] for axis in self.perm)

    @property
    def onnx_rank(self) -> int:
        """ONNX rank including the batch axis."""
        return 1 + len(self.onnx_shape)

    @property
    def is_plain(self) -> bool:
        """True when ONNX and refcam lay the tensor out alike and no pad is pending."""
        return (self.perm == tuple(range(len(self.shape))) and not self.squeezed
                and self.pending_padding is None)

    def transposed(self, onnx_perm: tuple[int, ...]) -> "Value":
        """The Value after an ONNX Transpose with ``onnx_perm`` (batch axis first, kept in place)."""
        per_observation = [axis - 1 for axis in onnx_perm[1:]]
        return replace(self, perm=tuple(self.perm[axis] for axis in per_observation))


# --- reading the model ------------------------------------------------------------
def read_graph(model: Any, source: str) -> Graph:
    """Check ``model`` (a ``ModelProto``) and return its :class:`Graph` (module docstring)."""
    from onnx import numpy_helper

    graph = model.graph
    if not graph.output or (not graph.node and not graph.input):
        raise FileFormatError(
            f"{source}: the ONNX model has no graph (no nodes, inputs or outputs); the file is not "
            "an ONNX model, or it is truncated.")
    opset = _default_opset(model, source)
    initializers = {tensor.name: _initializer_array(tensor, numpy_helper, source)
                    for tensor in graph.initializer}
    if len(graph.sparse_initializer):
        raise UnsupportedOperationError(f"{source}: sparse initializers are not supported; store the "
                                        "weights as dense tensors.")
    graph_input = _single_input(graph, initializers, source)
    if len(graph.output) != 1:
        raise UnsupportedOperationError(
            f"{source}: the graph has {len(graph.output)} outputs "
            f"({[o.name for o in graph.output]}); a refcam network has exactly one.")
    output = graph.output[0].name
    nodes = _named_nodes(graph, graph_input.name)
    kept = _needed_nodes(nodes, output, set(initializers) | {graph_input.name}, source)
    ordered = _data_flow_order(kept, set(initializers) | {graph_input.name})
    consumers: dict[str, list[Node]] = {}
    for node in ordered:
        for tensor in node.inputs:
            if tensor:
                consumers.setdefault(tensor, []).append(node)
    return Graph(name=graph.name, opset=opset, initializers=initializers, input=graph_input,
                 output=output, nodes=ordered, consumers=consumers)


def _default_opset(model: Any, source: str) -> int:
    versions = [entry.version for entry in model.opset_import if entry.domain in DEFAULT_DOMAINS]
    if not versions:
        raise FileFormatError(f"{source}: the model imports no version of the default ONNX operator "
                              "set (opset_import), so its operators cannot be interpreted.")
    return int(versions[0])


def _initializer_array(tensor: Any, numpy_helper: Any, source: str) -> np.ndarray:
    """An initializer as float64 (floats) or int64 (integers); external data refused."""
    if tensor.data_location == EXTERNAL:
        raise FileFormatError(
            f"{source}: initializer {tensor.name!r} is stored in an external file; refcam reads only "
            "the model file. Save the model with its weights inside "
            "(onnx.save(model, path, save_as_external_data=False)).")
    try:
        array = numpy_helper.to_array(tensor)
    except (ValueError, TypeError) as err:
        raise FileFormatError(f"{source}: initializer {tensor.name!r} cannot be read ({err}); "
                              "the file is corrupt.") from err
    return as_number_array(array)


def as_number_array(array: Any) -> np.ndarray:
    """Floats as float64, integers and booleans as int64."""
    array = np.asarray(array)
    if array.dtype.kind == "f" or array.dtype.name == "bfloat16":
        return array.astype(np.float64)
    if array.dtype.kind in "iub":
        return array.astype(np.int64)
    raise UnsupportedOperationError(f"tensors of dtype {array.dtype} are not supported.")


def _single_input(graph: Any, initializers: dict[str, np.ndarray], source: str) -> GraphInput:
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise UnsupportedOperationError(
            f"{source}: the graph has {len(inputs)} inputs that are not initializers "
            f"({[value.name for value in inputs]}); a refcam network has exactly one input.")
    (value,) = inputs
    tensor_type = value.type.tensor_type
    dims = tuple(int(d.dim_value) if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
    return GraphInput(name=value.name or "input", elem_type=int(tensor_type.elem_type), dims=dims)


def _named_nodes(graph: Any, input_name: str) -> list[Node]:
    """Every node with a unique refcam name (module docstring) and decoded attributes."""
    from onnx import helper, numpy_helper

    taken = {input_name}
    nodes = []
    for index, proto in enumerate(graph.node):
        base = proto.name or f"{proto.op_type}_{index}"
        name, suffix = base, 2
        while name in taken:
            name, suffix = f"{base}_{suffix}", suffix + 1
        taken.add(name)
        attributes = {a.name: _attribute_value(helper.get_attribute_value(a), numpy_helper)
                      for a in proto.attribute}
        nodes.append(Node(name=name, op_type=proto.op_type, domain=proto.domain,
                          inputs=tuple(proto.input), outputs=tuple(proto.output), attributes=attributes))
    return nodes


def _attribute_value(value: Any, numpy_helper: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if hasattr(value, "dims") and hasattr(value, "data_type"):
        return as_number_array(numpy_helper.to_array(value))
    if isinstance(value, list):
        return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else v for v in value]
    return value


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


# --- the conversion in progress ---------------------------------------------------------
class ImportState:
    """Constants, values and refcam layers built so far, and the nodes fused into earlier layers."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
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

    def value(self, node: Node, index: int, *, plain: bool = True,
              pending_padding_ok: bool = False) -> Value:
        """Input ``index`` of ``node`` as a network-computed :class:`Value`.

        ``plain``: refuse a tensor ONNX holds transposed or squeezed (the op is
        imported in the (batch, channel, spatial...) layout only).
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
        errors are re-raised as FileFormatError naming the node.
        """
        try:
            layer = cls(name=node.name, inputs=tuple(value.layer for value in sources), **properties)
            shape = tuple(layer.output_shape(*(value.shape for value in sources)))
        except (LayerConfigError, LayerShapeError) as err:
            raise FileFormatError(f"{node.label}: {err}") from err
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
    return f"transposed by {list(value.perm)} relative to (channel, spatial...)"
