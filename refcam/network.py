"""The network: a validated directed acyclic graph of layers, and how to run it.

Graph
-----
Each layer names the layers feeding it in ``layer.inputs`` (in order). Layers
listed with empty ``inputs`` that are not input layers are connected to the
layer before them in the list, so a plain list is a series network (MATLAB's
layer array). A valid network has:

* unique layer names, and inputs that name layers of the network;
* exactly one input layer (a layer class with ``num_inputs == 0``);
* for every layer the number of inputs its class takes (none for the input
  layer, 1, or 2 and more for ``num_inputs=None``);
* no cycle;
* exactly one output: one layer no other layer uses (a classification or
  regression output layer, when present, must be that layer). A finite acyclic
  graph always has at least one such layer, so "none" cannot happen once the
  cycle check has passed;
* shapes that fit: per-observation shapes ``(C, *spatial)`` are propagated from
  the input layer through every ``layer.output_shape``; a sequence input of
  unknown length is checked at its ``min_length`` (and at its real length at
  run time);
* sizes within refcam's limit: no layer's per-observation output (nor a
  window layer's zero-padded input, nor a convolution's column matrix for
  one output row) may hold more than ``MAX_OBSERVATION_ELEMENTS`` = 2**28
  elements (:mod:`refcam.layers.common`; SizeLimitError naming the layer, the
  shape and the limit). A free sequence length is checked again with the real
  length before any layer runs, so a long sequence through a large padding
  fails at once instead of allocating.

Layers are stored in a topological order that keeps the list order wherever
the connections allow it (Kahn's algorithm, always taking the ready layer that
came first in the list).

Running
-------
:meth:`Network.forward_tensors` is the engine under :meth:`predict`,
:meth:`activations` and Grad-CAM. It runs only the ancestors of the requested
layers, in topological order, and drops each intermediate as soon as no
remaining layer needs it. With ``grad_from=L`` the output of layer ``L`` is
replaced by a fresh leaf ``Tensor(data, requires_grad=True)``: the layers
upstream of ``L`` run on constants and record nothing, and the recorded graph
(the tape) holds exactly the operations of the layers downstream of ``L``.

Aliases
-------
A network may carry **aliases**: other names for some of its layers, e.g.
``{"layer4": "layer4.1.relu_1"}`` for a network converted from PyTorch
(:func:`refcam.from_torch`), where ``layer4`` is a container module whose output
is that layer's. Every lookup by name (:meth:`Network.layer`,
:meth:`forward_tensors`, :meth:`activations`, ``refcam.gradcam``'s
``feature_layer`` and ``reduction_layer``) accepts an alias and uses its layer
(:meth:`Network.resolve`). An alias is a non-empty string that is no layer's
name and names an existing layer (NetworkError otherwise); refcam's HDF5 file
keeps them (``docs/hdf5-format.md``).

Metadata
--------
``classes`` names the output channels of a network without a classification
layer (an ONNX or PyTorch classifier ending in logits or a softmax), as
MATLAB's ``Classes``; a classification layer's own classes take precedence and
must agree. ``preprocessing`` (a :class:`refcam.Preprocessing`, a preset name
or its dict) says how a photo becomes this network's input
(``docs/preprocessing.md``). Both are optional, kept by refcam's HDF5 file and
by :meth:`Network.with_metadata`.

Layouts: ``forward_tensors`` takes and returns refcam's internal
``(B, C, *spatial)`` Tensors. ``predict`` and ``activations`` take the caller's
array and format and convert it with :mod:`refcam.layout` (the input layer
applies its normalisation itself).
"""
from __future__ import annotations

import copy
import heapq
from collections import Counter
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

from .autodiff import Tensor
from .errors import (CycleError, DuplicateLayerNameError, InputError, InputLayerError,
                     LayerNotFoundError, LayerShapeError, NetworkError, OutputLayerError,
                     UnknownInputError)
