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
``Lambda`` layers, and activations that are Python lambdas or functions from
outside Keras, hold or name Python code: :class:`~refcam.errors.UnsafeContentError`
(like Keras ``safe_mode``; the code is never decoded). Every other layer refcam
cannot represent (unknown or custom classes, unknown activations or activation
forms, channels-first data, shared layers, options without an equivalent) is
listed, all at once, in one :class:`~refcam.errors.UnsupportedOperationError`.

Everything else a file says is checked before it is used, and a file that does
not pass raises a :class:`~refcam.errors.FileFormatError` (or a subclass) naming
the layer, the config key or dataset, and what was expected:

* every HDF5 object is reached from the file root through hard links only
  (:func:`refcam.io.safe.hdf5_object`): a soft or external link anywhere on
  the path, or a dataset stored outside the file, is an
  :class:`~refcam.errors.ExternalReferenceError`;
* every weight dataset is a float array whose shape, taken from the config, is
  checked before it is read, whose declared size fits ``max_tensor_bytes`` and
  is backed by stored bytes (:class:`~refcam.errors.DeclaredSizeError`), and
  whose values are finite (:class:`~refcam.errors.NonFiniteParameterError`);
* sizes in the config (``filters``, ``kernel_size``, ``strides``, ...) are
  integers (an integral float such as ``2.0`` counts) from their minimum to
  :data:`MAX_CONFIG_INT`; bools, strings, fractions and larger numbers are
  refused, never truncated; float settings (``epsilon``, ``alpha``, ``rate``,
  ``scale``, ...) are finite numbers; flags (``use_bias``, ...) are JSON booleans;
* ``model_config`` is UTF-8 JSON without duplicate keys, and the attributes
  ``model_config`` and ``weight_names`` are strings of a bounded count.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import json
import math
import os
import reprlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import h5py
import numpy as np

from ..errors import (CycleError, FileFormatError, LayerConfigError, LayerShapeError, MissingDatasetError,
                      NonFiniteParameterError, RefcamError, UnsafeContentError, UnsupportedOperationError,
                      WeightShapeError)
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
from .safe import (DEFAULT_MAX_TENSOR_BYTES, HDF5_READ_ERRORS, check_budget, hdf5_object, open_hdf5,
                   read_dataset)

if TYPE_CHECKING:
    from ..network import Network

Shape = tuple[Any, ...]

FUNCTIONAL_CLASSES = ("Functional", "Model")
MERGE_CLASSES = ("Add", "Concatenate")
ACTIVATIONS: dict[str, Callable[[str, tuple[str, ...]], Layer]] = {
    "relu": lambda name, inputs: ReLULayer(name=name, inputs=inputs),
    "relu6": lambda name, inputs: ClippedReLULayer(name=name, inputs=inputs, ceiling=6.0),
    "sigmoid": lambda name, inputs: SigmoidLayer(name=name, inputs=inputs),
    "tanh": lambda name, inputs: TanhLayer(name=name, inputs=inputs),
    "softmax": lambda name, inputs: SoftmaxLayer(name=name, inputs=inputs),
}
IDENTITY_ACTIVATION = "linear"
KERAS_MODULE_ROOTS = ("keras", "keras_core", "tf_keras", "tensorflow")   # where built-in activations live
LAMBDA_CLASSES = ("Lambda", "__lambda__")                               # serialized Python code (Keras 2, 3)
MAX_SEQUENCE_SEARCH = 4096
MAX_CONFIG_INT = 2 ** 31 - 1      # TensorFlow sizes are int32; a larger size in a config is not a real model
MAX_ARGS_DEPTH = 32               # nesting of a Keras 3 node's 'args' (real files: 2 or 3)
MAX_CONSTANT_DEPTH = 8            # nesting of a Rescaling scale/offset list (at most one per axis)
MAX_STRING_ATTRIBUTE_COUNT = 4096 # strings in 'weight_names' (real layers: at most a few)
LAYER_BUILD_ERRORS = (LayerConfigError, LayerShapeError)
PYTHON_ERRORS = (KeyError, TypeError, ValueError, OverflowError, ZeroDivisionError, MemoryError,
                 AttributeError, IndexError, RecursionError)


def _shown(value: Any) -> str:
    """A short ``repr`` of a config value for a message (deep or long values are abbreviated)."""
    abbreviate = reprlib.Repr()
    abbreviate.maxstring = abbreviate.maxother = 80
    abbreviate.maxlevel = 4
    return abbreviate.repr(value)


