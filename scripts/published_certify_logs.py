"""Certified accuracy and ACR from published per-example certification logs: Jeong & Shin's
(``--source smoothing-consistency``, the default) and SmoothMix's (``--source smoothmix``).

Jeong & Shin (NeurIPS 2020, github.com/jh-jeong/smoothing-consistency) publish the output of
Cohen et al.'s ``certify.py`` (n0 = 100, n = 100,000, α = 0.001) for every model of their
tables under ``data/certify/``: one tab-separated row per test example
(``idx label predict radius correct time``), the radius printed with 3 significant digits.
Jeong et al.'s SmoothMix repository (NeurIPS 2021, github.com/jh-jeong/smoothmix) publishes
its own models' logs in the same format under ``data/certify/<dataset>/smoothmix/`` (beside
copies of the first repository's baseline logs and its ablation logs, which are not read).
This script reads those logs from a clone of a repository and computes, per log,

- certified accuracy at r = 0, 0.25, ..., 2.0: the fraction of ALL rows with correct = 1 and
  radius >= r (an abstention has correct = 0, so it counts as wrong);
- ACR: the mean over all rows of radius · correct;

then groups the logs by (dataset, architecture, method, hyperparameters, σ) and reports the
mean over the runs of a group and their spread (standard deviation, min, max). With
``--examples`` it also writes every log's per-example results (test index, label, radius,
correct) to a compressed numpy ``.npz`` (see :func:`write_examples`), so that a report can
compare a run with the published ones on the same test images. The method and
its hyperparameters are read from the log's path, which the authors' training scripts build
from their flags (see ``EXPERIMENTS.MD`` there; SmoothMix's CIFAR-10 logs carry none in their
path, so they come from the commands of its ``EXPERIMENTS.MD``).

Usage::

    git clone https://github.com/jh-jeong/smoothing-consistency
    python scripts/published_certify_logs.py smoothing-consistency \\
        --out experiments/published/jeong-shin.json --table experiments/published/jeong-shin.md \\
        --examples experiments/published/jeong-shin-examples.npz
    git clone https://github.com/jh-jeong/smoothmix
    python scripts/published_certify_logs.py smoothmix --source smoothmix \\
        --out experiments/published/smoothmix.json --table experiments/published/smoothmix.md \\
        --examples experiments/published/smoothmix-examples.npz

The first argument may also be a git directory without a checked-out tree (a bare clone, or
a mirror's ``.git``): its HEAD's ``data/certify`` is then exported to a temporary folder with
``git archive`` and read from there (the commit recorded is that HEAD).

The JSON and the table need only the standard library; ``--examples`` needs numpy.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, NamedTuple

REPOSITORY = "https://github.com/jh-jeong/smoothing-consistency"
SMOOTHMIX_REPOSITORY = "https://github.com/jh-jeong/smoothmix"
RADII = [0.25 * k for k in range(9)]  # 0, 0.25, ..., 2.0
HEADER = ["idx", "label", "predict", "radius", "correct", "time"]
#: the test-set sizes, to flag logs that stop early
FULL = {"mnist": 10000, "cifar10": 10000, "imagenet": 500}

METHOD_NAMES = {
    "cohen": "gaussian",
    "salman": "smoothadv",
    "stab": "stability",
    "macer": "macer",
    "consistency": "consistency",
}


class Example(NamedTuple):
    """One row of a certification log: test index, label, radius and correct (0 or 1)."""

    idx: int
    label: int
    radius: float
    correct: int


def read_examples(path: Path) -> list[Example]:
    """Every row of one certification log; ValueError on a foreign format."""
    lines = path.read_text().splitlines()
    if not lines or lines[0].split("\t") != HEADER:
        raise ValueError(f"{path}: not a certify.py log (header {lines[:1]})")
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(HEADER):
            raise ValueError(f"{path}:{number}: expected {len(HEADER)} fields, got {line!r}")
        rows.append(Example(int(fields[0]), int(fields[1]), float(fields[3]), int(fields[4])))
    return rows


def read_log(path: Path) -> list[tuple[float, int]]:
    """(radius, correct) per row of one certification log; ValueError on a foreign format."""
    return [(row.radius, row.correct) for row in read_examples(path)]


def summarize(rows: list[tuple[float, int]]) -> dict[str, Any]:
    """Certified accuracy at RADII (fraction of all rows) and ACR of one log."""
    n = len(rows)
    accuracy = [sum(1 for r, c in rows if c == 1 and r >= radius) / n for radius in RADII]
    acr = sum(r * c for r, c in rows) / n
    return {"n": n, "certified_accuracy": accuracy, "acr": acr}


def parse_path(relative: Path) -> dict[str, Any]:
    """Dataset, architecture, method, hyperparameters, σ and run id from a log's path
    (``data/certify/<dataset>/<method>/.../[<arch>/]noise_<σ>[_<id>][_o]``)."""
    parts = relative.parts
    if parts[:2] != ("data", "certify"):
        raise ValueError(f"{relative}: not under data/certify")
    dataset, folders, leaf = parts[2], list(parts[3:-1]), parts[-1]
    match = re.fullmatch(r"noise_([0-9.]+)(?:_(\d+))?(_o)?", leaf)
    if match is None:
        raise ValueError(f"{relative}: unexpected file name {leaf!r}")
    sigma, run_id, suffix = float(match[1]), match[2], match[3]
    # MNIST: EXPERIMENTS.MD trains lenet; ImageNet: the paper's ResNet-50 (not in the path)
    arch = {"mnist": "lenet", "imagenet": "resnet50"}.get(dataset)
    if folders and re.match(r"cifar_|resnet|densenet", folders[-1]):
        arch = folders.pop()
    head = folders.pop(0)
    hyper: dict[str, Any] = {}
    if head.startswith("macer"):
        method = "macer"
        deferred = re.fullmatch(r"macer(?:_deferred(\d+))?", head)
        if deferred is None:
            raise ValueError(f"{relative}: unexpected folder {head!r}")
        if deferred[1] is not None:
            # their code: λ = 0 while epoch <= lr_step_size (0-based), i.e. N + 1 epochs
            hyper["deferred_lr_step_size"] = int(deferred[1])
    else:
        method = METHOD_NAMES[head]
    for folder in folders:
        if folder == "cohen":  # consistency on Gaussian augmentation
            continue
        pgd = re.fullmatch(r"(?:pgd|salman)_([0-9.]+)_(\d+)_(\d+)", folder)
        if pgd is not None:  # SmoothAdv's attack: ε in 1/256 units, steps, warm-up epochs
            if folder.startswith("salman"):
                method = "consistency+smoothadv"
            hyper.update(eps=float(pgd[1]) / 256, steps=int(pgd[2]), warmup_epochs=int(pgd[3]))
            continue
        key, _, value = folder.partition("_")
        name = {"num": "num_noise", "lbd": "lam", "gamma": "margin"}.get(key, key)
        hyper[name] = int(value) if name == "num_noise" else float(value)
    return {
        "dataset": dataset,
        "arch": arch,
        "method": method,
        "hyperparameters": hyper,
        "sigma": sigma,
        "run_id": run_id,
        "suffix": suffix,
    }


#: SmoothMix's CIFAR-10 logs (``noise_<σ>[_adv]``, ResNet-110): the step size α of each σ in
#: the training commands of its EXPERIMENTS.MD; m = 2, T = 4, η = 5 at every σ
SMOOTHMIX_CIFAR_ALPHA = {0.25: 0.5, 0.5: 1.0, 1.0: 2.0}


def parse_smoothmix_path(relative: Path) -> dict[str, Any]:
    """Dataset, architecture, hyperparameters, σ and run id from a SmoothMix log's path:
    ``data/certify/mnist/smoothmix/smix_<α>_<T>_m<s>/tau_<η>/num_<m>/<id>/noise_<σ>`` (its
    training script names the folder ``smix_<alpha>_<num-steps>_m<mix_step>``; η, the
    ``--eta`` of the commands, is ``tau`` in these paths) or
    ``data/certify/cifar10/smoothmix/noise_<σ>[_adv]`` (``_adv``: the one-step adversary,
    mix_step = 1). The hyperparameters are named as ``smoothcert train``'s flags."""
    parts = relative.parts
    if parts[:2] != ("data", "certify") or len(parts) < 5 or parts[3] != "smoothmix":
        raise ValueError(f"{relative}: not under data/certify/<dataset>/smoothmix")
    dataset, folders, leaf = parts[2], list(parts[4:-1]), parts[-1]
    if dataset == "mnist":
        if len(folders) != 4:
            raise ValueError(f"{relative}: expected smix_*/tau_*/num_*/<id>/noise_*")
        mode = re.fullmatch(r"smix_([0-9.]+)_(\d+)_m(\d+)", folders[0])
        eta = re.fullmatch(r"tau_([0-9.]+)", folders[1])
        num = re.fullmatch(r"num_(\d+)", folders[2])
        sigma = re.fullmatch(r"noise_([0-9.]+)", leaf)
        if None in (mode, eta, num, sigma) or not folders[3].isdigit():
            raise ValueError(f"{relative}: unexpected SmoothMix path")
        hyper = {
            "alpha": float(mode[1]),
            "steps": int(mode[2]),
            "mix_step": int(mode[3]),
            "eta": float(eta[1]),
            "num_noise": int(num[1]),
        }
        arch, run_id, value = "lenet", folders[3], float(sigma[1])
    elif dataset == "cifar10":
        match = re.fullmatch(r"noise_([0-9.]+)(_adv)?", leaf)
        if folders or match is None or float(match[1]) not in SMOOTHMIX_CIFAR_ALPHA:
            raise ValueError(f"{relative}: unexpected SmoothMix CIFAR-10 log")
        value = float(match[1])
        hyper = {
            "alpha": SMOOTHMIX_CIFAR_ALPHA[value],
            "steps": 4,
            "mix_step": 1 if match[2] else 0,
            "eta": 5.0,
            "num_noise": 2,
        }
        arch, run_id = "cifar_resnet110", None
    else:
        raise ValueError(f"{relative}: no SmoothMix logs of dataset {dataset!r} expected")
    return {
        "dataset": dataset,
        "arch": arch,
        "method": "smoothmix",
        "hyperparameters": hyper,
        "sigma": value,
        "run_id": run_id,
        "suffix": None,
    }


