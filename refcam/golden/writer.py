"""Writing golden files: run Grad-CAM once and store every input, option and intermediate (docs/golden-format.md).

Writing is deterministic (no timestamps): the same run gives the same bytes.
"""
from __future__ import annotations

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
from ..cam.conventions import CONVENTIONS, gradcam_as
from ..cam.gradcam import GradCAMResult, is_label_sequence
from ..errors import RefcamError
from ..io.hdf5 import save
from ..layout import to_internal
from ..network import Network
from .record import (FORMAT_NAME, NETWORK_GROUP, OPTIONAL_DATASETS, PROVENANCE, REQUIRED_DATASETS, SCHEMA_VERSION,
                     Golden, map_axes)


def write(path: str | os.PathLike, net: Network, x: Any, label: Any = None, *,
          reduction: Callable[..., Any] | None = None, convention: str = "matlab",
          **gradcam_options: Any) -> Golden:
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
    if convention not in CONVENTIONS:
        raise RefcamError(f"convention must be one of {CONVENTIONS}, not {convention!r}.")
    if gradcam_options.get("keep_on_device"):
        raise RefcamError("keep_on_device does not apply to golden files; leave it out.")
    result = gradcam_as(convention, net, x, label, reduction=reduction, **gradcam_options)
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
        options=options, **_provenance(), path=os.fspath(path))
    _write_file(golden, os.fspath(path))
    return golden



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


def _write_file(golden: Golden, path: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        network_file = os.path.join(folder, "network.h5")
        save(golden.network, network_file)
        with h5py.File(network_file, "r") as network, h5py.File(path, "w", track_order=True) as f:
            for name, value in _string_attributes(golden).items():
                f.attrs[name] = value
            f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
            for name in REQUIRED_DATASETS + OPTIONAL_DATASETS:
                value = getattr(golden, name)
                if value is not None:
                    data = value.astype(np.uint8) if name == "mask" else np.ascontiguousarray(value)
                    f.create_dataset(name, data=data, track_times=False)
            f.copy(network, NETWORK_GROUP)


def _string_attributes(golden: Golden) -> dict[str, str]:
    values = {"format": FORMAT_NAME, "options": json.dumps(golden.options, sort_keys=True)}
    for name in ("feature_layer", "reduction_layer", "reduction", "reduction_source", "convention", "dtype",
                 "map_axes"):
        values[name] = getattr(golden, name)
    values.update({name: getattr(golden, name) for name in PROVENANCE})
    return values
