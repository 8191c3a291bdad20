"""Keras layers of newer models (MobileNetV3, EfficientNet, ConvNeXt, U-Nets) to refcam layers.

Part of the Keras HDF5 importer (:mod:`refcam.io.keras_h5` describes the whole
format; :mod:`refcam.io.keras_convert` the framework). Formulas, ``x`` the
input in Keras's channels-last layout, ``C`` its channels::

    Multiply                    y = x_1 * ... * x_n, size-1 axes broadcast        MultiplicationLayer
    Reshape to (N,)             a flatten, row-major over (S..., C)               FlattenLayer("channels-last")
    Reshape (C,) -> (1,..,1,C)  a vector given unit spatial axes: no layer, as refcam's global pooling
                                already gives (C, 1, .., 1) (squeeze-and-excitation)
    Normalization               y = (x - mean) / max(sqrt(variance), 1e-7)        ScalingLayer(1/s, -mean/s)
                  invert=True   y = mean + x * max(sqrt(variance), 1e-7)          ScalingLayer(s, mean)
    Cropping1D/2D/3D            y = x[b_1 : S_1 - e_1, ...]                       CroppingLayer
    UpSampling1D/2D/3D          nearest: each cell repeated size_i times          ResizeLayer("nearest",
                                                                                     "asymmetric", "floor")
                  bilinear (2D) tf.image.resize bilinear, half-pixel centres      ResizeLayer("linear", "half-pixel")
    Conv1D/2D/3DTranspose       the adjoint of a convolution (below)              TransposedConvolutionNdLayer
    LayerNormalization          over the channel axis, biased variance,           LayerNormalizationLayer
                                y = gamma (x - mu) / sqrt(var + epsilon) + beta      ("channel-only")
    LayerScale (ConvNeXt)       y = x * gamma, gamma (C,)                         ScalingLayer
    StochasticDepth (ConvNeXt)  y = x at prediction                               no layer
    TFOpLambda, Keras 3 operations: arithmetic on tensors and numbers (below)

``Normalization``'s 1e-7 is Keras's ``backend.epsilon()`` default (the file does
not record it; tf_keras/src/layers/preprocessing/normalization.py and
keras/src/layers/preprocessing/normalization.py ``call``). Its mean and
variance are weights (after ``adapt``) or config lists; config values, like
every number written in a config and used as a parameter here, are rounded to
float32 first, the values the saved float32 model computes with.

Transposed convolution: the Keras kernel ``(*k, F, C)`` becomes ``(C, F, *k)``.
With ``k' = (k - 1) d + 1`` and the full output ``(S - 1) s + k'``, Keras's
output length ``L`` (tf_keras ``conv_utils.deconv_output_length``, Keras 3
``compute_conv_transpose_output_shape``) is cut from it as TensorFlow's
``conv_transpose`` does (its SAME padding puts the odd cell at the end):

* ``valid``: no cropping; ``output_padding`` (or ``max(s - k', 0)`` when
  null) zero cells at the end (plus the bias);
* ``same``: ``t = k' - s`` (``output_padding`` null) or ``k' - k' % 2 - output_padding``;
  ``t >= 0`` crops ``floor(t / 2)`` at the beginning and the rest at the end,
  ``t < 0`` adds ``-t`` cells at the end.

Arithmetic. tf-keras writes a TensorFlow function applied to Keras tensors as
a ``TFOpLambda`` layer naming the function (config ``function``); Keras 3 writes
a ``keras.ops`` operation as an entry of the operation's class whose config is
only its name. Only these are read, by name, never run (operands: the tensor
``x``, and a tensor or a number / list of numbers ``c`` broadcast channels-last):

==========================================  ============================  ====================================
tf-keras ``TFOpLambda`` function             Keras 3 operation class        refcam
==========================================  ============================  ====================================
``__operators__.add``, ``math.add``          ``Add``                        x + y: AdditionLayer; x + c: Scaling
``math.multiply``                            ``Multiply``                   x * y: MultiplicationLayer; x * c
``math.subtract``                            ``Subtract``                   x - y: negate + addition; x - c, c - x
``math.truediv``                             ``TrueDivide``, ``Divide``     x / c (a number or list, not 0)
``math.negative``                            ``Negative``                   -x
``nn.relu``, ``nn.relu6``                    ``Relu``, ``Relu6``            ReLU, clipped ReLU 6
``math.sigmoid``, ``math.tanh``, ``nn.silu``  ``Sigmoid``, ``Tanh``, ``Silu``  sigmoid, tanh, swish
(none)                                       ``HardSigmoid``, ``HardSilu``  relu6(x + 3) / 6, x relu6(x + 3) / 6
(none)                                       ``Gelu``                       GELU, tanh form unless
                                                                            ``approximate`` is false
==========================================  ============================  ====================================

Anything else a TFOpLambda or an operation names is refused, with its other
arguments (a TFOpLambda may pass only ``name``; an operation none).
"""
from __future__ import annotations

