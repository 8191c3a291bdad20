"""``refcam.dataset.run``: golden files for every item of a dataset, serially or on a Dask cluster, resumable.

Each item is computed alone, by the same call :func:`refcam.golden.write`
makes (:func:`refcam.explain`, so ``refcam.gradcam`` for Grad-CAM in MATLAB's
convention): its map is bit-identical to a single call on it. Batches are only
the unit of work handed to a process. A Dask worker loads the store's network
once (a cache of one network per process, keyed by its SHA-256, checked) and
writes its items' golden files into the store itself (atomic renames, see
:mod:`refcam.dataset.store`), so the store must be on a file system the
workers share; the client only gathers each item's status.

A worker that dies mid-batch loses nothing: Dask reruns the batch elsewhere,
finished items are skipped, and an item written twice is written with the
same bytes. A batch Dask gives up on (``KilledWorker`` after its retries)
leaves its items pending, counted as "lost" in the summary, for the next run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

from ..errors import OptionalDependencyError, RefcamError
from ..golden.writer import file_sha256, write_referenced
from ..io import load, save
from ..network import Network
from . import items as item_sources
from .items import Item
from .store import STORE_FORMAT, STORE_VERSION, Store, item_attributes, open_store

Progress = Callable[[int, int, str], None]


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """What every item is computed with (picklable: it travels to Dask workers)."""

    method: str = "gradcam"
    convention: str = "matlab"
    options: tuple[tuple[str, Any], ...] = ()
    format: str | None = None
    preprocessing: Any = None
    reduction: str | None = None
    csv_orientation: str = "time-rows"

    def settings(self, network_sha256: str, network_name: str | None) -> dict[str, Any]:
        """The store's ``store.json``."""
        from .. import __version__
        preprocessing = None if self.preprocessing is None else self.preprocessing.to_dict()
        return {"format": STORE_FORMAT, "store_version": STORE_VERSION, "refcam_version": __version__,
                "network_sha256": network_sha256, "network_name": network_name or "", "method": self.method,
                "convention": self.convention, "options": dict(self.options), "input_format": self.format,
                "preprocessing": preprocessing, "reduction": self.reduction,
                "csv_orientation": self.csv_orientation}


@dataclasses.dataclass(frozen=True)
class ItemOutcome:
    """One item of this run: ``"done"``, ``"failed"`` (with the error; also an item that failed in an earlier
    run and was not retried), ``"skipped"`` (finished before) or
    ``"lost"`` (its batch's worker died more often than Dask retries; pending for the next run)."""

    id: str
    status: str
    message: str = ""
    seconds: float = 0.0


@dataclasses.dataclass
class Summary:
    """What a run did; ``str()`` is the closing line of the command."""

    store: str
    outcomes: list[ItemOutcome]
    seconds: float

    def count(self, status: str) -> int:
        return sum(outcome.status == status for outcome in self.outcomes)

    @property
    def failures(self) -> list[ItemOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status in ("failed", "lost")]

    @property
    def items_per_second(self) -> float:
        return self.count("done") / self.seconds if self.seconds > 0 else 0.0

    def __str__(self) -> str:
        counts = ", ".join(f"{self.count(status)} {status}" for status in ("done", "failed", "skipped", "lost"))
        total = len(self.outcomes)
        lines = [f"{self.store}: {total} item{'' if total == 1 else 's'}: {counts} in {self.seconds:.1f} s "
                 f"({self.items_per_second:.2f} items/s)"]
        lines += [f"  {outcome.status}: {outcome.id}: {outcome.message}" for outcome in self.failures[:20]]
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more (the .error.json files of the store)")
        return "\n".join(lines)


