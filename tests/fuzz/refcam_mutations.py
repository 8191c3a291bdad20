"""Mutations of refcam network files (docs/hdf5-format.md): topology JSON, root attributes, weights.

* property junk: each property of each layer kind (in the first fixture that
  has the kind) replaced by every value of :func:`tests.fuzz.junk.junk_for`;
* topology structure: layers out of topological order, unknown kinds,
  duplicate names, bad ``inputs``, malformed entries and documents (not JSON,
  nested 100000 deep, ``NaN``, repeated keys);
* root attributes and members: schema version, format, topology type, missing
  or extra objects;
* the HDF5 structure of the first and the last weight dataset
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
from .case import Make, Mutation, Source
from .hdf5_mutations import dataset_paths, hdf5_edit, structure_mutations

DEEP_NESTING = 100_000
Document = dict[str, Any]


def mutations(source: Source, seen_properties: set[tuple[str, str]]) -> list[Mutation]:
    """Every mutation of one refcam network file; ``seen_properties`` holds the (kind, property) pairs
    already junked in earlier fixtures, and is updated."""
    with h5py.File(source.path, "r") as f:
        document = json.loads(f.attrs["topology"])
        datasets = dataset_paths(f["weights"])
    return (property_mutations(document, seen_properties) + topology_mutations(document)
            + attribute_mutations() + structure_mutations(source.path, [], [datasets[0], datasets[-1]]))


def write_topology(f: h5py.File, text: str | bytes) -> None:
    """Replace the ``topology`` attribute of an open network (root) group."""
    del f.attrs["topology"]
    f.attrs["topology"] = np.bytes_(text) if isinstance(text, bytes) else text


def _edited_topology(change: Callable[[Document], None], f: h5py.File, target: Path) -> None:
    document = json.loads(f.attrs["topology"])
    change(document)
    write_topology(f, junk.dumps(document))


def topology_edit(change: Callable[[Document], None]) -> Make:
    """A make function applying ``change`` to the parsed topology document (written back with junk.dumps)."""
    return hdf5_edit(partial(_edited_topology, change))


def _raw_topology(text: str | bytes, f: h5py.File, target: Path) -> None:
    write_topology(f, text)


# --- property junk --------------------------------------------------------------------------------
def property_mutations(document: Document, seen_properties: set[tuple[str, str]]) -> list[Mutation]:
    """Junk in each property not yet in ``seen_properties`` (the first layer of each kind carries it)."""
    found = []
    for index, layer in enumerate(document["layers"]):
        for name, value in layer["properties"].items():
            if (layer["kind"], name) in seen_properties:
                continue
            seen_properties.add((layer["kind"], name))
            for bad in junk.junk_for(value):
                found.append(Mutation("property-junk", f"layer {layer['name']!r} ({layer['kind']}) {name} = "
                                      f"{junk.shown(bad)} (was {json.dumps(value)})",
                                      topology_edit(partial(_set_property, index, name, bad))))
    return found


def _set_property(index: int, name: str, value: Any, document: Document) -> None:
    document["layers"][index]["properties"][name] = value


# --- topology structure ---------------------------------------------------------------------------
def topology_mutations(document: Document) -> list[Mutation]:
    """Order, kinds, names, inputs, entries and the document itself."""
    layers = document["layers"]
    first, second, last = layers[0]["name"], layers[1]["name"], layers[-1]["name"]
    changes: list[tuple[str, str, Callable[[Document], None]]] = [
        ("reorder", "layers in reverse order", _reverse),
        ("reorder", "the input layer moved to the end", _input_last),
        ("reorder", "layers 1 and 2 swapped", _swap_1_2),
        ("duplicate-name", f"layer 2 also named {second!r}", partial(_set_entry, 2, "name", second)),
        ("duplicate-name", f"the last layer also named {first!r}", partial(_set_entry, -1, "name", first)),
        ("inputs", "layer 1 takes input from 'no_such_layer'", partial(_set_entry, 1, "inputs", ["no_such_layer"])),
        ("inputs", "layer 1 takes input from itself", partial(_set_entry, 1, "inputs", [second])),
        ("inputs", f"layer 1 takes input from the last layer {last!r} (a cycle)",
         partial(_set_entry, 1, "inputs", [last])),
        ("inputs", "layer 1's inputs a string", partial(_set_entry, 1, "inputs", first)),
        ("inputs", "layer 1's inputs [null]", partial(_set_entry, 1, "inputs", [None])),
        ("entry", "layer 1's name null", partial(_set_entry, 1, "name", None)),
        ("entry", "layer 1's name empty", partial(_set_entry, 1, "name", "")),
        ("entry", "layer 1's properties a list", partial(_set_entry, 1, "properties", [])),
        ("entry", "layer 1 has an extra key 'code'", partial(_set_entry, 1, "code", "import os")),
        ("entry", "layer 1 has an unknown property 'eval'", partial(_set_property, 1, "eval", 1)),
        ("entry", "layer 1 lacks 'properties'", partial(_drop_entry, 1, "properties")),
        ("entry", "layer 1 is a list, not an object", partial(_replace_layer, 1, [second])),
        ("document", "no layers", partial(_set_document, "layers", [])),
        ("document", "'layers' an object", partial(_set_document, "layers", {})),
        ("document", "an extra top-level key", partial(_set_document, "version", 2)),
    ]
    changes += [("unknown-kind", f"layer 1's kind {json.dumps(kind)}", partial(_set_entry, 1, "kind", kind))
                for kind in ("python_function", "convolution4d", "", None, 7)]
    found = [Mutation(name, description, topology_edit(change)) for name, description, change in changes]
    text = json.dumps(document)
    for description, raw in (("not JSON", "{\"layers\": ["), ("a JSON list", "[]"),
                             (f"a list nested {DEEP_NESTING} deep", "[" * DEEP_NESTING + "]" * DEEP_NESTING),
                             ("a NaN property value", text.replace('"properties": {', '"properties": {"epsilon": NaN, ', 1)),
                             ("'layers' given twice", text[:-1] + ", \"layers\": []}"),
                             ("not UTF-8", text.encode()[:-2] + b"\xff\xfe]}")):
        found.append(Mutation("document", f"the topology is {description}", hdf5_edit(partial(_raw_topology, raw))))
    return found


def _reverse(document: Document) -> None:
    document["layers"].reverse()


def _input_last(document: Document) -> None:
    document["layers"].append(document["layers"].pop(0))


def _swap_1_2(document: Document) -> None:
    layers = document["layers"]
    layers[1], layers[2] = layers[2], layers[1]


def _set_entry(index: int, key: str, value: Any, document: Document) -> None:
    document["layers"][index][key] = value


def _drop_entry(index: int, key: str, document: Document) -> None:
    del document["layers"][index][key]


def _replace_layer(index: int, value: Any, document: Document) -> None:
    document["layers"][index] = value


def _set_document(key: str, value: Any, document: Document) -> None:
    document[key] = value


# --- root attributes and members ------------------------------------------------------------------
def attribute_mutations() -> list[Mutation]:
    """Schema version, format and topology attributes of the wrong value or type; objects missing or extra."""
    changes: list[tuple[str, Callable[[h5py.File, Path], None]]] = [
        ("schema_version 2", partial(_set_attribute, "schema_version", np.int64(2))),
        ("schema_version the string '1'", partial(_set_attribute, "schema_version", "1")),
        ("schema_version 1.0 (a float)", partial(_set_attribute, "schema_version", 1.0)),
        ("format 'keras'", partial(_set_attribute, "format", "keras")),
        ("topology an int64", partial(_set_attribute, "topology", np.int64(7))),
        ("topology an array of two strings", partial(_set_attribute, "topology", ["{}", "{}"])),
        ("no topology", partial(_delete, "topology", attribute=True)),
        ("no /weights group", partial(_delete, "/weights", attribute=False)),
        ("an extra root dataset /code", partial(_add_dataset, "/code")),
        ("an extra dataset in /weights", partial(_add_dataset, "/weights/no_such_layer")),
    ]
    return [Mutation("root", description, hdf5_edit(change)) for description, change in changes]


def _set_attribute(name: str, value: Any, f: h5py.File, target: Path) -> None:
    del f.attrs[name]
    f.attrs[name] = value


def _delete(name: str, f: h5py.File, target: Path, *, attribute: bool) -> None:
    if attribute:
        del f.attrs[name]
    else:
        del f[name]


def _add_dataset(path: str, f: h5py.File, target: Path) -> None:
    f.create_dataset(path, data=np.ones(3), track_times=False)
