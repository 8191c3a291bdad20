"""refcam.gradcam: MATLAB gradCAM semantics G1-G15."""
from __future__ import annotations

import numpy as np
import pytest

import refcam
from refcam.autodiff import Tensor
from refcam.cam.gradcam import gradcam
from refcam.errors import (AllGradientsZeroError, GradCAMError, InputDtypeError, LabelError,
                           InputError, LayerNotFoundError, NonFiniteInputError, NonFiniteScoreError,
                           ReductionError)
from refcam.layout import to_internal
from refcam.testing import TOLERANCES
from tests.cam import nets
from tests.tolerances import F32, F64

VJP = TOLERANCES["vjp"]


# --- G13: the formula, on a network small enough to check by hand -------------------------------
WORKED_A1 = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, 0.0, 1.0]])
WORKED_A2 = np.array([[0.0, 1.0, 1.0], [2.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
WORKED_PATTERN = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 3.0], [0.0, 0.0, 1.0]])


def worked_input():
    return np.stack([WORKED_A1, WORKED_A2], axis=-1)  # 3 x 3 x 2 (MATLAB SSC)


def test_worked_example_logit_matches_docs():
    res = gradcam(nets.worked_example(), worked_input(), 0, reduction_layer="fc", upsampling="none")
    assert res.feature_layer == "relu"
    np.testing.assert_allclose(res.weights[0, 0], [1 / 9, -2 / 9], **F64)
    np.testing.assert_allclose(res.raw_map, WORKED_PATTERN / 9, **F64)
    np.testing.assert_allclose(res.map, WORKED_PATTERN / 9, **F64)


def test_worked_example_softmax_matches_docs():
    res = gradcam(nets.worked_example(), worked_input(), "class0", upsampling="none")
    assert res.reduction_layer == "softmax"
    p0 = 1.0 / (1.0 + np.exp(13.0 / 9.0))
    p1 = 1.0 - p0
    assert abs(p0 - 0.190858) < 1e-6
    np.testing.assert_allclose(res.scores[0, 0], p0, **F64)
    np.testing.assert_allclose(res.weights[0, 0], [p0 * p1 * 0.5 / 9, -p0 * p1 * 3 / 9], **F64)
    np.testing.assert_allclose(res.raw_map, p0 * p1 / 18 * WORKED_PATTERN, **F64)


# --- dscore/dA against finite differences through the whole head ---------------------------------
def head_function(net, x, feature, reduction):
    """A -> reduction output, recomputing only the layers downstream of ``feature``."""
    x_internal, _ = to_internal(x, net.input_layer)
    order = [layer.name for layer in net.layers]
    upto = order[: order.index(reduction) + 1]
    cached = {n: t.data for n, t in net.forward_tensors(Tensor(x_internal), upto).items()}
    downstream = net.downstream(feature)

    def run(a):
        values = dict(cached, **{feature: a})
        for layer in net.layers:
            if layer.name in downstream and layer.name in upto:
                values[layer.name] = layer.forward(*(Tensor(values[n]) for n in layer.inputs)).data
        return values[reduction]
    return run


def assert_gradient_matches_finite_differences(res, run, score_of, rng):
    a = res.activations
    for k in range(res.gradients.shape[0]):
        for _ in range(2):
            v = rng.standard_normal(a.shape)
            eps = VJP["eps"]
            fd = (score_of(run(a + eps * v), k) - score_of(run(a - eps * v), k)) / (2 * eps)
            analytic = float((res.gradients[k] * v).sum())
            assert abs(fd - analytic) <= VJP["rtol"] * max(abs(fd), abs(analytic)) + VJP["atol"], (fd, analytic)


def test_gradients_fd_classification(classifier, image, rng):
    res = gradcam(classifier, image, ["cat", "fox"])
    run = head_function(classifier, image, res.feature_layer, res.reduction_layer)
    assert_gradient_matches_finite_differences(res, run, lambda y, k: y[0, [0, 2][k]], rng)


def test_gradients_fd_regression_identity_on_fc(rng):
    net = nets.regression_2d(rng)
    x = rng.uniform(0, 1, (8, 8, 1))
    res = gradcam(net, x, reduction=lambda y: y, feature_layer="relu_2", reduction_layer="fc")
    run = head_function(net, x, "relu_2", "fc")
    assert_gradient_matches_finite_differences(res, run, lambda y, k: y.sum(), rng)
    np.testing.assert_allclose(res.scores[0, 0], net.predict(x)[0, 0], **F64)


