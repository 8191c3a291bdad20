"""Keras layers to refcam layers: the conversion framework and the converters of the classic layers.

Part of the Keras HDF5 importer (:mod:`refcam.io.keras_h5` describes the whole
format and the naming rules; :mod:`refcam.io.keras_layers_modern` holds the
converters of the newer layers). A converter takes a parsed
:class:`~refcam.io.keras_config.KerasLayer` and a :class:`Context` (the
converted inputs and the weight file) and returns the refcam layers, the last
carrying the Keras name. A check takes the layer and the Keras ranks of its
inputs and returns what refcam cannot represent, from the config alone.

Activations (``activation=`` on a layer, or an ``Activation`` layer)::

    relu, relu6, sigmoid, tanh, softmax      ReLU, clipped ReLU 6, sigmoid, tanh, softmax
    swish, silu                              x * sigmoid(x)                 (SwishLayer)
    gelu                                     x Phi(x), exact (erf)          (GELULayer; Keras's approximate=False)
    hard_sigmoid   Keras 2 (tf-keras 2.x)    clip(0.2 x + 0.5, 0, 1)        (HardSigmoidLayer(0.2, 0.5);
                                                                             tf_keras/src/backend.py hard_sigmoid)
                   Keras 3                   relu6(x + 3) / 6               (HardSigmoidLayer(1/6, 0.5);
                                                                             keras/src/backend/*/nn.py hard_sigmoid)
    hard_silu, hard_swish (Keras 3 only)     x relu6(x + 3) / 6             (HardSwishLayer(1/6, 0.5))
    linear (or null)                         the identity: no layer

The Keras version is the file's ``keras_version`` attribute; ``hard_sigmoid``
in a file that does not say is refused (the two versions disagree), and
``hard_silu``/``hard_swish`` in a Keras 2 file too (tf-keras has no such
activation, so the name can only be a custom function).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import NonFiniteParameterError
from ..layers import (AVERAGE_POOLING_BY_RANK, CONVOLUTION_BY_RANK, GLOBAL_AVERAGE_POOLING_BY_RANK,
                      GLOBAL_MAX_POOLING_BY_RANK, MAX_POOLING_BY_RANK)
from ..layers.activation import (ClippedReLULayer, GELULayer, LeakyReLULayer, ReLULayer, SoftmaxLayer,
                                 SwishLayer)
from ..layers.base import Layer
from ..layers.combine import AdditionLayer, DepthConcatenationLayer
from ..layers.convolution import GroupedConvolution2dLayer
from ..layers.extra import (HardSigmoidLayer, HardSwishLayer, PaddingLayer, ScalingLayer, SigmoidLayer,
                            TanhLayer)
from ..layers.input import Image3dInputLayer, ImageInputLayer, SequenceInputLayer
from ..layers.linear import DropoutLayer, FullyConnectedLayer
from ..layers.normalization import BatchNormalizationLayer
from .keras_layer import MAX_CONFIG_INT, KerasLayer, _shown, exact_int, finite_float
from .keras_weights import (Shape, WeightFile, channels_last_constant, conv_kernel_to_internal,
                            dense_kernel_to_internal, depthwise_kernel_to_internal, zero_padding_to_internal)

Factory = Callable[[str, tuple[str, ...]], Layer]


IDENTITY_ACTIVATION = "linear"
ACTIVATIONS: dict[str, Factory] = {          # the same in every Keras version
    "relu": lambda name, inputs: ReLULayer(name=name, inputs=inputs),
    "relu6": lambda name, inputs: ClippedReLULayer(name=name, inputs=inputs, ceiling=6.0),
    "sigmoid": lambda name, inputs: SigmoidLayer(name=name, inputs=inputs),
    "tanh": lambda name, inputs: TanhLayer(name=name, inputs=inputs),
    "softmax": lambda name, inputs: SoftmaxLayer(name=name, inputs=inputs),
    "swish": lambda name, inputs: SwishLayer(name=name, inputs=inputs),
    "silu": lambda name, inputs: SwishLayer(name=name, inputs=inputs),
    "gelu": lambda name, inputs: GELULayer(name=name, inputs=inputs, approximation="none"),
}
HARD_SIGMOID = {    # (alpha, beta) of y = clip(alpha x + beta, 0, 1) by Keras major version
    2: (0.2, 0.5),                 # tf_keras/src/backend.py: clip(0.2 x + 0.5, 0, 1) (also Keras 1)
    3: (1.0 / 6.0, 0.5),           # keras/src/backend/tensorflow/nn.py: relu6(x + 3) / 6
}
KERAS3_ACTIVATIONS: dict[str, Factory] = {   # names only Keras 3 defines (keras/src/activations/__init__.py)
    "hard_silu": lambda name, inputs: HardSwishLayer(name=name, inputs=inputs, alpha=1.0 / 6.0, beta=0.5),
    "hard_swish": lambda name, inputs: HardSwishLayer(name=name, inputs=inputs, alpha=1.0 / 6.0, beta=0.5),
}
ACTIVATION_NAMES = sorted([*ACTIVATIONS, "hard_sigmoid", *KERAS3_ACTIVATIONS, IDENTITY_ACTIVATION])


def _hard_sigmoid_version(layer: KerasLayer) -> int | None:
    major = layer.keras_major
    return None if major is None else (3 if major >= 3 else 2)


def activation_problem(name: str, layer: KerasLayer) -> str | None:
    """Why activation ``name`` of ``layer`` cannot be imported, or None."""
    if name == "hard_sigmoid" and _hard_sigmoid_version(layer) is None:
        return ("activation 'hard_sigmoid' is clip(0.2 x + 0.5, 0, 1) in Keras 2 and relu6(x + 3) / 6 in "
                "Keras 3, and the file has no readable 'keras_version' attribute saying which wrote it")
    if name in KERAS3_ACTIVATIONS and (layer.keras_major or 0) < 3:
        return (f"activation {name!r} is not a Keras {layer.keras_major or 2} activation (Keras 3 defines it), so "
                "it names a custom function")
    if name not in ACTIVATION_NAMES:
        return f"activation {name!r} is not one of {ACTIVATION_NAMES}"
    return None


def activation_factory(name: str, layer: KerasLayer) -> Factory:
    """The refcam layer of activation ``name`` (checked by :func:`activation_problem`) for ``layer``'s file."""
    if name == "hard_sigmoid":
        alpha, beta = HARD_SIGMOID[_hard_sigmoid_version(layer)]
        return lambda layer_name, inputs: HardSigmoidLayer(name=layer_name, inputs=inputs, alpha=alpha,
                                                            beta=beta)
    return ACTIVATIONS.get(name) or KERAS3_ACTIVATIONS[name]


