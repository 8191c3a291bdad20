"""Cropping, channel shuffle and channel slice: loop twins, VJPs by finite differences, adjoints, torch, errors."""
from __future__ import annotations

import numpy as np
import pytest

from refcam.autodiff import Tensor, grad, graph_nodes
from refcam.errors import LayerConfigError, ShapeError
from refcam.ops import shape
from refcam.testing import check_vjp
from tests.ops.naive_shape import channel_shuffle_loops, channel_slice_loops, crop_loops
from tests.tolerances import CROSS, F64

# (input shape, cropping (begins..., ends...)): 1, 2 and 3 spatial axes, zero and uneven sides
CROP_CASES = [
    ((2, 3, 7), (1, 2)),
    ((2, 3, 5), (0, 0)),
    ((1, 2, 5, 6), (1, 0, 2, 3)),
    ((2, 1, 4, 4), (0, 3, 3, 0)),
    ((1, 2, 4, 5, 3), (1, 0, 1, 2, 3, 1)),
]
# (input shape, groups): channels only, 1..3 spatial axes, trivial groups
SHUFFLE_CASES = [((2, 6), 2), ((2, 6, 3), 3), ((1, 12, 2, 3), 4), ((1, 8, 2, 2, 2), 2), ((2, 5, 3), 1),
                 ((2, 5, 3), 5)]
# (input shape, start, stop)
SLICE_CASES = [((2, 6), 0, 3), ((2, 6, 3), 2, 6), ((1, 5, 2, 3), 1, 2), ((1, 4, 2, 2, 2), 0, 4)]


# --- cropping --------------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape, cropping", CROP_CASES)
def test_crop_matches_loops_and_vjp(x_shape, cropping, rng):
    x = rng.standard_normal(x_shape)
    np.testing.assert_array_equal(shape.crop(Tensor(x), cropping).data, crop_loops(x, cropping))
    check_vjp(lambda t: shape.crop(t, cropping), [x])


@pytest.mark.parametrize("x_shape, cropping", CROP_CASES)
def test_crop_is_the_adjoint_of_zero_padding(x_shape, cropping, rng):
    """<crop(x), u> = <x, pad(u)>, and crop(pad(u)) = u."""
    x = rng.standard_normal(x_shape)
    cropped = shape.crop(Tensor(x), cropping).data
    u = rng.standard_normal(cropped.shape)
    padded = shape.pad(Tensor(u), cropping).data
    np.testing.assert_allclose(np.vdot(cropped, u), np.vdot(x, padded), **F64)
    np.testing.assert_array_equal(shape.crop(Tensor(padded), cropping).data, u)
    leaf = Tensor(x, requires_grad=True)
    np.testing.assert_array_equal(grad(shape.crop(leaf, cropping), [leaf], u)[0], padded)


@pytest.mark.parametrize("x_shape, cropping, error, message", [
    ((2, 3, 4), (2, 2), ShapeError, r"would leave spatial shape \(0,\)"),
    ((1, 1, 4, 4), (0, 5, 0, 0), ShapeError, "at least one cell"),
    ((2, 3), (1, 1), ShapeError, "at least one spatial axis"),
    ((2, 3, 4), (1, 1, 1, 1), LayerConfigError, "cropping .* 2 non-negative integers"),
    ((2, 3, 4), (-1, 1), LayerConfigError, "cropping"),
])
def test_crop_errors(x_shape, cropping, error, message):
    with pytest.raises(error, match=message):
        shape.crop(Tensor(np.ones(x_shape)), cropping)


@pytest.mark.crosscheck
@pytest.mark.parametrize("x_shape, cropping", CROP_CASES)
def test_crop_matches_torch_slicing(x_shape, cropping, rng, torch):
    x = rng.standard_normal(x_shape)
    rank = len(x_shape) - 2
    index = (slice(None), slice(None)) + tuple(
        slice(cropping[i], x_shape[2 + i] - cropping[rank + i]) for i in range(rank))
    _compare_with_torch(torch, rng, x, lambda t: shape.crop(t, cropping), lambda t: t[index])


# --- channel shuffle -------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape, groups", SHUFFLE_CASES)
def test_channel_shuffle_matches_loops_and_vjp(x_shape, groups, rng):
    x = rng.standard_normal(x_shape)
    np.testing.assert_array_equal(shape.channel_shuffle(Tensor(x), groups).data, channel_shuffle_loops(x, groups))
    check_vjp(lambda t: shape.channel_shuffle(t, groups), [x])