from .backend import is_cupy_array, to_device
from .layers.base import Layer
from .layers.common import CONSTANT_CACHE, check_elements, stage_parameters
from .layout import to_internal
from .network_display import alias_table, connection_table, layer_table

Shape = tuple[int, ...]
SHAPE_CACHE_SIZE = 16  # input shapes (sequence lengths) whose inferred layer shapes a network keeps


class Network:
    """A validated DAG of layers in topological order.

    Parameters
    ----------
    layers : sequence of Layer
        The layers; connections come from each layer's ``inputs``. A layer that
        is not an input layer and has empty ``inputs`` is connected to the
        layer before it in the list; such layers are stored as shallow copies
        with ``inputs`` filled in (the objects passed in are not modified).
    name : str, optional
        A label for displays.
    aliases : mapping of str to str, optional
        Other names for layers, ``{alias: layer name}`` (module docstring).
    classes : sequence of str, optional
        Names of the output channels (module docstring, Metadata).
    preprocessing : Preprocessing, preset name or dict, optional
        How an image becomes the input (module docstring, Metadata).

    Raises
    ------
    DuplicateLayerNameError, UnknownInputError, NetworkError, InputLayerError,
    CycleError, OutputLayerError, LayerShapeError, SizeLimitError
        See the module docstring for the rules.

    Examples
    --------
    >>> net = Network([image_input, conv, relu, fc, softmax, classification])  # doctest: +SKIP
    >>> net.predict(image).shape                                             # doctest: +SKIP
    (1, 10)
    """

    def __init__(self, layers: Sequence[Layer], name: str | None = None,
                 aliases: Mapping[str, str] | None = None, *, classes: Sequence[str] | None = None,
                 preprocessing: Any = None) -> None:
        listed = list(layers)
        _check_unique_names(listed)
        connected = _connect_series(listed)
        _check_inputs_exist(connected)
        _check_one_input_layer(connected)
        _check_input_counts(connected)
        self._layers = _topological_order(connected)
        self._by_name = {layer.name: layer for layer in self._layers}
        self._aliases = _checked_aliases(aliases or {}, self._by_name)
        self._consumers = _consumers(self._layers)
        _check_one_output(self._layers, self._consumers)
        self.name = name
        self._output_shapes = self.infer_shapes(self._declared_input_shape())
        self._classes = _checked_classes(classes, self)
        self.preprocessing = None if preprocessing is None else _checked_preprocessing(preprocessing)

    # -- structure ------------------------------------------------------------
    @property
    def layers(self) -> list[Layer]:
        """The layers in topological order (a new list; the layers themselves are shared)."""
        return list(self._layers)

    @property
    def layer_names(self) -> list[str]:
        """Names of the layers in topological order."""
        return [layer.name for layer in self._layers]

    @property
    def aliases(self) -> Mapping[str, str]:
        """Other names for layers, ``{alias: layer name}`` (read-only; empty for most networks)."""
        return MappingProxyType(self._aliases)

    def resolve(self, name: str) -> str:
        """The name of the layer that ``name`` (a layer name or an alias) stands for.

        Raises LayerNotFoundError listing the layer names (and the aliases).

        >>> net.resolve("layer4")     # doctest: +SKIP
        'layer4.1.relu_1'
        """
        if name in self._by_name:
            return name
        if isinstance(name, str) and name in self._aliases:
            return self._aliases[name]
        aliases = f"; its aliases are {dict(self._aliases)}" if self._aliases else ""
        raise LayerNotFoundError(f"the network has no layer named {name!r}; its layers are "
                                 f"{self.layer_names}{aliases}.")

    def layer(self, name: str) -> Layer:
        """The layer called ``name`` (or aliased ``name``); raises LayerNotFoundError listing the valid names."""
        return self._by_name[self.resolve(name)]

    @property
    def input_layer(self) -> Layer:
        """The one input layer (always the first in topological order)."""
        return self._layers[0]

    @property
    def output_layer(self) -> Layer:
        """The last layer: the one layer whose output no other layer uses."""
        return self._layers[-1]

    @property
    def has_output_layer(self) -> bool:
        """True when the network ends in a classification or regression output layer."""
        return bool(getattr(type(self.output_layer), "is_output_layer", False))

    @property
    def classes(self) -> list[str] | None:
        """Class names of the classification output layer, else those given as ``classes=``, else None."""
        return None if self._classes is None else list(self._classes)

    def _layer_classes(self) -> list[str] | None:
        if not self.has_output_layer:
            return None
        classes = getattr(self.output_layer, "classes", None)
        return list(classes) if classes else None

    def with_metadata(self, *, classes: Any = ..., preprocessing: Any = ...) -> "Network":
        """A copy (the same layers) with other ``classes`` and/or ``preprocessing``; None removes one.

        >>> net = refcam.from_torch(model.eval(), x).with_metadata(preprocessing="imagenet-torchvision")  # doctest: +SKIP
        """
        return Network(self._layers, name=self.name, aliases=self._aliases,
                       classes=self.given_classes if classes is ... else classes,
                       preprocessing=self.preprocessing if preprocessing is ... else preprocessing)

    @property
    def given_classes(self) -> list[str] | None:
        """The classes given as ``classes=`` (None when there are none, or they are the classification layer's)."""
        return None if self._layer_classes() is not None else self.classes

    @property
    def connections(self) -> list[tuple[str, str]]:
        """Every edge ``(source, destination)``, destinations in topological order, sources in input order."""
        return [(source, layer.name) for layer in self._layers for source in layer.inputs]

    def upstream(self, name: str) -> set[str]:
        """Names of every layer that layer ``name`` depends on (not itself)."""
        layer_name = self.resolve(name)
        return _reachable([layer_name], lambda n: self._by_name[n].inputs) - {layer_name}

    def downstream(self, name: str) -> set[str]:
        """Names of every layer that depends on layer ``name`` (not itself)."""
        layer_name = self.resolve(name)
        return _reachable([layer_name], lambda n: self._consumers[n]) - {layer_name}

    # -- shapes -----------------------------------------------------------------
    @property
    def output_shapes(self) -> dict[str, Shape]:
        """Per-observation output shape ``(C, *spatial)`` of every layer.

        For a sequence input of unknown length these are the shapes for a
        sequence of ``min_length`` steps (:meth:`infer_shapes` gives them for
        any length).
        """
        return dict(self._output_shapes)

    def infer_shapes(self, input_shape: Sequence[int]) -> dict[str, Shape]:
        """Per-observation output shapes of every layer for an input of shape ``(C, *spatial)``.

        Raises LayerShapeError, naming the layer, when a layer cannot take its
        inputs, and SizeLimitError when a layer's output (or a padded
        intermediate) would hold more than ``MAX_OBSERVATION_ELEMENTS`` elements.
        The shapes for the declared input size were inferred (and checked) when
        the network was built, and those of the last ``SHAPE_CACHE_SIZE`` other
        input shapes (sequence lengths) when first asked for; they are returned
        without inferring them again. Like the build-time shapes, this assumes
        that the layers' properties are not changed after the network is built.
        """
        key = tuple(int(n) for n in input_shape)
        known = getattr(self, "_output_shapes", None)
        if known is not None and key == self._declared_input_shape():
            return dict(known)
        cache = self.__dict__.setdefault("_shape_cache", {})
        if key not in cache:
            if len(cache) >= SHAPE_CACHE_SIZE:
                del cache[next(iter(cache))]            # the oldest entry
            cache[key] = self._inferred_shapes(key)
        return dict(cache[key])

    def _inferred_shapes(self, input_shape: Shape) -> dict[str, Shape]:
        shapes: dict[str, Shape] = {}
        for layer in self._layers:
            if layer is self.input_layer:
                shapes[layer.name] = input_shape
            else:
                shapes[layer.name] = _layer_output_shape(layer, [shapes[n] for n in layer.inputs])
            check_elements(layer, "output", shapes[layer.name])
        return shapes

    def _declared_input_shape(self) -> Shape:
        """The input layer's ``(C, *spatial)``, with ``min_length`` for an unknown sequence length."""
        layer = self.input_layer
        return tuple(getattr(layer, "min_length", 1) if n is None else n
                     for n in layer.per_observation_shape())

    def _check_input_tensor(self, shape: Shape) -> None:
        """Raise InputError unless an internal input ``(B, C, *S)`` fits the input layer."""
        expected = self.input_layer.per_observation_shape()
        found = tuple(shape[1:])
        fits = len(found) == len(expected) and all(
            e == f or (e is None and f >= getattr(self.input_layer, "min_length", 1))
            for e, f in zip(expected, found))
        if not fits:
            raise InputError(
                f"input of internal shape {tuple(shape)} (B, C, *spatial) does not fit input layer "
                f"{self.input_layer.name!r}, which takes (B, {', '.join(map(str, expected))}) "
                "(None: any length >= MinLength); convert inputs with refcam.layout.to_internal.")
        if None in expected:
            self.infer_shapes(found)

    # -- running ----------------------------------------------------------------
    def forward_tensors(self, x: Any, outputs: Sequence[str],
                        grad_from: str | None = None) -> dict[str, Tensor]:
        """Run the layers that ``outputs`` need and return their outputs by name.

        Parameters
        ----------
        x : Tensor or array
            The input in the internal layout ``(B, C, *spatial)``, not yet
            normalised (the input layer normalises it). An array or a Tensor
            that does not require grad keeps everything upstream of
            ``grad_from`` untaped.
        outputs : sequence of str
            Names of the layers whose outputs are wanted.
        grad_from : str, optional
            A layer whose output is replaced by a fresh leaf Tensor that
            requires grad, so only the layers downstream of it are taped. The
            leaf is returned under this name too.

        Returns
        -------
        dict
            ``{name: Tensor}`` for each of ``outputs`` (and ``grad_from``), keyed
            by the names as given (an alias keys its layer's output).

        Before the first layer runs, the parameters of the layers to run that
        are on the other device than ``x`` are copied to its device (in its
        dtype) and kept on their layers for later passes
        (:func:`refcam.layers.common.stage_parameters`): the pass itself makes
        no host/device copy. ``to_device`` moves a whole network up front instead.

        >>> out = net.forward_tensors(x, ["fc"], grad_from="relu_4")   # doctest: +SKIP
        >>> grad(out["fc"].sum(), [out["relu_4"]])                      # doctest: +SKIP
        """
        requested = list(outputs) + ([grad_from] if grad_from is not None else [])
        wanted = [self.resolve(name) for name in requested]
        grad_from = None if grad_from is None else self.resolve(grad_from)
        x = x if isinstance(x, Tensor) else Tensor(x)
        self._check_input_tensor(x.shape)
        needed = _reachable(wanted, lambda n: self._by_name[n].inputs)
        schedule = [layer for layer in self._layers if layer.name in needed]
        for layer in schedule:
            stage_parameters(layer, x.dtype, is_cupy_array(x.data))
        remaining_uses = {name: 0 for name in needed}
        for layer in schedule:
            for source in layer.inputs:
                remaining_uses[source] += 1
        values: dict[str, Tensor] = {}
        for layer in schedule:
            inputs = [values[source] for source in layer.inputs] if layer.inputs else [x]
            result = layer.forward(*inputs)
            if layer.name == grad_from:
                result = Tensor(result.data, requires_grad=True, name=layer.name)
            values[layer.name] = result
            for source in layer.inputs:
                remaining_uses[source] -= 1
                if remaining_uses[source] == 0 and source not in wanted:
                    values.pop(source, None)
        return {name: values[layer_name] for name, layer_name in zip(requested, wanted)}

    def predict(self, x: Any, format: str | None = None, dtype: Any = "float64") -> Any:
        """Run the whole network on the caller's array ``x`` and return the last layer's output.

        ``x`` is in the layout named by ``format`` (default: the input layer's,
        e.g. ``"SSC"`` for h x w x c images; see :mod:`refcam.layout`). The
        result is a NumPy array (CuPy when ``x`` is CuPy) of ``dtype``:

        * ``(B, K)`` when the output has no spatial axes (MATLAB's N x K
          scores; B is 1 for a single observation);
        * otherwise in the input's letters with the output's sizes, e.g.
          ``h' x w' x K`` for an ``"SSC"`` input, ``h' x w' x K x B`` for ``"SSCB"``.

        >>> scores = net.predict(image)        # doctest: +SKIP
        """
        internal, layout = to_internal(x, self.input_layer, format, dtype)
        last = self.output_layer.name
        return layout.from_internal(self.forward_tensors(Tensor(internal), [last])[last].data)

    def activations(self, x: Any, names: str | Sequence[str], format: str | None = None,
                    dtype: Any = "float64") -> dict[str, Any]:
        """Outputs of the layers ``names`` for the caller's array ``x``, in the internal layout.

        Returns ``{name: array}`` with each array ``(B, C, *spatial)`` (``(B, K)``
        for layers without spatial axes), NumPy or CuPy like ``x``; ``x`` and
        ``format`` as in :meth:`predict`.

        >>> net.activations(image, ["relu_4"])["relu_4"].shape   # doctest: +SKIP
        (1, 32, 7, 7)
        """
        wanted = [names] if isinstance(names, str) else list(names)
        internal, _ = to_internal(x, self.input_layer, format, dtype)
        results = self.forward_tensors(Tensor(internal), wanted)
        return {name: results[name].data for name in wanted}

    def to_device(self, device: str) -> "Network":
        """A copy of this network with every parameter on ``device`` (``"cpu"`` or ``"gpu"``).

        Layers are shallow copies with their parameter arrays moved
        (:func:`refcam.backend.to_device`; arrays already there are shared, not
        copied); this network is not modified. Without it, a forward pass on
        the other device copies the parameters it needs before its first layer
        runs and keeps them on the layers (:meth:`forward_tensors`); this is
        the same transfer made up front, for the whole network.

        >>> gpu_net = net.to_device("gpu")     # doctest: +SKIP
        """
        return Network([_layer_on_device(layer, device) for layer in self._layers], name=self.name,
                       aliases=self._aliases, classes=self.given_classes, preprocessing=self.preprocessing)

    # -- display ------------------------------------------------------------------
    def __str__(self) -> str:
        """MATLAB's ``net.Layers`` display, then the connections when the network is not a chain."""
        text = layer_table(self._layers)
        if not self.is_series:
            text += "\n\n" + connection_table(self.connections)
        if self._aliases:
            text += "\n\n" + alias_table(self._aliases)
        return text

    def __repr__(self) -> str:
        return str(self)

    @property
    def is_series(self) -> bool:
        """True when each layer takes its input from the layer just before it (a chain)."""
        return all(layer.inputs == (previous.name,)
                   for previous, layer in zip(self._layers, self._layers[1:]))


