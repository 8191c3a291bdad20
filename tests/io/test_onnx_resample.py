"""ONNX Resize, Upsample and ConvTranspose against onnx's reference evaluator, and their refusals.

Graphs written with ``onnx.helper`` in float64 (input, weights, output), so the
reference evaluator (``onnx.reference.ReferenceEvaluator``, the ONNX operator
definitions in NumPy) and refcam agree to float64 rounding. Needs ``onnx`` only.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

import refcam.errors as errors  # noqa: E402
from refcam.io.onnx_import import load_onnx  # noqa: E402
from tests.tolerances import F64  # noqa: E402

FORMATS = {3: "BCT", 4: "BCSS", 5: "BCSSS"}
TRANSFORMS = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
SHAPE = (2, 3, 5, 4)


def write(tmp_path, nodes, input_shape, initializers=(), opset=19, name="model.onnx"):
    """A float64 one-input graph whose output is the last node's first output; floats stay float64
    except arrays named ``scales*`` (ONNX's Resize and Upsample scales are float32)."""
    def tensor(key, array):
        array = np.asarray(array)
        if array.dtype.kind == "f":
            array = array.astype(np.float32 if key.startswith("scales") else np.float64)
        return numpy_helper.from_array(array, key)

    graph = helper.make_graph(
        list(nodes), "resample", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, list(input_shape))],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.DOUBLE, None)],
        [tensor(key, array) for key, array in initializers])
    path = tmp_path / name
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]), path)
    return path


def reference_and_refcam(path, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    expected = ReferenceEvaluator(onnx.load(path)).run(None, {"x": x})[0]
    return expected, load_onnx(path).predict(x, format=FORMATS[x.ndim])


def assert_matches_reference(path, x: np.ndarray) -> None:
    expected, ours = reference_and_refcam(path, x)
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, **F64)


def resize_node(inputs, **attributes):
    return helper.make_node("Resize", ["x", *inputs], ["y"], name="resize", **attributes)


# --- Resize: every mode combination, scales and sizes ------------------------------------------
NEAREST_CASES = list(itertools.product(["nearest"], TRANSFORMS, NEAREST_MODES))
LINEAR_CASES = [("linear", transform, "round_prefer_floor") for transform in TRANSFORMS]


@pytest.mark.parametrize("operand", ["scales", "sizes"])
@pytest.mark.parametrize("mode, transform, nearest", NEAREST_CASES + LINEAR_CASES)
def test_resize_matches_the_reference(mode, transform, nearest, operand, tmp_path, rng) -> None:
    """(2, 3, 5, 4) up by 1.5 on H and down by 0.6 on W (scales: floor gives 7 x 2, and the transform
    uses the scales, not 7 / 5 and 2 / 4), or to sizes 7 x 3 and 7 x 1 (pytorch_half_pixel has a rule
    for an output of 1). align_corners divides by the output size less 1: the whole sizes of scales
    2 and 0.75 (the reference evaluator uses ``n s - 1``, the ONNX text and PyTorch the integer size)."""
    attributes = dict(mode=mode, coordinate_transformation_mode=transform, nearest_mode=nearest)
    if operand == "scales":
        nodes = [resize_node(["", "scales"], **attributes)]
        initializers = [("scales", np.array([1.0, 1.0, 2.0, 0.75] if transform == "align_corners"
                                            else [1.0, 1.0, 1.5, 0.6]))]
    else:
        nodes = [resize_node(["", "", "sizes"], **attributes)]
        initializers = [("sizes", np.array([2, 3, 7, 3 if transform != "pytorch_half_pixel" else 1]))]
    assert_matches_reference(write(tmp_path, nodes, SHAPE, initializers), rng.standard_normal(SHAPE))


