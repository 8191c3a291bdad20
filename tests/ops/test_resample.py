"""refcam.ops.resample against its loop twin, finite differences, the ONNX reference evaluator and PyTorch.

Cases cover 1-D, 2-D and 3-D, enlarging and shrinking, sizes and non-integer
scales, every method x geometric transform mode x nearest rounding mode.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from refcam.autodiff import Tensor, grad, graph_nodes
from refcam.errors import LayerConfigError, ShapeError
from refcam.ops import resample
from refcam.ops.resample import (GEOMETRIC_TRANSFORM_MODES, METHODS, NEAREST_ROUNDING_MODES, axis_taps, resize,
                                 resize_forward, resize_output_size, resize_vjp_x)
from refcam.testing import check_vjp
from tests.ops.naive_resample import naive_resize, naive_resize_vjp
from tests.tolerances import CROSS, F32, F64

SETTINGS = [(method, mode, rounding) for method in METHODS for mode in GEOMETRIC_TRANSFORM_MODES
            for rounding in (NEAREST_ROUNDING_MODES if method == "nearest" else ("round-prefer-floor",))]

# (x shape, output size, scale or None): up, down, mixed, non-integer, size 1 on either side
GEOMETRIES = [
    ((2, 3, 5), (13,), None),
    ((1, 2, 9), (4,), None),
    ((2, 1, 4), (6,), (1.5,)),
    ((1, 2, 7), (2,), (0.35,)),
    ((1, 2, 1), (5,), None),
    ((1, 1, 6), (1,), None),
    ((1, 2, 4, 5), (7, 3), None),
    ((2, 1, 3, 4), (7, 10), (2.5, 2.6)),
    ((1, 2, 6, 5), (3, 8), (0.5, 1.7)),
    ((1, 1, 3, 4, 5), (5, 2, 9), None),
    ((1, 2, 2, 3, 4), (5, 4, 2), (2.7, 1.5, 0.6)),
]


def _ids(geometry) -> str:
    shape, sizes, scale = geometry
    return f"{len(shape) - 2}d-{shape[2:]}-to-{sizes}" + ("" if scale is None else f"-scale{scale}")


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=_ids)
def test_forward_and_vjp_match_loop_twin(geometry, rng):
    shape, sizes, scale = geometry
    if scale is not None:
        assert resize_output_size(shape[2:], scale) == sizes
    x = rng.standard_normal(shape)
    grad_y = rng.standard_normal(shape[:2] + sizes)
    for settings in SETTINGS:
        y = resize_forward(x, sizes, scale, *settings)
        assert y.shape == shape[:2] + sizes and y.dtype == np.float64
        np.testing.assert_allclose(y, naive_resize(x, sizes, scale, *settings), **F64, err_msg=str(settings))
        np.testing.assert_allclose(resize_vjp_x(grad_y, shape, sizes, scale, *settings),
                                   naive_resize_vjp(grad_y, shape, sizes, scale, *settings), **F64,
                                   err_msg=str(settings))


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=_ids)
def test_check_vjp(geometry, rng):
    shape, sizes, scale = geometry
    x = rng.standard_normal(shape)
    for method, mode, rounding in SETTINGS:
        check_vjp(lambda t: resize(t, sizes, scale=scale, method=method, geometric_transform_mode=mode,
                                   nearest_rounding_mode=rounding), [x])


def test_cases_cover_enlarging_shrinking_and_every_rank():
    ratios = [m / n for shape, sizes, _ in GEOMETRIES for n, m in zip(shape[2:], sizes)]
    assert min(ratios) < 0.5 and max(ratios) > 3 and {len(shape) - 2 for shape, _, _ in GEOMETRIES} == {1, 2, 3}
    assert any(s != int(s) for _, _, scale in GEOMETRIES if scale for s in scale)


def test_nearest_tie_rules_on_exact_halves():
    """Doubling with 'asymmetric' puts output 1 at x = 0.5: the four rounding modes pick 0, 1, 0, 1."""
    x = np.array([[[10.0, 20.0]]])
    picks = {mode: resize_forward(x, (4,), (2.0,), "nearest", "asymmetric", mode)[0, 0].tolist()
             for mode in NEAREST_ROUNDING_MODES}
    assert picks == {"round-prefer-floor": [10, 10, 20, 20], "round-prefer-ceil": [10, 20, 20, 20],
                     "floor": [10, 10, 20, 20], "ceil": [10, 20, 20, 20]}


def test_linear_clamps_at_both_edges_and_keeps_the_input_on_identity(rng):
    x = rng.standard_normal((1, 2, 3))
    y = resize_forward(x, (6,), None, "linear", "half-pixel")
    np.testing.assert_array_equal(y[..., 0], x[..., 0])        # x = -0.25 clamps to 0: an exact copy
    np.testing.assert_array_equal(y[..., -1], x[..., -1])      # x = 2.25 clamps to 2
    for settings in SETTINGS:
        np.testing.assert_array_equal(resize_forward(x, (3,), None, *settings), x)


def test_one_output_cell_per_mode():
    """m = 1: half-pixel samples the centre, pytorch-half-pixel and align-corners the first cell."""
    x = np.array([[[1.0, 2.0, 4.0, 8.0]]])
    assert resize_forward(x, (1,), None, "linear", "half-pixel")[0, 0, 0] == 3.0
    assert resize_forward(x, (1,), None, "linear", "pytorch-half-pixel")[0, 0, 0] == 1.0
    assert resize_forward(x, (1,), None, "linear", "align-corners")[0, 0, 0] == 1.0


def test_taps_are_non_decreasing_and_inside_the_input():
    """The VJP relies on runs of equal indices: check every mode on many sizes."""
    for n, m in itertools.product((1, 2, 3, 7), (1, 2, 5, 16)):
        for scale in (None, m / n * 1.07):
            for method, mode, rounding in SETTINGS:
                indices, weights = axis_taps(np, n, m, scale, method, mode, rounding)
                for index, weight in zip(indices, weights):
                    assert np.all(np.diff(index) >= 0) and index.min() >= 0 and index.max() <= n - 1
                    assert np.all(weight >= 0.0) and np.all(weight <= 1.0)


def test_float32_in_float32_out(rng):
    x32 = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    for settings in SETTINGS:
        y32 = resize_forward(x32, (7, 3), None, *settings)
        assert y32.dtype == np.float32
        np.testing.assert_allclose(y32, resize_forward(x32.astype(np.float64), (7, 3), None, *settings), **F32)
        assert resize_vjp_x(np.ones(y32.shape, np.float32), x32.shape, (7, 3), None, *settings).dtype == np.float32


def test_records_one_node_and_leaves_the_input_alone(rng):
    x = rng.standard_normal((1, 2, 3, 3))
    snapshot = x.copy()
    leaf = Tensor(x, requires_grad=True)
    y = resize(leaf, (6, 5), method="linear")
    assert [node.op for node in graph_nodes(y)] == ["resize"]
    (g,) = grad(y.sum(), [leaf])
    assert g.shape == x.shape
    np.testing.assert_array_equal(x, snapshot)
    assert resize(Tensor(x), (6, 5)).node is None


@pytest.mark.parametrize("kwargs, error, message", [
    ({"method": "cubic"}, LayerConfigError, "method 'cubic'"),
    ({"geometric_transform_mode": "half_pixel"}, LayerConfigError, "geometric_transform_mode"),
    ({"nearest_rounding_mode": "round"}, LayerConfigError, "nearest_rounding_mode"),
    ({"output_size": (4,)}, ShapeError, r"\(1, 2, 3, 3\).*one output size per spatial axis"),
    ({"output_size": (0, 4)}, LayerConfigError, "integers >= 1"),
    ({"scale": (2.0, -1.0)}, LayerConfigError, "finite numbers > 0"),
])
def test_bad_arguments(kwargs, error, message):
    arguments = dict({"output_size": (4, 4)}, **kwargs)
    with pytest.raises(error, match=message):
        resize(Tensor(np.zeros((1, 2, 3, 3))), **arguments)


def test_vjp_rejects_grad_of_wrong_shape():
    with pytest.raises(ShapeError, match=r"grad_y of shape \(1, 1, 5\).*\(1, 1, 4\)"):
        resize_vjp_x(np.zeros((1, 1, 5)), (1, 1, 2), (4,))


def test_run_width_bounds_every_run(monkeypatch, rng):
    """A VJP with too narrow a gather would drop terms: one narrower than computed breaks the loop twin."""
    x_shape, sizes = (1, 1, 2), (9,)
    grad_y = rng.standard_normal((1, 1, 9))
    expected = naive_resize_vjp(grad_y, x_shape, sizes, None, "nearest", "half-pixel", "round-prefer-floor")
    np.testing.assert_allclose(resize_vjp_x(grad_y, x_shape, sizes), expected, **F64)
    width = resample._run_width(2, 9, None, "nearest", "half-pixel", "round-prefer-floor")
    monkeypatch.setattr(resample, "_run_width", lambda *args: width - 2)
    assert not np.allclose(resize_vjp_x(grad_y, x_shape, sizes), expected)


# --- the ONNX reference evaluator ---------------------------------------------------------------
def _onnx_resize(onnx, x: np.ndarray, method: str, mode: str, rounding: str, sizes=None, scales=None):
    """Run a one-node ``Resize`` model (opset 19) with the onnx reference evaluator."""
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    names = ["X", "", "scales" if scales is not None else "", "sizes" if sizes is not None else ""]
    while names[-1] == "":
        names.pop()
    node = helper.make_node("Resize", names, ["Y"], mode=method, coordinate_transformation_mode=mode.replace("-", "_"),
                            nearest_mode=rounding.replace("-", "_"))
    initializers = []
    if scales is not None:
        initializers.append(helper.make_tensor("scales", TensorProto.FLOAT, [x.ndim], [1.0, 1.0, *scales]))
    if sizes is not None:
        initializers.append(helper.make_tensor("sizes", TensorProto.INT64, [x.ndim], [*x.shape[:2], *sizes]))
    graph = helper.make_graph([node], "resize", [helper.make_tensor_value_info("X", TensorProto.DOUBLE, x.shape)],
                              [helper.make_tensor_value_info("Y", TensorProto.DOUBLE, None)], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)])
    return ReferenceEvaluator(model).run(None, {"X": x})[0]


@pytest.mark.crosscheck
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=_ids)
def test_matches_the_onnx_reference_evaluator(geometry, rng):
    onnx = pytest.importorskip("onnx")
    shape, sizes, scale = geometry
    x = rng.standard_normal(shape)
    scale32 = None if scale is None else tuple(float(np.float32(s)) for s in scale)   # ONNX scales are float32
    for method, mode, rounding in SETTINGS:
        if scale is not None and mode == "align-corners" and any(
                float(n * s) != int(n * s) for n, s in zip(shape[2:], scale32)):
            continue   # the reference divides by s n - 1 here (test below)
        if scale is None:
            expected = _onnx_resize(onnx, x, method, mode, rounding, sizes=sizes)
        else:
            expected = _onnx_resize(onnx, x, method, mode, rounding, scales=scale32)
        ours = resize_forward(x, resize_output_size(shape[2:], scale32) if scale else sizes, scale32,
                              method, mode, rounding)
        np.testing.assert_allclose(ours, expected, **CROSS, err_msg=f"{method} {mode} {rounding}")


@pytest.mark.crosscheck
def test_align_corners_with_a_scale_follows_the_spec_not_the_reference_evaluator(rng):
    """onnx 1.23's evaluator uses x = i (n - 1) / (s n - 1); refcam (and PyTorch) use the integer m - 1."""
    onnx = pytest.importorskip("onnx")
    x = rng.standard_normal((1, 1, 5))
    reference = _onnx_resize(onnx, x, "linear", "align-corners", "round-prefer-floor", scales=(1.5,))
    ours = resize_forward(x, (7,), (1.5,), "linear", "align-corners")
    by_sizes = resize_forward(x, (7,), None, "linear", "align-corners")
    np.testing.assert_array_equal(ours, by_sizes)
    assert ours[0, 0, -1] == x[0, 0, -1] and not np.allclose(reference, ours)
    i = np.arange(7)
    spec = np.interp(i * 4 / 6, np.arange(5), x[0, 0])
    evaluator = np.interp(i * 4 / (1.5 * 5 - 1), np.arange(5), x[0, 0])
    np.testing.assert_allclose(ours[0, 0], spec, **CROSS)
    np.testing.assert_allclose(reference[0, 0], evaluator, **CROSS)


