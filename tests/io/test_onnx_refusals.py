"""ONNX import refusals: every node refcam cannot import is named in one error, grouped and counted.

Small graphs written with ``onnx.helper``; needs the ``onnx`` package (skipped without it).
"""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402

import refcam.errors as errors  # noqa: E402
from refcam.io.onnx_import import load_onnx  # noqa: E402
from tests.io.test_onnx import ints, write_model  # noqa: E402
from tests.tolerances import F64  # noqa: E402

SHAPE = (1, 2, 4, 4)


def refusal_text(path) -> str:
    """The message of the UnsupportedOperationError loading ``path`` raises."""
    with pytest.raises(errors.UnsupportedOperationError) as info:
        load_onnx(path)
    return str(info.value)


def test_every_refused_form_is_listed_in_one_error(tmp_path) -> None:
    """Two quotients of computed tensors (the second reads a stand-in for the first), a Clip not at 0,
    a Softmax over space, a ReduceMean dropping one axis and a Reshape that is no flatten: all six are
    named, grouped by op type with counts; the Concat reading refused outputs is not reported."""
    nodes = [helper.make_node("Div", ["x", "x"], ["a1"], name="div_a"),
             helper.make_node("Relu", ["a1"], ["a2"], name="relu_a"),
             helper.make_node("Div", ["a2", "a2"], ["a3"], name="div_b"),
             helper.make_node("Clip", ["a3", "lo", "hi"], ["a4"], name="clip"),
             helper.make_node("Reshape", ["a4", "shape"], ["a5"], name="reshape"),
             helper.make_node("Softmax", ["x"], ["b1"], name="softmax", axis=3),
             helper.make_node("ReduceMean", ["b1", "axes"], ["b2"], name="reduce", keepdims=0),
             helper.make_node("Concat", ["a5", "b2"], ["y"], name="join", axis=1)]
    initializers = [("lo", np.array(-1.0)), ("hi", np.array(1.0)), ints("shape", [1, 2, 16]), ints("axes", [3])]
    message = refusal_text(write_model(tmp_path, nodes, SHAPE, initializers))
    assert "cannot import 6 node(s)" in message
    assert "Div (2 nodes): Div of two tensors the network computes" in message
    assert "nodes 'div_a', 'div_b'" in message
    for line in ("Clip (1 node): Clip to [-1.0, 1.0]", "Reshape (1 node): Reshape from (1, 2, 4, 4) to [1, 2, 16]",
                 "Softmax (1 node): softmax over axis 3", "ReduceMean (1 node): reduces axes [3]"):
        assert line in message
    assert "'join'" not in message and "Concat (" not in message
    assert "docs/import.md" in message


def test_many_nodes_of_one_reason_are_counted_and_cut_short(tmp_path) -> None:
    """13 refused quotients: one line counts all 13, names the first 10 and says how many more."""
    nodes, current = [], "x"
    for k in range(13):
        nodes += [helper.make_node("Div", [current, current], [f"m{k}"], name=f"/features/{k}/Div"),
                  helper.make_node("Relu", [f"m{k}"], [f"r{k}"], name=f"/features/{k}/Relu")]
        current = f"r{k}"
    message = refusal_text(write_model(tmp_path, nodes, SHAPE))
    assert "Div (13 nodes): Div of two tensors" in message
    assert "'/features/9/Div' and 3 more" in message
    assert "'/features/10/Div'" not in message
    assert message.count("\n") == 2        # the header, the Mul line, the advice


def test_one_op_type_with_two_reasons_gets_a_line_per_reason(tmp_path) -> None:
    nodes = [helper.make_node("Reshape", ["x", "s1"], ["a"], name="r1"),
             helper.make_node("Reshape", ["x", "s2"], ["b"], name="r2"),
             helper.make_node("Reshape", ["x", "s1"], ["c"], name="r3"),
             helper.make_node("Sum", ["a", "b", "c"], ["y"], name="sum")]
    message = refusal_text(write_model(tmp_path, nodes, SHAPE, [ints("s1", [1, 2, 16]), ints("s2", [1, 4, 8])]))
    assert "Reshape (3 nodes):\n" in message
    assert "- 2 nodes: Reshape from (1, 2, 4, 4) to [1, 2, 16]" in message and "nodes 'r1', 'r3'" in message
    assert "- 1 node: Reshape from (1, 2, 4, 4) to [1, 4, 8]" in message and "node 'r2'" in message


