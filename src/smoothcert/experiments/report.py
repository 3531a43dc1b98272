"""The report of an experiment: our tables beside the paper's, the scale, the machine, the time
each stage took, and the run file behind every number.

The ``[report]`` table of an experiment file lists sections, each a ``kind`` with its inputs
(paths may use the scale's variables):

- ``training``: ``runs = {label = "TRAIN_DIR"}``: the last epoch's accuracies and the noisy
  accuracy per epoch (whether training had converged);
- ``certified-accuracy``: ``runs = {label = "RUN.db"}``, ``radii``, optional
  ``paper = "KEY"`` naming a table of ``[paper]`` (rows by label, one value per radius) and
  ``plot = "FILE.png"``: certified accuracy, Theorem 6's lower bound, ACR, the paper's numbers
  and ours − published ± its standard error (a row may be a table with ``accuracy``, ``n``,
  ``sd``, ``runs``, ``acr``, ``acr_sd``, ``yardstick``, ``logs``:
  :mod:`smoothcert.analysis.compare`), on the same test images with paired standard errors
  where the row's logs have per-example results; a run without
  a row gets the matching published yardstick's (``experiments/published/*.json``,
  :mod:`smoothcert.analysis.yardsticks`; ``published = false`` turns that off,
  ``published = true`` on in a section without ``paper``);
- ``agreement``: ``a``/``b`` two certify runs of the same model (e.g. adaptive and fixed n)
  and ``radii``: certified accuracy of both on the examples they share, and how often their
  predictions agree;
- ``predict``: ``runs = {label = "PREDICT.db"}`` and ``reference``: Table 4's categories,
  optional ``paper`` (its rows are labelled by the table's ``label``, default "paper", and its
  ``source`` is printed below them);
- ``figure8``: ``run``, ``radii``, ``plot``: Cohen et al.'s Figure 8, the Lecuyer/Li bounds
  and the n and α projections (:func:`smoothcert.analysis.bound_comparison`);
- ``attack``: ``runs = {label = "ATTACK.db"}``: accuracy under attack per radius, optional
  ``differences`` (pairs of labels, A − B on shared images) and ``plot`` (accuracy against
  radius with binomial standard errors);
- ``dcert``: ``run`` and optional ``plot``: the distributional bound's and estimate's tables,
  and the estimate against the worst case on the same rows (paired standard errors);
- ``ranking``: ``runs = {label = "RUN.db"}`` and optional ``paper``: the runs ranked by ACR
  (± its standard error), the published ACR and rank beside each;
- ``seed-differences``: ``groups = {label = ["SEED0.db", "SEED1.db", ...]}`` (attack runs)
  and ``differences`` (pairs of labels): per radius, the mean over seeds of A − B on the
  shared test images, ± a standard error covering seeds and images;
- ``rho``: ``runs = {label = "RHO.json"}`` (from ``rho --json``), optional ``paper``: the
  transport costs ρ, ρ_adv and the matched radius ε = √ρ_adv (the NAL paper's Eq. 8);
- ``notes``: ``text``: a paragraph of the experiment file, as written.

Any of these paths may be ``{stage = "NAME"}`` instead: the output of that stage
(:mod:`.references`).

A section whose runs do not exist yet says so, so a report can be written at any time.
All numbers come from :mod:`smoothcert.analysis` (one module per run kind: certify, predict,
attack, dcert, training) and the run readers: the report adds none.
"""

from __future__ import annotations

import collections
import math
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from smoothcert._util.atomic import atomic_write_text
from smoothcert.experiments.comparisons import (
    PUBLISHED_FOLDER,
    attack_differences,
    dcert_same_rows,
    ranking,
    seed_differences,
    versus_published,
    with_published,
)
from smoothcert.experiments.references import resolve_stages
from smoothcert.experiments.schedule import path_within, stage_outputs
from smoothcert.experiments.spec import Experiment, Stage
from smoothcert.experiments.status import StageStatus, experiment_status, format_seconds

