"""Statistics of randomized smoothing against exact oracles and independent implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_confint

from smoothcert.certify import stats

ALPHA = 0.001


@pytest.mark.parametrize(
    ("n", "radius_over_sigma"),
    [(100, 1.5005), (1_000, 2.4633), (10_000, 3.1986), (100_000, 3.8115)],
)
def test_all_agree_radius_oracle(n: int, radius_over_sigma: float) -> None:
    # When every sample agrees, pA_lower = α^(1/n): the α quantile of Beta(n, 1).
    p = stats.lower_confidence_bound(n, n, ALPHA)
    assert p == pytest.approx(ALPHA ** (1 / n), rel=1e-10)
    assert stats.radius_cohen(p, 1 - p, 0.5) == pytest.approx(0.5 * radius_over_sigma, abs=1e-4)


def test_lower_bound_matches_statsmodels_clopper_pearson() -> None:
    # statsmodels at the level the bounds are computed at: α less the safety margin
    for n in (1, 7, 100, 1000, 100_000):
        for k in sorted({0, 1, n // 3, n // 2, n - 1, n}):
            for alpha in (0.001, 0.01, 0.05, 0.25):
                level = 2 * alpha * (1 - stats.LEVEL_MARGIN)
                lo, hi = proportion_confint(k, n, alpha=level, method="beta")
                got = stats.lower_confidence_bound(k, n, alpha)
                assert got == pytest.approx(lo, abs=1e-12), (k, n, alpha)
                assert stats.upper_confidence_bound(k, n, alpha) == pytest.approx(hi, abs=1e-12)


def _binomial_tail(n: int, p: float, ks: range) -> float:
    """Σ_{j in ks} C(n, j) p^j (1 − p)^(n − j) in 60-digit arithmetic (mpmath comes with torch's
    sympy): an exact oracle for the level of a bound."""
    mpmath = pytest.importorskip("mpmath")
    with mpmath.workdps(60):
        q = mpmath.mpf(p)
        return float(sum(mpmath.binomial(n, j) * q**j * (1 - q) ** (n - j) for j in ks))


@pytest.mark.parametrize(
    ("k", "n", "alpha"),
    [
        (99_999, 100_000, 1e-5),  # scipy's plain quantile overshot α here (rel. 2e-12)
        (100_000, 100_000, 0.05),
        (99_000, 100_000, 0.001),
        (9_999_900, 10_000_000, 0.001),  # ... and here (rel. 1e-10)
        (99_990, 100_000, 0.001),
        (50, 100, 0.001),
        (3, 10, 0.2),
    ],
)
def test_bounds_keep_their_level_in_exact_arithmetic(k: int, n: int, alpha: float) -> None:
    # Soundness: P(Bin(n, L) ≥ k) ≤ α for the lower bound L, P(Bin(n, U) ≤ k) ≤ α for the upper
    # bound U, each within 1e-6 of α (not needlessly conservative).
    lo = stats.lower_confidence_bound(k, n, alpha)
    level = _binomial_tail(n, lo, range(k, n + 1))
    assert alpha * (1 - 1e-6) < level <= alpha, level / alpha - 1
    if k < n and n - k <= 2000:
        hi = stats.upper_confidence_bound(k, n, alpha)
        upper_level = 1 - _binomial_tail(n, hi, range(k + 1, n + 1))
        assert alpha * (1 - 1e-6) < upper_level <= alpha, upper_level / alpha - 1


def test_all_agree_radius_never_exceeds_the_exact_one() -> None:
    mpmath = pytest.importorskip("mpmath")
    for n in (100, 100_000, 10_000_000):
        for alpha in (0.001, 0.05):
            with mpmath.workdps(50):
                p_exact = mpmath.mpf(alpha) ** (1 / mpmath.mpf(n))
                exact = mpmath.sqrt(2) * mpmath.erfinv(2 * p_exact - 1)  # σ·Φ⁻¹(α^(1/n)), σ = 1
            p = stats.lower_confidence_bound(n, n, alpha)
            radius = stats.certify_decision(0, p, 1.0)[1]
            assert radius <= float(exact) and radius == pytest.approx(float(exact), rel=1e-9)


def test_bounds_edge_values_and_vectorization() -> None:
    assert stats.lower_confidence_bound(0, 50, 0.01) == 0.0
    assert stats.upper_confidence_bound(50, 50, 0.01) == 1.0
    k = np.array([0, 10, 50])
    lo = stats.lower_confidence_bound(k, 50, 0.01)
    hi = stats.upper_confidence_bound(k, 50, 0.01)
    assert isinstance(lo, np.ndarray) and lo.shape == (3,)
    assert np.all(lo <= k / 50) and np.all(hi >= k / 50)
    assert isinstance(stats.lower_confidence_bound(10, 50, 0.01), float)


def test_binom_pvalue_exact() -> None:
    # Two-sided exact test, Binomial(10, 1/2): P(X <= 1) + P(X >= 9) = 22/1024.
    assert stats.binom_pvalue(9, 10) == pytest.approx(22 / 1024, rel=1e-12)
    assert stats.binom_pvalue(5, 10) == pytest.approx(1.0)
    np.testing.assert_allclose(stats.binom_pvalue(np.array([5, 9]), 10), [1.0, 22 / 1024])


def test_radius_cohen_general_form() -> None:
    pa, pb, s = 0.9, 0.05, 0.5
    expected = s / 2 * (norm.ppf(pa) - norm.ppf(pb))
    assert stats.radius_cohen(pa, pb, s) == pytest.approx(expected, rel=1e-12)
    assert stats.radius_cohen(0.4, 0.6, s) == 0.0


def test_prior_bounds_ordering_figure5() -> None:
    # Cohen >= Li >= Lecuyer for pB = 1 − pA (Figure 5, left), all positive for pA > 1/2.
    for pa in np.linspace(0.51, 0.9999, 40):
        cohen = stats.radius_cohen(pa, 1 - pa, 1.0)
        li = stats.radius_li(pa, 1 - pa, 1.0)
        lec = stats.radius_lecuyer(pa, 1 - pa, 1.0)
        assert cohen >= li - 1e-9 >= lec - 2e-9, pa
        assert lec > 0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the brute-force grids hit inf/nan at ends
def test_prior_bounds_are_attained_suprema() -> None:
    # The numeric supremum is at least every value on a fine parameter grid, and attained.
    pa, pb = 0.8, 0.2
    betas = np.linspace(1e-4, min(1.0, 0.5 * math.log(pa / pb)), 20001)
    lec_values = betas / np.sqrt(
        2 * np.log(1.25 * (1 + np.exp(betas)) / (pa - np.exp(2 * betas) * pb))
    )
    lec = stats.radius_lecuyer(pa, pb, 1.0)
    assert lec >= lec_values.max() * (1 - 1e-9)
    assert lec <= lec_values.max() * (1 + 1e-5)
    pa, pb = 0.999, 0.0001
    gammas = np.exp(np.linspace(math.log(1e-3), math.log(1e3), 20001))
    gammas = gammas[np.abs(gammas - 1) > 1e-6]
    mean = (0.5 * (pa ** (1 - gammas) + pb ** (1 - gammas))) ** (1 / (1 - gammas))
    li_values = np.sqrt(-2 / gammas * np.log(1 - pa - pb + 2 * mean))
    li = stats.radius_li(pa, pb, 1.0)
    assert li >= np.nanmax(li_values) * (1 - 1e-9)
    assert li <= np.nanmax(li_values) * (1 + 1e-5)
    assert stats.radius_li(pa, pb, 0.25) == pytest.approx(0.25 * li, rel=1e-9)


def test_certified_accuracy_lower_bound_theorem6() -> None:
    y, m, a, rho = 450, 500, 0.001, 0.001
    log_term = math.log(1 / rho)
    expected = (y / m - a - math.sqrt(2 * a * (1 - a) * log_term / m) - log_term / (3 * m)) / (
        1 - a
    )
    assert stats.certified_accuracy_lower_bound(y, m, a, rho) == pytest.approx(expected, rel=1e-12)
    assert expected < y / m
    assert stats.certified_accuracy_lower_bound(0, 500, a, rho) == 0.0


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: stats.lower_confidence_bound(11, 10, 0.01), "k must be <= n"),
        (lambda: stats.lower_confidence_bound(1, 0, 0.01), "n must be a positive"),
        (lambda: stats.lower_confidence_bound(-1, 10, 0.01), "k must be >= 0"),
        (lambda: stats.lower_confidence_bound(1, 10, 0.0), "alpha must be in"),
        (lambda: stats.upper_confidence_bound(1, 10, 1.0), "alpha must be in"),
        (lambda: stats.lower_confidence_bound(float("nan"), 10, 0.01), "k must not be NaN"),
        (lambda: stats.binom_pvalue(3, 10, 1.5), "p must be in"),
        (lambda: stats.radius_cohen(0.9, 0.1, 0.0), "sigma must be"),
        (lambda: stats.radius_cohen(0.9, 0.1, -1.0), "sigma must be"),
        (lambda: stats.radius_cohen(1.2, 0.1, 1.0), "p_a_lower must be in"),
        (lambda: stats.radius_cohen(float("nan"), 0.1, 1.0), "p_a_lower must not be NaN"),
        (lambda: stats.radius_li(0.9, -0.1, 1.0), "p_b must be in"),
        (lambda: stats.radius_lecuyer(0.9, 0.1, float("nan")), "sigma must not be NaN"),
        (lambda: stats.certified_accuracy_lower_bound(5, 10, 0.01, 0.0), "rho must be in"),
        (lambda: stats.lower_confidence_bound(5, float("inf"), 0.01), "must be finite"),
        (lambda: stats.upper_confidence_bound(float("inf"), 10, 0.01), "must be finite"),
        (lambda: stats.certify_decision(3, float("nan"), 0.25), "p_a_lower must not be NaN"),
        (lambda: stats.certify_decision(3, 1.7, 0.25), "p_a_lower must be in"),
        (lambda: stats.certify_decision(3, 0.9, -0.25), "sigma must be"),
    ],
)
def test_invalid_input_raises_value_error(call, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        call()
