"""Adaptive (sequential) CERTIFY: draw the estimation samples in rounds and stop as soon as the
outcome at every target radius is decided, with the same overall failure probability α as
fixed-n CERTIFY (Cohen et al. 2019, §3.2, Proposition 2). See docs/adaptive.md.

The procedure, for target radii r_1 < … < r_K, noise level σ, level α:

1. Selection (as CERTIFY): n0 draws, ĉA = their most frequent class.
2. A look schedule fixed in advance, n_1 < n_2 < … < n_J = n_max (geometric:
   n_j = ⌈n_first·growth^(j−1)⌉, capped at n_max), and levels α_j with Σ_j α_j = α: the share
   s (``final_share``, default ½) of α at the last look, so that at n_max the procedure is
   nearly as strong as fixed-n CERTIFY, and α(1 − s)/(J − 1) at each earlier look. At look j
   the estimation draws so far (fresh, independent of the selection) give
   k_j = #{f(x+ε_i) = ĉA, i ≤ n_j} and the one-sided Clopper–Pearson lower bound L_j at level
   α_j.
3. Radius r_i is *certified* once max_{l≤j} L_l ≥ Φ(r_i/σ); radius 0 (a non-abstaining
   prediction) once it reaches ½. Radius r_i is *out of reach* when even the bound the last
   look would give if the observed rate there were U_j — the upper confidence bound on pA at
   level β/J (β = ``futility``, default 0.01) — stays below Φ(r_i/σ). Stop at the first look
   where every target (and ½) is certified or out of reach, or at n_max.
4. Output: p_a_lower = max_j L_j over the looks taken; ABSTAIN if it is < ½, else ĉA with radius
   σ·Φ⁻¹(p_a_lower) — the largest radius the bound supports, at least the largest certified
   target radius.

Validity: the schedule does not depend on the data, and each k_j ~ Binomial(n_j, pA) with
pA = P(f(x+ε) = ĉA) given the selection, so P(L_j > pA) ≤ α_j for each j and, by the union
bound (Bonferroni), P(∃ j ≤ J: L_j > pA) ≤ Σ_j α_j = α. Outside that event every bound taken
is ≤ pA, so the returned radius σ·Φ⁻¹(p_a_lower) ≤ σ·Φ⁻¹(pA), which Theorem 1 (with
pB ≤ 1 − pA) certifies; stopping early only removes looks from the union. The futility rule
only ever *stops certifying*, so it affects how many radii are certified (power), never
validity; by the same union bound, a radius that the last look would certify at the rate pA
itself is given up with probability at most β. This is a group-sequential design with α spent
over pre-planned looks (in the spirit of Lan & DeMets 1983), using the union bound instead of
the joint distribution of the looks, which makes it conservative but exact for any schedule.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm

from smoothcert import stats
from smoothcert.smoothing import ABSTAIN, Certificate, SmoothedClassifier


@dataclass(frozen=True)
class AdaptiveCertificate(Certificate):
    """A Certificate from :func:`certify_adaptive`. ``n`` is the number of estimation draws
    used (the selection used ``counts_selection.sum()`` more); ``radius`` is σ·Φ⁻¹(p_a_lower).

    ``radii`` are the target radii (ascending) and ``certified`` says, for each, whether the
    procedure certified it (radius ≥ r and not abstained); ``looks`` is the number of looks
    taken out of ``schedule``."""

    radii: tuple[float, ...]
    certified: tuple[bool, ...]
    looks: int
    schedule: tuple[int, ...]


def look_schedule(n_max: int, n_first: int = 100, growth: float = 1.5) -> list[int]:
    """The fixed look schedule n_j = ⌈n_first·growth^(j−1)⌉ (strictly increasing), with the
    last look exactly n_max."""
    for name, value in (("n_max", n_max), ("n_first", n_first)):
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if n_first > n_max:
        raise ValueError(f"n_first must be at most n_max ({n_max}), got {n_first}")
    if not (isinstance(growth, int | float) and math.isfinite(growth) and growth > 1):
        raise ValueError(f"growth must be a finite number > 1, got {growth!r}")
    looks, j = [], 0
    while True:
        n_j = min(int(n_max), math.ceil(n_first * growth**j))
        if not looks or n_j > looks[-1]:
            looks.append(n_j)
        if n_j == n_max:
            return looks
        j += 1


def look_levels(alpha: float, looks: int, final_share: float = 0.5) -> list[float]:
    """The Bonferroni split of α over the looks: α·final_share at the last look and
    α(1 − final_share)/(looks − 1) at each earlier one (all of α with a single look)."""
    if looks == 1:
        return [alpha]
    if final_share >= 1:
        raise ValueError("final_share must be < 1 when there is more than one look")
    early = alpha * (1 - final_share) / (looks - 1)
    return [early] * (looks - 1) + [alpha * final_share]


def certify_adaptive(
    classifier: SmoothedClassifier,
    x: torch.Tensor | np.ndarray,
    radii: Sequence[float],
    alpha: float,
    *,
    n0: int = 100,
    n_max: int = 100_000,
    n_first: int = 100,
    growth: float = 1.5,
    futility: float = 0.01,
    final_share: float = 0.5,
    generator: torch.Generator | None = None,
) -> AdaptiveCertificate:
    """Sequential CERTIFY (module docstring, steps 1–4): with probability at least 1 − α, if the
    prediction is not ABSTAIN then g(x + δ) = prediction for all ‖δ‖₂ < radius.

    radii: target radii (≥ 0, in input units); the procedure stops once each is decided.
    alpha: overall failure probability: α·final_share at the last look, the rest split evenly
        over the earlier looks.
    n0: selection draws; n_max: the most estimation draws (the last look).
    n_first, growth: the look schedule (see :func:`look_schedule`).
    futility: β in (0, 1), the level of the upper bound that declares a radius out of reach;
        a larger β stops sooner on hopeless radii at a larger risk (≤ β) of giving up a radius
        the last look would have certified. It never affects validity.
    final_share: the share of α spent at the last look, in (0, 1] (1 only with one look).
    """
    if not isinstance(classifier, SmoothedClassifier):
        raise ValueError(
            f"classifier must be a SmoothedClassifier, got {type(classifier).__name__}"
        )
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    if not (isinstance(futility, int | float) and 0 < futility < 1):
        raise ValueError(f"futility must be in (0, 1), got {futility!r}")
    if not (isinstance(final_share, int | float) and 0 < final_share <= 1):
        raise ValueError(f"final_share must be in (0, 1], got {final_share!r}")
    targets = _check_radii(radii)
    if not isinstance(n0, int | np.integer) or isinstance(n0, bool) or n0 < 1:
        raise ValueError(f"n0 must be a positive integer, got {n0!r}")
    schedule = look_schedule(n_max, n_first, growth)
    levels = look_levels(alpha, len(schedule), final_share)
    futility_level = futility / len(schedule)
    sigma = classifier.sigma
    # Thresholds on pA: ½ for a non-abstaining prediction, Φ(r/σ) for radius r.
    thresholds = np.concatenate([[0.5], norm.cdf(np.asarray(targets) / sigma)])

    counts_selection = classifier.counts(x, n0, generator=generator)
    c_hat = int(np.argmax(counts_selection))
    counts_estimation = np.zeros_like(counts_selection)
    drawn, p_a_lower, looks = 0, 0.0, 0
    for n_j, level in zip(schedule, levels, strict=True):
        counts_estimation += classifier.counts(x, n_j - drawn, generator=generator)
        drawn, looks = n_j, looks + 1
        k = int(counts_estimation[c_hat])
        p_a_lower = max(p_a_lower, float(stats.lower_confidence_bound(k, n_j, level)))
        if n_j == n_max:
            break
        if _all_decided(thresholds, p_a_lower, k, n_j, n_max, levels[-1], futility_level):
            break

    n_a = int(counts_estimation[c_hat])
    prediction, radius = stats.certify_decision(c_hat, p_a_lower, sigma)
    certified = tuple(bool(prediction != ABSTAIN and t <= p_a_lower) for t in thresholds[1:])
    return AdaptiveCertificate(
        prediction=prediction,
        radius=radius,
        n_a=n_a,
        n=drawn,
        p_a_lower=p_a_lower,
        counts_selection=counts_selection,
        counts_estimation=counts_estimation,
        radii=tuple(targets),
        certified=certified,
        looks=looks,
        schedule=tuple(schedule),
    )


def _all_decided(
    thresholds: np.ndarray,
    p_a_lower: float,
    k: int,
    n: int,
    n_max: int,
    final_level: float,
    futility_level: float,
) -> bool:
    """Every threshold is already cleared by p_a_lower, or out of reach: above the bound the
    last look (n_max draws, level final_level) would give at a rate equal to the upper bound U
    on pA."""
    upper = float(stats.upper_confidence_bound(k, n, futility_level))
    reach = float(stats.lower_confidence_bound(math.floor(upper * n_max), n_max, final_level))
    return bool(np.all((thresholds <= p_a_lower) | (thresholds > reach)))


def _check_radii(radii: Sequence[float]) -> list[float]:
    try:
        values = [float(r) for r in radii]
    except (TypeError, ValueError):
        raise ValueError(f"radii must be a sequence of numbers, got {radii!r}") from None
    if not values:
        raise ValueError("radii must contain at least one target radius")
    if not all(math.isfinite(r) and r >= 0 for r in values):
        raise ValueError(f"radii must be finite and >= 0, got {values}")
    return sorted(set(values))
