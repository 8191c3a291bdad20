"""``refcam compare GOLDEN CANDIDATE``: a candidate map or stages against a golden file."""
from __future__ import annotations

import argparse
import os
from typing import Any

import numpy as np

from ..errors import InputError, RefcamError
from .common import EXIT_OK, EXIT_PARTIAL, one_line
from .dataset import run_compare_store

SUMMARY = "Compare a candidate map (.npy) or stages (.npz) with a golden file."
EPILOG = """\
examples:
  refcam compare cat.golden.h5 my_map.npy                    the map, default float64 tolerance
  refcam compare cat.golden.h5 my_map.npy --rtol 1e-5        a looser tolerance
  refcam compare cat.golden.h5 stages.npz                    several stages: arrays named activations,
                                                             scores, gradients, weights, raw_map, map
  refcam compare cat.golden.h5 my_map.npy --network model.onnx   a golden written with --no-network
  refcam compare --store photos.store my_maps/               every item of a dataset store: pass rate,
                                                             worst items, error histogram

Exit code 0 when every stage (every item) is within tolerance, 1 when one is not."""


def add_arguments(compare: argparse.ArgumentParser) -> None:
    """The arguments of ``refcam compare``."""
    compare.add_argument("paths", metavar="GOLDEN CANDIDATE", nargs="+",
                         help="a golden file written by refcam golden and the candidate map (.npy, the golden's "
                              "map layout) or stages (.npz); with --store, only CANDIDATES: a folder of "
                              "<item>.npy/.npz files or one .npz keyed by item id")
    compare.add_argument("--store", metavar="DIR", default=None,
                         help="score a whole dataset store written by refcam golden --store (docs/dataset.md)")
    compare.add_argument("--rtol", type=float, default=None, help="relative tolerance (of max |golden|)")
    compare.add_argument("--atol", type=float, default=None, help="absolute tolerance")
    compare.add_argument("--preset", default="float64",
                         help="tolerance preset: float64 (default) or float32, or a refcam.testing.TOLERANCES key")
    compare.add_argument("--network", default=None, metavar="FILE",
                         help="the network file of a golden written with --no-network (default: the file of the "
                              "recorded name beside the golden); its SHA-256 is checked")


def run_compare(args: argparse.Namespace) -> int:
    """``refcam compare GOLDEN CANDIDATE``: print the report; exit 1 when out of tolerance."""
    from ..compare import compare

    if args.store is not None:
        return run_compare_store(args)
    if len(args.paths) != 2:
        raise RefcamError(f"refcam compare takes GOLDEN CANDIDATE (two paths), not {len(args.paths)}; a whole "
                          "dataset: refcam compare --store DIR CANDIDATES.")
    golden, candidate_path = args.paths
    candidate = read_candidate(candidate_path)
    report = compare(candidate, golden, rtol=args.rtol, atol=args.atol, preset=args.preset,
                     network_file=args.network)
    print(report)
    return EXIT_OK if report.passed else EXIT_PARTIAL


def read_candidate(path: str) -> Any:
    """A ``.npy`` map, or an ``.npz`` of named stages (a dict), loaded without pickles."""
    suffix = os.path.splitext(path)[1].lower()
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as arrays:
                return {name: arrays[name] for name in arrays.files}
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
    except ValueError as err:
        raise InputError(f"{path}: not a numeric NumPy file ({one_line(str(err))}).") from err
    raise InputError(f"{path}: a candidate is a .npy map or an .npz of named stages, not {suffix or 'this file'}.")

