"""Constant folding of the small shape computations the PyTorch exporters write.

An exporter computes some operands inside the graph: the TorchScript exporter
builds the ``pads`` of a Pad from ``Constant``, ``ConstantOfShape``, ``Concat``,
``Reshape``, ``Slice``, ``Transpose`` and ``Cast`` nodes, and ``x.view(x.size(0), -1)``
becomes ``Shape -> Gather -> Unsqueeze -> Concat -> Reshape``. When every input of
such a node is a constant the importer evaluates it here with NumPy, following
the ONNX operator definitions (integers as int64, floats as float64). ``Shape``
of a tensor computed by the network is answered from the shapes the importer
tracks, with a batch of 1.

Nothing here runs the network: these are operations on a handful of integers.
Each folder checks its operands against the operator's definition before NumPy
sees them, so a malformed node is a :class:`~refcam.errors.FileFormatError`
naming it, never a NumPy exception or a silently wrapped axis:

* required inputs and attributes must be present, of the ONNX type;
* axes lie in ``[-rank, rank - 1]`` and are not repeated, ``perm`` is a
  permutation, Gather indices lie in ``[-n, n - 1]``, Slice steps are not 0,
  Reshape targets hold at most one -1 and keep the element count, Concat and
  element-wise inputs have compatible shapes, integer Div has no zero divisor,
  Cast goes to a numeric type (and a float cast to an integer type must fit it);
* an output that can be larger than its inputs (ConstantOfShape, Concat, Gather,
  broadcasting Add/Sub/Mul/Div) has its size checked against ``max_tensor_bytes``
  (:func:`refcam.io.safe.check_declared_size`, negative sizes included) **before**
  it is allocated;
* a float result must be finite (a NonFiniteParameterError otherwise, e.g. 1 / 0).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import FileFormatError, UnsupportedOperationError
from .onnx_graph import REQUIRED, Node, as_number_array, check_axes, check_axis, check_permutation, int_list
from .safe import DEFAULT_MAX_TENSOR_BYTES, check_declared_size, check_finite

Folder = Callable[[Node, Sequence[Any], int, int], np.ndarray]
CONSTANT_VALUES = {"value": "tensor", "value_float": "float", "value_floats": "floats", "value_int": "int",
                   "value_ints": "ints"}
UNSUPPORTED_CONSTANT_VALUES = ("value_string", "value_strings", "sparse_value")
CAST_TYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
              10: "float16", 11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}   # TensorProto enum


def fold(node: Node, operands: Sequence[np.ndarray | None], opset: int,
         max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> np.ndarray:
    """The value of ``node``'s first output for constant ``operands`` (None for omitted inputs).

    Rule: the checks of the module docstring; floats as float64, integers as
    int64; a float result holding NaN or Inf is a NonFiniteParameterError.
    """
    with np.errstate(all="ignore"):       # integer wrap-around is ONNX's; float results are checked below
        result = as_number_array(FOLDERS[node.op_type](node, operands, opset, max_tensor_bytes),
                                 f"{node.label}: its output")
    if result.dtype.kind == "f":
        check_finite(result, "its output", node.label)
    return result


def shape_of(node: Node, onnx_shape: Sequence[int | None]) -> np.ndarray:
    """``Shape`` of a network tensor whose ONNX shape is ``(1, *onnx_shape)`` (batch taken as 1)."""
    full = (1, *onnx_shape)
    if any(n is None for n in full):
        raise UnsupportedOperationError(
            f"{node.label} reads the shape {tuple(full)} of a tensor with a dynamic axis (None); refcam "
            "folds Shape only for fixed sizes. Export the model with a fixed size on that axis.")
    return np.asarray(full[node.attr("start", "int", 0):node.attr("end", "int", None)], dtype=np.int64)


def _required(node: Node, operands: Sequence[Any], index: int) -> np.ndarray:
    """Operand ``index``, which the operator requires."""
    if index >= len(operands) or operands[index] is None:
        raise FileFormatError(f"{node.label} lacks its required input #{index}.")
    return np.asarray(operands[index])


def _optional(operands: Sequence[Any], index: int) -> np.ndarray | None:
    return None if index >= len(operands) or operands[index] is None else np.asarray(operands[index])


def _check_output_size(node: Node, shape: Sequence[int], max_tensor_bytes: int) -> None:
    """DeclaredSizeError before allocating an output of ``shape`` that is negative or over the budget."""
    check_declared_size(shape, "its output", node.label, max_tensor_bytes)


def _check_rank(node: Node, data: np.ndarray, what: str = "input #0") -> None:
    if data.ndim == 0:
        raise FileFormatError(f"{node.label}: {what} is a scalar; {node.op_type} needs a tensor of rank 1 or more.")


# --- the folders ---------------------------------------------------------------------
def _constant(node: Node, operands: Sequence[Any], opset: int, max_tensor_bytes: int) -> np.ndarray:
    """Constant: exactly one of value (a tensor), value_float(s), value_int(s)."""
    given = [key for key in (*CONSTANT_VALUES, *UNSUPPORTED_CONSTANT_VALUES) if key in node.attributes]
    if len(given) != 1:
        raise FileFormatError(f"{node.label} has the value attribute(s) {given}; a Constant has exactly one of "
                              f"{', '.join(CONSTANT_VALUES)}.")
    (key,) = given
    if key in UNSUPPORTED_CONSTANT_VALUES:
        raise UnsupportedOperationError(f"{node.label}: a Constant given as {key}; refcam folds dense numeric "
                                        "constants only.")
    kind = CONSTANT_VALUES[key]
    return np.asarray(node.attr(key, kind), dtype=np.int64 if kind.startswith("int") else None)


def _constant_of_shape(node: Node, operands: Sequence[Any], opset: int, max_tensor_bytes: int) -> np.ndarray:
    """ConstantOfShape: shape = input #0 (non-negative ints, size checked first), filled with the one-element value."""
    shape = int_list(node, _required(node, operands, 0), "input #0 (the output shape)")
    fill = node.attr("value", "tensor", np.zeros(1))
    if fill.size != 1:
        raise FileFormatError(f"{node.label}: value has {fill.size} elements; ConstantOfShape's value is a "
                              "one-element tensor.")
    _check_output_size(node, shape, max_tensor_bytes)
    return np.full(tuple(shape), fill.reshape(-1)[0])


