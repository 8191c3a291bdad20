"""Crafted refcam HDF5 files: links along a path, data outside the file, declarations that would exhaust memory.

Each test builds the hostile file from a valid network and checks the specific
refcam error; the memory tests also check that nothing large was read.
"""
from __future__ import annotations

import json
import resource
from pathlib import Path

import h5py
import numpy as np
import pytest

import refcam
import refcam.io
from refcam import layers as L
from refcam.errors import (DeclaredSizeError, ExternalReferenceError, FileFormatError, NonFiniteParameterError,
                           WeightShapeError)
from refcam.network import Network
from tests.io.test_hdf5 import _edit, _edit_topology, _entry, _saved, volume_3d

CANARY = 123456.789


def _canary_file(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f["bias"] = np.full(3, CANARY)
        f["fc/bias"] = np.full(3, CANARY)
    return path


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- links and storage ------------------------------------------------------------------------
@pytest.mark.parametrize("level", ["weights", "weights/fc"])
def test_an_external_link_anywhere_along_a_weight_path_is_refused(tmp_path: Path, rng: np.random.Generator,
                                                                  level: str) -> None:
    other = _canary_file(tmp_path / "other.h5")
    target = "/" if level == "weights" else "/fc"

    def link(f: h5py.File) -> None:
        del f[level]                                          # /weights or /weights/fc -> the other file
        f[level] = h5py.ExternalLink(str(other), target)
    path = _edit(_saved(tmp_path, rng), link)
    with pytest.raises(ExternalReferenceError, match=f"/{level} is an external link"):
        refcam.load(path)


def test_a_soft_link_to_an_intermediate_group_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    def link(f: h5py.File) -> None:
        del f["weights/fc"]
        f["weights/fc"] = h5py.SoftLink("/weights/conv")
    path = _edit(_saved(tmp_path, rng), link)
    with pytest.raises(ExternalReferenceError, match="/weights/fc is a soft link"):
        refcam.load(path)


def test_a_virtual_dataset_is_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    other = _canary_file(tmp_path / "other.h5")

    def virtual(f: h5py.File) -> None:
        del f["weights/fc/bias"]
        layout = h5py.VirtualLayout(shape=(3,), dtype="f8")
        layout[:] = h5py.VirtualSource(str(other), "bias", shape=(3,))
        f["weights/fc"].create_virtual_dataset("bias", layout)
    path = _edit(_saved(tmp_path, rng), virtual)
    with pytest.raises(ExternalReferenceError, match="outside the file"):
        refcam.load(path)


# --- sizes checked before reading -------------------------------------------------------------
@pytest.mark.parametrize("elements", [10 ** 9, 10 ** 12])
def test_a_huge_never_written_dataset_is_refused_before_it_is_read(tmp_path: Path, rng: np.random.Generator,
                                                                   elements: int) -> None:
    def huge(f: h5py.File) -> None:
        del f["weights/fc/weights"]
        f["weights/fc"].create_dataset("weights", shape=(elements,), dtype="f8", chunks=(1024,))
    path = _edit(_saved(tmp_path, rng), huge)
    assert path.stat().st_size < 100_000
    with pytest.raises(DeclaredSizeError, match="declares|over the limit"):
        refcam.load(path)
    assert _peak_rss_mib() < 2048


def test_a_written_dataset_of_the_wrong_shape_is_refused_before_it_is_read(tmp_path: Path,
                                                                           rng: np.random.Generator) -> None:
    def big(f: h5py.File) -> None:
        del f["weights/fc/weights"]
        f["weights/fc"].create_dataset("weights", shape=(3, 4_000_000), dtype="f8", chunks=(1, 1 << 16),
                                       compression="gzip", fillvalue=0.0)
        f["weights/fc/weights"][0, :] = 1.0                   # every chunk of row 0 written, rows 1-2 not
    path = _edit(_saved(tmp_path, rng), big)
    before = _peak_rss_mib()
    with pytest.raises((WeightShapeError, DeclaredSizeError)):
        refcam.load(path)
    assert _peak_rss_mib() - before < 64                       # the 96 MB array was never materialised


def test_the_size_budget_is_configurable(tmp_path: Path, rng: np.random.Generator) -> None:
    path = _saved(tmp_path, rng)
    assert refcam.load(path, max_tensor_bytes=10_000).name == "series 2-D"
    with pytest.raises(DeclaredSizeError, match=r"/weights/input/mean declares shape \(2, 6, 6\) \(72 elements, "
                                                 r"576 B in float64\), over the limit of 300 B"):
        refcam.load(path, max_tensor_bytes=300)
    with pytest.raises(DeclaredSizeError, match="max_tensor_bytes must be a positive integer"):
        refcam.load(path, max_tensor_bytes=0)


def test_non_finite_weights_name_the_dataset(tmp_path: Path, rng: np.random.Generator) -> None:
    def poison(f: h5py.File) -> None:
        f["weights/conv/bias"][1] = np.inf
    path = _edit(_saved(tmp_path, rng), poison)
    with pytest.raises(NonFiniteParameterError, match="/weights/conv/bias holds 1 NaN or Inf"):
        refcam.load(path)


# --- topology -----------------------------------------------------------------------------------
def test_layers_out_of_topological_order_are_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    def swap(topology: dict) -> None:
        layers = topology["layers"]
        layers[3], layers[4] = layers[4], layers[3]           # pool before the relu it reads
    path = _edit_topology(_saved(tmp_path, rng), swap)
    with pytest.raises(FileFormatError, match="topological order"):
        refcam.load(path)


def test_three_padding_numbers_for_a_3d_convolution_are_refused(tmp_path: Path, rng: np.random.Generator) -> None:
    net = volume_3d(rng)
    conv = next(layer for layer in net.layers if isinstance(layer, L.Convolution3dLayer))
    path = tmp_path / "volume.h5"
    refcam.io.save(net, path)

    def three(topology: dict) -> None:
        _entry(topology, conv.name)["properties"]["padding"] = [1, 1, 1]
    _edit_topology(path, three)
    with pytest.raises(FileFormatError, match="has 3 number\\(s\\); a file gives one number or all 6"):
        refcam.load(path)


def test_one_number_still_stands_for_every_slot(tmp_path: Path, rng: np.random.Generator) -> None:
    def scalar(topology: dict) -> None:
        _entry(topology, "pool")["properties"]["stride"] = 2
    path = _edit_topology(_saved(tmp_path, rng), scalar)
    assert refcam.load(path).layer("pool").stride == (2, 2)


@pytest.mark.parametrize("token", ["1e309", "-1e309"])
def test_numbers_beyond_float_range_in_the_topology_are_refused(tmp_path: Path, rng: np.random.Generator,
                                                                token: str) -> None:
    def raw(f: h5py.File) -> None:
        text = f.attrs["topology"]
        f.attrs["topology"] = text.replace('"epsilon": 0.001', f'"epsilon": {token}')
    path = _edit(_saved(tmp_path, rng), raw)
    with pytest.raises(FileFormatError, match="beyond the float64 range"):
        refcam.load(path)


# --- what is not a file ---------------------------------------------------------------------------
def test_a_folder_is_a_file_format_error(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="is a folder, not a file"):
        refcam.load(tmp_path)
    with pytest.raises(FileFormatError, match="is a folder, not a file"):
        refcam.golden.read(tmp_path)


def test_a_device_is_a_file_format_error() -> None:
    with pytest.raises(FileFormatError, match="not a regular file"):
        refcam.load("/dev/null")


def test_a_valid_network_still_round_trips(tmp_path: Path, rng: np.random.Generator) -> None:
    net = Network([L.ImageInputLayer(name="in", input_size=(4, 4, 1), normalization="rescale-zero-one",
                                     min=np.zeros(()), max=np.ones(())),
                   L.Convolution2dLayer(name="conv", inputs=("in",), filter_size=3, num_filters=1,
                                        weights=rng.standard_normal((1, 1, 3, 3))),
                   L.RegressionLayer(name="out", inputs=("conv",))])
    path = tmp_path / "net.h5"
    refcam.io.save(net, path)
    x = rng.uniform(size=(4, 4, 1))
    assert np.array_equal(refcam.load(path).predict(x), net.predict(x))
    assert json.loads(h5py.File(path, "r").attrs["topology"])["layers"][0]["kind"] == "image_input"
