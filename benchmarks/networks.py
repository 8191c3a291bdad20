"""Benchmark networks built twice, in refcam and in PyTorch, from one seeded description.

Two architectures are described once as a list of :class:`LayerSpec` (a neutral
record: kind, name, inputs, properties, float64 parameters in refcam's internal
layout) and then turned into a :class:`refcam.network.Network` by
:func:`build_refcam` and into a ``torch.nn.Module`` by :func:`build_torch`. Both
networks therefore hold bit-identical float64 weights.

* :func:`resnet18_spec`: ResNet-18-shaped, MATLAB's ``resnet18`` layer names.
  Input 224x224x3 (``zerocenter`` with a per-channel mean), conv 7x7/2 pad 3,
  batch norm, ReLU, max pool 3x3/2 pad 1, four stages of two basic blocks
  (64, 128, 256, 512 filters; the first block of stages 3-5 has stride 2 and a
  1x1/2 convolution + batch norm shortcut), global average pool, fully
  connected 1000, softmax, classification output.
* :func:`small3d_spec`: a small 3-D network on 32x32x32x1 volumes: two stages
  of conv 3x3x3 pad 1 + batch norm + ReLU + max pool 2x2x2/2, global average
  pool, fully connected, softmax, classification output.

Parameters are random but valid: convolution and fully connected weights are
``N(0, 1 / fan_in)`` (activations stay of order one through the residual
stages, and the logits too, so the softmax is far from saturation), biases
and batch-norm offsets ``N(0, 0.1^2)``, batch-norm means ``N(0, 0.1^2)``,
variances and scales uniform on ``[0.5, 1.5]`` (positive).

Padding is explicit. In refcam it is given in MATLAB order, per-axis
``[begin end]`` pairs (``[top bottom left right]`` in 2-D, column-major
``[top bottom left right front back]`` in 3-D); in PyTorch as the symmetric
per-axis ``padding=`` of ``nn.Conv*d`` / ``nn.MaxPool*d`` (every benchmark
padding is symmetric, so the two agree).

PyTorch is optional: :func:`build_torch` imports it lazily.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

EPSILON = 1e-5  # batch-norm epsilon, the same in both frameworks


@dataclass
class LayerSpec:
    """One layer of a benchmark network, independent of the framework.

    ``kind`` is one of ``input``, ``conv``, ``batchnorm``, ``relu``, ``maxpool``,
    ``add``, ``gap``, ``fc``, ``softmax``, ``output``; ``options`` holds the
    properties (sizes, strides, symmetric padding per axis); ``params`` the
    float64 arrays in refcam's internal layout.
    """

    kind: str
    name: str
    inputs: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class BenchmarkNetwork:
    """A benchmark network: its description, its input, and where Grad-CAM looks."""

    title: str
    layers: list[LayerSpec]
    input_shape: tuple[int, ...]  # internal (C, *spatial) of one observation
    feature_layer: str            # output of the last residual block / stage
    reduction_layer: str          # the softmax layer
    num_classes: int

    def random_input(self, seed: int) -> np.ndarray:
        """A float64 input of internal shape ``(1, C, *spatial)``, uniform on [0, 1)."""
        return np.random.default_rng(seed).random((1, *self.input_shape))


# --- the description ---------------------------------------------------------------
class _SpecBuilder:
    """Appends layers to a list, drawing their parameters from one seeded generator."""

    def __init__(self, seed: int, rank: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.rank = rank
        self.layers: list[LayerSpec] = []
        self.channels: dict[str, int] = {}

    def add(self, kind: str, name: str, inputs: tuple[str, ...], channels: int,
            options: dict[str, Any] | None = None, params: dict[str, np.ndarray] | None = None) -> str:
        """Append a layer with ``channels`` output channels; return its name."""
        self.layers.append(LayerSpec(kind, name, inputs, options or {}, params or {}))
        self.channels[name] = channels
        return name

    def image_input(self, name: str, spatial: tuple[int, ...], channels: int) -> str:
        """Input layer with MATLAB ``input_size = (*spatial, channels)`` and a per-channel mean."""
        mean = self.rng.uniform(0.4, 0.6, size=(channels,) + (1,) * self.rank)  # (C, 1, ..., 1)
        return self.add("input", name, (), channels, {"size": (*spatial, channels)}, {"mean": mean})

    def conv(self, name: str, source: str, filters: int, kernel: int, stride: int, pad: int) -> str:
        """Square/cubic convolution with bias, symmetric padding ``pad`` on every side."""
        in_channels = self.channels[source]
        shape = (filters, in_channels) + (kernel,) * self.rank                  # (F, C, *k)
        fan_in = in_channels * kernel ** self.rank
        weights = self.rng.normal(0.0, np.sqrt(1.0 / fan_in), size=shape)
        bias = self.rng.normal(0.0, 0.1, size=filters)
        options = {"kernel": kernel, "stride": stride, "pad": pad}
        return self.add("conv", name, (source,), filters, options, {"weights": weights, "bias": bias})

    def batchnorm(self, name: str, source: str) -> str:
        """Batch normalisation with random valid statistics (positive variance)."""
        c = self.channels[source]
        params = {"mean": self.rng.normal(0.0, 0.1, size=c),
                  "variance": self.rng.uniform(0.5, 1.5, size=c),
                  "scale": self.rng.uniform(0.5, 1.5, size=c),
                  "offset": self.rng.normal(0.0, 0.1, size=c)}
        return self.add("batchnorm", name, (source,), c, {"epsilon": EPSILON}, params)

    def simple(self, kind: str, name: str, sources: tuple[str, ...], options: dict[str, Any] | None = None) -> str:
        """A parameter-free layer keeping its first input's channel count."""
        return self.add(kind, name, sources, self.channels[sources[0]], options)

    def fc(self, name: str, source: str, outputs: int) -> str:
        """Fully connected layer on a globally pooled input (``In`` = its channel count)."""
        in_features = self.channels[source]
        weights = self.rng.normal(0.0, np.sqrt(1.0 / in_features), size=(outputs, in_features))  # (Out, In)
        bias = self.rng.normal(0.0, 0.1, size=outputs)
        return self.add("fc", name, (source,), outputs, {}, {"weights": weights, "bias": bias})

    def conv_bn_relu(self, prefix: str, bn_name: str, source: str, filters: int, kernel: int,
                     stride: int, pad: int) -> str:
        """Convolution, batch normalisation, ReLU (named ``<prefix>``, ``bn_name``, ``<prefix>_relu``)."""
        conv = self.conv(prefix, source, filters, kernel, stride, pad)
        bn = self.batchnorm(bn_name, conv)
        return self.simple("relu", f"{prefix}_relu", (bn,))

    def classifier_head(self, source: str, num_classes: int, gap: str, fc: str, prob: str) -> None:
        """Global average pool, fully connected, softmax, classification output."""
        pooled = self.simple("gap", gap, (source,))
        scores = self.fc(fc, pooled, num_classes)
        softmax = self.simple("softmax", prob, (scores,))
        self.simple("output", "ClassificationLayer_predictions", (softmax,))


