"""refcam.ops.conv against its loop twin, finite differences and PyTorch, for N = 1, 2, 3."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from refcam.autodiff import Tensor, grad, graph_nodes
from refcam.errors import LayerConfigError, ShapeError
from refcam.ops import conv as conv_module
from refcam.ops.conv import (conv, conv_forward, conv_output_shape, conv_vjp_bias, conv_vjp_input,
                             conv_vjp_weight)
from refcam.ops.padding import resolve_padding
from refcam.testing import check_vjp
from tests.ops.naive_conv import (naive_conv, naive_conv_vjp_bias, naive_conv_vjp_input,
                                  naive_conv_vjp_weight)
from tests.tolerances import CROSS, F32, F64

SCENARIOS = ("dense", "grouped", "depthwise", "same-odd", "causal")


@dataclass(frozen=True)
class Case:
    """One random convolution: arrays and geometry."""

    name: str
    x: np.ndarray
    w: np.ndarray
    b: np.ndarray | None
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: tuple[int, ...]
    groups: int

    @property
    def geometry(self) -> dict:
        return dict(stride=self.stride, dilation=self.dilation, padding=self.padding, groups=self.groups)

    def run(self, x: Tensor, w: Tensor, b: Tensor | None) -> Tensor:
        return conv(x, w, b, **self.geometry)


def _explicit_padding(rng: np.random.Generator, nd: int) -> tuple[int, ...]:
    """Random (begins..., ends...) in 0..2, asymmetric on axis 0."""
    begins = [int(p) for p in rng.integers(0, 3, nd)]
    ends = [int(p) for p in rng.integers(0, 3, nd)]
    ends[0] = (begins[0] + 1 + int(rng.integers(0, 2))) % 3
    return tuple(begins + ends)


def _groups_and_channels(rng: np.random.Generator, scenario: str) -> tuple[int, int, int]:
    """(groups, channels C, filters F)."""
    if scenario == "grouped":
        groups = int(rng.integers(2, 4))
        return groups, groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    if scenario == "depthwise":
        channels = int(rng.integers(2, 4))
        return channels, channels, channels * int(rng.integers(1, 3))
    return 1, int(rng.integers(1, 4)), int(rng.integers(1, 4))


def _spatial_for(rng, kernel, stride, dilation, padding) -> tuple[int, ...]:
    """Input sizes for which the padded input holds at least one window (fewer extra cells in 3-D)."""
    nd = len(kernel)
    extra = {1: 9, 2: 6, 3: 4}[nd]
    sizes = []
    for a in range(nd):
        extent = (kernel[a] - 1) * dilation[a] + 1
        sizes.append(max(extent - padding[a] - padding[nd + a], 1) + int(rng.integers(0, extra)))
    return tuple(sizes)


def _draw_geometry(rng, nd: int, scenario: str):
    """(kernel, stride, dilation, spatial, padding) for a scenario."""
    min_kernel = 2 if scenario == "causal" else 1
    max_kernel = 3 if nd < 3 else 2
    while True:
        kernel = tuple(int(k) for k in rng.integers(min_kernel, max_kernel + 1, nd))
        stride = tuple(int(s) for s in rng.integers(1, 4, nd))
        dilation = tuple(int(d) for d in rng.integers(1, 4, nd))
        if scenario in ("same-odd", "depthwise"):
            spatial = tuple(int(n) for n in rng.integers(2, 7, nd))
            padding = resolve_padding("same", spatial, kernel, stride, dilation)
            totals = [padding[a] + padding[nd + a] for a in range(nd)]
            if scenario == "depthwise" or any(t % 2 for t in totals):
                return kernel, stride, dilation, spatial, padding
            continue
        if scenario == "causal":
            padding = resolve_padding("causal", (1,), kernel, stride, dilation)
        else:
            padding = _explicit_padding(rng, nd)
        return kernel, stride, dilation, _spatial_for(rng, kernel, stride, dilation, padding), padding


def make_case(nd: int, scenario: str, seed: int) -> Case:
    rng = np.random.default_rng([nd, SCENARIOS.index(scenario), seed])
    groups, channels, filters = _groups_and_channels(rng, scenario)
    kernel, stride, dilation, spatial, padding = _draw_geometry(rng, nd, scenario)
    batch = int(rng.integers(1, 3))
    x = rng.standard_normal((batch, channels) + spatial)
    w = rng.standard_normal((filters, channels // groups) + kernel)
    b = rng.standard_normal(filters) if scenario in ("dense", "depthwise", "causal") else None
    name = f"{nd}d-{scenario}-{seed}"
    return Case(name, x, w, b, stride, dilation, padding, groups)


CASES = [make_case(nd, scenario, seed)
         for nd in (1, 2, 3) for scenario in SCENARIOS for seed in range(3)
         if scenario != "causal" or nd == 1]


def _ids(case: Case) -> str:
    return case.name


def test_cases_cover_the_options():
    """The random configurations exercise every stride and dilation in 1..3, for each N, and odd 'same' totals."""
    for nd in (1, 2, 3):
        of_rank = [c for c in CASES if c.x.ndim == nd + 2]
        assert {s for c in of_rank for s in c.stride} == {1, 2, 3}
        assert {d for c in of_rank for d in c.dilation} == {1, 2, 3}
        assert any(c.groups == c.x.shape[1] > 1 and c.w.shape[0] > c.groups for c in of_rank)
        assert any(c.padding[:nd] != c.padding[nd:] for c in of_rank)
        assert any(c.b is None for c in of_rank) and any(c.b is not None for c in of_rank)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_forward_matches_loop_twin(case: Case):
    y = conv_forward(case.x, case.w, case.b, case.stride, case.dilation, case.padding, case.groups)
    expected = naive_conv(case.x, case.w, case.b, case.stride, case.dilation, case.padding, case.groups)
    assert y.shape == expected.shape == conv_output_shape(case.x.shape, case.w.shape, **case.geometry)
    assert y.dtype == np.float64
    np.testing.assert_allclose(y, expected, **F64)


@pytest.mark.parametrize("case", [c for c in CASES if "same" in c.name or "depthwise" in c.name], ids=_ids)
def test_same_padding_gives_ceil_of_input_over_stride(case: Case):
    y = conv_forward(case.x, case.w, case.b, case.stride, case.dilation, case.padding, case.groups)
    assert y.shape[2:] == tuple(-(-n // s) for n, s in zip(case.x.shape[2:], case.stride))


@pytest.mark.parametrize("case", [c for c in CASES if "causal" in c.name], ids=_ids)
def test_causal_output_step_sees_no_later_input(case: Case):
    """Changing the input at the last step changes only outputs whose window reaches it."""
    later = case.x.copy()
    later[..., -1] += 1.0
    y = conv_forward(case.x, case.w, case.b, case.stride, case.dilation, case.padding, case.groups)
    y_later = conv_forward(later, case.w, case.b, case.stride, case.dilation, case.padding, case.groups)
    last_step = case.x.shape[-1] - 1
    sees_last = np.arange(y.shape[-1]) * case.stride[0] >= last_step  # output t starts its window at t*s
    np.testing.assert_array_equal(y[..., ~sees_last], y_later[..., ~sees_last])


def assert_vjps_match_loop_twins(case: Case, grad_y: np.ndarray) -> None:
    geometry = (case.stride, case.dilation, case.padding, case.groups)
    np.testing.assert_allclose(conv_vjp_input(grad_y, case.w, case.x.shape, *geometry),
                               naive_conv_vjp_input(grad_y, case.w, case.x.shape, *geometry), **F64)
    np.testing.assert_allclose(conv_vjp_weight(grad_y, case.x, case.w.shape, *geometry),
                               naive_conv_vjp_weight(grad_y, case.x, case.w.shape, *geometry), **F64)
    np.testing.assert_allclose(conv_vjp_bias(grad_y), naive_conv_vjp_bias(grad_y), **F64)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_vjps_match_loop_twin(case: Case, rng):
    assert_vjps_match_loop_twins(case, rng.standard_normal(conv_output_shape(case.x.shape, case.w.shape,
                                                                             **case.geometry)))


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_float32_in_float32_out(case: Case):
    """float32 arrays give float32 output, close to float64 on the same (rounded) values."""
    x32, w32 = case.x.astype(np.float32), case.w.astype(np.float32)
    b32 = None if case.b is None else case.b.astype(np.float32)
    geometry = (case.stride, case.dilation, case.padding, case.groups)
    y32 = conv_forward(x32, w32, b32, *geometry)
    assert y32.dtype == np.float32
    y64 = conv_forward(x32.astype(np.float64), w32.astype(np.float64),
                       None if b32 is None else b32.astype(np.float64), *geometry)
    np.testing.assert_allclose(y32, y64, **F32)
    grad_y = np.ones(y32.shape, dtype=np.float32)
    assert conv_vjp_input(grad_y, w32, x32.shape, *geometry).dtype == np.float32
    assert conv_vjp_weight(grad_y, x32, w32.shape, *geometry).dtype == np.float32


def check_vjps_by_finite_differences(case: Case) -> None:
    if case.b is None:
        check_vjp(lambda x, w: case.run(x, w, None), [case.x, case.w])
    else:
        check_vjp(case.run, [case.x, case.w, case.b])


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_check_vjp_for_input_weight_and_bias(case: Case):
    check_vjps_by_finite_differences(case)


def _torch_conv(torch, case: Case, x, w, b):
    nd = case.x.ndim - 2
    pad = []
    for axis in reversed(range(nd)):  # F.pad lists the last axis first
        pad += [case.padding[axis], case.padding[nd + axis]]
    conv_nd = getattr(torch.nn.functional, f"conv{nd}d")
    return conv_nd(torch.nn.functional.pad(x, pad), w, b, stride=case.stride, dilation=case.dilation,
                   groups=case.groups)


@pytest.mark.crosscheck
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_matches_torch_forward_and_vjps(case: Case, torch, rng):
    x_t = torch.tensor(case.x, requires_grad=True)
    w_t = torch.tensor(case.w, requires_grad=True)
    b_t = None if case.b is None else torch.tensor(case.b, requires_grad=True)
    y_t = _torch_conv(torch, case, x_t, w_t, b_t)
    leaves = [Tensor(case.x, requires_grad=True), Tensor(case.w, requires_grad=True)]
    leaves.append(None if case.b is None else Tensor(case.b, requires_grad=True))
    y = case.run(*leaves)
    np.testing.assert_allclose(y.data, y_t.detach().numpy(), **CROSS)

    grad_y = rng.standard_normal(y.shape)
    wanted = [t for t in leaves if t is not None]
    ours = grad(y, wanted, grad_y)
    theirs = torch.autograd.grad(y_t, [t for t in (x_t, w_t, b_t) if t is not None], torch.tensor(grad_y))
    for mine, reference in zip(ours, theirs):
        np.testing.assert_allclose(mine, reference.numpy(), **CROSS)


def test_records_one_conv_node_and_computes_only_needed_gradients(monkeypatch, rng):
    case = next(c for c in CASES if c.b is not None and c.x.ndim == 4)
    x = Tensor(case.x, requires_grad=True)
    y = case.run(x, Tensor(case.w), Tensor(case.b))
    assert [node.op for node in graph_nodes(y)] == ["conv"]

    def must_not_run(*args, **kwargs):
        raise AssertionError("a gradient nobody asked for was computed")
    monkeypatch.setattr(conv_module, "conv_vjp_weight", must_not_run)
    monkeypatch.setattr(conv_module, "conv_vjp_bias", must_not_run)
    grad_y = rng.standard_normal(y.shape)
    grad_x, grad_w, grad_b = y.node.vjp(grad_y, (True, False, False))
    assert grad_w is None and grad_b is None
    np.testing.assert_allclose(grad_x, naive_conv_vjp_input(grad_y, case.w, case.x.shape, case.stride,
                                                            case.dilation, case.padding, case.groups), **F64)


def test_constant_inputs_record_nothing():
    case = CASES[0]
    y = case.run(Tensor(case.x), Tensor(case.w), Tensor(case.b))
    assert y.node is None and not y.requires_grad


def test_strided_view_input_and_no_mutation(rng):
    """A non-contiguous x (no padding, so the view itself is windowed) gives the loop twin's answer."""
    base = rng.standard_normal((2, 3, 9, 12))
    x = base[:, ::-1, 1::2, ::3].swapaxes(2, 3)  # (2, 3, 4, 4), negative and non-unit strides
    w = rng.standard_normal((4, 3, 2, 2))
    snapshot_x, snapshot_w = x.copy(), w.copy()
    geometry = ((1, 2), (2, 1), (0, 0, 0, 0), 1)
    y = conv_forward(x, w, None, *geometry)
    np.testing.assert_allclose(y, naive_conv(np.ascontiguousarray(x), w, None, *geometry), **F64)
    grad_y = rng.standard_normal(y.shape)
    np.testing.assert_allclose(conv_vjp_weight(grad_y, x, w.shape, *geometry),
                               naive_conv_vjp_weight(grad_y, np.ascontiguousarray(x), w.shape, *geometry),
                               **F64)
    np.testing.assert_array_equal(x, snapshot_x)
    np.testing.assert_array_equal(w, snapshot_w)


