"""Concatenation, n-ary sum and broadcasting product: loop twins, VJPs by finite differences, torch, dtype, errors."""
from __future__ import annotations

import numpy as np
import pytest

from refcam.autodiff import Tensor, grad, graph_nodes
from refcam.errors import ShapeError
from refcam.ops import combine
from refcam.testing import check_vjp
from tests.ops.naive_ops import concat_loops
from tests.ops.naive_shape import multiply_loops, multiply_vjp_loops
from tests.tolerances import CROSS, F64

# (shapes of the inputs, axis): channels of different sizes with 0..3 spatial axes, other axes
CONCAT_CASES = [
    ([(2, 3)], 1),
    ([(2, 3), (2, 1)], 1),
    ([(2, 1, 5), (2, 4, 5), (2, 2, 5)], 1),
    ([(1, 2, 3, 4), (1, 3, 3, 4)], 1),
    ([(2, 2, 2, 3, 2), (2, 1, 2, 3, 2)], 1),
    ([(2, 3, 4, 1), (2, 3, 4, 2)], -1),
    ([(1, 2, 3), (2, 2, 3)], 0),
]


def random_inputs(rng: np.random.Generator, shapes) -> list[np.ndarray]:
    return [rng.standard_normal(shape) for shape in shapes]


@pytest.mark.parametrize("shapes, axis", CONCAT_CASES)
def test_concat_matches_loops(shapes, axis, rng):
    xs = random_inputs(rng, shapes)
    y = combine.concat([Tensor(x) for x in xs], axis=axis).data
    np.testing.assert_array_equal(y, concat_loops(xs, axis % xs[0].ndim))


@pytest.mark.parametrize("shapes, axis", CONCAT_CASES)
def test_concat_vjp(shapes, axis, rng):
    check_vjp(lambda *ts: combine.concat(ts, axis=axis), random_inputs(rng, shapes))


def test_concat_default_axis_is_channels_in_input_order(rng):
    a, b = random_inputs(rng, [(2, 1, 3, 3), (2, 2, 3, 3)])
    y = combine.concat([Tensor(b), Tensor(a)]).data
    np.testing.assert_array_equal(y[:, :2], b)
    np.testing.assert_array_equal(y[:, 2:], a)


@pytest.mark.parametrize("shapes, axis, message", [
    ([(2, 3, 4, 4), (2, 3, 4, 5)], 1, r"\(2, 3, 4, 4\), \(2, 3, 4, 5\)"),
    ([(2, 3, 4), (2, 3, 4, 1)], 1, "same number of axes"),
    ([(2, 3), (2, 3)], 2, "axis must exist"),
    ([(2, 3), (3, 3)], 1, "batch and spatial"),
])
def test_concat_shape_errors_name_the_shapes(shapes, axis, message):
    with pytest.raises(ShapeError, match=message):
        combine.concat([Tensor(np.ones(shape)) for shape in shapes], axis=axis)


@pytest.mark.parametrize("count", [1, 2, 4])
@pytest.mark.parametrize("shape", [(2, 3), (2, 3, 4), (1, 2, 3, 3), (1, 2, 2, 3, 2)])
def test_add_is_the_sum_and_its_vjp(count, shape, rng):
    xs = random_inputs(rng, [shape] * count)
    y = combine.add([Tensor(x) for x in xs]).data
    np.testing.assert_allclose(y, np.sum(np.stack(xs), axis=0), **F64)
    check_vjp(lambda *ts: combine.add(ts), xs)


def test_add_of_one_tensor_twice_doubles_its_gradient(rng):
    x = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    g = rng.standard_normal((2, 3))
    np.testing.assert_allclose(grad(combine.add([x, x]), [x], g)[0], 2.0 * g, **F64)


def test_add_rejects_different_shapes():
    with pytest.raises(ShapeError, match=r"\(2, 3, 4\), \(2, 3, 5\)"):
        combine.add([Tensor(np.ones((2, 3, 4))), Tensor(np.ones((2, 3, 5)))])


@pytest.mark.parametrize("op", [combine.add, combine.concat])
def test_empty_input_list_is_rejected(op):
    with pytest.raises(ShapeError, match="at least one"):
        op([])


