"""How far is a candidate Grad-CAM from refcam's, and where does it first go wrong (refcam extension X2)?

:func:`compare` checks a candidate map, or a dict of a candidate's
intermediates, against a golden (a golden file, a :class:`~refcam.golden.Golden`,
a :class:`~refcam.cam.gradcam.GradCAMResult` or an array) stage by stage in
pipeline order::

    activations (A) -> scores (y) -> gradients (dy/dA) -> weights (alpha) -> raw_map -> map

For each stage, with ``c`` the candidate and ``g`` the golden (as float64):

* pass/fail: ``max |c - g| <= atol + rtol * max |g|`` (the error relative to
  the golden's largest magnitude, so that zeros of a ReLU'd map and
  cancellations do not make the test meaningless); ``rtol`` and ``atol``
  come from a preset in :data:`refcam.testing.TOLERANCES` ("float64" ->
  ``golden-float64``, "float32" -> ``golden-float32``) unless given;
* the largest absolute error ``max |c - g|`` and the largest elementwise
  relative error ``max |c - g| / |g|`` (over entries with ``g != 0``; an entry
  with ``g = 0 != c`` counts as infinite), each with its index;
* cosine similarity ``<c, g> / (|c| |g|)``, Pearson's and Spearman's
  correlation (NaN when either side is constant);
* for maps, the overlap of the top-k% regions: the ``ceil(k/100 * n)`` largest
  entries of each (ties broken by position), IoU = |both| / |either|, for
  ``k`` in ``top_k`` (10 and 20 by default), over all entries of the stage.

A shape mismatch fails the stage with hints at the usual layout mix-ups
(transposed map, channel-first vs channel-last, a row-major vs column-major
reshape, a kept singleton axis, a map that was not upsampled). A failing stage
of the right shape is checked for a scaled, shifted or transposed copy of the
golden. The report names the first stage that fails: everything before it is
right, so the bug is in the step that makes it.
"""
from __future__ import annotations

import itertools
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from .backend import to_numpy
from .cam.gradcam import GradCAMResult
from .errors import RefcamError
from .golden import Golden, read
from .testing import TOLERANCES

STAGES = ("activations", "scores", "gradients", "weights", "raw_map", "map")
ALIASES = {"A": "activations", "y": "scores", "dA": "gradients", "dscore_dA": "gradients", "alpha": "weights"}
MAP_STAGES = ("raw_map", "map")
DESCRIPTIONS = {
    "activations": "A, the feature layer's output (B, C, *S)",
    "scores": "y, the score of each label and observation (K, B)",
    "gradients": "dy/dA (K, B, C, *S)",
    "weights": "alpha = mean over positions of dy/dA (K, B, C)",
    "raw_map": "the map at the feature layer's resolution, before upsampling",
    "map": "the map",
}
ADVICE = {
    "activations": "the forward pass to the feature layer: check the input layout and normalisation, the "
                   "weights' layout, the padding, and that the feature layer is the same layer.",
    "scores": "the score: check the reduction layer (softmax probability or logit), the label (refcam's "
              "indices are 0-based, MATLAB's 1-based) and the layers after A.",
    "gradients": "dy/dA: check the backward pass of the layers between the feature and the reduction layer, "
                 "and the score it starts from.",
    "weights": "alpha: the mean of dy/dA over all spatial positions (one value per channel), not a sum and "
               "not over channels.",
    "raw_map": "M = ReLU(sum_k alpha_k A_k): check the ReLU and that nothing normalises the map.",
    "map": "the final map: check the resize (MATLAB's imresize bicubic, pixel centres, antialiasing) and "
           "the map's layout (h x w [x labels] [x batch]).",
}
DEFAULT_TOP_K = (10.0, 20.0)


class ComparisonError(RefcamError, ValueError):
    """The arguments of :func:`compare` cannot be compared (unknown stage names, nothing in common)."""


