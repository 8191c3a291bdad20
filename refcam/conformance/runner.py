"""Run an implementation under test over the suite and score it: the adapter protocol and the scorecard.

**The adapter** is any callable ``run(case) -> result``. ``case`` is a
:class:`Case`: its ``id``, ``description`` and ``network`` name, the files (``network_file``: refcam HDF5; ``onnx_file``: the
same network as ONNX, or None), the input both in MATLAB's layout
(``input``, described by ``format``) and in the channels-first layout most
frameworks use (``input_nchw``: batch, channels, spatial axes), the score
(``labels``: 0-based class indices, or None with ``reduction="sum"``: the
reduction layer's output summed; ``mask``: where a segmentation score is
summed), the layers (``feature_layer``, ``reduction_layer``, always named),
``method``, ``convention``, ``options`` (as given to :func:`refcam.explain`;
``upsampling`` when not the default) and ``dtype``. The result is the map
(MATLAB's layout, refcam's ``.map``: spatial axes, then labels when there are
several, then batch when there are several), or a dict with ``"map"`` and
any of ``"activations"`` (B, C, *S), ``"scores"`` (K, B), ``"gradients"``
(K, B, C, *S), ``"weights"`` (K, B, C), ``"raw_map"``: every stage given is
compared, in pipeline order, and the first that fails is named
(:func:`refcam.compare`).

**Scoring**: a case passes when every stage given is within the tolerance of
its dtype (``TOLERANCES["golden-float64"]`` or ``["golden-float32"]``); an
adapter that raises fails the case with its message.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import importlib
import json
import os
import tempfile
import traceback
from typing import Any, Callable, Iterator
from xml.sax.saxutils import escape, quoteattr

import numpy as np

from ..compare import ADVICE, compare
from ..errors import RefcamError
from ..golden import read as read_golden
from .build import build, read_manifest

Adapter = Callable[["Case"], Any]


@dataclasses.dataclass(frozen=True)
class Case:
    """What an adapter gets for one case (module docstring)."""

    id: str
    description: str
    network: str
    network_file: str
    onnx_file: str | None
    input: np.ndarray
    format: str
    input_nchw: np.ndarray
    labels: tuple[int, ...] | None
    reduction: str | None
    mask: np.ndarray | None
    feature_layer: str
    reduction_layer: str
    method: str
    convention: str
    options: dict[str, Any]
    dtype: str
    golden_file: str


@dataclasses.dataclass
class CaseScore:
    """One case's outcome: passed, the first stage that failed, its error relative to the golden's max, a hint."""

    id: str
    passed: bool
    first_divergence: str | None
    error: float
    stages: tuple[str, ...]
    hint: str

    def row(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        stage = self.first_divergence or "-"
        return f"{self.id:<38} {verdict}  {self.error:9.2e}  {stage:<12} {self.hint if not self.passed else ''}"


@dataclasses.dataclass
class Scorecard:
    """Every case's score; ``str()`` is the table the command line prints."""

    scores: list[CaseScore]
    suite_version: str
    refcam_version: str

    @property
    def passed(self) -> int:
        return sum(score.passed for score in self.scores)

    @property
    def all_passed(self) -> bool:
        return self.passed == len(self.scores)

    def __str__(self) -> str:
        head = f"{'case':<38} {'':4}  {'max err':>9}  {'first fail':<12} hint"
        lines = [head, "-" * len(head)] + [score.row() for score in self.scores]
        lines.append(f"passed {self.passed} of {len(self.scores)} cases (suite version {self.suite_version}, "
                     f"refcam {self.refcam_version})")
        return "\n".join(lines)

    def to_json(self) -> str:
        """The scorecard as JSON: the summary and one object per case."""
        return json.dumps({"suite_version": self.suite_version, "refcam_version": self.refcam_version,
                           "passed": self.passed, "total": len(self.scores),
                           "cases": [dataclasses.asdict(score) for score in self.scores]}, indent=1)

    def to_junit(self) -> str:
        """The scorecard as a JUnit XML report (one testcase per case), for CI dashboards."""
        failures = len(self.scores) - self.passed
        cases = []
        for score in self.scores:
            body = "" if score.passed else (f"<failure message={quoteattr(f'{score.first_divergence}: {score.hint}')}>"
                                            f"{escape(f'max error {score.error:.3e}')}</failure>")
            cases.append(f'  <testcase classname="refcam.conformance" name={quoteattr(score.id)}>{body}</testcase>')
        return ("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
                f'<testsuite name="refcam-conformance-{self.suite_version}" tests="{len(self.scores)}" '
                f'failures="{failures}">\n' + "\n".join(cases) + "\n</testsuite>\n")