def _layer_on_device(layer: Layer, device: str) -> Layer:
    """A shallow copy of ``layer`` whose parameters are on ``device`` (without the original's cached casts)."""
    moved = copy.copy(layer)
    vars(moved).pop(CONSTANT_CACHE, None)
    for name, array in layer.params().items():
        setattr(moved, name, to_device(array, device))
    return moved


# --- validation helpers --------------------------------------------------------------
def _is_input_layer(layer: Layer) -> bool:
    return type(layer).num_inputs == 0


def _describe(layer: Layer) -> str:
    return f"layer {layer.name!r} ({type(layer).type or type(layer).__name__})"


def _check_unique_names(layers: Sequence[Layer]) -> None:
    counts = Counter(layer.name for layer in layers)
    duplicates = sorted(name for name, count in counts.items() if count > 1)
    if duplicates:
        raise DuplicateLayerNameError(
            f"layer names must be unique; {duplicates} used more than once. Rename the layers.")


def _connect_series(layers: Sequence[Layer]) -> list[Layer]:
    """Connect each non-input layer with empty ``inputs`` to the layer before it (as a shallow copy)."""
    connected = []
    for index, layer in enumerate(layers):
        if not layer.inputs and not _is_input_layer(layer) and index > 0:
            layer = copy.copy(layer)
            layer.inputs = (layers[index - 1].name,)
        connected.append(layer)
    return connected