@pytest.mark.parametrize("op", [combine.add, combine.concat])
def test_float32_in_float32_out_and_inputs_untouched(op, rng):
    xs = [x.astype(np.float32) for x in random_inputs(rng, [(2, 3, 4)] * 3)]
    copies = [x.copy() for x in xs]
    leaves = [Tensor(x, requires_grad=True) for x in xs]
    y = op(leaves)
    grads = grad(y, leaves, np.ones(y.shape, dtype=np.float32))
    assert y.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    for x, original in zip(xs, copies):
        np.testing.assert_array_equal(x, original)


def test_each_op_records_one_node(rng):
    xs = [Tensor(x, requires_grad=True) for x in random_inputs(rng, [(2, 3)] * 2)]
    assert [n.op for n in graph_nodes(combine.concat(xs))] == ["concat"]
    assert [n.op for n in graph_nodes(combine.add(xs))] == ["add"]


@pytest.mark.crosscheck
@pytest.mark.parametrize("shapes, axis", CONCAT_CASES)
def test_concat_matches_torch_cat(shapes, axis, rng, torch):
    xs = random_inputs(rng, shapes)
    leaves_t = [torch.tensor(x, requires_grad=True) for x in xs]
    y_t = torch.cat(leaves_t, dim=axis)
    g = rng.standard_normal(tuple(y_t.shape))
    y_t.backward(torch.tensor(g))
    leaves = [Tensor(x, requires_grad=True) for x in xs]
    y = combine.concat(leaves, axis=axis)
    np.testing.assert_array_equal(y.data, y_t.detach().numpy())
    for ours, theirs in zip(grad(y, leaves, g), leaves_t):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), **CROSS)


@pytest.mark.parametrize("op", [combine.add, combine.concat])
def test_output_takes_the_first_inputs_dtype(op, rng):
    x32, x64 = random_inputs(rng, [(2, 3)] * 2)
    assert op([Tensor(x32.astype(np.float32)), Tensor(x64)]).dtype == np.float32
    assert op([Tensor(x64), Tensor(x32.astype(np.float32))]).dtype == np.float64


# --- broadcasting product ----------------------------------------------------------------
MULTIPLY_CASES = [
    [(2, 3), (2, 3)],
    [(2, 3, 1, 1), (2, 3, 4, 5)],                        # squeeze-and-excitation gate first
    [(2, 3, 4, 5), (2, 3, 1, 1)],                        # ... and second
    [(1, 2, 3), (1, 1, 3), (1, 2, 1)],                   # three inputs, each broadcast somewhere
    [(2, 1, 4), (2, 3, 1)],                              # the output is larger than every input
    [(1, 2, 2, 3, 2), (1, 2, 1, 1, 1), (1, 1, 2, 3, 2), (1, 2, 2, 3, 2)],
    [(2, 1, 1), (2, 1, 1)],
]


@pytest.mark.parametrize("shapes", MULTIPLY_CASES)
def test_multiply_matches_loops(shapes, rng):
    xs = random_inputs(rng, shapes)
    np.testing.assert_allclose(combine.multiply([Tensor(x) for x in xs]).data, multiply_loops(xs), **F64)


@pytest.mark.parametrize("shapes", MULTIPLY_CASES)
def test_multiply_vjp_by_finite_differences_and_loops(shapes, rng):
    xs = random_inputs(rng, shapes)
    check_vjp(lambda *ts: combine.multiply(ts), xs)
    leaves = [Tensor(x, requires_grad=True) for x in xs]
    y = combine.multiply(leaves)
    g = rng.standard_normal(y.shape)
    for ours, twin in zip(grad(y, leaves, g), multiply_vjp_loops(xs, g)):
        np.testing.assert_allclose(ours, twin, **F64)


