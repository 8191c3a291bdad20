"""Flatten orders element by element, fully connected against loops, VJPs, torch, dtype, shape errors."""
from __future__ import annotations

import re

import numpy as np
import pytest

from refcam.autodiff import Tensor, grad, graph_nodes
from refcam.errors import LayerConfigError, ShapeError
from refcam.ops import linear
from refcam.testing import check_vjp
from tests.ops.naive_ops import flatten_loops, fully_connected_loops
from tests.tolerances import CROSS, F32, F64

ORDERS = ["matlab", "row-major", "channels-last"]
SHAPES = [(2, 3), (2, 3, 5), (2, 3, 4, 5), (2, 3, 2, 4, 5)]  # (B, C, *spatial), 0..3 spatial axes


# --- flatten -------------------------------------------------------------------------
@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("shape", SHAPES)
def test_flatten_places_every_element_by_its_index_formula(order, shape, rng):
    x = rng.standard_normal(shape)
    y = linear.flatten(Tensor(x), order).data
    assert y.shape == (shape[0], int(np.prod(shape[1:])))
    np.testing.assert_array_equal(y, flatten_loops(x, order))


def test_flatten_matlab_image_index_is_h_plus_H_w_plus_HW_c(rng):
    batch, channels, height, width = 2, 3, 4, 5
    x = rng.standard_normal((batch, channels, height, width))
    y = linear.flatten(Tensor(x), "matlab").data
    for b, c, h, w in np.ndindex(*x.shape):
        assert y[b, h + height * w + height * width * c] == x[b, c, h, w]


@pytest.mark.parametrize("shape", SHAPES)
def test_flatten_matlab_is_column_major_over_spatial_then_channel(shape, rng):
    x = rng.standard_normal(shape)
    y = linear.flatten(Tensor(x), "matlab").data
    spatial_then_channel = tuple(range(1, x.ndim - 1)) + (0,)  # one observation as (S_1..S_N, C)
    for b in range(shape[0]):
        np.testing.assert_array_equal(y[b], x[b].transpose(spatial_then_channel).ravel(order="F"))


@pytest.mark.parametrize("order", ORDERS)
def test_flatten_orders_agree_without_spatial_axes(order, rng):
    x = rng.standard_normal((2, 6))
    np.testing.assert_array_equal(linear.flatten(Tensor(x), order).data, x)


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("shape", SHAPES)
def test_flatten_vjp(order, shape, rng):
    check_vjp(lambda t: linear.flatten(t, order), [rng.standard_normal(shape)])


def test_flatten_rejects_unknown_order_and_too_few_axes():
    with pytest.raises(LayerConfigError, match="'column-major'"):
        linear.flatten(Tensor(np.ones((1, 2, 3))), "column-major")
    with pytest.raises(ShapeError, match=r"\(4,\)"):
        linear.flatten(Tensor(np.ones(4)), "matlab")


# --- fully connected -----------------------------------------------------------------
FC_SIZES = [(1, 3, 2), (4, 5, 3), (3, 7, 1)]  # (B, In, Out)


def fc_arrays(rng: np.random.Generator, batch: int, inputs: int, outputs: int):
    return (rng.standard_normal((batch, inputs)), rng.standard_normal((outputs, inputs)),
            rng.standard_normal(outputs))


@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("sizes", FC_SIZES)
def test_fully_connected_matches_loops(sizes, with_bias, rng):
    x, weight, bias = fc_arrays(rng, *sizes)
    bias = bias if with_bias else None
    y = linear.fully_connected(Tensor(x), Tensor(weight), None if bias is None else Tensor(bias))
    np.testing.assert_allclose(y.data, fully_connected_loops(x, weight, bias), **F64)


@pytest.mark.parametrize("sizes", FC_SIZES)
def test_fully_connected_vjp(sizes, rng):
    x, weight, bias = fc_arrays(rng, *sizes)
    check_vjp(linear.fully_connected, [x, weight, bias])
    check_vjp(lambda t, w: linear.fully_connected(t, w, None), [x, weight])


