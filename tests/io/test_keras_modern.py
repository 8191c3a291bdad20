"""The Keras importer's newer layers: structure of the imported fixtures, the rules read from the
config (transposed-convolution geometry, hard sigmoid by Keras version, arithmetic), the three
spellings of inbound nodes, and every refusal.

The forward and Grad-CAM comparisons against TensorFlow for the fixtures built by
``fixtures/_keras_modern_nets.py`` run with the others in tests/io/test_keras_h5.py. Small files for
the refusals are written here with h5py (no TensorFlow needed).
"""
from __future__ import annotations

import json
import os

import h5py
import numpy as np
import pytest

from refcam.autodiff import Tensor
from refcam.errors import FileFormatError, UnsafeContentError, UnsupportedOperationError
from refcam.io.keras_config import Constant, parse_model_config
from refcam.io.keras_h5 import load_keras_h5, transposed_conv_kernel_to_internal
from refcam.io.keras_layers_modern import KERAS3_OPERATIONS, TFOP_FUNCTIONS, _transposed_geometry
from refcam.layers import (Convolution1dLayer, Convolution2dLayer, CroppingLayer, HardSigmoidLayer, HardSwishLayer,
                           LayerNormalizationLayer, MultiplicationLayer, ResizeLayer, ScalingLayer, SwishLayer,
                           TransposedConvolution2dLayer)
from tests.tolerances import F64

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "keras")


def fixture(name: str) -> str:
    return os.path.join(FIXTURES, name)


@pytest.fixture(scope="module")
def nets() -> dict:
    names = ("se_activations", "mobilenetv3_ops", "convnext_block", "unet_decoder", "sequence_resample",
             "keras3_mobilenet_ops", "keras3_convnext_unet")
    return {name: load_keras_h5(fixture(f"{name}.h5")) for name in names}


def model_entries(name: str) -> list[dict]:
    with h5py.File(fixture(f"{name}.h5")) as f:
        return json.loads(f.attrs["model_config"])["config"]["layers"]


# --- the fixtures hold every accepted function, so each is checked against TensorFlow -----------------
def test_every_accepted_tfoplambda_function_and_keras3_operation_has_a_tensorflow_golden():
    tf_keras_files = ("mobilenetv3_ops", "convnext_block")
    functions = {entry["config"]["function"] for name in tf_keras_files for entry in model_entries(name)
                 if entry["class_name"] == "TFOpLambda"}
    assert functions == set(TFOP_FUNCTIONS)
    operations = {entry["class_name"] for name in ("keras3_mobilenet_ops", "keras3_convnext_unet")
                  for entry in model_entries(name) if set(entry["config"]) <= {"name", "approximate"}}
    assert operations == set(KERAS3_OPERATIONS)


def test_tfoplambda_nodes_are_flat_and_may_start_with_a_constant():
    entries = [entry for entry in model_entries("mobilenetv3_ops") if entry["class_name"] == "TFOpLambda"]
    nodes = [entry["inbound_nodes"][0] for entry in entries]
    assert all(isinstance(node[0], str) for node in nodes)                       # one flat entry each
    assert any(node[0] == "_CONSTANT_VALUE" for node in nodes)
    assert any(isinstance(node[3].get("y"), list) and isinstance(node[3]["y"][0], str) for node in nodes)


# --- what the fixtures become ------------------------------------------------------------------------
def test_squeeze_and_excitation_and_activations(nets):
    se = nets["se_activations"]
    assert "se1_reshape" not in se.layer_names                          # (C,) -> (1, 1, C): refcam's GAP is (C, 1, 1)
    assert se.layer("se1_reduce/conv").inputs == ("se1_squeeze",)
    assert isinstance(se.layer("se1_excite"), MultiplicationLayer)
    assert isinstance(se.layer("conv_swish"), SwishLayer) and isinstance(se.layer("act_silu"), SwishLayer)
    hard = se.layer("se1_expand")                                       # tf-keras: clip(0.2 x + 0.5, 0, 1)
    assert isinstance(hard, HardSigmoidLayer) and (hard.alpha, hard.beta) == (0.2, 0.5)
    dense = se.layer("se2_reduce/dense")                                # Dense on (1, 1, C): a 1x1 convolution
    assert isinstance(dense, Convolution2dLayer) and dense.filter_size == (1, 1)
    normalize = se.layer("normalize")
    assert isinstance(normalize, ScalingLayer) and normalize.scale.shape == (4, 1, 1)
    k3 = nets["keras3_mobilenet_ops"]
    hard3 = k3.layer("se_expand")                                       # Keras 3: relu6(x + 3) / 6
    assert isinstance(hard3, HardSigmoidLayer) and hard3.alpha == pytest.approx(1 / 6)
    assert isinstance(k3.layer("stem"), HardSwishLayer)
    assert float(k3.layer("multiply_1").scale) == float(np.float32(1 / 6))   # the float32 model's constant
    assert k3.layer("subtract_layer").inputs == ("add_4", "subtract_layer/negate")


