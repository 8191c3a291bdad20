"""refcam.compare (X2) and refcam.testing.assert_cam_close on hand-made cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from refcam import golden
from refcam.cam.gradcam import gradcam
from refcam.compare import ComparisonError, compare, correlation, cosine_similarity, top_k_iou, top_k_region
from refcam.testing import TOLERANCES, assert_cam_close
from tests.cam import nets

GOLDEN64 = TOLERANCES["golden-float64"]


@pytest.fixture
def result(rng):
    """A two-label Grad-CAM on a non-square input, so a transposed map has another shape."""
    net = nets.classifier_2d(rng, size=8)
    return gradcam(net, rng.uniform(0.0, 1.0, (8, 8, 3)), ["cat", "fox"], reduction_layer="fc")


@pytest.fixture
def rect_map(rng):
    return rng.uniform(0.0, 1.0, (5, 7))


# --- numbers on hand-made cases ---------------------------------------------------------------------
def test_identical_map_passes_with_perfect_scores(rect_map):
    report = compare(rect_map.copy(), rect_map)
    assert report.passed and report.first_divergence is None
    assert report.max_abs_error == 0.0 and report.max_rel_error == 0.0
    assert report.cosine == pytest.approx(1.0, abs=1e-15)
    assert report.pearson == pytest.approx(1.0, abs=1e-15) and report.spearman == pytest.approx(1.0, abs=1e-15)
    assert report.iou == {10.0: 1.0, 20.0: 1.0}
    assert "PASS" in str(report)


def test_errors_and_their_locations_by_hand():
    g = np.array([[1.0, 2.0, 4.0], [0.0, 8.0, 0.5]])
    c = np.array([[1.0, 2.5, 4.0], [0.0, 7.0, 0.5]])  # errors 0.5 at (0, 1) (25%), 1.0 at (1, 1) (12.5%)
    report = compare(c, g)
    assert report.max_abs_error == 1.0 and report.max_abs_index == (1, 1)
    assert report.max_rel_error == 0.25 and report.max_rel_index == (0, 1)
    assert report.final.error_over_max == 1.0 / 8.0
    assert report.final.allowed == GOLDEN64["rtol"] * 8.0
    assert not report.passed and report.first_divergence == "map"
    expected_cosine = float(c.ravel() @ g.ravel()) / (np.linalg.norm(c) * np.linalg.norm(g))
    assert report.cosine == pytest.approx(expected_cosine, rel=1e-15)
    assert report.pearson == pytest.approx(np.corrcoef(c.ravel(), g.ravel())[0, 1], rel=1e-12)
    assert report.spearman == 1.0  # same ordering of the six entries


def test_zero_golden_entry_gives_infinite_relative_error():
    report = compare(np.array([1.0, 1e-3]), np.array([1.0, 0.0]))
    assert report.max_rel_error == math.inf and report.max_rel_index == (1,)
    assert report.max_abs_error == 1e-3


def test_scaled_map_fails_with_a_scale_hint(rect_map):
    report = compare(2.0 * rect_map, rect_map)
    assert not report.passed
    assert report.max_abs_error == pytest.approx(rect_map.max(), rel=1e-15)
    assert report.max_rel_error == pytest.approx(1.0, rel=1e-15)
    assert report.cosine == pytest.approx(1.0, abs=1e-15) and report.spearman == pytest.approx(1.0)
    assert report.iou == {10.0: 1.0, 20.0: 1.0}
    assert "2 x the golden" in str(report)


def test_shifted_map_fails_with_a_shift_hint(rect_map):
    report = compare(rect_map + 0.25, rect_map)
    assert not report.passed
    assert report.max_abs_error == pytest.approx(0.25, rel=1e-12)
    assert report.pearson == pytest.approx(1.0, abs=1e-12) and report.cosine < 1.0
    assert "shifted by 0.25" in str(report)


def test_min_max_normalised_map_gets_an_affine_hint(rect_map):
    normalised = (rect_map - rect_map.min()) / (rect_map.max() - rect_map.min())
    assert "min-max" in str(compare(normalised, rect_map))


def test_transposed_map_gets_a_layout_hint(rect_map):
    report = compare(rect_map.T, rect_map)
    stage = report.final
    assert not report.passed and not stage.shape_ok
    assert stage.candidate_shape == (7, 5) and stage.golden_shape == (5, 7)
    assert "golden.transpose((1, 0))" in str(report) and "transposed map" in str(report)


def test_transposed_square_map_gets_a_value_hint(rng):
    square = rng.uniform(0.0, 1.0, (6, 6))
    assert "golden.transpose((1, 0))" in str(compare(square.T, square))


def test_channel_first_layout_gets_a_hint(result):
    report = compare(np.moveaxis(result.map, -1, 0), result)  # (K, h, w) instead of (h, w, K)
    assert "golden.transpose((2, 0, 1))" in str(report) and "channel-first" in str(report)


def test_map_at_feature_resolution_gets_an_upsampling_hint(result):
    report = compare(result.raw_map, result)
    assert not report.passed and "not upsampled" in str(report)


def test_singleton_axes_get_a_hint():
    g = np.arange(1.0, 10.0).reshape(1, 9)  # MATLAB's 1 x t sequence map
    report = compare(g.ravel(), g)
    assert "axes of size 1" in str(report) and "values agree" in str(report)


def test_reshape_mix_ups_get_a_hint(rect_map):
    reshaped = rect_map.reshape(7, 5)  # a reshape where a transpose was needed
    assert "reshape where a transpose was needed" in str(compare(reshaped, rect_map))
    column_major = rect_map.ravel(order="F").reshape(rect_map.shape)  # right shape, MATLAB's element order
    assert "another memory order" in str(compare(column_major, rect_map))
    same_shape = rect_map.ravel(order="F").reshape(rect_map.shape)
    assert "another memory order" in str(compare(same_shape, rect_map))


def test_nan_in_the_candidate_fails(rect_map):
    candidate = rect_map.copy()
    candidate[2, 3] = np.nan
    report = compare(candidate, rect_map)
    assert not report.passed and report.final.nonfinite == 1
    assert report.max_abs_index == (2, 3) and "NaN/Inf" in str(report)


def test_top_k_iou_by_hand():
    g = np.array([9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    c = np.array([9.0, 1.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 8.0, 0.0])
    assert top_k_region(g, 20).tolist() == [0, 1]
    assert top_k_region(c, 20).tolist() == [0, 8]
    assert top_k_iou(c, g, 20) == 1.0 / 3.0
    assert top_k_iou(c, g, 10) == 1.0
    assert compare(c, g, top_k=(20, 50)).iou == {20.0: 1.0 / 3.0, 50.0: 4.0 / 6.0}


def test_correlations_of_constant_arrays_are_nan():
    flat, ramp = np.zeros(5), np.arange(5.0)
    assert math.isnan(correlation(flat, ramp, rank=False)) and math.isnan(correlation(flat, ramp, rank=True))
    assert math.isnan(cosine_similarity(flat, ramp))
    assert correlation(ramp, ramp ** 3, rank=True) == pytest.approx(1.0)


# --- tolerances -----------------------------------------------------------------------------------
def test_rtol_is_relative_to_the_largest_golden_value(rect_map):
    candidate = rect_map.copy()
    candidate[0, 0] += 1e-11 * rect_map.max()
    assert compare(candidate, rect_map).passed
    candidate[0, 0] += 1e-9 * rect_map.max()
    assert not compare(candidate, rect_map).passed
    assert compare(candidate, rect_map, rtol=1e-8).passed
    assert compare(candidate, rect_map, preset="float32").passed
    assert compare(candidate, rect_map, rtol=0.0, atol=1.0).passed


def test_float32_implementation_passes_the_float32_preset_only(rng):
    net = nets.classifier_2d(rng)
    x = rng.uniform(0.0, 1.0, (8, 8, 3))
    reference = gradcam(net, x, "dog")
    single = gradcam(net, x, "dog", dtype="float32")
    intermediates = {name: getattr(single, name) for name in ("activations", "gradients", "weights", "map")}
    assert compare(intermediates, reference, preset="float32").passed
    assert not compare(intermediates, reference, preset="float64").passed


def test_unknown_preset_is_an_error(rect_map):
    with pytest.raises(ComparisonError, match="unknown preset"):
        compare(rect_map, rect_map, preset="float16")


# --- intermediates: where does a candidate first diverge? ----------------------------------------------
def candidate_stages(res, **changes):
    stages = {name: getattr(res, name).copy() for name in ("activations", "scores", "gradients", "weights",
                                                           "raw_map", "map")}
    stages.update(changes)
    return stages


def test_all_intermediates_identical_pass(result):
    report = compare(candidate_stages(result), result)
    assert report.passed and [s.name for s in report.stages] == ["activations", "scores", "gradients", "weights",
                                                                 "raw_map", "map"]


def test_first_divergence_is_the_first_failing_stage_in_pipeline_order(result):
    wrong_gradients = result.gradients * 1.001
    wrong_weights = wrong_gradients.mean(axis=(3, 4))
    report = compare(candidate_stages(result, gradients=wrong_gradients, weights=wrong_weights), result)
    assert report.first_divergence == "gradients"
    assert report.stage("activations").passed and report.stage("scores").passed
    assert not report.stage("weights").passed and report.stage("map").passed
    text = str(report)
    assert "first divergence: gradients (after activations, scores, which agree)" in text


def test_dict_order_does_not_matter_and_aliases_work(result):
    stages = {"map": result.map, "alpha": result.weights * 2.0, "A": result.activations}
    report = compare(stages, result)
    assert [s.name for s in report.stages] == ["activations", "weights", "map"]
    assert report.first_divergence == "weights" and report.stage("alpha").name == "weights"


def test_softmax_candidate_against_logit_golden_diverges_at_the_score(rng):
    net = nets.classifier_2d(rng)
    x = rng.uniform(0.0, 1.0, (8, 8, 3))
    logit = gradcam(net, x, "cat", reduction_layer="fc")
    softmax = gradcam(net, x, "cat")
    report = compare(candidate_stages(softmax), logit)
    assert report.first_divergence == "scores" and report.stage("activations").passed


def test_golden_may_be_a_file_a_golden_or_a_dict(result, rng, tmp_path):
    net = nets.classifier_2d(rng)
    x = rng.uniform(0.0, 1.0, (8, 8, 3))
    path = tmp_path / "g.h5"
    stored = golden.write(path, net, x, "fox")
    assert compare(stored.map, path).passed
    assert compare(stored.map, str(path)).passed
    assert compare({"weights": stored.weights}, stored).passed
    assert compare({"alpha": stored.weights}, {"weights": stored.weights}).passed


def test_bad_arguments_are_errors(result, rect_map):
    with pytest.raises(ComparisonError, match="'alfa'"):
        compare({"alfa": result.weights}, result)
    with pytest.raises(ComparisonError, match="golden has no"):
        compare({"weights": result.weights}, rect_map)
    with pytest.raises(ComparisonError, match="twice"):
        compare({"alpha": result.weights, "weights": result.weights}, result)
    with pytest.raises(ComparisonError, match="dtype"):
        compare(np.array(["a", "b"]), rect_map)
    with pytest.raises(ComparisonError, match="empty"):
        compare({}, result)


# --- assert_cam_close -----------------------------------------------------------------------------
def test_assert_cam_close_raises_with_the_report(rect_map):
    with pytest.raises(AssertionError) as raised:
        assert_cam_close(rect_map * 1.5, rect_map)
    message = str(raised.value)
    assert "refcam.compare: FAIL" in message and "1.5 x the golden" in message and "max |c - g|" in message


def test_assert_cam_close_passes_and_forwards_options(rect_map):
    report = assert_cam_close(rect_map + 1e-7, rect_map, preset="float32")
    assert report.passed and report.rtol == TOLERANCES["golden-float32"]["rtol"]
    np.testing.assert_allclose(report.max_abs_error, 1e-7, rtol=1e-6)
    with pytest.raises(AssertionError):
        assert_cam_close(rect_map + 1e-7, rect_map)
