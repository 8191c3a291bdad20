"""Batch and layer normalisation: loop twins, VJPs by finite differences, torch, dtype, shape errors."""
from __future__ import annotations

import numpy as np
import pytest

from refcam.autodiff import Tensor, grad, graph_nodes
from refcam.errors import LayerConfigError, ShapeError
from refcam.ops import normalization
from refcam.testing import check_vjp
from tests.ops.naive_ops import batch_norm_loops, layer_norm_loops
from tests.tolerances import CROSS, F32, F64

SHAPES = [(3, 4), (2, 3, 5), (2, 3, 4, 3), (2, 3, 3, 2, 2)]  # (B, C, *spatial), 0..3 spatial axes
EPSILON = 1e-5

# (shape, axes): MATLAB's batch-excluded / spatial-channel (all non-batch axes),
# channel-only (1,), and a spatial-only grouping the API also allows.
LAYER_NORM_CASES = [
    ((3, 4), (1,)),
    ((2, 3, 5), (1, 2)),
    ((2, 3, 5), (1,)),
    ((2, 3, 4, 3), (1, 2, 3)),
    ((2, 3, 4, 3), (1,)),
    ((2, 3, 4, 3), (2, 3)),
    ((2, 3, 3, 2, 2), (1, 2, 3, 4)),
    ((2, 3, 3, 2, 2), (-1, 1)),
]


def channel_params(rng: np.random.Generator, channels: int) -> dict[str, np.ndarray]:
    """Random per-channel statistics and affine parameters (variance kept positive)."""
    return {
        "mean": rng.standard_normal(channels),
        "variance": rng.uniform(0.5, 2.0, channels),
        "scale": rng.standard_normal(channels),
        "offset": rng.standard_normal(channels),
    }


def run_batch_norm(x, mean, variance, scale, offset):
    return normalization.batch_norm(x, mean, variance, scale, offset, epsilon=EPSILON)


# --- batch normalisation -------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_forward_matches_loops(shape, rng):
    x = rng.standard_normal(shape)
    p = channel_params(rng, shape[1])
    y = run_batch_norm(Tensor(x), *(Tensor(p[k]) for k in ("mean", "variance", "scale", "offset")))
    expected = batch_norm_loops(x, p["mean"], p["variance"], p["scale"], p["offset"], EPSILON)
    np.testing.assert_allclose(y.data, expected, **F64)


@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_vjp_all_inputs(shape, rng):
    x = rng.standard_normal(shape)
    p = channel_params(rng, shape[1])
    check_vjp(run_batch_norm, [x, p["mean"], p["variance"], p["scale"], p["offset"]])


@pytest.mark.parametrize("wanted", range(5))
def test_batch_norm_vjp_one_input_at_a_time(wanted, rng):
    arrays = [rng.standard_normal((2, 3, 4))] + list(channel_params(rng, 3).values())
    tensors = [Tensor(a, requires_grad=(i == wanted)) for i, a in enumerate(arrays)]
    u = rng.standard_normal((2, 3, 4))
    [only] = grad(run_batch_norm(*tensors), [tensors[wanted]], u)
    all_leaves = [Tensor(a, requires_grad=True) for a in arrays]
    np.testing.assert_allclose(only, grad(run_batch_norm(*all_leaves), all_leaves, u)[wanted], **F64)


# --- layer normalisation -------------------------------------------------------------
@pytest.mark.parametrize("shape, axes", LAYER_NORM_CASES)
def test_layer_norm_forward_matches_loops(shape, axes, rng):
    x = rng.standard_normal(shape) * 2.0 + 0.5
    p = channel_params(rng, shape[1])
    y = normalization.layer_norm(Tensor(x), Tensor(p["scale"]), Tensor(p["offset"]), axes=axes,
                                 epsilon=EPSILON)
    resolved = tuple(sorted(a % len(shape) for a in axes))
    expected = layer_norm_loops(x, p["scale"], p["offset"], resolved, EPSILON)
    np.testing.assert_allclose(y.data, expected, **F64)


@pytest.mark.parametrize("shape, axes", LAYER_NORM_CASES)
def test_layer_norm_vjp(shape, axes, rng):
    x = rng.standard_normal(shape)
    p = channel_params(rng, shape[1])
    check_vjp(lambda t, s, o: normalization.layer_norm(t, s, o, axes=axes, epsilon=EPSILON),
              [x, p["scale"], p["offset"]])


def test_layer_norm_standardises_each_observation(rng):
    x = rng.standard_normal((3, 4, 5, 2)) * 7.0 + 3.0
    y = normalization.layer_norm(Tensor(x), Tensor(np.ones(4)), Tensor(np.zeros(4)),
                                 axes=(1, 2, 3), epsilon=0.0).data
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), 0.0, **F64)
    np.testing.assert_allclose(y.var(axis=(1, 2, 3)), 1.0, **F64)  # biased variance


@pytest.mark.parametrize("axes", [(), (0, 1), (1, 1), (4,), (-5,)])
def test_layer_norm_rejects_bad_axes(axes):
    with pytest.raises(LayerConfigError, match="axes"):
        normalization.layer_norm(Tensor(np.ones((2, 3, 4, 4))), Tensor(np.ones(3)),
                                 Tensor(np.zeros(3)), axes=axes, epsilon=EPSILON)


