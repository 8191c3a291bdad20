"""The Keras HDF5 importer against TensorFlow's own results, and its refusals.

Goldens: ``fixtures/keras/`` written by ``fixtures/make_import_fixtures_keras.py``
(TensorFlow is not needed here). The models hold float32 weights; refcam computes
in float64 and the goldens are TensorFlow's float64 runs of the same weights.
Where TensorFlow itself is float64 throughout (the manifest's
``float64_throughout``) the bound is ``GOLDEN_RELATIVE`` (1e-10 of the largest
entry: only summation order may differ); measured <= 4.5e-15. Where it is not
(its MaxPool3D and bilinear resize exist in float32 only, its float64 erfc and
tanh-GELU are off by 5e-9 and 1e-9; the manifest's ``dtype`` says which), the
bound is 1e-5 relative (the ``F32`` row: the issue's import bound); measured:
forward <= 3.3e-9 and Grad-CAM <= 4.7e-8 (conv3d_volume, unet_decoder,
convnext_block, keras3_convnext_unet).

Malformed files are made here from the good fixtures with h5py, one defect each.
"""
from __future__ import annotations

import json
import os
import shutil

import h5py
import numpy as np
import pytest

from refcam.cam.gradcam import gradcam
from refcam.errors import (CycleError, FileFormatError, InputError, MissingDatasetError, UnsafeContentError,
                           UnsupportedOperationError, WeightShapeError)
from refcam.io import load, save
from refcam.io.keras_h5 import (channels_last_constant, conv_kernel_to_internal, depthwise_kernel_to_internal,
                                dense_kernel_to_internal, load_keras_h5, parse_model_config,
                                zero_padding_to_internal)
from refcam.layers.extra import PaddingLayer, ScalingLayer
from tests.tolerances import F32, F64, GOLDEN_RELATIVE

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "keras")
with open(os.path.join(FIXTURES, "manifest.json")) as manifest_file:
    MANIFEST = json.load(manifest_file)
MODELS = sorted(MANIFEST["models"])
IMPORT_TOLERANCE = F32  # rtol 1e-5: float64 refcam vs TensorFlow float64 (see module docstring)


def assert_matches_tensorflow(found: np.ndarray, golden: np.ndarray, entry: dict) -> None:
    """max |found - golden| within GOLDEN_RELATIVE of max |golden| where TensorFlow ran float64 throughout,
    else within IMPORT_TOLERANCE."""
    assert found.shape == golden.shape
    if entry["float64_throughout"]:
        assert np.abs(found - golden).max() <= GOLDEN_RELATIVE * np.abs(golden).max()
    else:
        np.testing.assert_allclose(found, golden, **IMPORT_TOLERANCE)


def fixture_path(name: str) -> str:
    return os.path.join(FIXTURES, name)


def matlab_input(entry: dict) -> np.ndarray:
    """The golden input in MATLAB layout: images and volumes as stored (channels last), sequences c x t."""
    x = np.load(fixture_path(entry["input"]))
    return x.T if x.ndim == 2 else x


@pytest.fixture(scope="module")
def networks() -> dict:
    return {name: load_keras_h5(fixture_path(MANIFEST["models"][name]["file"])) for name in MODELS}


# --- against TensorFlow -------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_float64_forward_matches_tensorflow_float64(name, networks):
    entry = MANIFEST["models"][name]
    scores = networks[name].predict(matlab_input(entry))
    assert_matches_tensorflow(scores.ravel(), np.load(fixture_path(entry["output"])), entry)


@pytest.mark.parametrize("name", MODELS)
def test_float64_gradcam_matches_tensorflow_gradient_tape(name, networks):
    entry = MANIFEST["models"][name]
    golden = np.load(fixture_path(entry["gradcam"]))
    assert golden.max() > 0.0
    result = gradcam(networks[name], matlab_input(entry), entry["label"], upsampling="none")
    assert result.feature_layer == entry["feature_layer"]        # MATLAB's default rule picks the Keras layer
    assert result.reduction_layer == networks[name].output_layer.name
    assert_matches_tensorflow(result.map.reshape(golden.shape), golden, entry)


@pytest.mark.parametrize("name", MODELS)
def test_display_and_refcam_hdf5_round_trip(name, networks, tmp_path):
    net = networks[name]
    text = str(net)
    assert all(f"'{layer.name}'" in text for layer in net.layers)
    save(net, tmp_path / "net.h5")
    reloaded = load(tmp_path / "net.h5")
    x = matlab_input(MANIFEST["models"][name])
    np.testing.assert_array_equal(reloaded.predict(x), net.predict(x))
    assert str(reloaded) == text


