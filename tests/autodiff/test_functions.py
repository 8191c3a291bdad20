"""Every operator of refcam.autodiff.functions: forward against NumPy, VJP by check_vjp.

Inputs are seeded and kept off kinks: ``log`` and fractional powers see
positive numbers, divisors stay away from 0, ``max`` inputs have no ties (well
separated values, so a finite-difference step cannot change the winner).
The rule at ties of ``max`` is asserted exactly.
"""
from __future__ import annotations

import numpy as np
import pytest

from refcam.autodiff import Tensor, functions as F, grad, unbroadcast
from refcam.testing import check_vjp
from tests.tolerances import F32, F64


def normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape)


def away_from_zero(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Magnitudes in [0.5, 2], random signs: a safe divisor."""
    return rng.uniform(0.5, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def without_ties(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Distinct values at least 0.1 apart, in random positions."""
    size = int(np.prod(shape, dtype=int))
    return (rng.permutation(size) * 0.1 + rng.uniform(0.0, 0.01, size)).reshape(shape)


# -- elementwise binary ops with broadcasting -----------------------------------
BINARY = [("add", np.add), ("subtract", np.subtract), ("multiply", np.multiply), ("divide", np.divide)]
BROADCAST_PAIRS = [
    ((3, 4), (3, 4)),
    ((2, 3, 4), (4,)),        # b stretched over leading axes
    ((4,), (2, 3, 4)),        # a stretched over leading axes
    ((2, 1, 4), (1, 3, 1)),   # both stretched
    ((3, 1), (1, 5)),
    ((), (2, 3)),             # 0-d on the left
    ((2, 3), ()),             # 0-d on the right
    ((1, 1), (2, 3)),
]


@pytest.mark.parametrize("name, numpy_op", BINARY)
@pytest.mark.parametrize("shape_a, shape_b", BROADCAST_PAIRS)
def test_binary_op_matches_numpy_and_its_vjp(rng, name, numpy_op, shape_a, shape_b):
    op = getattr(F, name)
    a = normal(rng, shape_a)
    b = away_from_zero(rng, shape_b)
    y = op(Tensor(a), Tensor(b))
    np.testing.assert_allclose(y.data, numpy_op(a, b), **F64)
    assert y.shape == np.broadcast_shapes(shape_a, shape_b)
    check_vjp(op, [a, b])
    leaf_a, leaf_b = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    grad_a, grad_b = grad(op(leaf_a, leaf_b), [leaf_a, leaf_b])
    assert np.shape(grad_a) == shape_a and np.shape(grad_b) == shape_b


@pytest.mark.parametrize("name, numpy_op", BINARY)
@pytest.mark.parametrize("constant", [2.5, np.float64(-1.5), np.array(0.75)])
def test_binary_op_with_a_scalar_on_either_side(rng, name, numpy_op, constant):
    op = getattr(F, name)
    x = away_from_zero(rng, (3, 2))
    np.testing.assert_allclose(op(Tensor(x), constant).data, numpy_op(x, constant), **F64)
    np.testing.assert_allclose(op(constant, Tensor(x)).data, numpy_op(constant, x), **F64)
    check_vjp(lambda t: op(t, constant), [x])
    check_vjp(lambda t: op(constant, t), [x])


@pytest.mark.parametrize("symbol_op, numpy_op", [
    (lambda a, b: a + b, np.add), (lambda a, b: a - b, np.subtract),
    (lambda a, b: a * b, np.multiply), (lambda a, b: a / b, np.divide),
])
def test_operators_and_reflected_operators(rng, symbol_op, numpy_op):
    x = away_from_zero(rng, (2, 3))
    c = away_from_zero(rng, (3,))
    for left, right, expected in [(Tensor(x), 3.0, numpy_op(x, 3.0)), (3.0, Tensor(x), numpy_op(3.0, x)),
                                  (Tensor(x), c, numpy_op(x, c)), (c, Tensor(x), numpy_op(c, x)),
                                  (np.float64(2.0), Tensor(x), numpy_op(2.0, x))]:
        y = symbol_op(left, right)
        assert isinstance(y, Tensor)
        np.testing.assert_allclose(y.data, expected, **F64)
    check_vjp(lambda t: symbol_op(c, t), [x])
    check_vjp(lambda t: symbol_op(t, c), [x])


def test_unbroadcast_sums_over_stretched_axes(rng):
    g = normal(rng, (2, 3, 4))
    np.testing.assert_allclose(unbroadcast(g, (3, 1)), g.sum(axis=(0, 2))[:, None], **F64)
    np.testing.assert_allclose(unbroadcast(g, ()), g.sum(), **F64)
    assert unbroadcast(g, (2, 3, 4)) is g


# -- elementwise unary ops ------------------------------------------------------
def test_negative(rng):
    x = normal(rng, (3, 4))
    np.testing.assert_array_equal((-Tensor(x)).data, -x)
    check_vjp(F.negative, [x])
    check_vjp(lambda t: -t, [x])


@pytest.mark.parametrize("exponent", [2, 3.0, 0.5, -1.5, 1.0])
def test_power_positive_base(rng, exponent):
    x = rng.uniform(0.5, 2.0, (3, 4))
    np.testing.assert_allclose((Tensor(x) ** exponent).data, x ** exponent, **F64)
    check_vjp(lambda t: F.power(t, exponent), [x])


@pytest.mark.parametrize("exponent", [2, 3])
def test_power_integer_exponent_negative_base(rng, exponent):
    x = -rng.uniform(0.5, 2.0, (5,))
    np.testing.assert_allclose((Tensor(x) ** exponent).data, x ** exponent, **F64)
    check_vjp(lambda t: t ** exponent, [x])


def test_exp(rng):
    x = normal(rng, (2, 3, 2))
    np.testing.assert_allclose(F.exp(Tensor(x)).data, np.exp(x), **F64)
    check_vjp(F.exp, [x])
    check_vjp(lambda t: t.exp(), [x])


def test_log(rng):
    x = rng.uniform(0.3, 3.0, (2, 5))
    np.testing.assert_allclose(F.log(Tensor(x)).data, np.log(x), **F64)
    check_vjp(F.log, [x])
    check_vjp(lambda t: t.log(), [x])


# -- reductions -----------------------------------------------------------------
REDUCTION_AXES = [None, 0, 1, -1, -3, (0, 2), (2, 0), (-1, 0), (0, 1, 2)]


@pytest.mark.parametrize("name", ["sum", "mean", "max"])
@pytest.mark.parametrize("axis", REDUCTION_AXES)
@pytest.mark.parametrize("keepdims", [False, True])
def test_reduction_matches_numpy_and_its_vjp(rng, name, axis, keepdims):
    x = without_ties(rng, (2, 3, 4))
    y = getattr(F, name)(Tensor(x), axis, keepdims)
    expected = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.data, expected, **F64)
    check_vjp(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), [x])


