"""The one way refcam opens and reads files it is given (networks, goldens, Keras and ONNX models).

Every reader goes through these functions, so a file can make refcam read only
bytes stored inside that file (or, for ONNX external data, files inside the
model's own folder) and can make it allocate only what its layers need, within
a size budget. The guarantees are stated for users in ``docs/security.md``.

HDF5
  * :func:`open_hdf5` opens a regular file read-only; a folder, a device or a
    missing file raises a refcam error.
  * :func:`hdf5_object` walks an object path **one component at a time** and
    requires every component to be a hard link: a soft or external link
    anywhere along the path is an :class:`~refcam.errors.ExternalReferenceError`.
  * :func:`check_dataset` looks at a dataset's declaration only (storage, type,
    shape; no data is read): external storage and virtual datasets are refused;
    the declared size must fit the budget (``max_tensor_bytes``), the shape must
    be the one the caller expects, and the bytes the file really stores must
    account for the data (unfiltered: all of it; filtered: at most
    :data:`MAX_COMPRESSION_RATIO` times the stored bytes), so a never-written
    chunked dataset of 10**9 elements in a 15 KB file is refused before a read.
  * :func:`read_dataset` does those checks, then reads, then checks finiteness.

ONNX tensors
  * :func:`check_tensor_declaration` checks a ``TensorProto``'s element type and
    declared dims (non-negative, product within the budget) before any decoding;
  * :func:`onnx_tensor_array` decodes a checked tensor held in the model file,
    or, given the model's folder (``data_folder``), an initializer whose bytes
    are in an external data file (:func:`external_tensor_bytes`): the
    ``location`` must be a relative path that stays inside the model's folder
    once every symlink is resolved (no absolute path, no ``..``), name a
    regular file, and ``offset + length`` must lie inside that file with
    ``length`` exactly the tensor's declared size; only those bytes are read.
    Any other external reference (``Constant`` values, tensor attributes,
    sparse tensors) is refused (:func:`refuse_external_data`). ONNX's own
    loader would resolve a ``location`` against the working directory; refcam
    never lets it see one.

Budget: :data:`DEFAULT_MAX_TENSOR_BYTES` (2 GiB) per tensor, counted in
float64 (the dtype refcam computes in by default) so the budget bounds what the
reader allocates; every reader takes ``max_tensor_bytes=`` to change it.
"""
from __future__ import annotations

import math
import os
import stat
from typing import Any, Sequence

import h5py
import numpy as np

from ..errors import (DeclaredSizeError, ExternalReferenceError, FileFormatError, NonFiniteParameterError,
                      WeightShapeError)

DEFAULT_MAX_TENSOR_BYTES = 2 * 1024 ** 3
MAX_COMPRESSION_RATIO = 1100     # deflate's ceiling is about 1032:1; a filtered dataset may not expand more
COMPUTE_ITEMSIZE = 8             # bytes of a float64 / int64 element, what a decoded tensor occupies
HDF5_READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)


# --- budget ------------------------------------------------------------------------------------
def check_budget(max_tensor_bytes: Any) -> int:
    """``max_tensor_bytes`` as a positive int (a bool, float or non-positive value is a ValueError-derived refcam error)."""
    if isinstance(max_tensor_bytes, bool) or not isinstance(max_tensor_bytes, (int, np.integer)) \
            or max_tensor_bytes < 1:
        raise DeclaredSizeError(f"max_tensor_bytes must be a positive integer (bytes), found "
                                f"{max_tensor_bytes!r}; the default is {DEFAULT_MAX_TENSOR_BYTES}.")
    return int(max_tensor_bytes)


