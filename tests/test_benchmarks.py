"""The benchmark scripts still run end to end (no timing is asserted: speed lives in docs/performance.md).

``benchmarks/`` is not part of the suite, but a script that broke would only
show on the next measuring session, and ``gpu.py`` on the next rare GPU
session. These run ``run.py`` on the two smallest seed networks and ``gpu.py``
on the CPU with a batch of 2, in subprocesses as a user would, and check what
their JSON reports: the float64 agreement guards passed and every row has a
time on both sides. They need the ``bench`` extra (PyTorch, the other side of
every row, and threadpoolctl) and skip without it.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(*args: str) -> None:
    completed = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                               check=False)
    assert completed.returncode == 0, f"{args[0]} failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"


def test_run_py_quick_on_the_small_seed_networks(torch, tmp_path):
    pytest.importorskip("threadpoolctl")
    out = tmp_path / "latest.json"
    run_script("benchmarks/run.py", "--quick", "--no-memory", "--networks", "e2_digits", "e3_vowels",
               "--json", str(out))
    record = json.loads(out.read_text())
    networks = record["networks"]
    assert [net["network"] for net in networks] == ["e2_digits", "e3_vowels"]
    assert all(net["forward_check"]["passed"] and net["gradcam_check"]["passed"] for net in networks)
    rows = [row for net in networks for row in net["rows"]]
    assert len(rows) == 8 and all(row["refcam_ms"] > 0 and row["torch_ms"] > 0 for row in rows)
    assert "refcam_commit" in record["machine"] and record["machine"]["threads"] == 2
    assert all(row["gemm_limit_ms"] > 0 and row["limit_ratio"] > 0 for row in rows)
    assert set(record["machine"]["gemm_gflops"]) == {"float32", "float64"}


def test_gemm_work_is_counted_layer_by_layer():
    """The GEMM limit's operation count, by hand for a conv -> relu -> conv -> GAP -> fc network."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gemm_limit
    from refcam.layers import (Convolution2dLayer, FullyConnectedLayer, GlobalAveragePooling2dLayer,
                               ImageInputLayer, ReLULayer)
    from refcam.network import Network

    rng = np.random.default_rng(0)
    net = Network([ImageInputLayer(name="in", input_size=(8, 6, 3), normalization="none"),
                   Convolution2dLayer(name="conv1", filter_size=3, num_filters=4, padding=1,
                                      weights=rng.standard_normal((4, 3, 3, 3)), bias=np.zeros(4)),
                   ReLULayer(name="relu"),
                   Convolution2dLayer(name="conv2", filter_size=1, num_filters=5, stride=2,
                                      weights=rng.standard_normal((5, 4, 1, 1)), bias=np.zeros(5)),
                   GlobalAveragePooling2dLayer(name="gap"),
                   FullyConnectedLayer(name="fc", output_size=2, weights=rng.standard_normal((2, 5)),
                                       bias=np.zeros(2))])
    conv1, conv2, fc = 2 * 4 * 27 * 48, 2 * 5 * 4 * 12, 2 * 2 * 5          # 2 * F * (C/G) * k * O
    assert gemm_limit.gradcam_flops(net, (3, 8, 6), 1, None, None) == conv1 + conv2 + fc
    assert gemm_limit.gradcam_flops(net, (3, 8, 6), 2, None, None) == 2 * (conv1 + conv2 + fc)
    # Grad-CAM at relu: the head (conv2, fc) once more per label, for its input VJPs
    assert gemm_limit.gradcam_flops(net, (3, 8, 6), 1, "relu", "fc", labels=3) == conv1 + 4 * (conv2 + fc)
    assert gemm_limit.limit_ms(10 ** 9, 1e12) == pytest.approx(1.0)


def test_an_openblas_kernel_override_is_named_with_how_to_lift_it():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gemm_limit
    assert gemm_limit.kernel_override_warning({"PATH": "/bin"}) is None
    assert gemm_limit.kernel_override_warning({"OPENBLAS_CORETYPE": ""}) is None
    warning = gemm_limit.kernel_override_warning({"OPENBLAS_CORETYPE": "Haswell", "OPENBLAS_L2_SIZE": "512"})
    assert "OPENBLAS_CORETYPE=Haswell OPENBLAS_L2_SIZE=512" in warning
    assert "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE" in warning


def test_gpu_py_runs_on_the_cpu(torch, tmp_path):
    out = tmp_path / "gpu.json"
    run_script("benchmarks/gpu.py", "--device", "cpu", "--batch", "2", "--warmup", "0", "--repeats", "1",
               "--json", str(out))
    rows = json.loads(out.read_text())["rows"]
    assert [row["dtype"] for row in rows] == ["float32", "float64"]
    assert all("error" not in row and row["refcam_ms"] > 0 and row["torch_ms"] > 0 for row in rows)
    assert max(rows[1]["gradients_diff"], rows[1]["raw_map_diff"]) <= 1e-9


def test_dataset_throughput_runs_on_e2(torch, tmp_path):
    pytest.importorskip("threadpoolctl")
    pytest.importorskip("distributed")
    out = tmp_path / "dataset.json"
    run_script("benchmarks/dataset_throughput.py", "--networks", "e2", "--items-e2", "6", "--json", str(out))
    row = json.loads(out.read_text())["rows"]["e2"]
    assert row["items"] == 6 and row["serial_items_per_s"] > 0 and row["dask2_items_per_s"] > 0
    assert row["load_s"] > 0 and row["compute_s"] > 0
