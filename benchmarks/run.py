"""Time refcam against PyTorch on CPU (forward, Grad-CAM and its variants) and measure peak memory.

Usage::

    python benchmarks/run.py [--quick] [--json PATH] [--networks ...] [--no-memory]

What it does, per network (:mod:`networks`: ``resnet18``, ``small3d``, ``volume128``;
:mod:`seeds`: ``e1_squeezenet``, ``e2_digits``, ``e3_vowels``):

1. builds the network in refcam and in PyTorch with the same float64 weights;
2. **correctness guard**: runs both in float64 on the same input and checks the
   outputs agree elementwise to ``AGREEMENT_RTOL``, and that Grad-CAM gradients and
   raw maps agree to ``AGREEMENT_RTOL`` of their largest magnitude (for the plain
   and the batch-norm-fused refcam network); rows of a network that fails are not timed;
3. times each task of :data:`TASKS` (``forward``, ``gradcam``, and for ResNet-18
   ``gradcam-fused``, ``gradcam-10``, ``gradcam-b8``, ``vs-backward``), refcam and
   PyTorch each in its own block: the median of ``repeats`` wall-clock runs after
   ``warmup`` runs (the JSON also keeps the minimum);
4. measures the peak memory of one call on each side in a fresh subprocess
   (:func:`peak_rss_in_subprocess`): after one warm-up call and ``malloc_trim``,
   the peak resident set size is reset (``/proc/self/clear_refs``), the call is
   made, and the rise of ``VmHWM`` over the resident size before the call is the
   call's peak memory. Both sides are measured the same way (weights, caches and
   the interpreter are excluded); refcam's ``tracemalloc`` peak is kept too;
   each row also gets its GEMM limit (:mod:`gemm_limit`: the row's GEMM work over
   the GEMM throughput measured at the start of the run) and refcam's distance to it;
5. prints the table and the issue-7 targets (met or missed), writes the JSON.

BLAS and PyTorch are limited to 2 threads (``threadpoolctl`` and
``torch.set_num_threads``). The JSON (default ``benchmarks/results/latest.json``)
records the machine (platform, CPU model, core count, NumPy/PyTorch versions,
the BLAS libraries threadpoolctl sees, ``OPENBLAS_CORETYPE``) and every number.
"""
from __future__ import annotations

import argparse
import copy
import ctypes
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gemm_limit  # noqa: E402
from networks import SPECS, build_refcam, build_torch, torch  # noqa: E402
from seeds import SEEDS, build_torch_twin  # noqa: E402

THREADS = 2
LOAD_WARNING = 0.5  # 1-minute load average above which the run starts with a warning
DISTURBED_SPREAD = 1.5  # a row whose median exceeds this times its minimum was disturbed by other work
AGREEMENT_RTOL = 1e-9  # float64 refcam vs PyTorch, whole network (rounding accumulates over ~70 ops)
DTYPES = ("float32", "float64")
INPUT_SEED = 1
WEIGHT_SEED = 0
LABELS_MANY = 10
BATCH = 8
VOLUME_SIDE = 128
VOLUME_LIMIT_MIB = 4096
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
MIB = 2 ** 20


# --- what is benchmarked ---------------------------------------------------------------------
@dataclass
class Bench:
    """One network on both sides: refcam network, PyTorch module (or None), input and Grad-CAM settings."""

    name: str
    net: Any
    model: Any
    x: np.ndarray                 # internal (1, C, *S), float64
    feature_layer: str
    reduction_layer: str
    regression: bool
    layers: int


