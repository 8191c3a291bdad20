"""Score-CAM and Ablation-CAM: docs/methods.md's numbers, naive twins, the head runner, batching, 1-D and 3-D,
relations to the gradient, and errors."""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import refcam
from refcam.autodiff import Tensor
from refcam.cam.head import head_plan, run_head
from refcam.cam.perturbation_methods import ablation_weights, corner_linear_weights, upsample_masks
from refcam.errors import GradCAMError
from tests.cam import nets
from tests.cam.test_gradcam import WORKED_A1, WORKED_A2, worked_input
from refcam.testing import TOLERANCES
from tests.tolerances import F64


GOLDEN32 = TOLERANCES["golden-float32"]["rtol"]


def worked(method, label=0, **options):
    return refcam.explain(nets.worked_example(), worked_input(), label, method=method, reduction_layer="fc",
                          upsampling="none", **options)


# --- docs/methods.md: the worked example (A = x, logit of class 0: y = (sum A_1 - 2 sum A_2) / 9 = -2/9) -----
def test_worked_example_scorecam():
    # H_1 = A_1 / 3, H_2 = A_2 / 2; sum A_1^2 = 20, sum A_1 A_2 = 4, sum A_2^2 = 8
    res = worked("scorecam")
    np.testing.assert_allclose(res.masked_scores[0, 0], [4 / 9, -2 / 3], **F64)   # (20/3 - 8/3)/9, (2 - 8)/9
    w1 = 1 / (1 + np.exp(-10 / 9))                                                # softmax of (4/9, -6/9)
    np.testing.assert_allclose(res.weights[0, 0], [w1, 1 - w1], **F64)
    np.testing.assert_allclose(res.raw_map, w1 * WORKED_A1 + (1 - w1) * WORKED_A2, **F64)
    assert abs(w1 - 0.752336) < 1e-6 and res.baseline_scores is None


def test_worked_example_scorecam_score_and_increase():
    np.testing.assert_allclose(worked("scorecam", weighting="score").weights[0, 0], [4 / 9, -2 / 3], **F64)
    res = worked("scorecam", weighting="increase", baseline=1.0)                  # y(1) = (9 - 18)/9 = -1
    np.testing.assert_allclose(res.baseline_scores, [[-1.0]], **F64)
    np.testing.assert_allclose(res.weights[0, 0], [13 / 9, 1 / 3], **F64)


def test_worked_example_ablationcam():
    res = worked("ablationcam")
    # A_1 = 0: y_1 = -12/9; A_2 = 0: y_2 = 10/9; w = (y - y_k)/y = (-5, 6): a negative score flips the ratio
    np.testing.assert_allclose(res.ablated_scores[0, 0], [-4 / 3, 10 / 9], **F64)
    np.testing.assert_allclose(res.weights[0, 0], [-5.0, 6.0], **F64)
    np.testing.assert_allclose(res.raw_map, np.maximum(6 * WORKED_A2 - 5 * WORKED_A1, 0.0), **F64)
    positive = worked("ablationcam", label=1)                                        # y = 11/9, y_k = (6/9, 5/9)
    np.testing.assert_allclose(positive.weights[0, 0], [5 / 11, 6 / 11], **F64)


# --- naive twins -------------------------------------------------------------------------------------------
def naive_linear(a, size, corners):
    """One 2-D map bilinearly resized, output pixel by output pixel (PyTorch's two align_corners rules)."""
    def source(d, n, m):
        s = d * (n - 1) / (m - 1) if corners else max((d + 0.5) * n / m - 0.5, 0.0)
        i = min(int(np.floor(s)), n - 1)
        return i, (s - i if i < n - 1 else 0.0)
    out = np.zeros(size)
    for r in range(size[0]):
        i, f = source(r, a.shape[0], size[0])
        for c in range(size[1]):
            j, g = source(c, a.shape[1], size[1])
            i1, j1 = min(i + 1, a.shape[0] - 1), min(j + 1, a.shape[1] - 1)
            out[r, c] = ((1 - f) * (1 - g) * a[i, j] + (1 - f) * g * a[i, j1] + f * (1 - g) * a[i1, j]
                         + f * g * a[i1, j1])
    return out


