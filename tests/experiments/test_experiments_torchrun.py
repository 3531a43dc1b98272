"""An experiment under a real ``torchrun`` (2 gloo workers on CPU, 1 thread each): training is
data-parallel, certification is sharded and merged into the stage's run file, which holds
exactly the rows one process certifying the same checkpoint writes; only worker 0 keeps the
books and writes the report; the same command again skips every stage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import smoothcert
from smoothcert.experiments import load_experiment
from smoothcert.experiments.state import STATE_FILE
from smoothcert.runs.store import RunStore

pytestmark = pytest.mark.slow

ENV = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}

EXPERIMENT = """
name = "duo"
[scales.smoke]
[[stages]]
name = "train"
command = ["train", "--dataset", "mnist", "--arch", "cnn3", "--method", "gaussian",
  "--sigma", "0.25", "--epochs", "1", "--subset", "64", "--test-subset", "32",
  "--batch-size", "32", "--threads", "1", "--no-progress", "--out", "{runs}/train"]
[[stages]]
name = "certify"
command = ["certify", "{runs}/train/last.safetensors", "--n0", "10", "--n", "60",
  "--skip", "7", "--max", "5", "--batch", "30", "--seed", "3", "--no-progress",
  "--out", "{runs}/c.db"]
[[report.sections]]
kind = "certified-accuracy"
radii = [0.0, 0.25]
runs.only = "{runs}/c.db"
"""


def _torchrun(path: Path, root: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "smoothcert", "--", "experiment", "run", str(path), "--scale", "smoke",
           "--root", str(root)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)


def _rows(path: Path) -> list[dict]:
    with RunStore.read(path) as store:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in store.rows()]


def test_an_experiment_runs_on_two_workers_and_resumes(tmp_path, mnist_train) -> None:
    path = tmp_path / "duo.toml"
    path.write_text(EXPERIMENT)
    done = _torchrun(path, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = tmp_path / "runs/duo/smoke"
    # Worker 0 alone keeps the books: one line per stage, one merge, one report.
    assert done.stdout.count("[1/2] train:") == 1, done.stdout
    assert done.stdout.count("certify: merged 2 shards (5 rows)") == 1, done.stdout
    assert done.stdout.count("report: ") == 1, done.stdout
    state = json.loads((runs / STATE_FILE).read_text())
    assert {k: v["status"] for k, v in state["stages"].items()} == {
        "train": "done",
        "certify": "done",
    }
    # The training ran on both workers: each trained on half of every global batch of 32.
    config = json.loads((runs / "train/config.json").read_text())
    assert config["batch_size"] == 32
    assert (runs / "c.shard0-of-2.db").is_file() and (runs / "c.shard1-of-2.db").is_file()

    # The merged run is the run one process writes for the same checkpoint and arguments.
    stage = load_experiment(path, "smoke", root=tmp_path).stages[1]
    argv = list(stage.argv)
    argv[argv.index("--out") + 1] = str(tmp_path / "one.db")
    smoothcert(*argv)
    merged, one = _rows(runs / "c.db"), _rows(tmp_path / "one.db")
    assert [r["idx"] for r in merged] == [0, 7, 14, 21, 28]
    assert merged == one
    assert (tmp_path / "results/duo/smoke/report.md").is_file()

    again = _torchrun(path, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "[1/2] train: done" in again.stdout and "[2/2] certify: done" in again.stdout
    assert "merged" not in again.stdout
