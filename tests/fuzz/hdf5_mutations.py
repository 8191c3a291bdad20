"""Structural HDF5 mutations shared by refcam networks, goldens and Keras files.

For object paths (``/weights/conv_1/weights``) :func:`structure_mutations`
spoils every level of each path and, for the paths it is asked to, the dataset
itself:

* every level (``/weights``, ``/weights/conv_1``, the dataset): an external
  link to the canary (next to the file, above it, by absolute path), a soft
  link to itself, a soft link to an external link, a soft link to a sibling;
* the dataset: external raw storage and a virtual dataset reading the canary;
  a never-written dataset declaring 10**9 or 10**12 elements (chunked, gzip
  or contiguous); the wrong HDF5 type (integer, strings, compound, bool,
  complex, float16, references, scalar, null dataspace, big-endian floats);
  NaN and Inf values; a zero-size or an extra axis.

The base file is copied and edited in place with h5py; objects are written
without timestamps, so the same case gives the same bytes.
"""
from __future__ import annotations

import math
import shutil
from functools import partial
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from . import canary
from .case import Make, Mutation

HUGE_ELEMENTS = (10 ** 9, 10 ** 12)
CHUNK_ELEMENTS = 4096
Edit = Callable[[h5py.File, Path], None]
"""Changes an open copy of the base file; the second argument is the case file's path (for absolute links)."""
Build = Callable[[tuple[int, ...], h5py.File], "np.ndarray | np.generic | h5py.Empty"]
"""Makes a replacement dataset's data for the base shape (the open file, for object references)."""


def hdf5_edit(edit: Edit) -> Make:
    """A make function that copies the base file to the target and applies ``edit`` to it."""
    return partial(_copy_and_edit, edit)


def _copy_and_edit(edit: Edit, base: Path, target: Path) -> None:
    shutil.copyfile(base, target)
    with h5py.File(target, "r+") as f:
        edit(f, target)


def dataset_paths(group: h5py.Group) -> list[str]:
    """The absolute paths of every dataset under ``group``, in h5py's (alphabetical) order."""
    found: list[str] = []

    def collect(name: str, item: object) -> None:
        if isinstance(item, h5py.Dataset):
            found.append(f"{group.name}/{name}")
    group.visititems(collect)
    return found


def structure_mutations(base: Path, link_paths: list[str], data_paths: list[str]) -> list[Mutation]:
    """Link mutations at every level of each path (each level once), then dataset mutations of ``data_paths``."""
    with h5py.File(base, "r") as f:
        levels = list(dict.fromkeys(level for path in link_paths + data_paths for level in _levels(path)))
        found = [mutation for level in levels for mutation in link_mutations(level, _sibling(f, level))]
        for path in data_paths:
            found += dataset_mutations(path, f[path].shape, f[path].dtype)
    return found


def _levels(path: str) -> list[str]:
    parts = path.strip("/").split("/")
    return ["/" + "/".join(parts[:n]) for n in range(1, len(parts) + 1)]


def _sibling(f: h5py.File, level: str) -> str | None:
    """Another object of the same type in the same group, for an in-file soft link."""
    parent, _, name = level.rpartition("/")
    group = f[parent or "/"]
    wanted = type(f[level])
    others = [key for key in sorted(group) if key != name and isinstance(group.get(key), wanted)]
    return f"{parent}/{others[0]}" if others else None


# --- links ----------------------------------------------------------------------------------------
def link_mutations(level: str, sibling: str | None) -> list[Mutation]:
    """External links to the canary at ``level``, and soft links: to itself, through an external link, to a sibling."""
    found = [Mutation("external-link", f"{level} -> external link to {place} {canary.CANARY_HDF5}:{level}",
                      hdf5_edit(partial(_external_link, level, place))) for place in canary.LINK_PLACES]
    found.append(Mutation("soft-link", f"{level} -> soft link to itself", hdf5_edit(partial(_soft_link, level, level))))
    found.append(Mutation("soft-link", f"{level} -> soft link to /canary_link, an external link to "
                          f"{canary.CANARY_HDF5}:{level}", hdf5_edit(partial(_soft_to_external, level))))
    if sibling is not None:
        found.append(Mutation("soft-link", f"{level} -> soft link to {sibling}",
                              hdf5_edit(partial(_soft_link, level, sibling))))
    return found


def _external_link(level: str, place: str, f: h5py.File, target: Path) -> None:
    del f[level]
    f[level] = h5py.ExternalLink(canary.reference(canary.CANARY_HDF5, place, target), level)


def _soft_link(level: str, destination: str, f: h5py.File, target: Path) -> None:
    del f[level]
    f[level] = h5py.SoftLink(destination)


def _soft_to_external(level: str, f: h5py.File, target: Path) -> None:
    f["canary_link"] = h5py.ExternalLink(canary.CANARY_HDF5, level)
    _soft_link(level, "/canary_link", f, target)


