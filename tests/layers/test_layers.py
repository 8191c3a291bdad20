"""The MATLAB layer classes: forward against loop twins, shapes, MATLAB text, validation, dtypes, VJPs.

The oracles are independent of :mod:`refcam.ops`: the loop twins in tests/ops
and NumPy formulas written here, with MATLAB's padding order converted by hand
in this file (``[top bottom left right]`` -> ``(top, left, bottom, right)``).
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from refcam.autodiff import Tensor
from refcam.errors import LayerConfigError, LayerShapeError
from refcam.layers import (AVERAGE_POOLING_BY_RANK, CONVOLUTION_BY_RANK, GLOBAL_AVERAGE_POOLING_BY_RANK,
                           GLOBAL_MAX_POOLING_BY_RANK, LAYER_KINDS, MAX_POOLING_BY_RANK, AdditionLayer,
                           AveragePooling2dLayer, BatchNormalizationLayer, ClassificationLayer,
                           ClippedReLULayer, Convolution1dLayer, Convolution2dLayer, Convolution3dLayer,
                           DepthConcatenationLayer, DropoutLayer, FlattenLayer, FullyConnectedLayer,
                           GlobalAveragePooling1dLayer, GlobalAveragePooling2dLayer, GlobalMaxPooling2dLayer,
                           GroupedConvolution2dLayer, Image3dInputLayer, ImageInputLayer, Layer,
                           LayerNormalizationLayer, LeakyReLULayer, MaxPooling2dLayer, RegressionLayer,
                           ReLULayer, SequenceInputLayer, SoftmaxLayer, internal_padding,
                           matlab_padding_from_internal)
from refcam.layers.common import constant, num2str, scalar2str
from refcam.testing import check_vjp
from tests.ops.naive_conv import naive_conv
from tests.ops.naive_ops import batch_norm_loops, layer_norm_loops
from tests.ops.naive_pooling import naive_avg_pool, naive_max_pool
from tests.tolerances import CROSS, F32, F64


# --- independent padding rules (written from MATLAB's documentation) -------------------
def same_padding_by_hand(spatial, kernel, stride, dilation):
    """out = ceil(n/s); total = max((out-1)s + (k-1)d + 1 - n, 0); the odd extra at the end."""
    begins, ends = [], []
    for n, k, s, d in zip(spatial, kernel, stride, dilation):
        out = math.ceil(n / s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        begins.append(total // 2)
        ends.append(total - total // 2)
    return tuple(begins) + tuple(ends)


def internal_from_matlab_by_hand(matlab):
    """1-D [left right]; 2-D [top bottom left right]; 3-D [top bottom left right front back]."""
    if len(matlab) == 2:
        return tuple(matlab)
    if len(matlab) == 4:
        top, bottom, left, right = matlab
        return (top, left, bottom, right)
    top, bottom, left, right, front, back = matlab
    return (top, left, front, bottom, right, back)


def expected_padding(spec, spatial, kernel, stride, dilation):
    if spec == "same":
        return same_padding_by_hand(spatial, kernel, stride, dilation)
    if spec == "causal":
        return ((kernel[0] - 1) * dilation[0], 0)
    return internal_from_matlab_by_hand(spec)


# --- convolution -------------------------------------------------------------------------
CONV_CASES = [
    # rank, spatial, filter, stride, dilation, MATLAB padding, channels, filters, groups
    (1, (9,), (3,), (1,), (1,), "causal", 2, 3, 1),
    (1, (9,), (3,), (2,), (2,), "causal", 2, 3, 1),
    (1, (8,), (4,), (3,), (1,), "same", 3, 2, 1),
    (1, (7,), (2,), (1,), (1,), (0, 2), 2, 4, 2),
    (2, (6, 5), (3, 3), (1, 1), (1, 1), "same", 2, 3, 1),
    (2, (7, 6), (2, 3), (2, 1), (1, 2), "same", 3, 2, 1),
    (2, (6, 7), (3, 2), (2, 3), (1, 1), (1, 0, 2, 3), 2, 3, 1),
    (2, (5, 5), (3, 3), (1, 1), (1, 1), (0, 0, 0, 0), 4, 6, 2),
    (2, (5, 6), (3, 3), (2, 2), (1, 1), "same", 3, 6, 3),
    (3, (4, 5, 3), (2, 3, 2), (1, 2, 1), (1, 1, 1), "same", 2, 2, 1),
    (3, (4, 4, 5), (2, 2, 3), (1, 1, 2), (1, 1, 1), (1, 0, 0, 2, 1, 1), 2, 3, 1),
]


def make_conv(rng, rank, filt, channels, filters, groups, **props):
    weights = rng.standard_normal((filters, channels // groups) + filt)
    bias = rng.standard_normal(filters)
    return CONVOLUTION_BY_RANK[rank]("conv", filter_size=filt, num_filters=filters, num_channels=channels,
                              groups=groups, weights=weights, bias=bias, **props)


@pytest.mark.parametrize("case", CONV_CASES)
def test_convolution_layer_matches_naive_conv_with_matlab_padding(case, rng):
    rank, spatial, filt, stride, dilation, padding, channels, filters, groups = case
    layer = make_conv(rng, rank, filt, channels, filters, groups, stride=stride,
                      dilation_factor=dilation, padding=padding)
    x = rng.standard_normal((2, channels) + spatial)
    y = layer.forward(Tensor(x)).data
    pads = expected_padding(padding, spatial, filt, stride, dilation)
    expected = naive_conv(x, layer.weights, layer.bias, stride, dilation, pads, groups)
    np.testing.assert_allclose(y, expected, **F64)
    assert layer.output_shape((channels,) + spatial) == y.shape[1:]


def test_same_padding_gives_ceil_of_input_over_stride(rng):
    for spatial, stride in [((7, 8), (2, 3)), ((5, 5), (1, 1)), ((9, 4), (4, 2))]:
        layer = make_conv(rng, 2, (3, 2), 1, 2, 1, stride=stride, padding="same")
        expected = tuple(math.ceil(n / s) for n, s in zip(spatial, stride))
        assert layer.forward(Tensor(rng.standard_normal((1, 1) + spatial))).shape[2:] == expected
        assert layer.output_shape((1,) + spatial)[1:] == expected


def test_causal_output_step_sees_no_future(rng):
    layer = make_conv(rng, 1, (3,), 1, 1, 1, dilation_factor=2, padding="causal")
    x = rng.standard_normal((1, 1, 10))
    later = x.copy()
    later[..., 6:] += 1.0
    y, y_later = (layer.forward(Tensor(a)).data for a in (x, later))
    np.testing.assert_allclose(y[..., :6], y_later[..., :6], **F64)
    assert not np.allclose(y[..., 6:], y_later[..., 6:])


def test_convolution_layer_matches_torch_with_asymmetric_matlab_padding(torch, rng):
    layer = make_conv(rng, 2, (3, 2), 2, 3, 1, stride=(2, 1), dilation_factor=(1, 2), padding=(1, 2, 0, 3))
    x = rng.standard_normal((2, 2, 7, 6))
    functional = torch.nn.functional
    padded = functional.pad(torch.from_numpy(x), (0, 3, 1, 2))  # (left, right, top, bottom)
    expected = functional.conv2d(padded, torch.from_numpy(layer.weights), torch.from_numpy(layer.bias),
                                 stride=(2, 1), dilation=(1, 2)).numpy()
    np.testing.assert_allclose(layer.forward(Tensor(x)).data, expected, **CROSS)


def test_channel_wise_grouped_convolution_is_depthwise(rng):
    weights = rng.standard_normal((6, 1, 3, 3))
    layer = GroupedConvolution2dLayer("dw", filter_size=3, num_filters=6, num_channels=3,
                                      groups="channel-wise", padding=1, weights=weights)
    assert layer.groups == 3
    x = rng.standard_normal((1, 3, 5, 5))
    expected = naive_conv(x, weights, None, (1, 1), (1, 1), (1, 1, 1, 1), 3)
    np.testing.assert_allclose(layer.forward(Tensor(x)).data, expected, **F64)
    assert layer.describe() == "3 groups of 2 3x3x1 convolutions with stride [1  1] and padding [1  1  1  1]"
    assert layer.type == "2-D Grouped Convolution"


def test_num_channels_is_inferred_from_weights(rng):
    layer = Convolution2dLayer("c", filter_size=(3, 3), num_filters=4, groups=2,
                               weights=rng.standard_normal((4, 3, 3, 3)))
    assert layer.num_channels == 6


# --- pooling ---------------------------------------------------------------------------
POOL_CASES = [
    # rank, spatial, pool, stride, MATLAB padding
    (1, (9,), (3,), (2,), (1, 0)),
    (1, (8,), (2,), (3,), "same"),
    (2, (6, 7), (2, 2), (2, 2), (0, 0, 0, 0)),
    (2, (5, 7), (3, 2), (1, 1), (1, 0, 0, 1)),
    (2, (7, 5), (3, 3), (2, 3), "same"),
    (3, (4, 5, 3), (2, 3, 2), (2, 1, 1), (0, 1, 1, 0, 0, 1)),
    (3, (4, 3, 5), (2, 2, 2), (2, 2, 2), "same"),
]


@pytest.mark.parametrize("case", POOL_CASES)
def test_max_pooling_layer_matches_naive(case, rng):
    rank, spatial, pool, stride, padding = case
    layer = MAX_POOLING_BY_RANK[rank]("pool", pool_size=pool, stride=stride, padding=padding)
    x = rng.standard_normal((2, 3) + spatial)
    y = layer.forward(Tensor(x)).data
    expected, _ = naive_max_pool(x, pool, stride, expected_padding(padding, spatial, pool, stride, (1,) * rank))
    np.testing.assert_allclose(y, expected, **F64)
    assert layer.output_shape((3,) + spatial) == y.shape[1:]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("padding_value", [0, "mean"])
def test_average_pooling_layer_matches_naive(case, padding_value, rng):
    rank, spatial, pool, stride, padding = case
    layer = AVERAGE_POOLING_BY_RANK[rank]("pool", pool_size=pool, stride=stride, padding=padding,
                                   padding_value=padding_value)
    x = rng.standard_normal((2, 3) + spatial)
    y = layer.forward(Tensor(x)).data
    pads = expected_padding(padding, spatial, pool, stride, (1,) * rank)
    expected, _ = naive_avg_pool(x, pool, stride, pads, count_include_pad=padding_value == 0)
    np.testing.assert_allclose(y, expected, **F64)
    assert layer.output_shape((3,) + spatial) == y.shape[1:]


def test_pooling_default_stride_is_one(rng):
    layer = MaxPooling2dLayer("pool", pool_size=2)
    assert layer.stride == (1, 1)
    assert layer.output_shape((3, 5, 6)) == (3, 4, 5)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_global_pooling_layers(rank, rng):
    spatial = (4, 3, 2)[:rank]
    x = rng.standard_normal((2, 3) + spatial)
    axes = tuple(range(2, 2 + rank))
    for classes, reduce in ((GLOBAL_AVERAGE_POOLING_BY_RANK, np.mean), (GLOBAL_MAX_POOLING_BY_RANK, np.max)):
        layer = classes[rank]("gp")
        y = layer.forward(Tensor(x)).data
        np.testing.assert_allclose(y, reduce(x, axis=axes, keepdims=True), **F64)
        assert layer.output_shape((3,) + spatial) == y.shape[1:] == (3,) + (1,) * rank
    assert GLOBAL_AVERAGE_POOLING_BY_RANK[1]("gp").output_shape((5, None)) == (5, 1)


# --- output_shape agrees with forward on random configurations ---------------------------------
def random_window_config(rng, rank):
    kernel = tuple(int(k) for k in rng.integers(1, 4, rank))
    stride = tuple(int(s) for s in rng.integers(1, 4, rank))
    spatial = tuple(int(k + n) for k, n in zip(kernel, rng.integers(0, 6, rank)))
    choice = rng.integers(0, 3)
    if choice == 0:
        padding = "same"
    elif choice == 1 and rank == 1:
        padding = "causal"
    else:
        padding = tuple(int(p) for p in rng.integers(0, 3, 2 * rank))
    return kernel, stride, spatial, padding


@pytest.mark.parametrize("seed", range(12))
def test_output_shape_agrees_with_forward_on_random_configurations(seed):
    rng = np.random.default_rng(seed)
    rank = int(rng.integers(1, 4))
    kernel, stride, spatial, padding = random_window_config(rng, rank)
    dilation = tuple(int(d) for d in rng.integers(1, 3, rank))
    spatial = tuple(n + (k - 1) * (d - 1) for n, k, d in zip(spatial, kernel, dilation))
    conv = make_conv(rng, rank, kernel, 2, 3, 1, stride=stride, dilation_factor=dilation, padding=padding)
    x = Tensor(rng.standard_normal((2, 2) + spatial))
    assert conv.output_shape((2,) + spatial) == conv.forward(x).shape[1:]
    if not isinstance(padding, str):
        padding = tuple(min(p, kernel[i // 2] - 1) for i, p in enumerate(padding))
    if padding != "causal":
        for pool in (MAX_POOLING_BY_RANK[rank], AVERAGE_POOLING_BY_RANK[rank]):
            layer = pool("p", pool_size=kernel, stride=stride, padding=padding)
            assert layer.output_shape((2,) + spatial) == layer.forward(x).shape[1:]


def test_window_larger_than_input_is_a_shape_error_naming_the_layer(rng):
    layer = make_conv(rng, 2, (5, 5), 1, 2, 1)
    with pytest.raises(LayerShapeError, match="'conv'"):
        layer.output_shape((1, 4, 6))
    with pytest.raises(LayerShapeError, match="'conv'"):
        layer.output_shape((2, 8, 8))  # two channels, the weights want one
    with pytest.raises(LayerShapeError, match="'conv'"):
        layer.forward(Tensor(rng.standard_normal((1, 1, 8, 8, 8))))


def test_free_time_axis_stays_free(rng):
    conv = make_conv(rng, 1, (3,), 4, 2, 1, padding="same")
    assert conv.output_shape((4, None)) == (2, None)
    with pytest.raises(LayerShapeError):
        FullyConnectedLayer("fc", output_size=2).output_shape((4, None))


# --- normalisation layers ------------------------------------------------------------------
def bn_params(rng, channels):
    return {"trained_mean": rng.standard_normal(channels),
            "trained_variance": rng.uniform(0.5, 2.0, channels),
            "scale": rng.standard_normal(channels), "offset": rng.standard_normal(channels)}


@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 5), (2, 3, 4, 5), (1, 2, 3, 2, 4)])
def test_batch_normalization_layer_matches_loops(shape, rng):
    params = bn_params(rng, shape[1])
    layer = BatchNormalizationLayer("bn", epsilon=1e-3, **params)
    x = rng.standard_normal(shape)
    expected = batch_norm_loops(x, params["trained_mean"], params["trained_variance"], params["scale"],
                                params["offset"], 1e-3)
    np.testing.assert_allclose(layer.forward(Tensor(x)).data, expected, **F64)
    assert layer.num_channels == shape[1]


LAYER_NORM_AXES = [
    # operation dimension, input shape, axes normalised together (by hand)
    ("auto", (2, 3, 5), (1,)),
    ("auto", (2, 3, 4, 2), (1, 2, 3)),
    ("auto", (2, 3, 2, 2, 3), (1, 2, 3, 4)),
    ("channel-only", (2, 3, 4, 2), (1,)),
    ("spatial-channel", (2, 3, 4, 2), (1, 2, 3)),
    ("batch-excluded", (2, 3, 5), (1, 2)),
    ("batch-excluded", (2, 3), (1,)),
]


@pytest.mark.parametrize("mode, shape, axes", LAYER_NORM_AXES)
def test_layer_normalization_layer_matches_loops(mode, shape, axes, rng):
    scale, offset = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
    layer = LayerNormalizationLayer("ln", operation_dimension=mode, scale=scale, offset=offset)
    x = rng.standard_normal(shape)
    expected = layer_norm_loops(x, scale, offset, axes, 1e-5)
    np.testing.assert_allclose(layer.forward(Tensor(x)).data, expected, **F64)


# --- activations, linear, combine, outputs ------------------------------------------------------
def test_activation_layers_match_formulas(rng):
    x = rng.standard_normal((2, 3, 4, 5)) * 4.0
    cases = [
        (ReLULayer("r"), np.maximum(x, 0.0)),
        (LeakyReLULayer("l", scale=0.2), np.where(x > 0, x, 0.2 * x)),
        (LeakyReLULayer("l"), np.where(x > 0, x, 0.01 * x)),
        (ClippedReLULayer("c", ceiling=1.5), np.clip(x, 0.0, 1.5)),
        (SoftmaxLayer("s"), np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)),
        (DropoutLayer("d", probability=0.3), x),
    ]
    for layer, expected in cases:
        np.testing.assert_allclose(layer.forward(Tensor(x)).data, expected, **F64)
        assert layer.output_shape(x.shape[1:]) == x.shape[1:]


def column_major_flatten(x):
    """MATLAB's order by hand: (B, C, S1..SN) -> for each b, vector with S1 fastest, C slowest."""
    return x.transpose((0, 1) + tuple(reversed(range(2, x.ndim)))).reshape(x.shape[0], -1)


