"""Import a Keras HDF5 model: ``model.save("m.h5")`` of Keras 2 / tf.keras / tf-keras, or Keras 3 (.h5).

Only h5py and JSON are used: no TensorFlow, nothing from the file is executed.

What is read
------------
* ``/`` attribute ``model_config``: the architecture as JSON (``Sequential`` or
  functional ``Functional``/``Model``). Functional connections come from each
  layer's ``inbound_nodes`` in either style: Keras 2's lists
  ``[[layer, node_index, tensor_index, kwargs], ...]`` or Keras 3's dicts
  ``{"args": [... {"keras_history": [layer, node_index, tensor_index]} ...]}``.
* ``/model_weights/<layer>``: attribute ``weight_names`` lists the datasets of
  the layer (``<layer>/kernel:0`` in Keras 2, ``<layer>/kernel`` in Keras 3),
  matched by their last path component (``kernel``, ``bias``, ``gamma``, ...).
  Files whose layer groups sit at the root (``save_weights`` layout, root
  attribute ``layer_names``) are read the same way.
* ``training_config`` and ``/optimizer_weights`` are ignored.

Layouts
-------
Keras is channels-last: an image batch is ``(B, H, W, C)`` (MATLAB's SSC per
observation), a volume ``(B, H, W, D, C)``, a sequence ``(B, T, C)``. refcam's
input layers take those observations as MATLAB does (``h x w x c``,
``h x w x d x c``, ``c x t``) and work internally in ``(B, C, *S)``. Weights
are moved to refcam's layout once, at import::

    Conv kernel       (*k, C/groups, F)  -> (F, C/groups, *k)        transpose(N+1, N, 0..N-1)
    Depthwise kernel  (*k, C, m)         -> (C*m, 1, *k)             output channel c*m + j
    Dense kernel      (In, Out)          -> (Out, In)                transpose
    Rescaling scale   (..., C) or scalar -> (C, 1, ..., 1) or 0-d

Keras ``Flatten`` is row-major over ``(S..., C)``: it becomes a ``FlattenLayer``
with order ``"channels-last"`` (:func:`refcam.ops.linear.flatten`).
TensorFlow 'same' padding (odd extra at the end) is refcam's ``"same"``;
'same' average pooling leaves padded cells out of the mean (``padding_value="mean"``).

Names
-----
Keras layer names become refcam layer names. A Keras layer that becomes
several refcam layers gives its own name to the last one (whose output equals
the Keras layer's output, so Grad-CAM at a Keras layer name uses the same
tensor in both); the others are named ``<name>/<role>``: ``<name>/conv`` or
``<name>/dense`` before a fused activation, ``<name>/depthwise`` and
``<name>/pointwise`` for a separable convolution. ``Activation("linear")`` is
the identity and gets no refcam layer.

Refusals
--------
``Lambda`` layers hold Python code: :class:`~refcam.errors.UnsafeContentError`
(like Keras ``safe_mode``; the code is never decoded). Every other layer refcam
cannot represent (unknown or custom classes, channels-first data, shared
layers, options without an equivalent) is listed, all at once, in one
:class:`~refcam.errors.UnsupportedOperationError`. A malformed file raises
:class:`~refcam.errors.FileFormatError`, :class:`~refcam.errors.MissingDatasetError`
or :class:`~refcam.errors.WeightShapeError` naming the layer and the dataset.
The supported layers and their mapping are tabulated in ``docs/import.md`` (Keras section).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import h5py
import numpy as np

from ..errors import (CycleError, FileFormatError, LayerShapeError, MissingDatasetError, RefcamError,
                      UnsafeContentError, UnsupportedOperationError, WeightShapeError)
from ..layers import (AVERAGE_POOLING_BY_RANK, CONVOLUTION_BY_RANK, GLOBAL_AVERAGE_POOLING_BY_RANK,
                      GLOBAL_MAX_POOLING_BY_RANK, MAX_POOLING_BY_RANK)
from ..layers.activation import ClippedReLULayer, LeakyReLULayer, ReLULayer, SoftmaxLayer
from ..layers.base import Layer
from ..layers.combine import AdditionLayer, DepthConcatenationLayer
from ..layers.convolution import GroupedConvolution2dLayer
from ..layers.extra import PaddingLayer, ScalingLayer, SigmoidLayer, TanhLayer
from ..layers.input import Image3dInputLayer, ImageInputLayer, SequenceInputLayer
from ..layers.linear import DropoutLayer, FlattenLayer, FullyConnectedLayer
from ..layers.normalization import BatchNormalizationLayer
from .hdf5 import hard_link_target

if TYPE_CHECKING:
    from ..network import Network

Shape = tuple[Any, ...]

FUNCTIONAL_CLASSES = ("Functional", "Model")
ACTIVATIONS: dict[str, Callable[[str, tuple[str, ...]], Layer]] = {
    "relu": lambda name, inputs: ReLULayer(name=name, inputs=inputs),
    "relu6": lambda name, inputs: ClippedReLULayer(name=name, inputs=inputs, ceiling=6.0),
    "sigmoid": lambda name, inputs: SigmoidLayer(name=name, inputs=inputs),
    "tanh": lambda name, inputs: TanhLayer(name=name, inputs=inputs),
    "softmax": lambda name, inputs: SoftmaxLayer(name=name, inputs=inputs),
}
IDENTITY_ACTIVATIONS = ("linear", None)
MAX_SEQUENCE_SEARCH = 4096


# --- the parsed model ----------------------------------------------------------------
@dataclass
class KerasLayer:
    """One Keras layer of ``model_config``: its class, its config, the Keras layers feeding it."""

    name: str
    class_name: str
    config: dict[str, Any]
    inputs: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        """``config[key]``, or ``default`` when absent or null."""
        value = self.config.get(key)
        return default if value is None else value


@dataclass
class KerasModel:
    """A Keras model as read from ``model_config``: layers in dependency order, one input, one output."""

    name: str | None
    layers: list[KerasLayer]
    output: str


@dataclass
class Produced:
    """What a converted Keras layer produced: the refcam layer holding its output, and its shape."""

    refcam_name: str
    shape: Shape          # refcam per-observation (C, *S); None for a free time axis


# --- entry point -----------------------------------------------------------------------
def load_keras_h5(path: str | os.PathLike) -> "Network":
    """Read a Keras HDF5 model file and return the equivalent refcam :class:`~refcam.network.Network`.

    Raises :class:`FileNotFoundError` for a missing file;
    :class:`~refcam.errors.UnsafeContentError` for Lambda layers;
    :class:`~refcam.errors.UnsupportedOperationError` listing every layer refcam
    cannot represent; :class:`~refcam.errors.FileFormatError` (or its subclasses
    :class:`~refcam.errors.MissingDatasetError`, :class:`~refcam.errors.WeightShapeError`)
    for a truncated, corrupt or inconsistent file.

    >>> net = load_keras_h5("model.h5")            # doctest: +SKIP
    >>> scores = net.predict(image_hwc)            # doctest: +SKIP
    """
    from ..network import Network

    source = os.fspath(path)
    if not os.path.exists(source):
        raise FileNotFoundError(2, "No such file", source)
    with _open_hdf5(source) as f:
        try:
            model = parse_model_config(read_model_config(f, source), source)
            check_supported(model, source)
            layers = convert_model(model, WeightFile(_weights_root(f, source), source))
        except (OSError, RuntimeError) as err:
            raise FileFormatError(f"{source}: HDF5 could not read part of the file, so it is truncated or "
                                  f"corrupt ({err}).") from err
    return Network(layers, name=model.name)


def _open_hdf5(source: str) -> h5py.File:
    try:
        return h5py.File(source, "r")
    except OSError as err:
        raise FileFormatError(f"{source}: HDF5 cannot open the file, so it is not HDF5, or it is "
                              f"truncated or corrupt ({err}). Save the model again with "
                              "model.save('model.h5').") from err


def read_model_config(f: h5py.File, source: str) -> dict[str, Any]:
    """The parsed ``model_config`` attribute: a dict with ``class_name`` and ``config``."""
    if "model_config" not in f.attrs:
        weights_only = "layer_names" in f.attrs
        hint = ("it holds weights only (model.save_weights); save the whole model with "
                "model.save('model.h5')" if weights_only else
                "it is not a Keras model file; save the model with model.save('model.h5')")
        raise FileFormatError(f"{source}: the root attribute 'model_config' (the architecture) is "
                              f"missing: {hint}.")
    try:
        raw = f.attrs["model_config"]
    except (OSError, TypeError, ValueError) as err:
        raise FileFormatError(f"{source}: the attribute 'model_config' cannot be read ({err}).") from err
    if isinstance(raw, (bytes, np.bytes_)):
        raw = bytes(raw).decode("utf-8", errors="replace")
    if not isinstance(raw, str):
        raise FileFormatError(f"{source}: the attribute 'model_config' is a {type(raw).__name__}, "
                              "not a JSON string.")
    try:
        config = json.loads(raw)
    except json.JSONDecodeError as err:
        raise FileFormatError(f"{source}: the attribute 'model_config' is not valid JSON ({err}).") from err
    if not isinstance(config, dict) or "class_name" not in config or "config" not in config:
        raise FileFormatError(f"{source}: 'model_config' must be a JSON object with 'class_name' and "
                              f"'config'; found {str(raw)[:80]!r}.")
    return config


# --- parsing the architecture ---------------------------------------------------------------
def parse_model_config(model_config: dict[str, Any], source: str = "model_config") -> KerasModel:
    """The layers of a Sequential or functional model config, in dependency order, inputs resolved."""
    class_name = model_config["class_name"]
    config = model_config["config"]
    if class_name == "Sequential":
        return _parse_sequential(config, source)
    if class_name in FUNCTIONAL_CLASSES:
        return _parse_functional(config, source)
    raise UnsupportedOperationError(
        f"{source}: the model is a {class_name!r}; refcam imports Sequential and functional models "
        "(a subclassed model has no architecture in the file).")


def _layer_entries(config: Any, source: str) -> list[dict[str, Any]]:
    entries = config.get("layers") if isinstance(config, dict) else config
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "class_name" in e for e in entries):
        raise FileFormatError(f"{source}: 'model_config' has no list of layers with 'class_name' entries.")
    return entries


def _keras_layer(entry: dict[str, Any], source: str) -> KerasLayer:
    config = entry.get("config")
    if not isinstance(config, dict):
        raise FileFormatError(f"{source}: a layer entry of class {entry['class_name']!r} has no "
                              "'config' object.")
    name = entry.get("name", config.get("name"))
    if not isinstance(name, str) or not name:
        raise FileFormatError(f"{source}: a layer of class {entry['class_name']!r} has no name.")
    return KerasLayer(name=name, class_name=str(entry["class_name"]), config=config)


def _parse_sequential(config: Any, source: str) -> KerasModel:
    layers = [_keras_layer(entry, source) for entry in _layer_entries(config, source)]
    if not layers:
        raise FileFormatError(f"{source}: the Sequential model has no layers.")
    if layers[0].class_name != "InputLayer":
        layers.insert(0, _implicit_input(layers[0], config, source))
    for previous, layer in zip(layers, layers[1:]):
        layer.inputs = (previous.name,)
    name = config.get("name") if isinstance(config, dict) else None
    return KerasModel(name=name, layers=layers, output=layers[-1].name)


def _implicit_input(first: KerasLayer, config: Any, source: str) -> KerasLayer:
    """The input of a Sequential model built with ``input_shape=`` on its first layer."""
    shape = first.get("batch_input_shape") or first.get("batch_shape")
    if shape is None and isinstance(config, dict):
        shape = config.get("build_input_shape")
    if shape is None:
        raise FileFormatError(f"{source}: the Sequential model does not record its input shape "
                              "(no InputLayer, no batch_input_shape); build it with keras.Input first.")
    return KerasLayer(name=f"{first.name}_input", class_name="InputLayer",
                      config={"batch_input_shape": shape})


def _parse_functional(config: Any, source: str) -> KerasModel:
    if not isinstance(config, dict):
        raise FileFormatError(f"{source}: a functional model's 'config' must be a JSON object; found "
                              f"{type(config).__name__}.")
    entries = _layer_entries(config, source)
    layers = [_keras_layer(entry, source) for entry in entries]
    for layer, entry in zip(layers, entries):
        layer.inputs = _inbound_layers(layer, entry.get("inbound_nodes") or [], source)
    names = {layer.name for layer in layers}
    inputs = _endpoint_names(config.get("input_layers"), "input_layers", source)
    outputs = _endpoint_names(config.get("output_layers"), "output_layers", source)
    for endpoint in inputs + outputs:
        if endpoint not in names:
            raise FileFormatError(f"{source}: 'model_config' names the model endpoint {endpoint!r}, which "
                                  "is not one of its layers.")
    if len(inputs) != 1 or len(outputs) != 1:
        raise UnsupportedOperationError(
            f"{source}: the model has {len(inputs)} inputs {inputs} and {len(outputs)} outputs {outputs}; "
            "refcam networks have exactly one input and one output.")
    return KerasModel(name=config.get("name"), layers=_dependency_order(layers, source), output=outputs[0])


def _endpoint_names(value: Any, key: str, source: str) -> list[str]:
    """``[[name, 0, 0], ...]`` (or one ``[name, 0, 0]``, Keras 3) -> names."""
    if not isinstance(value, list) or not value:
        raise FileFormatError(f"{source}: 'model_config' has no {key!r} list.")
    endpoints = [value] if isinstance(value[0], str) else value
    if not all(isinstance(e, list) and e and isinstance(e[0], str) for e in endpoints):
        raise FileFormatError(f"{source}: {key!r} must hold [layer_name, node_index, tensor_index] "
                              f"entries; found {value!r}.")
    return [e[0] for e in endpoints]


def _inbound_layers(layer: KerasLayer, nodes: Any, source: str) -> tuple[str, ...]:
    """Names of the layers feeding ``layer``; a layer called more than once is recorded as a problem."""
    if not isinstance(nodes, list):
        raise FileFormatError(f"{source}: layer {layer.name!r} has 'inbound_nodes' that are not a list.")
    if len(nodes) > 1:
        layer.problems.append(f"it is called {len(nodes)} times (a shared layer); refcam layers have "
                              "one call site each")
    if not nodes:
        return ()
    history = list(_keras_histories(nodes[0], layer.name, source))
    if any(node_index != 0 or tensor_index != 0 for _, node_index, tensor_index in history):
        layer.problems.append("it takes a second call or a second output of another layer; refcam "
                              "layers have one output each")
    return tuple(name for name, _, _ in history)


def _keras_histories(node: Any, layer_name: str, source: str) -> Iterator[tuple[str, int, int]]:
    """``(layer, node_index, tensor_index)`` of every tensor a node takes, in order (both styles)."""
    if isinstance(node, dict):
        yield from _histories_in(node.get("args", []), layer_name, source)
        return
    if not isinstance(node, list):
        raise FileFormatError(f"{source}: layer {layer_name!r} has an inbound node {node!r} that is "
                              "neither a list nor an object.")
    for entry in node:
        if not (isinstance(entry, list) and len(entry) >= 3 and isinstance(entry[0], str)):
            raise FileFormatError(f"{source}: layer {layer_name!r} has an inbound entry {entry!r}; "
                                  "expected [layer_name, node_index, tensor_index, kwargs].")
        yield entry[0], _index(entry[1], layer_name, source), _index(entry[2], layer_name, source)


def _histories_in(value: Any, layer_name: str, source: str) -> Iterator[tuple[str, int, int]]:
    """Keras 3: every ``keras_history`` inside a node's ``args``, depth first."""
    if isinstance(value, list):
        for item in value:
            yield from _histories_in(item, layer_name, source)
    elif isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        history = (value.get("config") or {}).get("keras_history")
        if not (isinstance(history, list) and len(history) == 3 and isinstance(history[0], str)):
            raise FileFormatError(f"{source}: layer {layer_name!r} has a tensor argument without a valid "
                                  f"'keras_history' ({history!r}).")
        yield history[0], _index(history[1], layer_name, source), _index(history[2], layer_name, source)