# --- a dataset's storage, declaration, type and values --------------------------------------------
def dataset_mutations(path: str, shape: tuple[int, ...], dtype: np.dtype) -> list[Mutation]:
    """Every mutation of the dataset at ``path`` (its base shape and dtype given)."""
    dtype = np.dtype(dtype) if np.dtype(dtype).kind == "f" else np.dtype("<f8")
    found = []
    for place in canary.LINK_PLACES:
        found.append(Mutation("external-storage", f"{path} stored in {place} {canary.CANARY_RAW[dtype.itemsize]}",
                              hdf5_edit(partial(_external_storage, path, shape, dtype, place))))
        found.append(Mutation("virtual-dataset", f"{path} a virtual dataset of {place} {canary.CANARY_HDF5}:{path}",
                              hdf5_edit(partial(_virtual, path, shape, dtype, place))))
    for declared, layout in _huge_declarations(shape):
        found.append(Mutation("huge-declared", f"{path} never written, declared {declared} ({layout})",
                              hdf5_edit(partial(_declare, path, declared, dtype, layout))))
    for name, build in WRONG_TYPES.items():
        found.append(Mutation("dtype", f"{path} replaced by {name} data (base shape {shape})",
                              hdf5_edit(partial(_replace_data, path, shape, build))))
    for name, spoil in NON_FINITE.items():
        found.append(Mutation("non-finite", f"{path} with {name}", hdf5_edit(partial(_spoil_values, path, spoil))))
    for declared in ((0,) + tuple(shape[1:]), (1,) + tuple(shape)):
        found.append(Mutation("shape", f"{path} of shape {declared} instead of {shape}",
                              hdf5_edit(partial(_replace_data, path, declared, _ones))))
    return found


def _huge_declarations(shape: tuple[int, ...]) -> list[tuple[tuple[int, ...], str]]:
    rest = math.prod(shape[1:]) if len(shape) > 1 else 1
    same_rank = (-(-HUGE_ELEMENTS[0] // rest),) + tuple(shape[1:])
    return [((HUGE_ELEMENTS[0],), "chunked"), ((HUGE_ELEMENTS[1],), "chunked"), (same_rank, "chunked"),
            ((HUGE_ELEMENTS[0],), "gzip"), ((HUGE_ELEMENTS[0],), "contiguous")]


def _external_storage(path: str, shape: tuple[int, ...], dtype: np.dtype, place: str, f: h5py.File,
                      target: Path) -> None:
    raw = canary.reference(canary.CANARY_RAW[dtype.itemsize], place, target)
    del f[path]
    f.create_dataset(path, shape=shape, dtype=dtype.newbyteorder("<"),
                     external=[(raw, 0, math.prod(shape) * dtype.itemsize)], track_times=False)


def _virtual(path: str, shape: tuple[int, ...], dtype: np.dtype, place: str, f: h5py.File, target: Path) -> None:
    # h5py's create_virtual_dataset stamps a modification time; the low-level call does not
    del f[path]
    space = h5py.h5s.create_simple(shape)
    plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    plist.set_obj_track_times(False)
    plist.set_virtual(space, canary.reference(canary.CANARY_HDF5, place, target).encode(), path.encode(), space)
    h5py.h5d.create(f.id, path.encode(), h5py.h5t.py_create(dtype), space, dcpl=plist)


def _declare(path: str, shape: tuple[int, ...], dtype: np.dtype, layout: str, f: h5py.File, target: Path) -> None:
    del f[path]
    options = {"chunks": None} if layout == "contiguous" else {
        "chunks": (min(CHUNK_ELEMENTS, shape[0]),) + (1,) * (len(shape) - 1),
        "compression": "gzip" if layout == "gzip" else None}
    f.create_dataset(path, shape=shape, dtype=dtype, track_times=False, **options)


def _replace_data(path: str, shape: tuple[int, ...], build: Build, f: h5py.File, target: Path) -> None:
    del f[path]
    data = build(shape, f)
    if isinstance(data, np.ndarray) and h5py.check_ref_dtype(data.dtype) is not None:
        f.create_dataset(path, data=data, dtype=h5py.ref_dtype, track_times=False)
    elif isinstance(data, np.ndarray) and data.dtype == object:
        f.create_dataset(path, data=data, dtype=h5py.string_dtype(), track_times=False)
    else:
        f.create_dataset(path, data=data, track_times=False)


def _ones(shape: tuple[int, ...], f: h5py.File) -> np.ndarray:
    return np.ones(shape)


WRONG_TYPES: dict[str, Build] = {
    "int64": lambda shape, f: np.arange(math.prod(shape), dtype=np.int64).reshape(shape),
    "variable-length string": lambda shape, f: np.full(shape, "junk", dtype=object),
    "fixed-length string": lambda shape, f: np.full(shape, b"junk", dtype="S4"),
    "compound": lambda shape, f: np.zeros(shape, dtype=[("a", "<f8"), ("b", "<i4")]),
    "bool": lambda shape, f: np.ones(shape, dtype=bool),
    "complex": lambda shape, f: np.ones(shape, dtype=np.complex128),
    "float16": lambda shape, f: np.ones(shape, dtype=np.float16),
    "big-endian float64": lambda shape, f: np.ones(shape, dtype=">f8"),
    "object reference": lambda shape, f: np.full(shape, f.ref, dtype=h5py.ref_dtype),
    "scalar": lambda shape, f: np.float64(1.0),
    "null dataspace": lambda shape, f: h5py.Empty("<f8"),
}


def _spoil_values(path: str, spoil: Callable[[np.ndarray], None], f: h5py.File, target: Path) -> None:
    values = np.array(f[path][()], dtype=np.float64)
    spoil(values)
    f[path][...] = values


def _nan_first(values: np.ndarray) -> None:
    values.flat[0] = np.nan


def _inf_everywhere(values: np.ndarray) -> None:
    values[...] = np.inf


def _minus_inf_last(values: np.ndarray) -> None:
    values.flat[-1] = -np.inf


NON_FINITE = {"NaN as the first value": _nan_first, "+Inf everywhere": _inf_everywhere,
              "-Inf as the last value": _minus_inf_last}