def test_gradients_fd_segmentation_sum_over_pixels(rng):
    net = nets.segmentation_2d(rng)
    x = rng.standard_normal((6, 6, 2))
    assert gradcam(net, x, "road").feature_layer == "conv_2"  # last spatial layer upstream of softmax
    res = gradcam(net, x, "road", feature_layer="relu_1")
    assert res.reduction_layer == "softmax"
    run = head_function(net, x, "relu_1", "softmax")
    assert_gradient_matches_finite_differences(res, run, lambda y, k: y[0, 1].sum(), rng)


def test_gradients_fd_segmentation_mask(rng):
    net = nets.segmentation_2d(rng)
    x = rng.standard_normal((6, 6, 2))
    mask = np.zeros((6, 6), dtype=bool)
    mask[1:3, 2:5] = True
    res = gradcam(net, x, "car", mask=mask, feature_layer="relu_1")
    run = head_function(net, x, "relu_1", "softmax")
    assert_gradient_matches_finite_differences(res, run, lambda y, k: y[0, 2][mask].sum(), rng)
    full = gradcam(net, x, "car", feature_layer="relu_1")
    assert not np.allclose(res.gradients, full.gradients)


def test_gradients_fd_skip_connection_in_head(rng):
    net = nets.skip_head_2d(rng)
    x = rng.standard_normal((6, 6, 2))
    res = gradcam(net, x, [0, 1, 2], feature_layer="relu_1")
    run = head_function(net, x, "relu_1", "softmax")
    assert_gradient_matches_finite_differences(res, run, lambda y, k: y[0, k], rng)


# --- G15: the sweep covers the head only -----------------------------------------------------------
def test_backward_stops_at_feature_layer(classifier, image):
    res = gradcam(classifier, image, "dog")
    ops = res.info["recorded_ops"]
    assert res.feature_layer == "relu_2"
    assert "conv" not in ops and "batch_norm" not in ops and "max_pool" not in ops
    assert ops[0] == "global_avg_pool"
    res_low = gradcam(classifier, image, "dog", feature_layer="relu_1")
    assert res_low.info["recorded_ops"].count("conv") == 1
    assert "batch_norm" not in res_low.info["recorded_ops"]


# --- G1, G2, G3, G4: call forms ---------------------------------------------------------------
def test_label_forms_agree(classifier, image):
    by_name = gradcam(classifier, image, "dog")
    by_index = gradcam(classifier, image, 1)
    by_numpy_index = gradcam(classifier, image, np.int64(1))
    np.testing.assert_array_equal(by_name.map, by_index.map)
    np.testing.assert_array_equal(by_name.map, by_numpy_index.map)
    assert by_name.map.shape == (8, 8)


def test_several_labels_stack_on_trailing_axis(classifier, image):
    stacked = gradcam(classifier, image, ["fox", "cat", "dog"])
    assert stacked.map.shape == (8, 8, 3) and stacked.raw_map.shape == (4, 4, 3)
    for n, label in enumerate(["fox", "cat", "dog"]):
        single = gradcam(classifier, image, label)
        np.testing.assert_allclose(stacked.map[..., n], single.map, **F64)
        np.testing.assert_allclose(stacked.gradients[n], single.gradients[0], **F64)
    assert gradcam(classifier, image, ["dog"]).map.shape == (8, 8, 1)


def test_reduction_function_equals_label(classifier, image):
    by_label = gradcam(classifier, image, 2)
    by_function = gradcam(classifier, image, reduction=lambda y: y[2])
    np.testing.assert_allclose(by_function.map, by_label.map, **F64)
    by_sum = gradcam(classifier, image, reduction=lambda y: (y * y).sum())
    assert by_sum.map.shape == (8, 8)


def test_result_unpacks_like_matlab(classifier, image):
    score_map, feature_layer, reduction_layer = gradcam(classifier, image, "cat")
    assert feature_layer == "relu_2" and reduction_layer == "softmax"
    assert score_map.shape == (8, 8)


def test_explicit_layers_are_returned(classifier, image):
    res = gradcam(classifier, image, "cat", feature_layer="relu_1", reduction_layer="fc")
    assert (res.feature_layer, res.reduction_layer) == ("relu_1", "fc")
    assert res.raw_map.shape == (8, 8)


def test_default_layers_without_output_layer(rng, image):
    net = nets.classifier_2d(rng)
    from refcam.network import Network
    trimmed = Network([layer for layer in net.layers if layer.name != "output"])
    res = gradcam(trimmed, image, 0)
    assert res.reduction_layer == "softmax"  # the last layer (dlnetwork rule)
    trimmed_fc = Network([layer for layer in net.layers if layer.name not in ("output", "softmax")])
    assert gradcam(trimmed_fc, image, 0).reduction_layer == "fc"