@dataclass
class StageComparison:
    """The comparison of one pipeline stage (see the module docstring for each number)."""

    name: str
    candidate_shape: tuple[int, ...]
    golden_shape: tuple[int, ...]
    passed: bool
    allowed: float
    max_abs_error: float = math.nan
    max_abs_index: tuple[int, ...] | None = None
    max_rel_error: float = math.nan
    max_rel_index: tuple[int, ...] | None = None
    error_over_max: float = math.nan
    cosine: float = math.nan
    pearson: float = math.nan
    spearman: float = math.nan
    iou: dict[float, float] = field(default_factory=dict)
    nonfinite: int = 0
    hints: list[str] = field(default_factory=list)

    @property
    def shape_ok(self) -> bool:
        return self.candidate_shape == self.golden_shape

    def __str__(self) -> str:
        head = f"[{'PASS' if self.passed else 'FAIL'}] {self.name}: {DESCRIPTIONS[self.name]}"
        if not self.shape_ok:
            lines = [head, f"    shape {self.candidate_shape} but the golden's is {self.golden_shape}"]
        else:
            lines = [head, f"    shape {self.candidate_shape}",
                     f"    max |c - g| = {self.max_abs_error:.3e} at {self.max_abs_index};  "
                     f"max |c - g| / |g| = {self.max_rel_error:.3e} at {self.max_rel_index}",
                     f"    max |c - g| / max |g| = {self.error_over_max:.3e}  (allowed: max |c - g| <= "
                     f"{self.allowed:.3e})",
                     f"    cosine {self.cosine:.9f}  Pearson {self.pearson:.9f}  Spearman {self.spearman:.9f}"]
            if self.iou:
                lines.append("    IoU of top-k% regions: " + ", ".join(
                    f"{k:g}%: {value:.3f}" for k, value in self.iou.items()))
            if self.nonfinite:
                lines.append(f"    the candidate holds {self.nonfinite} NaN/Inf value(s)")
        lines.extend(f"    hint: {hint}" for hint in self.hints)
        return "\n".join(lines)


def _of_final_stage(name: str) -> property:
    """A read-only property giving the field ``name`` of the report's last compared stage."""
    def read(report: "ComparisonReport") -> Any:
        return getattr(report.final, name)
    return property(read, doc=f"``final.{name}``: the last compared stage's {name}.")


@dataclass
class ComparisonReport:
    """What :func:`compare` found. ``str(report)`` is the readable report.

    The summary properties (``max_abs_error``, ``cosine``, ...) are those of the
    last stage compared (the map, for a map candidate); every stage is in
    ``stages``, in pipeline order.
    """

    stages: list[StageComparison]
    preset: str
    rtol: float
    atol: float
    top_k: tuple[float, ...]

    @property
    def passed(self) -> bool:
        return all(stage.passed for stage in self.stages)

    @property
    def first_divergence(self) -> str | None:
        """The first stage (pipeline order) that fails, or None."""
        return next((stage.name for stage in self.stages if not stage.passed), None)

    def stage(self, name: str) -> StageComparison:
        """The comparison of stage ``name`` (or one of its aliases)."""
        name = ALIASES.get(name, name)
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(f"stage {name!r} was not compared; compared: {[s.name for s in self.stages]}")

    @property
    def final(self) -> StageComparison:
        return self.stages[-1]

    max_abs_error = _of_final_stage("max_abs_error")
    max_abs_index = _of_final_stage("max_abs_index")
    max_rel_error = _of_final_stage("max_rel_error")
    max_rel_index = _of_final_stage("max_rel_index")
    cosine = _of_final_stage("cosine")
    pearson = _of_final_stage("pearson")
    spearman = _of_final_stage("spearman")
    iou = _of_final_stage("iou")

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        lines = [f"refcam.compare: {verdict} (preset {self.preset!r}: max |c - g| <= atol + rtol * max |g|, "
                 f"rtol={self.rtol:g}, atol={self.atol:g}; c = candidate, g = golden)"]
        divergence = self.first_divergence
        if divergence is not None:
            agree = [stage.name for stage in self.stages[:[s.name for s in self.stages].index(divergence)]]
            before = f" (after {', '.join(agree)}, which agree)" if agree else ""
            lines.append(f"first divergence: {divergence}{before}; {ADVICE[divergence]}")
        lines.extend(str(stage) for stage in self.stages)
        return "\n".join(lines)


