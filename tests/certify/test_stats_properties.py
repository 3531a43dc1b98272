"""Properties of the confidence bounds and Theorem 6's lower bound over random inputs
(hypothesis): what must hold for every count, not only for the tabulated cases."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from smoothcert.certify import stats

ALPHAS = st.sampled_from([1e-6, 1e-3, 0.01, 0.05, 0.2, 0.5])


@st.composite
def counts(draw: st.DrawFn) -> tuple[int, int]:
    n = draw(st.integers(min_value=1, max_value=10**6))
    return draw(st.integers(min_value=0, max_value=n)), n


@settings(max_examples=200, deadline=None)
@given(counts(), ALPHAS)
def test_the_bounds_bracket_the_proportion(kn: tuple[int, int], alpha: float) -> None:
    k, n = kn
    lower = stats.lower_confidence_bound(k, n, alpha)
    upper = stats.upper_confidence_bound(k, n, alpha)
    assert 0.0 <= lower <= k / n <= upper <= 1.0
    assert (lower == 0.0) == (k == 0)
    assert (upper == 1.0) == (k == n)


@settings(max_examples=200, deadline=None)
@given(counts(), ALPHAS, ALPHAS)
def test_a_smaller_alpha_gives_a_wider_interval(kn: tuple[int, int], a: float, b: float) -> None:
    k, n = kn
    small, large = min(a, b), max(a, b)
    assert stats.lower_confidence_bound(k, n, small) <= stats.lower_confidence_bound(k, n, large)
    assert stats.upper_confidence_bound(k, n, small) >= stats.upper_confidence_bound(k, n, large)


@settings(max_examples=200, deadline=None)
@given(counts(), ALPHAS, st.sampled_from([1e-3, 0.01, 0.1]))
def test_theorem6_bound_is_below_the_observed_accuracy(
    kn: tuple[int, int], alpha: float, rho: float
) -> None:
    y, m = kn
    bound = stats.certified_accuracy_lower_bound(y, m, alpha, rho)
    assert 0.0 <= bound <= y / m