@pytest.mark.parametrize("shape, scales", [((2, 3, 6), [1.0, 1.0, 2.5]), ((1, 2, 3, 4, 2), [1.0, 1.0, 2.0, 1.5, 3.0])])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_resize_of_sequences_and_volumes(shape, scales, mode, tmp_path, rng) -> None:
    nodes = [resize_node(["", "scales"], mode=mode)]
    path = write(tmp_path, nodes, shape, [("scales", np.array(scales))])
    assert_matches_reference(path, rng.standard_normal(shape))


def test_resize_forms_of_older_and_newer_opsets(tmp_path, rng) -> None:
    """opset 11 (roi an empty constant, scales empty next to sizes), 13 (omitted inputs), 18 (axes,
    keep_aspect_ratio_policy), 19 (half_pixel_symmetric with whole sizes)."""
    x = rng.standard_normal(SHAPE)
    empty = np.zeros(0)
    cases = [
        (11, [resize_node(["roi", "scales"], mode="linear")], [("roi", empty), ("scales", np.array([1, 1, 2.0, 3]))]),
        (11, [resize_node(["roi", "scales_empty", "sizes"], mode="nearest", nearest_mode="floor")],
         [("roi", empty), ("scales_empty", empty), ("sizes", np.array([2, 3, 9, 6]))]),
        (13, [resize_node(["", "", "sizes"], mode="linear", coordinate_transformation_mode="align_corners")],
         [("sizes", np.array([2, 3, 3, 7]))]),
        (18, [resize_node(["", "scales"], mode="linear", axes=[3, 2])], [("scales", np.array([2.0, 0.5]))]),
        (18, [resize_node(["", "", "sizes"], mode="nearest", axes=[2])], [("sizes", np.array([8]))]),
        (18, [resize_node(["", "", "sizes"], mode="linear", axes=[2, 3], keep_aspect_ratio_policy="not_larger")],
         [("sizes", np.array([10, 12]))]),
        (19, [resize_node(["", "", "sizes"], mode="linear", coordinate_transformation_mode="half_pixel_symmetric")],
         [("sizes", np.array([2, 3, 8, 6]))]),
    ]
    for k, (opset, nodes, initializers) in enumerate(cases):
        assert_matches_reference(write(tmp_path, nodes, SHAPE, initializers, opset=opset, name=f"m{k}.onnx"), x)


def test_upsample_and_opset_10_resize_are_asymmetric_and_round_down(tmp_path, rng) -> None:
    """Upsample (opset 7: scales attribute; 9: input) nearest against the reference's Upsample-9; linear
    Upsample-9 and Resize-10 against the reference's Resize-13 asymmetric linear (its Upsample is
    nearest-only)."""
    x = rng.standard_normal(SHAPE)
    scales = [1.0, 1.0, 2.0, 3.0]
    nearest7 = write(tmp_path, [helper.make_node("Upsample", ["x"], ["y"], scales=scales)], SHAPE, opset=7,
                     name="u7.onnx")
    nearest9 = write(tmp_path, [helper.make_node("Upsample", ["x", "scales"], ["y"])], SHAPE,
                     [("scales", np.array(scales))], opset=9, name="u9.onnx")
    assert_matches_reference(nearest9, x)
    expected = ReferenceEvaluator(onnx.load(nearest9)).run(None, {"x": x})[0]    # it has no Upsample-7
    np.testing.assert_allclose(load_onnx(nearest7).predict(x, format="BCSS"), expected, **F64)
    linear_scales = [("scales", np.array([1.0, 1.0, 2.5, 1.5]))]
    linear9 = write(tmp_path, [helper.make_node("Upsample", ["x", "scales"], ["y"], mode="linear")], SHAPE,
                    linear_scales, opset=9, name="l9.onnx")
    linear10 = write(tmp_path, [helper.make_node("Resize", ["x", "scales"], ["y"], mode="linear")], SHAPE,
                     linear_scales, opset=10, name="l10.onnx")
    twin = write(tmp_path, [resize_node(["", "scales"], mode="linear", coordinate_transformation_mode="asymmetric")],
                 SHAPE, linear_scales, opset=13, name="twin.onnx")
    expected = ReferenceEvaluator(onnx.load(twin)).run(None, {"x": x})[0]
    for path in (linear9, linear10):
        np.testing.assert_allclose(load_onnx(path).predict(x, format="BCSS"), expected, **F64)


