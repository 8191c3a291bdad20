"""End to end: refcam's Grad-CAM call against what a user would run instead, on one ResNet-18 and one input.

Usage (torchvision's model code beside the CPU-only torch, grad-cam 1.5.7 and captum 0.9.0 installed with
``--no-deps``: benchmarks/import_targets/README.md and fixtures/make_method_fixtures.py)::

    PYTHONPATH=torchvision-cpu python benchmarks/end_to_end.py [--size 224] [--repeats 10]

torchvision's ``resnet18`` architecture with random weights (``torch.manual_seed(0)``),
float32, 2 threads, batch 1, the logit of class ``--label`` at ``layer4``, the
map upsampled to the input size. Each side is called as its documentation says:

* refcam: ``refcam.gradcam(net, x, label, feature_layer="layer4", reduction_layer="fc",
  dtype="float32")`` on ``refcam.from_torch(model, x)`` (MATLAB's bicubic resize);
* pytorch-grad-cam: ``GradCAM(model, target_layers=[model.layer4])(input_tensor=x,
  targets=[ClassifierOutputTarget(label)])`` (its own bilinear resize and min-max scaling);
* Captum: ``LayerGradCam(model, model.layer4).attribute(x, target=label, relu_attributions=True)``, then
  ``LayerAttribution.interpolate(..., (size, size), "bilinear")``.

The final maps are compared after min-max scaling (pytorch-grad-cam returns only
its scaled map): they differ by the resize (bicubic against bilinear), not by
Grad-CAM (the 7 x 7 maps agree to float32 rounding, tests/conformance). Medians of
``--repeats`` calls after ``--warmup``, each side in its own block; no time is asserted.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import THREADS, timings_ms  # noqa: E402


def sides(model: Any, net: Any, x: np.ndarray, label: int) -> dict[str, Callable[[], np.ndarray]]:
    """One call of each implementation, returning its final map (H, W)."""
    import torch
    import refcam
    from captum.attr import LayerAttribution, LayerGradCam
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x_t = torch.from_numpy(x.astype(np.float32))
    size = x.shape[2:]
    captum_cam = LayerGradCam(model, model.layer4)
    peer = GradCAM(model=model, target_layers=[model.layer4])

    def captum_map() -> np.ndarray:
        attribution = captum_cam.attribute(x_t, target=label, relu_attributions=True)
        return LayerAttribution.interpolate(attribution, size, "bilinear")[0, 0].detach().numpy()

    def peer_map() -> np.ndarray:
        return peer(input_tensor=x_t, targets=[ClassifierOutputTarget(label)])[0]

    def refcam_map() -> np.ndarray:
        return np.asarray(refcam.gradcam(net, x, label, feature_layer="layer4", reduction_layer="fc",
                                         format="BCSS", dtype="float32").map)[..., 0]    # (H, W, B) -> (H, W)

    return {"refcam": refcam_map, "pytorch-grad-cam": peer_map, "captum": captum_map}


def scaled(values: np.ndarray) -> np.ndarray:
    """Min-max scaled to [0, 1] (pytorch-grad-cam's presentation)."""
    values = np.asarray(values, dtype=np.float64)
    return (values - values.min()) / max(values.max() - values.min(), 1e-300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--label", type=int, default=1)
    parser.add_argument("--json", type=Path, default=Path(__file__).resolve().parent / "results" / "end_to_end.json")
    args = parser.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits
    from torchvision.models import resnet18

    import refcam
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    model = resnet18(weights=None).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, args.size, args.size)).astype(np.float32)
    net = refcam.from_torch(model, torch.from_numpy(x))
    with threadpool_limits(limits=THREADS):
        calls = sides(model, net, x, args.label)
        maps = {name: call() for name, call in calls.items()}
        rows: dict[str, Any] = {}
        for name, call in calls.items():
            times = timings_ms(call, args.warmup, args.repeats)
            rows[name] = {"median_ms": statistics.median(times), "min_ms": min(times),
                          "map_shape": list(maps[name].shape),
                          "scaled_map_max_diff_vs_refcam": float(np.abs(scaled(maps[name])
                                                                        - scaled(maps["refcam"])).max())}
    for name, row in rows.items():
        print(f"{name:17s} {row['median_ms']:7.1f} ms (min {row['min_ms']:.1f}); refcam/{name} "
              f"{rows['refcam']['median_ms'] / row['median_ms']:.2f}; scaled map vs refcam's: max diff "
              f"{row['scaled_map_max_diff_vs_refcam']:.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"size": args.size, "threads": THREADS, "repeats": args.repeats,
                                     "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