REPORT_FILE = "report.md"


def write_report(experiment: Experiment) -> Path:
    """Write ``results/NAME/SCALE/report.md`` and its figures beside it.

    The report can be written at any time: a section whose runs do not exist yet says so.

    Parameters
    ----------
    experiment : Experiment
        From :func:`smoothcert.experiments.load_experiment`; its ``[report]`` table lists the
        sections.

    Returns
    -------
    Path
        The report's path (``experiment.results_dir / "report.md"``).

    Raises
    ------
    ValueError
        If a report section has an unknown ``kind``.
    """
    out_dir = experiment.results_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    status = experiment_status(experiment)
    unfinished = _unfinished_outputs(status)
    lines = _header(experiment)
    for i, section in enumerate(experiment.report.get("sections", []), 1):
        section = experiment.substitute(resolve_stages(experiment, section))
        kind = section.get("kind")
        writer = _SECTIONS.get(kind)
        if writer is None:
            raise ValueError(
                f"{experiment.path}: report section {i} has unknown kind {kind!r}; "
                f"kinds are {', '.join(_SECTIONS)}"
            )
        lines += ["", f"## {section.get('title', kind)}", ""]
        lines += _partial_notice(section, unfinished)
        lines += writer(experiment, section, out_dir)
    lines += ["", *_stages_table(status)]
    path = out_dir / REPORT_FILE
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


def _header(experiment: Experiment) -> list[str]:
    from smoothcert import __version__
    from smoothcert._util.hardware import cpu_bf16_native, cpu_capability
    from smoothcert.runs.store import machine_info

    m = machine_info()
    native = {True: "native bf16", False: "bf16 emulated", None: "bf16 support not known"}
    machine = (
        f"{m['platform']}, {m['cpus']} CPUs (capability {cpu_capability()}, "
        f"{native[cpu_bf16_native()]}), torch {m['torch']}"
        + (f", {m['cuda']}" if m.get("cuda") else ", no GPU")
    )
    return [
        f"# {experiment.title}",
        "",
        f"Scale **{experiment.scale}** of `{experiment.path.as_posix()}` "
        f"(reproduce: `smoothcert experiment run {experiment.path.as_posix()} "
        f"--scale {experiment.scale}`). Written {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by "
        f"smoothcert {__version__} on {machine}.",
        *(
            ["", str(experiment.variables["about"]).strip()]
            if "about" in experiment.variables
            else []
        ),
    ]


def _stages_table(status: list[StageStatus]) -> list[str]:
    lines = [
        "## Stages",
        "",
        "| stage | status | progress | time spent | precision | command |",
        "|---|---|---|---|---|---|",
    ]
    for s in status:
        lines.append(
            f"| {s.stage.name} | {s.status} | {s.progress} | {format_seconds(s.seconds)} | "
            f"{_stage_precision(s.stage)} | `{s.stage.command}` |"
        )
    return lines


def _stage_precision(stage: Stage) -> str:
    """The arithmetic a stage's output records (what ``--precision auto`` chose), or "" when
    the stage has written nothing yet. Commands without --precision compute in fp32."""
    import json

    from smoothcert.runs.store import stored_config

    command, out = stage.argv[0], stage.option("--out")
    if out is None:
        return "fp32"
    path = Path(out)
    try:
        if command == "train":
            recorded = json.loads((path / "config.json").read_text()).get("precision")
        elif path.is_file():
            recorded = (stored_config(path) or {}).get("precision", "fp32")
        else:
            recorded = None
    except (OSError, ValueError):
        return ""
    return recorded or ""


def _unfinished_outputs(status: list[StageStatus]) -> dict[str, str]:
    """Absolute output path -> "stage NAME running, 37/100 examples" for every stage that has
    started (its output exists) but is not done: the numbers read from it are partial."""

    found = {}
    for st in status:
        if st.status == "done":
            continue
        for out in stage_outputs(st.stage) or []:
            if Path(out).exists():
                progress = f", {st.progress}" if st.progress else ""
                found[out] = f"stage `{st.stage.name}` {st.status}{progress}"
    return found


