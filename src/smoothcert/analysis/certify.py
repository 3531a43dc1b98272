"""The numbers of certify runs (Cohen et al. §4, Appendices D and E, Figure 8): approximate
certified accuracy and its Theorem 6 lower bound, the average certified radius, re-analysis
from the stored counts under another bound, α or n, and the best run per radius."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from smoothcert._util.checks import ParameterError, one_of, probability
from smoothcert.certify import stats
from smoothcert.runs.store import RunStore

DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)
BOUNDS = ("cohen", "li", "lecuyer")


@dataclass
class RunSummary:
    """Certified accuracy of one run (or one re-analysis of it) at the requested radii.

    Attributes
    ----------
    name : str
        The run's label in tables and plots.
    radii : list of float
        The radii the accuracies are at.
    certified_accuracy : list of float
        Approximate certified accuracy at each radius (NaN where not measured: an adaptive
        run beyond its target radii).
    lower_bound : list of float
        Theorem 6's lower bound on it at each radius, at confidence 1 − rho.
    acr : float
        Average certified radius.
    num_examples : int
        Examples in the run.
    sigma : float
        The run's noise level σ.
    n : int
        Its estimation draws per example.
    alpha : float
        Its failure probability per example.
    bound : str, default "cohen"
        The radius formula: "cohen", "li" or "lecuyer".
    rho : float, default 0.001
        The failure probability of ``lower_bound`` (at each radius).
    per_example : dict of str to numpy.ndarray
        ``"radius"`` and ``"correct"`` per example (for plots and further analyses).
    """

    name: str
    radii: list[float]
    certified_accuracy: list[float]
    lower_bound: list[float]  # Theorem 6 at confidence 1 − rho
    acr: float
    num_examples: int
    sigma: float
    n: int
    alpha: float
    bound: str = "cohen"
    rho: float = 0.001
    per_example: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def check_radii(radii: Sequence[float]) -> list[float]:
    """The radii as floats; a non-empty list of finite numbers >= 0, else a ValueError.

    A NaN radius would compare False everywhere and print an all-zero column, so it is refused
    rather than tabulated; a str is refused because it is a sequence of characters."""
    problem = "must be a non-empty list of numbers >= 0"
    if isinstance(radii, str | bytes) or np.ndim(radii) != 1:
        raise ParameterError("radii", f"{problem}, got {radii!r}")
    try:
        values = np.asarray(radii, dtype=float)
    except (TypeError, ValueError):
        raise ParameterError("radii", f"{problem}, got {radii!r}") from None
    if values.size == 0:
        raise ParameterError("radii", f"{problem}, got an empty list")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ParameterError("radii", f"must all be finite and >= 0, got {values.tolist()}")
    return values.tolist()


def _per_example(radius: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``radius`` and ``correct`` as 1-D arrays of one entry per example, checked to match.

    numpy would broadcast a single ``correct`` flag over every radius (or the reverse) and
    return a plausible but meaningless accuracy; and the mean over no examples is undefined,
    not 0."""
    radius, correct = np.asarray(radius, float), np.asarray(correct, bool)
    if radius.ndim != 1 or radius.shape != correct.shape:
        raise ValueError(
            "radius and correct must be 1-D with one entry per example each, got shapes "
            f"{radius.shape} and {correct.shape}"
        )
    if radius.size == 0:
        raise ValueError("radius and correct are empty: no examples to average over")
    if np.any(np.isnan(radius)):
        raise ValueError("radius contains NaN: every example needs a radius (0 if abstained)")
    return radius, correct


def certified_accuracy(
    radius: np.ndarray, correct: np.ndarray, radii: Sequence[float]
) -> np.ndarray:
    """Approximate certified accuracy (Cohen et al. §4): mean of 1[correct and radius ≥ r].

    Parameters
    ----------
    radius : numpy.ndarray
        1-D, each example's certified radius (0 when it abstained).
    correct : numpy.ndarray
        1-D bool, whether each example's certified prediction is its label (False when it
        abstained).
    radii : sequence of float
        The radii r to evaluate at, finite and >= 0.

    Returns
    -------
    numpy.ndarray
        The certified accuracy at each radius.

    Raises
    ------
    ValueError
        If ``radius`` and ``correct`` are not 1-D of one length, are empty or ``radius``
        holds NaN; ParameterError (a ValueError) if ``radii`` is invalid.

    Examples
    --------
    >>> import numpy as np
    >>> radius = np.array([0.0, 0.3, 0.6, 0.9])
    >>> correct = np.array([False, True, True, False])
    >>> certified_accuracy(radius, correct, [0.0, 0.25, 0.5, 0.75])
    array([0.5 , 0.5 , 0.25, 0.  ])
    """
    radius, correct = _per_example(radius, correct)
    return np.array([np.mean(correct & (radius >= r)) for r in check_radii(radii)])


