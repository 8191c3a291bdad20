"""The hostile-file fuzzer under pytest: a seeded sample of the corpus, and a check that the runner detects failures.

``test_seeded_sample_has_no_failures`` runs 500 cases of the corpus (seed 0,
the same cases as ``python -m tests.fuzz``) and fails on any generic
exception, hang, memory blow-up or read outside the file, listing them. The
runner's own tests give it a stand-in ``refcam`` package (put first on the
workers' path) that misbehaves on purpose, so a fuzzer that stopped detecting
a kind of failure fails here instead of reporting a clean run.
"""
from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from tests.fuzz import corpus, report
from tests.fuzz.runner import run_cases

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fuzz runner uses Linux inotify")

SAMPLE_SEED = 0
SAMPLE_COUNT = 500
FAKE_REFCAM = '''
"""A refcam stand-in that misbehaves as BEHAVIOUR says (tests/fuzz/test_fuzz_sample.py)."""
import os
import time


class RefcamError(Exception):
    pass


BEHAVIOUR = {behaviour!r}


def load(path):
    if BEHAVIOUR == "generic":
        return {{}}["a KeyError"]
    if BEHAVIOUR == "hang":
        time.sleep(600)
    if BEHAVIOUR == "memory":
        return bytearray(16 * 1024 ** 3)
    if BEHAVIOUR == "outside-read":
        with open(os.path.join(os.path.dirname(path), "canary64.bin"), "rb") as f:
            f.read(8)
    raise RefcamError("refused")


def gradcam(*args, **kwargs):
    raise RefcamError("not reached")
'''


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> list:
    return corpus.generate(SAMPLE_SEED, tmp_path_factory.mktemp("fuzz-goldens"))


def test_seeded_sample_has_no_failures(cases: list) -> None:
    run = run_cases(corpus.sample(cases, SAMPLE_COUNT, SAMPLE_SEED))
    counts = report.outcome_counts(run.results)
    assert sum(counts.values()) == SAMPLE_COUNT
    assert counts["refcam-error"] > 0 and counts["ok"] > 0, counts        # the sample reaches both outcomes
    assert report.failure_lines(run.results) == [], "\n" + report.summary(run, "fuzz sample")


def test_the_corpus_holds_every_kind_and_the_named_mutations(cases: list) -> None:
    kinds = {case.source.kind for case in cases}
    assert kinds == {"refcam", "golden", "keras", "onnx"}
    mutations = {case.id.split("/")[2] for case in cases}
    assert len(cases) > 2000
    assert {"original", "huge-declared"} <= mutations


def test_the_corpus_is_the_same_for_the_same_seed(cases: list, tmp_path: Path) -> None:
    again = corpus.generate(SAMPLE_SEED, tmp_path)
    assert [case.id for case in again] == [case.id for case in cases]
    assert [case.mutation.description for case in again] == [case.mutation.description for case in cases]


@pytest.mark.parametrize("behaviour, outcome", [("generic", "generic-exception"), ("hang", "hang"),
                                                ("memory", "memory"), ("outside-read", "outside-read"),
                                                ("refuse", "refcam-error")])
def test_the_runner_detects_each_kind_of_failure(cases: list, tmp_path: Path, behaviour: str, outcome: str) -> None:
    fake = tmp_path / "fake" / "refcam"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(textwrap.dedent(FAKE_REFCAM.format(behaviour=behaviour)))
    (fake / "golden.py").write_text("def read(path):\n    from . import load\n    return load(path)\n")
    network_case = next(case for case in cases if case.id.startswith("refcam/") and "/original/" in case.id)
    run = run_cases([network_case], workers=1, timeout=5.0, refcam_path=str(fake.parent))
    assert run.refcam_file == str(fake / "__init__.py")
    assert [result.outcome for result in run.results] == [outcome], run.results
