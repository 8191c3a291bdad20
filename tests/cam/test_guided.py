"""Guided backpropagation and Guided Grad-CAM: the guided rule against a loop twin (finite differences for the
unguided layers), docs/methods.md's numbers, G15 for gradcam, layouts, 1-D and 3-D, call forms and errors."""
from __future__ import annotations

import numpy as np
import pytest

import refcam
from refcam import layers as L
from refcam.autodiff import Tensor
from refcam.cam.guided import guided_relu_vjp_x, input_layout
from refcam.errors import GradCAMError
from refcam.layout import Layout, to_internal
from refcam.network import Network
from refcam.testing import TOLERANCES
from tests.cam import nets
from tests.cam.test_gradcam import WORKED_A1, WORKED_A2, worked_input
from tests.tolerances import F32, F64

VJP = TOLERANCES["vjp"]


# --- the rule and a loop twin of the whole guided sweep --------------------------------------------------
def loop_guided_relu(x, g):
    out = np.zeros_like(g)
    for index in np.ndindex(g.shape):
        if x[index] > 0 and g[index] > 0:
            out[index] = g[index]
    return out


def test_guided_relu_rule_matches_its_loop_twin(rng):
    x, g = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    x[0, 0, :2] = 0.0                                      # x = 0 passes nothing, as the ordinary ReLU rule
    np.testing.assert_array_equal(guided_relu_vjp_x(x, g), loop_guided_relu(x, g))


def finite_difference_vjp(layer, x, g):
    """J^T g of one layer by central differences, one input entry at a time (layers without kinks)."""
    out = np.zeros_like(x)
    eps = VJP["eps"]
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        plus = layer.forward(Tensor(x + step)).data
        minus = layer.forward(Tensor(x - step)).data
        out[index] = ((plus - minus) * g).sum() / (2 * eps)
    return out


def loop_twin_guided(net, x_internal, reduction_layer, label):
    """Guided backprop of a series network layer by layer: ReLUs by the loop rule, every other layer by finite
    differences of its own forward. Returns (B, C, *S)."""
    names = [layer.name for layer in net.layers]
    chain = [net.layer(name) for name in names[: names.index(reduction_layer) + 1]]
    values = [x_internal]
    for layer in chain:
        values.append(layer.forward(Tensor(values[-1])).data)
    g = np.zeros_like(values[-1])
    g[:, label] = 1.0
    for layer, below in zip(reversed(chain), reversed(values[:-1])):
        g = loop_guided_relu(below, g) if isinstance(layer, L.ReLULayer) else finite_difference_vjp(layer, below, g)
    return g


@pytest.mark.parametrize("build, shape, format", [
    (lambda rng: nets.classifier_2d(rng, size=6), (6, 6, 3, 2), "SSCB"),
    (nets.sequence_1d, (4, 2, 7), "CBT"),
    (lambda rng: nets.volume_3d(rng, size=4), (4, 4, 4, 1), "SSSC"),
])
def test_guided_backprop_matches_the_loop_twin(rng, build, shape, format):
    net = build(rng)
    x = rng.standard_normal(shape)
    res = refcam.guided_backprop(net, x, 1, reduction_layer="fc", format=format)
    x_internal, _ = to_internal(x, net.input_layer, format=format)
    twin = loop_twin_guided(net, x_internal, "fc", 1)
    np.testing.assert_allclose(res.gradients[0], twin, rtol=VJP["rtol"], atol=VJP["atol"])
    assert res.info["guided_ops"] == sum(isinstance(layer, L.ReLULayer) for layer in net.layers)
    assert res.map.shape == (x.shape if format != "CBT" else (4, 7, 2))     # x's own axes, then B


