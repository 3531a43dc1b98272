"""A certified upper bound on the worst-case expected loss of a smoothed classifier over a
Wasserstein ball: the NAL paper's Theorem 1 (reading 2, docs/threat-model.md) made into a
statement that holds with probability at least 1 − δ.

:mod:`smoothcert.distributional` ESTIMATES γρ_adv + E_P0 sup_x[ℓ̂(x) − γ‖x − x0‖²]: its inner
supremum comes from gradient ascent (a local maximum lies below the supremum, the wrong
direction for an upper bound), ℓ̂ from Monte Carlo and E_P0 from a test set, reported as a
mean ± standard error. This module replaces each of those three steps by a bound.

Setting and assumptions
-----------------------
- Loss clipped to [0, M]: ℓ_M = min(ℓ, M) (cross-entropy, M user-set, default 10 nats) or the
  0-1 loss (M = 1). The smoothed loss ℓ̂(x) = E_z ℓ_M(x + z), z ~ N(0, σ²I), σ > 0, lies in
  [0, M]. The statement is about ℓ_M, not the unclipped cross-entropy.
- Threat model (docs/threat-model.md, reading 2): a clean x0 ~ P0 is moved to x by any map or
  random map independent of the defender's noise z, with E‖x − x0‖² ≤ ρ_adv; the loss is
  E ℓ_M(x + z). The inputs are not constrained to [0, 1] (the bound holds on R^d, so also on
  the box).
- The N test examples are iid draws from P0; the s noise draws per example are independent of
  everything else.

Derivation
----------
1. Weak duality (Theorem 1; Sinha et al. 2018, Prop. 1): for every γ ≥ 0 and every adversary
   as above, E ℓ̂(x) ≤ γρ_adv + E_P0 sup_x {ℓ̂(x) − γ‖x − x0‖²}.
2. Inner supremum. Lemma (Salman et al. 2019, Lemma 2, after Levine et al. 2020 for
   expectations of bounded functions): for f: R^d → [0, 1], x ↦ σ·Φ⁻¹(E_z f(x + z)) is
   1-Lipschitz in L2. With f = ℓ_M/M and p = ℓ̂(x0)/M,
   ℓ̂(x) ≤ M·Φ(Φ⁻¹(p) + ‖x − x0‖/σ), so

       sup_x {ℓ̂(x) − γ‖x − x0‖²} ≤ M·H(p, c),   H(p, c) = sup_{t≥0} {Φ(Φ⁻¹(p) + t) − c t²},

   c = γσ²/M (t = r/σ). H is increasing in p, H(p, c) ∈ [p, 1], H → p as c → ∞ and → 1 as
   c → 0. :func:`inner_sup_bound` computes it exactly, by bracketing the at most two local
   maxima of t ↦ Φ(Φ⁻¹(p) + t) − ct² (their number follows from the sign pattern of the
   derivative) and bisecting to float precision; on the final bracket [u, v] the supremum is
   at most Φ(Φ⁻¹(p) + v) − cu², which is the number used. No gradient ascent is involved.
   The Lipschitz bound ignores everything about the model but ℓ̂(x0), so it is loose when σ
   is small against the distances the adversary can afford (c small): then H ≈ 1 and the
   bound ≈ M.
3. Monte Carlo at x0. From s draws of Y = ℓ_M(x0 + z)/M ∈ [0, 1], a one-sided upper
   confidence bound p_i^U at level 1 − δ1 (:func:`mean_upper_bound`): the exact
   Clopper–Pearson bound for the 0-1 loss, else the smaller of Hoeffding's and Maurer and
   Pontil's empirical Bernstein bound (2009, Thm 4), each at δ1/2. The number K of examples
   with p_i > p_i^U is then stochastically at most Binomial(N, δ1) (independent draws); let
   k be its 1 − δ2 quantile (:func:`failures_quantile`), so P(K > k) ≤ δ2. On K ≤ k, since H
   is increasing and ≤ 1, replacing the k smallest H(p_i^U, c) by 1 gives a mean A_c ≥
   (1/N) Σ H(p_i, c) — for every c at once, as the event does not depend on γ.
4. Population. For every increasing g: [0, 1] → [0, 1],
   E_P0 g(p) ≤ (1/N) Σ g(p_i) + ε with ε = √(log(2/δ3)/(2N)) on the event of the
   Dvoretzky–Kiefer–Wolfowitz inequality (Massart 1990, two-sided constant) for the
   distribution of p = ℓ̂(x0)/M, whose probability is ≥ 1 − δ3. It holds for all γ at once,
   so no union bound over the γ grid is needed and γ may be chosen after seeing the data;
   the grid (:func:`default_gammas`) only discretizes the minimization.

Result: with probability ≥ 1 − δ, δ = δ2 + δ3 (δ2 = δ3 = δ/2 here; δ1 only sets k), for
every ρ_adv ≥ 0 and every adversary with E‖x − x0‖² ≤ ρ_adv,

    E ℓ_M(x + z) ≤ min( M, min_{γ ∈ Γ} { γρ_adv + M·(A_{γσ²/M} + ε) } ).

References
----------
Yang et al., A Distributional Robustness Certificate by Randomized Smoothing (Theorem 1).
Sinha, Namkoong, Duchi, Certifying Some Distributional Robustness with Principled Adversarial
Training, ICLR 2018 (Proposition 1).
Salman et al., Provably Robust Deep Learning via Adversarially Trained Smoothed Classifiers,
NeurIPS 2019 (Lemma 2). Levine, Singla, Feizi, Certifiably Robust Interpretation via Rényi
Differential Privacy / Wasserstein smoothing, 2020 (expectations of bounded functions).
Maurer and Pontil, Empirical Bernstein Bounds and Sample Variance Penalization, COLT 2009.
Massart, The Tight Constant in the Dvoretzky–Kiefer–Wolfowitz Inequality, Ann. Probab. 1990.
Clopper and Pearson, Biometrika 1934.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy import special, stats
from torch import nn
from torch.nn import functional as F

from smoothcert._util.checks import ParameterError, finite_real, positive_int, probability
from smoothcert.certify.stats import upper_confidence_bound

__all__ = [
    "CertifiedBound",
    "LOSSES",
    "certified_bound",
    "clipped_loss_stats",
    "default_gammas",
    "dkw_epsilon",
    "failures_quantile",
    "inner_sup_bound",
    "mean_upper_bound",
]

#: The losses of the bound: cross-entropy clipped to [0, M], and the 0-1 loss (M = 1).
LOSSES = ("ce", "01")

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)

#: Bisection steps of :func:`inner_sup_bound`: brackets shrink to float precision.
_BISECTIONS = 80


# --------------------------------------------------------------------------- inner supremum


def _log_slope_ratio(a: np.ndarray, c: np.ndarray, t: np.ndarray) -> np.ndarray:
    """g(t) = log φ(a + t) − log(2ct): f′(t) = φ(a + t) − 2ct has the sign of g (t > 0)."""
    with np.errstate(divide="ignore"):
        return -0.5 * (a + t) ** 2 - _LOG_SQRT_2PI - np.log(2 * c * t)


def _bisect(a, c, lo, hi, active) -> tuple[np.ndarray, np.ndarray]:
    """Shrink the brackets [lo, hi] (g(lo) > 0 > g(hi)) of the rows ``active`` to float
    precision; returns (the rigorous upper bound Φ(a + hi) − c·lo² of f on the final bracket,
    f at its midpoint), −inf where not active."""
    lo, hi = lo.copy(), hi.copy()
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        positive = _log_slope_ratio(a, c, np.where(active, mid, 1.0)) > 0
        lo = np.where(active & positive, mid, lo)
        hi = np.where(active & ~positive, mid, hi)
    up = special.ndtr(a + hi) - c * lo**2
    mid = 0.5 * (lo + hi)
    at = special.ndtr(a + mid) - c * mid**2
    return np.where(active, up, -np.inf), np.where(active, at, -np.inf)


def inner_sup_bound(p: ArrayLike, c: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower bounds on H(p, c) = sup_{t≥0} {Φ(Φ⁻¹(p) + t) − c t²} (module doc, 2).

    sup_x {ℓ̂(x) − γ‖x − x0‖²} ≤ M·H(ℓ̂(x0)/M, γσ²/M) by the Lipschitz property of
    σ·Φ⁻¹(ℓ̂/M) (Salman et al. 2019, Lemma 2). Computed exactly by bracketing the stationary
    points of f(t) = Φ(a + t) − ct², a = Φ⁻¹(p): f′(t) = φ(a + t) − 2ct has the sign of
    g(t) = −(a + t)²/2 − log √(2π) − log(2ct), and g′(t) = −(a + t) − 1/t vanishes where
    t² + at + 1 = 0. So for a > −2, g decreases from +∞ (t → 0) to −∞: one root, the maximum
    of f. For a ≤ −2, g decreases on (0, t₁), increases on (t₁, t₂) and decreases after
    (t₁,₂ = (−a ∓ √(a² − 4))/2): the local maxima of f are the roots of g on the two
    decreasing pieces, at most one each, found by bisection on a bracket where g changes sign.
    On the final bracket [u, v], sup f ≤ Φ(a + v) − cu² (Φ and ct² both increase): that is
    the upper bound, f at the bracket's middle the lower bound; they agree to about 1e-15.

    Parameters
    ----------
    p : array_like
        ℓ̂(x0)/M, in [0, 1].
    c : array_like
        γσ²/M, > 0 (broadcast against ``p``).

    Returns
    -------
    upper, lower : numpy.ndarray
        Bounds with lower ≤ H ≤ upper, in [p, 1], broadcast shape of ``p`` and ``c``.

    Examples
    --------
    >>> up, lo = inner_sup_bound(0.1, 1e6)  # a huge penalty: no move, H = p
    >>> round(float(up), 4), round(float(lo), 4)
    (0.1, 0.1)
    >>> up, lo = inner_sup_bound(0.5, 0.1)
    >>> round(float(up), 6), bool(up - lo < 1e-12)
    (0.743339, True)
    """
    p_arr, c_arr = np.broadcast_arrays(np.asarray(p, np.float64), np.asarray(c, np.float64))
    if np.any(~np.isfinite(p_arr)) or np.any((p_arr < 0) | (p_arr > 1)):
        raise ParameterError("p", "must lie in [0, 1]")
    if np.any(~np.isfinite(c_arr)) or np.any(c_arr <= 0):
        raise ParameterError("c", "must be finite and > 0")
    shape = p_arr.shape
    p_flat, c_flat = p_arr.ravel(), c_arr.ravel()
    inside = (p_flat > 0) & (p_flat < 1)  # p = 0: ℓ̂ ≡ 0, H = 0; p = 1: H = 1
    a = np.where(inside, special.ndtri(np.where(inside, p_flat, 0.5)), 0.0)
    c = c_flat
    two_pieces = a <= -2
    root = np.sqrt(np.where(two_pieces, a * a - 4, 0.0))
    t1 = np.where(two_pieces, 0.5 * (-a - root), 0.0)
    t2 = np.where(two_pieces, 0.5 * (-a + root), 0.0)
    # piece 1: (0, t₁) when a ≤ −2 (a root iff g(t₁) < 0)
    first = inside & two_pieces & (_log_slope_ratio(a, c, np.where(two_pieces, t1, 1.0)) < 0)
    up1, at1 = _bisect(a, c, np.zeros_like(a), t1, first)
    # the last piece: (t₂, ∞) when a ≤ −2 (a root iff g(t₂) > 0), else (0, ∞) (always a root)
    start = np.where(two_pieces, t2, 0.0)
    last = inside & (~two_pieces | (_log_slope_ratio(a, c, np.where(two_pieces, t2, 1.0)) > 0))
    end = np.maximum(start, 1.0) + np.maximum(-a, 0.0) + 1.0
    for _ in range(200):  # g → −∞: double the end until g(end) < 0
        grow = last & (_log_slope_ratio(a, c, end) >= 0)
        if not grow.any():
            break
        end = np.where(grow, 2 * end, end)
    up2, at2 = _bisect(a, c, start, end, last)
    upper = np.maximum(np.maximum(up1, up2), p_flat)
    lower = np.maximum(np.maximum(at1, at2), p_flat)
    upper = np.where(inside, upper, p_flat)
    lower = np.where(inside, lower, p_flat)
    upper = np.clip(np.maximum(upper, lower), p_flat, 1.0)
    lower = np.clip(lower, p_flat, 1.0)
    return upper.reshape(shape), lower.reshape(shape)


