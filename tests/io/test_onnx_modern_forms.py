"""ONNX import of the element-wise and shape forms of modern CNNs, on small graphs written with ``onnx.helper``.

Each accepted form is checked against NumPy in float64 (the ONNX operator
definition); each refused form must land, named, in the one
UnsupportedOperationError. Needs the ``onnx`` package (skipped without it).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erf

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402

import refcam.errors as errors  # noqa: E402
from refcam.io.onnx_import import load_onnx  # noqa: E402
from tests.io.test_onnx import ints, write_model  # noqa: E402
from tests.tolerances import F64  # noqa: E402

SHAPE = (1, 6, 4, 5)
node = helper.make_node


def predict(path, x: np.ndarray) -> np.ndarray:
    return load_onnx(path).predict(x, format={3: "BCT", 4: "BCSS"}[x.ndim])


def kinds(path) -> list[str]:
    return [layer.kind for layer in load_onnx(path).layers[1:]]


def hard_sigmoid(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    return np.clip(alpha * x + beta, 0.0, 1.0)


# --- element-wise ------------------------------------------------------------------------------------
def test_products_broadcast_size_one_axes(tmp_path, rng) -> None:
    """SE ``(1, C, 1, 1) * (1, C, H, W)`` and CBAM ``(1, 1, H, W) * (1, C, H, W)``, and x * x."""
    nodes = [node("GlobalAveragePool", ["x"], ["g"], name="gap"),
             node("Mul", ["g", "x"], ["se"], name="se"),
             node("ReduceMax", ["x", "axes"], ["m"], name="channel_max"),
             node("Sigmoid", ["m"], ["gate"], name="gate"),
             node("Mul", ["se", "gate"], ["sa"], name="sa"),
             node("Mul", ["sa", "sa"], ["y"], name="square")]
    path = write_model(tmp_path, nodes, SHAPE, [ints("axes", [1])])
    x = rng.standard_normal(SHAPE)
    se = x.mean(axis=(2, 3), keepdims=True) * x
    sa = se / (1.0 + np.exp(-x.max(axis=1, keepdims=True)))
    np.testing.assert_allclose(predict(path, x), sa * sa, **F64)
    assert kinds(path).count("multiplication") == 3


def test_pow_by_small_integers_is_a_product(tmp_path, rng) -> None:
    nodes = [node("Pow", ["x", "three"], ["c"], name="cube"), node("Pow", ["c", "one"], ["y"], name="same")]
    path = write_model(tmp_path, nodes, SHAPE, [("three", np.array(3.0)), ("one", np.array(1.0))])
    x = rng.standard_normal(SHAPE)
    np.testing.assert_allclose(predict(path, x), x ** 3, **F64)
    assert kinds(path) == ["multiplication"]


@pytest.mark.parametrize("order", [("x", "s"), ("s", "x")])
def test_x_times_sigmoid_x_is_one_swish_layer(order, tmp_path, rng) -> None:
    nodes = [node("Sigmoid", ["x"], ["s"], name="sig"), node("Mul", list(order), ["y"], name="silu")]
    path = write_model(tmp_path, nodes, SHAPE)
    net = load_onnx(path)
    assert [(layer.name, layer.kind) for layer in net.layers[1:]] == [("silu", "swish")]
    x = rng.standard_normal(SHAPE)
    np.testing.assert_allclose(net.predict(x, format="BCSS"), x / (1.0 + np.exp(-x)), **F64)


def test_a_sigmoid_read_twice_is_not_fused(tmp_path, rng) -> None:
    nodes = [node("Sigmoid", ["x"], ["s"], name="sig"), node("Mul", ["x", "s"], ["p"], name="mul"),
             node("Add", ["p", "s"], ["y"], name="add")]
    path = write_model(tmp_path, nodes, SHAPE)
    assert kinds(path) == ["sigmoid", "multiplication", "addition"]
    x = rng.standard_normal(SHAPE)
    s = 1.0 / (1.0 + np.exp(-x))
    np.testing.assert_allclose(predict(path, x), x * s + s, **F64)


def test_hard_sigmoid_defaults_and_hard_swish(tmp_path, rng) -> None:
    """HardSigmoid with ONNX's defaults (0.2, 0.5); x * HardSigmoid(x; 0.25, 0.375) is one HardSwishLayer;
    HardSwish is alpha 1/6, beta 1/2."""
    nodes = [node("HardSigmoid", ["x"], ["a"], name="hsig"),
             node("HardSigmoid", ["a"], ["b"], name="gate", alpha=0.25, beta=0.375),
             node("Mul", ["b", "a"], ["c"], name="hswish_made"),
             node("HardSwish", ["c"], ["y"], name="hswish")]
    path = write_model(tmp_path, nodes, SHAPE)
    net = load_onnx(path)
    assert [layer.kind for layer in net.layers[1:]] == ["hard_sigmoid", "hard_swish", "hard_swish"]
    assert (net.layer("hsig").alpha, net.layer("hsig").beta) == (0.2, 0.5)
    x = 4.0 * rng.standard_normal(SHAPE)
    a = hard_sigmoid(x, 0.2, 0.5)
    c = a * hard_sigmoid(a, 0.25, 0.375)
    np.testing.assert_allclose(net.predict(x, format="BCSS"), c * hard_sigmoid(c, 1.0 / 6.0, 0.5), **F64)


def test_gelu_and_erf(tmp_path, rng) -> None:
    nodes = [node("Gelu", ["x"], ["a"], name="exact"), node("Gelu", ["a"], ["b"], name="tanh", approximate="tanh"),
             node("Erf", ["b"], ["y"], name="erf")]
    path = write_model(tmp_path, nodes, SHAPE, opset=20)
    x = 2.0 * rng.standard_normal(SHAPE)
    a = 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    b = 0.5 * a * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (a + 0.044715 * a ** 3)))
    np.testing.assert_allclose(predict(path, x), erf(b), **F64)
    assert kinds(path) == ["gelu", "gelu", "erf"]


def test_gelu_with_an_unknown_approximation_is_malformed(tmp_path) -> None:
    path = write_model(tmp_path, [node("Gelu", ["x"], ["y"], name="g", approximate="fast")], SHAPE, opset=20)
    with pytest.raises(errors.FileFormatError, match="'none' or 'tanh'"):
        load_onnx(path)


# --- reductions, squeezes and pooling ----------------------------------------------------------------
@pytest.mark.parametrize("op, axes, keepdims", [("ReduceMean", [1], 1), ("ReduceMax", [1, -1], 1),
                                                ("ReduceMean", [2], 1), ("ReduceMax", [2, 3], 0)])
def test_reductions_over_any_observation_axes(op, axes, keepdims, tmp_path, rng) -> None:
    nodes = [node(op, ["x", "axes"], ["r"], name="r", keepdims=keepdims), node("Relu", ["r"], ["y"], name="relu")]
    path = write_model(tmp_path, nodes, SHAPE, [ints("axes", axes)])
    x = rng.standard_normal(SHAPE)
    reduce = np.mean if op == "ReduceMean" else np.max
    expected = np.maximum(reduce(x, axis=tuple(axes), keepdims=True), 0.0)
    np.testing.assert_allclose(predict(path, x).reshape(expected.shape), expected, **F64)
    kind = kinds(path)[0]
    assert kind == ("global_max_pooling2d" if axes == [2, 3] else "reduce")


def test_reduce_axes_as_attribute_before_opset_18(tmp_path, rng) -> None:
    path = write_model(tmp_path, [node("ReduceMean", ["x"], ["y"], name="r", axes=[1])], SHAPE, opset=13)
    x = rng.standard_normal(SHAPE)
    np.testing.assert_allclose(predict(path, x), x.mean(axis=1, keepdims=True), **F64)


def test_reduce_without_axes_as_a_no_op(tmp_path, rng) -> None:
    path = write_model(tmp_path, [node("ReduceMax", ["x"], ["r"], name="r", noop_with_empty_axes=1),
                                  node("Relu", ["r"], ["y"], name="relu")], SHAPE)
    assert kinds(path) == ["relu"]


def test_unsqueeze_pool_squeeze_is_one_dimensional_pooling(tmp_path, rng) -> None:
    """The dynamo exporter's nn.AdaptiveAvgPool1d(3) and nn.AdaptiveMaxPool1d(1) on (B, C, T)."""
    shape = (1, 3, 12)
    nodes = [node("Unsqueeze", ["x", "minus2"], ["u"], name="unsqueeze"),
             node("AveragePool", ["u"], ["p"], name="pool", kernel_shape=[1, 4], strides=[1, 4], pads=[0, 0, 0, 0]),
             node("Squeeze", ["p", "minus2"], ["s"], name="squeeze"),
             node("Unsqueeze", ["s", "minus2"], ["u2"], name="unsqueeze2"),
             node("ReduceMax", ["u2", "both"], ["m"], name="max", keepdims=1),
             node("Squeeze", ["m", "minus2"], ["y"], name="squeeze2")]
    path = write_model(tmp_path, nodes, shape, [ints("minus2", [-2]), ints("both", [-2, -1])])
    x = rng.standard_normal(shape)
    pooled = x.reshape(1, 3, 3, 4).mean(axis=3)
    np.testing.assert_allclose(predict(path, x).reshape(1, 3, 1), pooled.max(axis=2, keepdims=True), **F64)
    assert kinds(path) == ["average_pooling1d", "global_max_pooling1d"]