# --- exact values from JSON ----------------------------------------------------------------
def exact_int(value: Any) -> int | None:
    """``value`` as an int when it is a JSON integer (or an integral float) of magnitude <= MAX_CONFIG_INT, else None.

    A bool is not an integer here (``True`` would silently become 1).

    >>> exact_int(3), exact_int(2.0), exact_int(1.5), exact_int(True), exact_int(2.0 ** 40)
    (3, 2, None, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    else:
        return None
    return number if abs(number) <= MAX_CONFIG_INT else None


def finite_float(value: Any) -> float | None:
    """``value`` as a float when it is a JSON number (not a bool) that a float holds, else None; NaN/Inf pass.

    >>> finite_float(1), finite_float("1"), finite_float(10 ** 400)
    (1.0, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


# --- the parsed model ----------------------------------------------------------------
@dataclass
class KerasLayer:
    """One Keras layer of ``model_config``: its class, its config, the Keras layers feeding it.

    The typed readers (:meth:`integer`, :meth:`integers`, :meth:`number`,
    :meth:`flag`, :meth:`text`) return a config value after checking its JSON
    type and range, and raise a FileFormatError naming the layer and the key
    otherwise; an absent or null key gives the default.
    """

    name: str
    class_name: str
    config: dict[str, Any]
    inputs: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)
    source: str = "model_config"

    def get(self, key: str, default: Any = None) -> Any:
        """``config[key]``, or ``default`` when absent or null (no type check)."""
        value = self.config.get(key)
        return default if value is None else value

    def malformed(self, key: str, value: Any, wanted: str) -> FileFormatError:
        """The error for config ``key`` holding ``value`` where ``wanted`` is needed."""
        return FileFormatError(
            f"{self.source}: layer {self.name!r} ({self.class_name}) has a malformed config: {key!r} is "
            f"{_shown(value)}; it must be {wanted}. The file is damaged or was not written by Keras.")

    def integer(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        """``config[key]`` as an int in ``[minimum, MAX_CONFIG_INT]``; required when ``default`` is None."""
        value = self.config.get(key)
        if value is None and default is not None:
            return default
        number = exact_int(value)
        if number is None or number < minimum:
            raise self.malformed(key, value, f"an integer from {minimum} to {MAX_CONFIG_INT}")
        return number

    def integers(self, key: str, rank: int, default: int | tuple[int, ...] | None = None,
                 minimum: int = 1) -> tuple[int, ...]:
        """``config[key]`` (one integer, or ``rank`` of them) as ``rank`` ints in ``[minimum, MAX_CONFIG_INT]``."""
        value = self.config.get(key)
        if value is None and default is not None:
            return default if isinstance(default, tuple) else (default,) * rank
        values = value if isinstance(value, list) else [value] * rank
        numbers = [exact_int(v) for v in values]
        if len(numbers) != rank or any(n is None or n < minimum for n in numbers):
            raise self.malformed(key, value, f"an integer, or a list of {rank}, from {minimum} to "
                                             f"{MAX_CONFIG_INT}")
        return tuple(numbers)

    def number(self, key: str, default: float | None) -> float | None:
        """``config[key]`` as a finite float, or ``default`` (which may be None) when absent."""
        value = self.config.get(key)
        if value is None:
            return default
        number = finite_float(value)
        if number is None:
            raise self.malformed(key, value, "a number")
        if not math.isfinite(number):
            raise NonFiniteParameterError(
                f"{self.source}: layer {self.name!r} ({self.class_name}) has {key}={number}; numeric "
                "settings must be finite.")
        return number

    def flag(self, key: str, default: bool) -> bool:
        """``config[key]`` as a bool (a JSON true/false; ``1`` or ``"false"`` is refused)."""
        value = self.config.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.malformed(key, value, "true or false")
        return value

    def text(self, key: str, default: str) -> str:
        """``config[key]`` as a str."""
        value = self.config.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.malformed(key, value, "a string")
        return value


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
def load_keras_h5(path: str | os.PathLike, *, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> "Network":
    """Read a Keras HDF5 model file and return the equivalent refcam :class:`~refcam.network.Network`.

    ``max_tensor_bytes`` (default 2 GiB, counted in float64) bounds every weight
    dataset; a larger declaration raises :class:`~refcam.errors.DeclaredSizeError`
    before anything is read.

    Raises :class:`FileNotFoundError` for a missing file;
    :class:`~refcam.errors.UnsafeContentError` for Lambda layers and code-carrying
    activations (:class:`~refcam.errors.ExternalReferenceError` for links or data
    outside the file); :class:`~refcam.errors.UnsupportedOperationError` listing
    every layer refcam cannot represent; :class:`~refcam.errors.FileFormatError`
    or a subclass (:class:`~refcam.errors.MissingDatasetError`,
    :class:`~refcam.errors.WeightShapeError`, :class:`~refcam.errors.DeclaredSizeError`,
    :class:`~refcam.errors.NonFiniteParameterError`) for a truncated, corrupt,
    inconsistent or crafted file. No other exception escapes.

    >>> net = load_keras_h5("model.h5")            # doctest: +SKIP
    >>> scores = net.predict(image_hwc)            # doctest: +SKIP
    """
    from ..network import Network

    budget = check_budget(max_tensor_bytes)
    source = os.fspath(path)
    with open_hdf5(source) as f, _unexpected_errors(source):
        model = parse_model_config(read_model_config(f, source), source)
        check_supported(model, source)
        layers = convert_model(model, WeightFile(f, _weights_root(f, source), source, budget))
        return Network(layers, name=model.name)


@contextlib.contextmanager
def _unexpected_errors(source: str) -> Iterator[None]:
    """Last resort: a Python or HDF5 error the checks did not foresee becomes a FileFormatError.

    refcam errors pass unchanged; errors inside one layer are already named by
    :func:`_layer_errors`.
    """
    try:
        yield
    except RefcamError:
        raise
    except HDF5_READ_ERRORS + PYTHON_ERRORS as err:
        raise FileFormatError(f"{source}: the Keras file could not be read ({type(err).__name__}: "
                              f"{_shown(str(err))}); it is truncated, corrupt or crafted.") from err


def read_model_config(f: h5py.File, source: str) -> dict[str, Any]:
    """The parsed ``model_config`` attribute: a dict with a string ``class_name`` and ``config``."""
    if "model_config" not in f.attrs:
        weights_only = "layer_names" in f.attrs
        hint = ("it holds weights only (model.save_weights); save the whole model with "
                "model.save('model.h5')" if weights_only else
                "it is not a Keras model file; save the model with model.save('model.h5')")
        raise FileFormatError(f"{source}: the root attribute 'model_config' (the architecture) is "
                              f"missing: {hint}.")
    texts = string_attribute(f, "model_config", "the root attribute 'model_config'", source)
    if len(texts) != 1:
        raise FileFormatError(f"{source}: the root attribute 'model_config' holds {len(texts)} strings; "
                              "Keras writes one JSON string.")
    config = parse_json(texts[0], "the root attribute 'model_config'", source)
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str) or "config" not in config:
        raise FileFormatError(f"{source}: 'model_config' must be a JSON object with a string 'class_name' "
                              f"and a 'config'; found {_shown(texts[0][:80])}.")
    return config


def parse_json(text: str, where: str, source: str) -> Any:
    """``json.loads(text)`` with every failure a FileFormatError; duplicate keys are refused.

    NaN and Infinity parse (as Python's json does) and are refused where a
    value is used (:meth:`KerasLayer.number`).
    """
    try:
        return json.loads(text, object_pairs_hook=functools.partial(_unique_keys, where=where, source=source))
    except FileFormatError:        # a repeated key (_unique_keys): a ValueError, but already the message
        raise
    except RecursionError as err:
        raise FileFormatError(f"{source}: {where} nests JSON arrays or objects too deeply to parse; "
                              "Keras configs are a few levels deep.") from err
    except ValueError as err:      # JSONDecodeError, and integers of more than 4300 digits
        raise FileFormatError(f"{source}: {where} is not valid JSON ({_shown(str(err))}).") from err


def _unique_keys(pairs: list[tuple[str, Any]], where: str, source: str) -> dict[str, Any]:
    """A JSON object's dict; FileFormatError when a key repeats (parsers disagree on which one wins)."""
    counts = collections.Counter(key for key, _ in pairs)
    repeated = [key for key, count in counts.items() if count > 1]
    if repeated:
        raise FileFormatError(f"{source}: {where} has a JSON object with the key {repeated[0]!r} more than "
                              "once, so its meaning is ambiguous; Keras writes each key once.")
    return dict(pairs)


def string_attribute(obj: h5py.Group, name: str, where: str, source: str) -> list[str]:
    """The strings of attribute ``name`` (a scalar or 1-D string attribute; an empty one gives []).

    The declaration (type, count) is checked before the value is read; each
    string must be valid UTF-8 (h5py would otherwise pass undecodable bytes on).
    """
    try:
        declared = obj.attrs.get_id(name)
        shape, dtype = declared.shape, declared.dtype
    except HDF5_READ_ERRORS as err:
        raise FileFormatError(f"{source}: {where} cannot be read ({err}); the file is corrupt.") from err
    count = math.prod(shape) if shape else 1
    if len(shape) > 1 or count > MAX_STRING_ATTRIBUTE_COUNT:
        raise FileFormatError(f"{source}: {where} has shape {shape}; Keras writes a string or a list of "
                              f"at most {MAX_STRING_ATTRIBUTE_COUNT} strings.")
    if count == 0:
        return []
    if h5py.check_string_dtype(dtype) is None:
        raise FileFormatError(f"{source}: {where} holds {dtype} values, not strings.")
    try:
        values = np.asarray(obj.attrs[name], dtype=object).ravel()
    except HDF5_READ_ERRORS as err:
        raise FileFormatError(f"{source}: {where} cannot be read ({err}); the file is corrupt.") from err
    return [_utf8(value, where, source) for value in values]


def _utf8(value: Any, where: str, source: str) -> str:
    """A string attribute's value as str, refusing bytes that are not UTF-8."""
    try:
        if isinstance(value, (bytes, np.bytes_)):
            return bytes(value).decode("utf-8")
        if isinstance(value, str):
            value.encode("utf-8")          # h5py keeps undecodable bytes as lone surrogates
            return value
    except UnicodeError as err:
        raise FileFormatError(f"{source}: {where} is not valid UTF-8 text ({err.reason} at byte "
                              f"{err.start}).") from err
    raise FileFormatError(f"{source}: {where} holds a {type(value).__name__}, not a string.")


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
        f"{source}: the model is a {_shown(class_name)}; refcam imports Sequential and functional models "
        "(a subclassed model has no architecture in the file).")


