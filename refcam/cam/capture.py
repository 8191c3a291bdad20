"""What every gradient-based CAM shares: one forward, the scores, their gradients at the feature layer, the result.

Engine (spec G15): one forward pass to the reduction layer in which the
feature layer's output ``A`` is a fresh leaf that requires grad, so only the
layers between ``A`` and the reduction layer are recorded; one reverse sweep
per label over that short graph. Nothing below ``A`` is ever differentiated.
Observations of a batch are independent at inference, so summing their scores
gives every observation its own gradient in one sweep.

:func:`capture` returns ``A`` (B, C, *S), ``dy/dA`` (K, B, C, *S) and the
scores (K, B); a method turns them into channel weights and raw maps
(:class:`MethodMaps`, internal layout (K, B, *S)), and :func:`finish` lays the
maps out in MATLAB's layout, resizes them and builds the result.
:func:`run_method` chains the three for the methods of
:mod:`refcam.cam.gradient_methods` and :mod:`refcam.cam.eigen_methods`.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ..autodiff import Tensor, grad, graph_nodes
from ..backend import get_xp, resolve_device, resolve_dtype, to_device, to_numpy
from ..errors import (AllGradientsZeroError, GradCAMError, LabelError, NonFiniteScoreError, ReductionError,
                      RefcamError)
from ..layout import Layout, to_internal
from ..network import Network
from .resize import resize_map
from .selection import check_layer_name, default_feature_layer, default_reduction_layer

UPSAMPLING_METHODS = ("bicubic", "nearest", "none")
COMMON_OPTIONS: dict[str, Any] = {
    "reduction": None, "feature_layer": None, "reduction_layer": None, "format": None, "upsampling": "bicubic",
    "device": "auto", "dtype": "float64", "mask": None, "keep_on_device": False,
}


@dataclass
class GradCAMResult:
    """What :func:`refcam.gradcam` (or another CAM method) computed, every intermediate included.

    Maps are in MATLAB's layout: ``(h, w)``, ``(h, w, d)`` or ``(1, t)``, then a
    label axis ``K`` when ``label`` was a sequence, then a batch axis ``B`` when
    the input format had one. Intermediates are in refcam's internal layout,
    label-major: ``activations`` ``(B, C, *S)``, ``gradients`` ``(K, B, C, *S)``,
    ``weights`` (alpha) ``(K, B, C)`` (the methods that weight each position:
    ``(K, B, C, *S)``), ``scores`` ``(K, B)``.

    It unpacks like MATLAB: ``score_map, feature_layer, reduction_layer = result``.
    """

    map: Any
    feature_layer: str
    reduction_layer: str
    activations: Any
    gradients: Any
    weights: Any
    raw_map: Any
    scores: Any
    labels: list[int] | None = None
    upsampling: str = "bicubic"
    info: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.map, self.feature_layer, self.reduction_layer))


@dataclass
class Captured:
    """The feature activations, the scores and their gradients, and how to lay out the maps."""

    activations: Any            # (B, C, *S)
    gradients: Any              # (K, B, C, *S); None when no score was asked for
    scores: Any                 # (K, B); None when no score was asked for
    labels: list[int] | None
    stacked: bool               # a sequence of labels: maps get a label axis
    feature_layer: str
    reduction_layer: str
    layout: Layout
    info: dict[str, Any]

    @property
    def map_count(self) -> int:
        """K: one map per label (one when there is no score)."""
        return 1 if self.gradients is None else int(self.gradients.shape[0])


@dataclass
class MethodMaps:
    """A method's output in the internal layout: ``weights``, raw maps ``(K, B, *S)``, and its own extras."""

    weights: Any
    raw: Any
    extras: dict[str, Any] = field(default_factory=dict)


