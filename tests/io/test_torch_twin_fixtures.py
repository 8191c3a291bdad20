"""The committed twins of modern architectures (``fixtures/torch_twins/``), without torch: forward and raw map.

Each twin was converted once by ``refcam.from_torch`` (a refcam HDF5 file) and,
for the ConvNeXt, U-Net and FCN twins, by both default ONNX exports
(``fixtures/make_torch_twin_fixtures.py``); the goldens are PyTorch's in
float64. The error ``max |refcam - torch| / max |torch|`` is within
``CROSS["rtol"]`` where the file holds the model's own numbers (every
``from_torch`` file), within ``F32["rtol"]`` where the exporter rounded them
to float32. Reading the ONNX files needs the ``onnx`` package.
"""
from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pytest

import refcam
from tests.tolerances import CROSS, F32

FOLDER = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "torch_twins")
with open(os.path.join(FOLDER, "manifest.json")) as manifest_file:
    ENTRIES = {entry["file"]: entry for entry in json.load(manifest_file)["files"]}
FORMATS = {3: "BCT", 4: "BCSS", 5: "BCSSS"}
BOUNDS = {"float64": CROSS["rtol"], "float32": F32["rtol"]}
HAS_ONNX = importlib.util.find_spec("onnx") is not None


def relative_error(found: np.ndarray, expected: np.ndarray) -> float:
    assert found.shape == expected.shape, (found.shape, expected.shape)
    return float(np.max(np.abs(found - expected)) / np.max(np.abs(expected)))


def load(entry: dict) -> refcam.network.Network:
    if entry["file"].endswith(".onnx") and not HAS_ONNX:
        pytest.skip("reading ONNX files needs the onnx package")
    return refcam.load(os.path.join(FOLDER, entry["file"]))


def golden(entry: dict, key: str) -> np.ndarray:
    return np.load(os.path.join(FOLDER, entry[key]))


def test_every_twin_has_a_from_torch_file_and_the_decoders_both_exports() -> None:
    routes = {}
    for entry in ENTRIES.values():
        routes.setdefault(entry["model"], set()).add(entry["route"])
    assert len(routes) == 11
    assert all("from_torch" in found for found in routes.values())
    assert {m for m, found in routes.items() if {"torchscript", "dynamo"} <= found} == {
        "convnext", "unet_transposed", "unet_bilinear", "fcn"}


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_forward_matches_pytorch_float64(name: str) -> None:
    entry = ENTRIES[name]
    x = golden(entry, "input")
    found = load(entry).predict(x, format=FORMATS[x.ndim])
    assert relative_error(found, golden(entry, "output")) <= BOUNDS[entry["tolerance"]]


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_raw_gradcam_map_matches_pytorch_float64(name: str) -> None:
    """The class score summed over positions (refcam's label rule for a map-valued output)."""
    entry = ENTRIES[name]
    x = golden(entry, "input")
    expected = golden(entry, "gradcam")
    assert expected.max() > 0.0
    result = refcam.gradcam(load(entry), x[0], entry["label"], feature_layer=entry["feature_layer"],
                            format=FORMATS[x.ndim][1:], upsampling="none")
    found = np.asarray(result.raw_map)
    if x.ndim == 3:                                  # a sequence's map is (1, T), MATLAB's layout
        assert found.shape == (1,) + expected.shape
        found = found[0]
    assert relative_error(found, expected) <= BOUNDS[entry["tolerance"]]


def test_from_torch_files_name_the_feature_module_by_its_path() -> None:
    """``from_torch`` names layers by module path, so the twin's feature module is a layer or an alias."""
    for entry in ENTRIES.values():
        if entry["route"] == "from_torch":
            net = load(entry)
            assert entry["feature_layer"] in set(net.layer_names) | set(net.aliases), entry["file"]