def load_adapter(spec: str) -> Adapter:
    """``"package.module:function"`` -> the callable (imported; a clear error when it is not there)."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise RefcamError(f"--adapter {spec!r}: write it as package.module:function.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise RefcamError(f"--adapter {spec!r}: cannot import {module_name!r} ({err}); is it on PYTHONPATH?") from err
    adapter = getattr(module, attribute, None)
    if not callable(adapter):
        raise RefcamError(f"--adapter {spec!r}: {module_name} has no callable {attribute!r}.")
    return adapter


def cases(folder: str | os.PathLike, pattern: str | None = None, dtype: str | None = None) -> Iterator[Case]:
    """The cases of the suite built in ``folder`` (ids matching the glob ``pattern``, of ``dtype``), files checked."""
    folder = os.path.abspath(os.fspath(folder))
    manifest = read_manifest(folder)
    for entry in manifest["cases"]:
        if pattern is not None and not fnmatch.fnmatch(entry["id"], pattern):
            continue
        if dtype is not None and entry["dtype"] != dtype:
            continue
        yield _case(folder, entry)


def _case(folder: str, entry: dict[str, Any]) -> Case:
    files = {role: os.path.join(folder, item["file"]) for role, item in entry["files"].items()}
    golden = read_golden(files["golden"])
    onnx_file = os.path.join(folder, f"{entry['network']}.onnx")
    return Case(id=entry["id"], description=entry["description"], network=entry["network"],
                network_file=os.path.join(folder, f"{entry['network']}.h5"),
                onnx_file=onnx_file if os.path.isfile(onnx_file) else None,
                input=np.load(files["input"]), format=entry["format"], input_nchw=golden.input_internal,
                labels=None if entry["labels"] is None else tuple(entry["labels"]), reduction=entry["reduction"],
                mask=np.load(files["mask"]) if "mask" in files else None, feature_layer=golden.feature_layer,
                reduction_layer=golden.reduction_layer, method=entry["method"], convention=entry["convention"],
                options=dict(entry["options"]), dtype=entry["dtype"], golden_file=files["golden"])


def run(adapter: Adapter, folder: str | os.PathLike | None = None, *, pattern: str | None = None,
        dtype: str | None = None, preset: str | None = None) -> Scorecard:
    """Score ``adapter`` on the suite in ``folder`` (default: the suite built afresh in a temporary folder).

    ``pattern`` (a glob over case ids) and ``dtype`` choose cases; ``preset``
    ("float32", or any key of :data:`refcam.testing.TOLERANCES`) replaces each
    case's own tolerance: an implementation that computes in float32 is scored
    on the float64 cases with ``preset="float32"``.

    Examples
    --------
    >>> from refcam.conformance.adapters.reference import run_refcam
    >>> card = run(run_refcam, pattern="series2d/default")
    >>> card.passed, len(card.scores)
    (1, 1)
    """
    if folder is None:
        with tempfile.TemporaryDirectory() as temporary:
            build(temporary)
            return run(adapter, temporary, pattern=pattern, dtype=dtype, preset=preset)
    manifest = read_manifest(folder)
    scores = [score_case(adapter, case, preset) for case in cases(folder, pattern, dtype)]
    if not scores:
        raise RefcamError(f"no case of the suite in {os.fspath(folder)!r} matches --cases {pattern!r}"
                          + (f" and --dtype {dtype}" if dtype else "") + "; 'refcam conformance list' shows them.")
    return Scorecard(scores, manifest["suite_version"], manifest["refcam_version"])


def score_case(adapter: Adapter, case: Case, preset: str | None = None) -> CaseScore:
    """Run ``adapter`` on one case and compare what it returns with the case's golden (tolerance: ``preset``, by
    default the case's dtype's)."""
    try:
        result = adapter(case)
    except Exception as err:          # the implementation under test failed: the case fails, the run goes on
        frame = traceback.extract_tb(err.__traceback__)[-1]
        return CaseScore(case.id, False, "adapter", float("inf"), (),
                         f"the adapter raised {type(err).__name__}: {err} ({os.path.basename(frame.filename)}:"
                         f"{frame.lineno})")
    try:
        report = compare(result, case.golden_file, preset=preset or case.dtype)
    except RefcamError as err:
        return CaseScore(case.id, False, "result", float("inf"), (), str(err))
    failed = report.first_divergence
    stage = report.stage(failed) if failed else report.final
    hint = (stage.hints[0] if stage.hints else ADVICE[failed]) if failed else ""
    error = stage.error_over_max if stage.shape_ok else float("inf")
    return CaseScore(case.id, report.passed, failed, float(error), tuple(s.name for s in report.stages), hint)
