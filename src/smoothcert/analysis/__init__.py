"""Analyses of certify and predict runs (Cohen et al. §4, Appendices D and E, Figures 6 and 8).

- approximate certified accuracy at radius r: the fraction of examples certified correct with
  radius ≥ r (abstentions count as wrong), and its high-probability lower bound (Theorem 6);
- average certified radius (ACR): mean of radius·1[correct];
- re-analysis from the stored counts: the radius under the Lecuyer or Li bounds, under another
  α, or projected to another n keeping the empirical proportion nA/n (Figure 8);
- PREDICT's five outcome categories against a large-n reference run (Table 4).

Everything returns plain data; formatting and plotting are separate functions.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
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
    counts = np.round(acc * m).astype(int)
    if alpha <= 0.5:
        lower = np.asarray(stats.certified_accuracy_lower_bound(counts, m, alpha, rho), float)
    else:  # Theorem 6 needs α ≤ ½: no lower bound for such a run (shown as "—")
        lower = np.full(len(acc), np.nan)
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
        per_example={"radius": radius, "correct": correct},
    )


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


def best_per_radius(summaries: Sequence[RunSummary], name: str = "best") -> RunSummary:
    """The upper envelope of several runs' certified accuracy: at each radius, the best run's
    value and that run's Theorem-6 bound (the "best σ per radius" curve of Cohen et al.).

    The choice is made after seeing the results, so the envelope is a summary, not an
    estimate of any one classifier's accuracy. No ACR (it would mix classifiers).
    """
    if not summaries:
        raise ValueError("summaries must hold at least one run summary")
    radii = _shared_radii(summaries)
    acc = np.array([s.certified_accuracy for s in summaries], float)
    lower = np.array([s.lower_bound for s in summaries], float)
    filled = np.where(np.isfinite(acc), acc, -np.inf)
    best = filled.argmax(axis=0)
    cols = np.arange(len(radii))
    measured = np.isfinite(filled[best, cols])
    return RunSummary(
        name=name,
        radii=radii,
        certified_accuracy=np.where(measured, acc[best, cols], np.nan).tolist(),
        lower_bound=np.where(measured, lower[best, cols], np.nan).tolist(),
        acr=float("nan"),
        num_examples=min(s.num_examples for s in summaries),
        sigma=float("nan"),
        n=min(s.n for s in summaries),
        alpha=max(s.alpha for s in summaries),
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
    projected to each n of ``ns`` keeping the empirical proportion nA/n; (right) Cohen's bound
    at each α of ``alphas`` (:func:`reanalyze`).

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
    sigma, n_run, alpha = config["sigma"], config["n"], config["alpha"]
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
                f"n = {n:,}",
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


# --------------------------------------------------------------------------- PREDICT (Table 4)

PREDICT_CATEGORIES = (
    "correct, accurate",
    "correct, inaccurate",
    "incorrect, accurate",
    "incorrect, inaccurate",
    "abstain",
)


# What a reference run must share with the predict run for its top class to be g(x) of the
# same smoothed classifier on the same inputs (examples are matched by dataset index alone).
REFERENCE_KEYS = ("dataset", "split", "model_sha256", "sigma")
_REFERENCE_COUNTS = {"certify": "counts_estimation", "predict": "counts"}


def check_reference(
    reference_path: str | os.PathLike, config: Mapping[str, Any] | None = None
) -> None:
    """Refuse a reference run for :func:`predict_categories` that does not exist or is not a
    certify or predict run, and (given the predict run's ``config``) one whose dataset, split,
    model fingerprint or σ differs. Cheap: callers check before a long predict run."""
    path = Path(reference_path)
    if not path.exists():
        raise FileNotFoundError(f"reference run {path} does not exist")
    with RunStore.read(path) as ref:
        kind, ref_config = ref.kind, ref.config
    if kind not in _REFERENCE_COUNTS:
        raise ValueError(f"reference {path} is a {kind!r} run; need certify or predict")
    for key in REFERENCE_KEYS if config is not None else ():
        if ref_config.get(key) != config.get(key):
            raise ValueError(
                f"reference run {path} has {key} {ref_config.get(key)!r} but the predict run "
                f"has {config.get(key)!r}: it must be a run of the same model, sigma, dataset "
                "and split"
            )
    if config is not None:
        # bf16 and fp32 base classifiers are different smoothed classifiers: g(x) may differ.
        ours, theirs = config.get("precision", "fp32"), ref_config.get("precision", "fp32")
        if ours != theirs:
            raise ValueError(
                f"reference run {path} has precision {theirs!r} but the predict run has "
                f"{ours!r}: it must be a run of the same precision"
            )


def check_independent_noise(
    predict_kind: str,
    predict_config: Mapping[str, Any],
    predict_seed: int | None,
    reference_kind: str,
    reference_config: Mapping[str, Any],
    reference_seed: int | None,
) -> None:
    """Refuse a reference run whose noise overlaps the predict run's: the same seed and the
    same noise stream (:func:`smoothcert.runs.certify.noise_stream`), e.g. a predict run from
    before the predict stream against a certify run of the same seed. PREDICT's draws would
    then be the reference's own, and "accurate" would count agreement with itself."""
    from smoothcert.runs.certify import noise_stream

    if predict_seed is None or reference_seed is None or int(predict_seed) != int(reference_seed):
        return
    if noise_stream(predict_kind, dict(predict_config)) == noise_stream(
        reference_kind, dict(reference_config)
    ):
        raise ValueError(
            f"the reference run draws the same noise as the predict run (seed {predict_seed}, "
            "same noise stream): its top class is not an independent estimate of g(x); use a "
            "reference with another seed"
        )


def predict_categories(
    predict_path: str | os.PathLike, reference_path: str | os.PathLike
) -> dict[str, float]:
    """Table 4: fractions of PREDICT outcomes. "correct" = the true label; "accurate" = g(x),
    taken (as in the paper) to be the top class of the reference run's counts — a certify run
    (its estimation counts) or a predict run with a larger n — of the same model and σ on the
    same examples (:func:`check_reference`), at the same precision, whose noise is independent
    of the predict run's (:func:`check_independent_noise`)."""
    with RunStore.read(predict_path) as store:
        if store.kind != "predict":
            raise ValueError(f"{predict_path} is a {store.kind!r} run, expected a predict run")
        rows, config, seed = store.rows(), store.config, store.info.get("seed_used")
    check_reference(reference_path, config)
    with RunStore.read(reference_path) as ref:
        check_independent_noise(
            "predict", config, seed, ref.kind, ref.config, ref.info.get("seed_used")
        )
        key = _REFERENCE_COUNTS[ref.kind]
        reference = {r["idx"]: (r["label"], int(np.argmax(r[key]))) for r in ref.rows()}
    common = [r for r in rows if r["idx"] in reference]
    if not common:
        raise ValueError("the predict run and the reference run share no examples")
    for r in common:
        # A last guard for runs whose configs name no dataset (library runs).
        if reference[r["idx"]][0] != r["label"]:
            raise ValueError(
                f"example {r['idx']} has label {r['label']} in the predict run but "
                f"{reference[r['idx']][0]} in the reference run {reference_path}: not the same "
                "examples"
            )
    tally = dict.fromkeys(PREDICT_CATEGORIES, 0)
    for r in common:
        if r["prediction"] < 0:
            tally["abstain"] += 1
            continue
        correct = "correct" if r["prediction"] == r["label"] else "incorrect"
        accurate = "accurate" if r["prediction"] == reference[r["idx"]][1] else "inaccurate"
        tally[f"{correct}, {accurate}"] += 1
    return {k: v / len(common) for k, v in tally.items()}


# --------------------------------------------------------------------------- formatting


def _shared_radii(summaries: Sequence[RunSummary]) -> list[float]:
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


def format_table(
    summaries: Sequence[RunSummary], fmt: str = "markdown", *, lower_bound: bool = False
) -> str:
    """Certified accuracy per radius, one row per summary, as in Tables 2–3; then ACR.

    The best value per radius is marked (bold in markdown and LaTeX, a trailing * in CSV)
    when there is more than one row; a value not measured (NaN) prints as "—" (empty in CSV).

    Parameters
    ----------
    summaries : sequence of RunSummary
        The rows, all at the same radii.
    fmt : {"markdown", "latex", "csv"}, default "markdown"
        The table format.
    lower_bound : bool, default False
        Tabulate Theorem 6's lower bounds instead of the certified accuracies.

    Returns
    -------
    str
        The table, lines joined by newlines (no trailing newline).

    Raises
    ------
    ValueError
        If ``fmt`` is unknown, ``summaries`` is empty or the summaries' radii differ.

    Examples
    --------
    >>> a = RunSummary("sigma=0.25", [0.0, 0.5], [0.9, 0.6], [0.88, 0.58], 0.52, 500, 0.25,
    ...                100_000, 0.001)
    >>> b = RunSummary("sigma=0.50", [0.0, 0.5], [0.8, 0.65], [0.78, 0.63], 0.61, 500, 0.5,
    ...                100_000, 0.001)
    >>> print(format_table([a, b]))
    | run | r = 0 | r = 0.5 | ACR |
    |---|---|---|---|
    | sigma=0.25 | **0.900** | 0.600 | 0.520 |
    | sigma=0.50 | 0.800 | **0.650** | 0.610 |
    >>> print(format_table([a, b], "csv"))
    run,r = 0,r = 0.5,ACR
    sigma=0.25,0.900*,0.600,0.520
    sigma=0.50,0.800,0.650*,0.610
    """
    if fmt not in ("markdown", "latex", "csv"):
        raise ValueError(f"format must be markdown, latex or csv, got {fmt!r}")
    if not summaries:
        raise ValueError("nothing to tabulate")
    radii = _shared_radii(summaries)
    values = np.array([s.lower_bound if lower_bound else s.certified_accuracy for s in summaries])
    # NaN = not measured (an adaptive run beyond its targets): never "best"
    best = np.array([np.nanmax(c) if np.isfinite(c).any() else np.nan for c in values.T])
    header = ["run", *(f"r = {r:g}" for r in radii), "ACR"]
    lines = []
    missing = "" if fmt == "csv" else "—"

    def number(v: float) -> str:
        return f"{v:.3f}" if np.isfinite(v) else missing

    def mark(v: float, is_best: bool) -> str:
        text = number(v)
        if is_best and len(summaries) > 1:
            return {"markdown": f"**{text}**", "latex": f"\\textbf{{{text}}}", "csv": f"{text}*"}[
                fmt
            ]
        return text

    body = [
        [s.name, *(mark(v, v == b) for v, b in zip(values[i], best, strict=True)), number(s.acr)]
        for i, s in enumerate(summaries)
    ]
    if fmt == "markdown":
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in body]
    elif fmt == "latex":
        lines.append("\\begin{tabular}{l" + "c" * (len(header) - 1) + "}")
        lines.append(" & ".join(h.replace("_", "\\_") for h in header) + " \\\\ \\hline")
        lines += [" & ".join(c.replace("_", "\\_") for c in row) + " \\\\" for row in body]
        lines.append("\\end{tabular}")
    else:
        lines.append(",".join(header))
        lines += [",".join(row) for row in body]
    return "\n".join(lines)


