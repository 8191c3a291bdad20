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
# hard functions: the defaults, and coefficients whose kinks (alpha x + beta = 0 or 1) fall inside [-3, 3]
HARD_SIGMOID_DEFAULT = (0.2, 0.5)         # kinks at x = -2.5 and 2.5
HARD_SWISH_DEFAULT = (1.0 / 6.0, 0.5)     # kinks at x = -3 and 3
HARD_GENERAL = (-0.7, 0.3)                # decreasing: kinks at x = 3/7 (u = 0) and -1 (u = 1)
SQRT2 = math.sqrt(2.0)
GELU_K, GELU_C = math.sqrt(2.0 / math.pi), 0.044715


def hard_kinks(alpha: float, beta: float) -> tuple[float, float]:
    """The x where ``alpha x + beta`` is 0 and 1."""
    return (-beta / alpha, (1.0 - beta) / alpha)


def clip01(v: float) -> float:
    return min(max(0.0, v), 1.0)


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
    "swish": (activation.swish, lambda v: v / (1.0 + math.exp(-v)), ()),
    "gelu": (activation.gelu, lambda v: 0.5 * v * (1.0 + math.erf(v / SQRT2)), ()),
    "gelu[tanh]": (lambda x: activation.gelu(x, approximation="tanh"),
                   lambda v: 0.5 * v * (1.0 + math.tanh(GELU_K * (v + GELU_C * v ** 3))), ()),
    "hard_sigmoid": (activation.hard_sigmoid, lambda v: clip01(0.2 * v + 0.5), hard_kinks(*HARD_SIGMOID_DEFAULT)),
    "hard_sigmoid[general]": (lambda x: activation.hard_sigmoid(x, *HARD_GENERAL),
                              lambda v: clip01(HARD_GENERAL[0] * v + HARD_GENERAL[1]), hard_kinks(*HARD_GENERAL)),
    "hard_swish": (activation.hard_swish, lambda v: v * clip01(v / 6.0 + 0.5), hard_kinks(*HARD_SWISH_DEFAULT)),
    "hard_swish[general]": (lambda x: activation.hard_swish(x, *HARD_GENERAL),
                            lambda v: v * clip01(HARD_GENERAL[0] * v + HARD_GENERAL[1]), hard_kinks(*HARD_GENERAL)),
    "erf": (activation.erf, math.erf, ()),
}


def op_name(case: str) -> str:
    """The recorded op of a case: ``gelu[tanh]`` is op ``gelu`` with an option."""
    return case.split("[")[0]


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
    assert [n.op for n in graph_nodes(op(Tensor(x, requires_grad=True)))] == [op_name(name)]
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
        "swish": functional.silu,
        "gelu": functional.gelu,
        "gelu[tanh]": lambda t: functional.gelu(t, approximate="tanh"),
        # torch has no hard sigmoid with free coefficients; hardtanh's derivative is 0 at both ends,
        # as F.hardsigmoid's (test_hard_kinks_match_torch); F.hardsigmoid itself: test_hardsigmoid_matches_torch
        "hard_sigmoid": lambda t: functional.hardtanh(0.2 * t + 0.5, 0.0, 1.0),
        "hard_sigmoid[general]": lambda t: functional.hardtanh(HARD_GENERAL[0] * t + HARD_GENERAL[1], 0.0, 1.0),
        "hard_swish": functional.hardswish,
        "hard_swish[general]": lambda t: t * functional.hardtanh(HARD_GENERAL[0] * t + HARD_GENERAL[1], 0.0, 1.0),
        "erf": torch.erf,
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