def make_bench(name: str, with_torch: bool = True) -> Bench:
    """The benchmark network ``name`` (:data:`NETWORKS`), built in refcam and, if asked and possible, PyTorch."""
    if name in SEEDS:
        seed = SEEDS[name]
        net = seed.refcam()
        model = build_torch_twin(seed, net) if with_torch and torch is not None else None
        return Bench(name, net, model, seed.random_input(INPUT_SEED), seed.feature_layer,
                     seed.reduction_layer, seed.regression, len(net.layers))
    spec = SPECS["small3d"](seed=WEIGHT_SEED, volume_size=VOLUME_SIDE) if name == "volume128" \
        else SPECS[name](seed=WEIGHT_SEED)
    model = build_torch(spec) if with_torch and torch is not None else None
    return Bench(name, build_refcam(spec), model, spec.random_input(INPUT_SEED), spec.feature_layer,
                 spec.reduction_layer, False, len(spec.layers))


NETWORKS = ("resnet18", "small3d", "e1_squeezenet", "e2_digits", "e3_vowels", "volume128")
EXTRA_TASKS = ("gradcam-fused", "gradcam-10", "gradcam-b8", "vs-backward")
TASKS = {"resnet18": ("forward", "gradcam") + EXTRA_TASKS, "small3d": ("forward", "gradcam", "gradcam-fused"),
         "e1_squeezenet": ("forward", "gradcam"), "e2_digits": ("forward", "gradcam"),
         "e3_vowels": ("forward", "gradcam"), "volume128": ("gradcam", "gradcam-early")}
EARLY_FEATURE_LAYER = {"volume128": "pool1"}  # gradcam-early: the reverse sweep crosses conv2 (tiled VJPs)
TASK_NOTES = {
    "forward": "refcam predict | torch eval forward under no_grad",
    "gradcam": "1 label | torch autograd.grad to the feature map only",
    "gradcam-fused": "refcam fuse_batchnorm (fast mode), 1 label | torch as gradcam",
    "gradcam-10": f"{LABELS_MANY} labels, one forward | torch one forward, {LABELS_MANY} autograd.grad",
    "gradcam-b8": f"batch of {BATCH}, 1 label | torch the same batch",
    "vs-backward": "refcam gradcam, 1 label | pytorch-grad-cam recipe: full backward(), parameters require grad",
    "gradcam-early": "1 label at an early feature layer (EARLY_FEATURE_LAYER) | torch the same",
}


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
    """Peak memory traced by ``tracemalloc`` while ``fn()`` runs, in MiB (NumPy arrays and Python objects)."""
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / MIB


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise OSError(f"{field} not in /proc/self/status")


def peak_rss_of_call(fn: Callable[[], Any]) -> dict[str, float]:
    """Peak resident memory of one ``fn()`` call above the resident size before it (Linux only).

    ``fn`` is called once to warm up (caches, lazily converted weights), freed
    heap memory is returned to the system (``malloc_trim``), the kernel's peak
    RSS is reset (``clear_refs`` 5), then ``fn`` runs and ``VmHWM - VmRSS(before)``
    is its peak. Returns MiB: ``peak`` (that rise) and ``total`` (the process's VmHWM).
    """
    fn()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    fn()
    high = _status_kib("VmHWM")
    return {"peak": (high - before) / 1024, "total": high / 1024}


def peak_rss_in_subprocess(network: str, task: str, dtype: str, side: str) -> dict[str, float] | None:
    """:func:`peak_rss_of_call` for one side of one row, in a fresh Python process (None on failure)."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", network, task, dtype, side]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"[{network}] memory of {side} {task} {dtype} not measured: {done.stderr.strip()[-300:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    """refcam format string of an internal (B, C, *spatial) array: ``BCS``, ``BCSS`` or ``BCSSS``."""
    return "BC" + "S" * (x.ndim - 2)


def refcam_forward(net: Any, x: np.ndarray, dtype: str) -> Callable[[], np.ndarray]:
    """``net.predict`` on ``x`` (internal layout, so the format is ``BCSS``/``BCSSS``) in ``dtype``."""
    fmt = caller_format(x)
    return lambda: net.predict(x, format=fmt, dtype=dtype)


def in_dtype(model: Any, x: np.ndarray, dtype: str, trainable: bool = False) -> tuple[Any, Any]:
    """A copy of ``model`` and the input as a tensor, both in ``dtype``; parameters require grad if ``trainable``."""
    torch_dtype = getattr(torch, dtype)
    model = copy.deepcopy(model).to(torch_dtype)
    for parameter in model.parameters():
        parameter.requires_grad_(trainable)
    return model, torch.from_numpy(x).to(torch_dtype)


def torch_forward(model: Any, x: np.ndarray, dtype: str) -> Callable[[], np.ndarray]:
    """The module's eval forward on ``x`` in ``dtype`` under ``torch.no_grad()``."""
    model, x_t = in_dtype(model, x, dtype)

    def run() -> np.ndarray:
        with torch.no_grad():
            return model(x_t).numpy()
    return run


