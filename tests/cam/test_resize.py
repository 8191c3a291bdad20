"""refcam.cam.resize against its loop twin, closed forms, hand-worked numbers and PyTorch."""
from __future__ import annotations

import doctest
import math
from dataclasses import dataclass

import numpy as np
import pytest

from refcam.backend import gpu_available
from refcam.cam import resize as resize_module
from refcam.cam.resize import (cast_like_matlab, imresize, imresize3, output_geometry, rescale,
                               resize_along_axis, resize_map, resize_weights)
from refcam.errors import InputDtypeError, InputError, ShapeError
from tests.cam.naive_resize import naive_contributions, naive_resize, naive_to_class
from tests.tolerances import CROSS, F32, F64

DTYPES = (np.float64, np.float32, np.uint8, np.int16)
METHODS_2D = ("bicubic", "bilinear", "nearest")


def _image(rng: np.random.Generator, shape: tuple[int, ...], dtype) -> np.ndarray:
    """Random data spanning the dtype's useful range (integers saturate under bicubic)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    low, high = (0, 256) if dtype == np.uint8 else (-300, 300)
    return rng.integers(max(low, info.min), min(high, int(info.max) + 1), shape).astype(dtype)


def _assert_same(actual: np.ndarray, expected: np.ndarray) -> None:
    """Integers exactly; floats to the dtype's tolerance."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    if actual.dtype.kind in "iu":
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, **(F32 if actual.dtype == np.float32 else F64))


@dataclass(frozen=True)
class Case:
    """One random resize: input, target (sizes or a scale factor) and options."""

    a: np.ndarray
    output_size: object
    method: str
    antialiasing: bool | None
    boundary: str


def _random_case(seed: int, n_dims: int, methods: tuple[str, ...]) -> Case:
    rng = np.random.default_rng(seed)
    spatial = tuple(int(n) for n in rng.integers(1, 9 if n_dims == 2 else 6, n_dims))
    trailing = () if seed % 3 == 0 else (int(rng.integers(1, 4)),)
    a = _image(rng, spatial + trailing, DTYPES[seed % len(DTYPES)])
    if seed % 4 == 1:  # one non-integer scale factor for every axis
        output_size = float(rng.choice([0.35, 0.6, 1.3, 2.5]))
    else:  # independent sizes: shrink on some axes, enlarge on others, odd and even
        output_size = tuple(int(n) for n in rng.integers(1, 12 if n_dims == 2 else 7, n_dims))
    antialiasing = (None, True, False)[seed % 3]
    return Case(a, output_size, methods[seed % len(methods)], antialiasing,
                "clamp" if seed % 5 == 4 else "mirror")


@pytest.mark.parametrize("seed", range(30))
def test_imresize_matches_loop_twin(seed):
    case = _random_case(seed, 2, METHODS_2D)
    actual = imresize(case.a, case.output_size, case.method, case.antialiasing, boundary=case.boundary)
    expected = naive_resize(case.a, 2, case.output_size, case.method, case.antialiasing, case.boundary)
    _assert_same(actual, expected)


@pytest.mark.parametrize("seed", range(12))
def test_imresize3_matches_loop_twin(seed):
    case = _random_case(seed, 3, ("cubic", "linear", "nearest"))
    actual = imresize3(case.a, case.output_size, case.method, case.antialiasing, boundary=case.boundary)
    expected = naive_resize(case.a, 3, case.output_size, case.method, case.antialiasing, case.boundary)
    _assert_same(actual, expected)


@pytest.mark.parametrize("n_in, n_out", [(5, 12), (12, 5), (7, 3), (1, 4), (2, 4), (9, 9)])
@pytest.mark.parametrize("method", ["bicubic", "bilinear", "nearest"])
@pytest.mark.parametrize("antialiasing", [True, False])
def test_weights_match_loop_twin_and_sum_to_one(n_in, n_out, method, antialiasing):
    scale = n_out / n_in
    weights, indices = resize_weights(n_in, n_out, scale, method, antialiasing)
    naive_w, naive_i = naive_contributions(n_in, n_out, scale, method, antialiasing, "mirror")
    np.testing.assert_allclose(weights, np.array(naive_w), **F64)
    np.testing.assert_array_equal(indices, np.array(naive_i))
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, **F64)
    assert indices.min() >= 0 and indices.max() < n_in
    assert np.all(np.any(weights != 0.0, axis=0)), "an all-zero tap column was kept"