def _partial_notice(section: dict, unfinished: dict[str, str]) -> list[str]:
    """A warning line naming the runs of ``section`` whose stages have not finished."""
    paths = dict(section.get("runs", {}))
    paths |= {key: section[key] for key in ("run", "a", "b", "reference") if key in section}
    for label, group in section.get("groups", {}).items():  # seed-differences: lists of runs
        paths |= {f"{label}, run {i}": p for i, p in enumerate(group)}
    partial = []
    for label, path in paths.items():
        if not isinstance(path, str):
            continue
        p = os.path.abspath(path)
        hit = next((why for out, why in unfinished.items() if path_within(p, [out])), None)
        if hit:
            partial.append(f"{label} ({hit})")
    if not partial:
        return []
    return [
        f"**Partial:** not finished yet, so their numbers will change: {'; '.join(partial)}.",
        "",
    ]


def _producer(experiment: Experiment, path: str) -> Stage | None:
    for stage in experiment.stages:
        if stage.option("--out") == path:
            return stage
    return None


def _sources(experiment: Experiment, paths: dict[str, str]) -> list[str]:
    lines = ["", "Run files:"]
    for label, path in paths.items():
        stage = _producer(experiment, path)
        made = f" — stage `{stage.name}`" if stage else ""
        lines.append(f"- {label}: `{path}`{made}")
    return lines


def _missing(paths: dict[str, str]) -> list[str]:
    return [f"- {label}: `{p}` (not run yet)" for label, p in paths.items() if not Path(p).exists()]


