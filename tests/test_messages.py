"""Words users read: assert_cam_close's message and options, compare's hints, and the pages' links and names.

* ``assert_cam_close``: pytest's summary line shows the first line of the
  AssertionError, so the report must start there; a misspelt option is a
  refcam error naming the valid ones.
* ``compare``'s hints: a map or alpha N times the golden (N the feature map's
  positions) says so; a single number gets no "shifted by" hint.
* README.md and docs/: every relative link resolves to a file of the
  repository; no page calls the examples of MATLAB's gradCAM page "the seed";
  no page names a folder of the machine the project is developed on.
"""
from __future__ import annotations

import glob
import os
import re

import numpy as np
import pytest

from refcam.compare import ComparisonError, compare, value_hints
from refcam.testing import TOLERANCES, assert_cam_close

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "**", "*.md"),
                                                             recursive=True))
LINK = re.compile(r"\]\(([^)\s]+)\)")
SEED_WORDING = re.compile(r"\b(?:the|a) seed\b|\bseed's\b", re.IGNORECASE)
OUTSIDE_PATHS = re.compile(r"\.\./shared\b|(?<![\w.])shared/(?:design|spec)\b|/work/")
F64 = TOLERANCES["float64"]


# --- assert_cam_close ----------------------------------------------------------------------------------
def test_assert_cam_close_message_starts_with_the_verdict() -> None:
    golden = np.random.default_rng(0).uniform(0.0, 1.0, (6, 7))
    with pytest.raises(AssertionError) as raised:
        assert_cam_close(golden * 1.5, golden)
    message = str(raised.value)
    assert not message.startswith("\n")
    assert message.splitlines()[0].startswith("refcam.compare: FAIL (preset 'float64'")


def test_assert_cam_close_names_the_valid_options() -> None:
    golden = np.ones((2, 3))
    with pytest.raises(ComparisonError, match=r"unknown option 'rtool'; the options are rtol, atol, preset, top_k, "
                                              r"network_file \(refcam.compare's\). Did you mean 'rtol'"):
        assert_cam_close(golden, golden, rtool=1e-3)
    assert assert_cam_close(golden, golden, rtol=1e-3).passed


# --- compare's hints -----------------------------------------------------------------------------------
def test_alpha_summed_over_positions_is_named() -> None:
    rng = np.random.default_rng(1)
    activations = rng.uniform(0.0, 1.0, (1, 4, 7, 7))                        # N = 49 positions
    weights = rng.standard_normal((1, 1, 4))
    report = compare({"weights": weights * 49}, {"activations": activations, "weights": weights})
    hints = report.stage("weights").hints
    assert any("x 49 positions: a sum instead of a mean" in hint for hint in hints), hints
    assert not any("softmax" in hint for hint in hints)
    plain = value_hints(weights * 3, weights, F64["rtol"], F64["atol"], positions=49)
    assert any("3 x the golden: a normalisation" in hint for hint in plain)


def test_a_single_number_gets_no_shift_hint() -> None:
    golden = np.array([[0.25]])
    assert value_hints(golden + 3.65e-9, golden, F64["rtol"], F64["atol"]) == []
    assert value_hints(golden * 2, golden, F64["rtol"], F64["atol"]) == []


# --- the pages ---------------------------------------------------------------------------------------
def page_id(page: str) -> str:
    return os.path.relpath(page, REPO)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_resolves_inside_the_repository(page: str) -> None:
    with open(page, encoding="utf-8") as f:
        text = f.read()
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue                                                        # https:, mailto:, an anchor
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), target.split("#")[0]))
        if not os.path.exists(resolved) or os.path.relpath(resolved, REPO).startswith(".."):
            broken.append(target)
    assert broken == [], f"{page_id(page)} links to what the repository does not hold"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_pages_use_words_a_reader_can_know(page: str) -> None:
    with open(page, encoding="utf-8") as f:
        text = f.read()
    assert SEED_WORDING.findall(text) == [], (f"{page_id(page)}: call them the examples of MATLAB's gradCAM page")
    assert OUTSIDE_PATHS.findall(text) == [], f"{page_id(page)} names a path outside the repository"


def test_the_checks_catch_what_they_look_for() -> None:
    assert SEED_WORDING.search("E2 of the seed") and SEED_WORDING.search("the seed's E2")
    assert not SEED_WORDING.search("seed=0, a seeded generator")
    assert OUTSIDE_PATHS.search("see ../shared/design/peers.md") and OUTSIDE_PATHS.search("/work/main/x")
    assert not OUTSIDE_PATHS.search("fixtures/shared_weights.h5")
    assert LINK.findall("[a](docs/x.md) and [b](#y)") == ["docs/x.md", "#y"]