@pytest.mark.parametrize("shape", [(2, 5), (2, 3, 4), (2, 3, 4, 2), (2, 2, 3, 2, 2)])
def test_fully_connected_layer_flattens_column_major(shape, rng):
    size = math.prod(shape[1:])
    weights, bias = rng.standard_normal((4, size)), rng.standard_normal(4)
    layer = FullyConnectedLayer("fc", output_size=4, weights=weights, bias=bias)
    x = rng.standard_normal(shape)
    expected = column_major_flatten(x) @ weights.T + bias
    np.testing.assert_allclose(layer.forward(Tensor(x)).data, expected, **F64)
    assert layer.input_size == size
    assert layer.output_shape(shape[1:]) == (4,)


def test_fully_connected_flatten_order_for_importers(rng):
    x = rng.standard_normal((2, 3, 2, 4))
    weights = rng.standard_normal((5, 24))
    row_major = FullyConnectedLayer("fc", output_size=5, flatten_order="row-major", weights=weights)
    np.testing.assert_allclose(row_major.forward(Tensor(x)).data, x.reshape(2, -1) @ weights.T, **F64)
    channels_last = FullyConnectedLayer("fc", output_size=5, flatten_order="channels-last", weights=weights)
    np.testing.assert_allclose(channels_last.forward(Tensor(x)).data,
                               np.moveaxis(x, 1, -1).reshape(2, -1) @ weights.T, **F64)


