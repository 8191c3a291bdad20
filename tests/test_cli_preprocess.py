"""``refcam gradcam`` on a real photo: preprocessing flags, the default top-1 label, class names, honest output.

The photo is ``fixtures/preprocess/chelsea.png`` (CC0, 150 x 226); the
networks are the SqueezeNet-style E1 fixture (227 x 227 x 3, five named
classes) and the ONNX residual network ``fixtures/onnx/fire_torchscript.onnx``
(a fire module with a skip addition, 9 x 10 x 3, four unnamed classes,
softmax output). Every option and message of docs/cli.md's preprocessing,
label and exit-code sections has a test here.
"""
from __future__ import annotations

import importlib.util
import json
import os
import struct

import numpy as np
import pytest

import refcam
from refcam import cli, viz
from refcam.preprocess import PRESETS, Preprocessing

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "fixtures")
PHOTO = os.path.join(FIXTURES, "preprocess", "chelsea.png")
E1 = os.path.join(FIXTURES, "e1_squeezenet_mini.h5")
FIRE = os.path.join(FIXTURES, "onnx", "fire_torchscript.onnx")
HAS_ONNX = importlib.util.find_spec("onnx") is not None
pytestmark = pytest.mark.skipif(importlib.util.find_spec("PIL") is None, reason="reading images needs Pillow")
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="onnx is not installed")


def run(capsys, *arguments: str) -> tuple[int, str, str]:
    code = cli.main(list(arguments))
    out, err = capsys.readouterr()
    return code, out, err


def png_size(path: str) -> tuple[int, int]:
    """(width, height) of a PNG file."""
    with open(path, "rb") as f:
        return struct.unpack(">II", f.read(24)[16:24])


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from PIL import Image
    with Image.open(PHOTO) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def e1() -> refcam.Network:
    return refcam.load(E1)


# --- end to end: a real photo and an ONNX residual network ----------------------------------------------
@needs_onnx
def test_photo_through_an_onnx_resnet_block_gives_the_models_top1_and_the_apis_map(tmp_path, capsys, photo) -> None:
    from onnx.reference import ReferenceEvaluator
    code, out, err = run(capsys, "gradcam", FIRE, PHOTO, "--preprocess", "imagenet-torchvision", "-o", str(tmp_path))
    assert code == 0 and err == ""
    x, geometry = refcam.preprocess(photo, "imagenet-torchvision", (9, 10))
    evaluator = ReferenceEvaluator(FIRE)                                 # the model's own prediction, not refcam's
    scores = evaluator.run(None, {evaluator.input_names[0]: np.moveaxis(x, -1, 0)[None].astype(np.float32)})[0]
    top1 = int(np.argmax(scores))
    assert f"class {top1} (score {scores[0, top1]:.4g}), predicted top-1 of '/Softmax'" in out
    assert "150x226 RGB image (H x W); resized 150x226 -> 11x16 (torchvision resize, antialiased bilinear); " \
           "centre crop 9x10 (top 1, left 3)" in out
    expected = refcam.gradcam(refcam.load(FIRE), x, top1)
    np.testing.assert_array_equal(np.load(tmp_path / "chelsea_gradcam.npy"), expected.map)
    assert expected.map.any()
    factor = viz.enlargement_for(photo.shape)                            # the overlay is drawn on the photo
    assert png_size(str(tmp_path / "chelsea_gradcam.png")) == (226 * factor, 150 * factor)


@needs_onnx
def test_top5_on_four_classes_gives_four_maps_best_first(tmp_path, capsys, photo) -> None:
    code, out, _ = run(capsys, "gradcam", FIRE, PHOTO, "--preprocess", "imagenet-torchvision", "--label", "top5",
                       "-o", str(tmp_path))
    assert code == 0 and "predicted top-4 of '/Softmax'" in out
    x, _ = refcam.preprocess(photo, "imagenet-torchvision", (9, 10))
    order = list(np.argsort(-refcam.load(FIRE).predict(x)[0], kind="stable"))
    assert np.load(tmp_path / "chelsea_gradcam.npy").shape == (9, 10, 4)
    assert sorted(os.listdir(tmp_path)) == sorted(["chelsea_gradcam.npy"]
                                                  + [f"chelsea_label{k}_gradcam.png" for k in order])
    assert out.index(f"classes {order[0]} (score") < out.index(f", {order[1]} (score")


