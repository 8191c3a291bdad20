"""Adapters for the peer libraries: pytorch-grad-cam 1.5.7, torchcam 0.5.0 and Captum 0.9, each called as its
documentation shows, on the case's network converted by :func:`refcam.to_torch`.

Each adapter runs the library's method of the case's name, on the case's
feature layer (hooked by name), with the case's score: the network is cut at
the case's reduction layer (a forward hook returns that layer's output), so
the library differentiates what the case asks for (the softmax probability,
the logit, the summed regression output). What the library has no way to
express (a mask, or a method it lacks) raises ``NotImplementedError`` and the
case fails as "adapter" with that reason. The libraries' own activations and
gradients are returned where they expose them, so the scorecard says whether
the library's forward and backward passes are right before its map differs.
docs/conformance.md has the scorecards, every failure explained.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...io import load
from ...layout import to_internal
from ..runner import Case

PYTORCH_GRAD_CAM = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "hirescam": "HiResCAM",
                    "xgradcam": "XGradCAM", "layercam": "LayerCAM", "eigencam": "EigenCAM",
                    "eigengradcam": "EigenGradCAM", "scorecam": "ScoreCAM", "ablationcam": "AblationCAM"}
TORCHCAM = {"gradcam": "GradCAM", "gradcam++": "GradCAMpp", "xgradcam": "XGradCAM", "layercam": "LayerCAM",
            "scorecam": "ScoreCAM"}


def score_model(case: Case, per_class: bool = False) -> Any:
    """``refcam.to_torch`` of the case's network, returning the output of the case's reduction layer.

    ``per_class``: a per-pixel output (B, K, *S) is summed over the positions
    (those of the case's mask, if it has one) to (B, K), the way a
    classification-only library is given a segmentation score.
    """
    import torch

    from ...interop.to_torch import to_torch

    model = to_torch(load(case.network_file))
    if case.dtype == "float32":
        model = model.float()

    class UpToReductionLayer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.captured: list[Any] = []
            model.get_submodule(case.reduction_layer).register_forward_hook(
                lambda module, inputs, output: self.captured.append(output))

        def forward(self, x: Any) -> Any:
            self.captured.clear()
            self.model(x)
            output = self.captured[-1]
            if not per_class or output.ndim == 2:
                return output
            if case.mask is not None:
                output = output * torch.from_numpy(case.mask).to(output.dtype)
            return output.flatten(2).sum(dim=2)

    return UpToReductionLayer().eval()


def _input(case: Case) -> Any:
    import torch
    return torch.from_numpy(np.ascontiguousarray(case.input_nchw, dtype=case.dtype))


def case_labels(case: Case, library: str, masks: bool = False) -> tuple[int, ...]:
    """The case's labels (class 0 when it has none); a library without a masked score cannot run a masked case."""
    if case.mask is not None and not masks:
        raise NotImplementedError(f"{library} has no masked score; the case sums its class over a mask")
    return (0,) if case.labels is None else case.labels


def _method(case: Case, table: dict[str, str], library: str) -> str:
    if case.method not in table:
        raise NotImplementedError(f"{library} has no {case.method}")
    return table[case.method]


def map_in_case_layout(case: Case, maps: list[np.ndarray]) -> np.ndarray:
    """Per-label maps (B, *S) -> the layout of refcam's ``.map``."""
    layout = to_internal(case.input, load(case.network_file).input_layer, format=case.format)[1]
    return layout.map_from_internal(np.stack(maps), stacked=len(maps) > 1)


def pytorch_grad_cam(case: Case) -> dict[str, Any]:
    """pytorch-grad-cam: ``Method(model, target_layers=[layer])(input_tensor=x, targets=[target] * B)``."""
    import pytorch_grad_cam

    model, x = score_model(case), _input(case)
    cls = getattr(pytorch_grad_cam, _method(case, PYTORCH_GRAD_CAM, "pytorch-grad-cam"))
    layer = model.model.get_submodule(case.feature_layer)
    per_pixel = model(x).ndim > 2
    maps, gradients, activations = [], [], None
    with cls(model=model, target_layers=[layer]) as cam:
        for label in case_labels(case, "pytorch-grad-cam", masks=per_pixel):
            target = _pytorch_grad_cam_target(case, label, per_pixel, x.shape[2:])
            maps.append(cam(input_tensor=x, targets=[target] * x.shape[0]))
            activations = cam.activations_and_grads.activations[0].numpy()
            if cam.activations_and_grads.gradients:
                gradients.append(cam.activations_and_grads.gradients[0].numpy())
    stages = {"map": map_in_case_layout(case, maps), "activations": activations}
    if len(gradients) == len(maps):
        stages["gradients"] = np.stack(gradients)
    return stages


def _pytorch_grad_cam_target(case: Case, label: int, per_pixel: bool, size: tuple[int, ...]) -> Any:
    """Its ``ClassifierOutputTarget``; for a per-pixel output its ``SemanticSegmentationTarget`` (the mask, or every
    pixel); for the regression cases the output summed."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, SemanticSegmentationTarget
    if case.reduction == "sum":
        return lambda output: output.sum()
    if per_pixel:
        mask = np.ones(tuple(size)) if case.mask is None else case.mask.astype(float)
        return SemanticSegmentationTarget(label, mask)
    return ClassifierOutputTarget(label)


def torchcam(case: Case) -> dict[str, Any]:
    """torchcam: ``with Method(model, target_layer=name) as cam: cam(class_idx=label, scores=model(x))``."""
    import torchcam.methods

    model, x = score_model(case), _input(case)
    cls = getattr(torchcam.methods, _method(case, TORCHCAM, "torchcam"))
    maps, gradients, activations = [], [], None
    for label in case_labels(case, "torchcam"):
        with cls(model, target_layer=f"model.{case.feature_layer}", input_shape=tuple(x.shape[1:])) as cam:
            scores = model(x)
            maps.append(cam(class_idx=label, scores=scores)[0].detach().numpy())
            activations = cam.hook_a[0].detach().numpy()
            if cam.hook_g[0] is not None:
                gradients.append(cam.hook_g[0].numpy())
    stages = {"map": map_in_case_layout(case, maps), "activations": activations}
    if len(gradients) == len(maps):
        stages["gradients"] = np.stack(gradients)
    return stages


def captum(case: Case) -> dict[str, Any]:
    """Captum: ``LayerGradCam(model, layer).attribute(x, target=label)``, then
    ``LayerAttribution.interpolate(attribution, input size)`` (its default, nearest). A per-pixel output is summed
    over the (masked) positions first, as Captum's segmentation tutorial does; the regression cases (one output,
    batch 1) are ``target=0``."""
    from captum.attr import LayerAttribution, LayerGradCam

    if case.method != "gradcam":
        raise NotImplementedError(f"Captum has no {case.method} (its CAM is LayerGradCam)")
    model, x = score_model(case, per_class=True), _input(case)
    explainer = LayerGradCam(model, model.model.get_submodule(case.feature_layer))
    maps = []
    for label in case_labels(case, "Captum", masks=True):
        attribution = explainer.attribute(x, target=label)
        resized = LayerAttribution.interpolate(attribution, tuple(x.shape[2:]))
        maps.append(resized[:, 0].detach().numpy())
    return {"map": map_in_case_layout(case, maps)}