def refcam_gradcam(net: Any, bench: Bench, x: np.ndarray, labels: list[int], dtype: str) -> Callable[[], Any]:
    """refcam's Grad-CAM at the benchmark's feature and reduction layers, no upsampling.

    One label gives ``label=int``, several a label list (one forward, one head
    sweep per label); a regression network uses the identity reduction.
    """
    from refcam.cam.gradcam import gradcam

    fmt = caller_format(x)
    score: dict[str, Any] = ({"reduction": lambda y: y} if bench.regression
                             else {"label": labels[0] if len(labels) == 1 else list(labels)})
    return lambda: gradcam(net, x, feature_layer=bench.feature_layer, reduction_layer=bench.reduction_layer,
                           format=fmt, upsampling="none", dtype=dtype, **score)


def _torch_map(gradients: Any, activations: Any) -> Any:
    """Channel weights = spatial mean of the gradient; ReLU of the weighted sum: ``(B, *S)``."""
    spatial = tuple(range(2, gradients.dim()))
    weights = gradients.mean(dim=spatial)                                          # (B, C)
    return torch.relu((weights.reshape(weights.shape + (1,) * len(spatial)) * activations).sum(dim=1))


def _torch_score(values: dict[str, Any], bench: Bench, label: int) -> Any:
    reduced = values[bench.reduction_layer]
    return reduced.sum() if bench.regression else reduced[:, label].sum()


def torch_gradcam(model: Any, bench: Bench, x: np.ndarray, labels: list[int],
                  dtype: str) -> Callable[[], dict[str, np.ndarray]]:
    """PyTorch doing refcam's work: one forward with the feature map made a leaf, one autograd.grad per label."""
    model, x_t = in_dtype(model, x, dtype)

    def run() -> dict[str, np.ndarray]:
        values = model.run(x_t, detach_at=bench.feature_layer)
        activations = values[bench.feature_layer]                              # (B, C, *S)
        maps, grads = [], []
        for k, label in enumerate(labels):
            (gradients,) = torch.autograd.grad(_torch_score(values, bench, label), activations,
                                               retain_graph=k + 1 < len(labels))
            with torch.no_grad():
                maps.append(_torch_map(gradients, activations))
            grads.append(gradients)
        return {"gradients": grads[0].numpy(), "raw_map": maps[0].numpy()}
    return run


def torch_full_backward(model: Any, bench: Bench, x: np.ndarray, labels: list[int],
                        dtype: str) -> Callable[[], np.ndarray]:
    """The pytorch-grad-cam recipe: parameters require grad, full forward, ``backward()`` through everything."""
    model, x_t = in_dtype(model, x, dtype, trainable=True)

    def run() -> np.ndarray:
        model.zero_grad(set_to_none=True)
        values = model.run(x_t)
        activations = values[bench.feature_layer]
        activations.retain_grad()
        _torch_score(values, bench, labels[0]).backward()
        with torch.no_grad():
            return _torch_map(activations.grad, activations).numpy()
    return run


