"""The named cases of the hostile-files work for the Keras HDF5 importer, as fixed regression tests.

Each test copies a real Keras fixture (``fixtures/keras/``) into ``tmp_path``,
makes one hostile change with h5py, and checks that :func:`refcam.load` raises
the specific :class:`~refcam.errors.RefcamError` subclass with a message naming
what is wrong: links out of a weight path (external and soft), huge
declarations never written, fractional or overflowing sizes in
``model_config``, code-carrying and unknown activations, NaN/Inf weights and
malformed ``model_config`` JSON. The hostile files are made so that a loader
that followed them would succeed or read the data, so every test can fail.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pytest

import refcam
from refcam.errors import (DeclaredSizeError, ExternalReferenceError, FileFormatError, NonFiniteParameterError,
                           UnsafeContentError, UnsupportedOperationError)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "keras"
BRANCHES = "functional_branches.h5"                       # Keras 2 naming: stem/kernel:0
CONV_LAYERS = [(BRANCHES, "stem"), ("keras3_functional.h5", "conv")]   # Keras 3 naming: conv/kernel
Edit = Callable[[h5py.File], None]


def hostile_copy(tmp_path: Path, edit: Edit, base: str = BRANCHES) -> Path:
    """A copy of fixture ``base`` in ``tmp_path`` changed by ``edit(h5py.File)``."""
    path = tmp_path / f"hostile_{base}"
    shutil.copyfile(FIXTURES / base, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def config_edit(change: Callable[[dict], None], text: Callable[[str], str] = lambda s: s) -> Edit:
    """An edit rewriting ``model_config`` through ``change(config)``, then ``text(json_text)``."""
    def edit(f: h5py.File) -> None:
        config = json.loads(f.attrs["model_config"])
        change(config)
        f.attrs["model_config"] = text(json.dumps(config))
    return edit


def layer_config(config: dict, name: str) -> dict:
    return next(entry["config"] for entry in config["config"]["layers"] if entry["config"]["name"] == name)


def weight_names(f: h5py.File, layer: str) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in f[f"model_weights/{layer}"].attrs["weight_names"]]


@pytest.fixture
def data_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """``(file name, dataset)`` of every dataset read through h5py from now on."""
    reads: list[tuple[str, str]] = []
    original = h5py.Dataset.__getitem__

    def recording(self: h5py.Dataset, *args: Any, **kwargs: Any) -> Any:
        reads.append((os.path.basename(self.file.filename), self.name))
        return original(self, *args, **kwargs)
    monkeypatch.setattr(h5py.Dataset, "__getitem__", recording)
    return reads


@pytest.mark.parametrize("base", [BRANCHES, "keras3_functional.h5"])
def test_the_unedited_copies_load(tmp_path: Path, base: str) -> None:
    """The baseline: each refusal below comes from its one hostile change."""
    net = refcam.load(hostile_copy(tmp_path, lambda f: None, base))
    assert len(net.layers) > 5


# --- 1, 2: links out of a weight path -------------------------------------------------------------
def relink(f: h5py.File, kind: str, target: str, link: str, other: Path) -> None:
    """Move the object at ``target`` out of the way and reach it again from ``link`` by a ``kind`` link.

    ``external``: the object is copied into ``other`` (its real weights) and removed here;
    ``soft``: it moves to ``/stash`` in this file. h5py follows the new link (checked).
    """
    if kind == "external":
        with h5py.File(other, "w") as outside:
            f.copy(f[target], outside, "stash")
        del f[target]
        f[link] = h5py.ExternalLink(str(other), "/stash")
    else:
        f.move(target, "/stash")
        f[link] = h5py.SoftLink("/stash")
    assert f.get(link) is not None                      # the link resolves: a follower would load real weights


@pytest.mark.parametrize("base, layer", CONV_LAYERS)
@pytest.mark.parametrize("kind", ["external", "soft"])
@pytest.mark.parametrize("position", ["intermediate group", "last component", "layer group", "weights root"])
def test_a_link_anywhere_along_a_weight_path_is_refused_unread(tmp_path: Path, data_reads: list, base: str,
                                                               layer: str, kind: str, position: str) -> None:
    other = tmp_path / "other.h5"
    alias = "ext" if kind == "external" else "soft"

    def edit(f: h5py.File) -> None:
        names = weight_names(f, layer)                  # e.g. ['stem/kernel:0', 'stem/bias:0']
        if position == "intermediate group":            # model_weights/<layer>/ext -> the weights' group
            relink(f, kind, f"model_weights/{layer}/{layer}", f"model_weights/{layer}/{alias}", other)
            f[f"model_weights/{layer}"].attrs["weight_names"] = [f"{alias}/{n.split('/', 1)[1]}" for n in names]
        elif position == "last component":             # model_weights/<layer>/<layer>/kernel:0 -> the kernel
            kernel = f"model_weights/{layer}/{names[0]}"
            relink(f, kind, kernel, kernel, other)
        elif position == "layer group":
            relink(f, kind, f"model_weights/{layer}", f"model_weights/{layer}", other)
        else:
            relink(f, kind, "model_weights", "model_weights", other)
    path = hostile_copy(tmp_path, edit, base)
    with h5py.File(path) as f:
        names = weight_names(f, layer) if position != "weights root" else []
    link = {"intermediate group": f"/model_weights/{layer}/{alias}",
            "last component": f"/model_weights/{layer}/{names[0] if names else ''}",
            "layer group": f"/model_weights/{layer}", "weights root": "/model_weights"}[position]
    data_reads.clear()
    with pytest.raises(ExternalReferenceError, match=rf"{re.escape(link)} is "
                                                     rf"{'an external' if kind == 'external' else 'a soft'} link "
                                                     r"\(to '/stash'.*only hard links"):
        refcam.load(path)
    assert not [read for read in data_reads if read[0] == other.name or read[1].startswith("/stash")]


def test_a_kernel_with_external_raw_storage_is_refused(tmp_path: Path) -> None:
    raw = tmp_path / "kernel.raw"

    def edit(f: h5py.File) -> None:
        kernel = f["model_weights/stem/stem/kernel:0"]
        values = kernel[()]
        raw.write_bytes(values.tobytes())
        del f["model_weights/stem/stem/kernel:0"]
        f["model_weights/stem/stem"].create_dataset("kernel:0", shape=values.shape, dtype=values.dtype,
                                                     external=[(str(raw), 0, values.nbytes)])
    with pytest.raises(ExternalReferenceError, match=r"kernel:0 of layer 'stem'.*outside the file"):
        refcam.load(hostile_copy(tmp_path, edit))


# --- 3: huge declarations, never written ------------------------------------------------------------
HUGE_FILTERS = 2 ** 27                                     # kernel (3, 3, 4, 2**27): 4.8e9 values, 38 GiB in float64


def huge_kernel(shape: tuple[int, ...], compression: str | None, filters: int | None = None) -> Edit:
    """Replace stem's kernel by a chunked float32 dataset of ``shape`` that is never written."""
    def edit(f: h5py.File) -> None:
        del f["model_weights/stem/stem/kernel:0"]
        f["model_weights/stem/stem"].create_dataset("kernel:0", shape=shape, dtype=np.float32, chunks=True,
                                                     compression=compression)
        if filters is not None:
            config_edit(lambda config: layer_config(config, "stem").update(filters=filters))(f)
    return edit


