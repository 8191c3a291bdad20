"""Mutations of Keras HDF5 files (``model_config`` JSON and ``model_weights``; docs/import.md).

* config junk (fixtures that are not ``hostile_*``): each configuration key of
  each Keras layer class, in the first fixture that has it (``name``,
  ``dtype`` and ``data_format`` once for all classes; initializers,
  regularizers, constraints and other keys refcam never reads left out),
  replaced by ``null``, 2**70 and the bare token 1e309, and, for list values,
  by lists of 1.5 (float strides) and of the wrong length;
* config structure: unknown and Lambda classes, an activation given as the
  dict ``{"class_name": "Lambda"}``, duplicate names, bad ``inbound_nodes``,
  ``layers`` of the wrong type, documents that are not JSON or nested 100000
  deep; root and ``model_weights`` attributes of the wrong value or type;
* ``weight_names`` entries that lead through an external or a soft link, up
  the tree, or nowhere;
* the HDF5 structure of the first weight dataset
  (:func:`tests.fuzz.hdf5_mutations.structure_mutations`).
"""
from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

from . import canary, junk
from .case import Mutation, Source
from .hdf5_mutations import dataset_paths, hdf5_edit, structure_mutations

IGNORED_KEYS = re.compile(r"initializer|regularizer|constraint|trainable|seed|sparse|ragged|optional|synchronized"
                          r"|quantization|renorm|module|registered_name|noise_shape")
SHARED_KEYS = ("name", "dtype", "data_format")   # read the same way for every class: junked once
KERAS_JUNK = (None, 2 ** 70, junk.RAW_1E309)
LAMBDA_ACTIVATION = {"class_name": "Lambda"}
Config = dict[str, Any]


def mutations(source: Source, seen_keys: set[tuple[str, str]]) -> list[Mutation]:
    """Every mutation of one Keras file (none when HDF5 cannot open it); ``seen_keys`` holds the (class, key)
    pairs junked in earlier fixtures (class ``*`` for SHARED_KEYS)."""
    try:
        f = h5py.File(source.path, "r")
    except OSError:
        return []
    with f:
        config = json.loads(f.attrs["model_config"])
        weights = dataset_paths(f["model_weights"])
        weighted_layer = next((name for name in f["model_weights"]
                               if len(f["model_weights"][name].attrs.get("weight_names", []))), None)
    found = config_mutations(config) + attribute_mutations()
    if not source.name.startswith("hostile_"):
        found = key_mutations(config, seen_keys) + found
    if weighted_layer is not None:
        found += weight_name_mutations(weighted_layer)
    if weights:
        found += structure_mutations(source.path, [], [weights[0]])
    return found


def _edited_config(change: Callable[[Config], None], f: h5py.File, target: Path) -> None:
    config = json.loads(f.attrs["model_config"])
    change(config)
    _write_config(junk.dumps(config), f, target)


def _write_config(text: str, f: h5py.File, target: Path) -> None:
    del f.attrs["model_config"]
    f.attrs["model_config"] = text


# --- config junk ----------------------------------------------------------------------------------
def key_mutations(config: Config, seen_keys: set[tuple[str, str]]) -> list[Mutation]:
    """Junk in each layer configuration key not yet in ``seen_keys``."""
    found = []
    for index, layer in enumerate(config["config"]["layers"]):
        for key, value in layer["config"].items():
            seen = ("*" if key in SHARED_KEYS else layer["class_name"], key)
            if IGNORED_KEYS.search(key) or seen in seen_keys:
                continue
            seen_keys.add(seen)
            bad_values = list(KERAS_JUNK)
            if isinstance(value, list):
                bad_values += [[1.5] * len(value), [1] * (len(value) + 1)]
            for bad in bad_values:
                found.append(Mutation("config-junk", f"layer {index} ({layer['class_name']}) {key} = "
                                      f"{junk.shown(bad)} (was {json.dumps(value)})",
                                      hdf5_edit(partial(_edited_config, partial(_set_key, index, key, bad)))))
    return found


def _set_key(index: int, key: str, value: Any, config: Config) -> None:
    config["config"]["layers"][index]["config"][key] = value


# --- config structure -----------------------------------------------------------------------------
def config_mutations(config: Config) -> list[Mutation]:
    """Classes, activations, names, graph and document mutations."""
    layers = config["config"]["layers"]
    activated = next((i for i, layer in enumerate(layers) if "activation" in layer["config"]), 1)
    changes: list[tuple[str, str, Callable[[Config], None]]] = [
        ("class", "layer 1's class 'Mystery'", partial(_set_layer, 1, "class_name", "Mystery")),
        ("class", "layer 1's class 'Lambda' (no function)", partial(_set_layer, 1, "class_name", "Lambda")),
        ("class", "layer 1's class null", partial(_set_layer, 1, "class_name", None)),
        ("class", "the model's class 'Evil'", partial(_set_model, "class_name", "Evil")),
        ("activation", f"layer {activated}'s activation {json.dumps(LAMBDA_ACTIVATION)}",
         partial(_set_key, activated, "activation", LAMBDA_ACTIVATION)),
        ("activation", f"layer {activated}'s activation a Lambda dict with code",
         partial(_set_key, activated, "activation", {"class_name": "Lambda", "config": {"function": "exec"}})),
        ("activation", f"layer {activated}'s activation 'no_such_activation'",
         partial(_set_key, activated, "activation", "no_such_activation")),
        ("name", "layer 2 named as layer 1", partial(_copy_name, 1, 2)),
        ("graph", "layer 1's inbound_nodes 5", partial(_set_layer, 1, "inbound_nodes", 5)),
        ("graph", "layer 1's inbound node 'no_such_layer'",
         partial(_set_layer, 1, "inbound_nodes", [[["no_such_layer", 0, 0, {}]]])),
        ("graph", "layer 1 a list, not an object", partial(_replace_layer, 1, [1])),
        ("document", "'layers' an object", partial(_set_config, "layers", {})),
        ("document", "no layers", partial(_set_config, "layers", [])),
        ("document", "'config' a list", partial(_set_model, "config", [])),
    ]
    found = [Mutation(name, description, hdf5_edit(partial(_edited_config, change)))
             for name, description, change in changes]
    for description, text in (("not JSON", "{\"class_name\": "), ("a JSON list", "[]"),
                              ("nested 100000 deep", "[" * 100_000 + "]" * 100_000)):
        found.append(Mutation("document", f"model_config {description}", hdf5_edit(partial(_write_config, text))))
    return found


