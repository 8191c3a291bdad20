"""A Keras layer as read from ``model_config``: its record, the model record, and exact JSON values.

Part of the Keras HDF5 importer (:mod:`refcam.io.keras_h5` describes the whole
format; :mod:`refcam.io.keras_config` fills these records from the JSON).
"""
from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass, field
from typing import Any, Union

from ..errors import FileFormatError, NonFiniteParameterError

FUNCTIONAL_CLASSES = ("Functional", "Model")
MAX_CONFIG_INT = 2 ** 31 - 1      # TensorFlow sizes are int32; a larger size in a config is not a real model
MAX_ARGS_DEPTH = 32               # nesting of a Keras 3 node's 'args' (real files: 2 or 3)
MAX_STRING_ATTRIBUTE_COUNT = 4096 # strings in 'weight_names' (real layers: at most a few)


@dataclass(frozen=True)
class Constant:
    """A constant operand of a call, as written in the file (a JSON number or nested lists of numbers)."""

    value: Any


Operand = Union[str, Constant]     # a layer name (its output tensor) or a constant


def _shown(value: Any) -> str:
    """A short ``repr`` of a config value for a message (deep or long values are abbreviated)."""
    abbreviate = reprlib.Repr()
    abbreviate.maxstring = abbreviate.maxother = 80
    abbreviate.maxlevel = 4
    return abbreviate.repr(value)


# --- exact values from JSON ----------------------------------------------------------------


def exact_int(value: Any) -> int | None:
    """``value`` as an int when it is a JSON integer (or an integral float) of magnitude <= MAX_CONFIG_INT, else None.

    A bool is not an integer here (``True`` would silently become 1).

    >>> exact_int(3), exact_int(2.0), exact_int(1.5), exact_int(True), exact_int(2.0 ** 40)
    (3, 2, None, None, None)
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and math.isfinite(value) and value.is_integer():
        number = int(value)
    else:
        return None
    return number if abs(number) <= MAX_CONFIG_INT else None


def finite_float(value: Any) -> float | None:
    """``value`` as a float when it is a JSON number (not a bool) that a float holds, else None; NaN/Inf pass.

    >>> finite_float(1), finite_float("1"), finite_float(10 ** 400)
    (1.0, None, None)
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


# --- the parsed model ----------------------------------------------------------------