@pytest.mark.parametrize("order", ["matlab", "row-major", "channels-last"])
def test_flatten_layer(order, rng):
    x = rng.standard_normal((2, 3, 2, 4))
    expected = {"matlab": column_major_flatten(x), "row-major": x.reshape(2, -1),
                "channels-last": np.moveaxis(x, 1, -1).reshape(2, -1)}[order]
    layer = FlattenLayer("flat", order=order)
    np.testing.assert_allclose(layer.forward(Tensor(x)).data, expected, **F64)
    assert layer.output_shape((3, 2, 4)) == (24,)


def test_addition_and_depth_concatenation(rng):
    xs = [rng.standard_normal((2, 3, 4, 5)) for _ in range(3)]
    add = AdditionLayer("add", inputs=("a", "b", "c"))
    assert add.num_inputs == 3 and AdditionLayer.num_inputs is None
    np.testing.assert_allclose(add.forward(*map(Tensor, xs)).data, xs[0] + xs[1] + xs[2], **F64)
    assert add.output_shape((3, 4, 5), (3, 4, 5), (3, 4, 5)) == (3, 4, 5)
    parts = [rng.standard_normal((2, c, 4, 5)) for c in (1, 3)]
    cat = DepthConcatenationLayer("cat", num_inputs=2)
    np.testing.assert_allclose(cat.forward(*map(Tensor, parts)).data, np.concatenate(parts, axis=1), **F64)
    assert cat.output_shape((1, 4, 5), (3, 4, 5)) == (4, 4, 5)
    with pytest.raises(LayerShapeError, match="'add'"):
        add.output_shape((3, 4, 5), (3, 4, 5))
    with pytest.raises(LayerShapeError, match="'add'"):
        add.output_shape((3, 4, 5), (3, 4, 5), (3, 4, 4))
    with pytest.raises(LayerShapeError, match="'cat'"):
        cat.output_shape((1, 4, 5), (3, 4, 6))


