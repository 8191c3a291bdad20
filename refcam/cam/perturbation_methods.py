"""The perturbation CAM family: Score-CAM and Ablation-CAM, channel weights from the score of changed passes.

Both weigh the feature activations ``A`` (channels ``k``, B observations) by
how the score ``y`` (the one the call defines: a label's class score or a
``reduction``) responds when channel ``k`` alone is kept or removed, and map
``M = ReLU(sum_k w_k A_k)``; derivations in ``docs/methods.md``::

    Score-CAM     H_k = s(U(A_k)),  y_k = y(x * H_k)                      (Wang et al., CVPRW 2020)
                  w_k = softmax_k(y_k)  |  y_k  |  y_k - y(x_b)
    Ablation-CAM  y_k = y with A_k = 0 (only the head re-run)             (Desai and Ramaswamy, WACV 2020)
                  w_k = (y - y_k) / y

with ``U`` the upsampling of a channel to the input's size (``mask_upsampling``:
"linear", PyTorch's ``interpolate`` with ``align_corners=False``, bilinear in
2-D and trilinear in 3-D; "linear-corners", ``align_corners=True``; "nearest",
PyTorch's nearest), ``s`` the min-max normalisation of one mask over its
positions, ``s(u) = (u - min u) / (max u - min u + eps)`` (0 for a constant
channel when ``eps = 0``), applied after ``U`` ("after", the paper and
pytorch-grad-cam 1.5.7) or before it ("before", torchcam 0.5.0), and ``x * H_k``
the input (as the caller gives it, before the input layer's normalisation)
times the mask, broadcast over the input's channels.

Costs: Score-CAM runs the whole network once per observation and channel
(B C passes); Ablation-CAM runs only the head above the feature layer
(:mod:`refcam.cam.head`) B C times. Both batch the passes ``batch_size`` at a
time and call ``progress(done, total)`` after each batch.

Arrays (internal layout): ``activations`` (B, C, *S); ``scores`` (K, B);
``masked_scores`` / ``ablated_scores`` ``y_k`` (K, B, C); ``weights`` (K, B,
C); raw maps (K, B, *S). Every label shares the same perturbed passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ..autodiff import Tensor
from ..backend import get_xp, to_device, to_numpy
from ..errors import GradCAMError
from ..layout import to_internal
from ..network import Network
from .capture import Captured, GradCAMResult, MethodMaps, _score_functions, cam_options, run_method
from .conventions import linear_weights, nearest_indices_torch
from .gradient_methods import channel_sum
from .head import HeadPlan, head_plan, run_head
from .resize import resize_along_axis

MASK_UPSAMPLING = ("linear", "linear-corners", "nearest")
NORMALIZE_ORDERS = ("after", "before")
SCORE_WEIGHTINGS = ("softmax", "score", "increase")
Progress = Callable[[int, int], None]


@dataclass
class ScoreCAMResult(GradCAMResult):
    """:class:`GradCAMResult` plus ``masked_scores`` ``y(x * H_k)`` (K, B, C) and ``baseline_scores`` (K, B) or None."""

    masked_scores: Any = None
    baseline_scores: Any = None


@dataclass
class AblationCAMResult(GradCAMResult):
    """:class:`GradCAMResult` plus ``ablated_scores``: the score with channel k zeroed (K, B, C)."""

    ablated_scores: Any = None


# --- the maths, on arrays ------------------------------------------------------------------------
def min_max_masks(maps: Any, eps: float) -> Any:
    """``(u - min u) / (max u - min u + eps)`` over the positions of each map (n, 1, *S); 0 where max = min."""
    xp = get_xp(maps)
    axes = tuple(range(2, maps.ndim))
    low = maps.min(axis=axes, keepdims=True)
    spread = maps.max(axis=axes, keepdims=True) - low + eps
    return xp.where(spread == 0, 0.0, (maps - low) / xp.where(spread == 0, 1.0, spread)).astype(maps.dtype)


def corner_linear_weights(in_length: int, out_length: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear taps with the corners aligned (PyTorch ``align_corners=True``): ``s = d (n - 1) / (m - 1)``.

    >>> corner_linear_weights(2, 3)[0].tolist()
    [[1.0, 0.0], [0.5, 0.5], [1.0, 0.0]]
    """
    scale = (in_length - 1) / (out_length - 1) if out_length > 1 else 0.0
    source = np.arange(out_length) * scale
    first = np.minimum(np.floor(source), in_length - 1).astype(np.int64)
    fraction = np.where(first >= in_length - 1, 0.0, source - first)
    weights = np.stack([1.0 - fraction, fraction], axis=1)
    indices = np.stack([first, np.minimum(first + 1, in_length - 1)], axis=1)
    return weights, indices


