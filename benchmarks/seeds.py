"""The seed networks (E1 SqueezeNet-mini, E2 digits regression, E3 Japanese Vowels) for the benchmark.

refcam loads each network from its fixture file (``fixtures/<name>.h5``, trained
or seeded weights) and its first golden input. The PyTorch twin is the
fixture's own architecture description (``fixtures/_architectures.py``) run by
``fixtures/_torch_nets.GraphNet``, with every parameter copied from the refcam
network (inverting the MATLAB column-major flatten of fully connected weights
that ``fixtures/_convert.py`` applied). The benchmark's float64 guard then
checks that both compute the same function.

Each entry gives what :mod:`run` needs: a title, the refcam network, the twin,
the internal input ``(1, C, *S)``, the feature and reduction layers (the seed's
defaults) and how the score is formed (a class label, or the identity of a
regression output).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@dataclass
class SeedNetwork:
    """One seed network: where Grad-CAM looks and the golden input it is timed on."""

    title: str
    stem: str                  # fixture file name without ``.h5``
    golden: str                # golden file whose input is used
    architecture: str          # function name in fixtures/_architectures.py
    feature_layer: str
    reduction_layer: str
    regression: bool           # score = the (single) output itself instead of a class probability

    @property
    def layers(self) -> list[str]:
        return list(self.refcam().output_shapes)

    def refcam(self) -> Any:
        from refcam.io import load
        return load(str(FIXTURES / f"{self.stem}.h5"))

    def random_input(self, seed: int) -> np.ndarray:
        """The golden input in the internal layout ``(1, C, *S)`` (``seed`` is unused: the input is fixed)."""
        from refcam.layout import to_internal

        with h5py.File(FIXTURES / self.golden, "r") as f:
            x, fmt = f["input"][()], f["input"].attrs["format"]
        net = self.refcam()
        internal, _ = to_internal(x, net.input_layer, format=str(fmt), dtype="float64")
        return np.asarray(internal)


SEEDS: dict[str, SeedNetwork] = {
    "e1_squeezenet": SeedNetwork("e1_squeezenet", "e1_squeezenet_mini", "e1_squeezenet_mini__coffee.golden.h5",
                                 "e1_squeezenet_mini", "relu_conv10", "prob", False),
    "e2_digits": SeedNetwork("e2_digits", "e2_digits_regression", "e2_digits_regression__test6.golden.h5",
                             "e2_digits_regression", "relu_4", "fc", True),
    "e3_vowels": SeedNetwork("e3_vowels", "e3_japanese_vowels", "e3_japanese_vowels__test0.golden.h5",
                             "e3_japanese_vowels", "layernorm_2", "softmax", False),
}


def _fixture_modules() -> tuple[Any, Any]:
    """``fixtures/_architectures.py`` and ``fixtures/_torch_nets.py`` (they import each other by bare name)."""
    if str(FIXTURES) not in sys.path:
        sys.path.insert(0, str(FIXTURES))
    import _architectures
    import _torch_nets
    return _architectures, _torch_nets


def torch_fc_weights(weights: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of ``fixtures/_convert.matlab_fc_weights``: MATLAB column-major columns to row-major (C, *S)."""
    out, rank = weights.shape[0], len(input_shape) - 1
    blocks = weights.reshape((out, input_shape[0]) + tuple(reversed(input_shape[1:])))  # (out, C, S_n..S_1)
    return blocks.transpose((0, 1) + tuple(range(rank + 1, 1, -1))).reshape(out, -1)


def build_torch_twin(seed: SeedNetwork, net: Any) -> Any:
    """The PyTorch twin of ``net`` (float64, eval, parameters not requiring grad) with ``run(x, detach_at)``."""
    import torch

    architectures, torch_nets = _fixture_modules()
    nodes = getattr(architectures, seed.architecture)()
    layer = net.input_layer
    for key, attribute in (("mean", "mean"), ("std", "standard_deviation")):
        value = getattr(layer, attribute, None)
        if value is not None:
            nodes[0].opts[key] = torch.from_numpy(np.asarray(value, dtype=np.float64))
    model = _detaching_graph_net(torch_nets)(nodes).double().eval()
    shapes = net.output_shapes
    with torch.no_grad():
        for node in nodes:
            module, refcam_layer = model.blocks[node.name], net.layer(node.name)
            _copy_parameters(torch, node.kind, module, refcam_layer, shapes.get(node.inputs[0]) if node.inputs else None)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def _copy_parameters(torch: Any, kind: str, module: Any, layer: Any, input_shape: Any) -> None:
    def put(target: Any, value: Any) -> None:
        target.copy_(torch.from_numpy(np.ascontiguousarray(np.asarray(value, dtype=np.float64)).reshape(target.shape)))

    if kind == "conv":
        put(module.conv.weight, layer.weights)
        put(module.conv.bias, layer.bias)
    elif kind == "batchnorm":
        put(module.running_mean, layer.trained_mean)
        put(module.running_var, layer.trained_variance)
        put(module.weight, layer.scale)
        put(module.bias, layer.offset)
    elif kind == "layernorm":
        put(module.norm.weight, layer.scale)
        put(module.norm.bias, layer.offset)
    elif kind == "fc":
        put(module.linear.weight, torch_fc_weights(np.asarray(layer.weights), tuple(input_shape)))
        put(module.linear.bias, layer.bias)


def _detaching_graph_net(torch_nets: Any) -> Callable[..., Any]:
    """``GraphNet`` with the benchmark's interface: ``run(x, detach_at)`` and ``forward`` = last output."""

    class DetachingGraphNet(torch_nets.GraphNet):
        def run(self, x: Any, detach_at: str | None = None) -> dict[str, Any]:
            values: dict[str, Any] = {}
            for node in self.nodes:
                inputs = [values[name] for name in node.inputs] if node.inputs else [x]
                y = self.blocks[node.name](*inputs)
                if node.name == detach_at:
                    y = y.detach().requires_grad_(True)
                values[node.name] = y
            return values

        def forward(self, x: Any) -> Any:
            return self.run(x)[self.nodes[-1].name]

    return DetachingGraphNet
