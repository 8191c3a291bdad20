"""refcam.from_torch: forward and Grad-CAM against PyTorch in float64, module-path names, aliases, refusals.

Every check compares with the user's model converted by ``copy.deepcopy(model).double()``;
errors are ``max |refcam - torch| / max |torch|``, within ``CROSS["rtol"]`` (1e-12).
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest

import refcam
from refcam.errors import (InputDtypeError, InputError, LayerNotFoundError, ModelConversionError,
                           UnsupportedOperationError)
from tests.tolerances import CROSS

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
from tests.interop.torch_nets import MODELS, ResNetish, build  # noqa: E402

pytestmark = pytest.mark.crosscheck


def relative_error(found: Any, expected: Any) -> float:
    found, expected = np.asarray(found), np.asarray(expected)
    assert found.shape == expected.shape, (found.shape, expected.shape)
    return float(np.abs(found - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def converted() -> dict[str, tuple[Any, Any, Any]]:
    """``{name: (model, example input, Network)}`` for every test model, converted once."""
    result = {}
    for name in MODELS:
        model, x = build(name)
        result[name] = (model, x, refcam.from_torch(model, x))
    return result


def module_outputs(model: Any, x: Any) -> dict[str, Any]:
    """The float64 output of every module called exactly once, by module path (forward hooks)."""
    reference = copy.deepcopy(model).double()
    outputs: dict[str, list[Any]] = {}
    handles = [module.register_forward_hook(
        lambda module, inputs, output, path=path: outputs.setdefault(path, []).append(output.detach().clone()))
        for path, module in reference.named_modules() if path]
    with torch.no_grad():
        reference(x.double())
    for handle in handles:
        handle.remove()
    return {path: values[0].numpy() for path, values in outputs.items() if len(values) == 1}


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_matches_pytorch_in_float64(converted, name) -> None:
    model, x, net = converted[name]
    reference = copy.deepcopy(model).double()
    for batch in (1, 3):                      # exported with a free batch axis
        xb = torch.cat([x] + [torch.randn_like(x) for _ in range(batch - 1)]).double()
        with torch.no_grad():
            expected = reference(xb).numpy()
        assert relative_error(net.predict(xb.numpy(), format=MODELS[name][2]), expected) <= CROSS["rtol"]


@pytest.mark.parametrize("name", list(MODELS))
def test_every_module_name_gives_that_modules_output(converted, name) -> None:
    """A module path, as a layer name or an alias, holds exactly what the module returned."""
    model, x, net = converted[name]
    expected = module_outputs(model, x)
    known = [path for path in expected if path in net.layer_names or path in net.aliases]
    activations = net.activations(x.double().numpy(), known, format=MODELS[name][2])
    for path in known:
        found = activations[path].reshape(expected[path].shape)
        assert relative_error(found, expected[path]) <= CROSS["rtol"], path
    unnamed = sorted(set(expected) - set(known))
    assert all(isinstance(dict(model.named_modules())[path], torch.nn.Dropout) for path in unnamed), unnamed


def test_resnet_names_are_module_paths_and_containers_are_aliases(converted) -> None:
    _, _, net = converted["resnet"]
    assert net.layer_names[:5] == ["input", "conv1", "bn1", "relu", "maxpool"]
    assert net.layer_names[5:12] == ["layer1.0.conv1", "layer1.0.bn1", "layer1.0.relu", "layer1.0.conv2",
                                     "layer1.0.bn2", "layer1.0.Add", "layer1.0.relu_1"]
    assert {"layer2.0.downsample.0", "layer2.0.downsample.1", "avgpool", "Flatten", "fc"} <= set(net.layer_names)
    assert net.aliases["layer4"] == "layer4.1.relu_1"
    assert net.aliases["layer2.0"] == "layer2.0.relu_1"
    assert net.aliases["layer2.0.downsample"] == "layer2.0.downsample.1"
    assert net.layer("layer4").name == "layer4.1.relu_1"
    assert "'layer4'" in str(net) and "-> 'layer4.1.relu_1'" in str(net)
    with pytest.raises(LayerNotFoundError, match="aliases.*'layer4'"):
        refcam.gradcam(net, np.zeros((1, 3, 40, 40)), 0, format="BCSS", feature_layer="layer5")


def test_vgg_and_densenet_names(converted) -> None:
    _, _, vgg = converted["vgg"]
    assert vgg.layer_names == ["input", "features.0", "features.1", "features.2", "features.3", "features.4",
                               "features.5", "features.6", "avgpool", "Reshape", "classifier.0", "classifier.1",
                               "classifier.3"]                  # classifier.2 is a Dropout: no node in eval()
    assert dict(vgg.aliases) == {"features": "features.6", "classifier": "classifier.3"}
    _, _, dense = converted["densenet"]
    assert "features.denseblock1.denselayer2.Concat" in dense.layer_names      # torch.cat in DenseLayer.forward
    assert dense.aliases["features.denseblock1"] == "features.denseblock1.Concat"
    assert dense.aliases["features"] == "features.norm5"
    assert dense.layer_names[-5:] == ["Relu", "GlobalAveragePool", "Flatten", "classifier", "softmax"]


def test_modules_without_a_layer_of_their_own_are_aliases() -> None:
    """A leaf module of two nodes (``leaf.Conv``, ``leaf.Relu``), an nn.Flatten of a flat tensor (no layer)."""

    class Leaf(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(4, 3, 3, 3))

        def forward(self, x):
            return torch.relu(torch.nn.functional.conv2d(x, self.weight, padding=1))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.leaf = Leaf()
            self.flatten = torch.nn.Flatten()
            self.fc = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(self.flatten(self.leaf(x).mean(dim=(2, 3))))

    model, x = Model().float().eval(), torch.randn(1, 3, 6, 6, dtype=torch.float32)
    net = refcam.from_torch(model, x)
    assert net.layer_names == ["input", "leaf.Conv", "leaf.Relu", "ReduceMean", "fc"]
    assert dict(net.aliases) == {"leaf": "leaf.Relu", "flatten": "ReduceMean"}
    expected = module_outputs(model, x)
    found = net.activations(x.double().numpy(), ["leaf", "flatten"], format="BCSS")
    for path in ("leaf", "flatten"):
        assert relative_error(found[path].reshape(expected[path].shape), expected[path]) <= CROSS["rtol"]


def torch_gradcam(model: Any, x: Any, module_path: str, label: int) -> np.ndarray:
    """Grad-CAM in PyTorch float64: A = the module's output, y = output[0, label], relu(sum_k mean(dy/dA_k) A_k)."""
    reference = copy.deepcopy(model).double()
    saved: dict[str, Any] = {}
    handle = dict(reference.named_modules())[module_path].register_forward_hook(
        lambda module, inputs, output: saved.setdefault("A", output))
    score = reference(x.double())[0, label]
    handle.remove()
    activations = saved["A"]
    (gradients,) = torch.autograd.grad(score, activations)
    spatial = tuple(range(2, activations.dim()))
    weights = gradients.mean(dim=spatial, keepdim=True)
    return torch.relu((weights * activations).sum(dim=1))[0].detach().numpy()