def run(network: str | os.PathLike | Network, inputs: Any, store: str | os.PathLike, *, labels: Any = None,
        method: str = "gradcam", convention: str = "matlab", format: str | None = None, preprocessing: Any = None,
        reduction: str | None = None, batch_size: int = 8, client: Any = None, retry_failed: bool = False,
        progress: Progress | None = None, csv_orientation: str = "time-rows", **options: Any) -> Summary:
    """Golden files for every item of ``inputs`` in the store folder ``store``; the items already there are kept.

    Parameters
    ----------
    network : path or Network
        The network (any file :func:`refcam.load` reads, or a loaded one).
    inputs : path, pattern or sequence of them
        The items (:mod:`refcam.dataset.items`: images, folders, globs, .npy,
        .npz, ``file.h5:dataset``, CSV lists).
    store : path
        The store folder (:mod:`refcam.dataset.store`), created if new; an
        existing store must have been made with the same network and options.
    labels : None, a label, or one per item
        None: each item's label from a CSV list, else the predicted top-1 of the
        reduction layer (as ``refcam gradcam``). A label is a 0-based index or a
        class name.
    method, convention, format, **options
        As for :func:`refcam.golden.write` (``feature_layer``, ``upsampling``,
        ``dtype``, the method's options...).
    preprocessing : Preprocessing, preset name or dict, optional
        For image items; default: the network's own (``net.preprocessing``), else none.
    reduction : "sum", optional
        The score is the reduction layer's output summed (regression).
    batch_size : int
        Items per unit of work (per Dask task).
    client : dask.distributed.Client, optional
        Distribute the batches on its cluster; without it, one process.
    retry_failed : bool
        Recompute the items that failed before (default: keep their error).
    progress : callable, optional
        ``progress(finished, total, item_id)`` after each item (each batch with Dask).

    Returns
    -------
    Summary
        Each item's outcome and the counts; failed items are also in the store
        (``<item>.error.json``).

    Examples
    --------
    >>> summary = refcam.dataset.run("net.h5", "photos/", "photos.store")           # doctest: +SKIP
    >>> print(summary)                                                             # doctest: +SKIP
    photos.store: 120 items: 118 done, 2 failed, 0 skipped, 0 lost in 9.8 s (12.04 items/s)
    """
    start = time.perf_counter()
    if batch_size < 1:
        raise RefcamError(f"batch_size must be a positive integer, not {batch_size!r}.")
    net = network if isinstance(network, Network) else load(network)
    options.setdefault("dtype", "float64")             # recorded explicitly: a rerun that says it matches
    spec = RunSpec(method, convention, tuple(sorted(options.items())), format,
                   _preprocessing(net, preprocessing), reduction, csv_orientation)
    chosen = item_sources.collect(inputs, labels)
    with tempfile.TemporaryDirectory() as folder:       # the network saved once: its SHA-256, then the store's copy
        saved = os.path.join(folder, "network.h5")
        save(net, saved, compact=True)
        network_sha256 = file_sha256(saved)
        target = open_store(store, spec.settings(network_sha256, net.name), lambda path: shutil.copyfile(saved, path))
    target.remove_temporaries()
    reference = (os.path.basename(target.network_file), network_sha256)
    outcomes: dict[str, ItemOutcome] = {}
    pending = []
    for item in chosen:
        status = target.status(item)
        if status == "done":
            outcomes[item.id] = ItemOutcome(item.id, "skipped", "finished before")
        elif status == "failed" and not retry_failed:
            outcomes[item.id] = ItemOutcome(item.id, "failed", "failed before (retry_failed=True, --retry-failed, "
                                            f"computes it again): {target.error(item)['message']}")
        else:
            pending.append(item)
    batches = [pending[i:i + batch_size] for i in range(0, len(pending), batch_size)]
    report = _reporter(progress, len(chosen), len(outcomes))
    if client is None:
        for batch in batches:
            for outcome in compute_batch(target.path, spec, batch, reference, net):
                outcomes[outcome.id] = outcome
                report(outcome.id)
    else:
        for outcome in _run_on_cluster(client, target, spec, batches, reference, report):
            outcomes[outcome.id] = outcome
        target.remove_temporaries()                     # what a killed worker left, now that every task is done
    return Summary(target.path, [outcomes[item.id] for item in chosen], time.perf_counter() - start)


def _preprocessing(net: Network, preprocessing: Any) -> Any:
    """The given preprocessing, else the network's, else the preset "none" (what ``refcam gradcam`` chooses)."""
    from ..preprocess import PRESETS, get_preprocessing
    if preprocessing is None:
        return net.preprocessing or PRESETS["none"]
    return get_preprocessing(preprocessing)


def _reporter(progress: Progress | None, total: int, already: int) -> Callable[[str], None]:
    finished = [already]

    def report(item_id: str) -> None:
        finished[0] += 1
        if progress is not None:
            progress(finished[0], total, item_id)
    return report


