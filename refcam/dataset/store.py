"""The store of a dataset run: one folder, one golden file per finished item, written so a crash leaves no half.

Layout::

    store.json                  what the run computes: format, refcam version, the network's file name and
                                SHA-256, method, convention, options, preprocessing (a later run must match)
    network.h5                  the network (refcam HDF5, compact); every golden names it by SHA-256
    <item>.golden.h5            a finished item: refcam's golden file (every intermediate, the input, the
                                label; docs/golden-format.md), what refcam.golden.write writes for that item,
                                plus the attribute ``dataset_item`` (JSON: id, path, index, key)
    <item>.error.json           a failed item: its id, source and the error
    .<item>.<random>.tmp        a file being written (removed when a run starts)

``<item>`` is :attr:`refcam.dataset.items.Item.file_stem`. A result is written
to a temporary name in the store and renamed into place (``os.replace``,
atomic on one file system), so an item is either finished or absent, never
half-written; two workers writing the same item write the same bytes, and the
later rename wins. A finished item is never recomputed; a failed one is
retried only when asked (``retry_failed=True``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import uuid
from typing import Any, Callable

from ..errors import RefcamError
from .items import Item

STORE_FORMAT = "refcam-dataset-store"
STORE_VERSION = 1
SETTINGS_FILE = "store.json"
NETWORK_FILE = "network.h5"
DONE_SUFFIX = ".golden.h5"
ERROR_SUFFIX = ".error.json"
ITEM_ATTRIBUTE = "dataset_item"
TEMPORARY_SUFFIX = ".tmp"


class StoreError(RefcamError):
    """A store that does not hold what this run computes, or is not a refcam store."""


@dataclasses.dataclass(frozen=True)
class Store:
    """A store folder (module docstring)."""

    path: str

    @property
    def network_file(self) -> str:
        return os.path.join(self.path, NETWORK_FILE)

    def golden_file(self, item: Item) -> str:
        return os.path.join(self.path, item.file_stem + DONE_SUFFIX)

    def error_file(self, item: Item) -> str:
        return os.path.join(self.path, item.file_stem + ERROR_SUFFIX)

    def status(self, item: Item) -> str:
        """``"done"``, ``"failed"`` or ``"pending"``."""
        if os.path.isfile(self.golden_file(item)):
            return "done"
        return "failed" if os.path.isfile(self.error_file(item)) else "pending"

    def settings(self) -> dict[str, Any]:
        """The settings the store was made with (``store.json``)."""
        path = os.path.join(self.path, SETTINGS_FILE)
        try:
            with open(path, encoding="utf-8") as source:
                settings = json.load(source)
        except (OSError, ValueError) as err:
            raise StoreError(f"{self.path}: not a refcam dataset store ({SETTINGS_FILE} unreadable: {err}).") from err
        if settings.get("format") != STORE_FORMAT:
            raise StoreError(f"{self.path}: {SETTINGS_FILE} is not a refcam dataset store's.")
        return settings

    def write_atomically(self, final: str, write: Callable[[str], None]) -> None:
        """``write(temporary path)``, then rename the temporary file to ``final``."""
        stem = os.path.basename(final)
        temporary = os.path.join(self.path, f".{stem}.{uuid.uuid4().hex[:12]}{TEMPORARY_SUFFIX}")
        try:
            write(temporary)
            os.replace(temporary, final)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)

    def record_error(self, item: Item, error: BaseException) -> None:
        entry = {"id": item.id, "path": item.path, "index": item.index, "key": item.key,
                 "error": type(error).__name__, "message": str(error)}

        def write(path: str) -> None:
            with open(path, "w", encoding="utf-8") as out:
                json.dump(entry, out, indent=1, sort_keys=True)
                out.write("\n")
        self.write_atomically(self.error_file(item), write)

    def error(self, item: Item) -> dict[str, Any]:
        with open(self.error_file(item), encoding="utf-8") as source:
            return json.load(source)

    def clear_error(self, item: Item) -> None:
        if os.path.exists(self.error_file(item)):
            os.remove(self.error_file(item))

    def remove_temporaries(self) -> int:
        """Delete what an interrupted run left half-written; returns how many files."""
        stale = [name for name in os.listdir(self.path) if name.startswith(".") and name.endswith(TEMPORARY_SUFFIX)]
        for name in stale:
            os.remove(os.path.join(self.path, name))
        return len(stale)


def item_attributes(item: Item) -> dict[str, str]:
    """The attribute ``dataset_item`` that says which item a golden file is (written with the golden)."""
    return {ITEM_ATTRIBUTE: json.dumps({"id": item.id, "path": item.path, "index": item.index, "key": item.key},
                                       sort_keys=True)}


def item_of(golden_path: str) -> dict[str, Any]:
    """The ``dataset_item`` record of a store's golden file."""
    import h5py
    with h5py.File(golden_path, "r") as f:
        if ITEM_ATTRIBUTE not in f.attrs:
            raise StoreError(f"{golden_path}: a golden file without the attribute {ITEM_ATTRIBUTE!r}: not written "
                             "by a dataset run.")
        return json.loads(f.attrs[ITEM_ATTRIBUTE])


def open_store(path: str | os.PathLike, settings: dict[str, Any], save_network: Callable[[str], None]) -> Store:
    """The store at ``path`` for a run with ``settings``: created (with the network) if new, else checked.

    A store made with other settings (another network, method, options...) is a
    :class:`StoreError` naming what differs: results of two runs never mix.
    """
    store = Store(os.fspath(path))
    settings_path = os.path.join(store.path, SETTINGS_FILE)
    if os.path.isdir(store.path) and os.path.exists(settings_path):
        _check_same(store, store.settings(), settings)
        return store
    if os.path.isdir(store.path) and any(not name.startswith(".") for name in os.listdir(store.path)):
        raise StoreError(f"{store.path}: the folder is not empty and holds no {SETTINGS_FILE}; give a new or empty "
                         "folder for the store.")
    os.makedirs(store.path, exist_ok=True)
    store.write_atomically(store.network_file, save_network)

    def write(path: str) -> None:
        with open(path, "w", encoding="utf-8") as out:
            json.dump(settings, out, indent=1, sort_keys=True)
            out.write("\n")
    store.write_atomically(settings_path, write)
    return store


def _check_same(store: Store, recorded: dict[str, Any], settings: dict[str, Any]) -> None:
    keys = sorted((set(recorded) | set(settings)) - {"refcam_version"})
    differ = [key for key in keys if recorded.get(key) != settings.get(key)]
    if differ:
        shown = "; ".join(f"{key}: store {recorded.get(key)!r}, this run {settings.get(key)!r}" for key in differ)
        raise StoreError(f"{store.path} was made by another run ({shown}). Resume with the same network and "
                         "options, or give a new store.")
