"""``grad(..., rules=)``: a replacement VJP for named ops, for one sweep only (no hidden state)."""
from __future__ import annotations

import numpy as np

from refcam.autodiff import Tensor, grad
from refcam.cam.guided import GUIDED_RULES
from refcam.ops.activation import leaky_relu, relu
from tests.tolerances import F64


def chain(x):
    """relu(W2 relu(W1 x)) . c with mixed-sign weights: the gradient reaching each ReLU has both signs."""
    w1 = np.array([[1.0, -2.0, 0.5], [-1.0, 1.0, 2.0], [0.5, 0.5, -1.0]])
    w2 = np.array([[2.0, -1.0, 1.0], [-3.0, 1.0, 0.5]])
    pre_activation = x @ w1.T
    return (relu(relu(pre_activation) @ w2.T) * np.array([1.0, -1.0])).sum(), pre_activation


def test_rules_replace_the_named_op_in_that_sweep_only():
    x = Tensor(np.array([[0.3, -0.7, 1.1], [1.5, 0.2, -0.4]]), requires_grad=True)
    score, pre_activation = chain(x)
    true_before = grad(score, [x])[0]
    guided = grad(score, [x, pre_activation], rules=GUIDED_RULES)
    true_after = grad(score, [x])[0]
    np.testing.assert_array_equal(true_before, true_after)          # the graph and later sweeps are unchanged
    assert not np.allclose(guided[0], true_before)
    assert (guided[1] >= 0).all() and (guided[1] > 0).any()         # what a guided ReLU passes down is >= 0


def test_an_op_without_a_rule_keeps_its_own_vjp():
    x = Tensor(np.array([-1.0, 2.0, -3.0]), requires_grad=True)
    y = (leaky_relu(x, scale=0.1) * np.array([-1.0, -1.0, 1.0])).sum()
    np.testing.assert_allclose(grad(y, [x], rules=GUIDED_RULES)[0], grad(y, [x])[0], **F64)


def test_a_rule_receives_the_node_and_the_incoming_gradient():
    seen = []

    def doubling(node, grad_out, needs):
        seen.append((node.op, grad_out.copy(), needs))
        return (2.0 * grad_out * (node.inputs[0].data > 0),)
    x = Tensor(np.array([1.0, -1.0, 2.0]), requires_grad=True)
    y = (relu(x) * np.array([3.0, 4.0, 5.0])).sum()
    np.testing.assert_allclose(grad(y, [x], rules={"relu": doubling})[0], [6.0, 0.0, 10.0], **F64)
    assert seen[0][0] == "relu" and seen[0][2] == (True,)
    np.testing.assert_allclose(seen[0][1], [3.0, 4.0, 5.0], **F64)