def test_output_layers_are_identities(rng):
    x = rng.standard_normal((2, 10))
    classify = ClassificationLayer("out", classes=[str(i) for i in range(10)])
    regress = RegressionLayer("out", response_names=["Response"])
    for layer in (classify, regress):
        assert layer.forward(Tensor(x)).data is x
        assert type(layer).is_output_layer
    assert classify.output_shape((10,)) == (10,)
    with pytest.raises(LayerShapeError, match="10 classes"):
        classify.output_shape((9,))
    assert classify.describe() == "crossentropyex with '0' and 9 other classes"
    assert not any(cls.is_output_layer for cls in LAYER_KINDS.values()
                   if cls not in (ClassificationLayer, RegressionLayer))


# --- input layers ------------------------------------------------------------------------
def statistic(rng, kind, shape, positive=False):
    """A statistic of internal observation ``shape`` stored per element, per channel or as a scalar."""
    stored = {"element": shape, "channel": (shape[0],) + (1,) * (len(shape) - 1),
              "ones": (1,) * len(shape), "0-d": ()}[kind]
    values = rng.uniform(0.5, 2.0, stored) if positive else rng.standard_normal(stored)
    return np.asarray(values)


NORMALIZATION_FORMULAS = {
    "none": lambda x, s: x,
    "zerocenter": lambda x, s: x - s["mean"],
    "zscore": lambda x, s: (x - s["mean"]) / s["standard_deviation"],
    "rescale-symmetric": lambda x, s: 2.0 * (x - s["min"]) / (s["max"] - s["min"]) - 1.0,
    "rescale-zero-one": lambda x, s: (x - s["min"]) / (s["max"] - s["min"]),
}


