"""Restore the float64 hyperparameters of PyTorch modules that an ONNX export rounds to float32.

ONNX stores every float attribute as a 32-bit float (``AttributeProto.f``), so
an export of a float64 model carries, for example, ``HardSigmoid`` with
``alpha = float32(1/6) = 0.16666667163372040`` (relative error 3e-8) and
``BatchNormalization`` with ``epsilon = float32(1e-5)``, while the PyTorch
module computes with the exact Python float. The weights are tensors and stay
exact; only these scalars are rounded. :func:`restore_module_constants` puts
the module's own values back into the layers that
:func:`refcam.from_torch` names after the module (the first call ``path``,
later calls ``path_1``, ``path_2``...):

* ``F.hardsigmoid`` / ``nn.Hardsigmoid`` (``relu6(x + 3) / 6``): a
  ``HardSigmoidLayer`` or ``HardSwishLayer`` with ``alpha = float32(1/6)`` and
  ``beta = 1/2`` gets ``alpha := 1/6``;
* ``nn.BatchNorm1d/2d/3d``: ``BatchNormalizationLayer.epsilon := module.eps``;
* ``nn.LayerNorm`` (and subclasses): ``LayerNormalizationLayer.epsilon := module.eps``;
* ``nn.LeakyReLU``: ``LeakyReLULayer.scale := module.negative_slope``.

The hard-gate rule goes by value, not by name: PyTorch's only hard sigmoid
(``nn.Hardsigmoid``, ``F.hardsigmoid``) is ``relu6(x + 3) / 6``, and the
importer fuses ``x * HardSigmoid(x)`` into a hard swish named after the ``Mul``.
The other rules go by name; a layer of another type under the module's name is
left as imported, and so are functional calls with their own constants
(``F.leaky_relu(x, 0.1)``, ``F.batch_norm(..., eps=...)``), which have no module
to read them from.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any

import numpy

from ..layers.activation import LeakyReLULayer
from ..layers.base import Layer
from ..layers.extra import HardGateLayer
from ..layers.normalization import BatchNormalizationLayer, LayerNormalizationLayer

TORCH_HARD_GATE = {"alpha": 1.0 / 6.0, "beta": 0.5}
EXPORTED_HARD_GATE = {"alpha": float(numpy.float32(1.0 / 6.0)), "beta": 0.5}
REPEATED_CALL = re.compile(r"^(?P<path>.+)_(?P<call>[1-9][0-9]*)$")


def _exact_fields(torch: Any, module: Any) -> tuple[type, dict[str, float]] | None:
    """``(refcam layer class, {field: exact value})`` for a module whose export rounds a constant, else None."""
    nn = torch.nn
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return BatchNormalizationLayer, {"epsilon": float(module.eps)}
    if isinstance(module, nn.LayerNorm):
        return LayerNormalizationLayer, {"epsilon": float(module.eps)}
    if isinstance(module, nn.LeakyReLU):
        return LeakyReLULayer, {"scale": float(module.negative_slope)}
    return None


def _module_of(layer_name: str, modules: dict[str, Any]) -> Any:
    """The module a layer is named after: ``path`` itself, or ``path`` of a repeated call ``path_N``."""
    if layer_name in modules:
        return modules[layer_name]
    match = REPEATED_CALL.match(layer_name)
    return modules.get(match["path"]) if match else None


def restore_module_constants(torch: Any, model: Any, layers: list[Layer]) -> list[Layer]:
    """``layers`` with the float32-rounded constants of the table above replaced by the module's exact values.

    ``model`` is the float64 copy that was exported; layers are matched to
    modules by name (``dict(model.named_modules())``). Returns new layer objects
    where a value changes (``dataclasses.replace``, so the layer's own checks
    run again) and the same objects elsewhere.
    """
    modules = dict(model.named_modules())
    return [_restored(torch, layer, _module_of(layer.name, modules)) for layer in layers]


def _restored(torch: Any, layer: Layer, module: Any) -> Layer:
    """``layer`` with its module's exact values, or ``layer`` itself where nothing changes."""
    if isinstance(layer, HardGateLayer):
        exported = {"alpha": layer.alpha, "beta": layer.beta} == EXPORTED_HARD_GATE
        return dataclasses.replace(layer, **TORCH_HARD_GATE) if exported else layer
    exact = None if module is None else _exact_fields(torch, module)
    if exact is None or type(layer) is not exact[0]:
        return layer
    changes = {field: value for field, value in exact[1].items() if getattr(layer, field) != value}
    return dataclasses.replace(layer, **changes) if changes else layer