# --- closed forms -------------------------------------------------------------------
@pytest.mark.parametrize("method", ["bicubic", "bilinear", "nearest", "box", "triangle"])
@pytest.mark.parametrize("boundary", ["mirror", "clamp"])
@pytest.mark.parametrize("output_size", [(11, 3), (2, 9), 0.45, 2.7])
def test_constant_image_stays_constant_including_borders(method, boundary, output_size):
    a = np.full((6, 5, 2), 3.7)
    out = imresize(a, output_size, method, boundary=boundary)
    np.testing.assert_allclose(out, 3.7, **F64)
    out_u8 = imresize(np.full((6, 5), 200, dtype=np.uint8), output_size, method, boundary=boundary)
    np.testing.assert_array_equal(out_u8, 200)


def test_nearest_doubling_duplicates_pixels_and_halving_picks_every_second(rng):
    a = rng.standard_normal((3, 4, 2))
    np.testing.assert_array_equal(imresize(a, 2, "nearest"), a.repeat(2, axis=0).repeat(2, axis=1))
    # halving: u = 2x - 0.5, floor(u + 0.5) = 2x (1-based) -> 0-based pixels 1, 3, ...
    b = rng.standard_normal((6, 8))
    np.testing.assert_array_equal(imresize(b, (3, 4), "nearest"), b[1::2, 1::2])
    volume = rng.standard_normal((2, 3, 2))
    np.testing.assert_array_equal(imresize3(volume, 2, "nearest"),
                                  volume.repeat(2, 0).repeat(2, 1).repeat(2, 2))


def _input_coordinate(n_in: int, n_out: int) -> np.ndarray:
    """MATLAB's u (1-based) of every output pixel."""
    scale = n_out / n_in
    return np.arange(1, n_out + 1) / scale + 0.5 * (1 - 1 / scale)


def _interior(n_in: int, n_out: int, width: float) -> np.ndarray:
    """Outputs whose every nonzero tap lies inside the input (no boundary rule involved)."""
    scale = n_out / n_in
    half = (width / scale if scale < 1 else width) / 2
    u = _input_coordinate(n_in, n_out)
    return (u - half > 0) & (u + half < n_in + 1)


def test_bicubic_reproduces_a_linear_ramp_away_from_the_border():
    rows, cols, out_rows, out_cols = 7, 6, 17, 13  # non-integer scales 17/7, 13/6
    i, j = np.meshgrid(np.arange(1, rows + 1), np.arange(1, cols + 1), indexing="ij")
    ramp = 2.0 * i - 3.0 * j + 1.0
    out = imresize(ramp, (out_rows, out_cols))
    u_r, u_c = _input_coordinate(rows, out_rows), _input_coordinate(cols, out_cols)
    exact = 2.0 * u_r[:, None] - 3.0 * u_c[None, :] + 1.0
    inside = np.ix_(_interior(rows, out_rows, 4.0), _interior(cols, out_cols, 4.0))
    np.testing.assert_allclose(out[inside], exact[inside], **F64)
    assert not np.allclose(out, exact), "the border is not linear under mirroring (see below)"
    # Keys' a = -0.5 kernel also reproduces quadratics
    squares = (np.arange(1.0, rows + 1) ** 2)[:, None]
    inside_rows = _interior(rows, out_rows, 4.0)
    np.testing.assert_allclose(imresize(squares, (out_rows, 1))[inside_rows, 0], u_r[inside_rows] ** 2,
                               **F64)


def test_ramp_at_the_border_under_mirror_and_clamp():
    """2x bicubic of 1, 2, 3, 4 (docs/resize.md works these out).

    First output: u = 0.75, 1-based taps -1, 0, 1, 2 with Keys weights
    -3/128, 29/128, 111/128, -9/128. The taps -1 and 0 read pixels 2 and 1 under
    mirroring and 1 and 1 under clamping: mirror 0.90625, clamp 0.9296875; the
    straight line gives 0.75. Only outputs 4 and 5 (u = 2.25, 2.75) have all taps inside.
    """
    ramp = np.arange(1.0, 5.0)[:, None]
    assert imresize(ramp, (8, 1))[0, 0] == 0.90625
    assert imresize(ramp, (8, 1), boundary="clamp")[0, 0] == 0.9296875
    inside = _interior(4, 8, 4.0)
    np.testing.assert_array_equal(np.flatnonzero(inside), [3, 4])
    np.testing.assert_allclose(imresize(ramp, (8, 1))[inside, 0], _input_coordinate(4, 8)[inside], **F64)


