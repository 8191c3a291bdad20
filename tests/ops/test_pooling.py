"""Tests of refcam.ops.pooling: loop twins, finite differences, PyTorch, tie and padding rules."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from refcam.autodiff import Tensor, grad, graph_nodes
from refcam.errors import LayerConfigError, ShapeError
from refcam.ops.pooling import (avg_pool, global_avg_pool, global_max_pool, max_pool,
                                pool_geometry, pooled_length)
from refcam.testing import check_vjp
from tests.ops.naive_pooling import naive_avg_pool, naive_max_pool, naive_pooled_length
from tests.tolerances import CROSS, F32, F64

SEEDS = range(6)
DIMS = (1, 2, 3)


def random_config(seed: int, nd: int, symmetric: bool = False) -> dict:
    """A random pooling configuration with asymmetric (or, for torch, symmetric <= k/2) padding."""
    r = np.random.default_rng(1000 * nd + seed)
    kernel = tuple(int(k) for k in r.integers(1, 4, nd))
    stride = tuple(int(s) for s in r.integers(1, 4, nd))
    if symmetric:
        begins = tuple(int(r.integers(0, k // 2 + 1)) for k in kernel)
        ends = begins
    else:
        begins = tuple(int(r.integers(0, k)) for k in kernel)
        ends = tuple(int(r.integers(0, k)) for k in kernel)
    spatial = tuple(max(k - b - e, 1) + int(r.integers(1, 9 - nd))
                    for k, b, e in zip(kernel, begins, ends))
    shape = (int(r.integers(1, 3)), int(r.integers(1, 3))) + spatial
    return dict(shape=shape, kernel=kernel, stride=stride, padding=begins + ends,
                ceil_mode=seed % 2 == 1)


def pool_args(config: dict) -> dict:
    return {key: config[key] for key in ("kernel", "stride", "padding", "ceil_mode")}


def distinct_values(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Values at least 0.1 apart, in random order: no ties, so max is differentiable."""
    size = int(np.prod(shape))
    return (rng.permutation(size) * 0.1 - 0.05 * size).reshape(shape)


def refcam_grad(fn, x: np.ndarray, g: np.ndarray) -> np.ndarray:
    leaf = Tensor(x, requires_grad=True)
    return grad(fn(leaf), [leaf], g)[0]


# --- output length -------------------------------------------------------------
def test_pooled_length_equals_window_placement_on_a_grid():
    for n, k, s, p_b, p_e, ceil_mode in itertools.product(
            range(1, 9), range(1, 5), range(1, 5), range(4), range(4), (False, True)):
        if p_b < k and p_e < k and n + p_b + p_e >= k:
            assert (pooled_length(n, k, s, p_b, p_e, ceil_mode)
                    == naive_pooled_length(n, k, s, p_b, p_e, ceil_mode)), (n, k, s, p_b, p_e, ceil_mode)


@pytest.mark.parametrize("n, k, s, p_b, p_e, floor_out, ceil_out", [
    (5, 2, 2, 0, 0, 2, 3),   # ceil adds a window running past the input
    (4, 2, 3, 1, 1, 2, 2),   # ceil's extra window would start in the end padding: dropped
    (6, 3, 3, 0, 0, 2, 2),   # exact fit: both modes agree
])
def test_pooled_length_known_cases(n, k, s, p_b, p_e, floor_out, ceil_out):
    assert pooled_length(n, k, s, p_b, p_e) == floor_out
    assert pooled_length(n, k, s, p_b, p_e, ceil_mode=True) == ceil_out


# --- loop twins ----------------------------------------------------------------
@pytest.mark.parametrize("values", ["continuous", "ties"])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("nd", DIMS)
def test_max_pool_matches_loop_twin(nd, seed, values, rng):
    config = random_config(seed, nd)
    x = (rng.standard_normal(config["shape"]) if values == "continuous"
         else rng.integers(-2, 3, config["shape"]).astype(np.float64))
    x_before = x.copy()
    y = max_pool(Tensor(x), **pool_args(config)).data
    y_naive, naive_grad = naive_max_pool(x, **pool_args(config))
    np.testing.assert_allclose(y, y_naive, **F64)
    g = rng.standard_normal(y.shape)
    grad_x = refcam_grad(lambda t: max_pool(t, **pool_args(config)), x, g)
    np.testing.assert_allclose(grad_x, naive_grad(g), **F64)
    np.testing.assert_array_equal(x, x_before)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("nd", DIMS)
