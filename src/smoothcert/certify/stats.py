"""The statistics of randomized smoothing (Cohen, Rosenfeld, Kolter 2019).

Pure, vectorized functions: confidence bounds on a binomial proportion, the binomial test of
PREDICT, the certified radii of Cohen et al. (Theorem 1) and of the earlier bounds of Lecuyer
et al. and Li et al. (Appendix I), and the high-probability lower bound on certified test
accuracy (Appendix D, Theorem 6). Arguments broadcast like numpy ufuncs; a scalar in gives a
Python float (or int-valued float) out, an array in gives an array out.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize
from scipy import stats as sps

ArrayLike = float | int | np.ndarray

# Supremum search in radius_lecuyer / radius_li: a grid followed by bounded refinement. The
# returned radius is within RADIUS_RTOL (relative) of the true supremum of a smooth unimodal
# objective, and never above it (every returned value is attained by a feasible parameter).
RADIUS_RTOL = 1e-6

# Clopper–Pearson bounds are computed at level α(1 − LEVEL_MARGIN). SciPy's Beta quantile is
# accurate only to a relative ~1e-10 in the tail probability it inverts (measured against
# 50-digit arithmetic up to n = 10⁷), so at exactly α the bound's true level could exceed α by
# that much; the margin keeps it at most α, at a cost far below any printed digit.
LEVEL_MARGIN = 1e-8

ABSTAIN = -1
"""The label PREDICT and CERTIFY return when they abstain (:func:`predict_from_counts`,
:func:`certify_decision`)."""


# --------------------------------------------------------------------------- validation


def _as_array(name: str, value: ArrayLike) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if np.isnan(arr).any():
        raise ValueError(f"{name} must not be NaN")
    return arr


def _check_counts(k: ArrayLike, n: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    k_arr, n_arr = _as_array("k", k), _as_array("n", n)
    if (n_arr <= 0).any():
        raise ValueError(f"n must be a positive count, got {_first(n_arr, n_arr <= 0)}")
    if (k_arr < 0).any():
        raise ValueError(f"k must be >= 0, got {_first(k_arr, k_arr < 0)}")
    if not (np.isfinite(k_arr).all() and np.isfinite(n_arr).all()):
        raise ValueError("k and n must be finite counts")
    if (np.floor(k_arr) != k_arr).any() or (np.floor(n_arr) != n_arr).any():
        raise ValueError("k and n must be whole numbers (counts)")
    bad = np.broadcast_to(k_arr > n_arr, np.broadcast_shapes(k_arr.shape, n_arr.shape))
    if bad.any():
        raise ValueError("k must be <= n (a count of successes among n trials)")
    return k_arr, n_arr


def _check_alpha(alpha: ArrayLike, name: str = "alpha") -> np.ndarray:
    arr = _as_array(name, alpha)
    if ((arr <= 0) | (arr >= 1)).any():
        raise ValueError(f"{name} must be in (0, 1), got {_first(arr, (arr <= 0) | (arr >= 1))}")
    return arr


def _check_probability(name: str, p: ArrayLike) -> np.ndarray:
    arr = _as_array(name, p)
    if ((arr < 0) | (arr > 1)).any():
        raise ValueError(f"{name} must be in [0, 1], got {_first(arr, (arr < 0) | (arr > 1))}")
    return arr


def _check_sigma(sigma: ArrayLike) -> np.ndarray:
    arr = _as_array("sigma", sigma)
    bad = (arr <= 0) | np.isinf(arr)
    if bad.any():
        raise ValueError(f"sigma must be a positive finite noise level, got {_first(arr, bad)}")
    return arr


def _first(arr: np.ndarray, mask: np.ndarray) -> float:
    """The first offending value, for the error message."""
    return float(arr[mask].flat[0])


def _out(result: np.ndarray, *inputs: ArrayLike) -> float | np.ndarray:
    """Scalars in, Python float out; otherwise the array."""
    if all(np.ndim(x) == 0 for x in inputs):
        return float(result)
    return result


# --------------------------------------------------------------------------- bounds and tests


def lower_confidence_bound(k: ArrayLike, n: ArrayLike, alpha: ArrayLike) -> float | np.ndarray:
    """One-sided (1 − α) Clopper–Pearson lower bound on p from k ~ Binomial(n, p).

    LOWER CONF BOUND of CERTIFY (Cohen et al., §3.2 and Appendix C): the α quantile of
    Beta(k, n − k + 1); 0 when k = 0. Equals statsmodels'
    ``proportion_confint(k, n, alpha=2α, method="beta")[0]`` up to the level margin
    (``LEVEL_MARGIN``) that keeps P(Binomial(n, bound) ≥ k) ≤ α despite floating point.

    Parameters
    ----------
    k : int or array_like
        Successes, 0 ≤ k ≤ n.
    n : int or array_like
        Trials, n ≥ 1.
    alpha : float or array_like
        Failure probability of the bound, in (0, 1).

    Returns
    -------
    float or numpy.ndarray
        The bound, broadcast over the arguments (a float when all are scalars).

    Raises
    ------
    ValueError
        If k, n or alpha is out of range; the message names it.

    Examples
    --------
    When every draw succeeds the bound is α^(1/n):

    >>> round(float(lower_confidence_bound(100, 100, 0.001)), 6)
    0.933254
    >>> lower_confidence_bound([0, 50, 100], 100, 0.001).round(4)
    array([0.    , 0.3448, 0.9333])
    """
    k_arr, n_arr = _check_counts(k, n)
    a = _check_alpha(alpha) * (1 - LEVEL_MARGIN)
    with np.errstate(invalid="ignore"):
        bound = sps.beta.ppf(a, k_arr, n_arr - k_arr + 1)
    bound = np.where(k_arr == 0, 0.0, bound)
    return _out(bound, k, n, alpha)


def upper_confidence_bound(k: ArrayLike, n: ArrayLike, alpha: ArrayLike) -> float | np.ndarray:
    """One-sided (1 − α) Clopper–Pearson upper bound on p from k ~ Binomial(n, p).

    The 1 − α quantile of Beta(k + 1, n − k) (taken as the upper-α quantile, so no precision is
    lost forming 1 − α); 1 when k = n.

    Parameters
    ----------
    k : int or array_like
        Successes, 0 ≤ k ≤ n.
    n : int or array_like
        Trials, n ≥ 1.
    alpha : float or array_like
        Failure probability of the bound, in (0, 1).

    Returns
    -------
    float or numpy.ndarray
        The bound, broadcast over the arguments.

    Examples
    --------
    >>> round(float(upper_confidence_bound(0, 100, 0.001)), 6)
    0.066746
    """
    k_arr, n_arr = _check_counts(k, n)
    a = _check_alpha(alpha) * (1 - LEVEL_MARGIN)
    with np.errstate(invalid="ignore"):
        bound = sps.beta.isf(a, k_arr + 1, n_arr - k_arr)
    bound = np.where(k_arr == n_arr, 1.0, bound)
    return _out(bound, k, n, alpha)


def binom_pvalue(k: ArrayLike, n: ArrayLike, p: ArrayLike = 0.5) -> float | np.ndarray:
    """Two-sided exact binomial test of k ~ Binomial(n, p): BINOM PVALUE of PREDICT.

    Cohen et al., Appendix C; computed by ``scipy.stats.binomtest``.

    Parameters
    ----------
    k : int or array_like
        Successes, 0 ≤ k ≤ n.
    n : int or array_like
        Trials, n ≥ 1.
    p : float or array_like, default 0.5
        Success probability under the null hypothesis, in [0, 1].

    Returns
    -------
    float or numpy.ndarray
        The p-value, broadcast over the arguments.

    Examples
    --------
    >>> round(float(binom_pvalue(60, 100)), 6)
    0.056888
    """
    k_arr, n_arr = _check_counts(k, n)
    p_arr = _check_probability("p", p)
    k_b, n_b, p_b = np.broadcast_arrays(k_arr, n_arr, p_arr)
    flat = [
        sps.binomtest(int(ki), int(ni), float(pi)).pvalue
        for ki, ni, pi in zip(k_b.ravel(), n_b.ravel(), p_b.ravel(), strict=True)
    ]
    return _out(np.asarray(flat, dtype=np.float64).reshape(k_b.shape), k, n, p)


# --------------------------------------------------------------------------- radii


def radius_cohen(
    p_a_lower: ArrayLike, p_b_upper: ArrayLike, sigma: ArrayLike
) -> float | np.ndarray:
    """Certified L2 radius of Theorem 1 (Cohen et al.): R = σ/2 · (Φ⁻¹(p_A) − Φ⁻¹(p_B)).

    With p_B = 1 − p_A this is σ·Φ⁻¹(p_A), the radius CERTIFY reports. Where p_A ≤ p_B the
    theorem certifies nothing and the result is 0.

    Parameters
    ----------
    p_a_lower : float or array_like
        Lower bound on the top class's probability under noise, in [0, 1].
    p_b_upper : float or array_like
        Upper bound on the runner-up's probability, in [0, 1].
    sigma : float or array_like
        Noise level σ > 0, in input units.

    Returns
    -------
    float or numpy.ndarray
        The L2 radius in input units.

    Examples
    --------
    >>> round(float(radius_cohen(0.99, 0.01, 0.25)), 6)  # σ·Φ⁻¹(0.99)
    0.581587
    """
    pa = _check_probability("p_a_lower", p_a_lower)
    pb = _check_probability("p_b_upper", p_b_upper)
    s = _check_sigma(sigma)
    with np.errstate(invalid="ignore"):
        r = s / 2 * (sps.norm.ppf(pa) - sps.norm.ppf(pb))
    r = np.where(pa > pb, r, 0.0)
    return _out(r, p_a_lower, p_b_upper, sigma)


def _refined_sup(fn, lo: float, hi: float, grid: np.ndarray) -> float:
    """max of fn over [lo, hi]: best grid point, then bounded Brent refinement around it."""
    values = np.array([fn(t) for t in grid])
    finite = np.isfinite(values)
    if not finite.any():
        return 0.0
    values = np.where(finite, values, -np.inf)
    i = int(np.argmax(values))
    best = float(values[i])
    a = grid[max(i - 1, 0)] if i > 0 else lo
    b = grid[min(i + 1, len(grid) - 1)] if i < len(grid) - 1 else hi
    if b > a:
        res = optimize.minimize_scalar(
            lambda t: -fn(t), bounds=(a, b), method="bounded", options={"xatol": 1e-12}
        )
        if res.success and np.isfinite(res.fun) and -res.fun > best:
            best = float(-res.fun)
    return max(best, 0.0)


def _lecuyer_one(pa: float, pb: float, sigma: float) -> float:
    # Appendix I.1, Eq. (31): R = sup_{0 < β ≤ min(1, ½ log(pA/pB))}
    #   σβ / sqrt(2 log(1.25 (1 + e^β) / (pA − e^{2β} pB))).
    if pa <= pb:
        return 0.0
    beta_max = 1.0 if pb == 0 else min(1.0, 0.5 * math.log(pa / pb))

    def bound(beta: float) -> float:
        if not 0 < beta <= beta_max:
            return -math.inf
        margin = pa - math.exp(2 * beta) * pb
        if margin <= 0:
            return -math.inf
        log_term = math.log(1.25 * (1 + math.exp(beta)) / margin)
        if log_term <= 0:
            return -math.inf
        return sigma * beta / math.sqrt(2 * log_term)

    grid = np.linspace(beta_max / 512, beta_max, 512)
    return _refined_sup(bound, 0.0, beta_max, grid)


def _li_one(pa: float, pb: float, sigma: float) -> float:
    # Appendix I.2, Eq. (38): R = sup_{γ > 0, γ ≠ 1}
    #   σ sqrt(−(2/γ) log(1 − pA − pB + 2 (½ (pA^{1−γ} + pB^{1−γ}))^{1/(1−γ)})).
    if pa <= pb:
        return 0.0
    log_pa = math.log(pa)
    log_pb = math.log(pb) if pb > 0 else -math.inf

    def bound(log_g: float) -> float:
        g = math.exp(log_g)
        one_minus = 1.0 - g
        if abs(one_minus) < 1e-9:
            return -math.inf
        # power mean in log space: log((pA^{1−γ} + pB^{1−γ})/2) / (1 − γ)
        lse = np.logaddexp(one_minus * log_pa, one_minus * log_pb if pb > 0 else -math.inf)
        if pb == 0 and one_minus < 0:
            mean = 0.0  # pB^{1−γ} = ∞, so the power mean with exponent 1/(1−γ) < 0 vanishes
        else:
            mean = math.exp((float(lse) - math.log(2)) / one_minus)
        inner = 1 - pa - pb + 2 * mean
        if not 0 < inner < 1:
            return -math.inf
        return sigma * math.sqrt(-2.0 / g * math.log(inner))

    lo, hi = math.log(1e-6), math.log(1e6)
    grid = np.linspace(lo, hi, 1201)
    return _refined_sup(bound, lo, hi, grid)


def _radius_numeric(one, p_a, p_b, sigma) -> float | np.ndarray:
    pa = _check_probability("p_a", p_a)
    pb = _check_probability("p_b", p_b)
    s = _check_sigma(sigma)
    pa_b, pb_b, s_b = np.broadcast_arrays(pa, pb, s)
    flat = [
        one(float(a), float(b), float(c))
        for a, b, c in zip(pa_b.ravel(), pb_b.ravel(), s_b.ravel(), strict=True)
    ]
    return _out(np.asarray(flat).reshape(pa_b.shape), p_a, p_b, sigma)


def radius_lecuyer(p_a: ArrayLike, p_b: ArrayLike, sigma: ArrayLike) -> float | np.ndarray:
    """Certified L2 radius of Lecuyer et al. (2019), for comparison with Theorem 1.

    In Cohen et al.'s notation (Appendix I.1, Eq. 31): the supremum over the
    differential-privacy parameter β ∈ (0, min(1, ½ log(pA/pB))], computed by a 512-point grid
    and bounded refinement (relative tolerance ``RADIUS_RTOL``, never above the supremum).
    Where p_A ≤ p_B the bound certifies nothing and the result is 0.

    Parameters
    ----------
    p_a : float or array_like
        (Lower bound on) the top class's probability under noise, in [0, 1].
    p_b : float or array_like
        (Upper bound on) the runner-up's probability, in [0, 1].
    sigma : float or array_like
        Noise level σ > 0, in input units.

    Returns
    -------
    float or numpy.ndarray
        The L2 radius in input units, broadcast over the arguments (a float when all are
        scalars).

    Raises
    ------
    ValueError
        If a probability is outside [0, 1] or NaN, or σ is not a positive finite number.

    See Also
    --------
    radius_cohen : the tighter radius of Theorem 1.

    Examples
    --------
    Far below Cohen et al.'s radius for the same probabilities (0.5816):

    >>> round(float(radius_lecuyer(0.99, 0.01, 0.25)), 4)
    0.1387
    >>> radius_lecuyer(0.4, 0.6, 0.25)
    0.0
    """
    return _radius_numeric(_lecuyer_one, p_a, p_b, sigma)


def radius_li(p_a: ArrayLike, p_b: ArrayLike, sigma: ArrayLike) -> float | np.ndarray:
    """Certified L2 radius of Li et al. (2018) via Rényi divergence, for comparison.

    Cohen et al.'s Appendix I.2, Eq. 38: the supremum over the Rényi order γ ∈ [1e-6, 1e6]
    (γ ≠ 1), computed by a log-spaced grid and bounded refinement (relative tolerance
    ``RADIUS_RTOL``, never above the supremum). Where p_A ≤ p_B the result is 0.

    Parameters
    ----------
    p_a : float or array_like
        (Lower bound on) the top class's probability under noise, in [0, 1].
    p_b : float or array_like
        (Upper bound on) the runner-up's probability, in [0, 1].
    sigma : float or array_like
        Noise level σ > 0, in input units.

    Returns
    -------
    float or numpy.ndarray
        The L2 radius in input units, broadcast over the arguments (a float when all are
        scalars).

    Raises
    ------
    ValueError
        If a probability is outside [0, 1] or NaN, or σ is not a positive finite number.

    See Also
    --------
    radius_cohen : the tighter radius of Theorem 1.

    Examples
    --------
    >>> round(float(radius_li(0.99, 0.01, 0.25)), 4)
    0.477
    >>> radius_li(0.5, 0.5, 1.0)
    0.0
    """
    return _radius_numeric(_li_one, p_a, p_b, sigma)


# --------------------------------------------------------------------------- Appendix D


def certified_accuracy_lower_bound(
    num_certified_correct: ArrayLike, m: ArrayLike, alpha: ArrayLike, rho: ArrayLike
) -> float | np.ndarray:
    """A high-probability lower bound on the true certified accuracy (Theorem 6).

    Cohen et al., Appendix D, Eq. 16: with probability ≥ 1 − ρ over CERTIFY's randomness, the
    true certified accuracy at radius r is at least

        1/(1 − α) · ( Y/m − α − sqrt(2α(1 − α) log(1/ρ) / m) − log(1/ρ) / (3m) ),

    where Y = ``num_certified_correct`` examples were certified correct at radius ≥ r out of m,
    each with CERTIFY's failure rate α. Clipped below at 0.

    The proof bounds the variance p(1 − p) of a wrong certificate's indicator, p ≤ α, by
    α(1 − α), which holds only for α ≤ ½ (p(1 − p) increases up to ½): a larger α is refused.
    The bound holds at one radius with probability ≥ 1 − ρ; at K radii together, with
    probability ≥ 1 − Kρ (union bound).

    Parameters
    ----------
    num_certified_correct : int or array_like
        Y, examples certified correct at radius ≥ r.
    m : int or array_like
        Examples certified in all.
    alpha : float or array_like
        CERTIFY's failure probability per example, in (0, 0.5].
    rho : float or array_like
        Failure probability of this bound, in (0, 1).

    Returns
    -------
    float or numpy.ndarray
        The lower bound on the certified accuracy, in [0, 1].

    Examples
    --------
    >>> round(float(certified_accuracy_lower_bound(450, 500, 0.001, 0.001)), 6)
    0.890031
    """
    y, m_arr = _check_counts(num_certified_correct, m)
    a = _check_alpha(alpha)
    if (a > 0.5).any():
        raise ValueError(
            f"alpha must be in (0, 0.5] for Theorem 6's lower bound, got {_first(a, a > 0.5)}"
        )
    r = _check_alpha(rho, "rho")
    log_term = np.log(1 / r)
    bound = (
        y / m_arr - a - np.sqrt(2 * a * (1 - a) * log_term / m_arr) - log_term / (3 * m_arr)
    ) / (1 - a)
    return _out(np.maximum(bound, 0.0), num_certified_correct, m, alpha, rho)


def certify_decision(c_hat: int, p_a_lower: float, sigma: float) -> tuple[int, float]:
    """CERTIFY's last line (§3.2): the class and its radius, or abstain.

    Abstains (``ABSTAIN``, radius 0) when pA_lower < ½; else returns ĉA with radius
    σ·Φ⁻¹(pA_lower) (Theorem 1 with pB = 1 − pA_lower).

    Parameters
    ----------
    c_hat : int
        ĉA, the top class of the selection draws.
    p_a_lower : float
        Lower confidence bound on ĉA's probability under noise, in [0, 1].
    sigma : float
        Noise level σ > 0, in input units.

    Returns
    -------
    label : int
        ``c_hat``, or ``ABSTAIN`` (-1).
    radius : float
        The certified L2 radius in input units (0.0 when abstaining).

    Raises
    ------
    ValueError
        If ``p_a_lower`` is outside [0, 1] or σ is not a positive finite number.

    Examples
    --------
    >>> label, radius = certify_decision(3, 0.99, 0.25)
    >>> label, round(radius, 4)
    (3, 0.5816)
    >>> certify_decision(3, 0.4, 0.25)
    (-1, 0.0)
    """
    _check_probability("p_a_lower", p_a_lower)
    _check_sigma(sigma)
    if p_a_lower < 0.5:
        return ABSTAIN, 0.0
    return int(c_hat), float(sigma * sps.norm.ppf(p_a_lower))


def predict_from_counts(counts: np.ndarray, alpha: float) -> int:
    """PREDICT's decision from its class counts (§3.2, Appendix C.1).

    The top class when the two-sided binomial test of nA ~ Binomial(nA + nB, ½) has
    p-value ≤ α, else ``ABSTAIN``. nA, nB are the largest and second-largest counts; ties go
    to the lower class index.

    Parameters
    ----------
    counts : numpy.ndarray
        1-D counts of the noisy predictions per class (at least 2 classes).
    alpha : float
        Level of the test, in (0, 1): PREDICT's probability of returning a wrong class.

    Returns
    -------
    int
        The predicted class, or ``ABSTAIN`` (-1).

    Raises
    ------
    ValueError
        If ``counts`` is not 1-D over ≥ 2 classes, or ``alpha`` is outside (0, 1).

    Examples
    --------
    >>> import numpy as np
    >>> predict_from_counts(np.array([10, 80, 10]), 0.001)
    1
    >>> predict_from_counts(np.array([50, 45, 5]), 0.001)  # too close to call
    -1
    """
    counts = np.asarray(counts)
    if counts.ndim != 1 or counts.size < 2:
        raise ValueError(f"counts must be a 1-D array over >= 2 classes, got shape {counts.shape}")
    _check_alpha(alpha)
    order = np.argsort(-counts, kind="stable")
    n_a, n_b = int(counts[order[0]]), int(counts[order[1]])
    if n_a + n_b == 0 or binom_pvalue(n_a, n_a + n_b, 0.5) > alpha:
        return ABSTAIN
    return int(order[0])
