"""Where refcam's Grad-CAM time goes, per layer kind: ``python benchmarks/profile_layers.py [--network resnet18]``.

``--zoo efficientnet_b0`` profiles an architecture of :mod:`zoo` instead
(torchvision's model code on the path, as for ``zoo.py``; the logit of the top
class at the zoo's feature layer). Every layer's ``forward`` of the network is
wrapped by a timer for ``--calls`` Grad-CAM calls (after one warm-up), in
float32 and float64 with 2 BLAS threads; the reverse sweep, the weights and the
map are the rest of the call's time. The per-call milliseconds per layer kind
are printed as the markdown table of docs/performance.md. Timers add about a
microsecond per layer; nothing is asserted.
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import THREADS, Bench, make_bench, refcam_gradcam, top_labels  # noqa: E402


def timed_layers(net: Any, totals: dict[str, float]) -> list[tuple[Any, Any]]:
    """Wrap each layer's forward so that its seconds add up in ``totals[kind]``; returns what to restore."""
    restore = []
    for layer in net.layers:
        original = layer.forward

        def forward(*xs: Any, _original: Any = original, _kind: str = layer.kind) -> Any:
            start = time.perf_counter()
            try:
                return _original(*xs)
            finally:
                totals[_kind] += time.perf_counter() - start
        object.__setattr__(layer, "forward", forward)
        restore.append((layer, original))
    return restore


def zoo_bench(name: str) -> Bench:
    """The zoo architecture ``name`` through ``refcam.from_torch``, as :mod:`zoo` builds it."""
    import zoo
    module = zoo.torchvision_targets()
    (target,) = [target for target in module.targets() if target.name == name]
    _, net, x, _ = zoo.build(module, target, zoo.input_shape(target, 224))
    return Bench(name, net, None, x, target.feature, net.layer_names[-1], False, len(net.layers))


def profile(bench: Bench, dtype: str, calls: int) -> tuple[dict[str, float], float]:
    """Milliseconds per call for each layer kind's forward, and the whole call's."""
    call = refcam_gradcam(bench.net, bench, bench.x, top_labels(bench, 1), dtype)
    call()
    totals: dict[str, float] = collections.defaultdict(float)
    restore = timed_layers(bench.net, totals)
    try:
        start = time.perf_counter()
        for _ in range(calls):
            call()
        whole = time.perf_counter() - start
    finally:
        for layer, original in restore:
            object.__setattr__(layer, "forward", original)
    return {kind: 1e3 * seconds / calls for kind, seconds in totals.items()}, 1e3 * whole / calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="resnet18")
    parser.add_argument("--zoo", help="a zoo architecture (zoo.py) instead of --network")
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args(argv)
    from threadpoolctl import threadpool_limits

    bench = zoo_bench(args.zoo) if args.zoo else make_bench(args.network, with_torch=False)
    with threadpool_limits(limits=THREADS):
        results = {dtype: profile(bench, dtype, args.calls) for dtype in ("float32", "float64")}
    kinds = sorted(results["float64"][0], key=lambda kind: -results["float64"][0][kind])
    print("| layer kind | float32 ms | float64 ms |\n|---|---:|---:|")
    for kind in kinds:
        print(f"| {kind} | {results['float32'][0].get(kind, 0.0):.2f} | {results['float64'][0][kind]:.2f} |")
    rest = {dtype: whole - sum(per_kind.values()) for dtype, (per_kind, whole) in results.items()}
    print(f"| reverse sweep, weights, map, Python between layers | {rest['float32']:.2f} | {rest['float64']:.2f} |")
    print(f"| whole call | {results['float32'][1]:.2f} | {results['float64'][1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