BAD_SHAPES = [
    # x shape, w shape, bias shape, stride, dilation, padding, groups, words in the message
    ((2, 3, 8), (4, 3, 3, 3), None, (1, 1), (1, 1), (0, 0, 0, 0), 1, r"\(2, 3, 8\).*\(4, 3, 3, 3\)"),
    ((2, 3, 8, 8), (4, 2, 3, 3), None, (1, 1), (1, 1), (0, 0, 0, 0), 1, r"x \(2, 3, 8, 8\) has 3"),
    ((2, 6, 8, 8), (4, 3, 3, 3), None, (1, 1), (1, 1), (0, 0, 0, 0), 3, r"groups=3 must divide"),
    ((2, 4, 8, 8), (6, 2, 3, 3), None, (1, 1), (1, 1), (0, 0, 0, 0), 4, r"groups=4 must divide"),
    ((1, 1, 4, 9), (1, 1, 3, 3), None, (1, 1), (2, 1), (0, 0, 0, 0), 1, r"spans \(5, 3\).*\(4, 9\)"),
    ((1, 1, 4), (1, 1, 6), None, (1,), (1,), (1, 0), 1, r"padded input \(5,\)"),
    ((1, 2, 4), (3, 2, 2), (2,), (1,), (1,), (0, 0), 1, r"bias has shape \(2,\).*\(3,\)"),
    ((1, 2, 4, 4), (3, 2, 2, 2), None, (1,), (1, 1), (0, 0, 0, 0), 1, r"stride \(1,\) has 1 entries"),
    ((1, 2, 4, 4), (3, 2, 2, 2), None, (1, 1), (1, 1), (0, 0), 1, r"padding \(0, 0\) has 2 entries"),
]