def task_functions(bench: Bench, task: str, dtype: str, label: int, fused: Any = None,
                   with_torch: bool = True) -> tuple[Callable[[], Any], Callable[[], Any] | None]:
    """The refcam and PyTorch callables of one row (PyTorch None when not installed or not wanted)."""
    model = bench.model if with_torch else None
    x, labels, net = bench.x, [label], bench.net
    if task == "gradcam-b8":
        x = np.random.default_rng(INPUT_SEED).random((BATCH,) + bench.x.shape[1:])
    if task == "gradcam-10":
        labels = top_labels(bench, LABELS_MANY)
    if task == "gradcam-early":
        bench = Bench(**{**bench.__dict__, "feature_layer": EARLY_FEATURE_LAYER[bench.name]})
    if task == "gradcam-fused":
        from refcam.fusion import fuse_batchnorm
        net = fused if fused is not None else fuse_batchnorm(bench.net)
    if task == "forward":
        return refcam_forward(net, x, dtype), torch_forward(model, x, dtype) if model is not None else None
    torch_side = None
    if model is not None:
        torch_side = (torch_full_backward if task == "vs-backward" else torch_gradcam)(model, bench, x, labels, dtype)
    return refcam_gradcam(net, bench, x, labels, dtype), torch_side


def top_labels(bench: Bench, count: int) -> list[int]:
    """The ``count`` classes with the highest float64 refcam output (index 0 for a regression)."""
    if bench.regression:
        return [0] * count
    scores = refcam_forward(bench.net, bench.x, "float64")().reshape(-1)
    return [int(k) for k in np.argsort(-scores)[:count]]


# --- one network -----------------------------------------------------------------------------
def check_forward(bench: Bench) -> dict[str, Any]:
    """float64 guard: refcam's and PyTorch's outputs, max relative difference, pass/fail.

    The float32 difference is recorded for information only (it is not checked).
    """
    found = refcam_forward(bench.net, bench.x, "float64")()
    expected = torch_forward(bench.model, bench.x, "float64")().reshape(found.shape)
    difference = max_elementwise_relative_difference(found, expected)
    float32_difference = max_elementwise_relative_difference(
        refcam_forward(bench.net, bench.x, "float32")().astype(np.float64), expected)
    return {"max_relative_difference": difference, "rtol": AGREEMENT_RTOL,
            "passed": bool(difference <= AGREEMENT_RTOL),
            "float32_refcam_vs_float64_torch": float32_difference}


def check_gradcam(result: Any, expected: dict[str, np.ndarray]) -> dict[str, Any]:
    """float64 guard on Grad-CAM: gradients and raw maps, refcam against PyTorch.

    refcam's gradients are ``(K=1, B, C, *S)``, its raw map is in MATLAB order
    ``(*S, B)`` for a ``BC...`` input (``(1, T, B)`` for sequences); PyTorch's are ``(B, C, *S)`` and ``(B, *S)``.
    """
    gradient_difference = max_scaled_difference(np.asarray(result.gradients)[0], expected["gradients"])
    raw = np.moveaxis(np.asarray(result.raw_map), -1, 0).reshape(expected["raw_map"].shape)   # (B, *S)
    map_difference = max_scaled_difference(raw, expected["raw_map"])
    difference = max(gradient_difference, map_difference)
    return {"gradient_max_scaled_difference": gradient_difference,
            "raw_map_max_scaled_difference": map_difference, "max_scaled_difference": difference,
            "rtol": AGREEMENT_RTOL, "passed": bool(difference <= AGREEMENT_RTOL)}


def guard_gradcam(bench: Bench, fused: Any, label: int, record: dict[str, Any]) -> bool:
    """float64 Grad-CAM guard for the plain network (and the fused one when it is benchmarked)."""
    expected = torch_gradcam(bench.model, bench, bench.x, [label], "float64")()
    passed = True
    for key, net in (("gradcam_check", bench.net), ("gradcam_fused_check", fused)):
        if net is None:
            continue
        plain = Bench(**{**bench.__dict__, "net": net})
        guard = check_gradcam(refcam_gradcam(net, plain, bench.x, [label], "float64")(), expected)
        record[key] = guard
        print(f"[{bench.name}] float64 Grad-CAM{' (fused)' if key == 'gradcam_fused_check' else ''} refcam vs "
              f"torch: max difference / max magnitude {guard['gradient_max_scaled_difference']:.3e} "
              f"(gradients), {guard['raw_map_max_scaled_difference']:.3e} (raw map) (rtol {AGREEMENT_RTOL:g})")
        passed = passed and guard["passed"]
    return passed