def _layer_entries(config: Any, source: str) -> list[dict[str, Any]]:
    entries = config.get("layers") if isinstance(config, dict) else config
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("class_name"), str) for e in entries):
        raise FileFormatError(f"{source}: 'model_config' has no list of layers with string 'class_name' "
                              "entries.")
    return entries


def _keras_layer(entry: dict[str, Any], source: str) -> KerasLayer:
    config = entry.get("config")
    if not isinstance(config, dict):
        raise FileFormatError(f"{source}: a layer entry of class {_shown(entry['class_name'])} has no "
                              "'config' object.")
    name = entry.get("name", config.get("name"))
    if not isinstance(name, str) or not name:
        raise FileFormatError(f"{source}: a layer of class {_shown(entry['class_name'])} has no name "
                              f"(found {_shown(name)}).")
    return KerasLayer(name=name, class_name=entry["class_name"], config=config, source=source)


def _model_name(config: Any, source: str) -> str | None:
    name = config.get("name") if isinstance(config, dict) else None
    if name is not None and not isinstance(name, str):
        raise FileFormatError(f"{source}: the model's 'name' is {_shown(name)}, not a string.")
    return name


def _parse_sequential(config: Any, source: str) -> KerasModel:
    layers = [_keras_layer(entry, source) for entry in _layer_entries(config, source)]
    if not layers:
        raise FileFormatError(f"{source}: the Sequential model has no layers.")
    if layers[0].class_name != "InputLayer":
        layers.insert(0, _implicit_input(layers[0], config, source))
    for previous, layer in zip(layers, layers[1:]):
        layer.inputs = (previous.name,)
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
    return KerasModel(name=_model_name(config, source), layers=_dependency_order(layers, source),
                      output=outputs[0])


def _endpoint_names(value: Any, key: str, source: str) -> list[str]:
    """``[[name, 0, 0], ...]`` (or one ``[name, 0, 0]``, Keras 3) -> names."""
    if not isinstance(value, list) or not value:
        raise FileFormatError(f"{source}: 'model_config' has no {key!r} list.")
    endpoints = [value] if isinstance(value[0], str) else value
    if not all(isinstance(e, list) and e and isinstance(e[0], str) for e in endpoints):
        raise FileFormatError(f"{source}: {key!r} must hold [layer_name, node_index, tensor_index] "
                              f"entries; found {_shown(value)}.")
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
        yield from _histories_in(node.get("args", []), layer_name, source, depth=0)
        return
    if not isinstance(node, list):
        raise FileFormatError(f"{source}: layer {layer_name!r} has an inbound node {_shown(node)} that is "
                              "neither a list nor an object.")
    for entry in node:
        if not (isinstance(entry, list) and len(entry) >= 3 and isinstance(entry[0], str)):
            raise FileFormatError(f"{source}: layer {layer_name!r} has an inbound entry {_shown(entry)}; "
                                  "expected [layer_name, node_index, tensor_index, kwargs].")
        yield entry[0], _index(entry[1], layer_name, source), _index(entry[2], layer_name, source)


