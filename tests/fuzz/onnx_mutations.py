"""Structured mutations of ONNX models with ``onnx`` itself (docs/import.md).

* external data (``canary32.bin`` next to the model, ``../``, an absolute
  path) in a Constant node's ``value`` and in ConstantOfShape's ``value``;
  in the first initializer ``../`` and absolute (refused), and a legit data
  file next to the model (``canary.LEGIT_RAW``, read: the model's own folder);
* tensor declarations: huge or negative dims, element types 999, STRING and
  UNDEFINED, ``raw_data`` shorter than declared, NaN and Inf values;
* attributes: of the wrong type, missing, axes out of range, Conv strides 0
  or the largest int64 (2**70 does not fit an ONNX int), dilations 0,
  negative pads, group 0, a huge kernel; Gemm alpha NaN or Inf; Cast to 999;
  Transpose perm [0, 0, ...]; Slice step 0; Reshape to the wrong size;
* names that are not UTF-8 (patched into the serialized bytes, which protobuf
  itself refuses to write), and model-level damage: opsets 1 and 999, IR
  version 999, no nodes, unknown inputs and outputs, duplicate initializers,
  an unknown domain.

A mutation whose target the model lacks (no Slice node, say) is not made.
"""
from __future__ import annotations

import math
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import AttributeProto, ModelProto, TensorProto, helper, numpy_helper

from . import canary
from .case import Mutation, Source

INT64_MAX = 2 ** 63 - 1
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.DOUBLE)
NON_UTF8_PLACEHOLDER = "fuzz-non-utf8-name"
NON_UTF8_BYTES = b"\xff\xfe" + b"x" * (len(NON_UTF8_PLACEHOLDER) - 2)
Change = Callable[[ModelProto, Path], None]
"""Changes a loaded copy of the base model; the second argument is the case file's path (for absolute paths)."""


def onnx_edit(change: Change) -> Callable[[Path, Path], None]:
    """A make function: load the base model (without external data), apply ``change``, serialize."""
    return partial(_load_change_save, change)


def _load_change_save(change: Change, base: Path, target: Path) -> None:
    model = onnx.load(base, load_external_data=False)
    change(model, target)
    target.write_bytes(model.SerializeToString().replace(NON_UTF8_PLACEHOLDER.encode(), NON_UTF8_BYTES))


def mutations(source: Source) -> list[Mutation]:
    """Every structured mutation of one ONNX model (none when protobuf cannot parse it)."""
    try:
        model = onnx.load(source.path, load_external_data=False)
    except DecodeError:
        return []
    found = (external_data_mutations(model) + declaration_mutations(model) + attribute_mutations(model)
             + input_tensor_mutations(model) + model_mutations(model))
    return [Mutation(name, description, onnx_edit(change)) for name, description, change in found]


Found = list[tuple[str, str, Change]]


# --- where tensors live ---------------------------------------------------------------------------
def _first_node(model: ModelProto, op_type: str) -> int | None:
    return next((i for i, node in enumerate(model.graph.node) if node.op_type == op_type), None)


def _attribute(node: onnx.NodeProto, name: str) -> AttributeProto | None:
    return next((attribute for attribute in node.attribute if attribute.name == name), None)


def _constant_tensor(model: ModelProto, name: str) -> TensorProto | None:
    """The initializer called ``name``, or the ``value`` of the Constant node that outputs it."""
    for tensor in model.graph.initializer:
        if tensor.name == name:
            return tensor
    for node in model.graph.node:
        if node.op_type == "Constant" and name in node.output and _attribute(node, "value") is not None:
            return _attribute(node, "value").t
    return None


def _node_tensor(op_type: str, model: ModelProto) -> TensorProto:
    """The ``value`` tensor of the first node of ``op_type`` (Constant, ConstantOfShape)."""
    return _attribute(model.graph.node[_first_node(model, op_type)], "value").t


def _first_initializer(model: ModelProto) -> TensorProto:
    return model.graph.initializer[0]


# --- external data --------------------------------------------------------------------------------
def external_data_mutations(model: ModelProto) -> Found:
    """External data, at each of the three places, in every kind of tensor the model has."""
    holders: list[tuple[str, Callable[[ModelProto], TensorProto]]] = []
    if model.graph.initializer:
        holders.append(("initializer", _first_initializer))
    for op_type in ("Constant", "ConstantOfShape"):
        index = _first_node(model, op_type)
        if index is not None and _attribute(model.graph.node[index], "value") is not None:
            holders.append((op_type, partial(_node_tensor, op_type)))
    found: Found = []
    for holder, tensor_of in holders:
        places = [place for place in canary.LINK_PLACES if holder != "initializer" or place != "next"]
        for place in places:
            found.append((f"external-{holder.lower()}", f"the first {holder} tensor's data in {place} canary file",
                          partial(_make_external, tensor_of, place)))
    if model.graph.initializer:       # the model's own folder: allowed for initializers (torch's default export)
        found.append(("external-initializer", "the first initializer's data in a data file next to the model",
                      partial(_make_external, _first_initializer, "next", files=canary.LEGIT_RAW)))
    return found