def test_names_of_split_and_identity_layers(networks):
    branches = networks["functional_branches"]
    assert "identity" not in branches.layer_names                  # Activation('linear'): no layer
    assert branches.layer("features/conv").inputs == ("gate",)
    assert branches.layer("features").inputs == ("features/conv",)
    assert type(branches.layer("features")).__name__ == "ClippedReLULayer"
    cnn = networks["sequential_cnn"]
    assert cnn.layer("separable").inputs == ("separable/pointwise",)
    assert cnn.layer("separable/pointwise").inputs == ("separable/depthwise",)
    assert cnn.layer("separable/depthwise").groups == 12
    assert isinstance(cnn.layer("zero_pad"), PaddingLayer) and cnn.layer("zero_pad").padding == (1, 2, 0, 1)
    assert cnn.layer("avg_same").padding_value == "mean"
    assert cnn.layer("bn1").epsilon == pytest.approx(1e-3)
    rescale = cnn.layer("rescale")
    assert isinstance(rescale, ScalingLayer) and rescale.scale == np.float32(1.0 / 127.5)


def test_free_length_sequence_gets_its_shortest_valid_length(networks):
    net = networks["conv1d_sequence"]
    assert net.input_layer.min_length == 2      # pad +3, two halvings, then a window of 2
    assert net.predict(np.ones((3, 2))).shape == (1, 4)
    assert net.predict(np.ones((3, 40))).shape == (1, 4)
    with pytest.raises(InputError, match="MinLength = 2"):
        net.predict(np.ones((3, 1)))


def test_keras_batches_and_time_major_sequences_go_in_with_a_format(networks):
    entry = MANIFEST["models"]["conv1d_sequence"]
    x = np.load(fixture_path(entry["input"]))                       # Keras (T, C)
    np.testing.assert_array_equal(networks["conv1d_sequence"].predict(x, format="TC"),
                                  networks["conv1d_sequence"].predict(x.T))
    image = np.load(fixture_path(MANIFEST["models"]["sequential_cnn"]["input"]))
    batch = np.stack([image, image[::-1]])                            # Keras (B, H, W, C)
    scores = networks["sequential_cnn"].predict(batch, format="BSSC")
    np.testing.assert_allclose(scores[0], networks["sequential_cnn"].predict(image)[0], **F64)


# --- weight layouts ----------------------------------------------------------------------------
def test_weight_layout_conversions(rng):
    kernel = rng.standard_normal((3, 2, 4, 5))                     # (kh, kw, C/groups, F)
    internal = conv_kernel_to_internal(kernel)
    assert internal[4, 3, 2, 1] == kernel[2, 1, 3, 4] and internal.flags.c_contiguous
    depthwise = rng.standard_normal((2, 3, 4, 3))                  # (kh, kw, C, m)
    grouped = depthwise_kernel_to_internal(depthwise)
    assert grouped.shape == (12, 1, 2, 3)
    for c in range(4):
        for j in range(3):
            np.testing.assert_array_equal(grouped[c * 3 + j, 0], depthwise[:, :, c, j])
    dense = rng.standard_normal((6, 2))
    np.testing.assert_array_equal(dense_kernel_to_internal(dense), dense.T)


def test_zero_padding_and_rescaling_constants():
    assert zero_padding_to_internal(2, 2) == (2, 2, 2, 2)
    assert zero_padding_to_internal([1, 3], 2) == (1, 3, 1, 3)          # symmetric per axis
    assert zero_padding_to_internal([1, 3], 1) == (1, 3)                # 1-D: (begin, end)
    assert zero_padding_to_internal([[1, 2], [3, 4], [5, 6]], 3) == (1, 3, 5, 2, 4, 6)
    assert channels_last_constant(0.5, 3).shape == ()
    per_channel = channels_last_constant([1.0, 2.0, 3.0], 3)
    assert per_channel.shape == (3, 1, 1) and per_channel.dtype == np.float32
    assert channels_last_constant(np.arange(6.0).reshape(2, 3), 3).shape == (3, 1, 2)
    assert float(channels_last_constant(0.1, 2)) == float(np.float32(0.1))


# --- parsing both inbound-node styles by hand ------------------------------------------------------
def keras3_tensor(layer: str) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "keras_history": [layer, 0, 0]}}


