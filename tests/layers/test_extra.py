"""The importers' extra layers: sigmoid, tanh, constant padding, scaling; and the pad op.

Oracles: NumPy formulas, a loop twin of padding written here, PyTorch's
``F.pad``/``sigmoid``/``tanh`` in float64, and a per-channel loop for the
depthwise convention (output channel ``c * m + j`` sees input channel ``c``).
"""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from refcam.autodiff import Tensor, grad
from refcam.errors import LayerConfigError, LayerShapeError, ShapeError
from refcam.layers import GroupedConvolution2dLayer, ImageInputLayer
from refcam.layers.base import LAYER_KINDS
from refcam.layers.extra import PaddingLayer, ScalingLayer, SigmoidLayer, TanhLayer
from refcam.ops.shape import pad
from refcam.testing import check_vjp
from tests.tolerances import CROSS, F32, F64


# --- loop twin of constant padding ---------------------------------------------------------
def pad_loops(x: np.ndarray, padding: tuple[int, ...], value: float) -> np.ndarray:
    """Every output cell: the input cell it maps back to, or ``value``."""
    rank = x.ndim - 2
    begins, ends = padding[:rank], padding[rank:]
    out_shape = x.shape[:2] + tuple(n + b + e for n, b, e in zip(x.shape[2:], begins, ends))
    y = np.empty(out_shape, dtype=x.dtype)
    for index in np.ndindex(*out_shape):
        source = tuple(t - b for t, b in zip(index[2:], begins))
        inside = all(0 <= s < n for s, n in zip(source, x.shape[2:]))
        y[index] = x[index[:2] + source] if inside else value
    return y


def random_padding_case(rng: np.random.Generator) -> tuple[tuple[int, ...], tuple[int, ...], float]:
    rank = int(rng.integers(1, 4))
    spatial = tuple(int(n) for n in rng.integers(1, 5, rank))
    shape = (int(rng.integers(1, 3)), int(rng.integers(1, 4))) + spatial
    padding = tuple(int(p) for p in rng.integers(0, 3, 2 * rank))
    return shape, padding, float(rng.standard_normal())


@pytest.mark.parametrize("seed", range(8))
def test_pad_matches_loop_twin_and_passes_vjp_check(seed):
    rng = np.random.default_rng(seed)
    shape, padding, value = random_padding_case(rng)
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(pad(Tensor(x), padding, value).data, pad_loops(x, padding, value), **F64)
    check_vjp(lambda t: pad(t, padding, value), [x], seed=seed)


@pytest.mark.parametrize("seed", range(4))
def test_pad_forward_and_input_vjp_equal_torch(torch, seed):
    rng = np.random.default_rng(100 + seed)
    shape, padding, value = random_padding_case(rng)
    rank = len(shape) - 2
    leaf = Tensor(rng.standard_normal(shape), requires_grad=True)
    y = pad(leaf, padding, value)
    g = rng.standard_normal(y.shape)
    torch_pairs = [p for axis in reversed(range(rank)) for p in (padding[axis], padding[rank + axis])]
    xt = torch.tensor(leaf.data, requires_grad=True)
    yt = torch.nn.functional.pad(xt, torch_pairs, mode="constant", value=value)
    (gt,) = torch.autograd.grad(yt, xt, torch.tensor(g))
    np.testing.assert_allclose(y.data, yt.detach().numpy(), **CROSS)
    np.testing.assert_allclose(grad(y, [leaf], g)[0], gt.numpy(), **CROSS)


def test_pad_keeps_float32_and_refuses_bad_arguments(rng):
    x = rng.standard_normal((1, 2, 3)).astype(np.float32)
    assert pad(Tensor(x), (1, 2)).dtype == np.float32
    with pytest.raises(ShapeError, match="at least one spatial axis"):
        pad(Tensor(rng.standard_normal((2, 3))), ())
    for bad in [(1,), (1, -1), (1.5, 0), (1, 0, 0, 0)]:
        with pytest.raises(LayerConfigError, match="non-negative integers"):
            pad(Tensor(x), bad)


# --- element-wise layers -------------------------------------------------------------------
def test_sigmoid_and_tanh_layers_match_formulas_and_vjps(rng):
    x = rng.standard_normal((2, 3, 4, 5)) * 3.0
    cases = ((SigmoidLayer(name="s"), 1.0 / (1.0 + np.exp(-x))), (TanhLayer(name="t"), np.tanh(x)))
    for layer, expected in cases:
        np.testing.assert_allclose(layer.forward(Tensor(x)).data, expected, **F64)
        assert layer.output_shape(x.shape[1:]) == x.shape[1:]
        check_vjp(layer.forward, [x])


def test_sigmoid_and_tanh_layers_equal_torch(torch, rng):
    x = rng.standard_normal((2, 3, 7))
    for layer, reference in ((SigmoidLayer(name="s"), torch.sigmoid), (TanhLayer(name="t"), torch.tanh)):
        np.testing.assert_allclose(layer.forward(Tensor(x)).data, reference(torch.tensor(x)).numpy(), **CROSS)


# --- padding layer -------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(4))
def test_padding_layer_matches_loop_twin_shape_and_vjp(seed):
    rng = np.random.default_rng(200 + seed)
    shape, padding, value = random_padding_case(rng)
    layer = PaddingLayer(name="pad", padding=padding, value=value)
    x = rng.standard_normal(shape)
    y = layer.forward(Tensor(x)).data
    np.testing.assert_allclose(y, pad_loops(x, padding, value), **F64)
    assert layer.output_shape(shape[1:]) == y.shape[1:]
    check_vjp(layer.forward, [x], seed=seed)