def _basic_block(b: _SpecBuilder, stage: int, letter: str, source: str, filters: int, stride: int) -> str:
    """Two 3x3 conv + bn (+ relu) branches added to the identity or a 1x1/2 conv + bn shortcut."""
    tag = f"{stage}{letter}"
    branch = b.conv_bn_relu(f"res{tag}_branch2a", f"bn{tag}_branch2a", source, filters, 3, stride, 1)
    branch = b.conv(f"res{tag}_branch2b", branch, filters, 3, 1, 1)
    branch = b.batchnorm(f"bn{tag}_branch2b", branch)
    shortcut = source
    if stride != 1 or b.channels[source] != filters:
        shortcut = b.conv(f"res{tag}_branch1", source, filters, 1, stride, 0)
        shortcut = b.batchnorm(f"bn{tag}_branch1", shortcut)
    added = b.simple("add", f"res{tag}", (branch, shortcut))
    return b.simple("relu", f"res{tag}_relu", (added,))


def resnet18_spec(seed: int = 0, image_size: int = 224, num_classes: int = 1000) -> BenchmarkNetwork:
    """ResNet-18-shaped network (MATLAB ``resnet18`` names), input ``image_size`` x ``image_size`` x 3.

    >>> spec = resnet18_spec(seed=0)
    >>> spec.feature_layer, spec.reduction_layer
    ('res5b_relu', 'prob')
    """
    b = _SpecBuilder(seed, rank=2)
    x = b.image_input("data", (image_size, image_size), 3)
    x = b.conv_bn_relu("conv1", "bn_conv1", x, 64, 7, 2, 3)
    x = b.simple("maxpool", "pool1", (x,), {"kernel": 3, "stride": 2, "pad": 1})
    for stage, filters in zip((2, 3, 4, 5), (64, 128, 256, 512)):
        x = _basic_block(b, stage, "a", x, filters, 1 if stage == 2 else 2)
        x = _basic_block(b, stage, "b", x, filters, 1)
    b.classifier_head(x, num_classes, "pool5", "fc1000", "prob")
    return BenchmarkNetwork("resnet18", b.layers, (3, image_size, image_size), "res5b_relu", "prob",
                            num_classes)