def test_convnext_layers(nets):
    convnext = nets["convnext_block"]
    norm = convnext.layer("block0_layernorm")
    assert isinstance(norm, LayerNormalizationLayer) and norm.operation_dimension == "channel-only"
    assert norm.epsilon == pytest.approx(1e-6)
    scale = convnext.layer("block0_layer_scale")
    assert isinstance(scale, ScalingLayer) and scale.scale.shape == (8, 1, 1)
    assert "block0_stochastic_depth" not in convnext.layer_names and "block1_identity" not in convnext.layer_names
    assert convnext.layer("tf.__operators__.add_4").inputs == ("stem_layernorm", "block0_layer_scale")
    assert isinstance(nets["keras3_convnext_unet"].layer("layer_scale"), ScalingLayer)   # its weight: 'variable'
    assert isinstance(nets["sequence_resample"].layer("per_step/dense"), Convolution1dLayer)


def test_upsampling_cropping_and_transposed_convolutions(nets):
    unet = nets["unet_decoder"]
    nearest, bilinear = unet.layer("up_nearest"), unet.layer("up_bilinear")
    assert isinstance(nearest, ResizeLayer) and nearest.scale == (1.0, 2.0) and nearest.method == "nearest"
    assert (bilinear.method, bilinear.geometric_transform_mode) == ("linear", "half-pixel")
    assert isinstance(unet.layer("crop"), CroppingLayer) and unet.layer("crop").cropping == (1, 2, 2, 1)
    layers = {name: unet.layer(name) for name in ("up_same", "up_valid_op/conv", "up_same_op", "up_dilated")}
    assert all(isinstance(layer, TransposedConvolution2dLayer) for layer in layers.values())
    # (cropping (begins..., ends...), output_padding) giving Keras's lengths (keras_layers_modern docstring)
    assert [(layer.cropping, layer.output_padding) for layer in layers.values()] == [
        ((0, 0, 0, 0), (0, 0)), ((0, 0, 0, 0), (1, 1)), ((0, 1, 1, 1), (0, 0)), ((0, 0, 0, 0), (0, 0))]


def test_bilinear_upsampling_is_half_pixel_linear_in_float64(nets, rng):
    """TensorFlow resizes bilinearly in float32 only, so its golden bounds this at 1e-7; here float64."""
    layer = nets["unet_decoder"].layer("up_bilinear")
    x = rng.standard_normal((2, 3, 4, 5))

    def along(values: np.ndarray, axis: int) -> np.ndarray:
        n = values.shape[axis]
        source = np.clip((np.arange(2 * n) + 0.5) / 2.0 - 0.5, 0.0, n - 1)   # half-pixel centres, clamped
        low = np.floor(source).astype(int)
        high = np.minimum(low + 1, n - 1)
        weight = (source - low).reshape([-1 if a == axis else 1 for a in range(values.ndim)])
        return np.take(values, low, axis) * (1.0 - weight) + np.take(values, high, axis) * weight

    np.testing.assert_allclose(layer.forward(Tensor(x)).data, along(along(x, 2), 3), **F64)


def test_transposed_kernel_layout(rng):
    kernel = rng.standard_normal((3, 2, 5, 4))                           # Keras (kh, kw, F, C)
    internal = transposed_conv_kernel_to_internal(kernel)               # refcam (C, F, kh, kw)
    assert internal.shape == (4, 5, 3, 2) and internal[3, 4, 2, 1] == kernel[2, 1, 4, 3]


