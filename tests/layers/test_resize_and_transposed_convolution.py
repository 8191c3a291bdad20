"""ResizeLayer and the transposed convolution layers: properties, shapes, descriptions, forward, files."""
from __future__ import annotations

import json

import numpy as np
import pytest

import refcam
from refcam.autodiff import Tensor
from refcam.errors import LayerConfigError, LayerShapeError, ParameterShapeError, SizeLimitError
from refcam.layers import (LAYER_KINDS, TRANSPOSED_CONVOLUTION_BY_RANK, ImageInputLayer, ResizeLayer,
                           SequenceInputLayer, TransposedConvolution1dLayer, TransposedConvolution2dLayer,
                           TransposedConvolution3dLayer)
from refcam.layers.common import MAX_OBSERVATION_ELEMENTS
from refcam.network import Network
from refcam.ops.resample import resize_forward
from tests.ops.naive_conv_transpose import naive_conv_transpose
from tests.tolerances import F64


# --- ResizeLayer ---------------------------------------------------------------------------------
def test_resize_properties_are_normalised():
    layer = ResizeLayer("r", scale=[2, 1.5], method="Bilinear", geometric_transform_mode="align_corners",
                        nearest_rounding_mode="ROUND")
    assert layer.properties() == {"scale": [2.0, 1.5], "output_size": None, "method": "linear",
                                  "geometric_transform_mode": "align-corners",
                                  "nearest_rounding_mode": "round-prefer-ceil"}
    assert ResizeLayer("r", output_size=(8.0, 4)).output_size == (8, 4)
    assert LAYER_KINDS["resize"] is ResizeLayer and "MATLAB" in ResizeLayer.__doc__


def test_resize_output_shape():
    assert ResizeLayer("r", scale=(2, 1.5)).output_shape((3, 4, 5)) == (3, 8, 7)
    assert ResizeLayer("r", scale=(0.5,)).output_shape((3, None)) == (3, None)
    assert ResizeLayer("r", output_size=(6, 2, 9)).output_shape((1, 3, None, 4)) == (1, 6, 2, 9)
    with pytest.raises(LayerShapeError, match=r"'r'.*floor\(3 \* 0.25\) = 0"):
        ResizeLayer("r", scale=(0.25, 1)).output_shape((2, 3, 3))
    with pytest.raises(LayerShapeError, match=r"'r'"):
        ResizeLayer("r", scale=(2, 2)).output_shape((2, 3))
    with pytest.raises(SizeLimitError, match=str(MAX_OBSERVATION_ELEMENTS)):
        ResizeLayer("r", scale=(2 ** 20, 2 ** 20)).output_shape((2, 3, 3))


def test_resize_describe():
    assert (ResizeLayer("r", scale=(2, 2)).describe()
            == "Resize with scale [2  2], method 'nearest', geometric transform mode 'half-pixel' and nearest "
               "rounding mode 'round-prefer-floor'")
    assert (ResizeLayer("r", output_size=(128, 64), method="linear").describe()
            == "Resize to output size [128   64], method 'linear', geometric transform mode 'half-pixel'")
    assert ResizeLayer("r", scale=(2.5,)).describe().startswith("Resize with scale 2.5,")


@pytest.mark.parametrize("kwargs, message", [
    ({}, "exactly one of scale and output_size"),
    ({"scale": (2, 2), "output_size": (4, 4)}, "exactly one"),
    ({"scale": 2}, "one value per spatial axis"),
    ({"scale": [2, 2, 2, 2]}, "one value per spatial axis"),
    ({"scale": [2, 0]}, "scale 0 must be a finite number > 0"),
    ({"scale": [2, float("nan")]}, "scale nan"),
    ({"scale": [2, "2"]}, "scale '2'"),
    ({"scale": [2 ** 40]}, "<= 268435456"),
    ({"output_size": [4, 1.5]}, "output_size"),
    ({"output_size": [0]}, "output_size"),
    ({"output_size": "4"}, "one value per spatial axis"),
    ({"scale": (2,), "method": "cubic"}, "method 'cubic'"),
    ({"scale": (2,), "geometric_transform_mode": "tf_crop_and_resize"}, "geometric_transform_mode"),
    ({"scale": (2,), "nearest_rounding_mode": "onnx-10"}, "'onnx-10'.*not supported"),
    ({"scale": (2,), "nearest_rounding_mode": None}, "nearest_rounding_mode None"),
])
def test_resize_bad_properties(kwargs, message):
    with pytest.raises(LayerConfigError, match=f"'bad'.*{message}"):
        ResizeLayer("bad", **kwargs)


