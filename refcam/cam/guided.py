"""Guided backpropagation and Guided Grad-CAM: refcam's one reverse sweep below the feature layer.

**Guided backpropagation** (Springenberg, Dosovitskiy, Brox and Riedmiller,
"Striving for simplicity: the all convolutional net", ICLR workshop 2015) is
the gradient of the score ``y`` with respect to the **input** ``x``, swept
through the whole network, except that every ReLU passes back only positive
gradients at positive inputs::

    ReLU, ordinary:  dL/dx = [x > 0] * g
    ReLU, guided:    dL/dx = [x > 0] * max(g, 0)          (g = dL/dy, the gradient arriving from above)

Every other op keeps its true VJP. That is the peers' rule too: pytorch-grad-cam
1.5.7's ``GuidedBackpropReLUModel`` replaces the modules that are
``torch.nn.ReLU`` (``replace_all_layer_type_recursive``) and Captum 0.9's
``GuidedBackprop`` hooks the ``torch.nn.ReLU`` modules (``isinstance``); neither
touches ``nn.ReLU6`` (a ``Hardtanh``), ``nn.LeakyReLU``, ``nn.ELU``, ``nn.GELU``,
``nn.SiLU``, ``nn.Hardswish``, ``nn.Hardsigmoid``, ``nn.Sigmoid``, ``nn.Tanh``,
or a functional ``F.relu``. In refcam the rule applies to the op ``"relu"``
(MATLAB ``reluLayer``, PyTorch ``nn.ReLU`` and ``F.relu``, ONNX ``Relu``,
Keras ``relu``); clipped ReLU, leaky ReLU, swish/SiLU, GELU, hard sigmoid,
hard swish, sigmoid, tanh, erf and softmax are differentiated exactly (refcam
has no ELU). An imported ``F.relu`` is guided by refcam and not by the peers.

The rule is passed to one sweep (:func:`refcam.autodiff.grad`'s ``rules=``);
the forward pass is the ordinary one, and :func:`refcam.gradcam` and the
other CAM methods still record nothing below their feature layer (spec G15).

**Guided Grad-CAM** (Selvaraju et al., ICCV 2017, section 3.2) multiplies the
guided gradient, channel by channel, with the Grad-CAM map ``M`` upsampled to
the input's size::

    GG[c, q] = guided[c, q] * up(M)[q]

``up``: "bilinear" (default; the paper's choice) or "bicubic" / "nearest"
(MATLAB's ``imresize``, as :func:`refcam.gradcam`), or "nearest-torch"
(``torch.nn.functional.interpolate(mode="nearest")``, which Captum 0.9's
``GuidedGradCam`` uses by default through ``LayerAttribution.interpolate``).
``M`` is the Grad-CAM raw map of :func:`refcam.gradcam` (with its ReLU; Captum
passes ``relu_attributions=True``), not normalised.

Arrays: the guided gradient (K, B, C, *S) in the internal layout of the input
(label, observation, input channel, input positions); the returned ``.map`` in
the caller's layout of ``x`` (:func:`input_layout`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..autodiff import Node, Tensor, grad, graph_nodes
from ..backend import get_xp, is_cupy_array, resolve_device, resolve_dtype, to_device, to_numpy
from ..errors import GradCAMError
from ..layout import Layout, to_internal
from ..network import Network
from ..ops.activation import relu_vjp_x
from .capture import (GradCAMResult, _check_score_arguments, _check_scores_finite, _score_functions, cam_options,
                      capture, is_label_sequence)
from .conventions import resize_nearest_torch
from .gradient_methods import channel_weights_and_map
from .resize import resize_map
from .selection import check_layer_name, default_reduction_layer

GUIDED_UPSAMPLING = ("bilinear", "bicubic", "nearest", "nearest-torch")
SWEEP_OPTIONS = ("reduction", "reduction_layer", "format", "device", "dtype", "mask")
GUIDED_OPTIONS = (*SWEEP_OPTIONS, "keep_on_device")


# --- the rule ------------------------------------------------------------------------------------
def guided_relu_vjp_x(x: Any, grad_y: Any) -> Any:
    """The guided ReLU backward ``[x > 0] * max(g, 0)`` (0 at ``x = 0``, as the ordinary rule)."""
    return relu_vjp_x(x, get_xp(grad_y).maximum(grad_y, 0.0))


def guided_relu_rule(node: Node, grad_out: Any, needs: tuple[bool, ...]) -> tuple[Any, ...]:
    """The rule for a recorded ``"relu"`` node: its one input's guided gradient."""
    (x,) = node.inputs
    return (guided_relu_vjp_x(x.data, grad_out),)


