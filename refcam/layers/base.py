"""The layer base class: properties, parameters and a registry of layer kinds.

A layer is a small dataclass. Its fields are of two sorts:

* **parameters**: array fields declared with :func:`param` (weights, biases,
  statistics), stored in HDF5 as datasets;
* **properties**: every other field (sizes, strides, modes, epsilon...), plain
  JSON values stored in the topology attribute.

``name`` and ``inputs`` (the names of the layers feeding this one, in order) are
common to all layers. Each concrete class sets two class attributes:

* ``kind``: the stable key of the layer type in refcam files (``"convolution2d"``);
* ``type``: MATLAB's display type (``"2-D Convolution"``), shown by ``print(net)``.

and implements ``forward`` (Tensors in the internal (B, C, *spatial) layout),
``output_shape`` (per-observation shapes ``(C, *spatial)``) and ``describe``
(MATLAB's description column).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, ClassVar

from ..autodiff import Tensor
from ..errors import LayerConfigError

LAYER_KINDS: dict[str, type["Layer"]] = {}


def param(**kwargs: Any) -> Any:
    """Declare a dataclass field holding an array parameter (a dataset in HDF5)."""
    metadata = dict(kwargs.pop("metadata", {}), param=True)
    return dataclasses.field(metadata=metadata, **kwargs)


def register(cls: type["Layer"]) -> type["Layer"]:
    """Class decorator: make ``cls`` loadable by its ``kind``."""
    if cls.kind in LAYER_KINDS:
        raise ValueError(f"layer kind {cls.kind!r} registered twice")
    LAYER_KINDS[cls.kind] = cls
    return cls


@dataclasses.dataclass(eq=False)
class Layer:
    """Base of all layers: a name and the names of its inputs."""

    name: str
    inputs: tuple[str, ...] = ()

    kind: ClassVar[str] = ""
    type: ClassVar[str] = ""
    num_inputs: ClassVar[int | None] = 1  # None: any number >= 2 (add, concat)
    is_output_layer: ClassVar[bool] = False  # True for classification/regression outputs

    def __post_init__(self) -> None:
        """Check ``name`` (a string) and ``inputs`` (a list of layer names); store ``inputs`` as a tuple."""
        if not isinstance(self.name, str):
            raise LayerConfigError(f"a {type(self).__name__} has name {self.name!r}; a layer name must be a string.")
        inputs = self.inputs
        if not isinstance(inputs, (tuple, list)) or not all(isinstance(source, str) for source in inputs):
            raise LayerConfigError(
                f"layer {self.name!r} ({type(self).type or type(self).__name__}): inputs {inputs!r} must be a "
                "list of layer names (strings).")
        self.inputs = tuple(inputs)

    # -- to be implemented by each layer --------------------------------------
    def forward(self, *xs: Tensor) -> Tensor:
        """Apply the layer to Tensors in the internal (B, C, *spatial) layout."""
        raise NotImplementedError

    def output_shape(self, *shapes: tuple[int, ...]) -> tuple[int, ...]:
        """Per-observation output shape ``(C, *spatial)`` for inputs of ``shapes``.

        Raises :class:`~refcam.errors.LayerShapeError` naming this layer when an
        input shape does not fit.
        """
        raise NotImplementedError

    def describe(self) -> str:
        """MATLAB's description column, e.g. ``8 3x3x1 convolutions with stride [1  1] ...``."""
        return self.type

    # -- generic plumbing -------------------------------------------------------
    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """Names of the array-parameter fields of this layer class (a class's fields are fixed: kept per class)."""
        return _param_field_names(cls)

    @classmethod
    def property_names(cls) -> tuple[str, ...]:
        """Names of the non-array property fields (excluding ``name`` and ``inputs``)."""
        return tuple(f.name for f in dataclasses.fields(cls)
                     if not f.metadata.get("param") and f.name not in ("name", "inputs"))

    def params(self) -> dict[str, Any]:
        """The array parameters that are set (optional ones may be None)."""
        return {n: getattr(self, n) for n in self.param_names() if getattr(self, n) is not None}

    def properties(self) -> dict[str, Any]:
        """The non-array properties, as JSON-ready values (tuples become lists)."""
        return {n: _jsonable(getattr(self, n)) for n in self.property_names()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, inputs={list(self.inputs)})"


@functools.cache
def _param_field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.metadata.get("param"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value
