"""Multiplication and the shape layers: forward, output_shape (free axes, errors), describe, validation, files."""
from __future__ import annotations

import json

import numpy as np
import pytest

import refcam
from refcam import layers as L
from refcam.autodiff import Tensor, grad
from refcam.errors import LayerConfigError, LayerShapeError
from refcam.network import Network
from refcam.testing import check_vjp
from tests.ops.naive_shape import (channel_shuffle_loops, channel_slice_loops, crop_loops, multiply_loops,
                                   reduce_loops)
from tests.tolerances import F32, F64


# --- multiplication ---------------------------------------------------------------------------
def test_multiplication_layer_forward_and_vjp(rng):
    gate, features, mask = (rng.standard_normal(s) for s in [(2, 3, 1, 1), (2, 3, 4, 5), (2, 1, 4, 5)])
    layer = L.MultiplicationLayer(name="mul", inputs=("a", "b", "c"))
    assert layer.num_inputs == 3
    y = layer.forward(Tensor(gate), Tensor(features), Tensor(mask)).data
    np.testing.assert_allclose(y, multiply_loops([gate, features, mask]), **F64)
    assert layer.output_shape((3, 1, 1), (3, 4, 5), (1, 4, 5)) == y.shape[1:]
    check_vjp(layer.forward, [gate, features, mask])


@pytest.mark.parametrize("shapes, expected", [
    ([(3, 1, 1), (3, 4, 5)], (3, 4, 5)),                       # squeeze-and-excitation
    ([(3, 4, 5), (3, 4, 5)], (3, 4, 5)),
    ([(1, 4), (3, 1)], (3, 4)),
    ([(1, 1), (1, 1)], (1, 1)),
    ([(3, None), (3, 1)], (3, None)),                         # a free time axis stays free
    ([(3, None), (1, None)], (3, None)),
    ([(3, None), (3, 7)], (3, 7)),                            # ... unless another input fixes it
    ([(3, 1), (1, None)], (3, None)),
])
def test_multiplication_output_shape_broadcasts(shapes, expected):
    assert L.MultiplicationLayer(name="mul").output_shape(*shapes) == expected


@pytest.mark.parametrize("shapes, message", [
    ([(3, 4, 5), (3, 4, 6)], r"\[\(3, 4, 5\), \(3, 4, 6\)\], whose axis 2 has sizes \[5, 6\]"),
    ([(3, 4), (2, None), (3, 1)], r"\[\(3, 4\), \(2, None\), \(3, 1\)\], whose axis 0"),
    ([(3, 4, 5), (3, 4)], r"one number of axes .*\[\(3, 4, 5\), \(3, 4\)\]"),
])
def test_multiplication_shape_errors_list_every_input(shapes, message):
    layer = L.MultiplicationLayer(name="mul")
    with pytest.raises(LayerShapeError, match=f"'mul' \\(Multiplication\\) multiplies.*{message}"):
        layer.output_shape(*shapes)
    with pytest.raises(LayerShapeError, match="2 or more inputs"):
        layer.output_shape((3, 4))


def test_multiplication_forward_checks_a_free_axis_against_the_real_sizes():
    layer = L.MultiplicationLayer(name="mul")
    with pytest.raises(LayerShapeError, match="'mul'.*axis 1 has sizes \\[5, 6\\]"):
        layer.forward(Tensor(np.ones((1, 2, 5))), Tensor(np.ones((1, 2, 6))))


def test_multiplication_describe_and_num_inputs():
    assert L.MultiplicationLayer(name="m", inputs=("a", "b")).describe() == "Element-wise multiplication of 2 inputs"
    assert L.MultiplicationLayer(name="m").describe() == "Element-wise multiplication"
    assert L.MultiplicationLayer(name="m", num_inputs=3).num_inputs == 3
    for bad in [1, 2.5, "2", True]:
        with pytest.raises(LayerConfigError, match="'bad'.*num_inputs"):
            L.MultiplicationLayer(name="bad", num_inputs=bad)
    with pytest.raises(LayerConfigError, match="num_inputs is 3 but 2 inputs"):
        L.MultiplicationLayer(name="bad", inputs=("a", "b"), num_inputs=3)


