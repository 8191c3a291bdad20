"""The HDF5 side of a Keras file: its string attributes (``model_config``), the per-layer weight
groups, and the weight layouts moved to refcam's.

Part of the Keras HDF5 importer (:mod:`refcam.io.keras_h5` describes the whole
format). Every object is reached through hard links only and every dataset is
checked (shape from the config, declared size, finite values) before use.
"""
from __future__ import annotations

import collections
import functools
import json
import math
from typing import Any, Sequence

import h5py
import numpy as np

from ..errors import FileFormatError, MissingDatasetError, WeightShapeError
from .keras_layer import MAX_STRING_ATTRIBUTE_COUNT, KerasLayer, _shown
from .safe import DEFAULT_MAX_TENSOR_BYTES, HDF5_READ_ERRORS, hdf5_object, read_dataset

Shape = tuple[Any, ...]


# --- attributes ------------------------------------------------------------------------------
def read_model_config(f: h5py.File, source: str) -> dict[str, Any]:
    """The parsed ``model_config`` attribute: a dict with a string ``class_name`` and ``config``."""
    if "model_config" not in f.attrs:
        weights_only = "layer_names" in f.attrs
        hint = ("it holds weights only (model.save_weights); save the whole model with "
                "model.save('model.h5')" if weights_only else
                "it is not a Keras model file; save the model with model.save('model.h5')")
        raise FileFormatError(f"{source}: the root attribute 'model_config' (the architecture) is "
                              f"missing: {hint}.")
    texts = string_attribute(f, "model_config", "the root attribute 'model_config'", source)
    if len(texts) != 1:
        raise FileFormatError(f"{source}: the root attribute 'model_config' holds {len(texts)} strings; "
                              "Keras writes one JSON string.")
    config = parse_json(texts[0], "the root attribute 'model_config'", source)
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str) or "config" not in config:
        raise FileFormatError(f"{source}: 'model_config' must be a JSON object with a string 'class_name' "
                              f"and a 'config'; found {_shown(texts[0][:80])}.")
    return config


def parse_json(text: str, where: str, source: str) -> Any:
    """``json.loads(text)`` with every failure a FileFormatError; duplicate keys are refused.

    NaN and Infinity parse (as Python's json does) and are refused where a
    value is used (:meth:`KerasLayer.number`).
    """
    try:
        return json.loads(text, object_pairs_hook=functools.partial(_unique_keys, where=where, source=source))
    except FileFormatError:        # a repeated key (_unique_keys): a ValueError, but already the message
        raise
    except RecursionError as err:
        raise FileFormatError(f"{source}: {where} nests JSON arrays or objects too deeply to parse; "
                              "Keras configs are a few levels deep.") from err
    except ValueError as err:      # JSONDecodeError, and integers of more than 4300 digits
        raise FileFormatError(f"{source}: {where} is not valid JSON ({_shown(str(err))}).") from err


def _unique_keys(pairs: list[tuple[str, Any]], where: str, source: str) -> dict[str, Any]:
    """A JSON object's dict; FileFormatError when a key repeats (parsers disagree on which one wins)."""
    counts = collections.Counter(key for key, _ in pairs)
    repeated = [key for key, count in counts.items() if count > 1]
    if repeated:
        raise FileFormatError(f"{source}: {where} has a JSON object with the key {repeated[0]!r} more than "
                              "once, so its meaning is ambiguous; Keras writes each key once.")
    return dict(pairs)


