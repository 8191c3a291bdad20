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
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..errors import UnsupportedOperationError
from .onnx_graph import Node, as_number_array

Folder = Callable[[Node, Sequence[Any], int], np.ndarray]


def fold(node: Node, operands: Sequence[np.ndarray | None], opset: int) -> np.ndarray:
    """The value of ``node``'s first output for constant ``operands`` (None for omitted inputs)."""
    return as_number_array(FOLDERS[node.op_type](node, operands, opset))


def shape_of(node: Node, onnx_shape: Sequence[int | None]) -> np.ndarray:
    """``Shape`` of a network tensor whose ONNX shape is ``(1, *onnx_shape)`` (batch taken as 1)."""
    full = (1, *onnx_shape)
    if any(n is None for n in full):
        raise UnsupportedOperationError(
            f"{node.label} reads the shape {tuple(full)} of a tensor with a dynamic axis (None); refcam "
            "folds Shape only for fixed sizes. Export the model with a fixed size on that axis.")
    start, end = node.attr("start", 0), node.attr("end", None)
    return np.asarray(full[start:end], dtype=np.int64)


# --- the folders ---------------------------------------------------------------------
def _constant(node: Node, operands: Sequence[Any], opset: int) -> np.ndarray:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attributes:
            return np.asarray(node.attributes[key])
    raise UnsupportedOperationError(
        f"{node.label} has none of the attributes value, value_float(s), value_int(s); "
        f"found {sorted(node.attributes)}.")


def _constant_of_shape(node: Node, operands: Sequence[Any], opset: int) -> np.ndarray:
    fill = node.attr("value", np.zeros(1))
    return np.full(tuple(int(n) for n in operands[0]), np.asarray(fill).reshape(-1)[0])


def _shape(node: Node, operands: Sequence[Any], opset: int) -> np.ndarray:
    return np.asarray(np.shape(operands[0])[node.attr("start", 0):node.attr("end", None)], dtype=np.int64)


def _gather(node: Node, operands: Sequence[Any], opset: int) -> np.ndarray:
    return np.take(operands[0], operands[1], axis=node.attr("axis", 0))


def _axes(node: Node, operands: Sequence[Any], opset: int, since: int) -> list[int]:
    """Axes given as the attribute (before opset ``since``) or as the second input."""
    if opset >= since:
        return [] if len(operands) < 2 or operands[1] is None else [int(a) for a in operands[1]]
    return list(node.attr("axes", []))


def _unsqueeze(node: Node, operands: Sequence[Any], opset: int) -> np.ndarray:
    data = operands[0]
    rank = data.ndim + len(_axes(node, operands, opset, 13))
    for axis in sorted(a % rank for a in _axes(node, operands, opset, 13)):
        data = np.expand_dims(data, axis)
    return data


def _squeeze(node: Node, operands: Sequence[Any], opset: int) -> np.ndarray:
    axes = _axes(node, operands, opset, 13)
    return np.squeeze(operands[0], axis=tuple(a % operands[0].ndim for a in axes) if axes else None)


def _concat(node: Node, operands: Sequence[Any], opset: int) -> np.ndarray:
    return np.concatenate([np.asarray(o) for o in operands if o is not None], axis=node.attr("axis"))


def _reshape(node: Node, operands: Sequence[Any], opset: int) -> np.ndarray:
    data, target = operands[0], operands[1]
    return data.reshape(reshape_target(data.shape, target, node.attr("allowzero", 0)))


def reshape_target(shape: Sequence[int], target: Sequence[int], allowzero: int) -> tuple[int, ...]:
    """ONNX Reshape's output shape: 0 copies the input's size (unless ``allowzero``), -1 is inferred."""
    sizes = [int(shape[i]) if (t == 0 and not allowzero) else int(t) for i, t in enumerate(target)]
    if sizes.count(-1) == 1:
        known = int(np.prod([n for n in sizes if n != -1]))
        total = int(np.prod(shape))
        sizes[sizes.index(-1)] = total // known if known else 0
    return tuple(sizes)


def _slice(node: Node, operands: Sequence[Any], opset: int) -> np.ndarray:
    data = operands[0]
    if opset >= 10:
        starts, ends = operands[1], operands[2]
        axes = operands[3] if len(operands) > 3 and operands[3] is not None else range(len(starts))
        steps = operands[4] if len(operands) > 4 and operands[4] is not None else [1] * len(starts)
    else:
        starts, ends = node.attr("starts"), node.attr("ends")
        axes, steps = node.attr("axes", range(len(starts))), [1] * len(starts)
    index = [slice(None)] * data.ndim
    for start, end, axis, step in zip(starts, ends, axes, steps):
        index[int(axis) % data.ndim] = slice(_clamp(start), _clamp(end), int(step))
    return data[tuple(index)]


def _clamp(bound: Any) -> int:
    """Slice bounds beyond int64 (the exporters' 'to the end') as Python ints NumPy accepts."""
    return int(max(min(int(bound), 2 ** 62), -(2 ** 62)))


def _transpose(node: Node, operands: Sequence[Any], opset: int) -> np.ndarray:
    perm = node.attr("perm")
    return np.transpose(operands[0], axes=None if perm is None else tuple(perm))


def _cast(node: Node, operands: Sequence[Any], opset: int) -> np.ndarray:
    from onnx import helper

    return np.asarray(operands[0]).astype(helper.tensor_dtype_to_np_dtype(node.attr("to")))


def _identity(node: Node, operands: Sequence[Any], opset: int) -> np.ndarray:
    return np.asarray(operands[0])


def _binary(function: Callable[[Any, Any], Any]) -> Folder:
    def folder(node: Node, operands: Sequence[Any], opset: int) -> np.ndarray:
        return function(np.asarray(operands[0]), np.asarray(operands[1]))
    return folder


def _divide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ONNX Div: true division for floats, truncation toward zero for integers."""
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
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
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _binary(_divide),
}