# --- PyTorch F.interpolate ------------------------------------------------------------------------
TORCH_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _torch_modes(nd: int):
    """(torch kwargs, refcam settings) pairs that define the same resampling."""
    return [({"mode": "nearest"}, ("nearest", "asymmetric", "floor")),
            ({"mode": "nearest-exact"}, ("nearest", "half-pixel", "round-prefer-ceil")),
            ({"mode": TORCH_LINEAR[nd], "align_corners": False}, ("linear", "half-pixel", "round-prefer-floor")),
            ({"mode": TORCH_LINEAR[nd], "align_corners": True}, ("linear", "align-corners", "round-prefer-floor"))]


@pytest.mark.crosscheck
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=_ids)
def test_matches_torch_interpolate_forward_and_gradient(geometry, torch, rng):
    shape, sizes, scale = geometry
    nd = len(shape) - 2
    x = rng.standard_normal(shape)
    grad_y = rng.standard_normal(shape[:2] + sizes)
    for options, settings in _torch_modes(nd):
        x_t = torch.tensor(x, requires_grad=True)
        size_or_scale = {"size": sizes} if scale is None else {"scale_factor": scale}
        y_t = torch.nn.functional.interpolate(x_t, **size_or_scale, **options)
        (g_t,) = torch.autograd.grad(y_t, [x_t], torch.tensor(grad_y))
        leaf = Tensor(x, requires_grad=True)
        y = resize(leaf, sizes, scale=scale, method=settings[0], geometric_transform_mode=settings[1],
                   nearest_rounding_mode=settings[2])
        np.testing.assert_allclose(y.data, y_t.detach().numpy(), **CROSS, err_msg=str(options))
        np.testing.assert_allclose(grad(y, [leaf], grad_y)[0], g_t.numpy(), **CROSS, err_msg=str(options))
