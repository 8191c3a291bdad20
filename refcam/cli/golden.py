"""``refcam golden MODEL INPUT -o GOLDEN``: one run with every intermediate, written as a golden file."""
from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import RefcamError
from .common import EXIT_OK, MODEL_HELP, read_input, size_text
from .dataset import add_store_arguments, run_golden_store
from .options import add_cam_options, choose_score, prepare, score_text

SUMMARY = "Compute Grad-CAM of one input and write a golden file (every intermediate)."
EPILOG = """\
examples:
  refcam golden net.h5 cat.png -o cat.golden.h5
  refcam golden net.h5 cat.png -o cat.golden.h5 --label tabby --feature-layer relu_5
  refcam golden net.h5 x.npy -o x.golden.h5 --dtype float32 --convention captum
  refcam golden model.onnx cat.png -o cat.golden.h5 --no-network   names model.onnx by its SHA-256
  refcam golden net.h5 photos/ --store photos.store                 one golden per photo, resumable
  refcam golden net.h5 'val/*.png' --store val.store --workers 2    on a local Dask cluster

The file format is in docs/golden-format.md; read it with refcam.golden.read. --method records another
CAM method (guided backpropagation excepted: refcam gradcam --method writes its map)."""


def add_arguments(golden: argparse.ArgumentParser) -> None:
    """The arguments of ``refcam golden``."""
    golden.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    golden.add_argument("input", metavar="INPUT", nargs="+",
                        help="an image, .npy array or .csv sequence; with --store any number of images, folders, "
                             "glob patterns, .npy/.npz/file.h5:dataset arrays (one item per entry of the first axis) "
                             "or CSV lists (path,label)")
    add_cam_options(golden)
    golden.add_argument("-o", "--output", metavar="GOLDEN", help="the golden HDF5 file to write (one input)")
    golden.add_argument("--no-network", action="store_true",
                        help="do not embed the network: record MODEL's file name and SHA-256 (keep MODEL beside "
                             "the golden, or give refcam compare --network)")
    add_store_arguments(golden)


def network_text(written: Any, output: str) -> str:
    """How the golden holds its network, and its size on disk."""
    size = f"{os.path.getsize(output) / 1e6:.1f} MB"
    if written.network_file is None:
        return f"network embedded ({size}, SHA-256 {written.network_sha256[:12]}...)"
    return (f"network not embedded ({size}): it names {written.network_file} by SHA-256 "
            f"{written.network_sha256[:12]}...; keep that file beside the golden")


def run_golden(args: argparse.Namespace) -> int:
    """``refcam golden MODEL INPUT -o GOLDEN``: refcam.golden.write with the command-line options."""
    from .. import golden
    if args.store is not None:
        return run_golden_store(args)
    if len(args.input) != 1 or args.output is None:
        raise RefcamError("refcam golden MODEL INPUT -o GOLDEN writes one golden file: give one INPUT and -o (or "
                          "--store DIR for several inputs).")
    args.input = args.input[0]
    if args.method not in golden.record.GOLDEN_METHODS:
        raise RefcamError(f"--method {args.method}: golden files record the CAM methods "
                          f"{', '.join(golden.record.GOLDEN_METHODS)}; guided backpropagation's map is a gradient at "
                          f"the input: refcam gradcam MODEL INPUT --method {args.method} writes it.")

    setup = prepare(args)
    net, labels = setup.net, setup.labels
    item = read_input(args.input, net, args.format, args.csv_orientation, setup.preprocessing)
    label = labels if labels is None or isinstance(labels, str) else (labels[0] if len(labels) == 1 else labels)
    prediction = choose_score(net, item, label, args)
    options = {} if args.upsampling is None else {"upsampling": args.upsampling}
    written = golden.write(args.output, net, item.x, prediction.label, reduction=prediction.reduction,
                           convention=args.convention, feature_layer=args.feature_layer,
                           reduction_layer=args.reduction_layer, format=item.format, device=args.device,
                           dtype=args.dtype, network_file=args.model if args.no_network else None,
                           method=args.method, **options)
    notes = "".join(f"; {note}" for note in item.notes)
    print(f"{args.input}: {item.description}{notes}; {score_text(prediction, written, net.classes)}")
    method = "" if written.method == "gradcam" else f"method {written.method}, "
    print(f"wrote {args.output}: {method}convention {written.convention}, feature layer {written.feature_layer!r}, "
          f"reduction layer {written.reduction_layer!r}, map {size_text(written.map.shape)} "
          f"({written.map_axes}), {written.dtype}; " + network_text(written, args.output))
    return EXIT_OK