def fused_agreement(bench: Bench, fused: Any) -> float:
    """Largest relative difference of the float64 outputs of the fused and the literal refcam network."""
    literal = refcam_forward(bench.net, bench.x, "float64")()
    return max_elementwise_relative_difference(refcam_forward(fused, bench.x, "float64")(), literal)


def row_gemm_flops(bench: Bench, task: str) -> int:
    """The GEMM work of one row (:mod:`gemm_limit`): the forward pass, plus the head's VJPs for Grad-CAM."""
    batch = BATCH if task == "gradcam-b8" else 1
    labels = LABELS_MANY if task == "gradcam-10" else 1
    feature = {"forward": None, "gradcam-early": EARLY_FEATURE_LAYER.get(bench.name)}.get(task, bench.feature_layer)
    return gemm_limit.gradcam_flops(bench.net, tuple(bench.x.shape[1:]), batch, feature, bench.reduction_layer,
                                    labels)


def benchmark_network(name: str, warmup: int, repeats: int, memory: bool,
                      throughput: dict[str, float]) -> dict[str, Any]:
    """Guards, then every row of the network; returns the network's JSON record.

    ``throughput``: GEMM operations per second per dtype, for the rows' GEMM limit.
    """
    bench = make_bench(name)
    tasks = TASKS[name]
    record: dict[str, Any] = {"network": name, "input_shape": list(bench.x.shape), "layers": bench.layers,
                              "feature_layer": bench.feature_layer, "reduction_layer": bench.reduction_layer,
                              "rows": []}
    fused = None
    if "gradcam-fused" in tasks:
        from refcam.fusion import fuse_batchnorm
        fused = fuse_batchnorm(bench.net)
        record["fused_layers"] = len(fused.layers)
        record["fused_vs_literal_float64"] = fused_agreement(bench, fused)
        print(f"[{name}] fast mode: {bench.layers} -> {len(fused.layers)} layers; float64 outputs differ from "
              f"the literal network by {record['fused_vs_literal_float64']:.2e} relative")
    label = top_labels(bench, 1)[0]
    record["gradcam_label"] = label
    if bench.model is not None:
        guard = check_forward(bench)
        record["forward_check"] = guard
        print(f"[{name}] float64 refcam vs torch: max relative difference "
              f"{guard['max_relative_difference']:.3e} (rtol {AGREEMENT_RTOL:g})")
        if not (guard["passed"] and guard_gradcam(bench, fused, label, record)):
            print(f"[{name}] ABORTED: refcam and PyTorch disagree beyond rtol {AGREEMENT_RTOL:g}; "
                  "no timings for this network.")
            record["aborted"] = True
            return record
    runs = (0, 1) if name == "volume128" else (warmup, repeats)
    for task in tasks:
        for dtype in (("float32",) if task in ("gradcam-10", "gradcam-b8", "vs-backward") else DTYPES):
            refcam_fn, torch_fn = task_functions(bench, task, dtype, label, fused)
            row = time_row(name, task, dtype, *runs, refcam_fn, torch_fn, traced=name != "volume128")
            row["gemm_flops"] = row_gemm_flops(bench, task)
            row["gemm_limit_ms"] = gemm_limit.limit_ms(row["gemm_flops"], throughput[dtype])
            row["limit_ratio"] = row["refcam_ms"] / row["gemm_limit_ms"] if row["gemm_limit_ms"] else None
            if memory and task != "forward":
                add_memory(row, name, task, dtype, torch_fn is not None)
            print(format_row(row), flush=True)
            record["rows"].append(row)
    return record


