"""Grad-CAM with MATLAB ``gradCAM`` semantics (spec G1-G15).

For feature activations ``A`` (channels ``k``, positions ``p``, ``N`` positions)
and a scalar score ``y``::

    alpha_k = (1/N) * sum_p dy/dA_k[p]                 (global average of the gradient)
    M[p]    = ReLU( sum_k alpha_k * A_k[p] )           (raw map, feature-layer resolution)
    map     = resize(M, input spatial size)            ("bicubic" | "nearest" | "none")

Score (G14): for class ``c``, ``y = sum over the reduction output's positions of
Y[c]`` (``Y[c]`` itself for an ordinary classifier; the per-class Grad-CAM of a
segmentation network otherwise), optionally restricted to a pixel mask; or
``y = reduction(Y)`` for a user function (G3).

Engine (G15): :func:`refcam.cam.capture.capture` (one forward, one reverse
sweep per label over the head above ``A`` only); the formula:
:func:`refcam.cam.gradient_methods.channel_weights_and_map`. This module is
the entry point above the peer conventions (:mod:`refcam.cam.conventions`),
which build on the same computation without importing this module.
"""
from __future__ import annotations

from typing import Any, Callable

from ..autodiff import Tensor
from ..network import Network
from .capture import GradCAMResult, is_label_sequence  # noqa: F401 - is_label_sequence: refcam.golden imports it here
from .conventions import gradcam_as
from .gradient_methods import matlab_gradcam


def gradcam(net: Network, x: Any, label: Any = None, *, reduction: Callable[[Tensor], Tensor] | None = None,
            feature_layer: str | None = None, reduction_layer: str | None = None, format: str | None = None,
            upsampling: str = "bicubic", device: str = "auto", dtype: str = "float64", mask: Any = None,
            keep_on_device: bool = False, convention: str = "matlab") -> GradCAMResult:
    """Grad-CAM map of ``x`` for ``label`` (or a ``reduction`` function), as MATLAB's ``gradCAM``.

    Parameters
    ----------
    net : Network
        One input layer, one output.
    x : array
        One observation in MATLAB layout (h x w x c, h x w x d x c, or c x t), or
        any layout named by ``format``; any real dtype (G10, G11).
    label : str, int or sequence of them
        Class name, or **0-based** class index (MATLAB's indices are 1-based), or a
        sequence of either: maps are stacked on a trailing axis (G1, G2).
    reduction : callable, optional
        ``reduction(y) -> scalar Tensor`` where ``y`` is the reduction layer's
        output for one observation, in MATLAB's order: ``(C,)`` when it has no
        spatial extent, ``(*S, C)`` for images, ``(C, T)`` for sequences.
        Exclusive with ``label`` (G3).
    feature_layer, reduction_layer : str, optional
        Layer names; defaults follow MATLAB (G5, G6).
    format : str, optional
        Dimension letters of ``x`` (S, C, B, T), e.g. "SSC", "CSS", "SSCB", "CT" (G7).
    upsampling : {"bicubic", "nearest", "none"}
        Resize of the map to the input's spatial size, MATLAB's imresize/imresize3 (G8).
    device : {"auto", "cpu", "gpu"}
        "gpu" computes with CuPy (G9).
    dtype : {"float64", "float32"}
        Compute dtype (float64 is the reference).
    mask : array of bool, optional
        refcam extension of G14: sum the class score only over these positions of
        the reduction output (shape of its spatial dimensions, MATLAB order).
    keep_on_device : bool
        Return CuPy arrays when computing on the GPU (default: NumPy).
    convention : str
        "matlab" (this function's own recipe) or a peer library's recipe:
        "pytorch-grad-cam", "captum", "torchcam", "tf-keras-vis", "keras-example"
        (:func:`refcam.cam.conventions.gradcam_as`, which also takes the peers'
        own options; ``upsampling`` and ``keep_on_device`` apply to "matlab" only).

    Returns
    -------
    GradCAMResult
        ``.map``, ``.feature_layer``, ``.reduction_layer`` and the intermediates;
        ``.info["recorded_ops"]`` lists the operations the reverse sweep went
        through (those between the feature and the reduction layer, and the score).

    Examples
    --------
    >>> res = gradcam(net, image, "toy poodle")            # doctest: +SKIP
    >>> score_map, feature_layer, reduction_layer = res     # doctest: +SKIP
    """
    options = dict(reduction=reduction, feature_layer=feature_layer, reduction_layer=reduction_layer,
                   format=format, device=device, dtype=dtype, mask=mask)
    if convention != "matlab":
        return gradcam_as(convention, net, x, label, **options)
    return matlab_gradcam(net, x, label, upsampling=upsampling, keep_on_device=keep_on_device, **options)