@pytest.mark.parametrize("mode", list(NORMALIZATION_FORMULAS))
@pytest.mark.parametrize("kind", ["element", "channel", "ones", "0-d"])
def test_image_input_normalizations(mode, kind, rng):
    shape = (3, 4, 5)  # internal (c, h, w) of a MATLAB 4x5x3 image
    low = statistic(rng, kind, shape)
    stats = {"mean": statistic(rng, kind, shape), "standard_deviation": statistic(rng, kind, shape, True),
             "min": low, "max": low + statistic(rng, kind, shape, True)}
    layer = ImageInputLayer("in", input_size=(4, 5, 3), normalization=mode, **stats)
    x = rng.standard_normal((2,) + shape)
    expected = NORMALIZATION_FORMULAS[mode](x, stats)
    np.testing.assert_allclose(layer.forward(Tensor(x)).data, expected, **F64)
    assert layer.output_shape() == shape == layer.per_observation_shape()


def test_volume_and_sequence_input_layers(rng):
    mean = rng.standard_normal((2, 3, 4, 5))
    volume = Image3dInputLayer("in", input_size=(3, 4, 5, 2), mean=mean)
    x = rng.standard_normal((1, 2, 3, 4, 5))
    np.testing.assert_allclose(volume.forward(Tensor(x)).data, x - mean, **F64)
    assert volume.describe() == "3x4x5x2 images with 'zerocenter' normalization"
    std = rng.uniform(0.5, 2.0, (3, 1))
    sequence = SequenceInputLayer("in", input_size=3, normalization="zscore", mean=np.zeros((3, 1)),
                                  standard_deviation=std, min_length=4)
    x = rng.standard_normal((2, 3, 7))
    np.testing.assert_allclose(sequence.forward(Tensor(x)).data, x / std, **F64)
    assert sequence.output_shape() == (3, None)
    assert (SequenceInputLayer.default_format, SequenceInputLayer.num_inputs) == ("CT", 0)
    with pytest.raises(LayerShapeError, match="at least 4"):
        sequence.forward(Tensor(rng.standard_normal((2, 3, 3))))
    with pytest.raises(LayerShapeError, match="'in'"):
        volume.forward(Tensor(rng.standard_normal((1, 2, 3, 4, 6))))