GUIDED_RULES = {"relu": guided_relu_rule}
"""The ops whose VJP guided backpropagation replaces; every other op keeps its own."""


# --- results -------------------------------------------------------------------------------------
@dataclass
class GuidedBackpropResult(GradCAMResult):
    """:func:`guided_backprop`'s result, a :class:`GradCAMResult` whose "feature layer" is the input.

    ``map`` and ``raw_map``: the guided gradient in the caller's layout of
    ``x`` (:func:`input_layout`); ``feature_layer``: the input layer's name;
    ``activations``: ``x`` (B, C, *S) as the network received it (before the
    input layer's normalisation); ``gradients``: the guided gradient
    (K, B, C, *S); ``weights``: None; ``scores`` (K, B).
    """


@dataclass
class GuidedGradCAMResult(GradCAMResult):
    """:func:`guided_gradcam`'s result: Grad-CAM's intermediates, the guided gradient, the upsampled map.

    ``map``: ``guided * up(M)`` in the caller's layout of ``x``;
    ``activations``, ``gradients``, ``weights`` and ``raw_map``: Grad-CAM's at
    the feature layer (as :func:`refcam.gradcam`); ``cam``: ``up(M)`` in
    MATLAB's map layout; ``guided_gradients``: (K, B, C, *S) at the input.
    """

    cam: Any = None
    guided_gradients: Any = None


# --- the sweep to the input ----------------------------------------------------------------------
@dataclass
class GuidedSweep:
    """The input (B, C, *S), the guided gradients (K, B, C, *S), the scores (K, B) and the layout."""

    inputs: Any
    gradients: Any
    scores: Any
    labels: list[int] | None
    stacked: bool
    reduction_layer: str
    layout: Layout
    info: dict[str, Any]


def guided_sweep(net: Network, x: Any, label: Any = None, *, reduction: Callable[[Tensor], Tensor] | None = None,
                 reduction_layer: str | None = None, format: str | None = None, device: str = "auto",
                 dtype: str = "float64", mask: Any = None) -> GuidedSweep:
    """One forward pass recorded from the input up, and one guided reverse sweep per label to the input."""
    _check_score_arguments(label, reduction, True)
    on = resolve_device(device)
    x_internal, layout = to_internal(to_device(x, on), net.input_layer, format=format, dtype=resolve_dtype(dtype))
    reduction_name = check_layer_name(net, reduction_layer or default_reduction_layer(net), "reduction_layer")
    leaf = Tensor(x_internal, requires_grad=True, name=net.input_layer.name)
    reduced = net.forward_tensors(leaf, [reduction_name])[reduction_name]
    scores, label_indices = _score_functions(net, reduced, label, reduction, mask, layout)
    evaluated = [score.evaluate(reduced) for score in scores]
    xp = get_xp(x_internal)
    _check_scores_finite(xp, [per_observation for _, per_observation in evaluated], reduction is not None)
    totals = [total for total, _ in evaluated]
    gradients = xp.stack([grad(total, [leaf], rules=GUIDED_RULES)[0] for total in totals])      # (K, B, C, *S)
    recorded = [node.op for node in graph_nodes(totals[0])]
    info = {"device": on, "dtype": x_internal.dtype.name, "format": layout.format, "recorded_ops": recorded,
            "guided_ops": sum(op in GUIDED_RULES for op in recorded)}
    return GuidedSweep(x_internal, gradients, xp.stack([values for _, values in evaluated]), label_indices,
                       label is not None and is_label_sequence(label), reduction_name, layout, info)


