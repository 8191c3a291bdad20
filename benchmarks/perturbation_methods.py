"""Score-CAM and Ablation-CAM: refcam against pytorch-grad-cam on a ResNet-18, side by side in one run.

The network is torchvision's ``resnet18`` architecture with random weights
(``torch.manual_seed``), converted with :func:`refcam.from_torch`; both sides
run on the CPU in float32 with 2 threads, at ``layer4`` (512 channels), with the
logit of one class as the score and the same number of passes per batch.
refcam uses pytorch-grad-cam's recipe (Score-CAM masks: corner-aligned bilinear,
``eps = 1e-8``; its softmax over channels), and the weights of the two sides are
compared before any time is taken. Not part of the test suite; no time is asserted.

Needs torch, torchvision and grad-cam 1.5.7 (``fixtures/make_method_fixtures.py``
says how to install them beside refcam without touching torch)::

    python benchmarks/perturbation_methods.py --size 112 --repeats 3
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

os.environ.setdefault("TQDM_DISABLE", "1")   # pytorch-grad-cam's progress bars; set before torch imports tqdm
sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import timings_ms  # noqa: E402  (benchmarks/run.py: the same timer as every benchmark)

THREADS = 2
TARGET = 1.5   # refcam's time may be at most this multiple of pytorch-grad-cam's


def median_time(fn: Callable[[], Any], warmup: int, repeats: int) -> float:
    """Median wall-clock seconds of ``repeats`` calls after ``warmup`` calls (each side in its own block)."""
    return statistics.median(timings_ms(fn, warmup, repeats)) / 1e3


def build(size: int, seed: int) -> tuple[Any, Any, np.ndarray]:
    """The torch ResNet-18 (float32, eval), its refcam conversion and one input (1, 3, size, size)."""
    import torch
    from torchvision.models import resnet18

    import refcam

    torch.manual_seed(seed)
    model = resnet18(weights=None).eval()
    x = np.random.default_rng(seed).standard_normal((1, 3, size, size))
    net = refcam.from_torch(model.double(), torch.from_numpy(x))
    return model.float(), net, x


def peer_runs(model: Any, x: np.ndarray, label: int, batch_size: int) -> dict[str, Callable[[], np.ndarray]]:
    """One call of each pytorch-grad-cam method, returning its channel weights (B, C)."""
    import torch
    from pytorch_grad_cam import AblationCAM, ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    tensor = torch.from_numpy(x.astype(np.float32))
    targets = [ClassifierOutputTarget(label)]
    score = ScoreCAM(model=model, target_layers=[model.layer4])
    score.batch_size = batch_size
    ablation = AblationCAM(model=model, target_layers=[model.layer4], batch_size=batch_size)

    def call(cam: Any) -> Callable[[], np.ndarray]:
        def run() -> np.ndarray:
            cam(input_tensor=tensor, targets=targets)
            activations = cam.activations_and_grads.activations[0].numpy()
            return np.asarray(cam.get_cam_weights(tensor, model.layer4, targets, activations, None))
        return run
    return {"scorecam": call(score), "ablationcam": call(ablation)}


def refcam_runs(net: Any, x: np.ndarray, label: int, batch_size: int) -> dict[str, Callable[[], np.ndarray]]:
    """One call of each refcam method in float32 with pytorch-grad-cam's options, returning its weights (B, C)."""
    import refcam

    common = dict(format="BCSS", feature_layer="layer4", reduction_layer=net.output_layer.name, dtype="float32",
                  batch_size=batch_size)
    return {
        "scorecam": lambda: refcam.scorecam(net, x, label, mask_upsampling="linear-corners", eps=1e-8,
                                            **common).weights[0],
        "ablationcam": lambda: refcam.ablationcam(net, x, label, **common).weights[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=64, help="input height and width (default 64)")
    parser.add_argument("--batch-size", type=int, default=32, help="passes per batch, both sides (default 32)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--label", type=int, default=1)
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()

    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(THREADS)
    with threadpool_limits(limits=THREADS):
        model, net, x = build(args.size, seed=0)
        peers = peer_runs(model, x, args.label, args.batch_size)
        mine = refcam_runs(net, x, args.label, args.batch_size)
        rows = {}
        for method in peers:
            peer_weights, refcam_weights = peers[method](), mine[method]()
            agreement = float(np.abs(refcam_weights - peer_weights).max() / np.abs(peer_weights).max())
            peer_s = median_time(peers[method], args.warmup, args.repeats)
            refcam_s = median_time(mine[method], args.warmup, args.repeats)
            rows[method] = {"pytorch-grad-cam_s": peer_s, "refcam_s": refcam_s, "ratio": refcam_s / peer_s,
                            "target_met": refcam_s <= TARGET * peer_s, "weights_max_rel_diff": agreement}
            print(f"{method:12s} 1x3x{args.size}x{args.size} layer4 float32: pytorch-grad-cam {peer_s:.3f} s, "
                  f"refcam {refcam_s:.3f} s, ratio {refcam_s / peer_s:.2f} (target <= {TARGET}: "
                  f"{'met' if refcam_s <= TARGET * peer_s else 'missed'}); weights max rel diff {agreement:.1e}")
    if args.json:
        info = {"size": args.size, "batch_size": args.batch_size, "threads": THREADS, "repeats": args.repeats,
                "torch": torch.__version__}
        with open(args.json, "w") as handle:
            json.dump({"setup": info, "rows": rows}, handle, indent=1)


if __name__ == "__main__":
    main()
