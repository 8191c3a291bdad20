"""Batched Grad-CAM on a GPU: refcam on CuPy against PyTorch CUDA eager (issue 7, target 6).

Usage (one prepared run on a machine with a CUDA GPU, CuPy and PyTorch)::

    python benchmarks/gpu.py [--batch 32] [--repeats 20] [--device gpu] [--json PATH]

``--device cpu`` runs the same script with NumPy and PyTorch on the CPU (small
batches), which is how it is checked on machines without a GPU.

For each dtype (float32, float64) it builds the ResNet-18-shaped benchmark
network (:mod:`networks`) in refcam and PyTorch with the same weights, moves
both to the device, and:

1. **guard**: in float64, refcam's raw maps and gradients for the batch must agree
   with PyTorch's to ``AGREEMENT_RTOL`` of their largest magnitude;
2. **times** one Grad-CAM call for the whole batch (one label: the first image's
   predicted class; the softmax as
   reduction layer, the last residual block as feature layer, no upsampling):
   refcam ``gradcam(..., device=..., keep_on_device=True)`` against PyTorch's
   forward with the feature map made a leaf and ``torch.autograd.grad``; the
   device is synchronised after every call; median of ``--repeats`` runs after
   ``--warmup`` runs;
3. prints ``refcam ms``, ``torch ms`` and their ratio, and writes a JSON.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from networks import SPECS, build_refcam, build_torch, torch  # noqa: E402

from refcam.backend import to_device, to_numpy  # noqa: E402
from refcam.cam.gradcam import gradcam  # noqa: E402

AGREEMENT_RTOL = 1e-9
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "gpu.json"


def synchronizer(device: str) -> Callable[[], None]:
    """A function that waits for the device's queued work (a no-op on the CPU)."""
    if device == "cpu":
        return lambda: None
    import cupy

    def wait() -> None:
        cupy.cuda.Device().synchronize()
        torch.cuda.synchronize()
    return wait


def median_ms(fn: Callable[[], Any], wait: Callable[[], None], warmup: int, repeats: int) -> float:
    """Median wall-clock milliseconds of ``fn()`` with the device synchronised after each call."""
    for _ in range(warmup):
        fn()
        wait()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        wait()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def refcam_call(net: Any, x: Any, spec: Any, label: int, dtype: str, device: str) -> Callable[[], Any]:
    """One batched Grad-CAM in refcam, results kept on the device."""
    return lambda: gradcam(net, x, label, feature_layer=spec.feature_layer, reduction_layer=spec.reduction_layer,
                           format="BCSS", upsampling="none", dtype=dtype, device=device, keep_on_device=True)


def torch_call(model: Any, x: Any, spec: Any, label: int) -> Callable[[], dict[str, Any]]:
    """The same work in PyTorch: forward with the feature map as a leaf, autograd.grad, map."""
    def run() -> dict[str, Any]:
        values = model.run(x, detach_at=spec.feature_layer)
        activations = values[spec.feature_layer]
        (gradients,) = torch.autograd.grad(values[spec.reduction_layer][:, label].sum(), activations)
        with torch.no_grad():
            weights = gradients.mean(dim=(2, 3))
            raw = torch.relu((weights[:, :, None, None] * activations).sum(dim=1))
        return {"gradients": gradients, "raw_map": raw}
    return run


def scaled_difference(found: np.ndarray, expected: np.ndarray) -> float:
    """``max |found - expected| / max |expected|``."""
    return float(np.abs(found - expected).max() / max(np.abs(expected).max(), np.finfo(float).tiny))


def run_dtype(spec: Any, x_host: np.ndarray, label: int, dtype: str, device: str, warmup: int,
              repeats: int) -> dict[str, Any]:
    """Guard (float64) and timings of one dtype."""
    on = "cuda" if device == "gpu" else "cpu"
    net = build_refcam(spec).to_device(device)
    model = build_torch(spec).to(getattr(torch, dtype)).to(on)
    x = to_device(x_host.astype(dtype), device)
    x_t = torch.from_numpy(x_host.astype(dtype)).to(on)
    ours, theirs = refcam_call(net, x, spec, label, dtype, device), torch_call(model, x_t, spec, label)
    row: dict[str, Any] = {"dtype": dtype, "batch": int(x_host.shape[0])}
    if dtype == "float64":
        result, expected = ours(), theirs()
        row["gradients_diff"] = scaled_difference(to_numpy(result.gradients[0]),
                                                  expected["gradients"].detach().cpu().numpy())
        raw = to_numpy(result.raw_map)                          # (h, w, B)
        row["raw_map_diff"] = scaled_difference(np.moveaxis(raw, -1, 0), expected["raw_map"].cpu().numpy())
        if max(row["gradients_diff"], row["raw_map_diff"]) > AGREEMENT_RTOL:
            row["error"] = "refcam and PyTorch disagree; not timed"
            return row
    wait = synchronizer(device)
    row["refcam_ms"] = median_ms(ours, wait, warmup, repeats)
    row["torch_ms"] = median_ms(theirs, wait, warmup, repeats)
    row["ratio"] = row["refcam_ms"] / row["torch_ms"]
    return row


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Batched Grad-CAM: refcam (CuPy) against PyTorch (CUDA).")
    parser.add_argument("--device", choices=("gpu", "cpu"), default="gpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if torch is None:
        print("PyTorch is not installed; nothing to compare with.")
        return 1
    spec = SPECS["resnet18"](seed=0)
    x_host = np.random.default_rng(1).random((args.batch,) + spec.random_input(1).shape[1:])
    label = int(np.argmax(build_refcam(spec).predict(x_host[:1], format="BCSS")[0]))  # the first image's class
    rows = [run_dtype(spec, x_host, label, dtype, args.device, args.warmup, args.repeats)
            for dtype in ("float32", "float64")]
    print(f"resnet18 Grad-CAM, batch {args.batch}, device {args.device}")
    print(f"{'dtype':<8} {'refcam ms':>10} {'torch ms':>10} {'ratio':>7}  guard (float64)")
    for row in rows:
        guard = (f"gradients {row['gradients_diff']:.1e}, raw map {row['raw_map_diff']:.1e}"
                 if "gradients_diff" in row else "")
        if "error" in row:
            print(f"{row['dtype']:<8} {row['error']}  {guard}")
            continue
        print(f"{row['dtype']:<8} {row['refcam_ms']:>10.2f} {row['torch_ms']:>10.2f} {row['ratio']:>7.2f}  {guard}")
    device_name = torch.cuda.get_device_name(0) if args.device == "gpu" else platform.processor()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"device": device_name, "torch": torch.__version__,
                                     "numpy": np.__version__, "rows": rows}, indent=2))
    print(f"wrote {args.json}")
    return 0 if all("error" not in row for row in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
