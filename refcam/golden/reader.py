"""Reading golden files: every declaration checked against the embedded network before any array is read.

The order is what makes a crafted file harmless (docs/security.md):

1. the root attributes (strings, a schema version, JSON parsed with ``json.loads`` only);
2. the names at the root (links are looked at, never followed);
3. the embedded network, with the network loader's own checks
   (:func:`refcam.io.hdf5.read_network`); or, for a golden that names its
   network file (schema version 2), that file: a plain name looked up in the
   golden's folder only (or the path the caller gives), its SHA-256 checked
   against the recorded one before it is loaded by :func:`refcam.load`;
4. each dataset's declaration: a hard link stored in the file, an allowed HDF5
   type class, the compute dtype, a declared size within ``max_tensor_bytes``
   and backed by stored bytes (:func:`refcam.io.safe.check_dataset`);
5. the shapes they must have, from the network and ``/input_internal``
   (:mod:`refcam.golden.consistency`);
6. only then the arrays (NaN/Inf refused), and the labels and mask values.
"""
from __future__ import annotations

import json
import os
from typing import Any

import h5py
import numpy as np

from ..cam.conventions import CONVENTIONS
from ..errors import (ExternalReferenceError, FileFormatError, MissingDatasetError, NonFiniteParameterError,
                      RefcamError, SchemaVersionError)
from ..io import safe
from ..io.hdf5 import HDF5_READ_ERRORS, read_network, sniff
from ..network import Network
from .consistency import check_declared, check_values, expected_shapes
from .record import (COMPUTE_DTYPES, FORMAT_NAME, GOLDEN_METHODS, INTERMEDIATES, METHOD, NETWORK_FILE, NETWORK_GROUP, NETWORK_SHA256,
                     OPTIONAL_DATASETS, PROVENANCE, REDUCTIONS, EXTENDED_SCHEMA_VERSION, REQUIRED_DATASETS,
                     SCHEMA_VERSION, STRING_ATTRIBUTES, Golden, GoldenDtypeError)
from .writer import file_sha256


class GoldenNetworkError(FileFormatError):
    """The network file a golden names is missing, outside the golden's folder, or not the one it was made with."""

OPTION_KEYS = ("label", "convention", "mask", "format")
FLOAT_DATASETS = ("input_internal",) + INTERMEDIATES


def read(path: str | os.PathLike, *, network_file: str | os.PathLike | None = None,
         max_tensor_bytes: int = safe.DEFAULT_MAX_TENSOR_BYTES) -> Golden:
    """Read and validate a golden file written by :func:`refcam.golden.write` (or any writer following
    docs/golden-format.md).

    ``max_tensor_bytes`` (default 2 GiB, counted in float64) bounds every
    dataset the file declares, the embedded network's weights included.

    A golden written with ``network_file=`` (schema version 2) holds no
    network: it is read from ``network_file`` when given, else from the file
    of the recorded name in the golden's own folder, and refused
    (:class:`GoldenNetworkError`) unless its SHA-256 is the recorded one.

    Raises :class:`FileNotFoundError` for a missing file, and
    :class:`~refcam.errors.FileFormatError` or its subclasses
    (:class:`~refcam.errors.SchemaVersionError`,
    :class:`~refcam.errors.MissingDatasetError`,
    :class:`~refcam.golden.GoldenShapeError` when the datasets do not fit the
    network and each other, :class:`~refcam.golden.GoldenDtypeError`,
    :class:`~refcam.errors.DeclaredSizeError`,
    :class:`~refcam.errors.ExternalReferenceError` and the network loader's
    errors) naming what is wrong. Nothing in the file is executed.

    >>> golden = refcam.golden.read("cat.golden.h5")      # doctest: +SKIP
    >>> golden.map.shape, golden.feature_layer             # doctest: +SKIP
    ((224, 224), 'relu_5')
    """
    budget = safe.check_budget(max_tensor_bytes)
    source = safe.check_regular_file(path)
    _check_is_golden(source)
    try:
        with h5py.File(source, "r") as f:
            return _read_open(f, source, budget, network_file)
    except RefcamError:
        raise
    except HDF5_READ_ERRORS as err:
        raise FileFormatError(f"{source}: HDF5 could not read the file, so it is truncated or corrupt "
                              f"({err}).") from err