KERAS_MODULE_ROOTS = ("keras", "keras_core", "tf_keras", "tensorflow")   # where built-in activations live


MAX_CONSTANT_DEPTH = 8            # nesting of a Rescaling scale/offset list (at most one per axis)


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


@dataclass
class Produced:
    """What a converted Keras layer produced: the refcam layer holding its output, its shape and Keras rank."""

    refcam_name: str
    shape: Shape          # refcam per-observation (C, *S); None for a free time axis
    keras_rank: int | None = None   # axes of the Keras tensor without the batch: (C,) from Dense is 1,
                                    # and so is (C,) from global pooling, whose refcam shape is (C, 1, ..)


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
    min_inputs: int = 1               # how many layers it takes (None: any number)
    max_inputs: int | None = 1


def _chain(keras_layer: KerasLayer, context: Context, parts: list[tuple[str, Factory]],
           activation: str = IDENTITY_ACTIVATION) -> list[Layer]:
    """Layers ``parts`` (role, factory) in series, then the activation; the last takes the Keras name.

    Each factory gets ``(name, inputs)``. Earlier layers are named ``<keras name>/<role>``.
    """
    steps = list(parts)
    if activation != IDENTITY_ACTIVATION:
        steps.append(("activation", activation_factory(activation, keras_layer)))
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
    side_amounts(layer)
    return []


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
    """Dense on a vector -> fully connected; on a sequence, image or volume (Keras applies the kernel to the
    last axis at every position) -> a 1x1 convolution with the transposed kernel."""
    units = layer.integer("units")
    produced = context.inputs_of(layer)[0]
    bias = None
    if produced.keras_rank is None or produced.keras_rank == 1:
        size = math.prod(produced.shape)
        kernel = context.weights.get(layer, "kernel", (size, units))
        if layer.flag("use_bias", True):
            bias = context.weights.get(layer, "bias", (units,))
        return FullyConnectedLayer(name=name, inputs=inputs, output_size=units, flatten_order="channels-last",
                                   weights=dense_kernel_to_internal(kernel), bias=bias)
    spatial_rank = len(produced.shape) - 1
    kernel = context.weights.get(layer, "kernel", (int(produced.shape[0]), units))
    if layer.flag("use_bias", True):
        bias = context.weights.get(layer, "bias", (units,))
    weights = dense_kernel_to_internal(kernel).reshape(units, -1, *(1,) * spatial_rank)   # (Out, In, 1, ..)
    return CONVOLUTION_BY_RANK[spatial_rank](name=name, inputs=inputs, filter_size=1, num_filters=units,
                                             weights=weights, bias=bias)


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


