"""``refcam.to_torch(net)``: a refcam Network as an equivalent float64 PyTorch module (needs torch).

The module has one child per layer, named as the layer (``model.get_submodule("relu_2")``),
so a PyTorch Grad-CAM can hook refcam's feature layer by name. Its forward takes
the input in refcam's internal layout ``(B, C, *S)`` (what
:func:`refcam.layout.to_internal` gives, before normalisation: the input layer's
module normalises it), runs the children in the network's topological order,
each on the outputs of ``layer.inputs``, and returns the output of the network's
output layer: the softmax (or the last fully connected layer of a regression),
since classification and regression outputs are identities at prediction.

``import refcam`` never imports torch; :func:`to_torch` imports it when called.
"""
from __future__ import annotations

import functools
import operator
from typing import Any, Callable

import numpy as np

from ..backend import to_device
from ..errors import ModelConversionError, OptionalDependencyError
from ..layers import (AdditionLayer, AveragePooling1dLayer, AveragePooling2dLayer, AveragePooling3dLayer,
                      BatchNormalizationLayer, ClassificationLayer, Convolution1dLayer, Convolution2dLayer,
                      Convolution3dLayer, DepthConcatenationLayer, DropoutLayer, FullyConnectedLayer,
                      GlobalAveragePooling1dLayer, GlobalAveragePooling2dLayer, GlobalAveragePooling3dLayer,
                      GroupedConvolution2dLayer, Image3dInputLayer, ImageInputLayer, LayerNormalizationLayer,
                      LeakyReLULayer, MaxPooling1dLayer, MaxPooling2dLayer, MaxPooling3dLayer, RegressionLayer,
                      ReLULayer, SequenceInputLayer, SoftmaxLayer)
from ..layers.base import Layer
from ..layers.common import forward_padding, require_param
from ..network import Network
from ..ops.linear import flatten_forward
from .torch import INSTALL_HINT


def to_torch(net: Network) -> Any:
    """A float64 ``torch.nn.Module`` computing what ``net`` computes, one child per layer, named as the layer.

    Input ``(B, C, *S)`` in refcam's internal layout (not normalised); output the
    output layer's, ``(B, K)`` scores after a fully connected layer, ``(B, K, *S)``
    for a fully convolutional net. Every parameter is a float64 copy (changing the
    module leaves ``net`` alone); the module is returned in ``eval()`` mode on the CPU.

    Mapping (layer -> child module; ``pad`` = the layer's padding resolved per
    input as refcam does, :func:`refcam.layers.common.forward_padding`)::

        Image/Image3d/SequenceInputLayer  its normalisation, same operations in the same order:
                                          x | x - mean | (x - mean) / std | (x - min) / (max - min) [* 2 - 1]
        Convolution1d/2d/3dLayer (and     torch.nn.ConvNd, weights (F, C/G, *k) as stored; pad symmetric:
          GroupedConvolution2dLayer)      the conv's own padding, else F.pad(x, pad) first ('same': odd
                                          extra at the end; 'causal': (k - 1) d at the beginning)
        BatchNormalizationLayer           torch.nn.BatchNormNd (running statistics, refcam's epsilon)
        LayerNormalizationLayer           channel axis alone: F.layer_norm with channels moved last;
                                          over (C, *S): refcam's mean/variance formula; scale, offset per channel
        ReLULayer, LeakyReLULayer         torch.nn.ReLU, torch.nn.LeakyReLU(scale)
        MaxPooling1d/2d/3dLayer           torch.nn.MaxPoolNd; a pad torch cannot take: F.pad(replicate) first
                                          (padding < pool size, so every window holding a copied edge cell
                                          holds that cell: refcam's "padded cells never win", exactly)
        AveragePooling1d/2d/3dLayer       torch.nn.AvgPoolNd, count_include_pad = (PaddingValue == 0); a pad
                                          torch cannot take: F.pad(0) first ('mean': divided by the pooled
                                          indicator of the real cells)
        GlobalAveragePooling1d/2d/3dLayer torch.nn.AdaptiveAvgPoolNd(1)
        FullyConnectedLayer               torch.nn.Linear on x.flatten(1) (row-major over (C, *S)); the
                                          weight columns permuted from refcam's flatten order, exactly
        SoftmaxLayer                      torch.nn.Softmax(dim=1) (channels)
        DropoutLayer                      torch.nn.Dropout(probability) (the identity in eval mode)
        DepthConcatenationLayer           torch.cat(inputs, dim=1)
        AdditionLayer                     inputs[0] + inputs[1] + ... in input order
        Classification/RegressionLayer    torch.nn.Identity

    Parameters
    ----------
    net : Network
        A network whose layers are all of the kinds above.

    Returns
    -------
    torch.nn.Module
        ``dict(model.named_children())`` keyed by ``net.layer_names``; float64.

    Raises
    ------
    OptionalDependencyError
        torch is missing (``pip install "refcam[torch]"``).
    ModelConversionError
        Some layers have no PyTorch counterpart here (one message lists them all
        with their types), or a layer name is not a valid PyTorch module name.
    MissingParameterError
        A layer lacks a parameter it needs.

    Examples
    --------
    >>> model = refcam.to_torch(net)                                          # doctest: +SKIP
    >>> model.get_submodule("relu_2").register_forward_hook(keep_activation)   # doctest: +SKIP
    >>> scores = model(torch.from_numpy(x_internal))                         # doctest: +SKIP
    """
    torch = _import_torch()
    if not isinstance(net, Network):
        raise ModelConversionError(f"to_torch converts a refcam Network, not {type(net).__name__}.")
    _check_supported(net)
    modules = _module_types(torch)
    _check_names(net, modules.Graph)
    shapes = net.output_shapes
    children = {layer.name: _BUILDERS[type(layer)](torch, modules, layer, _input_shape(net, layer, shapes))
                for layer in net.layers}
    graph = modules.Graph([(layer.name, layer.inputs) for layer in net.layers], net.output_layer.name)
    for name, child in children.items():
        graph.add_module(name, child)
    return graph.to(dtype=torch.float64).eval()


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as err:
        raise OptionalDependencyError(f"refcam.to_torch needs PyTorch: {INSTALL_HINT}.") from err
    return torch