def _index(value: Any, layer_name: str, source: str) -> int:
    if not isinstance(value, int):
        raise FileFormatError(f"{source}: layer {layer_name!r} has an inbound index {value!r} that is not "
                              "an integer.")
    return value


def _dependency_order(layers: list[KerasLayer], source: str) -> list[KerasLayer]:
    """Layers ordered so that each comes after its inputs (config order where possible)."""
    by_name: dict[str, KerasLayer] = {}
    for layer in layers:
        if layer.name in by_name:
            raise FileFormatError(f"{source}: two layers are named {layer.name!r}.")
        by_name[layer.name] = layer
    for layer in layers:
        unknown = [name for name in layer.inputs if name not in by_name]
        if unknown:
            raise FileFormatError(f"{source}: layer {layer.name!r} takes input from {unknown}, which are "
                                  "not layers of the model.")
    ordered: list[KerasLayer] = []
    placed: set[str] = set()
    pending = list(layers)
    while pending:
        ready = [layer for layer in pending if all(name in placed for name in layer.inputs)]
        if not ready:
            raise CycleError(f"{source}: the layers {[layer.name for layer in pending]} depend on each other "
                             "in a cycle; a Keras model file describes an acyclic graph.")
        ordered.extend(ready)
        placed.update(layer.name for layer in ready)
        pending = [layer for layer in pending if layer.name not in placed]
    return ordered