@dataclass
class KerasLayer:
    """One Keras layer of ``model_config``: its class, its config, the Keras layers feeding it.

    ``inputs`` are the layers whose outputs it takes (graph edges, in call
    order); ``operands`` are its call's arguments in order, those layer names
    and :class:`Constant` values (the same as ``inputs`` for an ordinary layer);
    ``call_kwargs`` the other keyword arguments of a tf-keras ``TFOpLambda`` or a
    Keras 3 operation; ``node_style`` how its node was written (``"list"``,
    ``"flat"``, ``"dict"``, or None without a node); ``operation`` is True for a
    Keras 3 operation written with several operands (``x + 3.0``);
    ``keras_major`` the major version of the Keras that wrote the file (None
    when the file does not say); ``module`` the entry's ``module`` (Keras 3's
    native configs name the Python module of a class; legacy .h5 configs do not);
    ``history`` the ``(layer, node_index, tensor_index)`` of each input tensor;
    ``weight_owner`` the nested model whose weight group holds this layer's
    weights, for a layer of an inlined nested ``Sequential``
    (:mod:`refcam.io.keras_nested`), else None.

    The typed readers (:meth:`integer`, :meth:`integers`, :meth:`number`,
    :meth:`flag`, :meth:`text`) return a config value after checking its JSON
    type and range, and raise a FileFormatError naming the layer and the key
    otherwise; an absent or null key gives the default.
    """

    name: str
    class_name: str
    config: dict[str, Any]
    inputs: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)
    source: str = "model_config"
    operands: tuple[Operand, ...] = ()
    call_kwargs: dict[str, Any] = field(default_factory=dict)
    node_style: str | None = None
    operation: bool = False
    keras_major: int | None = None
    module: Any = None
    history: tuple[tuple[str, int, int], ...] = ()
    weight_owner: str | None = None

    def get(self, key: str, default: Any = None) -> Any:
        """``config[key]``, or ``default`` when absent or null (no type check)."""
        value = self.config.get(key)
        return default if value is None else value

    def malformed(self, key: str, value: Any, wanted: str) -> FileFormatError:
        """The error for config ``key`` holding ``value`` where ``wanted`` is needed."""
        return FileFormatError(
            f"{self.source}: layer {self.name!r} ({self.class_name}) has a malformed config: {key!r} is "
            f"{_shown(value)}; it must be {wanted}. The file is damaged or was not written by Keras.")

    def integer(self, key: str, default: int | None = None, minimum: int = 1) -> int:
        """``config[key]`` as an int in ``[minimum, MAX_CONFIG_INT]``; required when ``default`` is None."""
        value = self.config.get(key)
        if value is None and default is not None:
            return default
        number = exact_int(value)
        if number is None or number < minimum:
            raise self.malformed(key, value, f"an integer from {minimum} to {MAX_CONFIG_INT}")
        return number

    def integers(self, key: str, rank: int, default: int | tuple[int, ...] | None = None,
                 minimum: int = 1) -> tuple[int, ...]:
        """``config[key]`` (one integer, or ``rank`` of them) as ``rank`` ints in ``[minimum, MAX_CONFIG_INT]``."""
        value = self.config.get(key)
        if value is None and default is not None:
            return default if isinstance(default, tuple) else (default,) * rank
        values = value if isinstance(value, list) else [value] * rank
        numbers = [exact_int(v) for v in values]
        if len(numbers) != rank or any(n is None or n < minimum for n in numbers):
            raise self.malformed(key, value, f"an integer, or a list of {rank}, from {minimum} to "
                                             f"{MAX_CONFIG_INT}")
        return tuple(numbers)

    def number(self, key: str, default: float | None) -> float | None:
        """``config[key]`` as a finite float, or ``default`` (which may be None) when absent."""
        value = self.config.get(key)
        if value is None:
            return default
        number = finite_float(value)
        if number is None:
            raise self.malformed(key, value, "a number")
        if not math.isfinite(number):
            raise NonFiniteParameterError(
                f"{self.source}: layer {self.name!r} ({self.class_name}) has {key}={number}; numeric "
                "settings must be finite.")
        return number

    def flag(self, key: str, default: bool) -> bool:
        """``config[key]`` as a bool (a JSON true/false; ``1`` or ``"false"`` is refused)."""
        value = self.config.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.malformed(key, value, "true or false")
        return value

    def text(self, key: str, default: str) -> str:
        """``config[key]`` as a str."""
        value = self.config.get(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.malformed(key, value, "a string")
        return value


@dataclass
class KerasModel:
    """A Keras model as read from ``model_config``: layers in dependency order, one input, one output.

    ``inlined`` maps each inlined nested model to the layer now holding its
    output (:mod:`refcam.io.keras_nested`).
    """

    name: str | None
    layers: list[KerasLayer]
    output: str
    inlined: dict[str, str] = field(default_factory=dict)


# --- reading entries -------------------------------------------------------------------


def layer_entries(config: Any, source: str) -> list[dict[str, Any]]:
    """The ``layers`` entries of a model config (or the list itself), each a dict with a string ``class_name``."""
    entries = config.get("layers") if isinstance(config, dict) else config
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and isinstance(e.get("class_name"), str) for e in entries):
        raise FileFormatError(f"{source}: 'model_config' has no list of layers with string 'class_name' "
                              "entries.")
    return entries


def layer_from_entry(entry: dict[str, Any], source: str) -> KerasLayer:
    """The :class:`KerasLayer` of one ``layers`` entry: class, config and name (connections are read later)."""
    config = entry.get("config")
    if not isinstance(config, dict):
        raise FileFormatError(f"{source}: a layer entry of class {_shown(entry['class_name'])} has no "
                              "'config' object.")
    name = entry.get("name", config.get("name"))
    if not isinstance(name, str) or not name:
        raise FileFormatError(f"{source}: a layer of class {_shown(entry['class_name'])} has no name "
                              f"(found {_shown(name)}).")
    return KerasLayer(name=name, class_name=entry["class_name"], config=config, source=source,
                      module=entry.get("module"))
