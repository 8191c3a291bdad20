"""The architecture zoo: torchvision models through ``refcam.from_torch``, Grad-CAM timed against PyTorch.

Usage (torchvision's model code beside the CPU-only torch: benchmarks/import_targets/README.md)::

    PYTHONPATH=torchvision-cpu python benchmarks/zoo.py [--size 224] [--repeats 5] [--only resnet50 ...]

For each architecture of ``benchmarks/import_targets/torchvision_models.py``
(random weights, random batch-norm statistics, the same feature module; the
classifiers and the video network, not the segmentation one), at a
``size x size`` image (inception_v3 at least 139, the video r3d_18 at its own
8 x 32 x 32), in float32 and float64 with 2 threads each:

* guard: refcam's float64 raw map within ``AGREEMENT`` of PyTorch's (else the
  row is not timed);
* refcam: ``refcam.gradcam(net, x, label, feature_layer=..., reduction_layer=<last>,
  upsampling="none")`` (the logit of the top class);
* PyTorch: parameters do not require grad, so only what follows the feature
  map is taped (as :mod:`run`'s PyTorch side and refcam's head-only tape); a
  forward hook keeps the feature map, ``torch.autograd.grad`` of the logit to it,
  weights, weighted sum, ReLU (the work refcam does);
* the GEMM limit of the row (:mod:`gemm_limit`) and refcam's distance to it.

Medians of ``--repeats`` calls after one warm-up, each side in its own block.
No time is asserted anywhere. Writes ``benchmarks/results/zoo.json``.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import json
import os
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import gemm_limit  # noqa: E402
from run import THREADS, timings_ms  # noqa: E402

AGREEMENT = 1e-9
DTYPES = ("float32", "float64")
DEFAULT_JSON = HERE / "results" / "zoo.json"


def torchvision_targets() -> Any:
    """The module ``import_targets/torchvision_models.py`` (architectures, batch-norm randomisation)."""
    spec = importlib.util.spec_from_file_location("refcam_torchvision_targets",
                                                  HERE / "import_targets" / "torchvision_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def input_shape(target: Any, size: int) -> tuple[int, ...]:
    """The image size asked for (at least the architecture's own smallest), the video shape unchanged."""
    if len(target.input_shape) != 4:
        return target.input_shape
    side = max(size, target.input_shape[2])
    return (1, 3, side, side)


def torch_gradcam(module: Any, model: Any, x: Any, feature: str, label: int) -> Callable[[], np.ndarray]:
    """PyTorch's Grad-CAM to the feature map only (``torchvision_models.torch_gradcam``): its raw map."""
    return lambda: module.torch_gradcam(model, x, feature, label, False)[1]


def refcam_gradcam(net: Any, x: np.ndarray, feature: str, label: int, dtype: str) -> Callable[[], np.ndarray]:
    """refcam's Grad-CAM of the logit at the same feature layer, no upsampling."""
    import refcam
    fmt = "BC" + "S" * (x.ndim - 2)
    last = net.layer_names[-1]
    return lambda: np.asarray(refcam.gradcam(net, x, label, feature_layer=feature, reduction_layer=last,
                                             format=fmt, upsampling="none", dtype=dtype).raw_map)


def build(module: Any, target: Any, shape: tuple[int, ...]) -> tuple[Any, Any, np.ndarray, int]:
    """The float64 model, its refcam conversion, the input and the top class."""
    import torch
    import refcam
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = module.randomize(target.build(), generator).double().eval().requires_grad_(False)
    x = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2.0 - 1.0)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        net = refcam.from_torch(model, x)
    with torch.no_grad():
        label = int(model(x)[0].argmax())
    return model, net, x.numpy(), label


def measure(module: Any, target: Any, size: int, warmup: int, repeats: int,
            throughput: dict[str, float]) -> list[dict[str, Any]]:
    """The float32 and float64 rows of one architecture (or one row saying why it was not timed)."""
    import torch
    shape = input_shape(target, size)
    try:
        model, net, x, label = build(module, target, shape)
    except Exception as err:  # a measurement: report and go on
        return [{"model": target.name, "input": list(shape), "error": f"{type(err).__name__}: {err}"[:300]}]
    expected = torch_gradcam(module, model, torch.from_numpy(x), target.feature, label)()
    found = refcam_gradcam(net, x, target.feature, label, "float64")().reshape(expected.shape)
    agreement = float(np.abs(found - expected).max() / np.abs(expected).max())
    flops = gemm_limit.gradcam_flops(net, tuple(x.shape[1:]), 1, target.feature, net.layer_names[-1])
    rows = []
    for dtype in DTYPES:
        row: dict[str, Any] = {"model": target.name, "input": list(shape), "feature": target.feature,
                               "dtype": dtype, "float64_map_agreement": agreement, "gemm_gflop": flops / 1e9,
                               "gemm_limit_ms": gemm_limit.limit_ms(flops, throughput[dtype])}
        if agreement > AGREEMENT:
            row["error"] = f"refcam and PyTorch disagree ({agreement:.1e} > {AGREEMENT:g}): not timed"
            rows.append(row)
            continue
        torch_dtype = getattr(torch, dtype)
        torch_side = torch_gradcam(module, model.to(torch_dtype), torch.from_numpy(x).to(torch_dtype),
                                   target.feature, label)
        row["torch_ms"] = statistics.median(timings_ms(torch_side, warmup, repeats))
        row["refcam_ms"] = statistics.median(timings_ms(refcam_gradcam(net, x, target.feature, label, dtype),
                                                        warmup, repeats))
        row["ratio"] = row["refcam_ms"] / row["torch_ms"]
        row["limit_ratio"] = row["refcam_ms"] / row["gemm_limit_ms"]
        model = model.double()
        rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    """The markdown table of docs/performance.md."""
    lines = ["| model | input | dtype | GEMM GFLOP | limit ms | refcam ms | torch ms | refcam/torch | refcam/limit |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        shape = "x".join(map(str, row["input"][2:]))
        if "refcam_ms" not in row:
            lines.append(f"| {row['model']} | {shape} | {row.get('dtype', '-')} | | | | | {row['error']} | |")
            continue
        lines.append(f"| {row['model']} | {shape} | {row['dtype']} | {row['gemm_gflop']:.2f} | "
                     f"{row['gemm_limit_ms']:.1f} | {row['refcam_ms']:.1f} | {row['torch_ms']:.1f} | "
                     f"{row['ratio']:.2f} | {row['limit_ratio']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224, help="image height and width (default 224)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--only", nargs="*", help="architecture names (default: all)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    args = parser.parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    module = torchvision_targets()
    torch.set_num_threads(THREADS)
    kernel_warning = gemm_limit.kernel_override_warning(os.environ)
    if kernel_warning:
        print(kernel_warning)
    rows = []
    with threadpool_limits(limits=THREADS):
        throughput = {dtype: gemm_limit.gemm_throughput(dtype) for dtype in DTYPES}
        for target in module.targets():
            if (args.only and target.name not in args.only) or target.segmentation:
                continue      # fcn_resnet50: a per-pixel score, timed in the segmentation tests instead
            for row in measure(module, target, args.size, args.warmup, args.repeats, throughput):
                print(json.dumps(row), flush=True)
                rows.append(row)
    print(table(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"size": args.size, "threads": THREADS, "repeats": args.repeats,
                                     "torch": torch.__version__,
                                     "gemm_gflops": {d: v / 1e9 for d, v in throughput.items()},
                                     "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
