"""``refcam.explain``: one entry point over every CAM method and peer convention.

This module sits above the methods (:mod:`refcam.cam.gradient_methods`,
:mod:`refcam.cam.eigen_methods`, :mod:`refcam.cam.perturbation_methods`) and the conventions
(:mod:`refcam.cam.conventions`, :mod:`refcam.cam.method_conventions`): it imports them, none of them
imports it.

================= =================================== ===================================
method            function                            paper
================= =================================== ===================================
"gradcam"         :func:`refcam.gradcam`              Selvaraju et al., ICCV 2017
"gradcam++"       :func:`refcam.gradcam_plus_plus`    Chattopadhay et al., WACV 2018
"hirescam"        :func:`refcam.hirescam`             Draelos and Carin, 2020
"xgradcam"        :func:`refcam.xgradcam`             Fu et al., BMVC 2020
"layercam"        :func:`refcam.layercam`             Jiang et al., IEEE TIP 2021
"eigencam"        :func:`refcam.eigencam`             Muhammad and Yeasin, IJCNN 2020
"eigengradcam"    :func:`refcam.eigengradcam`         pytorch-grad-cam's variant of Eigen-CAM
"scorecam"        :func:`refcam.scorecam`             Wang et al., CVPRW 2020
"ablationcam"     :func:`refcam.ablationcam`          Desai and Ramaswamy, WACV 2020
"guided-backprop" :func:`refcam.guided_backprop`      Springenberg et al., ICLR workshop 2015
"guided-gradcam"  :func:`refcam.guided_gradcam`       Selvaraju et al., ICCV 2017
================= =================================== ===================================
"""
from __future__ import annotations

import difflib
from typing import Any, Callable

from ..errors import GradCAMError
from ..network import Network
from .capture import GradCAMResult
from .conventions import CONVENTIONS, gradcam_as
from .eigen_methods import eigencam, eigengradcam
from .gradient_methods import gradcam_plus_plus, hirescam, layercam, xgradcam
from .guided import guided_backprop, guided_gradcam
from .method_conventions import method_as
from .perturbation_methods import ablationcam, scorecam

METHODS: dict[str, Callable[..., GradCAMResult]] = {
    "gradcam++": gradcam_plus_plus, "hirescam": hirescam, "xgradcam": xgradcam, "layercam": layercam,
    "eigencam": eigencam, "eigengradcam": eigengradcam,
    "scorecam": scorecam, "ablationcam": ablationcam,
    "guided-backprop": guided_backprop, "guided-gradcam": guided_gradcam,
}
METHOD_NAMES = ("gradcam", *METHODS)


def explain(net: Network, x: Any, label: Any = None, method: str = "gradcam", convention: str = "matlab",
            **kwargs: Any) -> GradCAMResult:
    """The CAM map of ``x`` for ``label`` by ``method``, computed with ``convention``'s recipe.

    Parameters
    ----------
    net, x, label
        As for :func:`refcam.gradcam`.
    method : str
        One of :data:`METHOD_NAMES` (table in :mod:`refcam.cam.explain`).
    convention : str
        "matlab" (refcam's own recipe: no normalisation, MATLAB's resize) for
        every method; a peer library's recipe for the methods it implements:
        for "gradcam" those of :func:`refcam.cam.conventions.gradcam_as`, for
        the others those of :func:`refcam.cam.method_conventions.method_as`
        ("pytorch-grad-cam", "torchcam", "captum").
    **kwargs
        The method's options: those of :func:`refcam.gradcam` (``reduction``,
        ``feature_layer``, ``reduction_layer``, ``format``, ``upsampling``,
        ``device``, ``dtype``, ``mask``, ``keep_on_device``), the peer's
        options for a peer convention, and the method's own (``eps`` of
        Grad-CAM++ and XGrad-CAM, ``center`` of the Eigen methods,
        ``batch_size`` and ``progress`` of Score-CAM and Ablation-CAM).

    Returns
    -------
    GradCAMResult
        Or its subclass for the method (``GradCAMPlusPlusResult``,
        ``EigenCAMResult``, ``ScoreCAMResult``, ``AblationCAMResult``); ``info["method"]`` names the method.

    Examples
    --------
    >>> res = explain(net, image, "cat", method="layercam")        # doctest: +SKIP
    >>> score_map, feature_layer, reduction_layer = res            # doctest: +SKIP
    """
    if method == "gradcam":
        return gradcam_as(convention, net, x, label, **kwargs)
    if method not in METHODS:
        close = difflib.get_close_matches(method, METHOD_NAMES, n=3, cutoff=0.5) if isinstance(method, str) else []
        hint = f" Did you mean {' or '.join(repr(name) for name in close)}?" if close else ""
        raise GradCAMError(f"unknown CAM method {method!r}.{hint} The methods are: "
                           + ", ".join(repr(name) for name in METHOD_NAMES) + ".")
    if convention == "matlab":
        return METHODS[method](net, x, label, **kwargs)
    if convention not in CONVENTIONS:
        raise GradCAMError(f"convention must be one of {CONVENTIONS}, not {convention!r}.")
    return method_as(convention, method, net, x, label, **kwargs)
