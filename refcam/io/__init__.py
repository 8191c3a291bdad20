"""Reading and writing networks.

:func:`load` looks at a file's *content* (never its name) and reads it with the
matching reader:

==============  ==========================================  ===========================
content         reader                                      docs
==============  ==========================================  ===========================
refcam HDF5     :func:`refcam.io.hdf5.load`                 ``docs/hdf5-format.md``
Keras HDF5      :func:`refcam.io.keras_h5.load_keras_h5`    ``docs/import.md``
ONNX protobuf   :func:`refcam.io.onnx_import.load_onnx`     ``docs/import.md``
==============  ==========================================  ===========================

Anything else (or a truncated/corrupt file) raises a specific
:class:`~refcam.errors.FileFormatError` that says what the file looks like.
:func:`save` always writes refcam's own HDF5 format.
"""
from __future__ import annotations

import os

from ..errors import FileFormatError
from ..network import Network
from .hdf5 import detect_format, save, sniff
from .hdf5 import load as load_refcam_hdf5
from .safe import DEFAULT_MAX_TENSOR_BYTES, check_budget, check_regular_file


def load(path: str | os.PathLike, *, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> Network:
    """Load a network from a refcam HDF5, Keras HDF5 or ONNX file, detected by content.

    ``max_tensor_bytes`` (default 2 GiB, counted in float64) bounds every
    tensor the file declares; a larger declaration raises
    :class:`~refcam.errors.DeclaredSizeError` before anything is read
    (docs/security.md). A folder, a device or a pipe raises
    :class:`~refcam.errors.FileFormatError`; a missing file
    :class:`FileNotFoundError`.

    >>> net = refcam.load("model.onnx")  # doctest: +SKIP
    """
    max_tensor_bytes = check_budget(max_tensor_bytes)
    source = check_regular_file(path)
    kind, description = sniff(source)
    if kind == "refcam":
        return load_refcam_hdf5(source, max_tensor_bytes=max_tensor_bytes)
    if kind == "keras-hdf5":
        from .keras_h5 import load_keras_h5
        return load_keras_h5(source, max_tensor_bytes=max_tensor_bytes)
    if kind == "onnx":
        from .onnx_import import load_onnx
        return load_onnx(source, max_tensor_bytes=max_tensor_bytes)
    raise FileFormatError(
        f"{source} is not a network refcam can read: {description}. refcam reads its own "
        "HDF5 format, Keras HDF5 (.h5) and ONNX files.")


__all__ = ["DEFAULT_MAX_TENSOR_BYTES", "detect_format", "load", "load_refcam_hdf5", "save", "sniff"]