def test_antialiasing_acts_only_when_shrinking(rng):
    a = rng.standard_normal((12, 10))
    shrunk_aa = imresize(a, (5, 4), antialiasing=True)
    shrunk_plain = imresize(a, (5, 4), antialiasing=False)
    assert np.max(np.abs(shrunk_aa - shrunk_plain)) > 1e-2
    np.testing.assert_array_equal(imresize(a, (5, 4)), shrunk_aa)  # default: on for bicubic
    np.testing.assert_array_equal(imresize(a, (15, 13), antialiasing=True),
                                  imresize(a, (15, 13), antialiasing=False))
    np.testing.assert_array_equal(imresize(a, (5, 4), "nearest"),
                                  imresize(a, (5, 4), "nearest", antialiasing=False))
    assert not np.array_equal(imresize(a, (5, 4), "nearest", antialiasing=True),
                              imresize(a, (5, 4), "nearest"))
    assert resize_weights(12, 5, 5 / 12, "bicubic", True)[0].shape[1] > 4  # kernel widened to 4/scale


def test_uint8_bicubic_overshoot_saturates():
    step = np.array([[0, 0, 0, 255, 255, 255]], dtype=np.uint8)  # one row: only columns are resized
    as_float = imresize(step.astype(np.float64), (1, 14))
    assert as_float.min() < -1.0 and as_float.max() > 256.0, "the step must overshoot both ways"
    out = imresize(step, (1, 14))
    assert out.dtype == np.uint8
    expected = np.clip(np.floor(as_float + 0.5), 0, 255).astype(np.uint8)  # all values >= 0 here
    np.testing.assert_array_equal(out, expected)
    assert out.min() == 0 and out.max() == 255


def test_integer_ties_round_away_from_zero():
    # bilinear halving without antialiasing averages pairs: (-2 + -3)/2 = -2.5 and (2 + 3)/2 = 2.5
    column = np.array([[-2], [-3], [2], [3]], dtype=np.int16)
    out = imresize(column, (2, 1), "bilinear", antialiasing=False)
    np.testing.assert_array_equal(out[:, 0], [-3, 3])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.int64, np.uint64])
def test_cast_rounds_half_away_and_saturates(dtype):
    values = np.array([-1e30, -129.5, -2.5, -2.4999999999999996, -0.5, -0.49999999999999994, 0.0,
                       0.49999999999999994, 0.5, 1.5, 2.5, 127.5, 255.5, 65535.5, 2.0 ** 31, 2.0 ** 63,
                       2.0 ** 63 - 1024, 2.0 ** 64, 1e30])
    expected = np.array([naive_to_class(v, np.dtype(dtype)) for v in values], dtype=dtype)
    np.testing.assert_array_equal(cast_like_matlab(values, dtype), expected)


def test_integer_images_are_rounded_after_each_pass(rng):
    a = _image(rng, (5, 7), np.uint8)
    out = imresize(a, (9, 4))
    rounded_once = np.clip(np.floor(imresize(a.astype(np.float64), (9, 4)) + 0.5), 0, 255)
    assert not np.array_equal(out, rounded_once), "per-pass rounding should be visible here"
    np.testing.assert_array_equal(out, naive_resize(a, 2, (9, 4), "bicubic"))


def test_axes_are_resized_smallest_scale_first(rng):
    a = _image(rng, (6, 5), np.uint8)
    out = imresize(a, (3, 11))  # scales 0.5 (rows) then 2.2 (columns)
    rows_w, rows_i = resize_weights(6, 3, 0.5)
    cols_w, cols_i = resize_weights(5, 11, 2.2)
    rows_first = resize_along_axis(resize_along_axis(a, 0, rows_w, rows_i), 1, cols_w, cols_i)
    cols_first = resize_along_axis(resize_along_axis(a, 1, cols_w, cols_i), 0, rows_w, rows_i)
    np.testing.assert_array_equal(out, rows_first)
    assert not np.array_equal(out, cols_first), "the order must matter for this uint8 case"


