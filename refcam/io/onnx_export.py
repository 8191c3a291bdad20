"""Write a refcam :class:`~refcam.network.Network` as an ONNX model (optional dependency ``onnx``).

``to_onnx(net, path)`` writes one node per refcam layer (a few layers need two
or three), using only operators refcam's own importer (:mod:`refcam.io.onnx_import`)
reads back, at opset :data:`OPSET` (17, the first with LayerNormalization):

=============================  =====================================================================
refcam                         ONNX
=============================  =====================================================================
Image / Image3d / Sequence     graph input ``(batch, C, *S)`` named after the layer (batch symbolic,
input                          time symbolic for sequences); normalisation as Sub / Div / Mul nodes
                               with the stored statistics: "zerocenter" ``x - mean``, "zscore"
                               ``(x - mean) / std``, "rescale-zero-one" ``(x - min) / (max - min)``,
                               "rescale-symmetric" the same ``* 2 - 1``
Convolution{1,2,3}d, grouped   Conv; weights ``(F, C/G, *k)`` as stored; "same" and "causal" padding
                               as explicit ``pads`` (the odd cell at the end), or ``auto_pad``
                               SAME_UPPER on a time axis of unknown length
BatchNormalization             BatchNormalization (the trained statistics, epsilon; nothing folded)
LayerNormalization             Transpose (channels last) -> LayerNormalization(axis=-1) -> Transpose
                               back, for channel-only normalisation (also "auto" on sequences)
ReLU, LeakyReLU                Relu, LeakyRelu(alpha = scale)
Max/AveragePooling{1,2,3}d     MaxPool / AveragePool with explicit pads; padding_value 0 ->
                               count_include_pad 1, "mean" -> 0
GlobalAveragePooling{1,2,3}d   GlobalAveragePool
FullyConnected                 Gemm(transB=1) with weights ``(out, in)`` as stored; a spatial input is
                               first flattened: Flatten ("row-major"), Transpose + Flatten ("matlab",
                               "channels-last"), so the weights keep refcam's flattening order
Softmax                        Softmax(axis=1)
Dropout                        Dropout with its probability as ``ratio`` (the identity at inference)
DepthConcatenation, Addition   Concat(axis=1); Add (two inputs) or Sum
Classification/Regression      nothing: the graph output is the layer feeding them
=============================  =====================================================================

Names: every node computing a layer is named after the layer and its output
tensor carries the layer's name, so ``refcam.load(path)`` gives layers of the
same names and the same Grad-CAM feature layers. Extra nodes are named
``<layer>/<step>``; the graph input is named after the input layer, and a
normalised input is the tensor ``<input layer>/normalization``.

Numbers: the initializers are DOUBLE (float64), or FLOAT when every parameter
of the network is float32; they are the stored parameters, unchanged (nothing
is folded or fused). The file is checked with ``onnx.checker.check_model(...,
full_check=True)`` before it is written; writing the same network twice gives
identical bytes.

>>> to_onnx(net, "net.onnx")          # doctest: +SKIP
>>> again = refcam.load("net.onnx")   # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..errors import OptionalDependencyError, UnsupportedOperationError
from ..layers import (AVERAGE_POOLING_BY_RANK, CONVOLUTION_BY_RANK, GLOBAL_AVERAGE_POOLING_BY_RANK,
                      MAX_POOLING_BY_RANK)
from ..layers.activation import LeakyReLULayer, ReLULayer, SoftmaxLayer
from ..layers.combine import AdditionLayer, DepthConcatenationLayer
from ..layers.common import forward_padding
from ..layers.convolution import GroupedConvolution2dLayer
from ..layers.input import Image3dInputLayer, ImageInputLayer, InputLayer, SequenceInputLayer
from ..layers.linear import DropoutLayer, FullyConnectedLayer
from ..layers.normalization import BatchNormalizationLayer, LayerNormalizationLayer
from ..network import Network

OPSET = 17
"""The default-domain operator set written: 17, the first with LayerNormalization."""

BATCH = "batch"
PARAMETERS = ("weights", "trained_mean", "trained_variance", "scale", "offset")
"""Parameters a written layer must have (biases may be absent)."""
TIME = "time"


@dataclass
class _Writer:
    """The graph being written: nodes, initializers, and the ONNX tensor holding each layer's output."""

    helper: Any
    elem_type: int
    dtype: type
    dynamic: bool                                   # a sequence input: spatial sizes unknown
    shapes: dict[str, tuple]                        # refcam per-observation output shapes
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)
    tensors: dict[str, str] = field(default_factory=dict)

    def constant(self, name: str, array: Any) -> str:
        """Add an initializer ``name`` holding ``array`` in the graph's float type; return its name."""
        values = np.array(array, dtype=self.dtype, order="C")   # (ascontiguousarray makes 0-d 1-d)
        self.initializers.append(self.helper.make_tensor(name, self.elem_type, values.shape,
                                                         values.tobytes(), raw=True))
        return name

    def node(self, op: str, inputs: list[str], name: str, **attributes: Any) -> str:
        """Add node ``name`` with one output tensor of the same name; return it."""
        self.nodes.append(self.helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    def source(self, layer: Any, i: int = 0) -> str:
        return self.tensors[layer.inputs[i]]

    def input_shape(self, layer: Any) -> tuple:
        return self.shapes[layer.inputs[0]]


# --- layers ----------------------------------------------------------------------------------
def _input(w: _Writer, layer: InputLayer) -> None:
    """The graph input is the raw tensor; the normalisation is written as element-wise nodes."""
    name = x = layer.name
    prefix = f"{name}/normalization"
    steps = _normalization_steps(layer)
    for i, (op, value) in enumerate(steps):
        array = np.asarray(value)
        array = array.reshape((1,) + array.shape) if array.ndim else array
        out = prefix if i == len(steps) - 1 else f"{prefix}/{op.lower()}_{i + 1}"
        x = w.node(op, [x, w.constant(f"{out}/constant", array)], out)
    w.tensors[name] = x


def _normalization_steps(layer: InputLayer) -> list[tuple[str, Any]]:
    """The element-wise ops of the input normalisation, in order, with their constants."""
    mode = layer.normalization
    if mode == "none":
        return []
    if mode == "zerocenter":
        return [("Sub", layer.mean)]
    if mode == "zscore":
        return [("Sub", layer.mean), ("Div", layer.standard_deviation)]
    steps = [("Sub", layer.min), ("Div", layer.max - layer.min)]
    return steps + [("Mul", 2.0), ("Sub", 1.0)] if mode == "rescale-symmetric" else steps


def _pads(w: _Writer, layer: Any, window: tuple, dilation: tuple) -> dict[str, Any]:
    """``pads`` (ONNX ``(begins..., ends...)``), or ``auto_pad`` SAME_UPPER for "same" on an unknown length."""
    if layer.padding == "same" and w.dynamic:
        return {"auto_pad": "SAME_UPPER"}
    spatial = tuple(n or 1 for n in w.input_shape(layer)[1:])
    return {"pads": list(forward_padding(layer.padding, spatial, window, layer.stride, dilation))}


def _conv(w: _Writer, layer: Any) -> None:
    inputs = [w.source(layer), w.constant(f"{layer.name}/weights", layer.weights)]
    if layer.bias is not None:
        inputs.append(w.constant(f"{layer.name}/bias", layer.bias))
    w.tensors[layer.name] = w.node(
        "Conv", inputs, layer.name, kernel_shape=list(layer.filter_size), strides=list(layer.stride),
        dilations=list(layer.dilation_factor), group=layer.groups,
        **_pads(w, layer, layer.filter_size, layer.dilation_factor))


def _pool(w: _Writer, layer: Any) -> None:
    ones = (1,) * len(layer.pool_size)
    extra = {"count_include_pad": int(layer.padding_value == 0)} if hasattr(layer, "padding_value") else {}
    op = "MaxPool" if type(layer) in MAX_POOLING_BY_RANK.values() else "AveragePool"
    w.tensors[layer.name] = w.node(op, [w.source(layer)], layer.name, kernel_shape=list(layer.pool_size),
                                   strides=list(layer.stride), **_pads(w, layer, layer.pool_size, ones), **extra)


def _batch_norm(w: _Writer, layer: BatchNormalizationLayer) -> None:
    names = [w.constant(f"{layer.name}/{p}", getattr(layer, p))
             for p in ("scale", "offset", "trained_mean", "trained_variance")]
    w.tensors[layer.name] = w.node("BatchNormalization", [w.source(layer)] + names, layer.name,
                                   epsilon=layer.epsilon)


def _layer_norm(w: _Writer, layer: LayerNormalizationLayer) -> None:
    """Channel-only layer normalisation: the channel axis moved last, normalised, moved back."""
    rank = len(w.input_shape(layer)) + 1            # with the batch axis
    x, name = w.source(layer), layer.name
    params = [w.constant(f"{name}/scale", layer.scale), w.constant(f"{name}/offset", layer.offset)]
    if rank == 2:
        w.tensors[name] = w.node("LayerNormalization", [x] + params, name, axis=-1, epsilon=layer.epsilon)
        return
    last = w.node("Transpose", [x], f"{name}/channels_last", perm=[0, *range(2, rank), 1])
    w.nodes.append(w.helper.make_node("LayerNormalization", [last] + params, [f"{name}/normalized"], name=name,
                                      axis=-1, epsilon=layer.epsilon))
    w.nodes.append(w.helper.make_node("Transpose", [f"{name}/normalized"], [name], name=f"{name}/channels_first",
                                      perm=[0, rank - 1, *range(1, rank - 1)]))
    w.tensors[name] = name


def _fully_connected(w: _Writer, layer: FullyConnectedLayer) -> None:
    """Gemm on a (batch, features) tensor; a spatial input is flattened in ``flatten_order`` first."""
    x, shape, name = w.source(layer), w.input_shape(layer), layer.name
    if len(shape) > 1:
        n = len(shape) - 1
        perms = {"matlab": [0, 1, *range(n + 1, 1, -1)], "channels-last": [0, *range(2, n + 2), 1]}
        if layer.flatten_order in perms and any(s != 1 for s in shape[1:]):
            x = w.node("Transpose", [x], f"{name}/transpose", perm=perms[layer.flatten_order])
        x = w.node("Flatten", [x], f"{name}/flatten", axis=1)
    inputs = [x, w.constant(f"{name}/weights", layer.weights)]
    if layer.bias is not None:
        inputs.append(w.constant(f"{name}/bias", layer.bias))
    w.tensors[name] = w.node("Gemm", inputs, name, transB=1)


def _dropout(w: _Writer, layer: DropoutLayer) -> None:
    ratio = w.constant(f"{layer.name}/ratio", layer.probability)
    w.tensors[layer.name] = w.node("Dropout", [w.source(layer), ratio], layer.name)


def _combine(w: _Writer, layer: Any) -> None:
    sources = [w.tensors[s] for s in layer.inputs]
    if isinstance(layer, DepthConcatenationLayer):
        w.tensors[layer.name] = w.node("Concat", sources, layer.name, axis=1)
    else:
        w.tensors[layer.name] = w.node("Add" if len(sources) == 2 else "Sum", sources, layer.name)


def _simple(op: str, **attributes: Callable[[Any], Any]) -> Callable[[_Writer, Any], None]:
    """A one-input node ``op`` whose attributes are read from the layer."""
    def write(w: _Writer, layer: Any) -> None:
        values = {key: read(layer) for key, read in attributes.items()}
        w.tensors[layer.name] = w.node(op, [w.source(layer)], layer.name, **values)
    return write


WRITERS: dict[type, Callable[[_Writer, Any], None]] = {
    ImageInputLayer: _input, Image3dInputLayer: _input, SequenceInputLayer: _input,
    GroupedConvolution2dLayer: _conv,
    **{cls: _conv for cls in CONVOLUTION_BY_RANK.values()},
    **{cls: _pool for cls in MAX_POOLING_BY_RANK.values()},
    **{cls: _pool for cls in AVERAGE_POOLING_BY_RANK.values()},
    **{cls: _simple("GlobalAveragePool") for cls in GLOBAL_AVERAGE_POOLING_BY_RANK.values()},
    BatchNormalizationLayer: _batch_norm,
    LayerNormalizationLayer: _layer_norm,
    ReLULayer: _simple("Relu"),
    LeakyReLULayer: _simple("LeakyRelu", alpha=lambda layer: layer.scale),
    SoftmaxLayer: _simple("Softmax", axis=lambda layer: 1),
    FullyConnectedLayer: _fully_connected,
    DropoutLayer: _dropout,
    DepthConcatenationLayer: _combine,
    AdditionLayer: _combine,
}
"""The refcam layer classes :func:`to_onnx` writes, with their writers (output layers are left out)."""


# --- the model -------------------------------------------------------------------------------
def to_onnx(net: Network, path: str | os.PathLike) -> None:
    """Write ``net`` to ``path`` as an ONNX model (opset 17) that ``refcam.load`` reads back.

    The graph input is ``(batch, C, *S)`` in refcam's internal layout (``batch``
    symbolic, and ``time`` for a sequence input); the graph output is the last
    layer before the classification or regression output layer (or the last
    layer). Operators, names and numbers: see the module docstring. No batch
    normalisation or other layer is folded; initializers are float64 unless every
    parameter is float32.

    Raises
    ------
    OptionalDependencyError
        The ``onnx`` package is not installed (``pip install refcam[onnx]``).
    UnsupportedOperationError
        Some layers have no ONNX form refcam writes: all of them are listed, with
        their types and reasons, in one message.

    >>> to_onnx(refcam.load("net.h5"), "net.onnx")     # doctest: +SKIP
    """
    try:
        import onnx
    except ImportError as err:
        raise OptionalDependencyError(
            "writing ONNX files needs the 'onnx' package: pip install refcam[onnx] (or pip install onnx).") from err
    model = _model(onnx, net)
    onnx.checker.check_model(model, full_check=True)
    with open(os.fspath(path), "wb") as f:
        f.write(model.SerializeToString(deterministic=True))


def _model(onnx: Any, net: Network) -> Any:
    """The ModelProto of ``net`` (after every layer has been checked)."""
    layers = [layer for layer in net.layers if not type(layer).is_output_layer]
    _check_supported(net, layers)
    float32 = all(p.dtype == np.float32 for layer in layers for p in layer.params().values())
    elem_type = onnx.TensorProto.FLOAT if float32 else onnx.TensorProto.DOUBLE
    dynamic = None in net.input_layer.per_observation_shape()
    w = _Writer(onnx.helper, elem_type, np.float32 if float32 else np.float64, dynamic, net.output_shapes)
    for layer in layers:
        WRITERS[type(layer)](w, layer)
    last = layers[-1]
    graph = onnx.helper.make_graph(
        w.nodes, net.name or "refcam", [_value_info(onnx, elem_type, net.input_layer.name,
                                                    net.input_layer.per_observation_shape())],
        [_value_info(onnx, elem_type, w.tensors[last.name], _output_shape(net, last.name))],
        initializer=w.initializers)
    from .. import __version__
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                  producer_name="refcam", producer_version=__version__)


