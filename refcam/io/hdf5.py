"""refcam's own HDF5 network format, schema versions 1 and 2: ``save`` and ``load``.

The file layout is specified in ``docs/hdf5-format.md`` (written so that MATLAB
or C++ code can produce a valid file from it alone). In short::

    /                      attributes: format = "refcam-network"
                                       schema_version = 1, or 2 with the
                                       metadata below (integer)
                                       refcam_version, name (strings)
                                       topology (JSON string, layers in
                                       topological order)
                                       aliases (optional JSON string,
                                       {alias: layer name})
                                       classes, preprocessing (optional JSON
                                       strings, version 2: a list of names,
                                       a refcam.Preprocessing as a dict)
    /weights/<layer>/<param>   float32 or float64 datasets in refcam's internal
                               layout (conv weight (F, C/groups, *kernel), ...)

``<layer>`` is the layer name with ``%`` written ``%25`` and ``/`` written
``%2F`` (HDF5 reserves ``/``); a layer called ``.`` is written ``%2E``.

Reading never executes anything from the file: attributes and datasets are
read only after their HDF5 type class has been checked (strings for the
attributes, IEEE floats for the weights), the topology is parsed with
``json.loads`` alone, and links to other files (external links, virtual or
external datasets) are refused. Every problem raises a specific
:mod:`refcam.errors` exception naming the layer and the dataset.

Writing is deterministic: the same network gives a byte-identical file
(insertion order is tracked, object timestamps are not written).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import TYPE_CHECKING, Any, NoReturn

import h5py
import numpy as np

from ..backend import to_numpy
from ..errors import (
    DuplicateLayerNameError,
    FileFormatError,
    InputDtypeError,
    LayerConfigError,
    MissingDatasetError,
    MissingParameterError,
    NonFiniteInputError,
    ParameterError,
    RefcamError,
    SchemaVersionError,
    ShapeError,
    UnknownLayerTypeError,
    WeightShapeError,
)
from ..layers import base as layer_base
from . import safe
from .untimed_hdf5 import create_file, create_group

if TYPE_CHECKING:
    from ..layers.base import Layer
    from ..network import Network

FORMAT_NAME = "refcam-network"
SCHEMA_VERSION = 2          # the newest this refcam reads; written when the network has metadata
FIRST_SCHEMA_VERSION = 1    # written otherwise, so such files stay readable by older refcams
WEIGHTS_GROUP = "weights"
WEIGHT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))
ROOT_STRING_ATTRIBUTES = ("format", "refcam_version", "name", "topology")
LAYER_ENTRY_KEYS = ("name", "kind", "inputs", "properties")
ALIASES_ATTRIBUTE = "aliases"   # optional: written only for a network with aliases
CLASSES_ATTRIBUTE = "classes"               # optional, version 2: JSON list of names (net.classes)
PREPROCESSING_ATTRIBUTE = "preprocessing"   # optional, version 2: JSON object (net.preprocessing)
# optional on a weight dataset (compact files): the parameter's dtype when the data is stored as float32
# because every value is a float32 number (exact: float32 -> float64 loses nothing)
PARAMETER_DTYPE_ATTRIBUTE = "dtype"
COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}   # compact files
COMPRESSION_MIN_BYTES = 1 << 14   # smaller datasets stay contiguous: a chunk index would outweigh the gain

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
# What h5py raises when the file's metadata is damaged (KeyError: an object cannot be opened).
HDF5_READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError)
SNIFF_BYTES = 4096


# --- names and paths -----------------------------------------------------------
def group_name(layer_name: str) -> str:
    """The HDF5 group name of a layer's weights: ``%`` -> ``%25``, ``/`` -> ``%2F``, ``.`` -> ``%2E``.

    >>> group_name("conv1"), group_name("block1/conv"), group_name("50%")
    ('conv1', 'block1%2Fconv', '50%25')
    """
    if layer_name == ".":
        return "%2E"
    return layer_name.replace("%", "%25").replace("/", "%2F")


def dataset_path(layer_name: str, param_name: str) -> str:
    """Absolute path of a parameter dataset.

    >>> dataset_path("fire2/squeeze1x1", "bias")
    '/weights/fire2%2Fsqueeze1x1/bias'
    """
    return f"/{WEIGHTS_GROUP}/{group_name(layer_name)}/{param_name}"


# --- save ------------------------------------------------------------------------
def save(net: "Network", path: str | os.PathLike, *, compact: bool = False) -> None:
    """Write ``net`` to ``path`` in refcam HDF5 format (overwriting the file).

    Schema version 1, or 2 when the network carries ``classes`` (other than a
    classification layer's) or ``preprocessing``, stored as the optional root
    attributes of the same names.

    Parameters are written exactly as held (same dtype and values; NumPy or CuPy
    arrays), so ``load(path)`` gives back equal arrays bit for bit. The same
    network always gives a byte-identical file.

    ``compact=True`` (what golden files embed) writes the same arrays smaller,
    still exactly: every weight dataset of 16 KiB or more gzip-compressed
    (level 4, byte shuffle),
    and a float64 parameter whose values are all float32 numbers (weights
    imported from a float32 ONNX, Keras or PyTorch model) stored as float32 with
    the attribute ``dtype = "float64"``, which ``load`` turns back into float64.
    A refcam that predates the attribute reads such a parameter as float32; it
    computes the same numbers (parameters are cast to the compute dtype).

    >>> refcam.io.save(net, "net.h5")            # doctest: +SKIP
    >>> refcam.io.load("net.h5").layer("conv").weights.dtype  # doctest: +SKIP
    dtype('float64')
    """
    from .. import __version__

    topology = json.dumps({"layers": [_layer_entry(layer) for layer in net.layers]},
                          ensure_ascii=False, allow_nan=False)
    weights = [(layer.name, _weights_to_write(layer)) for layer in net.layers]
    metadata = _metadata_to_write(net)
    with create_file(path) as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["schema_version"] = np.int64(SCHEMA_VERSION if metadata else FIRST_SCHEMA_VERSION)
        f.attrs["refcam_version"] = __version__
        f.attrs["name"] = net.name or ""
        f.attrs["topology"] = topology
        if net.aliases:
            f.attrs[ALIASES_ATTRIBUTE] = json.dumps(dict(net.aliases), ensure_ascii=False)
        for name, text in metadata.items():
            f.attrs[name] = text
        weights_group = create_group(f, WEIGHTS_GROUP)
        for layer_name, arrays in weights:
            if not arrays:
                continue
            group = create_group(weights_group, group_name(layer_name))
            for param_name, array in arrays.items():
                _write_parameter(group, param_name, array, compact)


def _write_parameter(group: h5py.Group, name: str, array: np.ndarray, compact: bool) -> None:
    """One weight dataset; compact: compressed, and float32 where that holds every float64 value exactly."""
    if not compact:
        group.create_dataset(name, data=array, track_times=False)
        return
    narrow = array.dtype == np.float64 and np.array_equal(array.astype(np.float32).astype(np.float64), array)
    data = array.astype(np.float32) if narrow else array
    options = COMPRESSION if data.nbytes >= COMPRESSION_MIN_BYTES else {}
    dataset = group.create_dataset(name, data=data, track_times=False, **options)
    if narrow:
        dataset.attrs[PARAMETER_DTYPE_ATTRIBUTE] = "float64"


def _metadata_to_write(net: "Network") -> dict[str, str]:
    """The version-2 attributes of ``net`` as JSON strings: classes not held by a layer, preprocessing."""
    metadata = {}
    if net.given_classes is not None:
        metadata[CLASSES_ATTRIBUTE] = json.dumps(net.given_classes, ensure_ascii=False)
    if net.preprocessing is not None:
        metadata[PREPROCESSING_ATTRIBUTE] = json.dumps(net.preprocessing.to_dict(), allow_nan=False)
    return metadata


def _layer_entry(layer: "Layer") -> dict[str, Any]:
    """The topology entry of one layer; raises LayerConfigError for non-JSON properties."""
    properties = layer.properties()
    for key, value in properties.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise LayerConfigError(
                f"layer {layer.name!r} ({layer.kind}): property {key!r} = {value!r} cannot be "
                f"written as JSON ({err}); properties must be finite numbers, strings, booleans, "
                f"null or lists of these.") from err
    return {"name": layer.name, "kind": layer.kind, "inputs": list(layer.inputs), "properties": properties}


def _weights_to_write(layer: "Layer") -> dict[str, np.ndarray]:
    """The layer's parameters as native-byte-order float arrays, in declaration order."""
    arrays = {}
    for param_name, value in layer.params().items():
        array = np.asarray(to_numpy(value), order="C")
        where = f"layer {layer.name!r} ({layer.kind}) parameter {param_name!r}"
        if array.dtype.newbyteorder("=") not in WEIGHT_DTYPES:
            raise InputDtypeError(f"{where} has dtype {array.dtype}; refcam files hold float32 or "
                                  f"float64 parameters only. Convert it with .astype(np.float64).")
        if not np.isfinite(array).all():
            raise NonFiniteInputError(f"{where} holds NaN or Inf; refcam files hold finite "
                                      f"parameters only.")
        arrays[param_name] = array.astype(array.dtype.newbyteorder("="), copy=False)
    return arrays


# --- format detection ------------------------------------------------------------
def detect_format(path: str | os.PathLike) -> str:
    """Return ``"refcam"`` when ``path`` is a refcam network file.

    Otherwise raise :class:`FileFormatError` saying what the file looks like it
    is (a text file, a Keras HDF5 file, a MATLAB MAT-file, a truncated HDF5
    file, ...); a missing file raises :class:`FileNotFoundError`.

    >>> detect_format("net.h5")  # doctest: +SKIP
    'refcam'
    """
    kind, description = sniff(path)
    if kind == "refcam":
        return "refcam"
    raise FileFormatError(f"{os.fspath(path)} is not a refcam network file: {description}.")


def sniff(path: str | os.PathLike) -> tuple[str, str]:
    """Classify a file by its content: ``(kind, description)``.

    ``kind`` is one of ``"refcam"``, ``"keras-hdf5"``, ``"mat-v73"``, ``"hdf5"``,
    ``"hdf5-corrupt"``, ``"mat-v5"``, ``"zip"``, ``"pickle"``, ``"onnx"``,
    ``"empty"``, ``"text"`` and ``"unknown"``; ``description`` is a phrase for
    error messages. Reads the first bytes and, for HDF5, the root attributes
    only. A missing file raises :class:`FileNotFoundError`; a folder or a
    device :class:`FileFormatError`.
    """
    path = safe.check_regular_file(path)
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    if any(head[offset:offset + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE for offset in (0, 512, 1024, 2048)):
        return _sniff_hdf5(path, head)
    return _sniff_other(path, head)


def _sniff_hdf5(path: str, head: bytes) -> tuple[str, str]:
    try:
        with h5py.File(path, "r") as f:
            return _classify_hdf5(f, head)
    except HDF5_READ_ERRORS as err:
        return "hdf5-corrupt", (f"it has an HDF5 signature but HDF5 cannot open it, so it is "
                                f"truncated or corrupt ({err})")


def _classify_hdf5(f: h5py.File, head: bytes) -> tuple[str, str]:
    attrs = set(f.attrs.keys())
    if "format" in attrs:
        value = _string_attribute_or_none(f, "format")
        if value == FORMAT_NAME:
            return "refcam", "a refcam network file"
        shown = repr(value) if value is not None else "not a string"
        return "hdf5", (f"it is an HDF5 file whose 'format' attribute is {shown}, "
                        f"not {FORMAT_NAME!r}")
    if head.startswith(b"MATLAB 7.3 MAT-file"):
        return "mat-v73", ("it is a MATLAB v7.3 MAT-file (saved variables, not a refcam network); "
                           "export the network with the recipe in docs/hdf5-format.md")
    if attrs & {"keras_version", "model_config", "backend"} or "model_weights" in f:
        return "keras-hdf5", "it looks like a Keras HDF5 model (it has Keras attributes or groups)"
    return "hdf5", (f"it is an HDF5 file without a 'format' attribute (root attributes: "
                    f"{sorted(attrs)}; root members: {sorted(f.keys())[:10]})")


def _sniff_other(path: str, head: bytes) -> tuple[str, str]:
    if not head:
        return "empty", "it is empty"
    if head.startswith(b"MATLAB 5.0 MAT-file"):
        return "mat-v5", "it is a MATLAB v5/v7 MAT-file (not HDF5); see docs/hdf5-format.md"
    if head.startswith(b"PK\x03\x04"):
        return "zip", ("it is a zip archive (a PyTorch .pt checkpoint or a Keras v3 .keras file "
                       "look like this); refcam never unpickles files")
    if head[:1] == b"\x80" and head[1:2] in {bytes([n]) for n in range(2, 6)}:
        return "pickle", "it is a Python pickle; refcam never unpickles files"
    from .onnx_import import looks_like_onnx
    if looks_like_onnx(head):
        return "onnx", "it looks like an ONNX model (a protobuf ModelProto)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "unknown", "it is neither HDF5 nor text (unknown binary format)"
    return "text", f"it is a text file starting with {text[:40]!r}"


# --- load ------------------------------------------------------------------------
def load(path: str | os.PathLike, *, max_tensor_bytes: int = safe.DEFAULT_MAX_TENSOR_BYTES) -> "Network":
    """Read a refcam HDF5 file (schema version 1 or 2) and return the validated :class:`~refcam.network.Network`.

    Raises :class:`FileNotFoundError` for a missing file and a specific
    :class:`~refcam.errors.FileFormatError` subclass for every problem in the
    file (each message names the layer and dataset concerned). Network-level
    problems (a cycle, an unknown input layer) raise the network's own errors.
    ``max_tensor_bytes`` bounds the declared size of each dataset (counted in
    float64; docs/security.md).

    >>> net = refcam.io.load("net.h5")  # doctest: +SKIP
    """
    max_tensor_bytes = safe.check_budget(max_tensor_bytes)
    source = safe.check_regular_file(path)
    detect_format(source)
    with safe.open_hdf5(source) as f:
        return read_network(f, source, max_tensor_bytes=max_tensor_bytes)


def read_network(root: h5py.Group, source: str, *,
                 max_tensor_bytes: int = safe.DEFAULT_MAX_TENSOR_BYTES) -> "Network":
    """Build the Network stored in ``root`` (an open file or a group holding the v1 layout).

    In two passes, so that no weight is read before the network accepts its
    shape: the layers and the network (with its shape inference) are first
    built on zero-cost stand-ins of each dataset's declared shape and dtype;
    only then are the datasets read and the layers built on the real arrays.
    ``source`` names the file in error messages.
    """
    try:
        attrs = _read_root_attributes(root, source)
        entries = parse_topology(attrs["topology"], source)
        aliases = read_aliases(root, [entry["name"] for entry in entries], source)
        metadata = read_metadata(root, attrs["schema_version"], source)
        classes = {entry["name"]: _layer_class(entry, source) for entry in entries}
        _check_root_members(root, source)
        datasets = _declared_weights(root, entries, classes, source, max_tensor_bytes)
        _check_declared_shapes(entries, classes, _stand_ins(datasets), attrs["name"], source)
        check_topological_order(entries, source)
        weights = _read_weights(datasets, source, max_tensor_bytes)
    except RefcamError:
        raise
    except HDF5_READ_ERRORS as err:
        raise _corrupt(source, err) from err
    return _build_checked(entries, classes, weights, attrs["name"], source, aliases, metadata)


def _check_declared_shapes(entries: list[dict[str, Any]], classes: dict[str, type["Layer"]],
                           stand_ins: dict[str, dict[str, np.ndarray]], name: str, source: str) -> None:
    """Build the layers and network on stand-ins: shape, size and structure errors surface before a read.

    A layer may also check parameter *values* (an input layer's rescale range,
    a ParameterError); such a complaint about the stand-ins' zeros is no verdict
    on the file, so the first pass stops there and the second pass, on the real
    arrays, decides.
    """
    try:
        _build_checked(entries, classes, stand_ins, name, source)
    except ParameterError as err:
        if isinstance(err, (ShapeError, MissingParameterError)):
            raise


def _build_checked(entries: list[dict[str, Any]], classes: dict[str, type["Layer"]],
                   weights: dict[str, dict[str, np.ndarray]], name: str, source: str,
                   aliases: dict[str, str] | None = None, metadata: dict[str, Any] | None = None) -> "Network":
    layers = []
    for entry in entries:
        layer = _build_layer(entry, classes[entry["name"]], weights[entry["name"]], source)
        _check_list_properties(entry, layer, source)
        layers.append(layer)
    return _build_network(layers, name or None, weights, source, aliases, metadata)


def _corrupt(source: str, err: Exception) -> FileFormatError:
    return FileFormatError(f"{source}: HDF5 could not read the file, so it is truncated or corrupt ({err}).")


# -- root attributes --------------------------------------------------------------
def _read_root_attributes(root: h5py.Group, source: str) -> dict[str, Any]:
    """The root attributes, checked: format first, then schema_version, then the other strings."""
    values = {"format": _required_string_attribute(root, "format", source)}
    if values["format"] != FORMAT_NAME:
        raise FileFormatError(f"{source}: the 'format' attribute is {values['format']!r}, "
                              f"not {FORMAT_NAME!r}.")
    values["schema_version"] = _schema_version(root, source)
    for name in ROOT_STRING_ATTRIBUTES[1:]:
        values[name] = _required_string_attribute(root, name, source)
    return values


def _required_string_attribute(root: h5py.Group, name: str, source: str) -> str:
    if name not in root.attrs:
        raise FileFormatError(f"{source}: the root attribute {name!r} is missing; a refcam v1 "
                              f"file has the root attributes format, schema_version, "
                              f"refcam_version, name and topology.")
    value = _string_attribute_or_none(root, name)
    if value is None:
        raise FileFormatError(f"{source}: the root attribute {name!r} must be one string "
                              f"(UTF-8 or ASCII, fixed or variable length).")
    return value


def _schema_version(root: h5py.Group, source: str) -> int:
    hint = (f"write it as a 64- or 32-bit integer, {FIRST_SCHEMA_VERSION} (or {SCHEMA_VERSION} with the classes or "
            f"preprocessing attributes; MATLAB: int32({FIRST_SCHEMA_VERSION}))")
    if "schema_version" not in root.attrs:
        raise SchemaVersionError(f"{source}: the root attribute 'schema_version' is missing; {hint}.")
    attribute = root.attrs.get_id("schema_version")
    if attribute.get_type().get_class() != h5py.h5t.INTEGER or attribute.shape not in ((), (1,)):
        raise SchemaVersionError(f"{source}: 'schema_version' must be one integer, found an "
                                 f"HDF5 {_type_class_name(attribute.get_type())} of shape "
                                 f"{attribute.shape}; {hint}.")
    version = int(np.asarray(root.attrs["schema_version"]).reshape(()))
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(f"{source}: schema_version {version} was written by a newer "
                                 f"refcam; this refcam reads schema_version {SCHEMA_VERSION}. "
                                 f"Upgrade refcam.")
    if version < FIRST_SCHEMA_VERSION:
        raise SchemaVersionError(f"{source}: schema_version {version} is not a valid refcam "
                                 f"schema version (versions start at 1); {hint}.")
    return version


def _string_attribute_or_none(obj: h5py.HLObject, name: str) -> str | None:
    """The attribute as a str when it is one HDF5 string (fixed or variable length), else None."""
    attribute = obj.attrs.get_id(name)
    if attribute.get_type().get_class() != h5py.h5t.STRING or attribute.shape not in ((), (1,)):
        return None
    value = np.asarray(obj.attrs[name], dtype=object).reshape(())[()]
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def read_aliases(root: h5py.Group, layer_names: list[str], source: str) -> dict[str, str]:
    """The optional ``aliases`` root attribute: a JSON object ``{alias: layer name}`` ({} when absent).

    Rule: one string holding a JSON object (no duplicate keys) whose keys are
    non-empty strings that are no layer's name and whose values name layers of
    the topology; anything else is a FileFormatError.
    """
    if ALIASES_ATTRIBUTE not in root.attrs:
        return {}
    where = f"{source}: the root attribute {ALIASES_ATTRIBUTE!r}"
    aliases = _json_attribute(root, ALIASES_ATTRIBUTE, dict, "a JSON object {alias: layer name}", where)
    names = set(layer_names)
    for alias, target in aliases.items():
        if not alias or alias in names or not isinstance(target, str) or target not in names:
            raise FileFormatError(
                f"{where}: {alias!r} -> {target!r} is not an alias: an alias is a non-empty name that no layer "
                "has, for a layer of the topology.")
    return aliases


def _json_attribute(root: h5py.Group, name: str, kind: type, what: str, where: str) -> Any:
    """The root attribute ``name``: one string holding JSON of type ``kind`` (no NaN, no repeated keys)."""
    text = _string_attribute_or_none(root, name)
    if text is None:
        raise FileFormatError(f"{where} must be one string holding {what}.")
    try:
        value = json.loads(text, object_pairs_hook=_reject_duplicate_keys, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as err:
        raise FileFormatError(f"{where} is not valid JSON ({err}).") from err
    if not isinstance(value, kind):
        raise FileFormatError(f"{where} must be {what}, found {type(value).__name__}.")
    return value


def read_metadata(root: h5py.Group, version: int, source: str) -> dict[str, Any]:
    """The optional version-2 attributes as ``Network`` keywords: ``classes`` (list), ``preprocessing``.

    A version-1 file has none (extra root attributes are ignored there, as
    version 1 specifies). The values themselves are checked by ``Network``
    (one distinct name per output channel; preprocessing fields), whose
    errors name the file.
    """
    from ..preprocess import Preprocessing

    if version < SCHEMA_VERSION:
        return {}
    metadata: dict[str, Any] = {}
    if CLASSES_ATTRIBUTE in root.attrs:
        metadata["classes"] = _json_attribute(root, CLASSES_ATTRIBUTE, list, "a JSON list of class names",
                                              f"{source}: the root attribute {CLASSES_ATTRIBUTE!r}")
    if PREPROCESSING_ATTRIBUTE in root.attrs:
        where = f"{source}: the root attribute {PREPROCESSING_ATTRIBUTE!r}"
        fields = _json_attribute(root, PREPROCESSING_ATTRIBUTE, dict, "a JSON object of preprocessing fields", where)
        try:
            metadata["preprocessing"] = Preprocessing.from_dict(fields)
        except (RefcamError, TypeError) as err:
            raise FileFormatError(f"{where}: {err}") from err
    return metadata


# -- topology ---------------------------------------------------------------------
def parse_topology(text: str, source: str = "topology") -> list[dict[str, Any]]:
    """Parse and check the topology JSON: ``{"layers": [{name, kind, inputs, properties}, ...]}``.

    Returns the list of layer entries. Raises :class:`FileFormatError` for
    invalid JSON, duplicate keys, NaN/Infinity or numbers beyond float64
    (``1e309``), or entries of the wrong
    structure, and :class:`DuplicateLayerNameError` for repeated layer names.
    """
    try:
        document = json.loads(text, object_pairs_hook=_reject_duplicate_keys,
                              parse_constant=_reject_constant, parse_float=finite_float)
    except (ValueError, RecursionError) as err:
        raise FileFormatError(f"{source}: the 'topology' attribute is not valid JSON ({err}).") from err
    if not isinstance(document, dict) or set(document) != {"layers"} or not isinstance(document["layers"], list):
        raise FileFormatError(f'{source}: the topology must be a JSON object {{"layers": [...]}} '
                              f"with exactly the key 'layers' holding a list.")
    entries = document["layers"]
    if not entries:
        raise FileFormatError(f"{source}: the topology lists no layers.")
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        _check_layer_entry(entry, index, source)
        if entry["name"] in seen:
            raise DuplicateLayerNameError(f"{source}: the topology has two layers named "
                                          f"{entry['name']!r}; layer names must be unique.")
        seen.add(entry["name"])
    return entries


def _check_layer_entry(entry: Any, index: int, source: str) -> None:
    where = f"{source}: topology layer #{index}"
    if not isinstance(entry, dict) or set(entry) != set(LAYER_ENTRY_KEYS):
        found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise FileFormatError(f"{where} must be an object with exactly the keys "
                              f"{list(LAYER_ENTRY_KEYS)}, found {found}.")
    if not isinstance(entry["name"], str) or not entry["name"]:
        raise FileFormatError(f"{where}: 'name' must be a non-empty string, found {entry['name']!r}.")
    where = f"{where} ({entry['name']!r})"
    if not isinstance(entry["kind"], str):
        raise FileFormatError(f"{where}: 'kind' must be a string, found {entry['kind']!r}.")
    inputs = entry["inputs"]
    if not isinstance(inputs, list) or not all(isinstance(name, str) for name in inputs):
        raise FileFormatError(f"{where}: 'inputs' must be a list of layer names, found {inputs!r}.")
    if not isinstance(entry["properties"], dict):
        raise FileFormatError(f"{where}: 'properties' must be a JSON object, found {entry['properties']!r}.")


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"duplicate keys {repeated} in one JSON object")
    return dict(pairs)


def finite_float(text: str) -> float:
    """A JSON number token as a float; a token beyond float range (``1e309``, read as inf) is a ValueError.

    >>> finite_float("2.5")
    2.5
    """
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text} is beyond the float64 range")
    return value


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed (properties must be finite)")


def _layer_class(entry: dict[str, Any], source: str) -> type["Layer"]:
    kinds = layer_base.LAYER_KINDS
    if entry["kind"] not in kinds:
        raise UnknownLayerTypeError(f"{source}: layer {entry['name']!r} has kind {entry['kind']!r}, "
                                    f"which this refcam does not know. Known kinds: "
                                    f"{', '.join(sorted(kinds))}.")
    return kinds[entry["kind"]]


def check_topological_order(entries: list[dict[str, Any]], source: str = "topology") -> None:
    """FileFormatError when a layer lists as input a layer that comes later in the topology.

    docs/hdf5-format.md requires topological order (every layer after the
    layers it reads). Checked after the network is built, so that a cycle is
    reported as the network's CycleError and an unknown name as its
    UnknownInputError.
    """
    position = {entry["name"]: index for index, entry in enumerate(entries)}
    for index, entry in enumerate(entries):
        later = [name for name in entry["inputs"] if position.get(name, -1) >= index]
        if later:
            raise FileFormatError(
                f"{source}: topology layer #{index} ({entry['name']!r}) reads {later}, which come at or after it; "
                "the layers must be listed in topological order (every layer after the layers it reads).")


def _check_list_properties(entry: dict[str, Any], layer: "Layer", source: str) -> None:
    """A list-valued property in a file holds one number or as many numbers as the layer stores.

    So 3 padding numbers for a 3-D convolution's 6 slots is an error, never a
    guess (MATLAB's per-axis shorthand is for the Python constructors).
    """
    stored = layer.properties()
    for key, value in entry["properties"].items():
        if not isinstance(value, list) or not isinstance(stored.get(key), list):
            continue
        given, needed = _leaf_count(value), _leaf_count(stored[key])
        if given != needed:
            raise FileFormatError(
                f"{source}: layer {entry['name']!r} ({entry['kind']}): property {key!r} = {value!r} has {given} "
                f"number(s); a file gives one number or all {needed} ({stored[key]!r} here, docs/hdf5-format.md).")


def _leaf_count(value: Any) -> int:
    return sum(_leaf_count(item) for item in value) if isinstance(value, list) else 1


# -- weights ----------------------------------------------------------------------
def _check_root_members(root: h5py.Group, source: str) -> None:
    for member in root.keys():
        if member != WEIGHTS_GROUP:
            raise FileFormatError(f"{source}: unexpected object /{member} at the root; a refcam v1 "
                                  f"file holds only the group /{WEIGHTS_GROUP}.")
    if WEIGHTS_GROUP not in root:
        raise FileFormatError(f"{source}: the group /{WEIGHTS_GROUP} is missing (it is required, "
                              f"even when empty).")
    safe.hdf5_object(root, WEIGHTS_GROUP, h5py.Group, source)


def _declared_weights(root: h5py.Group, entries: list[dict[str, Any]], classes: dict[str, type["Layer"]],
                      source: str, max_tensor_bytes: int) -> dict[str, dict[str, h5py.Dataset]]:
    """The datasets of ``/weights`` per layer name, each checked from its declaration alone (nothing read).

    Every path component is a hard link, every dataset holds IEEE floats stored
    in the file, and its declared size fits ``max_tensor_bytes``.
    """
    weights_group = safe.hdf5_object(root, WEIGHTS_GROUP, h5py.Group, source)
    layer_by_group = {group_name(entry["name"]): entry["name"] for entry in entries}
    datasets: dict[str, dict[str, h5py.Dataset]] = {entry["name"]: {} for entry in entries}
    for member in weights_group.keys():
        if member not in layer_by_group:
            raise FileFormatError(f"{source}: unexpected group /{WEIGHTS_GROUP}/{member}: the topology has no "
                                  f"layer whose group name is {member!r} (layer names with '/' or '%' "
                                  f"are written %2F and %25).")
        layer_name = layer_by_group[member]
        group = safe.hdf5_object(weights_group, member, h5py.Group, source)
        datasets[layer_name] = _declared_layer_weights(group, layer_name, classes[layer_name], source,
                                                       max_tensor_bytes)
    return datasets


def _declared_layer_weights(group: h5py.Group, layer_name: str, cls: type["Layer"], source: str,
                            max_tensor_bytes: int) -> dict[str, h5py.Dataset]:
    found = {}
    valid = cls.param_names()
    for param_name in group.keys():
        where = dataset_path(layer_name, param_name)
        if param_name not in valid:
            raise FileFormatError(f"{source}: unexpected dataset {where}: layer {layer_name!r} "
                                  f"({cls.kind}) has the parameters {list(valid)}.")
        dataset = safe.hdf5_object(group, param_name, h5py.Dataset, source)
        safe.check_dataset(dataset, where, source, max_tensor_bytes=max_tensor_bytes)
        _check_weight_type(dataset, where, source)
        found[param_name] = dataset
    return {name: found[name] for name in valid if name in found}


def _stand_ins(datasets: dict[str, dict[str, h5py.Dataset]]) -> dict[str, dict[str, np.ndarray]]:
    """Zero-cost arrays of each dataset's declared shape and dtype (read-only broadcast views of one zero)."""
    return {layer: {param: np.broadcast_to(np.zeros((), parameter_dtype(dataset)), dataset.shape)
                    for param, dataset in arrays.items()}
            for layer, arrays in datasets.items()}


def _read_weights(datasets: dict[str, dict[str, h5py.Dataset]], source: str,
                  max_tensor_bytes: int) -> dict[str, dict[str, np.ndarray]]:
    """Read every declared dataset (shapes already accepted by the layers); NaN/Inf refused."""
    return {layer: {param: safe.read_dataset(dataset, dataset_path(layer, param), source,
                                             expected_shape=dataset.shape, max_tensor_bytes=max_tensor_bytes
                                             ).astype(parameter_dtype(dataset), copy=False)
                    for param, dataset in arrays.items()}
            for layer, arrays in datasets.items()}


def parameter_dtype(dataset: h5py.Dataset) -> np.dtype:
    """The parameter's dtype: the dataset's, or float64 for float32 data marked ``dtype = "float64"`` (compact)."""
    stored = dataset.dtype.newbyteorder("=")
    if PARAMETER_DTYPE_ATTRIBUTE not in dataset.attrs:
        return stored
    marked = np.asarray(dataset.attrs[PARAMETER_DTYPE_ATTRIBUTE], dtype=object).reshape(-1)
    value = marked[0].decode("utf-8", "replace") if marked.size == 1 and isinstance(marked[0], bytes) else (
        marked[0] if marked.size == 1 else None)
    if value != "float64" or stored != np.float32:
        raise FileFormatError(f"{dataset.file.filename}: {dataset.name} is {stored} with the attribute "
                              f"{PARAMETER_DTYPE_ATTRIBUTE}={value!r}; the attribute is only 'float64', on float32 "
                              "data (a float64 parameter stored exactly as float32). Remove it or fix the data.")
    return np.dtype(np.float64)


def _check_weight_type(dataset: h5py.Dataset, where: str, source: str) -> None:
    """Accept IEEE float32/float64 only, judged from the HDF5 type before any data is read."""
    hdf5_type = dataset.id.get_type()
    type_class = hdf5_type.get_class()
    if type_class == h5py.h5t.FLOAT and hdf5_type.get_size() in (4, 8):
        return
    fix = "weights must be float32 or float64 (MATLAB: single or double)"
    if type_class in (h5py.h5t.INTEGER, h5py.h5t.ENUM, h5py.h5t.FLOAT, h5py.h5t.BITFIELD) or _is_complex(dataset):
        raise WeightShapeError(f"{source}: {where} has dtype {_dtype_name(dataset)} "
                               f"(shape {dataset.shape}); {fix}.")
    raise FileFormatError(f"{source}: {where} has the HDF5 type class "
                          f"{_type_class_name(hdf5_type)}, which is not numeric; {fix}. refcam "
                          f"never decodes objects, strings or pickled data.")


def _is_complex(dataset: h5py.Dataset) -> bool:
    try:
        return dataset.dtype.kind == "c"
    except (TypeError, ValueError):
        return False


def _dtype_name(dataset: h5py.Dataset) -> str:
    try:
        return str(dataset.dtype)
    except (TypeError, ValueError):
        return _type_class_name(dataset.id.get_type())


def _type_class_name(hdf5_type: h5py.h5t.TypeID) -> str:
    names = {getattr(h5py.h5t, name): name for name in
             ("INTEGER", "FLOAT", "TIME", "STRING", "BITFIELD", "OPAQUE", "COMPOUND",
              "REFERENCE", "ENUM", "VLEN", "ARRAY")}
    return names.get(hdf5_type.get_class(), f"class {hdf5_type.get_class()}")


# -- layers and network -------------------------------------------------------------
def _build_layer(entry: dict[str, Any], cls: type["Layer"], arrays: dict[str, np.ndarray],
                 source: str) -> "Layer":
    """Construct one layer from its topology entry and datasets, mapping errors to the file."""
    name = entry["name"]
    where = f"{source}: layer {name!r} ({cls.kind})"
    properties = entry["properties"]
    valid = cls.property_names()
    unknown = sorted(set(properties) - set(valid))
    if unknown:
        raise FileFormatError(f"{where}: unknown properties {unknown}; valid properties are "
                              f"{list(valid)}.")
    missing = [field for field in _properties_without_default(cls) if field not in properties]
    if missing:
        raise FileFormatError(f"{where}: the properties {missing} are missing (they have no default).")
    for param_name in cls.param_names():
        if param_name not in arrays and param_name not in optional_params(cls):
            raise MissingDatasetError(f"{where}: the dataset {dataset_path(name, param_name)} is "
                                      f"missing; layers of kind {cls.kind!r} need "
                                      f"{_required_params(cls)}.")
    try:
        return cls(name=name, inputs=tuple(entry["inputs"]), **properties, **arrays)
    except RefcamError as err:
        context = source if repr(name) in str(err) else where
        if isinstance(err, ShapeError):
            raise WeightShapeError(f"{context}: {err} (datasets: {_describe_arrays(name, arrays)})") from err
        if isinstance(err, LayerConfigError):
            raise _file_error_for_layer(err, where, context, name) from err
        raise _with_context(err, context) from err
    except (TypeError, ValueError) as err:
        raise FileFormatError(f"{where}: invalid properties {properties} ({err}).") from err


def optional_params(cls: type["Layer"]) -> tuple[str, ...]:
    """The parameters a file may leave out for layers of class ``cls``.

    Every ``bias`` is optional (absent means no bias). Input layers' statistics
    are all optional here: the layer itself requires the ones its normalization
    uses. Every other parameter is required.
    """
    if cls.num_inputs == 0:
        return cls.param_names()
    return tuple(name for name in cls.param_names() if name == "bias")


def _required_params(cls: type["Layer"]) -> list[str]:
    return [name for name in cls.param_names() if name not in optional_params(cls)]


def _properties_without_default(cls: type["Layer"]) -> list[str]:
    return [field.name for field in dataclasses.fields(cls)
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            and field.name in cls.property_names()]


def _file_error_for_layer(err: LayerConfigError, where: str, context: str, name: str) -> RefcamError:
    """A layer's complaint about one of its parameters, as the file error naming the dataset.

    A missing parameter (``MissingParameterError``) becomes MissingDatasetError;
    any other complaint (a property value) keeps its type, with the file named.
    """
    if isinstance(err, MissingParameterError):
        return MissingDatasetError(f"{where}: the dataset {dataset_path(name, err.param)} is "
                                   f"missing. {err}")
    return _with_context(err, context)


def _build_network(layers: list["Layer"], name: str | None, weights: dict[str, dict[str, np.ndarray]],
                   source: str, aliases: dict[str, str] | None = None,
                   metadata: dict[str, Any] | None = None) -> "Network":
    from ..network import Network

    try:
        return Network(layers, name=name, aliases=aliases, **(metadata or {}))
    except ShapeError as err:
        culprit = _layer_named_in(err, weights)
        if culprit is None:
            raise _with_context(err, source) from err
        raise WeightShapeError(f"{source}: {err} (datasets of layer {culprit!r}: "
                               f"{_describe_arrays(culprit, weights[culprit])})") from err
    except RefcamError as err:
        raise _with_context(err, source) from err


def _layer_named_in(err: Exception, weights: dict[str, dict[str, np.ndarray]]) -> str | None:
    """The layer with parameters whose quoted name comes first in a network shape error, if any."""
    message = str(err)
    candidates = [layer for layer, arrays in weights.items() if arrays and repr(layer) in message]
    return min(candidates, key=lambda layer: message.index(repr(layer))) if candidates else None


def _describe_arrays(layer_name: str, arrays: dict[str, np.ndarray]) -> str:
    if not arrays:
        return "none"
    return ", ".join(f"{dataset_path(layer_name, param)} {tuple(array.shape)} {array.dtype}"
                     for param, array in arrays.items())


def _with_context(err: RefcamError, where: str) -> RefcamError:
    """The same exception type with ``where`` prefixed to the message (a ParameterError keeps its ``param``)."""
    if isinstance(err, ParameterError):
        return type(err)(f"{where}: {err}", err.param)
    return type(err)(f"{where}: {err}")
