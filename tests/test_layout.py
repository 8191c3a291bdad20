"""refcam.layout: format strings, conversion to (B, C, *S), dtype and value checks, and back."""
from __future__ import annotations

import numpy as np
import pytest

from refcam.backend import gpu_available
from refcam.errors import (FormatStringError, InputDtypeError, InputError, NonFiniteInputError,
                           ShapeError)
from refcam.layers.input import Image3dInputLayer, ImageInputLayer, SequenceInputLayer
from refcam.layout import Layout, parse_format, to_internal

# distinct sizes so that a swapped axis cannot go unnoticed
H, W, D, C, B, T = 4, 5, 6, 3, 2, 7


def image_input() -> ImageInputLayer:
    return ImageInputLayer(name="in", input_size=(H, W, C), normalization="none")


def volume_input() -> Image3dInputLayer:
    return Image3dInputLayer(name="in", input_size=(H, W, D, C), normalization="none")


def sequence_input(min_length: int = 1) -> SequenceInputLayer:
    return SequenceInputLayer(name="in", input_size=C, min_length=min_length)


# Each G7 format: the input layer, the caller's shape, and the caller's array
# written from the internal (B, C, *S) array by hand (independent of layout.py).
FORMAT_CASES = {
    "SSC": (image_input, lambda a: a[0].transpose(1, 2, 0), (1, C, H, W)),
    "CSS": (image_input, lambda a: a[0], (1, C, H, W)),
    "SSCB": (image_input, lambda a: a.transpose(2, 3, 1, 0), (B, C, H, W)),
    "BCSS": (image_input, lambda a: a, (B, C, H, W)),
    "SSSC": (volume_input, lambda a: a[0].transpose(1, 2, 3, 0), (1, C, H, W, D)),
    "CT": (sequence_input, lambda a: a[0], (1, C, T)),
    "CBT": (sequence_input, lambda a: a.transpose(1, 0, 2), (B, C, T)),
    "TCB": (sequence_input, lambda a: a.transpose(2, 1, 0), (B, C, T)),
}


@pytest.mark.parametrize("fmt", list(FORMAT_CASES))
def test_every_format_converts_to_internal_and_back(fmt, rng):
    make_layer, to_caller, internal_shape = FORMAT_CASES[fmt]
    expected = rng.standard_normal(internal_shape)
    x = to_caller(expected)
    internal, layout = to_internal(x, make_layer(), format=fmt.lower())
    assert layout.format == fmt
    assert internal.shape == internal_shape and internal.flags.c_contiguous
    np.testing.assert_array_equal(internal, expected)
    assert layout.batch_size == internal_shape[0] and layout.channels == C
    assert layout.spatial_sizes == internal_shape[2:]
    np.testing.assert_array_equal(layout.from_internal(internal), x)


@pytest.mark.parametrize("layer, fmt", [(image_input, "SSC"), (volume_input, "SSSC"),
                                        (sequence_input, "CT")])
def test_default_format_comes_from_the_input_layer(layer, fmt, rng):
    _, to_caller, internal_shape = FORMAT_CASES[fmt]
    expected = rng.standard_normal(internal_shape)
    internal, layout = to_internal(to_caller(expected), layer())
    assert layout.format == fmt
    np.testing.assert_array_equal(internal, expected)


def test_trailing_singleton_axes_may_be_left_out(rng):
    gray = ImageInputLayer(name="in", input_size=(H, W, 1), normalization="none")
    x = rng.standard_normal((H, W))
    internal, layout = to_internal(x, gray)
    assert layout.shape == (H, W, 1) and internal.shape == (1, 1, H, W)
    np.testing.assert_array_equal(internal[0, 0], x)


def test_sequences_of_any_length_from_min_length(rng):
    layer = sequence_input(min_length=3)
    for steps in (3, 11):
        internal, layout = to_internal(rng.standard_normal((C, steps)), layer)
        assert internal.shape == (1, C, steps) and layout.spatial_sizes == (steps,)
    with pytest.raises(InputError, match=r"2 time steps \(T\).*MinLength = 3"):
        to_internal(rng.standard_normal((C, 2)), layer)


DTYPES = ["float32", "float64", "float16", "int8", "int16", "int32", "int64",
          "uint8", "uint16", "uint32", "uint64"]