def upsample_masks(maps: Any, size: tuple[int, ...], method: str) -> Any:
    """Maps (n, 1, *S) resized to (n, 1, *size) axis by axis with ``method``, one of :data:`MASK_UPSAMPLING`."""
    xp = get_xp(maps)
    exact_nearest = maps.dtype == np.float64 and len(size) != 2   # as PyTorch (refcam.cam.conventions)
    result = maps
    for axis, out_length in enumerate(size, start=2):
        in_length = maps.shape[axis]
        if method == "nearest":
            indices = nearest_indices_torch(in_length, out_length, exact_nearest)
            result = xp.take(result, xp.asarray(indices), axis=axis)
            continue
        taps = linear_weights if method == "linear" else corner_linear_weights
        result = resize_along_axis(result, axis, *taps(in_length, out_length))
    return result


def score_cam_masks(channels: Any, size: tuple[int, ...], upsampling: str, normalize: str, eps: float) -> Any:
    """``H_k``: channels (n, *S) of ``A`` -> masks (n, 1, *size) in [0, 1], normalised ``normalize`` the upsampling."""
    maps = channels[:, None]                                                           # (n, 1, *S)
    if normalize == "before":
        return upsample_masks(min_max_masks(maps, eps), size, upsampling)
    return min_max_masks(upsample_masks(maps, size, upsampling), eps)


