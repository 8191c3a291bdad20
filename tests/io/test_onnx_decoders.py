"""Decoders and ConvNeXt exported by PyTorch, imported by refcam: forward and Grad-CAM against PyTorch in float64.

The models are the twins in ``fixtures/_onnx_decoder_nets.py`` (torchvision's
ConvNeXt block and layout, a U-Net up block, an FCN head, ``F.interpolate`` and
``nn.ConvTranspose`` forms). Each is exported into ``tmp_path`` by the
TorchScript exporter (default flags; ``training=PRESERVE, do_constant_folding=False``,
which keeps batch norm unfolded; opsets 9, 11 and 18 for some; a dynamic batch for FCN) and
by the default dynamo exporter, loaded with refcam and compared with the same
model in float64, run by PyTorch on the same float32 weights (and the float32 ``eps`` the files hold).

Tolerance on ``max |refcam - torch| / max |torch|``: ``CROSS["rtol"]`` where the
file holds the model's own numbers; ``F32["rtol"]`` where an exporter folded
batch norm into the convolutions in float32 (docs/import.md, "Float64 agreement")
or wrote exact GELU as Div by a float32 ``sqrt(2)``, Erf, Add, Mul (opset 18).
Needs torch and onnxscript (skipped without them).
"""
from __future__ import annotations

import copy
import importlib.util
import os
import warnings
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

import refcam  # noqa: E402
import refcam.errors  # noqa: E402
from refcam.io.onnx_import import load_onnx  # noqa: E402
from tests.tolerances import CROSS, F32  # noqa: E402

HAS_TORCH_EXPORT = all(importlib.util.find_spec(name) for name in ("torch", "onnxscript"))
pytestmark = [pytest.mark.crosscheck, pytest.mark.skipif(not HAS_TORCH_EXPORT, reason="needs torch and onnxscript")]
NETS_FILE = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "_onnx_decoder_nets.py")
FORMATS = {3: "BCT", 4: "BCSS", 5: "BCSSS"}
SEED = 2026_12
EXPORTS = ("torchscript", "torchscript-unfolded", "dynamo")
TORCHSCRIPT_ONLY = ("torchscript-opset11",) + tuple(e for e in EXPORTS if e != "dynamo")
MODELS = {   # name: (class, constructor arguments, input shape, exports besides EXPORTS; or all its exports)
    "interpolations_1d": ("Interpolations", (1,), (1, 3, 6), TORCHSCRIPT_ONLY),
    "interpolations_2d": ("Interpolations", (2,), (1, 3, 5, 4), ("torchscript-opset11",)),
    "interpolations_3d": ("Interpolations", (3,), (1, 2, 3, 4, 2), ()),
    "downsampling": ("Interpolations", (2, (5, 7)), (1, 3, 8, 8), ("torchscript-opset11",)),
    "transposed_1d": ("TransposedConvolutions", (1,), (1, 3, 7), ()),
    "transposed_2d": ("TransposedConvolutions", (2,), (1, 3, 5, 4), ()),
    "transposed_3d": ("TransposedConvolutions", (3,), (1, 3, 3, 2, 3), ()),
    "convnext_block": ("ConvNeXtBlock", (8,), (1, 8, 6, 5), ()),
    "convnext_block_gamma": ("ConvNeXtBlock", (8, True), (1, 8, 6, 5), ()),
    "convnext_tiny": ("ConvNeXtTiny", (), (1, 3, 32, 32), ("torchscript-opset18",)),
    "unet_transposed": ("UNetUp", ("transposed",), (1, 3, 8, 10), ()),
    "unet_transposed3": ("UNetUp", ("transposed3",), (1, 3, 8, 10), ()),
    "unet_bilinear": ("UNetUp", ("bilinear",), (1, 3, 8, 10), ()),
    "unet_nearest": ("UNetUp", ("nearest",), (1, 3, 8, 10), ("torchscript-opset9",)),
    "fcn": ("FCNHead", (), (1, 3, 16, 12), ("torchscript-dynamic-batch",)),
}
CASES = [(model, export) for model, (_, _, _, extra) in MODELS.items()
         for export in (extra if extra == TORCHSCRIPT_ONLY else EXPORTS + extra)]


def relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