# --- preprocessing flags -------------------------------------------------------------------------------
def test_default_is_the_old_squash_and_the_preset_changes_the_input(tmp_path, capsys, photo, e1) -> None:
    code, out, _ = run(capsys, "gradcam", E1, PHOTO, "--label", "daisy", "-o", str(tmp_path / "none"))
    assert code == 0 and "resized 150x226 -> 227x227 (MATLAB imresize, bicubic)" in out
    assert "preprocessing:" not in out
    expected = refcam.gradcam(e1, refcam.imresize(photo, (227, 227)), "daisy").map
    np.testing.assert_array_equal(np.load(tmp_path / "none" / "chelsea_gradcam.npy"), expected)
    code, out, _ = run(capsys, "gradcam", E1, PHOTO, "--label", "daisy", "--preprocess", "keras-mobilenet",
                       "-o", str(tmp_path / "keras"))
    assert code == 0 and "preprocessing: squash (MATLAB imresize, bicubic), RGB, scale 0.00784314, mean 1" in out
    x, _ = refcam.preprocess(photo, "keras-mobilenet", e1)
    np.testing.assert_array_equal(np.load(tmp_path / "keras" / "chelsea_gradcam.npy"),
                                  refcam.gradcam(e1, x, "daisy").map)


def test_explicit_values_override_the_preset(tmp_path, capsys, photo, e1) -> None:
    code, out, _ = run(capsys, "gradcam", E1, PHOTO, "--label", "toy poodle", "--preprocess", "imagenet-torchvision",
                       "--resize", "shorter-side+centre-crop:240", "--scale", "1/255", "--mean", "0.5",
                       "--std", "0.25", "0.5", "1", "--channel-order", "BGR", "-o", str(tmp_path))
    assert code == 0, out
    spec = Preprocessing(resize="shorter-side+centre-crop", shorter_side=240, channel_order="BGR", scale=1 / 255,
                         mean=(0.5,), std=(0.25, 0.5, 1.0))
    assert f"preprocessing: {spec.describe()}" in out and "resized 150x226 -> 240x361" in out
    x, _ = refcam.preprocess(photo, spec, e1)
    np.testing.assert_array_equal(np.load(tmp_path / "chelsea_gradcam.npy"), refcam.gradcam(e1, x, "toy poodle").map)


def test_pad_draws_the_overlay_on_the_photo(tmp_path, capsys, photo) -> None:
    code, out, _ = run(capsys, "gradcam", E1, PHOTO, "--label", "daisy", "--resize", "pad", "-o", str(tmp_path))
    assert code == 0 and "resized 150x226 -> 151x227" in out and "padded to 227x227 (top -38, left 0)" in out
    assert png_size(str(tmp_path / "chelsea_gradcam.png")) == (226 * 2, 150 * 2)


@pytest.mark.parametrize("arguments, message", [
    (["--preprocess", "imagenet-torchvison"], "preset 'imagenet-torchvison' is unknown; the presets are "
                                              "imagenet-torchvision, imagenet-caffe, keras-mobilenet, none. "
                                              "Did you mean 'imagenet-torchvision'"),
    (["--resize", "shorter-side"], "argument --resize: 'shorter-side' is not a resize mode"),
    (["--resize", "squash:3"], "argument --resize: 'squash:3' is not a resize mode"),
    (["--scale", "1/0"], "argument --scale: '1/0' is not a number"),
    (["--scale", "0"], "scale must be a positive finite number"),
    (["--mean", "1", "2"], "mean has 2 values for a 3-channel input"),
    (["--std", "inf"], "argument --std: 'inf' is not a finite number"),
])
def test_bad_preprocessing_flags_exit_2(tmp_path, capsys, arguments, message) -> None:
    try:
        code, _, err = run(capsys, "gradcam", E1, PHOTO, "-o", str(tmp_path), *arguments)
    except SystemExit as stop:                                           # argparse's own refusals
        code, err = stop.code, capsys.readouterr().err
    assert code == cli.EXIT_ERROR and message in err, err


def test_the_networks_declared_preprocessing_and_classes_are_the_default(tmp_path, capsys, photo) -> None:
    declared = Network_with_metadata(tmp_path)
    code, out, _ = run(capsys, "info", declared)
    assert code == 0 and f"preprocessing:    {PRESETS['imagenet-torchvision'].describe()} (declared by the " \
                         "network)" in out
    assert "classes:          4: 'cat', 'dog', 'fox', 'owl'" in out
    code, out, _ = run(capsys, "gradcam", declared, PHOTO, "-o", str(tmp_path))
    assert code == 0 and "centre crop 9x10" in out and "class 'cat' (index 0, score" not in out
    x, _ = refcam.preprocess(photo, "imagenet-torchvision", (9, 10))
    top1 = int(np.argmax(refcam.load(declared).predict(x)))
    assert f"class {['cat', 'dog', 'fox', 'owl'][top1]!r} (index {top1}, score" in out
    code, out, _ = run(capsys, "gradcam", declared, PHOTO, "--preprocess", "none", "-o", str(tmp_path))
    assert code in (0, cli.EXIT_EMPTY) and "resized 150x226 -> 9x10 (MATLAB imresize, bicubic)" in out
    code, out, _ = run(capsys, "info", E1)
    assert "preprocessing:    none declared" in out


