"""A nested ``Sequential`` inside a Keras functional model (ConvNeXt's stem and downsampling blocks).

Small files written with h5py in the two layouts the writers use (tf-keras: the consumer calls node 1
and weight names ``<inner>/kernel:0``; Keras 3: node 0 and ``<nested>/<inner>/kernel``, datasets one
group deeper), checked against a NumPy evaluation of the same model; the refusals of the forms that
are not inlined. No TensorFlow needed.
"""
from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from refcam.errors import UnsupportedOperationError
from refcam.io.keras_h5 import load_keras_h5
from tests.tolerances import F64

KERNEL = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4) / 8.0 - 0.7    # (kh, kw, C_in, C_out)
BIAS = np.float32([0.1, -0.2, 0.3, 0.0])
DENSE = np.arange(8, dtype=np.float32).reshape(4, 2) / 4.0 - 1.0
INNER = [("Conv2D", "stem_conv", {"filters": 4, "kernel_size": [1, 1], "strides": [1, 1], "padding": "valid",
                                  "activation": "linear", "use_bias": True}),
         ("ReLU", "stem_relu", {})]


def tensor(layer: str, node: int, keras3: bool):
    if keras3:
        return {"class_name": "__keras_tensor__", "config": {"shape": [None, 5, 5, 3], "keras_history": [layer, node, 0]}}
    return [layer, node, 0, {}]


def call(sources: list[tuple[str, int]], keras3: bool) -> list:
    args = [tensor(name, node, keras3) for name, node in sources]
    return [{"args": args if len(args) > 1 else args[:1], "kwargs": {}}] if keras3 else [args]


def layer(class_name: str, name: str, sources: list[tuple[str, int]], keras3: bool, **config) -> dict:
    return {"class_name": class_name, "name": name, "config": {"name": name, **config},
            "inbound_nodes": call(sources, keras3) if sources else []}


def nested_sequential(name: str, keras3: bool, inner=INNER) -> dict:
    inner_input = {"class_name": "InputLayer", "config": {"name": f"{name}_input", "batch_shape": [None, 5, 5, 3]}}
    entries = [inner_input] + [{"class_name": c, "config": {"name": n, **cfg}} for c, n, cfg in inner]
    return {"class_name": "Sequential", "name": name, "config": {"name": name, "layers": entries},
            "inbound_nodes": call([("image", 0)], keras3)}


def model_layers(keras3: bool, stem_node: int | None = None) -> list[dict]:
    node = stem_node if stem_node is not None else (0 if keras3 else 1)
    return [layer("InputLayer", "image", [], keras3, batch_input_shape=[None, 5, 5, 3]),
            nested_sequential("stem", keras3),
            layer("GlobalAveragePooling2D", "gap", [("stem", node)], keras3),
            layer("Dense", "fc", [("gap", 0)], keras3, units=2, activation="softmax", use_bias=False)]


def write(path, layers: list[dict], keras3: bool) -> str:
    config = {"class_name": "Functional", "config": {
        "name": "m", "layers": layers, "input_layers": [["image", 0, 0]], "output_layers": [["fc", 0, 0]]}}
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "3.15.1" if keras3 else "2.21.0"
        weights = f.create_group("model_weights")
        for entry in layers:
            weights.create_group(entry["name"]).attrs["weight_names"] = []
        stem, suffix = weights["stem"], "" if keras3 else ":0"
        prefix = "stem/" if keras3 else ""
        names = [f"{prefix}stem_conv/kernel{suffix}", f"{prefix}stem_conv/bias{suffix}"]
        stem.attrs["weight_names"] = [n.encode() for n in names]
        for name, value in zip(names, (KERNEL, BIAS)):
            stem.create_dataset(name, data=value)
        fc_name = f"fc/kernel{suffix}"
        weights["fc"].attrs["weight_names"] = [(f"fc/{fc_name}" if keras3 else fc_name).encode()]
        weights["fc"].create_dataset(f"fc/{fc_name}" if keras3 else fc_name, data=DENSE)
    return str(path)


def expected_output(x: np.ndarray) -> np.ndarray:
    """The model in NumPy: 1x1 convolution, ReLU, mean over positions, dense, softmax."""
    features = np.maximum(np.einsum("hwc,cd->hwd", x, KERNEL[0, 0].astype(np.float64)) + BIAS, 0.0)
    logits = features.mean(axis=(0, 1)) @ DENSE.astype(np.float64)
    return np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()


@pytest.mark.parametrize("keras3", [False, True], ids=["tf_keras", "keras3"])
def test_a_nested_sequential_is_inlined_with_its_weights(tmp_path, rng, keras3):
    net = load_keras_h5(write(tmp_path / "m.h5", model_layers(keras3), keras3))
    assert "stem" not in net.layer_names and {"stem_conv", "stem_relu"} <= set(net.layer_names)
    assert net.connections[:3] == [("image", "stem_conv"), ("stem_conv", "stem_relu"), ("stem_relu", "gap")]
    np.testing.assert_array_equal(net.layer("stem_conv").bias.ravel(), BIAS.astype(np.float64))
    x = rng.standard_normal((5, 5, 3))
    np.testing.assert_allclose(net.predict(x).ravel(), expected_output(x), **F64)


@pytest.mark.parametrize("keras3", [False, True], ids=["tf_keras", "keras3"])
def test_the_nested_model_name_is_an_alias_of_its_last_layer(tmp_path, keras3):
    net = load_keras_h5(write(tmp_path / "m.h5", model_layers(keras3), keras3))
    assert net.aliases["stem"] == "stem_relu" and net.resolve("stem") == "stem_relu"
    assert net.layer("stem") is net.layer("stem_relu")


def test_a_nested_sequential_called_twice_is_refused(tmp_path):
    layers = model_layers(False)
    layers[1]["inbound_nodes"] = call([("image", 0)], False) * 2
    with pytest.raises(UnsupportedOperationError, match="'stem' \\(Sequential\\): it is called 2 times"):
        load_keras_h5(write(tmp_path / "m.h5", layers, False))


def test_a_sequential_nested_two_levels_deep_is_refused(tmp_path):
    deeper = nested_sequential("inner_block", False)
    layers = model_layers(False)
    layers[1]["config"]["layers"].append({"class_name": "Sequential", "config": deeper["config"]})
    with pytest.raises(UnsupportedOperationError, match="'inner_block' \\(Sequential\\): a nested model refcam "
                                                        "cannot inline"):
        load_keras_h5(write(tmp_path / "m.h5", layers, False))
