"""ONNX element-wise operators of modern CNNs as refcam layers: products of tensors and activations.

Converters of the same form as :mod:`refcam.io.onnx_ops` (merged with its
``CONVERTERS`` by :mod:`refcam.io.onnx_import`); the maths lives in the layers:

=====================  ===================================================================
ONNX                   refcam
=====================  ===================================================================
Mul of two tensors     MultiplicationLayer: both tensors of one rank and layout, every axis
                       of size 1 or the output's (squeeze-and-excitation ``(B, C, 1, 1) *
                       (B, C, H, W)``, CBAM's ``(B, 1, H, W) * (B, C, H, W)``); Mul by a
                       constant stays a ScalingLayer
Sigmoid + Mul          SwishLayer for ``x * Sigmoid(x)`` (PyTorch's SiLU) when the Mul is
                       the Sigmoid's only reader; named after the Mul
HardSigmoid            HardSigmoidLayer(alpha, beta) (ONNX defaults 0.2, 0.5; PyTorch
                       writes alpha = float32(1/6))
HardSigmoid + Mul      HardSwishLayer(alpha, beta) for ``x * HardSigmoid(x)``, as above
HardSwish              HardSwishLayer() (ONNX fixes alpha 1/6, beta 1/2)
Gelu (opset 20)        GELULayer(approximate "none" or "tanh")
Erf                    ErfLayer (the exact GELU of opsets below 20 is
                       ``Div(sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 1/2``: one layer each)
Pow by 1 ... 4         the tensor itself (1), MultiplicationLayer of 2 to 4 copies (the tanh
                       GELU's ``x^3``); another exponent is refused
=====================  ===================================================================

Rule for the fusions: ``x * f(x)`` becomes one layer only when the product reads
exactly ``x`` and ``f(x)``, and nothing else reads ``f(x)`` (nor is it the
graph output); otherwise the two nodes become two layers, which compute the
same numbers. The GELU chains of opsets below 20 are not fused: their
constants (``sqrt 2``, ``0.044715``, ``sqrt(2/pi)``) are float32 in the file,
and the layers compute with exactly those, so they agree with a float64
``nn.GELU`` to about 1e-8 relative, not 1e-16.

Refused: Div and Sub of two network tensors, Mul of tensors of different
ranks or layouts (ONNX broadcasts the smaller from the right, which pairs the
channel axis with a spatial one), a Mul reading a tensor with inserted or
grouped axes.
"""
from __future__ import annotations

import math

from ..errors import FileFormatError, UnsupportedOperationError
from ..layers import ErfLayer, GELULayer, HardSigmoidLayer, HardSwishLayer, MultiplicationLayer, SwishLayer
from .onnx_graph import DEFAULT_DOMAINS, ImportState, Node, Value
from .onnx_ops import CONVERTERS as BASE_CONVERTERS

MAX_POW_EXPONENT = 4        # Pow(x, n) for n = 1 ... 4 becomes a product of n copies
GELU_APPROXIMATIONS = ("none", "tanh")     # ONNX's approximate, GELULayer's approximation alike
# refused forms of these ops keep their input's shape (the importer goes on with a stand-in)
ELEMENTWISE_SHAPE_KEEPING = frozenset({"HardSigmoid", "HardSwish", "Gelu", "Erf", "Pow"})


# --- products ------------------------------------------------------------------------------
def convert_mul(state: ImportState, node: Node) -> None:
    """Mul of two network tensors -> MultiplicationLayer; by a constant -> ScalingLayer (onnx_ops)."""
    if len(node.inputs) != 2:
        raise FileFormatError(f"{node.label} has {len(node.inputs)} inputs; Mul has two.")
    if any(state.is_constant(tensor) for tensor in node.inputs):
        BASE_CONVERTERS["Mul"](state, node)
        return
    multiply(state, node, [state.value(node, 0, plain=False), state.value(node, 1, plain=False)])


def multiply(state: ImportState, node: Node, sources: list[Value]) -> None:
    """MultiplicationLayer of ``sources`` (network tensors of one rank and layout), keeping that layout."""
    first = sources[0]
    if any(value.onnx_rank != first.onnx_rank for value in sources):
        raise UnsupportedOperationError(
            f"{node.label}: multiplies tensors of per-observation shapes "
            f"{[value.onnx_shape for value in sources]}; refcam multiplies tensors with one number of axes "
            "(ONNX broadcasts the smaller from the right, pairing its channel axis with a spatial one).")
    if any((value.perm, value.squeezed) != (first.perm, first.squeezed) for value in sources):
        raise UnsupportedOperationError(f"{node.label}: multiplies tensors held in different layouts.")
    state.add(node, MultiplicationLayer, sources, layout_from=first, num_inputs=len(sources))