@pytest.mark.parametrize("x_shape, w_shape, b_shape, stride, dilation, padding, groups, message", BAD_SHAPES)
def test_bad_shapes_raise_shape_error(x_shape, w_shape, b_shape, stride, dilation, padding, groups, message):
    b = None if b_shape is None else Tensor(np.zeros(b_shape))
    with pytest.raises(ShapeError, match=message):
        conv(Tensor(np.zeros(x_shape)), Tensor(np.zeros(w_shape)), b, stride=stride, dilation=dilation,
             padding=padding, groups=groups)


@pytest.mark.parametrize("stride, dilation, padding, groups", [
    ((0,), (1,), (0, 0), 1), ((1,), (0,), (0, 0), 1), ((1,), (1,), (-1, 0), 1), ((1,), (1,), (0, 0), 0)])
def test_bad_settings_raise_config_error(stride, dilation, padding, groups):
    with pytest.raises(LayerConfigError):
        conv_forward(np.zeros((1, 2, 5)), np.zeros((2, 2, 2)), None, stride, dilation, padding, groups)


def test_vjp_rejects_grad_of_wrong_shape():
    w = np.zeros((3, 2, 2))
    with pytest.raises(ShapeError, match=r"grad_y of shape \(1, 3, 5\).*\(1, 3, 4\)"):
        conv_vjp_input(np.zeros((1, 3, 5)), w, (1, 2, 5), (1,), (1,), (0, 0))


