"""Import a Keras HDF5 model: ``model.save("m.h5")`` of Keras 2 / tf.keras / tf-keras, or Keras 3 (.h5).

Only h5py and JSON are used: no TensorFlow, nothing from the file is executed.
This module holds the entry point, the checks and the conversion loop; the
parts are :mod:`refcam.io.keras_config` (the config and its graph),
:mod:`refcam.io.keras_weights` (weights and their layouts),
:mod:`refcam.io.keras_convert` (the converter framework, activations and the
classic layers) and :mod:`refcam.io.keras_layers_modern` (Multiply, Reshape,
Normalization, Cropping, UpSampling, ConvNDTranspose, LayerNormalization,
ConvNeXt's LayerScale and StochasticDepth, and arithmetic: ``TFOpLambda`` and
Keras 3 operations, read by name from an allow-list).

What is read
------------
* ``/`` attribute ``model_config``: the architecture as JSON (``Sequential`` or
  functional ``Functional``/``Model``). Functional connections come from each
  layer's ``inbound_nodes`` in any style: Keras 2's lists
  ``[[layer, node_index, tensor_index, kwargs], ...]``, tf-keras's flat node of a
  ``TFOpLambda`` ``[layer, node_index, tensor_index, {"y": ...}]``, or Keras 3's dicts
  ``{"args": [... {"keras_history": [layer, node_index, tensor_index]} ...]}``.
* ``/`` attribute ``keras_version``: its major version decides what
  ``hard_sigmoid`` means (Keras 2: ``clip(0.2 x + 0.5, 0, 1)``, Keras 3:
  ``relu6(x + 3) / 6``).
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
    Dense kernel      (In, Out)          -> (Out, In)                transpose (on a sequence, image or
                                                                     volume: a 1x1 convolution (Out, In, 1..))
    Transposed kernel (*k, F, C)         -> (C, F, *k)               transpose(N+1, N, 0..N-1)
    Rescaling scale   (..., C) or scalar -> (C, 1, ..., 1) or 0-d
    config constants  (operands, Normalization mean/variance) rounded to float32, as the saved model holds them

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
``<name>/pointwise`` for a separable convolution, ``<name>/negate`` before the
addition of ``a - b``. ``Activation("linear")``, ``StochasticDepth``, and a
``Reshape`` of a pooled vector to ``(1, .., 1, C)`` are the identity and get no
refcam layer. A nested ``Sequential`` called once is inlined
(:mod:`refcam.io.keras_nested`). Each Keras name without a refcam layer of its
own (an identity, an inlined model) is an alias of the refcam layer holding its
output (``Network.aliases``).

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

import contextlib
import dataclasses
import os
from typing import TYPE_CHECKING, Iterator

import h5py

from ..errors import (FileFormatError, LayerConfigError, LayerShapeError, RefcamError, UnsafeContentError,
                      UnsupportedOperationError)
from ..layers.activation import SoftmaxLayer
from ..layers.base import Layer
from ..layers.input import SequenceInputLayer
from ..layers.linear import FlattenLayer
from .keras_config import parse_model_config
from .keras_layer import FUNCTIONAL_CLASSES, KerasLayer, KerasModel, _shown
from .keras_convert import (Context, Produced, Spec, _check_channel_axis, _check_dropout, _check_input,
                            _check_leaky_relu, _check_padding_mode, _check_relu, _check_rescaling,
                            _check_zero_padding, _convolution, _dense, _dropout, _global_pooling, _input_shape,
                            _is_keras_module, _pooling, _simple, _single, _zero_padding, activation_problem,
                            convert_activation, convert_batch_norm, convert_depthwise, convert_input,
                            convert_leaky_relu, convert_merge, convert_relu, convert_rescaling, convert_separable,
                            decode_activation)
from .keras_layers_modern import MODERN_CONVERTERS, OPERATION_SPEC, is_keras3_operation, reshape_target
from .keras_weights import (Shape, WeightFile, _weights_root, channels_last_constant,  # noqa: F401 (re-exported)
                            conv_kernel_to_internal, dense_kernel_to_internal, depthwise_kernel_to_internal,
                            read_model_config, string_attribute, transposed_conv_kernel_to_internal,
                            zero_padding_to_internal)
from .safe import DEFAULT_MAX_TENSOR_BYTES, HDF5_READ_ERRORS, check_budget, open_hdf5

if TYPE_CHECKING:
    from ..network import Network

LAMBDA_CLASSES = ("Lambda", "__lambda__")                               # serialized Python code (Keras 2, 3)


MAX_SEQUENCE_SEARCH = 4096


LAYER_BUILD_ERRORS = (LayerConfigError, LayerShapeError)


PYTHON_ERRORS = (KeyError, TypeError, ValueError, OverflowError, ZeroDivisionError, MemoryError,
                 AttributeError, IndexError, RecursionError)


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
        model = parse_model_config(read_model_config(f, source), source, keras_version=_keras_version(f, source))
        check_supported(model, source)
        layers, aliases = convert_model(model, WeightFile(f, _weights_root(f, source), source, budget))
        return Network(layers, name=model.name, aliases=aliases)


def _keras_version(f: h5py.File, source: str) -> str | None:
    """The root attribute ``keras_version`` (``"2.21.0"``, ``"3.15.1"``), or None when absent or not one string."""
    if "keras_version" not in f.attrs:
        return None
    try:
        texts = string_attribute(f, "keras_version", "the root attribute 'keras_version'", source)
    except FileFormatError:
        return None
    return texts[0] if len(texts) == 1 else None


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
    if layer.class_name == "Flatten" or (
            layer.class_name.startswith("Global") and not layer.flag("keepdims", False)):
        return 1
    if layer.class_name == "Reshape":
        return len(reshape_target(layer))
    known = [rank for rank in input_ranks if rank is not None]
    if len(input_ranks) > 1 or spec_of(layer) is OPERATION_SPEC:      # merges and arithmetic broadcast
        return max(known) if known else None
    return input_ranks[0] if input_ranks else None


def spec_of(layer: KerasLayer) -> Spec | None:
    """How ``layer`` converts: a Keras 3 operation, or its class's Spec (None: not supported)."""
    if is_keras3_operation(layer):
        return OPERATION_SPEC
    return CONVERTERS.get(layer.class_name)