# --- what refcam supports: checked on the config alone, every problem collected ----------------------
def check_supported(model: KerasModel, source: str = "model") -> None:
    """Raise UnsafeContentError for Lambda layers, then UnsupportedOperationError listing every other problem.

    The checks use the config alone (no weights), so every problem is found in one pass.
    """
    lambdas = [layer.name for layer in model.layers if layer.class_name == "Lambda"]
    if lambdas:
        raise UnsafeContentError(
            f"{source}: the Lambda layer(s) {lambdas} hold serialized Python code; refcam never executes "
            "code from a file (like Keras safe_mode). Replace the Lambda by built-in layers and save again.")
    ranks: dict[str, int | None] = {}
    for layer in model.layers:
        input_ranks = [ranks.get(name) for name in layer.inputs]
        with _config_errors(layer, source):
            layer.problems.extend(_layer_problems(layer, input_ranks))
            ranks[layer.name] = _keras_rank(layer, input_ranks)
    problems = [f"{layer.name!r} ({layer.class_name}): {'; '.join(layer.problems)}"
                for layer in model.layers if layer.problems]
    if problems:
        raise UnsupportedOperationError(
            f"{source}: refcam cannot import {len(problems)} Keras layer(s):\n  " + "\n  ".join(problems)
            + "\nSupported layers and options are listed in docs/import.md (Keras section).")