# --- ConvTranspose ----------------------------------------------------------------------------
CONV_TRANSPOSE_CASES = {   # name: (input shape, weight shape (C, F, *k), attributes)
    "pads": ((2, 3, 4, 5), (3, 4, 3, 3), dict(strides=[2, 2], pads=[1, 0, 1, 2])),
    "output_padding": ((2, 3, 4, 5), (3, 2, 3, 2), dict(strides=[2, 3], pads=[1, 1, 1, 0], output_padding=[1, 2])),
    "dilated": ((1, 2, 5, 4), (2, 3, 3, 3), dict(dilations=[2, 1], pads=[2, 1, 0, 1])),
    "same_upper": ((1, 2, 4, 5), (2, 3, 3, 4), dict(strides=[2, 2], auto_pad="SAME_UPPER")),
    "same_lower": ((1, 2, 4, 5), (2, 3, 3, 4), dict(strides=[2, 2], auto_pad="SAME_LOWER")),
    "valid": ((1, 2, 4, 5), (2, 3, 2, 2), dict(strides=[2, 2], auto_pad="VALID")),
    "1d": ((2, 3, 7), (3, 2, 4), dict(strides=[3], pads=[2, 1], output_padding=[1])),
    "3d": ((1, 2, 3, 2, 3), (2, 2, 2, 3, 2), dict(strides=[2, 1, 2], pads=[0, 1, 1, 1, 0, 0])),
}


@pytest.mark.parametrize("case", CONV_TRANSPOSE_CASES)
@pytest.mark.parametrize("with_bias", [True, False])
def test_conv_transpose_matches_the_reference(case, with_bias, tmp_path, rng) -> None:
    input_shape, weight_shape, attributes = CONV_TRANSPOSE_CASES[case]
    inputs = ["x", "w"] + (["b"] if with_bias else [])
    initializers = [("w", rng.standard_normal(weight_shape)), ("b", rng.standard_normal(weight_shape[1]))]
    node = helper.make_node("ConvTranspose", inputs, ["y"], name="deconv", **attributes)
    path = write(tmp_path, [node], input_shape, initializers[:len(inputs) - 1])
    assert_matches_reference(path, rng.standard_normal(input_shape))


def test_conv_transpose_output_shape_with_an_even_total_padding(tmp_path, rng) -> None:
    """output_shape 7 x 9 of a 4 x 5 input, stride 2, kernel 3 (full output 9 x 11): total padding 2 on
    each axis, split 1 + 1 as the ONNX definition says (the reference evaluator crops both at the end),
    so the expected output is the reference's for pads [1, 1, 1, 1]."""
    weight = rng.standard_normal((2, 3, 3, 3))
    shaped = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], output_shape=[7, 9])
    padded = helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2, 2], pads=[1, 1, 1, 1])
    x = rng.standard_normal((1, 2, 4, 5))
    expected = ReferenceEvaluator(onnx.load(write(tmp_path, [padded], x.shape, [("w", weight)], name="p.onnx")))
    ours = load_onnx(write(tmp_path, [shaped], x.shape, [("w", weight)], name="s.onnx")).predict(x, format="BCSS")
    np.testing.assert_allclose(ours, expected.run(None, {"x": x})[0], **F64)


# --- MatMul on a channels-last tensor; Reshape + Gather as_strided -------------------------------
@pytest.mark.parametrize("shape, to_last, to_first", [((2, 3, 7), [0, 2, 1], [0, 2, 1]),
                                                       ((2, 3, 4, 5), [0, 2, 3, 1], [0, 3, 1, 2]),
                                                       ((2, 3, 4, 2, 3), [0, 3, 2, 4, 1], [0, 4, 2, 1, 3])])
