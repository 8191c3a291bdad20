"""refcam.to_torch: forward in float64, module names and hooks, round trip through from_torch, refusals.

Errors are ``max |torch - refcam| / max |refcam|``: within ``CROSS["rtol"]`` (1e-12) for
to_torch's module against refcam's forward pass.
"""
from __future__ import annotations

import re
import sys
from typing import Any

import numpy as np
import pytest

import refcam
from refcam import layers as L
from refcam.errors import ModelConversionError, OptionalDependencyError, UnsupportedOperationError
from refcam.network import Network
from tests.cam import nets
from tests.tolerances import CROSS, FLOAT32_CONSTANTS

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.crosscheck


def relative_error(found: Any, expected: Any) -> float:
    found, expected = np.asarray(found), np.asarray(expected)
    assert found.shape == expected.shape, (found.shape, expected.shape)
    return float(np.abs(found - expected).max() / np.abs(expected).max())


def dag_2d(rng: np.random.Generator, size: int = 7) -> Network:
    """zscore input; two branches (asymmetric explicit padding, 'same' stride 2, dilation, groups) concatenated,
    max pooling with odd 'same' padding, average pooling with 'mean' padding, a residual addition,
    leaky ReLU, dropout and a fully connected layer flattening a (C, H, W) input in MATLAB's order."""
    def conv(name, f, c, k, inputs, **options):
        return L.Convolution2dLayer(name=name, inputs=inputs, filter_size=k, num_filters=f,
                                    weights=rng.standard_normal((f, c // options.get("groups", 1), k, k)) / k,
                                    bias=0.1 * rng.standard_normal(f), **options)
    return Network([
        L.ImageInputLayer(name="input", input_size=(size, size, 2), normalization="zscore",
                          mean=rng.uniform(0.0, 0.5, (2, 1, 1)), standard_deviation=rng.uniform(0.5, 2.0, (2, 1, 1))),
        conv("conv_a", 4, 2, 3, ("input",), padding=(0, 1, 2, 0), stride=(1, 1)),
        conv("conv_b", 4, 2, 3, ("input",), padding=(1, 0, 0, 2)),
        L.DepthConcatenationLayer(name="concat", inputs=("conv_a", "conv_b")),
        L.LeakyReLULayer(name="leaky", inputs=("concat",), scale=0.2),
        conv("conv_g", 8, 8, 3, ("leaky",), padding="same", dilation_factor=2, groups=2),
        L.AdditionLayer(name="add", inputs=("conv_g", "leaky")),
        nets.batchnorm("bn", rng, 8, inputs=("add",)),
        L.ReLULayer(name="relu_2", inputs=("bn",)),
        L.MaxPooling2dLayer(name="max", inputs=("relu_2",), pool_size=3, stride=2, padding="same"),
        L.AveragePooling2dLayer(name="avg", inputs=("max",), pool_size=3, stride=1, padding=(1, 0, 2, 1),
                                padding_value="mean"),
        L.DropoutLayer(name="drop", inputs=("avg",), probability=0.3),
        nets.fc("fc", rng, 3, 8 * 2 * 5, inputs=("drop",)),
        L.SoftmaxLayer(name="softmax", inputs=("fc",)),
        L.ClassificationLayer(name="output", inputs=("softmax",), classes=["a", "b", "c"]),
    ])


def pooled_volume(rng: np.random.Generator, size: int = 6) -> Network:
    """3-D: 'rescale-symmetric' input, conv stride 2, max and average pooling with padding, layer norm over (C, *S)."""
    return Network([
        L.Image3dInputLayer(name="input", input_size=(size, size, size, 1), normalization="rescale-symmetric",
                            min=np.array(-1.0), max=np.array(2.0)),
        L.Convolution3dLayer(name="conv", filter_size=3, num_filters=3, stride=2, padding="same",
                             weights=rng.standard_normal((3, 1, 3, 3, 3)) / 5, bias=0.1 * rng.standard_normal(3)),
        L.LayerNormalizationLayer(name="layernorm", scale=rng.uniform(0.5, 1.5, 3), offset=rng.standard_normal(3)),
        L.ReLULayer(name="relu_1"),
        L.MaxPooling3dLayer(name="max", pool_size=2, stride=1, padding=(1, 0, 0, 1, 1, 0)),
        L.AveragePooling3dLayer(name="avg", pool_size=2, stride=1, padding=1),
        L.GlobalAveragePooling3dLayer(name="gap"),
        nets.fc("fc", rng, 2, 3),
        L.SoftmaxLayer(name="softmax"),
        L.ClassificationLayer(name="output", classes=["a", "b"]),
    ])


def pooled_sequence(rng: np.random.Generator) -> Network:
    """1-D: zerocenter input, dilated causal conv, 'same' stride-2 conv, 1-D pooling, channel-only layer norm."""
    return Network([
        L.SequenceInputLayer(name="sequence", input_size=3, normalization="zerocenter",
                             mean=rng.standard_normal((3, 1))),
        nets.conv("causal", rng, 4, 3, 3, nd=1, padding="causal"),
        L.Convolution1dLayer(name="strided", filter_size=4, num_filters=4, stride=2, padding="same",
                             weights=rng.standard_normal((4, 4, 4)) / 4, bias=None),
        L.LayerNormalizationLayer(name="layernorm", operation_dimension="channel-only", epsilon=1e-3,
                                  scale=rng.uniform(0.5, 1.5, 4), offset=rng.standard_normal(4)),
        L.MaxPooling1dLayer(name="max", pool_size=3, stride=1, padding="same"),
        L.AveragePooling1dLayer(name="avg", pool_size=2, stride=2, padding=(1, 0)),
        L.GlobalAveragePooling1dLayer(name="gap"),
        nets.fc("fc", rng, 2, 4),
        L.RegressionLayer(name="regression"),
    ])


NETWORKS = {
    "classifier_2d": nets.classifier_2d, "regression_2d": nets.regression_2d, "segmentation_2d": nets.segmentation_2d,
    "skip_head_2d": nets.skip_head_2d, "sequence_1d": nets.sequence_1d, "volume_3d": nets.volume_3d,
    "dag_2d": dag_2d, "pooled_volume": pooled_volume, "pooled_sequence": pooled_sequence,
}
FEATURE_LAYERS = {"classifier_2d": "relu_2", "regression_2d": "relu_2", "segmentation_2d": "relu_1",
                  "skip_head_2d": "relu_1", "sequence_1d": "layernorm_1", "volume_3d": "relu_1", "dag_2d": "relu_2",
                  "pooled_volume": "relu_1", "pooled_sequence": "layernorm"}
# round trips whose only difference is an epsilon that the ONNX export stores as float32 (the layer norm
# becomes Transpose + LayerNormalization + Transpose, a layer from_torch does not name after the module)
FLOAT32_EPSILON = {"sequence_1d", "pooled_sequence"}
# what refcam's ONNX importer refuses of the export: an edge Pad (asymmetric max-pooling padding) and the
# formula of a layer norm over (C, *S) (the importer reads LayerNormalization over channels alone)
ROUND_TRIP_REFUSED = {"dag_2d": "(Pad)", "pooled_volume": "(Sub, Sqrt, Reciprocal)"}


def internal_input(net: Network, batch: int = 2, steps: int = 11) -> np.ndarray:
    """A seeded float64 input (B, C, *S); a sequence gets ``steps`` time steps."""
    shape = tuple(steps if n is None else n for n in net.input_layer.per_observation_shape())
    return np.random.default_rng(7).standard_normal((batch, *shape)) * 2.0


def refcam_outputs(net: Network, x: np.ndarray, names: list[str]) -> dict[str, np.ndarray]:
    return {name: value.data for name, value in net.forward_tensors(x, names).items()}


@pytest.fixture(scope="module", params=list(NETWORKS))
def case(request) -> tuple[str, Network, Any, np.ndarray]:
    net = NETWORKS[request.param](np.random.default_rng(3))
    return request.param, net, refcam.to_torch(net), internal_input(net)


def test_forward_matches_refcam_in_float64(case) -> None:
    name, net, model, x = case
    expected = refcam_outputs(net, x, [net.output_layer.name])[net.output_layer.name]
    with torch.no_grad():
        found = model(torch.from_numpy(x))
    assert found.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in model.state_dict().values() if p.is_floating_point())
    assert relative_error(found.numpy(), expected) <= CROSS["rtol"]


def test_module_names_are_layer_names_and_hooks_see_refcam_activations(case) -> None:
    name, net, model, x = case
    assert [child for child, _ in model.named_children()] == net.layer_names
    feature = FEATURE_LAYERS[name]
    seen: list[Any] = []
    handle = dict(model.named_modules())[feature].register_forward_hook(
        lambda module, inputs, output: seen.append(output.detach().clone()))
    with torch.no_grad():
        model(torch.from_numpy(x))
    handle.remove()
    assert relative_error(seen[0].numpy(), refcam_outputs(net, x, [feature])[feature]) <= CROSS["rtol"]


def test_gradient_of_a_score_matches_refcam(case) -> None:
    """What a PyTorch Grad-CAM takes: d(score)/d(feature map), by autograd on the module."""
    name, net, model, x = case
    feature, last = FEATURE_LAYERS[name], net.output_layer.name
    seen: list[Any] = []

    def keep(module: Any, inputs: Any, output: Any) -> None:
        output.retain_grad()
        seen.append(output)
    handle = model.get_submodule(feature).register_forward_hook(keep)
    model(torch.from_numpy(x))[:, 0].sum().backward()
    handle.remove()
    outputs = net.forward_tensors(x, [last], grad_from=feature)
    outputs[last][:, 0].sum().backward()
    assert relative_error(seen[0].grad.numpy(), outputs[feature].grad) <= CROSS["rtol"]


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_round_trip_through_from_torch(case) -> None:
    pytest.importorskip("onnx")
    name, net, model, x = case
    if name in ROUND_TRIP_REFUSED:
        with pytest.raises(UnsupportedOperationError, match=re.escape(ROUND_TRIP_REFUSED[name])):
            refcam.from_torch(model, torch.from_numpy(x))
        return
    back = refcam.from_torch(model, torch.from_numpy(x))
    last = net.output_layer.name
    expected = refcam_outputs(net, x, [last])[last]
    found = refcam_outputs(back, x, [back.output_layer.name])[back.output_layer.name]
    tolerance = FLOAT32_CONSTANTS if name in FLOAT32_EPSILON else CROSS["rtol"]
    assert relative_error(found, expected) <= tolerance
    feature = FEATURE_LAYERS[name]
    if feature in back.layer_names and name not in FLOAT32_EPSILON:
        activation = refcam_outputs(back, x, [feature])[feature]
        assert relative_error(activation, refcam_outputs(net, x, [feature])[feature]) <= CROSS["rtol"]


def test_module_is_a_float64_copy_in_eval_mode() -> None:
    net = nets.classifier_2d(np.random.default_rng(0))
    model = refcam.to_torch(net)
    assert not model.training and not any(module.training for module in model.modules())
    with torch.no_grad():
        model.get_submodule("conv_1").weight.zero_()
    assert np.abs(net.layer("conv_1").weights).max() > 0


def test_unsupported_layers_are_listed_at_once() -> None:
    rng = np.random.default_rng(0)
    net = Network([
        L.ImageInputLayer(name="input", input_size=(4, 4, 2), normalization="none"),
        L.SigmoidLayer(name="gate"),
        L.TanhLayer(name="squash"),
        L.FlattenLayer(name="flat"),
        nets.fc("fc", rng, 2, 32),
        L.SoftmaxLayer(name="softmax"),
        L.ClassificationLayer(name="output", classes=["a", "b"]),
    ])
    with pytest.raises(ModelConversionError) as raised:
        refcam.to_torch(net)
    message = str(raised.value)
    assert "3 layer(s)" in message
    for layer in ("'gate' (Sigmoid)", "'squash' (Tanh)", "'flat' (Flatten)"):
        assert layer in message
    assert "'fc'" not in message


@pytest.mark.parametrize("bad_name", ["block.relu", "forward"])
def test_names_torch_refuses_are_reported(bad_name: str) -> None:
    net = Network([L.ImageInputLayer(name="input", input_size=(2, 2, 1), normalization="none"),
                   L.ReLULayer(name=bad_name), L.RegressionLayer(name="output")])
    with pytest.raises(ModelConversionError, match=repr(bad_name).replace(".", r"\.")):
        refcam.to_torch(net)


def test_refuses_what_is_not_a_network() -> None:
    with pytest.raises(ModelConversionError, match="refcam Network"):
        refcam.to_torch(torch.nn.ReLU())


def test_missing_torch_is_an_optional_dependency_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(OptionalDependencyError, match=r"refcam\[torch\]"):
        refcam.to_torch(nets.classifier_2d(np.random.default_rng(0)))
