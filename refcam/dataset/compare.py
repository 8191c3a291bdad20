"""``refcam.dataset.compare_store``: another implementation's outputs for a whole dataset, scored item by item.

Candidates, per item of the store (``<item>`` = the golden's file stem,
:attr:`refcam.dataset.items.Item.file_stem`, or the item id):

* a folder holding ``<item>.npy`` (the map) or ``<item>.npz`` (any stages
  :func:`refcam.compare` takes: ``map``, ``activations``, ``gradients``...);
* one ``.npz`` archive whose keys are the item ids or stems (each the map).

Each item is :func:`refcam.compare` of its candidate with its golden file (the
store's network file beside it). The error of an item is its final stage's
``max |c - g| / max |g|``; an item without a candidate fails as "missing".
"""
from __future__ import annotations

import dataclasses
import glob
import math
import os
from typing import Any

import numpy as np

from ..compare import compare
from ..errors import RefcamError
from .store import DONE_SUFFIX, NETWORK_FILE, item_of

HISTOGRAM_EDGES = tuple(10.0 ** e for e in range(-16, 1, 2))


@dataclasses.dataclass(frozen=True)
class ItemScore:
    """One item: passed, the first failing stage (``"missing"``: no candidate), the final stage's error."""

    id: str
    passed: bool
    first_divergence: str | None
    error: float


@dataclasses.dataclass
class StoreComparison:
    """Every item's score; the pass rate, the worst items and a histogram of the errors; ``str()`` the report."""

    store: str
    scores: list[ItemScore]

    @property
    def passed(self) -> int:
        return sum(score.passed for score in self.scores)

    @property
    def all_passed(self) -> bool:
        return bool(self.scores) and self.passed == len(self.scores)

    def worst(self, count: int = 10) -> list[ItemScore]:
        """The failing items first, then by error, largest first."""
        ranked = sorted(self.scores, key=lambda s: (s.passed, -(s.error if math.isfinite(s.error) else math.inf)))
        return ranked[:count]

    def histogram(self) -> list[tuple[str, int]]:
        """Counts of the finite errors per decade pair (``< 1e-16``, ``[1e-16, 1e-14)`` ... ``>= 1``), and missing."""
        errors = np.array([s.error for s in self.scores if math.isfinite(s.error)])
        edges = (0.0,) + HISTOGRAM_EDGES + (math.inf,)
        counts = np.histogram(errors, bins=edges)[0] if errors.size else np.zeros(len(edges) - 1, int)
        labels = [f"< {HISTOGRAM_EDGES[0]:.0e}"]
        labels += [f"[{lo:.0e}, {hi:.0e})" for lo, hi in zip(HISTOGRAM_EDGES[:-1], HISTOGRAM_EDGES[1:])]
        labels += [f">= {HISTOGRAM_EDGES[-1]:.0e}"]
        rows = list(zip(labels, (int(c) for c in counts)))
        rows.append(("missing or not finite", sum(not math.isfinite(s.error) for s in self.scores)))
        return rows

    def __str__(self) -> str:
        total = len(self.scores)
        rate = 100.0 * self.passed / total if total else 0.0
        plural = "" if total == 1 else "s"
        lines = [f"{self.store}: passed {self.passed} of {total} item{plural} ({rate:.1f}%)", "worst items:"]
        lines += [f"  {'PASS' if s.passed else 'FAIL'} {s.error:10.3e}  {s.first_divergence or '-':12s} {s.id}"
                  for s in self.worst()]
        lines.append("errors (max |c - g| / max |g| of the final stage):")
        lines += [f"  {label:>22s}  {count}" for label, count in self.histogram() if count]
        return "\n".join(lines)


def compare_store(store: str | os.PathLike, candidates: str | os.PathLike, *, preset: str = "float64",
                  rtol: float | None = None, atol: float | None = None) -> StoreComparison:
    """Score ``candidates`` (module docstring) against every finished item of ``store``.

    >>> report = refcam.dataset.compare_store("photos.store", "my_maps/")        # doctest: +SKIP
    >>> report.passed, len(report.scores)                                        # doctest: +SKIP
    (118, 118)
    """
    store = os.fspath(store)
    goldens = sorted(glob.glob(os.path.join(glob.escape(store), "*" + DONE_SUFFIX)))
    if not goldens:
        raise RefcamError(f"{store}: no finished items (*{DONE_SUFFIX}); is it a dataset store?")
    find = _candidate_finder(os.fspath(candidates))
    network_file = os.path.join(store, NETWORK_FILE)
    scores = []
    for golden in goldens:
        item_id = item_of(golden)["id"]
        stem = os.path.basename(golden)[:-len(DONE_SUFFIX)]
        candidate = find(item_id, stem)
        if candidate is None:
            scores.append(ItemScore(item_id, False, "missing", math.inf))
            continue
        report = compare(candidate, golden, preset=preset, rtol=rtol, atol=atol, network_file=network_file)
        scores.append(ItemScore(item_id, report.passed, report.first_divergence, report.final.error_over_max))
    return StoreComparison(store, scores)


def _candidate_finder(candidates: str) -> Any:
    """``find(item_id, stem) -> candidate or None`` for a folder or an .npz archive."""
    if os.path.isdir(candidates):
        def from_folder(item_id: str, stem: str) -> Any:
            for suffix in (".npz", ".npy"):
                path = os.path.join(candidates, stem + suffix)
                if os.path.isfile(path):
                    if suffix == ".npy":
                        return np.load(path, allow_pickle=False)
                    with np.load(path, allow_pickle=False) as archive:
                        return {key: archive[key] for key in archive.files}
            return None
        return from_folder
    if candidates.lower().endswith(".npz") and os.path.isfile(candidates):
        with np.load(candidates, allow_pickle=False) as archive:
            maps = {key: archive[key] for key in archive.files}
        return lambda item_id, stem: maps.get(item_id, maps.get(stem))
    raise RefcamError(f"{candidates}: give a folder of <item>.npy / <item>.npz files or one .npz archive keyed by "
                      "item id.")
