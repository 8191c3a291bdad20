"""Parse a Keras ``model_config``: typed config readers and the layer graph in dependency order.

Part of the Keras HDF5 importer (:mod:`refcam.io.keras_h5` describes the whole
format). Only JSON is read here; nothing in the file is executed.

Connections come from each layer's ``inbound_nodes``, in three spellings:

* Keras 2 lists, one node per call: ``[[layer, node_index, tensor_index, kwargs], ...]``;
* the flat node tf-keras writes for a ``TFOpLambda`` (a TensorFlow function
  called on a Keras tensor): ``[layer, node_index, tensor_index, kwargs]``,
  where the function's other arguments sit in ``kwargs`` (``{"y": 3.0}`` or
  ``{"y": [layer, node_index, tensor_index]}``), and a constant first argument
  is the entry ``["_CONSTANT_VALUE", -1, value, kwargs]``;
* Keras 3 dicts ``{"args": [...], "kwargs": {...}}`` whose tensors are
  ``{"class_name": "__keras_tensor__", "config": {"keras_history": [layer, node, tensor]}}``.
  A layer is called with one argument (a tensor, or a list of tensors for a
  merge layer); a Keras 3 *operation* (``x + 3.0``, ``keras.ops.multiply(a, b)``)
  is written as a layer entry whose ``args`` hold its operands, tensors and
  numbers (a NumPy array as ``{"class_name": "__numpy__", "config": {"value": ...}}``),
  side by side, and whose ``config`` is just ``{"name": ...}``.

Each :class:`KerasLayer` keeps its operands in call order (layer names and
:class:`Constant` values), so arithmetic is read without running anything.
"""
from __future__ import annotations

import collections
from typing import Any, Iterator

from ..errors import CycleError, FileFormatError, UnsupportedOperationError
from .keras_layer import (FUNCTIONAL_CLASSES, MAX_ARGS_DEPTH, Constant, KerasLayer, KerasModel, Operand, _shown,
                          exact_int, layer_entries, layer_from_entry)
from .keras_nested import inline_nested_sequentials

CONSTANT_ENTRY = "_CONSTANT_VALUE"  # tf-keras: a constant first argument of a TFOpLambda
KERAS2_KWARG_OPERANDS = ("TFOpLambda",)   # classes whose Keras 2 node kwargs hold operands (y=...)


# --- parsing the architecture ---------------------------------------------------------------


def parse_model_config(model_config: dict[str, Any], source: str = "model_config",
                       keras_version: str | None = None) -> KerasModel:
    """The layers of a Sequential or functional model config, in dependency order, inputs resolved.

    ``keras_version`` is the file's root attribute of that name (``"2.21.0"``,
    ``"3.15.1"``), when it has one: its major version goes to every layer's
    ``keras_major`` (activations whose meaning changed between versions need it).
    """
    class_name = model_config["class_name"]
    config = model_config["config"]
    if class_name == "Sequential":
        model = _parse_sequential(config, source)
    elif class_name in FUNCTIONAL_CLASSES:
        model = _parse_functional(config, source)
    else:
        raise UnsupportedOperationError(
            f"{source}: the model is a {_shown(class_name)}; refcam imports Sequential and functional models "
            "(a subclassed model has no architecture in the file).")
    major = keras_major_version(keras_version)
    for layer in model.layers:
        layer.keras_major = major
    return model


def keras_major_version(version: Any) -> int | None:
    """The leading integer of a ``keras_version`` string, or None (absent or not ``<int>.<...>``).

    >>> keras_major_version("3.15.1"), keras_major_version("2.21.0"), keras_major_version("x")
    (3, 2, None)
    """
    if not isinstance(version, str):
        return None
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() and len(head) < 4 else None


def _model_name(config: Any, source: str) -> str | None:
    name = config.get("name") if isinstance(config, dict) else None
    if name is not None and not isinstance(name, str):
        raise FileFormatError(f"{source}: the model's 'name' is {_shown(name)}, not a string.")
    return name