def group_key(run: dict[str, Any]) -> str:
    hyper = ",".join(f"{k}={v}" for k, v in sorted(run["hyperparameters"].items()))
    return f"{run['dataset']}|{run['arch']}|{run['method']}|{hyper}|{run['sigma']}"


def spread(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.fmean(values),
        "sd": statistics.stdev(values) if len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
    }


def commit_of(clone: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.decode().strip()


class Source(NamedTuple):
    """A repository of published logs: where its logs are, how their paths read, which run ids
    are a setting's seeds (a run 0 beside all of them is left out of the mean) and the notes
    and title of its output."""

    repository: str
    roots: tuple[str, ...]  # folders (relative to the clone) searched for logs
    parse: Callable[[Path], dict[str, Any]]
    logs: str  # the path pattern, for the output's source
    notes: list[str]
    seeds: frozenset[str]
    seed_note: str
    title: str
    json_name: str


def log_files(clone: Path, source: Source) -> list[Path]:
    """The per-example logs of ``source`` under ``clone``, sorted."""
    if not (clone / "data" / "certify").is_dir():
        raise FileNotFoundError(
            f"{clone / 'data' / 'certify'}: no data/certify folder (is this the repository?)"
        )
    paths = []
    for folder in source.roots:
        root = clone / folder
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: no such folder (is this {source.repository}?)")
        paths += [p for p in root.rglob("noise_*") if p.is_file()]
    # the "_acc" files are accuracy-vs-radius curves, not per-example logs
    return [p for p in sorted(paths) if not p.name.endswith("_acc")]


def collect(clone: Path, source: Source | None = None, commit: str | None = None) -> dict[str, Any]:
    """Every log of ``source`` (default: Jeong & Shin's) under ``clone``, summarized, and the
    groups' means and spreads; ``commit`` (default: the clone's HEAD) is recorded as the
    source's."""
    source = source or SOURCES["smoothing-consistency"]
    runs = []
    for path in log_files(clone, source):
        relative = path.relative_to(clone)
        run = source.parse(relative) | {"file": relative.as_posix()}
        run |= summarize(read_log(path))
        run["full_test_set"] = run["n"] == FULL.get(run["dataset"], run["n"])
        runs.append(run)
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault(group_key(run), []).append(run)
    summaries = []
    for members in groups.values():
        longest = max(r["n"] for r in members)  # a log that stops early is left out
        used = [r for r in members if r["n"] == longest]
        ids = {r["run_id"] for r in used}
        note = None
        if "0" in ids and source.seeds <= ids:
            used = [r for r in used if r["run_id"] != "0"]
            note = source.seed_note
        if not used:
            continue
        first = used[0]
        summary = {
            key: first[key] for key in ("dataset", "arch", "method", "hyperparameters", "sigma")
        }
        summary["runs"] = [r["file"] for r in used]
        summary["n_runs"] = len(used)
        if note:
            summary["note"] = note
        left_out = [r["file"] for r in members if r not in used]
        if left_out:
            summary["left_out"] = left_out
        summary["certified_accuracy"] = [
            spread([r["certified_accuracy"][k] for r in used]) for k in range(len(RADII))
        ]
        summary["acr"] = spread([r["acr"] for r in used])
        summaries.append(summary)
    return {
        "source": {
            "repository": source.repository,
            "commit": commit or commit_of(clone),
            "logs": source.logs,
        },
        "definitions": {
            "radii": RADII,
            "certified_accuracy": "fraction of all rows with correct == 1 and radius >= r "
            "(abstentions, predict == -1, count as wrong)",
            "acr": "mean over all rows of radius * correct",
            "group": "logs with the same dataset, architecture, method, hyperparameters and "
            "sigma (the runs of one setting: seeds, or the authors' random run ids); mean, sd "
            "(sample standard deviation over runs), min and max over its complete logs",
        },
        "notes": source.notes,
        "groups": summaries,
        "runs": runs,
    }


NOTES = [
    "Certification: Cohen et al.'s certify.py as shipped in the repository, n0 = 100, "
    "n = 100,000, alpha = 0.001, every test example (--skip 1: 10,000 for MNIST and "
    "CIFAR-10; the ImageNet logs hold 500 examples).",
    "Radii are printed with 3 significant digits ('{:.3}'), so a radius just below a grid "
    "point r can be counted at r; with n = 100,000 and alpha = 0.001 the largest radius is "
    "3.8115 sigma (printed 0.953 at sigma = 0.25).",
    "MNIST (EXPERIMENTS.MD): LeNet, SGD lr 0.01, x0.1 every 30 epochs, 90 epochs, batch 256 "
    "(the scripts' default); five runs per setting. gaussian: train_cohen.py; smoothadv: "
    "train_salman.py PGD eps = 255/256, 10 steps, warm-up 10 epochs, m = 4; stability: "
    "train_stab.py lambda = 2; macer: train_macer.py m = 16, beta = 16, margin gamma = 8, "
    "lambda = 16 (sigma 0.25, 0.5) or 6 (sigma 1.0), deferred (lambda = 0 while epoch <= 30); "
    "consistency: train_consistency.py m = 2, eta = 0.5, lambda = 10 (sigma 0.25) or 5 "
    "(0.5, 1.0); consistency+smoothadv: m = 4, lambda = 1, eps = 255/256, 10 steps, warm-up "
    "10. Their random run ids are the trailing numbers of the file names (0-5 for "
    "consistency, where the single runs with id 0 belong to ablations over lambda and m).",
    "CIFAR-10: one run per setting; hyperparameters as in the paths (the repository gives "
    "no training command for them). The ResNet-20 runs at sigma = 0.5 are the comparison the "
    "paper's CIFAR-10 baselines table makes; DenseNet-40 and ResNet-110 logs are listed too.",
    "salman/pgd_512.0_10_10/num_2/cifar_densenet40/noise_0.50_1149 stops after 9 rows; the "
    "complete log is the one with the '_o' suffix.",
]


SMOOTHMIX_NOTES = [
    "Certification: Cohen et al.'s certify.py as shipped in the repository, n0 = 100, "
    "n = 100,000, alpha = 0.001 (EXPERIMENTS.MD: --N=100000 --skip=1, N0 and alpha at the "
    "script's defaults), every test example: each log holds the 10,000 MNIST or CIFAR-10 test "
    "images. Radii printed with 3 significant digits, as in Jeong & Shin's logs.",
    "Training (code/train.py and the commands of EXPERIMENTS.MD): SGD, momentum 0.9, weight "
    "decay 1e-4, batch 256 (the default) split into m mini-batches of 256/m with one "
    "optimizer step each; learning rate x0.1 every lr_step_size epochs; eta and the one-step "
    "adversary's radius (alpha * mix_step) warmed up linearly over 10 epochs (the default "
    "--warmup); the adversary takes T steps of L2 length alpha with no ball around x.",
    "MNIST: LeNet, lr 0.01, x0.1 every 30 epochs, 90 epochs, m = 4, alpha = 1.0; T = 3 "
    "(sigma = 0.25, eta = 1), 2 (sigma = 0.25, eta = 5), 4 (sigma = 0.5), 8 (sigma = 1.0); "
    "mix_step 0 (SmoothMix) or 1 (SmoothMix with the one-step adversary). In the log paths "
    "eta is written tau_<eta>. Runs 21-25 are five runs of each setting EXPERIMENTS.MD "
    "lists; their run 0 is left out of the mean (run 0 also holds the grid points eta = 2 "
    "and the other pairings of T and eta, which exist only as run 0). Whether the paper's "
    "table averages exactly runs 21-25 is not checked here.",
    "CIFAR-10: ResNet-110 (cifar_resnet110), lr 0.1, x0.1 every 50 epochs, 150 epochs, random "
    "crop and flip, m = 2, T = 4, eta = 5, alpha = 0.5 (sigma = 0.25) or 1.0 (sigma = 0.5). "
    "One log per setting, sigma = 0.25 and 0.5 only (no sigma = 1.0 log, no ResNet-20 log). "
    "Their paths (noise_<sigma>[_adv]) carry no hyperparameters: they are EXPERIMENTS.MD's "
    "commands for that sigma, mix_step = 1 for the '_adv' logs.",
    "Not read: data/certify/ablation (MNIST sigma = 1.0 ablations over alpha and T, eta, m "
    "and an L2 ball on the adversary; runs 9-12) and the baseline logs under "
    "data/certify/{mnist,cifar10}/{cohen,consistency,macer,salman,stab}, byte-for-byte copies "
    "of Jeong & Shin's logs (summarized in jeong-shin.json).",
]

SOURCES = {
    "smoothing-consistency": Source(
        repository=REPOSITORY,
        roots=("data/certify",),
        parse=parse_path,
        logs="data/certify/<dataset>/<method>/<hyperparameters>/[<arch>/]noise_<sigma>[_<id>]",
        notes=NOTES,
        # Consistency at MNIST σ = 1.0, λ = 5: runs 1-5 are the table's five seeds; run 0 is
        # the λ-ablation run (its siblings λ = 1, 15, 20, 25, 30, 50 exist only as run 0).
        seeds=frozenset({"1", "2", "3", "4", "5"}),
        seed_note="run 0 (from the λ ablation) left out of the mean: runs 1-5 are the seeds",
        title="Jeong & Shin's certification logs",
        json_name="jeong-shin.json",
    ),
    "smoothmix": Source(
        repository=SMOOTHMIX_REPOSITORY,
        roots=("data/certify/mnist/smoothmix", "data/certify/cifar10/smoothmix"),
        parse=parse_smoothmix_path,
        logs="data/certify/mnist/smoothmix/smix_<alpha>_<steps>_m<mix_step>/tau_<eta>/"
        "num_<num_noise>/<id>/noise_<sigma>; data/certify/cifar10/smoothmix/noise_<sigma>[_adv]",
        notes=SMOOTHMIX_NOTES,
        seeds=frozenset({"21", "22", "23", "24", "25"}),
        seed_note="run 0 (the grid-search run of this setting) left out of the mean: runs "
        "21-25 are the five runs",
        title="SmoothMix's certification logs",
        json_name="smoothmix.json",
    ),
}


def table(result: dict[str, Any], source: Source | None = None) -> str:
    """A markdown page: the source, the notes and a table of the group means (certified
    accuracy at r = 0-1.0, ACR, and the ACR's sd and range over the runs)."""
    source = source or SOURCES["smoothing-consistency"]
    show = [0, 1, 2, 3, 4]  # r = 0, 0.25, 0.5, 0.75, 1.0
    origin = result["source"]
    intro = [
        f"# Published yardstick: {source.title}",
        "",
        f"Computed by `scripts/published_certify_logs.py` from {origin['repository']} at "
        f"commit {origin['commit']} ({origin['logs']}); every number per log and per group, "
        f"with the spread over runs at every radius, is in `{source.json_name}`.",
        "",
        *[f"- {note}" for note in result["notes"]],
        "",
        "Means over the runs of each setting (certified accuracy: fraction of all test "
        "examples certified correct at radius ≥ r):",
        "",
    ]
    head = "| dataset | arch | σ | method | hyperparameters | runs | " + " | ".join(
        f"r={RADII[k]:g}" for k in show
    )
    lines = [*intro, head + " | ACR | ACR sd | ACR min-max |", "|" + "---|" * (len(show) + 9)]
    order = sorted(
        result["groups"], key=lambda g: (g["dataset"], g["arch"] or "", g["sigma"], g["method"])
    )
    for g in order:
        hyper = ", ".join(f"{k}={v:g}" for k, v in sorted(g["hyperparameters"].items()))
        acc = " | ".join(f"{g['certified_accuracy'][k]['mean']:.3f}" for k in show)
        a = g["acr"]
        sd = "" if a["sd"] is None else f"{a['sd']:.4f}"
        span = "" if g["n_runs"] == 1 else f"{a['min']:.4f}-{a['max']:.4f}"
        lines.append(
            f"| {g['dataset']} | {g['arch']} | {g['sigma']:g} | {g['method']} | {hyper} | "
            f"{g['n_runs']} | {acc} | {a['mean']:.3f} | {sd} | {span} |"
        )
    return "\n".join(lines) + "\n"


def toml_rows(
    result: dict[str, Any],
    key: str,
    rows: dict[str, dict[str, Any]],
    yardstick: str | None = None,
) -> str:
    """The rows of an experiment file's ``[paper.KEY]`` table (for the report's ours −
    published with standard errors): per label, the group matching ``rows[label]`` (a subset
    of a group's dataset, arch, method, hyperparameters and sigma), as ``accuracy`` (mean
    over its runs per radius), ``sd`` (over the runs; only with two runs or more), ``n`` (test
    examples per run), ``runs``, ``acr``, ``acr_sd``, a ``note`` naming the
    hyperparameters and, with ``yardstick`` (the JSON's file name, e.g. ``jeong-shin.json``),
    that name and the ``logs`` of the group, for the report's comparison on the same test
    images from the examples file.

    Raises
    ------
    ValueError
        If a selection matches no group or several.
    """
    n_of = {r["file"]: r["n"] for r in result.get("runs", [])}
    out = []
    for label, want in rows.items():
        found = [g for g in result["groups"] if all(g.get(k) == v for k, v in want.items())]
        if len(found) != 1:
            raise ValueError(f"{label}: {len(found)} groups match {want}")
        g = found[0]
        sizes = {n_of[f] for f in g["runs"] if f in n_of}
        hyper = ", ".join(f"{k}={v:g}" for k, v in sorted(g["hyperparameters"].items()))
        acc = g["certified_accuracy"]
        lines = [
            f'[paper."{key}".rows."{label}"]',
            "accuracy = [" + ", ".join(f"{a['mean']:.5f}" for a in acc) + "]",
        ]
        if g["n_runs"] > 1:
            lines.append("sd = [" + ", ".join(f"{a['sd']:.5f}" for a in acc) + "]")
        if len(sizes) == 1:
            lines.append(f"n = {sizes.pop()}")
        lines.append(f"runs = {g['n_runs']}")
        lines.append(f"acr = {g['acr']['mean']:.6f}")
        if g["acr"]["sd"] is not None:
            lines.append(f"acr_sd = {g['acr']['sd']:.6f}")
        runs = f"mean of {g['n_runs']} runs" if g["n_runs"] > 1 else "one run"
        lines.append(
            f'note = "{g["method"]} ({hyper or "no hyperparameters"}), {g["arch"]}, {runs}"'
        )
        if yardstick is not None:
            lines.append(f'yardstick = "{yardstick}"')
            lines.append("logs = [" + ", ".join(f'"{f}"' for f in g["runs"]) + "]")
        out.append("\n".join(lines))
    return "\n\n".join(out) + "\n"


def _integer_dtype(values: list[int]) -> str:
    """The smallest unsigned integer type holding ``values`` (all >= 0)."""
    top = max(values, default=0)
    if min(values, default=0) < 0:
        raise ValueError(f"negative value {min(values)} where none is expected")
    if top < 2**8:
        return "uint8"
    return "uint16" if top < 2**16 else "uint32"


def radius_code(radius: float) -> int | None:
    """A radius of at most 3 significant digits as one integer: 0 for 0, else m + 1000·e
    with radius = m / 10^e exactly and 100 <= m <= 999 (so 0.953 -> 3953, 1.84 -> 2184,
    0.0102 -> 4102); None for a radius the code cannot hold. The decimal is read back from
    ``repr``, which gives the digits the log printed; ``m / 10**e`` in floating point is then
    the same float as the printed text parsed."""
    if radius == 0:
        return 0
    digits = Decimal(repr(radius)).normalize()
    if digits <= 0:
        return None
    m, e = int(digits.scaleb(-digits.adjusted() + 2)), 2 - digits.adjusted()
    if Decimal(m).scaleb(-e) != digits or not 100 <= m <= 999 or not 0 <= e <= 22:
        return None  # more than 3 significant digits, or outside what 10^e holds exactly
    return m + 1000 * e


def decode_radius(code: int) -> float:
    """The radius of :func:`radius_code`."""
    return (code % 1000) / 10 ** (code // 1000)


def _deltas(values: list[int], where: str) -> list[int]:
    """The first value, then each one's step from the one before (strictly increasing)."""
    steps = [b - a for a, b in zip([0, *values[:-1]], values, strict=True)]
    if any(step <= 0 for step in steps[1:]) or (values and values[0] < 0):
        raise ValueError(f"{where}: test indices are not increasing")
    return steps


def examples_arrays(clone: Path, source: Source) -> dict[str, Any]:
    """Every log's per-example results as the arrays of an ``.npz``. Each column holds the
    logs one after another (one compressed stream per column compresses the radii a quarter
    smaller than one per log):

    - ``files``: the logs' paths (the ``file`` of the JSON's ``runs``), ``rows``: each
      log's number of rows, ``dataset``: each log's position in ``datasets``;
    - ``idx_delta``: per log, its first test index and then the steps between its indices
      (a cumulative sum within a log gives them back);
    - ``correct``: uint8, 0 or 1;
    - ``radius_code``: uint16, :func:`radius_code` (exact for the 3 significant digits the
      logs print); ``radius``, float32, instead if some radius does not fit the code;
    - ``datasets``, ``label_rows`` (per data set), ``label_idx_delta`` and ``label``: the
      labels of every test index any log of a data set holds, once per data set (its logs
      must agree on them).

    Integer columns take the smallest unsigned type that holds them (labels: uint8 below 256
    classes, uint16 for ImageNet)."""
    import numpy as np

    files, rows_of, dataset_of, steps, correct, radii = [], [], [], [], [], []
    labels: dict[str, dict[int, int]] = {}
    for path in log_files(clone, source):
        key = path.relative_to(clone).as_posix()
        rows = read_examples(path)
        dataset = path.relative_to(clone).parts[2]
        known = labels.setdefault(dataset, {})
        for row in rows:
            if known.setdefault(row.idx, row.label) != row.label:
                raise ValueError(
                    f"{key}: test index {row.idx} has label {row.label}, another log of the "
                    f"data set {known[row.idx]}"
                )
        if {r.correct for r in rows} - {0, 1}:
            raise ValueError(f"{key}: correct is not 0 or 1 everywhere")
        files.append(key)
        rows_of.append(len(rows))
        dataset_of.append(list(labels).index(dataset))
        steps += _deltas([r.idx for r in rows], key)
        correct += [r.correct for r in rows]
        radii += [r.radius for r in rows]
    codes = [radius_code(r) for r in radii]
    label_rows, label_steps, label_values = [], [], []
    for dataset, table in labels.items():
        idx = sorted(table)
        label_rows.append(len(idx))
        label_steps += _deltas(idx, dataset)
        label_values += [table[i] for i in idx]
    arrays: dict[str, Any] = {
        "files": np.array(files, dtype=str),
        "rows": np.array(rows_of, dtype=_integer_dtype(rows_of)),
        "dataset": np.array(dataset_of, dtype=_integer_dtype(dataset_of)),
        "idx_delta": np.array(steps, dtype=_integer_dtype(steps)),
        "correct": np.array(correct, dtype="uint8"),
    }
    if None in codes:
        arrays["radius"] = np.array(radii, dtype="float32")
    else:
        arrays["radius_code"] = np.array(codes, dtype="uint16")
    arrays |= {
        "datasets": np.array(list(labels), dtype=str),
        "label_rows": np.array(label_rows, dtype=_integer_dtype(label_rows)),
        "label_idx_delta": np.array(label_steps, dtype=_integer_dtype(label_steps)),
        "label": np.array(label_values, dtype=_integer_dtype(label_values)),
    }
    return arrays


def write_examples(arrays: dict[str, Any], out: Path) -> None:
    """:func:`examples_arrays` as an ``.npz`` that ``numpy.load`` reads, its members
    LZMA-compressed (a fifth smaller than numpy's deflate here) and stamped with a fixed
    time, so that regenerating from the same logs changes no byte."""
    import zipfile

    import numpy as np

    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_LZMA) as zf:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            zf.writestr(info, buffer.getvalue(), compress_type=zipfile.ZIP_LZMA)


@contextmanager
def checked_out(clone: Path) -> Iterator[tuple[Path, str | None]]:
    """(a folder holding the logs, the commit to record): ``clone`` itself when it has a
    ``data/certify`` folder; for a git directory without a checked-out tree, its HEAD's
    ``data/certify`` exported to a temporary folder (removed afterwards)."""
    if (clone / "data" / "certify").is_dir():
        yield clone, None
        return
    commit = commit_of(clone)
    if commit is None:
        yield clone, None  # collect reports the missing folder
        return
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(
            ["git", "-C", str(clone), "archive", "--format=tar", commit, "data/certify"],
            capture_output=True,
        )
        if archive.returncode != 0:
            raise FileNotFoundError(
                f"{clone}: git archive of data/certify failed: {archive.stderr.decode().strip()}"
            )
        with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
            tar.extractall(tmp, filter="data")
        yield Path(tmp), commit


def _round(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_round(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "clone", type=Path, help="a clone of jh-jeong/smoothing-consistency or jh-jeong/smoothmix"
    )
    parser.add_argument(
        "--source",
        choices=sorted(SOURCES),
        default="smoothing-consistency",
        help="which repository's logs the clone holds (default: smoothing-consistency)",
    )
    parser.add_argument("--out", type=Path, help="write the JSON here (default: stdout)")
    parser.add_argument("--table", type=Path, help="also write a markdown table of the means")
    parser.add_argument(
        "--examples",
        type=Path,
        help="also write every log's per-example results (idx, label, radius, correct) to "
        "this compressed .npz (needs numpy)",
    )
    args = parser.parse_args(argv)
    try:
        source = SOURCES[args.source]
        with checked_out(args.clone) as (folder, commit):
            result = _round(collect(folder, source, commit))
            arrays = examples_arrays(folder, source) if args.examples is not None else None
    except (OSError, ValueError) as exc:
        print(f"published_certify_logs: {exc}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=1, ensure_ascii=False) + "\n"
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    if args.table is not None:
        args.table.write_text(table(result, source))
    if arrays is not None:
        write_examples(arrays, args.examples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