# --- channel shuffle, channel slice, reduce, cropping ------------------------------------------
def test_channel_shuffle_layer(rng):
    layer = L.ChannelShuffleLayer(name="shuffle", groups=3)
    x = rng.standard_normal((2, 6, 2, 3))
    np.testing.assert_array_equal(layer.forward(Tensor(x)).data, channel_shuffle_loops(x, 3))
    assert layer.output_shape((6, 2, 3)) == (6, 2, 3) and layer.output_shape((9, None)) == (9, None)
    assert layer.describe() == "Channel shuffle with 3 groups"
    with pytest.raises(LayerShapeError, match=r"'shuffle'.*3 groups do not divide the 4 channels .*\(4, 2, 3\)"):
        layer.output_shape((4, 2, 3))
    check_vjp(layer.forward, [x])


def test_channel_slice_layer(rng):
    layer = L.ChannelSliceLayer(name="slice", start=2, stop=4)
    x = rng.standard_normal((2, 5, 3))
    np.testing.assert_array_equal(layer.forward(Tensor(x)).data, channel_slice_loops(x, 2, 4))
    assert layer.output_shape((5, 3)) == (2, 3) and layer.output_shape((4, None)) == (2, None)
    assert layer.describe() == "Channels 3 to 4"
    with pytest.raises(LayerShapeError, match=r"'slice'.*channels 2:4 .*\(3, 7\) with 3 channels; stop must be at most 3"):
        layer.output_shape((3, 7))
    check_vjp(layer.forward, [x])


@pytest.mark.parametrize("operation, axes, x_shape, text", [
    ("mean", (1, 2), (2, 3, 4, 5), "Mean over spatial axes [1  2]"),
    ("max", (0,), (2, 3, 4, 5), "Max over channels"),
    ("mean", (2, 0), (1, 3, 4, 5), "Mean over channels and spatial axis 2"),
    ("MAX", [0, 1], (2, 3, 7), "Max over channels and spatial axis 1"),
    ("max", 1, (2, 3, 4, 2, 2), "Max over spatial axis 1"),
])
def test_reduce_layer(operation, axes, x_shape, text, rng):
    layer = L.ReduceLayer(name="reduce", operation=operation, axes=axes)
    x = rng.standard_normal(x_shape)
    tensor_axes = tuple(a + 1 for a in layer.axes)
    np.testing.assert_allclose(layer.forward(Tensor(x)).data, reduce_loops(x, tensor_axes, layer.operation), **F64)
    assert layer.output_shape(x_shape[1:]) == tuple(1 if a in layer.axes else n for a, n in enumerate(x_shape[1:]))
    assert layer.axes == tuple(sorted(layer.axes)) and layer.operation == operation.lower()
    assert layer.describe() == text
    check_vjp(layer.forward, [x])


def test_reduce_layer_shapes_and_errors():
    layer = L.ReduceLayer(name="reduce", axes=(0, 2))
    assert layer.output_shape((3, None, None)) == (1, None, 1)
    with pytest.raises(LayerShapeError, match=r"'reduce'.*axes \[0, 2\] .*\(3, 4\), which has axes 0 to 1 only"):
        layer.output_shape((3, 4))
    with pytest.raises(LayerShapeError, match="'reduce'"):
        layer.forward(Tensor(np.ones((1, 3, 4))))


def test_reduce_max_layer_and_global_max_pooling_differ_only_at_ties():
    x = Tensor(np.array([[[[2.0, 1.0], [2.0, 0.0]]]]), requires_grad=True)   # (1, 1, 2, 2), a tie at 2
    reduce_max = L.ReduceLayer(name="r", operation="max", axes=(1, 2))
    pool = L.GlobalMaxPooling2dLayer(name="p")
    np.testing.assert_array_equal(reduce_max.forward(x).data, pool.forward(x).data)
    np.testing.assert_array_equal(grad(reduce_max.forward(x), [x])[0], [[[[0.5, 0.0], [0.5, 0.0]]]])
    np.testing.assert_array_equal(grad(pool.forward(x), [x])[0], [[[[1.0, 0.0], [0.0, 0.0]]]])