def _shape(node: Node, operands: Sequence[Any], opset: int, max_tensor_bytes: int) -> np.ndarray:
    shape = _required(node, operands, 0).shape
    return np.asarray(shape[node.attr("start", "int", 0):node.attr("end", "int", None)], dtype=np.int64)


def _gather(node: Node, operands: Sequence[Any], opset: int, max_tensor_bytes: int) -> np.ndarray:
    """Gather: ``np.take(data, indices, axis)``; every index in ``[-n, n - 1]`` for the axis's size n."""
    data, indices = _required(node, operands, 0), _required(node, operands, 1)
    _check_rank(node, data, "input #0 (the data)")
    axis = check_axis(node, node.attr("axis", "int", 0), data.ndim)
    if indices.dtype.kind not in "iu":
        raise FileFormatError(f"{node.label}: the indices are {indices.dtype}; ONNX defines them as integers.")
    size = data.shape[axis]
    if indices.size and (int(indices.min()) < -size or int(indices.max()) >= size):
        raise FileFormatError(f"{node.label}: indices from {int(indices.min())} to {int(indices.max())} on axis "
                              f"{axis} of size {size}; ONNX allows {-size} to {size - 1}.")
    _check_output_size(node, data.shape[:axis] + indices.shape + data.shape[axis + 1:], max_tensor_bytes)
    return np.take(data, indices, axis=axis)


def _axes(node: Node, operands: Sequence[Any], opset: int, since: int) -> list[int]:
    """Axes given as the attribute (before opset ``since``) or as the optional second input."""
    if opset >= since:
        given = _optional(operands, 1)
        return [] if given is None else int_list(node, given, "input #1 (the axes)")
    return list(node.attr("axes", "ints", []))


def _unsqueeze(node: Node, operands: Sequence[Any], opset: int, max_tensor_bytes: int) -> np.ndarray:
    """Unsqueeze: axes (required) index the output, of rank ``input rank + len(axes)``."""
    data = _required(node, operands, 0)
    axes = _axes(node, operands, opset, 13)
    if not axes:
        raise FileFormatError(f"{node.label} gives no axes; Unsqueeze needs the axes to insert.")
    for axis in sorted(check_axes(node, axes, data.ndim + len(axes))):
        data = np.expand_dims(data, axis)
    return data


def _squeeze(node: Node, operands: Sequence[Any], opset: int, max_tensor_bytes: int) -> np.ndarray:
    """Squeeze: the given axes (each of size 1), or every size-1 axis when none is given."""
    data = _required(node, operands, 0)
    axes = check_axes(node, _axes(node, operands, opset, 13), data.ndim)
    wrong = [axis for axis in axes if data.shape[axis] != 1]
    if wrong:
        raise FileFormatError(f"{node.label}: squeezes axes {wrong} of a tensor of shape {data.shape}; only "
                              "axes of size 1 can be squeezed.")
    return np.squeeze(data, axis=tuple(axes) if axes else None)