def _check_supported(net: Network) -> None:
    """ModelConversionError listing every layer whose type has no builder."""
    unsupported = [layer for layer in net.layers if type(layer) not in _BUILDERS]
    if unsupported:
        listed = ", ".join(f"{layer.name!r} ({type(layer).type or type(layer).__name__})" for layer in unsupported)
        raise ModelConversionError(
            f"to_torch cannot convert {len(unsupported)} layer(s) of network {net.name!r}: {listed}. It converts "
            "input, convolution, batch and layer normalisation, ReLU, leaky ReLU, max, average and global "
            "average pooling, fully connected, softmax, dropout, depth concatenation, addition and output layers.")


def _check_names(net: Network, graph_type: type) -> None:
    """ModelConversionError listing the layer names torch refuses as module names ('.', empty, attributes)."""
    probe = graph_type([], "")
    refused = [name for name in net.layer_names if not name or "." in name or hasattr(probe, name)]
    if refused:
        raise ModelConversionError(
            f"to_torch names each module after its layer, and PyTorch refuses the layer name(s) "
            f"{', '.join(map(repr, refused))} (empty, holding '.', or an attribute of torch.nn.Module). Rename "
            "those layers (a layer's name and the 'inputs' naming it) and convert again.")


def _input_shape(net: Network, layer: Layer, shapes: dict) -> tuple:
    """The per-observation shape ``(C, *S)`` of the layer's first input (the layer's own for an input layer)."""
    return tuple(shapes[layer.inputs[0]] if layer.inputs else shapes[layer.name])


def _float64(torch: Any, array: Any) -> Any:
    """A float64 CPU torch tensor copied from a NumPy or CuPy array."""
    return torch.from_numpy(np.array(to_device(array, "cpu"), dtype=np.float64))


def _set(torch: Any, module: Any, values: dict[str, Any]) -> Any:
    """``module`` with the named parameters/buffers replaced by float64 copies of ``values`` (None: dropped)."""
    with torch.no_grad():
        for name, array in values.items():
            if array is not None:
                getattr(module, name).data = _float64(torch, array)
    return module


