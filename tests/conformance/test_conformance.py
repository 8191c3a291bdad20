"""The conformance kit: the suite builds byte-identically, refcam passes it, and each planted bug fails at its stage."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import refcam.cli as cli
from refcam.conformance import build, cases, load_adapter, read_manifest, run, suite
from refcam.conformance.adapters.planted import CANNOT_SHOW, EXPECTED_STAGE, PLANTED, PLANTED_CASES
from refcam.conformance.adapters.reference import run_refcam, run_refcam_on_onnx
from refcam.conformance.build import file_stem
from refcam.errors import RefcamError
from refcam.golden import read as read_golden
from refcam.testing import assert_conforms, conformance_cases


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("suite")
    build(path)
    return path


def test_the_suite_builds_byte_identically_with_a_manifest(folder, tmp_path):
    manifest = build(tmp_path)
    assert manifest == json.loads((folder / "manifest.json").read_text())
    for name in sorted(os.listdir(folder)):
        assert (folder / name).read_bytes() == (tmp_path / name).read_bytes(), name
    assert [case["id"] for case in manifest["cases"]] == [case.id for case in suite()]
    assert len(set(case.id for case in suite())) == len(suite())


def test_no_case_expects_an_empty_map(folder):
    """A golden map that is zero everywhere would pass any implementation that returns zeros."""
    for case in cases(folder):
        golden = read_golden(case.golden_file)
        assert np.max(golden.map) > 0 and np.max(golden.raw_map) > 0, case.id


def test_the_suite_covers_what_it_promises():
    specs = suite()
    assert {case.network for case in specs} == {"series2d", "dag2d", "volume3d", "sequence1d", "regression2d",
                                                "segmentation2d"}
    assert {case.method for case in specs} >= {"gradcam", "gradcam++", "hirescam", "xgradcam", "layercam",
                                                "eigencam", "eigengradcam", "scorecam", "ablationcam"}
    assert {case.convention for case in specs} == {"matlab", "pytorch-grad-cam", "captum", "torchcam",
                                                    "tf-keras-vis", "keras-example"}
    assert {case.dtype for case in specs} == {"float64", "float32"}
    assert {dict(case.options).get("upsampling", "bicubic") for case in specs} == {"bicubic", "nearest", "none"}
    assert any(case.mask for case in specs) and any(case.reduction == "sum" for case in specs)
    assert any(case.batch > 1 for case in specs) and any(case.labels and len(case.labels) > 1 for case in specs)


def test_refcam_passes_every_case(folder):
    card = run(run_refcam, folder)
    assert card.all_passed and card.passed == len(suite()), str(card)
    assert "passed 40 of 40 cases" in str(card)


def test_the_onnx_files_compute_the_goldens(folder):
    """Each network's ONNX file (refcam.to_onnx) gives every case's stages as its HDF5 file does."""
    pytest.importorskip("onnx")
    manifest = read_manifest(folder)
    assert all(entry["onnx"]["file"] == f"{name}.onnx" for name, entry in manifest["networks"].items())
    card = run(run_refcam_on_onnx, folder)
    assert card.all_passed and card.passed == len(suite()), str(card)
    assert max(score.error for score in card.scores) <= 1e-13


@pytest.mark.parametrize("bug", sorted(PLANTED))
@pytest.mark.parametrize("case_id", PLANTED_CASES)
def test_each_planted_bug_fails_at_its_stage(folder, bug, case_id):
    score = run(PLANTED[bug][0], folder, pattern=case_id).scores[0]
    if (bug, case_id) in CANNOT_SHOW:
        assert score.passed, CANNOT_SHOW[bug, case_id]
        return
    assert not score.passed and score.first_divergence == EXPECTED_STAGE[bug], score


def test_the_hint_names_a_summed_gradient(folder):
    score = run(PLANTED["summed_gradient"][0], folder, pattern="series2d/default").scores[0]
    assert "a sum instead of a mean" in score.hint


def test_a_changed_file_is_refused(folder, tmp_path):
    build(tmp_path, [spec for spec in suite() if spec.id == "series2d/default"])
    np.save(tmp_path / "series2d__default.input.npy", np.zeros((10, 12, 3)))
    with pytest.raises(RefcamError, match="not the file the manifest records"):
        read_manifest(tmp_path)
    with pytest.raises(RefcamError, match="holds no conformance suite"):
        read_manifest(tmp_path / "nowhere")


def test_an_adapter_that_raises_fails_its_case_and_the_run_goes_on(folder):
    def broken(case):
        if case.network == "dag2d":
            raise ValueError("no DAG support")
        return run_refcam(case)
    card = run(broken, folder, pattern="dag2d/*")
    assert card.passed == 0 and all(score.first_divergence == "adapter" for score in card.scores)
    assert "ValueError: no DAG support" in card.scores[0].hint


def test_the_case_gives_what_an_implementation_needs(folder):
    case = next(cases(folder, "segmentation2d/mask"))
    assert case.labels == (2,) and case.mask.shape == (8, 8) and case.feature_layer == "relu_2"
    assert case.input.shape == (8, 8, 2) and case.input_nchw.shape == (1, 2, 8, 8)
    assert os.path.isfile(case.network_file) and case.reduction_layer == "softmax"
    regression = next(cases(folder, "regression2d/sum"))
    assert regression.labels is None and regression.reduction == "sum"


def test_the_file_protocol(folder, tmp_path, capsys):
    assert cli.main(["conformance", "export", str(tmp_path)]) == cli.EXIT_OK
    for case in cases(tmp_path, "sequence1d/*"):
        stages = run_refcam(case)
        if case.id.endswith("batch"):
            np.save(tmp_path / f"{file_stem(case.id)}.output.npy", stages["map"])
        else:
            np.savez(tmp_path / f"{file_stem(case.id)}.output.npz", **stages)
    capsys.readouterr()
    assert cli.main(["conformance", "check", str(tmp_path), "--cases", "sequence1d/*"]) == cli.EXIT_OK
    assert cli.main(["conformance", "check", str(tmp_path), "--cases", "dag2d/default"]) == cli.EXIT_PARTIAL
    assert "not written: neither dag2d__default.output.npy" in capsys.readouterr().out


def test_the_command_line(folder, tmp_path, capsys):
    assert cli.main(["conformance", "list"]) == cli.EXIT_OK
    assert "series2d/default" in capsys.readouterr().out
    report = tmp_path / "card.json"
    code = cli.main(["conformance", "run", "--suite", str(folder), "--adapter",
                     "refcam.conformance.adapters.planted:logit_score", "--cases", "series2d/default",
                     "--json", str(report), "--junit", str(tmp_path / "card.xml")])
    assert code == cli.EXIT_PARTIAL and "FAIL" in capsys.readouterr().out
    assert json.loads(report.read_text())["cases"][0]["first_divergence"] == "scores"
    assert 'failures="1"' in (tmp_path / "card.xml").read_text()
    assert cli.main(["conformance", "run", "--suite", str(folder), "--adapter",
                     "refcam.conformance.adapters.reference:run_refcam", "--dtype", "float32"]) == cli.EXIT_OK
    assert cli.main(["conformance", "run", "--adapter", "nomodule"]) == cli.EXIT_ERROR
    assert "write it as package.module:function" in capsys.readouterr().err
    with pytest.raises(RefcamError, match="cannot import 'no_such_module_x'"):
        load_adapter("no_such_module_x:run")


def test_the_pytest_entry(folder):
    chosen = conformance_cases(folder, pattern="volume3d/*")
    assert [case.id for case in chosen] == [spec.id for spec in suite() if spec.id.startswith("volume3d/")]
    assert_conforms(run_refcam(chosen[0]), chosen[0])
    with pytest.raises(AssertionError, match="fails at raw_map"):
        assert_conforms(PLANTED["missing_relu"][0](chosen[0]), chosen[0])