def string_attribute(obj: h5py.Group, name: str, where: str, source: str) -> list[str]:
    """The strings of attribute ``name`` (a scalar or 1-D string attribute; an empty one gives []).

    The declaration (type, count) is checked before the value is read; each
    string must be valid UTF-8 (h5py would otherwise pass undecodable bytes on).
    """
    try:
        declared = obj.attrs.get_id(name)
        shape, dtype = declared.shape, declared.dtype
    except HDF5_READ_ERRORS as err:
        raise FileFormatError(f"{source}: {where} cannot be read ({err}); the file is corrupt.") from err
    count = math.prod(shape) if shape else 1
    if len(shape) > 1 or count > MAX_STRING_ATTRIBUTE_COUNT:
        raise FileFormatError(f"{source}: {where} has shape {shape}; Keras writes a string or a list of "
                              f"at most {MAX_STRING_ATTRIBUTE_COUNT} strings.")
    if count == 0:
        return []
    if h5py.check_string_dtype(dtype) is None:
        raise FileFormatError(f"{source}: {where} holds {dtype} values, not strings.")
    try:
        values = np.asarray(obj.attrs[name], dtype=object).ravel()
    except HDF5_READ_ERRORS as err:
        raise FileFormatError(f"{source}: {where} cannot be read ({err}); the file is corrupt.") from err
    return [_utf8(value, where, source) for value in values]


def _utf8(value: Any, where: str, source: str) -> str:
    """A string attribute's value as str, refusing bytes that are not UTF-8."""
    try:
        if isinstance(value, (bytes, np.bytes_)):
            return bytes(value).decode("utf-8")
        if isinstance(value, str):
            value.encode("utf-8")          # h5py keeps undecodable bytes as lone surrogates
            return value
    except UnicodeError as err:
        raise FileFormatError(f"{source}: {where} is not valid UTF-8 text ({err.reason} at byte "
                              f"{err.start}).") from err
    raise FileFormatError(f"{source}: {where} holds a {type(value).__name__}, not a string.")



# --- weight layouts (pure functions) ---------------------------------------------------------------


def conv_kernel_to_internal(kernel: np.ndarray) -> np.ndarray:
    """Keras ``(*k, C/groups, F)`` -> refcam ``(F, C/groups, *k)``.

    >>> conv_kernel_to_internal(np.zeros((3, 5, 2, 8))).shape
    (8, 2, 3, 5)
    """
    rank = kernel.ndim - 2
    return np.ascontiguousarray(kernel.transpose(rank + 1, rank, *range(rank)))


def depthwise_kernel_to_internal(kernel: np.ndarray) -> np.ndarray:
    """Keras depthwise ``(*k, C, m)`` -> refcam ``(C*m, 1, *k)``: filter ``c*m + j`` holds ``[..., c, j]``.

    >>> depthwise_kernel_to_internal(np.zeros((3, 3, 4, 2))).shape
    (8, 1, 3, 3)
    """
    rank = kernel.ndim - 2
    channels, multiplier = kernel.shape[-2:]
    flat = kernel.reshape(*kernel.shape[:rank], channels * multiplier)      # (*k, C*m), index c*m + j
    return np.ascontiguousarray(flat.transpose(rank, *range(rank))[:, None])  # (C*m, 1, *k)


def transposed_conv_kernel_to_internal(kernel: np.ndarray) -> np.ndarray:
    """Keras ConvNDTranspose ``(*k, F, C)`` (outputs before inputs) -> refcam ``(C, F, *k)`` (PyTorch/ONNX order).

    The same axis move as :func:`conv_kernel_to_internal`: ``transpose(N+1, N, 0..N-1)``.

    >>> transposed_conv_kernel_to_internal(np.zeros((3, 5, 8, 2))).shape
    (2, 8, 3, 5)
    """
    return conv_kernel_to_internal(kernel)


def dense_kernel_to_internal(kernel: np.ndarray) -> np.ndarray:
    """Keras ``(In, Out)`` -> refcam ``(Out, In)``."""
    return np.ascontiguousarray(kernel.T)


