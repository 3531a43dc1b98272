"""Experiment files: every shipped file runs at smoke scale end to end, resumes, and reports;
bad files and concurrent runners get one-line errors."""

from __future__ import annotations

import fcntl
import json
import math
import os
from pathlib import Path

import pytest

from helpers import smoothcert
from smoothcert.experiments import experiment_status, load_experiment, run_experiment
from smoothcert.experiments.state import LOCK_FILE, STATE_FILE

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.toml"))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_the_three_reproductions_ship():
    assert {p.stem for p in EXPERIMENTS} >= {"cohen-cifar10", "cohen-mnist", "nal-mnist"}


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_scale_resolves_to_commands_the_cli_parses(path):
    from smoothcert.cli import build_parser

    parser = build_parser()
    for scale in ("smoke", "cpu", "paper"):
        experiment = load_experiment(path, scale)
        assert experiment.stages, scale
        for stage in experiment.stages:
            assert "{" not in stage.command, stage.command  # every variable substituted
            args = parser.parse_args(list(stage.argv))  # flags exist and parse
            assert args.command == stage.argv[0]
            if stage.option("--out") is not None:
                assert stage.option("--out").startswith(f"runs/{experiment.name}/{scale}/")
            if scale == "cpu":  # sized for one thread each, two stages or experiments at once
                assert stage.option("--threads") == "1", stage.name


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_report_sections_name_paper_tables_the_file_defines(path):
    """A dotted key such as sigma0.25 needs quotes in TOML; unquoted it would nest tables and
    the section's comparison with the paper would silently vanish."""
    from smoothcert.analysis.compare import published_row
    from smoothcert.experiments.comparisons import paper_table

    experiment = load_experiment(path, "smoke")
    for section in experiment.report.get("sections", []):
        if "paper" in section:
            assert section["paper"] in experiment.paper, (section.get("title"), section["paper"])
        if section.get("kind") in ("certified-accuracy", "ranking") and "paper" in section:
            rows = paper_table(experiment, section).get("rows", {})
            for label, row in rows.items():
                # parses, and says how many test images it is from: without that, ours −
                # published would carry no sampling error on the published side
                assert published_row(row, label).n is not None, (section.get("title"), label)
            if path.stem.startswith("jeong-shin"):  # labels match the runs', so rows compare
                # a run without a row of the file's table takes its row from a published
                # yardstick (experiments/published/*.json) of its method at the section's σ
                assert set(rows) <= set(section["runs"]), section.get("title")
                for label in set(section["runs"]) - set(rows):
                    sigma = float(section["paper"].removeprefix("sigma"))
                    dataset = path.stem.rsplit("-", 1)[-1]
                    assert _yardstick_has(path.parent / "published", dataset, label, sigma)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_paper_rows_that_name_logs_are_their_mean_at_the_section_radii(path):
    """A row typed into an experiment file with its published logs is compared with our runs
    on the same test images; its accuracy, sd and ACR must be those logs' mean and sd over
    their whole test set, at the radii of the section that prints it."""
    import numpy as np

    from smoothcert.analysis.compare import published_row
    from smoothcert.analysis.yardsticks import examples_path, load_examples
    from smoothcert.experiments.comparisons import PUBLISHED_FOLDER, paper_table

    experiment = load_experiment(path, "cpu")
    for section in experiment.report.get("sections", []):
        if section.get("kind") != "certified-accuracy" or "paper" not in section:
            continue
        radii = [float(r) for r in experiment.substitute(section)["radii"]]
        for label, value in paper_table(experiment, section).get("rows", {}).items():
            row = published_row(value, label)
            if not row.logs:
                continue
            folder = path.parent / PUBLISHED_FOLDER
            logs = load_examples(examples_path(folder, row.yardstick), row.logs).values()
            accuracy = np.array(
                [[np.mean(g.correct & (g.radius >= r)) for r in radii] for g in logs]
            )
            acr = np.array([np.mean(g.radius * g.correct) for g in logs])
            assert len(row.accuracy) == len(radii), label
            assert row.accuracy == pytest.approx(accuracy.mean(0), abs=1e-5), label
            assert row.runs == len(logs) and row.n == len(next(iter(logs)).idx), label
            if row.runs > 1:
                assert row.sd == pytest.approx(accuracy.std(0, ddof=1), abs=1e-5), label
                assert row.acr_sd == pytest.approx(acr.std(ddof=1), abs=1e-6), label
            assert row.acr == pytest.approx(acr.mean(), abs=1e-6), label