def small3d_spec(seed: int = 0, volume_size: int = 32, num_classes: int = 10) -> BenchmarkNetwork:
    """Small 3-D network: two conv3d + bn + relu + maxpool stages (16, 32 filters), GAP, fc, softmax.

    >>> small3d_spec().input_shape
    (1, 32, 32, 32)
    """
    b = _SpecBuilder(seed, rank=3)
    x = b.image_input("input", (volume_size,) * 3, 1)
    for stage, filters in ((1, 16), (2, 32)):
        x = b.conv_bn_relu(f"conv{stage}", f"bn{stage}", x, filters, 3, 1, 1)
        x = b.simple("maxpool", f"pool{stage}", (x,), {"kernel": 2, "stride": 2, "pad": 0})
    b.classifier_head(x, num_classes, "gap", "fc", "softmax")
    return BenchmarkNetwork("small3d", b.layers, (1,) + (volume_size,) * 3, "conv2_relu", "softmax",
                            num_classes)


SPECS: dict[str, Callable[..., BenchmarkNetwork]] = {"resnet18": resnet18_spec, "small3d": small3d_spec}


# --- refcam ----------------------------------------------------------------------------
def _matlab_padding(pad: int, rank: int) -> tuple[int, ...]:
    """Symmetric padding in MATLAB order: per-axis ``[begin end]`` pairs."""
    return (pad,) * (2 * rank)


def _refcam_layer(spec: LayerSpec, rank: int) -> Any:
    from refcam import layers as L

    two_d = rank == 2
    o, p, common = spec.options, spec.params, {"name": spec.name, "inputs": spec.inputs}
    if spec.kind == "input":
        cls = L.ImageInputLayer if two_d else L.Image3dInputLayer
        return cls(input_size=o["size"], normalization="zerocenter",
                   mean=p["mean"], **common)
    if spec.kind == "conv":
        cls = L.Convolution2dLayer if two_d else L.Convolution3dLayer
        return cls(filter_size=o["kernel"], num_filters=p["weights"].shape[0], stride=o["stride"],
                   padding=_matlab_padding(o["pad"], rank), weights=p["weights"], bias=p["bias"],
                   **common)
    if spec.kind == "batchnorm":
        return L.BatchNormalizationLayer(trained_mean=p["mean"], trained_variance=p["variance"],
                                         scale=p["scale"], offset=p["offset"], epsilon=o["epsilon"],
                                         **common)
    if spec.kind == "maxpool":
        cls = L.MaxPooling2dLayer if two_d else L.MaxPooling3dLayer
        return cls(pool_size=o["kernel"], stride=o["stride"], padding=_matlab_padding(o["pad"], rank),
                   **common)
    if spec.kind == "gap":
        cls = L.GlobalAveragePooling2dLayer if two_d else L.GlobalAveragePooling3dLayer
        return cls(**common)
    if spec.kind == "fc":
        return L.FullyConnectedLayer(output_size=p["weights"].shape[0], weights=p["weights"],
                                     bias=p["bias"], **common)
    others = {"relu": L.ReLULayer, "add": L.AdditionLayer, "softmax": L.SoftmaxLayer,
                "output": L.ClassificationLayer}
    return others[spec.kind](**common)


def build_refcam(network: BenchmarkNetwork) -> Any:
    """The refcam :class:`~refcam.network.Network` of ``network`` (float64 parameters)."""
    from refcam.network import Network

    rank = len(network.input_shape) - 1
    return Network([_refcam_layer(spec, rank) for spec in network.layers], name=network.title)