# --- errors --------------------------------------------------------------------------------------
def test_label_and_reduction_are_exclusive(classifier, image):
    with pytest.raises(GradCAMError, match="exactly one"):
        gradcam(classifier, image, "cat", reduction=lambda y: y[0])
    with pytest.raises(GradCAMError, match="exactly one"):
        gradcam(classifier, image)


def test_non_scalar_reduction_is_an_error(classifier, image):
    with pytest.raises(ReductionError, match="scalar"):
        gradcam(classifier, image, reduction=lambda y: y)
    with pytest.raises(ReductionError, match="Tensor"):
        gradcam(classifier, image, reduction=lambda y: 1.0)


def test_reduction_must_be_callable(classifier, image):
    with pytest.raises(ReductionError, match="must be a function"):
        gradcam(classifier, image, reduction=5)


def test_an_exception_inside_the_reduction_is_chained(classifier, image):
    def broken(y):
        return {}["missing"]

    with pytest.raises(ReductionError, match="raised KeyError") as raised:
        gradcam(classifier, image, reduction=broken)
    assert isinstance(raised.value.__cause__, KeyError)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_reduction_score_is_an_error(classifier, image, value):
    with pytest.raises(NonFiniteScoreError, match="finite score"):
        gradcam(classifier, image, reduction=lambda y: y[0] * value)


def test_a_feature_layer_without_spatial_axes_is_named(classifier, image):
    with pytest.raises(GradCAMError, match="no spatial or time axis"):
        gradcam(classifier, image, "cat", feature_layer="fc")


def test_a_mask_on_an_output_without_spatial_axes_says_so(classifier, image):
    with pytest.raises(InputError, match="no spatial or time axes") as raised:
        gradcam(classifier, image, "cat", mask=np.ones((2, 2), bool), reduction_layer="fc")
    assert "size  (" not in str(raised.value)


@pytest.mark.parametrize("label, message", [("wolf", "not a class"), (3, "out of range"),
                                            (-1, "0-based"), (1.0, "class name"), ([], "empty")])
def test_bad_labels(classifier, image, label, message):
    with pytest.raises(LabelError, match=message):
        gradcam(classifier, image, label)


def test_unknown_layer_names_list_valid_ones(classifier, image):
    with pytest.raises(LayerNotFoundError, match="'relu_2'"):
        gradcam(classifier, image, "cat", feature_layer="relu_9")
    with pytest.raises(LayerNotFoundError, match="reduction_layer 'prob'"):
        gradcam(classifier, image, "cat", reduction_layer="prob")


def test_feature_layer_not_upstream_gives_all_gradients_zero(classifier, image):
    with pytest.raises(AllGradientsZeroError, match="not downstream"):
        gradcam(classifier, image, 0, feature_layer="relu_2", reduction_layer="conv_1")


def test_zero_gradient_is_reported(classifier, image):
    with pytest.raises(AllGradientsZeroError, match="zero"):
        gradcam(classifier, image, reduction=lambda y: y[0] * 0.0)


def test_bad_upsampling(classifier, image):
    with pytest.raises(GradCAMError, match="upsampling"):
        gradcam(classifier, image, "cat", upsampling="bilinear")


@pytest.mark.parametrize("bad, error", [(np.ones((8, 8, 3), dtype=bool), InputDtypeError),
                                        (np.full((8, 8, 3), np.nan), NonFiniteInputError),
                                        (np.ones((8, 8, 3), dtype=complex), InputDtypeError)])
def test_bad_inputs(classifier, bad, error):
    with pytest.raises(error):
        gradcam(classifier, bad, "cat")


def test_gpu_without_cupy_is_a_clear_error(classifier, image):
    from refcam.backend import gpu_available
    if gpu_available():
        pytest.skip("a GPU is present")
    with pytest.raises(refcam.errors.BackendError, match="CuPy|CUDA"):
        gradcam(classifier, image, "cat", device="gpu")


# --- G7, G8, G11: formats, upsampling, dtypes -----------------------------------------------------
@pytest.mark.parametrize("fmt, to_layout", [
    ("SSC", lambda x: x), ("CSS", lambda x: x.transpose(2, 0, 1)),
    ("SSCB", lambda x: x[..., None]), ("BCSS", lambda x: x.transpose(2, 0, 1)[None])])
def test_formats_give_the_same_map(classifier, image, fmt, to_layout):
    reference = gradcam(classifier, image, "dog").map
    res = gradcam(classifier, to_layout(image), "dog", format=fmt)
    expected = reference[..., None] if "B" in fmt else reference
    np.testing.assert_allclose(res.map, expected, **F64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.int16, np.int32, np.int64,
                                   np.uint8, np.uint16, np.uint32, np.uint64])
