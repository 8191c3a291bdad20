"""The adapter for tf-keras-vis 0.8.7 (TensorFlow 2.21, Keras 3), on the case's network rebuilt in Keras.

:func:`keras_model` writes a suite network as a Keras functional model,
channels last, one Keras layer per refcam layer and named as it (so
``penultimate_layer=case.feature_layer`` finds refcam's feature layer), with
the same numbers; its output is the case's reduction layer. The adapter calls
the library as its documentation shows::

    Method(model, clone=False)(score, x, penultimate_layer=name, seek_penultimate_conv_layer=False)

with its defaults otherwise (``expand_cam=True``: ``scipy.ndimage.zoom(order=1)``
to the input size; ``normalize_cam=True``). ``seek_penultimate_conv_layer=False``
because the feature layer is a ReLU layer, not a convolution, and the library
would otherwise walk back to the convolution before it. ``score``: its
``CategoricalScore([label])``, or for a per-pixel output the class summed over
the (masked) positions, for the regression cases the output summed. Methods:
``gradcam`` (``Gradcam``), ``gradcam++`` (``GradcamPlusPlus``), ``scorecam``
(``Scorecam``), ``layercam`` (``Layercam``); any other is ``NotImplementedError``.

TensorFlow has no float64 ``MaxPool3D`` kernel on the CPU, so a 3-D network is
built in float32 whatever the case's dtype. The activations of the feature
layer are returned too (a Keras sub-model), so the scorecard says whether the
rebuilt network is right before the library's map differs.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ... import layers as L
from ...io import load
from ...network import Network
from ...ops.linear import flatten_forward
from ..runner import Case
from .peers import case_labels, map_in_case_layout

METHODS = {"gradcam": ("tf_keras_vis.gradcam", "Gradcam"),
           "gradcam++": ("tf_keras_vis.gradcam_plus_plus", "GradcamPlusPlus"),
           "scorecam": ("tf_keras_vis.scorecam", "Scorecam"), "layercam": ("tf_keras_vis.layercam", "Layercam")}


def keras_dtype(net: Network, dtype: str) -> str:
    """``dtype``, but float32 for a 3-D network (TensorFlow's CPU MaxPool3D has no float64 kernel)."""
    return "float32" if isinstance(net.input_layer, L.Image3dInputLayer) else dtype


def keras_model(net: Network, output_layer: str, dtype: str = "float64") -> Any:
    """``net`` up to ``output_layer`` as a Keras model on channels-last input ``(B, *S, C)``.

    Layers: image, 3-D image and sequence input (normalisation "none" or
    "zerocenter", as Keras ``Normalization(mean, variance=1)``, exact), convolution
    ("same", "causal"), batch normalisation, layer normalisation over channels,
    ReLU, max and average pooling without padding, global average pooling, fully
    connected (``Flatten`` + ``Dense``, rows permuted from refcam's flatten order
    to Keras' row-major ``(*S, C)``), softmax over channels, depth concatenation,
    addition. Anything else is ``NotImplementedError``.
    """
    import keras

    raw, tensors = None, {}
    shapes = net.output_shapes
    for layer in net.layers:
        if not layer.inputs:
            raw = _raw_input(keras, layer, dtype)
            tensors[layer.name] = _normalization(keras, layer, raw, dtype)
        elif not type(layer).is_output_layer:
            inputs = [tensors[name] for name in layer.inputs]
            tensors[layer.name] = _apply(keras, layer, inputs, shapes[layer.inputs[0]], dtype)
        if layer.name == output_layer:
            break
    return keras.Model(raw, tensors[output_layer])


def _raw_input(keras: Any, layer: Any, dtype: str) -> Any:
    channels = layer.per_observation_shape()[0]
    spatial = (None,) if isinstance(layer, L.SequenceInputLayer) else tuple(layer.input_size[:-1])
    return keras.Input(spatial + (channels,), dtype=dtype, name=layer.name)


def _normalization(keras: Any, layer: Any, raw: Any, dtype: str) -> Any:
    if layer.normalization == "none":
        return raw
    if layer.normalization != "zerocenter":
        raise NotImplementedError(f"the Keras rebuild has no {layer.normalization!r} input normalisation")
    mean = np.asarray(layer.mean, dtype=np.float64).reshape(-1)
    return keras.layers.Normalization(axis=-1, mean=mean, variance=np.ones_like(mean), dtype=dtype,
                                      name=f"{layer.name}_normalization")(raw)


def _apply(keras: Any, layer: Any, inputs: list[Any], shape: tuple, dtype: str) -> Any:
    """The refcam layer's Keras counterpart applied to ``inputs``, its weights set."""
    x = inputs if len(inputs) > 1 else inputs[0]
    if isinstance(layer, L.FullyConnectedLayer) and len(shape) > 1:
        x = keras.layers.Flatten(name=f"{layer.name}_flatten", dtype=dtype)(x)
    built, weights = _layer(keras, layer, shape, dtype)
    y = built(x)
    if weights:
        built.set_weights([np.asarray(w, dtype=dtype) for w in weights])
    return y


def _layer(keras: Any, layer: Any, shape: tuple, dtype: str) -> tuple[Any, list[np.ndarray]]:
    """The Keras layer for one refcam layer and the weights to set once it is built."""
    kl, name = keras.layers, layer.name
    if isinstance(layer, L.ConvolutionLayer):
        if layer.padding not in ("same", "causal"):
            raise NotImplementedError(f"the Keras rebuild has no explicit padding ({name!r})")
        rank = layer.spatial_rank
        conv = getattr(kl, f"Conv{rank}D")(layer.num_filters, layer.filter_size, strides=layer.stride,
                                           dilation_rate=layer.dilation_factor, padding=layer.padding, name=name,
                                           dtype=dtype)
        kernel = np.asarray(layer.weights).transpose(tuple(range(2, 2 + rank)) + (1, 0))  # (F, C, *k) -> (*k, C, F)
        return conv, [kernel, layer.bias]
    if isinstance(layer, L.BatchNormalizationLayer):
        norm = kl.BatchNormalization(axis=-1, epsilon=layer.epsilon, name=name, dtype=dtype)
        return norm, [np.ravel(getattr(layer, key)) for key in ("scale", "offset", "trained_mean", "trained_variance")]
    if isinstance(layer, L.LayerNormalizationLayer):
        if layer.normalized_axes(len(shape) + 1) != (1,):
            raise NotImplementedError(f"the Keras rebuild normalises layer norms over channels only ({name!r})")
        norm = kl.LayerNormalization(axis=-1, epsilon=layer.epsilon, name=name, dtype=dtype)
        return norm, [np.ravel(layer.scale), np.ravel(layer.offset)]
    if isinstance(layer, L.FullyConnectedLayer):
        return kl.Dense(layer.output_size, name=name, dtype=dtype), [_dense_kernel(layer, shape), np.ravel(layer.bias)]
    simple = {L.ReLULayer: lambda: kl.ReLU(name=name, dtype=dtype),
              L.SoftmaxLayer: lambda: kl.Softmax(axis=-1, name=name, dtype=dtype),
              L.DepthConcatenationLayer: lambda: kl.Concatenate(axis=-1, name=name, dtype=dtype),
              L.AdditionLayer: lambda: kl.Add(name=name, dtype=dtype)}
    for kind, make in simple.items():
        if isinstance(layer, kind):
            return make(), []
    return _pooling(keras, layer, dtype), []


def _pooling(keras: Any, layer: Any, dtype: str) -> Any:
    kl, name = keras.layers, layer.name
    if isinstance(layer, (L.GlobalAveragePooling1dLayer, L.GlobalAveragePooling2dLayer,
                          L.GlobalAveragePooling3dLayer)):
        return getattr(kl, f"GlobalAveragePooling{layer.spatial_rank}D")(name=name, dtype=dtype)
    kinds = {"Max": (L.MaxPooling1dLayer, L.MaxPooling2dLayer, L.MaxPooling3dLayer),
             "Average": (L.AveragePooling1dLayer, L.AveragePooling2dLayer, L.AveragePooling3dLayer)}
    for prefix, classes in kinds.items():
        if isinstance(layer, classes):
            if np.any(layer.padding):
                raise NotImplementedError(f"the Keras rebuild pools without padding only ({name!r})")
            return getattr(kl, f"{prefix}Pooling{layer.spatial_rank}D")(layer.pool_size, layer.stride, name=name,
                                                                         dtype=dtype)
    raise NotImplementedError(f"the Keras rebuild has no {type(layer).__name__} ({name!r})")


def _dense_kernel(layer: Any, shape: tuple) -> np.ndarray:
    """Dense's kernel ``(inputs, outputs)``: row ``j`` (row-major over ``(*S, C)``) is refcam's column of that cell."""
    weights = np.asarray(layer.weights, dtype=np.float64)
    if len(shape) == 1:
        return weights.T
    channels, spatial = shape[0], tuple(shape[1:])
    keras_index = np.arange(weights.shape[1]).reshape(spatial + (channels,))
    keras_of = flatten_forward(np.moveaxis(keras_index, -1, 0)[None], layer.flatten_order)[0]
    permuted = np.empty_like(weights)
    permuted[:, keras_of] = weights
    return permuted.T


def keras_input(case: Case) -> np.ndarray:
    """The case's input ``(B, C, *S)`` as Keras takes it, ``(B, *S, C)``."""
    return np.ascontiguousarray(np.moveaxis(case.input_nchw, 1, -1))


def _score(case: Case, label: int, per_pixel: bool) -> Any:
    """tf-keras-vis' score for one label: a function of the model output, one value per observation."""
    import tensorflow as tf
    from tf_keras_vis.utils.scores import CategoricalScore

    if case.reduction == "sum":
        return lambda output: tf.reduce_sum(output, axis=tuple(range(1, len(output.shape))))
    if not per_pixel:
        return CategoricalScore([label])
    mask = None if case.mask is None else tf.constant(case.mask.astype(np.float64))

    def masked_class_sum(output: Any) -> Any:
        values = output[..., label]
        if mask is not None:
            values = values * tf.cast(mask, values.dtype)
        return tf.reduce_sum(values, axis=tuple(range(1, len(values.shape))))
    return masked_class_sum


def tf_keras_vis(case: Case) -> dict[str, Any]:
    """tf-keras-vis: ``Method(model, clone=False)(score, x, penultimate_layer=case.feature_layer, ...)``."""
    import importlib

    import keras

    if case.method not in METHODS:
        raise NotImplementedError(f"tf-keras-vis has no {case.method}")
    module, method = METHODS[case.method]
    net = load(case.network_file)
    dtype = keras_dtype(net, case.dtype)
    model = keras_model(net, case.reduction_layer, dtype)
    x = keras_input(case).astype(dtype)
    per_pixel = len(model.output.shape) > 2
    cam = getattr(importlib.import_module(module), method)(model, clone=False)
    maps = [np.asarray(cam(_score(case, label, per_pixel), x, penultimate_layer=case.feature_layer,
                           seek_penultimate_conv_layer=False))
            for label in case_labels(case, "tf-keras-vis", masks=True)]
    features = keras.Model(model.inputs, model.get_layer(case.feature_layer).output)
    activations = np.moveaxis(np.asarray(features(x)), -1, 1)
    return {"map": map_in_case_layout(case, maps), "activations": activations}