def _parse_sequential(config: Any, source: str) -> KerasModel:
    layers = [layer_from_entry(entry, source) for entry in layer_entries(config, source)]
    if not layers:
        raise FileFormatError(f"{source}: the Sequential model has no layers.")
    if layers[0].class_name != "InputLayer":
        layers.insert(0, _implicit_input(layers[0], config, source))
    for previous, layer in zip(layers, layers[1:]):
        layer.inputs = layer.operands = (previous.name,)
    _check_unique_names(layers, source)
    return KerasModel(name=_model_name(config, source), layers=layers, output=layers[-1].name)


def _implicit_input(first: KerasLayer, config: Any, source: str) -> KerasLayer:
    """The input of a Sequential model built with ``input_shape=`` on its first layer."""
    shape = first.get("batch_input_shape") or first.get("batch_shape")
    if shape is None and isinstance(config, dict):
        shape = config.get("build_input_shape")
    if shape is None:
        raise FileFormatError(f"{source}: the Sequential model does not record its input shape "
                              "(no InputLayer, no batch_input_shape); build it with keras.Input first.")
    return KerasLayer(name=f"{first.name}_input", class_name="InputLayer",
                      config={"batch_input_shape": shape}, source=source)


def _parse_functional(config: Any, source: str) -> KerasModel:
    if not isinstance(config, dict):
        raise FileFormatError(f"{source}: a functional model's 'config' must be a JSON object; found "
                              f"{type(config).__name__}.")
    entries = layer_entries(config, source)
    layers = [layer_from_entry(entry, source) for entry in entries]
    for layer, entry in zip(layers, entries):
        _read_inbound_nodes(layer, entry.get("inbound_nodes") or [], source)
    inputs = _endpoint_names(config.get("input_layers"), "input_layers", source)
    outputs = _endpoint_names(config.get("output_layers"), "output_layers", source)
    layers, renamed = inline_nested_sequentials(layers, source)
    outputs = [renamed.get(name, name) for name in outputs]
    for layer in layers:
        _flag_second_calls(layer)
    names = {layer.name for layer in layers}
    for endpoint in inputs + outputs:
        if endpoint not in names:
            raise FileFormatError(f"{source}: 'model_config' names the model endpoint {endpoint!r}, which "
                                  "is not one of its layers.")
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedOperationError(
            f"{source}: the model has {len(inputs)} inputs {inputs} and {len(outputs)} outputs {outputs}; "
            "refcam networks have exactly one input and one output.")
    return KerasModel(name=_model_name(config, source), layers=_dependency_order(layers, source),
                      output=outputs[0], inlined=renamed)


def _endpoint_names(value: Any, key: str, source: str) -> list[str]:
    """``[[name, 0, 0], ...]`` (or one ``[name, 0, 0]``, Keras 3) -> names."""
    if not isinstance(value, list) or not value:
        raise FileFormatError(f"{source}: 'model_config' has no {key!r} list.")
    endpoints = [value] if isinstance(value[0], str) else value
    if not all(isinstance(e, list) and e and isinstance(e[0], str) for e in endpoints):
        raise FileFormatError(f"{source}: {key!r} must hold [layer_name, node_index, tensor_index] "
                              f"entries; found {_shown(value)}.")
    return [e[0] for e in endpoints]


def _read_inbound_nodes(layer: KerasLayer, nodes: Any, source: str) -> None:
    """Set the layer's inputs, operands and history from its first node; a layer called more than once is a problem."""
    if not isinstance(nodes, list):
        raise FileFormatError(f"{source}: layer {layer.name!r} has 'inbound_nodes' that are not a list.")
    if len(nodes) > 1:
        layer.problems.append(f"it is called {len(nodes)} times (a shared layer); refcam layers have "
                              "one call site each")
    if not nodes:
        return
    node = nodes[0]
    if isinstance(node, dict):
        history = _read_dict_node(layer, node, source)
    elif isinstance(node, list):
        history = _read_list_node(layer, node, source)
    else:
        raise FileFormatError(f"{source}: layer {layer.name!r} has an inbound node {_shown(node)} that is "
                              "neither a list nor an object.")
    layer.history = tuple(history)
    layer.inputs = tuple(name for name, _, _ in history)