def input_layout(layout: Layout, arrays: Any, stacked: bool) -> Any:
    """Arrays (K, B, C, *S) shaped like the input ``x``: its own axes in its order (without ``B``), then
    ``K`` when ``stacked`` (else K is 1 and dropped), then ``B`` when the format has one (else dropped).

    >>> import numpy as np
    >>> input_layout(Layout("SSC", (4, 5, 3)), np.zeros((2, 1, 3, 4, 5)), stacked=True).shape
    (4, 5, 3, 2)
    >>> input_layout(Layout("CBT", (3, 2, 9)), np.zeros((1, 2, 3, 9)), stacked=False).shape
    (3, 9, 2)
    """
    spatial = iter(range(3, arrays.ndim))
    own = [2 if letter == "C" else next(spatial) for letter in layout.format if letter != "B"]
    order = own + [0, 1]                                                     # (*own axes, K, B)
    moved = arrays.transpose(order)
    labels, batch = arrays.shape[:2]
    shape = (tuple(arrays.shape[axis] for axis in own) + ((labels,) if stacked else ())
             + ((batch,) if layout.has_batch_axis else ()))
    return moved.reshape(shape)


def _checked_options(method: str, options: dict[str, Any], allowed: tuple[str, ...]) -> dict[str, Any]:
    """``options`` with the common defaults filled in; GradCAMError for a name not in ``allowed``."""
    unknown = sorted(name for name in options if name not in allowed)
    if unknown:
        raise GradCAMError(f"{method} has no option(s) {unknown}; its options are: " + ", ".join(allowed) + ".")
    return cam_options(method, options)


def _out(keep_on_device: bool) -> Callable[[Any], Any]:
    return (lambda a: a) if keep_on_device else (lambda a: None if a is None else to_numpy(a))


# --- the public functions ------------------------------------------------------------------------
def guided_backprop(net: Network, x: Any, label: Any = None, **options: Any) -> GuidedBackpropResult:
    """Guided backpropagation (Springenberg et al., ICLR workshop 2015): ``dy/dx`` with the guided ReLU rule.

    Every ReLU's backward is ``[x > 0] * max(g, 0)``; every other op's is its
    true derivative (module docstring: which activations, and the peers).
    ``y`` is the score the call defines, as for :func:`refcam.gradcam`
    (sum over a batch: each observation gets its own gradient).

    Parameters
    ----------
    net, x, label
        As for :func:`refcam.gradcam`.
    **options
        ``reduction``, ``reduction_layer``, ``format``, ``device``, ``dtype``,
        ``mask``, ``keep_on_device``, as for :func:`refcam.gradcam` (there is
        no feature layer and no resize).

    Returns
    -------
    GuidedBackpropResult
        ``.map``: the guided gradient laid out like ``x`` (then a label axis
        for a sequence of labels, then the batch axis); ``.gradients``: the
        same in the internal layout (K, B, C, *S); ``.info["guided_ops"]``:
        how many ReLU ops were guided.

    >>> res = guided_backprop(net, image, "cat", reduction_layer="fc")   # doctest: +SKIP
    >>> res.map.shape                                                    # doctest: +SKIP
    (224, 224, 3)
    """
    settings = _checked_options("guided-backprop", options, GUIDED_OPTIONS)
    swept = guided_sweep(net, x, label, **{name: settings[name] for name in SWEEP_OPTIONS})
    out = _out(settings["keep_on_device"])
    shaped = out(input_layout(swept.layout, swept.gradients, swept.stacked))
    return GuidedBackpropResult(
        map=shaped, feature_layer=net.input_layer.name, reduction_layer=swept.reduction_layer,
        activations=out(swept.inputs), gradients=out(swept.gradients), weights=None, raw_map=shaped,
        scores=out(swept.scores), labels=swept.labels, upsampling="none",
        info=dict(swept.info, method="guided-backprop"))