def test_squeezed_features_unsqueezed_back(tmp_path, rng) -> None:
    """ReduceMean keepdims 0 over space, Unsqueeze [2, 3]: the (B, C, 1, 1) gate of an SE block."""
    nodes = [node("ReduceMean", ["x", "space"], ["m"], name="mean", keepdims=0),
             node("Unsqueeze", ["m", "back"], ["u"], name="unsqueeze"),
             node("Mul", ["x", "u"], ["y"], name="gate")]
    path = write_model(tmp_path, nodes, SHAPE, [ints("space", [2, 3]), ints("back", [2, 3])])
    x = rng.standard_normal(SHAPE)
    np.testing.assert_allclose(predict(path, x), x * x.mean(axis=(2, 3), keepdims=True), **F64)


# --- splits, slices, shuffles ---------------------------------------------------------------------------
@pytest.mark.parametrize("opset, attributes, split, parts", [
    (18, {"num_outputs": 3}, None, [2, 2, 2]),
    (18, {"num_outputs": 4}, None, [2, 2, 2, 0]),
    (18, {}, [1, 3, 2], [1, 3, 2]),
    (13, {}, None, [3, 3]),
    (11, {"split": [4, 2]}, None, [4, 2]),
])
def test_split_along_channels(opset, attributes, split, parts, tmp_path, rng) -> None:
    """Each read output is a ChannelSliceLayer named <node>:<k>; the last of four parts is empty and unread."""
    outputs = [f"p{k}" for k in range(len(parts))]
    read = [name for name, size in zip(outputs, parts) if size]
    inputs = ["x", "split"] if split is not None else ["x"]
    nodes = [node("Split", inputs, outputs, name="split", axis=1, **attributes),
             node("Concat", read[::-1], ["y"], name="join", axis=1)]
    path = write_model(tmp_path, nodes, SHAPE, [ints("split", split)] if split is not None else [], opset=opset)
    x = rng.standard_normal(SHAPE)
    pieces = np.split(x, np.cumsum(parts)[:-1], axis=1)
    np.testing.assert_allclose(predict(path, x), np.concatenate([p for p in pieces if p.shape[1]][::-1], axis=1),
                               **F64)
    names = [layer.name for layer in load_onnx(path).layers if layer.kind == "channel_slice"]
    assert names == [f"split:{k}" for k, size in enumerate(parts) if size]