def test_a_malformed_node_still_raises_at_once(tmp_path, rng) -> None:
    """A refused quotient does not hide a conv weight of the wrong shape on another branch."""
    nodes = [helper.make_node("Div", ["x", "x"], ["a"], name="div"),
             helper.make_node("Conv", ["x", "w"], ["b"], name="conv"),
             helper.make_node("Add", ["a", "b"], ["y"], name="add")]
    path = write_model(tmp_path, nodes, SHAPE, [("w", rng.standard_normal((2, 3, 1, 1)))])
    with pytest.raises(errors.WeightShapeError, match="conv"):
        load_onnx(path)


def test_one_input_concat_is_the_identity(tmp_path, rng) -> None:
    """DenseNet-121 through the TorchScript exporter writes Concat of one tensor: no layer, same numbers."""
    nodes = [helper.make_node("Concat", ["x"], ["c"], name="concat", axis=1),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    net = load_onnx(write_model(tmp_path, nodes, SHAPE))
    assert [layer.name for layer in net.layers][1:] == ["relu"]
    x = rng.standard_normal(SHAPE)
    np.testing.assert_allclose(net.predict(x, format="BCSS"), np.maximum(x, 0.0), **F64)


def test_reasons_of_one_op_type_are_cut_short(tmp_path) -> None:
    """Seven Reshapes refused for seven different targets: five reason lines, then one line for the rest."""
    targets = [[1, 2, 16], [1, 4, 8], [1, 8, 4], [1, 16, 2], [1, 32, 1], [1, 1, 32], [1, 2, 2, 8]]
    nodes = [helper.make_node("Reshape", ["x", f"s{k}"], [f"r{k}"], name=f"r{k}") for k in range(len(targets))]
    nodes.append(helper.make_node("Sum", [f"r{k}" for k in range(len(targets))], ["y"], name="sum"))
    message = refusal_text(write_model(tmp_path, nodes, SHAPE, [ints(f"s{k}", t) for k, t in enumerate(targets)]))
    assert "Reshape (7 nodes):\n" in message
    assert message.count("    - 1 node: Reshape from") == 5
    assert "    - and 2 nodes for 2 other reason(s), e.g. Reshape from (1, 2, 4, 4) to [1, 1, 32]" in message
    assert "'r6'" not in message


def test_unknown_operators_and_refused_forms_share_one_error(tmp_path) -> None:
    """An operator refcam does not import (Einsum, and one of a custom domain) and a refused Div in one graph:
    all three are in one message; the unknown nodes' outputs are unavailable, so their reader is not."""
    nodes = [helper.make_node("Einsum", ["x"], ["e"], name="einsum", equation="bchw->bchw"),
             helper.make_node("Mystery", ["e"], ["m"], name="mystery", domain="com.example"),
             helper.make_node("Relu", ["m"], ["r"], name="after_unknown"),
             helper.make_node("Div", ["x", "x"], ["p"], name="ratio"),
             helper.make_node("Add", ["r", "p"], ["y"], name="join")]
    message = refusal_text(write_model(tmp_path, nodes, SHAPE))
    assert "cannot import 3 node(s) of the ONNX graph, of 3 operator type(s) (Einsum, com.example::Mystery, Div)" \
        in message
    assert "Einsum (1 node): an operator refcam does not import" in message
    assert "com.example::Mystery (1 node): an operator refcam does not import" in message
    assert "Div (1 node): Div of two tensors the network computes" in message
    assert "'after_unknown'" not in message and "'join'" not in message
