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

Where the published per-example results are at hand (:mod:`smoothcert.analysis.yardsticks`),
:func:`paired_with_published` compares on the same test images instead: per image, ours
minus the mean of the published runs on that image, and the standard error of the mean of
those differences over our images. It covers the sampling of the test images of our subset
(with the published runs' seed-to-seed variation averaged into each image's value); not our
own seed-to-seed variation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: the fields a published row may carry besides its accuracies
ROW_FIELDS = ("accuracy", "n", "sd", "runs", "acr", "acr_sd", "note", "yardstick", "logs")

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
    yardstick : str or None
        The published yardstick (``experiments/published/<name>.json``) the row comes from,
        whose examples file holds its logs' per-example results.
    logs : tuple of str
        The published logs the row is a mean of, as the yardstick names them (empty: not
        known, so no comparison on the same images).
    """

    accuracy: tuple[float, ...]
    n: int | None = None
    sd: tuple[float, ...] | None = None
    runs: int = 1
    acr: float | None = None
    acr_sd: float | None = None
    note: str = ""
    yardstick: str | None = None
    logs: tuple[str, ...] = ()


def published_row(value: Any, where: str = "paper row") -> PublishedRow:
    """A row of a ``[paper]`` table: a list of accuracies, or a table with ``accuracy`` and
    optional ``n``, ``sd`` (a list, one per radius), ``runs``, ``acr``, ``acr_sd``, ``note``,
    ``yardstick`` and ``logs`` (the published logs it averages, which must come with the
    yardstick they are from).

    Raises
    ------
    ValueError
        On an unknown field, a missing ``accuracy``, an ``sd`` of another length than
        ``accuracy``, ``n`` or ``runs`` below 1, or ``logs`` without ``yardstick``.
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
        logs, yardstick = tuple(str(f) for f in value.get("logs", ())), value.get("yardstick")
        if logs and yardstick is None:
            raise ValueError(f"{where}: logs need the yardstick they are from")
        return PublishedRow(
            accuracy=accuracy,
            n=None if n is None else int(n),
            sd=sd,
            runs=runs,
            acr=None if acr is None else float(acr),
            acr_sd=None if acr_sd is None else float(acr_sd),
            note=str(value.get("note", "")),
            yardstick=None if yardstick is None else str(yardstick),
            logs=logs,
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


#: what the standard errors of :func:`paired_with_published` cover, as the report states it
PAIRED_SE_COVERS = (
    "the sampling of the test images of our subset (and each certificate's Monte Carlo "
    "noise), with the published runs averaged per image; not our own seed-to-seed variation: "
    "one training seed"
)


@dataclass(frozen=True)
class PairedComparison:
    """Ours against published runs on the same test images (:func:`paired_with_published`).

    Attributes
    ----------
    n : int
        Our examples, all paired.
    runs : int
        The published runs averaged per image.
    published_n : int
        Examples per published run (its whole log).
    ours, published, published_all : tuple of float
        Per radius: our certified accuracy; the published mean over runs on our images; and
        on all of each run's examples.
    difference, se : tuple of float
        Per radius: mean over our images of ours_i − theirs_i and its standard error.
    acr, acr_published, acr_published_all, acr_difference, acr_se : float
        The same for radius·1[correct].
    index_map : str or None
        How our test indices were matched to the published ones, when not as they are.
    """

    n: int
    runs: int
    published_n: int
    ours: tuple[float, ...]
    published: tuple[float, ...]
    published_all: tuple[float, ...]
    difference: tuple[float, ...]
    se: tuple[float, ...]
    acr: float
    acr_published: float
    acr_published_all: float
    acr_difference: float
    acr_se: float
    index_map: str | None = None


def _mean_se(d: np.ndarray) -> tuple[float, float]:
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")
    return float(d.mean()), se


def paired_with_published(
    ours: Sequence[Mapping[str, Any]], published: Sequence[Any], radii: Sequence[float]
) -> PairedComparison:
    """Our run against published runs on the same test images.

    For each of our examples i and radius r, ours_i = 1[correct_i and radius_i ≥ r] and
    theirs_i = the mean over the published runs of the same indicator for the same test
    index; the difference is mean(ours_i − theirs_i), its standard error
    sd(ours_i − theirs_i)/√n (ddof = 1; :data:`PAIRED_SE_COVERS` says what it covers). The
    ACR the same with radius·1[correct].

    Parameters
    ----------
    ours : sequence of mapping
        Our certify rows, each with ``idx``, ``label``, ``radius``, ``correct`` and
        ``prediction`` (an abstention, prediction −1, counts as wrong).
    published : sequence
        The published runs, each with arrays ``idx``, ``label``, ``radius``, ``correct``
        (:class:`smoothcert.analysis.yardsticks.PublishedExamples`).
    radii : sequence of float
        The radii r.

    Raises
    ------
    ValueError
        If there are no examples or no published runs, a published run lacks one of our test
        indices, or a label differs from ours at some index (another test set, or the same in
        another order: the images are then not the same).

    Examples
    --------
    >>> from types import SimpleNamespace as Run
    >>> ours = [{"idx": i, "label": 0, "radius": r, "correct": 1, "prediction": 0}
    ...         for i, r in ((0, 0.6), (2, 0.2))]
    >>> theirs = Run(idx=np.array([0, 1, 2]), label=np.zeros(3, int),
    ...              radius=np.array([0.5, 0.9, 0.7]), correct=np.ones(3, bool))
    >>> p = paired_with_published(ours, [theirs], [0.5])
    >>> p.ours, p.published, p.published_all, p.difference, p.se
    ((0.5,), (1.0,), (1.0,), (-0.5,), (0.5,))
    """
    if not ours or not published:
        raise ValueError("a paired comparison needs our examples and at least one published run")
    idx = np.array([r["idx"] for r in ours], np.int64)
    labels = np.array([r["label"] for r in ours], np.int64)
    radius = np.array([float(r["radius"]) for r in ours])
    correct = np.array([bool(r["correct"]) and r["prediction"] >= 0 for r in ours])
    picked = []
    for run in published:
        order = np.argsort(run.idx, kind="stable")
        pos = np.minimum(np.searchsorted(run.idx, idx, sorter=order), len(order) - 1)
        at = order[pos]
        missing = run.idx[at] != idx
        if missing.any():
            raise ValueError(
                f"{int(missing.sum())} of our {idx.size} test indices are not in a published "
                f"log (first: {int(idx[missing][0])})"
            )
        differ = run.label[at] != labels
        if differ.any():
            first = int(np.flatnonzero(differ)[0])
            raise ValueError(
                f"the labels differ at {int(differ.sum())} of our {idx.size} test images "
                f"(first: index {int(idx[first])}, ours {int(labels[first])}, published "
                f"{int(run.label[at][first])}): not the same images in the same order"
            )
        picked.append(at)
    mine, theirs, theirs_all, diff, se = [], [], [], [], []
    for r in radii:
        o = (correct & (radius >= r)).astype(float)
        t = np.mean([(run.correct[at] & (run.radius[at] >= r)) for run, at in
                     zip(published, picked, strict=True)], axis=0)  # fmt: skip
        d, s = _mean_se(o - t)
        mine.append(float(o.mean()))
        theirs.append(float(t.mean()))
        theirs_all.append(
            float(np.mean([np.mean(run.correct & (run.radius >= r)) for run in published]))
        )
        diff.append(d)
        se.append(s)
    o = np.where(correct, radius, 0.0)
    values = [np.where(run.correct, run.radius, 0.0) for run in published]
    t = np.mean([v[at] for v, at in zip(values, picked, strict=True)], axis=0)
    acr_d, acr_se = _mean_se(o - t)
    return PairedComparison(
        n=int(idx.size),
        runs=len(published),
        published_n=int(min(len(run.idx) for run in published)),
        ours=tuple(mine),
        published=tuple(theirs),
        published_all=tuple(theirs_all),
        difference=tuple(diff),
        se=tuple(se),
        acr=float(o.mean()),
        acr_published=float(t.mean()),
        acr_published_all=float(np.mean([v.mean() for v in values])),
        acr_difference=acr_d,
        acr_se=acr_se,
    )


@dataclass(frozen=True)
class RunAgreement:
    """Two certify runs of one model on the examples both certified (:func:`run_agreement`)."""

    shared: int  # examples both runs certified
    accuracy_a: tuple[float, ...]  # certified accuracy of run a per radius, on those examples
    accuracy_b: tuple[float, ...]
    same_prediction: int  # examples with the same prediction (a class or an abstention)
    mean_samples_a: float  # mean noise samples per example (n, or what adaptive drew)
    mean_samples_b: float


def run_agreement(
    a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], radii: Sequence[float]
) -> RunAgreement | None:
    """Certified accuracy of two runs of one model (e.g. adaptive and fixed-n CERTIFY) on the
    examples both certified, how often their predictions agree, and the samples each drew;
    None when they share no example.

    Examples
    --------
    >>> a = [{"idx": 0, "radius": 0.5, "correct": 1, "prediction": 3, "n": 100},
    ...      {"idx": 1, "radius": 0.0, "correct": 0, "prediction": -1, "n": 300}]
    >>> b = [{"idx": 1, "radius": 0.2, "correct": 1, "prediction": 2, "n": 1000}]
    >>> g = run_agreement(a, b, [0.0])
    >>> g.shared, g.accuracy_a, g.accuracy_b, g.same_prediction, g.mean_samples_b
    (1, (0.0,), (1.0,), 0, 1000.0)
    """
    from smoothcert.analysis.certify import certified_accuracy

    rows = [{r["idx"]: r for r in run} for run in (a, b)]
    shared = sorted(set(rows[0]) & set(rows[1]))
    if not shared:
        return None

    def accuracy(run: dict) -> tuple[float, ...]:
        radius = np.array([run[i]["radius"] for i in shared], float)
        correct = np.array([bool(run[i]["correct"]) and run[i]["prediction"] >= 0 for i in shared])
        return tuple(float(v) for v in certified_accuracy(radius, correct, radii))

    return RunAgreement(
        shared=len(shared),
        accuracy_a=accuracy(rows[0]),
        accuracy_b=accuracy(rows[1]),
        same_prediction=sum(rows[0][i]["prediction"] == rows[1][i]["prediction"] for i in shared),
        mean_samples_a=float(np.mean([rows[0][i]["n"] for i in shared])),
        mean_samples_b=float(np.mean([rows[1][i]["n"] for i in shared])),
    )
