"""Write the conformance suite to a folder, deterministically, with a manifest of SHA-256s.

Layout of ``DIR`` (one flat folder; ``<case>`` is the case id with ``/``
written ``__``)::

    manifest.json              suite version, refcam version, per case its spec and every file's SHA-256
    <network>.h5               each network, refcam HDF5 (refcam.save, compact)
    <network>.onnx             the same network as ONNX (refcam.to_onnx), where onnx is installed
    <case>.input.npy           the input, MATLAB's layout (the case's "format")
    <case>.mask.npy            the mask, for masked cases
    <case>.golden.h5           refcam's golden (every intermediate), naming <network>.h5 by SHA-256

Rerunning :func:`build` on the same machine writes the same bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Callable, Iterable

import numpy as np

from ..errors import RefcamError
from ..golden import write as write_golden
from ..io import save
from ..network import Network
from ..cam.selection import sum_of_outputs
from .cases import SUITE_VERSION, CaseSpec, suite
from .networks import NETWORKS

MANIFEST = "manifest.json"


def file_stem(case_id: str) -> str:
    """``series2d/default`` -> ``series2d__default``: the case's file names."""
    return case_id.replace("/", "__")


def build(folder: str | os.PathLike, cases: Iterable[CaseSpec] | None = None) -> dict[str, Any]:
    """Write the suite (or ``cases`` of it) to ``folder``; return the manifest it wrote.

    Parameters
    ----------
    folder : str or PathLike
        Created if missing; files of the suite in it are overwritten.
    cases : iterable of CaseSpec, optional
        Default: every case of :func:`refcam.conformance.cases.suite`.

    Examples
    --------
    >>> manifest = build("conformance-suite")                   # doctest: +SKIP
    >>> len(manifest["cases"]), manifest["suite_version"]       # doctest: +SKIP
    (40, '1')
    """
    from .. import __version__
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    chosen = list(suite() if cases is None else cases)
    write_onnx = _onnx_writer()
    networks = {}
    for name in sorted({case.network for case in chosen}):
        networks[name] = _write_network(folder, name, write_onnx)
    entries = [_build_case(folder, case) for case in chosen]
    manifest = {"format": "refcam-conformance-suite", "suite_version": SUITE_VERSION, "refcam_version": __version__,
                "numpy_version": np.__version__, "networks": networks, "cases": entries}
    with open(os.path.join(folder, MANIFEST), "w", encoding="utf-8") as out:
        json.dump(manifest, out, indent=1, sort_keys=True)
        out.write("\n")
    return manifest


def _onnx_writer() -> Callable[[Network, str], None] | None:
    """:func:`refcam.to_onnx` where ``onnx`` is installed, else None (the suite then has no ONNX files)."""
    try:
        from onnx import TensorProto  # noqa: F401  (not just "import onnx": a folder named onnx imports too)
    except ImportError:
        return None
    from ..io.onnx_export import to_onnx
    return to_onnx


def _write_network(folder: str, name: str, write_onnx: Callable[[Network, str], None] | None) -> dict[str, Any]:
    """``<name>.h5`` (the reference) and, with onnx installed, ``<name>.onnx``; their manifest entry."""
    net = NETWORKS[name]()
    path = os.path.join(folder, f"{name}.h5")
    save(net, path, compact=True)
    entry = {"file": f"{name}.h5", "sha256": _sha256(path)}
    if write_onnx is not None:
        onnx_path = os.path.join(folder, f"{name}.onnx")
        write_onnx(net, onnx_path)
        entry["onnx"] = {"file": f"{name}.onnx", "sha256": _sha256(onnx_path)}
    return entry


def _build_case(folder: str, case: CaseSpec) -> dict[str, Any]:
    from ..io import load
    stem = file_stem(case.id)
    files = {"input": f"{stem}.input.npy", "golden": f"{stem}.golden.h5"}
    x = case.input()
    np.save(os.path.join(folder, files["input"]), x)
    options = dict(case.options, format=case.format, dtype=case.dtype)
    mask = case.mask_array()
    if mask is not None:
        files["mask"] = f"{stem}.mask.npy"
        np.save(os.path.join(folder, files["mask"]), mask)
        options["mask"] = mask
    network_file = os.path.join(folder, f"{case.network}.h5")
    label = None if case.labels is None else (list(case.labels) if len(case.labels) > 1 else case.labels[0])
    reduction = sum_of_outputs if case.reduction == "sum" else None
    try:
        write_golden(os.path.join(folder, files["golden"]), load(network_file), x, label, reduction=reduction,
                     method=case.method, convention=case.convention, network_file=network_file, **options)
    except RefcamError as err:
        raise RefcamError(f"conformance case {case.id!r} could not be built: {err}") from err
    return {"id": case.id, "network": case.network, "description": case.description, "method": case.method,
            "convention": case.convention, "dtype": case.dtype, "format": case.format,
            "labels": None if case.labels is None else list(case.labels), "reduction": case.reduction,
            "options": {key: value for key, value in case.options},
            "files": {role: {"file": name, "sha256": _sha256(os.path.join(folder, name))}
                      for role, name in files.items()}}


def read_manifest(folder: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a built suite, every file's SHA-256 checked (a changed file is an error naming it)."""
    folder = os.fspath(folder)
    path = os.path.join(folder, MANIFEST)
    if not os.path.isfile(path):
        raise RefcamError(f"{folder!r} holds no conformance suite ({MANIFEST} missing); write one with "
                          f"'refcam conformance build {folder}'.")
    with open(path, encoding="utf-8") as source:
        manifest = json.load(source)
    recorded = [(entry["file"], entry["sha256"]) for entry in manifest["networks"].values()]
    recorded += [(entry["onnx"]["file"], entry["onnx"]["sha256"]) for entry in manifest["networks"].values()
                 if "onnx" in entry]
    recorded += [(entry["file"], entry["sha256"]) for case in manifest["cases"] for entry in case["files"].values()]
    for name, digest in recorded:
        if os.path.basename(name) != name:
            raise RefcamError(f"{path}: the file name {name!r} leaves the suite's folder; rebuild the suite.")
        if _sha256(os.path.join(folder, name)) != digest:
            raise RefcamError(f"{os.path.join(folder, name)} is not the file the manifest records (SHA-256 "
                              f"differs or the file is missing); rebuild the suite with 'refcam conformance build'.")
    return manifest


def _sha256(path: str) -> str:
    if not os.path.isfile(path):
        return ""
    digest = hashlib.sha256()
    with open(path, "rb") as source:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
