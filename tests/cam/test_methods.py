"""refcam.explain and the CAM family (gradient methods, Eigen methods): docs/methods.md's numbers, naive twins,
finite differences, relations between the methods, call forms and errors."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import refcam
from refcam.cam.conventions import gradcam_as
from refcam.cam.eigen_methods import first_component_projection
from refcam.cam.gradient_methods import channel_weights_and_map, hires_cam_maps, layer_cam_maps, xgrad_cam_maps
from refcam.errors import GradCAMError, LabelError
from tests.cam import nets
from tests.cam.test_gradcam import (WORKED_A1, WORKED_A2, assert_gradient_matches_finite_differences,
                                    head_function, worked_input)
from tests.tolerances import F32, F64

GRADIENT_METHODS = ("gradcam", "gradcam++", "hirescam", "xgradcam", "layercam", "eigengradcam")
ALL_METHODS = GRADIENT_METHODS + ("eigencam",)
SQRT13 = np.sqrt(13.0)


def worked(method, label=0, **options):
    return refcam.explain(nets.worked_example(), worked_input(), label, method=method, reduction_layer="fc",
                          upsampling="none", **options)


# --- docs/methods.md: the worked example, logit of class 0 (g_1 = 1/9, g_2 = -2/9 at every position) -----
def test_worked_example_gradcam_plus_plus():
    res = worked("gradcam++")
    # s = (10, 6); a_1 = 1 / (2 + 10/9) = 9/28; channel 2 has g < 0, so w_2 = 0; w_1 = 9 * (9/28) * (1/9)
    np.testing.assert_allclose(res.alphas[0, 0, 0], np.full((3, 3), 9 / 28), **F64)
    np.testing.assert_allclose(res.alphas[0, 0, 1], np.full((3, 3), 1 / (2 - 12 / 9)), **F64)
    np.testing.assert_allclose(res.weights[0, 0], [9 / 28, 0.0], **F64)
    np.testing.assert_allclose(res.raw_map, 9 / 28 * WORKED_A1, **F64)


@pytest.mark.parametrize("method", ["gradcam", "hirescam", "xgradcam"])
def test_worked_example_constant_gradient_methods_agree(method):
    # g is constant over positions and A_k sums to (10, 6): all three give (A_1 - 2 A_2)/9 through the ReLU
    expected = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 3.0], [0.0, 0.0, 1.0]]) / 9
    np.testing.assert_allclose(worked(method).raw_map, expected, **F64)


def test_worked_example_xgradcam_weights_and_layercam():
    np.testing.assert_allclose(worked("xgradcam").weights[0, 0], [1 / 9, -2 / 9], **F64)
    np.testing.assert_allclose(worked("layercam").raw_map, WORKED_A1 / 9, **F64)   # ReLU(g_2) = 0


def test_worked_example_eigencam():
    res = worked("eigencam")
    # X^T X = [20 4; 4 8]: s_1^2 = 14 + 2 sqrt 13, so s = (sqrt 13 + 1, sqrt 13 - 1); v_1 ~ (2, sqrt 13 - 3)
    np.testing.assert_allclose(res.singular_values[0, 0], [SQRT13 + 1, SQRT13 - 1], **F64)
    v1 = np.array([2.0, SQRT13 - 3]) / np.sqrt(26 - 6 * SQRT13)
    np.testing.assert_allclose(res.weights[0, 0], v1, **F64)
    np.testing.assert_allclose(res.raw_map, v1[0] * WORKED_A1 + v1[1] * WORKED_A2, **F64)
    assert abs(res.raw_map[1, 2] - 2.871276) < 1e-6


def test_worked_example_eigengradcam():
    res = worked("eigengradcam")
    # X = [A_1/9, -2 A_2/9]: X^T X = [20 -8; -8 32]/81, eigenvalues 36/81 and 16/81, v_1 = (1, -2)/sqrt 5
    np.testing.assert_allclose(res.singular_values[0, 0], [2 / 3, 4 / 9], **F64)
    np.testing.assert_allclose(res.weights[0, 0], np.array([1.0, -2.0]) / np.sqrt(5), **F64)
    np.testing.assert_allclose(res.raw_map, (WORKED_A1 + 4 * WORKED_A2) / (9 * np.sqrt(5)), **F64)


def test_hirescam_map_adds_up_to_the_score_of_a_linear_head():
    """A linear head without bias: z = sum_k sum_p g_k[p] A_k[p], the HiResCAM map before its ReLU."""
    res = worked("hirescam")
    linear = (res.weights * res.activations[None]).sum(axis=2)
    np.testing.assert_allclose(linear.sum(), res.scores[0, 0], **F64)
    np.testing.assert_allclose(res.scores[0, 0], -2 / 9, **F64)


# --- each method against a naive formula on the captured A and g ------------------------------------------
def naive_map(method, a, g):
    """Loop over labels k, observations b and channels c, one formula per method (docs/methods.md)."""
    labels, batch, channels = g.shape[:3]
    maps = np.zeros((labels, batch) + a.shape[2:])
    for k in range(labels):
        for b in range(batch):
            for c in range(channels):
                maps[k, b] += naive_channel_term(method, a[b, c], g[k, b, c])
    return np.maximum(maps, 0.0)


def naive_channel_term(method, a, g):
    if method == "gradcam":
        return g.mean() * a
    if method == "hirescam":
        return g * a
    if method == "layercam":
        return np.maximum(g, 0.0) * a
    if method == "xgradcam":
        return (a * g).sum() / a.sum() * a if a.sum() != 0 else 0.0 * a
    if method == "gradcam++":
        alpha = np.zeros_like(g)
        nonzero = g != 0
        alpha[nonzero] = g[nonzero] ** 2 / (2 * g[nonzero] ** 2 + a.sum() * g[nonzero] ** 3)
        return (alpha * np.maximum(g, 0.0)).sum() * a
    raise AssertionError(method)


def naive_eigen(x_by_channel, center):
    """One matrix (C, *S) -> the projection (*S) with refcam's sign rule, by numpy's SVD."""
    x = x_by_channel.reshape(x_by_channel.shape[0], -1).T
    if center:
        x = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(x)
    p = x @ vt[0]
    if p.max() < -p.min():
        p = -p
    return p.reshape(x_by_channel.shape[1:]), s


@pytest.fixture
def batch(rng):
    return rng.uniform(0.0, 1.0, (8, 8, 3, 3))


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "xgradcam", "layercam"])
@pytest.mark.parametrize("feature_layer", ["relu_1", "relu_2"])
def test_gradient_methods_equal_the_naive_formula(method, feature_layer, classifier, batch):
    res = refcam.explain(classifier, batch, ["cat", "fox"], method=method, format="SSCB",
                         feature_layer=feature_layer, upsampling="none")
    expected = naive_map(method, res.activations, res.gradients)          # (K, B, *S)
    np.testing.assert_allclose(np.moveaxis(res.raw_map, (2, 3), (0, 1)), expected, **F64)


@pytest.mark.parametrize("center", [False, True])
def test_eigen_methods_equal_numpy_svd(center, classifier, batch):
    kwargs = dict(format="SSCB", feature_layer="relu_1", upsampling="none", center=center)
    eigen = refcam.eigencam(classifier, batch, **kwargs)
    grad = refcam.eigengradcam(classifier, batch, ["dog", "cat"], **kwargs)
    for b in range(3):
        projection, s = naive_eigen(eigen.activations[b], center)
        np.testing.assert_allclose(eigen.projection[0, b], projection, **F64)
        np.testing.assert_allclose(eigen.raw_map[..., b], np.maximum(projection, 0.0), **F64)
        np.testing.assert_allclose(eigen.singular_values[0, b], s, **F64)
        for k in range(2):
            projection, s = naive_eigen(grad.gradients[k, b] * grad.activations[b], center)
            np.testing.assert_allclose(grad.projection[k, b], projection, **F64)
            np.testing.assert_allclose(grad.singular_values[k, b], s, **F64)


def test_eigencam_without_label_runs_no_head(classifier, image):
    res = refcam.eigencam(classifier, image)
    assert res.gradients is None and res.scores is None and res.labels is None
    assert res.info["recorded_ops"] == [] and res.map.shape == (8, 8)
    with_labels = refcam.eigencam(classifier, image, ["cat", "dog"])
    assert with_labels.map.shape == (8, 8, 2) and with_labels.gradients.shape[0] == 2
    np.testing.assert_array_equal(with_labels.map[..., 0], res.map)
    np.testing.assert_array_equal(with_labels.map[..., 1], res.map)


# --- the gradients the methods use: finite differences through the head --------------------------------
@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_gradients_used_match_finite_differences(method, rng):
    net = nets.skip_head_2d(rng)
    x = rng.standard_normal((6, 6, 2))
    res = refcam.explain(net, x, [0, 2], method=method, feature_layer="relu_1")
    run = head_function(net, x, "relu_1", "softmax")
    assert_gradient_matches_finite_differences(res, run, lambda y, k: y[0, [0, 2][k]], rng)


# --- relations between the methods --------------------------------------------------------------------
def test_xgradcam_is_gradcam_when_activations_are_constant_over_positions(rng):
    a = np.repeat(rng.uniform(0.1, 2.0, (2, 4, 1, 1)), 5, axis=2).repeat(3, axis=3)   # (B, C, 5, 3), constant in S
    g = rng.standard_normal((3, 2, 4, 5, 3))
    for expected, got in zip(channel_weights_and_map(g, a), xgrad_cam_maps(g, a)):
        np.testing.assert_allclose(got, expected, **F64)


def test_layercam_is_hirescam_when_every_gradient_is_non_negative(rng):
    a = rng.standard_normal((2, 4, 5, 3))
    g = np.abs(rng.standard_normal((3, 2, 4, 5, 3)))
    for expected, got in zip(hires_cam_maps(g, a), layer_cam_maps(g, a)):
        np.testing.assert_allclose(got, expected, **F64)
    # on a network: the worked example's class 1 has W[1] = (0.5, 1) > 0, so g >= 0
    np.testing.assert_allclose(worked("layercam", 1).raw_map, worked("hirescam", 1).raw_map, **F64)


def test_hirescam_is_gradcam_when_the_gradient_is_constant_over_positions(rng):
    a = rng.standard_normal((2, 4, 5, 3))
    g = np.repeat(rng.standard_normal((3, 2, 4, 1, 1)), 5, axis=3).repeat(3, axis=4)
    np.testing.assert_allclose(hires_cam_maps(g, a)[1], channel_weights_and_map(g, a)[1], **F64)


def test_gradcam_plus_plus_with_a_constant_gradient(rng):
    """g_k constant over N positions: a_k = 1 / (2 + s_k g_k) and w_k = N a_k ReLU(g_k)."""
    res = refcam.gradcam_plus_plus(nets.worked_example(), worked_input(), 1, reduction_layer="fc",
                                   upsampling="none")
    g = np.array([0.5, 1.0]) / 9
    s = np.array([10.0, 6.0])
    np.testing.assert_allclose(res.weights[0, 0], 9 * g / (2 + s * g), **F64)


def test_gradcam_plus_plus_eps_enters_the_denominator(classifier, image):
    plain = refcam.gradcam_plus_plus(classifier, image, "cat", reduction_layer="fc")
    peer = refcam.gradcam_plus_plus(classifier, image, "cat", reduction_layer="fc", eps=1e-6)
    g, a = peer.gradients, peer.activations
    s = a.sum(axis=(2, 3), keepdims=True)[None]
    alpha = np.where(g != 0, g ** 2 / (2 * g ** 2 + s * g ** 3 + 1e-6), 0.0)
    np.testing.assert_allclose(peer.alphas, alpha, **F64)
    assert not np.array_equal(plain.alphas, peer.alphas) and peer.info["eps"] == 1e-6


def test_eigencam_of_a_rank_one_map_is_the_pattern_times_the_channel_norm(rng):
    pattern = rng.uniform(0.0, 1.0, (5, 4))
    loadings = rng.uniform(0.1, 1.0, 3)
    a = loadings[:, None, None] * pattern[None]                                  # A_k = c_k P: rank one
    projection, v1, s = first_component_projection(a.reshape(3, -1).T, center=False)
    np.testing.assert_allclose(projection.reshape(5, 4), np.linalg.norm(loadings) * pattern, **F64)
    np.testing.assert_allclose(v1, loadings / np.linalg.norm(loadings), **F64)
    np.testing.assert_allclose(s[1:], 0.0, atol=1e-12)


def test_eigen_sign_rule_largest_magnitude_positive_and_ties(rng):
    x = rng.standard_normal((7, 3))
    for matrix in (x, -x):
        projection, _, _ = first_component_projection(matrix, center=True)
        assert projection.max() >= -projection.min()
    tie = np.array([[1.0, 0.0], [-1.0, 0.0]])                                    # P = +-(1, -1): a tie
    projection, v1, _ = first_component_projection(tie, center=False)
    assert v1[0] > 0 and projection.tolist() == [1.0, -1.0]


# --- call forms shared with gradcam -----------------------------------------------------------------------
@pytest.mark.parametrize("method", ALL_METHODS)
def test_batch_and_labels_equal_single_runs(method, classifier, batch):
    together = refcam.explain(classifier, batch, [2, 0], method=method, format="SSCB")
    assert together.map.shape == (8, 8, 2, 3) and together.scores.shape == (2, 3)
    for b in range(3):
        for k, label in enumerate([2, 0]):
            alone = refcam.explain(classifier, batch[..., b], label, method=method)
            np.testing.assert_allclose(together.map[:, :, k, b], alone.map, **F64)
            np.testing.assert_allclose(together.scores[k, b], alone.scores[0, 0], **F64)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_explain_equals_the_method_function(method, classifier, image):
    function = {"gradcam": refcam.gradcam, "gradcam++": refcam.gradcam_plus_plus, "hirescam": refcam.hirescam,
                "xgradcam": refcam.xgradcam, "layercam": refcam.layercam, "eigencam": refcam.eigencam,
                "eigengradcam": refcam.eigengradcam}[method]
    via_explain = refcam.explain(classifier, image, "dog", method=method, feature_layer="relu_1")
    direct = function(classifier, image, "dog", feature_layer="relu_1")
    np.testing.assert_array_equal(via_explain.map, direct.map)
    assert via_explain.info["method"] == method
    score_map, feature_layer, reduction_layer = via_explain
    assert (feature_layer, reduction_layer) == ("relu_1", "softmax")


def test_explain_gradcam_takes_the_peer_conventions(classifier, image):
    for convention in ("pytorch-grad-cam", "torchcam"):
        via_explain = refcam.explain(classifier, image, "cat", convention=convention)
        np.testing.assert_array_equal(via_explain.map, gradcam_as(convention, classifier, image, "cat").map)
    captum = refcam.explain(classifier, image, "cat", convention="captum", relu_attributions=True)
    assert captum.info["options"]["relu_attributions"] is True


@pytest.mark.parametrize("method", ALL_METHODS)
def test_reduction_function_equals_label(method, classifier, image):
    by_label = refcam.explain(classifier, image, 1, method=method)
    by_function = refcam.explain(classifier, image, method=method, reduction=lambda y: y[1])
    np.testing.assert_allclose(by_function.map, by_label.map, **F64)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_sequence_map_is_one_by_t(method, rng):
    net = nets.sequence_1d(rng)
    x = rng.standard_normal((4, 19))
    res = refcam.explain(net, x, "2", method=method, feature_layer="relu_1", upsampling="none")
    assert res.map.shape == (1, 19)
    if method != "eigencam" and method != "eigengradcam":
        np.testing.assert_allclose(res.raw_map[0], naive_map(method, res.activations, res.gradients)[0, 0], **F64)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_volume_map_is_h_w_d(method, rng):
    net = nets.volume_3d(rng)
    x = rng.uniform(0.0, 1.0, (6, 6, 6, 1))
    res = refcam.explain(net, x, "b", method=method)
    assert res.map.shape == (6, 6, 6) and res.raw_map.shape == (6, 6, 6)
    if method not in ("eigencam", "eigengradcam"):
        np.testing.assert_allclose(res.raw_map, naive_map(method, res.activations, res.gradients)[0, 0], **F64)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_float32_compute_is_close_to_float64(method, classifier, image):
    wide = refcam.explain(classifier, image, "fox", method=method, reduction_layer="fc")
    narrow = refcam.explain(classifier, image, "fox", method=method, reduction_layer="fc", dtype="float32")
    assert narrow.map.dtype == np.float32 and narrow.info["dtype"] == "float32"
    np.testing.assert_allclose(narrow.raw_map, wide.raw_map, rtol=F32["rtol"] * 10, atol=F32["atol"] * 10)


# --- errors --------------------------------------------------------------------------------------------
def test_unknown_method_suggests_close_names(classifier, image):
    with pytest.raises(GradCAMError, match=r"Did you mean 'gradcam\+\+'"):
        refcam.explain(classifier, image, "cat", method="gradcam+")
    with pytest.raises(GradCAMError, match="'eigencam'"):
        refcam.explain(classifier, image, "cat", method="eigen-cam")
    with pytest.raises(GradCAMError, match="The methods are"):
        refcam.explain(classifier, image, "cat", method="scorecam2000")


def test_unknown_option_suggests_close_names(classifier, image):
    with pytest.raises(GradCAMError, match="did you mean 'feature_layer'"):
        refcam.hirescam(classifier, image, "cat", featurelayer="relu_1")


def test_a_peer_convention_has_only_the_methods_its_library_has(classifier, image):
    with pytest.raises(GradCAMError, match="no method 'hirescam'.*'pytorch-grad-cam'"):
        refcam.explain(classifier, image, "cat", method="hirescam", convention="torchcam")


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_score_arguments_are_checked(method, classifier, image):
    with pytest.raises(GradCAMError, match="exactly one of label"):
        refcam.explain(classifier, image, method=method)
    with pytest.raises(GradCAMError, match="exactly one of label"):
        refcam.explain(classifier, image, "cat", method=method, reduction=lambda y: y[0])
    with pytest.raises(LabelError, match="not a class"):
        refcam.explain(classifier, image, "cow", method=method)
    with pytest.raises(GradCAMError, match="no spatial or time axis"):
        refcam.explain(classifier, image, "cat", method=method, feature_layer="fc")
    with pytest.raises(GradCAMError, match="upsampling"):
        refcam.explain(classifier, image, "cat", method=method, upsampling="bilinear")


def test_eigencam_without_a_map_axis_is_an_error(classifier, image):
    with pytest.raises(GradCAMError, match="no spatial or time axis"):
        refcam.eigencam(classifier, image, feature_layer="fc")


def test_xgradcam_refuses_a_channel_summing_to_zero():
    a = np.array([[[[1.0, -1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]]])          # (B, C, 2, 2)
    g = np.ones((1, 1, 2, 2, 2))
    with pytest.raises(GradCAMError, match="sums to exactly 0"):
        xgrad_cam_maps(g, a)
    weights, _ = xgrad_cam_maps(g, a, eps=1e-7)
    np.testing.assert_allclose(weights[0, 0], [0.0, 0.0], **F64)   # channel 1: 0 / 1e-7; channel 2: all zero


def test_gradcam_plus_plus_refuses_a_zero_denominator():
    from refcam.cam.gradient_methods import grad_cam_plus_plus_maps
    a = np.array([[[[-1.0, -1.0]]]])                                                  # s = -2
    g = np.array([[[[[1.0, 0.5]]]]])                                                  # 2 + s g = 0 at g = 1
    with pytest.raises(GradCAMError, match="eps=1e-6"):
        grad_cam_plus_plus_maps(g, a)


# --- the structure: the dispatch sits above the methods and conventions ------------------------------
@pytest.mark.parametrize("module", ["capture", "gradient_methods", "eigen_methods", "conventions"])
def test_below_the_dispatch_nothing_imports_gradcam_or_explain(module):
    """No import circle: gradcam.py and explain.py import these modules, none of them imports those two."""
    source = Path(refcam.__file__).parent / "cam" / f"{module}.py"
    imported = {node.module for node in ast.walk(ast.parse(source.read_text())) if isinstance(node, ast.ImportFrom)}
    assert not imported & {"gradcam", "explain", "refcam.cam.gradcam", "refcam.cam.explain"}, imported
