"""Writing golden files: run Grad-CAM once and store every input, option and intermediate (docs/golden-format.md).

Writing is deterministic (no timestamps): the same run gives the same bytes.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import sys
import tempfile
from typing import Any, Callable

import h5py
import numpy as np

from ..backend import to_numpy
from ..cam.conventions import CONVENTIONS
from ..cam.explain import explain
from ..cam.gradcam import GradCAMResult, is_label_sequence
from ..errors import RefcamError
from ..io.hdf5 import COMPRESSION, COMPRESSION_MIN_BYTES, save
from ..io.untimed_hdf5 import create_file
from ..layout import to_internal
from ..network import Network
from .record import (FORMAT_NAME, GOLDEN_METHODS, METHOD, NETWORK_FILE, NETWORK_GROUP, NETWORK_SHA256,
                     OPTIONAL_DATASETS, PROVENANCE,
                     EXTENDED_SCHEMA_VERSION, REQUIRED_DATASETS, SCHEMA_VERSION, Golden, map_axes)

HASH_CHUNK = 1 << 20


def write(path: str | os.PathLike, net: Network, x: Any, label: Any = None, *,
          reduction: Callable[..., Any] | None = None, convention: str = "matlab",
          network_file: str | os.PathLike | None = None, method: str = "gradcam", **gradcam_options: Any) -> Golden:
    """Compute Grad-CAM of ``x`` and write every input, option and intermediate to ``path``.

    Parameters
    ----------
    path : str or PathLike
        The HDF5 file to write (overwritten).
    net, x, label, reduction
        As for :func:`refcam.gradcam`.
    convention : str
        "matlab" (default) or a peer convention of
        :func:`refcam.cam.conventions.gradcam_as`: the maps are that peer's.
    method : str
        The CAM method (:func:`refcam.explain`): ``"gradcam"`` (default) or
        any of :data:`refcam.golden.record.GOLDEN_METHODS`; its own options
        (``eps``, ``center``, ``batch_size``, ``weighting``...) go in
        ``gradcam_options`` and are recorded. Another method than Grad-CAM is
        recorded in the ``method`` attribute (schema version 2); guided
        backpropagation, a gradient at the input, is not a golden's kind of map.
    network_file : str or PathLike, optional
        The file ``net`` was loaded from (refcam HDF5, ONNX or Keras). Given,
        the golden does not embed the network: it records the file's name and
        SHA-256 (schema version 2), a few megabytes at most instead of the
        weights; :func:`refcam.golden.read` then needs that file, beside the
        golden or named by its ``network_file``. The file must load to ``net``
        (checked). Without it the network is embedded, compressed and
        exactly (:func:`refcam.io.save` with ``compact=True``), with its SHA-256.
    **gradcam_options
        The other keyword arguments of :func:`refcam.gradcam` (feature_layer,
        reduction_layer, format, upsampling, dtype, device, mask) or of the
        convention.

    Returns
    -------
    Golden
        What was written (equal, bit for bit, to ``read(path)``).

    Examples
    --------
    >>> refcam.golden.write("cat.golden.h5", net, image, "cat")       # doctest: +SKIP
    Golden(matlab, feature_layer='relu_5', reduction_layer='softmax', ...)
    """
    reference = None if network_file is None else _network_reference(net, network_file)
    return write_referenced(path, net, x, label, reference, reduction=reduction, convention=convention,
                            method=method, **gradcam_options)


def write_referenced(path: str | os.PathLike, net: Network, x: Any, label: Any, reference: tuple[str, str] | None, *,
                     reduction: Callable[..., Any] | None = None, convention: str = "matlab", method: str = "gradcam",
                     attributes: dict[str, str] | None = None, **gradcam_options: Any) -> Golden:
    """:func:`write` with the network file already checked: ``reference`` is ``(file name, SHA-256)`` of a file
    known to load to ``net`` (what :func:`write` checks once per call; a dataset run checks it once per run),
    or None to embed the network. ``attributes``: more string attributes of the root, written last (a dataset
    run's item record; :func:`read` ignores them)."""
    if convention not in CONVENTIONS:
        raise RefcamError(f"convention must be one of {CONVENTIONS}, not {convention!r}.")
    if method not in GOLDEN_METHODS:
        raise RefcamError(f"method {method!r}: golden files record the CAM methods {', '.join(GOLDEN_METHODS)}; "
                          "guided backpropagation's map is a gradient at the input, which a golden does not hold "
                          "(write result.map with numpy.save).")
    if gradcam_options.get("keep_on_device"):
        raise RefcamError("keep_on_device does not apply to golden files; leave it out.")
    result = explain(net, x, label, method=method, convention=convention, reduction=reduction, **gradcam_options)
    options = _options_record(label, convention, result, gradcam_options)
    golden = Golden(
        input=np.array(to_numpy(x)), input_internal=_input_internal(net, x, result),
        activations=result.activations, gradients=result.gradients, weights=result.weights,
        scores=result.scores, raw_map=result.raw_map, map=result.map,
        labels=None if result.labels is None else np.asarray(result.labels, dtype=np.int64),
        mask=None if gradcam_options.get("mask") is None else np.asarray(to_numpy(gradcam_options["mask"]), bool),
        network=net, feature_layer=result.feature_layer, reduction_layer=result.reduction_layer,
        reduction="class" if reduction is None else "custom",
        reduction_source="" if reduction is None else _source_text(reduction),
        convention=convention, dtype=result.info["dtype"],
        map_axes=map_axes(result.info["format"], stacked=label is not None and is_label_sequence(label)),
        options=options, **_provenance(), path=os.fspath(path),
        method=method, **({} if reference is None else {"network_file": reference[0], "network_sha256": reference[1]}))
    _write_file(golden, os.fspath(path), attributes or {})
    return golden


def file_sha256(path: str) -> str:
    """The SHA-256 of a file's bytes, as 64 lowercase hex digits (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _network_reference(net: Network, network_file: str | os.PathLike) -> tuple[str, str]:
    """(the file's name, its SHA-256), after checking that the file loads to ``net``."""
    from ..io import load
    path = os.fspath(network_file)
    if not os.path.isfile(path):
        raise RefcamError(f"network_file {path!r} is not a file; give the file the network was loaded from.")
    if _saved_sha256(load(path)) != _saved_sha256(net):
        raise RefcamError(f"network_file {path!r} does not load to the network given (different layers or "
                          "weights); give the file the network was loaded from, or leave network_file out to "
                          "embed the network.")
    return os.path.basename(path), file_sha256(path)


def _saved_sha256(net: Network) -> str:
    """The SHA-256 of ``net`` as :func:`refcam.io.save` writes it compactly (deterministic bytes)."""
    with tempfile.TemporaryDirectory() as folder:
        network_path = os.path.join(folder, "network.h5")
        save(net, network_path, compact=True)
        return file_sha256(network_path)



def _input_internal(net: Network, x: Any, result: GradCAMResult) -> np.ndarray:
    internal, _ = to_internal(to_numpy(x), net.input_layer, format=result.info["format"], dtype=result.info["dtype"])
    return internal


def _options_record(label: Any, convention: str, result: GradCAMResult, options: dict[str, Any]) -> dict[str, Any]:
    """The call as JSON: the label as given, the convention and every option (``mask``: whether one was given)."""
    record = {key: value for key, value in options.items() if key != "mask"}
    record.update(label=_json_label(label), convention=convention, mask=options.get("mask") is not None,
                  format=result.info["format"], dtype=result.info["dtype"], device=result.info["device"])
    try:
        json.dumps(record, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise RefcamError(f"the options {record} cannot be written as JSON ({err}); give strings, "
                          "numbers and booleans.") from err
    return record


def _json_label(label: Any) -> Any:
    if label is None or isinstance(label, str):
        return label
    if is_label_sequence(label):
        return [_json_label(one) for one in list(label)]
    return int(label)


def _source_text(function: Callable[..., Any]) -> str:
    """The function's source (for people to read), or its repr when the source is not available."""
    try:
        return inspect.getsource(function).strip()
    except (OSError, TypeError):
        return repr(function)


def _provenance() -> dict[str, str]:
    from .. import __version__
    return {"refcam_version": __version__, "numpy_version": np.__version__, "h5py_version": h5py.__version__,
            "python_version": platform.python_version(), "platform": f"{platform.platform()} ({sys.byteorder}-endian)"}


def _write_file(golden: Golden, path: str, attributes: dict[str, str]) -> None:
    """The golden as HDF5: datasets compressed (exact); the network embedded compactly, or named by hash."""
    with tempfile.TemporaryDirectory() as folder:
        network_path = os.path.join(folder, "network.h5")
        if golden.network_file is None:
            save(golden.network, network_path, compact=True)
            golden.network_sha256 = file_sha256(network_path)
        with create_file(path) as f:
            for name, value in _string_attributes(golden).items():
                f.attrs[name] = value
            referencing = golden.network_file is not None
            extended = referencing or golden.method != "gradcam"
            f.attrs["schema_version"] = np.int64(EXTENDED_SCHEMA_VERSION if extended else SCHEMA_VERSION)
            for name in REQUIRED_DATASETS + OPTIONAL_DATASETS:
                value = getattr(golden, name)
                if value is not None:
                    data = value.astype(np.uint8) if name == "mask" else np.ascontiguousarray(value)
                    f.create_dataset(name, data=data, track_times=False, **(COMPRESSION if data.nbytes >= COMPRESSION_MIN_BYTES else {}))
            if not referencing:
                with h5py.File(network_path, "r") as network:
                    f.copy(network, NETWORK_GROUP)
            for name, value in attributes.items():
                f.attrs[name] = value


def _string_attributes(golden: Golden) -> dict[str, str]:
    values = {"format": FORMAT_NAME, "options": json.dumps(golden.options, sort_keys=True)}
    for name in ("feature_layer", "reduction_layer", "reduction", "reduction_source", "convention", "dtype",
                 "map_axes"):
        values[name] = getattr(golden, name)
    values.update({name: getattr(golden, name) for name in PROVENANCE})
    values[NETWORK_SHA256] = golden.network_sha256
    if golden.network_file is not None:
        values[NETWORK_FILE] = golden.network_file
    if golden.method != "gradcam":
        values[METHOD] = golden.method
    return values
