"""refcam.preprocess: presets, the three resize modes, the geometry, and the way back to the photo.

torchvision's resize and crop are checked twice: against the committed
references of ``fixtures/preprocess/`` (made by
``fixtures/make_preprocess_fixtures.py``; no torch needed) and, where
torchvision is importable, against torchvision itself on random shapes.
"""
from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

import refcam
from refcam.errors import InputError, ShapeError
from refcam.preprocess import (PRESETS, Geometry, Preprocessing, centre_crop, get_preprocessing, map_to_original,
                               preprocess, resize_shorter_side, torchvision_bilinear_weights)
from tests.tolerances import CROSS, F32

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "fixtures", "preprocess")
HAS_TORCHVISION = importlib.util.find_spec("torch") is not None and importlib.util.find_spec("torchvision") is not None
needs_torchvision = pytest.mark.skipif(not HAS_TORCHVISION, reason="torchvision is not importable "
                                       "(PYTHONPATH=/path/to/torchvision)")
# torchvision resizes uint8 images in float32, refcam in float64: after rounding to uint8 a value can land
# one level apart where the float32 result is within its rounding of a half (0.02 % of pixels measured)
UINT8_LEVELS_APART = 1
UINT8_SHARE_APART = 1e-3


def relative_error(candidate: np.ndarray, reference: np.ndarray) -> float:
    return float(np.abs(candidate.astype(np.float64) - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(os.path.join(FIXTURES, "torchvision_reference.npz")) as arrays:
        return {name: arrays[name] for name in arrays.files}


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from PIL import Image
    with Image.open(os.path.join(FIXTURES, "chelsea.png")) as image:
        return np.asarray(image.convert("RGB"))


# --- against torchvision's committed outputs -------------------------------------------------------------
def test_float_resize_matches_torchvision_references(reference) -> None:
    image = reference["float_image"]
    cases = [name for name in reference if name.startswith("float_shorter_")]
    assert len(cases) == 6
    for name in cases:
        resized = resize_shorter_side(image, int(name.rsplit("_", 1)[1]))
        assert resized.shape == reference[name].shape, name
        assert relative_error(resized, reference[name]) <= CROSS["rtol"], name


def test_uint8_resize_matches_torchvision_references(reference, photo) -> None:
    assert photo.shape == (150, 226, 3)
    for name in ("photo_shorter_40", "photo_shorter_100"):
        resized = resize_shorter_side(photo, int(name.rsplit("_", 1)[1]))
        assert resized.dtype == np.uint8 and resized.shape == reference[name].shape
        apart = np.abs(resized.astype(int) - reference[name].astype(int))
        assert apart.max() <= UINT8_LEVELS_APART and np.mean(apart > 0) <= UINT8_SHARE_APART, name


@pytest.mark.parametrize("crop", [56, 9])
def test_imagenet_preset_is_torchvisions_pipeline(reference, photo, crop) -> None:
    x, geometry = preprocess(photo, "imagenet-torchvision", (crop, crop))
    expected = reference[f"photo_imagenet_{crop}"]                  # float32, from a uint8 tensor
    assert x.shape == expected.shape and x.dtype == np.float64
    one_level = 1.0 / 255.0 / min(PRESETS["imagenet-torchvision"].std)
    apart = np.abs(x - expected)
    assert apart.max() <= one_level + F32["atol"]
    assert np.mean(apart > 10 * F32["atol"]) <= UINT8_SHARE_APART
    assert geometry.input_size == (crop, crop) and geometry.original_size == (150, 226)


# --- against torchvision itself ----------------------------------------------------------------------------
@needs_torchvision
@pytest.mark.parametrize("shape", [(13, 17), (17, 13), (40, 29), (7, 7), (3, 50)])
def test_resize_and_crop_match_torchvision_live(shape) -> None:
    import torch
    from torchvision.transforms import functional as F
    rng = np.random.default_rng(sum(shape))
    image = rng.uniform(0.0, 1.0, shape + (2,))
    tensor = torch.from_numpy(np.moveaxis(image, -1, 0).copy())
    for shorter in (2, 3, 5, 8, 13, 21, 64):
        expected = np.moveaxis(F.resize(tensor, [shorter], antialias=True).numpy(), 0, -1)
        resized = resize_shorter_side(image, shorter)
        assert resized.shape == expected.shape
        assert relative_error(resized, expected) <= CROSS["rtol"], (shape, shorter)
    for crop in ((5, 4), (shape[0] + 3, 2), (shape[0] + 2, shape[1] + 5)):
        expected = np.moveaxis(F.center_crop(tensor, list(crop)).numpy(), 0, -1)
        np.testing.assert_array_equal(centre_crop(image, crop)[0], expected)


def test_bilinear_weights_rows_sum_to_one_and_stay_in_range() -> None:
    for in_length, out_length in [(10, 3), (3, 10), (7, 7), (451, 224), (1, 5), (5, 1)]:
        weights, indices = torchvision_bilinear_weights(in_length, out_length)
        assert weights.shape == indices.shape and weights.shape[0] == out_length
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=CROSS["rtol"])
        assert (weights >= 0).all() and indices.min() >= 0 and indices.max() < in_length


# --- presets and the description ---------------------------------------------------------------------------
def test_presets_hold_their_sources_values() -> None:
    torchvision = get_preprocessing("imagenet-torchvision")
    assert (torchvision.resize, torchvision.channel_order, torchvision.scale) == ("shorter-side+centre-crop", "RGB",
                                                                                  1 / 255)
    assert torchvision.mean == (0.485, 0.456, 0.406) and torchvision.std == (0.229, 0.224, 0.225)
    caffe = get_preprocessing("imagenet-caffe")
    assert caffe.channel_order == "BGR" and caffe.mean == (103.939, 116.779, 123.68) and caffe.std is None
    image = np.random.default_rng(1).integers(0, 256, (5, 6, 3)).astype(np.uint8)
    x, _ = preprocess(image, "keras-mobilenet", (5, 6))
    np.testing.assert_allclose(x, image / 127.5 - 1.0, rtol=CROSS["rtol"], atol=CROSS["atol"])
    x, _ = preprocess(image, "imagenet-caffe", (5, 6))
    np.testing.assert_array_equal(x, image[:, :, ::-1] - np.array([103.939, 116.779, 123.68]))
    x, _ = preprocess(image, "none", (5, 6))
    np.testing.assert_array_equal(x, image.astype(np.float64))
    assert set(PRESETS) == {"imagenet-torchvision", "imagenet-caffe", "keras-mobilenet", "none"}


def test_preprocessing_round_trips_through_its_dict_and_is_checked() -> None:
    spec = Preprocessing(resize="pad", shorter_side=None, channel_order="BGR", scale=0.5, mean=(1, 2, 3), std=2.0,
                         pad_value=9)
    assert spec.mean == (1.0, 2.0, 3.0) and spec.std == (2.0,)
    assert Preprocessing.from_dict(spec.to_dict()) == spec
    assert get_preprocessing(spec.to_dict()) == spec and get_preprocessing(spec) is spec
    for fields, message in [({"resize": "crop"}, "resize 'crop' is unknown"),
                            ({"resize": "shorter-side"}, r"Did you mean 'shorter-side\+centre-crop'\?"),
                            ({"channel_order": "RBG"}, "Did you mean 'RGB' or 'BGR'"),
                            ({"scale": 0.0}, "scale must be a positive finite number"),
                            ({"std": (1.0, 0.0)}, "std must be a positive finite number"),
                            ({"mean": (float("nan"),)}, "mean must be a finite number"),
                            ({"mean": ()}, "mean is empty"),
                            ({"shorter_side": 2.5}, "shorter_side must be a positive integer")]:
        with pytest.raises(InputError, match=message):
            Preprocessing(**fields)
    with pytest.raises(InputError, match="unknown preprocessing field"):
        Preprocessing.from_dict({"resize": "squash", "size": 3})
    with pytest.raises(InputError, match="Did you mean 'imagenet-torchvision'"):
        get_preprocessing("imagenet-torchvison")
    with pytest.raises(InputError, match="a preset name"):
        get_preprocessing(3)


def test_describe_says_every_step() -> None:
    assert get_preprocessing("imagenet-torchvision").describe() == (
        "shorter side 256/224 of the crop (torchvision antialiased bilinear) + centre crop, RGB, scale 0.00392157, "
        "mean 0.485, 0.456, 0.406, std 0.229, 0.224, 0.225")
    assert get_preprocessing("none").describe() == "squash (MATLAB imresize, bicubic), RGB, scale 1"


# --- the resize modes and the geometry ----------------------------------------------------------------------
def test_squash_is_matlabs_imresize() -> None:
    image = np.random.default_rng(2).integers(0, 256, (30, 45, 3)).astype(np.uint8)
    x, geometry = preprocess(image, "none", (16, 12, 3))
    np.testing.assert_array_equal(x, refcam.imresize(image, (16, 12)).astype(np.float64))
    assert geometry == Geometry((30, 45), (16, 12), (0, 0), (16, 12))
    assert geometry.crop_box == (0.0, 0.0, 30.0, 45.0)


def test_shorter_side_geometry_and_crop_box() -> None:
    x, geometry = preprocess(np.zeros((300, 451, 3), np.uint8), "imagenet-torchvision", (224, 224))
    assert x.shape == (224, 224, 3)
    assert (geometry.resized_size, geometry.offset) == ((256, 384), (16, 80))
    assert geometry.scale == (256 / 300, 384 / 451)
    np.testing.assert_allclose(geometry.crop_box, (18.75, 80 * 451 / 384, 281.25, 304 * 451 / 384))
    explicit = Preprocessing(resize="shorter-side+centre-crop", shorter_side=232)
    assert preprocess(np.zeros((300, 451), np.uint8), explicit, (224, 224)).geometry.resized_size == (232, 348)


def test_pad_keeps_the_aspect_ratio_and_fills_the_border() -> None:
    image = np.full((30, 60, 3), 200, np.uint8)
    spec = Preprocessing(resize="pad", pad_value=7)
    x, geometry = preprocess(image, spec, (20, 20))
    assert (geometry.resized_size, geometry.offset) == ((10, 20), (-5, 0))
    assert (x[:5] == 7).all() and (x[15:] == 7).all() and (x[5:15] == 200).all()
    assert geometry.crop_box == (-15.0, 0.0, 45.0, 60.0)


def test_channels_and_bad_images() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)
    x, _ = preprocess(grey, Preprocessing(channel_order="BGR", mean=(0, 1, 2)), (3, 4, 3))
    np.testing.assert_array_equal(x, np.stack([grey - 0.0, grey - 1.0, grey - 2.0], axis=-1))
    with pytest.raises(InputError, match="only grey -> RGB"):
        preprocess(np.zeros((3, 4, 3)), "none", (3, 4, 1))
    with pytest.raises(InputError, match="'BGR' reorders 3 channels"):
        preprocess(grey, Preprocessing(channel_order="BGR"), (3, 4))
    with pytest.raises(InputError, match="mean has 2 values for a 3-channel input"):
        preprocess(np.zeros((3, 4, 3)), Preprocessing(mean=(1, 2)), (3, 4))
    with pytest.raises(ShapeError, match="H x W first"):
        preprocess(np.zeros((2, 3, 4, 5)), "none", (3, 4))
    with pytest.raises(InputError, match="NaN or Inf"):
        preprocess(np.full((3, 4), np.nan), "none", (3, 4))
    with pytest.raises(InputError, match="input_size is"):
        preprocess(grey, "none", (3,))