def upsample_to_input(raw: Any, layout: Layout, upsampling: str) -> Any:
    """Grad-CAM maps (K, B, *S_feature) resized to (K, B, *S_input) with one of :data:`GUIDED_UPSAMPLING`."""
    if upsampling not in GUIDED_UPSAMPLING:
        raise GradCAMError(f"guided-gradcam upsampling must be one of {GUIDED_UPSAMPLING}, not {upsampling!r} "
                           "(the map is multiplied into the input-sized guided gradient, so it is always resized).")
    size = layout.map_resize_size()
    if upsampling == "nearest-torch":
        return to_device(resize_nearest_torch(to_numpy(raw), size), "gpu" if is_cupy_array(raw) else "cpu")
    resized = resize_map(layout.map_for_resize(raw), size, upsampling)                        # (*S', K*B)
    by_map = resized.transpose((resized.ndim - 1, *range(resized.ndim - 1)))                    # (K*B, *S')
    return by_map.reshape(raw.shape[:2] + by_map.shape[1:])


def guided_gradcam(net: Network, x: Any, label: Any = None, *, upsampling: str = "bilinear",
                   **options: Any) -> GuidedGradCAMResult:
    """Guided Grad-CAM (Selvaraju et al., ICCV 2017): ``guided[c, q] * up(M)[q]``.

    ``M = ReLU(sum_k alpha_k A_k)`` is :func:`refcam.gradcam`'s raw map (its own
    forward and sweep, above the feature layer only); ``guided`` is
    :func:`guided_backprop`'s gradient for the same score; ``up`` resizes ``M``
    to the input: "bilinear" (default, the paper), "bicubic" or "nearest"
    (MATLAB's imresize) or "nearest-torch" (Captum 0.9's default).

    Parameters
    ----------
    net, x, label
        As for :func:`refcam.gradcam`.
    upsampling : {"bilinear", "bicubic", "nearest", "nearest-torch"}
        How ``M`` reaches the input's size.
    **options
        Those of :func:`refcam.gradcam`: ``reduction``, ``feature_layer``,
        ``reduction_layer``, ``format``, ``device``, ``dtype``, ``mask``,
        ``keep_on_device``.

    Returns
    -------
    GuidedGradCAMResult
        ``.map`` laid out like ``x`` (as :func:`guided_backprop`'s), ``.cam``
        (``up(M)``, MATLAB's map layout), ``.guided_gradients`` (K, B, C, *S)
        and Grad-CAM's intermediates.

    >>> res = guided_gradcam(net, image, "cat", reduction_layer="fc")   # doctest: +SKIP
    >>> res.map.shape, res.cam.shape                                    # doctest: +SKIP
    ((224, 224, 3), (224, 224))
    """
    settings = cam_options("guided-gradcam", dict(options, upsampling=upsampling))
    common = {name: settings[name] for name in SWEEP_OPTIONS}
    captured = capture(net, x, label, feature_layer=settings["feature_layer"], **common)
    weights, raw = channel_weights_and_map(captured.gradients, captured.activations)
    swept = guided_sweep(net, x, label, **common)
    cam = upsample_to_input(raw, captured.layout, upsampling)                                    # (K, B, *S)
    product = swept.gradients * cam[:, :, None]                                                 # (K, B, C, *S)
    out, layout, stacked = _out(settings["keep_on_device"]), captured.layout, captured.stacked
    return GuidedGradCAMResult(
        map=out(input_layout(layout, product, stacked)), feature_layer=captured.feature_layer,
        reduction_layer=captured.reduction_layer, activations=out(captured.activations),
        gradients=out(captured.gradients), weights=out(weights), raw_map=out(layout.map_from_internal(raw, stacked)),
        scores=out(captured.scores), labels=captured.labels, upsampling=upsampling,
        info=dict(captured.info, method="guided-gradcam", guided_ops=swept.info["guided_ops"],
                  guided_recorded_ops=swept.info["recorded_ops"]),
        cam=out(layout.map_from_internal(cam, stacked)), guided_gradients=out(swept.gradients))