@pytest.mark.parametrize("config, expected", [
    ({"padding": "valid"}, ((0, 0), (1,))),                               # k' = 3 < s = 4: 1 zero cell
    ({"padding": "valid", "output_padding": [2]}, ((0, 0), (2,))),
    ({"padding": "same"}, ((0, 0), (1,))),                                # t = 3 - 4 < 0
    ({"padding": "same", "kernel_size": [6]}, ((1, 1), (0,))),            # t = 2
    ({"padding": "same", "kernel_size": [7]}, ((1, 2), (0,))),            # t = 3: the odd cell at the end
    ({"padding": "same", "kernel_size": [7], "output_padding": [1]}, ((2, 3), (0,))),   # t = 7 - 1 - 1
    ({"padding": "same", "kernel_size": [3], "dilation_rate": [3], "strides": [1]}, ((3, 3), (0,))),
])
def test_transposed_geometry_follows_keras_lengths(config, expected):
    from refcam.io.keras_config import KerasLayer
    layer = KerasLayer(name="t", class_name="Conv1DTranspose",
                       config={"kernel_size": [3], "strides": [4], **config})
    cropping, extra = _transposed_geometry(layer)
    assert ((cropping[0], cropping[1]), extra) == expected
    n, k, s, d = 5, layer.integers("kernel_size", 1)[0], layer.integers("strides", 1)[0], \
        layer.integers("dilation_rate", 1, 1)[0]
    extent = (k - 1) * d + 1
    given = config.get("output_padding")
    if config["padding"] == "valid":      # tf_keras conv_utils.deconv_output_length
        length = n * s + max(extent - s, 0) if given is None else (n - 1) * s + extent + given[0]
    else:
        length = n * s if given is None else (n - 1) * s + extent % 2 + given[0]
    assert (n - 1) * s + extent - sum(cropping) + extra[0] == length


# --- hand-made files ------------------------------------------------------------------------------
def entry(class_name: str, name: str, inputs: list, **config) -> dict:
    """A Keras 2 layer entry; ``inputs`` are names or ready-made inbound entries."""
    node = [[i, 0, 0, {}] if isinstance(i, str) else i for i in inputs]
    return {"class_name": class_name, "name": name, "config": {"name": name, **config},
            "inbound_nodes": [node] if inputs else []}