# --------------------------------------------------------------------------- Monte Carlo at x0


def mean_upper_bound(
    mean: ArrayLike, var: ArrayLike, n: int, delta: float, loss: str = "ce"
) -> np.ndarray:
    """One-sided (1 − δ) upper confidence bounds on E Y for Y ∈ [0, 1] from n iid draws.

    - ``loss="01"`` (Y ∈ {0, 1}): the exact Clopper–Pearson bound from the count n·mean;
    - ``loss="ce"`` (Y ∈ [0, 1]): min(Hoeffding at δ/2, empirical Bernstein at δ/2), i.e.
      min( m + √(log(2/δ)/(2n)), m + √(2V log(4/δ)/n) + 7 log(4/δ)/(3(n − 1)) ), with V the
      unbiased sample variance (Maurer and Pontil 2009, Theorem 4); the union bound makes the
      minimum valid at 1 − δ.

    Parameters
    ----------
    mean, var : array_like
        Sample means and unbiased sample variances (ddof = 1) of the draws (var unused for
        "01").
    n : int
        Draws per mean, >= 2.
    delta : float
        Failure probability of each bound, in (0, 1).
    loss : {"ce", "01"}, default "ce"
        Which kind of variable Y is.

    Returns
    -------
    numpy.ndarray
        The bounds, in [0, 1].

    Examples
    --------
    >>> round(float(mean_upper_bound(0.0, 0.0, 1000, 0.01, "01")[0]), 5)
    0.00459
    """
    n = positive_int("n", n)
    if n < 2:
        raise ParameterError("n", f"must be >= 2 (a sample variance is needed), got {n}")
    delta = probability("delta", delta)
    m = np.atleast_1d(np.asarray(mean, np.float64))
    if loss == "01":
        counts = np.rint(m * n).astype(np.int64)
        return np.asarray(upper_confidence_bound(counts, n, delta), np.float64).reshape(m.shape)
    if loss != "ce":
        raise ParameterError("loss", f"must be one of {', '.join(LOSSES)}, got {loss!r}")
    v = np.clip(np.atleast_1d(np.asarray(var, np.float64)), 0.0, 0.25 * n / (n - 1))
    hoeffding = m + math.sqrt(math.log(2 / delta) / (2 * n))
    log_term = math.log(4 / delta)
    bernstein = m + np.sqrt(2 * v * log_term / n) + 7 * log_term / (3 * (n - 1))
    return np.clip(np.minimum(hoeffding, bernstein), 0.0, 1.0)


