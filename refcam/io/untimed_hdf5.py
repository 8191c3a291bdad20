"""HDF5 files and groups written without timestamps, so that the same content gives the same bytes.

HDF5 records an access, modification, change and birth time in the header of
every group it creates (``H5Pset_obj_track_times``, on by default); h5py turns
it off only for datasets (``track_times=False``). Two saves of one network a
second apart would then differ in those bytes, and so would their SHA-256s.
These helpers create the file's root group and every other group with time
tracking off, and with links and attributes kept in creation order (what
h5py's ``track_order=True`` sets), so that refcam's files are deterministic.

The file is also opened without HDF5's raw-data chunk cache: a chunk is
written when its dataset is written, not when the dataset is closed. With the
cache, a compressed dataset's chunks land after whatever was written before
the dataset object was freed, so a process that keeps the object alive a
little longer (a garbage-collection cycle, another thread holding h5py's lock:
seen in Dask workers) writes the same content in another byte order.
"""
from __future__ import annotations

import os

import h5py

CREATION_ORDER = h5py.h5p.CRT_ORDER_TRACKED | h5py.h5p.CRT_ORDER_INDEXED


def _ordered_untimed(property_list: h5py.h5p.PropGCID) -> h5py.h5p.PropGCID:
    property_list.set_link_creation_order(CREATION_ORDER)
    property_list.set_attr_creation_order(CREATION_ORDER)
    property_list.set_obj_track_times(False)
    return property_list


def _without_chunk_cache() -> h5py.h5p.PropFAID:
    """File access: h5py's default (objects closed with the file), the raw-data chunk cache of 0 bytes."""
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    metadata_elements, slots, _, preemption = fapl.get_cache()
    fapl.set_cache(metadata_elements, slots, 0, preemption)
    return fapl


def create_file(path: str | os.PathLike) -> h5py.File:
    """A new HDF5 file at ``path`` (an existing one is truncated), its root group untimed and ordered, chunks
    written as their datasets are (no chunk cache: the bytes do not depend on when a dataset object is freed)."""
    fcpl = _ordered_untimed(h5py.h5p.create(h5py.h5p.FILE_CREATE))
    return h5py.File(h5py.h5f.create(os.fsencode(path), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=_without_chunk_cache()))


def create_group(parent: h5py.Group, name: str) -> h5py.Group:
    """A new group ``name`` of ``parent``, untimed, links and attributes in creation order."""
    gcpl = _ordered_untimed(h5py.h5p.create(h5py.h5p.GROUP_CREATE))
    return h5py.Group(h5py.h5g.create(parent.id, name.encode("utf-8"), gcpl=gcpl))
