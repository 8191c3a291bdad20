"""The ``refcam`` command line on the fixture networks.

End to end in a subprocess (``python -m refcam``, the console script's entry
point): exit codes, files written, one-line errors. The finer behaviour runs
in-process through ``refcam.cli.main`` to keep the suite fast.
"""
from __future__ import annotations

import importlib.util
import os
import re
import struct
import subprocess
import sys

import h5py
import numpy as np
import pytest

import refcam
from refcam import cli, viz
from refcam.data import FEATURE_LAYER, REDUCTION_LAYER, demo_digits, demo_network

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "fixtures")
E1 = os.path.join(FIXTURES, "e1_squeezenet_mini.h5")
E2 = os.path.join(FIXTURES, "e2_digits_regression.h5")
E3 = os.path.join(FIXTURES, "e3_japanese_vowels.h5")
VOLUME = os.path.join(FIXTURES, "volume3d.h5")
HAS_PIL = importlib.util.find_spec("PIL") is not None
needs_pillow = pytest.mark.skipif(not HAS_PIL, reason="Pillow is not installed")
needs_matplotlib = pytest.mark.skipif(not viz.has_matplotlib(), reason="matplotlib is not installed")


def fixture_input(name: str) -> np.ndarray:
    with h5py.File(os.path.join(FIXTURES, f"{name}.golden.h5"), "r") as f:
        return f["input"][()]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """Input files made from the fixtures' golden inputs: a PNG photo, arrays, a CSV sequence, a broken file."""
    folder = tmp_path_factory.mktemp("inputs")
    photo = fixture_input("e1_squeezenet_mini__chelsea")                       # 227 x 227 x 3 uint8
    vowels = fixture_input("e3_japanese_vowels__test0")                        # 12 x 19
    paths = {"photo_png": folder / "chelsea.png", "photo_npy": folder / "chelsea.npy",
             "vowels_csv": folder / "vowels.csv", "vowels_npy": folder / "vowels.npy",
             "digit_npy": folder / "digit.npy", "volume_npy": folder / "blobs.npy", "broken_png": folder / "broken.png",
             "corrupt_h5": folder / "corrupt.h5"}
    viz.write_png(paths["photo_png"], photo)
    np.save(paths["photo_npy"], photo)
    np.savetxt(paths["vowels_csv"], vowels.T, delimiter=",", header=",".join(f"f{k}" for k in range(12)), comments="")
    np.save(paths["vowels_npy"], vowels)
    np.save(paths["digit_npy"], fixture_input("e2_digits_regression__test6"))
    np.save(paths["volume_npy"], fixture_input("volume3d__blobs"))
    paths["broken_png"].write_bytes(b"this is not an image")
    with open(E1, "rb") as f:
        paths["corrupt_h5"].write_bytes(f.read()[:5000])                         # a truncated network file
    return {key: str(value) for key, value in paths.items()}


def refcam_process(*arguments: str, cwd: str, prelude: str = "") -> subprocess.CompletedProcess:
    """``python -m refcam ARGUMENTS`` (or, with a prelude, main() after the prelude) in a subprocess."""
    if prelude:
        script = f"{prelude}\nfrom refcam.cli import main\nraise SystemExit(main({list(arguments)!r}))"
        command = [sys.executable, "-c", script]
    else:
        command = [sys.executable, "-m", "refcam", *arguments]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def png_size(path: str) -> tuple[int, int]:
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def assert_one_line_error(stderr: str, command: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"refcam {command}: error: "), stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# --- end to end, in a subprocess -------------------------------------------------------------------
def test_console_script_is_declared() -> None:
    tomllib = pytest.importorskip("tomllib")          # Python 3.11+
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["scripts"]["refcam"] == "refcam.cli:main"
    assert {"matplotlib", "Pillow"} <= {re.split("[<>=]", r)[0] for r in project["optional-dependencies"]["viz"]}