# --- padding ------------------------------------------------------------------------------
def pad_for_torch(torch: Any, x: Any, padding: tuple[int, ...], torch_limit: tuple[int, ...] | None,
                  mode: str) -> tuple[Any, tuple[int, ...]]:
    """``(x', p)``: ``x`` and a symmetric padding ``p`` that the torch op applies itself, else ``F.pad``-ded ``x``.

    ``padding`` is refcam's ``(begins..., ends...)``; ``torch_limit`` the largest
    symmetric padding per axis the op takes (None: any); ``mode`` that of ``F.pad``
    ("constant": zeros), which takes the last axis first: ``(b_N, e_N, ..., b_1, e_1)``.
    """
    rank = len(padding) // 2
    begins, ends = padding[:rank], padding[rank:]
    if begins == ends and (torch_limit is None or all(p <= m for p, m in zip(begins, torch_limit))):
        return x, tuple(begins)
    torch_order = tuple(v for axis in reversed(range(rank)) for v in (begins[axis], ends[axis]))
    return torch.nn.functional.pad(x, torch_order, mode=mode), (0,) * rank


def size_free_padding(padding: str | tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...],
                      dilation: tuple[int, ...]) -> str | tuple[int, ...]:
    """refcam's ``(begins..., ends...)`` when it does not depend on the input size, else the mode ('same', stride > 1).

    Explicit numbers and 'causal' never depend on it; 'same' with stride 1 pads
    ``k_eff - 1`` in all (:mod:`refcam.ops.padding`), computed here on an input of
    one window. Resolving it once keeps the traced graph free of size arithmetic.
    """
    if padding == "same" and any(s > 1 for s in stride):
        return padding
    window = tuple((k - 1) * d + 1 for k, d in zip(kernel, dilation))
    return forward_padding(padding, window, kernel, stride, dilation)


def spatial_size(x: Any) -> tuple[int, ...]:
    """The spatial sizes of ``x`` (B, C, *S) as Python ints (a constant of the graph when traced)."""
    return tuple(int(n) for n in x.shape[2:])


