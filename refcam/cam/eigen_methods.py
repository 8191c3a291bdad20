"""Eigen-CAM and Eigen-Grad-CAM: the feature map projected on its first principal direction over channels.

For one observation (and one label), lay the map out as a matrix ``X``
(N positions x C channels)::

    Eigen-CAM        X[p, k] = A_k[p]                 (Muhammad and Yeasin, IJCNN 2020, arXiv:2008.00299)
    Eigen-Grad-CAM   X[p, k] = g_k[p] * A_k[p]        (pytorch-grad-cam's variant, g = dy/dA)

optionally centred, ``X[p, k] - (1/N) sum_q X[q, k]`` (``center=True``:
pytorch-grad-cam 1.5.7 centres; the paper does not, and refcam's default
follows the paper). With the singular value decomposition ``X = U S V^T``
(``s_1 >= s_2 >= ...``) and ``v_1`` the first right singular vector (a unit
vector over channels), the projection and the map are::

    P = X v_1  (= s_1 u_1),    M = ReLU(P)

**Sign.** ``v_1`` and ``-v_1`` are equally singular vectors, and LAPACK's
choice is arbitrary (pytorch-grad-cam 1.5.7's EigenCAM keeps whatever
``numpy.linalg.svd`` returns; its Seg-Eigen-CAM flips the map when ``|min P| >
|max P|``). refcam fixes it: the entry of ``P`` with the largest magnitude is
positive (flip when ``max P < -min P``); at a tie (``max P = -min P``, ``P = 0``
included) the first non-zero entry of ``v_1`` is positive. For an uncentred,
non-negative ``A`` (after a ReLU) ``v_1`` is then non-negative
(Perron-Frobenius) and so is ``P``: the ReLU removes nothing.

Arrays: ``X`` is built from ``activations`` (B, C, *S) and ``gradients`` (K, B,
C, *S); the weights are ``v_1`` (K, B, C), the singular values ``s`` (K, B,
min(N, C)), the projection ``P`` and raw map ``M`` (K, B, *S). ``v_1`` is unique
only when ``s_1 > s_2``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..backend import get_xp
from ..network import Network
from .capture import Captured, GradCAMResult, MethodMaps, run_method


@dataclass
class EigenCAMResult(GradCAMResult):
    """:class:`GradCAMResult` plus ``singular_values`` ``s`` (K, B, min(N, C)) and the signed ``projection`` (K, B, *S)."""

    singular_values: Any = None
    projection: Any = None


def first_component_projection(matrices: Any, center: bool) -> tuple[Any, Any, Any]:
    """``(P, v_1, s)`` for matrices ``X`` (..., N, C): ``P = X v_1`` (..., N), sign fixed as the module says.

    ``center`` subtracts each column's mean (over the N positions) first.
    """
    xp = get_xp(matrices)
    if center:
        matrices = matrices - matrices.mean(axis=-2, keepdims=True)
    _, singular_values, right_transposed = xp.linalg.svd(matrices, full_matrices=False)
    first = right_transposed[..., 0, :]                                             # v_1 (..., C)
    projection = (matrices @ first[..., None])[..., 0]                              # (..., N)
    high, low = projection.max(axis=-1), projection.min(axis=-1)
    leading = xp.take_along_axis(first, xp.argmax(first != 0, axis=-1)[..., None], axis=-1)[..., 0]
    flip = (high < -low) | ((high == -low) & (leading < 0))
    sign = xp.where(flip, -1.0, 1.0).astype(matrices.dtype)
    return projection * sign[..., None], first * sign[..., None], singular_values


def eigen_maps(features: Any, center: bool) -> MethodMaps:
    """Eigen maps of ``features`` (K, B, C, *S): weights ``v_1`` (K, B, C), raw ``ReLU(P)`` and the extras."""
    xp = get_xp(features)
    labels, batch, channels, *spatial = features.shape
    matrices = features.reshape(labels, batch, channels, -1).transpose(0, 1, 3, 2)        # X: (K, B, N, C)
    projection, first, singular_values = first_component_projection(matrices, center)
    projection = projection.reshape(labels, batch, *spatial)                              # (K, B, *S)
    return MethodMaps(first, xp.maximum(projection, 0.0),
                      {"singular_values": singular_values, "projection": projection})


def eigencam(net: Network, x: Any, label: Any = None, *, center: bool = False, **options: Any) -> EigenCAMResult:
    """Eigen-CAM (Muhammad and Yeasin, IJCNN 2020): ``M = ReLU(X v_1)`` with ``X[p, k] = A_k[p]``.

    Class-agnostic: no gradient is needed, so ``label`` (and ``reduction``)
    may be left out; then only the layers up to the feature layer run, the
    result has ``gradients`` and ``scores`` None and one map. With labels the
    scores and gradients are computed for the record and every label gets the
    same map. ``center=True`` centres ``X`` over positions first, as
    pytorch-grad-cam 1.5.7 does. ``options``: any option of
    :func:`refcam.gradcam` but ``convention``. The sign convention is in
    :mod:`refcam.cam.eigen_methods`.

    >>> res = eigencam(net, image)            # doctest: +SKIP
    >>> res.singular_values[0, 0, :3]         # doctest: +SKIP
    """
    def maps(captured: Captured) -> MethodMaps:
        computed = eigen_maps(captured.activations[None], center)                      # one map, (1, B, *S)
        return _repeat_per_label(computed, captured.map_count)
    result = run_method("eigencam", maps, net, x, label, options, score_required=False,
                        result_type=EigenCAMResult)
    result.info["center"] = center
    return result


def eigengradcam(net: Network, x: Any, label: Any = None, *, center: bool = False,
                 **options: Any) -> EigenCAMResult:
    """Eigen-Grad-CAM (pytorch-grad-cam's EigenGradCAM): Eigen-CAM of ``X[p, k] = g_k[p] A_k[p]``, ``g = dy/dA``.

    ``label`` or ``reduction`` is required. ``center=True`` centres ``X`` as
    pytorch-grad-cam 1.5.7 does. ``options``: any option of
    :func:`refcam.gradcam` but ``convention``.

    >>> eigengradcam(net, image, "cat").weights.shape   # doctest: +SKIP
    (1, 1, 512)
    """
    def maps(captured: Captured) -> MethodMaps:
        return eigen_maps(captured.gradients * captured.activations[None], center)
    result = run_method("eigengradcam", maps, net, x, label, options, result_type=EigenCAMResult)
    result.info["center"] = center
    return result


def _repeat_per_label(computed: MethodMaps, labels: int) -> MethodMaps:
    """The one class-agnostic map (and its intermediates), once per label: leading axis 1 -> ``labels``."""
    xp = get_xp(computed.raw)

    def repeat(a: Any) -> Any:
        return xp.repeat(a, labels, axis=0)
    return MethodMaps(repeat(computed.weights), repeat(computed.raw),
                      {name: repeat(value) for name, value in computed.extras.items()})
