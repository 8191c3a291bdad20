"""refcam.ops.conv_transpose against its loop twin, finite differences and PyTorch, for N = 1, 2, 3."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from refcam.autodiff import Tensor, grad, graph_nodes
from refcam.errors import LayerConfigError, ShapeError
from refcam.ops import conv as conv_module
from refcam.ops import conv_transpose as conv_transpose_module
from refcam.ops.conv_transpose import (conv_transpose, conv_transpose_forward, conv_transpose_output_shape,
                                       conv_transpose_vjp_bias, conv_transpose_vjp_input,
                                       conv_transpose_vjp_weight)
from refcam.testing import check_vjp
from tests.ops.naive_conv import naive_conv_vjp_bias
from tests.ops.naive_conv_transpose import (naive_conv_transpose, naive_conv_transpose_vjp_input,
                                            naive_conv_transpose_vjp_weight)
from tests.tolerances import CROSS, F32, F64

SCENARIOS = ("dense", "grouped", "uncropped-end", "zero-extension")


@dataclass(frozen=True)
class Case:
    name: str
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    cropping: tuple[int, ...]
    output_padding: tuple[int, ...]
    groups: int

    @property
    def geometry(self) -> tuple:
        return (self.stride, self.dilation, self.cropping, self.output_padding, self.groups)

    def run(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        return conv_transpose(x, w, b, stride=self.stride, dilation=self.dilation, cropping=self.cropping,
                              output_padding=self.output_padding, groups=self.groups)


def make_case(nd: int, scenario: str, seed: int) -> Case:
    """Random geometry; 'uncropped-end': output padding within the end cropping; 'zero-extension': beyond it."""
    rng = np.random.default_rng([nd, SCENARIOS.index(scenario), seed])
    groups = int(rng.integers(2, 4)) if scenario == "grouped" else 1
    channels, filters_per_group = groups * int(rng.integers(1, 3)), int(rng.integers(1, 3))
    kernel = tuple(int(k) for k in rng.integers(1, 4 if nd < 3 else 3, nd))
    stride = tuple(int(s) for s in rng.integers(1, 4, nd))
    dilation = tuple(int(d) for d in rng.integers(1, 3, nd))
    spatial = [int(n) for n in rng.integers(1, 5 if nd < 3 else 4, nd)]
    begins = [int(v) for v in rng.integers(0, 3, nd)]
    ends = [int(v) for v in rng.integers(0, 3, nd)]
    extra = [int(v) for v in rng.integers(0, 2, nd)]
    if scenario == "uncropped-end":
        spatial[0], begins[0], ends[0] = max(spatial[0], 3), 0, max(ends[0], 1)
    full = [(n - 1) * s + (k - 1) * d + 1 for n, k, s, d in zip(spatial, kernel, stride, dilation)]
    begins = [min(b, length - 1) for b, length in zip(begins, full)]
    ends = [min(e, length - 1 - b) for e, b, length in zip(ends, begins, full)]
    if scenario == "uncropped-end":
        extra[0] = int(rng.integers(1, ends[0] + 1))
    if scenario == "zero-extension":
        extra[0] = ends[0] + int(rng.integers(1, 3))
    spatial = tuple(spatial)
    x = rng.standard_normal((int(rng.integers(1, 3)), channels) + spatial)
    w = rng.standard_normal((channels, filters_per_group) + kernel)
    b = rng.standard_normal(filters_per_group * groups) if seed % 2 == 0 else None
    return Case(f"{nd}d-{scenario}-{seed}", x, w, b, stride, dilation, tuple(begins + ends), tuple(extra), groups)


CASES = [make_case(nd, scenario, seed) for nd in (1, 2, 3) for scenario in SCENARIOS for seed in range(3)]


def _ids(case: Case) -> str:
    return case.name


def test_cases_cover_the_options():
    for nd in (1, 2, 3):
        of_rank = [c for c in CASES if c.x.ndim == nd + 2]
        assert {s for c in of_rank for s in c.stride} == {1, 2, 3}
        assert {d for c in of_rank for d in c.dilation} == {1, 2}
        assert any(c.cropping[:nd] != c.cropping[nd:] for c in of_rank)
        assert any(c.output_padding[0] > c.cropping[nd] for c in of_rank)                 # bias-only cells
        assert any(0 < c.output_padding[0] <= c.cropping[nd] for c in of_rank)            # computed cells
        assert any(c.b is None for c in of_rank) and any(c.groups > 1 for c in of_rank)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_forward_and_vjps_match_loop_twin(case: Case, rng):
    y = conv_transpose_forward(case.x, case.w, case.b, *case.geometry)
    assert y.shape == conv_transpose_output_shape(case.x.shape, case.w.shape, *case.geometry)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, naive_conv_transpose(case.x, case.w, case.b, *case.geometry), **F64)
    grad_y = rng.standard_normal(y.shape)
    np.testing.assert_allclose(conv_transpose_vjp_input(grad_y, case.w, case.x.shape, *case.geometry),
                               naive_conv_transpose_vjp_input(grad_y, case.w, case.x.shape, *case.geometry), **F64)
    np.testing.assert_allclose(conv_transpose_vjp_weight(grad_y, case.x, case.w.shape, *case.geometry),
                               naive_conv_transpose_vjp_weight(grad_y, case.x, case.w.shape, *case.geometry), **F64)
    np.testing.assert_allclose(conv_transpose_vjp_bias(grad_y), naive_conv_vjp_bias(grad_y), **F64)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_check_vjp_for_input_weight_and_bias(case: Case):
    if case.b is None:
        check_vjp(lambda x, w: case.run(x, w, None), [case.x, case.w])
    else:
        check_vjp(case.run, [case.x, case.w, case.b])


@pytest.mark.parametrize("case", [c for c in CASES if c.x.ndim > 3], ids=_ids)
def test_tiled_columns_give_the_same_result(case: Case, monkeypatch, rng):
    """With a 1-byte column budget the underlying col2im and im2col run one row at a time."""
    expected = conv_transpose_forward(case.x, case.w, case.b, *case.geometry)
    grad_y = rng.standard_normal(expected.shape)
    grads = (conv_transpose_vjp_input(grad_y, case.w, case.x.shape, *case.geometry),
             conv_transpose_vjp_weight(grad_y, case.x, case.w.shape, *case.geometry))
    monkeypatch.setattr(conv_module, "COLUMN_BUDGET_BYTES", 1)
    np.testing.assert_allclose(conv_transpose_forward(case.x, case.w, case.b, *case.geometry), expected, **F64)
    np.testing.assert_allclose(conv_transpose_vjp_input(grad_y, case.w, case.x.shape, *case.geometry), grads[0], **F64)
    np.testing.assert_allclose(conv_transpose_vjp_weight(grad_y, case.x, case.w.shape, *case.geometry), grads[1],
                               **F64)


def test_output_padding_first_restores_cropped_cells_then_adds_bias_only_cells(rng):
    """Full length 6, end cropping 1, output padding 3: the cropped cell comes back, then two bias-only cells."""
    x, w, b = rng.standard_normal((1, 2, 3)), rng.standard_normal((2, 3, 2)), rng.standard_normal(3)
    y = conv_transpose_forward(x, w, b, (2,), (1,), (0, 1), (3,))
    full = conv_transpose_forward(x, w, None, (2,), (1,), (0, 0), (0,))
    assert full.shape == (1, 3, 6) and y.shape == (1, 3, 8)
    np.testing.assert_allclose(y[..., :6], full + b[None, :, None], **F64)
    np.testing.assert_array_equal(y[..., 6:], np.broadcast_to(b[None, :, None], (1, 3, 2)))


def test_float32_in_float32_out(rng):
    case = next(c for c in CASES if c.b is not None and c.x.ndim == 4)
    x32, w32, b32 = case.x.astype(np.float32), case.w.astype(np.float32), case.b.astype(np.float32)
    y32 = conv_transpose_forward(x32, w32, b32, *case.geometry)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, conv_transpose_forward(x32.astype(float), w32.astype(float), b32.astype(float),
                                                           *case.geometry), **F32)
    grad_y = np.ones(y32.shape, np.float32)
    assert conv_transpose_vjp_input(grad_y, w32, x32.shape, *case.geometry).dtype == np.float32
    assert conv_transpose_vjp_weight(grad_y, x32, w32.shape, *case.geometry).dtype == np.float32


def test_records_one_node_and_computes_only_needed_gradients(monkeypatch, rng):
    case = next(c for c in CASES if c.b is not None and c.x.ndim == 4)
    x = Tensor(case.x, requires_grad=True)
    y = case.run(x, Tensor(case.w), Tensor(case.b))
    assert [node.op for node in graph_nodes(y)] == ["conv_transpose"]

    def must_not_run(*args, **kwargs):
        raise AssertionError("a gradient nobody asked for was computed")
    monkeypatch.setattr(conv_transpose_module, "conv_transpose_vjp_weight", must_not_run)
    monkeypatch.setattr(conv_transpose_module, "conv_transpose_vjp_bias", must_not_run)
    grad_y = rng.standard_normal(y.shape)
    grad_x, grad_w, grad_b = y.node.vjp(grad_y, (True, False, False))
    assert grad_w is None and grad_b is None
    np.testing.assert_allclose(grad_x, naive_conv_transpose_vjp_input(grad_y, case.w, case.x.shape, *case.geometry),
                               **F64)
    assert case.run(Tensor(case.x), Tensor(case.w), Tensor(case.b)).node is None


@pytest.mark.parametrize("x_shape, w_shape, geometry, error, message", [
    ((1, 2, 4), (3, 2, 2), ((1,), (1,), (0, 0), (0,), 1), ShapeError, r"expects 3 input channels.*has 2"),
    ((1, 2, 4, 4), (2, 2, 2), ((1,), (1,), (0, 0), (0,), 1), ShapeError, r"same number of spatial axes"),
    ((1, 2, 4), (2, 2, 2), ((0,), (1,), (0, 0), (0,), 1), LayerConfigError, r"stride \(0,\)"),
    ((1, 2, 4), (2, 2, 2), ((1,), (1,), (0, -1), (0,), 1), LayerConfigError, r"cropping"),
    ((1, 2, 4), (2, 2, 2), ((1,), (1,), (0,), (0,), 1), ShapeError, r"cropping \(0,\) has 1 entries"),
    ((1, 2, 2), (2, 2, 2), ((1,), (1,), (2, 1), (0,), 1), ShapeError, r"removes every computed cell of the full"),
    ((1, 3, 4), (3, 2, 2), ((1,), (1,), (0, 0), (0,), 2), ShapeError, r"divisible by groups=2"),
])
def test_bad_shapes_and_settings(x_shape, w_shape, geometry, error, message):
    with pytest.raises(error, match=message):
        conv_transpose_forward(np.zeros(x_shape), np.zeros(w_shape), None, *geometry)


def test_bad_bias_and_grad_shapes():
    with pytest.raises(ShapeError, match=r"bias has shape \(2,\).*\(3,\)"):
        conv_transpose_forward(np.zeros((1, 2, 4)), np.zeros((2, 3, 2)), np.zeros(2), (1,), (1,), (0, 0), (0,))
    with pytest.raises(ShapeError, match=r"grad_y of shape \(1, 3, 4\).*\(1, 3, 5\)"):
        conv_transpose_vjp_input(np.zeros((1, 3, 4)), np.zeros((2, 3, 2)), (1, 2, 4), (1,), (1,), (0, 0), (0,))


# --- PyTorch ------------------------------------------------------------------------------------
def _torch_leaves(torch, case: Case):
    x_t = torch.tensor(case.x, requires_grad=True)
    w_t = torch.tensor(case.w, requires_grad=True)
    b_t = None if case.b is None else torch.tensor(case.b, requires_grad=True)
    return x_t, w_t, b_t


def _compare_with_torch(torch, case: Case, y_t, leaves_t, rng) -> None:
    leaves = [Tensor(case.x, requires_grad=True), Tensor(case.w, requires_grad=True)]
    leaves.append(None if case.b is None else Tensor(case.b, requires_grad=True))
    y = case.run(*leaves)
    np.testing.assert_allclose(y.data, y_t.detach().numpy(), **CROSS)
    grad_y = rng.standard_normal(y.shape)
    ours = grad(y, [t for t in leaves if t is not None], grad_y)
    theirs = torch.autograd.grad(y_t, [t for t in leaves_t if t is not None], torch.tensor(grad_y))
    for mine, reference in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(mine, reference.numpy(), **CROSS)


def _symmetric_case(nd: int, seed: int) -> Case:
    """Cropping p on both sides and output padding below max(stride, dilation): PyTorch's own arguments."""
    rng = np.random.default_rng([7, nd, seed])
    base = make_case(nd, "grouped" if seed % 2 else "dense", seed)
    pads = tuple(int(rng.integers(0, 2)) for _ in range(nd))
    full = [(n - 1) * s + (k - 1) * d + 1 for n, k, s, d in zip(base.x.shape[2:], base.w.shape[2:], base.stride,
                                                                base.dilation)]
    pads = tuple(min(p, (length - 1) // 2) for p, length in zip(pads, full))
    extra = tuple(int(rng.integers(0, max(s, d))) for s, d in zip(base.stride, base.dilation))
    return Case(f"{nd}d-symmetric-{seed}", base.x, base.w, base.b, base.stride, base.dilation, pads + pads, extra,
                base.groups)


SYMMETRIC = [_symmetric_case(nd, seed) for nd in (1, 2, 3) for seed in range(4)]


@pytest.mark.crosscheck
@pytest.mark.parametrize("case", SYMMETRIC, ids=_ids)
def test_matches_torch_conv_transpose_with_padding_and_output_padding(case: Case, torch, rng):
    nd = case.x.ndim - 2
    leaves_t = _torch_leaves(torch, case)
    y_t = getattr(torch.nn.functional, f"conv_transpose{nd}d")(
        *leaves_t, stride=case.stride, padding=case.cropping[:nd], output_padding=case.output_padding,
        groups=case.groups, dilation=case.dilation)
    _compare_with_torch(torch, case, y_t, leaves_t, rng)


def test_symmetric_cases_exercise_output_padding():
    assert any(any(c.output_padding) and any(c.cropping) for c in SYMMETRIC)


@pytest.mark.crosscheck
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_matches_torch_full_output_cropped_and_extended(case: Case, torch, rng):
    """Asymmetric cropping: PyTorch's full output, cropped and zero-extended by the definition."""
    nd = case.x.ndim - 2
    leaves_t = _torch_leaves(torch, case)
    x_t, w_t, b_t = leaves_t
    full = getattr(torch.nn.functional, f"conv_transpose{nd}d")(x_t, w_t, None, stride=case.stride,
                                                                groups=case.groups, dilation=case.dilation)
    pad = []
    for a in reversed(range(nd)):                      # F.pad lists the last axis first; negative pads crop
        pad += [-case.cropping[a], case.output_padding[a] - case.cropping[nd + a]]
    y_t = torch.nn.functional.pad(full, pad)
    if b_t is not None:
        y_t = y_t + b_t.reshape((-1,) + (1,) * nd)
    _compare_with_torch(torch, case, y_t, leaves_t, rng)