def test_demo_writes_the_figure_and_prints_what_it_did(tmp_path) -> None:
    done = refcam_process("demo", cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    written = tmp_path / cli.DEMO_OUTPUT
    assert f"wrote:            {written}" in done.stdout
    for fragment in ("prediction:       -21.7 degrees (true rotation -19.9)", "feature layer:    relu_4",
                     "reduction layer:  fc"):
        assert fragment in done.stdout
    assert png_size(str(written)) == ((800, 420) if viz.has_matplotlib() else (580, 280))


def test_demo_with_core_dependencies_only(tmp_path) -> None:
    blocked = "import sys\nsys.modules.update({'matplotlib': None, 'PIL': None, 'tqdm': None})"
    done = refcam_process("demo", "-o", "core.png", cwd=str(tmp_path), prelude=blocked)
    assert done.returncode == 0, done.stderr
    assert "built-in PNG writer" in done.stdout
    assert png_size(str(tmp_path / "core.png")) == (2 * 280 + 2 * 10, 280)   # 28 px digits x 10, 2 px gap x 10


def test_info_shows_the_layer_table_and_default_layers(tmp_path) -> None:
    done = refcam_process("info", E1, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "68x1 Layer array with layers:" in done.stdout
    assert "227x227x3 images" in done.stdout
    assert "classes:          5: 'toy poodle', 'tabby', 'espresso', 'space shuttle', 'daisy'" in done.stdout
    assert "feature layer 'relu_conv10', reduction layer 'prob'" in done.stdout


@needs_pillow
def test_gradcam_reports_a_bad_input_and_runs_the_others(tmp_path, inputs) -> None:
    done = refcam_process("gradcam", E1, inputs["photo_png"], inputs["broken_png"], "missing.png",
                          inputs["photo_npy"], "--label", "toy poodle", "-o", "out", cwd=str(tmp_path))
    assert done.returncode == cli.EXIT_PARTIAL, done.stderr
    assert "summary: 4 inputs, 2 done, 2 failed" in done.stdout
    assert "failed: missing.png: no such file or directory" in done.stdout
    assert "broken.png: Pillow cannot read this image" in done.stderr
    for stem in ("chelsea_png", "chelsea_npy"):                    # same name, two suffixes: both kept
        assert png_size(str(tmp_path / "out" / f"{stem}_gradcam.png")) == (227 * 2, 227 * 2)
        score_map = np.load(tmp_path / "out" / f"{stem}_gradcam.npy")
        expected = refcam.gradcam(refcam.load(E1), fixture_input("e1_squeezenet_mini__chelsea"), "toy poodle").map
        np.testing.assert_array_equal(score_map, expected)


def test_golden_then_compare_exit_codes(tmp_path, inputs, capsys) -> None:
    golden = tmp_path / "digit.golden.h5"
    assert cli.main(["golden", E2, inputs["digit_npy"], "-o", str(golden), "--feature-layer", "relu_4",
                     "--reduction-layer", "fc"]) == 0
    stored = refcam.golden.read(golden)
    assert (stored.feature_layer, stored.reduction_layer, stored.reduction) == ("relu_4", "fc", "class")
    assert list(stored.labels) == [0]                           # the top-1 of fc's one output: E2's angle
    np.save(tmp_path / "good.npy", stored.map + 1e-13 * np.abs(stored.map).max())
    np.save(tmp_path / "bad.npy", stored.map.T)
    passed = refcam_process("compare", str(golden), "good.npy", "--rtol", "1e-9", cwd=str(tmp_path))
    assert passed.returncode == 0 and "refcam.compare: PASS" in passed.stdout, passed.stdout + passed.stderr
    failed = refcam_process("compare", str(golden), "bad.npy", cwd=str(tmp_path))
    assert failed.returncode == cli.EXIT_PARTIAL and "refcam.compare: FAIL" in failed.stdout
    assert "transposed" in failed.stdout


@pytest.mark.parametrize("case", ["missing model", "bad label", "corrupt model"])
def test_errors_are_one_line_with_exit_code_2(tmp_path, inputs, case) -> None:
    arguments, command, fragments = {
        "missing model": (["info", "nothere.h5"], "info", ["nothere.h5: no such file or directory"]),
        "bad label": (["gradcam", E1, inputs["photo_npy"], "--label", "cat"], "gradcam",
                      ["--label 'cat' is not a class", "'toy poodle'"]),
        "corrupt model": (["gradcam", inputs["corrupt_h5"], inputs["photo_npy"]], "gradcam",
                          ["corrupt.h5", "truncated or corrupt"]),
    }[case]
    done = refcam_process(*arguments, cwd=str(tmp_path))
    assert done.returncode == cli.EXIT_ERROR
    assert done.stdout == "" and not list(tmp_path.iterdir())
    assert_one_line_error(done.stderr, command, *fragments)


def test_a_folder_or_a_linked_file_is_a_refcam_error_not_an_internal_one(tmp_path, capsys) -> None:
    code, out, err = run(capsys, "info", str(tmp_path))
    assert code == cli.EXIT_ERROR and "is a folder, not a file" in err and "internal error" not in err
    linked = tmp_path / "linked.h5"
    refcam.io.save(refcam.load(E1), linked)
    with h5py.File(linked, "r+") as f:
        del f["weights/conv1"]
        f["weights/conv1"] = h5py.ExternalLink(E1, "/weights/conv1")
    code, out, err = run(capsys, "info", str(linked))
    assert code == cli.EXIT_ERROR and "/weights/conv1 is an external link" in err


def test_bad_usage_exits_with_2(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["gradcam", E1])
    assert stop.value.code == cli.EXIT_ERROR
    assert "the following arguments are required: INPUT" in capsys.readouterr().err


# --- in-process ------------------------------------------------------------------------------------
def run(capsys, *arguments: str) -> tuple[int, str, str]:
    code = cli.main(list(arguments))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_options(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "demo", "--digit", "7", "--builtin-png", "-o", str(tmp_path))
    assert code == 0 and "a 6 rotated by 7.4 degrees" in out
    assert png_size(str(tmp_path / cli.DEMO_OUTPUT)) == (580, 280)
    code, _, err = run(capsys, "demo", "--digit", "11")
    assert code == 2 and "choose 0..10" in err


def test_demo_network_is_the_e2_fixture_and_computes_the_seeds_map() -> None:
    shipped = os.path.join(REPO, "refcam", "data", "digits_regression.h5")
    with open(shipped, "rb") as a, open(E2, "rb") as b:
        assert a.read() == b.read(), "the E2 fixture changed: rerun python refcam/data/make_demo_data.py"
    x = demo_digits().images[0]
    result = refcam.gradcam(demo_network(), x, reduction=cli.identity, feature_layer=FEATURE_LAYER,
                            reduction_layer=REDUCTION_LAYER)
    expected = refcam.gradcam(refcam.load(E2), x, reduction=lambda y: y.sum(), feature_layer="relu_4",
                              reduction_layer="fc")
    np.testing.assert_array_equal(result.map, expected.map)


def test_sequences_from_csv_and_npy_give_the_same_map(tmp_path, capsys, inputs) -> None:
    code, out, _ = run(capsys, "gradcam", E3, inputs["vowels_csv"], inputs["vowels_npy"], "-o", str(tmp_path),
                       "--no-png")
    assert code == 0 and "sequence of 19 steps x 12 features (CSV, time-rows)" in out
    np.testing.assert_array_equal(np.load(tmp_path / "vowels_csv_gradcam.npy"),
                                  np.load(tmp_path / "vowels_npy_gradcam.npy"))
    assert "class '1' (index 0, score 0.9" in out and "predicted top-1 of 'softmax'" in out
    code, _, err = run(capsys, "gradcam", E3, inputs["vowels_csv"], "--csv-orientation", "feature-rows",
                       "-o", str(tmp_path))
    assert code == 2 and "add --csv-orientation time-rows" in err


@needs_matplotlib
def test_sequence_figure_and_volume_montage(tmp_path, capsys, inputs) -> None:
    assert run(capsys, "gradcam", E3, inputs["vowels_npy"], "-o", str(tmp_path))[0] == 0
    assert png_size(str(tmp_path / "vowels_gradcam.png")) == (900, 600)
    assert run(capsys, "gradcam", VOLUME, inputs["volume_npy"], "-o", str(tmp_path), "--label", "1")[0] == 0
    assert png_size(str(tmp_path / "blobs_gradcam.png")) == (3 * 128 + 4, 3 * 128 + 4)
    assert np.load(tmp_path / "blobs_gradcam.npy").shape == (16, 16, 16)


def test_regression_top1_is_its_one_output_and_reduction_sum_the_old_sum(tmp_path, capsys, inputs) -> None:
    target = tmp_path / "digit_map.npy"
    layers = ("--feature-layer", "relu_4", "--reduction-layer", "fc")
    code, out, _ = run(capsys, "gradcam", E2, inputs["digit_npy"], *layers, "--reduction", "sum", "-o", str(target))
    assert code == 0 and "score: sum of the reduction layer's output (--reduction sum), value -4.195" in out
    assert sorted(os.listdir(tmp_path)) == ["digit_map.npy"]
    expected = refcam.gradcam(refcam.load(E2), np.load(inputs["digit_npy"]), reduction=lambda y: y.sum(),
                              feature_layer="relu_4", reduction_layer="fc").map
    np.testing.assert_array_equal(np.load(target), expected)
    code, out, _ = run(capsys, "gradcam", E2, inputs["digit_npy"], *layers, "-o", str(target))
    assert code == 0 and "class 0 (score -4.195), predicted top-1 of 'fc'" in out
    np.testing.assert_array_equal(np.load(target), expected)          # one output: its class is its sum
    code, _, err = run(capsys, "gradcam", E2, inputs["digit_npy"], "--reduction", "sum", "--label", "0")
    assert code == 2 and "give one of them" in err


def test_labels_stacked_per_input_and_checked(tmp_path, capsys, inputs) -> None:
    code, _, _ = run(capsys, "gradcam", E3, inputs["vowels_npy"], "--label", "1", "7", "-o", str(tmp_path), "--no-png")
    assert code == 0 and np.load(tmp_path / "vowels_gradcam.npy").shape == (1, 19, 2)
    code, _, err = run(capsys, "gradcam", E3, inputs["vowels_npy"], inputs["vowels_csv"], inputs["vowels_npy"],
                       "--label", "1", "2", "-o", str(tmp_path))
    assert code == 2 and "2 labels for 3 inputs" in err
    code, _, err = run(capsys, "gradcam", E1, inputs["photo_npy"], "--label", "5", "-o", str(tmp_path))
    assert code == 2 and "0-based indices 0..4" in err
    code, _, err = run(capsys, "gradcam", E1, inputs["photo_npy"], "--feature-layer", "nope", "-o", str(tmp_path))
    assert code == 2 and "--feature-layer 'nope' is not a layer" in err


def test_other_layouts_conventions_and_options(tmp_path, capsys, inputs) -> None:
    photo = np.load(inputs["photo_npy"])
    np.save(tmp_path / "chw.npy", np.moveaxis(photo, -1, 0))                       # PyTorch's (c, h, w)
    code, _, _ = run(capsys, "gradcam", E1, str(tmp_path / "chw.npy"), "--format", "CSS", "-o", str(tmp_path))
    assert code == 0 and png_size(str(tmp_path / "chw_gradcam.png")) == (454, 454)
    np.save(tmp_path / "one.npy", photo[..., None])                                # a batch of one: SSCB
    np.save(tmp_path / "two.npy", np.stack([photo, photo[::-1]], axis=-1))         # a batch of two
    code, out, _ = run(capsys, "gradcam", E1, str(tmp_path / "one.npy"), str(tmp_path / "two.npy"), "--format", "SSCB",
                       "--label", "daisy", "-o", str(tmp_path))
    assert code == 0 and png_size(str(tmp_path / "one_gradcam.png")) == (454, 454)
    assert not (tmp_path / "two_gradcam.png").exists() and "no PNG is written" in out
    assert np.load(tmp_path / "two_gradcam.npy").shape == (227, 227, 2)
    code, _, err = run(capsys, "gradcam", E1, str(tmp_path / "two.npy"), "--format", "SSCB")
    assert code == 2 and "give --label" in err
    code, out, _ = run(capsys, "gradcam", E1, inputs["photo_npy"], "--convention", "captum", "--no-png",
                       "-o", str(tmp_path / "captum"))
    assert code == 0 and "reduction layer 'pool10'" in out
    code, _, err = run(capsys, "gradcam", E1, inputs["photo_npy"], "--convention", "captum", "--upsampling", "none")
    assert code == 2 and "--convention matlab only" in err
    code, _, err = run(capsys, "gradcam", E1, inputs["photo_npy"], "--no-png", "--no-npy")
    assert code == 2 and "would write nothing" in err
    code, _, err = run(capsys, "gradcam", E1, inputs["photo_npy"], inputs["photo_png"], "-o", "x.png")
    assert code == 2 and "a file name is for one input" in err


def test_folders_and_output_names(tmp_path, capsys, inputs) -> None:
    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "a.npy", np.load(inputs["digit_npy"]))
    np.save(folder / "b.npy", np.load(inputs["digit_npy"])[::-1])
    (folder / "notes.txt").write_text("not an input")
    code, out, _ = run(capsys, "gradcam", E2, str(folder), "-o", str(tmp_path / "maps"), "--no-png")
    assert code == 0 and "summary: 2 inputs, 2 done, 0 failed" in out
    assert sorted(os.listdir(tmp_path / "maps")) == ["a_gradcam.npy", "b_gradcam.npy"]
    assert cli.output_stems(["x/a.png", "y/a.png", "a.npy", "b.csv"]) == ["a_png_0", "a_png_1", "a_npy", "b"]
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, "gradcam", E2, str(empty))
    assert code == 2 and "holds no input files" in err