def test_every_input_dtype(classifier, rng, dtype):
    values = rng.integers(0, 100, (8, 8, 3))
    res = gradcam(classifier, values.astype(dtype), "fox")
    reference = gradcam(classifier, values.astype(np.float64), "fox")
    np.testing.assert_array_equal(res.map, reference.map)
    assert res.map.dtype == np.float64


def test_float32_compute(classifier, image):
    res32 = gradcam(classifier, image, "cat", dtype="float32")
    res64 = gradcam(classifier, image, "cat")
    assert res32.map.dtype == np.float32 and res32.gradients.dtype == np.float32
    np.testing.assert_allclose(res32.map, res64.map, rtol=F32["rtol"] * 100, atol=F32["atol"] * 10)


def test_upsampling_options(classifier, image):
    bicubic = gradcam(classifier, image, "cat")
    nearest = gradcam(classifier, image, "cat", upsampling="nearest")
    none = gradcam(classifier, image, "cat", upsampling="none")
    assert none.map.shape == (4, 4) and bicubic.map.shape == nearest.map.shape == (8, 8)
    np.testing.assert_array_equal(none.map, bicubic.raw_map)
    np.testing.assert_array_equal(nearest.map, np.repeat(np.repeat(none.map, 2, 0), 2, 1))
    np.testing.assert_allclose(bicubic.map, refcam.imresize(none.map, (8, 8), "bicubic"), **F64)


def test_sequence_map_is_one_by_t(rng):
    net = nets.sequence_1d(rng)
    x = rng.standard_normal((4, 19))
    res = gradcam(net, x, "1")
    assert res.feature_layer == "layernorm_1" and res.map.shape == (1, 19)
    assert gradcam(net, x, ["1", "3"]).map.shape == (1, 19, 2)
    run = head_function(net, x, "layernorm_1", "softmax")
    assert_gradient_matches_finite_differences(res, run, lambda y, k: y[0, 0], rng)


def test_volume_map_is_h_w_d(rng):
    net = nets.volume_3d(rng)
    x = rng.standard_normal((6, 6, 6, 1))
    res = gradcam(net, x, "b")
    assert res.map.shape == (6, 6, 6) and res.feature_layer == "relu_1"
    nearest = gradcam(net, x, "b", upsampling="nearest")
    np.testing.assert_allclose(nearest.map, res.raw_map, **F64)  # same size: resize is the identity


def test_batch_gives_one_map_per_observation(classifier, rng):
    batch = rng.uniform(0, 1, (8, 8, 3, 3))
    res = gradcam(classifier, batch, ["cat", "dog"], format="SSCB")
    assert res.map.shape == (8, 8, 2, 3)
    for b in range(3):
        single = gradcam(classifier, batch[..., b], ["cat", "dog"])
        np.testing.assert_allclose(res.map[..., b], single.map, **F64)


def test_batch_scores_per_observation_equal_single_runs(classifier, rng):
    """Class scores of a batch (computed at once) and masked segmentation scores equal one-observation runs."""
    batch = rng.uniform(0, 1, (8, 8, 3, 3))
    res = gradcam(classifier, batch, ["cat", "dog"], format="SSCB")
    assert res.scores.shape == (2, 3)
    for b in range(3):
        np.testing.assert_allclose(res.scores[:, b], gradcam(classifier, batch[..., b], ["cat", "dog"]).scores[:, 0],
                                   **F64)
    net = nets.segmentation_2d(rng)
    images = rng.standard_normal((6, 6, 2, 2))
    mask = np.zeros((6, 6), dtype=bool)
    mask[1:3, 2:5] = True
    res = gradcam(net, images, "car", mask=mask, feature_layer="relu_1", format="SSCB")
    for b in range(2):
        single = gradcam(net, images[..., b], "car", mask=mask, feature_layer="relu_1")
        np.testing.assert_allclose(res.scores[0, b], single.scores[0, 0], **F64)
        assert res.scores[0, b] != res.scores[0, 1 - b]


def test_deterministic(classifier, image):
    first = gradcam(classifier, image, "cat")
    second = gradcam(classifier, image, "cat")
    assert first.map.tobytes() == second.map.tobytes()