def test_avg_pool_matches_loop_twin(nd, seed, count_include_pad, rng):
    config = random_config(seed, nd)
    args = dict(pool_args(config), count_include_pad=count_include_pad)
    x = rng.standard_normal(config["shape"])
    x_before = x.copy()
    y = avg_pool(Tensor(x), **args).data
    y_naive, naive_grad = naive_avg_pool(x, **args)
    np.testing.assert_allclose(y, y_naive, **F64)
    g = rng.standard_normal(y.shape)
    grad_x = refcam_grad(lambda t: avg_pool(t, **args), x, g)
    np.testing.assert_allclose(grad_x, naive_grad(g), **F64)
    np.testing.assert_array_equal(x, x_before)


CEIL_OVERHANG = [  # ceil-mode windows that run past the padded input, asymmetric padding
    dict(shape=(2, 2, 6), kernel=(3,), stride=(2,), padding=(2, 0)),
    dict(shape=(1, 2, 6, 5), kernel=(2, 3), stride=(3, 2), padding=(0, 1, 1, 0)),
    dict(shape=(1, 2, 4, 5, 4), kernel=(3, 3, 2), stride=(2, 2, 3), padding=(1, 0, 0, 1, 1, 0)),
]


@pytest.mark.parametrize("config", CEIL_OVERHANG, ids=["1d", "2d", "3d"])
def test_ceil_mode_overhang_matches_loop_twins(config, rng):
    args = dict(kernel=config["kernel"], stride=config["stride"], padding=config["padding"], ceil_mode=True)
    geometry = pool_geometry(config["shape"], **args)
    assert geometry.extended_padding != geometry.padding
    x = distinct_values(rng, config["shape"])
    g = rng.standard_normal((config["shape"][:2]) + geometry.out)
    cases = [(max_pool, naive_max_pool, {})] + [
        (avg_pool, naive_avg_pool, dict(count_include_pad=mode)) for mode in (True, False)]
    for pool, twin, extra in cases:
        y_naive, naive_grad = twin(x, **args, **extra)
        np.testing.assert_allclose(pool(Tensor(x), **args, **extra).data, y_naive, **F64)
        np.testing.assert_allclose(refcam_grad(lambda t: pool(t, **args, **extra), x, g),
                                   naive_grad(g), **F64)
        check_vjp(lambda t: pool(t, **args, **extra), [x])


@pytest.mark.parametrize("nd", DIMS)
def test_global_pools_match_loop_twins_with_whole_input_kernel(nd, rng):
    shape = (2, 3) + tuple(rng.integers(1, 5, nd))
    whole = dict(kernel=shape[2:], stride=(1,) * nd, padding=(0,) * (2 * nd))
    x = rng.integers(-2, 3, shape).astype(np.float64)  # ties: the first maximum must win
    g = rng.standard_normal((2, 3) + (1,) * nd)
    for pool, twin in ((global_max_pool, naive_max_pool), (global_avg_pool, naive_avg_pool)):
        y_naive, naive_grad = twin(x, **whole)
        np.testing.assert_allclose(pool(Tensor(x)).data, y_naive, **F64)
        np.testing.assert_allclose(refcam_grad(pool, x, g), naive_grad(g), **F64)


def test_non_contiguous_input_gives_the_same_result(rng):
    x = rng.standard_normal((2, 3, 7, 6))
    x_strided = np.asfortranarray(x)[:, :, ::-1][:, :, ::-1]
    assert not x_strided.flags.c_contiguous
    args = dict(kernel=(3, 2), stride=(2, 1), padding=(0, 0, 0, 0))
    for pool in (max_pool, avg_pool):
        np.testing.assert_allclose(pool(Tensor(x_strided), **args).data, pool(Tensor(x), **args).data, **F64)


# --- finite differences -----------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("nd", DIMS)
def test_max_pool_vjp_finite_differences(nd, seed, rng):
    config = random_config(seed, nd)
    x = distinct_values(rng, config["shape"])
    check_vjp(lambda t: max_pool(t, **pool_args(config)), [x], seed=seed)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("nd", DIMS)
def test_avg_pool_vjp_finite_differences(nd, seed, count_include_pad, rng):
    config = random_config(seed, nd)
    args = dict(pool_args(config), count_include_pad=count_include_pad)
    check_vjp(lambda t: avg_pool(t, **args), [rng.standard_normal(config["shape"])], seed=seed)


@pytest.mark.parametrize("nd", DIMS)
def test_global_pools_vjp_finite_differences(nd, rng):
    shape = (2, 2) + tuple(rng.integers(1, 5, nd))
    check_vjp(global_avg_pool, [rng.standard_normal(shape)])
    check_vjp(global_max_pool, [distinct_values(rng, shape)])


