"""``refcam golden MODEL INPUTS... --store DIR`` and ``refcam compare --store DIR CANDIDATES``: a whole dataset."""
from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from ..errors import LabelError, RefcamError
from .common import EXIT_OK, EXIT_PARTIAL
from .options import prepare


def add_store_arguments(golden: argparse.ArgumentParser) -> None:
    """The options of ``refcam golden`` for a dataset run."""
    group = golden.add_argument_group(
        "a whole dataset (docs/dataset.md)", "--store writes one golden file per item into a store folder; a rerun "
        "resumes it (finished items are kept)")
    group.add_argument("--store", metavar="DIR", help="the store folder (created if new)")
    group.add_argument("--batch-size", type=int, default=8, metavar="N", help="items per task (default 8)")
    group.add_argument("--workers", type=int, default=None, metavar="N",
                       help="a local Dask cluster of N worker processes (needs refcam[dask])")
    group.add_argument("--dask", metavar="ADDRESS", default=None,
                       help="the scheduler of a running Dask cluster, e.g. tcp://10.0.0.5:8786 (the store must be "
                            "on a file system its workers share)")
    group.add_argument("--retry-failed", action="store_true", help="recompute the items that failed before")


def run_golden_store(args: argparse.Namespace) -> int:
    """A dataset run: exit 0 when every item is finished, 1 when some failed or were lost."""
    from ..dataset import local_client, run
    if args.output is not None:
        raise RefcamError("--store and -o both say where to write; give one (--store: a folder of goldens).")
    if args.workers is not None and args.dask is not None:
        raise RefcamError("--workers starts a local cluster and --dask names a running one; give one of them.")
    setup = prepare(args)
    labels = setup.labels
    if labels == "top5":
        raise LabelError("--label top5 is not available for a dataset run; give top1 (the default) or labels.")
    options = {name: value for name, value in (
        ("feature_layer", args.feature_layer), ("reduction_layer", args.reduction_layer),
        ("upsampling", args.upsampling), ("dtype", args.dtype),
        ("device", None if args.device == "auto" else args.device)) if value is not None}
    distributed = args.workers is not None or args.dask is not None
    cluster = local_client(args.workers or 1, args.dask) if distributed else contextlib.nullcontext()
    with cluster as client, _progress_bar() as progress:
        summary = run(setup.net, args.input, args.store, labels=None if labels == "top1" else _one_each(labels),
                      method=args.method, convention=args.convention, format=args.format,
                      preprocessing=setup.preprocessing, reduction=args.reduction, batch_size=args.batch_size,
                      client=client, retry_failed=args.retry_failed, progress=progress,
                      csv_orientation=args.csv_orientation, **options)
    print(summary)
    return EXIT_OK if not summary.failures else EXIT_PARTIAL


def _one_each(labels: Any) -> Any:
    """``--label``: one label for every item (a list of one), or one per item."""
    if labels is None or isinstance(labels, str):
        return labels
    return labels[0] if len(labels) == 1 else labels


@contextlib.contextmanager
def _progress_bar() -> Any:
    """``progress(finished, total, item_id)``: tqdm on standard error when installed and a terminal, else None."""
    bar = None
    if sys.stderr.isatty():
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        if tqdm is not None:
            bar = tqdm(unit="item", file=sys.stderr)

    def progress(finished: int, total: int, item_id: str) -> None:
        bar.total = total
        bar.n = finished
        bar.set_postfix_str(item_id[-40:])
    try:
        yield None if bar is None else progress
    finally:
        if bar is not None:
            bar.close()


def run_compare_store(args: argparse.Namespace) -> int:
    """``refcam compare --store DIR CANDIDATES``: per-item and aggregate results; exit 1 unless all pass."""
    from ..dataset import compare_store
    if len(args.paths) != 1:
        raise RefcamError("refcam compare --store DIR takes one CANDIDATES path (a folder of <item>.npy/.npz, or "
                          f"one .npz keyed by item id), not {len(args.paths)}.")
    report = compare_store(args.store, args.paths[0], preset=args.preset, rtol=args.rtol, atol=args.atol)
    print(report)
    return EXIT_OK if report.all_passed else EXIT_PARTIAL