@pytest.mark.parametrize("compression", [None, "gzip"])
@pytest.mark.parametrize("shape, filters, budget, message", [
    ((10 ** 9,), None, None, r"declares shape \(1000000000,\).*over the limit of 2 GiB"),
    ((3, 3, 4, HUGE_FILTERS), HUGE_FILTERS, None,
     rf"declares shape \(3, 3, 4, {HUGE_FILTERS}\).*over the limit"),
    ((3, 3, 4, HUGE_FILTERS), HUGE_FILTERS, 2 ** 40,
     r"declares 19327352832 bytes of data (but the file stores 0|from 0 stored)"),
], ids=["flat-1e9", "layer-shape-over-budget", "layer-shape-within-budget-unwritten"])
def test_a_huge_unwritten_kernel_is_refused_before_it_is_read(tmp_path: Path, data_reads: list, shape: tuple,
                                                              filters: int | None, budget: int | None,
                                                              message: str, compression: str | None) -> None:
    path = hostile_copy(tmp_path, huge_kernel(shape, compression, filters))
    assert path.stat().st_size < 1024 ** 2                 # the file stores none of the declared data
    data_reads.clear()
    with pytest.raises(DeclaredSizeError, match=rf"/model_weights/stem/stem/kernel:0 of layer 'stem'.*{message}"):
        refcam.load(path) if budget is None else refcam.load(path, max_tensor_bytes=budget)
    assert ("hostile_" + BRANCHES, "/model_weights/stem/stem/kernel:0") not in data_reads