def side_amounts(layer: KerasLayer, key: str = "padding", default: Any = 1) -> tuple[int, ...]:
    """ZeroPadding ``padding`` or Cropping ``cropping`` (integers from 0 to MAX_CONFIG_INT, in a Keras form)
    as refcam's ``(begins..., ends...)``."""
    value = layer.get(key, default)
    items = value if isinstance(value, list) else [value]
    leaves = [leaf for item in items for leaf in (item if isinstance(item, list) else [item])]
    numbers = [exact_int(leaf) for leaf in leaves]
    if not leaves or any(n is None or n < 0 for n in numbers):
        raise layer.malformed(key, value, f"integers from 0 to {MAX_CONFIG_INT}")
    exact = _with_leaves(value, iter(numbers))
    try:
        return zero_padding_to_internal(exact, _rank_of_class(layer))
    except ValueError as err:
        raise layer.malformed(key, value, str(err)) from err


def _with_leaves(value: Any, numbers: Iterator[int]) -> Any:
    """``value`` (a number, or lists of at most two levels) with its numbers replaced by ``numbers``, in order."""
    if isinstance(value, list):
        return [_with_leaves(item, numbers) for item in value]
    return next(numbers)


def _zero_padding(layer: KerasLayer, name: str, inputs: tuple[str, ...]) -> Layer:
    return PaddingLayer(name=name, inputs=inputs, padding=side_amounts(layer))


def _constant_array(layer: KerasLayer, key: str, default: float) -> np.ndarray:
    """Rescaling's ``scale`` or ``offset``: a number or a rectangular list of numbers, finite in float32."""
    return constant_value(layer, key, layer.get(key, default))


def constant_value(layer: KerasLayer, what: str, value: Any) -> np.ndarray:
    """A constant of ``layer`` (``what`` names it in messages): a number or a rectangular list of numbers,
    finite in float32, as a float64 array of the values written."""
    if not _numbers_only(value, MAX_CONSTANT_DEPTH):
        raise layer.malformed(what, value, f"a number or a list of numbers (at most {MAX_CONSTANT_DEPTH} "
                                           "levels)")
    try:
        array = np.asarray(value, dtype=np.float64)
    except (ValueError, OverflowError) as err:       # ragged lists; integers beyond float range
        raise layer.malformed(what, value, "a number or a rectangular list of numbers") from err
    with np.errstate(over="ignore"):
        finite = bool(np.isfinite(array.astype(np.float32)).all())
    if not finite:
        raise NonFiniteParameterError(
            f"{layer.source}: layer {layer.name!r} ({layer.class_name}) has {what}={_shown(value)}, NaN, Inf or "
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
