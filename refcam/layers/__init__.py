"""MATLAB's layers, one small class each (see docs/layers.md).

Each class is a dataclass holding MATLAB's properties (plain JSON values) and
parameters (arrays in refcam's internal layout), registered under a stable
``kind`` in :data:`LAYER_KINDS`. ``forward`` takes Tensors in the internal
(B, C, *spatial) layout and calls :mod:`refcam.ops`.

>>> import numpy as np
>>> from refcam.autodiff import Tensor
>>> relu = ReLULayer("relu_1", inputs=("conv_1",))
>>> relu.forward(Tensor(np.array([[-1.0, 2.0]]))).data
array([[0., 2.]])
"""
from .activation import ClippedReLULayer, GELULayer, LeakyReLULayer, ReLULayer, SoftmaxLayer, SwishLayer
from .base import LAYER_KINDS, Layer, param, register
from .combine import AdditionLayer, DepthConcatenationLayer, MultiInputLayer, MultiplicationLayer
from .common import internal_padding, matlab_padding_from_internal
from .extra import (ErfLayer, HardSigmoidLayer, HardSwishLayer, PaddingLayer, ScalingLayer, SigmoidLayer,
                    TanhLayer)
from .convolution import (Convolution1dLayer, Convolution2dLayer, Convolution3dLayer, ConvolutionLayer,
                          GroupedConvolution2dLayer)
from .input import Image3dInputLayer, ImageInputLayer, InputLayer, SequenceInputLayer
from .linear import DropoutLayer, FlattenLayer, FullyConnectedLayer
from .normalization import BatchNormalizationLayer, LayerNormalizationLayer
from .output import ClassificationLayer, RegressionLayer
from .resize import ResizeLayer
from .transposed_convolution import (TransposedConvolution1dLayer, TransposedConvolution2dLayer,
                                     TransposedConvolution3dLayer, TransposedConvolutionLayer)
from .shape import ChannelShuffleLayer, ChannelSliceLayer, CroppingLayer, ReduceLayer
from .pooling import (AveragePooling1dLayer, AveragePooling2dLayer, AveragePooling3dLayer,
                      GlobalAveragePooling1dLayer, GlobalAveragePooling2dLayer,
                      GlobalAveragePooling3dLayer, GlobalMaxPooling1dLayer, GlobalMaxPooling2dLayer,
                      GlobalMaxPooling3dLayer, MaxPooling1dLayer, MaxPooling2dLayer, MaxPooling3dLayer)

# The layer class of each family by number of spatial dimensions (importers and tests pick by rank).
CONVOLUTION_BY_RANK = {1: Convolution1dLayer, 2: Convolution2dLayer, 3: Convolution3dLayer}
TRANSPOSED_CONVOLUTION_BY_RANK = {1: TransposedConvolution1dLayer, 2: TransposedConvolution2dLayer,
                                  3: TransposedConvolution3dLayer}
MAX_POOLING_BY_RANK = {1: MaxPooling1dLayer, 2: MaxPooling2dLayer, 3: MaxPooling3dLayer}
AVERAGE_POOLING_BY_RANK = {1: AveragePooling1dLayer, 2: AveragePooling2dLayer, 3: AveragePooling3dLayer}
GLOBAL_AVERAGE_POOLING_BY_RANK = {1: GlobalAveragePooling1dLayer, 2: GlobalAveragePooling2dLayer,
                                  3: GlobalAveragePooling3dLayer}
GLOBAL_MAX_POOLING_BY_RANK = {1: GlobalMaxPooling1dLayer, 2: GlobalMaxPooling2dLayer, 3: GlobalMaxPooling3dLayer}

__all__ = [
    "CONVOLUTION_BY_RANK", "MAX_POOLING_BY_RANK", "AVERAGE_POOLING_BY_RANK", "GLOBAL_AVERAGE_POOLING_BY_RANK",
    "GLOBAL_MAX_POOLING_BY_RANK", "TRANSPOSED_CONVOLUTION_BY_RANK",
    "LAYER_KINDS", "Layer", "param", "register", "internal_padding", "matlab_padding_from_internal",
    "InputLayer", "ImageInputLayer", "Image3dInputLayer", "SequenceInputLayer",
    "ConvolutionLayer", "Convolution1dLayer", "Convolution2dLayer", "Convolution3dLayer",
    "GroupedConvolution2dLayer",
    "TransposedConvolutionLayer", "TransposedConvolution1dLayer", "TransposedConvolution2dLayer",
    "TransposedConvolution3dLayer", "ResizeLayer",
    "BatchNormalizationLayer", "LayerNormalizationLayer",
    "ReLULayer", "LeakyReLULayer", "ClippedReLULayer", "SoftmaxLayer", "SwishLayer", "GELULayer",
    "MaxPooling1dLayer", "MaxPooling2dLayer", "MaxPooling3dLayer",
    "AveragePooling1dLayer", "AveragePooling2dLayer", "AveragePooling3dLayer",
    "GlobalAveragePooling1dLayer", "GlobalAveragePooling2dLayer", "GlobalAveragePooling3dLayer",
    "GlobalMaxPooling1dLayer", "GlobalMaxPooling2dLayer", "GlobalMaxPooling3dLayer",
    "DropoutLayer", "FlattenLayer", "FullyConnectedLayer",
    "AdditionLayer", "DepthConcatenationLayer", "MultiInputLayer", "MultiplicationLayer",
    "ChannelShuffleLayer", "ChannelSliceLayer", "CroppingLayer", "ReduceLayer",
    "ClassificationLayer", "RegressionLayer",
    "PaddingLayer", "ScalingLayer", "SigmoidLayer", "TanhLayer",
    "HardSigmoidLayer", "HardSwishLayer", "ErfLayer",
]
