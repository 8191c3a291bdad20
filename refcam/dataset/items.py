"""The items of a dataset run: where each input comes from, its id, its label, and how to read it.

Sources (each gives items in a fixed order, so a resumed run sees the same ids):

=================================  ====================================================================
source                             items
=================================  ====================================================================
an image file (.png .jpg ...)      one; id = the file name
a folder                           its input files (images, .npy, sequence .csv), sorted, not recursive
a glob pattern (``photos/*.jpg``)  the matching files, sorted; ids relative to the pattern's fixed folder
``x.npy``                          one item per entry of its first axis; id ``x.npy[i]``; each entry in
                                   the network's layout (``format`` option), as ``refcam.gradcam`` takes
``x.npz``                          one item per array; id ``x.npz:key``
``x.h5:dataset``                   one item per entry of the dataset's first axis; id ``x.h5:dataset[i]``
a CSV list (first line ``path``    one item per row: the file (relative to the list's folder) and, in
  or ``path,label``)               a second column, its label (a 0-based index or a class name)
=================================  ====================================================================

Images go through the network's preprocessing (or the one given), exactly as
``refcam gradcam`` does; a CSV that is not a list (numbers) is a sequence input.
Arrays are read one item at a time; an HDF5 item's declared size is checked
before it is read.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
import re
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import InputError

LIST_HEADERS = ("path", "path,label")
MAX_ITEM_BYTES = 1 << 30


@dataclasses.dataclass(frozen=True)
class Item:
    """One input of the run: ``id`` (unique in the run), the file, where in it (array entry or key), its label."""

    id: str
    path: str
    index: int | None = None
    key: str | None = None
    label: Any = None

    @property
    def file_stem(self) -> str:
        """The item's name in the store: the id made safe for a file name, and 8 hex digits of its SHA-256."""
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", self.id).strip("._") or "item"
        return f"{safe[:80]}-{hashlib.sha256(self.id.encode('utf-8')).hexdigest()[:8]}"


def collect(inputs: str | os.PathLike | Sequence[str | os.PathLike], labels: Any = None) -> list[Item]:
    """The items of ``inputs`` (module docstring), each with its label.

    ``labels``: None (each item's own label from a CSV list, else the predicted
    top-1), one label for every item, or one per item (a sequence as long as the
    items). Two items with the same id are an ``InputError``.
    """
    sources = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    if not sources:
        raise InputError("no inputs given: name image files, folders, glob patterns, .npy/.npz/.h5 arrays or a "
                         "CSV list.")
    items = [item for source in sources for item in _items_of(os.fspath(source))]
    items = _with_labels(items, labels)
    seen: dict[str, Item] = {}
    for item in items:
        if item.id in seen:
            raise InputError(f"two inputs have the id {item.id!r} ({seen[item.id].path} and {item.path}): "
                             "give each file once.")
        seen[item.id] = item
    return items


def _items_of(source: str) -> list[Item]:
    from ..input_files import INPUT_SUFFIXES
    path, _, dataset = source.partition(":") if _is_hdf5_reference(source) else (source, "", "")
    if dataset:
        return _hdf5_items(path, dataset)
    if os.path.isdir(source):
        names = sorted(name for name in os.listdir(source)
                       if name.lower().endswith(INPUT_SUFFIXES) and os.path.isfile(os.path.join(source, name)))
        if not names:
            raise InputError(f"{source}: the folder holds no input files ({' '.join(INPUT_SUFFIXES)}).")
        return [item for name in names for item in _file_items(os.path.join(source, name), name)]
    if not os.path.exists(source) and glob.has_magic(source):
        matches = sorted(glob.glob(source))
        if not matches:
            raise InputError(f"{source}: the pattern matches no file.")
        base = _fixed_prefix(source)
        return [item for match in matches for item in _file_items(match, os.path.relpath(match, base))]
    if not os.path.isfile(source):
        raise InputError(f"{source}: no such file or directory; check the path.")
    return _file_items(source, os.path.basename(source))


def _fixed_prefix(pattern: str) -> str:
    """The folder a glob pattern starts in (its components before the first wildcard): ids are relative to it."""
    parts = pattern.split(os.sep)
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    return os.sep.join(parts[:fixed]) or "."


def _is_hdf5_reference(source: str) -> bool:
    path, separator, _ = source.rpartition(":")
    return bool(separator) and path.lower().endswith((".h5", ".hdf5")) and not os.path.exists(source)


def _file_items(path: str, name: str) -> list[Item]:
    suffix = os.path.splitext(path)[1].lower()
    if suffix == ".npy":
        count = _npy_count(path)
        return [Item(f"{name}[{i}]", path, index=i) for i in range(count)]
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as archive:
            return [Item(f"{name}:{key}", path, key=key) for key in sorted(archive.files)]
    if suffix == ".csv" and _first_line(path).replace(" ", "").lower() in LIST_HEADERS:
        return _listed_items(path)
    return [Item(name, path)]