# --- the modules ----------------------------------------------------------------------------
@functools.cache
def _module_types(torch: Any) -> Any:
    """The module classes, made once per torch module (torch is imported only when to_torch runs)."""
    nn, functional = torch.nn, torch.nn.functional

    class Graph(nn.Module):
        """Runs its children in topological order, each on the outputs of its layer's inputs."""

        def __init__(self, order: list[tuple[str, tuple[str, ...]]], output: str) -> None:
            super().__init__()
            self.refcam_order, self.refcam_output = list(order), output

        def forward(self, x: Any) -> Any:
            values: dict[str, Any] = {}
            for name, inputs in self.refcam_order:
                arguments = [values[source] for source in inputs] if inputs else [x]
                values[name] = self._modules[name](*arguments)
            return values[self.refcam_output]

    class Normalization(nn.Module):
        """refcam's input normalisation (refcam.layers.input), buffers broadcast as stored."""

        def __init__(self, mode: str, statistics: dict[str, Any]) -> None:
            super().__init__()
            self.mode = mode
            for name, value in statistics.items():
                self.register_buffer(name, value)

        def forward(self, x: Any) -> Any:
            if self.mode == "zerocenter":
                return x - self.mean
            if self.mode == "zscore":
                return (x - self.mean) / self.standard_deviation
            unit = (x - self.min) / (self.max - self.min)
            return unit * 2.0 - 1.0 if self.mode == "rescale-symmetric" else unit

    def padded_conv(rank: int) -> type:
        conv = getattr(functional, f"conv{rank}d")

        def forward(self: Any, x: Any) -> Any:
            padding = self.refcam_padding if isinstance(self.refcam_padding, tuple) else forward_padding(
                self.refcam_padding, spatial_size(x), self.kernel_size, self.stride, self.dilation)
            x, symmetric = pad_for_torch(torch, x, padding, None, "constant")
            return conv(x, self.weight, self.bias, self.stride, symmetric, self.dilation, self.groups)
        return type(f"Conv{rank}d", (getattr(nn, f"Conv{rank}d"),), {"forward": forward})

    def padded_pool(kind: str, rank: int) -> type:
        pool = getattr(functional, f"{kind}_pool{rank}d")

        def forward(self: Any, x: Any) -> Any:
            kernel, stride = _tuple(self.kernel_size, rank), _tuple(self.stride, rank)
            padding = self.refcam_padding if isinstance(self.refcam_padding, tuple) else forward_padding(
                self.refcam_padding, spatial_size(x), kernel, stride, (1,) * rank)
            limit = tuple(k // 2 for k in kernel)
            if kind == "max":
                x, symmetric = pad_for_torch(torch, x, padding, limit, "replicate")
                return pool(x, kernel, stride, symmetric)
            padded, symmetric = pad_for_torch(torch, x, padding, limit, "constant")
            mean = pool(padded, kernel, stride, symmetric, count_include_pad=self.count_include_pad)
            if self.count_include_pad or padded is x:
                return mean
            real, _ = pad_for_torch(torch, torch.ones_like(x), padding, (-1,) * rank, "constant")
            return mean / pool(real, kernel, stride, symmetric)
        base = getattr(nn, f"{'Max' if kind == 'max' else 'Avg'}Pool{rank}d")
        return type(base.__name__, (base,), {"forward": forward})

    class LayerNorm(nn.LayerNorm):
        """refcam's layer normalisation (refcam.layers.normalization) with per-channel scale and offset."""

        def __init__(self, channels: int, channel_only: bool, epsilon: float) -> None:
            super().__init__(channels, eps=epsilon, dtype=torch.float64)
            self.channel_only = channel_only

        def forward(self, x: Any) -> Any:
            if self.channel_only:
                channels_last = (0, *range(2, x.ndim), 1)  # (B, C, *S) -> (B, *S, C)
                back = (0, x.ndim - 1, *range(1, x.ndim - 1))
                y = functional.layer_norm(x.permute(channels_last), self.normalized_shape, self.weight, self.bias,
                                          self.eps)
                return y.permute(back)
            axes = tuple(range(1, x.ndim))  # refcam's operations in refcam's order
            centred = x - x.mean(dim=axes, keepdim=True)
            inv_std = 1.0 / torch.sqrt((centred * centred).mean(dim=axes, keepdim=True) + self.eps)
            per_channel = (-1,) + (1,) * (x.ndim - 2)
            return self.weight.view(per_channel) * (centred * inv_std) + self.bias.view(per_channel)

    class FlattenLinear(nn.Linear):
        """``Linear(x.flatten(1))``: row-major over ``(C, *S)``."""

        def forward(self, x: Any) -> Any:
            return functional.linear(x.flatten(1), self.weight, self.bias)

    class Concatenation(nn.Module):
        def forward(self, *xs: Any) -> Any:
            return torch.cat(xs, dim=1)

    class Addition(nn.Module):
        def forward(self, *xs: Any) -> Any:
            return functools.reduce(operator.add, xs)

    names = dict(Graph=Graph, Normalization=Normalization, LayerNorm=LayerNorm, FlattenLinear=FlattenLinear,
                 Concatenation=Concatenation, Addition=Addition,
                 conv={rank: padded_conv(rank) for rank in (1, 2, 3)},
                 pool={(kind, rank): padded_pool(kind, rank) for kind in ("max", "avg") for rank in (1, 2, 3)})
    return type("ModuleTypes", (), names)


def _tuple(value: Any, rank: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * rank


# --- one builder per layer type --------------------------------------------------------------
def _input(torch: Any, modules: Any, layer: Any, shape: tuple) -> Any:
    if layer.normalization == "none":
        return torch.nn.Identity()
    statistics = {name: _float64(torch, getattr(layer, name)) for name in ("mean", "standard_deviation", "min", "max")
                  if getattr(layer, name) is not None}
    return modules.Normalization(layer.normalization, statistics)


def _convolution(torch: Any, modules: Any, layer: Any, shape: tuple) -> Any:
    weights = require_param(layer, "weights")
    conv = modules.conv[layer.spatial_rank](
        int(shape[0]), layer.num_filters, layer.filter_size, stride=layer.stride, dilation=layer.dilation_factor,
        groups=layer.groups, bias=layer.bias is not None, dtype=torch.float64)
    conv.refcam_padding = size_free_padding(layer.padding, layer.filter_size, layer.stride, layer.dilation_factor)
    return _set(torch, conv, {"weight": weights, "bias": layer.bias})


def _batch_norm(torch: Any, modules: Any, layer: Any, shape: tuple) -> Any:
    rank = max(len(shape) - 1, 1)
    norm = getattr(torch.nn, f"BatchNorm{rank}d")(int(shape[0]), eps=layer.epsilon, dtype=torch.float64)
    values = {"running_mean": "trained_mean", "running_var": "trained_variance", "weight": "scale", "bias": "offset"}
    return _set(torch, norm, {name: require_param(layer, param) for name, param in values.items()})


def _layer_norm(torch: Any, modules: Any, layer: Any, shape: tuple) -> Any:
    channel_only = layer.normalized_axes(len(shape) + 1) == (1,)
    norm = modules.LayerNorm(int(shape[0]), channel_only, layer.epsilon)
    return _set(torch, norm, {"weight": require_param(layer, "scale"), "bias": require_param(layer, "offset")})


def _pooling(kind: str) -> Callable[..., Any]:
    def build(torch: Any, modules: Any, layer: Any, shape: tuple) -> Any:
        options = {} if kind == "max" else {"count_include_pad": layer.padding_value == 0}
        pool = modules.pool[(kind, layer.spatial_rank)](layer.pool_size, layer.stride, **options)
        ones = (1,) * layer.spatial_rank
        pool.refcam_padding = size_free_padding(layer.padding, layer.pool_size, layer.stride, ones)
        return pool
    return build


def _global_average(torch: Any, modules: Any, layer: Any, shape: tuple) -> Any:
    return getattr(torch.nn, f"AdaptiveAvgPool{layer.spatial_rank}d")(1)


def _fully_connected(torch: Any, modules: Any, layer: Any, shape: tuple) -> Any:
    """``nn.Linear`` whose column ``j`` (row-major over (C, *S)) is refcam's column of the same input cell."""
    weights = np.asarray(to_device(require_param(layer, "weights"), "cpu"), dtype=np.float64)
    cells = np.arange(weights.shape[1]).reshape((1, *shape))  # row-major index of each cell of (C, *S)
    row_major_of = flatten_forward(cells, layer.flatten_order)[0] if len(shape) > 1 else cells[0]
    torch_weights = np.empty_like(weights)
    torch_weights[:, row_major_of] = weights  # (output_size, C * prod(S))
    linear = modules.FlattenLinear(weights.shape[1], layer.output_size, bias=layer.bias is not None,
                                   dtype=torch.float64)
    return _set(torch, linear, {"weight": torch_weights, "bias": layer.bias})


_BUILDERS: dict[type, Callable[..., Any]] = {
    **dict.fromkeys((ImageInputLayer, Image3dInputLayer, SequenceInputLayer), _input),
    **dict.fromkeys((Convolution1dLayer, Convolution2dLayer, Convolution3dLayer, GroupedConvolution2dLayer),
                    _convolution),
    BatchNormalizationLayer: _batch_norm,
    LayerNormalizationLayer: _layer_norm,
    ReLULayer: lambda torch, modules, layer, shape: torch.nn.ReLU(),
    LeakyReLULayer: lambda torch, modules, layer, shape: torch.nn.LeakyReLU(layer.scale),
    **dict.fromkeys((MaxPooling1dLayer, MaxPooling2dLayer, MaxPooling3dLayer), _pooling("max")),
    **dict.fromkeys((AveragePooling1dLayer, AveragePooling2dLayer, AveragePooling3dLayer), _pooling("avg")),
    **dict.fromkeys((GlobalAveragePooling1dLayer, GlobalAveragePooling2dLayer, GlobalAveragePooling3dLayer),
                    _global_average),
    FullyConnectedLayer: _fully_connected,
    SoftmaxLayer: lambda torch, modules, layer, shape: torch.nn.Softmax(dim=1),
    DropoutLayer: lambda torch, modules, layer, shape: torch.nn.Dropout(layer.probability),
    DepthConcatenationLayer: lambda torch, modules, layer, shape: modules.Concatenation(),
    AdditionLayer: lambda torch, modules, layer, shape: modules.Addition(),
    **dict.fromkeys((ClassificationLayer, RegressionLayer), lambda torch, modules, layer, shape: torch.nn.Identity()),
}