# --- the entry point -----------------------------------------------------------------------------
def compare(candidate: Any, golden: Any, *, rtol: float | None = None, atol: float | None = None,
            preset: str = "float64", top_k: Sequence[float] = DEFAULT_TOP_K,
            network_file: str | os.PathLike | None = None) -> ComparisonReport:
    """Compare a candidate Grad-CAM (a map, or a dict of intermediates) with a golden.

    Parameters
    ----------
    candidate : array or dict
        The map (in the golden's layout: MATLAB's ``h x w`` etc.), or a dict
        with any of ``activations`` (or ``A``), ``scores``, ``gradients`` (or
        ``dA``), ``weights`` (or ``alpha``), ``raw_map``, ``map``, in the
        layouts of the module docstring. NumPy, CuPy or anything ``np.asarray``
        takes (a CPU torch tensor without grad).
    golden : Golden, str or PathLike, GradCAMResult, dict or array
        The reference: a golden file (path or read), a refcam result, or an
        array (compared as the map).
    rtol, atol : float, optional
        Override the preset's tolerances.
    preset : str
        "float64" or "float32" (``TOLERANCES["golden-float64"]`` /
        ``["golden-float32"]``), or any key of :data:`refcam.testing.TOLERANCES`.
    top_k : sequence of float
        Percentages for the top-k% IoU of map stages.
    network_file : str or PathLike, optional
        For a golden file that names its network file instead of embedding it:
        where that file is (default: beside the golden). Its SHA-256 must be
        the one the golden records (:func:`refcam.golden.read`).

    Returns
    -------
    ComparisonReport
        ``.passed``, ``.first_divergence``, ``.stages``; ``str()`` is readable.

    Examples
    --------
    >>> report = refcam.compare(my_map, "cat.golden.h5")                   # doctest: +SKIP
    >>> print(report)                                                      # doctest: +SKIP
    >>> refcam.compare({"A": a, "dA": g, "map": m}, golden).first_divergence  # doctest: +SKIP
    'dA'
    """
    tolerance = _preset(preset)
    rtol = tolerance["rtol"] if rtol is None else float(rtol)
    atol = tolerance["atol"] if atol is None else float(atol)
    candidates = _candidate_stages(candidate)
    goldens = _golden_stages(golden, network_file)
    missing = [name for name in candidates if name not in goldens]
    if missing:
        raise ComparisonError(f"the golden has no {missing}; it holds {list(goldens)}. Compare the stages "
                              "both have (a golden array is only a map).")
    top_k = tuple(float(k) for k in top_k)
    stages = [_compare_stage(name, candidates[name], goldens[name], rtol, atol, top_k, goldens)
              for name in STAGES if name in candidates]
    return ComparisonReport(stages, preset, rtol, atol, top_k)


def _preset(preset: str) -> dict[str, float]:
    for key in (f"golden-{preset}", preset):
        if key in TOLERANCES and "rtol" in TOLERANCES[key]:
            return {"rtol": float(TOLERANCES[key]["rtol"]), "atol": float(TOLERANCES[key].get("atol", 0.0))}
    raise ComparisonError(f"unknown preset {preset!r}; use 'float64', 'float32' or a key of "
                          f"refcam.testing.TOLERANCES ({sorted(TOLERANCES)}).")


def _as_array(value: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(to_numpy(value))
    except (TypeError, ValueError, RuntimeError) as err:
        raise ComparisonError(f"{what} cannot be read as an array ({err}); pass a NumPy array "
                              "(torch: tensor.detach().cpu().numpy()).") from err
    if array.dtype.kind not in "fiub":
        raise ComparisonError(f"{what} has dtype {array.dtype}; give real numbers.")
    return array.astype(np.float64)


def _stage_dict(values: Mapping[str, Any], what: str) -> dict[str, np.ndarray]:
    stages = {}
    for key, value in values.items():
        name = ALIASES.get(key, key)
        if name not in STAGES:
            raise ComparisonError(f"{what} has the key {key!r}; stages are {list(STAGES)} (aliases "
                                  f"{sorted(ALIASES)}).")
        if name in stages:
            raise ComparisonError(f"{what} gives the stage {name!r} twice (as an alias and by name).")
        stages[name] = _as_array(value, f"{what}[{key!r}]")
    if not stages:
        raise ComparisonError(f"{what} is an empty dict; give at least one stage.")
    return stages


def _candidate_stages(candidate: Any) -> dict[str, np.ndarray]:
    if isinstance(candidate, Mapping):
        return _stage_dict(candidate, "the candidate")
    return {"map": _as_array(candidate, "the candidate")}


def _golden_stages(golden: Any, network_file: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    if isinstance(golden, (str, os.PathLike)):
        golden = read(golden, network_file=network_file)
    if isinstance(golden, (Golden, GradCAMResult)):
        return {name: _as_array(getattr(golden, name), f"the golden's {name}") for name in STAGES}
    if isinstance(golden, Mapping):
        return _stage_dict(golden, "the golden")
    return {"map": _as_array(golden, "the golden")}


# --- one stage -----------------------------------------------------------------------------------
def _compare_stage(name: str, c: np.ndarray, g: np.ndarray, rtol: float, atol: float,
                   top_k: tuple[float, ...], goldens: dict[str, np.ndarray]) -> StageComparison:
    scale = float(np.abs(g).max()) if g.size else 0.0
    allowed = atol + rtol * scale
    if c.shape != g.shape:
        return StageComparison(name, c.shape, g.shape, False, allowed,
                               hints=shape_hints(c, g, allowed, name, goldens))
    difference = np.abs(c - g)
    finite = np.isfinite(c)
    nonfinite = int(c.size - finite.sum())
    difference[~finite] = np.inf
    relative = _elementwise_relative(difference, g)
    result = StageComparison(
        name, c.shape, g.shape, False, allowed, nonfinite=nonfinite,
        max_abs_error=float(difference.max()), max_abs_index=_index(difference),
        max_rel_error=float(relative.max()), max_rel_index=_index(relative),
        error_over_max=float(difference.max()) / scale if scale > 0 else (0.0 if difference.max() == 0 else math.inf))
    if nonfinite == 0:
        result.cosine = cosine_similarity(c, g)
        result.pearson = correlation(c, g, rank=False)
        result.spearman = correlation(c, g, rank=True)
        if name in MAP_STAGES:
            result.iou = {k: top_k_iou(c, g, k) for k in top_k}
    result.passed = nonfinite == 0 and result.max_abs_error <= allowed
    if not result.passed and nonfinite == 0:
        result.hints = value_hints(c, g, rtol, atol, positions=_feature_positions(goldens))
    return result


def _feature_positions(goldens: dict[str, np.ndarray]) -> int | None:
    """N, the number of spatial positions of the golden's feature map (activations (B, C, *S)), if known."""
    activations = goldens.get("activations")
    return int(np.prod(activations.shape[2:])) if activations is not None and activations.ndim > 2 else None


def _index(values: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(values)), values.shape)) if values.size else ()