def _flag_second_calls(layer: KerasLayer) -> None:
    """A problem for an input that is a second call (node index > 0) or a second output (tensor index > 0)."""
    if any(node_index != 0 or tensor_index != 0 for _, node_index, tensor_index in layer.history):
        layer.problems.append("it takes a second call or a second output of another layer; refcam "
                              "layers have one output each")


def _read_list_node(layer: KerasLayer, node: list, source: str) -> list[tuple[str, int, int]]:
    """Keras 2: entries ``[layer, node, tensor, kwargs]`` (or one flat entry); TFOpLambda operands in kwargs."""
    flat = bool(node) and isinstance(node[0], str)
    layer.node_style = "flat" if flat else "list"
    history: list[tuple[str, int, int]] = []
    operands: list[Operand] = []
    kwargs: Any = {}
    for position, entry in enumerate([node] if flat else node):
        if not (isinstance(entry, list) and len(entry) >= 3 and isinstance(entry[0], str)):
            raise FileFormatError(f"{source}: layer {layer.name!r} has an inbound entry {_shown(entry)}; "
                                  "expected [layer_name, node_index, tensor_index, kwargs].")
        if entry[0] == CONSTANT_ENTRY:
            operands.append(Constant(entry[2]))
        else:
            history.append(_history(entry[:3], layer.name, source))
            operands.append(entry[0])
        if position == 0 and len(entry) > 3:
            kwargs = entry[3]
    if layer.class_name in KERAS2_KWARG_OPERANDS:
        if not isinstance(kwargs, dict):
            raise FileFormatError(f"{source}: layer {layer.name!r} has call arguments {_shown(kwargs)} that "
                                  "are not a JSON object.")
        for key, value in kwargs.items():
            if key != "y":
                layer.call_kwargs[key] = value
            elif _is_history(value):
                history.append(_history(value, layer.name, source))
                operands.append(value[0])
            else:
                operands.append(Constant(value))
    layer.operands = tuple(operands)
    return history


def _is_history(value: Any) -> bool:
    """A Keras 2 tensor reference ``[layer_name, node_index, tensor_index]``."""
    return isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)


def _history(entry: list, layer_name: str, source: str) -> tuple[str, int, int]:
    return entry[0], _index(entry[1], layer_name, source), _index(entry[2], layer_name, source)


def _read_dict_node(layer: KerasLayer, node: dict, source: str) -> list[tuple[str, int, int]]:
    """Keras 3: one argument (a layer call), or several operands side by side (an operation such as ``x + 3``)."""
    layer.node_style = "dict"
    args = node.get("args", [])
    if not isinstance(args, list) or len(args) < 2:
        history = list(_histories_in(args, layer.name, source, depth=0))
        layer.operands = tuple(name for name, _, _ in history)
        return history
    layer.operation = True
    kwargs = node.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise FileFormatError(f"{source}: layer {layer.name!r} has 'kwargs' {_shown(kwargs)} that are not a "
                              "JSON object.")
    layer.call_kwargs = dict(kwargs)
    history: list[tuple[str, int, int]] = []
    operands: list[Operand] = []
    for arg in args:
        inside = list(_histories_in(arg, layer.name, source, depth=1))
        history.extend(inside)
        if _is_keras_tensor(arg):
            operands.append(inside[0][0])
        elif inside:
            layer.problems.append(f"an operand {_shown(arg)} holds tensors inside a list; refcam reads "
                                  "operations on tensors and numbers")
        else:
            operands.append(Constant(_numpy_value(arg)))
    layer.operands = tuple(operands)
    return history


