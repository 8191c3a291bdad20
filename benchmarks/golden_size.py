"""Measure golden file sizes for a torchvision ResNet-18: network file, embedded golden, named golden.

Usage::

    PYTHONPATH=/tmp/torchvision-cpu python benchmarks/golden_size.py [--folder DIR]

Needs torch, onnx and torchvision's model code (on a CPU-only torch see
``benchmarks/import_targets/README.md``). The model has random weights (seed 0)
and a 224 x 224 input; it goes through ``refcam.from_torch``. Printed, in MB:
the network as ``refcam.save`` writes it plainly and compactly, the golden with
the network embedded (compact), and the golden that names the network file by
SHA-256 (``network_file=``). Targets: under 50 MB embedded, under 2 MB named.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time


def megabytes(path: str) -> float:
    return os.path.getsize(path) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", default=None, help="where to write the files (default: a temporary folder)")
    args = parser.parse_args()
    import torch
    import torchvision.models

    import refcam
    import refcam.golden

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    x = torch.rand(1, 3, 224, 224)
    net = refcam.from_torch(model, x)
    image = x.double().numpy()[0]
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or scratch
        paths = {name: os.path.join(folder, name) for name in
                 ("resnet18.h5", "resnet18_compact.h5", "embedded.golden.h5", "named.golden.h5")}
        refcam.save(net, paths["resnet18.h5"])
        refcam.save(net, paths["resnet18_compact.h5"], compact=True)
        start = time.perf_counter()
        refcam.golden.write(paths["embedded.golden.h5"], net, image, 0, format="CSS")
        embedded_seconds = time.perf_counter() - start
        start = time.perf_counter()
        refcam.golden.write(paths["named.golden.h5"], net, image, 0, format="CSS", network_file=paths["resnet18.h5"])
        named_seconds = time.perf_counter() - start
        for name, path in paths.items():
            print(f"{name:22s} {megabytes(path):8.2f} MB")
        print(f"write: embedded {embedded_seconds:.1f} s, named {named_seconds:.1f} s (it loads the file to check it)")
        print(f"targets: embedded < 50 MB: {megabytes(paths['embedded.golden.h5']) < 50}; "
              f"named < 2 MB: {megabytes(paths['named.golden.h5']) < 2}")


if __name__ == "__main__":
    main()