def time_row(network: str, task: str, dtype: str, warmup: int, repeats: int, refcam_fn: Callable[[], Any],
             torch_fn: Callable[[], Any] | None, traced: bool = True) -> dict[str, Any]:
    """One table row: median (and minimum) times, the ratio of medians, refcam's traced peak memory."""
    refcam_times = timings_ms(refcam_fn, warmup, repeats)
    torch_times = timings_ms(torch_fn, warmup, repeats) if torch_fn is not None else None
    refcam_ms = statistics.median(refcam_times)
    torch_ms = statistics.median(torch_times) if torch_times else None
    return {"network": network, "task": task, "dtype": dtype, "note": TASK_NOTES[task],
            "refcam_ms": refcam_ms, "torch_ms": torch_ms, "ratio": refcam_ms / torch_ms if torch_ms else None,
            "refcam_min_ms": min(refcam_times), "torch_min_ms": min(torch_times) if torch_times else None,
            "disturbed": repeats > 1 and any(statistics.median(t) > DISTURBED_SPREAD * min(t)
                                             for t in (refcam_times, torch_times) if t),
            "refcam_peak_traced_mib": peak_traced_mib(refcam_fn) if traced else None,
            "warmup": warmup, "repeats": repeats}


def add_memory(row: dict[str, Any], network: str, task: str, dtype: str, with_torch: bool) -> None:
    """Peak RSS of one call on each side (fresh subprocesses) and their ratio."""
    mine = peak_rss_in_subprocess(network, task, dtype, "refcam")
    theirs = peak_rss_in_subprocess(network, task, dtype, "torch") if with_torch else None
    row["refcam_peak_rss_mib"] = mine and mine["peak"]
    row["refcam_process_peak_rss_mib"] = mine and mine["total"]
    row["torch_peak_rss_mib"] = theirs and theirs["peak"]
    row["torch_process_peak_rss_mib"] = theirs and theirs["total"]
    row["memory_ratio"] = (mine["peak"] / theirs["peak"]) if mine and theirs and theirs["peak"] > 0 else None