def score_cam_weights(masked_scores: Any, baseline_scores: Any, weighting: str) -> Any:
    """Channel weights (K, B, C) from ``y_k`` (K, B, C): softmax over k, ``y_k`` itself, or ``y_k - y(x_b)``."""
    xp = get_xp(masked_scores)
    if weighting == "score":
        return masked_scores
    if weighting == "increase":
        return masked_scores - baseline_scores[..., None]
    shifted = xp.exp(masked_scores - masked_scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def ablation_weights(scores: Any, ablated_scores: Any) -> Any:
    """``w_k = (y - y_k) / y``: scores (K, B), ablated (K, B, C) -> (K, B, C); GradCAMError where ``y = 0``."""
    if bool(to_numpy((scores == 0).any())):
        k, b = map(int, np.argwhere(to_numpy(scores == 0))[0])
        raise GradCAMError(f"Ablation-CAM divides by the score, and the score of label #{k}, observation #{b} is "
                           "exactly 0. Choose another score (e.g. the logit with reduction_layer=) or method.")
    return (scores[..., None] - ablated_scores) / scores[..., None]


def relu_map(weights: Any, activations: Any) -> Any:
    """``M = ReLU(sum_k w_k A_k)``: weights (K, B, C), activations (B, C, *S) -> (K, B, *S)."""
    return get_xp(activations).maximum(channel_sum(weights, activations), 0.0)


# --- the perturbed passes ------------------------------------------------------------------------
@dataclass(frozen=True)
class Passes:
    """B C perturbed passes, one per (observation, channel), ``batch_size`` at a time; ``progress(done, total)``."""

    batch_size: int
    progress: Progress | None

    def chunks(self, batch: int, channels: int, xp: Any) -> Iterator[tuple[Any, Any]]:
        """``(observations, channels)`` index arrays of each batch of passes, observation-major."""
        total = batch * channels
        for start in range(0, total, self.batch_size):
            flat = xp.arange(start, min(start + self.batch_size, total))
            yield flat // channels, flat % channels
            if self.progress is not None:
                self.progress(min(start + self.batch_size, total), total)


def _check_passes(method: str, batch_size: Any, progress: Any) -> Passes:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise GradCAMError(f"{method}: batch_size is the number of passes run at once, a positive integer, "
                           f"not {batch_size!r}.")
    if progress is not None and not callable(progress):
        raise GradCAMError(f"{method}: progress is a function progress(done, total), not {progress!r}.")
    return Passes(int(batch_size), progress)


def _check_choice(method: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise GradCAMError(f"{method}: {name} must be one of {choices}, not {value!r}.")


@dataclass(frozen=True)
class Scoring:
    """The label scores (or the reduction) of a call, evaluated per observation on any reduction-layer output."""

    functions: list[Any]

    def __call__(self, reduced: Any) -> Any:
        """Scores (K, n) of the reduction-layer output ``reduced`` (n, C, *S)."""
        tensor = Tensor(reduced)
        return get_xp(reduced).stack([function.evaluate(tensor)[1] for function in self.functions])


def _internal_input(net: Network, x: Any, settings: dict[str, Any], captured: Captured) -> Any:
    """``x`` in the internal layout (B, C, *S), on the captured device and in its dtype."""
    return to_internal(to_device(x, captured.info["device"]), net.input_layer, format=settings["format"],
                       dtype=captured.info["dtype"])[0]


def _scoring(net: Network, reduced: Any, label: Any, settings: dict[str, Any], captured: Captured) -> Scoring:
    functions, _ = _score_functions(net, Tensor(reduced), label, settings["reduction"], settings["mask"],
                                    captured.layout)
    return Scoring(functions)


def _reduced(net: Network, inputs: Any, reduction_layer: str) -> Any:
    """The reduction layer's output for internal ``inputs`` (n, C, *S): one untaped forward pass."""
    return net.forward_tensors(Tensor(inputs), [reduction_layer])[reduction_layer].data


def masked_input_scores(net: Network, x_internal: Any, captured: Captured, scoring: Scoring, passes: Passes,
                        recipe: dict[str, Any]) -> Any:
    """``y(x_b * H_k)`` (K, B, C): the whole network on each masked input, ``passes.batch_size`` at a time."""
    activations = captured.activations
    xp = get_xp(activations)
    batch, channels = activations.shape[:2]
    size = tuple(x_internal.shape[2:])
    result = xp.zeros((len(scoring.functions), batch, channels), dtype=activations.dtype)
    for observations, chans in passes.chunks(batch, channels, xp):
        masks = score_cam_masks(activations[observations, chans], size, **recipe)          # (n, 1, *S_in)
        result[:, observations, chans] = scoring(_reduced(net, x_internal[observations] * masks,
                                                          captured.reduction_layer))
    return result


def ablated_head_scores(plan: HeadPlan, side: dict[str, Tensor], captured: Captured, scoring: Scoring,
                        passes: Passes) -> Any:
    """``y_k`` (K, B, C): the head of ``plan`` re-run with channel k of ``A`` set to 0 (``side``: its side inputs)."""
    activations = captured.activations
    xp = get_xp(activations)
    batch, channels = activations.shape[:2]
    result = xp.zeros((len(scoring.functions), batch, channels), dtype=activations.dtype)
    for observations, chans in passes.chunks(batch, channels, xp):
        ablated = activations[observations]                                              # (n, C, *S), a copy
        ablated[xp.arange(ablated.shape[0]), chans] = 0.0
        side_values = {name: Tensor(value.data[observations]) for name, value in side.items()}
        result[:, observations, chans] = scoring(run_head(plan, Tensor(ablated), side_values).data)
    return result


# --- the public functions ------------------------------------------------------------------------
def scorecam(net: Network, x: Any, label: Any = None, *, batch_size: int = 32, weighting: str = "softmax",
             baseline: Any = 0.0, mask_upsampling: str = "linear", normalize: str = "after", eps: float = 0.0,
             progress: Progress | None = None, **options: Any) -> ScoreCAMResult:
    """Score-CAM (Wang, Wang, Du, Yang, Zhang, Ding, Mardziel and Hu, CVPRW 2020).

    ``H_k = s(U(A_k))`` (module docstring), ``y_k = y(x * H_k)`` the score of
    the masked input through the whole network, ``M = ReLU(sum_k w_k A_k)``.

    Parameters
    ----------
    net, x, label
        As for :func:`refcam.gradcam`.
    batch_size : int
        Masked inputs per forward pass (memory: ``batch_size`` inputs).
    weighting : str
        ``"softmax"``: ``w = softmax over k of y_k`` (pytorch-grad-cam 1.5.7 and
        torchcam 0.5.0, on the logit); ``"score"``: ``w_k = y_k`` (the authors'
        released code, with the class probability as the score);
        ``"increase"``: ``w_k = y_k - y(x_b)``, the paper's increase of confidence.
    baseline : float or array
        ``x_b`` for ``"increase"``: a value for every element, or an array of
        ``x``'s shape and format.
    mask_upsampling, normalize, eps
        ``U``, the order of ``s`` and ``U``, and the constant of ``s`` (module
        docstring): ``"linear-corners", "after", 1e-8`` is pytorch-grad-cam
        1.5.7; ``"linear", "before", 1e-8`` is torchcam 0.5.0 (``"nearest"``
        for 1-D).
    progress : callable, optional
        Called as ``progress(done, total)`` after each batch of passes (total B C).
    **options
        Any option of :func:`refcam.gradcam` but ``convention``.

    Returns
    -------
    ScoreCAMResult
        ``weights`` ``w`` (K, B, C), ``masked_scores`` ``y_k`` (K, B, C),
        ``baseline_scores`` (K, B) for ``"increase"``.

    Examples
    --------
    >>> res = scorecam(net, image, "cat", reduction_layer="fc", batch_size=64)   # doctest: +SKIP
    >>> res.masked_scores.shape                                                  # doctest: +SKIP
    (1, 1, 512)
    """
    passes = _check_passes("scorecam", batch_size, progress)
    _check_choice("scorecam", "weighting", weighting, SCORE_WEIGHTINGS)
    _check_choice("scorecam", "mask_upsampling", mask_upsampling, MASK_UPSAMPLING)
    _check_choice("scorecam", "normalize", normalize, NORMALIZE_ORDERS)
    settings = cam_options("scorecam", options)
    recipe = {"upsampling": mask_upsampling, "normalize": normalize, "eps": eps}

    def maps(captured: Captured) -> MethodMaps:
        x_internal = _internal_input(net, x, settings, captured)
        scoring = _scoring(net, _reduced(net, x_internal, captured.reduction_layer), label, settings, captured)
        baseline_scores = None
        if weighting == "increase":
            baseline_input = _baseline_input(net, baseline, x_internal, settings, captured)
            baseline_scores = scoring(_reduced(net, baseline_input, captured.reduction_layer))
        masked = masked_input_scores(net, x_internal, captured, scoring, passes, recipe)
        weights = score_cam_weights(masked, baseline_scores, weighting)
        return MethodMaps(weights, relu_map(weights, captured.activations),
                          {"masked_scores": masked, "baseline_scores": baseline_scores})
    result = run_method("scorecam", maps, net, x, label, options, result_type=ScoreCAMResult)
    result.info.update(batch_size=passes.batch_size, weighting=weighting, mask_upsampling=mask_upsampling,
                       normalize=normalize, eps=eps)
    return result


def _baseline_input(net: Network, baseline: Any, x_internal: Any, settings: dict[str, Any],
                    captured: Captured) -> Any:
    """``x_b`` (B, C, *S): ``baseline`` everywhere, or the caller's array in ``x``'s format."""
    xp = get_xp(x_internal)
    if np.isscalar(baseline):
        return xp.full(x_internal.shape, float(baseline), dtype=x_internal.dtype)
    baseline_internal = _internal_input(net, baseline, settings, captured)
    if baseline_internal.shape != x_internal.shape:
        raise GradCAMError(f"scorecam: the baseline has internal shape {baseline_internal.shape}, the input "
                           f"{x_internal.shape}; give one value or an array of the input's shape and format.")
    return baseline_internal


def ablationcam(net: Network, x: Any, label: Any = None, *, batch_size: int = 32,
                progress: Progress | None = None, **options: Any) -> AblationCAMResult:
    """Ablation-CAM (Desai and Ramaswamy, WACV 2020): ``w_k = (y - y_k) / y``, ``M = ReLU(sum_k w_k A_k)``.

    ``y_k`` is the score with channel ``k`` of the feature activations set to
    0 at every position; only the layers above the feature layer are re-run
    (:func:`refcam.cam.head.run_head`), ``batch_size`` ablated copies at a
    time. A score of exactly 0 is an error (the weight divides by it).

    Parameters
    ----------
    net, x, label
        As for :func:`refcam.gradcam`.
    batch_size : int
        Ablated copies of ``A`` per pass of the head.
    progress : callable, optional
        Called as ``progress(done, total)`` after each batch (total B C).
    **options
        Any option of :func:`refcam.gradcam` but ``convention``.

    Returns
    -------
    AblationCAMResult
        ``weights`` ``w`` (K, B, C) and ``ablated_scores`` ``y_k`` (K, B, C).

    Examples
    --------
    >>> res = ablationcam(net, image, "cat", reduction_layer="fc")   # doctest: +SKIP
    >>> res.ablated_scores.shape                                      # doctest: +SKIP
    (1, 1, 512)
    """
    passes = _check_passes("ablationcam", batch_size, progress)
    settings = cam_options("ablationcam", options)

    def maps(captured: Captured) -> MethodMaps:
        plan = head_plan(net, captured.feature_layer, captured.reduction_layer)
        side = {}
        if plan.side_inputs:
            x_internal = _internal_input(net, x, settings, captured)
            side = net.forward_tensors(Tensor(x_internal), list(plan.side_inputs))
        scoring = _scoring(net, run_head(plan, Tensor(captured.activations), side).data, label, settings, captured)
        ablated = ablated_head_scores(plan, side, captured, scoring, passes)
        weights = ablation_weights(captured.scores, ablated)
        return MethodMaps(weights, relu_map(weights, captured.activations), {"ablated_scores": ablated})
    result = run_method("ablationcam", maps, net, x, label, options, result_type=AblationCAMResult)
    result.info["batch_size"] = passes.batch_size
    return result