def average_certified_radius(radius: np.ndarray, correct: np.ndarray) -> float:
    """ACR: mean of radius·1[correct] over all examples (abstentions contribute 0).

    Parameters
    ----------
    radius : numpy.ndarray
        1-D, each example's certified radius (0 when it abstained).
    correct : numpy.ndarray
        1-D bool, whether each example's certified prediction is its label.

    Returns
    -------
    float
        The average certified radius, in input units.

    Raises
    ------
    ValueError
        If ``radius`` and ``correct`` are not 1-D of one length, are empty or ``radius``
        holds NaN.

    Examples
    --------
    >>> import numpy as np
    >>> radius = np.array([0.0, 0.3, 0.6, 0.9])
    >>> correct = np.array([False, True, True, False])
    >>> round(average_certified_radius(radius, correct), 6)  # (0.3 + 0.6) / 4
    0.225
    """
    radius, correct = _per_example(radius, correct)
    return float(np.mean(np.where(correct, radius, 0.0)))


def reanalyze(
    rows: Sequence[dict[str, Any]],
    sigma: float,
    alpha: float,
    *,
    bound: str = "cohen",
    n: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Radius and correctness of every example recomputed from its stored counts.

    ĉA is the top class of the selection counts (as CERTIFY chose it); pA_lower is the
    Clopper–Pearson bound at level ``alpha`` on nA out of n — or, with ``n`` given, on
    round(nA/n_run · n) out of n (Figure 8, middle: same proportion, another sample size).
    The radius follows ``bound`` with pB = 1 − pA_lower: "cohen" (Theorem 1), "li" or
    "lecuyer" (Appendix I). pA_lower < ½ abstains, as in CERTIFY.

    Parameters
    ----------
    rows : sequence of dict
        A certify run's rows (:func:`load_certify_run`), each with ``label``, ``n``,
        ``counts_selection`` and ``counts_estimation``.
    sigma : float
        The noise level σ of the run.
    alpha : float
        The failure probability of the recomputed bound, in (0, 1).
    bound : {"cohen", "li", "lecuyer"}, default "cohen"
        The radius formula.
    n : int, optional
        Project to this many estimation draws, keeping each example's proportion nA/n.

    Returns
    -------
    radius : numpy.ndarray
        Each example's radius (0 when it abstains).
    correct : numpy.ndarray
        Whether each example is certified with its label.

    Raises
    ------
    ParameterError
        If ``bound`` is not one of the three.

    Examples
    --------
    The second example (540 of 1000 draws) abstains at n = 1000; at the same proportion with
    n = 100000 it is certified:

    >>> rows = [
    ...     {"label": 1, "n": 1000,
    ...      "counts_selection": [0, 100], "counts_estimation": [10, 990]},
    ...     {"label": 0, "n": 1000,
    ...      "counts_selection": [60, 40], "counts_estimation": [540, 460]},
    ... ]
    >>> radius, correct = reanalyze(rows, sigma=0.25, alpha=0.001)
    >>> radius.round(4), correct
    (array([0.4945, 0.    ]), array([ True, False]))
    >>> radius, correct = reanalyze(rows, sigma=0.25, alpha=0.001, n=100_000)
    >>> radius.round(4), correct
    (array([0.5725, 0.022 ]), array([ True,  True]))
    """
    one_of("bound", bound, BOUNDS)
    if not rows:
        return np.zeros(0), np.zeros(0, bool)
    labels = np.array([r["label"] for r in rows])
    c_hat = np.array([int(np.argmax(r["counts_selection"])) for r in rows])
    n_run = np.array([r["n"] for r in rows], dtype=float)
    n_a = np.array([r["counts_estimation"][c] for r, c in zip(rows, c_hat, strict=True)], float)
    if n is not None:
        n_a, n_run = np.round(n_a / n_run * n), np.full_like(n_run, n)
    p_a = np.asarray(stats.lower_confidence_bound(n_a, n_run, alpha), float)
    certified = p_a >= 0.5
    p_use = np.where(certified, p_a, 0.5)
    if bound == "cohen":
        radius = np.asarray(stats.radius_cohen(p_use, 1 - p_use, sigma), float)
    elif bound == "li":
        radius = np.asarray(stats.radius_li(p_use, 1 - p_use, sigma), float)
    else:
        radius = np.asarray(stats.radius_lecuyer(p_use, 1 - p_use, sigma), float)
    radius = np.where(certified, radius, 0.0)
    correct = certified & (c_hat == labels)
    return radius, correct


def _summary(
    name: str,
    radius: np.ndarray,
    correct: np.ndarray,
    radii: Sequence[float],
    *,
    sigma: float,
    n: int,
    alpha: float,
    rho: float,
    bound: str,
) -> RunSummary:
    acc = certified_accuracy(radius, correct, radii)
    m = len(radius)
    lower = _theorem6(acc, m, alpha, rho)
    return RunSummary(
        name=name,
        radii=list(map(float, radii)),
        certified_accuracy=acc.tolist(),
        lower_bound=np.atleast_1d(lower).tolist(),
        acr=average_certified_radius(radius, correct),
        num_examples=m,
        sigma=sigma,
        n=n,
        alpha=alpha,
        bound=bound,
        rho=rho,
        per_example={"radius": radius, "correct": correct},
    )


def _theorem6(acc: np.ndarray, m: int, alpha: float, rho: float) -> np.ndarray:
    """Theorem 6's lower bound at each certified accuracy ``acc`` of ``m`` examples; NaN where
    ``acc`` is NaN (not measured) and everywhere when α > ½ (the theorem needs α ≤ ½)."""
    acc = np.asarray(acc, float)
    if alpha > 0.5:
        return np.full(acc.shape, np.nan)
    counts = np.round(np.nan_to_num(acc) * m).astype(int)
    lower = np.asarray(stats.certified_accuracy_lower_bound(counts, m, alpha, rho), float)
    return np.where(np.isfinite(acc), lower, np.nan)


def load_certify_run(path: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Config and rows of a certify run; a run with no rows yet is refused, since certified
    accuracy over no examples is undefined (a table of zeros would read as a result)."""
    with RunStore.read(path) as store:
        if store.kind != "certify":
            raise ValueError(f"{path} is a {store.kind!r} run, expected a certify run")
        config, rows = store.config, store.rows()
    if not rows:
        raise ValueError(
            f"{path} has no rows yet: certify at least one example before analysing the run"
        )
    return config, rows


def _as_path_list(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list:
    # One path is a run, not a sequence of one-character file names.
    if isinstance(paths, str | os.PathLike):
        return [paths]
    return list(paths)


def analyze(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    radii: Sequence[float] = DEFAULT_RADII,
    *,
    names: Sequence[str] | None = None,
    rho: float = 0.001,
) -> list[RunSummary]:
    """Certified accuracy, its lower bound and the ACR of certify runs.

    Certified accuracy at radius r is the fraction of examples certified correct with radius
    ≥ r (abstentions count as wrong); the lower bound is Cohen et al.'s Theorem 6 (Appendix D),
    holding with probability 1 − ``rho``; ACR is the mean of radius·1[correct].

    Parameters
    ----------
    paths : str, os.PathLike or sequence of them
        One certify run file or several.
    radii : sequence of float
        L2 radii in input units.
    names : sequence of str, optional
        One name per run; default the file stems.
    rho : float, default 0.001
        Failure probability of the lower bound, in (0, 1).

    Returns
    -------
    list of RunSummary
        One per run, in the order of ``paths``.

    Raises
    ------
    ValueError
        If no path is given, names and paths differ in number, a radius or ``rho`` is out of
        range, or a file is not a certify run.
    FileNotFoundError
        If a run file does not exist.
    """
    paths = _as_path_list(paths)
    if not paths:
        raise ValueError("paths must name at least one certify run")
    if isinstance(names, str):
        names = [names]
    if names is not None and len(names) != len(paths):
        raise ValueError(f"got {len(names)} names for {len(paths)} runs")
    radii = check_radii(radii)
    # Checked up front: it is otherwise only looked at once a run's lower bound is computed.
    probability("rho", rho)
    out = []
    for i, path in enumerate(paths):
        config, rows = load_certify_run(path)
        radius = np.array([r["radius"] for r in rows], float)
        correct = np.array([bool(r["correct"]) and r["prediction"] >= 0 for r in rows])
        name = names[i] if names is not None else Path(path).stem
        summary = _summary(
            name,
            radius,
            correct,
            radii,
            sigma=config["sigma"],
            n=config["n"],
            alpha=config["alpha"],
            rho=rho,
            bound="cohen",
        )
        if config.get("adaptive_radii"):
            summary = _adaptive_view(summary, max(config["adaptive_radii"]))
        out.append(summary)
    return out


ENVELOPE_NOTE = "max of {k} noisy estimates, biased upward"
"""What the envelope row's label adds to its name (``k`` the number of runs)."""


def best_per_radius(summaries: Sequence[RunSummary], name: str = "best") -> RunSummary:
    """The upper envelope of several runs' certified accuracy: at each radius, the best run's
    value (the "best σ per radius" curve of Cohen et al.), labelled as such.

    The run is chosen after seeing the results, so the envelope is the maximum of K noisy
    estimates: biased upward, not an estimate of any one classifier's accuracy. Its label is
    ``name`` followed by that caveat (:data:`ENVELOPE_NOTE`). Its lower bound is the chosen
    run's Theorem 6 bound at ρ/K instead of ρ (Bonferroni over the K runs, ρ the smallest of
    the runs' ``rho``): all K bounds then hold together with probability ≥ 1 − ρ, so the one
    chosen does too, whichever it is. No ACR (it would mix classifiers).

    Parameters
    ----------
    summaries : sequence of RunSummary
        The K runs, at the same radii.
    name : str, default "best"
        The start of the envelope's label.

    Returns
    -------
    RunSummary
        The envelope: no examples of its own, ACR and σ NaN.

    Raises
    ------
    ValueError
        If ``summaries`` is empty or their radii differ.
    """
    if not summaries:
        raise ValueError("summaries must hold at least one run summary")
    radii = shared_radii(summaries)
    k = len(summaries)
    rho = min(s.rho for s in summaries) / k
    acc = np.array([s.certified_accuracy for s in summaries], float)
    lower = np.array([_theorem6(s.certified_accuracy, s.num_examples, s.alpha, rho)
                      for s in summaries])  # fmt: skip
    filled = np.where(np.isfinite(acc), acc, -np.inf)
    best = filled.argmax(axis=0)
    cols = np.arange(len(radii))
    measured = np.isfinite(filled[best, cols])
    return RunSummary(
        name=f"{name} ({ENVELOPE_NOTE.format(k=k)})" if k > 1 else name,
        radii=radii,
        certified_accuracy=np.where(measured, acc[best, cols], np.nan).tolist(),
        lower_bound=np.where(measured, lower[best, cols], np.nan).tolist(),
        acr=float("nan"),
        num_examples=min(s.num_examples for s in summaries),
        sigma=float("nan"),
        n=min(s.n for s in summaries),
        alpha=max(s.alpha for s in summaries),
        rho=rho * k,
    )


def _adaptive_view(summary: RunSummary, largest_target: float) -> RunSummary:
    """An adaptive run stops sampling once its target radii are decided, so beyond the largest
    target its radii say when it stopped, not what n samples would certify: accuracies there
    are not measured (NaN, shown as "—"), nor is the ACR, which depends on the targets."""
    beyond = np.asarray(summary.radii) > largest_target + 1e-12
    acc = np.where(beyond, np.nan, summary.certified_accuracy)
    lower = np.where(beyond, np.nan, summary.lower_bound)
    return dataclasses.replace(
        summary, certified_accuracy=acc.tolist(), lower_bound=lower.tolist(), acr=float("nan")
    )


def bound_comparison(
    path: str | os.PathLike,
    radii: Sequence[float] = DEFAULT_RADII,
    *,
    alphas: Sequence[float] = (0.01, 0.001, 0.0001, 0.00001),
    ns: Sequence[int] = (1_000, 10_000, 100_000, 1_000_000, 10_000_000),
    rho: float = 0.001,
) -> dict[str, list[RunSummary]]:
    """Cohen et al.'s Figure 8: one fixed-n run re-analysed under other bounds, n and α.

    Certified accuracy of the run re-analysed from its stored counts under each radius bound,
    at other sample sizes n and at other α.

    The three groups are the figure's panels: (left) the radius under Cohen's bound
    (Theorem 1), Li's and Lecuyer's (Appendix I) at the run's n and α; (middle) Cohen's bound
    projected to each n of ``ns`` keeping the empirical proportion nA/n (labelled "projected at
    the observed nA/n" where n is not the run's own: a projection, not a measurement); (right)
    Cohen's bound at each α of ``alphas`` (:func:`reanalyze`).

    The radii use the σ that scaled the run's noise (its info's ``sigma_noise``: σ rounded to
    float32 for float32 models), as CERTIFY's did; the requested σ for runs that predate that
    record.

    Parameters
    ----------
    path : str or os.PathLike
        A certify run file of a fixed-n, standard (not sound) run.
    radii : sequence of float
        L2 radii in input units.
    alphas : sequence of float
        Failure probabilities for the right panel.
    ns : sequence of int
        Sample sizes for the middle panel.
    rho : float, default 0.001
        Failure probability of Theorem 6's lower bound, in (0, 1).

    Returns
    -------
    dict of str to list of RunSummary
        ``"bounds"`` (one summary per bound: cohen, li, lecuyer), ``"n"`` (one per n) and
        ``"alpha"`` (one per α).

    Raises
    ------
    ValueError
        If a radius or ``rho`` is out of range, the file is not a certify run or has no rows,
        or the run is adaptive or sound (its bounds are not the standard ones).
    """
    radii = check_radii(radii)
    # Checked up front: it is otherwise only looked at once a run's lower bound is computed.
    probability("rho", rho)
    config, rows = load_certify_run(path)
    if config.get("adaptive_radii") is not None:
        # Its bounds were taken at α/J over several looks: a fixed-n re-analysis would be wrong.
        raise ValueError(f"{path} is an adaptive run; Figure 8's re-analysis needs a fixed-n run")
    if config.get("sound"):
        # Its pA bounds include the noise table's total-variation term, which this re-analysis
        # of the standard bounds would drop.
        raise ValueError(f"{path} is a sound run; Figure 8's re-analysis covers standard runs")
    sigma, n_run, alpha = _noise_sigma(path, config), config["n"], config["alpha"]
    kw = {"rho": rho}
    by_bound = []
    for bound in BOUNDS:
        radius, correct = reanalyze(rows, sigma, alpha, bound=bound)
        by_bound.append(
            _summary(
                bound, radius, correct, radii, sigma=sigma, n=n_run, alpha=alpha, bound=bound, **kw
            )
        )
    by_n = []
    for n in ns:
        radius, correct = reanalyze(rows, sigma, alpha, n=n)
        by_n.append(
            _summary(
                f"n = {n:,}" if n == n_run else f"n = {n:,} ({PROJECTED})",
                radius,
                correct,
                radii,
                sigma=sigma,
                n=n,
                alpha=alpha,
                bound="cohen",
                **kw,
            )
        )
    by_alpha = []
    for a in alphas:
        radius, correct = reanalyze(rows, sigma, a)
        by_alpha.append(
            _summary(
                f"{100 * (1 - a):g}% confidence",
                radius,
                correct,
                radii,
                sigma=sigma,
                n=n_run,
                alpha=a,
                bound="cohen",
                **kw,
            )
        )
    return {"bounds": by_bound, "n": by_n, "alpha": by_alpha}


PROJECTED = "projected at the observed nA/n"
"""The label of Figure 8's rows at an n other than the run's."""


def _noise_sigma(path: str | os.PathLike, config: dict[str, Any]) -> float:
    """The σ that scaled a certify run's noise (and its radii): the run's recorded
    ``sigma_noise``, else (a run from before it was recorded) the requested σ."""
    with RunStore.read(path) as store:
        recorded = store.info.get("sigma_noise")
    return float(recorded) if recorded is not None else float(config["sigma"])


def shared_radii(summaries: Sequence[RunSummary]) -> list[float]:
    """The radii every summary was computed at: the table has one column per radius, so a
    summary at other radii would put its numbers under the wrong heading."""
    first = summaries[0]
    for s in summaries[1:]:
        if list(s.radii) != list(first.radii):
            raise ValueError(
                f"summaries must share the same radii to be tabulated together: run "
                f"{first.name!r} has radii {first.radii} but run {s.name!r} has {s.radii}; "
                "analyze them with the same radii"
            )
    return list(first.radii)