def _check_inputs_exist(layers: Sequence[Layer]) -> None:
    names = [layer.name for layer in layers]
    for layer in layers:
        unknown = [source for source in layer.inputs if source not in names]
        if unknown:
            raise UnknownInputError(
                f"{_describe(layer)} takes input from {unknown}, which is not a layer of the "
                f"network; the layers are {names}.")


def _check_input_counts(layers: Sequence[Layer]) -> None:
    for layer in layers:
        expected = layer.num_inputs  # an instance may fix it (MATLAB's NumInputs of addition layers)
        count = len(layer.inputs)
        if expected is None and count < 2:
            raise NetworkError(
                f"{_describe(layer)} needs 2 or more inputs but has {count} ({list(layer.inputs)}); "
                "give its inputs= explicitly.")
        if expected is not None and count != expected:
            need = "no inputs (it is an input layer)" if expected == 0 else f"{expected} input(s)"
            raise NetworkError(
                f"{_describe(layer)} takes {need} but has {count} ({list(layer.inputs)}); "
                "fix its inputs=.")


def _checked_aliases(aliases: Mapping[str, str], by_name: dict[str, Layer]) -> dict[str, str]:
    """``aliases`` as a plain dict, after checking each is a new non-empty name for an existing layer."""
    checked = {}
    for alias, target in dict(aliases).items():
        if not isinstance(alias, str) or not alias or not isinstance(target, str):
            raise NetworkError(f"alias {alias!r} -> {target!r}: an alias and its layer are non-empty strings.")
        if alias in by_name:
            raise NetworkError(f"alias {alias!r} -> {target!r} is already the name of a layer; an alias must be "
                               "a new name. Drop it or rename it.")
        if target not in by_name:
            raise NetworkError(f"alias {alias!r} names {target!r}, which is not a layer of the network; the "
                               f"layers are {list(by_name)}.")
        checked[alias] = target
    return checked