def _npy_count(path: str) -> int:
    shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
    if not shape:
        raise InputError(f"{path}: a 0-d array has no items; a .npy source holds one item per entry of its first "
                         "axis.")
    return int(shape[0])


def _first_line(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as source:
        return source.readline().strip()


def _listed_items(path: str) -> list[Item]:
    """A CSV list: ``path[,label]`` per row after the header; paths relative to the list's folder."""
    import csv
    folder = os.path.dirname(os.path.abspath(path))
    with open(path, newline="", encoding="utf-8") as source:
        rows = list(csv.reader(source))[1:]
    items = []
    for number, row in enumerate(rows, start=2):
        if not row or not row[0].strip():
            continue
        if len(row) > 2:
            raise InputError(f"{path}, line {number}: {len(row)} columns; a list has path and, optionally, label.")
        file = os.path.join(folder, row[0].strip())
        label = row[1].strip() if len(row) == 2 and row[1].strip() else None
        items.append(Item(row[0].strip(), file, label=label))
    return items


def _hdf5_items(path: str, dataset: str) -> list[Item]:
    import h5py
    try:
        with h5py.File(path, "r") as f:
            node = f.get(dataset)
            if not isinstance(node, h5py.Dataset) or not node.shape:
                raise InputError(f"{path}: {dataset!r} is not a dataset with a first (item) axis.")
            count = int(node.shape[0])
    except OSError as err:
        raise InputError(f"{path}: not a readable HDF5 file ({err}).") from err
    name = os.path.basename(path)
    return [Item(f"{name}:{dataset}[{i}]", path, index=i, key=dataset) for i in range(count)]


def _with_labels(items: list[Item], labels: Any) -> list[Item]:
    if labels is None:
        return items
    if isinstance(labels, (str, int, np.integer)):
        return [dataclasses.replace(item, label=labels) for item in items]
    labels = list(labels)
    if len(labels) != len(items):
        raise InputError(f"{len(labels)} labels for {len(items)} items: give one label for all, or one per item.")
    return [dataclasses.replace(item, label=label) for item, label in zip(items, labels)]


def read(item: Item, net: Any, *, format: str | None = None, preprocessing: Any = None,
         csv_orientation: str = "time-rows") -> tuple[np.ndarray, str]:
    """The item's input for ``net`` and its format (what :func:`refcam.gradcam` takes)."""
    from ..input_files import read_input
    if item.index is None and item.key is None:
        read_item = read_input(item.path, net, format, csv_orientation, preprocessing)
        return read_item.x, read_item.format
    layout = format or net.input_layer.default_format
    if item.path.lower().endswith(".npy"):
        array = np.load(item.path, mmap_mode="r", allow_pickle=False)
        _check_is_a_batch(item.path, array.shape, net)
        return np.array(array[item.index]), layout
    if item.path.lower().endswith(".npz"):
        with np.load(item.path, allow_pickle=False) as archive:
            return np.asarray(archive[item.key]), layout
    return _hdf5_entry(item, net), layout


def _check_is_a_batch(path: str, shape: tuple[int, ...], net: Any) -> None:
    """An array shaped as one input of the network is a mistake, not ``shape[0]`` items: say so."""
    one_input = tuple(getattr(net.input_layer, "input_size", None) or ())
    if one_input and tuple(shape) == one_input:
        raise InputError(f"{path}: the array {shape} is one input of the network, not a batch of inputs: an "
                         "array source holds one item per entry of its first axis; save x[np.newaxis] for one "
                         "item (or give the file to refcam golden without --store).")


def _hdf5_entry(item: Item, net: Any) -> np.ndarray:
    import h5py
    with h5py.File(item.path, "r") as f:
        node = f[item.key]
        if node.dtype.kind not in "biuf":
            raise InputError(f"{item.path}: {item.key!r} holds {node.dtype}, not numbers.")
        _check_is_a_batch(f"{item.path}:{item.key}", node.shape, net)
        size = int(np.prod(node.shape[1:], dtype=np.int64)) * node.dtype.itemsize
        if size > MAX_ITEM_BYTES:
            raise InputError(f"{item.path}: one entry of {item.key!r} declares {size} bytes, more than "
                             f"{MAX_ITEM_BYTES}; is the first axis the items?")
        return np.asarray(node[item.index])


def describe(items: Iterable[Item]) -> str:
    """``"12 items from 3 files"``."""
    items = list(items)
    files = len({item.path for item in items})
    return f"{len(items)} item{'s' if len(items) != 1 else ''} from {files} file{'s' if files != 1 else ''}"
