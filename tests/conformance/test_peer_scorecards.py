"""The peers' scorecards (``fixtures/conformance/``, ``fixtures/make_peer_scorecards.py``) rerun where the library is
installed: every case's verdict and first failing stage, under both tolerances, as committed."""
from __future__ import annotations

import importlib.util
import json
import os

import pytest

from refcam.conformance import build, cases
from refcam.conformance.adapters import peers
from refcam.conformance.adapters.tf_keras_vis import tf_keras_vis
from refcam.conformance.runner import score_case

SCORECARDS = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "conformance")
ADAPTERS = {"pytorch-grad-cam": (peers.pytorch_grad_cam, "torch", "pytorch_grad_cam"),
            "torchcam": (peers.torchcam, "torch", "torchcam"), "captum": (peers.captum, "torch", "captum"),
            "tf-keras-vis": (tf_keras_vis, "tensorflow", "tf_keras_vis")}
OWN_CONVENTION_CASES = {"pytorch-grad-cam": ("series2d/pytorch-grad-cam", "series2d/pytorch-grad-cam-layercam",
                                             "volume3d/pytorch-grad-cam"),
                        "torchcam": ("series2d/torchcam", "series2d/torchcam-gradcam++"),
                        "captum": ("series2d/captum",), "tf-keras-vis": ("series2d/tf-keras-vis",)}


def committed(peer):
    with open(os.path.join(SCORECARDS, f"{peer}.json"), encoding="utf-8") as source:
        return json.load(source)


def verdicts(card):
    return {case["id"]: (case["passed"], case["first_divergence"]) for case in card["cases"]}


@pytest.mark.parametrize("peer", sorted(ADAPTERS))
def test_each_peer_passes_the_cases_of_its_own_convention_as_committed(peer):
    record = committed(peer)
    passed = {case["id"] for case in record["float32"]["cases"] if case["passed"]}
    assert set(OWN_CONVENTION_CASES[peer]) <= passed
    assert record["case"]["total"] == record["float32"]["total"] == 40


@pytest.mark.parametrize("peer", sorted(ADAPTERS))
def test_the_peer_scorecard_reproduces(peer, tmp_path):
    adapter, framework, module = ADAPTERS[peer]
    for required in (framework, module):
        if importlib.util.find_spec(required) is None:
            pytest.skip(f"{required} is not installed")
    try:
        importlib.import_module("torchcam.methods" if peer == "torchcam" else module)
    except ImportError as err:           # pytorch-grad-cam needs torchvision, cv2 and scikit-learn; tf-keras-vis scipy
        pytest.skip(f"{module} does not import here: {err}")
    build(tmp_path)
    record = committed(peer)
    mine = {"case": {}, "float32": {}}
    for case in cases(tmp_path):
        try:
            result = adapter(case)
        except Exception:                           # scored as the runner scores it: the case fails as "adapter"
            result = None
        for key, preset in (("case", None), ("float32", "float32")):
            score = None if result is None else score_case(lambda _: result, case, preset)
            mine[key][case.id] = (False, "adapter") if score is None else (score.passed, score.first_divergence)
    for key in ("case", "float32"):
        assert mine[key] == {case_id: tuple(value) for case_id, value in verdicts(record[key]).items()}, key