def zero_padding_to_internal(padding: Any, rank: int) -> tuple[int, ...]:
    """Keras ZeroPadding ``padding`` -> refcam ``(begins..., ends...)``.

    Keras writes an int (every side), ``rank`` ints (symmetric per axis; 1-D:
    ``[begin, end]``) or ``rank`` ``[begin, end]`` pairs; any other form is a
    ValueError saying which forms are valid.

    >>> zero_padding_to_internal([[1, 2], [3, 4]], 2)
    (1, 3, 2, 4)
    """
    if _is_int(padding):
        pairs = [(padding, padding)] * rank
    elif not isinstance(padding, (list, tuple)):
        pairs = []
    elif rank == 1 and len(padding) == 2 and all(_is_int(p) for p in padding):
        pairs = [tuple(padding)]
    elif all(_is_int(p) for p in padding):
        pairs = [(p, p) for p in padding]
    else:
        pairs = [tuple(p) if isinstance(p, (list, tuple)) else () for p in padding]
    if len(pairs) != rank or any(len(pair) != 2 or not all(_is_int(p) for p in pair) for pair in pairs):
        raise ValueError(f"an integer, {rank} integers or {rank} [begin, end] pairs of integers")
    return tuple(int(p[0]) for p in pairs) + tuple(int(p[1]) for p in pairs)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def channels_last_constant(value: Any, rank: int) -> np.ndarray:
    """A Keras constant that broadcasts against ``(B, *S, C)`` -> refcam's per-observation array.

    ``rank`` is the number of axes of one observation ``(C, *S)``. A scalar
    stays 0-d; otherwise leading ones are added up to ``rank`` axes in Keras's
    order ``(*S, C)`` and the channel axis moves first: ``(C, *S)``, so a
    per-channel vector of C values becomes ``(C, 1, ..., 1)``. The values are
    rounded to float32, as Keras evaluates them (tf.keras casts the Python
    number through a float32 tensor; Keras 3 holds them in the layer's float32),
    so ``1/127.5`` is ``0.0078431377...`` like in the framework.

    >>> channels_last_constant([1.0, 2.0, 3.0], 3).shape
    (3, 1, 1)
    """
    array = np.asarray(value, dtype=np.float32)
    if array.ndim == 0:
        return array
    keras_shaped = array.reshape((1,) * (rank - array.ndim) + array.shape)
    return np.ascontiguousarray(np.moveaxis(keras_shaped, -1, 0))


# --- weights -----------------------------------------------------------------------------