def failures_quantile(n: int, delta_draws: float, delta_count: float) -> int:
    """k, the smallest integer with P(Binomial(n, δ1) ≤ k) ≥ 1 − δ2 (module doc, 3).

    The number of examples whose Monte Carlo bound fails is stochastically at most
    Binomial(n, δ1), so it exceeds k with probability at most δ2.

    Parameters
    ----------
    n : int
        Examples, >= 1.
    delta_draws : float
        δ1, the failure probability of each example's bound, in (0, 1).
    delta_count : float
        δ2, in (0, 1).

    Returns
    -------
    int
        k, in [0, n].

    Examples
    --------
    >>> failures_quantile(200, 0.001, 0.025)
    1
    """
    n = positive_int("n", n)
    d1 = probability("delta_draws", delta_draws)
    d2 = probability("delta_count", delta_count)
    k = int(stats.binom.ppf(1 - d2, n, d1))
    while k > 0 and stats.binom.cdf(k - 1, n, d1) >= 1 - d2:  # ppf's rounding, to be exact
        k -= 1
    while stats.binom.cdf(k, n, d1) < 1 - d2:
        k += 1
    return min(k, n)


def dkw_epsilon(n: int, delta: float) -> float:
    """ε = √(log(2/δ)/(2n)), the Dvoretzky–Kiefer–Wolfowitz deviation (Massart's constant).

    With probability ≥ 1 − δ the empirical distribution function of n iid draws is within ε
    of the true one everywhere, so E g ≤ mean g + ε·(range of g) for every increasing g.

    Parameters
    ----------
    n : int
        Draws, >= 1.
    delta : float
        Failure probability, in (0, 1).

    Returns
    -------
    float
        ε.

    Examples
    --------
    >>> round(dkw_epsilon(200, 0.025), 4)
    0.1047
    """
    n = positive_int("n", n)
    delta = probability("delta", delta)
    return math.sqrt(math.log(2 / delta) / (2 * n))


