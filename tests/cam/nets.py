"""Small networks with seeded weights for the Grad-CAM tests."""
from __future__ import annotations

import numpy as np

from refcam import layers as L
from refcam.network import Network


def conv(name, rng, f, c, k, nd=2, padding="same", inputs=()):
    kernel = (k,) * nd
    cls = L.CONVOLUTION_BY_RANK[nd]
    return cls(name=name, inputs=inputs, filter_size=kernel, num_filters=f, padding=padding,
               weights=rng.standard_normal((f, c) + kernel) / np.sqrt(c * k ** nd),
               bias=0.1 * rng.standard_normal(f))


def batchnorm(name, rng, c, inputs=()):
    return L.BatchNormalizationLayer(name=name, inputs=inputs, trained_mean=0.1 * rng.standard_normal(c),
                                     trained_variance=rng.uniform(0.5, 2.0, c), scale=rng.uniform(0.5, 1.5, c),
                                     offset=0.1 * rng.standard_normal(c))


def fc(name, rng, out, inp, inputs=()):
    return L.FullyConnectedLayer(name=name, inputs=inputs, output_size=out,
                                 weights=rng.standard_normal((out, inp)) / np.sqrt(inp),
                                 bias=0.1 * rng.standard_normal(out))


def classifier_2d(rng, size=8, channels=3, classes=("cat", "dog", "fox")):
    """input -> conv-bn-relu -> maxpool -> conv-relu ('relu_2') -> gap -> fc -> softmax -> output."""
    k = len(classes)
    return Network([
        L.ImageInputLayer(name="input", input_size=(size, size, channels), normalization="none"),
        conv("conv_1", rng, 4, channels, 3),
        batchnorm("bn_1", rng, 4),
        L.ReLULayer(name="relu_1"),
        L.MaxPooling2dLayer(name="pool_1", pool_size=(2, 2), stride=(2, 2)),
        conv("conv_2", rng, 5, 4, 3),
        L.ReLULayer(name="relu_2"),
        L.GlobalAveragePooling2dLayer(name="gap"),
        fc("fc", rng, k, 5),
        L.SoftmaxLayer(name="softmax"),
        L.ClassificationLayer(name="output", classes=list(classes)),
    ])


def regression_2d(rng, size=8):
    """E2-like: conv-bn-relu-avgpool-conv-bn-relu ('relu_2') -> dropout -> fc(1) -> regression."""
    return Network([
        L.ImageInputLayer(name="imageinput", input_size=(size, size, 1), normalization="zerocenter",
                          mean=rng.uniform(0.0, 0.5, (1, size, size))),
        conv("conv_1", rng, 3, 1, 3),
        batchnorm("batchnorm_1", rng, 3),
        L.ReLULayer(name="relu_1"),
        L.AveragePooling2dLayer(name="avgpool", pool_size=(2, 2), stride=(2, 2)),
        conv("conv_2", rng, 4, 3, 3),
        batchnorm("batchnorm_2", rng, 4),
        L.ReLULayer(name="relu_2"),
        L.DropoutLayer(name="dropout", probability=0.2),
        fc("fc", rng, 1, 4 * (size // 2) ** 2),
        L.RegressionLayer(name="regressionoutput"),
    ])


def segmentation_2d(rng, size=6, classes=("sky", "road", "car")):
    """Fully convolutional: conv-relu ('relu_1') -> conv (3 classes) -> softmax per pixel -> output."""
    return Network([
        L.ImageInputLayer(name="input", input_size=(size, size, 2), normalization="none"),
        conv("conv_1", rng, 4, 2, 3),
        L.ReLULayer(name="relu_1"),
        conv("conv_2", rng, len(classes), 4, 1),
        L.SoftmaxLayer(name="softmax"),
        L.ClassificationLayer(name="pixels", classes=list(classes)),
    ])


def skip_head_2d(rng, size=6, k=3):
    """A DAG whose head (feature 'relu_1' -> softmax) contains a residual addition."""
    return Network([
        L.ImageInputLayer(name="input", input_size=(size, size, 2), normalization="none"),
        conv("conv_1", rng, 4, 2, 3),
        L.ReLULayer(name="relu_1"),
        conv("conv_2", rng, 4, 4, 3, inputs=("relu_1",)),
        L.ReLULayer(name="relu_2"),
        L.AdditionLayer(name="add", inputs=("relu_2", "relu_1"), num_inputs=2),
        L.GlobalAveragePooling2dLayer(name="gap", inputs=("add",)),
        fc("fc", rng, k, 4, inputs=("gap",)),
        L.SoftmaxLayer(name="softmax", inputs=("fc",)),
        L.ClassificationLayer(name="output", inputs=("softmax",), classes=[str(i) for i in range(k)]),
    ])


def sequence_1d(rng, features=4, classes=3):
    """E3-like: conv1d causal-relu-layernorm ('layernorm_1') -> gap1d -> fc -> softmax -> output."""
    return Network([
        L.SequenceInputLayer(name="sequenceinput", input_size=features),
        conv("conv1d_1", rng, 5, features, 3, nd=1, padding="causal"),
        L.ReLULayer(name="relu_1"),
        L.LayerNormalizationLayer(name="layernorm_1", scale=rng.uniform(0.5, 1.5, 5),
                                  offset=0.1 * rng.standard_normal(5)),
        L.GlobalAveragePooling1dLayer(name="gap"),
        fc("fc", rng, classes, 5),
        L.SoftmaxLayer(name="softmax"),
        L.ClassificationLayer(name="classoutput", classes=[str(i + 1) for i in range(classes)]),
    ])


def volume_3d(rng, size=6, classes=2):
    """conv3d-bn-relu ('relu_1') -> gap3d -> fc -> softmax -> output."""
    return Network([
        L.Image3dInputLayer(name="input", input_size=(size, size, size, 1), normalization="none"),
        conv("conv_1", rng, 3, 1, 3, nd=3),
        batchnorm("bn_1", rng, 3),
        L.ReLULayer(name="relu_1"),
        L.GlobalAveragePooling3dLayer(name="gap"),
        fc("fc", rng, classes, 3),
        L.SoftmaxLayer(name="softmax"),
        L.ClassificationLayer(name="output", classes=["a", "b"][:classes]),
    ])


def worked_example():
    """docs/maths.md section 7: input 3x3x2 -> relu -> gap -> fc (W = [1 -2; 0.5 1]) -> softmax."""
    return Network([
        L.ImageInputLayer(name="input", input_size=(3, 3, 2), normalization="none"),
        L.ReLULayer(name="relu"),
        L.GlobalAveragePooling2dLayer(name="gap"),
        L.FullyConnectedLayer(name="fc", output_size=2, weights=np.array([[1.0, -2.0], [0.5, 1.0]]),
                              bias=np.zeros(2)),
        L.SoftmaxLayer(name="softmax"),
        L.ClassificationLayer(name="output", classes=["class0", "class1"]),
    ])