@needs_pillow
def test_images_are_converted_and_resized_like_matlab(tmp_path, capsys) -> None:
    from PIL import Image
    photo = fixture_input("e1_squeezenet_mini__chelsea")
    Image.fromarray(photo).convert("L").resize((300, 200)).save(tmp_path / "grey.jpg")
    code, out, _ = run(capsys, "gradcam", E1, str(tmp_path / "grey.jpg"), "-o", str(tmp_path))
    assert code == 0 and "resized 200x300 -> 227x227 (MATLAB imresize, bicubic)" in out
    code, _, err = run(capsys, "gradcam", E3, str(tmp_path / "grey.jpg"))
    assert code == 2 and "the network takes sequences of 12 features" in err


def test_internal_errors_say_so_and_debug_shows_the_traceback(capsys, monkeypatch, inputs) -> None:
    def broken(*args, **kwargs):
        raise TypeError("a bug")

    monkeypatch.setattr(cli, "run_info", broken)
    monkeypatch.setitem(cli.HANDLERS, "info", broken)
    code, _, err = run(capsys, "info", E1)
    assert code == cli.EXIT_INTERNAL and "internal error: TypeError: a bug" in err and "--debug" in err
    for arguments in (["info", E1, "--debug"], ["--debug", "info", E1]):
        code, _, err = run(capsys, *arguments)
        assert code == cli.EXIT_INTERNAL and "Traceback" in err and 'raise TypeError("a bug")' in err


def test_every_subcommand_has_help_with_examples(capsys) -> None:
    for command in cli.HANDLERS:
        with pytest.raises(SystemExit) as stop:
            cli.main([command, "--help"])
        assert stop.value.code == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"refcam {command}" in text, command
