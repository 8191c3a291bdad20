"""Reduce mean / max over observation axes: loop twin, VJPs by finite differences, ties, torch, errors."""
from __future__ import annotations

import numpy as np
import pytest

from refcam.autodiff import Tensor, grad, graph_nodes
from refcam.errors import ShapeError
from refcam.ops import pooling, reduce
from refcam.testing import check_vjp
from tests.ops.naive_shape import reduce_loops
from tests.tolerances import CROSS, F64

# (input shape, tensor axes): channels, spatial, both, unsorted, 1..3 spatial axes
CASES = [
    ((2, 3), (1,)),
    ((2, 3, 5), (2,)),
    ((2, 3, 5), (1, 2)),
    ((1, 3, 4, 5), (2, 3)),
    ((2, 3, 4, 5), (3, 1)),
    ((1, 2, 3, 2, 4), (4, 2)),
    ((1, 2, 3, 2, 4), (1, 2, 3, 4)),
]
OPS = {"mean": reduce.reduce_mean, "max": reduce.reduce_max}


@pytest.mark.parametrize("operation", sorted(OPS))
@pytest.mark.parametrize("x_shape, axes", CASES)
def test_reduce_matches_loops_and_vjp(operation, x_shape, axes, rng):
    x = rng.standard_normal(x_shape)     # continuous: no ties, so max is differentiable here
    y = OPS[operation](Tensor(x), axes).data
    assert y.shape == tuple(1 if a in axes else n for a, n in enumerate(x_shape))
    np.testing.assert_allclose(y, reduce_loops(x, axes, operation), **F64)
    check_vjp(lambda t: OPS[operation](t, axes), [x])


def test_reduce_max_splits_the_gradient_evenly_among_ties():
    x = np.array([[[3.0, 1.0, 3.0, 3.0], [0.0, 2.0, -1.0, 2.0]]])          # (1, 2, 4)
    leaf = Tensor(x, requires_grad=True)
    g = np.array([[[6.0], [4.0]]])
    grad_x = grad(reduce.reduce_max(leaf, (2,)), [leaf], g)[0]
    np.testing.assert_allclose(grad_x, [[[2.0, 0.0, 2.0, 2.0], [0.0, 2.0, 0.0, 2.0]]], **F64)


def test_global_max_pooling_sends_the_gradient_to_the_first_maximum_instead():
    """The two reduce the same cells and agree except at ties (refcam/ops/reduce.py docstring)."""
    x = np.array([[[[1.0, 4.0], [4.0, 0.0]]]])                              # (1, 1, 2, 2), tie at 4
    leaf = Tensor(x, requires_grad=True)
    y_pool, y_reduce = pooling.global_max_pool(leaf), reduce.reduce_max(leaf, (2, 3))
    np.testing.assert_array_equal(y_pool.data, y_reduce.data)
    g = np.ones((1, 1, 1, 1))
    np.testing.assert_array_equal(grad(y_pool, [leaf], g)[0], [[[[0.0, 1.0], [0.0, 0.0]]]])
    np.testing.assert_array_equal(grad(y_reduce, [leaf], g)[0], [[[[0.0, 0.5], [0.5, 0.0]]]])


def test_reduce_mean_gradient_is_g_over_the_count(rng):
    leaf = Tensor(rng.standard_normal((2, 3, 4, 5)), requires_grad=True)
    g = rng.standard_normal((2, 1, 4, 1))
    np.testing.assert_allclose(grad(reduce.reduce_mean(leaf, (1, 3)), [leaf], g)[0],
                               np.broadcast_to(g / 15.0, (2, 3, 4, 5)), **F64)


def test_reduce_mean_over_space_is_global_average_pooling(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    np.testing.assert_allclose(reduce.reduce_mean(Tensor(x), (2, 3)).data,
                               pooling.global_avg_pool(Tensor(x)).data, **F64)


@pytest.mark.parametrize("operation", sorted(OPS))
@pytest.mark.parametrize("axes", [(0,), (1, 1), (3,), (-1,), ()])
def test_reduce_axes_are_checked(operation, axes):
    with pytest.raises(ShapeError, match=r"\(2, 3, 4\).*batch axis 0 is never reduced"):
        OPS[operation](Tensor(np.ones((2, 3, 4))), axes)


@pytest.mark.parametrize("operation", sorted(OPS))
def test_float32_in_float32_out_one_node_inputs_untouched(operation, rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    x[0, 0, :2] = 5.0                                                        # a tie in float32
    original = x.copy()
    leaf = Tensor(x, requires_grad=True)
    y = OPS[operation](leaf, (2,))
    (grad_x,) = grad(y, [leaf], np.ones(y.shape, dtype=np.float32))
    assert y.dtype == np.float32 and grad_x.dtype == np.float32
    assert [n.op for n in graph_nodes(y)] == [f"reduce_{operation}"]
    np.testing.assert_array_equal(x, original)


@pytest.mark.crosscheck
@pytest.mark.parametrize("operation", sorted(OPS))
@pytest.mark.parametrize("x_shape, axes", CASES)
def test_reduce_matches_torch_mean_and_amax(operation, x_shape, axes, rng, torch):
    x = rng.standard_normal(x_shape)
    x = np.round(x * 2.0) / 2.0                                              # many ties for amax
    x_t = torch.tensor(x, requires_grad=True)
    y_t = torch.mean(x_t, dim=axes, keepdim=True) if operation == "mean" else torch.amax(x_t, dim=axes, keepdim=True)
    g = rng.standard_normal(tuple(y_t.shape))
    y_t.backward(torch.tensor(g))
    leaf = Tensor(x, requires_grad=True)
    y = OPS[operation](leaf, axes)
    np.testing.assert_allclose(y.data, y_t.detach().numpy(), **CROSS)
    np.testing.assert_allclose(grad(y, [leaf], g)[0], x_t.grad.numpy(), **CROSS)