def _make_external(tensor_of: Callable[[ModelProto], TensorProto], place: str, model: ModelProto,
                   target: Path, files: dict[int, str] = canary.CANARY_RAW) -> None:
    tensor = tensor_of(model)
    itemsize = helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    location = canary.reference(files[8 if itemsize == 8 else 4], place, target)
    nbytes = math.prod(tensor.dims) * itemsize
    for field in ("raw_data", "float_data", "double_data", "int32_data", "int64_data"):
        tensor.ClearField(field)
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


# --- tensor declarations and values ---------------------------------------------------------------
def declaration_mutations(model: ModelProto) -> Found:
    """Dims, element type, payload size and values of the first initializer."""
    if not model.graph.initializer:
        return []
    found: Found = [("huge-dims", f"the first initializer's dims {dims}", partial(_set_dims, dims))
                    for dims in ([10 ** 9], [10 ** 12], [2 ** 62, 2 ** 62], [-1])]
    found += [("data-type", f"the first initializer's data_type {data_type}", partial(_set_data_type, data_type))
              for data_type in (999, TensorProto.STRING, TensorProto.UNDEFINED)]
    found.append(("raw-data", "the first initializer's raw_data cut to half", _halve_raw_data))
    if not any(tensor.data_type in FLOAT_TYPES for tensor in model.graph.initializer):
        return found
    found += [("non-finite", f"the first float initializer {description}", partial(_spoil_initializer, value, where))
              for description, value, where in (("NaN as the first value", np.nan, "first"),
                                                ("+Inf everywhere", np.inf, "all"))]
    return found


def _set_dims(dims: list[int], model: ModelProto, target: Path) -> None:
    tensor = _first_initializer(model)
    del tensor.dims[:]
    tensor.dims.extend(dims)


def _set_data_type(data_type: int, model: ModelProto, target: Path) -> None:
    _first_initializer(model).data_type = data_type