def naive_mask(a, size, corners, normalize, eps):
    def scaled(m):
        spread = m.max() - m.min() + eps
        return np.zeros_like(m) if spread == 0 else (m - m.min()) / spread
    if normalize == "before":
        return naive_linear(scaled(a), size, corners)
    return scaled(naive_linear(a, size, corners))


def softmax_head(net, pooled):
    """gap -> fc -> softmax of the classifier, in NumPy: pooled (C,) -> probabilities."""
    fc = net.layer("fc")
    z = np.asarray(fc.weights) @ pooled + np.asarray(fc.bias).ravel()
    return np.exp(z - z.max()) / np.exp(z - z.max()).sum()


@pytest.fixture
def batch(rng):
    return rng.uniform(0.0, 1.0, (8, 8, 3, 3))


@pytest.mark.parametrize("mask_upsampling, normalize, eps", [("linear", "after", 0.0),
                                                             ("linear-corners", "after", 1e-8),
                                                             ("linear", "before", 1e-8)])
def test_scorecam_masked_scores_equal_a_naive_loop(classifier, batch, mask_upsampling, normalize, eps):
    res = refcam.scorecam(classifier, batch, ["cat", "fox"], format="SSCB", feature_layer="relu_2",
                          upsampling="none", batch_size=7, mask_upsampling=mask_upsampling, normalize=normalize,
                          eps=eps)
    x = batch.transpose(3, 2, 0, 1)                                                  # SSCB -> (B, C, H, W)
    for b in range(3):
        for k in range(res.activations.shape[1]):
            mask = naive_mask(res.activations[b, k], (8, 8), mask_upsampling == "linear-corners", normalize, eps)
            masked = (x[b] * mask).transpose(1, 2, 0)                                # H x W x C
            probabilities = classifier.predict(masked)[0]
            np.testing.assert_allclose(res.masked_scores[:, b, k], probabilities[[0, 2]], **F64)
    softmax = np.exp(res.masked_scores) / np.exp(res.masked_scores).sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(res.weights, softmax, **F64)


def test_ablationcam_equals_a_naive_head(classifier, batch):
    res = refcam.ablationcam(classifier, batch, ["dog", "cat"], format="SSCB", feature_layer="relu_2",
                             upsampling="none", batch_size=4)
    a = res.activations                                                              # (B, C, 4, 4)
    for b in range(3):
        original = softmax_head(classifier, a[b].mean(axis=(1, 2)))[[1, 0]]
        np.testing.assert_allclose(res.scores[:, b], original, **F64)
        for k in range(a.shape[1]):
            ablated = a[b].copy()
            ablated[k] = 0.0
            y_k = softmax_head(classifier, ablated.mean(axis=(1, 2)))[[1, 0]]
            np.testing.assert_allclose(res.ablated_scores[:, b, k], y_k, **F64)
            np.testing.assert_allclose(res.weights[:, b, k], (original - y_k) / original, **F64)
    expected = np.maximum((res.weights[..., None, None] * a[None]).sum(axis=2), 0.0)   # (K, B, 4, 4)
    np.testing.assert_allclose(np.moveaxis(res.raw_map, (2, 3), (0, 1)), expected, **F64)


def test_ablationcam_of_a_linear_head_is_the_gradient_contribution():
    """Logit of the worked example, linear in A without bias: y - y_k = sum_p g_k[p] A_k[p]."""
    res = worked("ablationcam")
    contribution = (res.gradients[0, 0] * res.activations[0]).sum(axis=(1, 2))
    np.testing.assert_allclose(res.scores[0, 0] - res.ablated_scores[0, 0], contribution, **F64)