@pytest.mark.parametrize("name", list(MODELS))
def test_gradcam_raw_map_matches_a_pytorch_gradcam(converted, name) -> None:
    """MATLAB's gradCAM on the converted network = PyTorch autograd Grad-CAM at the same module.

    The reduction layer is refcam's default, the last layer: the logits ``fc``/``head``
    for most models, the softmax for the DenseNet, which ends in ``nn.Softmax``;
    PyTorch differentiates the same output. Every label is compared; at least
    two give non-zero, different maps, so the comparison can fail.
    """
    model, x, net = converted[name]
    _, _, format, feature = MODELS[name]
    maps = []
    for label in range(net.output_shapes[net.layer_names[-1]][0]):
        result = refcam.gradcam(net, x.double().numpy(), label, format=format, feature_layer=feature)
        assert result.feature_layer == net.resolve(feature)
        assert result.reduction_layer == net.layer_names[-1]
        expected = torch_gradcam(model, x, feature, label)
        found = np.squeeze(result.raw_map)
        if np.abs(expected).max() == 0:          # every position negative before the ReLU
            assert np.abs(found).max() == 0, (name, label)
            continue
        assert relative_error(found, expected) <= CROSS["rtol"], (name, label)
        maps.append(found)
    assert len(maps) >= 2 and relative_error(maps[0], maps[1]) > 1e-3


def test_the_users_model_is_not_modified() -> None:
    model, x = build("resnet")
    model.layer2.train()
    model.layer2.eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    x_before = x.clone()
    refcam.from_torch(model, x)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[key], after[key]) and before[key].dtype == after[key].dtype for key in before)
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    assert not any(module.training for module in model.modules())
    assert not any(module._forward_hooks for module in model.modules())
    assert torch.equal(x, x_before) and x.dtype == torch.float32


def test_a_model_in_training_mode_is_refused() -> None:
    model, x = build("resnet")
    model.train()
    with pytest.raises(ModelConversionError, match=r"training mode .*model\.eval\(\)"):
        refcam.from_torch(model, x)
    model.eval()
    model.layer3[1].bn2.train()
    with pytest.raises(ModelConversionError, match=r"1 module\(s\): 'layer3.1.bn2'"):
        refcam.from_torch(model, x)


