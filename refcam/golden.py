"""Golden-output files (refcam extension X1): one self-describing HDF5 file per Grad-CAM run.

A golden holds everything another implementation needs to be tested against
refcam: the input (as given and as refcam's float array), the options, the
network itself (embedded under ``/network`` in refcam's network format), the
feature and reduction layer names, every intermediate and both maps, and the
provenance (refcam, NumPy, h5py and Python versions, platform, dtype). The
file layout is specified in ``docs/golden-format.md``; in short::

    /                 attributes: format = "refcam-golden", schema_version = 1,
                      feature_layer, reduction_layer, reduction ("class" | "custom"),
                      reduction_source, convention, dtype, map_axes, options (JSON),
                      refcam_version, numpy_version, h5py_version, python_version, platform
    /input            the input as given (its dtype, the caller's layout)
    /input_internal   (B, C, *S)       the input in the compute dtype, refcam's layout
    /activations      (B, C, *S)       A, the feature layer's output
    /gradients        (K, B, C, *S)    dscore/dA, one per label
    /weights          (K, B, C)        alpha = mean over S of dscore/dA
    /scores           (K, B)           the score of each label and observation
    /raw_map          MATLAB map layout, feature-layer resolution (before the resize)
    /map              MATLAB map layout, the map refcam returns
    /labels           (K,) int64, 0-based class indices (class labels only)
    /mask             uint8 0/1 (only when a mask was given)
    /network/         a refcam network file's content (docs/hdf5-format.md)

A reduction function cannot be stored: its source text (or ``repr``) is kept in
``reduction_source`` for people to read, never executed, and the golden says
``reduction = "custom"``. Reading validates like :func:`refcam.io.load`:
attributes and datasets are type-checked before use, JSON is parsed with
``json.loads`` only, links to other files are refused, and every problem
raises a specific :class:`~refcam.errors.FileFormatError` subclass.
Writing is deterministic (no timestamps): the same run gives the same bytes.
"""
from __future__ import annotations

import inspect
import json
import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

import h5py
import numpy as np

from .backend import to_numpy
from .cam.conventions import CONVENTIONS, gradcam_as
from .cam.gradcam import GradCAMResult, is_label_sequence
from .errors import FileFormatError, MissingDatasetError, RefcamError, SchemaVersionError, ShapeError
from .io.hdf5 import HDF5_READ_ERRORS, hard_link_target, read_network, save, sniff
from .layout import to_internal
from .network import Network

FORMAT_NAME = "refcam-golden"
SCHEMA_VERSION = 1
NETWORK_GROUP = "network"
STRING_ATTRIBUTES = ("format", "feature_layer", "reduction_layer", "reduction", "reduction_source",
                     "convention", "dtype", "map_axes", "options", "refcam_version", "numpy_version",
                     "h5py_version", "python_version", "platform")
PROVENANCE = ("refcam_version", "numpy_version", "h5py_version", "python_version", "platform")
INTERMEDIATES = ("activations", "gradients", "weights", "scores", "raw_map", "map")
REQUIRED_DATASETS = ("input", "input_internal") + INTERMEDIATES
OPTIONAL_DATASETS = ("labels", "mask")
COMPUTE_DTYPES = ("float64", "float32")
REDUCTIONS = ("class", "custom")


class GoldenShapeError(FileFormatError, ShapeError):
    """A golden file's datasets have shapes that do not fit together."""


class GoldenDtypeError(FileFormatError, TypeError):
    """A golden file's dataset has an HDF5 type or dtype it may not have."""


@dataclass(repr=False)
class Golden:
    """The content of a golden file (:func:`read`, :func:`write`).

    Arrays are NumPy arrays exactly as stored; the maps are in MATLAB's layout
    (axes named by ``map_axes``), the intermediates in refcam's internal layout
    (see the module docstring). ``network`` is the embedded network, loaded.
    """

    input: np.ndarray
    input_internal: np.ndarray
    activations: np.ndarray
    gradients: np.ndarray
    weights: np.ndarray
    scores: np.ndarray
    raw_map: np.ndarray
    map: np.ndarray
    labels: np.ndarray | None
    mask: np.ndarray | None
    network: Network
    feature_layer: str
    reduction_layer: str
    reduction: str
    reduction_source: str
    convention: str
    dtype: str
    map_axes: str
    options: dict[str, Any]
    refcam_version: str
    numpy_version: str
    h5py_version: str
    python_version: str
    platform: str
    path: str | None = None

    def recompute(self) -> GradCAMResult:
        """Run refcam again on the stored network, input and options (class labels only).

        Raises :class:`~refcam.errors.RefcamError` for ``reduction = "custom"``:
        the reduction function is not in the file.
        """
        if self.reduction == "custom":
            raise RefcamError("this golden was made with a custom reduction function, which a golden "
                              "file does not store (its source is in .reduction_source, for reading); "
                              "call refcam.gradcam with that function yourself.")
        options = dict(self.options)
        label, convention = options.pop("label"), options.pop("convention")
        if options.pop("mask"):
            options["mask"] = self.mask
        return gradcam_as(convention, self.network, self.input, label, **options)

    def __repr__(self) -> str:
        where = f" from {self.path}" if self.path else ""
        return (f"Golden({self.convention}, feature_layer={self.feature_layer!r}, reduction_layer="
                f"{self.reduction_layer!r}, reduction={self.reduction!r}, map {self.map_axes} "
                f"{self.map.shape} {self.dtype}{where})")


