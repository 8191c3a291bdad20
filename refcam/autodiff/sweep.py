"""The reverse sweep: propagate ``dL/dy`` from an output back through recorded nodes.

For a node ``y = op(x_1, ..., x_n)`` visited after every node that uses ``y``,
``dL/dx_i += vjp_i(dL/dy)``; a tensor used by several ops receives the sum of
their contributions (gradient accumulation).

**Rules** (``rules=``, off by default): a mapping from an op name to a function
``rule(node, grad_out, needs) -> tuple`` used instead of that node's own VJP.
It is passed explicitly to one sweep (there is no global mode); the forward
values and the graph are not changed. Guided backpropagation
(:mod:`refcam.cam.guided`) replaces the VJP of ``"relu"`` this way.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from .tensor import Node, Tensor, graph_nodes

Rule = Callable[[Node, Any, tuple[bool, ...]], tuple[Any, ...]]


def _sweep(output: Tensor, grad_output: Any, rules: Mapping[str, Rule] | None = None) -> dict[int, Any]:
    """Return ``{id(tensor): dL/dtensor}`` for every tensor reached from ``output``."""
    xp = output.xp
    if grad_output is None:
        grad_output = xp.ones(output.shape, dtype=output.dtype)
    grad_output = xp.asarray(grad_output, dtype=output.dtype)  # Python numbers and lists too
    if tuple(grad_output.shape) != output.shape:
        from ..errors import ShapeError
        raise ShapeError(f"grad_output has shape {tuple(grad_output.shape)}, "
                         f"the output has shape {output.shape}.")
    grads: dict[int, Any] = {id(output): grad_output}
    node_output = {id(output.node): output} if output.node else {}
    nodes = graph_nodes(output)
    for node in nodes:
        for t in node.inputs:
            if t.node is not None:
                node_output.setdefault(id(t.node), t)
    for node in reversed(nodes):
        produced = node_output[id(node)]
        g = grads.get(id(produced))
        if g is None:
            continue
        needs = tuple(t.requires_grad for t in node.inputs)
        rule = rules.get(node.op) if rules else None
        contributions = rule(node, g, needs) if rule is not None else node.vjp(g, needs)
        for t, contribution in zip(node.inputs, contributions):
            if contribution is None or not t.requires_grad:
                continue
            key = id(t)
            grads[key] = contribution if key not in grads else grads[key] + contribution
    return grads


def grad(output: Tensor, inputs: Sequence[Tensor], grad_output: Any = None, *,
         rules: Mapping[str, Rule] | None = None) -> list[Any]:
    """``[dL/dx for x in inputs]`` with ``L = <grad_output, output>`` (``sum(output)`` by default).

    Nothing is mutated; an input that ``output`` does not depend on gets zeros.
    ``rules`` replaces the VJP of the named ops for this sweep only (module
    docstring); without it the result is the true gradient.

    >>> import numpy as np
    >>> x = Tensor(np.array([3.0]), requires_grad=True)
    >>> grad((x * x).sum(), [x])
    [array([6.])]
    """
    grads = _sweep(output, grad_output, rules)
    return [grads[id(x)] if id(x) in grads else x.xp.zeros(x.shape, dtype=x.dtype) for x in inputs]


def backward(output: Tensor, grad_output: Any = None) -> None:
    """Accumulate ``dL/dleaf`` into ``leaf.grad`` for every leaf that requires grad."""
    grads = _sweep(output, grad_output)
    leaves = {id(t): t for node in graph_nodes(output) for t in node.inputs
              if t.is_leaf and t.requires_grad}
    if output.is_leaf and output.requires_grad:
        leaves[id(output)] = output
    for key, leaf in leaves.items():
        g = grads.get(key)
        if g is not None:
            leaf.grad = g.copy() if leaf.grad is None else leaf.grad + g  # own array, never a VJP's alias
