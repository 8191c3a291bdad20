"""Items per second of a dataset run (``refcam.dataset.run``): serial vs a LocalCluster of 2 workers, with PyTorch.

Usage::

    python benchmarks/dataset_throughput.py [--items-e2 200] [--items-resnet 24] [--networks e2 resnet18]
                                            [--json out.json]

Networks: E2 (the digits regression of MATLAB's gradCAM page, 28x28x1, ``fixtures/e2_digits_regression.h5``,
score: the output summed) and the ResNet-18-shaped network of ``networks.py`` (224x224x3, predicted top-1).
Inputs are seeded random arrays in one ``.npy``. Per network it prints and records:

* ``serial``: one process, BLAS on 2 threads (the machine's two cores), items/s of the whole run
  (network load, every golden file written);
* ``dask-2``: a ``LocalCluster`` of 2 worker processes with 1 thread each, items/s from the submission of
  the first task to the last result (cluster start-up timed apart, ``startup_s``);
* the parts of one item, for the scaling model of docs/performance.md: ``load_s`` (the network loaded from
  the store, once per worker), ``compute_s`` (``refcam.explain``, one item), ``write_s`` (its golden file);
* ``torch``: PyTorch Grad-CAM of one item on 2 threads (forward, backward of the score to the feature
  layer, weights, ReLU map; no resize, nothing written): the compute a PyTorch port would spend;
* ``golden_mb``: the mean size of one item's golden file.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
THREADS = 2


def networks() -> dict:
    """name -> (refcam Network, torch module or None, feature layer, run options)."""
    import refcam
    from networks import build_refcam, build_torch, resnet18_spec
    e2 = refcam.load(os.path.join(os.path.dirname(HERE), "fixtures", "e2_digits_regression.h5"))
    spec = resnet18_spec(seed=0)
    try:
        torch_resnet = build_torch(spec)
    except ImportError:
        torch_resnet = None
    return {"e2": (e2, None, None, {"reduction": "sum"}),
            "resnet18": (build_refcam(spec), torch_resnet, spec.feature_layer, {})}


def item_parts(net, x: np.ndarray, options: dict, folder: str) -> dict:
    """Seconds to load the network, compute one item and write its golden (medians of 3)."""
    import refcam
    from refcam.cam.selection import sum_of_outputs
    from refcam.golden.writer import write_referenced
    path = os.path.join(folder, "parts.h5")
    refcam.save(net, path, compact=True)
    load = min(_seconds(lambda: refcam.load(path)) for _ in range(3))
    reduction = sum_of_outputs if options.get("reduction") == "sum" else None
    label = None if reduction else 0
    compute = float(np.median([_seconds(lambda: refcam.explain(net, x, label, reduction=reduction))
                               for _ in range(3)]))
    total = float(np.median([_seconds(lambda: write_referenced(os.path.join(folder, "g.h5"), net, x, label,
                                                                ("parts.h5", "0" * 64), reduction=reduction))
                             for _ in range(3)]))
    return {"load_s": load, "compute_s": compute, "write_s": max(total - compute, 0.0)}


def torch_item(module, x: np.ndarray, feature_layer: str) -> float | None:
    """Seconds of one PyTorch Grad-CAM (median of 5), or None without PyTorch."""
    if module is None:
        return None
    import torch
    torch.set_num_threads(THREADS)
    tensor = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 0)[None]))

    def once() -> None:
        outputs = module.run(tensor, detach_at=feature_layer)
        activation = outputs[feature_layer]
        score = outputs[list(outputs)[-1]][0, 0]
        (gradient,) = torch.autograd.grad(score, activation)
        weights = gradient.mean(dim=(2, 3), keepdim=True)
        torch.relu((weights * activation).sum(dim=1))
    once()
    return float(np.median([_seconds(once) for _ in range(5)]))


def _seconds(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def measure(name: str, net, module, feature_layer, options: dict, count: int, folder: str) -> dict:
    import refcam
    from refcam.dataset import local_client
    from threadpoolctl import threadpool_limits
    shape = tuple(net.input_layer.input_size)
    xs = np.random.default_rng(0).standard_normal((count,) + shape)
    source = os.path.join(folder, f"{name}.npy")
    np.save(source, xs)
    network_file = os.path.join(folder, f"{name}.h5")
    refcam.save(net, network_file, compact=True)
    with threadpool_limits(limits=THREADS):
        parts = item_parts(net, xs[0], options, folder)
        serial = refcam.dataset.run(network_file, source, os.path.join(folder, f"{name}-serial"), **options)
        torch_s = torch_item(module, xs[0], feature_layer)
    start = time.perf_counter()
    with local_client(workers=2) as client:
        startup = time.perf_counter() - start
        distributed = refcam.dataset.run(network_file, source, os.path.join(folder, f"{name}-dask"),
                                         client=client, batch_size=max(1, count // 16), **options)
    goldens = glob.glob(os.path.join(folder, f"{name}-serial", "*.golden.h5"))
    golden_mb = sum(os.path.getsize(path) for path in goldens) / len(goldens) / 1e6
    row = {"items": count, "serial_items_per_s": serial.items_per_second, "golden_mb": golden_mb,
           "dask2_items_per_s": distributed.items_per_second, "startup_s": startup,
           "torch_item_s": torch_s, **parts}
    print(f"{name}: {count} items; serial {row['serial_items_per_s']:.2f} items/s, 2 Dask workers "
          f"{row['dask2_items_per_s']:.2f} items/s (cluster start {startup:.1f} s); one item: load "
          f"{parts['load_s']:.3f} s, compute {parts['compute_s']:.4f} s, write {parts['write_s']:.4f} s "
          f"({golden_mb:.2f} MB)"
          + ("" if torch_s is None else f"; PyTorch Grad-CAM {torch_s:.4f} s"))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items-e2", type=int, default=200)
    parser.add_argument("--items-resnet", type=int, default=24)
    parser.add_argument("--networks", nargs="+", choices=("e2", "resnet18"), default=("e2", "resnet18"))
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    counts = {"e2": args.items_e2, "resnet18": args.items_resnet}
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, (net, module, feature_layer, options) in networks().items():
            if name not in args.networks:
                continue
            rows[name] = measure(name, net, module, feature_layer, options, counts[name], folder)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"cpu_count": os.cpu_count(), "rows": rows}, out, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
