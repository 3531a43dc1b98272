"""The report sections that put standard errors on comparisons (formatting only; every number
comes from :mod:`smoothcert.analysis.compare`, :mod:`smoothcert.analysis.seeds` and
:mod:`smoothcert.analysis.dcert`): ours beside the published numbers, the methods ranked by
ACR, differences over training seeds, and Figure 2(a) on the same rows."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from smoothcert.experiments.spec import Experiment


def _num(v: float | None, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if v is not None and math.isfinite(v) else "—"


def paper_table(experiment: Experiment, section: dict) -> dict:
    """The ``[paper]`` table a section names (``{}`` when it names none); a name the file
    does not define is an error, not a silently missing comparison (a key such as
    ``sigma0.25`` must be quoted in TOML, else it is two nested tables). A section that
    compares only some of the table's rows (a diagnostic run of one method) lists them in
    ``paper_rows``."""
    key = section.get("paper")
    if key is None:
        return {}
    if key not in experiment.paper:
        raise ValueError(
            f"{experiment.path}: section {section.get('title')!r} names paper table {key!r}, "
            f"which the file does not define (it has {', '.join(map(repr, experiment.paper))}; "
            'quote a key with a dot: [paper."sigma0.25"])'
        )
    table = experiment.paper[key]
    only = section.get("paper_rows")
    if only is None:
        return table
    rows = table.get("rows", {})
    unknown = [r for r in only if r not in rows]
    if unknown:
        raise ValueError(
            f"{experiment.path}: section {section.get('title')!r} lists paper_rows "
            f"{', '.join(map(repr, unknown))}, which table {key!r} does not have "
            f"(it has {', '.join(map(repr, rows))})"
        )
    return {**table, "rows": {r: rows[r] for r in only}}


#: the folder of published yardsticks, beside the experiment files
PUBLISHED_FOLDER = "published"


def with_published(
    experiment: Experiment, section: dict, present: dict[str, str], radii: list[float]
) -> dict:
    """The section's ``[paper]`` table (:func:`paper_table`), with a row added for each run
    it has no row of from the published yardstick matching the run's dataset, σ, method,
    architecture and hyperparameters (``experiments/published/*.json`` beside the experiment
    file: :mod:`smoothcert.analysis.yardsticks`). On in a section that names a paper table
    or sets ``published = true``; ``published = false`` turns it off. A row of the paper
    table always wins over a yardstick's."""
    paper = paper_table(experiment, section)
    if not section.get("published", "paper" in section):
        return paper
    from smoothcert.analysis.yardsticks import find_published, load_yardsticks, run_identity

    rows = dict(paper.get("rows", {}))
    wanted = [label for label in present if label not in rows]
    yardsticks = load_yardsticks(experiment.path.parent / PUBLISHED_FOLDER) if wanted else {}
    notes = []
    for label in wanted if yardsticks else []:
        identity = run_identity(present[label])
        if identity is None:
            continue
        row, origin = find_published(yardsticks, identity, radii)
        if row is not None:
            rows[label] = row
            notes.append(f"{label}: {row['note']} ({origin})")
        elif origin is not None:
            notes.append(f"{label}: {origin}")
    if not notes:
        return paper
    merged = {"source": "published yardsticks", **paper, "rows": rows}
    return merged | {"yardstick_notes": notes}


def _yardstick_lines(paper: dict) -> list[str]:
    notes = paper.get("yardstick_notes") or []
    if not notes:
        return []
    return [
        "",
        f"Rows from the published yardsticks (`experiments/{PUBLISHED_FOLDER}`), matched by "
        "dataset, σ, training method, architecture and hyperparameters: " + "; ".join(notes) + ".",
    ]


def versus_published(
    experiment: Experiment,
    summaries: list,
    paper: dict,
    present: dict[str, str],
    radii: list[float],
) -> list[str]:
    """:func:`versus_paper`, on the same test images wherever a row names its published logs
    and their per-example results are in the yardsticks' examples files
    (``experiments/published/<name>-examples.npz``: :func:`smoothcert.analysis.yardsticks.
    paired_row`); where the pairing is refused (a label differs, an index is missing, the
    file is absent), the row is compared unpaired and the reason is given."""
    paired = paired_rows(Path(experiment.path).parent / PUBLISHED_FOLDER, paper, present, radii)
    return versus_paper(summaries, paper, radii, paired)


def paired_rows(
    folder: Path, paper: dict, present: dict[str, str], radii: list[float]
) -> dict[str, Any]:
    """Run label -> its comparison with the published row on the same test images
    (:func:`smoothcert.analysis.yardsticks.paired_row`), or why there is none (a string),
    for the rows that name their logs; the yardsticks' examples files are in ``folder``."""
    from smoothcert.analysis.compare import published_row
    from smoothcert.analysis.yardsticks import paired_row

    paired: dict[str, Any] = {}
    for label, value in paper.get("rows", {}).items():
        row = published_row(value, f"paper row {label!r}")
        if label not in present or not row.logs:
            continue
        try:
            paired[label] = paired_row(row, folder, present[label], radii)
        except (OSError, ValueError) as exc:
            paired[label] = str(exc)
    return paired


def _paired_table(summaries: list, paired: dict, radii: list[float]) -> list[str]:
    """The rows compared on the same test images: per radius and for the ACR, ours vs the
    published mean on our images (ours − published ± the paired SE), and the published
    value on its whole test set."""
    from smoothcert.analysis.compare import PAIRED_SE_COVERS, beyond_two_se

    def cell(ours: float, theirs: float, whole: float, d: float, se: float) -> str:
        if not math.isfinite(ours):
            return f"— vs {theirs:.3f}; all {whole:.3f}"
        mark = "*" if beyond_two_se(d, se) else ""
        return f"{ours:.3f} vs {theirs:.3f} ({d:+.3f} ± {_num(se)}{mark}); all {whole:.3f}"

    header = ["run", "images × published runs / their test set", *(f"r = {r:g}" for r in radii)]
    lines = [
        "On the same test images: each cell is ours vs the published runs' mean on OUR test "
        "images (ours − published ± the paired standard error; beyond two standard errors "
        "marked *), then the published value on its whole test set (all). Per image i, "
        "ours_i = 1[correct and radius ≥ r] (ACR: radius·1[correct]) and theirs_i the mean of "
        "the same over the published runs at that test index; the difference is the mean of "
        "ours_i − theirs_i and its standard error sd(ours_i − theirs_i)/√n. The paired "
        f"standard errors cover {PAIRED_SE_COVERS}. The labels agree at every index.",
        "",
        "| " + " | ".join([*header, "ACR"]) + " |",
        "|" + "---|" * (len(header) + 1),
    ]
    for s in summaries:
        p = paired.get(s.name)
        if not s.per_example or p is None or isinstance(p, str):
            continue
        cells = [
            cell(ours, p.published[j], p.published_all[j], p.difference[j], p.se[j])
            for j, ours in enumerate(s.certified_accuracy)
        ]
        cells.append(cell(s.acr, p.acr_published, p.acr_published_all, p.acr_difference, p.acr_se))
        lines.append(
            f"| {s.name} | {p.n} × {p.runs} / {p.published_n:,} | " + " | ".join(cells) + " |"
        )
    maps = sorted({p.index_map for p in paired.values() if getattr(p, "index_map", None)})
    return lines + (["", *maps] if maps else [])


def versus_paper(
    summaries: list, paper: dict, radii: list[float], paired: dict | None = None
) -> list[str]:
    """Ours − published per radius and for the ACR, each ± its standard error
    (:mod:`smoothcert.analysis.compare`), beyond two standard errors marked *: on the same
    test images for the runs in ``paired`` with a comparison
    (:class:`~smoothcert.analysis.compare.PairedComparison`), unpaired for the others (a
    string in ``paired`` is why a row is not paired)."""
    from smoothcert.analysis.compare import (
        SE_COVERS,
        acr_difference_se,
        acr_with_se,
        beyond_two_se,
        difference_se,
        published_row,
    )

    paired = paired or {}
    rows = {k: published_row(v, f"paper row {k!r}") for k, v in paper.get("rows", {}).items()}
    same = {
        s.name for s in summaries if s.per_example and not isinstance(paired.get(s.name, ""), str)
    }
    header = ["run", "examples (ours / published × runs)", *(f"r = {r:g}" for r in radii), "ACR"]
    unpaired = [
        f"Ours beside the published numbers ({paper.get('source', 'the paper')}). Each cell: "
        "ours vs published (ours − published ± its standard error; beyond two standard errors "
        f"marked *). The standard errors cover {SE_COVERS}.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    matched = set()
    for s in summaries:
        row = rows.get(s.name)
        if row is None or not s.per_example:
            continue
        matched.add(s.name)
        if s.name in same:
            continue
        cells = []
        for j, (ours, theirs) in enumerate(zip(s.certified_accuracy, row.accuracy, strict=False)):
            if not math.isfinite(ours):
                cells.append(f"— vs {theirs:.3f}")
                continue
            sd = row.sd[j] if row.sd is not None else None
            se = difference_se(ours, s.num_examples, theirs, row.n, sd, row.runs)
            d = ours - theirs
            mark = "*" if beyond_two_se(d, se) else ""
            cells.append(f"{ours:.3f} vs {theirs:.3f} ({d:+.3f} ± {se:.3f}{mark})")
        acr, acr_se, acr_sd = acr_with_se(s.per_example["radius"], s.per_example["correct"])
        if not math.isfinite(s.acr):  # an adaptive run: its ACR is not measured
            cells.append(f"— vs {_num(row.acr)}")
        elif row.acr is None:
            cells.append(f"{acr:.3f} ± {_num(acr_se)} vs —")
        else:
            se = acr_difference_se(acr_se, acr_sd, row)
            d = acr - row.acr
            mark = "*" if beyond_two_se(d, se) else ""
            cells.append(
                f"{acr:.3f} ± {_num(acr_se)} vs {row.acr:.3f} ({d:+.3f} ± {_num(se)}{mark})"
            )
        published_n = f"{row.n:,}" if row.n else "?"
        unpaired.append(
            f"| {s.name} | {s.num_examples} / {published_n} × {row.runs} | "
            + " | ".join(cells)
            + " |"
        )
    lines = []
    if same:
        lines += [
            f"Ours beside the published numbers ({paper.get('source', 'the paper')}).",
            "",
            *_paired_table(summaries, paired, radii),
        ]
    if matched - same:
        unpaired += [
            "",
            "Standard errors: certified accuracy √(p_o(1 − p_o)/n_o + p_p(1 − p_p)/n_p + sd²/k) "
            "(binomial over our n_o examples; binomial over the published n_p; sd over the k "
            "published runs, where given); ACR √(SE_o² + s²/n_p + sd²/k) with SE_o = sd of "
            "radius·1[correct] over our examples / √n_o and s that sd (ours, standing in for "
            "the published run's). Both sides are treated as independent samples of test "
            "images.",
        ]
        lines += ["", *unpaired] if lines else unpaired
    refused = [f"{k}: {v}" for k, v in paired.items() if isinstance(v, str) and k in matched]
    if refused:
        lines += ["", "Not compared on the same test images: " + "; ".join(refused) + "."]
    unmatched = [k for k in rows if k not in matched]
    if unmatched:
        lines += [
            "",
            "Published rows without a run of the same label here: " + ", ".join(unmatched) + ".",
        ]
    return lines + _yardstick_lines(paper)


def ranking(present: dict[str, str], paper: dict, folder: Path | None = None) -> list[str]:
    """The runs ranked by our ACR (± its standard error over our examples), the published ACR
    beside each (± its sd over the published runs) and its rank among the published rows, the
    published ACR on our test images where the row's per-example logs are in the yardsticks'
    examples files in ``folder``, and each run's ACR minus that of the run ranked next below
    it, on the examples both certified (± the paired standard error; beyond two marked *: the
    order of the two is resolved)."""
    from smoothcert.analysis import analyze, load_certify_run
    from smoothcert.analysis.compare import (
        acr_with_se,
        beyond_two_se,
        paired_acr_difference,
        published_row,
        rank_by_acr,
    )

    summaries = analyze(list(present.values()), [0.0], names=list(present))
    acr = {}
    for s in summaries:
        value, se, _ = acr_with_se(s.per_example["radius"], s.per_example["correct"])
        acr[s.name] = (value, se) if math.isfinite(s.acr) else (float("nan"), float("nan"))
    rows = {k: published_row(v, f"paper row {k!r}") for k, v in paper.get("rows", {}).items()}
    published = {k: rows[k].acr for k in acr if k in rows}
    ranked = rank_by_acr(acr, published)
    examples = {s.name: s.num_examples for s in summaries}
    paired = paired_rows(folder, paper, present, [0.0]) if folder is not None else {}
    lines = [
        "Ranked by our ACR (mean over our examples of radius·1[correct]; ± its standard error "
        "over those examples, one training seed); published: mean over its runs ± the sd over "
        "them, and the rank among the published rows of these runs. The last column is the "
        "ACR of a run minus the next one's on the examples both certified, ± the paired "
        "standard error (test images and certification noise; not seed-to-seed variation); "
        "* marks a difference beyond two standard errors. Published on our images: the "
        "published runs' mean ACR on the test images we certified (where their per-example "
        "logs are known), the value to set ours against.",
        "",
        "| rank | run | examples | ACR ± SE | published ACR | published rank | published on our "
        "images | − next ± SE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(ranked):
        row = rows.get(r.name)
        if r.published is None:
            theirs = "—"
        else:
            sd = f" ± {row.acr_sd:.4f} (sd, {row.runs} runs)" if row and row.acr_sd else ""
            theirs = f"{r.published:.3f}{sd}"
        step = ""
        below = ranked[i + 1] if i + 1 < len(ranked) else None
        if r.rank is not None and below is not None and below.rank is not None:
            _, d, se = paired_acr_difference(
                load_certify_run(present[r.name])[1], load_certify_run(present[below.name])[1]
            )
            mark = "*" if beyond_two_se(d, se) else ""
            step = f"{d:+.3f} ± {_num(se)}{mark} ({below.name})"
        p = paired.get(r.name)
        ours_images = "—" if p is None or isinstance(p, str) else f"{p.acr_published:.3f}"
        lines.append(
            f"| {r.rank if r.rank is not None else '—'} | {r.name} | {examples[r.name]} | "
            f"{_num(r.acr)} ± {_num(r.se)} | {theirs} | "
            f"{r.published_rank if r.published_rank is not None else '—'} | {ours_images} | "
            f"{step} |"
        )
    return lines + _yardstick_lines(paper)


def attack_differences(
    paths: dict[str, str], pairs: list[tuple[str, str]], all_eps: list[float], width: int
) -> list[str]:
    """Rows "A − B": the difference of the two models' accuracies on the test images both
    were attacked on, ± its standard error over those images (paired: the same images);
    * beyond two standard errors at that radius, † where Holm's correction over the row's
    radii still rejects (:mod:`smoothcert.analysis.multiplicity`)."""
    from smoothcert.analysis.attack import paired_difference
    from smoothcert.analysis.compare import beyond_two_se
    from smoothcert.analysis.multiplicity import holm_by_key, normal_p
    from smoothcert.runs.attack import read_attack

    lines = [
        "Differences on the images both runs attacked (± the paired standard error; a "
        "difference beyond two standard errors at its radius is marked *, and † where it "
        "also survives Holm's correction over the row's radii, family-wise level 0.05: a "
        "verdict on a row rests on its † cells, not on isolated *):",
        "",
        "| difference | images | " + " | ".join(f"ε = {e:g}" for e in all_eps) + " |",
        "|" + "---|" * width,
    ]
    for a, b in pairs:
        shared, differences = paired_difference(
            read_attack(paths[a]), read_attack(paths[b]), all_eps
        )
        survives = holm_by_key({e: normal_p(*d) for e, d in differences.items() if d is not None})
        cells = []
        for e in all_eps:
            if differences[e] is None:
                cells.append("—")
                continue
            mean, se = differences[e]
            mark = ("*" if beyond_two_se(mean, se) else "") + ("†" if survives[e] else "")
            cells.append(f"{mean:+.3f} ± {se:.3f}{mark}")
        lines.append(f"| {a} − {b} | {shared} | " + " | ".join(cells) + " |")
    return lines


def seed_differences(groups: dict[str, list[str]], pairs: list[tuple[str, str]]) -> list[str]:
    """Per radius, the mean over training seeds of A − B (accuracy under attack) on the test
    images every run attacked, ± the standard error over seeds and images
    (:func:`smoothcert.analysis.seeds.seed_difference`), beside the images-only part; and
    each seed's own difference. ``groups`` maps a label to its runs (seed order), of which
    only the seeds present in both A and B (by position) are used."""
    from smoothcert.analysis.multiplicity import holm_by_key, t_p
    from smoothcert.analysis.seeds import attack_seed_differences
    from smoothcert.runs.attack import OLD_NOISY_EVALUATION, read_attack

    lines: list[str] = []
    for a, b in pairs:
        used = [
            (pa, pb)
            for pa, pb in zip(groups[a], groups[b], strict=False)
            if Path(pa).exists() and Path(pb).exists()
        ]
        if not used:
            lines += [f"{a} − {b}: no seed of both run yet.", ""]
            continue
        runs_a = [read_attack(pa) for pa, _ in used]
        runs_b = [read_attack(pb) for _, pb in used]
        old = [
            path
            for path, run in zip([*(x for x, _ in used), *(y for _, y in used)],
                                 [*runs_a, *runs_b], strict=True)
            if run.get("evaluation") == OLD_NOISY_EVALUATION
        ]  # fmt: skip
        if old:
            lines += [
                "Made with the old evaluation of models under noise (fresh votes at every "
                "radius): " + ", ".join(f"`{o}`" for o in old) + "; run them again.",
                "",
            ]
        eps = sorted(set.intersection(*(set(r["eps"]) for r in [*runs_a, *runs_b])))
        shared, diffs = attack_seed_differences(runs_a, runs_b, eps)
        survives = holm_by_key(
            {e: t_p(r.mean, r.se, r.df) for e, r in diffs.items() if r is not None}
        )
        k = len(used)
        lines += [
            f"**{a} − {b}**: {k} seed pair{'s' if k != 1 else ''} of the "
            f"{min(len(groups[a]), len(groups[b]))} listed, {shared} test images every run "
            "attacked.",
            "",
            "| ε | mean over seeds ± SE (seeds and images) | ν | ± SE, images only "
            "| ± SE, seeds only | per seed |",
            "|---|---|---|---|---|---|",
        ]
        for e in eps:
            r = diffs[e]
            if r is None:
                lines.append(f"| {e:g} | — | | | | |")
                continue
            mark = ("*" if r.significant() else "") + ("†" if survives[e] else "")
            per_seed = ", ".join(f"{v:+.3f}" for v in r.per_seed)
            lines.append(
                f"| {e:g} | {r.mean:+.3f} ± {r.se:.3f}{mark} | {r.df:.1f} | {r.se_images:.3f} | "
                f"{_num(r.se_seeds)} | {per_seed} |"
            )
        lines.append("")
    lines += [
        "SE² = var_s(d_s)/k + var_i(D_i)/N − MS_E/(kN) (not below either of its first two "
        "terms), with d_s the difference of seed s's accuracies, D_i image i's difference "
        "averaged over the seeds and MS_E the seed × image residual mean square: unbiased for "
        "the variance of the mean over a random sample of k seeds and N images "
        "(smoothcert.analysis.seeds). With one seed it is the paired SE over images. ν is "
        "Satterthwaite's degrees of freedom of SE²: with three seeds the seed term has 2, so "
        "where seed-to-seed variation dominates SE is itself uncertain and the bar is up to "
        "t_{0.975, 2} = 4.3 standard errors, not 2. * marks |mean| > t_{0.975, ν} × SE, a "
        "difference called at two-sided level 0.05 at that radius alone; † marks one that "
        "also survives Holm's correction over the comparison's radii (family-wise level "
        "0.05, p-values from t with ν degrees of freedom).",
    ]
    return lines


def dcert_same_rows(result: Any) -> list[str]:
    """Figure 2(a) on the same rows: per setting and γ_adv, the estimate and the worst case
    both over the odd-position rows, their difference ± the paired standard error
    (:func:`smoothcert.analysis.dcert.same_rows_comparison`)."""
    from smoothcert.analysis.dcert import same_rows_comparison

    rows = same_rows_comparison(result)
    if not rows:
        return ["Too few rows to compare the estimate and the worst case on the same rows."]
    names = {"smooth": f"smoothed σ={result.sigma:g}", "plain": "WRM σ=0"}
    lines = [
        f"On the same rows: the estimate is a mean over the {rows[0].rows} odd-position rows "
        "(γ chosen on the even ones), so here the worst case is too; the estimate is taken at "
        "the adversary's budget on those rows. Estimate − worst case ± the paired standard "
        "error over those rows (test examples and Monte Carlo noise; not the choice of γ); "
        "below −2 SE (marked *) the estimate falls short of the worst case it should bound.",
        "",
        "| setting | γ_adv | ρ̂_adv (odd rows) | γ | estimate | worst case (odd rows) | "
        "estimate − worst case ± SE | worst case (all rows) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        mark = "*" if r.difference < -2 * r.se else ""
        lines.append(
            f"| {names[r.setting]} | {r.gamma_adv:g} | {r.rho_adv:.4f} | {r.gamma:g} | "
            f"{r.estimate:.4f} | {r.worst_case:.4f} | "
            f"{r.difference:+.4f} ± {_num(r.se, 4)}{mark} | {r.worst_case_all:.4f} |"
        )
    return lines
