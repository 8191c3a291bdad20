"""Checks for people who test differentiable code: refcam's own tests and yours.

:func:`check_vjp` is the dot-product test of reverse-mode derivatives. For a
function ``f`` of inputs ``x_1..x_n`` with output ``y``, random directions
``v_i`` (one per input) and a random output weight ``u``:

* forward side, central finite differences:
  ``<u, J v> ~ <u, f(x + eps v) - f(x - eps v)> / (2 eps)``
  (error ``O(eps^2)`` from the Taylor series plus ``O(ulp / eps)`` rounding);
* reverse side, refcam's VJPs: ``<J^T u, v> = sum_i <dL/dx_i, v_i>`` with
  ``L = <u, y>``.

The two must agree to ``rtol`` (relative to the larger magnitude) plus ``atol``.
In float64 with ``eps = 1e-6`` the check resolves about 8 significant digits, so
a VJP wrong by 0.1% fails it by five orders of magnitude.

``TOLERANCES`` is the single tolerance table refcam's tests use, keyed by dtype.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .autodiff import Tensor, grad

TOLERANCES: dict[str, dict[str, float]] = {
    # vectorised kernel against its naive loop twin, same dtype
    "float64": {"rtol": 1e-12, "atol": 1e-12},
    "float32": {"rtol": 1e-5, "atol": 1e-6},
    # dot-product finite-difference check (float64 only)
    "vjp": {"rtol": 1e-7, "atol": 1e-10, "eps": 1e-6},
    # refcam against PyTorch in float64
    "crosscheck": {"rtol": 1e-12, "atol": 1e-13},
}


@dataclass(frozen=True)
class VJPCheck:
    """The two sides of one dot-product test and their disagreement."""

    finite_difference: float
    reverse_mode: float
    abs_error: float
    allowed: float

    @property
    def passed(self) -> bool:
        return self.abs_error <= self.allowed


def _to_tensors(arrays: Sequence[Any], requires_grad: bool) -> list[Tensor]:
    return [Tensor(a, requires_grad=requires_grad) for a in arrays]


def check_vjp(fn: Callable[..., Tensor], inputs: Sequence[Any], *, seed: int = 0,
              repeats: int = 3, eps: float | None = None, rtol: float | None = None,
              atol: float | None = None) -> list[VJPCheck]:
    """Assert that the VJPs behind ``fn`` agree with central finite differences.

    Parameters
    ----------
    fn : callable
        Takes one Tensor per input and returns a Tensor (any shape).
    inputs : sequence of float64 arrays
        The point at which to check. Keep it away from kinks (ReLU at 0, ties in
        a max): a finite difference across a kink measures neither side.
    seed : int
        Seed of the random directions ``u`` and ``v``.
    repeats : int
        How many random direction pairs to try.
    eps, rtol, atol : float, optional
        Step and tolerances; defaults from ``TOLERANCES["vjp"]``.

    Returns
    -------
    list of VJPCheck
        One record per repeat (all passed).

    Raises
    ------
    AssertionError
        With both sides and their difference, when any repeat disagrees.

    Examples
    --------
    >>> check_vjp(lambda x: (x * x).sum(), [np.array([1.0, 2.0])])[0].passed
    True
    """
    tol = TOLERANCES["vjp"]
    eps = tol["eps"] if eps is None else eps
    rtol = tol["rtol"] if rtol is None else rtol
    atol = tol["atol"] if atol is None else atol
    arrays = [np.asarray(a, dtype=np.float64) if not hasattr(a, "__cuda_array_interface__") else a
              for a in inputs]
    xp = Tensor(arrays[0]).xp
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(repeats):
        directions = [xp.asarray(rng.standard_normal(a.shape)) for a in arrays]
        leaves = _to_tensors(arrays, requires_grad=True)
        y = fn(*leaves)
        u = xp.asarray(rng.standard_normal(y.shape))
        reverse = sum(float((g * v).sum()) for g, v in zip(grad(y, leaves, u), directions))
        plus = fn(*_to_tensors([a + eps * v for a, v in zip(arrays, directions)], False)).data
        minus = fn(*_to_tensors([a - eps * v for a, v in zip(arrays, directions)], False)).data
        forward = float((u * (plus - minus)).sum()) / (2.0 * eps)
        check = VJPCheck(forward, reverse, abs(forward - reverse),
                         rtol * max(abs(forward), abs(reverse)) + atol)
        if not check.passed:
            raise AssertionError(
                f"VJP check failed: finite differences give <u, J v> = {forward!r}, "
                f"the VJP gives <J^T u, v> = {reverse!r}; |difference| = {check.abs_error:.3e} "
                f"> allowed {check.allowed:.3e} (rtol={rtol}, atol={atol}, eps={eps}).")
        results.append(check)
    return results


# Grad-CAM goldens and peer libraries (refcam.compare; policy in docs/oracle.md). The check is
# max |candidate - golden| <= atol + rtol * max |golden|, stage by stage.
TOLERANCES.update({
    # a float64 implementation against a refcam golden: only summation order may differ
    "golden-float64": {"rtol": 1e-10, "atol": 0.0},
    # a float32 implementation against a float64 golden (error grows with the depth of the head)
    "golden-float32": {"rtol": 1e-4, "atol": 0.0},
    # refcam's compatibility modes against the real peer library, both computing in float64
    "peer-float64": {"rtol": 1e-12, "atol": 0.0},
    # ... against a peer that computes (or casts) in float32 (pytorch-grad-cam resizes in float32)
    "peer-float32": {"rtol": 1e-5, "atol": 0.0},
})


def assert_cam_close(candidate: Any, golden: Any, **options: Any) -> Any:
    """Assert that ``candidate`` matches ``golden`` (:func:`refcam.compare`); raise AssertionError with the report.

    ``options`` are :func:`refcam.compare`'s (``rtol``, ``atol``, ``preset``,
    ``top_k``, ``network_file``); another name is a :class:`~refcam.compare.ComparisonError`
    naming the valid ones. Returns the :class:`~refcam.compare.ComparisonReport`
    when it passes. The AssertionError's message is the report, whose first
    line (``refcam.compare: FAIL (...)``) is what pytest's summary shows.

    >>> assert_cam_close(my_map, "cat.golden.h5", preset="float32")   # doctest: +SKIP
    """
    from .compare import ComparisonError, compare
    from .preprocess import close_match_hint

    valid = [name for name, parameter in inspect.signature(compare).parameters.items()
             if parameter.kind is inspect.Parameter.KEYWORD_ONLY]
    for name in options:
        if name not in valid:
            raise ComparisonError(f"assert_cam_close: unknown option {name!r}; the options are "
                                  f"{', '.join(valid)} (refcam.compare's).{close_match_hint(name, valid)}")
    report = compare(candidate, golden, **options)
    if not report.passed:
        raise AssertionError(str(report))
    return report


def conformance_cases(folder: Any = None, pattern: str | None = None, dtype: str | None = None) -> list[Any]:
    """The conformance suite's cases, for ``pytest.mark.parametrize`` in a user's own test suite.

    ``folder``: a suite written by ``refcam conformance build``; default: the
    suite built afresh in a new temporary folder (left for the test run to
    read; the caller owns it). Pair it with :func:`assert_conforms`::

        @pytest.mark.parametrize("case", conformance_cases(), ids=lambda case: case.id)
        def test_my_gradcam(case):
            assert_conforms(my_gradcam(case), case)
    """
    import tempfile

    from .conformance import build, cases
    if folder is None:
        folder = tempfile.mkdtemp(prefix="refcam-conformance-")
        build(folder)
    return list(cases(folder, pattern, dtype))


def assert_conforms(result: Any, case: Any) -> None:
    """``AssertionError`` with the scorecard line and the first failing stage unless ``result`` passes ``case``.

    ``result``: what an adapter returns (the map, or a dict of stages;
    :mod:`refcam.conformance.runner`).
    """
    from .conformance.runner import score_case
    score = score_case(lambda _: result, case)
    if not score.passed:
        raise AssertionError(f"conformance case {case.id} fails at {score.first_divergence} (error "
                             f"{score.error:.3e} of the golden's max): {score.hint}")
