"""The optional metadata of refcam's HDF5 file (schema version 2): class names and preprocessing.

A network with ``classes`` (beyond a classification layer's) or
``preprocessing`` is written as version 2 with the root attributes of those
names; every other network is written as version 1, as before, and version-1
files (the committed fixtures) still load.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

import refcam
from refcam.errors import FileFormatError, NetworkError, SchemaVersionError
from refcam.io.hdf5 import FIRST_SCHEMA_VERSION, SCHEMA_VERSION
from refcam.network import Network
from refcam.preprocess import PRESETS, Preprocessing

REPO = Path(__file__).resolve().parents[2]
E1 = REPO / "fixtures" / "e1_squeezenet_mini.h5"
E1_CLASSES = ["toy poodle", "tabby", "espresso", "space shuttle", "daisy"]


@pytest.fixture(scope="module")
def headless() -> Network:
    """E1 without its classification layer: a classifier ending in a softmax, as an ONNX export is."""
    return Network(refcam.load(E1).layers[:-1], name="e1 headless")


def saved(net: Network, path: Path) -> Path:
    refcam.save(net, path)
    return path


def edited(path: Path, **attributes: object) -> Path:
    with h5py.File(path, "r+") as f:
        for name, value in attributes.items():
            if value is None:
                del f.attrs[name]
            else:
                f.attrs[name] = value
    return path


def test_classes_and_preprocessing_round_trip_as_version_2(tmp_path: Path, headless: Network) -> None:
    spec = Preprocessing(resize="pad", channel_order="BGR", scale=0.5, mean=(1, 2, 3), std=(4,), pad_value=7)
    net = headless.with_metadata(classes=[c.upper() for c in E1_CLASSES], preprocessing=spec)
    path = saved(net, tmp_path / "meta.h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["schema_version"] == SCHEMA_VERSION == 2
        assert json.loads(f.attrs["classes"]) == [c.upper() for c in E1_CLASSES]
        assert json.loads(f.attrs["preprocessing"])["pad_value"] == 7.0
    loaded = refcam.load(path)
    assert loaded.classes == net.classes and loaded.preprocessing == spec
    assert refcam.load(saved(loaded, tmp_path / "again.h5")).preprocessing == spec
    assert (tmp_path / "meta.h5").read_bytes() == (tmp_path / "again.h5").read_bytes()


def test_a_network_without_metadata_is_written_as_version_1(tmp_path: Path, headless: Network) -> None:
    for net in (refcam.load(E1), headless):
        with h5py.File(saved(net, tmp_path / "plain.h5"), "r") as f:
            assert f.attrs["schema_version"] == FIRST_SCHEMA_VERSION
            assert "classes" not in f.attrs and "preprocessing" not in f.attrs
    assert refcam.load(E1).classes == E1_CLASSES and refcam.load(E1).preprocessing is None   # a committed v1 file


def test_preprocessing_alone_keeps_a_classification_layers_classes(tmp_path: Path) -> None:
    net = refcam.load(E1).with_metadata(preprocessing="imagenet-torchvision")
    path = saved(net, tmp_path / "e1.h5")
    with h5py.File(path, "r") as f:
        assert f.attrs["schema_version"] == 2 and "classes" not in f.attrs
    loaded = refcam.load(path)
    assert loaded.classes == E1_CLASSES and loaded.preprocessing == PRESETS["imagenet-torchvision"]


def test_version_1_ignores_extra_attributes_and_newer_versions_are_refused(tmp_path: Path, headless: Network) -> None:
    path = edited(saved(headless, tmp_path / "v1.h5"), classes=json.dumps(["x"] * 5))
    assert refcam.load(path).classes is None                     # version 1: extra root attributes are ignored
    edited(path, schema_version=np.int64(3))
    with pytest.raises(SchemaVersionError, match="schema_version 3 was written by a newer refcam"):
        refcam.load(path)


@pytest.mark.parametrize("attribute, value, error, message", [
    ("classes", json.dumps({"a": 1}), FileFormatError, "'classes' must be a JSON list of class names, found dict"),
    ("classes", "[1, 2", FileFormatError, "'classes' is not valid JSON"),
    ("classes", np.int64(3), FileFormatError, "'classes' must be one string"),
    ("classes", json.dumps(["a", "b"]), NetworkError, "2 class names .* for an output of 5 channels"),
    ("classes", json.dumps(["a"] * 5), NetworkError, r"5 class names \(1 distinct\)"),
    ("classes", json.dumps(["a", "b", "c", "d", 5]), NetworkError, "classes must be a sequence of non-empty strings"),
    ("preprocessing", json.dumps(["squash"]), FileFormatError, "must be a JSON object of preprocessing fields"),
    ("preprocessing", json.dumps({"resize": "zoom"}), FileFormatError, "resize 'zoom' is unknown"),
    ("preprocessing", json.dumps({"size": 3}), FileFormatError, "unknown preprocessing field"),
    ("preprocessing", json.dumps({"std": [0]}), FileFormatError, "std must be a positive finite number"),
    ("preprocessing", '{"scale": NaN}', FileFormatError, "is not valid JSON"),
])
def test_bad_metadata_is_a_refcam_error_naming_the_file(tmp_path: Path, headless: Network, attribute: str,
                                                         value: object, error: type, message: str) -> None:
    net = headless.with_metadata(classes=E1_CLASSES, preprocessing="none")
    path = edited(saved(net, tmp_path / "bad.h5"), **{attribute: value})
    with pytest.raises(error, match=message) as raised:
        refcam.load(path)
    assert str(path) in str(raised.value)


def test_network_checks_and_keeps_its_metadata(headless: Network) -> None:
    net = headless.with_metadata(classes=E1_CLASSES, preprocessing="keras-mobilenet")
    assert net.to_device("cpu").classes == E1_CLASSES
    assert net.to_device("cpu").preprocessing == PRESETS["keras-mobilenet"]
    assert net.with_metadata(preprocessing=None).classes == E1_CLASSES
    assert net.with_metadata(classes=None).classes is None and net.given_classes == E1_CLASSES
    with pytest.raises(NetworkError, match="differ from the classification layer's"):
        refcam.load(E1).with_metadata(classes=["a", "b", "c", "d", "e"])
    assert refcam.load(E1).with_metadata(classes=E1_CLASSES).given_classes is None
    with pytest.raises(NetworkError, match="preprocessing: .*preset 'imagenet' is unknown"):
        headless.with_metadata(preprocessing="imagenet")


def test_a_golden_file_keeps_the_networks_metadata(tmp_path: Path, headless: Network) -> None:
    net = headless.with_metadata(classes=E1_CLASSES, preprocessing="imagenet-torchvision")
    x = np.random.default_rng(0).uniform(0.0, 255.0, (227, 227, 3))
    refcam.golden.write(tmp_path / "x.golden.h5", net, x, "tabby")
    stored = refcam.golden.read(tmp_path / "x.golden.h5").network
    assert stored.classes == E1_CLASSES and stored.preprocessing == PRESETS["imagenet-torchvision"]
