"""Time refcam against PyTorch on CPU: network forward, and optionally Grad-CAM.

Usage::

    python benchmarks/run.py [--quick] [--json PATH] [--networks resnet18 small3d]

What it does, per network (see :mod:`benchmarks.networks`):

1. builds the network in refcam and in PyTorch with the same seeded float64 weights;
2. **correctness guard**: runs both in float64 on the same input and checks the
   softmax outputs agree elementwise to ``AGREEMENT_RTOL``; prints the maximum
   relative difference, and skips that network's timings when they disagree;
3. times, in float32 and float64, refcam ``net.predict(x, format="BCSS...", dtype=...)``
   against the PyTorch module's eval forward under ``torch.no_grad()``: the median
   of ``repeats`` wall-clock runs (``time.perf_counter``) after ``warmup`` runs, each
   side in its own block (see :func:`timings_ms`); the JSON also keeps the
   minimum, less sensitive to other processes on a shared machine;
4. when ``refcam.cam.gradcam.gradcam`` is importable, times Grad-CAM for one label
   (the top class) with the softmax as reduction layer and the last residual
   block (last stage) as feature layer, ``upsampling="none"``, against PyTorch
   doing the same (forward with the feature map made a leaf, ``autograd.grad`` of
   the class probability w.r.t. it, channel weights = spatial mean of the
   gradient, ReLU of the weighted sum); gradients and raw maps are checked to agree first;
5. measures refcam's peak memory with ``tracemalloc`` in a separate untimed run.
   NumPy reports its array-data allocations to tracemalloc, so the peak counts
   NumPy arrays and Python objects allocated during the call (not BLAS scratch
   buffers, not memory held before the call, such as the weights).

BLAS and PyTorch are limited to 2 threads (``threadpoolctl`` and
``torch.set_num_threads``). The JSON (default ``benchmarks/results/latest.json``)
records the machine (platform, CPU model, core count, NumPy/PyTorch versions,
the BLAS libraries threadpoolctl sees, ``OPENBLAS_CORETYPE``) and every number.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from networks import SPECS, BenchmarkNetwork, build_refcam, build_torch, torch  # noqa: E402

THREADS = 2
LOAD_WARNING = 0.5  # 1-minute load average above which the run starts with a warning
DISTURBED_SPREAD = 1.5  # a row whose median exceeds this times its minimum was disturbed by other work
AGREEMENT_RTOL = 1e-9  # float64 refcam vs PyTorch, whole network (rounding accumulates over ~70 ops)
DTYPES = ("float32", "float64")
INPUT_SEED = 1
WEIGHT_SEED = 0
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


# --- measurement ---------------------------------------------------------------------------
def timings_ms(fn: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    """Wall-clock times of ``repeats`` calls of ``fn()`` in milliseconds, after ``warmup`` untimed calls.

    Each side is timed in its own block. Alternating refcam and PyTorch call by
    call is unfair on 2 cores: OpenBLAS's and OpenMP's worker threads keep
    spinning for a while after a call and compete with the other library's
    threads (measured here: PyTorch's ResNet-18 float32 forward 25 ms alone,
    55 ms when alternated with refcam's).
    """
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return times


def peak_traced_mib(fn: Callable[[], Any]) -> float:
    """Peak memory traced by ``tracemalloc`` while ``fn()`` runs, in MiB (see the module docstring)."""
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2 ** 20


def max_elementwise_relative_difference(found: np.ndarray, expected: np.ndarray) -> float:
    """``max |found - expected| / |expected|`` over elements with ``expected != 0`` (inf if a zero differs)."""
    diff = np.abs(found - expected)
    scale = np.abs(expected)
    if np.any(diff[scale == 0] > 0):
        return float("inf")
    nonzero = scale > 0
    return float(np.max(diff[nonzero] / scale[nonzero])) if nonzero.any() else 0.0


def max_scaled_difference(found: np.ndarray, expected: np.ndarray) -> float:
    """``max |found - expected| / max |expected|``: for arrays with exact zeros (gradients, maps)."""
    return float(np.max(np.abs(found - expected)) / np.max(np.abs(expected)))


# --- the two sides ------------------------------------------------------------------------
def caller_format(x: np.ndarray) -> str:
    """refcam format string of an internal (B, C, *spatial) array: ``BCSS`` or ``BCSSS``."""
    return "BC" + "S" * (x.ndim - 2)


def refcam_forward(net: Any, x: np.ndarray, dtype: str) -> Callable[[], np.ndarray]:
    """``net.predict`` on ``x`` (internal layout, so the format is ``BCSS``/``BCSSS``) in ``dtype``."""
    fmt = caller_format(x)
    return lambda: net.predict(x, format=fmt, dtype=dtype)


def in_dtype(model: Any, x: np.ndarray, dtype: str) -> tuple[Any, Any]:
    """A copy of ``model`` and the input as a tensor, both in ``dtype`` (``Module.to`` works in place)."""
    torch_dtype = getattr(torch, dtype)
    return copy.deepcopy(model).to(torch_dtype), torch.from_numpy(x).to(torch_dtype)


def torch_forward(model: Any, x: np.ndarray, dtype: str) -> Callable[[], np.ndarray]:
    """The module's eval forward on ``x`` in ``dtype`` under ``torch.no_grad()``."""
    model, x_t = in_dtype(model, x, dtype)

    def run() -> np.ndarray:
        with torch.no_grad():
            return model(x_t).numpy()
    return run


def gradcam_function() -> Callable[..., Any] | None:
    """refcam's ``gradcam`` when it imports, else None (Grad-CAM timing is optional)."""
    try:
        from refcam.cam.gradcam import gradcam
    except ImportError:
        return None
    return gradcam


def refcam_gradcam(gradcam: Callable[..., Any], net: Any, spec: BenchmarkNetwork, x: np.ndarray,
                   label: int, dtype: str) -> Callable[[], Any]:
    """refcam's Grad-CAM of ``label`` at the benchmark's feature and reduction layers, no upsampling."""
    fmt = caller_format(x)
    return lambda: gradcam(net, x, label, feature_layer=spec.feature_layer,
                           reduction_layer=spec.reduction_layer, format=fmt, upsampling="none",
                           dtype=dtype)


def torch_gradcam(model: Any, spec: BenchmarkNetwork, x: np.ndarray, label: int,
                  dtype: str) -> Callable[[], dict[str, np.ndarray]]:
    """The PyTorch equivalent of ``refcam_gradcam``: gradient of ``prob[label]`` w.r.t. the feature map."""
    model, x_t = in_dtype(model, x, dtype)

    def run() -> dict[str, np.ndarray]:
        values = model.run(x_t, detach_at=spec.feature_layer)
        activations = values[spec.feature_layer]                               # (B, C, *S)
        score = values[spec.reduction_layer][:, label].sum()
        (gradients,) = torch.autograd.grad(score, activations)
        with torch.no_grad():
            spatial = tuple(range(2, gradients.dim()))
            weights = gradients.mean(dim=spatial)                              # (B, C)
            weighted = weights.reshape(weights.shape + (1,) * len(spatial)) * activations
            raw_map = torch.relu(weighted.sum(dim=1))                          # (B, *S)
        return {"gradients": gradients.numpy(), "raw_map": raw_map.numpy()}
    return run


# --- one network -----------------------------------------------------------------------------
def check_forward(net: Any, model: Any, x: np.ndarray) -> dict[str, Any]:
    """float64 guard: refcam's and PyTorch's outputs, max relative difference, pass/fail.

    The float32 difference is recorded for information only (it is not checked).
    """
    found = refcam_forward(net, x, "float64")()
    expected = torch_forward(model, x, "float64")()
    difference = max_elementwise_relative_difference(found, expected)
    float32_difference = max_elementwise_relative_difference(
        refcam_forward(net, x, "float32")().astype(np.float64), expected)
    return {"max_relative_difference": difference, "rtol": AGREEMENT_RTOL,
            "passed": bool(difference <= AGREEMENT_RTOL), "top_class": int(np.argmax(expected[0])),
            "float32_refcam_vs_float64_torch": float32_difference}


def check_gradcam(result: Any, expected: dict[str, np.ndarray]) -> dict[str, Any]:
    """float64 guard on Grad-CAM: gradients and raw maps, refcam against PyTorch.

    refcam's gradients are ``(K=1, B, C, *S)``, its raw map is in MATLAB order
    ``(*S, B)`` for a ``BCSS...`` input; PyTorch's are ``(B, C, *S)`` and ``(B, *S)``.
    """
    gradient_difference = max_scaled_difference(np.asarray(result.gradients)[0], expected["gradients"])
    map_difference = max_scaled_difference(np.moveaxis(np.asarray(result.raw_map), -1, 0),  # (B, *S)
                                           expected["raw_map"])
    difference = max(gradient_difference, map_difference)
    return {"gradient_max_scaled_difference": gradient_difference,
            "raw_map_max_scaled_difference": map_difference, "max_scaled_difference": difference,
            "rtol": AGREEMENT_RTOL, "passed": bool(difference <= AGREEMENT_RTOL)}


def benchmark_network(name: str, warmup: int, repeats: int, with_gradcam: bool) -> dict[str, Any]:
    """Guard, then time forward (and Grad-CAM) in every dtype; returns the network's JSON record."""
    spec = SPECS[name](seed=WEIGHT_SEED)
    x = spec.random_input(INPUT_SEED)
    net = build_refcam(spec)
    model = build_torch(spec) if torch is not None else None
    record: dict[str, Any] = {"network": name, "input_shape": list(x.shape), "layers": len(spec.layers),
                              "feature_layer": spec.feature_layer, "reduction_layer": spec.reduction_layer,
                              "rows": []}
    label = None
    if model is not None:
        guard = check_forward(net, model, x)
        record["forward_check"] = guard
        label = guard["top_class"]
        print(f"[{name}] float64 refcam vs torch: max relative difference "
              f"{guard['max_relative_difference']:.3e} (rtol {AGREEMENT_RTOL:g})")
        if not guard["passed"]:
            print(f"[{name}] ABORTED: refcam and PyTorch disagree beyond rtol {AGREEMENT_RTOL:g}; "
                  "no timings for this network.")
            return record
    for dtype in DTYPES:
        record["rows"].append(time_row(name, "forward", dtype, warmup, repeats,
                                       refcam_forward(net, x, dtype),
                                       torch_forward(model, x, dtype) if model is not None else None))
    gradcam = gradcam_function() if with_gradcam else None
    if gradcam is not None:
        try:
            record["rows"] += gradcam_rows(gradcam, net, model, spec, x, label, warmup, repeats, record)
        except Exception as error:  # optional part: report refcam's failure and keep the forward numbers
            record["gradcam_error"] = f"{type(error).__name__}: {error}"
            print(f"[{name}] Grad-CAM skipped, refcam raised {record['gradcam_error']}")
    return record


def gradcam_rows(gradcam: Callable[..., Any], net: Any, model: Any, spec: BenchmarkNetwork, x: np.ndarray,
                 label: int | None, warmup: int, repeats: int, record: dict[str, Any]) -> list[dict[str, Any]]:
    """Grad-CAM rows (after a float64 guard on the gradients when PyTorch is there)."""
    if label is None:
        label = int(np.argmax(refcam_forward(net, x, "float64")()[0]))
    record["gradcam_label"] = label
    if model is not None:
        guard = check_gradcam(refcam_gradcam(gradcam, net, spec, x, label, "float64")(),
                              torch_gradcam(model, spec, x, label, "float64")())
        record["gradcam_check"] = guard
        print(f"[{spec.title}] float64 Grad-CAM refcam vs torch: max difference / max magnitude "
              f"{guard['gradient_max_scaled_difference']:.3e} (gradients), "
              f"{guard['raw_map_max_scaled_difference']:.3e} (raw map) (rtol {AGREEMENT_RTOL:g})")
        if not guard["passed"]:
            print(f"[{spec.title}] Grad-CAM ABORTED: gradients or maps disagree; no Grad-CAM timings.")
            return []
    return [time_row(spec.title, "gradcam", dtype, warmup, repeats,
                     refcam_gradcam(gradcam, net, spec, x, label, dtype),
                     torch_gradcam(model, spec, x, label, dtype) if model is not None else None)
            for dtype in DTYPES]


def time_row(network: str, task: str, dtype: str, warmup: int, repeats: int,
             refcam_fn: Callable[[], Any], torch_fn: Callable[[], Any] | None) -> dict[str, Any]:
    """One table row: median (and minimum) times, the ratio of medians, refcam's traced peak memory."""
    refcam_times = timings_ms(refcam_fn, warmup, repeats)
    torch_times = timings_ms(torch_fn, warmup, repeats) if torch_fn is not None else None
    refcam_ms = statistics.median(refcam_times)
    torch_ms = statistics.median(torch_times) if torch_times else None
    row = {"network": network, "task": task, "dtype": dtype, "refcam_ms": refcam_ms, "torch_ms": torch_ms,
           "ratio": refcam_ms / torch_ms if torch_ms else None,
           "refcam_min_ms": min(refcam_times), "torch_min_ms": min(torch_times) if torch_times else None,
           "disturbed": any(statistics.median(t) > DISTURBED_SPREAD * min(t)
                            for t in (refcam_times, torch_times) if t),
           "refcam_peak_traced_mib": peak_traced_mib(refcam_fn), "warmup": warmup, "repeats": repeats}
    print(format_row(row), flush=True)
    return row


# --- report --------------------------------------------------------------------------------
HEADER = (f"{'network':<10} {'task':<8} {'dtype':<8} {'refcam ms':>10} {'torch ms':>10} "
          f"{'refcam/torch':>13} {'refcam peak MiB':>16}")


def format_row(row: dict[str, Any]) -> str:
    """One line of the table; ``(disturbed)`` when a median is over DISTURBED_SPREAD times its minimum."""
    torch_ms = "-" if row["torch_ms"] is None else f"{row['torch_ms']:.1f}"
    ratio = "-" if row["ratio"] is None else f"{row['ratio']:.2f}"
    flag = "  (disturbed)" if row["disturbed"] else ""
    return (f"{row['network']:<10} {row['task']:<8} {row['dtype']:<8} {row['refcam_ms']:>10.1f} "
            f"{torch_ms:>10} {ratio:>13} {row['refcam_peak_traced_mib']:>16.1f}{flag}")


SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile")


def cpu_description() -> dict[str, Any]:
    """CPU model name and the SIMD flags BLAS kernels care about, from /proc/cpuinfo when readable."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().split("\n\n")[0]
                      .splitlines() if ":" in line)
    except OSError:
        return {"cpu": platform.processor(), "cpu_flags": None}
    fields = {key.strip(): value.strip() for key, value in fields.items()}
    flags = set(fields.get("flags", "").split())
    return {"cpu": fields.get("model name", platform.processor()),
            "cpu_flags": [flag for flag in SIMD_FLAGS if flag in flags]}


def git_output(*args: str) -> str | None:
    """Output of a read-only git command in this repository, or None when git is not usable."""
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def machine_info(blas: list[dict[str, Any]]) -> dict[str, Any]:
    info = {"platform": platform.platform(), "python": platform.python_version(), **cpu_description(),
            "cpu_count": os.cpu_count(), "load_average_at_start": os.getloadavg(), "numpy": np.__version__,
            "blas": blas, "threads": THREADS, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "refcam_commit": git_output("rev-parse", "HEAD"),
            "refcam_uncommitted_changes": bool(git_output("status", "--porcelain", "--", "refcam"))}
    if torch is not None:
        info.update({"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                     "torch_mkldnn": torch.backends.mkldnn.is_available(),
                     "torch_mkl": torch.backends.mkl.is_available()})
    return info


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time refcam against PyTorch (forward, Grad-CAM) on CPU.")
    parser.add_argument("--quick", action="store_true",
                        help="1 warm-up and 3 timed runs per row (default 3 and 20)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help=f"output file (default {DEFAULT_JSON})")
    parser.add_argument("--networks", nargs="+", choices=sorted(SPECS), default=list(SPECS))
    parser.add_argument("--no-gradcam", action="store_true", help="time the forward pass only")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    warmup, repeats = (1, 3) if args.quick else (3, 20)
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=THREADS):
        if torch is not None:
            torch.set_num_threads(THREADS)
        blas = threadpool_info()
        info = machine_info(blas)
        print(f"CPU: {info['cpu']} ({info['cpu_count']} cores, {' '.join(info['cpu_flags'] or [])}); "
              f"load average {info['load_average_at_start'][0]:.2f}; numpy {info['numpy']}; "
              f"torch {info.get('torch', 'not installed')}; OPENBLAS_CORETYPE={info['OPENBLAS_CORETYPE']}")
        for lib in blas:
            print(f"threadpool: {lib.get('internal_api')} {lib.get('version')} "
                  f"({lib.get('architecture', '-')}), {lib.get('num_threads')} threads: {lib.get('filepath')}")
        if info["load_average_at_start"][0] > LOAD_WARNING:
            print(f"WARNING: 1-minute load average {info['load_average_at_start'][0]:.2f} on "
                  f"{info['cpu_count']} cores: other processes are running and will slow both sides.")
        print(HEADER)
        networks = [benchmark_network(name, warmup, repeats, not args.no_gradcam) for name in args.networks]
    print("\n" + HEADER)
    for network in networks:
        for row in network["rows"]:
            print(format_row(row))
    info["load_average_at_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "networks": networks}, indent=2))
    print(f"wrote {args.json}")
    aborted = [n["network"] for n in networks if not n.get("forward_check", {"passed": True})["passed"]]
    return 1 if aborted else 0


if __name__ == "__main__":
    sys.exit(main())