def check_plot_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path, refused unless its suffix is a file type matplotlib writes: without
    one matplotlib silently appends ".png" and the figure lands somewhere else than asked."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    kinds = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in kinds:
        raise ValueError(
            f"plot path {path} must end in a file type matplotlib can write "
            f"({', '.join('.' + k for k in sorted(kinds))}), got suffix {path.suffix!r}"
        )
    if path.is_dir():
        raise ValueError(f"plot path {path} is a directory")
    return path


def _check_groups(groups: Mapping[str, Sequence[RunSummary]]) -> None:
    if not groups:
        raise ValueError("groups must hold at least one panel of run summaries, got none")
    for group, summaries in groups.items():
        if not summaries:
            raise ValueError(f"group {group!r} has no run summaries to plot")


def plot_curves(
    groups: dict[str, Sequence[RunSummary]], path: str | os.PathLike, *, title: str | None = None
) -> None:
    """Plot certified accuracy against radius, one line per summary (Figure 6 style).

    One panel per group (e.g. Figure 8's three panels); the curves are computed from each
    summary's per-example radii, so they are exact between the tabulated radii.

    Parameters
    ----------
    groups : dict of str to sequence of RunSummary
        Panel title -> the summaries plotted in it (each with ``per_example``).
    path : str or os.PathLike
        The figure file; its suffix (``.png``, ``.pdf``, ``.svg``, ...) picks the format.
        Missing parent folders are made.
    title : str, optional
        A title over all panels.

    Raises
    ------
    ValueError
        If ``path`` has no suffix matplotlib writes or is a folder, or a group is empty.
    """
    path = check_plot_path(path)
    _check_groups(groups)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), squeeze=False)
    for ax, (group, summaries) in zip(axes[0], groups.items(), strict=True):
        r_max = max(
            max(float(np.max(s.per_example["radius"], initial=0.0)), *s.radii, 0.0)
            for s in summaries
        )
        grid = np.linspace(0.0, r_max * 1.05 + 1e-9, 400)
        for s in summaries:
            curve = certified_accuracy(s.per_example["radius"], s.per_example["correct"], grid)
            ax.plot(grid, curve, label=s.name)
        ax.set_xlabel("L2 radius")
        ax.set_ylabel("certified accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.set_title(group)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