# --- write ----------------------------------------------------------------------------------------
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


def map_axes(input_format: str, stacked: bool) -> str:
    """The letters of a map's axes in MATLAB's layout: ``S``/``T`` per spatial axis (``1`` for the
    singleton row of a 1 x t map), then ``K`` (labels) when stacked, then ``B`` when the input had one.

    >>> map_axes("SSC", stacked=False), map_axes("CBT", stacked=True)
    ('SS', '1TKB')
    """
    spatial = "".join(letter for letter in input_format if letter in "ST")
    return (("1" if len(spatial) == 1 else "") + spatial + ("K" if stacked else "")
            + ("B" if "B" in input_format else ""))


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
    from . import __version__
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


# --- read -----------------------------------------------------------------------------------------
def read(path: str | os.PathLike) -> Golden:
    """Read and validate a golden file written by :func:`write` (or by any writer following docs/golden-format.md).

    Raises :class:`FileNotFoundError` for a missing file, and
    :class:`~refcam.errors.FileFormatError` (or its subclasses
    :class:`~refcam.errors.SchemaVersionError`,
    :class:`~refcam.errors.MissingDatasetError`, :class:`GoldenShapeError`,
    :class:`GoldenDtypeError`, and the network loader's errors) naming what is
    wrong. Nothing in the file is executed.

    >>> golden = refcam.golden.read("cat.golden.h5")      # doctest: +SKIP
    >>> golden.map.shape, golden.feature_layer             # doctest: +SKIP
    ((224, 224), 'relu_5')
    """
    source = os.fspath(path)
    _check_is_golden(source)
    try:
        with h5py.File(source, "r") as f:
            return _read_open(f, source)
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


def _read_open(f: h5py.File, source: str) -> Golden:
    attributes = _read_attributes(f, source)
    options = _parse_options(attributes["options"], source)
    _check_members(f, source)
    arrays = {name: _read_dataset(f, name, source) for name in REQUIRED_DATASETS + OPTIONAL_DATASETS
              if name in f}
    _check_arrays(arrays, attributes, source)
    network = read_network(hard_link_target(f, NETWORK_GROUP, f"/{NETWORK_GROUP}", h5py.Group, source), f"{source}:/{NETWORK_GROUP}")
    for role in ("feature_layer", "reduction_layer"):
        if attributes[role] not in network.layer_names:
            raise FileFormatError(f"{source}: the {role} {attributes[role]!r} is not a layer of the embedded "
                                  f"network (layers: {network.layer_names}).")
    return Golden(
        input=arrays["input"], input_internal=arrays["input_internal"],
        **{name: arrays[name] for name in INTERMEDIATES},
        labels=arrays.get("labels"), mask=None if "mask" not in arrays else arrays["mask"].astype(bool),
        network=network, feature_layer=attributes["feature_layer"], reduction_layer=attributes["reduction_layer"],
        reduction=attributes["reduction"], reduction_source=attributes["reduction_source"],
        convention=attributes["convention"], dtype=attributes["dtype"], map_axes=attributes["map_axes"],
        options=options, **{name: attributes[name] for name in PROVENANCE}, path=source)


def _read_attributes(f: h5py.File, source: str) -> dict[str, str]:
    values = {"format": _string_attribute(f, "format", source)}
    if values["format"] != FORMAT_NAME:
        raise FileFormatError(f"{source}: the 'format' attribute is {values['format']!r}, not {FORMAT_NAME!r}.")
    _check_schema_version(f, source)
    for name in STRING_ATTRIBUTES[1:]:
        values[name] = _string_attribute(f, name, source)
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


def _check_schema_version(f: h5py.File, source: str) -> None:
    if "schema_version" not in f.attrs:
        raise SchemaVersionError(f"{source}: the root attribute 'schema_version' is missing; write the "
                                 f"integer {SCHEMA_VERSION}.")
    attribute = f.attrs.get_id("schema_version")
    if attribute.get_type().get_class() != h5py.h5t.INTEGER or attribute.shape not in ((), (1,)):
        raise SchemaVersionError(f"{source}: 'schema_version' must be one integer (found shape "
                                 f"{attribute.shape}, type class {attribute.get_type().get_class()}).")
    version = int(np.asarray(f.attrs["schema_version"]).reshape(()))
    if version != SCHEMA_VERSION:
        newer = "a newer refcam wrote it: upgrade refcam" if version > SCHEMA_VERSION else "versions start at 1"
        raise SchemaVersionError(f"{source}: golden schema_version {version}; this refcam reads version "
                                 f"{SCHEMA_VERSION} ({newer}).")