def compute_batch(store_path: str, spec: RunSpec, batch: Sequence[Item], reference: tuple[str, str],
                  net: Network | None = None) -> list[ItemOutcome]:
    """Compute and write every item of ``batch`` (a Dask task, or one step of a serial run); ``reference``: the
    store's network file name and SHA-256; ``net``: that network, else loaded (once per process) from the store."""
    store = Store(store_path)
    if net is None:
        net = _store_network(store.network_file, reference[1])
    return [_compute_item(store, spec, item, net, reference) for item in batch]


@functools.lru_cache(maxsize=1)
def _store_network(path: str, sha256: str) -> Network:
    """The store's network, loaded once per process (a Dask worker) and checked against the store's SHA-256."""
    found = file_sha256(path)
    if found != sha256:
        raise RefcamError(f"{path}: SHA-256 {found[:12]}... is not the store's network ({sha256[:12]}...); the "
                          "file was changed: start a new store.")
    return load(path)


def _compute_item(store: Store, spec: RunSpec, item: Item, net: Network,
                  reference: tuple[str, str]) -> ItemOutcome:
    if store.status(item) == "done":                  # a rerun batch (a worker died after writing it)
        return ItemOutcome(item.id, "skipped", "finished before")
    start = time.perf_counter()
    try:
        x, layout = item_sources.read(item, net, format=spec.format, preprocessing=spec.preprocessing,
                                      csv_orientation=spec.csv_orientation)
        label, reduction = _score(net, item, x, layout, spec)
        store.write_atomically(store.golden_file(item), lambda path: write_referenced(
            path, net, x, label, reference, reduction=reduction, convention=spec.convention, method=spec.method,
            attributes=item_attributes(item), format=layout, **dict(spec.options)))
    except Exception as err:                            # a bad item is recorded and the run goes on
        store.record_error(item, err)
        return ItemOutcome(item.id, "failed", f"{type(err).__name__}: {err}", time.perf_counter() - start)
    store.clear_error(item)
    return ItemOutcome(item.id, "done", "", time.perf_counter() - start)


def _score(net: Network, item: Item, x: Any, layout: str, spec: RunSpec) -> tuple[Any, Any]:
    """(label, reduction) of one item: the summed output, the item's label, or the predicted top-1."""
    from ..cam.selection import default_reduction_layer
    from ..cam.selection import sum_of_outputs
    from ..labels import parse_label, top_classes
    if spec.reduction == "sum":
        return None, sum_of_outputs
    if isinstance(item.label, str):
        return parse_label(item.label, net.classes), None
    if item.label is not None:
        return int(item.label), None
    options = dict(spec.options)
    layer = net.resolve(options.get("reduction_layer") or default_reduction_layer(net))
    reduced = net.activations(x, [layer], format=layout, dtype=options.get("dtype", "float64"))[layer]
    return top_classes(reduced, 1)[0].index, None


def _run_on_cluster(client: Any, store: Store, spec: RunSpec, batches: list[list[Item]], reference: tuple[str, str],
                    report: Callable[[str], None]) -> Iterable[ItemOutcome]:
    """Each batch a task (two retries); outcomes as the tasks finish."""
    from distributed import as_completed
    futures = {client.submit(compute_batch, store.path, spec, batch, reference, pure=False, retries=2): batch
               for batch in batches}
    for future in as_completed(futures):
        try:
            outcomes = future.result()
        except Exception as err:                        # KilledWorker after the retries, a lost connection
            outcomes = [ItemOutcome(item.id, "lost", f"{type(err).__name__}: {err}") for item in futures[future]]
        for outcome in outcomes:
            report(outcome.id)
            yield outcome


DASK_HINT = 'pip install "refcam[dask]" (dask and distributed)'


@contextlib.contextmanager
def local_client(workers: int = 2, address: str | None = None) -> Iterator[Any]:
    """A ``dask.distributed.Client``: on ``address`` (a running scheduler, ``tcp://host:8786``), or on a new
    ``LocalCluster`` of ``workers`` processes with one thread each (refcam's NumPy code is not thread-parallel
    per item); the cluster is closed on exit."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:
        raise OptionalDependencyError(f"distributing a dataset run needs Dask: {DASK_HINT}.") from err
    if address is not None:
        with Client(address) as client:
            yield client
        return
    if workers < 1:
        raise RefcamError(f"workers must be a positive integer, not {workers!r}.")
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            yield client