@pytest.fixture(scope="module")
def nets(torch) -> Any:
    """``fixtures/_onnx_decoder_nets.py`` as a module (it needs torch)."""
    spec = importlib.util.spec_from_file_location("refcam_onnx_decoder_nets", NETS_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Exported:
    """Each model built once (seeded, float32, eval mode) with its input, and exported once per flavour."""

    def __init__(self, torch: Any, nets: Any, folder: Any) -> None:
        self.torch, self.nets, self.folder = torch, nets, folder
        self.models: dict[str, tuple[Any, Any]] = {}
        self.files: dict[tuple[str, str], str] = {}

    def model(self, name: str) -> tuple[Any, Any]:
        """(the float32 model, its float32 input)."""
        if name not in self.models:
            cls, arguments, shape, _ = MODELS[name]
            generator = self.torch.Generator().manual_seed(SEED)
            self.torch.manual_seed(SEED)
            model = getattr(self.nets, cls)(*arguments)
            self.nets.randomize_norms(model, generator)
            model = model.float().eval()
            x = self.torch.randn(shape, generator=generator, dtype=self.torch.float32)
            self.models[name] = (model, x)
        return self.models[name]

    def path(self, name: str, export: str) -> str:
        if (name, export) not in self.files:
            model, x = self.model(name)
            path = str(self.folder / f"{name}_{export}.onnx")
            torch = self.torch
            options: dict[str, Any] = {"dynamo": export == "dynamo"}
            if export == "torchscript-unfolded":
                options.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
            if export.startswith("torchscript-opset"):
                options.update(opset_version=int(export.removeprefix("torchscript-opset")))
            if export == "torchscript-dynamic-batch":
                options.update(input_names=["x"], dynamic_axes={"x": {0: "batch"}})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), path, **options)
            self.files[name, export] = path
        return self.files[name, export]

    def reference(self, name: str) -> tuple[Any, Any]:
        """(the model in float64 with the file's numbers, the input in float64): the same float32 weights, and
        every normalisation's ``eps`` rounded to float32 as ONNX attributes are (1e-5 is 9.99999974738e-06)."""
        model, x = self.model(name)
        model64 = copy.deepcopy(model).double()
        for module in model64.modules():
            if isinstance(getattr(module, "eps", None), float):
                module.eps = float(np.float32(module.eps))
        return model64, x.double()


@pytest.fixture(scope="module")
def exported(torch, nets, tmp_path_factory) -> Exported:
    return Exported(torch, nets, tmp_path_factory.mktemp("decoders"))


def folds_weights(exported: Exported, name: str, export: str) -> bool:
    """True where the file rounds the model's numbers to float32: the exporter folded a batch norm into a
    convolution, or wrote exact GELU as an Erf chain (opset < 20) whose ``sqrt(2)`` is a float32 constant."""
    model, _ = exported.model(name)
    nn = exported.torch.nn
    has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    has_gelu = any(isinstance(m, nn.GELU) for m in model.modules())
    return (has_batch_norm and export != "torchscript-unfolded") or (has_gelu and export == "torchscript-opset18")


@pytest.mark.parametrize("name, export", CASES)
def test_forward_matches_pytorch(name: str, export: str, exported: Exported, torch) -> None:
    path = exported.path(name, export)
    net = load_onnx(path)
    model64, x64 = exported.reference(name)
    if export == "torchscript-dynamic-batch":       # Shape answers batch 1; any batch runs
        x64 = torch.cat([x64, x64.flip(-1)])
    with torch.no_grad():
        expected = model64(x64).numpy()
    ours = net.predict(x64.numpy(), format=FORMATS[x64.ndim])
    assert ours.shape == expected.shape
    bound = F32["rtol"] if folds_weights(exported, name, export) else CROSS["rtol"]
    assert relative_error(ours, expected) <= bound


def test_dynamo_writes_1d_linear_interpolation_as_gathers(exported: Exported) -> None:
    """The dynamo exporter decomposes ``F.interpolate(mode="linear")`` of a (B, C, T) tensor into index
    arithmetic and GatherND (not a Resize); refcam refuses it, naming GatherND."""
    with pytest.raises(refcam.errors.UnsupportedOperationError, match=r"GatherND \(2 nodes\)"):
        load_onnx(exported.path("interpolations_1d", "dynamo"))


def test_the_exports_write_the_forms_refcam_maps(exported: Exported) -> None:
    """What the exporters wrote: Resize for interpolate (Upsample at opset 9), ConvTranspose, MatMul on the
    channels-last tensors of ConvNeXt; and the refcam layers they became."""
    def ops(name: str, export: str) -> list[str]:
        return [node.op_type for node in onnx.load(exported.path(name, export)).graph.node]

    assert "Upsample" in ops("unet_nearest", "torchscript-opset9")
    assert {"Resize", "Shape", "Slice", "Concat"} <= set(ops("fcn", "torchscript"))
    assert ops("transposed_2d", "dynamo").count("ConvTranspose") == 4
    assert ops("convnext_block", "dynamo").count("MatMul") == 2
    kinds = [layer.kind for layer in load_onnx(exported.path("convnext_block", "dynamo")).layers]
    assert kinds.count("convolution2d") == 2 and "layer_normalization" in kinds and "scaling" in kinds
    kinds = [layer.kind for layer in load_onnx(exported.path("unet_transposed", "dynamo")).layers]
    assert "transposed_convolution2d" in kinds
    kinds = [layer.kind for layer in load_onnx(exported.path("fcn", "torchscript")).layers]
    assert kinds[-1] == "resize"