def _elementwise_relative(difference: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``|c - g| / |g|``; 0 where both are equal, inf where ``g = 0 != c``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = difference / np.abs(g)
    relative[difference == 0] = 0.0
    return relative


def cosine_similarity(c: np.ndarray, g: np.ndarray) -> float:
    """``<c, g> / (|c| |g|)``; NaN when either is all zero.

    >>> cosine_similarity(np.array([3.0, 4.0]), np.array([4.0, 3.0]))
    0.96
    """
    norms = float(np.linalg.norm(c)) * float(np.linalg.norm(g))
    return float(np.vdot(c, g)) / norms if norms > 0 else math.nan


def correlation(c: np.ndarray, g: np.ndarray, rank: bool) -> float:
    """Pearson's correlation of the entries (of their ranks, ties averaged, when ``rank``); NaN if one is constant."""
    a, b = c.ravel(), g.ravel()
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from scipy import stats  # imported on use: it costs a third of a second
        value = stats.spearmanr(a, b)[0] if rank else stats.pearsonr(a, b)[0]
    return float(value)


def top_k_region(values: np.ndarray, k: float) -> np.ndarray:
    """Flat indices of the ``ceil(k/100 * n)`` largest entries (ties: the earlier position first).

    >>> top_k_region(np.array([0.1, 0.9, 0.5, 0.9]), 50).tolist()
    [1, 3]
    """
    count = max(1, math.ceil(k / 100.0 * values.size))
    return np.sort(np.argsort(-values.ravel(), kind="stable")[:count])


def top_k_iou(c: np.ndarray, g: np.ndarray, k: float) -> float:
    """IoU of the top-k% regions of ``c`` and ``g``."""
    a, b = set(top_k_region(c, k).tolist()), set(top_k_region(g, k).tolist())
    return len(a & b) / len(a | b)


# --- hints ---------------------------------------------------------------------------------------
def _close(a: np.ndarray, b: np.ndarray, allowed: float) -> bool:
    return a.shape == b.shape and bool(np.all(np.abs(a - b) <= allowed))


def shape_hints(c: np.ndarray, g: np.ndarray, allowed: float, name: str,
                goldens: dict[str, np.ndarray]) -> list[str]:
    """Likely layout mix-ups behind a shape mismatch, checked against the values where possible."""
    hints = []
    permutation = _matching_permutation(c, g, allowed)
    if permutation is not None:
        kind = ("a transposed map (w x h instead of MATLAB's h x w)" if permutation == (1, 0)
                else "axes in another order (channel-first vs channel-last, or transposed spatial axes)")
        hints.append(f"the candidate equals golden.transpose({permutation}): {kind}.")
    elif c.ndim == g.ndim and sorted(c.shape) == sorted(g.shape):
        hints.append(f"the same sizes in another order {c.shape} vs {g.shape}: a transposed map or "
                     "channel-first vs channel-last layout? (the values do not match any transpose)")
    if c.size == g.size and permutation is None:
        hints.extend(_reshape_hints(c, g, allowed))
    if name == "map" and "raw_map" in goldens and c.shape == goldens["raw_map"].shape:
        hints.append("the candidate has the raw map's shape (the feature layer's resolution): it was not "
                     "upsampled; upsample it, or compare it as {'raw_map': ...}.")
    if not hints:
        hints.append(f"expected the golden's shape {g.shape} ({DESCRIPTIONS[name]}).")
    return hints


def _matching_permutation(c: np.ndarray, g: np.ndarray, allowed: float) -> tuple[int, ...] | None:
    if c.ndim != g.ndim or c.ndim > 6:
        return None
    for permutation in itertools.permutations(range(g.ndim)):
        if permutation != tuple(range(g.ndim)) and _close(c, g.transpose(permutation), allowed):
            return permutation
    return None


def _reshape_hints(c: np.ndarray, g: np.ndarray, allowed: float) -> list[str]:
    if c.squeeze().shape == g.squeeze().shape:
        same = " (and the values agree once they are dropped)" if _close(c.reshape(g.shape), g, allowed) else ""
        return [f"the shapes differ only by axes of size 1{same}: {c.shape} vs {g.shape} (MATLAB's 1 x t "
                "sequence map vs a length-t vector, or a kept batch/channel/label axis?)."]
    if _reordered(c, g, allowed):
        return [f"the candidate holds the golden's numbers reshaped: {c.shape} read in "
                f"{_reordered(c, g, allowed)} gives the golden; a reshape where a transpose was needed, or a "
                "row-major (NumPy) vs column-major (MATLAB) mix-up?"]
    return [f"the candidate has as many entries as the golden ({g.size}) in another shape."]


def _reordered(c: np.ndarray, g: np.ndarray, allowed: float) -> str:
    """How reading ``c`` flat and reshaping to ``g.shape`` gives ``g``, if it does with mixed orders ('' if not)."""
    names = {"C": "row-major", "F": "column-major"}
    for read_order, write_order in (("C", "C"), ("C", "F"), ("F", "C"), ("F", "F")):
        if _close(c.ravel(order=read_order).reshape(g.shape, order=write_order), g, allowed):
            return f"{names[read_order]} order and reshaped {names[write_order]}"
    return ""


def value_hints(c: np.ndarray, g: np.ndarray, rtol: float, atol: float, positions: int | None = None) -> list[str]:
    """For a same-shape failure: is the candidate a transpose, a multiple or a shift of the golden?

    ``positions`` (N, the feature map's spatial positions) names the commonest
    multiple: alpha summed over the positions instead of averaged. A single
    number gets no multiple or shift hint (any two numbers are one of the other).
    """
    hints = []
    scale = float(np.abs(g).max())
    allowed = atol + rtol * scale
    for permutation in itertools.permutations(range(g.ndim)) if g.ndim <= 6 else ():
        if permutation != tuple(range(g.ndim)) and _close(c, g.transpose(permutation), allowed):
            hints.append(f"the candidate equals golden.transpose({permutation}): a transposed layout.")
            break
    if g.ndim > 1 and _reordered(c, g, allowed):
        hints.append(f"the candidate is the golden's numbers in another memory order ({_reordered(c, g, allowed)} "
                     "gives the golden): a row-major vs column-major (MATLAB) reshape?")
    if g.size < 2:
        return hints
    slope, offset = _affine_fit(c, g)
    fitted = slope * g + offset
    if _close(c, fitted, atol + rtol * max(float(np.abs(fitted).max()), scale)):
        if abs(offset) <= allowed and positions and positions > 1 and math.isclose(slope, positions,
                                                                                  rel_tol=max(10 * rtol, 1e-9)):
            hints.append(f"the candidate is the golden x {positions} positions: a sum instead of a mean of dy/dA "
                         "over the feature map's positions (alpha is their mean)?")
        elif abs(offset) <= allowed:
            hints.append(f"the candidate is {slope:.9g} x the golden: a normalisation (min-max, divide by max) "
                         "or a different score (softmax probability vs logit)?")
        elif abs(slope - 1.0) <= rtol:
            hints.append(f"the candidate is the golden shifted by {offset:.9g}: an offset added somewhere, or "
                         "the minimum subtracted?")
        else:
            hints.append(f"the candidate is {slope:.9g} x golden + {offset:.9g}: a min-max normalisation "
                         "(x - min) / (max - min) or similar?")
    return hints


def _affine_fit(c: np.ndarray, g: np.ndarray) -> tuple[float, float]:
    """Least-squares ``c ~ slope * g + offset``."""
    x, y = g.ravel(), c.ravel()
    if np.ptp(x) == 0:
        return 1.0, float(np.mean(y - x))
    slope, offset = np.polyfit(x, y, 1)
    return float(slope), float(offset)