def test_inbound_nodes_old_and_new_styles_give_the_same_graph():
    layers = [("InputLayer", "in", []), ("Conv2D", "a", ["in"]), ("Conv2D", "b", ["in"]),
              ("Add", "sum", ["a", "b"])]
    old = {"class_name": "Functional", "config": {
        "name": "m", "input_layers": [["in", 0, 0]], "output_layers": [["sum", 0, 0]],
        "layers": [{"class_name": c, "name": n, "config": {"name": n},
                    "inbound_nodes": [[[source, 0, 0, {}] for source in inputs]] if inputs else []}
                   for c, n, inputs in layers]}}
    new = {"class_name": "Functional", "config": {
        "name": "m", "input_layers": ["in", 0, 0], "output_layers": ["sum", 0, 0],
        "layers": [{"class_name": c, "name": n, "config": {"name": n},
                    "inbound_nodes": ([{"args": [[keras3_tensor(s) for s in inputs]] if len(inputs) > 1
                                        else [keras3_tensor(inputs[0])], "kwargs": {}}] if inputs else [])}
                   for c, n, inputs in layers]}}
    for config in (old, new):
        model = parse_model_config(config)
        assert [(layer.name, layer.inputs) for layer in model.layers] == [
            ("in", ()), ("a", ("in",)), ("b", ("in",)), ("sum", ("a", "b"))]
        assert model.output == "sum"


def test_sequential_without_input_layer_takes_the_first_layers_input_shape():
    config = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "Conv2D", "config": {"name": "c", "batch_input_shape": [None, 5, 5, 1]}},
        {"class_name": "ReLU", "config": {"name": "r"}}]}}
    model = parse_model_config(config)
    assert [layer.name for layer in model.layers] == ["c_input", "c", "r"]
    assert model.layers[0].config["batch_input_shape"] == [None, 5, 5, 1]


# --- hostile fixtures ------------------------------------------------------------------------------
def test_lambda_layer_is_refused_as_unsafe():
    with pytest.raises(UnsafeContentError, match="'double'.*never executes code"):
        load_keras_h5(fixture_path("hostile_lambda.h5"))


def test_every_unsupported_layer_is_listed():
    with pytest.raises(UnsupportedOperationError, match="5 Keras layer") as error:
        load_keras_h5(fixture_path("hostile_unsupported.h5"))
    for expected in ("'upsample' (UpSampling2D): interpolation 'bicubic'", "'conv_mish' (Conv2D): activation 'mish'",
                     "'custom_scale' (ScaleByTwo)", "'tf.math.exp' (TFOpLambda): TFOpLambda function 'math.exp'",
                     "'reshape' (Reshape): target_shape [10, 20]"):
        assert expected in str(error.value)


def test_truncated_file_is_a_file_format_error():
    with pytest.raises(FileFormatError, match="truncated or corrupt"):
        load_keras_h5(fixture_path("hostile_truncated.h5"))


def test_wrong_weight_shape_names_layer_and_dataset():
    with pytest.raises(WeightShapeError, match="/model_weights/conv2/conv2/kernel:0 of layer 'conv2'.*"
                                               r"\(2, 2, 1, 5, 4\).*\(2, 2, 1, 3, 4\)"):
        load_keras_h5(fixture_path("hostile_wrong_weight_shape.h5"))