@pytest.mark.parametrize("compute", ["float64", "float32"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_real_dtype_converts_to_the_compute_dtype(dtype, compute, rng):
    values = rng.integers(0, 100, size=(H, W, C))
    x = values.astype(dtype)
    internal, _ = to_internal(x, image_input(), dtype=compute)
    assert internal.dtype == np.dtype(compute)
    np.testing.assert_array_equal(internal[0], values.transpose(2, 0, 1).astype(compute))


def test_nested_lists_are_accepted():
    internal, _ = to_internal([[1, 2, 3]], sequence_input(), format="TC")
    np.testing.assert_array_equal(internal, [[[1.0], [2.0], [3.0]]])


@pytest.mark.parametrize("x, dtype_name", [
    (np.zeros((H, W, C), dtype=bool), "bool"),
    (np.zeros((H, W, C), dtype=np.complex128), "complex128"),
    (np.zeros((H, W, C), dtype=np.complex64), "complex64"),
    (np.zeros((H, W, C), dtype=object), "object"),
    (np.full((H, W, C), "a"), "<U1"),
])
def test_non_real_dtypes_are_refused(x, dtype_name):
    with pytest.raises(InputDtypeError, match=f"dtype {dtype_name}; refcam accepts real numbers"):
        to_internal(x, image_input())


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_are_refused_with_count_and_first_position(bad, rng):
    x = rng.standard_normal((H, W, C))
    x[1, 2, 0] = bad
    x[3, 4, 2] = bad
    with pytest.raises(NonFiniteInputError, match=r"2 NaN/Inf value\(s\) out of 60; the first is at "
                                                  r"index \[1, 2, 0\] \(format 'SSC'\)"):
        to_internal(x, image_input())


def test_overflow_to_inf_in_float32_is_refused(rng):
    x = rng.standard_normal((H, W, C))
    x[0, 1, 2] = 1e300
    to_internal(x, image_input(), dtype="float64")
    with pytest.raises(NonFiniteInputError, match=r"index \[0, 1, 2\].*1e\+300 in float64, beyond "
                                                  r"the range of float32"):
        to_internal(x, image_input(), dtype="float32")


@pytest.mark.parametrize("shape, fmt, message", [
    ((H, W, C + 1), "SSC", r"has 4 channels \(C\) but the input layer 'in' expects 3"),
    ((W, H, C), "SSC", r"spatial size 5x4 \(SS\) but the input layer 'in' expects 4x5"),
    ((H, W, C, B), "SSC", r"4 dimensions \(shape \(4, 5, 3, 2\)\) but format 'SSC' names 3.*'SSCB'"),
    ((H, W, C, 0), "SSCB", r"the input is empty"),
    ((C, H, W), "SSC", r"has 5 channels"),
])
def test_wrong_sizes_are_refused(shape, fmt, message):
    with pytest.raises(InputError, match=message):
        to_internal(np.zeros(shape), image_input(), format=fmt)


@pytest.mark.parametrize("fmt, message", [
    ("SSX", r"format 'SSX' has the letter\(s\) 'X'"),
    ("SSCC", r"format 'SSCC' has more than one C"),
    ("sbcb", r"format 'sbcb' has more than one B"),
    ("TCT", r"more than one T"),
    ("", r"non-empty string"),
    (3, r"non-empty string.*got 3"),
])
def test_bad_format_strings_are_refused(fmt, message):
    with pytest.raises(FormatStringError, match=message):
        parse_format(fmt)
    with pytest.raises(FormatStringError, match=message):
        to_internal(np.zeros((H, W, C)), image_input(), format=fmt)


@pytest.mark.parametrize("fmt, message", [
    ("SSSC", r"3 spatial/time axes \(S, T\), but the input layer 'in' \(Image Input\) takes 2"),
    ("SS", r"format 'SS' has no channel axis C"),
    ("SCB", r"1 spatial/time axes"),
])
def test_formats_that_do_not_fit_the_input_layer_are_refused(fmt, message):
    with pytest.raises(FormatStringError, match=message):
        to_internal(np.zeros((H, W, C)), image_input(), format=fmt)


def test_parse_format_normalises_case():
    assert parse_format("sScb") == "SSCB"
    assert parse_format("cbt") == "CBT"


@pytest.mark.parametrize("fmt, internal_shape, caller_shape", [
    ("SSC", (1, 10, 2, 3), (2, 3, 10)),
    ("SSCB", (B, 10, 2, 3), (2, 3, 10, B)),
    ("BCSS", (B, 10, 2, 3), (B, 10, 2, 3)),
    ("CBT", (B, 10, 9), (10, B, 9)),
    ("TCB", (B, 10, 9), (9, 10, B)),
])
def test_from_internal_puts_spatial_results_in_the_callers_letters(fmt, internal_shape, caller_shape, rng):
    layout = Layout(fmt, (1,) * len(fmt))
    y = rng.standard_normal(internal_shape)
    back = layout.from_internal(y)
    assert back.shape == caller_shape
    channel = fmt.index("C")
    first_observation = back if "B" not in fmt else np.take(back, 0, axis=fmt.index("B"))
    channel_after_b = channel - ("B" in fmt[:channel])
    np.testing.assert_array_equal(np.moveaxis(first_observation, channel_after_b, 0), y[0])


def test_from_internal_keeps_scores_as_batch_by_classes(rng):
    scores = rng.standard_normal((B, 10))
    assert Layout("SSCB", (H, W, C, B)).from_internal(scores) is scores
    pooled = scores.reshape(B, 10, 1, 1)
    np.testing.assert_array_equal(Layout("SSCB", (H, W, C, B)).from_internal(pooled), scores)
    with pytest.raises(ShapeError, match=r"1 spatial axes, the input 2"):
        Layout("SSC", (H, W, C)).from_internal(rng.standard_normal((1, 10, 4)))


@pytest.mark.parametrize("fmt", ["SSC", "BCSS"])
def test_result_never_aliases_the_callers_array(fmt, rng):
    x = rng.standard_normal((H, W, C) if fmt == "SSC" else (B, C, H, W))
    before = x.copy()
    internal, _ = to_internal(x, image_input(), format=fmt)
    internal[...] = 0.0
    np.testing.assert_array_equal(x, before)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a GPU")
def test_cupy_arrays_stay_on_the_gpu(rng):
    import cupy
    x = rng.standard_normal((H, W, C, B))
    internal, layout = to_internal(cupy.asarray(x), image_input(), format="SSCB", dtype="float32")
    assert isinstance(internal, cupy.ndarray) and internal.dtype == np.float32
    np.testing.assert_allclose(internal.get(), x.transpose(3, 2, 0, 1).astype(np.float32))
    assert isinstance(layout.from_internal(internal), cupy.ndarray)
    bad = cupy.asarray(x)
    bad[0, 0, 0, 0] = cupy.nan
    with pytest.raises(NonFiniteInputError, match=r"index \[0, 0, 0, 0\]"):
        to_internal(bad, image_input(), format="SSCB")


# --- the map side (Grad-CAM) ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt, shape, labels, stacked, expected_shape", [
    ("SSC", (H, W, C), 1, False, (H, W)),
    ("CSS", (C, H, W), 3, True, (H, W, 3)),
    ("SSCB", (H, W, C, B), 2, True, (H, W, 2, B)),
    ("BCSS", (B, C, H, W), 1, False, (H, W, B)),
    ("SSSC", (H, W, D, C), 1, False, (H, W, D)),
    ("CT", (C, T), 1, False, (1, T)),
    ("CBT", (C, B, T), 2, True, (1, T, 2, B)),
])
def test_maps_come_back_spatial_first_then_labels_then_batch(fmt, shape, labels, stacked, expected_shape, rng):
    layout = Layout(fmt, shape)
    spatial = layout.spatial_sizes
    maps = rng.standard_normal((labels, layout.batch_size, *spatial))
    out = layout.map_from_internal(maps, stacked=stacked)
    assert out.shape == expected_shape
    full = out.reshape((*spatial, labels, layout.batch_size))  # put back any dropped size-1 axes
    for k in range(labels):
        for b in range(layout.batch_size):
            np.testing.assert_array_equal(full[..., k, b], maps[k, b])
    for_resize = layout.map_for_resize(maps)
    assert for_resize.shape == (*spatial, labels * layout.batch_size)
    np.testing.assert_array_equal(for_resize[..., (labels - 1) * layout.batch_size], maps[-1, 0])
    assert layout.map_resize_size() == spatial
    np.testing.assert_array_equal(layout.map_from_resized(for_resize, stacked=stacked), out)


def test_maps_from_resized_take_the_resized_size(rng):
    layout = Layout("SSCB", (H, W, C, B))
    resized = rng.standard_normal((8, 9, 2 * B))  # (*S', K*B) with K = 2
    out = layout.map_from_resized(resized, stacked=True)
    assert out.shape == (8, 9, 2, B)
    np.testing.assert_array_equal(out[:, :, 1, 0], resized[:, :, B])


def test_maps_with_several_labels_must_be_stacked(rng):
    with pytest.raises(ShapeError, match=r"cannot drop their label axis"):
        Layout("SSC", (H, W, C)).map_from_internal(rng.standard_normal((2, 1, H, W)), stacked=False)


def test_masks_are_taken_in_matlab_order(rng):
    layout = Layout("CSS", (C, H, W))
    mask = rng.random((H, W)) > 0.5
    assert layout.mask_to_internal(mask, (H, W)) is mask
    row = rng.random((1, T)) > 0.5
    np.testing.assert_array_equal(Layout("CT", (C, T)).mask_to_internal(row, (T,)), row[0])
    with pytest.raises(InputError, match=r"mask has shape \(5, 4\) but .* spatial size 4x5"):
        layout.mask_to_internal(mask.T, (H, W))