def _numpy_value(arg: Any) -> Any:
    """A Keras 3 constant operand: a number or list as written, or the ``value`` of a serialised NumPy array
    ``{"class_name": "__numpy__", "config": {"value": [...], "dtype": "float32"}}`` (checked where used)."""
    config = arg.get("config") if isinstance(arg, dict) and arg.get("class_name") == "__numpy__" else None
    return config["value"] if isinstance(config, dict) and "value" in config else arg


def _is_keras_tensor(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class_name") == "__keras_tensor__"


def _histories_in(value: Any, layer_name: str, source: str, depth: int) -> Iterator[tuple[str, int, int]]:
    """Keras 3: every ``keras_history`` inside a node's ``args``, depth first (at most MAX_ARGS_DEPTH deep)."""
    if depth > MAX_ARGS_DEPTH:
        raise FileFormatError(f"{source}: layer {layer_name!r} has inbound 'args' nested more than "
                              f"{MAX_ARGS_DEPTH} levels deep; Keras writes two or three.")
    if isinstance(value, list):
        for item in value:
            yield from _histories_in(item, layer_name, source, depth + 1)
    elif _is_keras_tensor(value):
        tensor_config = value.get("config")
        history = tensor_config.get("keras_history") if isinstance(tensor_config, dict) else None
        if not (isinstance(history, list) and len(history) == 3 and isinstance(history[0], str)):
            raise FileFormatError(f"{source}: layer {layer_name!r} has a tensor argument without a valid "
                                  f"'keras_history' ({_shown(history)}).")
        yield _history(history, layer_name, source)


def _index(value: Any, layer_name: str, source: str) -> int:
    number = exact_int(value)
    if number is None or number < 0:
        raise FileFormatError(f"{source}: layer {layer_name!r} has an inbound index {_shown(value)} that is "
                              "not a non-negative integer.")
    return number


def _check_unique_names(layers: list[KerasLayer], source: str) -> None:
    counts = collections.Counter(layer.name for layer in layers)
    repeated = [name for name, count in counts.items() if count > 1]
    if repeated:
        raise FileFormatError(f"{source}: two layers are named {repeated[0]!r}.")


def _dependency_order(layers: list[KerasLayer], source: str) -> list[KerasLayer]:
    """Layers ordered so that each comes after its inputs: by depth (longest path from a source), then config order.

    Kahn's algorithm, linear in layers plus connections.
    """
    _check_unique_names(layers, source)
    by_name = {layer.name: layer for layer in layers}
    for layer in layers:
        unknown = [name for name in layer.inputs if name not in by_name]
        if unknown:
            raise FileFormatError(f"{source}: layer {layer.name!r} takes input from {unknown}, which are "
                                  "not layers of the model.")
    consumers: dict[str, list[str]] = {layer.name: [] for layer in layers}
    waiting = {layer.name: len(set(layer.inputs)) for layer in layers}
    for layer in layers:
        for name in set(layer.inputs):
            consumers[name].append(layer.name)
    depth = {name: 0 for name, count in waiting.items() if count == 0}
    ready = list(depth)
    while ready:
        name = ready.pop()
        for consumer in consumers[name]:
            depth[consumer] = max(depth.get(consumer, 0), depth[name] + 1)
            waiting[consumer] -= 1
            if waiting[consumer] == 0:
                ready.append(consumer)
    if any(waiting.values()):
        pending = [layer.name for layer in layers if waiting[layer.name]]
        raise CycleError(f"{source}: the layers {pending} depend on each other in a cycle; a Keras model "
                         "file describes an acyclic graph.")
    position = {layer.name: index for index, layer in enumerate(layers)}
    return sorted(layers, key=lambda layer: (depth[layer.name], position[layer.name]))