def _set_layer(index: int, key: str, value: Any, config: Config) -> None:
    config["config"]["layers"][index][key] = value


def _copy_name(source: int, destination: int, config: Config) -> None:
    layers = config["config"]["layers"]
    name = layers[source]["config"]["name"]
    layers[destination]["config"]["name"] = name
    if "name" in layers[destination]:
        layers[destination]["name"] = name


def _replace_layer(index: int, value: Any, config: Config) -> None:
    config["config"]["layers"][index] = value


def _set_config(key: str, value: Any, config: Config) -> None:
    config["config"][key] = value


def _set_model(key: str, value: Any, config: Config) -> None:
    config[key] = value


# --- attributes -----------------------------------------------------------------------------------
def attribute_mutations() -> list[Mutation]:
    """Root and ``model_weights`` attributes of the wrong value or type."""
    changes: list[tuple[str, Callable[[h5py.File, Path], None]]] = [
        ("keras_version '1.0.0'", partial(_set_attribute, "/", "keras_version", "1.0.0")),
        ("backend 'theano'", partial(_set_attribute, "/", "backend", "theano")),
        ("model_config an int64", partial(_set_attribute, "/", "model_config", np.int64(1))),
        ("no model_config", partial(_delete_attribute, "/", "model_config")),
        ("layer_names without its last entry", _drop_last_layer_name),
        ("layer_names an int64 array", partial(_set_attribute, "/model_weights", "layer_names", np.arange(3))),
        ("layer_names naming 'no_such_layer'",
         partial(_set_attribute, "/model_weights", "layer_names", np.array([b"no_such_layer"]))),
    ]
    return [Mutation("attribute", description, hdf5_edit(change)) for description, change in changes]


def _set_attribute(group: str, name: str, value: Any, f: h5py.File, target: Path) -> None:
    if name in f[group].attrs:
        del f[group].attrs[name]
    f[group].attrs[name] = value


def _delete_attribute(group: str, name: str, f: h5py.File, target: Path) -> None:
    del f[group].attrs[name]


def _drop_last_layer_name(f: h5py.File, target: Path) -> None:
    names = f["model_weights"].attrs["layer_names"]
    _set_attribute("/model_weights", "layer_names", names[:-1], f, target)


# --- weight_names ---------------------------------------------------------------------------------
def weight_name_mutations(layer: str) -> list[Mutation]:
    """``weight_names[0]`` of ``layer`` through links, up the tree, absolute, missing, of the wrong type."""
    group = f"/model_weights/{layer}"
    changes: list[tuple[str, Callable[[h5py.File, Path], None]]] = [
        (f"names {group}/canary_link, an external link to {place} {canary.CANARY_HDF5}",
         partial(_weight_through_link, group, place)) for place in ("next", "above")]
    changes += [
        (f"names {group}/canary_link, a soft link to the real weight", partial(_weight_through_link, group, None)),
        ("names '../../model_weights' (up the tree)", partial(_set_weight_name, group, "../../model_weights")),
        ("names the absolute path of the weight", partial(_absolute_weight_name, group)),
        ("names 'no/such:0'", partial(_set_weight_name, group, "no/such:0")),
        ("is an int64 array", partial(_set_attribute, group, "weight_names", np.arange(2))),
    ]
    return [Mutation("weight-names", f"{group} weight_names[0] {description}", hdf5_edit(change))
            for description, change in changes]


def _first_weight(f: h5py.File, group: str) -> str:
    name = f[group].attrs["weight_names"][0]
    return f"{group}/{name.decode() if isinstance(name, bytes) else name}"


def _set_weight_name(group: str, name: str, f: h5py.File, target: Path) -> None:
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in f[group].attrs["weight_names"]]
    names[0] = name
    _set_attribute(group, "weight_names", np.array(names, dtype=h5py.string_dtype()), f, target)


def _absolute_weight_name(group: str, f: h5py.File, target: Path) -> None:
    _set_weight_name(group, _first_weight(f, group), f, target)


def _weight_through_link(group: str, place: str | None, f: h5py.File, target: Path) -> None:
    weight = _first_weight(f, group)
    f[f"{group}/canary_link"] = (h5py.SoftLink(weight) if place is None else
                                 h5py.ExternalLink(canary.reference(canary.CANARY_HDF5, place, target), weight))
    _set_weight_name(group, "canary_link", f, target)