import math
import numpy as np

from ..errors import FileFormatError, UnsupportedOperationError
from ..layers.activation import ClippedReLULayer, GELULayer, ReLULayer, SwishLayer
from ..layers.base import Layer
from ..layers.combine import AdditionLayer, MultiplicationLayer
from ..layers.extra import HardSigmoidLayer, HardSwishLayer, ScalingLayer, SigmoidLayer, TanhLayer
from ..layers.linear import FlattenLayer
from ..layers.normalization import LayerNormalizationLayer
from ..layers.resize import ResizeLayer
from ..layers.shape import CroppingLayer
from ..layers.transposed_convolution import (TransposedConvolution1dLayer, TransposedConvolution2dLayer,
                                             TransposedConvolution3dLayer)
from .keras_layer import MAX_CONFIG_INT, Constant, KerasLayer, _shown, exact_int
from .keras_convert import (Context, Factory, Produced, Spec, _activation_name, _chain, _check_channel_axis,
                            _input_channels, _rank_of_class, constant_value, side_amounts)
from .keras_weights import transposed_conv_kernel_to_internal

TRANSPOSED_CONVOLUTION_BY_RANK = {1: TransposedConvolution1dLayer, 2: TransposedConvolution2dLayer,
                                  3: TransposedConvolution3dLayer}
NORMALIZATION_EPSILON = 1e-7       # keras.backend.epsilon(), the default (not written in the file)
UPSAMPLING_INTERPOLATIONS = ("nearest", "bilinear")
CONVNEXT_CONFIG_KEYS = {            # keras.applications.convnext's layers: their get_config keys
    "LayerScale": {"name", "trainable", "dtype", "init_values", "projection_dim"},
    "StochasticDepth": {"name", "trainable", "dtype", "drop_path_rate"},
}
CONVNEXT_MODULES = (None, "keras.src.applications.convnext", "keras.applications.convnext",
                    "tf_keras.src.applications.convnext")   # None: legacy .h5 configs name no module
TFOP_FUNCTIONS = {                  # TFOpLambda config 'function' -> operation
    "__operators__.add": "add", "math.add": "add", "math.multiply": "multiply", "math.subtract": "subtract",
    "math.truediv": "divide", "math.negative": "negative", "nn.relu": "relu", "nn.relu6": "relu6",
    "math.sigmoid": "sigmoid", "math.tanh": "tanh", "nn.silu": "silu",
}
KERAS3_OPERATIONS = {               # Keras 3 operation class -> operation
    "Add": "add", "Multiply": "multiply", "Subtract": "subtract", "TrueDivide": "divide", "Divide": "divide",
    "Negative": "negative", "Relu": "relu", "Relu6": "relu6", "Sigmoid": "sigmoid", "Tanh": "tanh",
    "Silu": "silu", "HardSigmoid": "hard_sigmoid", "HardSilu": "hard_silu", "Gelu": "gelu",
}
OPERATION_CONFIG_KEYS = {"Gelu": {"name", "approximate"}}   # what else than "name" an operation's config holds
BINARY = ("add", "multiply", "subtract", "divide")
UNARY: dict[str, Factory] = {
    "negative": lambda name, inputs: ScalingLayer(name=name, inputs=inputs, scale=np.asarray(-1.0)),
    "relu": lambda name, inputs: ReLULayer(name=name, inputs=inputs),
    "relu6": lambda name, inputs: ClippedReLULayer(name=name, inputs=inputs, ceiling=6.0),
    "sigmoid": lambda name, inputs: SigmoidLayer(name=name, inputs=inputs),
    "tanh": lambda name, inputs: TanhLayer(name=name, inputs=inputs),
    "silu": lambda name, inputs: SwishLayer(name=name, inputs=inputs),
    "hard_sigmoid": lambda name, inputs: HardSigmoidLayer(name=name, inputs=inputs, alpha=1.0 / 6.0, beta=0.5),
    "hard_silu": lambda name, inputs: HardSwishLayer(name=name, inputs=inputs, alpha=1.0 / 6.0, beta=0.5),
    "gelu": lambda name, inputs: GELULayer(name=name, inputs=inputs, approximation="none"),
    "gelu_tanh": lambda name, inputs: GELULayer(name=name, inputs=inputs, approximation="tanh"),
}