def test_sum_and_mean_gradients_are_exact(rng):
    x = Tensor(normal(rng, (2, 5)), requires_grad=True)
    np.testing.assert_array_equal(grad(x.sum(axis=1), [x])[0], np.ones((2, 5)))
    np.testing.assert_array_equal(grad(x.mean(axis=1), [x])[0], np.full((2, 5), 0.2))


def test_max_of_a_vector_without_ties_routes_gradient_to_the_winner():
    x = Tensor(np.array([1.0, 4.0, -2.0, 3.0]), requires_grad=True)
    np.testing.assert_array_equal(grad(x.max(), [x])[0], [0.0, 1.0, 0.0, 0.0])


def test_max_shares_the_gradient_equally_among_ties():
    x = Tensor(np.array([[3.0, 1.0, 3.0, 3.0],
                         [2.0, 5.0, 5.0, 0.0]]), requires_grad=True)
    np.testing.assert_array_equal(grad(x.max(), [x])[0],
                                  [[0.0, 0.0, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0]])
    np.testing.assert_array_equal(grad(x.max(axis=1), [x], np.array([6.0, 4.0]))[0],
                                  [[2.0, 0.0, 2.0, 2.0], [0.0, 2.0, 2.0, 0.0]])
    columns = Tensor(np.array([[3.0, 1.0, 4.0],
                               [3.0, 2.0, 4.0]]), requires_grad=True)
    np.testing.assert_array_equal(grad(columns.max(axis=0, keepdims=True), [columns])[0],
                                  [[0.5, 0.0, 0.5], [0.5, 1.0, 0.5]])
    flat = Tensor(np.full(4, 7.0), requires_grad=True)
    np.testing.assert_array_equal(grad(flat.max(), [flat])[0], np.full(4, 0.25))


