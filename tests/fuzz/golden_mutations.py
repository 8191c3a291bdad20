"""Golden files for the fuzzer, and their mutations (docs/golden-format.md).

The fixture goldens (``fixtures/*.golden.h5``) are in the fixtures' own format
(``refcam-fixture-golden``, fixtures/README.md), which ``refcam.golden.read``
refuses at its first check. :func:`build_golden` assembles, with h5py only, a
``refcam-golden`` file from a fixture golden's first case and its network, so
the mutations reach the reader's later checks:

* the golden's own values: labels out of range, maps of shape (0, 13) or with
  extra axes, ``map_axes`` that do not fit, layer names that are not the
  network's, malformed ``options`` JSON, wrong dtype, convention, reduction,
  schema version or format, inconsistent intermediates, a missing network;
* for the first golden of each network, the HDF5 structure of ``/map`` and of
  the path to one embedded weight
  (:func:`tests.fuzz.hdf5_mutations.structure_mutations`).
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from . import junk
from .case import Mutation, Source
from .hdf5_mutations import dataset_paths, hdf5_edit, structure_mutations

INPUT_FORMATS = {"image_input": "SSC", "image3d_input": "SSSC", "sequence_input": "CT"}


# --- the base golden ------------------------------------------------------------------------------
def build_golden(fixture: Path, target: Path) -> None:
    """Write a ``refcam-golden`` file from the fixture golden's first case (all its labels, maps not upsampled).

    Labels are 0..K-1 and ``map`` is ``raw_map`` (``upsampling = "none"``);
    the arrays are the fixture's.
    """
    with h5py.File(fixture, "r") as source, h5py.File(fixture.parent / source.attrs["network"], "r") as network, \
            h5py.File(target, "w") as f:
        case_name = sorted(source["cases"])[0]
        feature_layer, reduction_layer = case_name.split("__")
        case = {name: source["cases"][case_name][name][()] for name in source["cases"][case_name]}
        image = source["input"][()]
        input_kind = json.loads(network.attrs["topology"])["layers"][0]["kind"]
        input_format = INPUT_FORMATS[input_kind]
        labels = case["scores"].shape[0]
        raw_map = np.moveaxis(case["raw_map"][:, 0], 0, -1)           # (K, 1, *S) -> (*S, K)
        if raw_map.ndim == 2:
            raw_map = raw_map[np.newaxis]                              # a sequence map is MATLAB's 1 x T row
        options = {"label": list(range(labels)), "convention": "matlab", "mask": False, "format": input_format,
                   "dtype": "float64", "device": "cpu", "feature_layer": feature_layer,
                   "reduction_layer": reduction_layer, "upsampling": "none"}
        attributes = {"format": "refcam-golden", "feature_layer": feature_layer, "reduction_layer": reduction_layer,
                      "reduction": "class", "reduction_source": "", "convention": "matlab", "dtype": "float64",
                      "map_axes": ("1T" if input_format == "CT" else "S" * (raw_map.ndim - 1)) + "K",
                      "options": json.dumps(options, sort_keys=True), "refcam_version": "fuzz corpus",
                      "numpy_version": np.__version__, "h5py_version": h5py.__version__,
                      "python_version": "fuzz corpus", "platform": "fuzz corpus"}
        for name, value in attributes.items():
            f.attrs[name] = value
        f.attrs["schema_version"] = np.int64(1)
        channels_first = np.moveaxis(image.astype(np.float64), -1, 0) if input_format != "CT" else image
        datasets = {"input": image, "input_internal": channels_first[np.newaxis].astype(np.float64),
                    "activations": case["activations"], "gradients": case["gradients"], "weights": case["weights"],
                    "scores": case["scores"], "raw_map": raw_map, "map": raw_map,
                    "labels": np.arange(labels, dtype=np.int64)}
        for name, value in datasets.items():
            f.create_dataset(name, data=value, track_times=False)
        embedded = f.create_group("network", track_times=False)
        for name, value in network.attrs.items():
            embedded.attrs[name] = value
        network.copy(network["weights"], embedded, "weights")


# --- mutations ------------------------------------------------------------------------------------
def mutations(source: Source, structure: bool) -> list[Mutation]:
    """The golden mutations of ``source``; with ``structure``, the HDF5 structure mutations too."""
    with h5py.File(source.path, "r") as f:
        labels = f["labels"].shape[0]
        layers = [layer["name"] for layer in json.loads(f["network"].attrs["topology"])["layers"]]
        map_shape = f["map"].shape
        weight = dataset_paths(f["network/weights"])[0]
    found = value_mutations(labels, layers, map_shape)
    if structure:
        found += structure_mutations(source.path, [weight], ["/map"])
    return found


def value_mutations(labels: int, layers: list[str], map_shape: tuple[int, ...]) -> list[Mutation]:
    """Mutations of the golden's attributes and datasets (values, shapes, consistency)."""
    other_layer = layers[0]
    changes: list[tuple[str, str, Callable[[h5py.File, Path], None]]] = [
        ("labels", "labels all 99", partial(_replace, "labels", np.full(labels, 99, dtype=np.int64))),
        ("labels", "labels all -5", partial(_replace, "labels", np.full(labels, -5, dtype=np.int64))),
        ("labels", "labels float64", partial(_replace, "labels", np.zeros(labels))),
        ("labels", f"{labels + 1} labels for {labels} maps", partial(_replace, "labels", np.arange(labels + 1))),
        ("map", "map of shape (0, 13)", partial(_replace, "map", np.zeros((0, 13)))),
        ("map", "raw_map of shape (0, 13)", partial(_replace, "raw_map", np.zeros((0, 13)))),
        ("map", "map with two extra axes", partial(_replace, "map", np.zeros(map_shape + (1, 1)))),
        ("map", "map 0-d", partial(_replace, "map", np.float64(0.0))),
        ("map-axes", "map_axes 'XYZ'", partial(_set_attribute, "map_axes", "XYZ")),
        ("map-axes", "map_axes ''", partial(_set_attribute, "map_axes", "")),
        ("map-axes", "map_axes 1000 letters", partial(_set_attribute, "map_axes", "S" * 1000)),
        ("layer", "feature_layer 'no_such_layer'", partial(_set_attribute, "feature_layer", "no_such_layer")),
        ("layer", "reduction_layer 'no_such_layer'", partial(_set_attribute, "reduction_layer", "no_such_layer")),
        ("layer", f"feature_layer {other_layer!r}, whose output is not /activations",
         partial(_set_attribute, "feature_layer", other_layer)),
        ("layer", "feature_layer an int64", partial(_set_attribute, "feature_layer", np.int64(3))),
        ("attribute", "dtype 'float16'", partial(_set_attribute, "dtype", "float16")),
        ("attribute", "dtype 'float32' (datasets are float64)", partial(_set_attribute, "dtype", "float32")),
        ("attribute", "convention 'evil'", partial(_set_attribute, "convention", "evil")),
        ("attribute", "reduction 'custom' with /labels present", partial(_set_attribute, "reduction", "custom")),
        ("attribute", "schema_version 99", partial(_set_attribute, "schema_version", np.int64(99))),
        ("attribute", "format 'refcam-network'", partial(_set_attribute, "format", "refcam-network")),
        ("attribute", "no map_axes attribute", partial(_delete_attribute, "map_axes")),
        ("consistency", "activations 2-D", partial(_replace, "activations", np.zeros((1, 3)))),
        ("consistency", "gradients of the wrong shape", partial(_replace, "gradients", np.zeros((labels, 1, 2, 2)))),
        ("consistency", "scores of shape (0, 1)", partial(_replace, "scores", np.zeros((0, 1)))),
        ("consistency", "input NaN", partial(_replace, "input", np.full((4, 4, 3), np.nan))),
        ("consistency", "input strings", partial(_replace, "input", np.full((4, 4, 3), b"junk"))),
        ("member", "no /network group", partial(_delete, "network")),
        ("member", "/network a dataset", partial(_replace, "network", np.zeros(3))),
        ("member", "an extra root dataset /code", partial(_replace, "code", np.zeros(3))),
    ]
    for description, text in (("'[]'", "[]"), ("not JSON", "{\"label\": "), ("a label 1e309",
                              junk.dumps({"label": junk.RAW_1E309, "convention": "matlab", "mask": False})),
                              ("nested 100000 deep", "[" * 100_000 + "]" * 100_000), ("'{}' (keys missing)", "{}")):
        changes.append(("options", f"options {description}", partial(_set_attribute, "options", text)))
    return [Mutation(name, description, hdf5_edit(change)) for name, description, change in changes]


def _replace(name: str, data: Any, f: h5py.File, target: Path) -> None:
    if name in f:
        del f[name]
    f.create_dataset(name, data=data, track_times=False)


def _set_attribute(name: str, value: Any, f: h5py.File, target: Path) -> None:
    del f.attrs[name]
    f.attrs[name] = value


def _delete_attribute(name: str, f: h5py.File, target: Path) -> None:
    del f.attrs[name]


def _delete(name: str, f: h5py.File, target: Path) -> None:
    del f[name]