def cam_options(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options every CAM method takes (:data:`COMMON_OPTIONS`), defaults filled in; unknown names are errors."""
    unknown = sorted(set(options) - set(COMMON_OPTIONS))
    if unknown:
        hints = [difflib.get_close_matches(name, COMMON_OPTIONS, n=1) for name in unknown]
        suggestions = "".join(f" ({name!r}: did you mean {hint[0]!r}?)" for name, hint in zip(unknown, hints) if hint)
        raise GradCAMError(f"{method} has no option(s) {unknown}{suggestions}; its options are: "
                           + ", ".join(COMMON_OPTIONS) + ".")
    return dict(COMMON_OPTIONS, **options)


def run_method(method: str, maps: Callable[[Captured], MethodMaps], net: Network, x: Any, label: Any,
               options: dict[str, Any], *, score_required: bool = True,
               result_type: type[GradCAMResult] = GradCAMResult) -> GradCAMResult:
    """``method``'s result: :func:`capture` with ``options``, then ``maps(captured)``, then :func:`finish`."""
    settings = cam_options(method, options)
    check_upsampling(settings["upsampling"])
    captured = capture(net, x, label, reduction=settings["reduction"], feature_layer=settings["feature_layer"],
                       reduction_layer=settings["reduction_layer"], format=settings["format"],
                       device=settings["device"], dtype=settings["dtype"], mask=settings["mask"],
                       score_required=score_required)
    return finish(captured, maps(captured), upsampling=settings["upsampling"],
                  keep_on_device=settings["keep_on_device"], method=method, result_type=result_type)


def check_upsampling(upsampling: str) -> None:
    """GradCAMError unless ``upsampling`` is one of :data:`UPSAMPLING_METHODS`."""
    if upsampling not in UPSAMPLING_METHODS:
        raise GradCAMError(f"upsampling must be one of {UPSAMPLING_METHODS}, not {upsampling!r}.")


def capture(net: Network, x: Any, label: Any = None, *, reduction: Callable[[Tensor], Tensor] | None = None,
            feature_layer: str | None = None, reduction_layer: str | None = None, format: str | None = None,
            device: str = "auto", dtype: str = "float64", mask: Any = None,
            score_required: bool = True) -> Captured:
    """One forward pass, and the gradient of each label's score (or of ``reduction``) with respect to ``A``.

    Arguments as for :func:`refcam.gradcam`. With ``score_required=False``
    (Eigen-CAM) ``label`` and ``reduction`` may both be left out: then only
    the layers up to the feature layer run and nothing is differentiated
    (``gradients`` and ``scores`` are None).
    """
    _check_score_arguments(label, reduction, score_required)
    on = resolve_device(device)
    compute_dtype = resolve_dtype(dtype)
    x_internal, layout = to_internal(to_device(x, on), net.input_layer, format=format, dtype=compute_dtype)
    reduction_name = check_layer_name(net, reduction_layer or default_reduction_layer(net), "reduction_layer")
    shapes = net.infer_shapes(x_internal.shape[1:])
    feature_name = check_layer_name(
        net, feature_layer or default_feature_layer(net, shapes, reduction_name), "feature_layer")
    info = {"device": on, "dtype": compute_dtype.name, "format": layout.format}
    if label is None and reduction is None:
        _check_has_map_axes(shapes[feature_name], feature_name)
        activations = net.forward_tensors(Tensor(x_internal), [feature_name])[feature_name]
        return Captured(activations.data, None, None, None, False, feature_name, reduction_name, layout,
                        dict(info, recorded_ops=[]))

    outputs = net.forward_tensors(Tensor(x_internal), [feature_name, reduction_name], grad_from=feature_name)
    activations, reduced = outputs[feature_name], outputs[reduction_name]
    if not reduced.requires_grad:
        raise AllGradientsZeroError(
            f"all gradients are zero: the reduction layer {reduction_name!r} does not depend on the "
            f"feature layer {feature_name!r} (it is not downstream of it), so the score cannot change "
            "with the feature map. Choose a feature layer upstream of the reduction layer.")

    _check_has_map_axes(shapes[feature_name], feature_name)
    stacked = label is not None and is_label_sequence(label)
    scores, label_indices = _score_functions(net, reduced, label, reduction, mask, layout)
    xp = get_xp(activations.data)
    evaluated = [score.evaluate(reduced) for score in scores]
    _check_scores_finite(xp, [per_observation for _, per_observation in evaluated], reduction is not None)
    score_tensors = [total for total, _ in evaluated]
    gradients = xp.stack([grad(s, [activations])[0] for s in score_tensors])               # (K, B, C, *S)
    score_values = xp.stack([per_observation for _, per_observation in evaluated])          # (K, B)
    _check_gradients_not_all_zero(xp, gradients, feature_name, reduction_name)
    return Captured(activations.data, gradients, score_values, label_indices, stacked, feature_name,
                    reduction_name, layout,
                    dict(info, recorded_ops=[node.op for node in graph_nodes(score_tensors[0])]))


def finish(captured: Captured, computed: MethodMaps, *, upsampling: str, keep_on_device: bool, method: str,
           result_type: type[GradCAMResult] = GradCAMResult) -> GradCAMResult:
    """The result: raw maps (K, B, *S) in MATLAB's layout, resized with ``upsampling``, with every intermediate."""
    layout, stacked = captured.layout, captured.stacked
    raw_map = layout.map_from_internal(computed.raw, stacked=stacked)
    if upsampling == "none":
        score_map = raw_map
    else:
        resized = resize_map(layout.map_for_resize(computed.raw), layout.map_resize_size(), upsampling)
        score_map = layout.map_from_resized(resized, stacked=stacked)

    out = (lambda a: a) if keep_on_device else _to_numpy_or_none
    extras = {name: out(value) for name, value in computed.extras.items()}
    return result_type(
        map=out(score_map), feature_layer=captured.feature_layer, reduction_layer=captured.reduction_layer,
        activations=out(captured.activations), gradients=out(captured.gradients), weights=out(computed.weights),
        raw_map=out(raw_map), scores=out(captured.scores), labels=captured.labels, upsampling=upsampling,
        info=dict(captured.info, method=method), **extras)


def _to_numpy_or_none(value: Any) -> Any:
    return None if value is None else to_numpy(value)


def is_label_sequence(label: Any) -> bool:
    """True for a list, tuple or array of labels (maps stacked on a trailing axis, G2)."""
    return isinstance(label, (list, tuple)) or (hasattr(label, "ndim") and label.ndim > 0)


def _check_score_arguments(label: Any, reduction: Any, score_required: bool) -> None:
    """G3: ``label`` and ``reduction`` exclude each other; one of them is needed unless ``score_required`` is off."""
    both = label is not None and reduction is not None
    if both or (score_required and label is None and reduction is None):
        raise GradCAMError("give exactly one of label= (classification, segmentation) and reduction= "
                           "(any scalar score, e.g. regression).")
    if reduction is not None and not callable(reduction):
        raise ReductionError(f"reduction must be a function y -> scalar Tensor, not {type(reduction).__name__} "
                             f"{reduction!r}; for a class score pass label= instead.")


def _class_index(net: Network, label: Any, num_classes: int) -> int:
    """One label (class name or 0-based index) as a channel index of the reduction output."""
    if isinstance(label, str):
        classes = net.classes
        if classes is None:
            raise LabelError(f"label {label!r} is a class name but this network has no class names "
                             "(no classification layer); pass a 0-based integer index.")
        if label not in classes:
            shown = ", ".join(repr(c) for c in list(classes)[:20])
            raise LabelError(f"label {label!r} is not a class of this network; classes are: {shown}"
                             + (", ..." if len(classes) > 20 else "") + ".")
        index = list(classes).index(label)
    elif isinstance(label, (int, np.integer)) and not isinstance(label, (bool, np.bool_)):
        index = int(label)
    else:
        raise LabelError(f"a label is a class name (str) or a 0-based integer index, not {label!r}.")
    if not 0 <= index < num_classes:
        raise LabelError(
            f"label index {index} is out of range for a reduction output with {num_classes} channels "
            f"(valid: 0..{num_classes - 1}; refcam's indices are 0-based, MATLAB's are 1-based).")
    return index


def _score_functions(net: Network, reduced: Tensor, label: Any, reduction: Any, mask: Any,
                     layout: Any) -> tuple[list[ClassScore] | list[ReductionScore], list[int] | None]:
    """One score per label (or the one user reduction), each evaluated on the reduction output (B, C, *S)."""
    if reduction is not None:
        if mask is not None:
            raise GradCAMError("mask= restricts a class score; with reduction= put the mask in the function.")
        return [ReductionScore(reduction, net.input_layer.default_format.startswith("C"))], None
    labels = list(label) if is_label_sequence(label) else [label]
    if not labels:
        raise LabelError("label is an empty sequence; give at least one class.")
    indices = [_class_index(net, one, reduced.shape[1]) for one in labels]
    weight = None if mask is None else _mask_weight(mask, reduced, layout)
    return [ClassScore(c, weight) for c in indices], indices


@dataclass(frozen=True)
class ClassScore:
    """G14: ``y = sum over batch and positions of Y[:, c]`` (times the mask ``weight``, if any)."""

    index: int
    weight: Any = None   # None, or a 0/1 array (1, *S) broadcast against Y[:, c]

    def __call__(self, y: Tensor) -> Tensor:
        channel = y[:, self.index]
        return (channel * self.weight).sum() if self.weight is not None else channel.sum()

    def per_observation(self, y: Any) -> Any:
        """The score of each observation of the array ``y`` (B, C, *S), in one expression: shape (B,)."""
        channel = y[:, self.index] if self.weight is None else y[:, self.index] * self.weight
        return channel.reshape(channel.shape[0], -1).sum(axis=1)

    def evaluate(self, y: Tensor) -> tuple[Tensor, Any]:
        """The recorded batch score (scalar Tensor) and, for the record, each observation's score (B,)."""
        return self(y), self.per_observation(y.data)


@dataclass(frozen=True)
class ReductionScore:
    """G3: ``y = sum over observations b of reduction(Y[b])``, the user function called once per observation.

    ``Y[b]`` is passed as MATLAB passes it (:func:`_observation_view`);
    observations are independent at inference, so the gradient of the sum
    with respect to ``A[b]`` is that of ``reduction(Y[b])`` alone.
    """

    reduction: Callable[[Tensor], Tensor]
    channels_first: bool

    def evaluate(self, y: Tensor) -> tuple[Tensor, Any]:
        """The recorded sum (scalar Tensor) and the per-observation values (B,) it adds up."""
        terms = [self._term(_observation_view(y[b], self.channels_first)) for b in range(y.shape[0])]
        total = terms[0]
        for term in terms[1:]:
            total = total + term
        return total, y.xp.stack([term.data for term in terms])

    def _term(self, observation: Tensor) -> Tensor:
        try:
            value = self.reduction(observation)
        except RefcamError:
            raise
        except Exception as err:  # noqa: BLE001 - the user's code may raise anything; say where it came from
            raise ReductionError(
                f"the reduction function raised {type(err).__name__}: {err} (it was called with one observation "
                f"of the reduction layer's output, a Tensor of shape {observation.shape}).") from err
        if not isinstance(value, Tensor):
            raise ReductionError(
                f"the reduction function returned {type(value).__name__}, not a refcam Tensor; build the "
                "score from its argument with Tensor operations (indexing, +, *, sum, mean, ...).")
        if value.size != 1:
            raise ReductionError(
                f"the reduction function must return a scalar, but returned shape {value.shape}; "
                "reduce it, e.g. with .sum() or by indexing one element.")
        return value.reshape(())


def _mask_weight(mask: Any, reduced: Tensor, layout: Any) -> Any:
    """The mask as a 0/1 array broadcastable against ``Y[:, c]`` (shape ``(1, *S)``)."""
    xp = reduced.xp
    spatial = reduced.shape[2:]
    mask = xp.asarray(to_device(mask, "gpu" if xp is not np else "cpu"))
    if mask.dtype != bool:
        raise GradCAMError(f"mask must be a boolean array, not {mask.dtype}.")
    mask = layout.mask_to_internal(mask, spatial)
    return mask.astype(reduced.dtype)[None]


def _observation_view(y: Tensor, channels_first: bool) -> Tensor:
    """One observation of the reduction output as MATLAB passes it: (C,), (*S, C) or, for sequences, (C, T)."""
    spatial = y.shape[1:]
    if all(n == 1 for n in spatial):
        return y.reshape((y.shape[0],))
    if channels_first:
        return y
    return y.transpose(tuple(range(1, y.ndim)) + (0,))


def _check_has_map_axes(feature_shape: tuple[int, ...], feature: str) -> None:
    """A map needs the feature layer's output to have spatial or time axes: ``(C, *S)`` with ``S`` not empty."""
    if len(feature_shape) < 2:
        raise GradCAMError(
            f"the feature layer {feature!r} outputs {feature_shape}: one value per channel, with no spatial or "
            "time axis, so there is no map to compute. Choose a layer before the global pooling or the fully "
            "connected layer (the default is the last layer with a spatial or time size above 1).")


def _check_scores_finite(xp: Any, per_observation: list[Any], from_reduction: bool) -> None:
    """NonFiniteScoreError when a score is NaN or Inf: its gradient, and so the map, would be meaningless."""
    values = xp.stack(per_observation)                                           # (K, B)
    bad = to_numpy(~xp.isfinite(values))
    if bad.any():
        k, b = map(int, np.argwhere(bad)[0])
        source = "the reduction function returned" if from_reduction else "the class score is"
        raise NonFiniteScoreError(
            f"{source} {float(to_numpy(values[k, b]))} (label #{k}, observation #{b}); a Grad-CAM map needs a "
            "finite score. Check the input for NaN/Inf, and the reduction (a log of 0, a division by 0).")


def _check_gradients_not_all_zero(xp: Any, gradients: Any, feature: str, reduction: str) -> None:
    """MATLAB's AllGradientsZero: a gradient that is zero everywhere gives no map."""
    per_label = xp.abs(gradients).reshape(gradients.shape[0], gradients.shape[1], -1).max(axis=2)
    zero = to_numpy(per_label == 0)
    if zero.any():
        k, b = map(int, np.argwhere(zero)[0])
        raise AllGradientsZeroError(
            f"all gradients of the score (label #{k}, observation #{b}) with respect to the feature layer "
            f"{feature!r} are zero, so the Grad-CAM map is undefined. The reduction layer {reduction!r} may "
            "be saturated (a softmax probability of exactly 1 or 0: use the fully connected layer as "
            "reduction_layer for logit Grad-CAM) or the score may not depend on this feature layer.")