def test_paper_rows_restrict_a_section_to_some_published_rows_and_name_a_missing_one():
    from types import SimpleNamespace

    from smoothcert.experiments.comparisons import paper_table

    table = {"note": "n", "rows": {"gaussian": {"accuracy": [0.9]}, "macer": {"accuracy": [1]}}}
    experiment = SimpleNamespace(path="x.toml", paper={"sigma1.0": table})
    section = {"title": "t", "paper": "sigma1.0", "paper_rows": ["gaussian"]}
    assert paper_table(experiment, section) == {
        "note": "n",
        "rows": {"gaussian": {"accuracy": [0.9]}},
    }
    assert paper_table(experiment, {"paper": "sigma1.0"}) is table
    with pytest.raises(ValueError, match="paper_rows 'stn', which table 'sigma1.0' does not have"):
        paper_table(experiment, {**section, "paper_rows": ["stn"]})


def _yardstick_has(folder: Path, dataset: str, method: str, sigma: float) -> bool:
    from smoothcert.analysis.yardsticks import load_yardsticks

    return any(
        (group["dataset"], group["method"], group["sigma"]) == (dataset, method, sigma)
        for yardstick in load_yardsticks(folder).values()
        for group in yardstick["groups"]
    )


@pytest.mark.slow
@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_smoke_scale_runs_end_to_end_then_skips_everything(path, tmp_path, mnist_train, request):
    if "cifar10" in path.stem:  # skipped without CIFAR-10, which users bring themselves
        request.getfixturevalue("cifar10_test")
    r = smoothcert("experiment", "run", path, "--scale", "smoke", "--root", tmp_path)
    report = tmp_path / "results" / path.stem / "smoke" / "report.md"
    assert report.is_file(), r.stdout
    text = report.read_text()
    experiment = load_experiment(path, "smoke", root=tmp_path)
    # The header names the experiment file as given on the command line.
    assert f"Scale **smoke** of `{path.as_posix()}`" in text
    for stage in experiment.stages:  # the command behind every stage is in the report
        assert f"| {stage.name} | done |" in text
    # Every section found its runs: nothing is reported missing at the smoke scale's stages.
    produced = {s.option("--out") for s in experiment.stages} - {None}
    for line in text.splitlines():
        if line.endswith("(not run yet)"):
            assert line.split("`")[1] not in produced, line
    if path.stem == "cohen-mnist":  # beside Jeong & Shin's Gaussian logs on the same images
        paired = text.split("On the same test images")[1].split("\n\n")[1]
        assert paired.count(" × 5 / 10,000 | ") == 1 and "| σ = 0.25 | " in paired, paired
    if path.stem == "jeong-shin-mnist":  # ours − published ± SE, the ranking by ACR
        # on the same 3 test images (the published runs certify all 3): differences 0, −1, −1
        # over the images, SE = sd/√3 = √(⅓)/√3; beside it the published whole-test-set value
        assert "| gaussian | 3 × 5 / 10,000 | " in text
        assert "0.333 vs 1.000 (-0.667 ± 0.333); all 0.993" in text
        assert "| rank | run | examples | ACR ± SE | published ACR | published rank |" in text
        ranked = text.split("σ = 0.25: the methods ranked by ACR")[1]
        assert "| 5 |" in ranked  # gaussian
        # the published ACR on our 3 images: the same in the ranking as in the paired table
        paired_gaussian = next(
            line
            for line in text.split("σ = 0.25: certified accuracy")[1].splitlines()
            if line.startswith("| gaussian | 3 × 5 / 10,000 | ")
        )
        on_ours = paired_gaussian.split(" | ")[-1].split(" vs ")[1].split(" ")[0]
        gaussian_rank = next(line for line in ranked.splitlines() if "| gaussian |" in line)
        assert gaussian_rank.split(" | ")[6] == on_ours
    # Every figure the report links exists beside it.
    for line in text.splitlines():
        if line.startswith("!["):
            assert (report.parent / line.split("(")[1].rstrip(")")).is_file(), line
    state = json.loads((tmp_path / "runs" / path.stem / "smoke" / STATE_FILE).read_text())
    assert all(s["status"] == "done" and s["attempts"] == 1 for s in state["stages"].values())

    again = smoothcert("experiment", "run", path, "--scale", "smoke", "--root", tmp_path)
    assert again.stdout.count(": done\n") == len(experiment.stages)
    state2 = json.loads((tmp_path / "runs" / path.stem / "smoke" / STATE_FILE).read_text())
    assert all(s["attempts"] == 1 for s in state2["stages"].values())  # nothing reran
    status = smoothcert("experiment", "status", path, "--scale", "smoke", "--root", tmp_path)
    assert status.stdout.count(" done ") == len(experiment.stages)