# --- MATLAB's display text ------------------------------------------------------------------
def digits_regression_layers(rng):
    """digitsRegressionNet's 18 layers (the seed's table), with random parameters."""
    layers = [ImageInputLayer("imageinput", input_size=(28, 28, 1), mean=rng.standard_normal((1, 28, 28)))]
    channels = 1
    for block, filters in enumerate((8, 16, 32, 32), start=1):
        layers += [
            Convolution2dLayer(f"conv_{block}", filter_size=(3, 3), num_filters=filters, padding="same",
                               weights=rng.standard_normal((filters, channels, 3, 3)),
                               bias=rng.standard_normal(filters)),
            BatchNormalizationLayer(f"batchnorm_{block}", **bn_params(rng, filters)),
            ReLULayer(f"relu_{block}"),
        ]
        if block < 3:
            layers.append(AveragePooling2dLayer(f"avgpool2d_{block}", pool_size=2, stride=2))
        channels = filters
    layers += [
        DropoutLayer("dropout", probability=0.2),
        FullyConnectedLayer("fc", output_size=1, weights=rng.standard_normal((1, 7 * 7 * 32)),
                            bias=rng.standard_normal(1)),
        RegressionLayer("regressionoutput", response_names=("Response",)),
    ]
    return layers


DIGITS_TABLE = [
    ("imageinput", "Image Input", "28x28x1 images with 'zerocenter' normalization"),
    ("conv_1", "2-D Convolution", "8 3x3x1 convolutions with stride [1  1] and padding 'same'"),
    ("batchnorm_1", "Batch Normalization", "Batch normalization with 8 channels"),
    ("relu_1", "ReLU", "ReLU"),
    ("avgpool2d_1", "2-D Average Pooling", "2x2 average pooling with stride [2  2] and padding [0  0  0  0]"),
    ("conv_2", "2-D Convolution", "16 3x3x8 convolutions with stride [1  1] and padding 'same'"),
    ("batchnorm_2", "Batch Normalization", "Batch normalization with 16 channels"),
    ("relu_2", "ReLU", "ReLU"),
    ("avgpool2d_2", "2-D Average Pooling", "2x2 average pooling with stride [2  2] and padding [0  0  0  0]"),
    ("conv_3", "2-D Convolution", "32 3x3x16 convolutions with stride [1  1] and padding 'same'"),
    ("batchnorm_3", "Batch Normalization", "Batch normalization with 32 channels"),
    ("relu_3", "ReLU", "ReLU"),
    ("conv_4", "2-D Convolution", "32 3x3x32 convolutions with stride [1  1] and padding 'same'"),
    ("batchnorm_4", "Batch Normalization", "Batch normalization with 32 channels"),
    ("relu_4", "ReLU", "ReLU"),
    ("dropout", "Dropout", "20% dropout"),
    ("fc", "Fully Connected", "1 fully connected layer"),
    ("regressionoutput", "Regression Output", "mean-squared-error with response 'Response'"),
]


def test_digits_regression_net_layers_display_like_matlab(rng):
    layers = digits_regression_layers(rng)
    assert [(layer.name, layer.type, layer.describe()) for layer in layers] == DIGITS_TABLE


def test_digits_regression_net_shapes_chain(rng):
    layers = digits_regression_layers(rng)
    shape = layers[0].output_shape()
    x = Tensor(rng.standard_normal((2,) + shape))
    for layer in layers:
        x = layer.forward(x)
        shape = layer.output_shape(*([] if isinstance(layer, ImageInputLayer) else [shape]))
        assert x.shape[1:] == shape, layer.name
    assert shape == (1,)


def test_other_descriptions():
    assert LeakyReLULayer("l").describe() == "Leaky ReLU with scale 0.01"
    assert ClippedReLULayer("c", ceiling=6).describe() == "Clipped ReLU with ceiling 6"
    assert MaxPooling2dLayer("m", pool_size=3, stride=2, padding="same").describe() == \
        "3x3 max pooling with stride [2  2] and padding 'same'"
    assert GlobalAveragePooling2dLayer("g").describe() == "2-D global average pooling"
    assert GlobalAveragePooling1dLayer("g").describe() == "1-D global average pooling"
    assert AdditionLayer("a", num_inputs=2).describe() == "Element-wise addition of 2 inputs"
    assert DepthConcatenationLayer("d", num_inputs=3).describe() == "Depth concatenation of 3 inputs"
    assert ImageInputLayer("i", input_size=(224, 224, 3), normalization="none").describe() == "224x224x3 images"
    assert Convolution2dLayer("c", filter_size=5, num_filters=20).describe() == \
        "20 5x5 convolutions with stride [1  1] and padding [0  0  0  0]"
    assert num2str([10, 2]) == "10   2" and num2str([0, 0]) == "0  0"
    assert (scalar2str(100 * 0.2), scalar2str(12.5), scalar2str(math.pi)) == ("20", "12.5", "3.1416")


# --- padding conversion ---------------------------------------------------------------------
def test_matlab_padding_conversions():
    assert internal_padding((1, 2, 3, 4)) == (1, 3, 2, 4)  # [t b l r] -> (t, l, b, r)
    assert matlab_padding_from_internal((1, 3, 2, 4)) == (1, 2, 3, 4)
    assert internal_padding((1, 2, 3, 4, 5, 6)) == (1, 3, 5, 2, 4, 6)
    layer = Convolution3dLayer("c", filter_size=2, num_filters=1, padding=[[1, 3, 5], [2, 4, 6]])
    assert layer.padding == (1, 2, 3, 4, 5, 6)
    assert Convolution2dLayer("c", filter_size=2, num_filters=1, padding=2).padding == (2, 2, 2, 2)
    assert Convolution2dLayer("c", filter_size=2, num_filters=1, padding=(1, 2)).padding == (1, 1, 2, 2)