@pytest.mark.parametrize("starts, ends, axes, kind", [
    ([2], [5], [1], "channel_slice"),
    ([-3], [2 ** 62], [-3], "channel_slice"),            # x[:, -3:] with torch's huge end
    ([1, 0], [-1, 3], [2, 3], "cropping"),
    ([0], [6], [1], None),                              # the whole axis: nothing
])
def test_slice_of_channels_or_space(starts, ends, axes, kind, tmp_path, rng) -> None:
    nodes = [node("Slice", ["x", "starts", "ends", "axes"], ["s"], name="slice"), node("Relu", ["s"], ["y"], name="r")]
    path = write_model(tmp_path, nodes, SHAPE, [ints("starts", starts), ints("ends", ends), ints("axes", axes)])
    x = rng.standard_normal(SHAPE)
    index = [slice(None)] * 4
    for start, end, axis in zip(starts, ends, axes):
        index[axis] = slice(start, end)
    np.testing.assert_allclose(predict(path, x), np.maximum(x[tuple(index)], 0.0), **F64)
    assert kinds(path) == ([kind] if kind else []) + ["relu"]


def shuffle_nodes(groups: int, perm: list[int]) -> list:
    return [node("Reshape", ["x", "grouped"], ["g"], name="to_groups"),
            node("Transpose", ["g"], ["t"], name="swap", perm=perm),
            node("Reshape", ["t", "flat"], ["s"], name="shuffle"),
            node("Relu", ["s"], ["y"], name="relu")]