def test_resize_forward_uses_the_given_scale(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    layer = ResizeLayer("r", scale=(1.7, 0.6), method="linear", geometric_transform_mode="asymmetric")
    y = layer.forward(Tensor(x))
    assert y.shape == (2, 3, 6, 3)
    np.testing.assert_array_equal(y.data, resize_forward(x, (6, 3), (1.7, 0.6), "linear", "asymmetric"))
    assert not np.array_equal(y.data, resize_forward(x, (6, 3), None, "linear", "asymmetric"))


# --- transposed convolution ------------------------------------------------------------------------
def test_by_rank_and_registry():
    assert TRANSPOSED_CONVOLUTION_BY_RANK == {1: TransposedConvolution1dLayer, 2: TransposedConvolution2dLayer,
                                              3: TransposedConvolution3dLayer}
    for rank, cls in TRANSPOSED_CONVOLUTION_BY_RANK.items():
        assert LAYER_KINDS[f"transposed_convolution{rank}d"] is cls and "MATLAB" in cls.__doc__
        assert cls.type == f"{rank}-D Transposed Convolution"


@pytest.mark.parametrize("cropping, internal", [
    (0, (0, 0, 0, 0)), (2, (2, 2, 2, 2)), ([1, 2], (1, 2, 1, 2)), ((1, 2, 3, 4), (1, 2, 3, 4)),
    ([[1, 2], [3, 4]], (1, 2, 3, 4)), (np.array([1, 2]), (1, 2, 1, 2)), ("SAME", "same")])
def test_cropping_forms(cropping, internal):
    assert TransposedConvolution2dLayer("t", filter_size=4, num_filters=2, cropping=cropping).cropping == internal


def test_same_cropping_gives_input_times_stride_with_the_odd_cell_at_the_beginning():
    layer = TransposedConvolution2dLayer("t", filter_size=(3, 4), num_filters=2, stride=2, cropping="same")
    assert layer.internal_cropping() == (1, 1, 0, 1)                 # totals 3 - 2 = 1 and 4 - 2 = 2
    assert layer.output_shape((5, 6, 7)) == (2, 12, 14)
    dilated = TransposedConvolution1dLayer("t", filter_size=3, num_filters=1, stride=3, dilation=2, cropping="same")
    assert dilated.internal_cropping() == (1, 1) and dilated.output_shape((1, 4)) == (1, 12)
    with pytest.raises(LayerConfigError, match=r"'t'.*cropping 'same' needs a filter extent"):
        TransposedConvolution2dLayer("t", filter_size=1, num_filters=2, stride=2, cropping="same")


def test_transposed_output_shape():
    layer = TransposedConvolution3dLayer("t", filter_size=(2, 3, 1), num_filters=4, stride=(2, 1, 3),
                                         dilation=(1, 2, 1), cropping=(0, 1, 0, 1, 0, 0), output_padding=(1, 0, 2))
    assert layer.output_shape((3, 4, 5, 2)) == (4, 8, 8, 6)   # 8 - 0 - 1 + 1, 9 - 1, 4 + 2
    seq = TransposedConvolution1dLayer("t", filter_size=4, num_filters=2, stride=2, cropping=1, num_channels=3)
    assert seq.output_shape((3, None)) == (2, None) and seq.output_shape((3, 5)) == (2, 10)
    with pytest.raises(LayerShapeError, match=r"'t'.*expects 3 input channels; found 2"):
        seq.output_shape((2, 5))
    with pytest.raises(LayerShapeError, match=r"'c'.*removes all of them"):
        TransposedConvolution1dLayer("c", filter_size=2, num_filters=1, cropping=(2, 1)).output_shape((1, 2))
    with pytest.raises(SizeLimitError, match="'big'"):
        TransposedConvolution2dLayer("big", filter_size=1, num_filters=2 ** 20, stride=2 ** 8).output_shape((1, 8, 8))


def test_transposed_describe():
    layer = TransposedConvolution2dLayer("t", filter_size=3, num_filters=8, stride=2, cropping="same",
                                         weights=np.zeros((5, 8, 3, 3)))
    assert layer.num_channels == 5
    assert layer.describe() == "8 3x3x5 transposed convolutions with stride [2  2] and cropping 'same'"
    other = TransposedConvolution2dLayer("t", filter_size=(2, 4), num_filters=3, dilation=(2, 1),
                                         cropping=(1, 2, 3, 4), output_padding=(1, 0))
    assert other.describe() == ("3 2x4 transposed convolutions with stride [1  1], dilation [2  1], output padding "
                                "[1  0] and cropping [1  3  2  4]")


@pytest.mark.parametrize("kwargs, message", [
    ({"filter_size": 0}, "filter_size"),
    ({"num_filters": 1.5}, "num_filters"),
    ({"stride": [1, 2, 3]}, "stride"),
    ({"dilation": 0}, "dilation"),
    ({"cropping": "valid"}, "cropping 'valid'"),
    ({"cropping": -1}, "cropping"),
    ({"cropping": [1, 2, 3]}, "cropping"),
    ({"cropping": 2 ** 17}, "cropping.*65536"),
    ({"output_padding": -1}, "output_padding"),
    ({"output_padding": "1"}, "output_padding"),
    ({"num_channels": 0}, "num_channels"),
])
def test_transposed_bad_properties(kwargs, message):
    arguments = dict({"filter_size": 3, "num_filters": 2}, **kwargs)
    with pytest.raises(LayerConfigError, match=f"'bad'.*{message}"):
        TransposedConvolution2dLayer("bad", **arguments)


def test_transposed_parameter_shapes(rng):
    with pytest.raises(ParameterShapeError, match=r"'weights'.*\(2, 4, 3, 3\); expected \(2, 2, 3, 3\)"):
        TransposedConvolution2dLayer("t", filter_size=3, num_filters=2, weights=rng.standard_normal((2, 4, 3, 3)))
    with pytest.raises(ParameterShapeError, match=r"'weights'.*expected \(3, 2, 3, 3\)"):
        TransposedConvolution2dLayer("t", filter_size=3, num_filters=2, num_channels=3,
                                     weights=rng.standard_normal((4, 2, 3, 3)))
    with pytest.raises(ParameterShapeError, match=r"'bias'"):
        TransposedConvolution2dLayer("t", filter_size=3, num_filters=2, bias=rng.standard_normal(3))


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_transposed_forward_matches_loop_twin(rank, rng):
    cls = TRANSPOSED_CONVOLUTION_BY_RANK[rank]
    weights, bias = rng.standard_normal((2, 3) + (3,) * rank), rng.standard_normal(3)
    layer = cls("t", filter_size=3, num_filters=3, stride=2, cropping="same", output_padding=1,
                weights=weights, bias=bias)
    x = rng.standard_normal((2, 2) + (3,) * rank)
    y = layer.forward(Tensor(x))
    assert y.shape == (2,) + layer.output_shape(x.shape[1:]) == (2, 3) + (7,) * rank
    np.testing.assert_allclose(y.data, naive_conv_transpose(x, weights, bias, (2,) * rank, (1,) * rank,
                                                            (1,) * rank + (0,) * rank, (1,) * rank), **F64)
    assert np.array_equal(layer.forward(Tensor(x.astype(np.float32))).data.dtype, np.float32)


# --- networks and files ------------------------------------------------------------------------------
def _decoder_2d(rng) -> Network:
    return Network([
        ImageInputLayer("in", input_size=(4, 5, 2), normalization="none"),
        TransposedConvolution2dLayer("up", filter_size=3, num_filters=3, stride=2, cropping="same",
                                     weights=rng.standard_normal((2, 3, 3, 3)), bias=rng.standard_normal(3)),
        ResizeLayer("resize", scale=(1.5, 0.75), method="linear", geometric_transform_mode="pytorch-half-pixel"),
        TransposedConvolution2dLayer("tconv", filter_size=(2, 3), num_filters=2, dilation=(1, 2),
                                     cropping=(0, 1, 1, 0), output_padding=(1, 0),
                                     weights=rng.standard_normal((3, 2, 2, 3))),
        ResizeLayer("out", output_size=(5, 5), nearest_rounding_mode="ceil"),
    ])


def _sequence_1d(rng) -> Network:
    return Network([
        SequenceInputLayer("seq", input_size=2),
        TransposedConvolution1dLayer("up", filter_size=4, num_filters=3, stride=2, cropping=[1, 2],
                                     weights=rng.standard_normal((2, 3, 4))),
        ResizeLayer("resize", scale=(2.5,), method="linear", geometric_transform_mode="align-corners"),
    ])


def test_network_shapes(rng):
    assert _decoder_2d(rng).output_shapes == {"in": (2, 4, 5), "up": (3, 8, 10), "resize": (3, 12, 7),
                                              "tconv": (2, 13, 10), "out": (2, 5, 5)}
    sequence = _sequence_1d(rng)
    assert sequence.layer("resize").output_shape(sequence.layer("up").output_shape((2, None))) == (3, None)
    assert sequence.infer_shapes((2, 9))["resize"] == (3, 42)    # (8 * 2 + 4 - 3) * 2.5 = 42.5


@pytest.mark.parametrize("make, x_shape", [(_decoder_2d, (4, 5, 2)), (_sequence_1d, (2, 9))])
def test_save_load_round_trip(make, x_shape, tmp_path, rng):
    net = make(rng)
    path = tmp_path / "net.h5"
    refcam.save(net, path)
    loaded = refcam.load(path)
    for name in net.layer_names:
        original, again = net.layer(name), loaded.layer(name)
        assert type(again) is type(original) and again.properties() == original.properties()
        assert again.describe() == original.describe()
        for key, value in original.params().items():
            np.testing.assert_array_equal(again.params()[key], value)
        json.dumps(again.properties(), allow_nan=False)
    x = rng.standard_normal(x_shape)
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    again = tmp_path / "again.h5"
    refcam.save(loaded, again)
    assert again.read_bytes() == path.read_bytes()