@pytest.mark.parametrize("bias_first", [False, True])
def test_matmul_on_a_channels_last_tensor_is_a_pointwise_convolution(shape, to_last, to_first, bias_first,
                                                                       tmp_path, rng) -> None:
    """Transpose (channels last) -> MatMul (C, 5) -> Add bias (either order) -> Relu -> Transpose back."""
    add_inputs = ["b", "m"] if bias_first else ["m", "b"]
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=to_last),
             helper.make_node("MatMul", ["t", "w"], ["m"], name="linear"),
             helper.make_node("Add", add_inputs, ["a"], name="bias"),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Transpose", ["r"], ["y"], perm=to_first)]
    initializers = [("w", rng.standard_normal((3, 5))), ("b", rng.standard_normal(5))]
    path = write(tmp_path, nodes, shape, initializers)
    assert_matches_reference(path, rng.standard_normal(shape))
    layers = load_onnx(path).layers
    assert layers[1].kind == f"convolution{len(shape) - 2}d" and layers[1].filter_size == (1,) * (len(shape) - 2)
    assert [layer.name for layer in layers[1:]] == ["linear", "Relu_3"]


def test_matmul_bias_that_is_no_vector_stays_a_scaling(tmp_path, rng) -> None:
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("MatMul", ["t", "w"], ["m"], name="linear"),
             helper.make_node("Add", ["m", "b"], ["a"], name="offset"),
             helper.make_node("Transpose", ["a"], ["y"], perm=[0, 3, 1, 2])]
    path = write(tmp_path, nodes, SHAPE, [("w", rng.standard_normal((3, 2))), ("b", rng.standard_normal((4, 2)))])
    assert_matches_reference(path, rng.standard_normal(SHAPE))
    assert [layer.kind for layer in load_onnx(path).layers[1:]] == ["convolution2d", "scaling"]


def test_matmul_over_a_spatial_axis_is_refused(tmp_path, rng) -> None:
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="over_width")
    with pytest.raises(errors.UnsupportedOperationError, match="MatMul of a rank-4 tensor"):
        load_onnx(write(tmp_path, [node], SHAPE, [("w", rng.standard_normal((4, 3)))]))


@pytest.mark.parametrize("indices, imported", [(np.arange(3), True), (np.array([1, 0, 2]), False)])
def test_reshape_and_gather_that_rebuild_the_tensor_are_the_tensor(indices, imported, tmp_path, rng) -> None:
    """The dynamo exporter's as_strided: ReduceMean -> Reshape [-1] -> Gather(indices (1, 3, 1, 1)) -> Flatten;
    indices 0, 1, 2 change nothing, a permutation is refused (the Reshape to 1-D)."""
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["p"], keepdims=1),
             helper.make_node("Reshape", ["p", "flat"], ["r"], name="reshape"),
             helper.make_node("Gather", ["r", "indices"], ["g"], name="gather", axis=0),
             helper.make_node("Flatten", ["g"], ["y"])]
    initializers = [("axes", np.array([-1, -2])), ("flat", np.array([-1])), ("indices", indices.reshape(1, 3, 1, 1))]
    path = write(tmp_path, nodes, (1, 3, 4, 4), initializers)
    if imported:
        assert_matches_reference(path, rng.standard_normal((1, 3, 4, 4)))
        assert [layer.kind for layer in load_onnx(path).layers[1:]] == ["global_average_pooling2d", "flatten"]
    else:
        with pytest.raises(errors.UnsupportedOperationError, match="Reshape from"):
            load_onnx(path)