# --- both ----------------------------------------------------------------------------
def test_parameter_shape_mismatch_names_the_shapes():
    x = Tensor(np.ones((2, 3, 4)))
    good, bad = Tensor(np.ones(3)), Tensor(np.ones(4))
    with pytest.raises(ShapeError, match=r"variance has shape \(4,\), expected \(3,\).*\(2, 3, 4\)"):
        normalization.batch_norm(x, good, bad, good, good, epsilon=EPSILON)
    with pytest.raises(ShapeError, match=r"offset has shape \(4,\), expected \(3,\)"):
        normalization.layer_norm(x, good, bad, axes=(1, 2), epsilon=EPSILON)
    with pytest.raises(ShapeError, match=r"\(3,\)"):
        normalization.layer_norm(Tensor(np.ones(3)), good, good, axes=(0,), epsilon=EPSILON)


def normalise_both_ways(x, p):
    """(batch norm, layer norm) of ``x`` with the per-channel parameters ``p`` (any dtype)."""
    stats = [Tensor(p[k]) for k in ("mean", "variance", "scale", "offset")]
    return (run_batch_norm(x, *stats),
            normalization.layer_norm(x, stats[2], stats[3], axes=(1, 2), epsilon=EPSILON))


@pytest.mark.parametrize("param_dtype", [np.float32, np.float64])
def test_float32_in_float32_out(param_dtype, rng):
    x = rng.standard_normal((2, 3, 4))
    p = {k: v.astype(param_dtype) for k, v in channel_params(rng, 3).items()}
    x32 = Tensor(x.astype(np.float32), requires_grad=True)
    for y32, y64 in zip(normalise_both_ways(x32, p), normalise_both_ways(Tensor(x), p)):
        [grad32] = grad(y32, [x32], np.ones(y32.shape, dtype=np.float32))
        assert y32.dtype == np.float32 and grad32.dtype == np.float32
        np.testing.assert_allclose(y32.data, y64.data, **F32)


def test_each_op_records_one_node(rng):
    x = Tensor(rng.standard_normal((2, 3, 4)), requires_grad=True)
    ops = [[n.op for n in graph_nodes(y)] for y in normalise_both_ways(x, channel_params(rng, 3))]
    assert ops == [["batch_norm"], ["layer_norm"]]


# --- against PyTorch -----------------------------------------------------------------
def torch_leaves(torch, arrays):
    return [torch.tensor(a, requires_grad=True) for a in arrays]


@pytest.mark.crosscheck
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_matches_torch_eval_mode(shape, rng, torch):
    x = rng.standard_normal(shape)
    p = channel_params(rng, shape[1])
    g = rng.standard_normal(shape)
    x_t, scale_t, offset_t = torch_leaves(torch, [x, p["scale"], p["offset"]])
    y_t = torch.nn.functional.batch_norm(x_t, torch.tensor(p["mean"]), torch.tensor(p["variance"]),
                                         scale_t, offset_t, training=False, eps=EPSILON)
    y_t.backward(torch.tensor(g))
    leaves = [Tensor(x, requires_grad=True), Tensor(p["mean"]), Tensor(p["variance"]),
              Tensor(p["scale"], requires_grad=True), Tensor(p["offset"], requires_grad=True)]
    y = run_batch_norm(*leaves)
    grads = grad(y, [leaves[0], leaves[3], leaves[4]], g)
    np.testing.assert_allclose(y.data, y_t.detach().numpy(), **CROSS)
    for ours, theirs in zip(grads, (x_t, scale_t, offset_t)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), **CROSS)


def torch_layer_norm(torch, x, scale, offset, axes):
    """F.layer_norm over ``axes`` (moved last), then the per-channel affine map."""
    kept = [a for a in range(x.dim()) if a not in axes]
    perm = kept + list(axes)
    normalised = torch.nn.functional.layer_norm(x.permute(perm), [x.shape[a] for a in axes],
                                                eps=EPSILON)
    channel_view = (1, -1) + (1,) * (x.dim() - 2)
    return (normalised.permute([perm.index(a) for a in range(x.dim())]) * scale.view(channel_view)
            + offset.view(channel_view))


@pytest.mark.crosscheck
@pytest.mark.parametrize("shape, axes", LAYER_NORM_CASES)
def test_layer_norm_matches_torch(shape, axes, rng, torch):
    x = rng.standard_normal(shape)
    p = channel_params(rng, shape[1])
    g = rng.standard_normal(shape)
    resolved = tuple(sorted(a % len(shape) for a in axes))
    x_t, scale_t, offset_t = torch_leaves(torch, [x, p["scale"], p["offset"]])
    torch_layer_norm(torch, x_t, scale_t, offset_t, resolved).backward(torch.tensor(g))
    leaves = [Tensor(a, requires_grad=True) for a in (x, p["scale"], p["offset"])]
    y = normalization.layer_norm(*leaves, axes=axes, epsilon=EPSILON)
    y_t = torch_layer_norm(torch, *(torch.tensor(a) for a in (x, p["scale"], p["offset"])), resolved)
    np.testing.assert_allclose(y.data, y_t.numpy(), **CROSS)
    for ours, theirs in zip(grad(y, leaves, g), (x_t, scale_t, offset_t)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), **CROSS)