def _histories_in(value: Any, layer_name: str, source: str, depth: int) -> Iterator[tuple[str, int, int]]:
    """Keras 3: every ``keras_history`` inside a node's ``args``, depth first (at most MAX_ARGS_DEPTH deep)."""
    if depth > MAX_ARGS_DEPTH:
        raise FileFormatError(f"{source}: layer {layer_name!r} has inbound 'args' nested more than "
                              f"{MAX_ARGS_DEPTH} levels deep; Keras writes two or three.")
    if isinstance(value, list):
        for item in value:
            yield from _histories_in(item, layer_name, source, depth + 1)
    elif isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        tensor_config = value.get("config")
        history = tensor_config.get("keras_history") if isinstance(tensor_config, dict) else None
        if not (isinstance(history, list) and len(history) == 3 and isinstance(history[0], str)):
            raise FileFormatError(f"{source}: layer {layer_name!r} has a tensor argument without a valid "
                                  f"'keras_history' ({_shown(history)}).")
        yield history[0], _index(history[1], layer_name, source), _index(history[2], layer_name, source)


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


# --- what refcam supports: checked on the config alone, every problem collected ----------------------
def check_supported(model: KerasModel, source: str = "model") -> None:
    """Raise UnsafeContentError for code in the file, then UnsupportedOperationError listing every other problem.

    Code is a Lambda layer, or an activation that is a Python lambda or a
    function from outside Keras (a custom object). The checks use the config
    alone (no weights), so every problem is found in one pass; a malformed
    value raises a FileFormatError naming the layer at once.
    """
    unsafe = [f"{layer.name!r} ({reason})" for layer in model.layers for reason in _code_in(layer)]
    if unsafe:
        raise UnsafeContentError(
            f"{source}: {', '.join(unsafe)}: serialized Python code or custom objects; refcam never "
            "executes code from a file (like Keras safe_mode). Replace them by built-in layers and "
            "activations and save again.")
    ranks: dict[str, int | None] = {}
    for layer in model.layers:
        input_ranks = [ranks.get(name) for name in layer.inputs]
        with _layer_errors(layer, source):
            layer.problems.extend(_layer_problems(layer, input_ranks))
            ranks[layer.name] = _keras_rank(layer, input_ranks)
    problems = [f"{layer.name!r} ({layer.class_name}): {'; '.join(layer.problems)}"
                for layer in model.layers if layer.problems]
    if problems:
        raise UnsupportedOperationError(
            f"{source}: refcam cannot import {len(problems)} Keras layer(s):\n  " + "\n  ".join(problems)
            + "\nSupported layers and options are listed in docs/import.md (Keras section).")


def _code_in(layer: KerasLayer) -> list[str]:
    """Why ``layer`` holds or names Python code: a Lambda layer, a lambda or custom-function activation."""
    if layer.class_name in LAMBDA_CLASSES:
        return ["a Lambda layer"]
    activation = layer.config.get("activation")
    if not isinstance(activation, dict):
        return []
    if activation.get("class_name") in LAMBDA_CLASSES:
        return [f"activation {_shown(activation)} is a Python lambda"]
    if activation.get("class_name") == "function" and not _is_keras_module(activation.get("module")):
        return [f"activation {_shown(activation)} is a custom function from module "
                f"{_shown(activation.get('module'))}"]
    return []


def decode_activation(value: Any) -> str | None:
    """The name of a Keras activation from its serialised form; None for a form Keras does not write.

    null (Keras's ``activation=None``) is ``"linear"``; a string is the name
    (Keras 2, tf.keras, Keras 3); a dict is the new-style serialisation of a
    built-in function, ``{"module": "keras.activations", "class_name": "function",
    "config": "relu", ...}``. Any other dict (an activation layer object, a
    lambda, a custom function) is not an activation name.

    >>> decode_activation({"module": "keras.activations", "class_name": "function", "config": "relu"})
    'relu'
    >>> decode_activation({"class_name": "Lambda"}) is None
    True
    """
    if value is None:
        return IDENTITY_ACTIVATION
    if isinstance(value, str):
        return value
    if (isinstance(value, dict) and value.get("class_name") == "function" and isinstance(value.get("config"), str)
            and isinstance(value.get("module"), str) and _is_keras_module(value["module"])):
        return value["config"]
    return None


def _is_keras_module(module: Any) -> bool:
    """``"keras.activations"``, ``"keras.src.activations.activations"``, ... (a module of Keras itself)."""
    return isinstance(module, str) and module.split(".")[0] in KERAS_MODULE_ROOTS


def _activation_name(layer: KerasLayer) -> str:
    """The layer's decoded ``activation`` (checked by :func:`_activation_problems` before conversion)."""
    name = decode_activation(layer.config.get("activation"))
    if name is None:
        raise layer.malformed("activation", layer.config.get("activation"), "a Keras activation")
    return name


@contextlib.contextmanager
def _layer_errors(layer: KerasLayer, source: str) -> Iterator[None]:
    """Errors while checking or converting one Keras layer, as FileFormatErrors naming that layer.

    A refcam layer refusing the converted properties (LayerConfigError,
    LayerShapeError) means the Keras config is inconsistent; a Python error is a
    malformed value the typed readers did not foresee (a safety net). Other
    refcam errors pass unchanged.
    """
    try:
        yield
    except LAYER_BUILD_ERRORS as err:
        raise FileFormatError(f"{source}: Keras layer {layer.name!r} ({layer.class_name}) does not convert "
                              f"to a valid refcam layer: {err} The file's config for this layer is "
                              "inconsistent.") from err
    except RefcamError:
        raise
    except PYTHON_ERRORS as err:
        raise FileFormatError(f"{source}: layer {layer.name!r} ({layer.class_name}) has a malformed config "
                              f"({type(err).__name__}: {_shown(str(err))}).") from err


def _keras_rank(layer: KerasLayer, input_ranks: list[int | None]) -> int | None:
    """Axes of the layer's Keras output without the batch axis, when known."""
    if layer.class_name == "InputLayer":
        shape = _input_shape(layer)
        return None if shape is None else len(shape) - 1
    if layer.class_name in ("Flatten", "Dense") or (
            layer.class_name.startswith("Global") and not layer.flag("keepdims", False)):
        return 1
    return input_ranks[0] if input_ranks else None