# --- 4: fractional sizes in model_config -------------------------------------------------------------
@pytest.mark.parametrize("layer, key, value", [
    ("stem", "strides", [1.5, 1.5]), ("stem", "strides", 1.5), ("hidden", "units", 10.5),
    ("stem", "kernel_size", 2.5), ("stem", "kernel_size", [2.5, 3]), ("stem", "filters", 8.5),
    ("stem", "dilation_rate", [1, 1.5]), ("pool", "pool_size", [2, 2.5]), ("hidden", "units", 1e20),
    ("stem", "strides", [True, True]), ("hidden", "units", "10"),
])
def test_fractional_or_non_integer_sizes_are_refused_not_truncated(tmp_path: Path, layer: str, key: str,
                                                                   value: Any) -> None:
    path = hostile_copy(tmp_path, config_edit(lambda config: layer_config(config, layer).update({key: value})))
    with pytest.raises(FileFormatError, match=rf"layer '{layer}' \(\w+\) has a malformed config: '{key}' is "
                                              rf"{re.escape(repr(value))}; it must be an integer"):
        refcam.load(path)


def test_integral_float_sizes_are_the_same_model(tmp_path: Path) -> None:
    """The documented counterpart: 3.0 is 3, so the refusals above are about fractions, not floats."""
    def change(config: dict) -> None:
        layer_config(config, "stem").update(kernel_size=[3.0, 3.0], strides=[1.0, 1.0])
        layer_config(config, "hidden").update(units=10.0)
    x = np.linspace(0.0, 1.0, 9 * 10 * 4).reshape(9, 10, 4)
    edited = refcam.load(hostile_copy(tmp_path, config_edit(change)))
    np.testing.assert_array_equal(edited.predict(x), refcam.load(FIXTURES / BRANCHES).predict(x))


# --- 5: activations that are code, or unknown ---------------------------------------------------------
@pytest.mark.parametrize("layer, activation, error, message", [
    ("stem", {"class_name": "Lambda"}, UnsafeContentError, r"'stem' \(activation .*'Lambda'.* is a Python lambda\)"),
    ("gate", {"class_name": "__lambda__", "config": {"code": "x"}}, UnsafeContentError, r"'gate' .*Python lambda"),
    ("stem", {"class_name": "function", "config": "relu"}, UnsafeContentError,
     r"'stem' .*custom function from module None"),
    ("hidden", {"module": "builtins", "class_name": "function", "config": "eval"}, UnsafeContentError,
     r"'hidden' .*custom function from module 'builtins'"),
    ("stem", "mish", UnsupportedOperationError, r"'stem' \(Conv2D\): activation 'mish' is not one of"),
    ("gate", "", UnsupportedOperationError, r"'gate' \(Activation\): activation '' is not one of"),
    ("stem", {"class_name": "ReLU", "config": {}}, UnsupportedOperationError,
     r"'stem' \(Conv2D\): activation .*'ReLU'.* is not a serialised Keras activation"),
    ("hidden", 7, UnsupportedOperationError, r"'hidden' \(Dense\): activation 7 is not a serialised"),
], ids=["lambda-no-config", "keras3-lambda", "function-no-module", "builtins-eval", "unknown-name",
        "empty-name", "layer-object", "number"])
def test_code_carrying_or_unknown_activations_are_refused_not_linear(tmp_path: Path, layer: str, activation: Any,
                                                                     error: type, message: str) -> None:
    path = hostile_copy(tmp_path, config_edit(lambda config: layer_config(config, layer).update(
        activation=activation)))
    with pytest.raises(error, match=message):
        refcam.load(path)