def _tiny(tmp_path: Path, epochs: int = 1, extra: str = "") -> Path:
    f = tmp_path / "tiny.toml"
    f.write_text(
        f"""
name = "tiny"
[scales.smoke]
epochs = {epochs}
{extra}
[[stages]]
name = "train"
command = ["train", "--dataset", "mnist", "--arch", "cnn3", "--method", "gaussian",
  "--sigma", "0.25", "--epochs", "{{epochs}}", "--subset", "64", "--test-subset", "32",
  "--batch-size", "32", "--no-progress", "--out", "{{runs}}/train"]
[[stages]]
name = "certify"
command = ["certify", "{{runs}}/train/last.safetensors", "--n0", "10", "--n", "50",
  "--max", "2", "--batch", "50", "--no-progress", "--out", "{{runs}}/c.db"]
[[report.sections]]
kind = "certified-accuracy"
radii = [0.0, 0.25]
runs.only = "{{runs}}/c.db"
"""
    )
    return f


def test_a_failing_stage_stops_the_run_and_is_retried_next_time(tmp_path, mnist_train):
    f = _tiny(tmp_path)
    experiment = load_experiment(f, "smoke", root=tmp_path)
    codes = iter([3])

    def failing_then_cli(argv: list[str]) -> int:
        from smoothcert.cli import main

        return next(codes, None) or main(argv)

    assert run_experiment(experiment, failing_then_cli) is False
    [train, certify] = experiment_status(experiment)
    assert (train.status, certify.status) == ("failed", "left")
    assert run_experiment(experiment, failing_then_cli) is True
    state = json.loads((tmp_path / "runs/tiny/smoke" / STATE_FILE).read_text())
    assert state["stages"]["train"]["attempts"] == 2
    assert [s.status for s in experiment_status(experiment)] == ["done", "done"]