def Network_with_metadata(folder) -> str:
    """The ONNX residual network saved as refcam HDF5 with ImageNet preprocessing and four class names."""
    if not HAS_ONNX:
        pytest.skip("onnx is not installed")
    path = os.path.join(folder, "fire_declared.h5")
    net = refcam.load(FIRE).with_metadata(classes=["cat", "dog", "fox", "owl"], preprocessing="imagenet-torchvision")
    refcam.save(net, path)
    return path


# --- labels and class names ----------------------------------------------------------------------------
def test_labels_names_indices_and_class_files(tmp_path, capsys, e1) -> None:
    names = tmp_path / "names.txt"
    names.write_text("\n".join(["toy poodle", "tabby", "espresso", "space shuttle", "daisy"]) + "\n\n")
    out_dir = str(tmp_path / "out")
    code, out, _ = run(capsys, "gradcam", E1, PHOTO, "--label", "4", "--classes", str(names), "-o", out_dir)
    assert code == 0 and "class 'daisy' (index 4, score" in out and "given by --label" in out
    code, out, _ = run(capsys, "gradcam", E1, PHOTO, "--label", "daisy", "espresso", "-o", out_dir)
    assert code == 0 and "classes 'daisy' (index 4, score" in out and "'espresso' (index 2, score" in out
    code, _, err = run(capsys, "gradcam", E1, PHOTO, "--label", "dasy", "-o", out_dir)
    assert code == 2 and "--label 'dasy' is not a class of this network" in err and "Did you mean 'daisy'?" in err
    code, _, err = run(capsys, "gradcam", E1, PHOTO, "--label", "top1", "3", "-o", out_dir)
    assert code == 2 and "top1 stands alone" in err
    code, out, _ = run(capsys, "gradcam", E1, PHOTO, "--label", "top1", "-o", out_dir)
    assert code == 0 and "predicted top-1 of 'prob'" in out


@needs_onnx
def test_class_files_name_the_classes_of_a_network_without_them(tmp_path, capsys) -> None:
    listed = tmp_path / "animals.json"
    listed.write_text(json.dumps(["cat", "dog", "fox", "owl"]))
    args = ("gradcam", FIRE, PHOTO, "--preprocess", "imagenet-torchvision", "-o", str(tmp_path))
    code, out, _ = run(capsys, *args, "--classes", str(listed), "--label", "fox")
    assert code in (0, cli.EXIT_EMPTY) and "class 'fox' (index 2, score" in out
    code, _, err = run(capsys, *args, "--label", "fox")
    assert code == 2 and "this network has no class names" in err and "--classes FILE" in err
    short = tmp_path / "short.txt"
    short.write_text("cat\ndog\n")
    code, _, err = run(capsys, *args, "--classes", str(short))
    assert code == 2 and f"--classes {short}: 2 class names (2 distinct) for an output of 4 channels" in err
    for text, message in [("[1, 2]", "a JSON class file is a list of strings"), ("[oops", "is not a JSON list"),
                          ("cat\ncat\ndog\nowl\n", "4 class names, 3 distinct")]:
        short.write_text(text)
        code, _, err = run(capsys, *args, "--classes", str(short))
        assert code == 2 and message in err, err


def test_class_files_must_agree_with_a_classification_layer(tmp_path, capsys) -> None:
    names = tmp_path / "names.txt"
    names.write_text("a\nb\nc\nd\ne\n")
    code, _, err = run(capsys, "gradcam", E1, PHOTO, "--classes", str(names))
    assert code == 2 and "differ from the classification layer's" in err


# --- honest output ------------------------------------------------------------------------------------
def test_an_all_zero_map_warns_and_exits_4_unless_allowed(tmp_path, capsys) -> None:
    arguments = ("gradcam", E1, PHOTO, "--label", "tabby", "-o", str(tmp_path))    # tabby: no positive evidence
    code, out, err = run(capsys, *arguments)
    assert code == cli.EXIT_EMPTY == 4
    assert f"refcam gradcam: warning: {PHOTO}: the map is zero everywhere" in err
    assert "(exit code 4; --allow-empty accepts it)" in err and (tmp_path / "chelsea_gradcam.npy").exists()
    code, _, err = run(capsys, *arguments, "--allow-empty")
    assert code == 0 and "the map is zero everywhere" in err and "exit code 4" not in err
    code, out, _ = run(capsys, "gradcam", E1, PHOTO, PHOTO, "--label", "tabby", "daisy", "-o", str(tmp_path))
    assert code == 4 and "summary: 2 inputs, 2 done, 0 failed, 1 empty" in out