# --- tiled im2col (large inputs) ---------------------------------------------------
@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_forward_tiled_over_output_rows_matches_loop_twin(case: Case, monkeypatch):
    """With a 1-byte column budget every output row of the first spatial axis is its own tile."""
    monkeypatch.setattr(conv_module, "COLUMN_BUDGET_BYTES", 1)
    y = conv_forward(case.x, case.w, case.b, case.stride, case.dilation, case.padding, case.groups)
    expected = naive_conv(case.x, case.w, case.b, case.stride, case.dilation, case.padding, case.groups)
    np.testing.assert_allclose(y, expected, **F64)


def test_tiles_cover_every_row_once_within_budget(monkeypatch):
    monkeypatch.setattr(conv_module, "COLUMN_BUDGET_BYTES", 3 * 8 * 27 * 25)
    tiles = conv_module._row_tiles((1, 1, 7, 7, 7), (3, 3, 3), (7, 5, 5), 8)
    assert tiles == [(0, 3), (3, 6), (6, 7)]


def test_tiled_forward_keeps_the_column_buffer_within_budget(rng, monkeypatch):
    """Peak traced memory of a 3-D forward stays near the budget, far below the whole column matrix."""
    import tracemalloc

    budget = 1 << 18
    monkeypatch.setattr(conv_module, "COLUMN_BUDGET_BYTES", budget)
    x = rng.standard_normal((1, 2, 24, 24, 24))
    w = rng.standard_normal((4, 2, 3, 3, 3))
    whole_columns = x.size * 27 * 8                      # 5.97 MB
    tracemalloc.start()
    y = conv_forward(x, w, None, (1, 1, 1), (1, 1, 1), (1, 1, 1, 1, 1, 1))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < y.nbytes + 2 * budget < whole_columns / 4
    monkeypatch.setattr(conv_module, "COLUMN_BUDGET_BYTES", 1 << 26)
    untiled = conv_forward(x, w, None, (1, 1, 1), (1, 1, 1), (1, 1, 1, 1, 1, 1))
    np.testing.assert_allclose(y, untiled, **F64)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_vjps_tiled_over_output_rows_match_loop_twin(case: Case, rng, monkeypatch):
    """With a 1-byte budget the input and weight VJPs also run one output row at a time."""
    monkeypatch.setattr(conv_module, "COLUMN_BUDGET_BYTES", 1)
    y_shape = conv_output_shape(case.x.shape, case.w.shape, **case.geometry)
    assert len(conv_module._row_tiles(case.x.shape, case.w.shape[2:], y_shape[2:], 8)) == y_shape[2]
    assert_vjps_match_loop_twins(case, rng.standard_normal(y_shape))
    check_vjps_by_finite_differences(case)


