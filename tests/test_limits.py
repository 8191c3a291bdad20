"""Bounds on layer properties and tensor sizes (issue "Hostile files and bad input").

The rules (refcam/layers/common.py, docs/layers.md "Limits"):

* an integer property is an int or an integral float: never a bool, a string,
  NaN, Inf or 1.5 (refused, not truncated);
* window sizes, strides and dilations are integers in [1, MAX_WINDOW_PROPERTY],
  paddings in [0, MAX_WINDOW_PROPERTY];
* counts (filters, channels, groups, sizes, inputs, min_length) are integers in
  [1, MAX_OBSERVATION_ELEMENTS] ([2, ...] for num_inputs);
* float properties are finite real numbers in the layer's range, modes are
  strings from a fixed set; every violation is a LayerConfigError naming the
  layer and the property;
* no per-observation output, zero-padded input or one-row convolution column
  matrix may hold more than MAX_OBSERVATION_ELEMENTS elements: SizeLimitError
  (not a LayerShapeError), at network construction and, for a free sequence
  length, before the forward pass allocates anything.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refcam
from refcam.autodiff import Tensor
from refcam.errors import LayerConfigError, LayerShapeError, SizeLimitError
from refcam.io import safe
from refcam.layers import (LAYER_KINDS, AdditionLayer, AveragePooling2dLayer, BatchNormalizationLayer,
                           ClassificationLayer, ClippedReLULayer, Convolution1dLayer, Convolution2dLayer,
                           DepthConcatenationLayer, DropoutLayer, FlattenLayer, FullyConnectedLayer,
                           ImageInputLayer, LayerNormalizationLayer, LeakyReLULayer, MaxPooling2dLayer,
                           PaddingLayer, ReLULayer, SequenceInputLayer)
from refcam.layers.common import MAX_OBSERVATION_ELEMENTS, MAX_WINDOW_PROPERTY
from refcam.network import Network
from refcam.ops import conv as conv_module


# --- the constants ----------------------------------------------------------------------------
def test_limits_are_the_documented_constants():
    assert MAX_WINDOW_PROPERTY == 2 ** 16
    assert MAX_OBSERVATION_ELEMENTS == 2 ** 28
    assert MAX_OBSERVATION_ELEMENTS * safe.COMPUTE_ITEMSIZE == safe.DEFAULT_MAX_TENSOR_BYTES  # 2 GiB of float64
    text = (Path(__file__).parents[1] / "docs" / "layers.md").read_text()
    assert "MAX_WINDOW_PROPERTY" in text and "MAX_OBSERVATION_ELEMENTS" in text and "## Limits" in text


# --- window properties (defect 1a) -------------------------------------------------------------
WINDOW_CASES = [
    (Convolution2dLayer, {"num_filters": 1}, "filter_size"),
    (Convolution2dLayer, {"filter_size": 3, "num_filters": 1}, "stride"),
    (Convolution2dLayer, {"filter_size": 3, "num_filters": 1}, "dilation_factor"),
    (Convolution2dLayer, {"filter_size": 3, "num_filters": 1}, "padding"),
    (Convolution1dLayer, {"filter_size": 3, "num_filters": 1}, "padding"),
    (MaxPooling2dLayer, {}, "pool_size"),
    (MaxPooling2dLayer, {"pool_size": 2}, "stride"),
    (AveragePooling2dLayer, {"pool_size": 2}, "stride"),
]


@pytest.mark.parametrize("cls, others, prop", WINDOW_CASES)
@pytest.mark.parametrize("value", [2 ** 70, 10 ** 6, MAX_WINDOW_PROPERTY + 1, [1, 2 ** 70]])
def test_window_properties_beyond_the_limit_are_refused(cls, others, prop, value):
    with pytest.raises(LayerConfigError, match=f"'bad'.*{prop}.*integers <= 65536 \\(refcam's limit"):
        cls("bad", **others, **{prop: value})


@pytest.mark.parametrize("cls, others, prop", WINDOW_CASES)
def test_window_properties_at_the_limit_are_accepted(cls, others, prop):
    layer = cls("ok", **others, **{prop: MAX_WINDOW_PROPERTY})
    assert MAX_WINDOW_PROPERTY in getattr(layer, prop)


def test_padding_layer_padding_is_bounded():
    assert PaddingLayer(name="ok", padding=(MAX_WINDOW_PROPERTY, 0)).padding == (MAX_WINDOW_PROPERTY, 0)
    for bad in [(2 ** 70, 0), (10 ** 6, 0), (True, 0), (1.5, 0), (float("inf"), 0)]:
        with pytest.raises(LayerConfigError, match="'bad'.*padding"):
            PaddingLayer(name="bad", padding=bad)


def test_pooling_padding_is_bounded_by_the_pool_size():
    with pytest.raises(LayerConfigError, match="'bad'.*smaller than pool_size"):
        MaxPooling2dLayer("bad", pool_size=2, padding=10 ** 4)


# --- integer properties are integers (defect 2) ---------------------------------------------------
NOT_INTEGERS = [1.5, float("inf"), float("-inf"), float("nan"), 1e309, True, False, "3", "", None, [],
                {}, b"3", np.float64(2.5), np.bool_(True), object()]


INTEGER_PROPERTIES = [
    (lambda v: Convolution2dLayer("bad", filter_size=v, num_filters=2), "filter_size"),
    (lambda v: Convolution2dLayer("bad", filter_size=3, num_filters=v), "num_filters"),
    (lambda v: Convolution2dLayer("bad", filter_size=3, num_filters=2, stride=v), "stride"),
    (lambda v: Convolution2dLayer("bad", filter_size=3, num_filters=2, groups=v), "groups"),
    (lambda v: Convolution2dLayer("bad", filter_size=3, num_filters=2, num_channels=v), "num_channels"),
    (lambda v: MaxPooling2dLayer("bad", pool_size=v), "pool_size"),
    (lambda v: FullyConnectedLayer("bad", output_size=v), "output_size"),
    (lambda v: ImageInputLayer("bad", input_size=(4, v, 1), normalization="none"), "input_size"),
    (lambda v: SequenceInputLayer("bad", input_size=2, min_length=v), "min_length"),
    (lambda v: AdditionLayer("bad", num_inputs=v), "num_inputs"),
]
AUTO_WHEN_NONE = ("num_channels", "num_inputs")  # None is MATLAB's 'auto' for these


@pytest.mark.parametrize("make, prop, value", [
    pytest.param(make, prop, value, id=f"{prop}={value!r}") for make, prop in INTEGER_PROPERTIES
    for value in NOT_INTEGERS if not (value is None and prop in AUTO_WHEN_NONE)])
def test_integer_properties_refuse_non_integers_naming_layer_and_property(make, prop, value):
    with pytest.raises(LayerConfigError, match=f"'bad'.*{prop}"):
        make(value)


def test_integral_floats_and_numpy_integers_are_accepted_unchanged():
    layer = Convolution2dLayer("c", filter_size=(3.0, np.int64(2)), num_filters=np.float64(4.0), stride=2.0)
    assert layer.filter_size == (3, 2) and layer.num_filters == 4 and layer.stride == (2, 2)
    assert all(type(v) is int for v in layer.filter_size + layer.stride + (layer.num_filters,))


@pytest.mark.parametrize("make", [
    lambda: BatchNormalizationLayer("bad", epsilon=None),
    lambda: BatchNormalizationLayer("bad", epsilon=""),
    lambda: BatchNormalizationLayer("bad", epsilon="1e-5"),
    lambda: BatchNormalizationLayer("bad", epsilon=float("nan")),
    lambda: BatchNormalizationLayer("bad", epsilon=-1e-5),
    lambda: LayerNormalizationLayer("bad", epsilon=float("inf")),
    lambda: LayerNormalizationLayer("bad", epsilon=True),
    lambda: MaxPooling2dLayer("bad", pool_size=float("-inf")),
    lambda: Convolution2dLayer("bad", filter_size=3, num_filters=0),
    lambda: LeakyReLULayer("bad", scale=float("nan")),
    lambda: LeakyReLULayer("bad", scale=float("inf")),
    lambda: LeakyReLULayer("bad", scale=10 ** 400),
    lambda: ClippedReLULayer("bad", ceiling=None),
    lambda: ClippedReLULayer("bad", ceiling="6"),
    lambda: DropoutLayer("bad", probability=None),
    lambda: DropoutLayer("bad", probability=float("nan")),
    lambda: PaddingLayer(name="bad", padding=(1, 1), value=None),
    lambda: AveragePooling2dLayer("bad", pool_size=2, padding_value=False),
    lambda: AveragePooling2dLayer("bad", pool_size=2, padding_value=np.zeros(2)),
    lambda: FlattenLayer("bad", order=None),
    lambda: ImageInputLayer("bad", input_size=(4, 4, 1), normalization=None),
    lambda: LayerNormalizationLayer("bad", operation_dimension=None),
    lambda: ClassificationLayer("bad", classes=5),
    lambda: ClassificationLayer("bad", classes="abc"),
    lambda: ClassificationLayer("bad", classes=[1, 2]),
    lambda: FullyConnectedLayer("bad", output_size=2, weights="x"),
    lambda: FullyConnectedLayer("bad", output_size=2, weights={}),
    lambda: FullyConnectedLayer("bad", output_size=2, weights=np.array([["a", "b"]] * 2)),
    lambda: DepthConcatenationLayer("bad", num_inputs=2.5),
])
def test_public_constructors_raise_layer_config_error_only(make):
    with pytest.raises(LayerConfigError, match="'bad'"):
        make()


def test_name_and_inputs_are_checked():
    with pytest.raises(LayerConfigError, match="name"):
        ReLULayer(None)
    for bad in ["conv", 5, [1], None]:
        with pytest.raises(LayerConfigError, match="'r'.*inputs"):
            ReLULayer("r", inputs=bad)


# --- sizes at network construction (defect 1b) ------------------------------------------------------
def _image_net(*layers: Any, size: tuple[int, ...] = (8, 8, 1)) -> Network:
    return Network([ImageInputLayer("in", input_size=size, normalization="none"), *layers])


def _size_error(make: Any) -> SizeLimitError:
    with pytest.raises(SizeLimitError) as caught:
        make()
    assert not isinstance(caught.value, LayerShapeError)
    assert str(MAX_OBSERVATION_ELEMENTS) in str(caught.value)
    return caught.value


def test_a_huge_padding_is_refused_at_network_construction():
    err = _size_error(lambda: _image_net(Convolution2dLayer("conv", filter_size=3, num_filters=1,
                                                            padding=MAX_WINDOW_PROPERTY)))
    assert "'conv'" in str(err) and "zero-padded input" in str(err) and "(1, 131080, 131080)" in str(err)


def test_a_huge_output_is_refused_at_network_construction():
    err = _size_error(lambda: _image_net(Convolution2dLayer("conv", filter_size=1, num_filters=2 ** 23)))
    assert "'conv'" in str(err) and "output" in str(err) and f"({2 ** 23}, 8, 8)" in str(err)
    err = _size_error(lambda: _image_net(PaddingLayer(name="pad", padding=(2 ** 16,) * 4), size=(8, 8, 16)))
    assert "'pad'" in str(err)


def test_a_huge_column_row_is_refused_at_network_construction():
    """Input 8192 x 8192 and a 4096 x 4096 kernel: one output row needs 2**24 * 4097 column entries."""
    err = _size_error(lambda: _image_net(Convolution2dLayer("conv", filter_size=4096, num_filters=1),
                                         size=(8192, 8192, 1)))
    assert "column matrix for one output row" in str(err) and "(1, 4096, 4096, 4097)" in str(err)


def test_sums_of_inputs_and_declared_inputs_are_refused():
    _size_error(lambda: _image_net(size=(2 ** 14, 2 ** 14, 2)))
    branches = [ImageInputLayer("in", input_size=(2 ** 13, 2 ** 13, 3), normalization="none"),
                ReLULayer("a", inputs=("in",)), ReLULayer("b", inputs=("in",)),
                DepthConcatenationLayer("cat", inputs=("a", "b", "in"))]
    assert "'cat'" in str(_size_error(lambda: Network(branches)))


def test_networks_at_the_limit_are_accepted():
    net = _image_net(Convolution2dLayer("conv", filter_size=1, num_filters=2 ** 22))
    assert net.output_shapes["conv"] == (2 ** 22, 8, 8)


def test_the_importers_see_the_size_error_from_a_saved_file(tmp_path, rng):
    net = _image_net(Convolution2dLayer("conv", filter_size=3, num_filters=2, weights=rng.standard_normal((2, 1, 3, 3))),
                     FlattenLayer("flat"))
    path = tmp_path / "net.h5"
    refcam.save(net, path)
    for prop, value, error in [("padding", [2 ** 70] * 4, LayerConfigError), ("stride", [10 ** 6] * 2, LayerConfigError),
                               ("dilation_factor", [1.5, 1], LayerConfigError),
                               ("padding", [MAX_WINDOW_PROPERTY] * 4, SizeLimitError)]:
        with h5py.File(path, "r+") as f:
            topology = json.loads(f.attrs["topology"])
            conv = next(entry for entry in topology["layers"] if entry["name"] == "conv")
            conv["properties"] = dict(conv["properties"], padding=[0] * 4, stride=[1, 1], dilation_factor=[1, 1])
            conv["properties"][prop] = value
            f.attrs["topology"] = json.dumps(topology)
        with pytest.raises(error, match=f"'conv'.*{prop if error is LayerConfigError else 'limit'}"):
            refcam.load(path)


# --- sizes on the forward pass for a free time axis (defect 1c) ---------------------------------------
def _padded_sequence_net() -> Network:
    """Fine at min_length 1 (1024 x 131073 outputs), too large for a sequence of 200000 steps."""
    return Network([SequenceInputLayer("seq", input_size=1),
                    Convolution1dLayer("conv", filter_size=1, num_filters=1024, padding=MAX_WINDOW_PROPERTY,
                                       weights=np.ones((1024, 1, 1)))])


def test_a_long_sequence_through_a_huge_padding_fails_before_allocating():
    net = _padded_sequence_net()
    assert net.output_shapes["conv"] == (1024, 2 * MAX_WINDOW_PROPERTY + 1)
    long_sequence = np.zeros((1, 200_000))  # C x T
    err = _size_error(lambda: net.predict(long_sequence))
    assert "'conv'" in str(err) and "(1024, 331072)" in str(err)
    _size_error(lambda: net.layer("conv").forward(Tensor(long_sequence[None])))


def test_a_long_sequence_input_is_refused_by_the_network():
    net = Network([SequenceInputLayer("seq", input_size=2), ReLULayer("relu")])
    _size_error(lambda: net.infer_shapes((2, MAX_OBSERVATION_ELEMENTS // 2 + 1)))
    assert net.infer_shapes((2, MAX_OBSERVATION_ELEMENTS // 2))["relu"] == (2, MAX_OBSERVATION_ELEMENTS // 2)


# --- the tiling loop terminates for any size (defect 1d) ----------------------------------------------
@pytest.mark.parametrize("budget", [0, 1, 7])
def test_row_tiles_terminate_when_one_row_exceeds_the_budget(monkeypatch, budget):
    monkeypatch.setattr(conv_module, "COLUMN_BUDGET_BYTES", budget)
    rows = 100_000
    tiles = conv_module._row_tiles((4, 3, rows + 2, 9), (3, 3), (rows, 7), 8)
    assert len(tiles) == rows and tiles[0] == (0, 1) and tiles[-1] == (rows - 1, rows)
    assert all(a[1] == b[0] for a, b in zip(tiles, tiles[1:]))


def test_row_tiles_for_a_huge_row_stay_one_row_each():
    tiles = conv_module._row_tiles((2 ** 20, 2 ** 20, 5, 2 ** 20), (2 ** 16, 2 ** 16), (3, 2 ** 20), 8)
    assert tiles == [(0, 1), (1, 2), (2, 3)]


# --- every layer constructor takes junk and says LayerConfigError (defect 2) --------------------------
REQUIRED: dict[str, dict[str, Any]] = {
    "image_input": {"input_size": (4, 4, 2), "normalization": "none"},
    "image3d_input": {"input_size": (4, 4, 4, 2), "normalization": "none"},
    "sequence_input": {"input_size": 2},
    "convolution1d": {"filter_size": 1, "num_filters": 2},
    "convolution2d": {"filter_size": 1, "num_filters": 2},
    "convolution3d": {"filter_size": 1, "num_filters": 2},
    "grouped_convolution2d": {"filter_size": 1, "num_filters": 2},
    "max_pooling1d": {"pool_size": 2}, "max_pooling2d": {"pool_size": 2}, "max_pooling3d": {"pool_size": 2},
    "average_pooling1d": {"pool_size": 2}, "average_pooling2d": {"pool_size": 2},
    "average_pooling3d": {"pool_size": 2},
    "clipped_relu": {"ceiling": 6.0},
    "fully_connected": {"output_size": 3},
    "padding": {"padding": (1, 1, 1, 1)},
    "channel_shuffle": {"groups": 2}, "channel_slice": {"start": 0, "stop": 2}, "reduce": {"axes": (1, 2)},
    "cropping": {"cropping": (1, 1, 1, 1)},
    "resize": {"scale": (2, 2)},
    "transposed_convolution1d": {"filter_size": 2, "num_filters": 2},
    "transposed_convolution2d": {"filter_size": 2, "num_filters": 2},
    "transposed_convolution3d": {"filter_size": 2, "num_filters": 2},
}
JUNK = [None, "", "x", "SAME", 1.5, -1, 0, 2 ** 70, float("nan"), float("inf"), float("-inf"), [],
        [1, 2, 3, 4, 5, 6, 7], {}, True, b"x", [None], [[1, 2], [3]], np.zeros((2, 2, 2)), np.array("x"),
        np.array([np.nan]), object()]


def _inputs(cls: type) -> tuple[str, ...]:
    if cls.num_inputs == 0:
        return ()
    return ("a", "b") if cls.num_inputs is None else ("a",)


def _fields(cls: type) -> tuple[str, ...]:
    return cls.property_names() + cls.param_names()


def _check_outcome(cls: type, overrides: dict[str, Any]) -> None:
    """Construction either fails with LayerConfigError or gives a layer that behaves."""
    kwargs = dict(REQUIRED.get(cls.kind, {}), **overrides)
    try:
        layer = cls(name="fuzz", inputs=_inputs(cls), **kwargs)
    except LayerConfigError as err:
        assert "'fuzz'" in str(err)
        return
    json.dumps(layer.properties(), allow_nan=False)
    assert isinstance(layer.describe(), str)
    shapes = [] if cls.num_inputs == 0 else [(2, 4, 4)] * len(layer.inputs)
    try:
        layer.output_shape(*shapes)
    except (LayerShapeError, SizeLimitError):
        pass


def test_every_layer_kind_has_a_fuzz_baseline():
    assert set(REQUIRED) <= set(LAYER_KINDS)
    for kind, cls in LAYER_KINDS.items():
        cls(name="baseline", inputs=_inputs(cls), **REQUIRED.get(kind, {}))


@pytest.mark.parametrize("kind", sorted(LAYER_KINDS))
def test_each_property_of_each_layer_takes_junk_as_a_layer_config_error(kind):
    cls = LAYER_KINDS[kind]
    for field in _fields(cls):
        for junk in JUNK:
            _check_outcome(cls, {field: junk})


SCALARS = (st.none() | st.booleans() | st.integers(-2 ** 80, 2 ** 80) | st.floats() | st.text(max_size=4)
           | st.sampled_from(["same", "causal", "auto", "channel-wise", "mean", "none", "zscore", "matlab",
                              "Channel-Only", 0, 1, 2, 3, 0.5, 1e-5]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=7) | st.dictionaries(
    st.text(max_size=2), inner, max_size=2), max_leaves=8)


@settings(max_examples=400, deadline=None)
@given(data=st.data(), kind=st.sampled_from(sorted(LAYER_KINDS)))
def test_random_junk_in_any_properties_is_a_layer_config_error_or_a_working_layer(data, kind):
    cls = LAYER_KINDS[kind]
    fields = data.draw(st.lists(st.sampled_from(_fields(cls)), unique=True, max_size=4)) if _fields(cls) else []
    _check_outcome(cls, {field: data.draw(VALUES, label=field) for field in fields})


def test_json_properties_of_accepted_layers_are_finite():
    """A float property is stored as a finite number, so a saved topology never holds NaN or Inf."""
    layer = BatchNormalizationLayer("bn", epsilon=np.float32(1e-3))
    assert type(layer.epsilon) is float and math.isfinite(layer.epsilon)
    json.dumps(layer.properties(), allow_nan=False)
