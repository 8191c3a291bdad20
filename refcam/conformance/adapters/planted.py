"""Grad-CAM implementations with one planted bug each: the kit must fail them at the right stage.

Each adapter is refcam's Grad-CAM with one step done wrong, the way ports get
it wrong, and returns every stage, so that :func:`refcam.compare` names the
first one that diverges. ``EXPECTED_STAGE`` is that stage (tested by
``tests/conformance/test_planted_bugs.py`` on the cases of
``PLANTED_CASES``):

======================= ===================================================================== ============
adapter                 the bug                                                               first fails
======================= ===================================================================== ============
summed_gradient         ``alpha_k = sum_p dy/dA_k[p]`` instead of the mean                    weights
missing_relu            ``M = sum_k alpha_k A_k``, no ReLU                                    raw_map
logit_score             the logit differentiated where the case asks for the softmax         scores
wrong_feature_layer     the first ReLU hooked instead of the case's feature layer             activations
channels_last_as_first  an h x w x c buffer read as c x h x w                                  activations
align_corners_resize    the map resized bilinearly with corners aligned (scipy zoom order 1)  map
float32_accumulation    a float64 case computed in float32                                    activations
======================= ===================================================================== ============
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...cam.explain import explain
from ...io import load
from ...layout import Layout, to_internal
from ..runner import Case
from .reference import STAGES, case_call, run_refcam

PLANTED_CASES = ("series2d/default", "series2d/batch", "dag2d/default", "volume3d/default")
# (bug, case) pairs where the case cannot show the bug, and why: the kit passes them, rightly
CANNOT_SHOW = {("align_corners_resize", "dag2d/default"): "its feature map has the input's size: nothing is resized",
               ("missing_relu", "dag2d/default"): "its linear map has no negative value: the ReLU changes nothing"}


def _stages(result: Any) -> dict[str, Any]:
    return {stage: np.asarray(getattr(result, stage)) for stage in STAGES}


def _layout(case: Case) -> Layout:
    return to_internal(case.input, load(case.network_file).input_layer, format=case.format)[1]


def _finish(case: Case, stages: dict[str, Any], raw: np.ndarray) -> dict[str, Any]:
    """Stages with the raw maps (K, B, *S) replaced and the map resized by refcam from them."""
    from ...cam.resize import resize_map
    layout = _layout(case)
    stacked = case.labels is not None and len(case.labels) > 1
    resized = resize_map(layout.map_for_resize(raw), layout.map_resize_size(), case.options.get("upsampling",
                                                                                                  "bicubic"))
    return dict(stages, raw_map=layout.map_from_internal(raw, stacked=stacked),
                map=layout.map_from_resized(resized, stacked=stacked))


def _linear_map(weights: np.ndarray, activations: np.ndarray) -> np.ndarray:
    return (weights.reshape(weights.shape + (1,) * (activations.ndim - 2)) * activations[None]).sum(axis=2)


def summed_gradient(case: Case) -> dict[str, Any]:
    stages = run_refcam(case)
    weights = stages["gradients"].sum(axis=tuple(range(3, stages["gradients"].ndim)))
    return _finish(case, dict(stages, weights=weights), np.maximum(_linear_map(weights, stages["activations"]), 0))


def missing_relu(case: Case) -> dict[str, Any]:
    stages = run_refcam(case)
    return _finish(case, stages, _linear_map(stages["weights"], stages["activations"]))


def _with(case: Case, x: Any = None, **changes: Any) -> dict[str, Any]:
    label, options = case_call(case)
    options.update(changes)
    return _stages(explain(load(case.network_file), case.input if x is None else x, label, **options))


def logit_score(case: Case) -> dict[str, Any]:
    return _with(case, reduction_layer="fc")


def wrong_feature_layer(case: Case) -> dict[str, Any]:
    return _with(case, feature_layer="relu_1")


def channels_last_as_first(case: Case) -> dict[str, Any]:
    """Each observation's buffer (*S, c) reinterpreted as (c, *S), then given back in MATLAB's layout (images and
    volumes: ``format`` ends in ``CB``)."""
    batched = case.input.ndim == len(case.format)
    observations = [case.input[..., b] for b in range(case.input.shape[-1])] if batched else [case.input]
    misread = [np.moveaxis(np.ascontiguousarray(obs).reshape((obs.shape[-1],) + obs.shape[:-1]), 0, -1)
               for obs in observations]
    return _with(case, x=np.stack(misread, axis=-1) if batched else misread[0])


def align_corners_resize(case: Case) -> dict[str, Any]:
    from scipy.ndimage import zoom
    stages = run_refcam(case)
    layout = _layout(case)
    raw = layout.map_for_resize(np.asarray(_internal_raw(stages, case)))
    size = layout.map_resize_size()
    factors = [out / float(n) for out, n in zip(size, raw.shape[:-1])] + [1.0]
    resized = zoom(raw, factors, order=1, mode="nearest", grid_mode=False)
    stacked = case.labels is not None and len(case.labels) > 1
    return dict(stages, map=layout.map_from_resized(resized, stacked=stacked))


def _internal_raw(stages: dict[str, Any], case: Case) -> np.ndarray:
    return np.maximum(_linear_map(stages["weights"], stages["activations"]), 0.0)


def float32_accumulation(case: Case) -> dict[str, Any]:
    return _with(case, dtype="float32")


PLANTED: dict[str, tuple[Callable[[Case], dict[str, Any]], str]] = {
    "summed_gradient": (summed_gradient, "weights"),
    "missing_relu": (missing_relu, "raw_map"),
    "logit_score": (logit_score, "scores"),
    "wrong_feature_layer": (wrong_feature_layer, "activations"),
    "channels_last_as_first": (channels_last_as_first, "activations"),
    "align_corners_resize": (align_corners_resize, "map"),
    "float32_accumulation": (float32_accumulation, "activations"),
}
EXPECTED_STAGE = {name: stage for name, (_, stage) in PLANTED.items()}