def child(network: str, task: str, dtype: str, side: str) -> None:
    """Subprocess entry of :func:`peak_rss_in_subprocess`: print the JSON of one side's peak memory."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=THREADS):
        if torch is not None:
            torch.set_num_threads(THREADS)
        bench = make_bench(network, with_torch=side == "torch")
        label = top_labels(bench, 1)[0]
        refcam_fn, torch_fn = task_functions(bench, task, dtype, label, with_torch=side == "torch")
        print(json.dumps(peak_rss_of_call(refcam_fn if side == "refcam" else torch_fn)))


# --- report --------------------------------------------------------------------------------
HEADER = (f"{'network':<14} {'task':<14} {'dtype':<8} {'refcam ms':>10} {'torch ms':>10} {'ratio':>7} "
          f"{'limit ms':>9} {'x limit':>7} {'refcam MiB':>11} {'torch MiB':>10} {'mem ratio':>9}")


def _number(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_row(row: dict[str, Any]) -> str:
    """One line of the table; ``(disturbed)`` when a median is over DISTURBED_SPREAD times its minimum.

    Memory columns are the peak RSS of one call (see :func:`peak_rss_of_call`).
    """
    flag = "  (disturbed)" if row["disturbed"] else ""
    return (f"{row['network']:<14} {row['task']:<14} {row['dtype']:<8} {row['refcam_ms']:>10.1f} "
            f"{_number(row['torch_ms']):>10} {_number(row['ratio'], 2):>7} "
            f"{_number(row.get('gemm_limit_ms'), 2):>9} {_number(row.get('limit_ratio'), 1):>7} "
            f"{_number(row.get('refcam_peak_rss_mib')):>11} {_number(row.get('torch_peak_rss_mib')):>10} "
            f"{_number(row.get('memory_ratio'), 2):>9}{flag}")


def _row(networks: list[dict[str, Any]], network: str, task: str, dtype: str) -> dict[str, Any] | None:
    for record in networks:
        for row in record["rows"]:
            if (row["network"], row["task"], row["dtype"]) == (network, task, dtype):
                return row
    return None


def targets(networks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issue-7 CPU targets, each with its measured value (None when its rows were not run)."""
    def get(task: str, dtype: str, key: str, network: str = "resnet18") -> float | None:
        row = _row(networks, network, task, dtype)
        return None if row is None else row.get(key)

    one, ten = get("gradcam", "float32", "refcam_ms"), get("gradcam-10", "float32", "refcam_ms")
    backward = get("vs-backward", "float32", "ratio")
    memory = [get("gradcam", d, "memory_ratio") for d in DTYPES]
    volume = [get(task, d, "refcam_process_peak_rss_mib", "volume128") for task in ("gradcam", "gradcam-early")
              for d in DTYPES]
    checks = [
        ("1 float32 Grad-CAM refcam/torch", get("gradcam", "float32", "ratio"), "<=", 1.2),
        ("2 float32 torch full backward / refcam", None if not backward else 1.0 / backward, ">=", 4.0),
        ("3 float64 Grad-CAM refcam/torch", get("gradcam", "float64", "ratio"), "<=", 1.0),
        ("4 10 labels / 1 label (refcam)", ten / one if one and ten else None, "<=", 1.3),
        ("5a peak memory refcam/torch (worst dtype)", max(memory) if None not in memory else None, "<=", 1.5),
        ("5b volume 128^3 process peak MiB (worst row)", max(volume) if None not in volume else None,
         "<", VOLUME_LIMIT_MIB),
    ]
    out = []
    for title, value, relation, limit in checks:
        met = None if value is None else (value <= limit if relation == "<=" else
                                          value >= limit if relation == ">=" else value < limit)
        out.append({"target": title, "value": value, "relation": relation, "limit": limit, "met": met})
    return out


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
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
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
    parser.add_argument("--networks", nargs="+", choices=NETWORKS, default=list(NETWORKS))
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocesses")
    parser.add_argument("--child", nargs=4, metavar=("NETWORK", "TASK", "DTYPE", "SIDE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def report(networks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Print the whole table and the targets; return the targets."""
    print("\n" + HEADER)
    for network in networks:
        for row in network["rows"]:
            print(format_row(row))
    print("\nmemory: peak RSS of one call above the resident size before it (MiB), each side in its own process")
    goals = targets(networks)
    print("\nissue-7 targets:")
    for goal in goals:
        verdict = {None: "not measured", True: "met", False: "MISSED"}[goal["met"]]
        print(f"  {goal['target']:<48} {_number(goal['value'], 2):>9} {goal['relation']} {goal['limit']:<6} {verdict}")
    return goals


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
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
        kernel_warning = gemm_limit.kernel_override_warning(os.environ)
        if kernel_warning:
            print(kernel_warning)
        if info["load_average_at_start"][0] > LOAD_WARNING:
            print(f"WARNING: 1-minute load average {info['load_average_at_start'][0]:.2f} on "
                  f"{info['cpu_count']} cores: other processes are running and will slow both sides.")
        throughput = {dtype: gemm_limit.gemm_throughput(dtype) for dtype in DTYPES}
        info["gemm_gflops"] = {dtype: value / 1e9 for dtype, value in throughput.items()}
        print(f"GEMM throughput ({gemm_limit.SIDE}^2 matrices): "
              + ", ".join(f"{dtype} {value / 1e9:.0f} GFLOP/s" for dtype, value in throughput.items()))
        print(HEADER)
        networks = [benchmark_network(name, warmup, repeats, not args.no_memory, throughput)
                    for name in args.networks]
    goals = report(networks)
    info["load_average_at_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": info, "networks": networks, "targets": goals,
                                     "tasks": TASK_NOTES}, indent=2))
    print(f"wrote {args.json}")
    return 1 if any(network.get("aborted") for network in networks) else 0


if __name__ == "__main__":
    sys.exit(main())