class WeightFile:
    """The per-layer weight groups of a Keras file, read by role with shape, size and value checks.

    ``root`` is the path of the group holding the layer groups (``/model_weights``,
    or ``/`` for the ``save_weights`` layout; None when the file has none).
    Every object is reached from the file root with :func:`refcam.io.safe.hdf5_object`,
    so each path component must be a hard link; every dataset is read with
    :func:`refcam.io.safe.read_dataset` against the shape the config implies.
    """

    def __init__(self, f: h5py.File, root: str | None, source: str,
                 max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> None:
        self.file = f
        self.root = root
        self.source = source
        self.max_tensor_bytes = max_tensor_bytes

    def get(self, layer: KerasLayer, roles: str | Sequence[str], keras_shape: Sequence[int]) -> np.ndarray:
        """The weight of ``layer`` named by one of ``roles``, checked against ``keras_shape``."""
        roles = (roles,) if isinstance(roles, str) else tuple(roles)
        group_path = self._group_path(layer)
        names = self._weight_names(layer, group_path)
        by_role = _weights_by_role(names, f"the 'weight_names' of {group_path}", self.source)
        found = next((by_role[role] for role in roles if role in by_role), None)
        if found is None:
            raise MissingDatasetError(
                f"{self.source}: layer {layer.name!r} ({layer.class_name}) has no weight {roles[0]!r}: its "
                f"group {group_path} lists weight_names {names}.")
        return self._read(layer, f"{group_path}/{found}", tuple(keras_shape))

    def single(self, layer: KerasLayer, keras_shape: Sequence[int]) -> np.ndarray:
        """The one weight of ``layer``, whatever its name (Keras 3 names an unnamed weight ``variable_<n>``)."""
        group_path = self._group_path(layer)
        names = self._weight_names(layer, group_path)
        if len(names) != 1:
            raise MissingDatasetError(
                f"{self.source}: layer {layer.name!r} ({layer.class_name}) has one weight; its group "
                f"{group_path} lists weight_names {names}.")
        return self._read(layer, f"{group_path}/{names[0]}", tuple(keras_shape))

    def _group_path(self, layer: KerasLayer) -> str:
        """``<root>/<layer>``, or ``<root>/<nested model>`` for a layer of an inlined nested model."""
        if self.root is None:
            raise MissingDatasetError(f"{self.source}: the group /model_weights is missing, so layer "
                                      f"{layer.name!r} ({layer.class_name}) has no weights.")
        return f"{self.root.rstrip('/')}/{layer.weight_owner or layer.name}"

    def _weight_names(self, layer: KerasLayer, group_path: str) -> list[str]:
        group = self._object(group_path, h5py.Group,
                             f"the weight group {group_path} of layer {layer.name!r} ({layer.class_name}) is "
                             "missing")
        if "weight_names" not in group.attrs:
            raise MissingDatasetError(f"{self.source}: the group {group_path} of layer {layer.name!r} has no "
                                      "'weight_names' attribute.")
        names = string_attribute(group, "weight_names", f"the attribute 'weight_names' of {group_path}",
                                 self.source)
        if layer.weight_owner is None:
            return names
        return [name for name in names if name.split("/")[-2:-1] == [layer.name]]   # <...>/<layer>/<weight>

    def _read(self, layer: KerasLayer, path: str, expected: Shape) -> np.ndarray:
        where = f"the dataset {path} of layer {layer.name!r} ({layer.class_name})"
        dataset = self._object(path, h5py.Dataset, f"{where}, listed in weight_names, is missing")
        try:
            dtype = dataset.dtype
        except HDF5_READ_ERRORS as err:
            raise FileFormatError(f"{self.source}: {where} has an HDF5 type refcam cannot read ({err}).") from err
        if dtype.kind != "f":
            raise WeightShapeError(f"{self.source}: {where} has dtype {dtype}; weights are floating-point "
                                   "arrays.")
        return read_dataset(dataset, where, self.source, expected_shape=expected,
                            max_tensor_bytes=self.max_tensor_bytes)

    def _object(self, path: str, expected: type, missing: str) -> Any:
        """The object at ``path`` from the file root (every component a hard link); MissingDatasetError if absent.

        Only the last component is tested for absence, in its parent reached
        through hard links, so no link is followed to find out.
        """
        parent_path, _, leaf = "/".join(part for part in path.split("/") if part).rpartition("/")
        parent = hdf5_object(self.file, parent_path, h5py.Group, self.source) if parent_path else self.file
        if leaf not in (".", "..") and parent.get(leaf, getlink=True) is None:
            raise MissingDatasetError(f"{self.source}: {missing}.")
        return hdf5_object(self.file, path, expected, self.source)


def _weights_by_role(names: list[str], where: str, source: str) -> dict[str, str]:
    """``{role: weight name}``; two names of one role (``a/kernel:0`` and ``b/kernel:0``) are ambiguous."""
    by_role: dict[str, str] = {}
    for name in names:
        role = _role_of(name)
        if role in by_role:
            raise FileFormatError(f"{source}: {where} lists two weights of role {role!r} ({by_role[role]!r} "
                                  f"and {name!r}); Keras writes each weight once.")
        by_role[role] = name
    return by_role


def _role_of(weight_name: str) -> str:
    """``"conv2d/kernel:0"`` -> ``"kernel"``."""
    return weight_name.rsplit("/", 1)[-1].split(":", 1)[0]


def _weights_root(f: h5py.File, source: str) -> str | None:
    """``/model_weights`` (``model.save``), ``/`` when the layer groups sit at the root, or None.

    ``/model_weights`` must be a group reached by a hard link.
    """
    if f.get("model_weights", getlink=True) is not None:
        return hdf5_object(f, "model_weights", h5py.Group, source).name
    return "/" if "layer_names" in f.attrs else None