# --- hand-worked regression table ----------------------------------------------------------
# 2 -> 4 bicubic, scale 2: u = 0.75, 1.25, 1.75, 2.25. At u = 0.75 the taps at distance
# 1.75, 0.75, -0.25, -1.25 have Keys weights -3/128, 29/128, 111/128, -9/128 (sum 1). With
# mirroring the two left taps read pixels 2 and 1, so out_1 = 35/32 a - 3/32 b; at u = 1.25,
# out_2 = 51/64 a + 13/64 b; the last two rows are the mirror image. So out = M A M^T with
# M below. With clamping both left taps read pixel 1: first row 137/128 a - 9/128 b.
M_MIRROR = np.array([[35 / 32, -3 / 32], [51 / 64, 13 / 64], [13 / 64, 51 / 64], [-3 / 32, 35 / 32]])
M_CLAMP = np.array([[137 / 128, -9 / 128], [51 / 64, 13 / 64], [13 / 64, 51 / 64], [-9 / 128, 137 / 128]])
A_2X2 = np.array([[1.0, 2.0], [3.0, 4.0]])
BICUBIC_2X2_TO_4X4 = np.array([
    [0.71875, 1.015625, 1.609375, 1.90625],
    [1.3125, 1.609375, 2.203125, 2.5],
    [2.5, 2.796875, 3.390625, 3.6875],
    [3.09375, 3.390625, 3.984375, 4.28125],
])


def test_bicubic_2x2_to_4x4_regression_table():
    np.testing.assert_array_equal(M_MIRROR @ A_2X2 @ M_MIRROR.T, BICUBIC_2X2_TO_4X4)  # the table is M A M^T
    np.testing.assert_array_equal(imresize(A_2X2, (4, 4)), BICUBIC_2X2_TO_4X4)  # dyadic: exact
    np.testing.assert_array_equal(imresize(A_2X2, (4, 4), boundary="clamp"), M_CLAMP @ A_2X2 @ M_CLAMP.T)
    np.testing.assert_array_equal(imresize(A_2X2, (4, 4), "bilinear"),
                                  [[1.0, 1.25, 1.75, 2.0], [1.5, 1.75, 2.25, 2.5],
                                   [2.5, 2.75, 3.25, 3.5], [3.0, 3.25, 3.75, 4.0]])
    np.testing.assert_array_equal(imresize(A_2X2.astype(np.float32), (4, 4)),
                                  BICUBIC_2X2_TO_4X4.astype(np.float32))


# --- sizes, scales, errors ------------------------------------------------------------------
def test_output_geometry_follows_matlab_rules():
    assert output_geometry((4, 6), (3, 5)) == ((3, 5), (0.75, 5 / 6))
    assert output_geometry((5, 7), 0.5) == ((3, 4), (0.5, 0.5))  # ceil(s * n), scale kept
    assert output_geometry((4, 6), (float("nan"), 9)) == ((6, 9), (1.5, 1.5))
    assert output_geometry((4, 6, 8), (float("nan"), 3, float("nan")), "imresize3") == ((2, 3, 4), (0.5,) * 3)
    a = np.arange(35.0).reshape(5, 7)
    assert imresize(a, 0.5).shape == (3, 4)
    # the scale factor itself (not 3/5) places the samples: compare with the sized call
    assert not np.allclose(imresize(a, 0.5), imresize(a, (3, 4)))


@pytest.mark.parametrize("bad", [(0, 3), (-2, 3), (2.5, 3), (3,), (3, 4, 5), (float("nan"),) * 2,
                                 0.0, -1.0, float("inf"), "big", (True, 3)])
def test_bad_output_size_is_a_clear_error(bad):
    with pytest.raises(InputError, match="imresize"):
        imresize(np.ones((3, 3)), bad)


def test_imresize3_nan_rule_needs_exactly_one_size():
    with pytest.raises(InputError, match="exactly one entry"):
        imresize3(np.ones((2, 2, 2)), (float("nan"), 3, 4))


