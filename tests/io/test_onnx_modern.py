"""ONNX import of modern CNN blocks, exported here by both PyTorch exporters, against PyTorch in float64.

The blocks (``fixtures/_onnx_modern_nets.py``): MobileNet-v3 and EfficientNet
squeeze-and-excitation (Hardswish / Hardsigmoid, SiLU / Sigmoid), GELU exact and
tanh, ShuffleNet-v2 units (chunk and stride-2 concat, channel shuffle), split /
shuffle / slice, Conv1d + AdaptiveAvgPool1d, CBAM spatial attention. Each is
exported into ``tmp_path`` by ``torch.onnx.export(dynamo=False,
training=PRESERVE, do_constant_folding=False)`` (weights as the module has them)
and by the dynamo exporter (batch norm folded into float32 convolution weights),
at opset 18 and, for GELU, 20 (a ``Gelu`` node). Forward and raw Grad-CAM maps,
at the default feature layer and at an early one (so the gradient runs through
the new layers), are compared with the module run by PyTorch in float64.

Bounds, ``max |refcam - torch| / max |torch|``: unfolded files ``CROSS``
(1e-12; the float64 twin uses batch norm's epsilon as the file holds it, in
float32) unless the file holds float32 constants the module has exactly
(``FLOAT32_CONSTANTS``, float32's epsilon: HardSigmoid's alpha, GELU's chain
before opset 20); folded files ``F32`` (1e-5, the bound of the committed
fixtures). Needs torch and onnxscript (skipped without them).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import refcam
from refcam.cam.gradcam import gradcam
from tests.tolerances import CROSS, F32, FLOAT32_CONSTANTS

onnx = pytest.importorskip("onnx")
HAS_TORCH_EXPORT = all(importlib.util.find_spec(name) for name in ("torch", "onnxscript"))
pytestmark = pytest.mark.skipif(not HAS_TORCH_EXPORT, reason="needs torch and onnxscript (torch.onnx.export)")
NETS_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "_onnx_modern_nets.py")
FORMATS = {3: "BCT", 4: "BCSS"}


@dataclass(frozen=True)
class Case:
    """A block, its input, the module the default feature layer computes, an early module, float32 constants."""

    name: str
    cls: str
    input_shape: tuple[int, ...]
    feature: str
    early: str
    float32_constants: bool = False
    opsets: tuple[int, ...] = (18,)


CASES = [
    Case("mobilenet_v3", "MobileNetV3Block", (1, 3, 16, 16), "head_act", "stem_act", float32_constants=True),
    Case("efficientnet", "EfficientNetBlock", (1, 3, 16, 16), "head_act", "stem_act"),
    Case("gelu", "GELUBlock", (1, 3, 8, 8), "relu", "gelu1", float32_constants=True, opsets=(18, 20)),
    Case("shufflenet_v2", "ShuffleNetV2Block", (1, 3, 12, 12), "conv5_act", "stem_act"),
    Case("split_shuffle", "SplitShuffle", (1, 3, 8, 8), "relu", "stem_act"),
    Case("conv1d_pooled", "Conv1dPooled", (1, 4, 20), "relu2", "relu1"),
    Case("cbam", "CBAMBlock", (1, 3, 10, 10), "relu2", "relu1"),
]
EXPORTS = [(case, exporter, opset) for case in CASES for opset in case.opsets
           for exporter in ("torchscript", "dynamo")]


def nets_module() -> Any:
    spec = importlib.util.spec_from_file_location("_onnx_modern_nets", NETS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def float32_default() -> Any:
    """PyTorch's default dtype float32 inside (the session's ``torch`` fixture sets float64)."""
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def build(case: Case) -> tuple[Any, Any, Any]:
    """The float32 module (random batch-norm statistics), its float64 twin and a float32 input."""
    with float32_default():
        return _build(case)


def _build(case: Case) -> tuple[Any, Any, Any]:
    import torch

    generator = torch.Generator().manual_seed(7)
    torch.manual_seed(7)
    model = getattr(nets_module(), case.cls)()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.3)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.2)
    model.eval()
    twin = getattr(nets_module(), case.cls)()
    twin.load_state_dict(model.state_dict())
    for module in twin.modules():          # the file's epsilon is an ONNX float attribute: float32
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eps = float(np.float32(module.eps))
    return model, twin.double().eval(), torch.randn(case.input_shape, generator=generator)


def export(model: Any, x: Any, path: str, exporter: str, opset: int) -> None:
    import torch

    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), float32_default():
        warnings.simplefilter("ignore")
        if exporter == "torchscript":
            torch.onnx.export(model, (x,), path, dynamo=False, opset_version=opset,
                              training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
        else:
            torch.onnx.export(model, (x,), dynamo=True, opset_version=opset, verbose=False).save(path)


def torch_gradcam(model: Any, x: Any, feature: str, label: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Output, feature activations and raw map ``relu(sum_k mean_S(dy/dA_k) A_k)`` by autograd in float64."""
    import torch

    captured: dict[str, Any] = {}
    handle = getattr(model, feature).register_forward_hook(lambda m, i, o: captured.setdefault("A", o))
    y = model(x)
    handle.remove()
    activations = captured["A"]
    gradient = torch.autograd.grad(y[0, label], activations)[0]
    alpha = gradient.mean(dim=tuple(range(2, gradient.ndim)), keepdim=True)
    raw_map = torch.relu((alpha * activations).sum(dim=1))[0]
    return y.detach().numpy(), activations.detach().numpy(), raw_map.detach().numpy()