def _layer_problems(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    if layer.class_name in ("Sequential", *FUNCTIONAL_CLASSES):
        return ["a nested model refcam cannot inline: it inlines a Sequential called once by the top-level "
                "model; save the model with this one's layers in the outer model (or call it once)"]
    spec = spec_of(layer)
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
    problem = activation_problem(name, layer)
    return [] if problem is None else [problem]


# --- conversion ---------------------------------------------------------------------------


def convert_model(model: KerasModel, weights: "WeightFile") -> tuple[list[Layer], dict[str, str]]:
    """refcam layers for every Keras layer the output depends on, connected as in Keras, and the aliases.

    The aliases name, for each Keras layer that made no refcam layer of its own
    name (``Dropout``, ``StochasticDepth``, a ``Reshape`` read as nothing, an
    inlined nested model), the refcam layer holding its output, so every Keras
    layer name works as ``feature_layer=``.
    """
    context = Context(weights)
    layers: list[Layer] = []
    for keras_layer in model.layers:
        with _layer_errors(keras_layer, weights.source):
            spec = spec_of(keras_layer)
            _check_input_count(keras_layer, spec)
            converted = spec.convert(keras_layer, context)
            previous = context.inputs_of(keras_layer)
            known = {p.refcam_name: p.shape for p in previous}       # refcam name -> shape (C, *S)
            for layer in converted:
                is_input = type(layer).num_inputs == 0
                known[layer.name] = (context.input_shape if is_input else
                                     tuple(layer.output_shape(*(known[name] for name in layer.inputs))))
                layers.append(layer)
            rank = _keras_rank(keras_layer, [p.keras_rank for p in previous])
        output = converted[-1].name if converted else previous[0].refcam_name
        context.produced[keras_layer.name] = Produced(refcam_name=output, shape=known[output], keras_rank=rank)
    layers = _needed_by(layers, context.produced[model.output].refcam_name)
    return _with_sequence_length(layers, weights.source), _aliases(model, context, layers)


def _aliases(model: KerasModel, context: Context, layers: list[Layer]) -> dict[str, str]:
    """``{Keras name: refcam layer}`` for the Keras layers (and inlined models) without a refcam layer of their name."""
    names = {layer.name for layer in layers}
    holders = {keras_name: produced.refcam_name for keras_name, produced in context.produced.items()}
    holders.update({nested: holders[output] for nested, output in model.inlined.items() if output in holders})
    return {keras_name: target for keras_name, target in holders.items()
            if keras_name not in names and target in names}


def _check_input_count(layer: KerasLayer, spec: Spec) -> None:
    """The number of layers feeding ``layer`` is within its Spec's range (InputLayer: none; most: one)."""
    count = len(layer.inputs)
    low, high = spec.min_inputs, spec.max_inputs
    if count < low or (high is not None and count > high):
        wanted = ("none" if high == 0 else "exactly one" if (low, high) == (1, 1)
                  else f"from {low} to {high}" if high is not None else f"{low} or more")
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


CONVERTERS: dict[str, Spec] = {
    "InputLayer": Spec(convert_input, _check_input, min_inputs=0, max_inputs=0),
    **{f"Conv{n}D": Spec(_single(_convolution), _check_padding_mode) for n in (1, 2, 3)},
    **{f"DepthwiseConv{n}D": Spec(convert_depthwise, _check_padding_mode) for n in (1, 2)},
    **{f"SeparableConv{n}D": Spec(convert_separable, _check_padding_mode) for n in (1, 2)},
    "Dense": Spec(_single(_dense)),
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
    "Add": Spec(convert_merge, max_inputs=None),
    "Concatenate": Spec(convert_merge, _check_channel_axis("axis"), max_inputs=None),
    **{f"ZeroPadding{n}D": Spec(_simple(_zero_padding), _check_zero_padding) for n in (1, 2, 3)},
    "Rescaling": Spec(convert_rescaling, _check_rescaling),
    **MODERN_CONVERTERS,
}