def _output_shape(net: Network, name: str) -> tuple:
    """The output's per-observation shape; the time axis stays free when the input's is and it survives."""
    shape = net.output_shapes[name]
    if None in net.input_layer.per_observation_shape() and len(shape) == 2 and shape[1] != 1:
        return (shape[0], None)
    return shape


def _value_info(onnx: Any, elem_type: int, name: str, shape: tuple) -> Any:
    dims = [BATCH] + [TIME if n is None else int(n) for n in shape]
    return onnx.helper.make_tensor_value_info(name, elem_type, dims)


def _check_supported(net: Network, layers: list) -> None:
    """One UnsupportedOperationError listing every layer :func:`to_onnx` cannot write, with its type."""
    problems = [(layer, reason) for layer in layers if (reason := _refusal(net, layer))]
    if problems:
        lines = [f"  {layer.name!r} ({type(layer).__name__}): {reason}" for layer, reason in problems]
        raise UnsupportedOperationError(
            f"refcam cannot write {len(problems)} layer(s) of network {net.name or ''!r} as ONNX:\n"
            + "\n".join(lines) + "\ndocs/import.md lists the layers refcam writes; replace these layers "
            "(or export the network another way).")


def _refusal(net: Network, layer: Any) -> str | None:
    """Why ``layer`` cannot be written, or None."""
    if type(layer) not in WRITERS:
        return "no ONNX form that refcam writes"
    if isinstance(layer, LayerNormalizationLayer):
        axes = layer.normalized_axes(len(net.output_shapes[layer.inputs[0]]) + 1)
        if axes != (1,):
            return (f"normalises internal axes {list(axes)}; refcam writes (and reads) channel-only "
                    "layer normalisation only")
    missing = [p for p in PARAMETERS if getattr(layer, p, ()) is None]
    return f"parameter(s) {missing} not set (an untrained layer)" if missing else None

__all__ = ["OPSET", "WRITERS", "to_onnx"]
