"""Our certify runs beside published numbers, with standard errors: certified accuracy and ACR,
ours minus published, and the methods ranked by ACR.

What each standard error covers
-------------------------------
Ours is one training run certified on ``n_o`` test examples: a certified accuracy p_o is a
proportion over those examples, with binomial variance p_o(1 − p_o)/n_o; the ACR is a mean of
radius·1[correct] over them, with variance s²/n_o (s the sample standard deviation of
radius·1[correct]). These cover the sampling of test images (and the Monte Carlo noise of
each example's certificate, which is part of each example's outcome); not the variation from
one training seed to another, since we train one seed.

A published value p_p is the mean over k runs (training seeds) of the accuracy over the
whole test set of n_p examples: its variance is p_p(1 − p_p)/n_p (test-image sampling) plus
sd²/k (sd the standard deviation over those runs, when published), see
:func:`difference_se`. The difference treats the two sides as independent. Where our
examples are part of the published test set (MNIST: every 20th image of the same 10,000) the
two test samples overlap; the overlap correlates them positively, which makes the summed
variance an overstatement, by at most 2·n_shared/(n_o·n_p) times the per-image covariance:
the standard error is conservative there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the fields a published row may carry besides its accuracies
ROW_FIELDS = ("accuracy", "n", "sd", "runs", "acr", "acr_sd", "note")

#: what the standard errors of :func:`difference_se` and :func:`acr_difference_se` cover,
#: as the report states it
SE_COVERS = (
    "test-image sampling on both sides; seed-to-seed variation of the published runs where "
    "given; not our own seed variation: one training seed"
)


@dataclass(frozen=True)
class PublishedRow:
    """One published row: certified accuracy per radius and what is known of its spread.

    Attributes
    ----------
    accuracy : tuple of float
        Certified accuracy at each radius of the section (the mean over ``runs`` runs).
    n : int or None
        Test examples behind each run's value (None: unknown; then its image-sampling term
        is left out).
    sd : tuple of float or None
        Standard deviation over the runs at each radius (None: not published, or one run).
    runs : int
        k, the runs the values are a mean of.
    acr : float or None
        The published ACR (mean over the runs).
    acr_sd : float or None
        Its standard deviation over the runs.
    note : str
        Free text shown beside the row (e.g. the hyperparameters).
    """

    accuracy: tuple[float, ...]
    n: int | None = None
    sd: tuple[float, ...] | None = None
    runs: int = 1
    acr: float | None = None
    acr_sd: float | None = None
    note: str = ""


def published_row(value: Any, where: str = "paper row") -> PublishedRow:
    """A row of a ``[paper]`` table: a list of accuracies, or a table with ``accuracy`` and
    optional ``n``, ``sd`` (a list, one per radius), ``runs``, ``acr``, ``acr_sd``, ``note``.

    Raises
    ------
    ValueError
        On an unknown field, a missing ``accuracy``, an ``sd`` of another length than
        ``accuracy``, or ``n`` or ``runs`` below 1.
    """
    if isinstance(value, Mapping):
        unknown = set(value) - set(ROW_FIELDS)
        if unknown or "accuracy" not in value:
            raise ValueError(
                f"{where}: a row table needs 'accuracy' and may have {', '.join(ROW_FIELDS[1:])}"
                f"; got {sorted(value)}"
            )
        accuracy = tuple(float(v) for v in value["accuracy"])
        sd = value.get("sd")
        if sd is not None:
            sd = tuple(float(v) for v in sd)
            if len(sd) != len(accuracy):
                raise ValueError(f"{where}: sd has {len(sd)} values, accuracy {len(accuracy)}")
        n, runs = value.get("n"), int(value.get("runs", 1))
        if (n is not None and int(n) < 1) or runs < 1:
            raise ValueError(f"{where}: n and runs must be >= 1, got n={n!r}, runs={runs!r}")
        acr, acr_sd = value.get("acr"), value.get("acr_sd")
        return PublishedRow(
            accuracy=accuracy,
            n=None if n is None else int(n),
            sd=sd,
            runs=runs,
            acr=None if acr is None else float(acr),
            acr_sd=None if acr_sd is None else float(acr_sd),
            note=str(value.get("note", "")),
        )
    return PublishedRow(accuracy=tuple(float(v) for v in value))


def difference_se(
    p_ours: float,
    n_ours: int,
    p_published: float,
    n_published: int | None = None,
    sd: float | None = None,
    runs: int = 1,
) -> float:
    """Standard error of p_ours − p_published:
    √(p_o(1 − p_o)/n_o + p_p(1 − p_p)/n_p + sd²/k).

    The first term is our test-image sampling (binomial over our n_o examples), the second
    the published test-image sampling (left out when n_p is unknown), the third the variance
    of a mean over k published runs with standard deviation sd between runs (left out when
    not given). Our own seed-to-seed variation is not included (one training seed). At
    p_o = 0 or 1 the binomial term is 0 though the true proportion need not be: a difference
    there is marked on the published side's spread alone, so read it with our n_o in mind.

    Examples
    --------
    >>> round(difference_se(0.9, 100, 0.8, 10_000, sd=0.01, runs=4), 6)
    0.030676
    """
    var = p_ours * (1 - p_ours) / n_ours
    if n_published:
        var += p_published * (1 - p_published) / n_published
    if sd is not None and math.isfinite(sd):
        var += sd**2 / runs
    return math.sqrt(max(var, 0.0))


def acr_with_se(radius: np.ndarray, correct: np.ndarray) -> tuple[float, float, float]:
    """ACR, its standard error over the examples and the per-example standard deviation.

    ACR = mean of v_i = radius_i·1[correct_i]; SE = sd(v)/√n with the sample standard
    deviation (ddof = 1): test-image sampling (and each certificate's Monte Carlo noise), not
    seed-to-seed variation. NaN SE for fewer than two examples.

    Examples
    --------
    >>> acr, se, sd = acr_with_se(np.array([0.0, 1.0, 2.0, 1.0]), np.array([1, 1, 1, 0], bool))
    >>> acr, round(se, 6)
    (0.75, 0.478714)
    """
    v = np.where(np.asarray(correct, bool), np.asarray(radius, float), 0.0)
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    sd = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    return float(v.mean()), sd / math.sqrt(v.size), sd


def acr_difference_se(se_ours: float, sd_ours: float, row: PublishedRow) -> float:
    """Standard error of ACR_ours − ACR_published: √(SE_o² + s²/n_p + acr_sd²/k).

    SE_o is ours over our examples (:func:`acr_with_se`); s²/n_p is the published run's
    test-image sampling, with the per-example standard deviation of radius·1[correct] taken
    from OUR run (the logs' own is not published in the table; the two models' ACRs are close,
    so is this spread) and left out when n_p is unknown; acr_sd²/k the variance of a mean over
    k published runs, when given."""
    var = se_ours**2
    if row.n and math.isfinite(sd_ours):
        var += sd_ours**2 / row.n
    if row.acr_sd is not None:
        var += row.acr_sd**2 / row.runs
    return math.sqrt(var)


def beyond_two_se(difference: float, se: float) -> bool:
    """Whether |difference| > 2·SE (with SE = 0, any non-zero difference)."""
    return math.isfinite(difference) and math.isfinite(se) and abs(difference) > 2 * se


@dataclass(frozen=True)
class RankedRun:
    """One line of :func:`rank_by_acr`."""

    name: str
    acr: float
    se: float
    published: float | None
    rank: int | None  # ours, 1 = largest ACR; None without an ACR
    published_rank: int | None  # among the rows with a published ACR


def _ranks(values: Sequence[float | None]) -> list[int | None]:
    """Competition ranks (1 = largest; ties share the best rank); None for a missing value."""
    present = [v for v in values if v is not None and math.isfinite(v)]
    return [
        None if v is None or not math.isfinite(v) else 1 + sum(w > v for w in present)
        for v in values
    ]


def rank_by_acr(
    acr: Mapping[str, tuple[float, float]], published: Mapping[str, float | None] | None = None
) -> list[RankedRun]:
    """The runs ordered by our ACR (largest first), with the rank in ours and in the
    published ACRs (the same runs' published values; runs without one get no published rank).
    Runs without an ACR (NaN) come last, unranked.

    Parameters
    ----------
    acr : mapping of str to (float, float)
        Run name -> (ACR, its standard error).
    published : mapping of str to float or None, optional
        Run name -> published ACR.

    Examples
    --------
    >>> rows = rank_by_acr({"a": (0.5, 0.01), "b": (0.7, 0.01)}, {"a": 0.9, "b": 0.8})
    >>> [(r.name, r.rank, r.published_rank) for r in rows]
    [('b', 1, 2), ('a', 2, 1)]
    """
    published = published or {}
    names = list(acr)
    ours = _ranks([acr[k][0] for k in names])
    theirs = _ranks([published.get(k) for k in names])
    rows = [
        RankedRun(k, acr[k][0], acr[k][1], published.get(k), ours[i], theirs[i])
        for i, k in enumerate(names)
    ]
    return sorted(rows, key=lambda r: (r.rank is None, r.rank or 0))


def paired_acr_difference(
    a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]]
) -> tuple[int, float, float]:
    """ACR of run ``a`` minus run ``b`` (certify rows with ``idx``, ``radius``, ``correct``,
    ``prediction``) on the examples both certified: (shared examples, mean of the per-example
    difference of radius·1[correct], its paired standard error sd(D)/√n over those examples).

    The pairing removes the variation between test images that both runs share; the SE covers
    image sampling and certification noise, not seed-to-seed variation."""

    def value(r: Mapping[str, Any]) -> float:
        ok = bool(r["correct"]) and r["prediction"] >= 0
        return float(r["radius"]) if ok else 0.0

    va = {r["idx"]: value(r) for r in a}
    vb = {r["idx"]: value(r) for r in b}
    shared = sorted(va.keys() & vb.keys())
    if not shared:
        return 0, float("nan"), float("nan")
    d = np.array([va[i] - vb[i] for i in shared])
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")
    return len(shared), float(d.mean()), se