def _layer_problems(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    if layer.class_name in ("Sequential", *FUNCTIONAL_CLASSES):
        return ["a nested model; refcam imports flat models (inline the nested model's layers)"]
    spec = CONVERTERS.get(layer.class_name)
    if spec is None:
        return [f"no refcam equivalent for the Keras class {layer.class_name!r} (custom or unsupported)"]
    problems = _data_format_problems(layer) + _activation_problems(layer)
    if spec.check is not None:
        problems.extend(spec.check(layer, input_ranks))
    return problems


def _data_format_problems(layer: KerasLayer) -> list[str]:
    data_format = layer.text("data_format", "channels_last")
    if data_format == "channels_first":
        return ["data_format='channels_first'; refcam imports channels_last models only"]
    if data_format != "channels_last":
        raise layer.malformed("data_format", data_format, "'channels_last' or 'channels_first'")
    return []


def _activation_problems(layer: KerasLayer) -> list[str]:
    if "activation" not in layer.config:
        return ["an Activation layer without 'activation'"] if layer.class_name == "Activation" else []
    value = layer.config["activation"]
    name = decode_activation(value)
    if name is None:
        return [f"activation {_shown(value)} is not a serialised Keras activation (a name such as 'relu', or "
                "{'module': 'keras.activations', 'class_name': 'function', 'config': 'relu'})"]
    if name not in (*ACTIVATIONS, IDENTITY_ACTIVATION):
        return [f"activation {name!r} is not one of {sorted(ACTIVATIONS) + [IDENTITY_ACTIVATION]}"]
    return []


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
    mode = layer.text("padding", "valid").lower()
    return [] if mode in allowed else [f"padding {mode!r} is not one of {list(allowed)}"]


def _check_relu(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    problems = []
    threshold = layer.number("threshold", 0.0)
    if threshold != 0.0:
        problems.append(f"threshold {threshold} (only 0 is supported)")
    slope, ceiling = layer.number("negative_slope", 0.0), layer.number("max_value", None)
    if slope != 0.0 and ceiling is not None:
        problems.append("both negative_slope and max_value are set (no refcam layer does both)")
    if ceiling is not None and not ceiling > 0.0:
        problems.append(f"max_value {ceiling} must be positive")
    return problems


def _check_leaky_relu(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    _leaky_slope(layer)
    return []


def _check_dense(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    rank = input_ranks[0] if input_ranks else None
    if rank is not None and rank != 1:
        return [f"Dense on a rank-{rank + 1} input (batch included) applies to the last axis only, per "
                "position; refcam's fully connected layer takes flat inputs (add Flatten or global pooling)"]
    return []


def _check_channel_axis(key: str) -> Callable[[KerasLayer, list[int | None]], list[str]]:
    def check(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
        axis = layer.get(key, -1)
        axes = [exact_int(a) for a in (axis if isinstance(axis, list) else [axis])]
        if any(a is None for a in axes):
            raise layer.malformed(key, axis, "an integer axis or a list of them")
        rank = input_ranks[0] if input_ranks else None
        if len(axes) == 1 and (axes[0] == -1 or (rank is not None and axes[0] == rank)):
            return []
        return [f"{key}={axis!r}; refcam supports the channel axis only (-1)"]
    return check


def _check_rescaling(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    rank = input_ranks[0] if input_ranks else None
    problems = []
    for key in ("scale", "offset"):
        array = _constant_array(layer, key, 0.0)
        if rank is not None and array.ndim > rank:
            problems.append(f"{key} has {array.ndim} axes, more than the input's {rank}")
    return problems


def _check_dropout(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    rate = layer.number("rate", 0.0)
    return [] if 0.0 <= rate < 1.0 else [f"rate {rate} is not in [0, 1)"]


def _check_zero_padding(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    _zero_padding_property(layer)
    return []


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
        with _layer_errors(keras_layer, weights.source):
            _check_input_count(keras_layer)
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
    return _with_sequence_length(layers, weights.source)


def _check_input_count(layer: KerasLayer) -> None:
    """An InputLayer takes no inputs, Add and Concatenate one or more, every other layer exactly one."""
    count = len(layer.inputs)
    if layer.class_name == "InputLayer":
        fits, wanted = count == 0, "none"
    elif layer.class_name in MERGE_CLASSES:
        fits, wanted = count >= 1, "one or more"
    else:
        fits, wanted = count == 1, "exactly one"
    if not fits:
        raise FileFormatError(f"{layer.source}: layer {layer.name!r} ({layer.class_name}) takes {count} "
                              f"input(s) {list(layer.inputs)}; a {layer.class_name} takes {wanted}.")


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


def _with_sequence_length(layers: list[Layer], source: str) -> list[Layer]:
    """Give a free-length sequence input the shortest length every layer accepts (its ``min_length``)."""
    first = layers[0]
    if not isinstance(first, SequenceInputLayer) or first.min_length > 1:
        return layers
    for length in range(1, MAX_SEQUENCE_SEARCH + 1):
        if _shapes_fit(layers, (first.input_size, length)):
            return [dataclasses.replace(first, min_length=length)] + layers[1:]
    raise FileFormatError(f"{source}: no sequence of up to {MAX_SEQUENCE_SEARCH} steps fits the imported "
                          "layers (their kernels and strides need a longer input than any real sequence).")


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
           activation: str = IDENTITY_ACTIVATION) -> list[Layer]:
    """Layers ``parts`` (role, factory) in series, then the activation; the last takes the Keras name.

    Each factory gets ``(name, inputs)``. Earlier layers are named ``<keras name>/<role>``.
    """
    steps = list(parts)
    if activation != IDENTITY_ACTIVATION:
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


def _padding_property(layer: KerasLayer) -> Any:
    mode = layer.text("padding", "valid").lower()
    return 0 if mode == "valid" else mode


def _input_channels(context: Context, layer: KerasLayer) -> int:
    return int(context.inputs_of(layer)[0].shape[0])


# --- converters, one per Keras family ---------------------------------------------------------------
def _input_shape(layer: KerasLayer) -> list[int | None] | None:
    """``batch_input_shape`` (Keras 2) or ``batch_shape`` (Keras 3): the batch entry, then sizes or null."""
    key = "batch_input_shape" if layer.get("batch_input_shape") is not None else "batch_shape"
    shape = layer.get(key)
    if shape is None:
        return None
    sizes = [None if n is None else exact_int(n) for n in shape[1:]] if isinstance(shape, list) else None
    if not shape or sizes is None or any(n is not None and (size is None or size < 1)
                                         for n, size in zip(shape[1:], sizes)):
        raise layer.malformed(key, shape, f"a list [batch, sizes...] of integers from 1 to {MAX_CONFIG_INT} "
                                          "or null")
    return [None, *sizes]


def convert_input(layer: KerasLayer, context: Context) -> list[Layer]:
    """InputLayer -> image, 3-D image or sequence input layer without normalisation."""
    observation = _input_shape(layer)[1:]
    if len(observation) == 2:
        steps, channels = observation
        result: Layer = SequenceInputLayer(name=layer.name, input_size=channels, normalization="none",
                                           min_length=steps or 1)
        context.input_shape = (channels, steps)
        return [result]
    cls = ImageInputLayer if len(observation) == 3 else Image3dInputLayer
    result = cls(name=layer.name, input_size=tuple(observation), normalization="none")
    context.input_shape = result.per_observation_shape()
    return [result]


def _convolution(layer: KerasLayer, name: str, inputs: tuple[str, ...], context: Context) -> Layer:
    rank = _rank_of_class(layer)
    groups = layer.integer("groups", 1)
    channels = _input_channels(context, layer)
    if channels % groups:
        raise layer.malformed("groups", groups, f"a divisor of the input's {channels} channels")
    filters = layer.integer("filters")
    kernel_size = layer.integers("kernel_size", rank)
    kernel = context.weights.get(layer, "kernel", (*kernel_size, channels // groups, filters))
    bias = context.weights.get(layer, "bias", (filters,)) if layer.flag("use_bias", True) else None
    return CONVOLUTION_BY_RANK[rank](
        name=name, inputs=inputs, filter_size=kernel_size, num_filters=filters,
        stride=layer.integers("strides", rank, 1), dilation_factor=layer.integers("dilation_rate", rank, 1),
        padding=_padding_property(layer), groups=groups, weights=conv_kernel_to_internal(kernel), bias=bias)


def _depthwise(layer: KerasLayer, name: str, inputs: tuple[str, ...], context: Context, *,
               with_bias: bool) -> Layer:
    rank = _rank_of_class(layer)
    channels = _input_channels(context, layer)
    multiplier = layer.integer("depth_multiplier", 1)
    kernel_size = layer.integers("kernel_size", rank)
    kernel = context.weights.get(layer, ("depthwise_kernel", "kernel"), (*kernel_size, channels, multiplier))
    bias = (context.weights.get(layer, "bias", (channels * multiplier,))
            if with_bias and layer.flag("use_bias", True) else None)
    cls = GroupedConvolution2dLayer if rank == 2 else CONVOLUTION_BY_RANK[rank]
    return cls(name=name, inputs=inputs, filter_size=kernel_size, num_filters=channels * multiplier,
               stride=layer.integers("strides", rank, 1),
               dilation_factor=layer.integers("dilation_rate", rank, 1),
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
    multiplier = layer.integer("depth_multiplier", 1)
    filters = layer.integer("filters")

    def pointwise(name: str, inputs: tuple[str, ...]) -> Layer:
        kernel_shape = (*(1,) * rank, channels * multiplier, filters)
        kernel = context.weights.get(layer, "pointwise_kernel", kernel_shape)
        bias = context.weights.get(layer, "bias", (filters,)) if layer.flag("use_bias", True) else None
        return CONVOLUTION_BY_RANK[rank](name=name, inputs=inputs, filter_size=1, num_filters=filters,
                                  weights=conv_kernel_to_internal(kernel), bias=bias)

    return _chain(layer, context, [
        ("depthwise", lambda name, inputs: _depthwise(layer, name, inputs, context, with_bias=False)),
        ("pointwise", pointwise)], _activation_name(layer))


def _dense(layer: KerasLayer, name: str, inputs: tuple[str, ...], context: Context) -> Layer:
    units = layer.integer("units")
    size = math.prod(context.inputs_of(layer)[0].shape)
    kernel = context.weights.get(layer, "kernel", (size, units))
    bias = context.weights.get(layer, "bias", (units,)) if layer.flag("use_bias", True) else None
    return FullyConnectedLayer(name=name, inputs=inputs, output_size=units, flatten_order="channels-last",
                               weights=dense_kernel_to_internal(kernel), bias=bias)


def convert_batch_norm(layer: KerasLayer, context: Context) -> list[Layer]:
    """BatchNormalization -> batch normalisation with Keras's epsilon; absent gamma/beta are 1/0."""
    channels = _input_channels(context, layer)
    epsilon = layer.number("epsilon", 1e-3)
    mean = context.weights.get(layer, "moving_mean", (channels,))
    variance = context.weights.get(layer, "moving_variance", (channels,))
    scale = (context.weights.get(layer, "gamma", (channels,)) if layer.flag("scale", True)
             else np.ones_like(mean))
    offset = (context.weights.get(layer, "beta", (channels,)) if layer.flag("center", True)
              else np.zeros_like(mean))
    return _chain(layer, context, [("bn", lambda name, inputs: BatchNormalizationLayer(
        name=name, inputs=inputs, epsilon=epsilon, trained_mean=mean,
        trained_variance=variance, scale=scale, offset=offset))])


def convert_activation(layer: KerasLayer, context: Context) -> list[Layer]:
    """Activation(relu, relu6, sigmoid, tanh, softmax) -> its layer; Activation('linear') -> nothing."""
    if _activation_name(layer) == IDENTITY_ACTIVATION:
        return []
    return _chain(layer, context, [], _activation_name(layer))


def convert_relu(layer: KerasLayer, context: Context) -> list[Layer]:
    """ReLU(max_value, negative_slope) -> ReLU, clipped ReLU or leaky ReLU."""
    slope, ceiling = layer.number("negative_slope", 0.0), layer.number("max_value", None)

    def make(name: str, inputs: tuple[str, ...]) -> Layer:
        if ceiling is not None:
            return ClippedReLULayer(name=name, inputs=inputs, ceiling=ceiling)
        if slope != 0.0:
            return LeakyReLULayer(name=name, inputs=inputs, scale=slope)
        return ReLULayer(name=name, inputs=inputs)

    return _chain(layer, context, [("relu", make)])


def _leaky_slope(layer: KerasLayer) -> float:
    """LeakyReLU's slope: ``negative_slope`` (Keras 3), else ``alpha`` (Keras 2), else Keras's default 0.3."""
    slope = layer.number("negative_slope", None)
    return layer.number("alpha", 0.3) if slope is None else slope


def convert_leaky_relu(layer: KerasLayer, context: Context) -> list[Layer]:
    """LeakyReLU(alpha | negative_slope; Keras default 0.3) -> leaky ReLU."""
    slope = _leaky_slope(layer)
    return _chain(layer, context, [("leaky_relu", lambda name, inputs: LeakyReLULayer(
        name=name, inputs=inputs, scale=slope))])


def _simple(make: Callable[[KerasLayer, str, tuple[str, ...]], Layer]) -> Converter:
    """A converter making one refcam layer from the config alone."""
    def convert(layer: KerasLayer, context: Context) -> list[Layer]:
        return _chain(layer, context, [("layer", lambda name, inputs: make(layer, name, inputs))])
    return convert


def _pooling(layer: KerasLayer, name: str, inputs: tuple[str, ...]) -> Layer:
    rank = _rank_of_class(layer)
    pool_size = layer.integers("pool_size", rank, 2)
    stride = layer.integers("strides", rank, pool_size)
    padding = _padding_property(layer)
    if layer.class_name.startswith("Max"):
        return MAX_POOLING_BY_RANK[rank](name=name, inputs=inputs, pool_size=pool_size, stride=stride,
                                      padding=padding)
    return AVERAGE_POOLING_BY_RANK[rank](name=name, inputs=inputs, pool_size=pool_size, stride=stride,
                                  padding=padding, padding_value="mean" if padding == "same" else 0)


def _global_pooling(layer: KerasLayer, name: str, inputs: tuple[str, ...]) -> Layer:
    classes = GLOBAL_MAX_POOLING_BY_RANK if "Max" in layer.class_name else GLOBAL_AVERAGE_POOLING_BY_RANK
    return classes[_rank_of_class(layer)](name=name, inputs=inputs)


def _zero_padding_property(layer: KerasLayer) -> tuple[int, ...]:
    """ZeroPadding ``padding`` (integers from 0 to MAX_CONFIG_INT, in a Keras form) as refcam's property."""
    value = layer.get("padding", 1)
    items = value if isinstance(value, list) else [value]
    leaves = [leaf for item in items for leaf in (item if isinstance(item, list) else [item])]
    numbers = [exact_int(leaf) for leaf in leaves]
    if not leaves or any(n is None or n < 0 for n in numbers):
        raise layer.malformed("padding", value, f"integers from 0 to {MAX_CONFIG_INT}")
    exact = _with_leaves(value, iter(numbers))
    try:
        return zero_padding_to_internal(exact, _rank_of_class(layer))
    except ValueError as err:
        raise layer.malformed("padding", value, str(err)) from err


def _with_leaves(value: Any, numbers: Iterator[int]) -> Any:
    """``value`` (a number, or lists of at most two levels) with its numbers replaced by ``numbers``, in order."""
    if isinstance(value, list):
        return [_with_leaves(item, numbers) for item in value]
    return next(numbers)


def _zero_padding(layer: KerasLayer, name: str, inputs: tuple[str, ...]) -> Layer:
    return PaddingLayer(name=name, inputs=inputs, padding=_zero_padding_property(layer))


def _constant_array(layer: KerasLayer, key: str, default: float) -> np.ndarray:
    """Rescaling's ``scale`` or ``offset``: a number or a rectangular list of numbers, finite in float32."""
    value = layer.get(key, default)
    if not _numbers_only(value, MAX_CONSTANT_DEPTH):
        raise layer.malformed(key, value, f"a number or a list of numbers (at most {MAX_CONSTANT_DEPTH} "
                                          "levels)")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, OverflowError) as err:       # ragged lists; integers beyond float range
        raise layer.malformed(key, value, "a number or a rectangular list of numbers") from err
    with np.errstate(over="ignore"):
        finite = bool(np.isfinite(array.astype(np.float32)).all())
    if not finite:
        raise NonFiniteParameterError(
            f"{layer.source}: layer {layer.name!r} ({layer.class_name}) has {key}={_shown(value)}, NaN, Inf or "
            "beyond float32 (Keras evaluates it in float32); numeric settings must be finite.")
    return array


def _numbers_only(value: Any, depth: int) -> bool:
    """Whether ``value`` is a JSON number, or lists of them at most ``depth`` levels deep."""
    if isinstance(value, list):
        return depth > 0 and all(_numbers_only(item, depth - 1) for item in value)
    return finite_float(value) is not None


def convert_rescaling(layer: KerasLayer, context: Context) -> list[Layer]:
    """Rescaling(scale, offset) -> ``y = x * scale + offset`` (numbers or per-channel lists)."""
    rank = len(context.inputs_of(layer)[0].shape)
    scale = channels_last_constant(_constant_array(layer, "scale", 1.0), rank)
    offset = channels_last_constant(_constant_array(layer, "offset", 0.0), rank)
    return _chain(layer, context, [("scaling", lambda name, inputs: ScalingLayer(
        name=name, inputs=inputs, scale=scale, offset=offset))])


def _dropout(layer: KerasLayer, name: str, inputs: tuple[str, ...]) -> Layer:
    return DropoutLayer(name=name, inputs=inputs, probability=layer.number("rate", 0.0))


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
    ``[begin, end]``) or ``rank`` ``[begin, end]`` pairs; any other form is a
    ValueError saying which forms are valid.

    >>> zero_padding_to_internal([[1, 2], [3, 4]], 2)
    (1, 3, 2, 4)
    """
    if _is_int(padding):
        pairs = [(padding, padding)] * rank
    elif not isinstance(padding, (list, tuple)):
        pairs = []
    elif rank == 1 and len(padding) == 2 and all(_is_int(p) for p in padding):
        pairs = [tuple(padding)]
    elif all(_is_int(p) for p in padding):
        pairs = [(p, p) for p in padding]
    else:
        pairs = [tuple(p) if isinstance(p, (list, tuple)) else () for p in padding]
    if len(pairs) != rank or any(len(pair) != 2 or not all(_is_int(p) for p in pair) for pair in pairs):
        raise ValueError(f"an integer, {rank} integers or {rank} [begin, end] pairs of integers")
    return tuple(int(p[0]) for p in pairs) + tuple(int(p[1]) for p in pairs)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


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
    """The per-layer weight groups of a Keras file, read by role with shape, size and value checks.

    ``root`` is the path of the group holding the layer groups (``/model_weights``,
    or ``/`` for the ``save_weights`` layout; None when the file has none).
    Every object is reached from the file root with :func:`refcam.io.safe.hdf5_object`,
    so each path component must be a hard link; every dataset is read with
    :func:`refcam.io.safe.read_dataset` against the shape the config implies.
    """

    def __init__(self, f: h5py.File, root: str | None, source: str,
                 max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> None:
        self.file = f
        self.root = root
        self.source = source
        self.max_tensor_bytes = max_tensor_bytes

    def get(self, layer: KerasLayer, roles: str | Sequence[str], keras_shape: Sequence[int]) -> np.ndarray:
        """The weight of ``layer`` named by one of ``roles``, checked against ``keras_shape``."""
        roles = (roles,) if isinstance(roles, str) else tuple(roles)
        group_path = self._group_path(layer)
        names = self._weight_names(layer, group_path)
        by_role = _weights_by_role(names, f"the 'weight_names' of {group_path}", self.source)
        found = next((by_role[role] for role in roles if role in by_role), None)
        if found is None:
            raise MissingDatasetError(
                f"{self.source}: layer {layer.name!r} ({layer.class_name}) has no weight {roles[0]!r}: its "
                f"group {group_path} lists weight_names {names}.")
        return self._read(layer, f"{group_path}/{found}", tuple(keras_shape))

    def _group_path(self, layer: KerasLayer) -> str:
        if self.root is None:
            raise MissingDatasetError(f"{self.source}: the group /model_weights is missing, so layer "
                                      f"{layer.name!r} ({layer.class_name}) has no weights.")
        return f"{self.root.rstrip('/')}/{layer.name}"

    def _weight_names(self, layer: KerasLayer, group_path: str) -> list[str]:
        group = self._object(group_path, h5py.Group,
                             f"the weight group {group_path} of layer {layer.name!r} ({layer.class_name}) is "
                             "missing")
        if "weight_names" not in group.attrs:
            raise MissingDatasetError(f"{self.source}: the group {group_path} of layer {layer.name!r} has no "
                                      "'weight_names' attribute.")
        return string_attribute(group, "weight_names", f"the attribute 'weight_names' of {group_path}",
                                self.source)

    def _read(self, layer: KerasLayer, path: str, expected: Shape) -> np.ndarray:
        where = f"the dataset {path} of layer {layer.name!r} ({layer.class_name})"
        dataset = self._object(path, h5py.Dataset, f"{where}, listed in weight_names, is missing")
        try:
            dtype = dataset.dtype
        except HDF5_READ_ERRORS as err:
            raise FileFormatError(f"{self.source}: {where} has an HDF5 type refcam cannot read ({err}).") from err
        if dtype.kind != "f":
            raise WeightShapeError(f"{self.source}: {where} has dtype {dtype}; weights are floating-point "
                                   "arrays.")
        return read_dataset(dataset, where, self.source, expected_shape=expected,
                            max_tensor_bytes=self.max_tensor_bytes)

    def _object(self, path: str, expected: type, missing: str) -> Any:
        """The object at ``path`` from the file root (every component a hard link); MissingDatasetError if absent.

        Only the last component is tested for absence, in its parent reached
        through hard links, so no link is followed to find out.
        """
        parent_path, _, leaf = "/".join(part for part in path.split("/") if part).rpartition("/")
        parent = hdf5_object(self.file, parent_path, h5py.Group, self.source) if parent_path else self.file
        if leaf not in (".", "..") and parent.get(leaf, getlink=True) is None:
            raise MissingDatasetError(f"{self.source}: {missing}.")
        return hdf5_object(self.file, path, expected, self.source)


def _weights_by_role(names: list[str], where: str, source: str) -> dict[str, str]:
    """``{role: weight name}``; two names of one role (``a/kernel:0`` and ``b/kernel:0``) are ambiguous."""
    by_role: dict[str, str] = {}
    for name in names:
        role = _role_of(name)
        if role in by_role:
            raise FileFormatError(f"{source}: {where} lists two weights of role {role!r} ({by_role[role]!r} "
                                  f"and {name!r}); Keras writes each weight once.")
        by_role[role] = name
    return by_role


def _role_of(weight_name: str) -> str:
    """``"conv2d/kernel:0"`` -> ``"kernel"``."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _weights_root(f: h5py.File, source: str) -> str | None:
    """``/model_weights`` (``model.save``), ``/`` when the layer groups sit at the root, or None.

    ``/model_weights`` must be a group reached by a hard link.
    """
    if f.get("model_weights", getlink=True) is not None:
        return hdf5_object(f, "model_weights", h5py.Group, source).name
    return "/" if "layer_names" in f.attrs else None


CONVERTERS: dict[str, Spec] = {
    "InputLayer": Spec(convert_input, _check_input),
    **{f"Conv{n}D": Spec(_single(_convolution), _check_padding_mode) for n in (1, 2, 3)},
    **{f"DepthwiseConv{n}D": Spec(convert_depthwise, _check_padding_mode) for n in (1, 2)},
    **{f"SeparableConv{n}D": Spec(convert_separable, _check_padding_mode) for n in (1, 2)},
    "Dense": Spec(_single(_dense), _check_dense),
    "BatchNormalization": Spec(convert_batch_norm, _check_channel_axis("axis")),
    "Activation": Spec(convert_activation),
    "ReLU": Spec(convert_relu, _check_relu),
    "LeakyReLU": Spec(convert_leaky_relu, _check_leaky_relu),
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
    **{f"ZeroPadding{n}D": Spec(_simple(_zero_padding), _check_zero_padding) for n in (1, 2, 3)},
    "Rescaling": Spec(convert_rescaling, _check_rescaling),
}