def write_model(path, layers: list[dict], weights: dict | None = None, keras_version: str | None = "2.21.0") -> str:
    config = {"class_name": "Functional", "config": {
        "name": "m", "layers": layers, "input_layers": [[layers[0]["name"], 0, 0]],
        "output_layers": [[layers[-1]["name"], 0, 0]]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        if keras_version is not None:
            f.attrs["keras_version"] = keras_version
        group = f.create_group("model_weights")
        for layer in layers:
            arrays = (weights or {}).get(layer["name"], {})
            layer_group = group.create_group(layer["name"])
            layer_group.attrs["weight_names"] = [f"{layer['name']}/{role}:0".encode() for role in arrays]
            for role, value in arrays.items():
                layer_group.create_dataset(f"{layer['name']}/{role}:0", data=np.asarray(value, np.float32))
    return str(path)


IMAGE = entry("InputLayer", "image", [], batch_input_shape=[None, 4, 4, 2])


def test_hard_sigmoid_follows_the_keras_version(tmp_path):
    layers = [IMAGE, entry("Activation", "hard", ["image"], activation="hard_sigmoid")]
    for version, alpha in (("2.21.0", 0.2), ("3.15.1", 1 / 6), ("1.0.0", 0.2)):
        net = load_keras_h5(write_model(tmp_path / f"{version}.h5", layers, keras_version=version))
        assert net.layer("hard").alpha == pytest.approx(alpha)
    with pytest.raises(UnsupportedOperationError, match="'hard_sigmoid' is clip.*no readable 'keras_version'"):
        load_keras_h5(write_model(tmp_path / "unknown.h5", layers, keras_version=None))
    swish = [IMAGE, entry("Activation", "hard", ["image"], activation="hard_swish")]
    with pytest.raises(UnsupportedOperationError, match="'hard_swish' is not a Keras 2 activation"):
        load_keras_h5(write_model(tmp_path / "swish2.h5", swish))
    assert isinstance(load_keras_h5(write_model(tmp_path / "swish3.h5", swish, keras_version="3.1.0"))
                      .layer("hard"), HardSwishLayer)


def test_a_reshape_after_dense_is_refused_with_what_to_do(tmp_path):
    layers = [IMAGE, entry("GlobalAveragePooling2D", "gap", ["image"]), entry("Dense", "dense", ["gap"], units=3),
              entry("Reshape", "reshape", ["dense"], target_shape=[1, 1, 3])]
    path = write_model(tmp_path / "m.h5", layers, {"dense": {"kernel": np.ones((2, 3)), "bias": np.zeros(3)}})
    with pytest.raises(UnsupportedOperationError, match=r"'reshape' \(Reshape\) turns the Keras shape \(3,\).*"
                                                        r"\(1, 1, 3\); refcam has no layer that adds axes"):
        load_keras_h5(path)


def test_flatten_reshapes_and_a_reshape_of_the_wrong_size(tmp_path):
    layers = [IMAGE, entry("Reshape", "flat", ["image"], target_shape=[-1])]
    net = load_keras_h5(write_model(tmp_path / "flat.h5", layers))
    x = np.arange(32.0).reshape(4, 4, 2)
    np.testing.assert_array_equal(net.predict(x).ravel(), x.ravel())             # row-major over (H, W, C)
    layers = [IMAGE, entry("Reshape", "flat", ["image"], target_shape=[31])]
    with pytest.raises(FileFormatError, match="target_shape \\[31\\] for an input of 32 values"):
        load_keras_h5(write_model(tmp_path / "bad.h5", layers))


def test_unsupported_new_layer_options_are_all_listed(tmp_path):
    layers = [IMAGE,
              entry("Normalization", "norm", ["image"], axis=[1], mean=None, variance=None),
              entry("LayerNormalization", "ln", ["norm"], axis=-1, rms_scaling=True),
              entry("UpSampling2D", "up", ["ln"], size=[2, 2], interpolation="lanczos3"),
              entry("Conv2DTranspose", "tconv", ["up"], filters=2, kernel_size=[2, 2], padding="full"),
              entry("LayerScale", "scale", ["tconv"], init_values=1e-6, projection_dim=2, extra=1),
              entry("TFOpLambda", "tf.math.truediv", [["_CONSTANT_VALUE", -1, 1.0, {"y": ["scale", 0, 0]}]],
                    function="math.truediv"),
              entry("TFOpLambda", "tf.math.multiply", [["tf.math.truediv", 0, 0, {"y": 2.0, "z": 1}]],
                    function="math.multiply"),
              entry("Reshape", "reshape", ["tf.math.multiply"], target_shape=[8, 16])]
    with pytest.raises(UnsupportedOperationError, match="8 Keras layer") as error:
        load_keras_h5(write_model(tmp_path / "m.h5", layers))
    for expected in ("'norm' (Normalization): axis=[1]", "'ln' (LayerNormalization): rms_scaling=True",
                     "'up' (UpSampling2D): interpolation 'lanczos3'", "'tconv' (Conv2DTranspose): padding 'full'",
                     "'scale' (LayerScale): a LayerScale that is not keras.applications.convnext's (config keys "
                     "['extra']", "'tf.math.truediv' (TFOpLambda): division is read only as a tensor divided by a "
                     "constant", "'tf.math.multiply' (TFOpLambda): it passes the arguments ['z']",
                     "'reshape' (Reshape): target_shape [8, 16]"):
        assert expected in str(error.value)


def test_multiply_of_different_ranks_and_division_by_zero_are_refused(tmp_path):
    layers = [IMAGE, entry("GlobalAveragePooling2D", "gap", ["image"]),
              entry("Multiply", "gate", ["image", "gap"]),
              entry("TFOpLambda", "tf.math.truediv", [["gate", 0, 0, {"y": 0.0}]], function="math.truediv")]
    with pytest.raises(UnsupportedOperationError) as error:
        load_keras_h5(write_model(tmp_path / "m.h5", layers))
    assert "'gate' (Multiply): its inputs have [1, 3] axes" in str(error.value)
    assert "'tf.math.truediv' (TFOpLambda): division by 0" in str(error.value)


def test_normalization_from_weights_and_inverted(tmp_path, rng):
    mean, variance = np.float32([0.5, -1.0]), np.float32([4.0, 0.0])
    layers = [IMAGE, entry("Normalization", "norm", ["image"], axis=[-1], mean=None, variance=None),
              entry("Normalization", "denorm", ["norm"], axis=-1, invert=True, mean=[0.5, -1.0], variance=4.0)]
    path = write_model(tmp_path / "m.h5", layers, {"norm": {"mean": mean, "variance": variance, "count": [3.0]}})
    net = load_keras_h5(path)
    x = rng.standard_normal((4, 4, 2))
    std = np.maximum(np.sqrt(variance.astype(np.float64)), 1e-7)                 # Keras: max(sqrt(var), 1e-7)
    normalized = (x - mean) / std
    np.testing.assert_allclose(net.predict(x).reshape(4, 4, 2), 2.0 * normalized + mean, **F64)

    def negative(f: h5py.File) -> None:
        f["model_weights/norm/norm/variance:0"][0] = -1.0
    with h5py.File(path, "r+") as f:
        negative(f)
    with pytest.raises(FileFormatError, match="'norm' \\(Normalization\\) has a negative variance"):
        load_keras_h5(path)


def test_lambda_layers_stay_refused_next_to_tfoplambda(tmp_path):
    layers = [IMAGE, entry("TFOpLambda", "tf.nn.relu", [["image", 0, 0, {}]], function="nn.relu"),
              entry("Lambda", "code", ["tf.nn.relu"], function=["4wEAAA", None, None])]
    with pytest.raises(UnsafeContentError, match="'code' \\(a Lambda layer\\)"):
        load_keras_h5(write_model(tmp_path / "m.h5", layers))


# --- parsing the node spellings --------------------------------------------------------------------
def keras3_tensor(layer: str) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "keras_history": [layer, 0, 0]}}


