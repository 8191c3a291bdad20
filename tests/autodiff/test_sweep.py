"""The reverse sweep: accumulation, grad vs backward, needs flags, grad_output checks."""
from __future__ import annotations

import numpy as np
import pytest

from refcam.autodiff import Tensor, backward, grad, record
from refcam.errors import ShapeError
from refcam.testing import check_vjp
from tests.tolerances import F64


# -- gradient accumulation --------------------------------------------------------
def test_tensor_used_twice_in_one_op_gets_the_sum(rng):
    data = rng.standard_normal(4)
    x = Tensor(data, requires_grad=True)
    np.testing.assert_allclose(grad(x * x, [x])[0], 2.0 * data, **F64)
    np.testing.assert_array_equal(grad(x + x, [x])[0], np.full(4, 2.0))
    np.testing.assert_array_equal(grad(x - x, [x])[0], np.zeros(4))


def test_diamond_graph_sums_both_branches(rng):
    data = rng.uniform(0.5, 2.0, 3)
    x = Tensor(data, requires_grad=True)
    y = x.exp()                       # y = f(x)
    z = y * y + y.log()               # z = g(y) + h(y)
    expected = (2.0 * np.exp(data) + 1.0 / np.exp(data)) * np.exp(data)
    np.testing.assert_allclose(grad(z, [x])[0], expected, **F64)
    check_vjp(lambda t: t.exp() * t.exp() + t.exp().log(), [data])


def test_gradient_with_respect_to_an_intermediate_tensor(rng):
    data = rng.standard_normal(3)
    x = Tensor(data, requires_grad=True)
    y = x * 3.0
    z = y * y
    grad_y, grad_x = grad(z, [y, x])
    np.testing.assert_allclose(grad_y, 2.0 * 3.0 * data, **F64)
    np.testing.assert_allclose(grad_x, 18.0 * data, **F64)


def test_input_not_on_the_path_gets_zeros_of_its_shape_and_dtype():
    x = Tensor(np.ones(3), requires_grad=True)
    unused = Tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    constant = Tensor(np.ones(3))
    grad_x, grad_unused, grad_constant = grad(x * constant, [x, unused, constant])
    np.testing.assert_array_equal(grad_x, np.ones(3))
    np.testing.assert_array_equal(grad_unused, np.zeros((2, 2)))
    assert grad_unused.dtype == np.float32
    np.testing.assert_array_equal(grad_constant, np.zeros(3))


def test_gradient_of_a_leaf_with_respect_to_itself():
    x = Tensor(np.arange(3.0), requires_grad=True)
    np.testing.assert_array_equal(grad(x, [x])[0], np.ones(3))
    np.testing.assert_array_equal(grad(x, [x], np.array([1.0, 2.0, 3.0]))[0], [1.0, 2.0, 3.0])


def test_grad_output_weights_the_output(rng):
    data = rng.standard_normal((2, 3))
    weights = rng.standard_normal((2, 3))
    x = Tensor(data, requires_grad=True)
    np.testing.assert_allclose(grad(x * x, [x], weights)[0], 2.0 * data * weights, **F64)


# -- grad is functional; backward accumulates ---------------------------------------
def test_grad_mutates_nothing(rng):
    data = rng.standard_normal(4)
    weights = rng.standard_normal(4)
    data_before, weights_before = data.copy(), weights.copy()
    x = Tensor(data, requires_grad=True)
    y = (x * x)[np.array([0, 0, 3, 1])]
    y_before = y.data.copy()
    first = grad(y, [x], weights)
    second = grad(y, [x], weights)
    np.testing.assert_array_equal(first[0], second[0])
    assert x.grad is None and y.grad is None
    np.testing.assert_array_equal(data, data_before)
    np.testing.assert_array_equal(weights, weights_before)
    np.testing.assert_array_equal(y.data, y_before)


def test_backward_accumulates_into_grad_across_calls(rng):
    data = rng.standard_normal(3)
    x = Tensor(data, requires_grad=True)
    c = Tensor(np.ones(3))
    y = (x * x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad, 2.0 * data, **F64)
    y.backward()
    np.testing.assert_allclose(x.grad, 4.0 * data, **F64)
    (x * 3.0).backward(np.array([1.0, 0.0, 2.0]))
    np.testing.assert_allclose(x.grad, 4.0 * data + [3.0, 0.0, 6.0], **F64)
    assert c.grad is None and y.grad is None


