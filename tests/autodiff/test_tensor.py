"""Tensor, as_tensor, record and graph_nodes: what is recorded, and in which order."""
from __future__ import annotations

import numpy as np
import pytest

from refcam.autodiff import Node, Tensor, as_tensor, grad, graph_nodes, record


def test_tensor_wraps_an_array_and_reports_its_facts(rng):
    data = rng.standard_normal((2, 3))
    t = Tensor(data, name="activations")
    assert t.data is data
    assert (t.shape, t.ndim, t.dtype, t.size, len(t)) == ((2, 3), 2, np.float64, 6, 2)
    assert t.xp is np
    assert t.is_leaf and not t.requires_grad and t.grad is None and t.node is None
    assert repr(t) == "Tensor(shape=(2, 3), dtype=float64, requires_grad=False, name='activations')"


def test_tensor_converts_python_scalars_and_lists():
    assert Tensor(2.5).shape == () and Tensor(2.5).dtype == np.float64
    np.testing.assert_array_equal(Tensor([1.0, 2.0]).data, [1.0, 2.0])


def test_result_of_a_recorded_op_names_its_op():
    x = Tensor(np.ones(3), requires_grad=True)
    y = x * 2.0
    assert not y.is_leaf and y.requires_grad and y.node.op == "multiply"
    assert "op='multiply'" in repr(y)
    assert repr(y.node) == "Node(op='multiply', inputs=2)"


def test_detach_keeps_the_data_and_cuts_the_graph():
    x = Tensor(np.ones(3), requires_grad=True)
    y = (x * 3.0).detach()
    np.testing.assert_array_equal(y.data, [3.0, 3.0, 3.0])
    assert y.node is None and not y.requires_grad
    assert [node.op for node in graph_nodes(y * x)] == ["multiply"]


# -- as_tensor ------------------------------------------------------------------
def test_as_tensor_passes_tensors_through():
    t = Tensor(np.ones(2))
    assert as_tensor(t) is t
    assert as_tensor(t, like=Tensor(np.ones(2, dtype=np.float32))) is t


@pytest.mark.parametrize("scalar", [2.0, 2, np.float64(2.0), np.array(2.0)])
def test_as_tensor_gives_scalars_the_dtype_of_like(scalar):
    like = Tensor(np.ones(2, dtype=np.float32))
    wrapped = as_tensor(scalar, like)
    assert wrapped.dtype == np.float32 and wrapped.shape == () and wrapped.data == 2.0
    assert not wrapped.requires_grad


def test_as_tensor_keeps_the_dtype_of_non_scalar_arrays():
    like = Tensor(np.ones(2, dtype=np.float32))
    assert as_tensor(np.ones(2), like).dtype == np.float64


# -- recording ------------------------------------------------------------------
def every_operator(a: Tensor, b: Tensor) -> Tensor:
    """A chain through every Tensor operator (a, b of shape (2, 3))."""
    y = (a + b) - (2.0 - a) * b / (b + 3.0)
    y = -(y ** 2).exp().log() + 1.0 / (a * a + 1.0)
    y = y.reshape(3, 2).T.transpose(1, 0)[::-1, np.array([0, 0])]
    return (y @ a[:, :2]).sum(axis=0).mean() + (a.max(axis=1) * 1.0).sum()


def test_operators_on_constants_record_nothing(rng):
    a = Tensor(rng.uniform(0.5, 1.0, (2, 3)))
    b = Tensor(rng.uniform(0.5, 1.0, (2, 3)))
    y = every_operator(a, b)
    assert y.node is None and not y.requires_grad
    assert graph_nodes(y) == []


def test_mixing_a_constant_and_a_leaf_records(rng):
    a = Tensor(rng.uniform(0.5, 1.0, (2, 3)), requires_grad=True)
    b = Tensor(rng.uniform(0.5, 1.0, (2, 3)))
    y = every_operator(a, b)
    ops = {node.op for node in graph_nodes(y)}
    assert ops == {"add", "subtract", "multiply", "divide", "negative", "power", "exp", "log",
                   "reshape", "transpose", "getitem", "matmul", "sum", "mean", "max"}
    assert y.requires_grad and y.node.op == "add"
    assert grad(y, [b])[0].shape == (2, 3)


def test_constant_subexpressions_inside_a_recorded_graph_have_no_node():
    x = Tensor(np.ones(2), requires_grad=True)
    c = Tensor(np.full(2, 2.0))
    scale = c * c
    y = x * scale
    assert scale.node is None
    assert [node.op for node in graph_nodes(y)] == ["multiply"]


def test_record_returns_a_plain_tensor_when_no_input_requires_grad():
    out = record("custom", np.zeros(2), (Tensor(np.ones(2)),), lambda g, needs: (g,))
    assert out.node is None and not out.requires_grad


def test_record_keeps_op_inputs_and_vjp():
    x = Tensor(np.ones(2), requires_grad=True)
    c = Tensor(np.ones(2))

    def vjp(g, needs):
        return g, None
    out = record("custom", np.zeros(2), [x, c], vjp)
    assert isinstance(out.node, Node)
    assert out.node.op == "custom" and out.node.inputs == (x, c) and out.node.vjp is vjp


def test_graph_nodes_lists_inputs_before_users_and_each_node_once():
    x = Tensor(np.array([0.5, 1.5]), requires_grad=True)
    y = x.exp()                      # f
    left = y * 2.0                   # g(y)
    right = y.log()                  # h(y)
    z = left + right                 # diamond
    nodes = graph_nodes(z)
    assert len(nodes) == 4 and len({id(n) for n in nodes}) == 4
    assert nodes[0] is y.node and nodes[-1] is z.node
    assert {id(n) for n in nodes[1:3]} == {id(left.node), id(right.node)}


@pytest.mark.parametrize("seed", range(5))
def test_graph_nodes_order_is_topological_on_random_dags(seed):
    rng = np.random.default_rng(seed)
    tensors = [Tensor(rng.uniform(1.0, 2.0, 3), requires_grad=True) for _ in range(2)]
    for _ in range(12):
        a, b = (tensors[i] for i in rng.integers(0, len(tensors), 2))
        tensors.append(a * b if rng.random() < 0.5 else a + b)
    output = tensors[-1]
    for t in tensors[2:-1]:
        output = output + t.sum()
    nodes = graph_nodes(output)
    position = {id(n): i for i, n in enumerate(nodes)}
    assert len(position) == len(nodes) == 12 + 2 * 11  # loop ops, then a sum and an add per tensor
    for node in nodes:
        for t in node.inputs:
            if t.node is not None:
                assert position[id(t.node)] < position[id(node)]


def test_graph_nodes_of_a_leaf_is_empty():
    assert graph_nodes(Tensor(np.ones(2), requires_grad=True)) == []
