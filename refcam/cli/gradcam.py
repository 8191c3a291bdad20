"""``refcam gradcam MODEL INPUT...``: maps and pictures of images, arrays and sequences; failed inputs are skipped."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..errors import RefcamError
from .common import (EXIT_EMPTY, EXIT_ERROR, EXIT_OK, EXIT_PARTIAL, MODEL_HELP, OutputTargets, describe_error,
                     expand_inputs, read_input, show_traceback, size_text, unit_interval, without_path)
from .options import Setup, add_cam_options, choose_score, empty_map_problem, labels_per_input, prepare, score_text
from .pictures import FIGURES, Style, picture_style
from .progress import Progress

SUMMARY = "Grad-CAM maps of images, arrays or sequences: overlay PNGs and .npy maps."
EPILOG = """\
examples:
  refcam gradcam net.h5 cat.png                        predicted class; writes cat_gradcam.png/.npy here
  refcam gradcam resnet18.onnx cat.jpg --preprocess imagenet-torchvision --classes imagenet.txt
  refcam gradcam net.h5 cat.png --label top5           the five best classes, one map each
  refcam gradcam net.h5 cat.png --figure overlay       a titled figure with a colour bar (matplotlib)
  refcam gradcam net.h5 cat.png --figure panel --colormap viridis    image | map | overlay
  refcam gradcam net.h5 cat.png --method layercam      another CAM method (refcam.explain)
  refcam gradcam net.h5 cat.png --label tabby -o out/  the class "tabby"; writes into out/
  refcam gradcam net.h5 cat.png -o cat_map.npy         only the map, as .npy
  refcam gradcam net.h5 photos/ --label 3              a folder; label = 0-based class index 3
  refcam gradcam net.h5 a.png b.png --label cat dog    one label per input
  refcam gradcam vowels.h5 seq.csv --csv-orientation feature-rows
  refcam gradcam net.h5 x.npy --format CSS --feature-layer relu_3 --reduction-layer fc
  refcam gradcam net.h5 cat.png --convention pytorch-grad-cam

Without --label: the predicted class, the top-1 of the reduction layer's output (softmax or
logits), as MATLAB's examples do with classify; --reduction sum differentiates the sum of that
output instead. A label is a class name (from the network or --classes FILE), a 0-based class
index (MATLAB's indices are 1-based), top1 or top5. Images are preprocessed as --preprocess says,
else as the network declares (refcam info), else with the preset none (MATLAB's squash)."""


def add_arguments(gradcam: argparse.ArgumentParser) -> None:
    """The arguments of ``refcam gradcam``."""
    gradcam.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    gradcam.add_argument("inputs", metavar="INPUT", nargs="+",
                         help="images (.png .jpg .jpeg .bmp .tif), arrays (.npy), sequences (.csv), or folders")
    add_cam_options(gradcam)
    gradcam.add_argument("-o", "--output", default=".", metavar="OUT",
                         help="a folder (default: the current one; created if missing), or for one input a file "
                              "name ending in .png (only the overlay) or .npy (only the map)")
    gradcam.add_argument("--png", action=argparse.BooleanOptionalAction, default=True,
                         help="write overlay/figure PNGs (default: yes)")
    gradcam.add_argument("--npy", action=argparse.BooleanOptionalAction, default=True,
                         help="write the maps as .npy, MATLAB's map layout (default: yes)")
    gradcam.add_argument("--figure", choices=FIGURES, default="plain",
                         help="plain (default): the map over the image, one PNG pixel per image pixel, no "
                              "matplotlib needed; overlay: a titled figure (class, score, layer) with a colour bar; "
                              "panel: image | map | overlay side by side; several labels of an image make one grid "
                              "(overlay and panel need matplotlib)")
    gradcam.add_argument("--colormap", default="jet", metavar="NAME",
                         help="jet (default, MATLAB's), viridis, turbo or any matplotlib colormap name "
                              "(all but jet need matplotlib)")
    gradcam.add_argument("--alpha", type=unit_interval, default=0.5,
                         help="opacity of the map over the image, in [0, 1] (0.5)")
    gradcam.add_argument("--allow-empty", action="store_true",
                         help="exit 0, not 4, when a map is zero everywhere or not finite (the warning stays)")


def run_gradcam(args: argparse.Namespace) -> int:
    """``refcam gradcam MODEL INPUT...``: maps and overlays; failed inputs are reported and skipped."""
    setup = prepare(args)
    style = picture_style(args)
    files, problems = expand_inputs(args.inputs)
    targets = OutputTargets.from_args(args, files)
    per_input = labels_per_input(setup.labels, len(files)) if files else []
    failures, empty = list(problems), []
    done = 0
    with Progress(len(files)) as bar:
        for path, label, stem in zip(files, per_input, targets.stems):
            bar.describe(os.path.basename(path))
            try:
                line, problem = process_one(setup, path, label, stem, targets, args, style)
                bar.write(line)
                done += 1
            except (RefcamError, OSError) as err:
                show_traceback(args)
                failures.append((path, without_path(describe_error(err), path)))
                bar.write(f"refcam gradcam: error: {path}: {failures[-1][1]}", sys.stderr)
            else:
                if problem is not None:
                    empty.append(path)
                    bar.write(f"refcam gradcam: warning: {path}: {problem}; choose another --label or "
                              "--feature-layer" + ("." if args.allow_empty else
                                                   f" (exit code {EXIT_EMPTY}; --allow-empty accepts it)."),
                              sys.stderr)
            bar.advance()
    for note in targets.notes:
        print(f"note: {note}")
    total = len(files) + len(problems)
    if total > 1:
        print(f"summary: {total} inputs, {done} done, {len(failures)} failed"
              + (f", {len(empty)} empty" if empty else "")
              + "".join(f"\n  failed: {path}: {message}" for path, message in failures))
    elif problems:
        print(f"refcam gradcam: error: {problems[0][0]}: {problems[0][1]}", file=sys.stderr)
    if failures:
        return EXIT_PARTIAL if done else EXIT_ERROR   # some written, or nothing
    return EXIT_EMPTY if empty and not args.allow_empty else EXIT_OK


def process_one(setup: Setup, path: str, label: Any, stem: str, targets: OutputTargets, args: argparse.Namespace,
                style: Style) -> tuple[str, str | None]:
    """Read, compute and write one input; returns its log line and why its map is empty (or None)."""
    net = setup.net
    item = read_input(path, net, args.format, args.csv_orientation, setup.preprocessing)
    prediction = choose_score(net, item, label, args)
    from . import compute            # looked up on refcam.cli at call time, so that it can be replaced there
    result = compute(net, item, prediction, args)
    written = targets.write(stem, net, item, result, prediction, style)
    notes = "".join(f"; {note}" for note in item.notes)
    method = "" if args.method == "gradcam" else f"method {args.method}, "
    line = (f"{path}: {item.description}{notes}; {score_text(prediction, result, net.classes)}; {method}"
            f"feature layer {result.feature_layer!r}, reduction layer {result.reduction_layer!r}; map "
            f"{size_text(result.map.shape)} -> " + (", ".join(written) if written else "nothing written"))
    return line, empty_map_problem(result.map)