def test_changed_arguments_rerun_the_stage_which_resumes(tmp_path, mnist_train):
    experiment = load_experiment(
        _tiny(tmp_path, extra='more = ["--eval-batch-size", "16"]'), "smoke", root=tmp_path
    )
    assert run_experiment(experiment, _cli)
    # The stage's command now ends with the extra flags: no longer the finished stage.
    text = (
        (tmp_path / "tiny.toml").read_text().replace('"{runs}/train"]', '"{runs}/train", "{more}"]')
    )
    (tmp_path / "tiny.toml").write_text(text)
    changed = load_experiment(tmp_path / "tiny.toml", "smoke", root=tmp_path)
    assert [s.status for s in experiment_status(changed)] == ["left", "done"]
    lines: list[str] = []
    assert run_experiment(changed, _cli, log=lines.append)
    assert "[2/2] certify: done" in lines and lines[0].startswith("[1/2] train: smoothcert")
    metrics = (tmp_path / "runs/tiny/smoke/train/metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 1  # the training run was found finished, not retrained


def test_finished_stages_stay_finished_when_the_root_is_spelled_another_way(
    tmp_path, mnist_train, monkeypatch
):
    """Run with an absolute --root, then read from that root as the current directory (the
    report for docs/ spells the runs relatively): the same folder, so the same commands."""
    experiment = load_experiment(_tiny(tmp_path), "smoke", root=tmp_path.resolve())
    assert run_experiment(experiment, _cli)
    monkeypatch.chdir(tmp_path)
    relative = load_experiment("tiny.toml", "smoke")
    assert relative.stages[0].option("--out") == "runs/tiny/smoke/train"
    assert [s.status for s in experiment_status(relative)] == ["done", "done"]
    lines: list[str] = []
    assert run_experiment(relative, _cli, log=lines.append)
    assert lines[:2] == ["[1/2] train: done", "[2/2] certify: done"]
    # a copy of the state file under another folder is not that folder's record
    other = tmp_path / "copy"
    (other / "runs/tiny/smoke").mkdir(parents=True)
    state = tmp_path / "runs/tiny/smoke" / STATE_FILE
    (other / "runs/tiny/smoke" / STATE_FILE).write_text(state.read_text())
    elsewhere = load_experiment(tmp_path / "tiny.toml", "smoke", root=other)
    assert [s.status for s in experiment_status(elsewhere)] == ["left", "left"]


def test_status_estimates_time_left_from_a_training_runs_epochs(tmp_path):
    experiment = load_experiment(_tiny(tmp_path, epochs=4), "smoke", root=tmp_path)
    out = tmp_path / "runs/tiny/smoke/train"
    out.mkdir(parents=True)
    rows = [{"epoch": 1, "train_seconds": 9.0, "eval_seconds": 1.0}]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    [train, certify] = experiment_status(experiment)
    assert (train.status, train.progress, train.left_seconds) == ("left", "1/4 epochs", 30.0)
    assert certify.left_seconds is None


def test_time_left_follows_the_latest_pace_not_the_average_since_the_start(tmp_path):
    from smoothcert.experiments import status
    from smoothcert.runs.attack import ATTACK_SCHEMA
    from smoothcert.runs.store import RunStore

    # Training: two slow epochs (another machine's threads), then three of 10 s; 3 left.
    out = tmp_path / "train"
    out.mkdir()
    rows = [{"epoch": e, "train_seconds": 99.0 if e <= 2 else 9.0, "eval_seconds": 1.0}
            for e in range(1, 6)]  # fmt: skip
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert status._probe_training(out, "8") == (30.0, "5/8 epochs")
    # Rows: 50 examples at 10 s, then 50 at 1 s; 100 left at the latest 50 rows' 1 s each
    # (the mean since the start, 5.5 s, would say 550 s).
    path = tmp_path / "a.db"
    with RunStore.open(path, "attack", {"eps": [0.0]}, ATTACK_SCHEMA) as store:
        for idx in range(100):
            row = {
                "label": 1,
                "predictions": [1],
                "correct": [1],
                "seconds": 10.0 if idx < 50 else 1.0,
            }
            store.add(idx, row)
    assert status.RECENT_ROWS == 50
    assert status._probe_rows(path, "200") == (100.0, "100/200 examples")
    # every command that writes a row per example reports them, dcert included
    from smoothcert.experiments.spec import Stage

    for command in ("certify", "predict", "attack", "dcert"):
        stage = Stage("s", "s", (command, "ckpt", "--max", "200", "--out", str(path)))
        assert status._probe(stage) == (100.0, "100/200 examples"), command


def _cli(argv: list[str]) -> int:
    from smoothcert.cli import main

    return main(argv)


def test_a_second_runner_is_refused_while_one_holds_the_lock(tmp_path):
    f = _tiny(tmp_path)
    runs = tmp_path / "runs/tiny/smoke"
    runs.mkdir(parents=True)
    fd = os.open(runs / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        r = smoothcert("experiment", "run", f, "--scale", "smoke", "--root", tmp_path, check=False)
        assert r.returncode == 2
        assert "is already running" in r.stderr and len(r.stderr.splitlines()) == 1
        status = smoothcert("experiment", "status", f, "--scale", "smoke", "--root", tmp_path)
        assert "left" in status.stdout
    finally:
        os.close(fd)
    assert not (runs / "train").exists()


@pytest.mark.parametrize(
    "body, message",
    [
        ("name = 'x'\n[scales.smoke]\n[[stages]\n", "is not valid TOML"),
        ("name = 'x'\n[[stages]]\nname='a'\ncommand=['fetch']\n", "no [scales.NAME] tables"),
        ("name = 'x'\n[scales.cpu]\n[[stages]]\nname='a'\ncommand=['fetch']\n", "scale must be"),
        (
            "name = 'x'\n[scales.smoke]\n[[stages]]\nname='a'\ncommand=['train', '{nope}']\n",
            "unknown variable {nope}",
        ),
        (
            "name = 'x'\n[scales.smoke]\nl=[1,2]\n[[stages]]\nname='a'\ncommand=['a-{l}']\n",
            "list variable {l} must be a whole argument",
        ),
        (
            "name = 'x'\n[scales.smoke]\n[[stages]]\nname='a'\ncommand=['fetch']\n"
            "[[stages]]\nname='a'\ncommand=['fetch']\n",
            "stage names must be unique, repeated: a",
        ),
        ("name = '../x'\n[scales.smoke]\n", "'name' must be a plain name"),
        (
            "name = 'x'\n[scales.smoke]\ns=1\n[[stages]]\nname='a{v}'\nforeach='v in s'\n"
            "command=['fetch']\n",
            "foreach needs a list variable",
        ),
    ],
)
def test_bad_experiment_files_are_one_line_errors(tmp_path, body, message):
    f = tmp_path / "bad.toml"
    f.write_text(body)
    r = smoothcert("experiment", "run", f, "--scale", "smoke", "--root", tmp_path, check=False)
    assert r.returncode == 2
    assert message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_missing_file_and_unknown_stage(tmp_path):
    r = smoothcert("experiment", "status", tmp_path / "none.toml", check=False)
    assert r.returncode == 2 and "does not exist" in r.stderr
    f = _tiny(tmp_path)
    r = smoothcert(
        "experiment", "run", f, "--scale", "smoke", "--stage", "nope", "--root", tmp_path,
        check=False,
    )  # fmt: skip
    assert r.returncode == 2 and "unknown stage(s) nope; stages are: train, certify" in r.stderr


def test_reports_give_each_certify_runs_class_mix(tmp_path) -> None:
    """The certified-accuracy section says how many examples of each class a run holds."""
    from helpers import LinearImage, ToyData
    from smoothcert.certify.smoothing import SmoothedClassifier
    from smoothcert.experiments.report import _class_mix
    from smoothcert.runs import CertifyOptions, Selection, certify_dataset

    data = ToyData()
    g = SmoothedClassifier(LinearImage(), 2, 0.25, batch_size=300, input_shape=(1, 2, 2))
    certify_dataset(
        g, data, tmp_path / "r.db", CertifyOptions(n0=10, n=50, alpha=0.01), Selection(seed=0)
    )
    ones = int(data.y.sum())
    assert _class_mix(str(tmp_path / "r.db")) == f"12 ({12 - ones}–{ones} per class, 2 classes)"
    assert ones == 9


def test_attack_sections_give_paired_differences_with_standard_errors(tmp_path) -> None:
    """A − B on the images both runs attacked: mean of the per-image verdict differences and
    its standard error; beyond two standard errors is marked."""
    from types import SimpleNamespace

    from smoothcert.experiments.report import _attack
    from smoothcert.runs.attack import ATTACK_SCHEMA
    from smoothcert.runs.store import RunStore

    def run(name: str, verdicts: dict[int, list[int]]) -> str:
        path = tmp_path / f"{name}.db"
        with RunStore.open(path, "attack", {"eps": [0.0, 1.0]}, ATTACK_SCHEMA) as store:
            for idx, c in verdicts.items():
                store.add(idx, {"label": 1, "predictions": c, "correct": c, "seconds": 0.0})
        return str(path)

    # A beats B at ε = 1 on every shared image (0..9); image 20 only A has, 10 and 11 only B
    a = run("a", {i: [1, 1] for i in [*range(10), 20]})
    b = run("b", {i: [1, 0] if i < 10 else [1, 1] for i in range(12)})
    c = run("c", {i: [1, int(i % 2 == 0)] for i in range(10)})  # B on half of them
    # 20 images, F fooled on 4: z = √(k(n − 1)/(n − k)) = √(76/16) = 2.18, p = 0.029: beyond
    # 2 SE, but not below 0.05/2 as Holm over the row's two radii asks
    e = run("e", {i: [1, 1] for i in range(20)})
    f = run("f", {i: [1, int(i >= 4)] for i in range(20)})
    runs = {"A": a, "B": b, "C": c, "E": e, "F": f}
    experiment = SimpleNamespace(path="x.toml", stages=[])
    pairs = [["A", "B"], ["A", "C"], ["E", "F"]]
    section = {"title": "t", "runs": runs, "differences": pairs}
    text = "\n".join(_attack(experiment, section, tmp_path))
    assert "| A − B | 10 | +0.000 ± 0.000 | +1.000 ± 0.000*† |" in text
    # ε = 1: differences five 0s and five 1s, mean 0.5, sd √(2.5/9), se = sd/√10: z = 3
    se = math.sqrt(0.25 * 10 / 9) / math.sqrt(10)
    assert f"| A − C | 10 | +0.000 ± 0.000 | +0.500 ± {se:.3f}*† |" in text
    se = math.sqrt(4 * 16 / (20 * 19)) / math.sqrt(20)
    assert f"| E − F | 20 | +0.000 ± 0.000 | +0.200 ± {se:.3f}* |" in text
    with pytest.raises(ValueError, match=r"differences of section 't' must be pairs"):
        _attack(experiment, {**section, "differences": [["A", "Z"]]}, tmp_path)


def test_attack_sections_plot_accuracy_against_radius_with_binomial_errors(tmp_path) -> None:
    from types import SimpleNamespace

    from smoothcert.analysis.attack import binomial_se
    from smoothcert.experiments.report import _attack
    from smoothcert.runs.attack import ATTACK_SCHEMA
    from smoothcert.runs.store import RunStore

    path = tmp_path / "a.db"
    with RunStore.open(path, "attack", {"eps": [0.0, 1.0]}, ATTACK_SCHEMA) as store:
        for idx in range(4):  # accuracy 1.0 at ε = 0, 0.25 at ε = 1
            c = [1, int(idx == 0)]
            store.add(idx, {"label": 1, "predictions": c, "correct": c, "seconds": 0.0})
    experiment = SimpleNamespace(path="x.toml", stages=[])
    section = {"title": "t", "runs": {"A": str(path)}, "plot": "acc.png"}
    text = "\n".join(_attack(experiment, section, tmp_path))
    assert "![accuracy under attack against radius](acc.png)" in text
    assert (tmp_path / "acc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert binomial_se([1.0, 0.25], 4) == [0.0, math.sqrt(0.25 * 0.75 / 4)]


def test_reports_flag_runs_whose_stage_has_not_finished(tmp_path):
    """A section reading a run whose stage started but is not done says so above its table."""
    from smoothcert.experiments.report import write_report

    f = _tiny(tmp_path, epochs=4)
    f.write_text(
        f.read_text() + '[[report.sections]]\nkind = "notes"\ntext = "t"\n'
        'runs.model = "{runs}/train"\n'
    )
    experiment = load_experiment(f, "smoke", root=tmp_path)
    report = write_report(experiment).read_text()
    assert "Partial" not in report  # nothing started: "not run yet" is said elsewhere
    out = tmp_path / "runs/tiny/smoke/train"
    out.mkdir(parents=True)
    row = {"epoch": 1, "train_seconds": 9.0, "eval_seconds": 1.0}
    (out / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    report = write_report(experiment).read_text()
    assert (
        "**Partial:** not finished yet, so their numbers will change: "
        "model (stage `train` left, 1/4 epochs)." in report
    )


def test_reproductions_label_paper_rows_from_another_dataset(tmp_path) -> None:
    """cohen-mnist prints Cohen et al.'s Table 4, which is ImageNet's, beside MNIST: its source
    and its rows' labels say so."""
    from types import SimpleNamespace

    from helpers import LinearImage, ToyData
    from smoothcert.certify.smoothing import SmoothedClassifier
    from smoothcert.experiments.report import _predict
    from smoothcert.runs import (
        CertifyOptions,
        PredictOptions,
        Selection,
        certify_dataset,
        predict_dataset,
    )

    experiment = load_experiment(REPO / "experiments" / "cohen-mnist.toml", "cpu")
    table4 = experiment.paper["table4"]
    for words in ("Cohen et al. 2019", "Table 4", "ImageNet", "ResNet-50"):
        assert words in table4["source"] and words in table4["label"]
    g = SmoothedClassifier(LinearImage(), 2, 0.25, batch_size=300, input_shape=(1, 2, 2))
    certify_dataset(
        g,
        ToyData(),
        tmp_path / "ref.db",
        CertifyOptions(n0=10, n=300, alpha=0.001),
        Selection(seed=1),
    )
    predict_dataset(
        g, ToyData(), tmp_path / "p.db", PredictOptions(n=100, alpha=0.001), Selection(seed=0)
    )
    section = {"runs": {"n = 100": str(tmp_path / "p.db")}, "reference": str(tmp_path / "ref.db"),
               "paper": "table4"}  # fmt: skip
    shown = SimpleNamespace(paper=experiment.paper, stages=[])
    text = "\n".join(_predict(shown, section, tmp_path))
    assert "| n = 100 (Cohen et al. 2019 Table 4, ImageNet, ResNet-50) | 0.65 |" in text
    assert "(paper)" not in text and "ImageNet (not MNIST)" in text


def test_reproductions_compare_adaptive_and_fixed_n_on_independent_noise() -> None:
    """cohen-cifar10's fixed-n stages draw from another seed than its adaptive stages, which
    share no selection draws or first look with them; the titles claim no more than that."""
    for scale in ("smoke", "cpu", "paper"):
        experiment = load_experiment(REPO / "experiments" / "cohen-cifar10.toml", scale)
        seeds = {"adaptive": set(), "fixed": set()}
        for stage in experiment.stages:
            for kind in seeds:
                if stage.name.startswith(f"certify-{kind}-"):
                    seeds[kind].add(stage.option("--seed"))
                    if kind == "fixed":  # a run file of another seed is never resumed
                        assert f"-seed{stage.option('--seed')}-" in stage.option("--out")
        assert len(seeds["adaptive"]) == len(seeds["fixed"]) == 1, seeds
        assert seeds["adaptive"].isdisjoint(seeds["fixed"]), seeds
        sections = experiment.report["sections"]
        titles = [s["title"] for s in sections if s["kind"] == "agreement"]
        assert titles and not any(" agree " in f"{t} " for t in titles)
        assert any("independent" in s.get("text", "") for s in sections if s["kind"] == "notes")


def test_reproductions_say_when_cifar10_is_the_jpeg_copy() -> None:
    """At smoke and cpu scale cohen-cifar10 runs on the JPEG copy: the section titles and the
    scale's text say "CIFAR-10 (JPEG)" (the dataset's own name for it), not CIFAR-10."""
    for scale in ("smoke", "cpu"):
        experiment = load_experiment(REPO / "experiments" / "cohen-cifar10.toml", scale)
        titles = [experiment.substitute(s)["title"] for s in experiment.report["sections"]]
        on_data = [t for t in titles if "certified accuracy" in t.lower() or "CERTIFY on" in t]
        assert len(on_data) == 4 and all("CIFAR-10 (JPEG)" in t for t in on_data), titles
    about = load_experiment(REPO / "experiments" / "cohen-cifar10.toml", "cpu").variables["about"]
    assert "CIFAR-10 (JPEG)" in about