def _check_is_golden(source: str) -> None:
    kind, description = sniff(source)
    if kind == "refcam":
        raise FileFormatError(f"{source} is a refcam network file, not a golden file; load it with "
                              "refcam.load, or write a golden with refcam.golden.write.")
    if kind != "hdf5":
        raise FileFormatError(f"{source} is not a refcam golden file: {description}.")


def _read_open(f: h5py.File, source: str, budget: int, network_file: str | os.PathLike | None) -> Golden:
    attributes = _read_attributes(f, source)
    options = _parse_options(attributes["options"], attributes["convention"], source)
    referencing = NETWORK_FILE in attributes
    _check_members(f, source, referencing)
    if referencing:
        network = _referenced_network(attributes, source, network_file, budget)
    else:
        network = read_network(safe.hdf5_object(f, NETWORK_GROUP, h5py.Group, source),
                               f"{source}:/{NETWORK_GROUP}", max_tensor_bytes=budget)
    _check_layer_roles(attributes, network, source)
    datasets = {name: _declared_dataset(f, name, attributes["dtype"], source, budget)
                for name in REQUIRED_DATASETS + OPTIONAL_DATASETS if f.get(name, getlink=True) is not None}
    _check_reduction_kind(attributes, datasets, source)
    declared = {name: tuple(int(n) for n in dataset.shape) for name, dataset in datasets.items()}
    expected = expected_shapes(declared, attributes, options, network, source)
    check_declared(declared, expected, source)
    arrays = {name: _read_dataset(dataset, name, source, budget) for name, dataset in datasets.items()}
    check_values(arrays, attributes, network, source)
    return Golden(
        input=arrays["input"], input_internal=arrays["input_internal"],
        **{name: arrays[name] for name in INTERMEDIATES},
        labels=arrays.get("labels"), mask=None if "mask" not in arrays else arrays["mask"].astype(bool),
        network=network, feature_layer=attributes["feature_layer"], reduction_layer=attributes["reduction_layer"],
        reduction=attributes["reduction"], reduction_source=attributes["reduction_source"],
        convention=attributes["convention"], dtype=attributes["dtype"], map_axes=attributes["map_axes"],
        options=options, **{name: attributes[name] for name in PROVENANCE}, path=source,
        network_sha256=attributes.get(NETWORK_SHA256), network_file=attributes.get(NETWORK_FILE),
        method=attributes.get(METHOD, "gradcam"))


def _referenced_network(attributes: dict[str, str], source: str, network_file: str | os.PathLike | None,
                        budget: int) -> Network:
    """The network file a referencing golden names, found and checked by SHA-256 before it is loaded."""
    from ..io import load
    name, expected = attributes[NETWORK_FILE], attributes[NETWORK_SHA256]
    path = os.fspath(network_file) if network_file is not None else _beside(source, name)
    if not os.path.isfile(path):
        raise GoldenNetworkError(f"{source} names its network file {name!r}, which is not at {path!r}; put the "
                                 "network file beside the golden, or give its path (network_file=, or "
                                 "refcam compare --network).")
    found = file_sha256(path)
    if found != expected:
        raise GoldenNetworkError(f"{source} was made with a network file of SHA-256 {expected}; {path!r} has "
                                 f"{found}. Give the file the golden was made with.")
    return load(path, max_tensor_bytes=budget)


def _beside(source: str, name: str) -> str:
    """``name`` in the golden's folder; a name with a folder part, ``..`` or a link leaving the folder refused."""
    if not name or "\0" in name or name in (".", "..") or os.path.basename(name) != name or "\\" in name:
        raise ExternalReferenceError(f"{source}: network_file {name!r} is not a plain file name; a golden names "
                                     "a network file in its own folder only.")
    folder = os.path.realpath(os.path.dirname(os.path.abspath(source)))
    path = os.path.realpath(os.path.join(folder, name))
    if os.path.dirname(path) != folder:
        raise ExternalReferenceError(f"{source}: network_file {name!r} resolves (through a symbolic link) outside "
                                     "the golden's folder; refcam reads the network only from there.")
    return path