def test_mask_upsampling_taps():
    assert corner_linear_weights(3, 5)[0].tolist() == [[1.0, 0.0], [0.5, 0.5], [1.0, 0.0], [0.5, 0.5], [1.0, 0.0]]
    ramp = np.arange(3.0).reshape(1, 1, 3)
    np.testing.assert_allclose(upsample_masks(ramp, (5,), "linear-corners")[0, 0], [0, 0.5, 1, 1.5, 2], **F64)
    np.testing.assert_allclose(upsample_masks(ramp, (6,), "nearest")[0, 0], [0, 0, 1, 1, 2, 2], **F64)


# --- the head runner ---------------------------------------------------------------------------------------
def test_the_head_with_a_side_input_equals_the_forward_pass(rng):
    net = nets.skip_head_2d(rng)
    x = rng.uniform(0.0, 1.0, (1, 2, 6, 6))
    plan = head_plan(net, "relu_2", "softmax")
    assert plan.side_inputs == ("relu_1",) and [layer.name for layer in plan.layers] == ["add", "gap", "fc",
                                                                                          "softmax"]
    outputs = net.forward_tensors(Tensor(x), ["relu_1", "relu_2", "softmax"])
    head = run_head(plan, outputs["relu_2"], {"relu_1": outputs["relu_1"]})
    np.testing.assert_allclose(head.data, outputs["softmax"].data, **F64)
    with pytest.raises(GradCAMError, match="also reads"):
        run_head(plan, outputs["relu_2"])
    with pytest.raises(GradCAMError, match="does not depend"):
        head_plan(net, "softmax", "relu_1")


def test_ablationcam_through_a_residual_head(rng):
    net = nets.skip_head_2d(rng)
    x = rng.uniform(0.0, 1.0, (6, 6, 2))
    res = refcam.ablationcam(net, x, "1", feature_layer="relu_2", reduction_layer="fc", upsampling="none")
    shortcut = net.activations(x, ["relu_1"])["relu_1"][0]
    fc = net.layer("fc")
    for k in range(4):
        ablated = res.activations[0].copy()
        ablated[k] = 0.0
        y_k = (np.asarray(fc.weights) @ (ablated + shortcut).mean(axis=(1, 2)) + np.asarray(fc.bias).ravel())[1]
        np.testing.assert_allclose(res.ablated_scores[0, 0, k], y_k, **F64)


# --- batching, progress, labels, dtypes, ranks ----------------------------------------------------------
@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_batch_size_does_not_change_the_result_and_progress_is_reported(method, classifier, batch):
    calls = []
    runs = [refcam.explain(classifier, batch, ["cat", "dog"], method=method, format="SSCB", feature_layer="relu_2",
                           batch_size=size, progress=lambda done, total: calls.append((done, total)))
            for size in (1, 6, 100)]
    for other in runs[1:]:
        np.testing.assert_allclose(other.weights, runs[0].weights, **F64)
        np.testing.assert_allclose(other.map, runs[0].map, **F64)
    total = 3 * 5
    assert calls[:total] == [(done, total) for done in range(1, total + 1)]
    assert calls[total:] == [(6, total), (12, total), (15, total), (15, total)]
    assert runs[0].info["batch_size"] == 1 and runs[0].info["method"] == method


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_several_labels_share_the_passes(method, classifier, image):
    both = refcam.explain(classifier, image, ["fox", "cat"], method=method)
    for k, label in enumerate(["fox", "cat"]):
        alone = refcam.explain(classifier, image, label, method=method)
        np.testing.assert_allclose(both.map[..., k], alone.map, **F64)
    assert both.map.shape == (8, 8, 2)


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_float32_and_the_reduction_form(method, classifier, image):
    res32 = refcam.explain(classifier, image, "dog", method=method, dtype="float32")
    res64 = refcam.explain(classifier, image, reduction=lambda y: y[1], method=method)
    assert res32.map.dtype == np.float32 and res32.weights.dtype == np.float32
    # max |float32 - float64| against max |float64|, as for the goldens: y - y_k cancels digits in float32
    assert np.abs(res32.map - res64.map).max() <= GOLDEN32 * np.abs(res64.map).max()