def test_one_tile_vjps_are_the_untiled_formula_bit_for_bit(rng):
    """Within the budget the VJPs are one GEMM each: the same bits as the formula written out."""
    x, w = rng.standard_normal((2, 4, 6, 5)), rng.standard_normal((6, 2, 3, 3))
    geometry = ((1, 1), (1, 1), (1, 1, 1, 1), 2)
    grad_y = rng.standard_normal(conv_output_shape(x.shape, w.shape, *geometry))
    cols = conv_module._im2col(x, (3, 3), (6, 5), *geometry)                     # (G, CK/G, B*P)
    g = np.swapaxes(grad_y.reshape(2, 6, -1), 0, 1).reshape(2, 3, -1)
    np.testing.assert_array_equal(conv_vjp_weight(grad_y, x, w.shape, *geometry),
                                  np.matmul(g, np.swapaxes(cols, -1, -2)).reshape(w.shape))


def test_tiled_vjps_keep_the_column_buffers_within_budget(rng, monkeypatch):
    """Peak traced memory of a 3-D input and weight VJP stays near the budget, far below the whole columns."""
    import tracemalloc

    budget = 1 << 18
    monkeypatch.setattr(conv_module, "COLUMN_BUDGET_BYTES", budget)
    x = rng.standard_normal((1, 2, 24, 24, 24))
    w = rng.standard_normal((4, 2, 3, 3, 3))
    geometry = ((1, 1, 1), (1, 1, 1), (1, 1, 1, 1, 1, 1))
    grad_y = rng.standard_normal((1, 4, 24, 24, 24))
    whole_columns = x.size * 27 * 8                      # 5.97 MB
    for vjp, args in ((conv_vjp_input, (grad_y, w, x.shape)), (conv_vjp_weight, (grad_y, x, w.shape))):
        tracemalloc.start()
        tiled = vjp(*args, *geometry)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        padded_input = 2 * 26 ** 3 * 8
        assert peak < padded_input + x.nbytes + 2 * budget < whole_columns / 3, vjp.__name__
        monkeypatch.setattr(conv_module, "COLUMN_BUDGET_BYTES", 1 << 26)
        np.testing.assert_allclose(tiled, vjp(*args, *geometry), **F64)
        monkeypatch.setattr(conv_module, "COLUMN_BUDGET_BYTES", budget)