def test_cropping_layer(rng):
    layer = L.CroppingLayer(name="crop", cropping=(1, 3, 2, 4))     # top 1, left 3, bottom 2, right 4
    x = rng.standard_normal((2, 3, 6, 9))
    np.testing.assert_array_equal(layer.forward(Tensor(x)).data, crop_loops(x, (1, 3, 2, 4)))
    assert layer.output_shape((3, 6, 9)) == (3, 3, 2)
    assert L.CroppingLayer(name="c1", cropping=(2, 1)).output_shape((3, None)) == (3, None)
    assert layer.describe() == "Cropping [1  2  3  4]"
    with pytest.raises(LayerShapeError, match=r"'crop'.*\(3, 6, 7\) would leave spatial shape \(3, 0\)"):
        layer.output_shape((3, 6, 7))
    with pytest.raises(LayerShapeError, match="'crop'.*2 spatial axis"):
        layer.output_shape((3, 6))
    with pytest.raises(LayerShapeError, match="'c1'.*at least one cell"):
        L.CroppingLayer(name="c1", cropping=(2, 1)).forward(Tensor(np.ones((1, 3, 3))))
    check_vjp(layer.forward, [x])


@pytest.mark.parametrize("make, prop", [
    (lambda v: L.ChannelShuffleLayer(name="bad", groups=v), "groups"),
    (lambda v: L.ChannelSliceLayer(name="bad", start=v, stop=4), "start"),
    (lambda v: L.ChannelSliceLayer(name="bad", start=0, stop=v), "stop"),
    (lambda v: L.ReduceLayer(name="bad", axes=v), "axes"),
    (lambda v: L.ReduceLayer(name="bad", operation=v, axes=1), "operation"),
    (lambda v: L.CroppingLayer(name="bad", cropping=v), "cropping"),
])
@pytest.mark.parametrize("value", [None, "x", 1.5, -1, float("nan"), True, {}, [1.5], 2 ** 70, np.zeros((2, 2))])
def test_junk_properties_are_layer_config_errors(make, prop, value):
    with pytest.raises(LayerConfigError, match=f"'bad'.*{prop}"):
        make(value)


@pytest.mark.parametrize("make, message", [
    (lambda: L.ChannelSliceLayer(name="bad", start=3, stop=3), "start 3 must be smaller than stop 3"),
    (lambda: L.ChannelSliceLayer(name="bad", start=4, stop=1), "start 4 must be smaller than stop 1"),
    (lambda: L.ReduceLayer(name="bad", axes=()), "one or more distinct"),
    (lambda: L.ReduceLayer(name="bad", axes=(1, 1)), "one or more distinct"),
    (lambda: L.ReduceLayer(name="bad", operation="sum", axes=1), r"operation 'sum' is not one of \['mean', 'max'\]"),
    (lambda: L.CroppingLayer(name="bad", cropping=(1, 2, 3)), "2N integers"),
    (lambda: L.CroppingLayer(name="bad", cropping=()), "2N integers"),
    (lambda: L.ChannelShuffleLayer(name="bad", groups=0), "groups"),
])
def test_inconsistent_properties_are_layer_config_errors(make, message):
    with pytest.raises(LayerConfigError, match=f"'bad'.*{message}"):
        make()


def test_properties_are_plain_json_and_rebuild_the_layer():
    built = [L.MultiplicationLayer(name="m", inputs=("a", "b")), L.ChannelShuffleLayer(name="s", groups=2.0),
             L.ChannelSliceLayer(name="c", start=np.int64(1), stop=3), L.ReduceLayer(name="r", axes=[2, 1]),
             L.CroppingLayer(name="k", cropping=[0, 1])]
    expected = [{"num_inputs": 2}, {"groups": 2}, {"start": 1, "stop": 3},
                {"operation": "mean", "axes": [1, 2]}, {"cropping": [0, 1]}]
    for layer, properties in zip(built, expected):
        assert L.LAYER_KINDS[layer.kind] is type(layer)
        assert json.loads(json.dumps(layer.properties())) == properties
        assert type(layer)(layer.name, layer.inputs, **layer.properties()).describe() == layer.describe()


