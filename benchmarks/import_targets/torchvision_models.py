"""Measure refcam against PyTorch float64 on the torchvision architectures of the import targets.

Usage::

    python benchmarks/import_targets/torchvision_models.py [--models resnet18 ...] [--json PATH]

Needs torch, onnx, onnxscript and torchvision's model code (see README.md in this
folder for torchvision on a CPU-only torch). Nothing is downloaded: every network
has random weights (seed 0) and random batch-norm statistics, so no layer is an
identity and a wrong conversion shows.

For each architecture two routes are measured, both against the same model run by
PyTorch in float64 (``model.double()``) on the same input:

* ``from_torch``: ``refcam.from_torch(model, x)``. Forward: the largest absolute
  difference of the outputs over the largest absolute output. Grad-CAM: refcam's
  raw map (``refcam.gradcam(..., upsampling="none").raw_map``) against a PyTorch
  float64 Grad-CAM by hooks, at the same module: ``A`` its output, ``y`` the logit
  of the top class (summed over all pixels for the segmentation network),
  ``alpha_k = mean_S dy/dA_k``, ``map = relu(sum_k alpha_k A_k)``; the error is the
  largest difference over the largest map value. Target: both within 1e-10.
* ``onnx default``: ``torch.onnx.export(model, (x,), path)`` with torch's default
  flags on the float32 model (weights in ``path.data``, batch norm folded into the
  convolutions in float32), loaded by ``refcam.load``; forward error as above.
  Target: within 1e-5 (the file holds float32 weights; refcam computes in float64).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

FROM_TORCH_TARGET = 1e-10
ONNX_DEFAULT_TARGET = 1e-5


@dataclass(frozen=True)
class Target:
    """One architecture: how to build it, its input shape and the module whose output Grad-CAM explains."""

    name: str
    build: Callable[[], Any]
    input_shape: tuple[int, ...]
    feature: str
    segmentation: bool = False


def _models() -> Any:
    try:
        import torchvision.models
    except Exception as err:  # torchvision's import fails on a CPU-only torch: see README.md
        raise SystemExit(f"torchvision's models do not import ({type(err).__name__}: {err}); see "
                         "benchmarks/import_targets/README.md for a CPU-only torch.") from err
    return torchvision.models


def _fcn_resnet50() -> Any:
    """FCN-ResNet50 with the forward returning the ``"out"`` tensor (torchvision returns a dict)."""
    import torch.nn.functional as F
    from torch import nn
    from torchvision.models.segmentation import fcn_resnet50

    class FCN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            fcn = fcn_resnet50(weights=None, weights_backbone=None, num_classes=6)
            self.backbone, self.classifier = fcn.backbone, fcn.classifier

        def forward(self, x: Any) -> Any:
            features = self.backbone(x)["out"]
            return F.interpolate(self.classifier(features), size=x.shape[-2:], mode="bilinear",
                                 align_corners=False)

    return FCN()


def targets() -> list[Target]:
    """The issue's torchvision list, with inputs small enough for two cores."""
    m = _models()
    from torchvision.models.video import r3d_18
    image = (1, 3, 64, 64)
    return [
        Target("resnet18", lambda: m.resnet18(weights=None), image, "layer4"),
        Target("resnet50", lambda: m.resnet50(weights=None), image, "layer4"),
        Target("vgg11_bn", lambda: m.vgg11_bn(weights=None), (1, 3, 224, 224), "features"),
        Target("densenet121", lambda: m.densenet121(weights=None), image, "features"),
        Target("mobilenet_v2", lambda: m.mobilenet_v2(weights=None), image, "features"),
        Target("mobilenet_v3_small", lambda: m.mobilenet_v3_small(weights=None), image, "features"),
        Target("efficientnet_b0", lambda: m.efficientnet_b0(weights=None), image, "features"),
        Target("squeezenet1_1", lambda: m.squeezenet1_1(weights=None), image, "features"),
        Target("shufflenet_v2_x0_5", lambda: m.shufflenet_v2_x0_5(weights=None), image, "conv5"),
        Target("googlenet", lambda: m.googlenet(weights=None, init_weights=False), image, "inception5b"),
        Target("inception_v3", lambda: m.inception_v3(weights=None, init_weights=False), (1, 3, 139, 139),
               "Mixed_7c"),
        Target("regnet_y_400mf", lambda: m.regnet_y_400mf(weights=None), image, "trunk_output"),
        Target("convnext_tiny", lambda: m.convnext_tiny(weights=None), image, "features"),
        Target("fcn_resnet50", _fcn_resnet50, image, "backbone.layer4", segmentation=True),
        Target("r3d_18", lambda: r3d_18(weights=None), (1, 3, 8, 32, 32), "layer4"),
    ]