def default_gammas(sigma: float, clip: float, num: int = 61) -> np.ndarray:
    """The γ grid of the certified bound: c = γσ²/M log-spaced over [1e-3, 1e3].

    Fixed by σ and M alone (the bound holds for every γ at once, so the grid only discretizes
    the minimization over γ).

    Parameters
    ----------
    sigma : float
        Noise level, > 0.
    clip : float
        M, > 0.
    num : int, default 61
        Grid points.

    Returns
    -------
    numpy.ndarray
        γ values, increasing.
    """
    sigma = finite_real("sigma", sigma, positive=True)
    clip = finite_real("clip", clip, positive=True)
    return np.geomspace(1e-3, 1e3, positive_int("num", num)) * clip / sigma**2


# --------------------------------------------------------------------------- the bound


@dataclass
class CertifiedBound:
    """The certified upper bound on the worst-case expected clipped loss (module doc).

    With probability ≥ 1 − ``delta``, for every ρ_adv of ``rho_adv`` (indeed every ρ_adv),
    every adversary with E‖x − x0‖² ≤ ρ_adv has E ℓ_M(x + z) ≤ ``value``.
    """

    rho_adv: np.ndarray  # [R]
    value: np.ndarray  # [R] the certified bound, <= clip
    gamma: np.ndarray  # [R] the γ it is attained at (inf where it is the trivial bound M)
    loss: str  # "ce" (clipped cross-entropy) or "01"
    clip: float  # M
    sigma: float
    delta: float  # total failure probability δ = δ2 + δ3
    delta_draws: float  # δ1, per example
    draws: int  # s, Monte Carlo draws per example
    n: int  # N, examples
    replaced: int  # k, examples whose bound is replaced by M
    epsilon: float  # the DKW term, times M in the bound
    p_upper: np.ndarray  # [N] upper confidence bounds on ℓ̂(x0)/M
    gammas: np.ndarray  # [G] the grid
    terms: np.ndarray  # [G] M·(A_γ + ε), the bound's γ-dependent constant


