"""Activations: forward against scalar formulas, VJPs by finite differences, kinks, torch, dtype, stability."""
from __future__ import annotations

import math

import numpy as np
import pytest

from refcam.autodiff import Tensor, grad, graph_nodes
from refcam.errors import LayerConfigError
from refcam.ops import activation
from refcam.testing import check_vjp
from tests.ops.naive_ops import softmax_loops
from tests.tolerances import CROSS, F32, F64

SHAPES = [(3, 4), (2, 3, 5), (2, 3, 4, 3), (1, 2, 3, 2, 2)]  # (B, C, *spatial), 0..3 spatial axes
CEILING = 1.5
LEAK = 0.2


def off_kinks(rng: np.random.Generator, shape: tuple[int, ...], kinks: tuple[float, ...],
              gap: float = 0.05) -> np.ndarray:
    """Random values in [-3, 3] at least ``gap`` away from every kink."""
    x = rng.uniform(-3.0, 3.0, size=shape)
    for kink in kinks:
        near = np.abs(x - kink) < gap
        x[near] = kink + np.where(x[near] >= kink, gap, -gap) * 2.0
    return x


def scalar_map(fn, x: np.ndarray) -> np.ndarray:
    """Apply a Python scalar function to every element (the naive twin of an element-wise op)."""
    return np.array([fn(float(v)) for v in x.ravel()]).reshape(x.shape)


