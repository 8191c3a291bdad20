"""Inline a nested ``Sequential`` model of a Keras functional model: its layers join the outer graph.

Keras Applications build some blocks as a ``Sequential`` inside the functional
model (ConvNeXt's stem and its three downsampling blocks: a 4x4 or 2x2
convolution and a layer normalisation). The file writes such a block as one
entry of class ``Sequential`` whose ``config["layers"]`` lists its layers
(first an ``InputLayer``), called once by the outer model. Inlining replaces
the entry by its layers, chained in order:

* the first inner layer takes the nested model's call (its inputs and operands);
* each later one takes the previous layer's output;
* every reference to the nested model's output (by consumers and by the
  model's ``output_layers``) becomes a reference to its last layer (to the
  nested model's input when it has no layers). tf-keras numbers that call
  node 1 (node 0 is the nested model's own call on its ``InputLayer``), Keras 3
  node 0; either way the reference is to the one call, so it becomes node 0.

Weights: both writers keep a nested model's weights in the nested model's own
group, ``<root>/<nested>``, whose ``weight_names`` list ``<inner>/kernel:0``
(tf-keras; datasets at ``<root>/<nested>/<inner>/kernel:0``) or
``<nested>/<inner>/kernel`` (Keras 3; datasets at
``<root>/<nested>/<nested>/<inner>/kernel``). Each inlined layer records the
nested model as its ``weight_owner``; :class:`refcam.io.keras_weights.WeightFile`
then reads the names whose second-to-last component is the layer's name.

A nested model called more than once, a nested functional model and a
``Sequential`` nested two levels deep are not inlined: they stay entries with a
problem, listed when the model is refused.
"""
from __future__ import annotations

from .keras_layer import KerasLayer, layer_entries, layer_from_entry


def inline_nested_sequentials(layers: list[KerasLayer], source: str) -> tuple[list[KerasLayer], dict[str, str]]:
    """``(layers with every nested Sequential called once replaced by its layers, {nested name: its output layer})``.

    Runs before the check of node indices (:mod:`refcam.io.keras_config`), so a
    tf-keras reference to node 1 of an inlined model is read as its one call.
    """
    renamed: dict[str, str] = {}
    flat: list[KerasLayer] = []
    for layer in layers:
        if _inlinable(layer):
            inner = _inner_layers(layer, source)
            renamed[layer.name] = inner[-1].name if inner else layer.inputs[0]
            flat.extend(inner)
        else:
            flat.append(layer)
    for layer in flat:
        _redirect(layer, renamed)
    return flat, renamed


def _inlinable(layer: KerasLayer) -> bool:
    """A ``Sequential`` entry with a list of layers, called exactly once on one tensor, with no other problem."""
    return (layer.class_name == "Sequential" and isinstance(layer.config.get("layers"), list)
            and len(layer.history) == 1 and not layer.problems)


def _inner_layers(nested: KerasLayer, source: str) -> list[KerasLayer]:
    """The nested model's layers but its InputLayer, chained from the nested model's call."""
    inner = [layer_from_entry(entry, source) for entry in layer_entries(nested.config, source)
             if entry["class_name"] != "InputLayer"]
    previous: tuple[str, int, int] | None = None
    for layer in inner:
        layer.weight_owner = nested.name
        if previous is None:
            layer.history, layer.inputs, layer.operands = nested.history, nested.inputs, nested.operands
            layer.node_style = nested.node_style
        else:
            layer.history, layer.inputs, layer.operands = (previous,), (previous[0],), (previous[0],)
        previous = (layer.name, 0, 0)
    return inner


def _redirect(layer: KerasLayer, renamed: dict[str, str]) -> None:
    """References to an inlined model become references to its output layer, node 0."""
    if not any(name in renamed for name in layer.inputs):
        return
    layer.inputs = tuple(renamed.get(name, name) for name in layer.inputs)
    layer.operands = tuple(renamed.get(o, o) if isinstance(o, str) else o for o in layer.operands)
    layer.history = tuple((renamed[name], 0, tensor) if name in renamed else (name, node, tensor)
                          for name, node, tensor in layer.history)
