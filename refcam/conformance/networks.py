"""The conformance suite's networks: small, seeded, one per kind of network a Grad-CAM meets.

Every weight is drawn from ``numpy.random.default_rng(seed)`` (PCG64, the same
numbers on every platform), scaled by ``1 / sqrt(fan_in)``; batch norm gets
non-trivial statistics, and every normalisation's epsilon is 2^-16 (above
MATLAB's minimum 1e-5 and exactly a float32 number, so the ONNX file, whose
``epsilon`` attribute is float32, holds the same network). Layer names are the ones a case names as its feature
and reduction layers.

=============== ============================================================================== =========
network         layers                                                                          input
=============== ============================================================================== =========
series2d        conv-bn-relu_1-maxpool-conv-relu_2-gap-fc-softmax-output                        10x12x3
dag2d           conv-relu_1; two 3x3 branches; concat ('concat') + a 1x1 shortcut ('add'),      10x10x3
                relu_2-gap-fc-softmax-output
volume3d        conv3d-relu_1-maxpool3d-conv3d-relu_2-gap3d-fc-softmax-output                  6x6x5x2
sequence1d      causal conv1d-layernorm-relu_1-conv1d-relu_2-gap1d-fc-softmax-output           3 x 12 steps
regression2d    conv-bn-relu_1-avgpool-conv-relu_2-fc(1)-regression                             8x8x1
segmentation2d  conv-relu_1-conv-relu_2-conv 1x1 (3 classes, 'score')-softmax                   8x8x2
=============== ============================================================================== =========
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from .. import layers as L
from ..network import Network

CLASSES = ("cat", "dog", "fox")
EPSILON = 2.0 ** -16


def _conv(name: str, rng: np.random.Generator, filters: int, channels: int, size: int, rank: int = 2,
          padding: str = "same") -> L.ConvolutionLayer:
    kernel = (size,) * rank
    return L.CONVOLUTION_BY_RANK[rank](
        name=name, filter_size=kernel, num_filters=filters, padding=padding,
        weights=rng.standard_normal((filters, channels) + kernel) / np.sqrt(channels * size ** rank),
        bias=0.1 * rng.standard_normal(filters))


def _batchnorm(name: str, rng: np.random.Generator, channels: int) -> L.BatchNormalizationLayer:
    return L.BatchNormalizationLayer(name=name, trained_mean=0.1 * rng.standard_normal(channels),
                                     trained_variance=rng.uniform(0.5, 2.0, channels),
                                     scale=rng.uniform(0.5, 1.5, channels), offset=0.1 * rng.standard_normal(channels),
                                     epsilon=EPSILON)


def _fc(name: str, rng: np.random.Generator, outputs: int, inputs: int) -> L.FullyConnectedLayer:
    return L.FullyConnectedLayer(name=name, output_size=outputs, weights=rng.standard_normal((outputs, inputs))
                                 / np.sqrt(inputs), bias=0.1 * rng.standard_normal(outputs))


def _head(rng: np.random.Generator, channels: int, rank: int) -> list[L.Layer]:
    pooling = {1: L.GlobalAveragePooling1dLayer, 2: L.GlobalAveragePooling2dLayer, 3: L.GlobalAveragePooling3dLayer}
    return [pooling[rank](name="gap"), _fc("fc", rng, len(CLASSES), channels), L.SoftmaxLayer(name="softmax"),
            L.ClassificationLayer(name="output", classes=list(CLASSES))]


def series2d() -> Network:
    rng = np.random.default_rng(101)
    return Network([
        L.ImageInputLayer(name="input", input_size=(10, 12, 3), normalization="zerocenter",
                          mean=rng.uniform(0.2, 0.4, (3,)).reshape(3, 1, 1)),
        _conv("conv_1", rng, 4, 3, 3), _batchnorm("bn_1", rng, 4), L.ReLULayer(name="relu_1"),
        L.MaxPooling2dLayer(name="pool_1", pool_size=(2, 2), stride=(2, 2)),
        _conv("conv_2", rng, 5, 4, 3), L.ReLULayer(name="relu_2"), *_head(rng, 5, 2)])


def dag2d() -> Network:
    rng = np.random.default_rng(102)
    layers = [L.ImageInputLayer(name="input", input_size=(10, 10, 3), normalization="none"),
              _conv("conv_1", rng, 4, 3, 3), L.ReLULayer(name="relu_1")]
    branch_a, branch_b = _conv("branch_a", rng, 3, 4, 3), _conv("branch_b", rng, 3, 4, 3)
    shortcut = _conv("shortcut", rng, 6, 4, 1)
    branch_a.inputs, branch_b.inputs, shortcut.inputs = ["relu_1"], ["relu_1"], ["relu_1"]
    concat = L.DepthConcatenationLayer(name="concat", inputs=["branch_a", "branch_b"])
    add = L.AdditionLayer(name="add", inputs=["concat", "shortcut"])
    relu_2 = L.ReLULayer(name="relu_2", inputs=["add"])
    return Network(layers + [branch_a, branch_b, shortcut, concat, add, relu_2, *_head(rng, 6, 2)])


def volume3d() -> Network:
    rng = np.random.default_rng(103)
    return Network([
        L.Image3dInputLayer(name="input", input_size=(6, 6, 5, 2), normalization="none"),
        _conv("conv_1", rng, 3, 2, 3, rank=3), L.ReLULayer(name="relu_1"),
        L.MaxPooling3dLayer(name="pool_1", pool_size=(2, 2, 2), stride=(2, 2, 2)),
        _conv("conv_2", rng, 4, 3, 2, rank=3), L.ReLULayer(name="relu_2"), *_head(rng, 4, 3)])


def sequence1d() -> Network:
    rng = np.random.default_rng(104)
    return Network([
        L.SequenceInputLayer(name="input", input_size=3, normalization="none", min_length=12),
        _conv("conv_1", rng, 4, 3, 3, rank=1, padding="causal"),
        L.LayerNormalizationLayer(name="ln_1", scale=rng.uniform(0.5, 1.5, 4), offset=0.1 * rng.standard_normal(4),
                                  epsilon=EPSILON),
        L.ReLULayer(name="relu_1"), _conv("conv_2", rng, 5, 4, 3, rank=1), L.ReLULayer(name="relu_2"),
        *_head(rng, 5, 1)])


def regression2d() -> Network:
    rng = np.random.default_rng(105)
    return Network([
        L.ImageInputLayer(name="input", input_size=(8, 8, 1), normalization="none"),
        _conv("conv_1", rng, 3, 1, 3), _batchnorm("bn_1", rng, 3), L.ReLULayer(name="relu_1"),
        L.AveragePooling2dLayer(name="pool_1", pool_size=(2, 2), stride=(2, 2)),
        _conv("conv_2", rng, 4, 3, 3), L.ReLULayer(name="relu_2"),
        _fc("fc", rng, 1, 4 * 4 * 4), L.RegressionLayer(name="output")])


def segmentation2d() -> Network:
    rng = np.random.default_rng(106)
    return Network([
        L.ImageInputLayer(name="input", input_size=(8, 8, 2), normalization="none"),
        _conv("conv_1", rng, 4, 2, 3), L.ReLULayer(name="relu_1"),
        _conv("conv_2", rng, 4, 4, 3), L.ReLULayer(name="relu_2"),
        _conv("score", rng, len(CLASSES), 4, 1), L.SoftmaxLayer(name="softmax")])


NETWORKS: dict[str, Callable[[], Network]] = {
    "series2d": series2d, "dag2d": dag2d, "volume3d": volume3d, "sequence1d": sequence1d,
    "regression2d": regression2d, "segmentation2d": segmentation2d,
}
