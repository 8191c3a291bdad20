"""Grad-CAM in the convention of a peer library ("compatibility modes").

No two Grad-CAM libraries return the same map: they differ in the score they
differentiate (logit or softmax), ReLU, normalisation and its epsilon, the
resize and its grid, and the order of these steps. :func:`gradcam_as` computes
refcam's exact intermediates once (:func:`refcam.gradcam` with no upsampling)
and then applies one peer's recipe to them. With ``A`` (B, C, *S) the feature
activations, ``g = dy/dA`` and ``alpha = mean_S g`` (every peer averages the
gradient over the spatial axes), the linear map is ``L = sum_C alpha * A``
(B, *S), and per map (one per label and observation):

================== ============ ============================================================
convention         score        map
================== ============ ============================================================
matlab             MATLAB's     :func:`refcam.gradcam` unchanged
pytorch-grad-cam   logit        mm(ReLU(resize_cv2_linear(mm(ReLU(L))))) (3-D: scipy zoom order 3)
captum             logit        interpolate_nearest(L) (ReLU only with relu_attributions)
torchcam           logit        mm8(ReLU(L)), no resize
tf-keras-vis       model output mmk(zoom_order1(ReLU(L)))
keras-example      logit        ReLU(L0) / max(L0), alpha averaged over batch and space
================== ============ ============================================================

with ``mm(x) = (x - min x) / (1e-7 + max(x - min x))``, ``mm8`` the same with
``max + 1e-8``, ``mmk(x) = (x - min x) / (max x - min x + 1e-7)`` (min and max
over one map's positions), ``L0`` the map of the first observation. "logit"
is the input of the network's final softmax layer (without a softmax: MATLAB's
default reduction layer); "model output" is MATLAB's default reduction layer
(the softmax). ``reduction_layer=`` overrides the score layer for every peer.

Resize formulas (one axis, ``n`` in, ``m`` out, ``d = 0..m-1`` output index):

* cv2 ``INTER_LINEAR`` (and PyTorch ``linear``/``bilinear``/``trilinear``,
  ``align_corners=False``): ``s = (d + 0.5) * n / m - 0.5``, ``i = floor(s)``,
  ``f = s - i``; if ``i < 0``: ``i, f = 0, 0``; if ``i >= n - 1``:
  ``i, f = n - 1, 0``; ``out = (1 - f) * in[i] + f * in[i + 1]``. Separable,
  no antialiasing when shrinking.
* PyTorch ``nearest``: ``i = min(floor(d * scale), n - 1)`` with
  ``scale = n / m``; PyTorch evaluates ``d * scale`` in float32 for float32
  data and for 2-D float64 data, and exactly (``floor(d * n / m)``) for 1-D and
  3-D float64 data (measured on torch 2.13 and 2.14, CPU); refcam does the same.
* scipy ``ndimage.zoom(order=k)`` (corner-aligned: ``s = d * (n - 1) / (m - 1)``;
  order 3 is a cubic B-spline with scipy's prefilter): called as is.

Every recipe, with the source file it was read from, is in ``docs/oracle.md``.
Maps come back in MATLAB's layout like :func:`refcam.gradcam`'s (``.map``,
``.raw_map``: the map at the feature layer's resolution just before the peer's
resize); ``info["peer_map"]`` holds the final map in the peer's own layout.
Nothing here is differentiated: the recipes act on refcam's exact gradients.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from ..errors import GradCAMError
from ..layers.activation import SoftmaxLayer
from ..layout import to_internal
from ..network import Network
from .capture import GradCAMResult, is_label_sequence
from .gradient_methods import matlab_gradcam
from .resize import resize_along_axis
from .selection import default_reduction_layer

CONVENTIONS = ("matlab", "pytorch-grad-cam", "captum", "torchcam", "tf-keras-vis", "keras-example")
PYTORCH_GRAD_CAM_EPS = 1e-7
TORCHCAM_EPS = 1e-8
KERAS_EPSILON = 1e-7
CAPTUM_MODES = ("nearest", "linear", None)

PEER_OPTIONS: dict[str, dict[str, Any]] = {
    "pytorch-grad-cam": {},
    "captum": {"relu_attributions": False, "interpolate_mode": "nearest"},
    "torchcam": {"normalized": True},
    "tf-keras-vis": {"replace_to_linear": False, "expand_cam": True, "normalize_cam": True},
    "keras-example": {},
}


def gradcam_as(convention: str, net: Network, x: Any, label: Any = None, *,
               reduction: Callable[..., Any] | None = None, feature_layer: str | None = None,
               reduction_layer: str | None = None, format: str | None = None, dtype: str = "float64",
               device: str = "auto", mask: Any = None, **options: Any) -> GradCAMResult:
    """Grad-CAM of ``x`` computed with the recipe of the peer library ``convention``.

    Parameters
    ----------
    convention : str
        One of :data:`CONVENTIONS`: "matlab" (plain :func:`refcam.gradcam`),
        "pytorch-grad-cam" (1.5.7), "captum" (0.9.0 LayerGradCam), "torchcam"
        (0.5.0 GradCAM), "tf-keras-vis" (0.8.7 Gradcam), "keras-example".
    net, x, label, reduction, feature_layer, format, dtype, device, mask
        As for :func:`refcam.gradcam`.
    reduction_layer : str, optional
        The layer whose output is the score; default: the peer's score
        (the logit, or MATLAB's default for "matlab" and "tf-keras-vis").
    **options
        "matlab": ``upsampling``. "captum": ``relu_attributions=False``,
        ``interpolate_mode="nearest"`` ("nearest", "linear" (bi/trilinear by
        rank, align_corners=False) or None for LayerGradCam's own output).
        "torchcam": ``normalized=True``. "tf-keras-vis":
        ``replace_to_linear=False`` (True: the score is the logit),
        ``expand_cam=True``, ``normalize_cam=True``.

    Returns
    -------
    GradCAMResult
        ``.map`` and ``.raw_map`` in MATLAB's map layout; the intermediates as
        refcam's; ``.info["convention"]``, ``.info["options"]`` and
        ``.info["peer_map"]``: the map as the peer returns it (pytorch-grad-cam,
        torchcam, tf-keras-vis: ``(B, *S)``; captum: ``(B, 1, *S)``;
        keras-example: ``(*S)``), with a leading label axis when ``label`` is a
        sequence.

    Examples
    --------
    >>> res = gradcam_as("pytorch-grad-cam", net, image, "cat")   # doctest: +SKIP
    >>> res.info["peer_map"].shape                                # doctest: +SKIP
    (1, 224, 224)
    """
    if convention not in CONVENTIONS:
        raise GradCAMError(f"convention must be one of {CONVENTIONS}, not {convention!r}.")
    common = dict(reduction=reduction, feature_layer=feature_layer, format=format, dtype=dtype,
                  device=device, mask=mask)
    if convention == "matlab":
        return matlab_gradcam(net, x, label, reduction_layer=reduction_layer, **common, **options)
    settings = _peer_settings(convention, options)
    score_layer = reduction_layer or _peer_score_layer(convention, net, settings)
    base = matlab_gradcam(net, x, label, reduction_layer=score_layer, upsampling="none", **common)
    x_internal, layout = to_internal(x, net.input_layer, format=format, dtype=dtype)
    stacked = label is not None and is_label_sequence(label)
    if convention == "tf-keras-vis" and label is not None:
        base = _mean_over_score_positions(base, net, x_internal.shape[1:])
    recipe = PEER_RECIPES[convention]
    steps = recipe(base, x_internal.shape[2:], settings, linear_map(base.weights, base.activations))
    return dataclasses.replace(
        base, map=layout.map_from_internal(steps.final, stacked=stacked),
        raw_map=layout.map_from_internal(steps.before_resize, stacked=stacked), weights=steps.weights,
        upsampling=steps.resize, info=dict(base.info, convention=convention, options=settings,
                                           peer_map=steps.peer_map if stacked else steps.peer_map[0]))


@dataclasses.dataclass
class PeerSteps:
    """One peer's maps, internal layout: ``(K, B, *S)`` at feature resolution and after resizing."""

    before_resize: np.ndarray
    final: np.ndarray
    peer_map: np.ndarray   # (K, *peer layout)
    weights: np.ndarray    # (K, B, C)
    resize: str


# --- settings and score layer -------------------------------------------------------------------
def _peer_settings(convention: str, options: dict[str, Any]) -> dict[str, Any]:
    defaults = PEER_OPTIONS[convention]
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        allowed = ", ".join(defaults) or "none"
        raise GradCAMError(f"convention {convention!r} has no option(s) {unknown}; its options are: "
                           f"{allowed} (and refcam's feature_layer, reduction_layer, format, dtype, "
                           "device, mask).")
    settings = dict(defaults, **options)
    if convention == "captum" and settings["interpolate_mode"] not in CAPTUM_MODES:
        raise GradCAMError(f"captum interpolate_mode must be one of {CAPTUM_MODES}, not "
                           f"{settings['interpolate_mode']!r}.")
    return settings


def logit_layer(net: Network) -> str:
    """The layer feeding the network's last softmax layer; without a softmax, MATLAB's default reduction layer.

    >>> logit_layer(net)      # doctest: +SKIP
    'fc'
    """
    softmaxes = [layer for layer in net.layers if isinstance(layer, SoftmaxLayer)]
    if not softmaxes:
        return default_reduction_layer(net)
    return softmaxes[-1].inputs[0]


def _peer_score_layer(convention: str, net: Network, settings: dict[str, Any]) -> str:
    if convention == "tf-keras-vis" and not settings["replace_to_linear"]:
        return default_reduction_layer(net)
    return logit_layer(net)


def _mean_over_score_positions(base: GradCAMResult, net: Network, input_shape: tuple[int, ...]) -> GradCAMResult:
    """tf-keras-vis' CategoricalScore averages ``Y[..., c]`` over positions where MATLAB sums."""
    positions = int(np.prod(net.infer_shapes(input_shape)[base.reduction_layer][1:]))
    if positions == 1:
        return base
    return dataclasses.replace(base, gradients=base.gradients / float(positions),
                               weights=base.weights / float(positions), scores=base.scores / float(positions))


# --- the recipes ----------------------------------------------------------------------------------
def linear_map(weights: np.ndarray, activations: np.ndarray) -> np.ndarray:
    """``L = sum_C alpha * A``: weights (K, B, C), activations (B, C, *S) -> (K, B, *S), before any ReLU."""
    spatial = activations.ndim - 2
    return (weights.reshape(weights.shape + (1,) * spatial) * activations[None]).sum(axis=2)


def _spatial_axes(maps: np.ndarray) -> tuple[int, ...]:
    return tuple(range(2, maps.ndim))  # maps are (K, B, *S)


def min_max_shifted(maps: np.ndarray, eps: float, eps_first: bool = True) -> np.ndarray:
    """Per map: ``y = x - min x``, then ``y / (eps + max y)`` (pytorch-grad-cam) or ``y / (max y + eps)`` (torchcam)."""
    axes = _spatial_axes(maps)
    shifted = maps - maps.min(axis=axes, keepdims=True)
    peak = shifted.max(axis=axes, keepdims=True)
    return shifted / ((eps + peak) if eps_first else (peak + eps))


def min_max_keras(maps: np.ndarray, eps: float = KERAS_EPSILON) -> np.ndarray:
    """tf-keras-vis ``normalize``: per map ``(x - min) / (max - min + eps)``."""
    axes = _spatial_axes(maps)
    low = maps.min(axis=axes, keepdims=True)
    high = maps.max(axis=axes, keepdims=True)
    return (maps - low) / (high - low + eps)


def _pytorch_grad_cam(base: GradCAMResult, input_size: tuple[int, ...], settings: dict[str, Any],
                      linear: np.ndarray) -> PeerSteps:
    rank = len(input_size)
    if rank not in (2, 3):
        raise GradCAMError(f"pytorch-grad-cam takes 2-D and 3-D inputs only (it raises ValueError for "
                           f"activations with {rank} spatial axis); use another convention.")
    cam = np.maximum(linear, 0.0)
    normalised = min_max_shifted(cam, PYTORCH_GRAD_CAM_EPS)
    if rank == 2:
        resized, method = resize_linear(normalised, input_size), "cv2-linear"
    else:
        resized, method = zoom_maps(normalised, input_size, order=3), "scipy-zoom-order-3"
    final = min_max_shifted(np.maximum(resized, 0.0), PYTORCH_GRAD_CAM_EPS)   # ReLU: the cubic zoom overshoots
    return PeerSteps(normalised, final, final, base.weights, method)


def _captum(base: GradCAMResult, input_size: tuple[int, ...], settings: dict[str, Any],
            linear: np.ndarray) -> PeerSteps:
    cam = linear
    if settings["relu_attributions"]:
        cam = np.maximum(cam, 0.0)
    mode = settings["interpolate_mode"]
    if mode is None:
        final = cam
    elif mode == "nearest":
        final = resize_nearest_torch(cam, input_size)
    else:
        final = resize_linear(cam, input_size)
    peer = final[:, :, None]  # (K, B, 1, *S): LayerGradCam keeps a channel axis
    return PeerSteps(cam, final, peer, base.weights, f"torch-{mode}" if mode else "none")


def _torchcam(base: GradCAMResult, input_size: tuple[int, ...], settings: dict[str, Any],
              linear: np.ndarray) -> PeerSteps:
    cam = np.maximum(linear, 0.0)
    if settings["normalized"]:
        cam = min_max_shifted(cam, TORCHCAM_EPS, eps_first=False)
    return PeerSteps(cam, cam, cam, base.weights, "none")


def _tf_keras_vis(base: GradCAMResult, input_size: tuple[int, ...], settings: dict[str, Any],
                  linear: np.ndarray) -> PeerSteps:
    cam = np.maximum(linear, 0.0)
    final = zoom_maps(cam, input_size, order=1) if settings["expand_cam"] else cam
    if settings["normalize_cam"]:
        final = min_max_keras(final)
    return PeerSteps(cam, final, final, base.weights, "scipy-zoom-order-1" if settings["expand_cam"] else "none")


def _keras_example(base: GradCAMResult, input_size: tuple[int, ...], settings: dict[str, Any],
                   linear: np.ndarray) -> PeerSteps:
    if len(input_size) != 2:
        raise GradCAMError(f"the Keras Grad-CAM example is written for 2-D images (it averages the "
                           f"gradient over axes (0, 1, 2)); this input has {len(input_size)} spatial axes.")
    pooled = base.gradients.mean(axis=(1, *range(3, base.gradients.ndim)))          # (K, C): batch and space
    weights = np.broadcast_to(pooled[:, None, :], base.weights.shape).copy()        # (K, B, C)
    heat = linear_map(weights[:, :1], base.activations[:1])                        # (K, 1, *S): first observation
    with np.errstate(divide="ignore", invalid="ignore"):
        final = np.maximum(heat, 0.0) / heat.max(axis=_spatial_axes(heat), keepdims=True)
    return PeerSteps(final, final, final[:, 0], weights, "none")


# each recipe: (refcam's result, input size, the peer's options, L = the map before any ReLU (K, B, *S))
PEER_RECIPES: dict[str, Callable[[GradCAMResult, tuple[int, ...], dict[str, Any], np.ndarray], PeerSteps]] = {
    "pytorch-grad-cam": _pytorch_grad_cam, "captum": _captum, "torchcam": _torchcam,
    "tf-keras-vis": _tf_keras_vis, "keras-example": _keras_example,
}


# --- resizes --------------------------------------------------------------------------------------
def linear_weights(in_length: int, out_length: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2 INTER_LINEAR / PyTorch linear (align_corners=False) taps for one axis: ``(weights, indices)`` (m, 2).

    >>> linear_weights(2, 4)[0].tolist()
    [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [1.0, 0.0]]
    """
    source = (np.arange(out_length) + 0.5) * (in_length / out_length) - 0.5
    first = np.floor(source)
    fraction = source - first
    below = first < 0
    above = first >= in_length - 1
    first = np.where(below, 0.0, np.where(above, in_length - 1, first)).astype(np.int64)
    fraction = np.where(below | above, 0.0, fraction)
    weights = np.stack([1.0 - fraction, fraction], axis=1)
    indices = np.stack([first, np.minimum(first + 1, in_length - 1)], axis=1)
    return weights, indices


def nearest_indices_torch(in_length: int, out_length: int, exact: bool) -> np.ndarray:
    """PyTorch ``nearest``: ``min(floor(d * n / m), n - 1)``, ``d * scale`` in float32 unless ``exact``.

    >>> nearest_indices_torch(3, 7, exact=True).tolist()
    [0, 0, 0, 1, 1, 2, 2]
    """
    d = np.arange(out_length)
    if exact:
        source = (d * in_length) // out_length
    else:
        scale = np.float32(in_length) / np.float32(out_length)
        source = np.floor(d.astype(np.float32) * scale).astype(np.int64)
    return np.minimum(source, in_length - 1)


def resize_linear(maps: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Maps (K, B, *S) resized to (K, B, *size) with :func:`linear_weights` on every spatial axis."""
    result = maps
    for axis, out_length in enumerate(size, start=2):
        weights, indices = linear_weights(maps.shape[axis], out_length)
        result = resize_along_axis(result, axis, weights, indices)
    return result


def resize_nearest_torch(maps: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Maps (K, B, *S) resized to (K, B, *size) as ``torch.nn.functional.interpolate(mode="nearest")``."""
    exact = maps.dtype == np.float64 and len(size) != 2
    result = maps
    for axis, out_length in enumerate(size, start=2):
        result = np.take(result, nearest_indices_torch(maps.shape[axis], out_length, exact), axis=axis)
    return result


def zoom_maps(maps: np.ndarray, size: tuple[int, ...], order: int) -> np.ndarray:
    """Each map (K, B, *S) through ``scipy.ndimage.zoom(map, size / S, order=order)`` (corner-aligned)."""
    factors = [out_length / in_length for in_length, out_length in zip(maps.shape[2:], size)]
    flat = maps.reshape((-1,) + maps.shape[2:])                                       # (K*B, *S)
    from scipy import ndimage  # imported on use: it costs a fifth of a second
    zoomed = np.stack([ndimage.zoom(one, factors, order=order) for one in flat])
    return zoomed.reshape(maps.shape[:2] + zoomed.shape[1:])
