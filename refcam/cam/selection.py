"""Which layers Grad-CAM uses when the caller does not say (MATLAB's rules, G5 and G6).

* Feature layer (G5): the last layer, in the network's layer order, whose output
  has a spatial or time dimension of size greater than 1 for the input at hand.
  The sizes are those of the actual input, so a sequence network picks its layer
  for the sequence's own length. refcam's reading: only layers the reduction
  layer depends on are candidates (a layer after the reduction layer, such as a
  segmentation network's pixel classification layer, could only give MATLAB's
  "all gradients zero" error). For networks ending in a classifier this is
  exactly MATLAB's choice.
* Reduction layer (G6): for a network that ends in an output layer
  (classification or regression: MATLAB's SeriesNetwork/DAGNetwork) the layer
  feeding that output layer, i.e. the second-to-last layer, usually the softmax;
  otherwise (MATLAB's dlnetwork) the last layer.
"""
from __future__ import annotations

from typing import Any

from ..errors import GradCAMError, LayerNotFoundError
from ..network import Network


def sum_of_outputs(y: Any) -> Any:
    """A reduction that sums the reduction layer's output: ``score = sum_i y_i``.

    The score of a regression network (one output: the prediction itself) and of
    ``--reduction sum``; it works on NumPy and CuPy arrays alike.
    """
    return y.sum()


def check_layer_name(net: Network, name: str, role: str) -> str:
    """The layer ``name`` stands for (itself, or the layer of an alias); otherwise raise naming the valid names."""
    try:
        return net.resolve(name)
    except LayerNotFoundError:
        aliases = ", ".join(f"{alias!r} (-> {target!r})" for alias, target in net.aliases.items())
        raise LayerNotFoundError(
            f"{role} {name!r} is not a layer of this network; valid layer names are: "
            + ", ".join(repr(n) for n in net.layer_names) + (f"; aliases: {aliases}" if aliases else "")
            + ".") from None


def default_reduction_layer(net: Network) -> str:
    """G6: the output layer's input for networks ending in an output layer, else the last layer."""
    last = net.layers[-1]
    if getattr(last, "is_output_layer", False):
        return last.inputs[0]
    return last.name


def default_feature_layer(net: Network, shapes: dict[str, tuple[int, ...]], reduction_layer: str) -> str:
    """G5: the last layer, among those the reduction layer depends on, whose output has some S > 1.

    ``shapes`` maps layer names to per-observation output shapes ``(C, *S)`` for
    the actual input.
    """
    candidates = net.upstream(reduction_layer)
    for layer in reversed(net.layers):
        if layer.name in candidates and any(n > 1 for n in shapes[layer.name][1:]):
            return layer.name
    raise GradCAMError(
        "no layer of this network has an output with a spatial or time dimension larger "
        "than 1, so Grad-CAM has no feature map; pass feature_layer= explicitly.")
