"""`experiment run --jobs N`: stages that do not read each other's outputs run side by side.

The dependencies come from the stages' paths (checked on the shipped files); the books list
every running stage with its process id."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

from smoothcert.experiments import experiment_status, load_experiment, run_experiment
from smoothcert.experiments.runner import LOCK_FILE, STATE_FILE
from smoothcert.experiments.schedule import stage_dependencies, stage_outputs
from smoothcert.experiments.spec import Stage

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- dependencies ---------------------------------------------------------------------------


def test_the_nal_experiment_trains_side_by_side_and_evaluates_each_model_after_it(tmp_path):
    experiment = load_experiment(REPO / "experiments/nal-mnist.toml", "cpu", root=tmp_path)
    deps = stage_dependencies(experiment.stages)
    assert list(deps) == [s.name for s in experiment.stages]
    trains = {s.name for s in experiment.stages if s.argv[0] == "train"}
    assert len(trains) == 18  # 12 compared models and 6 of the (K, s) ablation
    assert all(deps[name] == set() for name in trains)
    assert deps["attack-nal-g0.25"] == {"train-nal-g0.25"}
    assert deps["rho-wrm-g1.5"] == {"train-wrm-g1.5"}  # rho's output is its --json
    assert deps["dcert-wrm-g0.25"] == {"train-wrm-g0.25"}
    assert deps["attack-ablation-K8-s4"] == {"train-ablation-K8-s4"}
    for stage in experiment.stages:  # every evaluation waits for the model it reads, only
        if stage.name not in trains:
            model = f"train-{stage.argv[1].split('/train-')[1].split('/')[0]}"
            assert deps[stage.name] == {model}, stage.name


def test_cohen_cifar10_certifies_each_sigma_after_its_training(tmp_path):
    experiment = load_experiment(REPO / "experiments/cohen-cifar10.toml", "cpu", root=tmp_path)
    deps = stage_dependencies(experiment.stages)
    assert deps["certify-adaptive-sigma0.5"] == {"train-sigma0.5"}
    assert deps["certify-fixed-sigma1.0"] == {"train-sigma1.0"}
    assert deps["train-sigma0.12"] == set() and deps["train-sigma0.25"] == set()


def _stage(name: str, command: str) -> Stage:
    return Stage(name, name, tuple(command.split()))


def test_a_barrier_orders_everything_and_paths_compare_as_paths():
    stages = [
        _stage("a", "train --out runs/a"),
        _stage("b", "train --out=runs/b"),
        _stage("cert-a", "certify ./runs/a/last.safetensors --out runs/ca.db --tsv runs/ca.tsv"),
        _stage("reads-tsv", "analyze runs/ca.tsv"),  # analyze: outputs unknown
        _stage("c", "train --out runs/c"),
        _stage("again-a", "train --epochs 2 --out runs/a"),  # the same --out as a
        _stage("rho-c", "rho runs/c/last.safetensors --json runs/rho-c.json"),
        _stage("no-json", "rho runs/c/last.safetensors"),  # rho without --json: a barrier
        _stage("inside-c", "attack runs/x.safetensors --out runs/c/attack.db"),
        _stage("over-x", "train --out runs/x.safetensors"),  # writes what one read
    ]
    deps = stage_dependencies(stages)
    assert deps["a"] == set() and deps["b"] == set()
    assert deps["cert-a"] == {"a"}
    assert deps["reads-tsv"] == {"a", "b", "cert-a"}  # a barrier waits for all before it
    assert deps["c"] == {"reads-tsv"}  # and everything after it waits for it
    assert deps["again-a"] == {"reads-tsv", "a", "cert-a"}  # cert-a read a's old model
    assert deps["rho-c"] == {"reads-tsv", "c"}
    assert deps["no-json"] == {s.name for s in stages[:7]}
    assert deps["inside-c"] == {"no-json", "c"}  # writes inside c's folder
    assert deps["over-x"] == {"no-json", "inside-c"}
    assert stage_outputs(stages[2]) == [
        os.path.abspath("runs/ca.db"),
        os.path.abspath("runs/ca.tsv"),
    ]
    assert stage_outputs(stages[3]) is None and stage_outputs(stages[7]) is None


# ---- the books ------------------------------------------------------------------------------

FAKE = """
name = "fake"
[scales.smoke]
[[stages]]
name = "train-a"
command = ["train", "--out", "{runs}/a"]
[[stages]]
name = "train-b"
command = ["train", "--out", "{runs}/b"]
[[stages]]
name = "certify-a"
command = ["certify", "{runs}/a/last.safetensors", "--out", "{runs}/ca.db"]
[[stages]]
name = "train-c"
command = ["train", "--out", "{runs}/c"]
"""


def _fake(tmp_path: Path):
    path = tmp_path / "fake.toml"
    path.write_text(FAKE)
    return load_experiment(path, "smoke", root=tmp_path)


def _state(experiment) -> dict:
    return json.loads((experiment.runs_dir / STATE_FILE).read_text())


def test_one_at_a_time_the_books_list_the_running_stage_with_the_runners_pid(tmp_path):
    experiment = _fake(tmp_path)
    seen = []

    def execute(_argv: list[str]) -> int:
        statuses = [s.status for s in experiment_status(experiment)]
        seen.append((_state(experiment)["running"], statuses))
        return 0

    assert run_experiment(experiment, execute, only=["train-a", "train-b"])
    [(running_a, status_a), (running_b, status_b)] = seen
    assert list(running_a) == ["train-a"] and running_a["train-a"]["pid"] == os.getpid()
    assert list(running_b) == ["train-b"]
    assert status_a == ["running", "left", "left", "left"]
    assert status_b == ["done", "running", "left", "left"]
    assert _state(experiment)["running"] == {}


def test_status_shows_the_running_stage_of_a_runner_of_earlier_versions(tmp_path):
    experiment = _fake(tmp_path)
    experiment.runs_dir.mkdir(parents=True)
    state = {"stages": {}, "current": {"stage": "train-b", "pid": 1, "started": "x"}}
    (experiment.runs_dir / STATE_FILE).write_text(json.dumps(state))
    assert [s.status for s in experiment_status(experiment)] == ["left"] * 4  # no runner
    fd = os.open(experiment.runs_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # that runner
        statuses = [s.status for s in experiment_status(experiment)]
        assert statuses == ["left", "running", "left", "left"]
    finally:
        os.close(fd)