# -- shape ops ------------------------------------------------------------------
@pytest.mark.parametrize("new_shape", [(6, 4), (4, -1), (24,), (2, 2, 3, 2), (1, 24, 1)])
def test_reshape(rng, new_shape):
    x = normal(rng, (2, 3, 4))
    np.testing.assert_array_equal(F.reshape(Tensor(x), new_shape).data, x.reshape(new_shape))
    np.testing.assert_array_equal(Tensor(x).reshape(new_shape).data, x.reshape(new_shape))
    np.testing.assert_array_equal(Tensor(x).reshape(*new_shape).data, x.reshape(*new_shape))
    check_vjp(lambda t: t.reshape(new_shape), [x])
    check_vjp(lambda t: t.reshape(*new_shape), [x])


@pytest.mark.parametrize("axes", [None, (0, 1, 2), (2, 0, 1), (1, 2, 0), (-1, 0, -2)])
def test_transpose(rng, axes):
    x = normal(rng, (2, 3, 4))
    expected = x.transpose(axes)
    np.testing.assert_array_equal(F.transpose(Tensor(x), axes).data, expected)
    np.testing.assert_array_equal(Tensor(x).transpose(axes).data, expected)
    check_vjp(lambda t: F.transpose(t, axes), [x])
    if axes is not None:
        np.testing.assert_array_equal(Tensor(x).transpose(*axes).data, expected)
        check_vjp(lambda t: t.transpose(*axes), [x])


def test_transpose_without_arguments_and_T(rng):
    x = normal(rng, (2, 3, 4))
    np.testing.assert_array_equal(Tensor(x).transpose().data, x.T)
    np.testing.assert_array_equal(Tensor(x).T.data, x.T)
    check_vjp(lambda t: t.T, [x])
    check_vjp(lambda t: t.transpose(), [x])


# -- indexing -------------------------------------------------------------------
INDICES = {
    "integer": (1, 2),
    "basic slices": (slice(None), slice(1, 3), slice(None, None, 2)),
    "negative steps": (slice(None, None, -1), slice(2, 0, -1), slice(None, None, -3)),
    "ellipsis": (Ellipsis, 1),
    "newaxis": (None, slice(None), None, 1),
    "ellipsis and newaxis": (0, Ellipsis, None),
    "repeated integer array": np.array([0, 1, 0, 0]),
    "repeated pair of arrays": (np.array([1, 1, 0, 1]), slice(None), np.array([3, 3, 0, 3])),
    "2-D integer array": (slice(None), np.array([[0, 2], [2, 2]])),
    "negative integer array": (Ellipsis, np.array([-1, -1, 0])),
    "list": [1, 1, 0],
    "boolean mask": "mask",
    "boolean mask on one axis": (slice(None), np.array([True, False, True])),
    "tuple mix": (np.array([0, 1, 1]), None, slice(None, None, -2), 2),
}


@pytest.mark.parametrize("case", list(INDICES))
def test_getitem(rng, case):
    x = normal(rng, (2, 3, 4))
    index = x > 0.2 if isinstance(INDICES[case], str) else INDICES[case]
    np.testing.assert_array_equal(Tensor(x)[index].data, x[index])
    check_vjp(lambda t: t[index], [x])
    check_vjp(lambda t: F.getitem(t, index), [x])


def test_getitem_gradient_accumulates_at_repeated_indices():
    x = Tensor(np.arange(5.0), requires_grad=True)
    y = x[np.array([3, 0, 3, 3, 1])]
    (g,) = grad(y, [x], np.array([1.0, 10.0, 100.0, 1000.0, 10000.0]))
    np.testing.assert_array_equal(g, [10.0, 10000.0, 0.0, 1101.0, 0.0])


def test_getitem_with_a_tensor_index():
    x = Tensor(np.arange(6.0), requires_grad=True)
    index = Tensor(np.array([5, 5, 2]))
    np.testing.assert_array_equal(x[index].data, [5.0, 5.0, 2.0])
    np.testing.assert_array_equal(grad(x[index], [x])[0], [0.0, 0.0, 1.0, 0.0, 0.0, 2.0])


