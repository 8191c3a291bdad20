"""Canary files: what a hostile case points at outside itself, and how to recognise their content.

A case file may name other files: HDF5 external links, virtual datasets and
external raw storage, ONNX external data. The runner puts canary files under
those names in three places: next to the case file, in the folder above it, and
in the worker's working folder. Every float they hold is :data:`CANARY_VALUE`:

* :data:`CANARY_HDF5` is the case's base file (the fixture it was made from)
  with every float dataset filled with the canary value, so a link to
  ``canary.h5:/weights/conv_1/weights`` finds an array of the right shape;
* :data:`CANARY_RAW` maps an item size to a raw file of canary values in that
  float type (HDF5 external storage, ONNX external data).

ONNX initializers may keep their data in the model's own folder: the legit
raw files (:data:`LEGIT_RAW`, not canaries) lie next to the case file for them.

A case read outside its file when (a) a loaded parameter, golden array or
prediction holds the canary value (:func:`holds_canary`), or (b) inotify saw a
canary file opened or read (the runner watches them, :mod:`tests.fuzz.inotify`).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np

CANARY_VALUE = 123456.789
CANARY_RTOL = 1e-6                     # float32 holds 123456.789 as 123456.7890625
CANARY_HDF5 = "canary.h5"
CANARY_RAW = {4: "canary32.bin", 8: "canary64.bin"}
RAW_CANARY_BYTES = 1024 ** 2           # more than any fixture tensor
LEGIT_RAW = {4: "data32.bin", 8: "data64.bin"}   # ONNX external data the model's folder may hold
LEGIT_VALUE = 0.5
LINK_PLACES = ("next", "above", "absolute")


def reference(name: str, place: str, target: Path) -> str:
    """How a case file at ``target`` names the canary ``name``: ``next`` to it, in the folder ``above``,
    or by the ``absolute`` path of the one above.

    >>> reference("canary.h5", "above", Path("/tmp/w/case/model.h5"))
    '../canary.h5'
    """
    if place == "next":
        return name
    if place == "above":
        return f"../{name}"
    return os.path.abspath(target.parent.parent / name)


def write_raw_canaries(folder: Path) -> list[Path]:
    """Write the raw canary files (one per float type) into ``folder``; return their paths."""
    paths = []
    for itemsize, name in CANARY_RAW.items():
        dtype = np.dtype(f"<f{itemsize}")
        path = folder / name
        np.full(RAW_CANARY_BYTES // itemsize, CANARY_VALUE, dtype=dtype).tofile(path)
        paths.append(path)
    return paths


def write_legit_raw(folder: Path) -> None:
    """Raw files of :data:`LEGIT_VALUE` next to the case file: ONNX initializers may keep their data there
    (the model's own folder), so reading them is allowed, and they are not canaries."""
    for itemsize, name in LEGIT_RAW.items():
        np.full(RAW_CANARY_BYTES // itemsize, LEGIT_VALUE, dtype=np.dtype(f"<f{itemsize}")).tofile(folder / name)


def write_hdf5_canary(base: Path | None, path: Path) -> None:
    """The HDF5 canary: ``base`` with every float dataset filled with the canary value; when ``base`` is None
    (an ONNX case) or HDF5 cannot edit it (a truncated fixture), a file with one dataset ``/canary``."""
    if base is not None:
        shutil.copyfile(base, path)
        try:
            with h5py.File(path, "r+") as f:
                f.visititems(_fill_floats)
            return
        except OSError:
            path.unlink()
    with h5py.File(path, "w") as f:
        f["canary"] = np.full(16, CANARY_VALUE)


def _fill_floats(name: str, item: object) -> None:
    if isinstance(item, h5py.Dataset) and item.dtype.kind == "f" and item.shape:
        item[...] = CANARY_VALUE


def holds_canary(array: object) -> bool:
    """Whether ``array`` is a float array holding the canary value anywhere."""
    values = np.asarray(array)
    if values.dtype.kind != "f" or values.size == 0:
        return False
    return bool(np.isclose(values, CANARY_VALUE, rtol=CANARY_RTOL, atol=0.0).any())
