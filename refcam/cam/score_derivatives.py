"""Exact first, second and third derivatives of a class score along every entry of the feature activations.

Grad-CAM++'s exact form (:func:`refcam.gradcam_plus_plus` with ``form="exact"``)
needs, for every entry ``e = A_k[p]``, the derivatives of order 1, 2 and 3 of
the score ``S`` along the line ``A + t e`` at ``t = 0`` (the diagonal of the
Hessian and of the third-derivative tensor). refcam computes them in closed
form, without finite differences, for the heads where that is exact:

**The head.** Every layer after the feature layer up to the input ``z`` of
the reduction layer is piecewise linear (:data:`PIECEWISE_LINEAR_KINDS`:
convolutions, fully connected, batch normalisation at inference, the ReLUs,
pooling, reshapes, padding, resize, ...). Near ``A`` (no kink crossed; at a
kink the one-sided rules of the ReLU and pooling VJPs) ``z(A + t e) = z + t v``
with ``v = dz/dA_e``, a column of the Jacobian: one reverse sweep per entry of
``z`` (``C_z`` channels times ``Q`` positions) gives every column at once.
With ``w_q`` the mask (1 without one) and ``c`` the class, the score is
``S = sum_q w_q f_q`` and:

* reduction layer piecewise linear (the logit): ``f_q = z_c[q]``, so
  ``S'`` is the gradient and ``S'' = S''' = 0`` (no sweep needed): the exact
  form is the closed form.
* softmax over channels (MATLAB's default reduction layer): ``f_q = p_c[q]``,
  ``p = softmax(z[:, q])``. With ``E``, ``Var`` and ``K3`` the mean, variance
  and third central moment of ``v[:, q]`` under ``p`` (the cumulants of the
  log-sum-exp), ``l1 = v_c - E``, ``l2 = -Var``, ``l3 = -K3`` are the
  derivatives of ``log p_c``, and ``f' = f l1``, ``f'' = f (l1^2 + l2)``,
  ``f''' = f (l1^3 + 3 l1 l2 + l3)``.
* sigmoid (element-wise): ``f_q = s = sigmoid(z_c[q])``, ``f' = s (1 - s) v_c``,
  ``f'' = s (1 - s) (1 - 2 s) v_c^2``, ``f''' = s (1 - s) (1 - 6 s + 6 s^2) v_c^3``.

Any other head (a layer normalisation, tanh, GELU, a product of two branches,
a user's ``reduction``) is refused with :class:`~refcam.errors.GradCAMError`:
its higher derivatives would need a second-order engine, which refcam does
not have. Arrays: the Jacobian columns ``V`` (C_z, Q, B, C, *S); each
derivative (K, B, C, *S) like the gradients.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..autodiff import Tensor, grad
from ..backend import get_xp, resolve_dtype, to_device
from ..errors import GradCAMError
from ..layout import to_internal
from ..network import Network
from ..ops.activation import sigmoid_forward, softmax_forward
from .capture import Captured, _mask_weight

PIECEWISE_LINEAR_KINDS = frozenset({
    "convolution1d", "convolution2d", "convolution3d", "grouped_convolution2d", "transposed_convolution1d",
    "transposed_convolution2d", "transposed_convolution3d", "fully_connected", "batch_normalization", "relu",
    "leaky_relu", "clipped_relu", "hard_sigmoid", "max_pooling1d", "max_pooling2d", "max_pooling3d",
    "average_pooling1d", "average_pooling2d", "average_pooling3d", "global_average_pooling1d",
    "global_average_pooling2d", "global_average_pooling3d", "global_max_pooling1d", "global_max_pooling2d",
    "global_max_pooling3d", "flatten", "dropout", "addition", "depth_concatenation", "channel_shuffle",
    "channel_slice", "reduce", "cropping", "padding", "scaling", "resize",
})
"""Layer kinds that are piecewise linear in their input (affine between kinks): second derivatives 0."""
SMOOTH_SCORES = ("softmax", "sigmoid")


def head_kind(net: Network, feature_layer: str, reduction_layer: str) -> str:
    """"linear", "softmax" or "sigmoid": what the score is of a piecewise-linear function of ``A``; else an error."""
    top = net.layer(reduction_layer)
    kind = top.kind if top.kind in SMOOTH_SCORES else "linear"
    logits = top.inputs[0] if kind != "linear" else reduction_layer
    between = net.downstream(feature_layer) & (net.upstream(logits) | {logits})
    for name in net.layer_names:
        if name in between and net.layer(name).kind not in PIECEWISE_LINEAR_KINDS:
            raise GradCAMError(
                f"Grad-CAM++ form='exact': layer {name!r} ({net.layer(name).kind}) between the feature layer "
                f"{feature_layer!r} and the score is not piecewise linear, so the score's second and third "
                "derivatives are not available in closed form. The exact form supports heads of convolutions, "
                "fully connected, batch normalisation, ReLUs, pooling and reshapes ending in the logit, a softmax "
                "or a sigmoid; use form='closed' (the paper's) for this network.")
    return kind


def jacobian_columns(leaf: Tensor, z: Tensor) -> Any:
    """``V[i, q] = dz[:, i, q]/dA`` for every channel ``i`` and position ``q`` of ``z``: (C_z, Q, B, C, *S)."""
    xp = get_xp(leaf.data)
    channels, positions = z.shape[1], z.shape[2:]
    rows = [grad(z[(slice(None), i) + q].sum(), [leaf])[0]
            for i in range(channels) for q in np.ndindex(positions)]
    return xp.stack(rows).reshape((channels, int(np.prod(positions, dtype=np.int64))) + leaf.shape)


def softmax_line_derivatives(p: Any, columns: Any, c: int) -> tuple[Any, Any, Any]:
    """``(f', f'', f''')`` of ``f = p_c`` along each column; ``p`` (C_z, Q, B, 1, ...) -> each (Q, B, C, *S)."""
    mean = (p * columns).sum(axis=0)
    centred = columns - mean
    variance = (p * centred ** 2).sum(axis=0)
    third_moment = (p * centred ** 3).sum(axis=0)
    l1, f = centred[c], p[c]
    return f * l1, f * (l1 * l1 - variance), f * (l1 ** 3 - 3.0 * l1 * variance - third_moment)


def sigmoid_line_derivatives(s: Any, columns: Any, c: int) -> tuple[Any, Any, Any]:
    """``(f', f'', f''')`` of ``f = sigmoid(z_c)`` along each column: ``s`` (C_z, Q, B, 1, ...) -> (Q, B, C, *S)."""
    v, sc = columns[c], s[c]
    d1 = sc * (1.0 - sc)
    return d1 * v, d1 * (1.0 - 2.0 * sc) * v * v, d1 * (1.0 - 6.0 * sc + 6.0 * sc * sc) * v ** 3


def score_derivatives(net: Network, x: Any, captured: Captured, *, format: str | None = None, mask: Any = None,
                      reduction: Any = None) -> tuple[Any, Any, Any]:
    """``(S', S'', S''')`` (K, B, C, *S) of each label's score of ``captured`` along every entry of ``A``.

    ``x``, ``format`` and ``mask`` as given to the method that made ``captured``
    (one more forward pass runs, taped from the feature layer up, and one
    reverse sweep per entry of the reduction layer's input). Module docstring:
    which heads, and the formulas.
    """
    if reduction is not None or captured.labels is None:
        raise GradCAMError("Grad-CAM++ form='exact' differentiates a class score three times: pass label=, not "
                           "reduction= (a user function's higher derivatives are not available).")
    feature, top = captured.feature_layer, captured.reduction_layer
    kind = head_kind(net, feature, top)
    gradients = captured.gradients
    if kind == "linear":
        zero = get_xp(gradients).zeros_like(gradients)
        return gradients, zero, zero
    logits = net.layer(top).inputs[0]
    x_internal, layout = to_internal(to_device(x, captured.info["device"]), net.input_layer, format=format,
                                     dtype=resolve_dtype(captured.info["dtype"]))
    outputs = net.forward_tensors(Tensor(x_internal), [feature, logits, top], grad_from=feature)
    columns = jacobian_columns(outputs[feature], outputs[logits])                       # (C_z, Q, B, C, *S)
    xp = get_xp(columns)
    weight = (xp.ones(columns.shape[1], dtype=columns.dtype) if mask is None
              else _mask_weight(mask, outputs[top], layout).reshape(-1))                   # (Q,)
    weight = weight.reshape((-1,) + (1,) * (columns.ndim - 2))
    z = outputs[logits].data
    by_channel = z.reshape(z.shape[:2] + (-1,)).transpose(1, 2, 0)                      # (C_z, Q, B)
    by_channel = by_channel.reshape(by_channel.shape + (1,) * (columns.ndim - 3))
    rule = softmax_line_derivatives if kind == "softmax" else sigmoid_line_derivatives
    values = softmax_forward(by_channel, 0) if kind == "softmax" else sigmoid_forward(by_channel)
    per_label = [[(weight * f).sum(axis=0) for f in rule(values, columns, c)] for c in captured.labels]
    return tuple(xp.stack([one[n] for one in per_label]) for n in range(3))