def randomize(model: Any, generator: Any) -> Any:
    """Random batch-norm statistics and affine parameters, in eval mode (a BN layer is then no identity)."""
    import torch
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            n = module.num_features
            with torch.no_grad():
                module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                module.weight.copy_(1.0 + 0.1 * torch.randn(n, generator=generator))
                module.bias.copy_(0.1 * torch.randn(n, generator=generator))
    return model.eval()


def torch_gradcam(model: Any, x: Any, feature: str, label: int, segmentation: bool) -> tuple[Any, Any]:
    """PyTorch output and raw Grad-CAM map at module ``feature`` for class ``label``, in the model's dtype.

    The feature map is made a leaf that requires grad, so only the layers after
    it are taped (whether or not the parameters require grad).
    """
    import torch
    captured = {}
    module = model.get_submodule(feature)
    def keep(mod: Any, args: Any, out: Any) -> Any:
        captured["A"] = out.detach().requires_grad_(True)
        return captured["A"].clone()  # a copy for the rest: DenseNet's in-place F.relu must not change A

    handle = module.register_forward_hook(keep)
    try:
        y = model(x)
    finally:
        handle.remove()
    activation = captured["A"]
    score = y[0, label].sum() if segmentation else y[0, label]
    (grad,) = torch.autograd.grad(score, activation)
    spatial = tuple(range(2, activation.ndim))
    weights = grad.mean(dim=spatial, keepdim=True)
    raw_map = torch.relu((weights * activation).sum(dim=1))[0]
    return y.detach().numpy(), raw_map.detach().numpy()


def relative(a: Any, b: Any) -> float:
    """``max |a - b| / max |b|`` (shapes must agree)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _refcam_output(net: Any, x: np.ndarray) -> np.ndarray:
    out = net.activations(x, [net.layer_names[-1]], format=_format(x.ndim))[net.layer_names[-1]]
    return np.asarray(out)


def _format(ndim: int) -> str:
    return "BC" + "S" * (ndim - 2)


def measure(target: Target, folder: str) -> dict[str, Any]:
    """Both routes for one architecture; every error is caught and reported in the row."""
    import torch
    import refcam
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = randomize(target.build(), generator)
    x32 = torch.rand(target.input_shape, generator=generator) * 2.0 - 1.0
    model64, x64 = randomize(target.build(), torch.Generator().manual_seed(0)), x32.double()
    model64.load_state_dict(model.state_dict())
    model64 = model64.double().eval()
    with torch.no_grad():
        logits = model64(x64)
    label = int(logits[0].flatten(1).sum(1).argmax()) if target.segmentation else int(logits[0].argmax())
    y_torch, map_torch = torch_gradcam(model64, x64, target.feature, label, target.segmentation)
    row: dict[str, Any] = {"model": target.name, "input": list(target.input_shape), "feature": target.feature,
                           "label": label, "map_shape": list(map_torch.shape),
                           "map_max": float(np.abs(map_torch).max())}
    x = x64.numpy()
    start = time.perf_counter()
    try:
        net = refcam.from_torch(model, x32)
        row["from_torch_forward"] = relative(_refcam_output(net, x), y_torch)
        reduction = (lambda y: y[..., label].sum()) if target.segmentation else None
        result = refcam.gradcam(net, x, None if target.segmentation else label, reduction=reduction,
                                feature_layer=target.feature, reduction_layer=net.layer_names[-1],
                                format=_format(x.ndim), upsampling="none")
        row["from_torch_map"] = relative(np.asarray(result.raw_map).reshape(map_torch.shape), map_torch)
    except Exception as err:  # a measurement: report, go on
        row["from_torch_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
    row["from_torch_seconds"] = time.perf_counter() - start
    path = os.path.join(folder, f"{target.name}.onnx")
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (x32,), path)  # torch's defaults: dynamo, external data, folding
        row["onnx_default_forward"] = relative(_refcam_output(refcam.load(path), x), y_torch)
    except Exception as err:
        row["onnx_default_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
    return row


def _cell(row: dict[str, Any], key: str, target: float) -> str:
    if f"{key.rsplit('_', 1)[0]}_error" in row and key not in row:
        return "refused"
    if key not in row:
        return "-"
    value = row[key]
    return f"{value:.1e}" + ("" if value <= target else " (missed)")


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of docs/import.md."""
    lines = ["| model | input | feature layer | from_torch forward | from_torch map | default ONNX export forward |",
             "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {'x'.join(map(str, row['input'][1:]))} | `{row['feature']}` | "
                     f"{_cell(row, 'from_torch_forward', FROM_TORCH_TARGET)} | "
                     f"{_cell(row, 'from_torch_map', FROM_TORCH_TARGET)} | "
                     f"{_cell(row, 'onnx_default_forward', ONNX_DEFAULT_TARGET)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="names of the architectures (default: all)")
    parser.add_argument("--json", help="write the rows to this JSON file")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(2)
    chosen = [t for t in targets() if not args.models or t.name in args.models]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for target in chosen:
            row = measure(target, folder)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