def test_padding_layer_text_free_axis_and_errors():
    layer = PaddingLayer(name="zp", padding=(1, 3, 2, 4))       # top 1, left 3, bottom 2, right 4
    assert layer.describe() == "Padding [1  2  3  4] with value 0"
    assert layer.output_shape((5, 10, 20)) == (5, 13, 27)
    assert PaddingLayer(name="zp1", padding=(2, 0)).output_shape((3, None)) == (3, None)
    with pytest.raises(LayerShapeError, match="'zp'"):
        layer.output_shape((5, 10))
    for bad in [(), (1, 2, 3), (1, -1), "same"]:
        with pytest.raises(LayerConfigError, match="'bad'"):
            PaddingLayer(name="bad", padding=bad)
    with pytest.raises(LayerConfigError, match="finite"):
        PaddingLayer(name="bad", padding=(1, 1), value=float("nan"))


# --- scaling layer -------------------------------------------------------------------------
def test_scaling_layer_scalar_and_per_channel(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    scalar = ScalingLayer(name="rescale", scale=1.0 / 255.0, offset=-0.5)
    np.testing.assert_allclose(scalar.forward(Tensor(x)).data, x / 255.0 - 0.5, **F64)
    scale, offset = rng.standard_normal((3, 1, 1)), rng.standard_normal((3, 1, 1))
    per_channel = ScalingLayer(name="norm", scale=scale, offset=offset)
    expected = np.stack([x[:, c] * scale[c, 0, 0] + offset[c, 0, 0] for c in range(3)], axis=1)
    np.testing.assert_allclose(per_channel.forward(Tensor(x)).data, expected, **F64)
    check_vjp(per_channel.forward, [x])
    per_element = ScalingLayer(name="el", scale=rng.standard_normal((1, 4, 5)))
    np.testing.assert_allclose(per_element.forward(Tensor(x)).data, x * per_element.scale, **F64)
    assert per_element.offset.shape == () and float(per_element.offset) == 0.0
    assert scalar.describe() == "Scaling by 0.0039216 with offset -0.5"
    assert per_channel.describe() == "Scaling by a 3x1x1 array with offset a 3x1x1 array"


def test_scaling_layer_keeps_float32(rng):
    x = rng.standard_normal((1, 2, 3)).astype(np.float32)
    layer = ScalingLayer(name="s", scale=np.array([2.0, 3.0]).reshape(2, 1))
    assert layer.forward(Tensor(x)).dtype == np.float32


def test_scaling_layer_refuses_shapes_that_do_not_broadcast_per_observation(rng):
    per_channel_vector = ScalingLayer(name="vec", scale=rng.standard_normal(3))   # (C,) would align with W
    with pytest.raises(LayerShapeError, match="'vec'.*scale has shape \\(3,\\)"):
        per_channel_vector.output_shape((3, 4, 5))
    with pytest.raises(LayerShapeError, match="offset"):
        ScalingLayer(name="s", offset=np.zeros((2, 1, 1))).forward(Tensor(rng.standard_normal((1, 3, 2, 2))))
    with pytest.raises(LayerConfigError, match="finite"):
        ScalingLayer(name="s", scale=np.array([1.0, np.inf]))
    with pytest.raises(LayerConfigError, match="floating-point"):
        ScalingLayer(name="s", scale=np.array([1, 2]))


# --- depthwise convention used by the importers ------------------------------------------------
def test_channel_wise_grouped_convolution_orders_outputs_channel_major(rng):
    channels, multiplier = 3, 2
    x = rng.standard_normal((1, channels, 5, 6))
    weights = rng.standard_normal((channels * multiplier, 1, 3, 3))
    layer = GroupedConvolution2dLayer(name="dw", filter_size=3, num_filters=channels * multiplier,
                                      groups=channels, weights=weights)
    y = layer.forward(Tensor(x)).data
    for c, j in itertools.product(range(channels), range(multiplier)):
        f = c * multiplier + j
        expected = np.zeros((3, 4))
        for u, v in itertools.product(range(3), range(3)):
            expected += weights[f, 0, u, v] * x[0, c, u:u + 3, v:v + 4]
        np.testing.assert_allclose(y[0, f], expected, **F64)


# --- registry and files ------------------------------------------------------------------------
def test_kinds_are_registered_with_json_properties():
    for cls in (SigmoidLayer, TanhLayer, PaddingLayer, ScalingLayer):
        assert LAYER_KINDS[cls.kind] is cls and cls.type
    layer = PaddingLayer(name="p", padding=(1, 2), value=0.5)
    assert json.loads(json.dumps(layer.properties())) == {"padding": [1, 2], "value": 0.5}


def test_network_with_extra_layers_saves_and_loads(tmp_path, rng):
    from refcam.io import load, save
    from refcam.network import Network

    layers = [ImageInputLayer(name="in", input_size=(4, 5, 2), normalization="none"),
              ScalingLayer(name="scale", scale=rng.standard_normal((2, 1, 1)), offset=0.25),
              PaddingLayer(name="pad", padding=(1, 0, 0, 2)), SigmoidLayer(name="sig"),
              TanhLayer(name="tanh")]
    net = Network(layers)
    save(net, tmp_path / "extra.h5")
    loaded = load(tmp_path / "extra.h5")
    x = rng.standard_normal((4, 5, 2))
    np.testing.assert_array_equal(loaded.predict(x), net.predict(x))
    assert str(loaded) == str(net)
    np.testing.assert_allclose(net.predict(x.astype(np.float32), dtype="float32"), net.predict(x), **F32)