def test_backward_function_form_and_leaf_output():
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    backward(x * x)
    np.testing.assert_array_equal(x.grad, [2.0, 4.0])
    leaf = Tensor(np.zeros(2), requires_grad=True)
    leaf.backward()
    np.testing.assert_array_equal(leaf.grad, [1.0, 1.0])


def test_backward_gives_every_leaf_its_own_array():
    a = Tensor(np.ones(3), requires_grad=True)
    b = Tensor(np.ones(3), requires_grad=True)
    weights = np.array([1.0, 2.0, 3.0])
    (a + b).backward(weights)
    a.grad += 10.0
    np.testing.assert_array_equal(b.grad, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(weights, [1.0, 2.0, 3.0])


# -- needs: VJPs are asked only for what requires grad ------------------------------
def scaled_sum(a: Tensor, b: Tensor, calls: list[tuple[bool, ...]]) -> Tensor:
    """``y = a + 2 b`` whose VJP refuses to compute a gradient nobody needs."""
    def vjp(g, needs):
        calls.append(needs)
        assert needs == (a.requires_grad, b.requires_grad)
        return (g if needs[0] else None, 2.0 * g if needs[1] else None)
    return record("scaled_sum", a.data + 2.0 * b.data, (a, b), vjp)


@pytest.mark.parametrize("a_leaf, b_leaf", [(True, False), (False, True), (True, True)])
def test_vjp_needs_is_false_for_constants(a_leaf, b_leaf):
    calls: list[tuple[bool, ...]] = []
    a = Tensor(np.ones(2), requires_grad=a_leaf)
    b = Tensor(np.ones(2), requires_grad=b_leaf)
    grad_a, grad_b = grad(scaled_sum(a, b, calls), [a, b])
    assert calls == [(a_leaf, b_leaf)]
    np.testing.assert_array_equal(grad_a, np.full(2, 1.0 if a_leaf else 0.0))
    np.testing.assert_array_equal(grad_b, np.full(2, 2.0 if b_leaf else 0.0))


def test_needs_is_true_for_an_intermediate_result():
    calls: list[tuple[bool, ...]] = []
    x = Tensor(np.ones(2), requires_grad=True)
    grad(scaled_sum(Tensor(np.ones(2)), x * 3.0, calls), [x])
    assert calls == [(False, True)]


def test_branch_that_does_not_reach_the_output_is_not_visited():
    calls: list[tuple[bool, ...]] = []
    x = Tensor(np.ones(2), requires_grad=True)
    scaled_sum(x, x, calls)
    grad(x * 2.0, [x])
    assert calls == []


# -- grad_output -------------------------------------------------------------------
@pytest.mark.parametrize("bad_shape", [(3,), (2, 1), (1, 2, 3), ()])
def test_wrong_shaped_grad_output_raises_shape_error(bad_shape):
    x = Tensor(np.ones((2, 3)), requires_grad=True)
    with pytest.raises(ShapeError, match=r"\(2, 3\)"):
        grad(x * 2.0, [x], np.ones(bad_shape))
    with pytest.raises(ShapeError):
        (x * 2.0).backward(np.ones(bad_shape))
    assert x.grad is None


def test_default_grad_output_is_ones_of_the_output_dtype():
    x = Tensor(np.ones((2, 2), dtype=np.float32), requires_grad=True)
    (g,) = grad(x * 2.0, [x])
    assert g.dtype == np.float32
    np.testing.assert_array_equal(g, np.full((2, 2), 2.0))


def test_grad_output_may_be_a_python_number_or_list():
    from refcam.autodiff import grad
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    (g_scalar,) = grad((x * x).sum(), [x], 2.0)
    np.testing.assert_array_equal(g_scalar, [4.0, 8.0])
    (g_list,) = grad(x * 3.0, [x], [1.0, -1.0])
    np.testing.assert_array_equal(g_list, [3.0, -3.0])