ELEMENTWISE = {
    # name: (refcam op, scalar formula, kinks)
    "relu": (activation.relu, lambda v: max(0.0, v), (0.0,)),
    "leaky_relu": (lambda x: activation.leaky_relu(x, scale=LEAK),
                   lambda v: v if v > 0.0 else LEAK * v, (0.0,)),
    "clipped_relu": (lambda x: activation.clipped_relu(x, CEILING),
                     lambda v: min(max(0.0, v), CEILING), (0.0, CEILING)),
    "sigmoid": (activation.sigmoid, lambda v: 1.0 / (1.0 + math.exp(-v)), ()),
    "tanh": (activation.tanh, math.tanh, ()),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("shape", SHAPES)
def test_elementwise_forward_matches_scalar_formula(name, shape, rng):
    op, formula, kinks = ELEMENTWISE[name]
    x = off_kinks(rng, shape, kinks)
    np.testing.assert_allclose(op(Tensor(x)).data, scalar_map(formula, x), **F64)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("shape", SHAPES)
def test_elementwise_vjp(name, shape, rng):
    op, _, kinks = ELEMENTWISE[name]
    check_vjp(op, [off_kinks(rng, shape, kinks)])


@pytest.mark.parametrize("axis", [1, 2, -1])
@pytest.mark.parametrize("shape", SHAPES[1:])
def test_softmax_forward_matches_loops_and_vjp(shape, axis, rng):
    x = rng.standard_normal(shape) * 3.0
    y = activation.softmax(Tensor(x), axis=axis).data
    np.testing.assert_allclose(y, softmax_loops(x, axis), **F64)
    np.testing.assert_allclose(y.sum(axis=axis), 1.0, **F64)
    check_vjp(lambda t: activation.softmax(t, axis=axis), [x])


def test_softmax_default_is_over_channels_per_position(rng):
    x = rng.standard_normal((2, 4, 3, 2))
    np.testing.assert_allclose(activation.softmax(Tensor(x)).data, softmax_loops(x, 1), **F64)


def test_softmax_is_stable_for_large_inputs(rng):
    small = rng.standard_normal((2, 5, 3))
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = activation.softmax(Tensor(1000.0 + small)).data
        y_negative = activation.softmax(Tensor(-1000.0 + small)).data
    expected = softmax_loops(small, 1)
    np.testing.assert_allclose(y, expected, rtol=F64["rtol"], atol=0.0)
    np.testing.assert_allclose(y_negative, expected, rtol=F64["rtol"], atol=0.0)


def test_sigmoid_is_stable_and_accurate_in_both_tails():
    x = np.array([-1000.0, -40.0, -1.0, 0.0, 1.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y = activation.sigmoid(Tensor(x)).data
    expected = np.array([0.0, math.exp(-40.0) / (1.0 + math.exp(-40.0)), 1.0 / (1.0 + math.e), 0.5,
                         1.0 / (1.0 + math.exp(-1.0)), 1.0, 1.0])
    np.testing.assert_allclose(y, expected, rtol=F64["rtol"], atol=0.0)  # relative, also at 4e-18


def test_kink_rules():
    x = Tensor(np.array([0.0, CEILING]), requires_grad=True)
    ones = np.ones(2)
    [relu_grad] = grad(activation.relu(x), [x], ones)
    [leaky_grad] = grad(activation.leaky_relu(x, scale=LEAK), [x], ones)
    [clipped_grad] = grad(activation.clipped_relu(x, CEILING), [x], ones)
    np.testing.assert_array_equal(relu_grad, [0.0, 1.0])
    np.testing.assert_array_equal(leaky_grad, [LEAK, 1.0])
    np.testing.assert_array_equal(clipped_grad, [0.0, 0.0])


@pytest.mark.parametrize("ceiling", [0.0, -1.0])
def test_clipped_relu_rejects_non_positive_ceiling(ceiling):
    with pytest.raises(LayerConfigError, match="positive ceiling"):
        activation.clipped_relu(Tensor(np.zeros(2)), ceiling)


OPS_BY_NAME = {name: op for name, (op, _, _) in ELEMENTWISE.items()}
OPS_BY_NAME["softmax"] = activation.softmax


@pytest.mark.parametrize("name", sorted(OPS_BY_NAME))
def test_float32_in_float32_out(name, rng):
    x = off_kinks(rng, (2, 3, 4), (0.0, CEILING))
    op = OPS_BY_NAME[name]
    x32 = Tensor(x.astype(np.float32), requires_grad=True)
    y32 = op(x32)
    [grad32] = grad(y32, [x32], np.ones(y32.shape, dtype=np.float32))
    assert y32.dtype == np.float32 and grad32.dtype == np.float32
    np.testing.assert_allclose(y32.data, op(Tensor(x)).data, **F32)


@pytest.mark.parametrize("name", sorted(OPS_BY_NAME))
def test_records_one_node_and_nothing_without_grad(name, rng):
    x = rng.standard_normal((2, 3))
    op = OPS_BY_NAME[name]
    assert [n.op for n in graph_nodes(op(Tensor(x, requires_grad=True)))] == [name]
    assert op(Tensor(x)).node is None


def torch_ops(torch):
    """refcam op name -> the torch.nn.functional call it must equal."""
    functional = torch.nn.functional
    return {
        "relu": functional.relu,
        "leaky_relu": lambda t: functional.leaky_relu(t, negative_slope=LEAK),
        "clipped_relu": lambda t: functional.hardtanh(t, min_val=0.0, max_val=CEILING),
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "softmax": lambda t: functional.softmax(t, dim=1),
    }


@pytest.mark.crosscheck
@pytest.mark.parametrize("name", sorted(OPS_BY_NAME))
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_torch(name, shape, rng, torch):
    x = rng.standard_normal(shape) * 2.0
    x[..., 0] = 0.0  # torch and refcam also agree at the kinks
    if shape[-1] > 1:
        x[..., 1] = CEILING
    g = rng.standard_normal(shape)
    x_torch = torch.tensor(x, requires_grad=True)
    y_torch = torch_ops(torch)[name](x_torch)
    y_torch.backward(torch.tensor(g))
    x_refcam = Tensor(x, requires_grad=True)
    y_refcam = OPS_BY_NAME[name](x_refcam)
    [grad_refcam] = grad(y_refcam, [x_refcam], g)
    np.testing.assert_allclose(y_refcam.data, y_torch.detach().numpy(), **CROSS)
    np.testing.assert_allclose(grad_refcam, x_torch.grad.numpy(), **CROSS)