@pytest.mark.parametrize("array, error", [
    (np.ones((3, 3), dtype=bool), InputDtypeError),
    (np.ones((3, 3), dtype=np.complex128), InputDtypeError),
    (np.ones((3, 3), dtype=np.float16), InputDtypeError),
    (np.ones(3), ShapeError),
    (np.ones((0, 3)), ShapeError),
])
def test_bad_arrays_are_clear_errors(array, error):
    with pytest.raises(error, match="imresize"):
        imresize(array, (2, 2))


def test_bool_is_an_input_error_and_other_options_are_checked():
    with pytest.raises(InputError, match="logical"):
        imresize(np.ones((3, 3), dtype=bool), (2, 2))
    with pytest.raises(InputError, match="unknown method"):
        imresize(np.ones((3, 3)), (2, 2), "lanczos3")
    with pytest.raises(InputError, match="unknown method"):
        imresize3(np.ones((3, 3, 3)), (2, 2, 2), "bilinearr")
    with pytest.raises(InputError, match="antialiasing"):
        imresize(np.ones((3, 3)), (2, 2), antialiasing="yes")
    with pytest.raises(InputError, match="boundary"):
        imresize(np.ones((3, 3)), (2, 2), boundary="reflect")
    with pytest.raises(ShapeError, match="imresize3"):
        imresize3(np.ones((3, 3)), (2, 2, 2))


def test_method_aliases():
    v = np.random.default_rng(1).standard_normal((3, 4, 5))
    for cubic in ("tricubic", "bicubic"):
        np.testing.assert_array_equal(imresize3(v, (5, 2, 7), cubic), imresize3(v, (5, 2, 7)))
    np.testing.assert_array_equal(imresize3(v, (5, 2, 7), "trilinear"), imresize3(v, (5, 2, 7), "linear"))
    np.testing.assert_array_equal(imresize(v, (5, 2), "triangle"), imresize(v, (5, 2), "bilinear"))
    np.testing.assert_array_equal(imresize(v, (5, 2), "cubic"), imresize(v, (5, 2)))
    np.testing.assert_array_equal(imresize(v, (6, 8), "box"), imresize(v, (6, 8), "nearest"))


def test_inputs_are_not_modified(rng):
    a = rng.standard_normal((4, 5))
    before = a.copy()
    imresize(a, (7, 3))
    rescale(a)
    np.testing.assert_array_equal(a, before)


# --- resize_map -------------------------------------------------------------------------------
def test_resize_map_dispatches_by_spatial_rank(rng):
    seq = rng.standard_normal((5, 3))  # t x K
    np.testing.assert_array_equal(resize_map(seq, (12,)), imresize(seq[None], (1, 12))[0])
    np.testing.assert_array_equal(resize_map(seq, (12,), "nearest"),
                                  seq[np.floor(_input_coordinate(5, 12) + 0.5).astype(int) - 1])
    image_maps = rng.standard_normal((4, 6, 2))
    np.testing.assert_array_equal(resize_map(image_maps, (9, 7)), imresize(image_maps, (9, 7)))
    volume_maps = rng.standard_normal((3, 4, 2, 2))
    np.testing.assert_array_equal(resize_map(volume_maps, (5, 6, 4)),
                                  imresize3(volume_maps, (5, 6, 4), "cubic"))
    np.testing.assert_array_equal(resize_map(volume_maps, (5, 6, 4), "nearest"),
                                  imresize3(volume_maps, (5, 6, 4), "nearest"))
    assert resize_map(volume_maps, (5, 6, 4)).shape == (5, 6, 4, 2)


def test_resize_map_of_a_sequence_is_a_1d_resize(rng):
    seq = rng.standard_normal((6, 2))
    expected = naive_resize(seq.T[:, :, None], 2, (2, 15), "bicubic")[:, :, 0].T  # K x t image, rows kept
    np.testing.assert_allclose(resize_map(seq, (15,)), expected, **F64)


def test_resize_map_rejects_mismatched_ranks():
    with pytest.raises(ShapeError, match="resize_map"):
        resize_map(np.ones((4, 4)), (8, 8))
    with pytest.raises(InputError, match="resize_map"):
        resize_map(np.ones((4, 4, 1)), (8, 8), "lanczos2")