@contextlib.contextmanager
def _config_errors(layer: KerasLayer, source: str) -> Iterator[None]:
    """Turn a Python error from reading a malformed config value into a FileFormatError naming the layer."""
    try:
        yield
    except RefcamError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
        raise FileFormatError(f"{source}: layer {layer.name!r} ({layer.class_name}) has a malformed config "
                              f"({type(err).__name__}: {err}).") from err


def _keras_rank(layer: KerasLayer, input_ranks: list[int | None]) -> int | None:
    """Axes of the layer's Keras output without the batch axis, when known."""
    if layer.class_name == "InputLayer":
        shape = _input_shape(layer)
        return None if shape is None else len(shape) - 1
    if layer.class_name in ("Flatten", "Dense") or (
            layer.class_name.startswith("Global") and not layer.get("keepdims", False)):
        return 1
    return input_ranks[0] if input_ranks else None


def _layer_problems(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    if layer.class_name in ("Sequential", *FUNCTIONAL_CLASSES):
        return ["a nested model; refcam imports flat models (inline the nested model's layers)"]
    spec = CONVERTERS.get(layer.class_name)
    if spec is None:
        return [f"no refcam equivalent for the Keras class {layer.class_name!r} (custom or unsupported)"]
    problems = []
    if layer.get("data_format") == "channels_first":
        problems.append("data_format='channels_first'; refcam imports channels_last models only")
    if "activation" in layer.config and _activation_name(layer) not in (*ACTIVATIONS, *IDENTITY_ACTIVATIONS):
        problems.append(f"activation {layer.config['activation']!r} is not one of "
                        f"{sorted(ACTIVATIONS) + ['linear']}")
    if spec.check is not None:
        problems.extend(spec.check(layer, input_ranks))
    return problems


def _activation_name(layer: KerasLayer) -> Any:
    """``"relu"`` from ``"relu"`` or from Keras 3's ``{"class_name": "function", "config": "relu"}``."""
    value = layer.config.get("activation")
    if isinstance(value, dict):
        value = value.get("config")
    return value


def _check_input(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    shape = _input_shape(layer)
    if shape is None:
        return ["no input shape (batch_input_shape / batch_shape)"]
    rank = len(shape) - 1
    if rank not in (2, 3, 4):
        return [f"input of shape {shape}: refcam takes sequences (B, T, C), images (B, H, W, C) or "
                "volumes (B, H, W, D, C)"]
    spatial = shape[1:-1]
    if shape[-1] is None or (rank > 2 and any(n is None for n in spatial)):
        return [f"input of shape {shape}: images and volumes need fixed sizes and every input needs a "
                "fixed channel count (only a sequence's time axis may be free)"]
    return []


def _check_padding_mode(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    allowed = ("valid", "same", "causal") if _rank_of_class(layer) == 1 and "Conv" in layer.class_name \
        else ("valid", "same")
    mode = str(layer.get("padding", "valid")).lower()
    return [] if mode in allowed else [f"padding {mode!r} is not one of {list(allowed)}"]


def _check_relu(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    problems = []
    if float(layer.get("threshold", 0.0)) != 0.0:
        problems.append(f"threshold {layer.get('threshold')} (only 0 is supported)")
    slope, ceiling = float(layer.get("negative_slope", 0.0)), layer.get("max_value")
    if slope != 0.0 and ceiling is not None:
        problems.append("both negative_slope and max_value are set (no refcam layer does both)")
    if ceiling is not None and not float(ceiling) > 0.0:
        problems.append(f"max_value {ceiling} must be positive")
    return problems


def _check_dense(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    rank = input_ranks[0] if input_ranks else None
    if rank is not None and rank != 1:
        return [f"Dense on a rank-{rank + 1} input (batch included) applies to the last axis only, per "
                "position; refcam's fully connected layer takes flat inputs (add Flatten or global pooling)"]
    return []


def _check_channel_axis(key: str) -> Callable[[KerasLayer, list[int | None]], list[str]]:
    def check(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
        axis = layer.get(key, -1)
        axes = axis if isinstance(axis, list) else [axis]
        rank = input_ranks[0] if input_ranks else None
        if len(axes) == 1 and (axes[0] == -1 or (rank is not None and axes[0] == rank)):
            return []
        return [f"{key}={axis!r}; refcam supports the channel axis only (-1)"]
    return check


def _check_rescaling(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    rank = input_ranks[0] if input_ranks else None
    problems = []
    for key in ("scale", "offset"):
        try:
            array = np.asarray(layer.get(key, 0.0), dtype=np.float64)
        except (TypeError, ValueError):
            problems.append(f"{key} {layer.config.get(key)!r} is not a number or a list of numbers")
            continue
        if rank is not None and array.ndim > rank:
            problems.append(f"{key} has {array.ndim} axes, more than the input's {rank}")
    return problems


def _check_dropout(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    rate = float(layer.get("rate", 0.0))
    return [] if 0.0 <= rate < 1.0 else [f"rate {rate} is not in [0, 1)"]


# --- conversion ---------------------------------------------------------------------------
@dataclass
class Context:
    """What a converter sees: the Produced of each converted Keras layer, and the weight file."""

    weights: "WeightFile"
    produced: dict[str, Produced] = field(default_factory=dict)
    input_shape: Shape = ()

    def inputs_of(self, layer: KerasLayer) -> list[Produced]:
        """The Produced of the layers feeding ``layer``, in order."""
        return [self.produced[name] for name in layer.inputs]


Converter = Callable[[KerasLayer, Context], list[Layer]]


@dataclass(frozen=True)
class Spec:
    """How one Keras class is converted, and what its config must satisfy."""

    convert: Converter
    check: Callable[[KerasLayer, list[int | None]], list[str]] | None = None


def convert_model(model: KerasModel, weights: "WeightFile") -> list[Layer]:
    """refcam layers for every Keras layer the output depends on, connected as in Keras."""
    context = Context(weights)
    layers: list[Layer] = []
    for keras_layer in model.layers:
        with _config_errors(keras_layer, weights.source):
            converted = CONVERTERS[keras_layer.class_name].convert(keras_layer, context)
        previous = context.inputs_of(keras_layer)
        shapes = [p.shape for p in previous]
        for layer in converted:
            is_input = type(layer).num_inputs == 0
            shapes = [context.input_shape] if is_input else [tuple(layer.output_shape(*shapes))]
            layers.append(layer)
        context.produced[keras_layer.name] = Produced(
            refcam_name=converted[-1].name if converted else previous[0].refcam_name,
            shape=shapes[0] if converted else previous[0].shape)
    layers = _needed_by(layers, context.produced[model.output].refcam_name)
    return _with_sequence_length(layers)


def _needed_by(layers: list[Layer], output: str) -> list[Layer]:
    """The layers ``output`` depends on (a Keras model may hold layers its output does not use)."""
    by_name = {layer.name: layer for layer in layers}
    needed, stack = set(), [output]
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            stack.extend(by_name[name].inputs)
    return [layer for layer in layers if layer.name in needed]


def _with_sequence_length(layers: list[Layer]) -> list[Layer]:
    """Give a free-length sequence input the shortest length every layer accepts (its ``min_length``)."""
    first = layers[0]
    if not isinstance(first, SequenceInputLayer) or first.min_length > 1:
        return layers
    for length in range(1, MAX_SEQUENCE_SEARCH + 1):
        if _shapes_fit(layers, (first.input_size, length)):
            return [dataclasses.replace(first, min_length=length)] + layers[1:]
    raise LayerShapeError(f"no sequence of up to {MAX_SEQUENCE_SEARCH} steps fits the imported layers.")


def _shapes_fit(layers: list[Layer], input_shape: Shape) -> bool:
    shapes: dict[str, Shape] = {layers[0].name: input_shape}
    try:
        for layer in layers[1:]:
            shapes[layer.name] = tuple(layer.output_shape(*(shapes[name] for name in layer.inputs)))
    except LayerShapeError:
        return False
    return True


Factory = Callable[[str, tuple[str, ...]], Layer]


def _chain(keras_layer: KerasLayer, context: Context, parts: list[tuple[str, Factory]],
           activation: Any = None) -> list[Layer]:
    """Layers ``parts`` (role, factory) in series, then the activation; the last takes the Keras name.

    Each factory gets ``(name, inputs)``. Earlier layers are named ``<keras name>/<role>``.
    """
    steps = list(parts)
    if activation not in IDENTITY_ACTIVATIONS:
        steps.append(("activation", ACTIVATIONS[activation]))
    layers: list[Layer] = []
    inputs = tuple(p.refcam_name for p in context.inputs_of(keras_layer))
    for index, (role, factory) in enumerate(steps):
        name = keras_layer.name if index == len(steps) - 1 else f"{keras_layer.name}/{role}"
        layer = factory(name, inputs)
        layers.append(layer)
        inputs = (name,)
    return layers


def _single(factory: Callable[[KerasLayer, str, tuple[str, ...], Context], Layer]) -> Converter:
    """A converter making one refcam layer (plus the fused activation, if any)."""
    def convert(keras_layer: KerasLayer, context: Context) -> list[Layer]:
        def make(name: str, inputs: tuple[str, ...]) -> Layer:
            return factory(keras_layer, name, inputs, context)
        return _chain(keras_layer, context, [(_role(keras_layer), make)], _activation_name(keras_layer))
    return convert


def _role(layer: KerasLayer) -> str:
    return "dense" if layer.class_name == "Dense" else "conv"


def _rank_of_class(layer: KerasLayer) -> int:
    """1, 2 or 3 from the class name (``Conv2D`` -> 2)."""
    for rank in (1, 2, 3):
        if f"{rank}D" in layer.class_name:
            return rank
    return 0


def _int_tuple(value: Any, rank: int) -> tuple[int, ...]:
    return tuple(int(v) for v in value) if isinstance(value, (list, tuple)) else (int(value),) * rank


def _padding_property(layer: KerasLayer) -> Any:
    mode = str(layer.get("padding", "valid")).lower()
    return 0 if mode == "valid" else mode


def _input_channels(context: Context, layer: KerasLayer) -> int:
    return int(context.inputs_of(layer)[0].shape[0])


# --- converters, one per Keras family ---------------------------------------------------------------
def _input_shape(layer: KerasLayer) -> list[Any] | None:
    shape = layer.get("batch_input_shape") or layer.get("batch_shape")
    return list(shape) if isinstance(shape, list) else None


def convert_input(layer: KerasLayer, context: Context) -> list[Layer]:
    """InputLayer -> image, 3-D image or sequence input layer without normalisation."""
    observation = _input_shape(layer)[1:]
    if len(observation) == 2:
        steps, channels = observation
        result: Layer = SequenceInputLayer(name=layer.name, input_size=int(channels), normalization="none",
                                           min_length=int(steps) if steps else 1)
        context.input_shape = (int(channels), None if steps is None else int(steps))
        return [result]
    cls = ImageInputLayer if len(observation) == 3 else Image3dInputLayer
    result = cls(name=layer.name, input_size=tuple(int(n) for n in observation), normalization="none")
    context.input_shape = result.per_observation_shape()
    return [result]


def _convolution(layer: KerasLayer, name: str, inputs: tuple[str, ...], context: Context) -> Layer:
    rank = _rank_of_class(layer)
    groups = int(layer.get("groups", 1))
    channels = _input_channels(context, layer)
    filters = int(layer.get("filters"))
    kernel_size = _int_tuple(layer.get("kernel_size"), rank)
    kernel = context.weights.get(layer, "kernel", (*kernel_size, channels // max(groups, 1), filters))
    bias = context.weights.get(layer, "bias", (filters,)) if layer.get("use_bias", True) else None
    return CONVOLUTION_BY_RANK[rank](
        name=name, inputs=inputs, filter_size=kernel_size, num_filters=filters,
        stride=_int_tuple(layer.get("strides", 1), rank),
        dilation_factor=_int_tuple(layer.get("dilation_rate", 1), rank), padding=_padding_property(layer),
        groups=groups, weights=conv_kernel_to_internal(kernel), bias=bias)


def _depthwise(layer: KerasLayer, name: str, inputs: tuple[str, ...], context: Context, *,
               with_bias: bool) -> Layer:
    rank = _rank_of_class(layer)
    channels = _input_channels(context, layer)
    multiplier = int(layer.get("depth_multiplier", 1))
    kernel_size = _int_tuple(layer.get("kernel_size"), rank)
    kernel = context.weights.get(layer, ("depthwise_kernel", "kernel"), (*kernel_size, channels, multiplier))
    bias = (context.weights.get(layer, "bias", (channels * multiplier,))
            if with_bias and layer.get("use_bias", True) else None)
    cls = GroupedConvolution2dLayer if rank == 2 else CONVOLUTION_BY_RANK[rank]
    return cls(name=name, inputs=inputs, filter_size=kernel_size, num_filters=channels * multiplier,
               stride=_int_tuple(layer.get("strides", 1), rank),
               dilation_factor=_int_tuple(layer.get("dilation_rate", 1), rank),
               padding=_padding_property(layer), groups=channels,
               weights=depthwise_kernel_to_internal(kernel), bias=bias)


def convert_depthwise(layer: KerasLayer, context: Context) -> list[Layer]:
    """DepthwiseConv1D/2D -> a grouped convolution with ``groups = C`` (+ activation)."""
    return _chain(layer, context, [("depthwise", lambda name, inputs: _depthwise(
        layer, name, inputs, context, with_bias=True))], _activation_name(layer))


def convert_separable(layer: KerasLayer, context: Context) -> list[Layer]:
    """SeparableConv1D/2D -> ``<name>/depthwise`` (no bias), then a 1x1 convolution with the bias, then the
    activation."""
    rank = _rank_of_class(layer)
    channels = _input_channels(context, layer)
    multiplier = int(layer.get("depth_multiplier", 1))
    filters = int(layer.get("filters"))

    def pointwise(name: str, inputs: tuple[str, ...]) -> Layer:
        kernel_shape = (*(1,) * rank, channels * multiplier, filters)
        kernel = context.weights.get(layer, "pointwise_kernel", kernel_shape)
        bias = context.weights.get(layer, "bias", (filters,)) if layer.get("use_bias", True) else None
        return CONVOLUTION_BY_RANK[rank](name=name, inputs=inputs, filter_size=1, num_filters=filters,
                                  weights=conv_kernel_to_internal(kernel), bias=bias)

    return _chain(layer, context, [
        ("depthwise", lambda name, inputs: _depthwise(layer, name, inputs, context, with_bias=False)),
        ("pointwise", pointwise)], _activation_name(layer))


def _dense(layer: KerasLayer, name: str, inputs: tuple[str, ...], context: Context) -> Layer:
    units = int(layer.get("units"))
    size = math.prod(context.inputs_of(layer)[0].shape)
    kernel = context.weights.get(layer, "kernel", (size, units))
    bias = context.weights.get(layer, "bias", (units,)) if layer.get("use_bias", True) else None
    return FullyConnectedLayer(name=name, inputs=inputs, output_size=units, flatten_order="channels-last",
                               weights=dense_kernel_to_internal(kernel), bias=bias)


def convert_batch_norm(layer: KerasLayer, context: Context) -> list[Layer]:
    """BatchNormalization -> batch normalisation with Keras's epsilon; absent gamma/beta are 1/0."""
    channels = _input_channels(context, layer)
    mean = context.weights.get(layer, "moving_mean", (channels,))
    variance = context.weights.get(layer, "moving_variance", (channels,))
    scale = (context.weights.get(layer, "gamma", (channels,)) if layer.get("scale", True)
             else np.ones_like(mean))
    offset = (context.weights.get(layer, "beta", (channels,)) if layer.get("center", True)
              else np.zeros_like(mean))
    return _chain(layer, context, [("bn", lambda name, inputs: BatchNormalizationLayer(
        name=name, inputs=inputs, epsilon=float(layer.get("epsilon", 1e-3)), trained_mean=mean,
        trained_variance=variance, scale=scale, offset=offset))])


def convert_activation(layer: KerasLayer, context: Context) -> list[Layer]:
    """Activation(relu, relu6, sigmoid, tanh, softmax) -> its layer; Activation('linear') -> nothing."""
    if _activation_name(layer) in IDENTITY_ACTIVATIONS:
        return []
    return _chain(layer, context, [], _activation_name(layer))


def convert_relu(layer: KerasLayer, context: Context) -> list[Layer]:
    """ReLU(max_value, negative_slope) -> ReLU, clipped ReLU or leaky ReLU."""
    slope, ceiling = float(layer.get("negative_slope", 0.0)), layer.get("max_value")

    def make(name: str, inputs: tuple[str, ...]) -> Layer:
        if ceiling is not None:
            return ClippedReLULayer(name=name, inputs=inputs, ceiling=float(ceiling))
        if slope != 0.0:
            return LeakyReLULayer(name=name, inputs=inputs, scale=slope)
        return ReLULayer(name=name, inputs=inputs)

    return _chain(layer, context, [("relu", make)])


def convert_leaky_relu(layer: KerasLayer, context: Context) -> list[Layer]:
    """LeakyReLU(alpha | negative_slope; Keras default 0.3) -> leaky ReLU."""
    value = layer.config.get("negative_slope", layer.config.get("alpha"))
    slope = 0.3 if value is None else float(value)
    return _chain(layer, context, [("leaky_relu", lambda name, inputs: LeakyReLULayer(
        name=name, inputs=inputs, scale=slope))])


def _simple(make: Callable[[KerasLayer, str, tuple[str, ...]], Layer]) -> Converter:
    """A converter making one refcam layer from the config alone."""
    def convert(layer: KerasLayer, context: Context) -> list[Layer]:
        return _chain(layer, context, [("layer", lambda name, inputs: make(layer, name, inputs))])
    return convert


def _pooling(layer: KerasLayer, name: str, inputs: tuple[str, ...]) -> Layer:
    rank = _rank_of_class(layer)
    pool_size = _int_tuple(layer.get("pool_size", 2), rank)
    stride = _int_tuple(layer.get("strides", pool_size), rank)
    padding = _padding_property(layer)
    if layer.class_name.startswith("Max"):
        return MAX_POOLING_BY_RANK[rank](name=name, inputs=inputs, pool_size=pool_size, stride=stride,
                                      padding=padding)
    return AVERAGE_POOLING_BY_RANK[rank](name=name, inputs=inputs, pool_size=pool_size, stride=stride,
                                  padding=padding, padding_value="mean" if padding == "same" else 0)


def _global_pooling(layer: KerasLayer, name: str, inputs: tuple[str, ...]) -> Layer:
    classes = GLOBAL_MAX_POOLING_BY_RANK if "Max" in layer.class_name else GLOBAL_AVERAGE_POOLING_BY_RANK
    return classes[_rank_of_class(layer)](name=name, inputs=inputs)


def _zero_padding(layer: KerasLayer, name: str, inputs: tuple[str, ...]) -> Layer:
    return PaddingLayer(name=name, inputs=inputs,
                        padding=zero_padding_to_internal(layer.get("padding", 1), _rank_of_class(layer)))


def convert_rescaling(layer: KerasLayer, context: Context) -> list[Layer]:
    """Rescaling(scale, offset) -> ``y = x * scale + offset`` (numbers or per-channel lists)."""
    rank = len(context.inputs_of(layer)[0].shape)
    scale = channels_last_constant(layer.get("scale", 1.0), rank)
    offset = channels_last_constant(layer.get("offset", 0.0), rank)
    return _chain(layer, context, [("scaling", lambda name, inputs: ScalingLayer(
        name=name, inputs=inputs, scale=scale, offset=offset))])


def _dropout(layer: KerasLayer, name: str, inputs: tuple[str, ...]) -> Layer:
    return DropoutLayer(name=name, inputs=inputs, probability=float(layer.get("rate", 0.0)))


def convert_merge(layer: KerasLayer, context: Context) -> list[Layer]:
    """Add -> addition; Concatenate (channel axis) -> depth concatenation."""
    cls = AdditionLayer if layer.class_name == "Add" else DepthConcatenationLayer
    return _chain(layer, context, [("merge", lambda name, inputs: cls(name=name, inputs=inputs))])


# --- weight layouts (pure functions) ---------------------------------------------------------------
def conv_kernel_to_internal(kernel: np.ndarray) -> np.ndarray:
    """Keras ``(*k, C/groups, F)`` -> refcam ``(F, C/groups, *k)``.

    >>> conv_kernel_to_internal(np.zeros((3, 5, 2, 8))).shape
    (8, 2, 3, 5)
    """
    rank = kernel.ndim - 2
    return np.ascontiguousarray(kernel.transpose(rank + 1, rank, *range(rank)))


def depthwise_kernel_to_internal(kernel: np.ndarray) -> np.ndarray:
    """Keras depthwise ``(*k, C, m)`` -> refcam ``(C*m, 1, *k)``: filter ``c*m + j`` holds ``[..., c, j]``.

    >>> depthwise_kernel_to_internal(np.zeros((3, 3, 4, 2))).shape
    (8, 1, 3, 3)
    """
    rank = kernel.ndim - 2
    channels, multiplier = kernel.shape[-2:]
    flat = kernel.reshape(*kernel.shape[:rank], channels * multiplier)      # (*k, C*m), index c*m + j
    return np.ascontiguousarray(flat.transpose(rank, *range(rank))[:, None])  # (C*m, 1, *k)


def dense_kernel_to_internal(kernel: np.ndarray) -> np.ndarray:
    """Keras ``(In, Out)`` -> refcam ``(Out, In)``."""
    return np.ascontiguousarray(kernel.T)


def zero_padding_to_internal(padding: Any, rank: int) -> tuple[int, ...]:
    """Keras ZeroPadding ``padding`` -> refcam ``(begins..., ends...)``.

    Keras writes an int (every side), ``rank`` ints (symmetric per axis; 1-D:
    ``[begin, end]``) or ``rank`` ``[begin, end]`` pairs.

    >>> zero_padding_to_internal([[1, 2], [3, 4]], 2)
    (1, 3, 2, 4)
    """
    if isinstance(padding, int):
        pairs = [(padding, padding)] * rank
    elif rank == 1 and len(padding) == 2 and all(isinstance(p, int) for p in padding):
        pairs = [tuple(padding)]
    elif all(isinstance(p, int) for p in padding):
        pairs = [(p, p) for p in padding]
    else:
        pairs = [tuple(p) for p in padding]
    return tuple(int(p[0]) for p in pairs) + tuple(int(p[1]) for p in pairs)


def channels_last_constant(value: Any, rank: int) -> np.ndarray:
    """A Keras constant that broadcasts against ``(B, *S, C)`` -> refcam's per-observation array.

    ``rank`` is the number of axes of one observation ``(C, *S)``. A scalar
    stays 0-d; otherwise leading ones are added up to ``rank`` axes in Keras's
    order ``(*S, C)`` and the channel axis moves first: ``(C, *S)``, so a
    per-channel vector of C values becomes ``(C, 1, ..., 1)``. The values are
    rounded to float32, as Keras evaluates them (tf.keras casts the Python
    number through a float32 tensor; Keras 3 holds them in the layer's float32),
    so ``1/127.5`` is ``0.0078431377...`` like in the framework.

    >>> channels_last_constant([1.0, 2.0, 3.0], 3).shape
    (3, 1, 1)
    """
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 0:
        return array
    keras_shaped = array.reshape((1,) * (rank - array.ndim) + array.shape)
    return np.ascontiguousarray(np.moveaxis(keras_shaped, -1, 0))


# --- weights -----------------------------------------------------------------------------
class WeightFile:
    """The per-layer weight groups of a Keras file, read by role with shape checks."""

    def __init__(self, root: h5py.Group | None, source: str) -> None:
        self.root = root
        self.source = source

    def get(self, layer: KerasLayer, roles: str | Sequence[str], keras_shape: Sequence[int]) -> np.ndarray:
        """The weight of ``layer`` named by one of ``roles``, checked against ``keras_shape``."""
        roles = (roles,) if isinstance(roles, str) else tuple(roles)
        names = self._weight_names(layer)
        by_role = {_role_of(name): name for name in names}
        found = next((by_role[role] for role in roles if role in by_role), None)
        group_path = self._group(layer).name
        if found is None:
            raise MissingDatasetError(
                f"{self.source}: layer {layer.name!r} ({layer.class_name}) has no weight {roles[0]!r}: its "
                f"group {group_path} lists weight_names {names}.")
        return self._read(layer, f"{group_path}/{found}", found, tuple(keras_shape))

    def _group(self, layer: KerasLayer) -> h5py.Group:
        if self.root is None:
            raise MissingDatasetError(f"{self.source}: the group /model_weights is missing, so layer "
                                      f"{layer.name!r} ({layer.class_name}) has no weights.")
        path = f"{self.root.name.rstrip('/')}/{layer.name}"
        link = self.root.get(layer.name, getlink=True)
        if link is None:
            raise MissingDatasetError(f"{self.source}: the weight group {path} of layer {layer.name!r} "
                                      f"({layer.class_name}) is missing.")
        return hard_link_target(self.root, layer.name, path, h5py.Group, self.source)

    def _weight_names(self, layer: KerasLayer) -> list[str]:
        group = self._group(layer)
        if "weight_names" not in group.attrs:
            raise MissingDatasetError(f"{self.source}: the group {group.name} of layer {layer.name!r} has no "
                                      "'weight_names' attribute.")
        values = np.asarray(group.attrs["weight_names"]).ravel()
        return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]

    def _read(self, layer: KerasLayer, path: str, name: str, expected: Shape) -> np.ndarray:
        group = self._group(layer)
        if group.get(name, getlink=True) is None:
            raise MissingDatasetError(f"{self.source}: the dataset {path} of layer {layer.name!r} "
                                      f"({layer.class_name}), listed in weight_names, is missing.")
        dataset = hard_link_target(group, name, path, h5py.Dataset, self.source)
        if dataset.is_virtual or dataset.external or dataset.dtype.kind != "f":
            raise WeightShapeError(f"{self.source}: the dataset {path} of layer {layer.name!r} has dtype "
                                   f"{dataset.dtype} or external storage; weights are floats stored in the "
                                   "file.")
        if tuple(dataset.shape) != expected:
            raise WeightShapeError(
                f"{self.source}: the dataset {path} of layer {layer.name!r} ({layer.class_name}) has shape "
                f"{tuple(dataset.shape)}; the layer's config and input need {expected} (Keras layout).")
        try:
            array = np.asarray(dataset[()])
        except (OSError, RuntimeError) as err:
            raise FileFormatError(f"{self.source}: HDF5 could not read {path} ({err}); the file is "
                                  "truncated or corrupt.") from err
        if not np.isfinite(array).all():
            raise FileFormatError(f"{self.source}: the dataset {path} of layer {layer.name!r} holds NaN or "
                                  "Inf.")
        return array.astype(array.dtype.newbyteorder("="), copy=False)


def _role_of(weight_name: str) -> str:
    """``"conv2d/kernel:0"`` -> ``"kernel"``."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _weights_root(f: h5py.File, source: str) -> h5py.Group | None:
    """``/model_weights`` (``model.save``), the root when the layer groups sit there, or None."""
    if "model_weights" in f:
        return hard_link_target(f, "model_weights", "/model_weights", h5py.Group, source)
    return f if "layer_names" in f.attrs else None


CONVERTERS: dict[str, Spec] = {
    "InputLayer": Spec(convert_input, _check_input),
    **{f"Conv{n}D": Spec(_single(_convolution), _check_padding_mode) for n in (1, 2, 3)},
    **{f"DepthwiseConv{n}D": Spec(convert_depthwise, _check_padding_mode) for n in (1, 2)},
    **{f"SeparableConv{n}D": Spec(convert_separable, _check_padding_mode) for n in (1, 2)},
    "Dense": Spec(_single(_dense), _check_dense),
    "BatchNormalization": Spec(convert_batch_norm, _check_channel_axis("axis")),
    "Activation": Spec(convert_activation),
    "ReLU": Spec(convert_relu, _check_relu),
    "LeakyReLU": Spec(convert_leaky_relu),
    "Softmax": Spec(_simple(lambda layer, name, inputs: SoftmaxLayer(name=name, inputs=inputs)),
                    _check_channel_axis("axis")),
    **{f"{kind}Pooling{n}D": Spec(_simple(_pooling), _check_padding_mode)
       for kind in ("Max", "Average") for n in (1, 2, 3)},
    **{f"Global{kind}Pooling{n}D": Spec(_simple(_global_pooling))
       for kind in ("Max", "Average") for n in (1, 2, 3)},
    "Dropout": Spec(_simple(_dropout), _check_dropout),
    **{f"SpatialDropout{n}D": Spec(_simple(_dropout), _check_dropout) for n in (1, 2, 3)},
    "Flatten": Spec(_simple(lambda layer, name, inputs: FlattenLayer(name=name, inputs=inputs,
                                                                     order="channels-last"))),
    "Add": Spec(convert_merge),
    "Concatenate": Spec(convert_merge, _check_channel_axis("axis")),
    **{f"ZeroPadding{n}D": Spec(_simple(_zero_padding)) for n in (1, 2, 3)},
    "Rescaling": Spec(convert_rescaling, _check_rescaling),
}