def _single_layer(layer: KerasLayer, context: Context, role: str, factory: Factory) -> list[Layer]:
    """One refcam layer, named as the Keras layer (``role`` is what :func:`_chain` would call a first step)."""
    return _chain(layer, context, [(role, factory)])


def _per_channel(values: np.ndarray, ndim: int) -> np.ndarray:
    """A per-channel vector ``(C,)`` as ``(C, 1, ..., 1)`` with ``ndim`` axes (a 0-d array stays 0-d)."""
    if values.ndim == 0:
        return values
    return np.ascontiguousarray(values.reshape(values.shape[0], *(1,) * (ndim - 1)))


def _float32_values(array: np.ndarray) -> np.ndarray:
    """Config numbers as the float32 model holds them, in float64."""
    return array.astype(np.float32).astype(np.float64)


# --- Multiply ------------------------------------------------------------------------------
def check_same_rank(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    known = {rank for rank in input_ranks if rank is not None}
    if len(known) > 1:
        return [f"its inputs have {sorted(known)} axes (batch excluded); refcam combines inputs with one "
                "number of axes (reshape the gate to (1, 1, C), or use GlobalAveragePooling2D(keepdims=True))"]
    return []


def convert_multiply(layer: KerasLayer, context: Context) -> list[Layer]:
    """Multiply -> element-wise multiplication, size-1 axes broadcast (a SE gate (C, 1, 1) times (C, H, W))."""
    _same_axes(layer, context.inputs_of(layer))
    return _single_layer(layer, context, "multiply",
                         lambda name, inputs: MultiplicationLayer(name=name, inputs=inputs))


def _same_axes(layer: KerasLayer, produced: list[Produced]) -> None:
    """Inputs of one refcam rank (a Dense vector (C,) and a pooled (C, 1, 1) are both Keras (C,))."""
    shapes = [p.shape for p in produced]
    if len({len(shape) for shape in shapes}) > 1:
        raise UnsupportedOperationError(
            f"{layer.source}: layer {layer.name!r} ({layer.class_name}) combines inputs of refcam shapes "
            f"{shapes} from {list(layer.inputs)}, which have different numbers of axes; refcam broadcasts size-1 "
            "axes only. Give every input the same axes in Keras (e.g. GlobalAveragePooling2D(keepdims=True)).")


# --- Reshape -------------------------------------------------------------------------------
def reshape_target(layer: KerasLayer) -> tuple[int, ...]:
    """``target_shape``: integers from 1 to MAX_CONFIG_INT, at most one -1 (the size Keras infers)."""
    value = layer.get("target_shape")
    numbers = [exact_int(n) for n in value] if isinstance(value, list) else [None]
    if not numbers or any(n is None or (n < 1 and n != -1) for n in numbers) or numbers.count(-1) > 1:
        raise layer.malformed("target_shape", value, f"a list of integers from 1 to {MAX_CONFIG_INT}, with at "
                                                     "most one -1")
    return tuple(numbers)


def check_reshape(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    target = reshape_target(layer)
    if len(target) == 1 or all(n == 1 for n in target[:-1]):
        return []
    return [f"target_shape {list(target)}: refcam reshapes only to a flat vector (N,) or a vector to "
            "(1, ..., 1, C)"]


def convert_reshape(layer: KerasLayer, context: Context) -> list[Layer]:
    """Reshape to (N,) -> flatten (channels-last); (C,) -> (1, .., 1, C) -> nothing (refcam's pooled (C, 1, ..))."""
    produced = context.inputs_of(layer)[0]
    shape = tuple(produced.shape)
    keras_shape = (shape[0],) if produced.keras_rank == 1 else (*shape[1:], shape[0])
    if any(n is None for n in keras_shape):
        raise UnsupportedOperationError(f"{layer.source}: layer {layer.name!r} (Reshape) reshapes an input of "
                                        f"Keras shape {keras_shape} with a free axis; refcam reshapes fixed sizes.")
    target = _resolved_target(layer, reshape_target(layer), math.prod(keras_shape))
    if len(target) == 1:
        if len(shape) == 1:
            return []
        return _single_layer(layer, context, "flatten",
                             lambda name, inputs: FlattenLayer(name=name, inputs=inputs, order="channels-last"))
    if shape == (target[-1], *(1,) * (len(target) - 1)):
        return []
    raise UnsupportedOperationError(
        f"{layer.source}: layer {layer.name!r} (Reshape) turns the Keras shape {keras_shape} (refcam {shape}, from "
        f"{layer.inputs[0]!r}) into {target}; refcam has no layer that adds axes, so it reads this Reshape only "
        "right after a global pooling (whose refcam output already is (C, 1, ..., 1)). Move the Reshape before "
        "the Dense layers, or use GlobalAveragePooling2D(keepdims=True) and 1x1 Conv2D layers.")


def _resolved_target(layer: KerasLayer, target: tuple[int, ...], size: int) -> tuple[int, ...]:
    known = math.prod(n for n in target if n != -1)
    if -1 in target and size % known == 0:
        target = tuple(size // known if n == -1 else n for n in target)
    if math.prod(target) != size:
        raise FileFormatError(f"{layer.source}: layer {layer.name!r} (Reshape) has target_shape {list(target)} "
                              f"for an input of {size} values; the file's config is inconsistent.")
    return target


# --- Normalization -------------------------------------------------------------------------------
def _normalization_axis(layer: KerasLayer, rank: int | None) -> str:
    """``"channel"`` (axis -1 or the last) or ``"all"`` (axis () or null: one mean and variance)."""
    value = layer.config.get("axis", -1)
    axes = [] if value is None else [exact_int(a) for a in (value if isinstance(value, list) else [value])]
    if any(a is None for a in axes):
        raise layer.malformed("axis", value, "an integer axis, a list of them, or null")
    if not axes:
        return "all"
    if len(axes) == 1 and (axes[0] == -1 or (rank is not None and axes[0] == rank)):
        return "channel"
    return "other"


def check_normalization(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    problems = []
    if _normalization_axis(layer, input_ranks[0] if input_ranks else None) == "other":
        problems.append(f"axis={layer.config.get('axis')!r}; refcam supports the channel axis (-1) or none")
    layer.flag("invert", False)
    given = [layer.config.get(key) is not None for key in ("mean", "variance")]
    if given[0] != given[1]:
        raise layer.malformed("mean", layer.config.get("mean"), "given together with 'variance' (or both null)")
    if given[0]:
        for key in ("mean", "variance"):
            constant_value(layer, key, layer.config[key])
    return problems


def convert_normalization(layer: KerasLayer, context: Context) -> list[Layer]:
    """Normalization -> ``y = (x - mean) / max(sqrt(variance), 1e-7)`` (or its inverse) as a scaling."""
    produced = context.inputs_of(layer)[0]
    axis = _normalization_axis(layer, produced.keras_rank)
    stats_shape = (int(produced.shape[0]),) if axis == "channel" else ()
    if layer.config.get("mean") is None:
        mean = context.weights.get(layer, "mean", stats_shape).astype(np.float64)
        variance = context.weights.get(layer, "variance", stats_shape).astype(np.float64)
    else:
        mean, variance = (_broadcast_statistic(layer, key, stats_shape) for key in ("mean", "variance"))
    if bool((variance < 0.0).any()):
        raise FileFormatError(f"{layer.source}: layer {layer.name!r} (Normalization) has a negative variance "
                              f"({float(variance.min())}); the file is damaged.")
    std = np.maximum(np.sqrt(variance), NORMALIZATION_EPSILON)
    scale, offset = (std, mean) if layer.flag("invert", False) else (1.0 / std, -mean / std)
    ndim = len(produced.shape)
    return _single_layer(layer, context, "scaling", lambda name, inputs: ScalingLayer(
        name=name, inputs=inputs, scale=_per_channel(scale, ndim), offset=_per_channel(offset, ndim)))


def _broadcast_statistic(layer: KerasLayer, key: str, shape: tuple[int, ...]) -> np.ndarray:
    """A config mean or variance (number or list), rounded to float32, broadcast like NumPy to ``shape``."""
    values = _float32_values(constant_value(layer, key, layer.config[key]))
    try:
        return np.ascontiguousarray(np.broadcast_to(values, shape))
    except ValueError as err:
        raise layer.malformed(key, layer.config[key], f"a number or {shape[0] if shape else 1} numbers") from err


# --- Cropping, UpSampling -------------------------------------------------------------------------
CROPPING_DEFAULTS = {1: (1, 1), 2: ((0, 0), (0, 0)), 3: ((1, 1), (1, 1), (1, 1))}   # Keras's defaults


def check_cropping(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    side_amounts(layer, "cropping", CROPPING_DEFAULTS[_rank_of_class(layer)])
    return []


def convert_cropping(layer: KerasLayer, context: Context) -> list[Layer]:
    """Cropping1D/2D/3D -> cropping with ``(begins..., ends...)``."""
    cropping = side_amounts(layer, "cropping", CROPPING_DEFAULTS[_rank_of_class(layer)])
    return _single_layer(layer, context, "cropping",
                         lambda name, inputs: CroppingLayer(name=name, inputs=inputs, cropping=cropping))


def check_upsampling(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    layer.integers("size", _rank_of_class(layer), 2)
    interpolation = layer.text("interpolation", "nearest")
    if interpolation not in UPSAMPLING_INTERPOLATIONS:
        return [f"interpolation {interpolation!r} is not one of {list(UPSAMPLING_INTERPOLATIONS)}"]
    return []


def convert_upsampling(layer: KerasLayer, context: Context) -> list[Layer]:
    """UpSampling1D/2D/3D -> resize by ``size``: nearest = repeat, bilinear = half-pixel linear."""
    scale = tuple(float(n) for n in layer.integers("size", _rank_of_class(layer), 2))
    if layer.text("interpolation", "nearest") == "bilinear":
        options = {"method": "linear", "geometric_transform_mode": "half-pixel"}
    else:
        options = {"method": "nearest", "geometric_transform_mode": "asymmetric", "nearest_rounding_mode": "floor"}
    return _single_layer(layer, context, "resize",
                         lambda name, inputs: ResizeLayer(name=name, inputs=inputs, scale=scale, **options))


# --- Conv1D/2D/3DTranspose ------------------------------------------------------------------------
def check_transposed(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    problems = []
    mode = layer.text("padding", "valid").lower()
    if mode not in ("valid", "same"):
        problems.append(f"padding {mode!r} is not one of ['valid', 'same']")
    if layer.integer("groups", 1) != 1:
        problems.append(f"groups={layer.config.get('groups')!r}; refcam's transposed convolutions have one group")
    _transposed_geometry(layer)
    return problems


def _transposed_geometry(layer: KerasLayer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(cropping (begins..., ends...), output_padding)`` giving Keras's output length (module docstring)."""
    rank = _rank_of_class(layer)
    kernel = layer.integers("kernel_size", rank)
    strides = layer.integers("strides", rank, 1)
    dilation = layer.integers("dilation_rate", rank, 1)
    given = None if layer.config.get("output_padding") is None else layer.integers("output_padding", rank,
                                                                                  minimum=0)
    if given is not None and any(p >= s for p, s in zip(given, strides)):
        raise layer.malformed("output_padding", layer.config.get("output_padding"),
                              f"smaller than the strides {list(strides)}")
    same = layer.text("padding", "valid").lower() == "same"
    begins, ends, extras = [], [], []
    for a in range(rank):
        extent = (kernel[a] - 1) * dilation[a] + 1
        if not same:
            begin = end = 0
            extra = given[a] if given is not None else max(strides[a] - extent, 0)
        else:
            total = extent - strides[a] if given is None else extent - extent % 2 - given[a]
            begin, end, extra = (total // 2, total - total // 2, 0) if total >= 0 else (0, 0, -total)
        begins.append(begin)
        ends.append(end)
        extras.append(extra)
    return tuple(begins + ends), tuple(extras)


def convert_transposed(layer: KerasLayer, context: Context) -> list[Layer]:
    """Conv1D/2D/3DTranspose -> transposed convolution (+ activation); kernel (*k, F, C) -> (C, F, *k)."""
    rank = _rank_of_class(layer)
    channels = _input_channels(context, layer)
    filters = layer.integer("filters")
    kernel_size = layer.integers("kernel_size", rank)
    cropping, output_padding = _transposed_geometry(layer)

    def make(name: str, inputs: tuple[str, ...]) -> Layer:
        kernel = context.weights.get(layer, "kernel", (*kernel_size, filters, channels))
        bias = context.weights.get(layer, "bias", (filters,)) if layer.flag("use_bias", True) else None
        return TRANSPOSED_CONVOLUTION_BY_RANK[rank](
            name=name, inputs=inputs, filter_size=kernel_size, num_filters=filters,
            stride=layer.integers("strides", rank, 1), dilation=layer.integers("dilation_rate", rank, 1),
            cropping=cropping, output_padding=output_padding, num_channels=channels,
            weights=transposed_conv_kernel_to_internal(kernel), bias=bias)

    return _chain(layer, context, [("conv", make)], _activation_name(layer))


# --- LayerNormalization, ConvNeXt's LayerScale and StochasticDepth ------------------------------------
def check_layer_norm(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    problems = _check_channel_axis("axis")(layer, input_ranks)
    layer.number("epsilon", 1e-3)
    layer.flag("center", True)
    layer.flag("scale", True)
    if layer.flag("rms_scaling", False):
        problems.append("rms_scaling=True (Keras's deprecated variance scaling); refcam normalises by the "
                        "standard deviation")
    return problems


def convert_layer_norm(layer: KerasLayer, context: Context) -> list[Layer]:
    """LayerNormalization over channels -> layer normalisation ("channel-only"); Keras epsilon default 1e-3."""
    channels = _input_channels(context, layer)
    scale = (context.weights.get(layer, "gamma", (channels,)) if layer.flag("scale", True)
             else np.ones(channels))
    offset = (context.weights.get(layer, "beta", (channels,)) if layer.flag("center", True)
              else np.zeros(channels))
    epsilon = layer.number("epsilon", 1e-3)
    return _single_layer(layer, context, "layernorm", lambda name, inputs: LayerNormalizationLayer(
        name=name, inputs=inputs, epsilon=epsilon, operation_dimension="channel-only", scale=scale,
        offset=offset))


def check_convnext(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    """Only keras.applications.convnext's class: its exact config keys, no other module."""
    extra = sorted(set(layer.config) - CONVNEXT_CONFIG_KEYS[layer.class_name])
    module = layer.module
    if extra or module not in CONVNEXT_MODULES:
        return [f"a {layer.class_name} that is not keras.applications.convnext's (config keys {extra} or module "
                f"{_shown(module)}): a custom class refcam does not know"]
    if layer.class_name == "LayerScale":
        layer.integer("projection_dim")
        layer.number("init_values", 0.0)
    else:
        layer.number("drop_path_rate", 0.0)
    return []


def convert_layer_scale(layer: KerasLayer, context: Context) -> list[Layer]:
    """LayerScale -> ``y = x * gamma`` per channel (a scaling)."""
    produced = context.inputs_of(layer)[0]
    channels = int(produced.shape[0])
    if layer.integer("projection_dim") != channels:
        raise layer.malformed("projection_dim", layer.config.get("projection_dim"),
                              f"the input's {channels} channels")
    gamma = context.weights.single(layer, (channels,)).astype(np.float64)
    scale = _per_channel(gamma, len(produced.shape))
    return _single_layer(layer, context, "scaling",
                         lambda name, inputs: ScalingLayer(name=name, inputs=inputs, scale=scale))


def convert_identity(layer: KerasLayer, context: Context) -> list[Layer]:
    """StochasticDepth at prediction: the identity (no layer)."""
    return []


# --- arithmetic: TFOpLambda and Keras 3 operations -----------------------------------------------------
def is_keras3_operation(layer: KerasLayer) -> bool:
    """A Keras 3 operation entry: a known operation class, a dict-style node, a config holding only its name,
    and (for the classes that are also merge layers) operands side by side rather than one list."""
    allowed = OPERATION_CONFIG_KEYS.get(layer.class_name, {"name"})
    if layer.class_name not in KERAS3_OPERATIONS or layer.node_style != "dict" or set(layer.config) - allowed:
        return False
    return layer.operation or layer.class_name not in ("Add", "Multiply", "Subtract")


def _operation(layer: KerasLayer) -> str | None:
    if layer.class_name == "TFOpLambda":
        return TFOP_FUNCTIONS.get(layer.text("function", ""))
    if layer.class_name == "Gelu":      # keras.ops.gelu(x, approximate=True) by default
        return "gelu_tanh" if layer.flag("approximate", True) else "gelu"
    return KERAS3_OPERATIONS.get(layer.class_name)


def check_operation(layer: KerasLayer, input_ranks: list[int | None]) -> list[str]:
    """The function is on the allow-list, with the operands and arguments it takes."""
    operation = _operation(layer)
    if operation is None:
        function = layer.text("function", "")
        return [f"TFOpLambda function {function!r} is not one of {sorted(TFOP_FUNCTIONS)} (refcam reads "
                "these by name; it never runs a function from a file)"]
    extra = sorted(set(layer.call_kwargs) - ({"name"} if layer.class_name == "TFOpLambda" else set()))
    if extra:
        return [f"it passes the arguments {extra}, which refcam does not read"]
    operands = layer.operands
    tensors = [o for o in operands if isinstance(o, str)]
    for operand in operands:
        if isinstance(operand, Constant):
            constant_value(layer, "a constant operand", operand.value)
    if operation not in BINARY:
        return [] if len(operands) == 1 and tensors else [f"{operation} takes one tensor; found operands "
                                                          f"{_shown(list(operands))}"]
    if len(operands) != 2 or not tensors:
        return [f"{operation} takes two operands, at least one a tensor; found {_shown(list(operands))}"]
    if operation == "divide" and not (isinstance(operands[0], str) and isinstance(operands[1], Constant)):
        return ["division is read only as a tensor divided by a constant"]
    if operation == "divide" and not bool(np.all(constant_value(layer, "divisor", operands[1].value) != 0.0)):
        return ["division by 0"]
    return []


def convert_operation(layer: KerasLayer, context: Context) -> list[Layer]:
    """A TFOpLambda or Keras 3 operation -> addition, multiplication, scaling or an activation layer."""
    operation = _operation(layer)
    if operation in UNARY:
        return _single_layer(layer, context, operation, UNARY[operation])
    first, second = layer.operands
    produced = context.inputs_of(layer)
    if isinstance(first, str) and isinstance(second, str):
        return _two_tensors(layer, context, operation, produced)
    constant = second if isinstance(second, Constant) else first
    shape = produced[0].shape
    value = _operand_array(layer, constant, len(shape), produced[0].keras_rank)
    constant_first = isinstance(first, Constant)
    if operation == "add":
        scale, offset = np.asarray(1.0), value
    elif operation == "multiply":
        scale, offset = value, np.asarray(0.0)
    elif operation == "subtract":
        scale, offset = (np.asarray(-1.0), value) if constant_first else (np.asarray(1.0), -value)
    else:
        scale, offset = 1.0 / value, np.asarray(0.0)
    return _single_layer(layer, context, "scaling",
                         lambda name, inputs: ScalingLayer(name=name, inputs=inputs, scale=scale, offset=offset))


def _operand_array(layer: KerasLayer, constant: Constant, ndim: int, keras_rank: int | None) -> np.ndarray:
    """A constant operand rounded to float32, in refcam's layout: 0-d, or broadcasting against ``(C, *S)``."""
    array = _float32_values(constant_value(layer, "a constant operand", constant.value))
    if array.ndim == 0:
        return array
    axes = keras_rank if keras_rank is not None else ndim
    if array.ndim > axes:
        raise UnsupportedOperationError(
            f"{layer.source}: layer {layer.name!r} ({layer.class_name}) has a constant of shape {array.shape}, with "
            f"more axes than its tensor's {axes} (batch excluded); refcam broadcasts constants within one "
            "observation.")
    keras_shaped = array.reshape((1,) * (ndim - array.ndim) + array.shape)       # (*S, C) with leading ones
    return np.ascontiguousarray(np.moveaxis(keras_shaped, -1, 0))               # (C, *S)


def _two_tensors(layer: KerasLayer, context: Context, operation: str, produced: list[Produced]) -> list[Layer]:
    _same_axes(layer, produced)
    if operation == "multiply":
        return _single_layer(layer, context, "multiply",
                             lambda name, inputs: MultiplicationLayer(name=name, inputs=inputs))
    if produced[0].shape != produced[1].shape:
        raise UnsupportedOperationError(
            f"{layer.source}: layer {layer.name!r} ({layer.class_name}) adds tensors of refcam shapes "
            f"{produced[0].shape} and {produced[1].shape}; refcam adds tensors of one shape (no broadcasting).")
    if operation == "add":
        return _single_layer(layer, context, "add", lambda name, inputs: AdditionLayer(name=name, inputs=inputs))
    negated = f"{layer.name}/negate"
    first, second = (p.refcam_name for p in produced)
    return [ScalingLayer(name=negated, inputs=(second,), scale=np.asarray(-1.0)),
            AdditionLayer(name=layer.name, inputs=(first, negated))]


def convert_subtract_layer(layer: KerasLayer, context: Context) -> list[Layer]:
    """Subtract([a, b]) -> ``a - b``: ``<name>/negate`` (b * -1), then an addition."""
    return _two_tensors(layer, context, "subtract", context.inputs_of(layer))


OPERATION_SPEC = Spec(convert_operation, check_operation, min_inputs=0, max_inputs=None)

MODERN_CONVERTERS: dict[str, Spec] = {
    "Multiply": Spec(convert_multiply, check_same_rank, min_inputs=2, max_inputs=None),
    "Subtract": Spec(convert_subtract_layer, check_same_rank, min_inputs=2, max_inputs=2),
    "Reshape": Spec(convert_reshape, check_reshape),
    "Normalization": Spec(convert_normalization, check_normalization),
    **{f"Cropping{n}D": Spec(convert_cropping, check_cropping) for n in (1, 2, 3)},
    **{f"UpSampling{n}D": Spec(convert_upsampling, check_upsampling) for n in (1, 2, 3)},
    **{f"Conv{n}DTranspose": Spec(convert_transposed, check_transposed) for n in (1, 2, 3)},
    "LayerNormalization": Spec(convert_layer_norm, check_layer_norm),
    "LayerScale": Spec(convert_layer_scale, check_convnext),
    "StochasticDepth": Spec(convert_identity, check_convnext),
    "TFOpLambda": OPERATION_SPEC,
}

ACCEPTED_TFOP_FUNCTIONS = tuple(sorted(TFOP_FUNCTIONS))
ACCEPTED_KERAS3_OPERATIONS = tuple(sorted(KERAS3_OPERATIONS))