def unguided_net(rng):
    """No ReLU op at all: leaky ReLU, clipped ReLU, tanh, swish and GELU keep their true derivatives."""
    return Network([
        L.ImageInputLayer(name="input", input_size=(5, 5, 2), normalization="zerocenter",
                          mean=0.1 * rng.standard_normal((2, 5, 5))),
        nets.conv("conv_1", rng, 3, 2, 3),
        L.LeakyReLULayer(name="leaky", scale=0.1),
        nets.conv("conv_2", rng, 3, 3, 3),
        L.ClippedReLULayer(name="clipped", ceiling=6.0),
        L.TanhLayer(name="tanh"),
        L.SwishLayer(name="swish"),
        L.GELULayer(name="gelu"),
        L.GlobalAveragePooling2dLayer(name="gap"),
        nets.fc("fc", rng, 2, 3),
        L.SoftmaxLayer(name="softmax"),
    ])


def test_guided_backprop_without_relu_is_the_true_gradient(rng):
    """Dot-product check against central differences of the whole network (the softmax score)."""
    net = unguided_net(rng)
    x = rng.standard_normal((5, 5, 2))
    res = refcam.guided_backprop(net, x, 0)
    assert res.info["guided_ops"] == 0 and res.reduction_layer == "softmax"
    for _ in range(3):
        v = rng.standard_normal(x.shape)
        eps = VJP["eps"]
        fd = (net.predict(x + eps * v)[0, 0] - net.predict(x - eps * v)[0, 0]) / (2 * eps)
        analytic = float((res.map * v).sum())
        assert abs(fd - analytic) <= VJP["rtol"] * max(abs(fd), abs(analytic)) + VJP["atol"], (fd, analytic)


def test_guided_differs_from_the_true_gradient_only_through_relus(rng):
    net = nets.classifier_2d(rng, size=6)
    x = rng.standard_normal((6, 6, 3))
    guided = refcam.guided_backprop(net, x, 0, reduction_layer="fc").map
    x_internal, _ = to_internal(x, net.input_layer)
    leaf = Tensor(x_internal, requires_grad=True)
    score = net.forward_tensors(leaf, ["fc"])["fc"][:, 0].sum()
    true = refcam.autodiff.grad(score, [leaf])[0][0].transpose(1, 2, 0)
    assert not np.allclose(guided, true)
    assert np.abs(guided).sum() > 0


# --- docs/methods.md: the worked example ---------------------------------------------------------------
def test_worked_example_guided_backprop_and_guided_gradcam():
    net, x = nets.worked_example(), worked_input()
    gb = refcam.explain(net, x, "class0", method="guided-backprop", reduction_layer="fc")
    # dz_0/dA = (1/9, -2/9) at every position; the ReLU at the input passes 1/9 where A_1 > 0, nothing of -2/9
    np.testing.assert_allclose(gb.map[..., 0], (WORKED_A1 > 0) / 9, **F64)
    np.testing.assert_allclose(gb.map[..., 1], 0.0, **F64)
    assert gb.feature_layer == "input" and gb.gradients.shape == (1, 1, 2, 3, 3)
    gg = refcam.explain(net, x, "class0", method="guided-gradcam", reduction_layer="fc")
    cam = np.maximum(WORKED_A1 - 2 * WORKED_A2, 0) / 9                    # [1 0 0; 0 1 3; 0 0 1] / 9
    np.testing.assert_allclose(gg.cam, cam, **F64)                         # 3x3 -> 3x3: the resize is the identity
    np.testing.assert_allclose(gg.map[..., 0], cam / 9, **F64)             # A_1 > 0 wherever the cam is not 0
    np.testing.assert_allclose(gg.map[..., 1], 0.0, **F64)
    assert abs(gg.map[1, 2, 0] - 3 / 81) < 1e-15