def test_input_size_may_be_a_network() -> None:
    net = refcam.load(os.path.join(REPO, "fixtures", "e1_squeezenet_mini.h5"))
    x, geometry = preprocess(np.zeros((40, 50), np.uint8), "imagenet-torchvision", net)
    assert x.shape == (227, 227, 3) and geometry.input_size == (227, 227)


# --- back onto the original image ---------------------------------------------------------------------------
def test_map_to_original_inverts_squash_with_imresize() -> None:
    image = np.zeros((30, 45, 3), np.uint8)
    _, geometry = preprocess(image, "none", (16, 12))
    score_map = np.random.default_rng(3).uniform(0, 1, (16, 12, 2))
    np.testing.assert_array_equal(map_to_original(score_map, geometry), refcam.imresize(score_map, (30, 45)))


def test_map_to_original_puts_a_crop_back_in_place() -> None:
    image = np.random.default_rng(4).uniform(0, 1, (20, 30))
    spec = Preprocessing(resize="shorter-side+centre-crop", shorter_side=20)       # no resize: only the crop
    x, geometry = preprocess(image, spec, (10, 12))
    assert geometry.offset == (5, 9)
    back = map_to_original(x[:, :, 0], geometry, fill=np.nan)
    np.testing.assert_array_equal(back[5:15, 9:21], image[5:15, 9:21])
    assert np.isnan(back[:5]).all() and np.isnan(back[:, :9]).all() and np.isnan(back[15:]).all()


def test_map_to_original_drops_the_padding() -> None:
    _, geometry = preprocess(np.zeros((30, 60)), Preprocessing(resize="pad"), (20, 20))
    score_map = np.zeros((20, 20))
    score_map[5:15] = 1.0                                    # the image's rows, none of the padding
    back = map_to_original(score_map, geometry)
    assert back.shape == (30, 60)
    np.testing.assert_allclose(back, 1.0, rtol=CROSS["rtol"])
    with pytest.raises(ShapeError, match="the network input"):
        map_to_original(np.zeros((10, 10)), geometry)


def test_docstring_examples_run() -> None:
    import doctest
    import importlib
    module = importlib.import_module("refcam.preprocess")           # the module (refcam.preprocess is the function)
    failures, tried = doctest.testmod(module, extraglobs={"np": np}, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert tried >= 8 and failures == 0