def convert_pow(state: ImportState, node: Node) -> None:
    """Pow(x, n) for a constant whole n from 1 to :data:`MAX_POW_EXPONENT`: x itself, or x * ... * x."""
    x = state.value(node, 0, plain=False)
    exponent = state.constant(node, 1)
    if exponent.size != 1:
        raise UnsupportedOperationError(f"{node.label}: exponent of shape {exponent.shape}; refcam imports Pow "
                                        "by one number.")
    n = float(exponent.reshape(-1)[0])
    if n != math.floor(n) or not 1 <= n <= MAX_POW_EXPONENT:
        raise UnsupportedOperationError(
            f"{node.label}: Pow with exponent {n}; refcam imports Pow by a whole number from 1 to "
            f"{MAX_POW_EXPONENT} (a product of that many copies).")
    if n == 1:
        state.alias(node, x)
        return
    multiply(state, node, [x] * int(n))


# --- activations ---------------------------------------------------------------------------
def gating_product(state: ImportState, node: Node) -> Node | None:
    """The Mul computing ``x * node(x)`` when it is the only reader of ``node``'s output, else None."""
    gate = node.outputs[0]
    product = state.sole_consumer(gate)
    if (product is None or product.op_type != "Mul" or product.domain not in DEFAULT_DOMAINS
            or product.name in state.graph.unknown or product.name in state.fused or len(product.inputs) != 2):
        return None
    return product if sorted(product.inputs) == sorted((node.inputs[0], gate)) else None


def convert_sigmoid(state: ImportState, node: Node) -> None:
    """Sigmoid -> SigmoidLayer, or with the Mul of ``x * Sigmoid(x)`` one SwishLayer (module docstring)."""
    x = state.value(node, 0, plain=False)
    product = gating_product(state, node)
    if product is None:
        BASE_CONVERTERS["Sigmoid"](state, node)
        return
    state.fused.add(product.name)
    state.add(product, SwishLayer, [x], layout_from=x)


def convert_hard_sigmoid(state: ImportState, node: Node) -> None:
    """HardSigmoid(alpha, beta) -> HardSigmoidLayer; with the Mul of ``x * HardSigmoid(x)`` a HardSwishLayer."""
    x = state.value(node, 0, plain=False)
    slope = {"alpha": node.attr("alpha", "float", 0.2), "beta": node.attr("beta", "float", 0.5)}
    product = gating_product(state, node)
    if product is None:
        state.add(node, HardSigmoidLayer, [x], layout_from=x, **slope)
        return
    state.fused.add(product.name)
    state.add(product, HardSwishLayer, [x], layout_from=x, **slope)


def convert_hard_swish(state: ImportState, node: Node) -> None:
    """HardSwish -> HardSwishLayer() (alpha 1/6, beta 1/2, as ONNX defines it)."""
    x = state.value(node, 0, plain=False)
    state.add(node, HardSwishLayer, [x], layout_from=x)


def convert_gelu(state: ImportState, node: Node) -> None:
    """Gelu (opset 20) -> GELULayer with the node's ``approximate`` ("none" or "tanh")."""
    x = state.value(node, 0, plain=False)
    approximate = node.attr("approximate", "string", "none")
    if approximate not in GELU_APPROXIMATIONS:
        raise FileFormatError(f"{node.label}: approximate {approximate!r}; ONNX's Gelu has 'none' or 'tanh'.")
    state.add(node, GELULayer, [x], layout_from=x, approximation=approximate)


def convert_erf(state: ImportState, node: Node) -> None:
    """Erf -> ErfLayer."""
    x = state.value(node, 0, plain=False)
    state.add(node, ErfLayer, [x], layout_from=x)


ELEMENTWISE_CONVERTERS = {
    "Mul": convert_mul,
    "Pow": convert_pow,
    "Sigmoid": convert_sigmoid,
    "HardSigmoid": convert_hard_sigmoid,
    "HardSwish": convert_hard_swish,
    "Gelu": convert_gelu,
    "Erf": convert_erf,
}

__all__ = ["ELEMENTWISE_CONVERTERS", "ELEMENTWISE_SHAPE_KEEPING", "convert_mul", "convert_pow", "convert_sigmoid",
           "convert_hard_sigmoid", "convert_hard_swish", "convert_gelu", "convert_erf", "gating_product",
           "multiply"]