def _parse_options(text: str, source: str) -> dict[str, Any]:
    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not allowed")

    try:
        options = json.loads(text, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as err:
        raise FileFormatError(f"{source}: the 'options' attribute is not valid JSON ({err}).") from err
    if not isinstance(options, dict):
        raise FileFormatError(f"{source}: the 'options' attribute must be a JSON object, found "
                              f"{type(options).__name__}.")
    missing = [key for key in ("label", "convention", "mask") if key not in options]
    if missing:
        raise FileFormatError(f"{source}: the 'options' object lacks the keys {missing}.")
    return options


def _check_members(f: h5py.File, source: str) -> None:
    allowed = set(REQUIRED_DATASETS + OPTIONAL_DATASETS + (NETWORK_GROUP,))
    unexpected = sorted(set(f.keys()) - allowed)
    if unexpected:
        raise FileFormatError(f"{source}: unexpected objects at the root: {unexpected}; a golden file "
                              f"holds {sorted(allowed)}.")
    for name in REQUIRED_DATASETS + (NETWORK_GROUP,):
        if name not in f:
            raise MissingDatasetError(f"{source}: /{name} is missing; a golden file needs "
                                      f"{list(REQUIRED_DATASETS)} and the group /{NETWORK_GROUP}.")


def _read_dataset(f: h5py.File, name: str, source: str) -> np.ndarray:
    dataset = hard_link_target(f, name, f"/{name}", h5py.Dataset, source)
    if dataset.is_virtual or dataset.external:
        raise FileFormatError(f"{source}: /{name} keeps its data outside the file (virtual or external "
                              "storage); refcam reads data stored in the file only.")
    if dataset.shape is None:
        raise FileFormatError(f"{source}: /{name} has an empty (null) dataspace.")
    type_class = dataset.id.get_type().get_class()
    allowed = {"labels": (h5py.h5t.INTEGER,), "mask": (h5py.h5t.INTEGER,),
               "input": (h5py.h5t.INTEGER, h5py.h5t.FLOAT)}.get(name, (h5py.h5t.FLOAT,))
    if type_class not in allowed:
        kinds = " or ".join("integer" if k == h5py.h5t.INTEGER else "float" for k in allowed)
        raise GoldenDtypeError(f"{source}: /{name} has HDF5 type class {type_class}; it must be {kinds}. "
                               "refcam never decodes objects, strings or pickled data.")
    array = np.asarray(dataset[()])
    array = array.astype(array.dtype.newbyteorder("="), copy=False)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise FileFormatError(f"{source}: /{name} holds {int((~np.isfinite(array)).sum())} NaN or Inf "
                              f"value(s); goldens are finite.")
    return array


def _check_arrays(arrays: dict[str, np.ndarray], attributes: dict[str, str], source: str) -> None:
    """Shapes and dtypes must fit together (see docs/golden-format.md, section 'Consistency')."""
    dtype = np.dtype(attributes["dtype"])
    for name in ("input_internal",) + INTERMEDIATES:
        if arrays[name].dtype != dtype:
            raise GoldenDtypeError(f"{source}: /{name} is {arrays[name].dtype}, but the file's dtype "
                                   f"attribute says {dtype}.")
    activations = arrays["activations"]
    if activations.ndim < 3:
        raise GoldenShapeError(f"{source}: /activations has shape {activations.shape}; it must be (B, C, *S) "
                               "with at least one spatial axis.")
    batch, channels, *spatial = activations.shape
    labels = arrays["gradients"].shape[0] if arrays["gradients"].ndim else 0
    expected = {"gradients": (labels, batch, channels, *spatial), "weights": (labels, batch, channels),
                "scores": (labels, batch)}
    if "labels" in arrays:
        expected["labels"] = (labels,)
    for name, shape in expected.items():
        if arrays[name].shape != tuple(shape):
            raise GoldenShapeError(f"{source}: /{name} has shape {arrays[name].shape}, expected {tuple(shape)} "
                                   f"from /activations {activations.shape} (B, C, *S) and {labels} label(s).")
    if arrays["input_internal"].ndim != activations.ndim or arrays["input_internal"].shape[0] != batch:
        raise GoldenShapeError(f"{source}: /input_internal has shape {arrays['input_internal'].shape}; it must "
                               f"be (B, C, *S) with B = {batch} and {len(spatial)} spatial axes.")
    mapped = 1 if attributes["convention"] == "keras-example" else batch  # that recipe maps observation 0 only
    if arrays["raw_map"].size != labels * mapped * int(np.prod(spatial)):
        raise GoldenShapeError(f"{source}: /raw_map has shape {arrays['raw_map'].shape}; it must hold one map "
                               f"of the feature size {tuple(spatial)} per label ({labels}) and observation "
                               f"({mapped}).")
    if len(attributes["map_axes"]) != arrays["map"].ndim:
        raise GoldenShapeError(f"{source}: /map has shape {arrays['map'].shape} but map_axes "
                               f"{attributes['map_axes']!r} names {len(attributes['map_axes'])} axes.")
    if (attributes["reduction"] == "class") != ("labels" in arrays):
        raise FileFormatError(f"{source}: reduction is {attributes['reduction']!r} but /labels is "
                              f"{'present' if 'labels' in arrays else 'missing'}; class labels come with "
                              "/labels, custom reductions without.")
