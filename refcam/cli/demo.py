"""``refcam demo``: Grad-CAM of a shipped test digit with the shipped digits network (E2 of MATLAB's gradCAM page)."""
from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from ..errors import InputError
from .common import EXIT_OK, size_text

DEMO_OUTPUT = "refcam_demo.png"
SUMMARY = "Grad-CAM on the shipped digits network (E2 of MATLAB's gradCAM page); writes an overlay PNG."
EPILOG = """\
examples:
  refcam demo                     writes refcam_demo.png in the current folder
  refcam demo -o /tmp/demo.png    writes /tmp/demo.png
  refcam demo --digit 3           another shipped test digit (0..10)"""


def add_arguments(demo: argparse.ArgumentParser) -> None:
    """The options of ``refcam demo``."""
    demo.add_argument("-o", "--output", default=DEMO_OUTPUT, metavar="PATH",
                      help=f"the PNG to write, or a folder for {DEMO_OUTPUT} (default: ./{DEMO_OUTPUT})")
    demo.add_argument("--digit", type=int, default=0, metavar="I",
                      help="which shipped test digit, 0..10 (default 0: held-out digit #501, as on MATLAB's gradCAM page)")
    demo.add_argument("--builtin-png", action="store_true",
                      help="write the built-in PNG (no matplotlib) even when matplotlib is installed")


def identity(y: Any) -> Any:
    """The E2 reduction function of MATLAB's gradCAM page ``@(x)x``: the fc layer's one output is the score."""
    return y


def run_demo(args: argparse.Namespace) -> int:
    """``refcam demo``: E2's Grad-CAM of a shipped test digit; one PNG written."""
    from ..cam.gradcam import gradcam
    from ..data import FEATURE_LAYER, REDUCTION_LAYER, demo_digits, demo_network

    net, digits = demo_network(), demo_digits()
    if not 0 <= args.digit < len(digits):
        raise InputError(f"--digit {args.digit} is not a shipped digit; choose 0..{len(digits) - 1}.")
    x, true_angle = digits.images[args.digit], float(digits.angles[args.digit])
    predicted = float(np.asarray(net.predict(x)).reshape(-1)[0])
    result = gradcam(net, x, reduction=identity, feature_layer=FEATURE_LAYER, reduction_layer=REDUCTION_LAYER)
    path = args.output
    if os.path.isdir(path):
        path = os.path.join(path, DEMO_OUTPUT)
    how = write_demo_figure(path, x, result.map, true_angle, predicted, args.builtin_png)
    channels, *feature_size = result.activations.shape[1:]
    print("refcam demo: Grad-CAM of the shipped digits network (E2 of MATLAB's gradCAM page: digitsRegressionNet, "
          "trained to predict the rotation of real MNIST digits)")
    print(f"  input:            held-out test digit #{int(digits.heldout_index[args.digit]) + 1}, "
          f"a {int(digits.digits[args.digit])} rotated by {true_angle:.1f} degrees ({size_text(x.shape)})")
    print(f"  prediction:       {predicted:.1f} degrees (true rotation {true_angle:.1f})")
    print(f"  feature layer:    {result.feature_layer} ({channels} channels, {size_text(feature_size)})")
    print(f"  reduction layer:  {result.reduction_layer}, identity reduction (the score is the predicted angle)")
    print(f"  map:              {size_text(result.map.shape)}, {result.upsampling} upsampling of the "
          f"{size_text(feature_size)} map, values {result.map.min():.3g} to {result.map.max():.3g}")
    print(f"  wrote:            {os.path.abspath(path)} ({how})")
    return EXIT_OK


def write_demo_figure(path: str, x: np.ndarray, score_map: np.ndarray, true_angle: float, predicted: float,
                      builtin: bool) -> str:
    """The E2 figure with matplotlib, else the built-in side-by-side PNG; returns which one was written."""
    from .. import viz
    if not builtin and viz.has_matplotlib():
        title = f"True Rotation = {true_angle:.0f}\nPred Rotation = {predicted:.0f}"
        viz.save_figure(viz.plot_side_by_side(x, score_map, left_title=title), path)
        return "the E2 figure of MATLAB's gradCAM page, drawn with matplotlib"
    pixels = viz.side_by_side_image(x, score_map)
    viz.write_png(path, viz.enlarge(pixels, viz.enlargement_for(x.shape)))
    return "digit | Grad-CAM over it, built-in PNG writer"