# --- cross-check with PyTorch autograd and Captum -----------------------------------------------
def test_raw_map_equals_captum_layer_gradcam(torch, rng, classifier, image):
    captum_attr = pytest.importorskip("captum.attr")
    model = torch_classifier(torch, classifier)
    x = torch.tensor(image.transpose(2, 0, 1)[None].copy())
    for target in range(3):
        for use_logit in (False, True):
            forward = model.logits if use_logit else model
            cam = captum_attr.LayerGradCam(forward, model.relu_2)
            expected = cam.attribute(x, target=target, relu_attributions=True).detach().numpy()[0, 0]
            res = gradcam(classifier, image, target, reduction_layer="fc" if use_logit else None,
                          upsampling="none")
            scale = np.abs(expected).max()
            assert np.abs(res.raw_map - expected).max() <= 1e-10 * scale
            a = model.features(x)
            a.retain_grad()
            score = (model.head_logits(a) if use_logit else model.head_probs(a))[0, target]
            (grad_a,) = torch.autograd.grad(score, a)
            np.testing.assert_allclose(res.gradients[0], grad_a.numpy(), rtol=1e-10, atol=1e-14)


def torch_classifier(torch, net):
    """The same weights as nets.classifier_2d in torch.nn (eval mode, float64)."""
    nn = torch.nn
    p = {layer.name: layer for layer in net.layers}

    def conv(name, c, f):
        m = nn.Conv2d(c, f, 3, padding=1)
        m.weight.data = torch.tensor(p[name].weights)
        m.bias.data = torch.tensor(p[name].bias)
        return m

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv_1 = conv("conv_1", 3, 4)
            self.bn_1 = nn.BatchNorm2d(4, eps=p["bn_1"].epsilon)
            bn = p["bn_1"]
            self.bn_1.running_mean.data = torch.tensor(bn.trained_mean)
            self.bn_1.running_var.data = torch.tensor(bn.trained_variance)
            self.bn_1.weight.data = torch.tensor(bn.scale)
            self.bn_1.bias.data = torch.tensor(bn.offset)
            self.relu_1 = nn.ReLU()
            self.pool = nn.MaxPool2d(2, 2)
            self.conv_2 = conv("conv_2", 4, 5)
            self.relu_2 = nn.ReLU()
            self.fc = nn.Linear(5, 3)
            self.fc.weight.data = torch.tensor(p["fc"].weights)
            self.fc.bias.data = torch.tensor(p["fc"].bias)
            self.eval()

        def features(self, x):
            return self.relu_2(self.conv_2(self.pool(self.relu_1(self.bn_1(self.conv_1(x))))))

        def head_logits(self, a):
            return self.fc(a.mean(dim=(2, 3)))

        def head_probs(self, a):
            return torch.softmax(self.head_logits(a), dim=1)

        def logits(self, x):
            return self.head_logits(self.features(x))

        def forward(self, x):
            return self.head_probs(self.features(x))
    return Model()


def test_reduction_function_sees_matlab_layout(rng, classifier, image):
    seen = []

    def record_shape(y):
        seen.append(y.shape)
        return (y * y).sum()
    sequence_net = nets.sequence_1d(rng)
    gradcam(sequence_net, rng.standard_normal((4, 19)), reduction=record_shape,
            feature_layer="conv1d_1", reduction_layer="layernorm_1")
    gradcam(classifier, image, reduction=record_shape, feature_layer="relu_1", reduction_layer="relu_2")
    gradcam(classifier, image, reduction=record_shape)
    assert list(dict.fromkeys(seen)) == [(5, 19), (4, 4, 5), (3,)]  # (C, T) for sequences, (*S, C) for images, (C,) without S


def test_convention_keyword_dispatches_to_peer_recipes(classifier, image):
    from refcam.cam.conventions import gradcam_as
    for convention in ("pytorch-grad-cam", "captum", "torchcam"):
        via_keyword = gradcam(classifier, image, "cat", convention=convention)
        direct = gradcam_as(convention, classifier, image, "cat")
        np.testing.assert_array_equal(via_keyword.map, direct.map)
    with pytest.raises(GradCAMError, match="convention"):
        gradcam(classifier, image, "cat", convention="grad-cam")


def test_reduction_function_is_called_once_per_observation(classifier, rng):
    """The recorded score and the per-observation scores come from the same calls (no second evaluation)."""
    calls = []

    def reduction(y):
        calls.append(y.shape)
        return (y * y).sum()

    batch = rng.uniform(0, 1, (8, 8, 3, 3))
    res = gradcam(classifier, batch, reduction=reduction, format="SSCB")
    assert len(calls) == 3
    probabilities = classifier.predict(batch, format="SSCB")
    np.testing.assert_allclose(res.scores[0], (probabilities ** 2).reshape(3, -1).sum(axis=1), **F64)