# --- PyTorch -------------------------------------------------------------------
def torch_pool(torch, kind: str, nd: int, args: dict):
    """torch's N-d pooling with refcam's arguments (symmetric padding only)."""
    functional = torch.nn.functional
    padding = args["padding"][:nd]
    common = dict(kernel_size=args["kernel"], stride=args["stride"], padding=padding,
                  ceil_mode=args["ceil_mode"])
    if kind == "max":
        return lambda t: getattr(functional, f"max_pool{nd}d")(t, **common)
    return lambda t: getattr(functional, f"avg_pool{nd}d")(
        t, **common, count_include_pad=args["count_include_pad"])


def torch_value_and_grad(torch, fn, x: np.ndarray, g: np.ndarray):
    t = torch.tensor(x, requires_grad=True)
    y = fn(t)
    y.backward(torch.tensor(g))
    return y.detach().numpy(), t.grad.numpy()


def assert_matches_torch(torch, refcam_fn, torch_fn, x, rng):
    y = refcam_fn(Tensor(x)).data
    g = rng.standard_normal(y.shape)
    y_torch, grad_torch = torch_value_and_grad(torch, torch_fn, x, g)
    assert y.shape == y_torch.shape
    np.testing.assert_allclose(y, y_torch, **CROSS)
    np.testing.assert_allclose(refcam_grad(refcam_fn, x, g), grad_torch, **CROSS)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("nd", DIMS)
def test_max_pool_matches_torch(nd, seed, rng, torch):
    config = random_config(seed, nd, symmetric=True)
    args = pool_args(config)
    x = distinct_values(rng, config["shape"])
    assert_matches_torch(torch, lambda t: max_pool(t, **args), torch_pool(torch, "max", nd, args), x, rng)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("nd", DIMS)
def test_avg_pool_matches_torch(nd, seed, count_include_pad, rng, torch):
    config = random_config(seed, nd, symmetric=True)
    args = dict(pool_args(config), count_include_pad=count_include_pad)
    x = rng.standard_normal(config["shape"])
    assert_matches_torch(torch, lambda t: avg_pool(t, **args), torch_pool(torch, "avg", nd, args), x, rng)


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_ceil_mode_windows_past_the_padded_input_match_torch(count_include_pad, rng, torch):
    args = dict(kernel=(3, 2), stride=(2, 3), padding=(1, 1, 1, 1), ceil_mode=True,
                count_include_pad=count_include_pad)
    x = rng.standard_normal((1, 2, 6, 4))  # rows: windows run past the end; columns: one is dropped
    assert_matches_torch(torch, lambda t: avg_pool(t, **args), torch_pool(torch, "avg", 2, args), x, rng)


@pytest.mark.parametrize("nd", DIMS)
def test_global_pools_match_torch(nd, rng, torch):
    shape = (2, 3) + tuple(rng.integers(1, 5, nd))
    spatial_dims = tuple(range(2, 2 + nd))
    adaptive_avg = getattr(torch.nn.functional, f"adaptive_avg_pool{nd}d")
    assert_matches_torch(torch, global_avg_pool, lambda t: adaptive_avg(t, 1),
                         rng.standard_normal(shape), rng)
    assert_matches_torch(torch, global_max_pool, lambda t: torch.amax(t, dim=spatial_dims, keepdim=True),
                         distinct_values(rng, shape), rng)


def test_max_pool_ties_match_torch(rng, torch):
    args = dict(kernel=(3, 2), stride=(1, 1), padding=(1, 0, 1, 0), ceil_mode=False)
    x = rng.integers(0, 2, (2, 2, 5, 4)).astype(np.float64)  # many ties
    assert_matches_torch(torch, lambda t: max_pool(t, **args), torch_pool(torch, "max", 2, args), x, rng)


# --- tie and padding rules ----------------------------------------------------------
def test_max_pool_tie_gradient_goes_to_first_maximum_1d():
    x = np.array([[[1.0, 3.0, 3.0, 2.0]]])
    grad_x = refcam_grad(lambda t: max_pool(t, kernel=(2,), stride=(1,), padding=(0, 0)),
                         x, np.ones((1, 1, 3)))
    # windows [1,3] -> cell 1; [3,3] -> cell 1 (the first); [3,2] -> cell 2
    np.testing.assert_array_equal(grad_x, [[[0.0, 2.0, 1.0, 0.0]]])


def test_max_pool_tie_gradient_goes_to_first_maximum_in_row_major_order():
    x = np.array([[[[0.0, 5.0], [5.0, 0.0]]]])  # maxima at (0, 1) and (1, 0): row-major picks (0, 1)
    expected = [[[[0.0, 1.0], [0.0, 0.0]]]]
    grad_x = refcam_grad(lambda t: max_pool(t, kernel=(2, 2), stride=(1, 1), padding=(0,) * 4),
                         x, np.ones((1, 1, 1, 1)))
    np.testing.assert_array_equal(grad_x, expected)
    np.testing.assert_array_equal(refcam_grad(global_max_pool, x, np.ones((1, 1, 1, 1))), expected)