# --- rescale -------------------------------------------------------------------------------------
def test_rescale_matches_matlab_examples_and_formula(rng):
    np.testing.assert_array_equal(rescale(np.arange(1.0, 6.0)), [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_array_equal(rescale(np.arange(1.0, 6.0), -1, 1), [-1.0, -0.5, 0.0, 0.5, 1.0])
    m = rng.standard_normal((4, 5, 3)) * 1e3 + 7.0
    expected = -2.0 + (m - m.min()) / (m.max() - m.min()) * 5.0
    out = rescale(m, -2.0, 3.0)
    np.testing.assert_allclose(out, expected, **F64)
    assert out.min() == -2.0 and out.max() == 3.0


def test_rescale_constant_nan_dtype_rules():
    np.testing.assert_array_equal(rescale(np.full((2, 3), 4.2), 0.5, 2.0), 0.5)  # constant -> lower
    np.testing.assert_array_equal(rescale(np.zeros(3)), 0.0)
    out = rescale(np.array([np.nan, 1.0, 3.0, 2.0]))
    assert np.isnan(out[0])
    np.testing.assert_array_equal(out[1:], [0.0, 1.0, 0.5])
    assert np.isnan(rescale(np.full(3, np.nan))).all()
    single = rescale(np.array([1.0, 2.0, 5.0], dtype=np.float32))
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, [0.0, 0.25, 1.0], **F32)
    ints = rescale(np.array([10, 20, 30], dtype=np.uint8))
    assert ints.dtype == np.float64
    np.testing.assert_array_equal(ints, [0.0, 0.5, 1.0])
    with pytest.raises(InputError, match="lower"):
        rescale(np.ones(3), 1.0, 0.0)
    with pytest.raises(InputDtypeError, match="rescale"):
        rescale(np.ones(3, dtype=np.complex64))


# --- independent implementations ------------------------------------------------------------------
@pytest.mark.crosscheck
@pytest.mark.parametrize("shape, size", [((7, 9), (17, 20)), ((20, 24), (9, 11)), ((6, 8), (13, 7))])
@pytest.mark.parametrize("method, width", [("bicubic", 4.0), ("bilinear", 2.0)])
def test_interior_equals_torch_antialiased_interpolate(torch, rng, shape, size, method, width):
    """PyTorch's antialias=True path uses Keys a = -0.5 and the same pixel-centre grid and
    widened kernel; it differs only at the border (it renormalises a truncated kernel)."""
    a = rng.standard_normal(shape)
    theirs = torch.nn.functional.interpolate(torch.tensor(a)[None, None], size=size, mode=method,
                                             antialias=True, align_corners=False)[0, 0].numpy()
    inside = np.ix_(_interior(shape[0], size[0], width), _interior(shape[1], size[1], width))
    assert inside[0].size and inside[1].size
    np.testing.assert_allclose(imresize(a, size, method)[inside], theirs[inside], **CROSS)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs CuPy and a CUDA GPU")
def test_cupy_matches_numpy(rng):
    import importlib

    cp = importlib.import_module("cupy")
    for dtype in DTYPES:
        a = _image(rng, (5, 6, 2), dtype)
        for size in [(11, 4), 0.6]:
            gpu = imresize(cp.asarray(a), size)
            assert type(gpu).__module__.startswith("cupy")
            _assert_same(cp.asnumpy(gpu), imresize(a, size))
    v = rng.standard_normal((3, 4, 5))
    np.testing.assert_allclose(cp.asnumpy(imresize3(cp.asarray(v), (5, 3, 7))), imresize3(v, (5, 3, 7)),
                               **F64)
    m = rng.standard_normal((4, 5))
    np.testing.assert_allclose(cp.asnumpy(rescale(cp.asarray(m))), rescale(m), **F64)


def test_docstring_examples():
    assert doctest.testmod(resize_module, extraglobs={"np": np}).failed == 0


def test_scale_factor_size_is_the_ceil_of_the_double_product():
    # 0.28 * 25 = 7.000000000000001 in IEEE double, so ceil gives 8, as MATLAB's ceil(scale .* size)
    assert 0.28 * 25 > 7 and math.ceil(0.28 * 25) == 8
    assert output_geometry((25, 25), 0.28)[0] == (8, 8)
