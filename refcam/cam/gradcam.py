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

Engine (G15): one forward pass to the reduction layer in which the feature
layer's output ``A`` is a fresh leaf that requires grad, so only the layers
between ``A`` and the reduction layer are recorded; one reverse sweep per label
over that short graph. Nothing below ``A`` is ever differentiated. Observations
of a batch are independent at inference, so summing their scores gives every
observation its own gradient in one sweep.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from ..autodiff import Tensor, grad, graph_nodes
from ..backend import get_xp, resolve_device, resolve_dtype, to_device, to_numpy
from ..errors import (AllGradientsZeroError, GradCAMError, LabelError, NonFiniteScoreError, ReductionError,
                      RefcamError)
from ..layout import to_internal
from ..network import Network
from .resize import resize_map
from .selection import check_layer_name, default_feature_layer, default_reduction_layer

UPSAMPLING_METHODS = ("bicubic", "nearest", "none")


@dataclass
class GradCAMResult:
    """What :func:`gradcam` computed, every intermediate included.

    Maps are in MATLAB's layout: ``(h, w)``, ``(h, w, d)`` or ``(1, t)``, then a
    label axis ``K`` when ``label`` was a sequence, then a batch axis ``B`` when
    the input format had one. Intermediates are in refcam's internal layout,
    label-major: ``activations`` ``(B, C, *S)``, ``gradients`` ``(K, B, C, *S)``,
    ``weights`` (alpha) ``(K, B, C)``, ``scores`` ``(K, B)``.

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
    if convention != "matlab":
        from .conventions import gradcam_as  # conventions builds on this function
        return gradcam_as(convention, net, x, label, reduction=reduction, feature_layer=feature_layer,
                          reduction_layer=reduction_layer, format=format, dtype=dtype, device=device, mask=mask)
    if upsampling not in UPSAMPLING_METHODS:
        raise GradCAMError(f"upsampling must be one of {UPSAMPLING_METHODS}, not {upsampling!r}.")
    if (label is None) == (reduction is None):
        raise GradCAMError("give exactly one of label= (classification, segmentation) and reduction= "
                           "(any scalar score, e.g. regression).")
    if reduction is not None and not callable(reduction):
        raise ReductionError(f"reduction must be a function y -> scalar Tensor, not {type(reduction).__name__} "
                             f"{reduction!r}; for a class score pass label= instead.")
    on = resolve_device(device)
    compute_dtype = resolve_dtype(dtype)
    x_internal, layout = to_internal(to_device(x, on), net.input_layer, format=format, dtype=compute_dtype)
    reduction_name = check_layer_name(net, reduction_layer or default_reduction_layer(net), "reduction_layer")
    shapes = net.infer_shapes(x_internal.shape[1:])
    feature_name = check_layer_name(
        net, feature_layer or default_feature_layer(net, shapes, reduction_name), "feature_layer")

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

    weights, raw = channel_weights_and_map(gradients, activations.data)

    raw_map = layout.map_from_internal(raw, stacked=stacked)
    if upsampling == "none":
        score_map = raw_map
    else:
        resized = resize_map(layout.map_for_resize(raw), layout.map_resize_size(), upsampling)
        score_map = layout.map_from_resized(resized, stacked=stacked)

    out = (lambda a: a) if keep_on_device else to_numpy
    return GradCAMResult(
        map=out(score_map), feature_layer=feature_name, reduction_layer=reduction_name,
        activations=out(activations.data), gradients=out(gradients), weights=out(weights),
        raw_map=out(raw_map), scores=out(score_values), labels=label_indices, upsampling=upsampling,
        info={"device": on, "dtype": compute_dtype.name, "format": layout.format,
              "recorded_ops": [node.op for node in graph_nodes(score_tensors[0])]})


def channel_weights_and_map(gradients: Any, activations: Any) -> tuple[Any, Any]:
    """G13: ``alpha_k = (1/N) sum_p dy/dA_k[p]`` and ``M = ReLU(sum_k alpha_k A_k)``.

    ``gradients`` (K, B, C, *S) and ``activations`` (B, C, *S) give ``alpha``
    (K, B, C) and the raw maps (K, B, *S).
    """
    xp = get_xp(gradients)
    spatial_axes = tuple(range(3, gradients.ndim))
    weights = gradients.mean(axis=spatial_axes)                                   # (K, B, C)
    per_position = weights.reshape(weights.shape + (1,) * len(spatial_axes))       # (K, B, C, 1, ..., 1)
    return weights, xp.maximum((per_position * activations[None]).sum(axis=2), 0.0)


def is_label_sequence(label: Any) -> bool:
    """True for a list, tuple or array of labels (maps stacked on a trailing axis, G2)."""
    return isinstance(label, (list, tuple)) or (hasattr(label, "ndim") and label.ndim > 0)


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