def test_max_pool_tie_on_constant_input_picks_each_window_top_left():
    x = np.full((1, 1, 4, 4), 7.0)
    grad_x = refcam_grad(lambda t: max_pool(t, kernel=(2, 2), stride=(2, 2), padding=(0,) * 4),
                         x, np.ones((1, 1, 2, 2)))
    expected = np.zeros((1, 1, 4, 4))
    expected[0, 0, ::2, ::2] = 1.0
    np.testing.assert_array_equal(grad_x, expected)


@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("nd", DIMS)
def test_padded_cells_never_win(nd, ceil_mode, rng):
    shape = (2, 2) + (4,) * nd
    x = -0.5 - rng.random(shape)  # every value negative: a padded zero would win if counted
    args = dict(kernel=(3,) * nd, stride=(2,) * nd, padding=(2,) * (2 * nd), ceil_mode=ceil_mode)
    y = max_pool(Tensor(x), **args).data
    assert np.all(y < 0.0)
    np.testing.assert_allclose(y, naive_max_pool(x, **args)[0], **F64)


# --- dtype, graph and validation ------------------------------------------------------
@pytest.mark.parametrize("pool", [
    lambda t: max_pool(t, kernel=(2, 3), stride=(2, 1), padding=(1, 0, 0, 2), ceil_mode=True),
    lambda t: avg_pool(t, kernel=(2, 3), stride=(2, 1), padding=(1, 0, 0, 2), ceil_mode=True),
    lambda t: avg_pool(t, kernel=(2, 3), stride=(1, 2), padding=(1, 1, 1, 1), count_include_pad=False),
    global_avg_pool,
    global_max_pool,
], ids=["max", "avg", "avg-mean-padding", "global-avg", "global-max"])
def test_float32_in_float32_out(pool, rng):
    x = distinct_values(rng, (2, 3, 5, 6))
    y64 = pool(Tensor(x)).data
    g = rng.standard_normal(y64.shape)
    y32 = pool(Tensor(x.astype(np.float32))).data
    grad32 = refcam_grad(pool, x.astype(np.float32), g.astype(np.float32))
    assert y32.dtype == np.float32 and grad32.dtype == np.float32
    np.testing.assert_allclose(y32, y64, **F32)
    np.testing.assert_allclose(grad32, refcam_grad(pool, x, g), **F32)


def test_records_a_node_only_when_the_input_requires_grad(rng):
    x = rng.standard_normal((1, 2, 4, 4))
    args = dict(kernel=(2, 2), stride=(2, 2), padding=(0,) * 4)
    assert max_pool(Tensor(x), **args).node is None
    y = avg_pool(max_pool(Tensor(x, requires_grad=True), **args), **args)
    assert [node.op for node in graph_nodes(global_max_pool(global_avg_pool(y)))] == [
        "max_pool", "avg_pool", "global_avg_pool", "global_max_pool"]


@pytest.mark.parametrize("shape, args, error, words", [
    ((1, 1, 5), dict(kernel=(2,), stride=(1,), padding=(2, 0)), LayerConfigError, "smaller than the kernel"),
    ((1, 1, 5), dict(kernel=(2,), stride=(1,), padding=(0, 2)), LayerConfigError, "smaller than the kernel"),
    ((1, 1, 2, 5), dict(kernel=(4, 2), stride=(1, 1), padding=(1, 0, 0, 0)), ShapeError, "(1, 1, 2, 5)"),
    ((1, 1, 5, 5), dict(kernel=(2,), stride=(1, 1), padding=(0,) * 4), LayerConfigError, "kernel"),
    ((1, 1, 5, 5), dict(kernel=(2, 2), stride=(1, 0), padding=(0,) * 4), LayerConfigError, "stride"),
    ((1, 1, 5, 5), dict(kernel=(2, 2), stride=(1, 1), padding=(0, 0)), LayerConfigError, "padding"),
    ((1, 1, 5, 5), dict(kernel=2, stride=(1, 1), padding=(0,) * 4), LayerConfigError, "tuple of 2"),
    ((3, 5), dict(kernel=(2,), stride=(1,), padding=(0, 0)), ShapeError, "(3, 5)"),
])
def test_invalid_configurations_raise_with_shapes(shape, args, error, words):
    for pool in (max_pool, avg_pool):
        with pytest.raises(error) as info:
            pool(Tensor(np.zeros(shape)), **args)
        assert words in str(info.value)


@pytest.mark.parametrize("pool", [global_avg_pool, global_max_pool])
def test_global_pool_needs_a_spatial_axis(pool):
    with pytest.raises(ShapeError, match=r"\(2, 3\)"):
        pool(Tensor(np.zeros((2, 3))))