def _halve_raw_data(model: ModelProto, target: Path) -> None:
    tensor = _first_initializer(model)
    _replace_tensor(tensor, numpy_helper.to_array(tensor))       # the values as raw_data
    tensor.raw_data = tensor.raw_data[: len(tensor.raw_data) // 2]


def _spoil_initializer(value: float, where: str, model: ModelProto, target: Path) -> None:
    tensor = next(t for t in model.graph.initializer if t.data_type in FLOAT_TYPES)
    array = numpy_helper.to_array(tensor).copy()
    if where == "first":
        array.flat[0] = value
    else:
        array[...] = value
    _replace_tensor(tensor, array)


def _replace_tensor(tensor: TensorProto, array: np.ndarray) -> None:
    name = tensor.name
    tensor.CopyFrom(numpy_helper.from_array(np.asarray(array), name))


# --- attributes -----------------------------------------------------------------------------------
def attribute_mutations(model: ModelProto) -> Found:
    """Attributes of the wrong type, missing, out of range or hostile, on the nodes the model has."""
    found: Found = []
    conv = _first_node(model, "Conv")
    if conv is not None:
        found += [("attribute-type", f"Conv strides a {kind}", partial(_set_attribute, conv, "strides", value))
                  for kind, value in (("float 1.5", 1.5), ("string", b"junk"))]
        found.append(("missing-attribute", "every attribute of the first Conv removed", partial(_strip, conv)))
        rank = len(_attribute(model.graph.node[conv], "kernel_shape").ints) \
            if _attribute(model.graph.node[conv], "kernel_shape") is not None else 2
        for name, value in (("strides", [0] * rank), ("strides", [INT64_MAX] * rank), ("dilations", [0] * rank),
                            ("pads", [-5] * 2 * rank), ("group", 0), ("kernel_shape", [10 ** 6] * rank)):
            found.append(("conv-attribute", f"Conv {name} = {value}", partial(_set_attribute, conv, name, value)))
    found.append(("missing-attribute", "every attribute of every node removed", _strip_all))
    axis_node = next((i for i, node in enumerate(model.graph.node) if _attribute(node, "axis") is not None), None)
    if axis_node is not None:
        op_type = model.graph.node[axis_node].op_type
        found += [("axis", f"{op_type} axis = {axis}", partial(_set_attribute, axis_node, "axis", axis))
                  for axis in (99, -99)]
    gemm = _first_node(model, "Gemm")
    if gemm is not None:
        found += [("gemm-alpha", f"Gemm alpha = {alpha}", partial(_set_attribute, gemm, "alpha", alpha))
                  for alpha in (float("nan"), float("inf"))]
    cast = _first_node(model, "Cast")
    if cast is not None:
        found.append(("cast", "Cast to = 999", partial(_set_attribute, cast, "to", 999)))
    transpose = _first_node(model, "Transpose")
    if transpose is not None:
        rank = len(_attribute(model.graph.node[transpose], "perm").ints)
        found += [("transpose", f"Transpose perm = {perm}", partial(_set_attribute, transpose, "perm", perm))
                  for perm in ([0] * rank, list(range(rank - 1)) + [99])]
    return found


def _set_attribute(index: int, name: str, value: Any, model: ModelProto, target: Path) -> None:
    """Replace (or add) node ``index``'s attribute ``name``; its type follows ``value``."""
    node = model.graph.node[index]
    kept = [attribute for attribute in node.attribute if attribute.name != name]
    del node.attribute[:]
    node.attribute.extend(kept + [helper.make_attribute(name, value)])


def _strip(index: int, model: ModelProto, target: Path) -> None:
    del model.graph.node[index].attribute[:]


def _strip_all(model: ModelProto, target: Path) -> None:
    for node in model.graph.node:
        del node.attribute[:]


# --- tensors that are inputs of shape operators ---------------------------------------------------
def input_tensor_mutations(model: ModelProto) -> Found:
    """Reshape's target shape, Slice's steps and ReduceMean's axes replaced, where they are constants."""
    found: Found = []
    for op_type, position, values in (("Reshape", 1, ([1, 999], [0, -1, -1], [-2])), ("Slice", 4, ([0],)),
                                      ("ReduceMean", 1, ([99],))):
        index = _first_node(model, op_type)
        if index is None or len(model.graph.node[index].input) <= position:
            continue
        tensor = _constant_tensor(model, model.graph.node[index].input[position])
        if tensor is None:
            continue
        for value in values:
            found.append((op_type.lower(), f"{op_type} input {position} = {value}",
                          partial(_set_input_tensor, index, position, value)))
    return found


def _set_input_tensor(index: int, position: int, value: list[int], model: ModelProto, target: Path) -> None:
    tensor = _constant_tensor(model, model.graph.node[index].input[position])
    _replace_tensor(tensor, np.array(value, dtype=np.int64))


# --- names and the model --------------------------------------------------------------------------
def model_mutations(model: ModelProto) -> Found:
    """Names that are not UTF-8, opsets, IR version, graph wiring, domains."""
    found: Found = [("non-utf8-name", "the first node's name not UTF-8", _non_utf8_node_name),
                    ("non-utf8-name", "the graph input's name not UTF-8 (and its uses)",
                     partial(_rename, "input")),
                    ("model", "opset version 1", partial(_set_opset, 1)),
                    ("model", "opset version 999", partial(_set_opset, 999)),
                    ("model", "IR version 999", _ir_version_999),
                    ("model", "no nodes", _no_nodes),
                    ("model", "the first node reads 'no_such_tensor'", _unknown_input),
                    ("model", "the graph output is 'no_such_tensor'", _unknown_output),
                    ("model", "the first node in the domain 'com.evil'", _evil_domain)]
    if model.graph.initializer:
        found += [("non-utf8-name", "the first initializer's name not UTF-8 (and its uses)",
                   partial(_rename, "initializer")),
                  ("model", "the first initializer given twice", _duplicate_initializer)]
    return found


def _non_utf8_node_name(model: ModelProto, target: Path) -> None:
    model.graph.node[0].name = NON_UTF8_PLACEHOLDER


def _rename(what: str, model: ModelProto, target: Path) -> None:
    tensor = model.graph.input[0] if what == "input" else _first_initializer(model)
    old = tensor.name
    tensor.name = NON_UTF8_PLACEHOLDER
    for node in model.graph.node:
        node.input[:] = [NON_UTF8_PLACEHOLDER if name == old else name for name in node.input]


def _set_opset(version: int, model: ModelProto, target: Path) -> None:
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = version


def _ir_version_999(model: ModelProto, target: Path) -> None:
    model.ir_version = 999


def _no_nodes(model: ModelProto, target: Path) -> None:
    del model.graph.node[:]


def _unknown_input(model: ModelProto, target: Path) -> None:
    node = model.graph.node[0]
    if node.input:
        node.input[0] = "no_such_tensor"
    else:
        node.input.append("no_such_tensor")


def _unknown_output(model: ModelProto, target: Path) -> None:
    model.graph.output[0].name = "no_such_tensor"


def _evil_domain(model: ModelProto, target: Path) -> None:
    model.graph.node[0].domain = "com.evil"


def _duplicate_initializer(model: ModelProto, target: Path) -> None:
    model.graph.initializer.append(model.graph.initializer[0])