# -- matmul ---------------------------------------------------------------------
MATMUL_SHAPES = [
    ((4,), (4,)),
    ((4,), (4, 3)),
    ((2, 4), (4,)),
    ((2, 4), (4, 3)),
    ((5, 2, 4), (5, 4, 3)),      # batched
    ((5, 2, 4), (4, 3)),         # stack @ matrix
    ((2, 4), (5, 4, 3)),         # matrix @ stack
    ((3, 1, 2, 4), (5, 4, 3)),   # broadcast stacks
    ((1, 2, 4), (3, 4, 2)),
    ((5, 2, 4), (4,)),           # stack @ vector
    ((4,), (5, 4, 3)),           # vector @ stack
]


@pytest.mark.parametrize("shape_a, shape_b", MATMUL_SHAPES)
def test_matmul(rng, shape_a, shape_b):
    a = normal(rng, shape_a)
    b = normal(rng, shape_b)
    np.testing.assert_allclose(F.matmul(Tensor(a), Tensor(b)).data, a @ b, **F64)
    np.testing.assert_allclose((Tensor(a) @ Tensor(b)).data, a @ b, **F64)
    np.testing.assert_allclose((a @ Tensor(b)).data, a @ b, **F64)
    check_vjp(F.matmul, [a, b])
    check_vjp(lambda t: t @ b, [a])
    check_vjp(lambda t: a @ t, [b])


def test_matmul_gradient_of_a_dot_product_is_exact():
    a = Tensor(np.array([1.0, 2.0, 3.0]), requires_grad=True)
    b = Tensor(np.array([4.0, 5.0, 6.0]), requires_grad=True)
    grad_a, grad_b = grad(a @ b, [a, b], np.array(2.0))
    np.testing.assert_array_equal(grad_a, [8.0, 10.0, 12.0])
    np.testing.assert_array_equal(grad_b, [2.0, 4.0, 6.0])


# -- dtype ----------------------------------------------------------------------
FLOAT32_CASES = {
    "add scalar": lambda t: t + 1.5,
    "radd scalar": lambda t: 1.5 + t,
    "subtract scalar": lambda t: t - 1.5,
    "rsubtract scalar": lambda t: 1.5 - t,
    "multiply scalar": lambda t: t * 0.3,
    "rmultiply numpy scalar": lambda t: np.float64(0.3) * t,
    "multiply 0-d float64 array": lambda t: t * np.array(0.3),
    "divide scalar": lambda t: t / 3.0,
    "rdivide scalar": lambda t: 3.0 / t,
    "negative": lambda t: -t,
    "power": lambda t: t ** 1.5,
    "exp": lambda t: t.exp(),
    "log": lambda t: t.log(),
    "sum": lambda t: t.sum(axis=0),
    "mean": lambda t: t.mean(axis=(0, -1), keepdims=True),
    "max": lambda t: t.max(axis=-1),
    "reshape": lambda t: t.reshape(4, 6),
    "transpose": lambda t: t.T,
    "getitem": lambda t: t[np.array([1, 1]), ::-1],
    "matmul": lambda t: t @ t.transpose(0, 2, 1),
    "self product": lambda t: t * t / (t + 1.0),
}


@pytest.mark.parametrize("case", list(FLOAT32_CASES))
def test_float32_stays_float32_values_and_gradients(rng, case):
    fn = FLOAT32_CASES[case]
    x64 = without_ties(rng, (2, 3, 4)) + 0.5
    x32 = Tensor(x64.astype(np.float32), requires_grad=True)
    y32 = fn(x32)
    assert y32.dtype == np.float32
    (g32,) = grad(y32, [x32])
    assert g32.dtype == np.float32
    x = Tensor(x64.astype(np.float32).astype(np.float64), requires_grad=True)
    y = fn(x)
    np.testing.assert_allclose(y32.data, y.data, **F32)
    np.testing.assert_allclose(g32, grad(y, [x])[0], **F32)


def test_integer_tensor_times_a_fraction_is_not_truncated():
    ints = Tensor(np.array([1, 2, 3]))
    np.testing.assert_array_equal((ints * 0.5).data, [0.5, 1.0, 1.5])
