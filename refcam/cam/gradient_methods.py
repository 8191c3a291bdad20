"""The gradient-weighted CAM family: Grad-CAM, Grad-CAM++, HiResCAM, XGrad-CAM, LayerCAM.

Each map is a weighted sum of the feature activations ``A`` (channels ``k``,
positions ``p``, ``N`` positions) with weights made from the gradient
``g = dy/dA`` of the score ``y``; derivations in ``docs/methods.md``::

    Grad-CAM    M = ReLU(sum_k alpha_k A_k),  alpha_k = (1/N) sum_p g_k[p]              (Selvaraju et al., ICCV 2017)
    Grad-CAM++  M = ReLU(sum_k w_k A_k),      w_k = sum_p a_k[p] ReLU(g_k[p]),
                a_k[p] = g_k[p]^2 / (2 g_k[p]^2 + (sum_q A_k[q]) g_k[p]^3)            (Chattopadhay et al., WACV 2018)
    HiResCAM    M = ReLU(sum_k g_k * A_k)                                               (Draelos and Carin, 2020)
    XGrad-CAM   M = ReLU(sum_k w_k A_k),      w_k = sum_p (A_k[p] / sum_q A_k[q]) g_k[p] (Fu et al., BMVC 2020)
    LayerCAM    M = ReLU(sum_k ReLU(g_k) * A_k)                                         (Jiang et al., IEEE TIP 2021)

(``*`` elementwise over positions). Grad-CAM++'s ``a`` is the paper's
closed form (its eq. 19), which assumes the score is ``exp(S)`` of a score
``S`` that is linear in ``A`` near the input, so that the second and third
derivatives of ``exp(S)`` are ``exp(S) g^2`` and ``exp(S) g^3``; ``g`` is the
gradient of the score the call defines, and ``exp(S)`` is dropped from ``w``
(a positive factor of the whole map), as pytorch-grad-cam 1.5.7 does.
``form="exact"`` (refcam's extension) keeps ``Y = exp(S)`` but uses the true
second and third derivatives ``h``, ``t`` of ``S`` along each entry of ``A``:
``a = (g^2 + h) / (2 (g^2 + h) + (sum_q A_k[q]) (g^3 + 3 g h + t))``
(:mod:`refcam.cam.score_derivatives`).

Arrays (internal layout): ``activations`` (B, C, *S), ``gradients`` (K, B, C,
*S) (label, batch, channel, positions), weights (K, B, C) or, for the methods
that weight every position, (K, B, C, *S); raw maps (K, B, *S). The maths
functions take the array module from their inputs (NumPy or CuPy).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import get_xp, to_numpy
from ..errors import GradCAMError
from ..network import Network
from .capture import Captured, GradCAMResult, MethodMaps, run_method
from .score_derivatives import score_derivatives


@dataclass
class GradCAMPlusPlusResult(GradCAMResult):
    """:class:`GradCAMResult` of :func:`gradcam_plus_plus`, plus ``alphas``: ``a_k[p]`` (K, B, C, *S).

    With ``form="exact"`` also ``second`` and ``third``: the score's second and
    third derivatives along each entry of ``A`` (K, B, C, *S); None otherwise.
    """

    alphas: Any = None
    second: Any = None
    third: Any = None


GRADCAM_PLUS_PLUS_FORMS = ("closed", "exact")


# --- the maths, on arrays ------------------------------------------------------------------------
def channel_sum(weights: Any, activations: Any) -> Any:
    """``sum_k w_k A_k``: weights (K, B, C) or (K, B, C, *S), activations (B, C, *S) -> (K, B, *S), no ReLU."""
    spatial_rank = activations.ndim - 2
    if weights.ndim == 3:
        weights = weights.reshape(weights.shape + (1,) * spatial_rank)                  # (K, B, C, 1, ..., 1)
    return (weights * activations[None]).sum(axis=2)


def channel_weights_and_map(gradients: Any, activations: Any) -> tuple[Any, Any]:
    """G13: ``alpha_k = (1/N) sum_p dy/dA_k[p]`` and ``M = ReLU(sum_k alpha_k A_k)``.

    ``gradients`` (K, B, C, *S) and ``activations`` (B, C, *S) give ``alpha``
    (K, B, C) and the raw maps (K, B, *S).
    """
    xp = get_xp(gradients)
    weights = gradients.mean(axis=_spatial_axes(gradients))                           # (K, B, C)
    return weights, xp.maximum(channel_sum(weights, activations), 0.0)


def grad_cam_plus_plus_maps(gradients: Any, activations: Any, eps: float = 0.0, second: Any = None,
                            third: Any = None) -> tuple[Any, Any, Any]:
    """Grad-CAM++ closed form: ``(w, M, a)`` with ``a = g^2 / (2 g^2 + s g^3 + eps)`` where ``g != 0``, else 0.

    ``s = sum_q A_k[q]`` per channel and observation; ``w_k = sum_p a_k[p]
    ReLU(g_k[p])`` (K, B, C); ``M = ReLU(sum_k w_k A_k)`` (K, B, *S); ``a``
    (K, B, C, *S). ``eps = 0`` is the paper's formula, ``eps = 1e-6``
    pytorch-grad-cam's. A denominator of exactly 0 where ``g != 0`` (only
    possible when ``s < 0``) is an error.

    With ``second`` and ``third``, the score's own second and third
    derivatives ``h`` and ``t`` along each entry (K, B, C, *S), the exact form
    for ``Y = exp(S)``: ``a = n / (2 n + s (g^3 + 3 g h + t) + eps)`` with
    ``n = g^2 + h``, 0 where ``n = 0`` (the closed form is ``h = t = 0``).
    """
    xp = get_xp(gradients)
    channel_sums = activations.sum(axis=tuple(range(2, activations.ndim)), keepdims=True)[None]  # (1, B, C, 1..)
    squared = gradients * gradients
    numerator, nonzero = squared, gradients != 0
    denominator = 2.0 * squared + channel_sums * squared * gradients + eps
    if second is not None:
        numerator = squared + second
        nonzero = numerator != 0
        denominator = 2.0 * numerator + channel_sums * (squared * gradients + 3.0 * gradients * second + third) + eps
    zero_denominator = nonzero & (denominator == 0)
    if bool(to_numpy(zero_denominator.any())):
        raise GradCAMError(
            "Grad-CAM++: 2 g^2 + (sum_q A_k[q]) g^3 is exactly 0 at a position where g != 0 (a feature channel "
            "with a negative sum over positions); its alpha is undefined. Pass eps=1e-6 (pytorch-grad-cam's "
            "value) or choose a feature layer after a ReLU.")
    alphas = xp.where(nonzero, numerator / xp.where(nonzero, denominator, 1.0), 0.0)
    weights = (alphas * xp.maximum(gradients, 0.0)).sum(axis=_spatial_axes(gradients))    # (K, B, C)
    return weights, xp.maximum(channel_sum(weights, activations), 0.0), alphas


def hires_cam_maps(gradients: Any, activations: Any) -> tuple[Any, Any]:
    """HiResCAM: the weights are the gradients themselves (K, B, C, *S); ``M = ReLU(sum_k g_k * A_k)``."""
    xp = get_xp(gradients)
    return gradients, xp.maximum(channel_sum(gradients, activations), 0.0)


def xgrad_cam_maps(gradients: Any, activations: Any, eps: float = 0.0) -> tuple[Any, Any]:
    """XGrad-CAM: ``w_k = sum_p A_k[p] g_k[p] / (sum_q A_k[q] + eps)`` (K, B, C); ``M = ReLU(sum_k w_k A_k)``.

    A channel that is zero at every position gets ``w_k = 0`` (the paper's
    ``0/0``; the channel adds nothing to ``M`` whatever its weight). With
    ``eps = 0`` (the paper) a channel whose values sum to 0 without all being 0
    is an error; ``eps = 1e-7`` is pytorch-grad-cam's.
    """
    xp = get_xp(gradients)
    spatial = tuple(range(2, activations.ndim))
    sums = activations.sum(axis=spatial, keepdims=True) + eps                              # (B, C, 1, ..., 1)
    dead = xp.all(activations == 0, axis=spatial, keepdims=True)
    if bool(to_numpy(((sums == 0) & ~dead).any())):
        raise GradCAMError(
            "XGrad-CAM: a feature channel sums to exactly 0 over positions without being 0 everywhere, and its "
            "weight divides by that sum. Choose a feature layer after a ReLU, or pass eps=1e-7 "
            "(pytorch-grad-cam's value).")
    shares = activations / xp.where(sums == 0, 1.0, sums)                                 # A_k[p] / sum_q A_k[q]
    weights = (gradients * shares[None]).sum(axis=_spatial_axes(gradients))                 # (K, B, C)
    return weights, xp.maximum(channel_sum(weights, activations), 0.0)


def layer_cam_maps(gradients: Any, activations: Any) -> tuple[Any, Any]:
    """LayerCAM: weights ``ReLU(g)`` (K, B, C, *S); ``M = ReLU(sum_k ReLU(g_k) * A_k)``."""
    xp = get_xp(gradients)
    positive = xp.maximum(gradients, 0.0)
    return positive, xp.maximum(channel_sum(positive, activations), 0.0)


def _spatial_axes(gradients: Any) -> tuple[int, ...]:
    return tuple(range(3, gradients.ndim))  # gradients are (K, B, C, *S)


# --- the public functions ------------------------------------------------------------------------
def matlab_gradcam(net: Network, x: Any, label: Any = None, **options: Any) -> GradCAMResult:
    """Grad-CAM as MATLAB's ``gradCAM`` (spec G1-G15): what :func:`refcam.gradcam` computes for ``convention="matlab"``.

    ``options``: those of :func:`refcam.gradcam` but ``convention``.
    """
    def maps(captured: Captured) -> MethodMaps:
        return MethodMaps(*channel_weights_and_map(captured.gradients, captured.activations))
    return run_method("gradcam", maps, net, x, label, options)


def gradcam_plus_plus(net: Network, x: Any, label: Any = None, *, eps: float = 0.0, form: str = "closed",
                      **options: Any) -> GradCAMPlusPlusResult:
    """Grad-CAM++ (Chattopadhay, Sarkar, Howlader and Balasubramanian, WACV 2018), the paper's closed form.

    ``a_k[p] = g_k[p]^2 / (2 g_k[p]^2 + (sum_q A_k[q]) g_k[p]^3 + eps)`` (0 where
    ``g_k[p] = 0``), ``w_k = sum_p a_k[p] ReLU(g_k[p])``, ``M = ReLU(sum_k w_k
    A_k)``, with ``g = dy/dA`` of the score ``y`` the call defines: the paper's
    eq. 19, exact when the score is ``exp(S)`` of an ``S`` linear in ``A``
    near the input and ``g`` is taken of ``S`` (peers: the logit, so pass
    ``reduction_layer=`` the layer before the softmax). ``form="exact"``
    (a refcam extension) uses the score's true second and third derivatives
    ``h`` and ``t`` along each entry of ``A``, with ``Y = exp(S)``:
    ``a = (g^2 + h) / (2 (g^2 + h) + (sum_q A_k[q]) (g^3 + 3 g h + t) + eps)``,
    computed in closed form for heads that are piecewise linear up to the
    logit, a softmax or a sigmoid (:mod:`refcam.cam.score_derivatives`); for
    the logit it is the closed form.

    Parameters
    ----------
    net, x, label
        As for :func:`refcam.gradcam`.
    eps : float
        Added to the denominator of ``a``: 0 (the paper), 1e-6 (pytorch-grad-cam 1.5.7).
    form : {"closed", "exact"}
        The paper's closed form (the peers'), or the exact form (refcam's extension).
    **options
        Any option of :func:`refcam.gradcam` but ``convention``: ``reduction``,
        ``feature_layer``, ``reduction_layer``, ``format``, ``upsampling``,
        ``device``, ``dtype``, ``mask``, ``keep_on_device``.

    Returns
    -------
    GradCAMPlusPlusResult
        ``weights`` are ``w`` (K, B, C); ``alphas`` are ``a`` (K, B, C, *S);
        with ``form="exact"`` also ``second`` and ``third``: ``h`` and ``t``
        (K, B, C, *S).

    Examples
    --------
    >>> res = gradcam_plus_plus(net, image, "cat", reduction_layer="fc")   # doctest: +SKIP
    >>> res.alphas.shape                                                   # doctest: +SKIP
    (1, 1, 512, 7, 7)
    """
    if form not in GRADCAM_PLUS_PLUS_FORMS:
        raise GradCAMError(f"Grad-CAM++ form must be one of {GRADCAM_PLUS_PLUS_FORMS}, not {form!r}.")

    def maps(captured: Captured) -> MethodMaps:
        extras: dict[str, Any] = {}
        if form == "exact":
            _, extras["second"], extras["third"] = score_derivatives(
                net, x, captured, format=options.get("format"), mask=options.get("mask"),
                reduction=options.get("reduction"))
        weights, raw, alphas = grad_cam_plus_plus_maps(captured.gradients, captured.activations, eps,
                                                       extras.get("second"), extras.get("third"))
        return MethodMaps(weights, raw, dict(extras, alphas=alphas))
    result = run_method("gradcam++", maps, net, x, label, options, result_type=GradCAMPlusPlusResult)
    result.info.update(eps=eps, form=form)
    return result


def hirescam(net: Network, x: Any, label: Any = None, **options: Any) -> GradCAMResult:
    """HiResCAM (Draelos and Carin, "Use HiResCAM instead of Grad-CAM", arXiv:2011.08891, 2020).

    ``M[p] = ReLU(sum_k g_k[p] A_k[p])`` with ``g = dy/dA``: the gradient
    weights every position itself instead of being averaged. ``options``: any
    option of :func:`refcam.gradcam` but ``convention``. ``weights`` in the
    result are ``g`` (K, B, C, *S).

    >>> score_map, feature_layer, reduction_layer = hirescam(net, image, "cat")   # doctest: +SKIP
    """
    def maps(captured: Captured) -> MethodMaps:
        return MethodMaps(*hires_cam_maps(captured.gradients, captured.activations))
    return run_method("hirescam", maps, net, x, label, options)


def xgradcam(net: Network, x: Any, label: Any = None, *, eps: float = 0.0, **options: Any) -> GradCAMResult:
    """XGrad-CAM (Fu, Hu, Dong, Ren, Hua, Xu and Sun, "Axiom-based Grad-CAM", BMVC 2020).

    ``w_k = sum_p (A_k[p] / (sum_q A_k[q] + eps)) g_k[p]``, ``M = ReLU(sum_k
    w_k A_k)``: the gradient averaged with the activations' own distribution
    over positions instead of uniformly. ``eps``: 0 (the paper), 1e-7
    (pytorch-grad-cam 1.5.7); a channel that is 0 everywhere gets ``w_k = 0``.
    ``options``: any option of :func:`refcam.gradcam` but ``convention``.
    ``weights`` in the result are ``w`` (K, B, C).

    >>> xgradcam(net, image, "cat").weights.shape   # doctest: +SKIP
    (1, 1, 512)
    """
    def maps(captured: Captured) -> MethodMaps:
        return MethodMaps(*xgrad_cam_maps(captured.gradients, captured.activations, eps))
    result = run_method("xgradcam", maps, net, x, label, options)
    result.info["eps"] = eps
    return result


def layercam(net: Network, x: Any, label: Any = None, **options: Any) -> GradCAMResult:
    """LayerCAM (Jiang, Zhang, Hou, Cheng and Wei, IEEE Transactions on Image Processing 30, 2021).

    ``M[p] = ReLU(sum_k ReLU(g_k[p]) A_k[p])``: only positions whose gradient
    is positive count, each with its own weight. ``options``: any option of
    :func:`refcam.gradcam` but ``convention``. ``weights`` in the result are
    ``ReLU(g)`` (K, B, C, *S).

    >>> layercam(net, image, "cat", feature_layer="relu_1").raw_map.shape   # doctest: +SKIP
    (8, 8)
    """
    def maps(captured: Captured) -> MethodMaps:
        return MethodMaps(*layer_cam_maps(captured.gradients, captured.activations))
    return run_method("layercam", maps, net, x, label, options)