# --- PyTorch ------------------------------------------------------------------------------
def build_torch(network: BenchmarkNetwork) -> Any:
    """The same network as a ``torch.nn.Module`` in eval mode, float64 parameters.

    Parameters do not require grad. ``module(x)`` takes ``(B, C, *spatial)`` and returns the softmax output
    ``(B, K)``; ``module.run(x, detach_at=name)`` returns every layer output by
    name, with the output of layer ``name`` replaced by a leaf that requires grad
    (the PyTorch counterpart of refcam's ``forward_tensors(..., grad_from=name)``).
    Raises ImportError when PyTorch is not installed.
    """
    if torch is None:
        raise ImportError("PyTorch is not installed; the torch side of the benchmark is skipped.")
    module = TorchGraph(network).double().eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)  # inference: only ops downstream of a detach_at leaf are taped
    return module


def _from_numpy(array: np.ndarray) -> Any:
    return torch.from_numpy(np.ascontiguousarray(array))


def _torch_module(spec: LayerSpec, rank: int) -> Any:
    """The ``nn.Module`` of a layer with parameters or a fixed op; None for input, add, gap, output."""
    nn = torch.nn
    o, p = spec.options, spec.params
    conv_cls, bn_cls, pool_cls = ((nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if rank == 2
                                  else (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d))
    if spec.kind == "conv":
        filters, channels = p["weights"].shape[:2]
        module = conv_cls(channels, filters, o["kernel"], stride=o["stride"], padding=o["pad"])
        module.weight.data, module.bias.data = _from_numpy(p["weights"]), _from_numpy(p["bias"])
        return module
    if spec.kind == "batchnorm":
        module = bn_cls(p["mean"].shape[0], eps=o["epsilon"])
        module.running_mean.data, module.running_var.data = _from_numpy(p["mean"]), _from_numpy(p["variance"])
        module.weight.data, module.bias.data = _from_numpy(p["scale"]), _from_numpy(p["offset"])
        return module
    if spec.kind == "maxpool":
        return pool_cls(o["kernel"], stride=o["stride"], padding=o["pad"])
    if spec.kind == "fc":
        out_features, in_features = p["weights"].shape
        module = nn.Linear(in_features, out_features)
        module.weight.data, module.bias.data = _from_numpy(p["weights"]), _from_numpy(p["bias"])
        return module
    if spec.kind == "relu":
        return nn.ReLU()
    if spec.kind == "softmax":
        return nn.Softmax(dim=1)
    return None


try:
    import torch
except ImportError:
    torch = None

if torch is not None:
    class TorchGraph(torch.nn.Module):
        """Runs the layers of a :class:`BenchmarkNetwork` in their (topological) list order."""

        def __init__(self, network: BenchmarkNetwork) -> None:
            super().__init__()
            self.specs = network.layers
            rank = len(network.input_shape) - 1
            self.blocks = torch.nn.ModuleDict()
            for spec in self.specs:
                module = _torch_module(spec, rank)
                if module is not None:
                    self.blocks[spec.name] = module
            self.register_buffer("input_mean", _from_numpy(self.specs[0].params["mean"][None]))

        def run(self, x: Any, detach_at: str | None = None) -> dict[str, Any]:
            """Every layer's output by name; ``detach_at``'s output becomes a leaf requiring grad."""
            values: dict[str, Any] = {}
            for spec in self.specs:
                args = [values[name] for name in spec.inputs]
                if spec.kind == "input":
                    y = x - self.input_mean
                elif spec.kind == "add":
                    y = sum(args[1:], args[0])
                elif spec.kind == "gap":
                    y = args[0].mean(dim=tuple(range(2, args[0].dim())))   # (B, C)
                elif spec.kind == "output":
                    y = args[0]
                else:
                    y = self.blocks[spec.name](args[0])
                if spec.name == detach_at:
                    y = y.detach().requires_grad_(True)
                values[spec.name] = y
            return values

        def forward(self, x: Any) -> Any:
            """The last layer's output (the softmax probabilities, ``(B, K)``)."""
            return self.run(x)[self.specs[-1].name]
