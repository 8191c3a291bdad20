"""refcam.fusion: batch normalisation folded into the preceding convolution (fast mode)."""
from __future__ import annotations

import numpy as np
import pytest

from refcam.cam.gradcam import gradcam
from refcam.fusion import fuse_batchnorm, fused_parameters
from refcam.layers import (CONVOLUTION_BY_RANK, AdditionLayer, BatchNormalizationLayer, ClassificationLayer,
                           Convolution1dLayer, Convolution2dLayer, Convolution3dLayer, FullyConnectedLayer,
                           GlobalAveragePooling2dLayer, Image3dInputLayer, ImageInputLayer, ReLULayer,
                           SequenceInputLayer, SoftmaxLayer)
from refcam.network import Network
from refcam.ops.conv import conv_forward
from refcam.ops.normalization import batch_norm_forward

from .tolerances import F32, F64


def batch_norm(rng, name, channels, inputs=()):
    return BatchNormalizationLayer(name=name, inputs=inputs, trained_mean=rng.standard_normal(channels),
                                   trained_variance=rng.uniform(0.5, 2.0, channels),
                                   scale=rng.standard_normal(channels), offset=rng.standard_normal(channels))


def residual_net(rng, bias=True):
    """input -> conv_a -> bn_a -> relu -> conv_b (feeds bn_b and add) ; bn_b -> add -> gap -> fc -> softmax."""
    c, f = 3, 4

    def conv(name, c_in, inputs, groups=1, stride=1):
        return Convolution2dLayer(name=name, inputs=inputs, filter_size=3, num_filters=f, padding="same",
                                  stride=stride, groups=groups,
                                  weights=rng.standard_normal((f, c_in // groups, 3, 3)),
                                  bias=rng.standard_normal(f) if bias else None)
    return Network([
        ImageInputLayer(name="in", input_size=(7, 6, c), normalization="none"),
        conv("conv_a", c, ("in",)),
        batch_norm(rng, "bn_a", f, ("conv_a",)),
        ReLULayer(name="relu_a", inputs=("bn_a",)),
        conv("conv_b", f, ("relu_a",), groups=2),
        batch_norm(rng, "bn_b", f, ("conv_b",)),
        AdditionLayer(name="add", inputs=("bn_b", "conv_b")),     # conv_b has two consumers: not fused
        ReLULayer(name="relu_b", inputs=("add",)),
        GlobalAveragePooling2dLayer(name="gap", inputs=("relu_b",)),
        FullyConnectedLayer(name="fc", inputs=("gap",), output_size=3, weights=rng.standard_normal((3, f)),
                            bias=rng.standard_normal(3)),
        SoftmaxLayer(name="prob", inputs=("fc",)),
        ClassificationLayer(name="out", inputs=("prob",), classes=["a", "b", "c"]),
    ])


def test_fuses_only_a_batch_norm_that_is_its_convolution_only_consumer(rng):
    net = residual_net(rng)
    fast = fuse_batchnorm(net)
    names = [layer.name for layer in fast.layers]
    assert "conv_a" not in names and isinstance(fast.layer("bn_a"), Convolution2dLayer)
    assert fast.layer("bn_a").inputs == ("in",)
    assert isinstance(fast.layer("bn_b"), BatchNormalizationLayer) and "conv_b" in names
    assert len(fast.layers) == len(net.layers) - 1
    assert isinstance(net.layer("bn_a"), BatchNormalizationLayer)   # the original is unchanged


@pytest.mark.parametrize("bias", [True, False])
def test_fused_network_equals_the_literal_one_within_float64_rounding(bias, rng):
    net = residual_net(rng, bias=bias)
    fast = fuse_batchnorm(net)
    x = rng.standard_normal((2, 3, 7, 6))
    np.testing.assert_allclose(fast.predict(x, format="BCSS"), net.predict(x, format="BCSS"), **F64)
    np.testing.assert_allclose(fast.predict(x, format="BCSS", dtype="float32"),
                               net.predict(x, format="BCSS"), **F32)
    literal = gradcam(net, x, "b", feature_layer="bn_a", format="BCSS", upsampling="none")
    fused = gradcam(fast, x, "b", feature_layer="bn_a", format="BCSS", upsampling="none")
    np.testing.assert_allclose(fused.activations, literal.activations, **F64)
    np.testing.assert_allclose(fused.gradients, literal.gradients, **F64)
    np.testing.assert_allclose(fused.raw_map, literal.raw_map, **F64)


@pytest.mark.parametrize("nd, groups, stride", [(1, 1, (2,)), (2, 2, (1, 2)), (3, 1, (2, 1, 1))])
def test_fused_parameters_equal_batch_norm_of_the_convolution(nd, groups, stride, rng):
    """1-D, 2-D (grouped) and 3-D convolutions: conv with (w', b') equals bn(conv(x)) on random inputs."""
    layer_class = CONVOLUTION_BY_RANK[nd]
    c, f, k = 4, 6, (3,) * nd
    conv_layer = layer_class(name="c", filter_size=k, num_filters=f, stride=stride, groups=groups,
                             weights=rng.standard_normal((f, c // groups) + k), bias=rng.standard_normal(f))
    bn_layer = batch_norm(rng, "bn", f)
    x = rng.standard_normal((2, c) + (7,) * nd)
    geometry = dict(stride=stride, dilation=(1,) * nd, padding=(1,) * 2 * nd, groups=groups)
    literal = batch_norm_forward(conv_forward(x, conv_layer.weights, conv_layer.bias, **geometry),
                                 bn_layer.trained_mean, bn_layer.trained_variance, bn_layer.scale,
                                 bn_layer.offset, bn_layer.epsilon)
    weights, bias = fused_parameters(conv_layer, bn_layer)
    np.testing.assert_allclose(conv_forward(x, weights, bias, **geometry), literal, **F64)


def test_3d_and_sequence_networks_are_fused(rng):
    volume = Network([
        Image3dInputLayer(name="in", input_size=(5, 4, 6, 2), normalization="none"),
        Convolution3dLayer(name="c", filter_size=3, num_filters=3, padding="same",
                           weights=rng.standard_normal((3, 2, 3, 3, 3)), bias=rng.standard_normal(3)),
        batch_norm(rng, "bn", 3),
        ReLULayer(name="r"),
    ])
    sequence = Network([
        SequenceInputLayer(name="in", input_size=2),
        Convolution1dLayer(name="c", filter_size=3, num_filters=3, padding="causal",
                           weights=rng.standard_normal((3, 2, 3)), bias=None),
        batch_norm(rng, "bn", 3),
    ])
    for net, x, fmt in ((volume, rng.standard_normal((1, 2, 5, 4, 6)), "BCSSS"),
                        (sequence, rng.standard_normal((2, 2, 9)), "BCT")):
        fast = fuse_batchnorm(net)
        assert len(fast.layers) == len(net.layers) - 1
        np.testing.assert_allclose(fast.predict(x, format=fmt), net.predict(x, format=fmt), **F64)


def test_a_network_without_pairs_is_rebuilt_unchanged(rng):
    net = Network([ImageInputLayer(name="in", input_size=(4, 4, 1), normalization="none"),
                   batch_norm(rng, "bn", 1), ReLULayer(name="r")])
    fast = fuse_batchnorm(net)
    assert [layer.name for layer in fast.layers] == [layer.name for layer in net.layers]
    assert all(a is b for a, b in zip(fast.layers, net.layers))
