"""refcam's own HDF5 network format, schema version 1: ``save`` and ``load``.

The file layout is specified in ``docs/hdf5-format.md`` (written so that MATLAB
or C++ code can produce a valid file from it alone). In short::

    /                      attributes: format = "refcam-network"
                                       schema_version = 1 (integer)
                                       refcam_version, name (strings)
                                       topology (JSON string, layers in
                                       topological order)
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
    RefcamError,
    SchemaVersionError,
    ShapeError,
    UnknownLayerTypeError,
    WeightShapeError,
)
from ..layers import base as layer_base

if TYPE_CHECKING:
    from ..layers.base import Layer
    from ..network import Network

FORMAT_NAME = "refcam-network"
SCHEMA_VERSION = 1
WEIGHTS_GROUP = "weights"
WEIGHT_DTYPES = (np.dtype(np.float64), np.dtype(np.float32))
ROOT_STRING_ATTRIBUTES = ("format", "refcam_version", "name", "topology")
LAYER_ENTRY_KEYS = ("name", "kind", "inputs", "properties")

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
def save(net: "Network", path: str | os.PathLike) -> None:
    """Write ``net`` to ``path`` in refcam HDF5 format v1 (overwriting the file).

    Parameters are written exactly as held (same dtype and values; NumPy or CuPy
    arrays), so ``load(path)`` gives back equal arrays bit for bit. The same
    network always gives a byte-identical file.

    >>> refcam.io.save(net, "net.h5")            # doctest: +SKIP
    >>> refcam.io.load("net.h5").layer("conv").weights.dtype  # doctest: +SKIP
    dtype('float64')
    """
    from .. import __version__

    topology = json.dumps({"layers": [_layer_entry(layer) for layer in net.layers]},
                          ensure_ascii=False, allow_nan=False)
    weights = [(layer.name, _weights_to_write(layer)) for layer in net.layers]
    with h5py.File(os.fspath(path), "w", track_order=True) as f:
        f.attrs["format"] = FORMAT_NAME
        f.attrs["schema_version"] = np.int64(SCHEMA_VERSION)
        f.attrs["refcam_version"] = __version__
        f.attrs["name"] = net.name or ""
        f.attrs["topology"] = topology
        weights_group = f.create_group(WEIGHTS_GROUP, track_order=True)
        for layer_name, arrays in weights:
            if not arrays:
                continue
            group = weights_group.create_group(group_name(layer_name), track_order=True)
            for param_name, array in arrays.items():
                group.create_dataset(param_name, data=array, track_times=False)


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
    only. A missing file raises :class:`FileNotFoundError`.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "No such file", path)
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
def load(path: str | os.PathLike) -> "Network":
    """Read a refcam HDF5 file (format v1) and return the validated :class:`~refcam.network.Network`.

    Raises :class:`FileNotFoundError` for a missing file and a specific
    :class:`~refcam.errors.FileFormatError` subclass for every problem in the
    file (each message names the layer and dataset concerned). Network-level
    problems (a cycle, an unknown input layer) raise the network's own errors.

    >>> net = refcam.io.load("net.h5")  # doctest: +SKIP
    """
    source = os.fspath(path)
    detect_format(source)
    try:
        f = h5py.File(source, "r")
    except OSError as err:
        raise _corrupt(source, err) from err
    with f:
        return read_network(f, source)


def read_network(root: h5py.Group, source: str) -> "Network":
    """Build the Network stored in ``root`` (an open file or a group holding the v1 layout).

    ``source`` names the file in error messages.
    """
    try:
        attrs = _read_root_attributes(root, source)
        entries = parse_topology(attrs["topology"], source)
        classes = {entry["name"]: _layer_class(entry, source) for entry in entries}
        _check_root_members(root, source)
        weights = _read_weights(root, entries, classes, source)
    except RefcamError:
        raise
    except HDF5_READ_ERRORS as err:
        raise _corrupt(source, err) from err
    layers = [_build_layer(entry, classes[entry["name"]], weights[entry["name"]], source)
              for entry in entries]
    return _build_network(layers, attrs["name"] or None, weights, source)


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
    hint = f"write it as a 64- or 32-bit integer equal to {SCHEMA_VERSION} (MATLAB: int32({SCHEMA_VERSION}))"
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
    if version < SCHEMA_VERSION:
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


# -- topology ---------------------------------------------------------------------
def parse_topology(text: str, source: str = "topology") -> list[dict[str, Any]]:
    """Parse and check the topology JSON: ``{"layers": [{name, kind, inputs, properties}, ...]}``.

    Returns the list of layer entries. Raises :class:`FileFormatError` for
    invalid JSON, duplicate keys, NaN/Infinity, or entries of the wrong
    structure, and :class:`DuplicateLayerNameError` for repeated layer names.
    """
    try:
        document = json.loads(text, object_pairs_hook=_reject_duplicate_keys,
                              parse_constant=_reject_constant)
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


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed (properties must be finite)")


def _layer_class(entry: dict[str, Any], source: str) -> type["Layer"]:
    kinds = layer_base.LAYER_KINDS
    if entry["kind"] not in kinds:
        raise UnknownLayerTypeError(f"{source}: layer {entry['name']!r} has kind {entry['kind']!r}, "
                                    f"which this refcam does not know. Known kinds: "
                                    f"{', '.join(sorted(kinds))}.")
    return kinds[entry["kind"]]


# -- weights ----------------------------------------------------------------------
def _check_root_members(root: h5py.Group, source: str) -> None:
    for member in root.keys():
        if member != WEIGHTS_GROUP:
            raise FileFormatError(f"{source}: unexpected object /{member} at the root; a refcam v1 "
                                  f"file holds only the group /{WEIGHTS_GROUP}.")
    if WEIGHTS_GROUP not in root:
        raise FileFormatError(f"{source}: the group /{WEIGHTS_GROUP} is missing (it is required, "
                              f"even when empty).")
    hard_link_target(root, WEIGHTS_GROUP, f"/{WEIGHTS_GROUP}", h5py.Group, source)


def _read_weights(root: h5py.Group, entries: list[dict[str, Any]], classes: dict[str, type["Layer"]],
                  source: str) -> dict[str, dict[str, np.ndarray]]:
    """Read ``/weights``: one dict of arrays per layer name, every dataset checked."""
    weights_group = root[WEIGHTS_GROUP]
    layer_by_group = {group_name(entry["name"]): entry["name"] for entry in entries}
    weights: dict[str, dict[str, np.ndarray]] = {entry["name"]: {} for entry in entries}
    for member in weights_group.keys():
        where = f"/{WEIGHTS_GROUP}/{member}"
        if member not in layer_by_group:
            raise FileFormatError(f"{source}: unexpected group {where}: the topology has no layer "
                                  f"whose group name is {member!r} (layer names with '/' or '%' "
                                  f"are written %2F and %25).")
        layer_name = layer_by_group[member]
        group = hard_link_target(weights_group, member, where, h5py.Group, source)
        weights[layer_name] = _read_layer_weights(group, layer_name, classes[layer_name], source)
    return weights


def _read_layer_weights(group: h5py.Group, layer_name: str, cls: type["Layer"],
                        source: str) -> dict[str, np.ndarray]:
    arrays = {}
    valid = cls.param_names()
    for param_name in group.keys():
        where = dataset_path(layer_name, param_name)
        if param_name not in valid:
            raise FileFormatError(f"{source}: unexpected dataset {where}: layer {layer_name!r} "
                                  f"({cls.kind}) has the parameters {list(valid)}.")
        dataset = hard_link_target(group, param_name, where, h5py.Dataset, source)
        arrays[param_name] = _read_weight_array(dataset, where, source)
    return {name: arrays[name] for name in valid if name in arrays}


def hard_link_target(group: h5py.Group, member: str, where: str, expected: type, source: str) -> Any:
    """The object behind a hard link, of type ``expected`` (refuses soft and external links).

    Every HDF5 reader in refcam (networks, goldens, Keras files) goes through this,
    so no file can point refcam at data outside itself.
    """
    link = group.get(member, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise FileFormatError(f"{source}: {where} is a {type(link).__name__}; refcam reads "
                              f"plain (hard-linked) groups and datasets stored in the file only.")
    target = group[member]
    if not isinstance(target, expected):
        raise FileFormatError(f"{source}: {where} is a {type(target).__name__}, not a "
                              f"{expected.__name__}.")
    return target


def _read_weight_array(dataset: h5py.Dataset, where: str, source: str) -> np.ndarray:
    """Read one parameter dataset after checking its storage and type; check it is finite."""
    _check_weight_storage(dataset, where, source)
    _check_weight_type(dataset, where, source)
    try:
        array = dataset[()]
    except HDF5_READ_ERRORS as err:
        raise FileFormatError(f"{source}: HDF5 could not read {where} ({err}); the file is "
                              f"truncated or corrupt.") from err
    array = np.asarray(array)
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    finite = np.isfinite(array)
    if not finite.all():
        raise FileFormatError(f"{source}: {where} holds {array.size - int(finite.sum())} NaN or Inf "
                              f"value(s) of {array.size}; weights must be finite.")
    return array


def _check_weight_storage(dataset: h5py.Dataset, where: str, source: str) -> None:
    if dataset.is_virtual or dataset.external:
        raise FileFormatError(f"{source}: {where} keeps its data outside the file (virtual or "
                              f"external storage); refcam reads data stored in the file only.")
    if dataset.shape is None:
        raise FileFormatError(f"{source}: {where} has an empty (null) dataspace; write the array.")


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
                   source: str) -> "Network":
    from ..network import Network

    try:
        return Network(layers, name=name)
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
    """The same exception type with ``where`` prefixed to the message."""
    return type(err)(f"{where}: {err}")