def _checked_classes(classes: Sequence[str] | None, net: "Network") -> tuple[str, ...] | None:
    """The network's classes: the classification layer's, else ``classes`` checked against the output channels."""
    own = net._layer_classes()
    if classes is None:
        return None if own is None else tuple(own)
    if isinstance(classes, str) or not all(isinstance(c, str) and c for c in classes):
        raise NetworkError(f"classes must be a sequence of non-empty strings, not {classes!r}.")
    given = tuple(classes)
    if own is not None and list(given) != own:
        raise NetworkError(f"classes {list(given)[:5]}... differ from the classification layer's "
                           f"{own[:5]}...; leave classes= out (the layer's are used).")
    channels = net.output_shapes[net.output_layer.name][0]
    if len(given) != channels or len(set(given)) != len(given):
        raise NetworkError(f"{len(given)} class names ({len(set(given))} distinct) for an output of {channels} "
                           f"channels (layer {net.output_layer.name!r}); give one distinct name per channel.")
    return given


def _checked_preprocessing(preprocessing: Any) -> Any:
    from .preprocess import get_preprocessing   # refcam.preprocess builds on the resize code, not on networks
    try:
        return get_preprocessing(preprocessing)
    except InputError as err:
        raise NetworkError(f"preprocessing: {err}") from err