def test_fully_connected_records_one_node_with_its_inputs(rng):
    x, weight, bias = (Tensor(a) for a in fc_arrays(rng, 2, 3, 4))
    x.requires_grad = True
    [node] = graph_nodes(linear.fully_connected(x, weight, bias))
    assert node.op == "fully_connected" and node.inputs == (x, weight, bias)
    [node] = graph_nodes(linear.fully_connected(x, weight, None))
    assert node.inputs == (x, weight)


@pytest.mark.parametrize("x_shape, weight_shape, bias_shape", [
    ((2, 3, 4), (5, 12), (5,)),   # spatial input not flattened
    ((2, 3), (5, 4), (5,)),       # In mismatch
    ((2, 3), (5, 3), (4,)),       # bias mismatch
    ((2, 3), (15,), (5,)),        # weight not a matrix
])
def test_fully_connected_shape_errors_name_the_shapes(x_shape, weight_shape, bias_shape):
    with pytest.raises(ShapeError, match=re.escape(f"x {x_shape}, weight {weight_shape}")):
        linear.fully_connected(Tensor(np.ones(x_shape)), Tensor(np.ones(weight_shape)),
                               Tensor(np.ones(bias_shape)))


# --- dtype ---------------------------------------------------------------------------
@pytest.mark.parametrize("param_dtype", [np.float32, np.float64])
def test_float32_in_float32_out(param_dtype, rng):
    x, weight, bias = fc_arrays(rng, 2, 12, 3)
    x32 = Tensor(x.astype(np.float32).reshape(2, 3, 2, 2), requires_grad=True)
    for order in ORDERS:
        flat32 = linear.flatten(x32, order)
        y32 = linear.fully_connected(flat32, Tensor(weight.astype(param_dtype)),
                                     Tensor(bias.astype(param_dtype)))
        [grad32] = grad(y32, [x32], np.ones(y32.shape, dtype=np.float32))
        assert flat32.dtype == y32.dtype == grad32.dtype == np.float32
        y64 = linear.fully_connected(linear.flatten(Tensor(x.reshape(2, 3, 2, 2)), order),
                                     Tensor(weight), Tensor(bias))
        np.testing.assert_allclose(y32.data, y64.data, **F32)


# --- against PyTorch -----------------------------------------------------------------
@pytest.mark.crosscheck
@pytest.mark.parametrize("shape", SHAPES)
def test_row_major_flatten_matches_torch(shape, rng, torch):
    x = rng.standard_normal(shape)
    g = rng.standard_normal((shape[0], int(np.prod(shape[1:]))))
    x_t = torch.tensor(x, requires_grad=True)
    y_t = torch.flatten(x_t, start_dim=1)
    y_t.backward(torch.tensor(g))
    x_r = Tensor(x, requires_grad=True)
    y = linear.flatten(x_r, "row-major")
    np.testing.assert_array_equal(y.data, y_t.detach().numpy())
    np.testing.assert_array_equal(grad(y, [x_r], g)[0], x_t.grad.numpy())


@pytest.mark.crosscheck
@pytest.mark.parametrize("sizes", FC_SIZES)
def test_fully_connected_matches_torch_linear(sizes, rng, torch):
    arrays = fc_arrays(rng, *sizes)
    g = rng.standard_normal((sizes[0], sizes[2]))
    leaves_t = [torch.tensor(a, requires_grad=True) for a in arrays]
    y_t = torch.nn.functional.linear(*leaves_t)
    y_t.backward(torch.tensor(g))
    leaves = [Tensor(a, requires_grad=True) for a in arrays]
    y = linear.fully_connected(*leaves)
    np.testing.assert_allclose(y.data, y_t.detach().numpy(), **CROSS)
    for ours, theirs in zip(grad(y, leaves, g), leaves_t):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), **CROSS)