# --- G15 still holds for gradcam; guided backprop goes to the input ---------------------------------------
def test_gradcam_records_nothing_below_the_feature_layer_after_guided_backprop(rng):
    net = nets.classifier_2d(rng)
    x = rng.standard_normal((8, 8, 3))
    guided = refcam.guided_backprop(net, x, "dog")
    assert {"conv", "batch_norm", "max_pool"} <= set(guided.info["recorded_ops"])
    res = refcam.gradcam(net, x, "dog")
    assert not {"conv", "batch_norm", "max_pool", "relu"} & set(res.info["recorded_ops"])
    gg = refcam.guided_gradcam(net, x, "dog")
    assert gg.info["recorded_ops"] == res.info["recorded_ops"]
    assert "batch_norm" in gg.info["guided_recorded_ops"]


# --- Guided Grad-CAM is the product of its two intermediates ----------------------------------------------
def test_guided_gradcam_is_the_guided_gradient_times_the_resized_gradcam_map(rng):
    net = nets.classifier_2d(rng)
    x = rng.standard_normal((8, 8, 3, 2))
    gg = refcam.guided_gradcam(net, x, ["cat", "fox"], format="SSCB", upsampling="bicubic")
    gc = refcam.gradcam(net, x, ["cat", "fox"], format="SSCB")
    gb = refcam.guided_backprop(net, x, ["cat", "fox"], format="SSCB")
    np.testing.assert_allclose(gg.cam, gc.map, **F64)
    np.testing.assert_allclose(gg.raw_map, gc.raw_map, **F64)
    np.testing.assert_allclose(gg.guided_gradients, gb.gradients, **F64)
    assert gg.map.shape == (8, 8, 3, 2, 2)                                    # h, w, c, K, B
    np.testing.assert_allclose(gg.map, gb.map * gg.cam[:, :, None], **F64)


@pytest.mark.parametrize("build, shape, format", [
    (nets.sequence_1d, (4, 7), "CT"),
    (lambda rng: nets.volume_3d(rng, size=4), (4, 4, 4, 1), "SSSC"),
])
@pytest.mark.parametrize("upsampling", ["bilinear", "nearest", "nearest-torch"])
def test_guided_gradcam_for_sequences_and_volumes(rng, build, shape, format, upsampling):
    net = build(rng)
    x = rng.standard_normal(shape)
    res = refcam.guided_gradcam(net, x, [0, 1], format=format, upsampling=upsampling)
    assert res.map.shape == shape + (2,)
    cam_internal = res.cam if format == "SSSC" else res.cam[0]                 # a sequence map is 1 x t
    guided = input_layout(Layout(format, shape), res.guided_gradients, stacked=True)
    expected = guided * (cam_internal[None] if format == "CT" else cam_internal[..., None, :])
    np.testing.assert_allclose(res.map, expected, **F64)


# --- call forms and errors ----------------------------------------------------------------------------------
def test_guided_backprop_rejects_options_it_has_no_use_for(rng):
    net = nets.classifier_2d(rng)
    x = rng.standard_normal((8, 8, 3))
    with pytest.raises(GradCAMError, match="feature_layer"):
        refcam.guided_backprop(net, x, "cat", feature_layer="relu_1")
    with pytest.raises(GradCAMError, match="upsampling"):
        refcam.guided_gradcam(net, x, "cat", upsampling="none")


def test_guided_backprop_with_a_reduction_function(rng):
    net = nets.regression_2d(rng)
    x = rng.uniform(0, 1, (8, 8, 1))
    res = refcam.guided_backprop(net, x, reduction=lambda y: y, reduction_layer="fc")
    np.testing.assert_allclose(res.scores[0, 0], net.predict(x)[0, 0], **F64)
    assert res.map.shape == (8, 8, 1)


def test_float32_follows_float64(rng):
    net = nets.classifier_2d(rng)
    x = rng.uniform(0, 1, (8, 8, 3))
    single = refcam.guided_gradcam(net, x, "fox", dtype="float32")
    double = refcam.guided_gradcam(net, x, "fox")
    assert single.map.dtype == np.float32 and single.guided_gradients.dtype == np.float32
    np.testing.assert_allclose(single.map, double.map, **F32)