def certified_bound(
    p_upper: ArrayLike,
    rhos: Sequence[float],
    sigma: float,
    *,
    clip: float,
    delta: float,
    delta_draws: float,
    draws: int,
    loss: str = "ce",
    gammas: Sequence[float] | None = None,
) -> CertifiedBound:
    """The certified bound at each ρ_adv from the per-example upper bounds ``p_upper``.

    value(ρ_adv) = min(M, min_γ {γρ_adv + M·(A_γ + ε)}), A_γ the mean of
    H(p_i^U, γσ²/M) (upper bounds of :func:`inner_sup_bound`) with the k smallest replaced by
    1, k = :func:`failures_quantile` (N, δ1, δ/2), ε = :func:`dkw_epsilon` (N, δ/2). Holds
    with probability ≥ 1 − δ under the module's assumptions, when each p_i^U is a (1 − δ1)
    upper confidence bound from independent draws.

    Parameters
    ----------
    p_upper : array_like
        [N] upper confidence bounds on ℓ̂(x0_i)/M at level 1 − ``delta_draws``.
    rhos : sequence of float
        Budgets ρ_adv = E‖x − x0‖², each >= 0.
    sigma : float
        Noise level σ > 0.
    clip : float
        M, the clipping level of the loss (1 for the 0-1 loss).
    delta : float
        Total failure probability, in (0, 1).
    delta_draws : float
        δ1 of the per-example bounds, in (0, 1).
    draws : int
        s, the draws per example (recorded).
    loss : {"ce", "01"}, default "ce"
        The loss (recorded).
    gammas : sequence of float, optional
        The γ grid (default :func:`default_gammas`).

    Returns
    -------
    CertifiedBound
        One value per ρ_adv, with every ingredient of the statement.

    Examples
    --------
    >>> b = certified_bound([0.01] * 400, [0.0], 0.25, clip=1.0, delta=0.05,
    ...                     delta_draws=0.001, draws=1000, loss="01")
    >>> bool(0.01 < b.value[0] < 0.1)
    True
    """
    pu = np.asarray(p_upper, np.float64).ravel()
    if pu.size == 0 or np.any(~np.isfinite(pu)) or np.any((pu < 0) | (pu > 1)):
        raise ParameterError("p_upper", "must be a non-empty array of values in [0, 1]")
    sigma = finite_real("sigma", sigma, positive=True)
    clip = finite_real("clip", clip, positive=True)
    delta = probability("delta", delta)
    if loss not in LOSSES:
        raise ParameterError("loss", f"must be one of {', '.join(LOSSES)}, got {loss!r}")
    r = np.asarray(list(rhos), np.float64)
    if r.ndim != 1 or r.size == 0 or np.any(~np.isfinite(r)) or np.any(r < 0):
        raise ParameterError("rhos", f"must be finite budgets >= 0, got {list(rhos)}")
    g = default_gammas(sigma, clip) if gammas is None else np.asarray(list(gammas), np.float64)
    if g.ndim != 1 or g.size == 0 or np.any(~np.isfinite(g)) or np.any(g <= 0):
        raise ParameterError("gammas", "must be finite and > 0")
    n = pu.size
    k = failures_quantile(n, delta_draws, delta / 2)
    eps = dkw_epsilon(n, delta / 2)
    means = np.empty(g.size)
    for j, gamma in enumerate(g):
        upper, _ = inner_sup_bound(pu, gamma * sigma**2 / clip)
        upper = np.sort(upper)
        upper[:k] = 1.0
        means[j] = upper.mean()
    terms = clip * (means + eps)
    totals = r[:, None] * g[None, :] + terms[None, :]  # [R, G]
    best = totals.argmin(1)
    value = totals[np.arange(r.size), best]
    trivial = value >= clip
    return CertifiedBound(
        rho_adv=r,
        value=np.where(trivial, clip, value),
        gamma=np.where(trivial, np.inf, g[best]),
        loss=loss,
        clip=clip,
        sigma=sigma,
        delta=delta,
        delta_draws=float(delta_draws),
        draws=int(draws),
        n=n,
        replaced=k,
        epsilon=eps,
        p_upper=pu,
        gammas=g,
        terms=terms,
    )


