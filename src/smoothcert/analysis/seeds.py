"""Differences between two training methods over several training seeds, evaluated on the same
test images, with a standard error that covers both the choice of test images and the choice
of training seed.

The model
---------
Method A is trained with seeds s = 1..k and method B with seeds s = 1..k (the seeds of the two
methods are paired by position only to form differences; they are independent runs). Each
model is evaluated on the same N test images i; y_{A,s,i} ∈ {0, 1} says whether A's model of
seed s is correct on image i (robust at the radius). Write d_{s,i} = y_{A,s,i} − y_{B,s,i} and
decompose it as in a two-way layout without replication::

    d_{s,i} = μ + a_s + b_i + e_{s,i},

a_s the seed effect (variance σ_a², both methods' seed-to-seed variation), b_i the image
effect (σ_b²: which images are hard for one method and not the other), e_{s,i} the seed ×
image interaction (σ_e²: which images a particular model gets wrong). The estimate is the
mean difference D̄ = mean_{s,i} d_{s,i} = mean_s d_s = mean_i D_i, with d_s the per-seed
difference of accuracies (mean over images) and D_i the per-image difference averaged over
seeds. Regarding seeds and images as random samples,

    Var(D̄) = σ_a²/k + σ_b²/N + σ_e²/(kN).

The estimator
-------------
The two natural pieces are V_S = var_s(d_s)/k and V_I = var_i(D_i)/N (sample variances,
ddof = 1). Their expectations are E V_S = σ_a²/k + σ_e²/(kN) and E V_I = σ_b²/N + σ_e²/(kN),
so the sum V_S + V_I counts the interaction twice: it is conservative, and by a factor that
need not be small for 0/1 outcomes, where a model's individual mistakes (σ_e²) are a large
part of the variance. With the residual mean square of the two-way layout,
MS_E = Σ_{s,i} (d_{s,i} − d_s − D_i + D̄)² / ((k − 1)(N − 1)), E MS_E = σ_e², and

    SE² = V_S + V_I − MS_E/(kN)

is unbiased for Var(D̄) (the ANOVA estimator of the two-way random-effects model; the same
form as a variance clustered on seeds and on images, V_S + V_I − V_SI). It can come out
below one of its own parts only by chance; it is then raised to max(V_S, V_I), each of which
is at most Var(D̄) in expectation. This is the estimator used, rather than V_S + V_I, for
that reason. With one seed (k = 1) there is no seed term: the SE is the paired standard error
over images, sd_i(d_{1,i})/√N, which covers image sampling only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class SeedDifference:
    """Mean over seeds of a paired difference and its standard errors.

    Attributes
    ----------
    mean : float
        D̄, the mean over seeds and images of A − B.
    se : float
        Its standard error over seeds and images (see the module's docstring); with one seed,
        over images only.
    se_images : float
        √V_I: the part over test images alone (what one would report from the seed-averaged
        per-image differences, ignoring that the seeds are a sample).
    se_seeds : float
        √V_S: the part over seeds alone (NaN with one seed).
    per_seed : tuple of float
        d_s, the difference of the accuracies of each pair of seeds.
    seeds : int
        k.
    images : int
        N, the shared test images.
    df : float
        ν, Satterthwaite's degrees of freedom of SE² (module docstring); N − 1 with one seed.
    """

    mean: float
    se: float
    se_images: float
    se_seeds: float
    per_seed: tuple[float, ...]
    seeds: int
    images: int
    df: float

    def critical(self, level: float = 0.95) -> float:
        """t_{(1 + level)/2, ν}: how many standard errors a two-sided test at ``level`` asks
        of |D̄|.

        >>> round(SeedDifference(0.1, 0.04, 0.02, 0.03, (0.1,) * 3, 3, 100, 2.0).critical(), 3)
        4.303
        """
        return float(stats.t.ppf((1 + level) / 2, self.df))

    def significant(self, level: float = 0.95) -> bool:
        """Whether |D̄| > :meth:`critical` × SE (a difference called at two-sided 1 − level)."""
        return abs(self.mean) > self.critical(level) * self.se


def seed_difference(a: np.ndarray, b: np.ndarray) -> SeedDifference:
    """A − B from per-seed, per-image outcomes, with the standard error over seeds and images.

    Parameters
    ----------
    a, b : numpy.ndarray
        Shape [k, N]: outcome (e.g. 1 = correct) of each method's model of seed s on image i,
        the same N images in the same order, seeds paired by position.

    Returns
    -------
    SeedDifference
        D̄ and SE = √max(V_S + V_I − MS_E/(kN), V_S, V_I) (module docstring).

    Raises
    ------
    ValueError
        If the shapes differ, are not 2-D, or there are fewer than two images.

    Examples
    --------
    Two seeds, three images: d = [[1, 0, 0], [1, 1, 0]], d_s = (1/3, 2/3), D_i = (1, ½, 0);
    V_S = (1/18)/2, V_I = (1/4)/3, MS_E = (1/3)/2, so SE² = 1/36 + 1/12 − 1/36 = 1/12:

    >>> r = seed_difference(np.array([[1, 1, 0], [1, 1, 1]]), np.array([[0, 1, 0], [0, 0, 1]]))
    >>> round(r.mean, 4), round(r.se_seeds, 4), round(r.se_images, 4), round(r.se, 4)
    (0.5, 0.1667, 0.2887, 0.2887)

    Satterthwaite: ν = (1/12)² / ((1/36)²/1 + (1/12)²/2 + (1/36)²/2) = 1.5, so a difference
    needs t_{0.975, 1.5} ≈ 6.0 standard errors:

    >>> round(r.df, 3), round(r.critical(), 2), r.significant()
    (1.5, 6.02, False)
    """
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"a and b must be [seeds, images] of one shape, got {a.shape}, {b.shape}")
    k, n = a.shape
    if k < 1 or n < 2:
        raise ValueError(f"need at least one seed and two images, got {k} and {n}")
    d = a - b
    per_seed, per_image, mean = d.mean(1), d.mean(0), float(d.mean())
    v_images = float(per_image.var(ddof=1)) / n
    if k == 1:
        se = math.sqrt(v_images)
        return SeedDifference(
            mean, se, se, float("nan"), tuple(per_seed.tolist()), k, n, float(n - 1)
        )
    v_seeds = float(per_seed.var(ddof=1)) / k
    residual = d - per_seed[:, None] - per_image[None, :] + mean
    ms_e = float((residual**2).sum()) / ((k - 1) * (n - 1))
    terms = [(v_seeds, k - 1), (v_images, n - 1), (-ms_e / (k * n), (k - 1) * (n - 1))]
    var = sum(t for t, _ in terms)
    if var < max(v_seeds, v_images):  # raised to one part: that part's degrees of freedom
        var, df = max(terms[:2])
    else:
        df = _satterthwaite(terms)
    return SeedDifference(
        mean=mean,
        se=math.sqrt(var),
        se_images=math.sqrt(v_images),
        se_seeds=math.sqrt(v_seeds),
        per_seed=tuple(per_seed.tolist()),
        seeds=k,
        images=n,
        df=float(df),
    )


def _satterthwaite(terms: list[tuple[float, int]]) -> float:
    """ν = (Σ c_j M_j)² / Σ (c_j M_j)²/ν_j for terms (c_j M_j, ν_j); infinite when every term
    is zero (nothing varies, so the SE of 0 is exact)."""
    denominator = sum(t * t / df for t, df in terms)
    return sum(t for t, _ in terms) ** 2 / denominator if denominator > 0 else math.inf


def attack_seed_differences(
    a: Sequence[dict], b: Sequence[dict], eps: Sequence[float]
) -> tuple[int, dict[float, SeedDifference | None]]:
    """:func:`seed_difference` of two lists of attack runs (``read_attack`` results; A's and
    B's seeds paired by position) at each radius, on the images every one of the runs
    attacked; the outcome is robust accuracy (not fooled at any radius up to ε).

    Returns
    -------
    (int, dict)
        The shared images, and radius -> the difference (None where a run lacks the radius
        or fewer than two images are shared).

    Raises
    ------
    ValueError
        If the two lists differ in length or are empty.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"need as many runs of A as of B (seeds paired), got {len(a)}, {len(b)}")
    runs = [*a, *b]
    positions = [{r["idx"]: j for j, r in enumerate(run["rows"])} for run in runs]
    shared = sorted(set.intersection(*(set(p) for p in positions)))
    out: dict[float, SeedDifference | None] = {}
    for e in eps:
        if len(shared) < 2 or any(e not in run["eps"] for run in runs):
            out[e] = None
            continue
        y = np.array(
            [
                run["robust"][[pos[i] for i in shared], run["eps"].index(e)]
                for run, pos in zip(runs, positions, strict=True)
            ],
            float,
        )
        out[e] = seed_difference(y[: len(a)], y[len(a) :])
    return len(shared), out