# --- Grad-CAM -----------------------------------------------------------------------------------
def feature_node(path: str, name: str) -> str:
    """The ONNX node (refcam layer) computing the output of ``FEATURES[class]``: the backbone's or encoder's last
    Relu (FCN, U-Net: the second Relu of the graph), or what ConvNeXt's global pooling reads (stage 2's Add)."""
    nodes = onnx.load(path).graph.node
    if MODELS[name][0] == "ConvNeXtTiny":
        pooled = next(n for n in nodes if n.op_type in ("GlobalAveragePool", "ReduceMean")).input[0]
        return next(n for n in nodes if pooled in n.output).name
    return [n for n in nodes if n.op_type == "Relu"][1].name


def torch_gradcam(exported: Exported, name: str, label: int, mask: np.ndarray | None = None) -> np.ndarray:
    """Raw Grad-CAM map ``relu(sum_k mean(dy/dA_k) A_k)`` by autograd in float64; ``y`` is the output's class
    ``label`` summed over every position (over ``mask`` when given)."""
    torch = exported.torch
    model64, x64 = exported.reference(name)
    captured = {}
    feature = model64.get_submodule(exported.nets.FEATURES[MODELS[name][0]])
    handle = feature.register_forward_hook(lambda module, inputs, output: captured.update(A=output))
    y = model64(x64)[0, label]
    handle.remove()
    if mask is not None:
        y = y * torch.from_numpy(mask.astype(np.float64))
    activations = captured["A"]
    gradient = torch.autograd.grad(y.sum(), activations)[0]
    alpha = gradient.mean(dim=tuple(range(2, gradient.ndim)), keepdim=True)
    return torch.relu((alpha * activations).sum(dim=1))[0].detach().numpy()


GRADCAM_MODELS = ["fcn", "unet_transposed", "unet_transposed3", "unet_bilinear", "unet_nearest", "convnext_tiny"]


@pytest.mark.parametrize("export", EXPORTS)
@pytest.mark.parametrize("name", GRADCAM_MODELS)
def test_gradcam_matches_pytorch(name: str, export: str, exported: Exported) -> None:
    """Segmentation (B, K, H, W): the class score is summed over all pixels (refcam's label rule, G14) and by a
    reduction function; ConvNeXt: the logit."""
    path = exported.path(name, export)
    net = load_onnx(path)
    _, x64 = exported.reference(name)
    image = x64.numpy()[0]
    label = 1
    feature = feature_node(path, name)
    result = refcam.gradcam(net, image, label, feature_layer=feature, format="CSS", upsampling="none")
    expected = torch_gradcam(exported, name, label)
    assert expected.max() > 0.0
    bound = F32["rtol"] if folds_weights(exported, name, export) else CROSS["rtol"]
    assert relative_error(result.raw_map, expected) <= bound
    if name == "convnext_tiny":
        return
    by_function = refcam.gradcam(net, image, reduction=lambda y: y[:, :, label].sum(), feature_layer=feature,
                                 format="CSS", upsampling="none")
    np.testing.assert_allclose(by_function.raw_map, result.raw_map, rtol=CROSS["rtol"], atol=CROSS["atol"])


@pytest.mark.parametrize("name", ["fcn", "unet_bilinear"])
def test_gradcam_over_a_mask_matches_pytorch(name: str, exported: Exported) -> None:
    """MATLAB's segmentation recipe: the class channel summed over a pixel mask (refcam's ``mask=``)."""
    path = exported.path(name, "torchscript-unfolded")
    _, x64 = exported.reference(name)
    height, width = x64.shape[2:]
    mask = np.zeros((height, width), dtype=bool)
    mask[height // 4: height // 2, width // 3:] = True
    result = refcam.gradcam(load_onnx(path), x64.numpy()[0], 2, feature_layer=feature_node(path, name),
                            format="CSS", upsampling="none", mask=mask)
    expected = torch_gradcam(exported, name, 2, mask)
    assert expected.max() > 0.0
    assert relative_error(result.raw_map, expected) <= CROSS["rtol"]