def _concat(node: Node, operands: Sequence[Any], opset: int, max_tensor_bytes: int) -> np.ndarray:
    """Concat: inputs of one rank (>= 1) whose shapes agree except along ``axis``."""
    arrays = [np.asarray(o) for o in operands if o is not None]
    if not arrays:
        raise FileFormatError(f"{node.label} has no inputs; Concat needs at least one.")
    shapes = [a.shape for a in arrays]
    rank = arrays[0].ndim
    if rank == 0 or any(a.ndim != rank for a in arrays):
        raise FileFormatError(f"{node.label}: inputs of shapes {shapes}; Concat needs inputs of one rank, 1 or more.")
    axis = check_axis(node, node.attr("axis", "int", 1 if opset < 4 else REQUIRED), rank)
    if any(s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
        raise FileFormatError(f"{node.label}: inputs of shapes {shapes} differ on an axis other than {axis}.")
    joined = shapes[0][:axis] + (sum(s[axis] for s in shapes),) + shapes[0][axis + 1:]
    _check_output_size(node, joined, max_tensor_bytes)
    return np.concatenate(arrays, axis=axis)


def _reshape(node: Node, operands: Sequence[Any], opset: int, max_tensor_bytes: int) -> np.ndarray:
    """Reshape to input #1 (the ``shape`` attribute before opset 5), resolved by :func:`reshape_target`."""
    data = _required(node, operands, 0)
    return data.reshape(reshape_target(node, data.shape, reshape_request(node, _optional(operands, 1), opset)))


def reshape_request(node: Node, shape_operand: np.ndarray | None, opset: int) -> list[int]:
    """The target a Reshape asks for: its ``shape`` attribute before opset 5, else its input #1 (required)."""
    if opset < 5:
        return list(node.attr("shape", "ints"))
    if shape_operand is None:
        raise FileFormatError(f"{node.label} lacks its required input #1 (the shape).")
    return int_list(node, shape_operand, "input #1 (the shape)")


def reshape_target(node: Node, shape: Sequence[int], target: Sequence[int]) -> tuple[int, ...]:
    """ONNX Reshape's output shape: 0 copies the input's size (unless ``allowzero``), -1 is inferred.

    Rule: entries are -1 (at most one), 0 or positive; a 0 that copies must have
    an input axis to copy; the output holds as many elements as the input.
    Anything else is a FileFormatError naming the node and both shapes.
    """
    allowzero = node.attr("allowzero", "int", 0)
    total = _product(shape)
    if target.count(-1) > 1 or min(target, default=0) < -1 or (allowzero and -1 in target and 0 in target):
        raise FileFormatError(f"{node.label}: Reshape target {list(target)} is invalid (at most one -1, no other "
                              "negative size, no 0 next to -1 with allowzero).")
    if not allowzero and any(t == 0 and i >= len(shape) for i, t in enumerate(target)):
        raise FileFormatError(f"{node.label}: Reshape target {list(target)} copies (0) an axis the input of shape "
                              f"{tuple(shape)} lacks.")
    sizes = [int(shape[i]) if (t == 0 and not allowzero) else int(t) for i, t in enumerate(target)]
    if -1 in sizes:
        known = _product([n for n in sizes if n != -1])
        if known == 0 or total % known:
            raise FileFormatError(f"{node.label}: cannot reshape {total} elements (shape {tuple(shape)}) to "
                                  f"{list(target)}.")
        sizes[sizes.index(-1)] = total // known
    if _product(sizes) != total:
        raise FileFormatError(f"{node.label}: cannot reshape {total} elements (shape {tuple(shape)}) to "
                              f"{list(target)} ({_product(sizes)} elements).")
    return tuple(sizes)


def _product(sizes: Sequence[int]) -> int:
    """The exact product of ``sizes`` (Python ints: no int64 overflow)."""
    result = 1
    for size in sizes:
        result *= int(size)
    return result


def _slice(node: Node, operands: Sequence[Any], opset: int, max_tensor_bytes: int) -> np.ndarray:
    """Slice: starts, ends (inputs from opset 10, else attributes), optional axes and non-zero steps."""
    data = _required(node, operands, 0)
    _check_rank(node, data)
    if opset >= 10:
        starts = int_list(node, _required(node, operands, 1), "input #1 (starts)")
        ends = int_list(node, _required(node, operands, 2), "input #2 (ends)")
        axes_given, steps_given = _optional(operands, 3), _optional(operands, 4)
        axes = None if axes_given is None else int_list(node, axes_given, "input #3 (axes)")
        steps = [1] * len(starts) if steps_given is None else int_list(node, steps_given, "input #4 (steps)")
    else:
        starts, ends = list(node.attr("starts", "ints")), list(node.attr("ends", "ints"))
        axes, steps = node.attr("axes", "ints", None), [1] * len(starts)
    axes = check_axes(node, range(len(starts)) if axes is None else axes, data.ndim)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise FileFormatError(f"{node.label}: starts {starts}, ends {ends}, axes {axes} and steps {steps} must "
                              "have the same length.")
    if 0 in steps:
        raise FileFormatError(f"{node.label}: steps {steps} hold a 0; a Slice step is non-zero.")
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[axis] = slice(start, end, step)
    return data[tuple(index)]


def _transpose(node: Node, operands: Sequence[Any], opset: int, max_tensor_bytes: int) -> np.ndarray:
    """Transpose by ``perm`` (a permutation of the axes), reversing them by default."""
    data = _required(node, operands, 0)
    perm = node.attr("perm", "ints", list(range(data.ndim - 1, -1, -1)))
    return np.transpose(data, axes=check_permutation(node, perm, data.ndim))


def _cast(node: Node, operands: Sequence[Any], opset: int, max_tensor_bytes: int) -> np.ndarray:
    """Cast to the numeric type ``to``; a float cast to an integer type must fit that type."""
    data = _required(node, operands, 0)
    dtype = cast_dtype(node)
    if data.dtype.kind == "f" and dtype.kind in "iu" and data.size:
        limits = np.iinfo(dtype)
        if float(data.min()) < limits.min or float(data.max()) > limits.max:
            raise FileFormatError(f"{node.label}: casts values from {float(data.min())} to {float(data.max())} to "
                                  f"{dtype}, which holds {limits.min} to {limits.max} (ONNX leaves this undefined).")
    return data.astype(dtype)


def cast_dtype(node: Node) -> np.dtype:
    """The NumPy dtype of a Cast's ``to``; an unknown type is a FileFormatError, a non-numeric one unsupported."""
    from onnx import TensorProto, helper

    to = node.attr("to", "int")
    names = {value: name for name, value in TensorProto.DataType.items()}
    if to not in names:
        raise FileFormatError(f"{node.label}: to={to} is not an ONNX element type.")
    if to not in CAST_TYPES:
        raise UnsupportedOperationError(f"{node.label}: Cast to {names[to]}; refcam folds casts to float, "
                                        "integer and boolean types.")
    return np.dtype(helper.tensor_dtype_to_np_dtype(to))


def _identity(node: Node, operands: Sequence[Any], opset: int, max_tensor_bytes: int) -> np.ndarray:
    return _required(node, operands, 0)


def _binary(function: Callable[[Node, np.ndarray, np.ndarray], Any]) -> Folder:
    """An element-wise folder: two inputs broadcast as ONNX (NumPy) does, output size checked first."""
    def folder(node: Node, operands: Sequence[Any], opset: int, max_tensor_bytes: int) -> np.ndarray:
        a, b = _required(node, operands, 0), _required(node, operands, 1)
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError as err:
            raise FileFormatError(f"{node.label}: inputs of shapes {a.shape} and {b.shape} do not broadcast.") \
                from err
        _check_output_size(node, shape, max_tensor_bytes)
        return function(node, a, b)
    return folder


def _add(node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.add(a, b)


def _subtract(node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.subtract(a, b)


def _multiply(node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.multiply(a, b)


def _divide(node: Node, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX Div: true division for floats, truncation toward zero for integers (a zero divisor is refused)."""
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        if not b.all():
            raise FileFormatError(f"{node.label}: integer division by a divisor holding 0.")
        return np.trunc(a / b).astype(np.int64)
    return a / b


FOLDERS: dict[str, Folder] = {
    "Constant": _constant,
    "ConstantOfShape": _constant_of_shape,
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": _concat,
    "Reshape": _reshape,
    "Slice": _slice,
    "Transpose": _transpose,
    "Cast": _cast,
    "Identity": _identity,
    "Add": _binary(_add),
    "Sub": _binary(_subtract),
    "Mul": _binary(_multiply),
    "Div": _binary(_divide),
}
