"""The CAM methods in the convention of a peer library: its score, its constants, its weights, its finishing.

:func:`refcam.cam.conventions.gradcam_as` does this for Grad-CAM; here the
same recipes finish the other methods. refcam computes the method exactly
(score: the logit, the input of the network's last softmax, as every peer
differentiates; no upsampling), with the library's constants, then applies
the library's steps to the map before its ReLU, ``L`` (K, B, *S): ``sum_k w_k
A_k`` (weights per channel or per position), or the Eigen projection ``P``.

================== ============================================ =============================================
convention         methods (library version)                    constants; finishing of ``L``
================== ============================================ =============================================
pytorch-grad-cam   gradcam++ hirescam xgradcam layercam         gradcam++ eps 1e-6, xgradcam eps 1e-7, Eigen
                   eigencam eigengradcam (2-D, 3-D);            center=True, scorecam "linear-corners" masks
                   scorecam ablationcam (2-D) (1.5.7)           normalised after, eps 1e-8;
                                                                mm(ReLU(resize(mm(ReLU(L))))) as for Grad-CAM
torchcam           gradcam++ xgradcam layercam scorecam (0.5.0) xgradcam eps 1e-8, scorecam masks normalised
                                                                before the (bi/tri)linear resize (1-D:
                                                                nearest, at the input's length only),
                                                                eps 1e-8; mm8(ReLU(L)), no resize
captum             guided-backprop guided-gradcam (0.9.0)       guided-gradcam resized by PyTorch's nearest
                                                                ("nearest-torch"); no finishing
================== ============================================ =============================================

``mm``, ``mm8`` and the resizes are those of :mod:`refcam.cam.conventions`.

Where the library differs from the paper (``docs/methods.md``, measured on
the versions above):

* torchcam 0.5.0 ``GradCAMpp`` computes ``alpha = g^2`` and
  ``w_k = sum_p g_k[p]^2 ReLU(g_k[p])``: its division of ``alpha`` by the
  paper's denominator acts on a copy (``alpha[idx][mask].div_(...)`` divides
  the tensor that boolean indexing returns) and is lost. refcam reproduces
  what it computes (``.alphas`` holds ``g^2``). Its denominator, had the
  division taken effect, sums ``g^3 A`` over positions where the paper has
  ``g_k[p]^3 sum_q A_k[q]``.
* pytorch-grad-cam 1.5.7's Eigen methods keep the sign LAPACK returns; refcam
  keeps its own sign (the largest entry of ``P`` positive), so a peer map may
  be the one of ``-P``: compare up to that sign.
* pytorch-grad-cam 1.5.7 refuses 1-D inputs (and Score-CAM and Ablation-CAM
  3-D ones); so does refcam in its convention, saying so.

Options: the method's own (``batch_size``, ``progress``, ``center``, ...)
override the library's constants; ``normalized`` (torchcam) is the
library's switch; ``upsampling`` is the library's and cannot be given.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from ..errors import GradCAMError
from ..layout import to_internal
from ..network import Network
from .capture import GradCAMResult, is_label_sequence
from .conventions import PEER_OPTIONS, PEER_RECIPES, TORCHCAM_EPS, logit_layer
from .eigen_methods import eigencam, eigengradcam
from .gradient_methods import channel_sum, gradcam_plus_plus, hirescam, layercam, xgradcam
from .guided import guided_backprop, guided_gradcam
from .perturbation_methods import ablationcam, scorecam

Method = Callable[..., GradCAMResult]
PYTORCH_GRAD_CAM_SCORECAM = {"weighting": "softmax", "mask_upsampling": "linear-corners", "normalize": "after",
                             "eps": 1e-8}

# convention -> method -> (refcam function, the library's constants as refcam options, input ranks it takes)
METHOD_CONVENTIONS: dict[str, dict[str, tuple[Method, dict[str, Any], tuple[int, ...]]]] = {
    "pytorch-grad-cam": {
        "gradcam++": (gradcam_plus_plus, {"eps": 1e-6}, (2, 3)),
        "hirescam": (hirescam, {}, (2, 3)),
        "xgradcam": (xgradcam, {"eps": 1e-7}, (2, 3)),
        "layercam": (layercam, {}, (2, 3)),
        "eigencam": (eigencam, {"center": True}, (2, 3)),
        "eigengradcam": (eigengradcam, {"center": True}, (2, 3)),
        "scorecam": (scorecam, PYTORCH_GRAD_CAM_SCORECAM, (2,)),
        "ablationcam": (ablationcam, {}, (2,)),
    },
    "torchcam": {
        "gradcam++": (gradcam_plus_plus, {}, (1, 2, 3)),
        "xgradcam": (xgradcam, {"eps": TORCHCAM_EPS}, (1, 2, 3)),
        "layercam": (layercam, {}, (1, 2, 3)),
        "scorecam": (scorecam, {"weighting": "softmax", "mask_upsampling": "linear", "normalize": "before",
                                "eps": TORCHCAM_EPS}, (1, 2, 3)),
    },
    "captum": {
        "guided-backprop": (guided_backprop, {}, (1, 2, 3)),
        "guided-gradcam": (guided_gradcam, {"upsampling": "nearest-torch"}, (1, 2, 3)),
    },
}


def method_as(convention: str, method: str, net: Network, x: Any, label: Any = None, *,
              reduction_layer: str | None = None, format: str | None = None, dtype: str = "float64",
              **options: Any) -> GradCAMResult:
    """CAM ``method`` of ``x`` for ``label``, computed as the peer library ``convention`` computes it.

    Parameters
    ----------
    convention, method : str
        A pair of :data:`METHOD_CONVENTIONS` (table in the module docstring).
    net, x, label, format, dtype
        As for :func:`refcam.gradcam`.
    reduction_layer : str, optional
        The score's layer; default: the logit (:func:`refcam.cam.conventions.logit_layer`).
    **options
        refcam's (``feature_layer``, ``device``, ``mask``, ``reduction``), the
        method's own (override the library's constants), and the library's
        switches (torchcam: ``normalized=True``).

    Returns
    -------
    GradCAMResult
        The method's result; ``.map`` and ``.raw_map`` in MATLAB's map layout
        as the library finishes them (``.raw_map``: before its resize),
        ``.weights`` the library's, ``.info["convention"]``,
        ``.info["options"]`` (the library's switches), ``.info["method_options"]``
        (the constants used) and ``.info["peer_map"]`` (the map in the library's layout).

    Examples
    --------
    >>> res = method_as("torchcam", "layercam", net, image, "cat", feature_layer="relu_1")   # doctest: +SKIP
    >>> res.info["peer_map"].shape                                                          # doctest: +SKIP
    (1, 14, 14)
    """
    function, constants, ranks = _lookup(convention, method)
    settings = {key: options.pop(key) for key in list(options) if key in PEER_OPTIONS[convention]}
    settings = dict(PEER_OPTIONS[convention], **settings)
    if "upsampling" in options and convention != "captum":
        raise GradCAMError(f"convention {convention!r} resizes the map its own way; do not pass upsampling= "
                           "(use convention='matlab' for refcam's resize).")
    x_internal, layout = to_internal(x, net.input_layer, format=format, dtype=dtype)
    input_size = x_internal.shape[2:]
    if len(input_size) not in ranks:
        raise GradCAMError(f"{convention} takes inputs with {' or '.join(map(str, ranks))} spatial axes for "
                           f"method {method!r}; this input has {len(input_size)}. Use convention='matlab'.")
    method_options = dict(_rank_constants(convention, method, constants, len(input_size)), **options)
    if convention != "captum":
        method_options["upsampling"] = "none"
    base = function(net, x, label, reduction_layer=reduction_layer or logit_layer(net), format=format, dtype=dtype,
                    **method_options)
    _refuse_what_the_library_refuses(convention, method, base, input_size)
    info = dict(base.info, convention=convention, options=settings,
                method_options={key: value for key, value in method_options.items() if key != "progress"})
    if convention == "captum":
        return dataclasses.replace(base, info=dict(info, peer_map=None))
    if convention == "torchcam" and method == "gradcam++":
        base = _torchcam_gradcam_plus_plus(base)
    base = dataclasses.replace(base, weights=np.asarray(base.weights))
    steps = PEER_RECIPES[convention](base, input_size, settings, _map_before_relu(base))
    stacked = label is not None and is_label_sequence(label)
    return dataclasses.replace(
        base, map=layout.map_from_internal(steps.final, stacked=stacked),
        raw_map=layout.map_from_internal(steps.before_resize, stacked=stacked), upsampling=steps.resize,
        info=dict(info, peer_map=steps.peer_map if stacked else steps.peer_map[0]))


def _lookup(convention: str, method: str) -> tuple[Method, dict[str, Any], tuple[int, ...]]:
    if convention not in METHOD_CONVENTIONS or method not in METHOD_CONVENTIONS[convention]:
        having = [name for name, methods in METHOD_CONVENTIONS.items() if method in methods]
        raise GradCAMError(f"convention {convention!r} has no method {method!r}: it exists in convention(s) "
                           f"{having} and 'matlab' (refcam's own recipe).")
    return METHOD_CONVENTIONS[convention][method]


def _rank_constants(convention: str, method: str, constants: dict[str, Any], rank: int) -> dict[str, Any]:
    """torchcam's Score-CAM picks nearest-neighbour masks in 1-D (bi/trilinear in 2-D and 3-D)."""
    if convention == "torchcam" and method == "scorecam" and rank == 1:
        return dict(constants, mask_upsampling="nearest")
    return dict(constants)


def _refuse_what_the_library_refuses(convention: str, method: str, base: GradCAMResult,
                                     input_size: tuple[int, ...]) -> None:
    """torchcam 0.5.0's Score-CAM resizes 1-D masks with ``interpolate(mode="nearest", align_corners=False)``,
    which PyTorch rejects: it works only where the feature layer has the input's length (no resize)."""
    feature_size = tuple(np.shape(base.activations)[2:])
    if convention == "torchcam" and method == "scorecam" and len(input_size) == 1 and feature_size != input_size:
        raise GradCAMError(f"torchcam's ScoreCAM fails on sequences whose feature layer {base.feature_layer!r} "
                           f"(length {feature_size[0]}) is shorter than the input ({input_size[0]} steps): PyTorch "
                           "refuses its nearest resize with align_corners. Choose a feature layer at the input's "
                           "length, or convention='matlab'.")


def _torchcam_gradcam_plus_plus(base: GradCAMResult) -> GradCAMResult:
    """torchcam 0.5.0 GradCAMpp as it computes: ``alpha = g^2``, ``w_k = sum_p g_k[p]^2 ReLU(g_k[p])``."""
    gradients = np.asarray(base.gradients)
    alphas = gradients ** 2
    weights = (alphas * np.maximum(gradients, 0.0)).sum(axis=tuple(range(3, gradients.ndim)))   # (K, B, C)
    raw = np.maximum(channel_sum(weights, np.asarray(base.activations)), 0.0)
    return dataclasses.replace(base, weights=weights, alphas=alphas, raw_map=raw)


def _map_before_relu(base: GradCAMResult) -> np.ndarray:
    """``L`` (K, B, *S): the Eigen projection, or ``sum_k w_k A_k`` for weights (K, B, C) or (K, B, C, *S)."""
    projection = getattr(base, "projection", None)
    if projection is not None:
        return np.asarray(projection)
    return channel_sum(np.asarray(base.weights), np.asarray(base.activations))
