"""Adaptive (sequential) CERTIFY: draw the estimation samples in rounds and stop as soon as the
outcome at every target radius is decided, with the same overall failure probability α as
fixed-n CERTIFY (Cohen et al. 2019, §3.2, Proposition 2). See docs/adaptive.md.

The procedure, for target radii r_1 < … < r_K, noise level σ, level α:

1. Selection (as CERTIFY): n0 draws, ĉA = their most frequent class.
2. A plan fixed in advance (:func:`plan_looks`): looks n_1 < … < n_J = n_max and levels α_j
   with Σ_j α_j ≤ α. The share s (``final_share``) of α goes to the last look, so that at
   n_max the procedure is nearly as strong as fixed-n CERTIFY; every earlier look gets
   a = α(1 − s)/(J − 1). The looks are a geometric grid n_first·growth^(j−1) plus, for each
   target r_i, the *aligned* look n*(r_i) = ⌈ln a / ln Φ(r_i/σ)⌉: the smallest sample size at
   which an input whose every draw is ĉA clears Φ(r_i/σ) (with k = n the Clopper–Pearson bound
   is a^(1/n), up to stats.LEVEL_MARGIN). Inputs with pA ≈ 1, most of a well-trained model's,
   then stop exactly where their largest reachable target is decided instead of at the next
   grid point.
3. At look j the estimation draws so far (fresh, independent of the selection) give
   k_j = #{f(x+ε_i) = ĉA, i ≤ n_j} and the one-sided Clopper–Pearson lower bound L_j at level
   α_j. Threshold t (½ for a non-abstaining prediction, Φ(r_i/σ) for radius r_i) is *certified*
   once max_{l≤j} L_l ≥ t, and *out of reach* when the last look would not clear it even if
   every remaining draw came at the rate U_j, the upper Clopper–Pearson bound on pA at level β
   (``futility``): L(k_j + ⌊U_j(n_max − n_j)⌋, n_max, α_J) < t. Stop at the first look where
   every threshold is certified or out of reach, or at n_max.
4. Output: p_a_lower = max_j L_j over the looks taken; ABSTAIN if it is < ½, else ĉA with
   radius σ·Φ⁻¹(p_a_lower), at least the largest certified target radius.

Validity: the plan does not depend on the data, and each k_j ~ Binomial(n_j, pA) with
pA = P(f(x+ε) = ĉA) given the selection, so P(L_j > pA) ≤ α_j for each j and, by the union
bound (Bonferroni), P(∃ j ≤ J: L_j > pA) ≤ Σ_j α_j ≤ α. Outside that event every bound taken
is ≤ pA, so the returned radius σ·Φ⁻¹(p_a_lower) ≤ σ·Φ⁻¹(pA), which Theorem 1 (with
pB ≤ 1 − pA) certifies; stopping early only removes looks from the union. The futility rule
only ever *stops certifying*, so it changes how much is certified (power), never validity;
a threshold still reachable at the true rate pA is given up with probability at most (J − 1)β
(U_j < pA at one of the J − 1 looks before the last; docs/adaptive.md derives it).
This is a group-sequential design with α spent over pre-planned looks (in the spirit of
Lan & DeMets 1983), using the union bound instead of the joint distribution of the looks, which
makes it conservative but exact for any plan fixed in advance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm

from smoothcert._util.checks import ParameterError, finite_real, is_real, positive_int, probability
from smoothcert.certify import stats
from smoothcert.certify.smoothing import Certificate, SmoothedClassifier
from smoothcert.certify.stats import ABSTAIN


@dataclass(frozen=True)
class AdaptiveOptions:
    """The options of the adaptive plan and their defaults.

    The only copy of the defaults: :func:`plan_looks`, :func:`certify_adaptive`,
    ``smoothcert certify --adaptive`` and the adaptive runs of :mod:`smoothcert.runs` all take
    theirs from here. docs/adaptive.md explains how the defaults were chosen, without the test
    images the procedure is evaluated on.

    Attributes
    ----------
    n_first : int, default 100
        The first look of the geometric grid (a positive integer).
    growth : float, default 2.0
        The grid's growth factor between looks (finite, > 1).
    futility : float, default 0.05
        β in (0, 1), the level of the upper bound that declares a radius out of reach (power
        only, never validity).
    final_share : float, default 0.5
        The share s of α spent at the last look, in (0, 1): the earlier looks share the rest.
        (With a single look, that look gets all of α whatever s is.)
    align : bool, default True
        Add the aligned look n*(r_i) of each target radius to the grid.

    Raises
    ------
    ParameterError
        If a field is out of its range; the message names the field.
    """

    n_first: int = 100
    growth: float = 2.0
    futility: float = 0.05
    final_share: float = 0.5
    align: bool = True

    def __post_init__(self) -> None:
        # Each field checked, then stored as a plain Python value (numpy scalars in, JSON out).
        checked = {
            "n_first": positive_int("n_first", self.n_first),
            "growth": _growth(self.growth),
            "futility": probability("futility", self.futility),
            "final_share": _final_share(self.final_share),
        }
        if not isinstance(self.align, bool):
            raise ParameterError("align", f"must be True or False, got {self.align!r}")
        for name, value in checked.items():
            object.__setattr__(self, name, value)


def _growth(value: object) -> float:
    if not (is_real(value) and math.isfinite(value)):  # type: ignore[arg-type]
        raise ParameterError("growth", f"must be a finite number > 1, got {value!r}")
    if not value > 1:  # type: ignore[operator]
        raise ParameterError("growth", f"must be > 1, got {value!r}")
    return float(value)  # type: ignore[arg-type]  # growth**j in float32 would lose precision


def _final_share(value: object) -> float:
    # s = 1 would leave nothing for the looks before the last (look_levels divides the rest).
    if is_real(value) and value >= 1:  # type: ignore[operator]
        raise ParameterError(
            "final_share",
            f"must be < 1 (the looks before the last spend the rest of alpha), got {value!r}",
        )
    return probability("final_share", value)


@dataclass(frozen=True)
class AdaptiveCertificate(Certificate):
    """A Certificate from :func:`certify_adaptive`, with what the sequential procedure did.

    ``n`` is the number of estimation draws used (the selection used
    ``counts_selection.sum()`` more); ``radius`` is σ·Φ⁻¹(p_a_lower).

    Attributes
    ----------
    radii : tuple of float
        The target radii, ascending.
    certified : tuple of bool
        For each target radius, whether the procedure certified it (radius ≥ r and not
        abstained).
    looks : int
        The number of looks taken, out of ``schedule``.
    schedule : tuple of int
        The planned looks (estimation sample sizes; the last is n_max).
    """

    radii: tuple[float, ...]
    certified: tuple[bool, ...]
    looks: int
    schedule: tuple[int, ...]


@dataclass(frozen=True)
class AdaptivePlan:
    """What :func:`plan_looks` fixes before any draw.

    Attributes
    ----------
    radii : tuple of float
        The target radii, ascending.
    sigma : float
        The noise level σ.
    looks : tuple of int
        The estimation sample sizes n_1 < … < n_J; the last is n_max.
    levels : tuple of float
        The Clopper–Pearson level α_j of each look (Σ_j α_j ≤ α).
    thresholds : tuple of float
        The thresholds on pA: ½ (not abstaining), then Φ(r_i/σ) per target radius.
    futility : float
        β, the level of the upper bound that declares a threshold out of reach.
    """

    radii: tuple[float, ...]
    sigma: float
    looks: tuple[int, ...]
    levels: tuple[float, ...]
    thresholds: tuple[float, ...]
    futility: float


def look_schedule(
    n_max: int, n_first: int = AdaptiveOptions.n_first, growth: float = AdaptiveOptions.growth
) -> list[int]:
    """The geometric grid n_j = ⌈n_first·growth^(j−1)⌉, with the last look exactly n_max.

    Parameters
    ----------
    n_max : int
        The most estimation draws: the last look.
    n_first : int, default 100
        The first look, at most ``n_max``.
    growth : float, default 2.0
        The factor between looks, > 1.

    Returns
    -------
    list of int
        The looks, strictly increasing (sizes that round to the same integer appear once).

    Raises
    ------
    ParameterError
        If an argument is out of range, or ``n_first`` > ``n_max``.

    Examples
    --------
    >>> look_schedule(1000)
    [100, 200, 400, 800, 1000]
    >>> look_schedule(1000, n_first=100, growth=3)
    [100, 300, 900, 1000]
    """
    n_max = positive_int("n_max", n_max)
    options = AdaptiveOptions(n_first=n_first, growth=growth)  # checks both
    n_first, growth = options.n_first, options.growth
    if n_first > n_max:
        raise ParameterError("n_first", f"must be at most n_max ({n_max}), got {n_first}")
    looks, j = [], 0
    while True:
        try:
            n_j = min(n_max, math.ceil(n_first * growth**j))
        except OverflowError:  # growth^j beyond the float range: far past n_max anyway
            n_j = n_max
        if not looks or n_j > looks[-1]:
            looks.append(n_j)
        if n_j == n_max:
            return looks
        j += 1


def look_levels(
    alpha: float, looks: int, final_share: float = AdaptiveOptions.final_share
) -> list[float]:
    """The Bonferroni split of α over the looks.

    α·final_share at the last look and α(1 − final_share)/(looks − 1) at each earlier one; all
    of α with a single look.

    Parameters
    ----------
    alpha : float
        The overall failure probability.
    looks : int
        The number of looks, >= 1.
    final_share : float, default 0.5
        The share of α spent at the last look, in (0, 1).

    Returns
    -------
    list of float
        The level of each look, summing to α.

    Raises
    ------
    ParameterError
        If ``final_share`` is outside (0, 1).

    Examples
    --------
    >>> look_levels(0.001, 3)
    [0.00025, 0.00025, 0.0005]
    >>> look_levels(0.001, 1)
    [0.001]
    """
    final_share = AdaptiveOptions(final_share=final_share).final_share  # in (0, 1)
    if looks == 1:
        return [alpha]
    early = alpha * (1 - final_share) / (looks - 1)
    return [early] * (looks - 1) + [alpha * final_share]


def all_correct_look(threshold: float, level: float) -> int:
    """n*(t) = the smallest n with level^(1/n) ≥ t: the first sample size at which n draws out
    of n clear t (the Clopper–Pearson lower bound with k = n is level^(1/n), up to the level
    margin of :mod:`smoothcert.certify.stats`, which the loop absorbs)."""
    n = max(1, math.ceil(math.log(level) / math.log(threshold)))
    while float(stats.lower_confidence_bound(n, n, level)) < threshold:  # float rounding
        n += 1
    return n


def plan_looks(
    radii: Sequence[float],
    sigma: float,
    alpha: float,
    n_max: int,
    *,
    n_first: int = AdaptiveOptions.n_first,
    growth: float = AdaptiveOptions.growth,
    final_share: float = AdaptiveOptions.final_share,
    futility: float = AdaptiveOptions.futility,
    align: bool = AdaptiveOptions.align,
) -> AdaptivePlan:
    """The plan of the sequential procedure: its looks and their levels, fixed before any draw.

    Step 2 of the module docstring: the geometric grid, plus (``align``) the aligned look
    n*(r_i) of each target radius reachable before n_max, and the levels. The early level
    a = α(1 − s)/(J − 1) and the aligned looks depend on each other through J; J is raised
    until the looks fit it, so Σ_j α_j ≤ α (equality unless aligned looks coincide).

    Parameters
    ----------
    radii : sequence of float
        The target radii (≥ 0, in input units).
    sigma : float
        The noise level σ > 0.
    alpha : float
        The overall failure probability, in (0, 1).
    n_max : int
        The most estimation draws: the last look.
    n_first, growth, final_share, futility, align
        As in :class:`AdaptiveOptions` (whose defaults they take).

    Returns
    -------
    AdaptivePlan
        The looks, their levels, the thresholds on pA and the futility level.

    Raises
    ------
    ParameterError
        If an argument is out of range; the message names it.

    Examples
    --------
    The aligned looks 55 and 409 are where an input whose every draw is ĉA first clears
    Φ(0.25/σ) and Φ(0.5/σ):

    >>> plan = plan_looks([0.25, 0.5], sigma=0.25, alpha=0.001, n_max=1000)
    >>> plan.looks
    (55, 100, 200, 400, 409, 800, 1000)
    >>> plan_looks([0.25, 0.5], sigma=0.25, alpha=0.001, n_max=1000, align=False).looks
    (100, 200, 400, 800, 1000)
    """
    alpha = probability("alpha", alpha)  # numpy scalars accepted, bools not
    options = AdaptiveOptions(n_first, growth, futility, final_share, align)
    sigma = finite_real("sigma", sigma, positive=True)
    targets = _check_radii(radii)
    grid = look_schedule(n_max, options.n_first, options.growth)
    thresholds = [0.5, *(float(t) for t in norm.cdf(np.asarray(targets) / sigma))]
    looks, budget = grid, len(grid)
    while options.align and len(grid) > 1:
        early = look_levels(alpha, budget, options.final_share)[0]
        aligned = {all_correct_look(t, early) for t in thresholds[1:] if 0.5 < t < 1}
        looks = sorted(set(grid) | {n for n in aligned if n < n_max})
        if len(looks) <= budget:
            break
        budget = len(looks)
    levels = look_levels(alpha, budget, options.final_share)
    levels = levels[: len(looks) - 1] + levels[-1:]
    return AdaptivePlan(
        radii=tuple(targets),
        sigma=float(sigma),
        looks=tuple(looks),
        levels=tuple(levels),
        thresholds=tuple(thresholds),
        futility=options.futility,
    )


def certify_adaptive(
    classifier: SmoothedClassifier,
    x: torch.Tensor | np.ndarray,
    radii: Sequence[float],
    alpha: float,
    *,
    n0: int = 100,
    n_max: int = 100_000,
    n_first: int = AdaptiveOptions.n_first,
    growth: float = AdaptiveOptions.growth,
    futility: float = AdaptiveOptions.futility,
    final_share: float = AdaptiveOptions.final_share,
    align: bool = AdaptiveOptions.align,
    generator: torch.Generator | None = None,
) -> AdaptiveCertificate:
    """Sequential CERTIFY: stop drawing as soon as every target radius is decided.

    Steps 1–4 of the module docstring: with probability at least 1 − α, if the prediction is
    not ABSTAIN then g(x + δ) = prediction for all ‖δ‖₂ < radius.

    Parameters
    ----------
    classifier : SmoothedClassifier
        The smoothed classifier (not ``sound=True``: not supported yet).
    x : torch.Tensor or numpy.ndarray
        One input of the classifier's input shape, in [0, 1].
    radii : sequence of float
        Target radii (≥ 0, in input units); the procedure stops once each is decided.
    alpha : float
        Overall failure probability: α·final_share at the last look, the rest split evenly
        over the earlier looks.
    n0 : int, default 100
        Selection draws.
    n_max : int, default 100000
        The most estimation draws (the last look).
    n_first : int, default 100
        The first look of the geometric grid (see :func:`plan_looks`).
    growth : float, default 2.0
        The grid's growth factor, > 1.
    futility : float, default 0.05
        β in (0, 1), the level of the upper bound that declares a radius out of reach; a
        larger β stops sooner on hopeless radii at a larger risk of giving up a radius the last
        look would have certified. It never affects validity.
    final_share : float, default 0.5
        The share of α spent at the last look, in (0, 1).
    align : bool, default True
        Add each target radius's aligned look to the grid.
    generator : torch.Generator, optional
        Source of the noise; the same seed gives the same certificate.

    Returns
    -------
    AdaptiveCertificate
        The prediction (or ABSTAIN), its radius σ·Φ⁻¹(p_a_lower), the draws used and which
        target radii were certified.

    Raises
    ------
    ParameterError
        If an argument is out of range; the message names it.
    ValueError
        If ``classifier.sound`` is set.

    Notes
    -----
    The defaults of ``n_first`` … ``align`` are those of :class:`AdaptiveOptions`.
    """
    if not isinstance(classifier, SmoothedClassifier):
        raise ParameterError(
            "classifier", f"must be a SmoothedClassifier, got {type(classifier).__name__}"
        )
    n0 = positive_int("n0", n0)
    if classifier.sound:
        raise ValueError("certify_adaptive does not support a sound classifier (sound=True) yet")
    plan = plan_looks(
        radii, classifier.noise_sigma, alpha, n_max, n_first=n_first, growth=growth,
        final_share=final_share, futility=futility, align=align,
    )  # fmt: skip
    return run_plan(plan, lambda m: classifier.counts(x, m, generator=generator), n0)


def run_plan(plan: AdaptivePlan, draw: Callable[[int], np.ndarray], n0: int) -> AdaptiveCertificate:
    """Steps 1, 3 and 4 for any source of draws: ``draw(m)`` returns the class counts of m fresh
    noisy evaluations of the base classifier (``SmoothedClassifier.counts``, or a simulation)."""
    counts_selection = np.asarray(draw(n0))
    c_hat = int(np.argmax(counts_selection))
    counts_estimation = np.zeros_like(counts_selection)
    thresholds = np.asarray(plan.thresholds)
    n_max, final_level = plan.looks[-1], plan.levels[-1]
    drawn, p_a_lower, looks = 0, 0.0, 0
    for n_j, level in zip(plan.looks, plan.levels, strict=True):
        counts_estimation += np.asarray(draw(n_j - drawn))
        drawn, looks = n_j, looks + 1
        k = int(counts_estimation[c_hat])
        p_a_lower = max(p_a_lower, float(stats.lower_confidence_bound(k, n_j, level)))
        if n_j == n_max:
            break
        reach = _reach(k, n_j, n_max, final_level, plan.futility)
        if np.all((thresholds <= p_a_lower) | (thresholds > reach)):
            break

    prediction, radius = stats.certify_decision(c_hat, p_a_lower, plan.sigma)
    certified = tuple(bool(prediction != ABSTAIN and t <= p_a_lower) for t in thresholds[1:])
    return AdaptiveCertificate(
        prediction=prediction,
        radius=radius,
        n_a=int(counts_estimation[c_hat]),
        n=drawn,
        p_a_lower=p_a_lower,
        counts_selection=counts_selection,
        counts_estimation=counts_estimation,
        radii=plan.radii,
        certified=certified,
        looks=looks,
        schedule=plan.looks,
        sigma=plan.sigma,
    )


def _reach(k: int, n: int, n_max: int, final_level: float, futility: float) -> float:
    """The bound the last look would give if the n_max − n draws still to come succeeded at
    the rate U, the upper confidence bound on pA at level β (the futility level)."""
    upper = float(stats.upper_confidence_bound(k, n, futility))
    projected = k + math.floor(upper * (n_max - n))
    return float(stats.lower_confidence_bound(projected, n_max, final_level))


def _check_radii(radii: Sequence[float]) -> list[float]:
    try:
        values = [float(r) for r in radii]
    except (TypeError, ValueError):
        raise ParameterError("radii", f"must be a sequence of numbers, got {radii!r}") from None
    if not values:
        raise ParameterError("radii", "must contain at least one target radius")
    if not all(math.isfinite(r) and r >= 0 for r in values):
        raise ParameterError("radii", f"must be finite and >= 0, got {values}")
    return sorted(set(values))