def test_multiply_gradients_are_exact_at_zeros(rng):
    """Zeros in several inputs, even in the same cell: the product of the others, never y / x_i."""
    gate, features, mask = random_inputs(rng, [(2, 3, 1, 1), (2, 3, 4, 4), (2, 1, 4, 4)])
    gate[0, 1] = 0.0
    features[:, :, 1, :] = 0.0
    mask[1, 0, 1, 2] = 0.0
    xs = [gate, features, mask]
    leaves = [Tensor(x, requires_grad=True) for x in xs]
    g = rng.standard_normal((2, 3, 4, 4))
    with np.errstate(all="raise"):
        grads = grad(combine.multiply(leaves), leaves, g)
    for ours, twin in zip(grads, multiply_vjp_loops(xs, g)):
        assert np.all(np.isfinite(ours))
        np.testing.assert_allclose(ours, twin, **F64)
    np.testing.assert_allclose(grads[1][0, 1], 0.0 * g[0, 1])   # gated off: no gradient to the features
    check_vjp(lambda *ts: combine.multiply(ts), xs)


def test_multiply_of_one_tensor_by_itself_is_the_square(rng):
    x = Tensor(rng.standard_normal((2, 3)), requires_grad=True)
    g = rng.standard_normal((2, 3))
    np.testing.assert_allclose(grad(combine.multiply([x, x]), [x], g)[0], 2.0 * x.data * g, **F64)


def test_multiply_differentiates_only_the_inputs_that_need_it(rng):
    gate, features = random_inputs(rng, [(1, 2, 1), (1, 2, 5)])
    leaf = Tensor(features, requires_grad=True)
    y = combine.multiply([Tensor(gate), leaf])
    np.testing.assert_allclose(grad(y, [leaf], np.ones(y.shape))[0], np.broadcast_to(gate, (1, 2, 5)), **F64)
    assert not combine.multiply([Tensor(gate), Tensor(features)]).requires_grad


@pytest.mark.parametrize("shapes, message", [
    ([(2, 3, 4), (2, 3, 5)], r"\[\(2, 3, 4\), \(2, 3, 5\)\] do not broadcast"),
    ([(2, 3, 4), (2, 3, 4, 1)], "same number of axes"),
    ([(1, 3), (2, 3)], "same batch size"),
    ([(2, 2, 1), (2, 1, 3), (2, 3, 3)], r"\(2, 2, 1\), \(2, 1, 3\), \(2, 3, 3\)"),
])
def test_multiply_shape_errors_list_every_shape(shapes, message):
    with pytest.raises(ShapeError, match=message):
        combine.multiply([Tensor(np.ones(shape)) for shape in shapes])


@pytest.mark.parametrize("count", [0, 1])
def test_multiply_needs_two_inputs(count):
    with pytest.raises(ShapeError, match="at least two"):
        combine.multiply([Tensor(np.ones((1, 2)))] * count)


def test_multiply_float32_stays_float32_records_one_node_and_leaves_inputs_alone(rng):
    xs = [x.astype(np.float32) for x in random_inputs(rng, [(2, 3, 1), (2, 3, 4)])]
    copies = [x.copy() for x in xs]
    leaves = [Tensor(x, requires_grad=True) for x in xs]
    y = combine.multiply(leaves)
    grads = grad(y, leaves, np.ones(y.shape, dtype=np.float32))
    assert y.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    assert [n.op for n in graph_nodes(y)] == ["multiply"]
    for x, original in zip(xs, copies):
        np.testing.assert_array_equal(x, original)
    mixed = combine.multiply([Tensor(xs[0]), Tensor(xs[1].astype(np.float64))])
    assert mixed.dtype == np.float32


@pytest.mark.crosscheck
@pytest.mark.parametrize("shapes", MULTIPLY_CASES)
def test_multiply_matches_torch(shapes, rng, torch):
    xs = random_inputs(rng, shapes)
    xs[0].flat[0] = 0.0                                  # a zero: torch's product rule has no division either
    leaves_t = [torch.tensor(x, requires_grad=True) for x in xs]
    y_t = leaves_t[0]
    for leaf in leaves_t[1:]:
        y_t = y_t * leaf
    g = rng.standard_normal(tuple(y_t.shape))
    y_t.backward(torch.tensor(g))
    leaves = [Tensor(x, requires_grad=True) for x in xs]
    y = combine.multiply(leaves)
    np.testing.assert_allclose(y.data, y_t.detach().numpy(), **CROSS)
    for ours, theirs in zip(grad(y, leaves, g), leaves_t):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), **CROSS)