def _num(v: float, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if v is not None and math.isfinite(v) else "—"


# ------------------------------------------------------------------------------- sections


def _training(experiment: Experiment, section: dict, out_dir: Path) -> list[str]:
    from smoothcert.analysis.training import training_summary
    from smoothcert.training.outputs import read_metrics

    runs: dict[str, str] = section["runs"]
    lines = [
        "| model | epochs | train acc | test acc | test acc under noise | last-5-epoch change "
        "(noisy test acc) | seconds per epoch: median (fastest) |",
        "|---|---|---|---|---|---|---|",
    ]
    curves: dict[str, list[float]] = {}
    for label, run_dir in runs.items():
        rows = read_metrics(run_dir)
        if rows is None:
            lines.append(f"| {label} | not run yet | | | | | |")
            continue
        if not rows:
            continue
        s = training_summary(rows)
        curves[label] = s.noisy
        lines.append(
            f"| {label} | {s.last['epoch']} | {_num(s.last['train_acc'])} | "
            f"{_num(s.last.get('test_acc', float('nan')))} | {_num(s.noisy[-1])} | "
            f"{'+' if s.trend >= 0 else ''}{_num(s.trend)} | "
            f"{s.median_seconds:.0f} ({s.fastest_seconds:.0f}) |"
        )
    if curves and section.get("plot"):
        by_epoch = {k: (list(range(1, len(v) + 1)), v, None) for k, v in curves.items()}
        _plot_lines(
            by_epoch, out_dir / section["plot"], "epoch", "test accuracy under noise (base model)"
        )
        lines += ["", f"![noisy test accuracy per epoch]({section['plot']})"]
    return lines + _sources(experiment, runs)


Curve = tuple[list[float], list[float], list[float] | None]  # x, y, y's standard error


def _plot_lines(curves: dict[str, Curve], path: Path, xlabel: str, ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, (xs, ys, se) in curves.items():
        ax.errorbar(xs, ys, yerr=se, marker=".", capsize=2, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _certified_accuracy(experiment: Experiment, section: dict, out_dir: Path) -> list[str]:
    from smoothcert.analysis import analyze, best_per_radius, format_table, plot_curves

    runs: dict[str, str] = section["runs"]
    radii = [float(r) for r in section["radii"]]
    present = {k: v for k, v in runs.items() if Path(v).exists()}
    lines = _missing(runs)
    if not present:
        return lines or ["(no runs)"]
    summaries = analyze(list(present.values()), radii, names=list(present))
    envelope = bool(section.get("envelope")) and len(summaries) > 1
    if envelope:
        summaries.append(best_per_radius(summaries, section["envelope"]))
    if lines:
        lines.append("")
    lines += ["Certified accuracy (fraction of the examples certified correct at radius ≥ r):", ""]
    lines.append(format_table(summaries))
    lines += ["", "Theorem 6 lower bound on each certified accuracy (each radius separately):", ""]
    lines.append(format_table(summaries, lower_bound=True))
    if envelope:
        k = len(summaries) - 1
        lines += [
            "",
            f"The last row takes, at each radius, the largest of the {k} runs' values: a maximum "
            "of noisy estimates, chosen after seeing them, so biased upward. Its lower bound is "
            f"the chosen run's at ρ/{k} (Bonferroni over the {k} runs), so that it holds "
            "whichever run is chosen.",
        ]
    paper = with_published(experiment, section, present, radii)
    if paper:
        lines += ["", *versus_published(experiment, summaries, paper, present, radii)]
    mixes = "; ".join(f"{name}: {_class_mix(path)}" for name, path in present.items())
    lines += ["", f"Examples per run: {mixes}."]
    if section.get("plot"):
        curves = [s for s in summaries if s.per_example]  # the envelope has no examples
        plot_curves({section.get("title", "certified accuracy"): curves}, out_dir / section["plot"])
        lines += ["", f"![certified accuracy against radius]({section['plot']})"]
    return lines + _sources(experiment, runs)


def _class_mix(path: str) -> str:
    """``"500 (35–69 per class, 10 classes)"``: a run's examples and the fewest and most of one
    class, so that a reader sees the certified examples mix the classes (a periodic data order
    need not)."""
    from smoothcert.analysis import load_certify_run

    labels = [r["label"] for r in load_certify_run(path)[1] if r.get("label") is not None]
    counts = sorted(collections.Counter(labels).values())
    if not counts:
        return "0"
    return f"{len(labels)} ({counts[0]}–{counts[-1]} per class, {len(counts)} classes)"


def _agreement(experiment: Experiment, section: dict, out_dir: Path) -> list[str]:
    from smoothcert.analysis import load_certify_run
    from smoothcert.analysis.compare import run_agreement

    paths = {"a": section["a"], "b": section["b"]}
    labels = {"a": section.get("a_label", "a"), "b": section.get("b_label", "b")}
    lines = _missing({labels[k]: v for k, v in paths.items()})
    if lines:
        return lines
    radii = [float(r) for r in section["radii"]]
    g = run_agreement(*(load_certify_run(paths[k])[1] for k in ("a", "b")), radii)
    if g is None:
        return ["The two runs share no examples yet."]
    header = ["run", *(f"r = {r:g}" for r in radii)]
    lines = [
        f"On the {g.shared} examples both runs certified:",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for k, acc in (("a", g.accuracy_a), ("b", g.accuracy_b)):
        lines.append(f"| {labels[k]} | " + " | ".join(_num(v) for v in acc) + " |")
    lines += [
        "",
        f"Same prediction (class or abstention) on {g.same_prediction}/{g.shared} examples; "
        f"mean samples per example: {labels['a']} {g.mean_samples_a:.0f}, "
        f"{labels['b']} {g.mean_samples_b:.0f}.",
    ]
    return lines + _sources(experiment, {labels[k]: v for k, v in paths.items()})


def _predict(experiment: Experiment, section: dict, out_dir: Path) -> list[str]:
    from smoothcert.analysis import PREDICT_CATEGORIES, predict_categories

    runs: dict[str, str] = section["runs"]
    reference = section["reference"]
    lines = _missing(runs | {"reference": reference})
    lines += [""] if lines else []
    present = {k: v for k, v in runs.items() if Path(v).exists()}
    if not present or not Path(reference).exists():
        return lines or ["(no runs)"]
    header = ["run", *PREDICT_CATEGORIES]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    published = experiment.paper.get(section.get("paper", ""), {})
    paper = published.get("rows", {})
    # A published table may come from another dataset or model: its own label says which.
    source_label = str(published.get("label", "paper"))
    for label, path in present.items():
        cats = predict_categories(path, reference)
        lines.append(
            f"| {label} | " + " | ".join(_num(cats[c], 2) for c in PREDICT_CATEGORIES) + " |"
        )
        if label in paper:
            lines.append(
                f"| {label} ({source_label}) | "
                + " | ".join(f"{v:.2f}" for v in paper[label])
                + " |"
            )
    if any(label in paper for label in present):
        source = " ".join(str(published.get("source", "the paper")).split())
        lines += ["", f"Rows marked ({source_label}): {source}."]
    return lines + _sources(experiment, present | {"reference": reference})


def _figure8(experiment: Experiment, section: dict, out_dir: Path) -> list[str]:
    from smoothcert.analysis import bound_comparison, format_table, plot_curves

    run = section["run"]
    if not Path(run).exists():
        return [f"`{run}` not run yet."]
    radii = [float(r) for r in section["radii"]]
    groups = bound_comparison(run, radii)
    headings = {
        "bounds": "by bound (the run's n and α)",
        "n": "other n, projected at the observed nA/n (an extrapolation, not a measurement)",
        "alpha": "other α (the run's n)",
    }
    lines = []
    for name, summaries in groups.items():
        lines += [f"**{headings.get(name, name)}**", "", format_table(summaries), ""]
    if section.get("plot"):
        plot_curves(groups, out_dir / section["plot"])
        lines += [f"![Figure 8]({section['plot']})"]
    return lines + _sources(experiment, {"run": run})


def _attack(experiment: Experiment, section: dict, out_dir: Path) -> list[str]:
    from smoothcert.analysis.attack import binomial_se
    from smoothcert.runs.attack import OLD_NOISY_EVALUATION, read_attack

    runs: dict[str, str] = section["runs"]
    lines = _missing(runs)
    lines += [""] if lines else []
    present = {k: v for k, v in runs.items() if Path(v).exists()}
    table: dict[str, tuple[list[float], list[float], int]] = {}
    old: list[str] = []  # noisy runs of the evaluation before the common random numbers
    for label, path in present.items():
        result = read_attack(path)  # robust at ε: not fooled at any radius up to ε
        if result["count"]:
            acc = [result["accuracy"][e] for e in result["eps"]]
            table[label] = (result["eps"], acc, result["count"])
        if result.get("evaluation") == OLD_NOISY_EVALUATION:
            old.append(label)
    if old:
        lines += [
            "Made with the old evaluation of models under noise (fresh votes at every radius, "
            "which lowers the accuracy the more radii are listed): " + ", ".join(old) + ". "
            "Delete their run files and their stages' entries in experiment-state.json, "
            "then run the experiment again.",
            "",
        ]
    if not table:
        return lines or ["(no runs)"]
    all_eps = sorted({e for eps, _, _ in table.values() for e in eps})
    header = ["model", "examples", *(f"ε = {e:g}" for e in all_eps)]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, (eps, acc, n) in table.items():
        by_eps = dict(zip(eps, acc, strict=True))
        cells = [_num(by_eps.get(e, float("nan"))) for e in all_eps]
        lines.append(f"| {label} | {n} | " + " | ".join(cells) + " |")
    for pair in section.get("differences", []):
        if not (isinstance(pair, list) and len(pair) == 2 and all(p in runs for p in pair)):
            raise ValueError(
                f"{experiment.path}: the differences of section {section.get('title')!r} must "
                f"be pairs of its runs' labels, got {pair!r}"
            )
    pairs = [(a, b) for a, b in section.get("differences", []) if a in present and b in present]
    if pairs:
        lines += ["", *attack_differences(present, pairs, all_eps, len(header))]
    if section.get("plot"):
        _plot_lines(
            {k: (eps, acc, binomial_se(acc, n)) for k, (eps, acc, n) in table.items()},
            out_dir / section["plot"],
            "L2 radius ε",
            "accuracy under attack",
        )
        lines += ["", f"![accuracy under attack against radius]({section['plot']})"]
    return lines + _sources(experiment, present)


def _dcert(experiment: Experiment, section: dict, out_dir: Path) -> list[str]:
    from smoothcert.analysis.dcert import dcert_report, plot_dcert
    from smoothcert.runs.dcert_file import read_dcert

    run = section["run"]
    if not Path(run).exists():
        return [f"`{run}` not run yet."]
    result = read_dcert(run)
    lines = [dcert_report(result), "", *dcert_same_rows(result)]
    if section.get("plot"):
        plot_dcert(result, out_dir / section["plot"], title=section.get("title"))
        lines += ["", f"![estimate and worst-case loss]({section['plot']})"]
    return lines + _sources(experiment, {"run": run})


def _ranking(experiment: Experiment, section: dict, out_dir: Path) -> list[str]:
    runs: dict[str, str] = section["runs"]
    lines = _missing(runs)
    lines += [""] if lines else []
    present = {k: v for k, v in runs.items() if Path(v).exists()}
    if not present:
        return lines or ["(no runs)"]
    paper = with_published(experiment, section, present, [0.0])
    lines += ranking(present, paper, Path(experiment.path).parent / PUBLISHED_FOLDER)
    return lines + _sources(experiment, present)


def _seed_differences(experiment: Experiment, section: dict, out_dir: Path) -> list[str]:
    groups: dict[str, list[str]] = section["groups"]
    pairs = section.get("differences", [])
    for pair in pairs:
        if not (isinstance(pair, list) and len(pair) == 2 and all(p in groups for p in pair)):
            raise ValueError(
                f"{experiment.path}: the differences of section {section.get('title')!r} must "
                f"be pairs of its groups' labels, got {pair!r}"
            )
    every = {f"{label}, run {i}": p for label, ps in groups.items() for i, p in enumerate(ps)}
    lines = _missing(every)
    lines += [""] if lines else []
    lines += seed_differences(groups, [tuple(p) for p in pairs])
    present = {k: v for k, v in every.items() if Path(v).exists()}
    return lines + _sources(experiment, present)


def _rho(experiment: Experiment, section: dict, out_dir: Path) -> list[str]:
    from smoothcert.runs.rho import read_rho

    runs: dict[str, str] = section["runs"]
    lines = _missing(runs)
    lines += [""] if lines else []
    paper = experiment.paper.get(section.get("paper", ""), {}).get("rows", {})
    lines += [
        "| model | γ | σ | examples | ρ (with noise) | ρ_adv | ε = √ρ_adv | ε (paper) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    present = {k: v for k, v in runs.items() if Path(v).exists()}
    for label, path in present.items():
        r = read_rho(path)
        published = paper.get(label)
        lines.append(
            f"| {label} | {r['gamma']:g} | {r['sigma']:g} | {r['examples']} | "
            f"{r['rho']:.4f} ± {r['rho_se']:.4f} | {r['rho_adv']:.4f} ± {r['rho_adv_se']:.4f} | "
            f"{r['eps']:.3f} | {published if published is not None else ''} |"
        )
    return lines + _sources(experiment, present)


def _notes(experiment: Experiment, section: dict, out_dir: Path) -> list[str]:
    return [str(section.get("text", "")).strip()]


_SECTIONS: dict[str, Callable[[Experiment, dict, Path], list[str]]] = {
    "training": _training,
    "certified-accuracy": _certified_accuracy,
    "agreement": _agreement,
    "predict": _predict,
    "figure8": _figure8,
    "attack": _attack,
    "dcert": _dcert,
    "ranking": _ranking,
    "seed-differences": _seed_differences,
    "rho": _rho,
    "notes": _notes,
}