@pytest.mark.parametrize("bad, error, words", [
    (np.zeros((1, 3, 8, 8)), InputError, "must be a torch.Tensor"),
    ((torch.zeros(1, 3, 8, 8),), InputError, "must be a torch.Tensor"),
    (torch.zeros(3, 8), InputError, "has shape"),
    (torch.zeros(1, 3, 8, 8, dtype=torch.bool), InputDtypeError, "torch.bool"),
])
def test_unusable_example_inputs_are_refused(bad, error, words) -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU()).eval()
    with pytest.raises(error, match=words):
        refcam.from_torch(model, bad)


def test_a_non_module_and_a_model_with_two_outputs_are_refused() -> None:
    with pytest.raises(ModelConversionError, match="torch.nn.Module, not function"):
        refcam.from_torch(lambda x: x, torch.zeros(1, 3, 8, 8))

    class TwoOutputs(torch.nn.Module):
        def forward(self, x):
            return x.relu(), x.sigmoid()

    with pytest.raises(ModelConversionError, match="returns tuple, not one tensor"):
        refcam.from_torch(TwoOutputs().eval(), torch.zeros(1, 3, 8, 8))


def test_operations_refcam_cannot_import_are_listed_with_their_module_paths() -> None:
    class Cumulative(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 2, 3)

        def forward(self, x):
            return self.conv(x).cumsum(dim=1)

    with pytest.raises(UnsupportedOperationError, match="CumSum") as caught:
        refcam.from_torch(Cumulative().eval(), torch.zeros(1, 3, 8, 8))
    assert "'CumSum'" in str(caught.value) and "the ONNX export of Cumulative" in str(caught.value)
    assert "refcam-from-torch" not in str(caught.value)        # the temporary file is not named


def test_integer_and_float32_inputs_are_used_in_float64() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU()).float().eval()
    net = refcam.from_torch(model, torch.ones(2, 1, 6, 6, dtype=torch.int64), name="tiny")
    assert net.name == "tiny" and net.layer_names == ["input", "0", "1"]
    assert net.layer("0").weights.dtype == np.float64
    assert np.array_equal(net.layer("0").weights, model[0].weight.detach().double().numpy())


def test_aliases_survive_the_hdf5_round_trip_and_work_in_gradcam(converted, tmp_path) -> None:
    model, x, net = converted["resnet"]
    path = tmp_path / "resnet.h5"
    refcam.save(net, path)
    loaded = refcam.load(path)
    assert dict(loaded.aliases) == dict(net.aliases)
    first = refcam.gradcam(net, x.double().numpy(), 2, format="BCSS", feature_layer="layer3")
    second = refcam.gradcam(loaded, x.double().numpy(), 2, format="BCSS", feature_layer="layer3")
    assert second.feature_layer == "layer3.1.relu_1"
    np.testing.assert_array_equal(first.map, second.map)


def test_resnet_example_from_the_docs_runs_on_a_fresh_model() -> None:
    model = ResNetish().eval()
    net = refcam.from_torch(model, torch.randn(1, 3, 32, 32))
    assert refcam.gradcam(net, np.random.default_rng(0).normal(size=(1, 3, 32, 32)), 1, format="BCSS",
                          feature_layer="layer4").map.shape == (32, 32, 1)


class RoundedConstantsNet(torch.nn.Module):
    """Every module whose ONNX export rounds a float constant to float32, with statistics that make it show."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4, eps=1e-5)
        self.act = torch.nn.LeakyReLU(0.1)
        self.gate = torch.nn.Hardsigmoid()
        self.norm = torch.nn.LayerNorm(4, eps=1e-6)             # over channels, channels-last as in ConvNeXt
        with torch.no_grad():
            self.bn.running_var.copy_(torch.tensor([1e-4, 3e-5, 2e-4, 5e-5]))
            self.bn.running_mean.copy_(torch.tensor([0.1, -0.2, 0.05, 0.0]))

    def forward(self, x: Any) -> Any:
        y = self.act(self.bn(self.conv(x)))
        return self.norm((y * self.gate(y)).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def test_constants_onnx_rounds_to_float32_are_the_modules_own_values() -> None:
    """HardSigmoid's 1/6 (here fused into a hard swish), batch-norm and layer-norm eps, LeakyReLU's slope."""
    torch.manual_seed(3)
    model, x = RoundedConstantsNet().eval(), torch.randn(2, 3, 8, 8)
    net = refcam.from_torch(model, x)
    fields = {"Mul": ("alpha", 1 / 6), "bn": ("epsilon", 1e-5), "norm": ("epsilon", 1e-6), "act": ("scale", 0.1)}
    for name, (field, value) in fields.items():
        assert getattr(net.layer(name), field) == value, (name, getattr(net.layer(name), field))
        assert float(np.float32(value)) != value                      # the export's float32 value differs
    with torch.no_grad():
        expected = copy.deepcopy(model).double()(x.double()).numpy()
    assert relative_error(net.predict(x.double().numpy(), format="BCSS"), expected) <= CROSS["rtol"]