def check_declared_size(shape: Sequence[int], what: str, source: str,
                        max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> int:
    """The element count of ``shape``; DeclaredSizeError when a dim is negative or the float64 size exceeds the budget.

    >>> check_declared_size((3, 4), "weight", "net.h5")
    12
    """
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise DeclaredSizeError(f"{source}: {what} declares the negative size {tuple(dims)}.")
    count = math.prod(dims)
    if count * COMPUTE_ITEMSIZE > max_tensor_bytes:
        raise DeclaredSizeError(
            f"{source}: {what} declares shape {tuple(dims)} ({count} elements, "
            f"{_gib(count * COMPUTE_ITEMSIZE)} in float64), over the limit of {_gib(max_tensor_bytes)} per "
            "tensor; if the model really is this large, pass a larger max_tensor_bytes= "
            "(docs/security.md).")
    return count


def _gib(nbytes: int) -> str:
    """``nbytes`` in the largest binary unit that keeps it at 1 or more (``2 GiB``, ``576 B``)."""
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if nbytes >= size:
            return f"{nbytes / size:.3g} {unit}"
    return f"{nbytes} B"


# --- HDF5 --------------------------------------------------------------------------------------
def check_regular_file(path: str | os.PathLike) -> str:
    """``path`` as a str after checking it is an existing regular file (not a folder, device or FIFO)."""
    source = os.fspath(path)
    try:
        mode = os.stat(source).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(2, "No such file", source) from None
    except OSError as err:
        raise FileFormatError(f"{source}: the file cannot be opened ({err.strerror or err}).") from err
    if stat.S_ISDIR(mode):
        raise FileFormatError(f"{source} is a folder, not a file; give the path of the model file "
                              "inside it (a refcam or Keras .h5, or an .onnx file).")
    if not stat.S_ISREG(mode):
        raise FileFormatError(f"{source} is not a regular file (a device, pipe or socket); refcam reads "
                              "model files from disk.")
    return source


def open_hdf5(path: str | os.PathLike) -> h5py.File:
    """Open a regular file read-only with h5py; a damaged file is a FileFormatError."""
    source = check_regular_file(path)
    try:
        return h5py.File(source, "r")
    except HDF5_READ_ERRORS as err:
        raise FileFormatError(f"{source}: HDF5 could not open the file, so it is truncated or corrupt "
                              f"({err}).") from err


def hdf5_object(root: h5py.Group, path: str, expected: type, source: str) -> Any:
    """The object at ``path`` (relative to ``root``) after checking every component is a hard link.

    ``expected`` is ``h5py.Group`` or ``h5py.Dataset``. A soft or external link
    anywhere along the path raises :class:`ExternalReferenceError`; a missing
    component, or an object of the wrong kind, a FileFormatError.
    """
    components = [part for part in path.split("/") if part]
    if not components or any(part in (".", "..") for part in components):
        raise FileFormatError(f"{source}: the object path {path!r} is not a plain path inside the file.")
    group, walked = root, root.name.rstrip("/")
    for index, part in enumerate(components):
        walked = f"{walked}/{part}"
        try:
            link = group.get(part, getlink=True)
        except HDF5_READ_ERRORS as err:
            raise FileFormatError(f"{source}: HDF5 could not read the link {walked} ({err}); the file is "
                                  "truncated or corrupt.") from err
        if link is None:
            raise FileFormatError(f"{source}: {walked} does not exist in the file.")
        if not isinstance(link, h5py.HardLink):
            raise ExternalReferenceError(
                f"{source}: {walked} is {_link_kind(link)}; refcam follows only hard links to objects "
                "stored in the file itself (no soft or external links anywhere along a path).")
        try:
            target = group[part]
        except HDF5_READ_ERRORS as err:
            raise FileFormatError(f"{source}: HDF5 could not open {walked} ({err}); the file is truncated "
                                  "or corrupt.") from err
        wanted = expected if index == len(components) - 1 else h5py.Group
        if not isinstance(target, wanted):
            raise FileFormatError(f"{source}: {walked} is a {type(target).__name__}, not a "
                                  f"{wanted.__name__}.")
        group = target
    return group


def _link_kind(link: Any) -> str:
    """How a non-hard HDF5 link reads in a message: its kind and where it points."""
    if isinstance(link, h5py.SoftLink):
        return f"a soft link (to {link.path!r})"
    if isinstance(link, h5py.ExternalLink):
        return f"an external link (to {link.path!r} in the file {link.filename!r})"
    return f"a {type(link).__name__} (a user-defined HDF5 link)"


def check_dataset(dataset: h5py.Dataset, where: str, source: str, *,
                  expected_shape: Sequence[int | None] | None = None,
                  max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> tuple[int, ...]:
    """Check a dataset's declaration before any data is read; return its shape.

    Refuses external storage and virtual datasets (ExternalReferenceError), a
    null dataspace, a declared size over the budget, a shape other than
    ``expected_shape`` (None entries match any size; WeightShapeError), and
    declarations the stored bytes cannot account for (DeclaredSizeError).
    """
    try:
        external, virtual, shape = dataset.external, dataset.is_virtual, dataset.shape
        plist = dataset.id.get_create_plist()
        filters = plist.get_nfilters()
        stored = dataset.id.get_storage_size()
    except HDF5_READ_ERRORS as err:
        raise FileFormatError(f"{source}: HDF5 could not read the declaration of {where} ({err}); the file "
                              "is truncated or corrupt.") from err
    if external or virtual:
        raise ExternalReferenceError(f"{source}: {where} keeps its data outside the file (virtual or "
                                     "external storage); refcam reads data stored in the file only.")
    if shape is None:
        raise FileFormatError(f"{source}: {where} has an empty (null) dataspace; write the array.")
    shape = tuple(int(d) for d in shape)
    count = check_declared_size(shape, where, source, max_tensor_bytes)
    if expected_shape is not None:
        expected = tuple(expected_shape)
        if len(expected) != len(shape) or any(e is not None and e != f for e, f in zip(expected, shape)):
            shown = "(" + ", ".join("any" if e is None else str(e) for e in expected) + ")"
            raise WeightShapeError(f"{source}: {where} has shape {shape}; expected {shown}.")
    nbytes = count * dataset.id.get_type().get_size()
    _check_storage_accounts_for(nbytes, stored, filters, where, source)
    return shape


def _check_storage_accounts_for(nbytes: int, stored: int, filters: int, where: str, source: str) -> None:
    if nbytes == 0:
        return
    if filters == 0 and stored < nbytes:
        raise DeclaredSizeError(
            f"{source}: {where} declares {nbytes} bytes of data but the file stores {stored} for it (never "
            "written or truncated); refcam reads only data the file holds.")
    if filters and nbytes > MAX_COMPRESSION_RATIO * stored:
        raise DeclaredSizeError(
            f"{source}: {where} declares {nbytes} bytes of data from {stored} stored (compressed) bytes, a ratio "
            f"over {MAX_COMPRESSION_RATIO}:1 that no real weight array reaches; the file is crafted or damaged.")


def read_dataset(dataset: h5py.Dataset, where: str, source: str, *,
                 expected_shape: Sequence[int | None] | None = None,
                 max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES, finite: bool = True) -> np.ndarray:
    """The dataset's array in native byte order, after :func:`check_dataset`; NaN/Inf refused when ``finite``.

    The caller checks the HDF5 type class first (refcam never decodes objects,
    strings or references).
    """
    check_dataset(dataset, where, source, expected_shape=expected_shape, max_tensor_bytes=max_tensor_bytes)
    try:
        array = np.asarray(dataset[()])
    except (*HDF5_READ_ERRORS, MemoryError) as err:
        raise FileFormatError(f"{source}: HDF5 could not read {where} ({type(err).__name__}: {err}); the file "
                              "is truncated or corrupt.") from err
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    if finite and array.dtype.kind == "f":
        check_finite(array, where, source)
    return array


def check_finite(array: np.ndarray, where: str, source: str) -> None:
    """NonFiniteParameterError naming ``where`` when ``array`` holds NaN or Inf."""
    good = np.isfinite(array)
    if not good.all():
        raise NonFiniteParameterError(f"{source}: {where} holds {array.size - int(good.sum())} NaN or Inf "
                                      f"value(s) of {array.size}; weights and attributes must be finite.")


# --- ONNX tensors ------------------------------------------------------------------------------
EXTERNAL_DATA_LOCATION = 1       # TensorProto.DataLocation.EXTERNAL


def check_tensor_declaration(tensor: Any, where: str, source: str,
                             max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> tuple[int, ...]:
    """Check an ONNX ``TensorProto``'s element type and dims before decoding it; return the dims.

    Refuses external data (:func:`refuse_external_data`), an unknown or
    non-numeric element type, negative dims and a size over the budget.
    """
    refuse_external_data(tensor, where, source)
    return _check_tensor_type_and_dims(tensor, where, source, max_tensor_bytes)


def _check_tensor_type_and_dims(tensor: Any, where: str, source: str, max_tensor_bytes: int) -> tuple[int, ...]:
    """The element-type and dims checks of :func:`check_tensor_declaration`, wherever the data is."""
    from onnx import TensorProto, helper

    data_type = int(tensor.data_type)
    names = {value: name for name, value in TensorProto.DataType.items()}
    if data_type not in names or names[data_type] in ("UNDEFINED", "STRING"):
        raise FileFormatError(f"{source}: {where} has the element type {data_type} "
                              f"({names.get(data_type, 'not an ONNX type')}); refcam reads numeric tensors.")
    try:
        helper.tensor_dtype_to_np_dtype(data_type)
    except (KeyError, ValueError, TypeError) as err:
        raise FileFormatError(f"{source}: {where} has the element type {names[data_type]}, which has no "
                              "NumPy equivalent refcam can read.") from err
    dims = tuple(int(d) for d in tensor.dims)
    check_declared_size(dims, where, source, max_tensor_bytes)
    return dims


def is_external(tensor: Any) -> bool:
    """True when an ONNX tensor says its bytes are in another file (``data_location`` or ``external_data``)."""
    return int(tensor.data_location) == EXTERNAL_DATA_LOCATION or len(tensor.external_data) > 0


def refuse_external_data(tensor: Any, where: str, source: str) -> None:
    """ExternalReferenceError when an ONNX tensor that must be inside the model file keeps its bytes elsewhere."""
    if is_external(tensor):
        location = _external_entries(tensor, where, source).get("location", "?")
        raise ExternalReferenceError(
            f"{source}: {where} keeps its data in the external file {location!r}; refcam reads external "
            "data for initializers only. Save the model with its weights inside "
            "(onnx.save(model, path, save_as_external_data=False)).")


def _external_entries(tensor: Any, where: str, source: str) -> dict[str, str]:
    """The ``external_data`` key/value pairs of a tensor; a repeated key is a FileFormatError."""
    entries: dict[str, str] = {}
    for entry in tensor.external_data:
        if entry.key in entries:
            raise FileFormatError(f"{source}: {where} names the external-data key {entry.key!r} twice.")
        entries[entry.key] = entry.value
    return entries


def external_tensor_bytes(tensor: Any, dims: Sequence[int], where: str, source: str, data_folder: str) -> bytes:
    """The bytes of an initializer kept in an external data file inside ``data_folder``, checked before reading.

    ONNX's rule (onnx/docs/ExternalData.md): ``location`` is a path relative to
    the model file's folder, ``offset`` (default 0) and ``length`` (default: to
    the end of the file) locate the tensor's raw little-endian bytes. refcam
    also requires the resolved path (symlinks followed) to stay inside the
    folder and to be a regular file, and ``length`` to equal the declared size.
    """
    entries = _external_entries(tensor, where, source)
    path = _external_path(entries.get("location", ""), where, source, data_folder)
    size = os.stat(path).st_size
    declared = _raw_byte_count(tensor, dims)
    offset = _external_int(entries, "offset", 0, where, source)
    length = _external_int(entries, "length", declared, where, source)
    if length != declared:
        raise DeclaredSizeError(f"{source}: {where} declares {length} external bytes but its dims {tuple(dims)} "
                                f"need {declared}.")
    if offset + length > size:
        raise DeclaredSizeError(
            f"{source}: {where} asks for bytes {offset} to {offset + length} of {entries['location']!r}, "
            f"which holds {size}; the data file is truncated or belongs to another model.")
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    if len(data) != length:
        raise FileFormatError(f"{source}: {where}: {entries['location']!r} ended while reading; it changed "
                              "while refcam read it.")
    return data


def _external_path(location: str, where: str, source: str, data_folder: str) -> str:
    """``location`` resolved inside ``data_folder``; ExternalReferenceError when it is absolute or leaves it."""
    parts = location.replace("\\", "/").split("/")
    if (not location or "\0" in location or os.path.isabs(location) or location.startswith(("/", "\\"))
            or (len(location) > 1 and location[1] == ":") or ".." in parts):
        raise ExternalReferenceError(
            f"{source}: {where} keeps its data at {location!r}; refcam reads external data only from a "
            "relative path inside the model's folder (no absolute path, no '..').")
    folder = os.path.realpath(data_folder)
    path = os.path.realpath(os.path.join(folder, location))
    if os.path.commonpath([folder, path]) != folder:
        raise ExternalReferenceError(
            f"{source}: {where} keeps its data at {location!r}, which resolves (through a symbolic link) "
            "outside the model's folder; refcam reads external data only inside it.")
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        raise FileFormatError(f"{source}: {where} keeps its data in {location!r}, which cannot be opened "
                              f"next to the model ({err.strerror}); copy the data file with the model.") from err
    if not stat.S_ISREG(mode):
        raise FileFormatError(f"{source}: {where} keeps its data in {location!r}, which is not a regular file.")
    return path


def _external_int(entries: dict[str, str], key: str, default: int, where: str, source: str) -> int:
    """A non-negative integer external-data entry (``offset``, ``length``), or ``default`` when absent."""
    if key not in entries:
        return default
    text_value = entries[key]
    if not text_value.isdigit():
        raise FileFormatError(f"{source}: {where} has the external-data {key} {text_value!r}; it must be a "
                              "non-negative integer.")
    return int(text_value)


def _raw_byte_count(tensor: Any, dims: Sequence[int]) -> int:
    """The bytes of a tensor's raw little-endian payload: elements times item size (4-bit types packed two a byte)."""
    from onnx import TensorProto, helper

    count = math.prod(int(d) for d in dims)
    name = TensorProto.DataType.Name(int(tensor.data_type))
    if name in ("INT4", "UINT4", "FLOAT4E2M1"):
        return (count + 1) // 2
    return count * np.dtype(helper.tensor_dtype_to_np_dtype(int(tensor.data_type))).itemsize


def _with_raw_data(tensor: Any, data: bytes) -> Any:
    """A copy of ``tensor`` holding ``data`` as its raw payload, no longer pointing at another file."""
    from onnx import TensorProto

    inside = TensorProto()
    inside.CopyFrom(tensor)
    del inside.external_data[:]
    inside.data_location = TensorProto.DEFAULT
    inside.raw_data = data
    return inside


def onnx_tensor_array(tensor: Any, where: str, source: str,
                      max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES, *,
                      data_folder: str | None = None) -> np.ndarray:
    """A checked ONNX tensor decoded as a NumPy array (its own dtype).

    With ``data_folder`` (the model file's folder) a tensor whose data is
    external is read by :func:`external_tensor_bytes`; without it, refused.
    The payload must hold exactly the declared number of elements.
    """
    from onnx import numpy_helper

    if data_folder is not None and is_external(tensor):
        dims = _check_tensor_type_and_dims(tensor, where, source, max_tensor_bytes)
        tensor = _with_raw_data(tensor, external_tensor_bytes(tensor, dims, where, source, data_folder))
    dims = check_tensor_declaration(tensor, where, source, max_tensor_bytes)
    try:
        array = numpy_helper.to_array(tensor)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, MemoryError) as err:
        raise FileFormatError(f"{source}: {where} cannot be decoded ({type(err).__name__}: {err}); "
                              "the file is corrupt.") from err
    if tuple(array.shape) != dims:
        raise FileFormatError(f"{source}: {where} declares dims {dims} but holds {array.size} values.")
    return array