def relative_error(candidate: np.ndarray, golden: np.ndarray) -> float:
    return float(np.abs(np.asarray(candidate) - golden).max() / np.abs(golden).max())


def layer_computing(net: Any, x: np.ndarray, activations: np.ndarray, rtol: float) -> str:
    """The last layer whose output is ``activations`` (a module's output in PyTorch) within ``rtol``."""
    names = net.layer_names[1:]
    outputs = net.activations(x, names, format=FORMATS[x.ndim])
    matches = [name for name in names if outputs[name].shape == activations.shape
               and relative_error(outputs[name], activations) <= rtol]
    assert matches, "no layer computes the module's output"
    return matches[-1]


@pytest.fixture(scope="module", params=EXPORTS, ids=lambda e: f"{e[0].name}-{e[1]}-opset{e[2]}")
def exported(request, tmp_path_factory) -> dict[str, Any]:
    case, exporter, opset = request.param
    model, twin, x32 = build(case)
    path = str(tmp_path_factory.mktemp("modern") / f"{case.name}_{exporter}_{opset}.onnx")
    export(model, x32, path, exporter, opset)
    folded = exporter == "dynamo"
    bound = F32["rtol"] if folded else (FLOAT32_CONSTANTS if case.float32_constants else CROSS["rtol"])
    return {"case": case, "exporter": exporter, "opset": opset, "net": refcam.load(path), "twin": twin,
            "x": x32.double(), "bound": bound, "path": path}


def test_forward_matches_pytorch_float64(exported) -> None:
    import torch

    net, x = exported["net"], exported["x"]
    with torch.no_grad():
        expected = exported["twin"](x).numpy()
    scores = net.predict(x.numpy(), format=FORMATS[x.ndim])
    assert scores.shape == expected.shape
    assert relative_error(scores, expected) <= exported["bound"]


@pytest.mark.parametrize("which", ["feature", "early"])
def test_gradcam_raw_map_matches_pytorch(exported, which: str) -> None:
    """At the default feature layer (refcam's choice must compute the case's feature module) and at an early
    module, whose gradient runs back through the squeeze-excitation, shuffle, slice or reduce layers."""
    case, net, x = exported["case"], exported["net"], exported["x"]
    module = getattr(case, which)
    for label in range(1, 4):              # the first class whose map is not zero everywhere
        _, activations, expected_map = torch_gradcam(exported["twin"], x, module, label)
        if expected_map.max() > 0.0:
            break
    assert expected_map.max() > 0.0
    feature_layer = layer_computing(net, x.numpy(), activations, exported["bound"])
    result = gradcam(net, x.numpy(), label, format=FORMATS[x.ndim], upsampling="none",
                     feature_layer=None if which == "feature" else feature_layer)
    assert result.feature_layer == feature_layer
    raw_map = np.asarray(result.raw_map).reshape(expected_map.shape)
    assert relative_error(raw_map, expected_map) <= exported["bound"]


LAYER_KINDS = {   # layer kinds each block must import as (both exporters)
    "mobilenet_v3": {"hard_swish", "hard_sigmoid", "multiplication"},
    "efficientnet": {"swish", "sigmoid", "multiplication"},
    "gelu": {"erf", "multiplication", "tanh"},
    "shufflenet_v2": {"channel_slice", "channel_shuffle", "depth_concatenation"},
    "split_shuffle": {"channel_slice", "channel_shuffle"},
    "conv1d_pooled": {"global_average_pooling1d"},
    "cbam": {"reduce", "multiplication", "sigmoid"},
}


def test_blocks_become_the_new_layers(exported) -> None:
    case, net = exported["case"], exported["net"]
    kinds = [layer.kind for layer in net.layers]
    expected = {"gelu"} if case.name == "gelu" and exported["opset"] >= 20 else LAYER_KINDS[case.name]
    assert expected <= set(kinds)
    if case.name == "efficientnet":
        assert kinds.count("swish") == 5 and kinds.count("sigmoid") == 1     # SiLU fused, the SE gate not
    if case.name == "cbam":
        assert sorted(layer.operation for layer in net.layers if layer.kind == "reduce") == ["max", "mean"]
    if case.name == "shufflenet_v2":
        assert all(layer.groups == 2 for layer in net.layers if layer.kind == "channel_shuffle")


def test_default_export_with_external_data_loads(tmp_path) -> None:
    """``torch.onnx.export(model, (x,), path)`` with torch's defaults (dynamo, opset 20, weights in path.data)."""
    import torch

    case = CASES[0]
    model, twin, x32 = build(case)
    path = tmp_path / "default.onnx"
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), float32_default():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x32,), str(path))
    assert (tmp_path / "default.onnx.data").is_file()
    with torch.no_grad():
        expected = twin(x32.double()).numpy()
    scores = refcam.load(path).predict(x32.double().numpy(), format="BCSS")
    assert relative_error(scores, expected) <= F32["rtol"]