def test_a_non_finite_map_warns_and_exits_4(tmp_path, capsys, monkeypatch) -> None:
    real = cli.compute

    def with_nan(*args, **kwargs):
        result = real(*args, **kwargs)
        result.map[0, 0] = np.nan
        return result

    monkeypatch.setattr(cli, "compute", with_nan)
    code, _, err = run(capsys, "gradcam", E1, PHOTO, "--label", "daisy", "--no-png", "-o", str(tmp_path))
    assert code == 4 and "the map holds 1 NaN or Inf values" in err


@pytest.mark.parametrize("alpha", ["2", "-1", "nan", "x"])
def test_alpha_outside_zero_one_is_refused(capsys, alpha) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["gradcam", E1, PHOTO, "--alpha", alpha])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "argument --alpha:" in err


def test_output_path_rules(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "gradcam", E1, PHOTO, "--label", "daisy", "-o", "foo.txt")
    assert code == 2 and "-o foo.txt: ends in .txt" in err and not (tmp_path / "foo.txt").exists()
    (tmp_path / "maps.v2").mkdir()
    code, out, _ = run(capsys, "gradcam", E1, PHOTO, "--label", "daisy", "-o", "maps.v2")
    assert code == 0 and os.path.exists(tmp_path / "maps.v2" / "chelsea_gradcam.png")
    code, _, _ = run(capsys, "gradcam", E1, PHOTO, "--label", "daisy", "-o", "one/map.npy")
    assert code == 0 and sorted(os.listdir(tmp_path / "one")) == ["map.npy"]
    code, _, err = run(capsys, "gradcam", E1, PHOTO, PHOTO, "--label", "daisy", "-o", "two.png")
    assert code == 2 and "a file name is for one input" in err


def test_debug_prints_the_traceback_and_keeps_the_exit_code(tmp_path, capsys) -> None:
    code, _, err = run(capsys, "--debug", "gradcam", E1, PHOTO, "--label", "cat", "-o", str(tmp_path))
    assert code == 2 and "Traceback" in err and "LabelError" in err
    assert err.strip().splitlines()[-1].startswith("refcam gradcam: error: --label 'cat'")
    code, _, err = run(capsys, "--debug", "gradcam", E1, str(tmp_path / "missing.png"), "-o", str(tmp_path))
    assert code == 2 and "no such file" in err


def test_unknown_layers_get_close_matches(capsys) -> None:
    code, _, err = run(capsys, "gradcam", E1, PHOTO, "--feature-layer", "relu_conv01")
    suggestion = err.split("Did you mean ", 1)[1].split("?")[0]
    assert code == 2 and "--feature-layer 'relu_conv01' is not a layer of this network. Did you mean" in err
    assert "'relu_conv10'" in suggestion and "? Valid layer names are: 'data'" in err
    code, _, err = run(capsys, "gradcam", E1, PHOTO, "--reduction-layer", "xyz")
    assert code == 2 and "--reduction-layer 'xyz' is not a layer" in err and "Did you mean" not in err


def test_golden_takes_the_same_preprocessing(tmp_path, capsys, photo, e1) -> None:
    path = str(tmp_path / "chelsea.golden.h5")
    code, out, _ = run(capsys, "golden", E1, PHOTO, "-o", path, "--preprocess", "imagenet-torchvision")
    assert code == 0 and "predicted top-1 of 'prob'" in out
    x, _ = refcam.preprocess(photo, "imagenet-torchvision", e1)
    np.testing.assert_array_equal(refcam.golden.read(path).input, x)


def test_top_classes_rank_by_the_summed_class_score() -> None:
    import doctest
    import importlib

    from refcam.labels import class_scores, top_classes
    segmentation = np.zeros((1, 3, 2, 2))                         # (B, C, H, W): class 2 wins on the sum
    segmentation[0, 0, 0, 0], segmentation[0, 2] = 0.9, 0.3
    np.testing.assert_allclose(class_scores(segmentation), [0.9, 0.0, 1.2])
    assert [c.index for c in top_classes(segmentation, 5)] == [2, 0, 1]
    assert [c.index for c in top_classes(np.array([[0.5, 0.5, 0.1]]), 2)] == [0, 1]       # ties: lower index
    with pytest.raises(refcam.errors.LabelError, match="give --label"):
        class_scores(np.zeros((2, 3)))
    module = importlib.import_module("refcam.labels")
    failures, tried = doctest.testmod(module, extraglobs={"np": np})
    assert tried >= 3 and failures == 0