# --- malformed variants made here -------------------------------------------------------------------
def variant(tmp_path, base: str, edit) -> str:
    """A copy of fixture ``base`` changed by ``edit(h5py.File)``."""
    path = str(tmp_path / f"variant_{base}")
    shutil.copyfile(fixture_path(base), path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def edit_config(change):
    """An ``edit`` that rewrites ``model_config`` through ``change(config) -> None``."""
    def edit(f):
        config = json.loads(f.attrs["model_config"])
        change(config)
        f.attrs["model_config"] = json.dumps(config)
    return edit


def layer_entry(config: dict, name: str) -> dict:
    return next(entry for entry in config["config"]["layers"] if entry["config"]["name"] == name)


def test_missing_or_bad_model_config(tmp_path):
    def drop(f):
        del f.attrs["model_config"]
    with pytest.raises(FileFormatError, match="'model_config'.*missing"):
        load_keras_h5(variant(tmp_path, "conv3d_volume.h5", drop))

    def weights_only(f):
        del f.attrs["model_config"]
        f.attrs["layer_names"] = [b"conv1"]
    with pytest.raises(FileFormatError, match="weights only"):
        load_keras_h5(variant(tmp_path, "conv3d_volume.h5", weights_only))

    def bad_json(f):
        f.attrs["model_config"] = '{"class_name": "Sequential", "config": '
    with pytest.raises(FileFormatError, match="not valid JSON"):
        load_keras_h5(variant(tmp_path, "conv3d_volume.h5", bad_json))

    def subclassed(f):
        f.attrs["model_config"] = json.dumps({"class_name": "MyModel", "config": {}})
    with pytest.raises(UnsupportedOperationError, match="'MyModel'"):
        load_keras_h5(variant(tmp_path, "conv3d_volume.h5", subclassed))


def test_missing_weights_name_the_layer_and_dataset(tmp_path):
    def drop_dataset(f):
        del f["model_weights/conv1/conv1/bias:0"]
    with pytest.raises(MissingDatasetError, match="/model_weights/conv1/conv1/bias:0 of layer 'conv1'"):
        load_keras_h5(variant(tmp_path, "conv3d_volume.h5", drop_dataset))

    def drop_group(f):
        del f["model_weights/conv2"]
    with pytest.raises(MissingDatasetError, match="/model_weights/conv2 of layer 'conv2'"):
        load_keras_h5(variant(tmp_path, "conv3d_volume.h5", drop_group))

    def drop_names(f):
        del f["model_weights/scores"].attrs["weight_names"]
    with pytest.raises(MissingDatasetError, match="'scores'.*'weight_names'"):
        load_keras_h5(variant(tmp_path, "conv3d_volume.h5", drop_names))

    def integer_kernel(f):
        del f["model_weights/scores/scores/kernel:0"]
        f["model_weights/scores/scores"].create_dataset("kernel:0", data=np.zeros((4, 2), dtype=np.int32))
    with pytest.raises(WeightShapeError, match="'scores'.*int32"):
        load_keras_h5(variant(tmp_path, "conv3d_volume.h5", integer_kernel))


def test_unsupported_options_are_all_listed(tmp_path):
    def change(config):
        layer_entry(config, "conv1")["config"]["data_format"] = "channels_first"
        layer_entry(config, "avg_same")["config"]["padding"] = "full"
        layer_entry(config, "scores")["config"]["activation"] = "mish"
    with pytest.raises(UnsupportedOperationError) as error:
        load_keras_h5(variant(tmp_path, "conv3d_volume.h5", edit_config(change)))
    message = str(error.value)
    assert "3 Keras layer" in message
    for expected in ("'conv1' (Conv3D): data_format='channels_first'",
                     "'avg_same' (AveragePooling3D): padding 'full'", "'scores' (Dense): activation 'mish'"):
        assert expected in message


def test_relu_threshold_is_refused(tmp_path):
    def change(config):
        layer_entry(config, "relu6")["config"]["threshold"] = 0.5
    with pytest.raises(UnsupportedOperationError, match="1 Keras layer") as error:
        load_keras_h5(variant(tmp_path, "sequential_cnn.h5", edit_config(change)))
    assert "'relu6' (ReLU): threshold 0.5" in str(error.value)


def test_concatenate_off_the_channel_axis_shared_layers_and_extra_outputs(tmp_path):
    def change(config):
        layer_entry(config, "concat")["config"]["axis"] = 1
        stem = layer_entry(config, "stem")
        stem["inbound_nodes"] = stem["inbound_nodes"] * 2
    with pytest.raises(UnsupportedOperationError) as error:
        load_keras_h5(variant(tmp_path, "functional_branches.h5", edit_config(change)))
    assert "'concat' (Concatenate): axis=1" in str(error.value)
    assert "'stem' (Conv2D): it is called 2 times" in str(error.value)

    def two_outputs(config):
        config["config"]["output_layers"].append(["hidden", 0, 0])
    with pytest.raises(UnsupportedOperationError, match="exactly one input and one output"):
        load_keras_h5(variant(tmp_path, "functional_branches.h5", edit_config(two_outputs)))


def test_graph_errors_in_the_config(tmp_path):
    def cycle(config):
        layer_entry(config, "stem")["inbound_nodes"] = [[["add", 0, 0, {}]]]
    with pytest.raises(CycleError, match="cycle"):
        load_keras_h5(variant(tmp_path, "functional_branches.h5", edit_config(cycle)))

    def unknown_source(config):
        layer_entry(config, "left_1x1")["inbound_nodes"] = [[["nowhere", 0, 0, {}]]]
    with pytest.raises(FileFormatError, match="'left_1x1' takes input from \\['nowhere'\\]"):
        load_keras_h5(variant(tmp_path, "functional_branches.h5", edit_config(unknown_source)))

    def malformed_value(config):
        layer_entry(config, "left_1x1")["config"]["filters"] = "eight"
    with pytest.raises(FileFormatError, match="'left_1x1' \\(Conv2D\\) has a malformed config"):
        load_keras_h5(variant(tmp_path, "functional_branches.h5", edit_config(malformed_value)))


def test_not_hdf5_and_missing_files(tmp_path):
    text = tmp_path / "model.h5"
    text.write_text("not a model")
    with pytest.raises(FileFormatError, match="HDF5 could not open"):
        load_keras_h5(text)
    with pytest.raises(FileNotFoundError):
        load_keras_h5(tmp_path / "absent.h5")


def test_lambda_is_refused_before_anything_else_is_reported(tmp_path):
    def add_lambda(config):
        layer_entry(config, "gap")["class_name"] = "Lambda"
        layer_entry(config, "conv1")["config"]["data_format"] = "channels_first"
    with pytest.raises(UnsafeContentError, match="'gap'"):
        load_keras_h5(variant(tmp_path, "conv3d_volume.h5", edit_config(add_lambda)))