@pytest.mark.parametrize("method", ["scorecam", "ablationcam"])
def test_sequences_and_volumes(method, rng):
    sequence = refcam.explain(nets.sequence_1d(rng), rng.standard_normal((4, 10)), "2", method=method,
                              feature_layer="relu_1")
    volume = refcam.explain(nets.volume_3d(rng), rng.uniform(0.0, 1.0, (6, 6, 6, 1)), ["a", "b"], method=method,
                            batch_size=2)
    assert sequence.map.shape == (1, 10) and volume.map.shape == (6, 6, 6, 2)
    assert np.isfinite(sequence.map).all() and np.isfinite(volume.map).all() and volume.map.max() > 0


def test_scorecam_on_a_volume_equals_a_naive_mask(rng):
    """3-D masks: a feature map at the input's size is only normalised; the masked volume is scored whole."""
    net, x = nets.volume_3d(rng), rng.uniform(0.0, 1.0, (6, 6, 6, 1))
    res = refcam.scorecam(net, x, "b", upsampling="none")
    for k in range(3):
        a = res.activations[0, k]
        mask = (a - a.min()) / (a.max() - a.min())
        np.testing.assert_allclose(res.masked_scores[0, 0, k], net.predict(x * mask[..., None])[0, 1], **F64)


def test_a_segmentation_mask_scores_the_masked_pixels_only(rng):
    net, x = nets.segmentation_2d(rng), rng.standard_normal((6, 6, 2))
    mask = np.zeros((6, 6), dtype=bool)
    mask[1:3, 2:5] = True
    res = refcam.ablationcam(net, x, "car", mask=mask, feature_layer="relu_1", upsampling="none")
    a = res.activations[0]
    for k in range(4):
        ablated = a.copy()
        ablated[k] = 0.0
        probabilities = run_head(head_plan(net, "relu_1", "softmax"), Tensor(ablated[None])).data
        np.testing.assert_allclose(res.ablated_scores[0, 0, k], probabilities[0, 2][mask].sum(), **F64)
    score = refcam.scorecam(net, x, "car", mask=mask, feature_layer="relu_1", weighting="score")
    full = refcam.scorecam(net, x, "car", feature_layer="relu_1", weighting="score")
    assert score.masked_scores.shape == (1, 1, 4) and np.all(score.masked_scores < full.masked_scores)


# --- errors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method, options, message", [
    ("scorecam", {"batch_size": 0}, "batch_size"), ("ablationcam", {"batch_size": 2.5}, "batch_size"),
    ("ablationcam", {"progress": "bar"}, "progress"), ("scorecam", {"weighting": "probability"}, "weighting"),
    ("scorecam", {"mask_upsampling": "bicubic"}, "mask_upsampling"), ("scorecam", {"normalize": "never"}, "normalize"),
    ("ablationcam", {"center": True}, "no option"),
])
def test_bad_options(method, options, message, classifier, image):
    with pytest.raises(GradCAMError, match=message):
        refcam.explain(classifier, image, "cat", method=method, **options)


def test_a_baseline_of_another_shape_is_an_error(classifier, batch):
    with pytest.raises(GradCAMError, match="baseline has internal shape"):
        refcam.scorecam(classifier, batch, "cat", format="SSCB", weighting="increase", baseline=np.zeros((8, 8, 3)))


def test_a_zero_score_is_an_error_for_ablationcam():
    with pytest.raises(GradCAMError, match="exactly 0"):
        ablation_weights(np.array([[1.0, 0.0]]), np.zeros((1, 2, 3)))


def test_a_score_is_required(classifier, image):
    with pytest.raises(GradCAMError, match="exactly one of label"):
        refcam.scorecam(classifier, image)


def test_below_the_dispatch_nothing_imports_gradcam_or_explain():
    for module in ("perturbation_methods", "head"):
        source = Path(refcam.__file__).parent / "cam" / f"{module}.py"
        imported = {node.module for node in ast.walk(ast.parse(source.read_text()))
                    if isinstance(node, ast.ImportFrom)}
        assert not imported & {"gradcam", "explain", "refcam.cam.gradcam", "refcam.cam.explain"}, imported