# --- validation ---------------------------------------------------------------------------
INVALID = [
    lambda: Convolution2dLayer("bad", filter_size=(3, 3, 3), num_filters=2),
    lambda: Convolution2dLayer("bad", filter_size=0, num_filters=2),
    lambda: Convolution2dLayer("bad", filter_size=3, num_filters=2, stride=(1, -1)),
    lambda: Convolution2dLayer("bad", filter_size=3, num_filters=2, padding="causal"),
    lambda: Convolution2dLayer("bad", filter_size=3, num_filters=2, padding=(1, 2, 3)),
    lambda: Convolution2dLayer("bad", filter_size=3, num_filters=3, groups=2),
    lambda: Convolution2dLayer("bad", filter_size=3, num_filters=2, groups="channel-wise"),
    lambda: Convolution2dLayer("bad", filter_size=3, num_filters=2, weights=np.zeros((2, 1, 3, 2))),
    lambda: Convolution2dLayer("bad", filter_size=3, num_filters=2, num_channels=3,
                               weights=np.zeros((2, 1, 3, 3))),
    lambda: Convolution2dLayer("bad", filter_size=3, num_filters=2, bias=np.zeros(3)),
    lambda: Convolution1dLayer("bad", filter_size=1.5, num_filters=2),
    lambda: MaxPooling2dLayer("bad", pool_size=(2, 2), stride=0),
    lambda: AveragePooling2dLayer("bad", pool_size=2, padding_value=1),
    lambda: AveragePooling2dLayer("bad", pool_size=(2, 3), padding=(0, 0, 3, 0)),
    lambda: BatchNormalizationLayer("bad", scale=np.ones(3), offset=np.ones(4)),
    lambda: BatchNormalizationLayer("bad", epsilon=0.0),
    lambda: BatchNormalizationLayer("bad", trained_variance=-np.ones(2)),
    lambda: LayerNormalizationLayer("bad", operation_dimension="time"),
    lambda: ClippedReLULayer("bad", ceiling=0.0),
    lambda: LeakyReLULayer("bad", scale=float("nan")),
    lambda: DropoutLayer("bad", probability=1.0),
    lambda: FullyConnectedLayer("bad", output_size=3, weights=np.zeros((2, 4))),
    lambda: FullyConnectedLayer("bad", output_size=2, flatten_order="fortran"),
    lambda: FlattenLayer("bad", order="C"),
    lambda: ImageInputLayer("bad", input_size=(28, 28)),
    lambda: ImageInputLayer("bad", input_size=(4, 4, 1)),  # zerocenter without a mean
    lambda: ImageInputLayer("bad", input_size=(4, 4, 1), normalization="zscore", mean=np.zeros(())),
    lambda: ImageInputLayer("bad", input_size=(4, 4, 1), normalization="whiten"),
    lambda: ImageInputLayer("bad", input_size=(4, 4, 1), mean=np.zeros((1, 4, 5))),
    lambda: ImageInputLayer("bad", input_size=(4, 4, 1), normalization="rescale-zero-one",
                            min=np.ones(()), max=np.ones(())),
    lambda: SequenceInputLayer("bad", input_size=3, normalization="zerocenter", mean=np.zeros((3, 5))),
    lambda: AdditionLayer("bad", num_inputs=1),
    lambda: DepthConcatenationLayer("bad", num_inputs=3, inputs=("a", "b")),
]


@pytest.mark.parametrize("make", INVALID)
def test_invalid_properties_raise_layer_config_error_naming_the_layer(make):
    with pytest.raises(LayerConfigError, match="'bad'"):
        make()


def test_missing_parameter_is_reported_at_forward(rng):
    layer = Convolution2dLayer("conv", filter_size=3, num_filters=2)
    with pytest.raises(LayerConfigError, match="'conv'.*'weights'"):
        layer.forward(Tensor(rng.standard_normal((1, 1, 5, 5))))


# --- dtypes and parameter caching -----------------------------------------------------------
def float32_cases(rng):
    image = rng.standard_normal((2, 4, 6, 6))
    return [
        (ImageInputLayer("i", input_size=(6, 6, 4), normalization="zscore",
                         mean=rng.standard_normal((4, 1, 1)), standard_deviation=np.ones((4, 1, 1))), image),
        (make_conv(rng, 2, (3, 3), 4, 2, 1, padding="same"), image),
        (BatchNormalizationLayer("bn", **bn_params(rng, 4)), image),
        (LayerNormalizationLayer("ln", scale=np.ones(4), offset=np.zeros(4)), image),
        (ReLULayer("r"), image), (LeakyReLULayer("l"), image), (ClippedReLULayer("c", ceiling=1.0), image),
        (SoftmaxLayer("s"), image), (DropoutLayer("d"), image),
        (MaxPooling2dLayer("m", pool_size=2, stride=2), image),
        (AveragePooling2dLayer("a", pool_size=3, padding="same", padding_value="mean"), image),
        (GlobalAveragePooling2dLayer("g"), image), (GlobalMaxPooling2dLayer("g"), image),
        (FullyConnectedLayer("fc", output_size=3, weights=rng.standard_normal((3, 144)),
                             bias=np.zeros(3)), image),
        (FlattenLayer("f"), image),
    ]