@pytest.mark.parametrize("groups", [2, 3])
def test_reshape_transpose_reshape_is_a_channel_shuffle(groups, tmp_path, rng) -> None:
    shapes = [ints("grouped", [1, groups, 6 // groups, 4, 5]), ints("flat", [0, -1, 4, 5])]
    path = write_model(tmp_path, shuffle_nodes(groups, [0, 2, 1, 3, 4]), SHAPE, shapes)
    net = load_onnx(path)
    assert [(layer.name, layer.kind) for layer in net.layers[1:]] == [("shuffle", "channel_shuffle"), ("relu", "relu")]
    assert net.layer("shuffle").groups == groups
    x = rng.standard_normal(SHAPE)
    shuffled = x.reshape(1, groups, 6 // groups, 4, 5).transpose(0, 2, 1, 3, 4).reshape(SHAPE)
    np.testing.assert_allclose(net.predict(x, format="BCSS"), np.maximum(shuffled, 0.0), **F64)


def test_a_reshape_into_groups_and_back_is_nothing(tmp_path, rng) -> None:
    nodes = [node("Reshape", ["x", "grouped"], ["g"], name="to_groups"), node("Reshape", ["g", "flat"], ["s"], name="back"),
             node("Relu", ["s"], ["y"], name="relu")]
    path = write_model(tmp_path, nodes, SHAPE, [ints("grouped", [1, 2, 3, 4, 5]), ints("flat", [1, 6, 4, 5])])
    assert kinds(path) == ["relu"]


# --- refused forms ----------------------------------------------------------------------------------------
REFUSED = {   # form: (nodes, initializers, opset, the op type and the reason the one error must give)
    "mul_of_different_ranks": ([node("GlobalAveragePool", ["x"], ["g"], name="gap"),
                                node("Flatten", ["g"], ["f"], name="flat"), node("Mul", ["f", "x"], ["y"], name="n")],
                               [], 18, "Mul (1 node): multiplies tensors of per-observation shapes"),
    "pow_by_a_half": ([node("Pow", ["x", "half"], ["y"], name="n")], [("half", np.array(0.5))], 18,
                      "Pow (1 node): Pow with exponent 0.5"),
    "reduce_over_batch": ([node("ReduceMean", ["x", "axes"], ["y"], name="n")], [ints("axes", [0, 1])], 18,
                          "ReduceMean (1 node): reduces axes [0, 1]"),
    "reduce_all_axes": ([node("ReduceMax", ["x"], ["y"], name="n")], [], 18,
                        "ReduceMax (1 node): reduces every axis"),
    "squeeze_without_axes": ([node("ReduceMean", ["x", "space"], ["m"], name="m"),
                              node("Squeeze", ["m"], ["y"], name="n")], [ints("space", [2, 3])], 18,
                             "Squeeze (1 node): Squeeze without axes"),
    "unsqueeze_before_channels": ([node("Unsqueeze", ["x", "axes"], ["u"], name="n"),
                                   node("Squeeze", ["u", "axes"], ["y"], name="s")], [ints("axes", [1])], 18,
                                  "Unsqueeze (1 node): inserts axes [1]"),
    "split_of_space": ([node("Split", ["x"], ["a", "b"], name="n", axis=2, num_outputs=2),
                        node("Add", ["a", "b"], ["y"], name="add")], [], 18, "Split (1 node): Split along axis 2"),
    "strided_slice": ([node("Slice", ["x", "s", "e", "a", "k"], ["y"], name="n")],
                      [ints("s", [0]), ints("e", [6]), ints("a", [1]), ints("k", [2])], 18,
                      "Slice (1 node): Slice with steps [2]"),
    "slice_channels_and_space": ([node("Slice", ["x", "s", "e", "a"], ["y"], name="n")],
                                 [ints("s", [1, 1]), ints("e", [3, 3]), ints("a", [1, 2])], 18,
                                 "Slice (1 node): slices the channel axis and spatial axes at once"),
    "grouped_view_read_by_relu": ([node("Reshape", ["x", "grouped"], ["g"], name="r"),
                                   node("Relu", ["g"], ["y"], name="n")],
                                  [ints("grouped", [1, 2, 3, 4, 5])], 18,
                                  "Relu (1 node): reads a tensor, which ONNX holds with per-observation shape "
                                  "(2, 3, 4, 5) (its channel axis reshaped into 2 groups)"),
    "groups_reshaped_elsewhere": ([node("Reshape", ["x", "grouped"], ["g"], name="r"),
                                   node("Transpose", ["g"], ["t"], name="t", perm=[0, 2, 1, 3, 4]),
                                   node("Reshape", ["t", "other"], ["y"], name="n")],
                                  [ints("grouped", [1, 2, 3, 4, 5]), ints("other", [1, 6, 20])], 18,
                                  "Reshape (1 node): Reshape from (1, 3, 2, 4, 5) to [1, 6, 20]"),
    "division_of_tensors": ([node("Div", ["x", "x"], ["y"], name="n")], [], 18,
                            "Div (1 node): Div of two tensors the network computes"),
}


@pytest.mark.parametrize("form", sorted(REFUSED))
def test_refused_forms_land_in_the_one_error(form, tmp_path) -> None:
    nodes, initializers, opset, line = REFUSED[form]
    path = write_model(tmp_path, nodes, SHAPE, initializers, opset=opset)
    with pytest.raises(errors.UnsupportedOperationError, match="cannot import 1 node") as info:
        load_onnx(path)
    assert line in str(info.value) and "node 'n'" in str(info.value)


def test_refused_forms_of_several_ops_are_grouped(tmp_path) -> None:
    """A Pow by 0.5 and an unknown Einsum on one branch, a refused Slice on another: one error lists all."""
    nodes = [node("Pow", ["x", "half"], ["p"], name="sqrt"),
             node("Einsum", ["p"], ["e"], name="einsum", equation="bchw->bchw"),
             node("Slice", ["x", "s", "e_", "a", "k"], ["q"], name="strided"),
             node("Add", ["e", "q"], ["y"], name="join")]
    initializers = [("half", np.array(0.5)), ints("s", [0]), ints("e_", [6]), ints("a", [1]), ints("k", [2])]
    with pytest.raises(errors.UnsupportedOperationError) as info:
        load_onnx(write_model(tmp_path, nodes, SHAPE, initializers))
    message = str(info.value)
    assert "cannot import 3 node(s) of the ONNX graph, of 3 operator type(s) (Pow, Einsum, Slice)" in message
    assert "'join'" not in message