# --- 6: NaN and Inf weights -----------------------------------------------------------------------------
@pytest.mark.parametrize("base, dataset, layer", [
    (BRANCHES, "stem/stem/kernel:0", "stem"), (BRANCHES, "hidden/hidden/bias:0", "hidden"),
    (BRANCHES, "right_bn/right_bn/moving_variance:0", "right_bn"),
    ("keras3_functional.h5", "conv/conv/kernel", "conv")])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_weight_names_its_dataset(tmp_path: Path, base: str, dataset: str, layer: str,
                                               bad: float) -> None:
    def edit(f: h5py.File) -> None:
        weights = f[f"model_weights/{dataset}"]
        values = weights[()]
        values.flat[values.size // 2] = bad
        weights[...] = values
    with pytest.raises(NonFiniteParameterError, match=rf"/model_weights/{re.escape(dataset)} of layer "
                                                      rf"'{layer}' .*holds 1 NaN or Inf value"):
        refcam.load(hostile_copy(tmp_path, edit, base))


# --- 7: numbers beyond float range in the JSON text -----------------------------------------------------
PLACEHOLDER = "__RAW_NUMBER__"


@pytest.mark.parametrize("layer, key, raw, error, message", [
    ("hidden", "units", "1e309", FileFormatError, r"'hidden' \(Dense\) has a malformed config: 'units' is inf"),
    ("stem", "strides", "[1e309, 1]", FileFormatError, r"'stem' \(Conv2D\) has a malformed config: 'strides'"),
    ("right_bn", "epsilon", "1e309", NonFiniteParameterError, r"'right_bn' \(BatchNormalization\) has epsilon=inf"),
    ("right_bn", "epsilon", "-1e309", NonFiniteParameterError, r"'right_bn' .*epsilon=-inf"),
    ("leaky_relu", "negative_slope", "NaN", NonFiniteParameterError, r"'leaky_relu' \(ReLU\) has negative_slope=nan"),
    ("image", "batch_input_shape", "[null, 1e309, 10, 4]", FileFormatError,
     r"'image' \(InputLayer\) has a malformed config: 'batch_input_shape'"),
    ("hidden", "units", "1" + "0" * 400, FileFormatError, r"'hidden' .*'units' is 1000.*it must be an integer"),
    ("right_bn", "epsilon", "1" + "0" * 400, FileFormatError, r"'right_bn' .*'epsilon' is .*it must be a number"),
    ("hidden", "units", "9" * 5000, FileFormatError, r"'model_config' is not valid JSON"),
], ids=["units-1e309", "strides-1e309", "epsilon-1e309", "epsilon--1e309", "slope-NaN", "input-shape-1e309",
        "units-10^400", "epsilon-10^400", "units-5000-digits"])
def test_out_of_range_json_numbers_are_refcam_errors(tmp_path: Path, layer: str, key: str, raw: str,
                                                     error: type, message: str) -> None:
    edit = config_edit(lambda config: layer_config(config, layer).update({key: PLACEHOLDER}),
                       lambda text: text.replace(json.dumps(PLACEHOLDER), raw))
    with pytest.raises(error, match=message):
        refcam.load(hostile_copy(tmp_path, edit))


# --- 8: model_config that is not a Keras architecture -----------------------------------------------------
def set_attribute(value: Any) -> Edit:
    def edit(f: h5py.File) -> None:
        f.attrs["model_config"] = value
    return edit


def drop_layer_key(key: str, value: Any = None) -> Edit:
    """Layer ``stem``'s entry without ``key`` (or with it set to ``value``)."""
    def change(config: dict) -> None:
        entry = next(e for e in config["config"]["layers"] if e.get("name") == "stem")
        entry.pop(key) if value is None else entry.update({key: value})
    return config_edit(change)


@pytest.mark.parametrize("edit, message", [
    (set_attribute('{"class_name": "Functional", "config": '), r"'model_config' is not valid JSON"),
    (set_attribute(""), r"'model_config' is not valid JSON"),
    (set_attribute("[1, 2]"), r"'model_config' must be a JSON object .*found '\[1, 2\]'"),
    (set_attribute('"Functional"'), r"'model_config' must be a JSON object"),
    (set_attribute('{"class_name": "Functional"}'), r"'model_config' must be a JSON object .*and a 'config'"),
    (set_attribute('{"class_name": 3, "config": {}}'), r"'model_config' must be a JSON object with a string"),
    (set_attribute('{"class_name": "Functional", "class_name": "Sequential", "config": {}}'),
     r"the key 'class_name' more than once"),
    (set_attribute("[" * 100_000), r"nests JSON arrays or objects too deeply"),
    (set_attribute(np.int64(5)), r"'model_config' holds int64 values, not strings"),
    (set_attribute(np.bytes_(b'{"class_name": "\xff"}')), r"'model_config' is not valid UTF-8"),
    (set_attribute(["{}", "{}"]), r"'model_config' holds 2 strings"),
    (drop_layer_key("config"), r"a layer entry of class 'Conv2D' has no 'config' object"),
    (drop_layer_key("config", [8, 3]), r"a layer entry of class 'Conv2D' has no 'config' object"),
    (drop_layer_key("class_name"), r"no list of layers with string 'class_name' entries"),
    (config_edit(lambda config: config["config"].update(layers={"stem": {}})), r"no list of layers"),
    (config_edit(lambda config: config.update(config=[])), r"a functional model's 'config' must be a JSON object"),
], ids=["truncated-json", "empty", "json-list", "json-string", "no-config", "class-name-number", "duplicate-key",
        "deep-nesting", "int-attribute", "not-utf8", "two-strings", "layer-without-config", "layer-config-list",
        "layer-without-class", "layers-not-list", "model-config-list"])
def test_a_model_config_that_is_not_an_architecture_is_a_file_format_error(tmp_path: Path, edit: Edit,
                                                                           message: str) -> None:
    with pytest.raises(FileFormatError, match=message):
        refcam.load(hostile_copy(tmp_path, edit))