@pytest.mark.parametrize("x_shape, groups", SHUFFLE_CASES)
def test_channel_shuffle_vjp_is_the_inverse_shuffle(x_shape, groups, rng):
    x = rng.standard_normal(x_shape)
    channels = x_shape[1]
    shuffled = shape.channel_shuffle(Tensor(x), groups)
    np.testing.assert_array_equal(shape.channel_shuffle(shuffled, channels // groups).data, x)
    leaf = Tensor(x, requires_grad=True)
    g = rng.standard_normal(x_shape)
    np.testing.assert_array_equal(grad(shape.channel_shuffle(leaf, groups), [leaf], g)[0],
                                  shape.channel_shuffle(Tensor(g), channels // groups).data)


def test_channel_shuffle_formula_on_named_channels():
    """Output channel j * groups + i is input channel i * (C / groups) + j: [0 1 2 | 3 4 5] -> [0 3 1 4 2 5]."""
    x = np.arange(6.0).reshape(1, 6, 1)
    np.testing.assert_array_equal(shape.channel_shuffle(Tensor(x), 2).data[0, :, 0], [0, 3, 1, 4, 2, 5])
    np.testing.assert_array_equal(shape.channel_shuffle(Tensor(x), 3).data[0, :, 0], [0, 2, 4, 1, 3, 5])


@pytest.mark.parametrize("x_shape, groups", [((2, 6, 3), 4), ((2, 6, 3), 0), ((6,), 2)])
def test_channel_shuffle_errors_name_the_shape(x_shape, groups):
    with pytest.raises(ShapeError, match=f"{groups} groups do not divide"):
        shape.channel_shuffle(Tensor(np.ones(x_shape)), groups)


@pytest.mark.crosscheck
@pytest.mark.parametrize("x_shape, groups", SHUFFLE_CASES)
def test_channel_shuffle_matches_torch(x_shape, groups, rng, torch):
    x = rng.standard_normal(x_shape)
    if len(x_shape) > 2:   # nn.ChannelShuffle wants spatial axes
        _compare_with_torch(torch, rng, x, lambda t: shape.channel_shuffle(t, groups), torch.nn.ChannelShuffle(groups))
    batch, channels, *spatial = x_shape

    def reshape_transpose(t):
        return t.reshape(batch, groups, channels // groups, *spatial).transpose(1, 2).reshape(x_shape)
    _compare_with_torch(torch, rng, x, lambda t: shape.channel_shuffle(t, groups), reshape_transpose)


# --- channel slice ---------------------------------------------------------------------------------
@pytest.mark.parametrize("x_shape, start, stop", SLICE_CASES)
def test_channel_slice_matches_loops_and_vjp(x_shape, start, stop, rng):
    x = rng.standard_normal(x_shape)
    np.testing.assert_array_equal(shape.channel_slice(Tensor(x), start, stop).data,
                                  channel_slice_loops(x, start, stop))
    check_vjp(lambda t: shape.channel_slice(t, start, stop), [x])


def test_channel_slice_gradient_is_zero_outside_the_slice(rng):
    leaf = Tensor(rng.standard_normal((2, 5, 3)), requires_grad=True)
    g = rng.standard_normal((2, 2, 3))
    grad_x = grad(shape.channel_slice(leaf, 1, 3), [leaf], g)[0]
    np.testing.assert_array_equal(grad_x[:, 1:3], g)
    np.testing.assert_array_equal(grad_x[:, [0, 3, 4]], 0.0)


@pytest.mark.parametrize("start, stop", [(2, 2), (3, 1), (-1, 2), (0, 6)])
def test_channel_slice_errors(start, stop):
    with pytest.raises(ShapeError, match=f"channels {start}:{stop} .* 0 <= start < stop <= C"):
        shape.channel_slice(Tensor(np.ones((2, 5, 3))), start, stop)


@pytest.mark.crosscheck
@pytest.mark.parametrize("x_shape, start, stop", SLICE_CASES)
def test_channel_slice_matches_torch(x_shape, start, stop, rng, torch):
    x = rng.standard_normal(x_shape)
    _compare_with_torch(torch, rng, x, lambda t: shape.channel_slice(t, start, stop), lambda t: t[:, start:stop])


# --- all three ---------------------------------------------------------------------------------------
OPS = {
    "crop": lambda t: shape.crop(t, (1, 0, 0, 1)),
    "channel_shuffle": lambda t: shape.channel_shuffle(t, 2),
    "channel_slice": lambda t: shape.channel_slice(t, 1, 3),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_float32_in_float32_out_one_node_inputs_untouched(name, rng):
    x = rng.standard_normal((2, 4, 3, 3)).astype(np.float32)
    original = x.copy()
    leaf = Tensor(x, requires_grad=True)
    y = OPS[name](leaf)
    (grad_x,) = grad(y, [leaf], np.ones(y.shape, dtype=np.float32))
    assert y.dtype == np.float32 and grad_x.dtype == np.float32
    assert [n.op for n in graph_nodes(y)] == [name]
    np.testing.assert_array_equal(x, original)


def _compare_with_torch(torch, rng, x, ours, theirs) -> None:
    """Forward and input gradient of ``ours`` (refcam) and ``theirs`` (torch) on ``x``, float64."""
    x_t = torch.tensor(x, requires_grad=True)
    y_t = theirs(x_t)
    g = rng.standard_normal(tuple(y_t.shape))
    y_t.backward(torch.tensor(g))
    leaf = Tensor(x, requires_grad=True)
    y = ours(leaf)
    np.testing.assert_allclose(y.data, y_t.detach().numpy(), **CROSS)
    np.testing.assert_allclose(grad(y, [leaf], g)[0], x_t.grad.numpy(), **CROSS)