def _read_attributes(f: h5py.File, source: str) -> dict[str, str]:
    values = {"format": _string_attribute(f, "format", source)}
    if values["format"] != FORMAT_NAME:
        raise FileFormatError(f"{source}: the 'format' attribute is {values['format']!r}, not {FORMAT_NAME!r}.")
    version = _check_schema_version(f, source)
    for name in STRING_ATTRIBUTES[1:]:
        values[name] = _string_attribute(f, name, source)
    if NETWORK_SHA256 in f.attrs or version == EXTENDED_SCHEMA_VERSION:
        values[NETWORK_SHA256] = _string_attribute(f, NETWORK_SHA256, source)
        if len(values[NETWORK_SHA256]) != 64 or set(values[NETWORK_SHA256]) - set("0123456789abcdef"):
            raise FileFormatError(f"{source}: network_sha256 is {values[NETWORK_SHA256][:80]!r}, not 64 "
                                  "lowercase hex digits.")
    for name in (NETWORK_FILE, METHOD):
        if name in f.attrs:
            if version != EXTENDED_SCHEMA_VERSION:
                raise FileFormatError(f"{source}: the attribute {name!r} belongs to schema_version "
                                      f"{EXTENDED_SCHEMA_VERSION}; this golden says {version}.")
            values[name] = _string_attribute(f, name, source)
    if values.get(METHOD, "gradcam") not in GOLDEN_METHODS:
        raise FileFormatError(f"{source}: the attribute 'method' is {values[METHOD]!r}; it must be one of "
                              f"{GOLDEN_METHODS}.")
    for name, allowed in (("dtype", COMPUTE_DTYPES), ("reduction", REDUCTIONS), ("convention", CONVENTIONS)):
        if values[name] not in allowed:
            raise FileFormatError(f"{source}: the attribute {name!r} is {values[name]!r}; it must be one of "
                                  f"{allowed}.")
    return values


def _string_attribute(f: h5py.File, name: str, source: str) -> str:
    if name not in f.attrs:
        raise FileFormatError(f"{source}: the root attribute {name!r} is missing; a golden file has the "
                              f"string attributes {list(STRING_ATTRIBUTES)} and schema_version.")
    attribute = f.attrs.get_id(name)
    if attribute.get_type().get_class() != h5py.h5t.STRING or attribute.shape not in ((), (1,)):
        raise GoldenDtypeError(f"{source}: the root attribute {name!r} must be one string, found an HDF5 "
                               f"attribute of type class {attribute.get_type().get_class()} and shape "
                               f"{attribute.shape}.")
    value = np.asarray(f.attrs[name], dtype=object).reshape(())[()]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as err:
            raise FileFormatError(f"{source}: the root attribute {name!r} is not UTF-8 text ({err}).") from err
    return value


def _check_schema_version(f: h5py.File, source: str) -> int:
    if "schema_version" not in f.attrs:
        raise SchemaVersionError(f"{source}: the root attribute 'schema_version' is missing; write the "
                                 f"integer {SCHEMA_VERSION}.")
    attribute = f.attrs.get_id("schema_version")
    if attribute.get_type().get_class() != h5py.h5t.INTEGER or attribute.shape not in ((), (1,)):
        raise SchemaVersionError(f"{source}: 'schema_version' must be one integer (found shape "
                                 f"{attribute.shape}, type class {attribute.get_type().get_class()}).")
    version = int(np.asarray(f.attrs["schema_version"]).reshape(()))
    if version not in (SCHEMA_VERSION, EXTENDED_SCHEMA_VERSION):
        newer = ("a newer refcam wrote it: upgrade refcam" if version > EXTENDED_SCHEMA_VERSION
                 else "versions start at 1")
        raise SchemaVersionError(f"{source}: golden schema_version {version}; this refcam reads versions "
                                 f"{SCHEMA_VERSION} and {EXTENDED_SCHEMA_VERSION} ({newer}).")
    return version