# --- the kinks of the hard functions, and F.hardsigmoid itself, against torch --------------------
def torch_value_and_grad(torch, fn, x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x_torch = torch.tensor(x, requires_grad=True)
    y_torch = fn(x_torch)
    y_torch.backward(torch.tensor(g))
    return y_torch.detach().numpy(), x_torch.grad.numpy()


def refcam_value_and_grad(op, x: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x_refcam = Tensor(x, requires_grad=True)
    y_refcam = op(x_refcam)
    [grad_refcam] = grad(y_refcam, [x_refcam], g)
    return y_refcam.data, grad_refcam


def standard_hard_sigmoid_of_u(torch, alpha: float, beta: float):
    """``F.hardsigmoid(6 u - 3)``, ``u = alpha x + beta``: torch's own hard sigmoid after a change of variable."""
    return lambda t: torch.nn.functional.hardsigmoid(6.0 * (alpha * t + beta) - 3.0)


@pytest.mark.crosscheck
@pytest.mark.parametrize("alpha, beta", [HARD_SWISH_DEFAULT, (0.25, 0.5), (-0.5, 0.5), (2.0, -1.0)])
def test_hard_kinks_match_torch(alpha, beta, torch):
    """At ``alpha x + beta = 0`` and ``= 1``: hard sigmoid 0 and 0, hard swish 0 and 1, as torch's autograd.

    The coefficients put the kinks at exact binary numbers, so ``6 u - 3`` is exactly -3 or 3 there.
    """
    kinks = np.array(hard_kinks(alpha, beta))
    assert np.array_equal(alpha * kinks + beta, [0.0, 1.0])
    ones = np.ones(2)
    sigmoid_torch = standard_hard_sigmoid_of_u(torch, alpha, beta)
    _, expected_sigmoid = torch_value_and_grad(torch, sigmoid_torch, kinks, ones)
    _, expected_swish = torch_value_and_grad(torch, lambda t: t * sigmoid_torch(t), kinks, ones)
    _, sigmoid_grad = refcam_value_and_grad(lambda t: activation.hard_sigmoid(t, alpha, beta), kinks, ones)
    _, swish_grad = refcam_value_and_grad(lambda t: activation.hard_swish(t, alpha, beta), kinks, ones)
    np.testing.assert_array_equal(sigmoid_grad, [0.0, 0.0])
    np.testing.assert_array_equal(swish_grad, [0.0, 1.0])
    np.testing.assert_array_equal(sigmoid_grad, expected_sigmoid)
    np.testing.assert_array_equal(swish_grad, expected_swish)
    if (alpha, beta) == HARD_SWISH_DEFAULT:   # torch's own functions at x = -3 and 3
        _, torch_sigmoid_grad = torch_value_and_grad(torch, torch.nn.functional.hardsigmoid, kinks, ones)
        _, torch_swish_grad = torch_value_and_grad(torch, torch.nn.functional.hardswish, kinks, ones)
        np.testing.assert_array_equal(sigmoid_grad, torch_sigmoid_grad)
        np.testing.assert_array_equal(swish_grad, torch_swish_grad)


# torch 2.13's CPU hardsigmoid backward multiplies by 1/6 rounded to float32, even in float64
TORCH_HARDSIGMOID_SLOPE = float(np.float32(1.0 / 6.0))


@pytest.mark.crosscheck
@pytest.mark.parametrize("shape", SHAPES)
def test_hardsigmoid_matches_torch(shape, rng, torch):
    """``F.hardsigmoid`` = ``hard_sigmoid(x, 1/6, 0.5)``; torch's slope is the float32 1/6 (rescaled here)."""
    x = rng.standard_normal(shape) * 3.0
    x[..., 0] = 3.0
    if shape[-1] > 1:
        x[..., 1] = -3.0
    g = rng.standard_normal(shape)
    y_torch, grad_torch = torch_value_and_grad(torch, torch.nn.functional.hardsigmoid, x, g)
    y, grad_x = refcam_value_and_grad(lambda t: activation.hard_sigmoid(t, *HARD_SWISH_DEFAULT), x, g)
    np.testing.assert_allclose(y, y_torch, **CROSS)
    np.testing.assert_allclose(grad_x, grad_torch * ((1.0 / 6.0) / TORCH_HARDSIGMOID_SLOPE), **CROSS)


# --- large |x|: no overflow, the right limits, relative accuracy in the tails --------------------
HUGE = np.array([-1.7e308, -1e200, -1e30, -1e3, 1e3, 1e30, 1e200, 1.7e308])
LIMITS = {  # (y for x -> -inf, y for x -> +inf, dy/dx at both ends); "x": y = x
    "swish": (0.0, "x", (0.0, 1.0)),
    "gelu": (0.0, "x", (0.0, 1.0)),
    "gelu[tanh]": (0.0, "x", (0.0, 1.0)),
    "hard_sigmoid": (0.0, 1.0, (0.0, 0.0)),
    "hard_swish": (0.0, "x", (0.0, 1.0)),
    "erf": (-1.0, 1.0, (0.0, 0.0)),
}


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_large_inputs_do_not_overflow_and_reach_the_limits(name):
    op = ELEMENTWISE[name][0]
    low, high, (slope_low, slope_high) = LIMITS[name]
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        y, grad_x = refcam_value_and_grad(op, HUGE, np.ones_like(HUGE))
    negative = HUGE < 0
    np.testing.assert_array_equal(y[negative], low)
    np.testing.assert_array_equal(y[~negative], HUGE[~negative] if high == "x" else high)
    np.testing.assert_array_equal(grad_x[negative], slope_low)
    np.testing.assert_array_equal(grad_x[~negative], slope_high)


def test_smooth_activations_keep_relative_accuracy_in_the_negative_tail():
    """Where ``1 + erf`` or ``1 + tanh`` would cancel to 0, refcam's values keep every digit."""
    x = np.array([-12.0, -10.0, -5.0, -2.0])  # gelu[tanh] underflows to -0 below about -15
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        swish = activation.swish(Tensor(x)).data
        gelu = activation.gelu(Tensor(x)).data
        gelu_tanh = activation.gelu(Tensor(x), approximation="tanh").data
    z = GELU_K * (x + GELU_C * x ** 3)
    expected = {
        "swish": scalar_map(lambda v: v * math.exp(v) / (1.0 + math.exp(v)), x),
        "gelu": scalar_map(lambda v: 0.5 * v * math.erfc(-v / SQRT2), x),
        "gelu[tanh]": x * scalar_map(lambda v: math.exp(v) / (1.0 + math.exp(v)), 2.0 * z),  # (1 + tanh z)/2
    }
    for name, found in {"swish": swish, "gelu": gelu, "gelu[tanh]": gelu_tanh}.items():
        assert np.all(found < 0.0), name
        np.testing.assert_allclose(found, expected[name], rtol=F64["rtol"], atol=0.0, err_msg=name)


def test_gelu_rejects_unknown_approximations():
    for bad in ["erf", "TANH", "", None]:
        with pytest.raises(LayerConfigError, match="approximation"):
            activation.gelu(Tensor(np.zeros(2)), approximation=bad)


@pytest.mark.parametrize("op", [activation.hard_sigmoid, activation.hard_swish])
def test_hard_functions_reject_non_finite_coefficients(op):
    for alpha, beta in [(math.nan, 0.5), (0.2, math.inf), (-math.inf, 0.0)]:
        with pytest.raises(LayerConfigError, match="finite alpha and beta"):
            op(Tensor(np.zeros(2)), alpha, beta)
