"""Grad-CAM++ form="exact": the score's second and third derivatives along each entry of A against central finite
differences in float64, docs/methods.md's numbers, the closed form as the logit case, 1-D and 3-D, and errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import refcam
from refcam import layers as L
from refcam.cam.capture import capture
from refcam.cam.score_derivatives import score_derivatives
from refcam.errors import GradCAMError
from refcam.network import Network
from tests.cam import nets
from tests.cam.test_gradcam import WORKED_A1, head_function, worked_input
from tests.tolerances import F64

# central differences of order 2 and 3 lose to truncation (~ h^2 f^(5)) or rounding (~ 1e-17 / h^3): the step is
# a twentieth of the length over which the score bends, max |S'| / max |S''| or sqrt(max |S'| / max |S'''|),
# whichever is shorter (every head here is smooth there: no ReLU or pooling above the feature layer)
STEP_FRACTION = 0.05
FD_RTOL = 1e-4       # of the largest derivative of that order


def central_differences(f, h):
    """(f', f'', f''') at 0 by central differences with step h (errors ~ h^2)."""
    values = {k: f(k * h) for k in (-2, -1, 0, 1, 2)}
    return ((values[1] - values[-1]) / (2 * h), (values[1] - 2 * values[0] + values[-1]) / h ** 2,
            (values[2] - 2 * values[1] + 2 * values[-1] - values[-2]) / (2 * h ** 3))


def line_derivatives(run, a, index, score, step):
    """(f', f'', f''') of t -> score(run(a + t e_index)) at 0: central differences at step and step/2,
    Richardson-extrapolated (errors ~ step^4)."""
    def f(t):
        moved = a.copy()
        moved[index] += t
        return score(run(moved))
    coarse, fine = central_differences(f, step), central_differences(f, step / 2)
    return tuple((4 * b - c) / 3 for c, b in zip(coarse, fine))


def assert_derivatives_match_finite_differences(net, x, label, feature, rng, mask=None, entries=6, **options):
    res = refcam.gradcam_plus_plus(net, x, label, form="exact", feature_layer=feature, mask=mask, **options)
    run = head_function(net, x, feature, res.reduction_layer)
    labels = res.labels
    weight = 1.0 if mask is None else mask.astype(float)
    for k, c in enumerate(labels):
        def score(y, c=c):
            return float((y[:, c] * weight).sum())
        derivatives = (res.gradients[k], res.second[k], res.third[k])
        first, second, third = (np.abs(d).max() for d in derivatives)
        step = STEP_FRACTION * min(first / second, np.sqrt(first / third))
        for _ in range(entries):
            index = tuple(int(rng.integers(n)) for n in res.activations.shape)
            for analytic, fd in zip(derivatives, line_derivatives(run, res.activations, index, score, step)):
                scale = np.abs(analytic).max()
                assert abs(analytic[index] - fd) <= FD_RTOL * scale + 1e-14, (index, analytic[index], fd)
    return res


# --- finite differences, heads without a kink near A ------------------------------------------------------
def test_softmax_score_of_a_classifier(rng):
    net = nets.classifier_2d(rng)
    x = rng.uniform(0, 1, (8, 8, 3))
    assert_derivatives_match_finite_differences(net, x, ["cat", "fox"], "relu_2", rng)


def test_softmax_per_pixel_summed_and_masked(rng):
    net = nets.segmentation_2d(rng)
    x = rng.standard_normal((6, 6, 2))
    assert_derivatives_match_finite_differences(net, x, "road", "relu_1", rng)
    mask = rng.uniform(size=(6, 6)) > 0.5
    assert_derivatives_match_finite_differences(net, x, "car", "relu_1", rng, mask=mask)


def test_sigmoid_score(rng):
    """The classifier with a sigmoid (multi-label scores) in place of its softmax and output layer."""
    net = Network([*nets.classifier_2d(rng).layers[:-2], L.SigmoidLayer(name="sigmoid")])
    x = rng.uniform(0, 1, (8, 8, 3))
    res = assert_derivatives_match_finite_differences(net, x, [0, 2], "relu_2", rng)
    assert res.reduction_layer == "sigmoid"


def test_sequences_and_volumes(rng):
    net = nets.sequence_1d(rng)
    assert_derivatives_match_finite_differences(net, rng.standard_normal((4, 7)), "2", "layernorm_1", rng)
    net = nets.volume_3d(rng, size=4)
    assert_derivatives_match_finite_differences(net, rng.standard_normal((4, 4, 4, 1)), "b", "relu_1", rng)


# --- docs/methods.md: the worked example with the softmax score --------------------------------------------
def test_worked_example_exact_form():
    res = refcam.gradcam_plus_plus(nets.worked_example(), worked_input(), "class0", form="exact", upsampling="none")
    p0 = 1.0 / (1.0 + np.exp(13.0 / 9.0))
    p1 = 1.0 - p0
    # S = p0 = sigmoid(z0 - z1); along A_k[p] the difference moves by d_k = (W[0, k] - W[1, k]) / 9 = (1/18, -1/3)
    for k, d in enumerate((1 / 18, -1 / 3)):
        np.testing.assert_allclose(res.gradients[0, 0, k], p0 * p1 * d, **F64)
        np.testing.assert_allclose(res.second[0, 0, k], p0 * p1 * (p1 - p0) * d ** 2, **F64)
        np.testing.assert_allclose(res.third[0, 0, k], p0 * p1 * (p1 ** 2 - 4 * p0 * p1 + p0 ** 2) * d ** 3, **F64)
    g, h, t = p0 * p1 / 18, p0 * p1 * (p1 - p0) / 18 ** 2, p0 * p1 * (p1 ** 2 - 4 * p0 * p1 + p0 ** 2) / 18 ** 3
    a1 = (g * g + h) / (2 * (g * g + h) + 10 * (g ** 3 + 3 * g * h + t))
    assert abs(a1 - 0.439392) < 1e-6
    np.testing.assert_allclose(res.alphas[0, 0, 0], np.full((3, 3), a1), **F64)
    np.testing.assert_allclose(res.weights[0, 0], [9 * a1 * g, 0.0], **F64)
    np.testing.assert_allclose(res.raw_map, 9 * a1 * g * WORKED_A1, **F64)
    closed = refcam.gradcam_plus_plus(nets.worked_example(), worked_input(), "class0", upsampling="none")
    assert abs(closed.alphas[0, 0, 0, 0, 0] - 0.479433) < 1e-6


# --- relations and errors -----------------------------------------------------------------------------------
def test_exact_form_of_the_logit_is_the_closed_form(rng):
    net = nets.classifier_2d(rng)
    x = rng.uniform(0, 1, (8, 8, 3))
    exact = refcam.gradcam_plus_plus(net, x, ["cat", "dog"], form="exact", reduction_layer="fc", feature_layer="relu_1")
    closed = refcam.gradcam_plus_plus(net, x, ["cat", "dog"], reduction_layer="fc", feature_layer="relu_1")
    assert not exact.second.any() and not exact.third.any()
    np.testing.assert_allclose(exact.raw_map, closed.raw_map, **F64)


def test_first_derivative_of_the_jacobian_columns_is_the_gradient(rng):
    net = nets.classifier_2d(rng)
    x = rng.uniform(0, 1, (8, 8, 3, 2))
    res = refcam.gradcam_plus_plus(net, x, ["cat", "fox"], form="exact", format="SSCB", feature_layer="relu_1")
    captured = capture(net, x, ["cat", "fox"], format="SSCB", feature_layer="relu_1")
    first, second, _ = score_derivatives(net, x, captured, format="SSCB")
    np.testing.assert_allclose(first, captured.gradients, **F64)
    np.testing.assert_allclose(second, res.second, **F64)


def test_exact_form_refuses_what_it_cannot_differentiate(rng):
    net = nets.sequence_1d(rng)
    x = rng.standard_normal((4, 7))
    with pytest.raises(GradCAMError, match="layernorm_1"):
        refcam.gradcam_plus_plus(net, x, "2", form="exact", feature_layer="relu_1")
    with pytest.raises(GradCAMError, match="reduction="):
        refcam.gradcam_plus_plus(net, x, reduction=lambda y: y[0], form="exact", feature_layer="layernorm_1")
    with pytest.raises(GradCAMError, match="form must be one of"):
        refcam.gradcam_plus_plus(net, x, "2", form="second-order")


@pytest.mark.parametrize("network, layer, documented", [
    ("net2d", "relu_2", 0.059), ("net2d", "relu_1", 0.068), ("net3d", "relu_2", 0.0020), ("net3d", "relu_1", 0.026),
    ("net1d", "relu_2", 0.064), ("net1d", "relu_1", 0.36),
])
def test_documented_difference_from_the_closed_form(network, layer, documented):
    """docs/methods.md section 1's table: max |M_exact - M_closed| / max |M_closed| with the softmax score."""
    peers = Path(__file__).parents[2] / "fixtures" / "peers"
    net = refcam.load(peers / f"{network}.h5")
    with np.load(peers / f"{network}_input.npz") as data:
        x, labels, meta = data["x"], [int(c) for c in data["labels"]], json.loads(str(data["meta"]))
    maps = [refcam.gradcam_plus_plus(net, x, labels, form=form, feature_layer=layer, format=meta["format"],
                                     upsampling="none").raw_map for form in ("exact", "closed")]
    difference = np.abs(maps[0] - maps[1]).max() / np.abs(maps[1]).max()
    assert float(f"{difference:.2g}") == documented