# --- refusals: one error lists them all ----------------------------------------------------------
def test_refused_resample_forms_are_listed_in_one_error(tmp_path) -> None:
    shape = (1, 2, 4, 4)
    scales = ("scales", np.array([1.0, 1.0, 2.0, 2.0]))
    node = helper.make_node
    nodes = [
        node("Resize", ["x", "", "scales"], ["a"], name="cubic", mode="cubic"),
        node("Resize", ["x", "", "scales"], ["b"], name="antialias", mode="linear", antialias=1),
        node("Resize", ["x", "roi", "scales"], ["c"], name="crop", mode="linear",
             coordinate_transformation_mode="tf_crop_and_resize"),
        node("Resize", ["x", "", "scales_channel"], ["d"], name="channels", mode="nearest"),
        node("Resize", ["x", "", "scales_odd"], ["e"], name="symmetric", mode="linear",
             coordinate_transformation_mode="half_pixel_symmetric"),
        node("ConvTranspose", ["x", "w_group"], ["f"], name="grouped", group=2),
        node("ConvTranspose", ["x", "w"], ["g"], name="odd_shape", strides=[2, 2], output_shape=[8, 8]),
        node("Relu", ["x"], ["r"], name="relu"),
        node("Resize", ["x", "", "", "r_shape"], ["h"], name="computed_sizes", mode="nearest"),
        node("Concat", list("abcdefgh"), ["y"], name="join", axis=1),
    ]
    initializers = [scales, ("roi", np.array([0.0, 0, 0, 0, 1, 1, 1, 1])), ("scales_channel", np.array([1.0, 2, 2, 2])),
                    ("scales_odd", np.array([1.0, 1.0, 1.3, 1.3])), ("w_group", np.ones((2, 1, 3, 3))),
                    ("w", np.ones((2, 2, 3, 3)))]
    # the sizes of the last Resize are the network tensor r itself (float, so not even valid sizes: never read)
    nodes[-2] = node("Resize", ["x", "", "", "r"], ["h"], name="computed_sizes", mode="nearest")
    path = write(tmp_path, nodes, shape, initializers, opset=19)
    with pytest.raises(errors.UnsupportedOperationError) as info:
        load_onnx(path)
    message = str(info.value)
    assert "cannot import 8 node(s)" in message
    for reason in ("cubic interpolation (mode cubic, bicubic in PyTorch)", "antialias=1",
                   "coordinate_transformation_mode tf_crop_and_resize",
                   "scales [1.0, 2.0] for the batch and channel axes",
                   "half_pixel_symmetric with scales", "grouped transposed convolution (group 2)",
                   "odd total padding", "is computed from the values of the network"):
        assert reason in message, reason
    assert "'join'" not in message


def test_downsampling_nearest_upsample_is_refused(tmp_path) -> None:
    node = helper.make_node("Upsample", ["x", "scales"], ["y"], name="down")
    path = write(tmp_path, [node], SHAPE, [("scales", np.array([1.0, 1.0, 0.5, 1.0]))], opset=9)
    with pytest.raises(errors.UnsupportedOperationError, match="ONNX Runtime rounds up"):
        load_onnx(path)


@pytest.mark.parametrize("attributes, initializers, error, match", [
    (dict(), [("scales", np.array([1.0, 2.0]))], errors.FileFormatError, "should hold 4 numbers"),
    (dict(), [("scales", np.array([1.0, 1.0, -2.0, 1.0]))], errors.FileFormatError, "must be positive"),
    (dict(mode="bicubic"), [("scales", np.array([1.0, 1.0, 2.0, 2.0]))], errors.FileFormatError, "ONNX's modes"),
])
def test_malformed_resize_is_a_file_format_error(attributes, initializers, error, match, tmp_path) -> None:
    path = write(tmp_path, [resize_node(["", "scales"], **attributes)], SHAPE, initializers)
    with pytest.raises(error, match=match):
        load_onnx(path)


def test_conv_transpose_weight_of_the_wrong_shape(tmp_path, rng) -> None:
    node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], name="deconv")
    path = write(tmp_path, [node], SHAPE, [("w", rng.standard_normal((4, 2, 3, 3)))])
    with pytest.raises(errors.WeightShapeError, match=r"so ONNX needs \(3, F, 3, 3\)"):
        load_onnx(path)