def _parse_options(text: str, convention: str, source: str) -> dict[str, Any]:
    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    try:
        options = json.loads(text, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as err:
        raise FileFormatError(f"{source}: the 'options' attribute is not valid JSON ({err}).") from err
    if not isinstance(options, dict):
        raise FileFormatError(f"{source}: the 'options' attribute must be a JSON object, found "
                              f"{type(options).__name__}.")
    missing = [key for key in OPTION_KEYS if key not in options]
    if missing:
        raise FileFormatError(f"{source}: the 'options' object lacks the keys {missing}; it always holds "
                              f"{list(OPTION_KEYS)} (docs/golden-format.md, section 2).")
    if options["convention"] != convention:
        raise FileFormatError(f"{source}: options['convention'] is {options['convention']!r} but the "
                              f"'convention' attribute is {convention!r}; they record the same call.")
    return options


def _check_members(f: h5py.File, source: str, referencing: bool) -> None:
    network = () if referencing else (NETWORK_GROUP,)
    allowed = set(REQUIRED_DATASETS + OPTIONAL_DATASETS + network)
    unexpected = sorted(set(f.keys()) - allowed)
    if unexpected:
        raise FileFormatError(f"{source}: unexpected objects at the root: {unexpected}; a golden file "
                              f"holds {sorted(allowed)}" + (" (it names its network file instead of embedding "
                              "it)" if referencing else "") + ".")
    for name in REQUIRED_DATASETS + network:
        if f.get(name, getlink=True) is None:     # looks at the link only: never follows it
            raise MissingDatasetError(f"{source}: /{name} is missing; a golden file needs "
                                      f"{list(REQUIRED_DATASETS)} and the group /{NETWORK_GROUP}.")


def _check_layer_roles(attributes: dict[str, str], network: Network, source: str) -> None:
    for role in ("feature_layer", "reduction_layer"):
        if attributes[role] not in network.layer_names:
            raise FileFormatError(f"{source}: the {role} {attributes[role]!r} is not a layer of the embedded "
                                  f"network (layers: {network.layer_names}).")


def _declared_dataset(f: h5py.File, name: str, dtype: str, source: str, budget: int) -> h5py.Dataset:
    """The dataset ``/name`` after checking its link, type class, dtype and declaration (nothing read)."""
    dataset = safe.hdf5_object(f, name, h5py.Dataset, source)
    safe.check_dataset(dataset, f"/{name}", source, max_tensor_bytes=budget)
    type_class = dataset.id.get_type().get_class()
    allowed = {"labels": (h5py.h5t.INTEGER,), "mask": (h5py.h5t.INTEGER,),
               "input": (h5py.h5t.INTEGER, h5py.h5t.FLOAT)}.get(name, (h5py.h5t.FLOAT,))
    if type_class not in allowed:
        kinds = " or ".join("integer" if k == h5py.h5t.INTEGER else "float" for k in allowed)
        raise GoldenDtypeError(f"{source}: /{name} has HDF5 type class {type_class}; it must be {kinds}. "
                               "refcam never decodes objects, strings or pickled data.")
    found = dataset.dtype.newbyteorder("=")
    if name in FLOAT_DATASETS and found != np.dtype(dtype):
        raise GoldenDtypeError(f"{source}: /{name} is {found}, but the file's dtype attribute says {dtype}.")
    return dataset


def _check_reduction_kind(attributes: dict[str, str], datasets: dict[str, h5py.Dataset], source: str) -> None:
    if (attributes["reduction"] == "class") != ("labels" in datasets):
        raise FileFormatError(f"{source}: reduction is {attributes['reduction']!r} but /labels is "
                              f"{'present' if 'labels' in datasets else 'missing'}; class labels come with "
                              "/labels, custom reductions without.")


def _read_dataset(dataset: h5py.Dataset, name: str, source: str, budget: int) -> np.ndarray:
    array = safe.read_dataset(dataset, f"/{name}", source, expected_shape=dataset.shape, max_tensor_bytes=budget,
                              finite=False)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise NonFiniteParameterError(f"{source}: /{name} holds {int((~np.isfinite(array)).sum())} NaN or Inf "
                                      "value(s); goldens are finite.")
    return array