def test_float32_input_gives_float32_output(rng):
    for layer, x in float32_cases(rng):
        y64 = layer.forward(Tensor(x)).data
        y32 = layer.forward(Tensor(x.astype(np.float32))).data
        assert y32.dtype == np.float32, layer.name
        np.testing.assert_allclose(y32, y64, rtol=10 * F32["rtol"], atol=10 * F32["atol"])
    xs = [Tensor(rng.standard_normal((1, 2, 3)).astype(np.float32)) for _ in range(2)]
    assert AdditionLayer("a", num_inputs=2).forward(*xs).dtype == np.float32
    assert DepthConcatenationLayer("c", num_inputs=2).forward(*xs).dtype == np.float32


def test_parameters_are_cast_once_and_recast_when_replaced(rng):
    layer = make_conv(rng, 2, (3, 3), 2, 2, 1)
    x32 = Tensor(np.zeros((1, 2, 4, 4), dtype=np.float32))
    first = constant(layer, "weights", x32)
    assert first is constant(layer, "weights", x32) and first.dtype == np.float32
    assert constant(layer, "weights", Tensor(np.zeros(1))).data is layer.weights  # no copy in float64
    layer.weights = layer.weights * 2.0
    np.testing.assert_allclose(constant(layer, "weights", x32).data, layer.weights, **F32)


# --- VJPs through the layers (with respect to the input) ---------------------------------------
def test_vjp_through_convolution_layers(rng):
    conv2 = make_conv(rng, 2, (3, 2), 3, 2, 1, stride=(2, 1), dilation_factor=(1, 2), padding=(1, 0, 2, 1))
    check_vjp(conv2.forward, [rng.standard_normal((2, 3, 6, 7))])
    conv1 = make_conv(rng, 1, (3,), 2, 4, 2, padding="causal", dilation_factor=2)
    check_vjp(conv1.forward, [rng.standard_normal((2, 2, 8))])
    conv3 = make_conv(rng, 3, (2, 2, 2), 2, 2, 1, padding="same", stride=2)
    check_vjp(conv3.forward, [rng.standard_normal((1, 2, 3, 4, 3))])


def test_vjp_through_normalization_layers(rng):
    bn = BatchNormalizationLayer("bn", **bn_params(rng, 3))
    check_vjp(bn.forward, [rng.standard_normal((2, 3, 4, 5))])
    for mode, shape in (("auto", (2, 3, 4, 5)), ("auto", (2, 3, 6)), ("batch-excluded", (2, 3, 6))):
        ln = LayerNormalizationLayer("ln", operation_dimension=mode, scale=rng.standard_normal(3),
                                     offset=rng.standard_normal(3))
        check_vjp(ln.forward, [rng.standard_normal(shape)])
    image = ImageInputLayer("in", input_size=(3, 4, 2), normalization="zscore",
                            mean=rng.standard_normal((2, 3, 4)), standard_deviation=rng.uniform(1, 2, (2, 1, 1)))
    check_vjp(image.forward, [rng.standard_normal((2, 2, 3, 4))])


# --- registry and properties ---------------------------------------------------------------
def test_registry_kinds_types_and_json_properties(rng):
    import refcam.layers as layers_module
    matlab_set = {cls for cls in vars(layers_module).values()
                  if isinstance(cls, type) and issubclass(cls, Layer) and cls.kind
                  and cls.__module__ not in ("refcam.layers.extra", "refcam.layers.shape")}  # layers MATLAB lacks
    assert len(matlab_set) == 33 + 2 + 4  # + swish, gelu; resize, transposed convolution 1-D/2-D/3-D
    for cls in matlab_set:
        assert LAYER_KINDS[cls.kind] is cls and cls.type and "MATLAB" in cls.__doc__
    for layer in digits_regression_layers(rng) + [case[0] for case in float32_cases(rng)]:
        json.dumps(layer.properties())
        rebuilt = type(layer)(layer.name, layer.inputs, **layer.properties(), **layer.params())
        assert rebuilt.describe() == layer.describe()


def test_parameter_errors_name_the_parameter(rng):
    from refcam.errors import MissingParameterError, ParameterShapeError, ShapeError
    with pytest.raises(ParameterShapeError) as bad_shape:
        FullyConnectedLayer("fc", output_size=3, weights=rng.standard_normal((3, 4)),
                            bias=rng.standard_normal(4))
    assert bad_shape.value.param == "bias" and isinstance(bad_shape.value, (LayerConfigError, ShapeError))
    with pytest.raises(MissingParameterError) as missing:
        ImageInputLayer("in", input_size=(4, 4, 1), normalization="zscore", mean=np.zeros((1, 1, 1)))
    assert missing.value.param == "standard_deviation"