def _check_one_input_layer(layers: Sequence[Layer]) -> None:
    inputs = [layer.name for layer in layers if _is_input_layer(layer)]
    if len(inputs) != 1:
        found = f"{len(inputs)}: {inputs}" if inputs else "none"
        raise InputLayerError(
            f"a network needs exactly one input layer (image, 3-D image or sequence input); "
            f"found {found}.")


def _topological_order(layers: Sequence[Layer]) -> list[Layer]:
    """Kahn's algorithm, taking the ready layer earliest in the list; CycleError names a cycle."""
    position = {layer.name: index for index, layer in enumerate(layers)}
    consumers = _consumers(layers)
    waiting_on = {layer.name: len(set(layer.inputs)) for layer in layers}
    ready = [position[name] for name, count in waiting_on.items() if count == 0]
    heapq.heapify(ready)
    order: list[Layer] = []
    while ready:
        layer = layers[heapq.heappop(ready)]
        order.append(layer)
        for consumer in set(consumers[layer.name]):
            waiting_on[consumer] -= 1
            if waiting_on[consumer] == 0:
                heapq.heappush(ready, position[consumer])
    if len(order) < len(layers):
        cycle = _find_cycle({name for name, count in waiting_on.items() if count > 0},
                            {layer.name: layer for layer in layers})
        raise CycleError(
            f"the layers form a cycle: {' -> '.join(cycle + cycle[:1])}; a network must be acyclic.")
    return order