# --- a network: squeeze-and-excitation gate, shuffle, slice, crop, reduce ------------------------------
def se_network(rng: np.random.Generator) -> Network:
    """input 5x6x4 -> conv -> [mean over space -> 1x1 conv -> sigmoid] x conv -> shuffle, slice, crop, max -> fc."""
    layers = [
        L.ImageInputLayer(name="in", input_size=(5, 6, 4), normalization="none"),
        L.Convolution2dLayer(name="conv", inputs=("in",), filter_size=3, num_filters=6, padding="same",
                             weights=rng.standard_normal((6, 4, 3, 3)), bias=rng.standard_normal(6)),
        L.ReduceLayer(name="squeeze", inputs=("conv",), operation="mean", axes=(1, 2)),
        L.Convolution2dLayer(name="excite", inputs=("squeeze",), filter_size=1, num_filters=6,
                             weights=rng.standard_normal((6, 6, 1, 1)), bias=rng.standard_normal(6)),
        L.SigmoidLayer(name="gate", inputs=("excite",)),
        L.MultiplicationLayer(name="scale", inputs=("gate", "conv")),
        L.ChannelShuffleLayer(name="shuffle", inputs=("scale",), groups=3),
        L.ChannelSliceLayer(name="half", inputs=("shuffle",), start=1, stop=4),
        L.CroppingLayer(name="crop", inputs=("half",), cropping=(1, 0, 1, 2)),
        L.ReduceLayer(name="peak", inputs=("crop",), operation="max", axes=(1, 2)),
        L.FullyConnectedLayer(name="fc", inputs=("peak",), output_size=2,
                              weights=rng.standard_normal((2, 3)), bias=rng.standard_normal(2)),
        L.SoftmaxLayer(name="prob", inputs=("fc",)),
        L.ClassificationLayer(name="out", inputs=("prob",), classes=["a", "b"]),
    ]
    return Network(layers, name="se")


def test_network_shapes_describe_and_vjp(rng):
    net = se_network(rng)
    shapes = net.output_shapes
    assert shapes["squeeze"] == (6, 1, 1) and shapes["scale"] == (6, 5, 6) and shapes["half"] == (3, 5, 6)
    assert shapes["crop"] == (3, 3, 4) and shapes["peak"] == (3, 1, 1)
    text = str(net)
    for line in ["Element-wise multiplication of 2 inputs", "Channel shuffle with 3 groups", "Channels 2 to 4",
                 "Cropping [1  1  0  2]", "Mean over spatial axes [1  2]", "Max over spatial axes [1  2]"]:
        assert line in text
    x = rng.standard_normal((2, 4, 5, 6))
    check_vjp(lambda t: net.forward_tensors(t, ["fc"])["fc"], [x])


def test_network_saves_and_loads(tmp_path, rng):
    net = se_network(rng)
    path = tmp_path / "se.h5"
    refcam.io.save(net, path)
    loaded = refcam.io.load(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in net.layers]
    assert [layer.properties() for layer in loaded.layers] == [layer.properties() for layer in net.layers]
    image = rng.standard_normal((5, 6, 4))
    np.testing.assert_array_equal(loaded.predict(image), net.predict(image))
    assert str(loaded) == str(net)
    np.testing.assert_allclose(net.predict(image.astype(np.float32), dtype="float32"), net.predict(image), **F32)
    again = tmp_path / "again.h5"
    refcam.io.save(loaded, again)
    assert path.read_bytes() == again.read_bytes()


def test_gradcam_through_the_gate(rng):
    net = se_network(rng)
    result = refcam.gradcam(net, rng.standard_normal((5, 6, 4)), "b", feature_layer="conv")
    assert result.map.shape == (5, 6) and np.all(np.isfinite(result.map))
    assert result.gradients.shape == (1, 1, 6, 5, 6)
