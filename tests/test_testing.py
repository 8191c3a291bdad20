"""refcam.testing.check_vjp: passes correct VJPs, fails slightly wrong ones, reports both sides.

Resolving power measured at the default tolerances (rtol 1e-7, eps 1e-6), with
a VJP scaled by ``1 + r``: r = 1e-6 fails on every seed tried, r = 1e-7 on
about half, r = 3e-8 on none; a correct VJP's relative disagreement stayed
below 3e-8. The tests below assert 1e-3 and 1e-4 (and a single element wrong
by 0.1%).
"""
from __future__ import annotations

import re

import numpy as np
import pytest

from refcam.autodiff import Tensor, record
from refcam.testing import TOLERANCES, VJPCheck, check_vjp


def exp_with_scaled_vjp(x: Tensor, factor: float = 1.0) -> Tensor:
    """``y = exp(x)`` whose VJP is multiplied by ``factor`` (1.0 is correct)."""
    y = np.exp(x.data)
    return record("exp_with_scaled_vjp", y, (x,), lambda g, needs: (factor * g * y,))


def product_with_wrong_b_vjp(a: Tensor, b: Tensor, factor: float) -> Tensor:
    """``y = a * b``: the VJP for ``a`` is right, the one for ``b`` is scaled by ``factor``."""
    def vjp(g, needs):
        return g * b.data, factor * g * a.data
    return record("product_with_wrong_b_vjp", a.data * b.data, (a, b), vjp)


def square_wrong_at_one_element(x: Tensor, factor: float) -> Tensor:
    """``y = x**2`` whose VJP is scaled by ``factor`` at the first element only."""
    def vjp(g, needs):
        grad_x = 2.0 * g * x.data
        grad_x.flat[0] *= factor
        return (grad_x,)
    return record("square_wrong_at_one_element", x.data ** 2, (x,), vjp)


SHAPES = [(3,), (4, 5), (2, 3, 4)]


# -- correct VJPs pass -------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correct_custom_op_passes(rng, shape, seed):
    x = rng.standard_normal(shape)
    checks = check_vjp(exp_with_scaled_vjp, [x], seed=seed, repeats=4)
    assert len(checks) == 4
    for check in checks:
        assert isinstance(check, VJPCheck) and check.passed
        assert check.abs_error == abs(check.finite_difference - check.reverse_mode)
        tol = TOLERANCES["vjp"]
        assert check.allowed == pytest.approx(
            tol["rtol"] * max(abs(check.finite_difference), abs(check.reverse_mode)) + tol["atol"])


def test_correct_builtin_ops_pass(rng):
    a = rng.standard_normal((3, 4))
    b = rng.uniform(0.5, 2.0, (4,))
    check_vjp(lambda s, t: ((s * t) @ (s / t).T).exp().sum(axis=0), [a, b])
    check_vjp(lambda s: s, [a])


def test_scalar_output_and_scalar_input():
    check_vjp(lambda t: (t * t).sum(), [np.array(1.5)])
    check_vjp(lambda t: t.log(), [np.array(2.0)])


# -- wrong VJPs fail -----------------------------------------------------------------
@pytest.mark.parametrize("relative_error", [1e-3, 1e-4, -1e-4])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vjp_scaled_by_a_small_factor_fails(rng, relative_error, shape, seed):
    x = rng.standard_normal(shape)
    with pytest.raises(AssertionError, match="VJP check failed"):
        check_vjp(lambda t: exp_with_scaled_vjp(t, 1.0 + relative_error), [x], seed=seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vjp_wrong_for_one_of_two_inputs_fails(rng, seed):
    a = rng.standard_normal((3, 4))
    b = rng.standard_normal((3, 4))
    check_vjp(lambda s, t: product_with_wrong_b_vjp(s, t, 1.0), [a, b], seed=seed)
    with pytest.raises(AssertionError):
        check_vjp(lambda s, t: product_with_wrong_b_vjp(s, t, 1.001), [a, b], seed=seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vjp_wrong_by_a_tenth_of_a_percent_at_one_element_fails(rng, seed):
    x = rng.uniform(0.5, 2.0, (4, 5))
    check_vjp(lambda t: square_wrong_at_one_element(t, 1.0), [x], seed=seed)
    with pytest.raises(AssertionError):
        check_vjp(lambda t: square_wrong_at_one_element(t, 1.001), [x], seed=seed)


def test_tolerance_arguments_are_used(rng):
    x = rng.standard_normal((4, 5))

    def wrong(t: Tensor) -> Tensor:
        return exp_with_scaled_vjp(t, 1.001)
    assert all(c.passed for c in check_vjp(wrong, [x], rtol=1e-2))
    with pytest.raises(AssertionError, match=r"rtol=1e-07"):
        check_vjp(wrong, [x], rtol=1e-7)


# -- the report ------------------------------------------------------------------------
def test_failure_message_contains_both_sides(rng):
    x = rng.standard_normal((2, 3))
    with pytest.raises(AssertionError) as failure:
        check_vjp(lambda t: exp_with_scaled_vjp(t, 1.001), [x])
    message = str(failure.value)
    number = r"(-?[0-9.]+(?:e[-+]?[0-9]+)?)"
    finite_difference = float(re.search(r"<u, J v> = " + number, message).group(1))
    reverse_mode = float(re.search(r"<J\^T u, v> = " + number, message).group(1))
    assert reverse_mode == pytest.approx(1.001 * finite_difference, rel=1e-6)
    assert "|difference|" in message and "allowed" in message


# -- determinism -------------------------------------------------------------------------
def test_results_are_deterministic_for_a_seed(rng):
    a = rng.standard_normal((3, 4))
    b = rng.standard_normal((4, 2))

    def fn(s: Tensor, t: Tensor) -> Tensor:
        return (s @ t).exp()
    first = check_vjp(fn, [a, b], seed=7)
    again = check_vjp(fn, [a, b], seed=7)
    other = check_vjp(fn, [a, b], seed=8)
    assert first == again
    assert [c.reverse_mode for c in first] != [c.reverse_mode for c in other]
    assert len({c.reverse_mode for c in first}) == len(first)


def test_failure_is_deterministic_for_a_seed(rng):
    x = rng.standard_normal(5)
    messages = []
    for _ in range(2):
        with pytest.raises(AssertionError) as failure:
            check_vjp(lambda t: exp_with_scaled_vjp(t, 1.0001), [x], seed=3)
        messages.append(str(failure.value))
    assert messages[0] == messages[1]


def test_check_vjp_does_not_mutate_its_inputs(rng):
    x = rng.standard_normal((2, 3))
    before = x.copy()
    check_vjp(lambda t: t * t, [x])
    np.testing.assert_array_equal(x, before)