def test_operands_of_the_three_node_spellings():
    config = {"class_name": "Functional", "config": {
        "name": "m", "input_layers": [["in", 0, 0]], "output_layers": [["sub", 0, 0]], "layers": [
            {"class_name": "InputLayer", "name": "in", "config": {"name": "in"}, "inbound_nodes": []},
            {"class_name": "TFOpLambda", "name": "tf.math.subtract", "config": {"name": "tf.math.subtract",
             "function": "math.subtract"},
             "inbound_nodes": [["_CONSTANT_VALUE", -1, 1.5, {"y": ["in", 0, 0], "name": None}]]},
            {"class_name": "TFOpLambda", "name": "tf.math.multiply", "config": {"name": "tf.math.multiply",
             "function": "math.multiply"},
             "inbound_nodes": [["tf.math.subtract", 0, 0, {"y": ["in", 0, 0], "name": None}]]},
            {"class_name": "Subtract", "name": "sub", "config": {"name": "sub"},
             "inbound_nodes": [{"args": [keras3_tensor("tf.math.multiply"),
                                         {"class_name": "__numpy__", "config": {"value": [1.0, 2.0],
                                                                                 "dtype": "float32"}}],
                                "kwargs": {}}]}]}}
    layers = {layer.name: layer for layer in parse_model_config(config).layers}
    constant_first = layers["tf.math.subtract"]
    assert constant_first.operands == (Constant(1.5), "in") and constant_first.inputs == ("in",)
    assert constant_first.node_style == "flat" and constant_first.call_kwargs == {"name": None}
    assert layers["tf.math.multiply"].operands == ("tf.math.subtract", "in")
    operation = layers["sub"]
    assert operation.operation and operation.node_style == "dict"
    assert operation.operands == ("tf.math.multiply", Constant([1.0, 2.0]))


def test_a_keras3_operation_class_with_a_layer_config_is_a_custom_layer(tmp_path):
    """An entry named like an operation but configured like a layer is not read as the operation."""
    layers = [IMAGE, {"class_name": "Sigmoid", "name": "s", "config": {"name": "s", "dtype": "float32"},
                      "inbound_nodes": [{"args": [keras3_tensor("image")], "kwargs": {}}]}]
    with pytest.raises(UnsupportedOperationError, match="no refcam equivalent for the Keras class 'Sigmoid'"):
        load_keras_h5(write_model(tmp_path / "m.h5", layers, keras_version="3.15.1"))