def _find_cycle(unordered: set[str], by_name: dict[str, Layer]) -> list[str]:
    """A cycle among the layers Kahn's algorithm could not order, in data-flow order.

    Each such layer has an input that is also unordered, so following inputs
    must revisit a layer; the path from its first visit is a cycle.
    """
    path: list[str] = []
    current = min(unordered, key=list(by_name).index)
    while current not in path:
        path.append(current)
        current = next(source for source in by_name[current].inputs if source in unordered)
    return path[path.index(current):][::-1]


def _consumers(layers: Iterable[Layer]) -> dict[str, list[str]]:
    """For each layer name, the names of the layers that take its output (with repeats)."""
    layers = list(layers)
    consumers: dict[str, list[str]] = {layer.name: [] for layer in layers}
    for layer in layers:
        for source in layer.inputs:
            consumers[source].append(layer.name)
    return consumers


def _check_one_output(layers: Sequence[Layer], consumers: dict[str, list[str]]) -> None:
    outputs = [layer.name for layer in layers if not consumers[layer.name]]
    if len(outputs) > 1:
        raise OutputLayerError(
            f"a network needs exactly one output (a layer no other layer uses); found "
            f"{len(outputs)}: {outputs}. Remove the extra branches or join them "
            "(addition / depth concatenation).")
    misplaced = [layer.name for layer in layers
                 if getattr(type(layer), "is_output_layer", False) and consumers[layer.name]]
    if misplaced:
        raise OutputLayerError(
            f"output layers {misplaced} feed other layers; a classification or regression "
            "output layer must be the last layer.")


def _layer_output_shape(layer: Layer, shapes: Sequence[Shape]) -> Shape:
    """``layer.output_shape(*shapes)``, with the layer named in any LayerShapeError."""
    try:
        return tuple(layer.output_shape(*shapes))
    except LayerShapeError as error:
        if repr(layer.name) in str(error):
            raise
        raise LayerShapeError(f"{_describe(layer)}: {error}") from error


def _reachable(starts: Iterable[str], neighbours: Any) -> set[str]:
    """Every name reachable from ``starts`` (included) by repeatedly following ``neighbours(name)``."""
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(neighbours(name))
    return seen
