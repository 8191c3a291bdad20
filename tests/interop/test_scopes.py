"""Module-path naming of exported nodes (no torch needed), and from_torch without torch or onnx."""
from __future__ import annotations

import doctest
import subprocess
import sys

import pytest

import refcam
import refcam.interop.scopes as scopes
from refcam.errors import OptionalDependencyError
from refcam.interop.scopes import GraphNode, plan_names


def node(name: str, op_type: str, inputs: tuple[str, ...], output: str) -> GraphNode:
    return GraphNode(name, op_type, inputs, (output,))


# a BasicBlock-like container called once, whose relu runs twice; a Clip with Constant bounds; a top-level flatten
NODES = [
    node("/stem/stem.0/Conv", "Conv", ("input", "w0"), "t0"),
    node("/stem/stem.1/Constant", "Constant", (), "lo"),
    node("/stem/stem.1/Clip", "Clip", ("t0", "lo"), "t1"),
    node("/block/conv/Conv", "Conv", ("t1", "w1"), "t2"),
    node("/block/relu/Relu", "Relu", ("t2",), "t3"),
    node("/block/Add", "Add", ("t3", "t1"), "t4"),
    node("/block/relu_1/Relu", "Relu", ("t4",), "t5"),
    node("/act/Sigmoid", "Sigmoid", ("t5",), "t6"),
    node("/act/Mul", "Mul", ("t5", "t6"), "t7"),
    node("/Flatten", "Flatten", ("t7",), "t8"),
    node("/fc/Gemm", "Gemm", ("t8", "w2"), "output"),
    node("Identity_0", "Identity", ("w2",), "w3"),
]
MODULES = {"": False, "stem": False, "stem.0": True, "stem.1": True, "block": False, "block.conv": True,
           "block.relu": True, "act": True, "fc": True}
CALLS = {"": 1, "stem": 1, "stem.0": 1, "stem.1": 1, "block": 1, "block.conv": 1, "block.relu": 2, "act": 1, "fc": 1}


def test_names_follow_module_paths() -> None:
    plan = plan_names(NODES, "input", ["output"], MODULES, CALLS)
    assert [plan.names[n.name] for n in NODES] == [
        "stem.0", "/stem/stem.1/Constant", "stem.1", "block.conv", "block.relu", "block.Add", "block.relu_1",
        "act.Sigmoid", "act.Mul", "Flatten", "fc", "Identity_0"]


def test_module_outputs_are_the_tensors_leaving_each_scope() -> None:
    plan = plan_names(NODES, "input", ["output"], MODULES, CALLS)
    assert plan.module_outputs == {"stem.0": "t0", "stem.1": "t1", "stem": "t1", "block.conv": "t2",
                                   "block": "t5", "act": "t7", "fc": "output"}   # block.relu ran twice


def test_a_module_called_twice_has_no_output_and_a_taken_name_gets_a_number() -> None:
    nodes = [node("/seq/seq.0/Conv", "Conv", ("input", "w"), "a"),
             node("/seq.0/Conv", "Conv", ("a", "w"), "b"),             # seq.0 called again from the top
             node("/Relu", "Relu", ("b",), "c"),
             node("/Relu_1", "Relu", ("c",), "input_x")]
    plan = plan_names(nodes, "input", ["input_x"], {"": False, "seq": False, "seq.0": True, "Relu": True},
                      {"": 1, "seq": 1, "seq.0": 2})
    assert [plan.names[n.name] for n in nodes] == ["seq.0", "seq.0_1", "Relu", "Relu_1"]
    assert plan.module_outputs == {"seq": "a"}


def test_a_name_taken_twice_or_by_the_input_is_numbered() -> None:
    """A child module attribute called ``Add`` next to a functional add; a module called ``input``."""
    nodes = [node("/input/Relu", "Relu", ("input",), "a"), node("/a/Add/Relu", "Relu", ("a",), "b"),
             node("/a/Add", "Add", ("b", "a"), "c")]
    plan = plan_names(nodes, "input", ["c"], {"": False, "input": True, "a": False, "a.Add": True}, {})
    assert [plan.names[n.name] for n in nodes] == ["input_2", "a.Add", "a.Add_2"]


def test_the_module_docstrings_examples_hold() -> None:
    assert doctest.testmod(scopes).failed == 0


def test_import_refcam_imports_neither_torch_nor_onnx() -> None:
    code = "import sys, refcam, refcam.interop.torch; assert not {'torch', 'onnx'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("missing", ["torch", "onnx"])
def test_without_torch_or_onnx_from_torch_says_what_to_install(monkeypatch, missing) -> None:
    monkeypatch.setitem(sys.modules, missing, None)                # `import missing` raises ImportError
    if missing == "onnx":
        pytest.importorskip("torch")
    with pytest.raises(OptionalDependencyError, match=r'pip install "refcam\[torch\]"'):
        refcam.from_torch(object(), object())