# --------------------------------------------------------------------------- sampling at x0


def clipped_loss_stats(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    draws: int,
    clip: float,
    *,
    generator: torch.Generator | None = None,
    chunk: int = 100,
) -> dict[str, np.ndarray]:
    """Monte Carlo statistics at x0 of the two losses of the bound (clipped CE and 0-1).

    ``draws`` draws z ~ N(0, σ²I) per example, the same draws for both losses.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier (in the mode it is given).
    x0 : torch.Tensor
        Inputs [B, ...].
    y : torch.Tensor
        Class labels [B].
    sigma : float
        Noise level, > 0.
    draws : int
        s, >= 2.
    clip : float
        M of the clipped cross-entropy.
    generator : torch.Generator, optional
        Source of the draws.
    chunk : int, default 100
        Draws per forward pass (memory, not results).

    Returns
    -------
    dict
        ``ce_mean``, ``ce_var`` (mean and unbiased variance of min(CE, M)/M) and
        ``err_mean`` (fraction of draws misclassified), each [B] float64.
    """
    batch, shape = x0.shape[0], x0.shape[1:]
    total = torch.zeros(batch, dtype=torch.float64)
    total_sq = torch.zeros(batch, dtype=torch.float64)
    errors = torch.zeros(batch, dtype=torch.float64)
    with torch.no_grad():
        for start in range(0, draws, chunk):
            m = min(chunk, draws - start)
            z = torch.randn(
                (batch, m, *shape), dtype=x0.dtype, device=x0.device, generator=generator
            )
            logits = model((x0.unsqueeze(1) + sigma * z).reshape(batch * m, *shape))
            ce = F.cross_entropy(logits, y.repeat_interleave(m), reduction="none")
            ce = torch.nan_to_num(ce, nan=clip, posinf=clip).clamp(0, clip).double() / clip
            ce = ce.view(batch, m).cpu()
            total += ce.sum(1)
            total_sq += (ce**2).sum(1)
            wrong = logits.argmax(1).view(batch, m) != y.unsqueeze(1)
            errors += wrong.double().sum(1).cpu()
    mean = total / draws
    var = ((total_sq - draws * mean**2) / (draws - 1)).clamp_min(0)
    return {
        "ce_mean": mean.numpy(),
        "ce_var": var.numpy(),
        "err_mean": (errors / draws).numpy(),
    }
