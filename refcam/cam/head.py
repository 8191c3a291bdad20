"""The head: the layers above a feature layer, run on activations the caller gives.

Ablation-CAM changes the feature activations ``A`` and needs the score again:
only the layers between the feature layer and the reduction layer depend on
``A``, so only they are re-run (:func:`run_head`). For a network with
branches the head may also read a layer that does not depend on ``A`` (the
shortcut around a residual block whose inner layer is the feature layer):
:func:`head_plan` names those *side inputs*; their values come from one
ordinary forward pass of the input and are the same for every change of ``A``.

Layout: refcam's internal ``(B, C, *S)`` Tensors throughout, as
:meth:`refcam.network.Network.forward_tensors`. Nothing is recorded on the tape
unless a given Tensor requires grad.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from ..autodiff import Tensor
from ..backend import is_cupy_array
from ..errors import GradCAMError
from ..layers.base import Layer
from ..layers.common import stage_parameters
from ..network import Network


@dataclass(frozen=True)
class HeadPlan:
    """The layers to re-run, in topological order, and the side inputs they read besides the feature layer."""

    feature_layer: str
    output_layer: str
    layers: tuple[Layer, ...]
    side_inputs: tuple[str, ...]


def head_plan(net: Network, feature_layer: str, output_layer: str) -> HeadPlan:
    """The layers downstream of ``feature_layer`` that ``output_layer`` needs (itself included), and their side inputs.

    Raises GradCAMError when ``output_layer`` does not depend on ``feature_layer``.

    >>> head_plan(net, "layer4", "fc").side_inputs     # doctest: +SKIP
    ()
    """
    feature, output = net.resolve(feature_layer), net.resolve(output_layer)
    if feature not in net.upstream(output):
        raise GradCAMError(f"layer {output!r} does not depend on the feature layer {feature!r}: there is no head "
                           "to re-run. Choose a feature layer upstream of the reduction layer.")
    above = (net.upstream(output) | {output}) & net.downstream(feature)
    layers = tuple(layer for layer in net.layers if layer.name in above)
    side = sorted({source for layer in layers for source in layer.inputs} - above - {feature})
    return HeadPlan(feature, output, layers, tuple(side))


def run_head(plan: HeadPlan, activations: Tensor, side_values: Mapping[str, Tensor] | None = None) -> Tensor:
    """The output of ``plan.output_layer`` for the feature activations ``activations`` (B, C, *S).

    ``side_values`` holds the output of each of ``plan.side_inputs`` with the
    same batch size B. Parameters are staged to the activations' dtype and
    device as :meth:`Network.forward_tensors` does.

    >>> plan = head_plan(net, "relu_2", "fc")                   # doctest: +SKIP
    >>> run_head(plan, Tensor(a)).shape                         # doctest: +SKIP
    (4, 3, 1, 1)
    """
    values: dict[str, Tensor] = dict(side_values or {})
    missing = [name for name in plan.side_inputs if name not in values]
    if missing:
        raise GradCAMError(f"the head above {plan.feature_layer!r} also reads {missing}; pass their outputs "
                           "as side_values.")
    values[plan.feature_layer] = activations
    on_gpu = is_cupy_array(activations.data)
    for layer in plan.layers:
        stage_parameters(layer, activations.dtype, on_gpu)
        values[layer.name] = layer.forward(*[values[source] for source in layer.inputs])
    return values[plan.output_layer]
