"""Stages run side by side share the cores: each one's torch gets cores ÷ jobs threads by
default (OMP_NUM_THREADS), a value the user set is kept, and the CLI passes the share on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from smoothcert.experiments import processes
from smoothcert.experiments.processes import share_of_cores, spawn_stage, stage_environment


@pytest.mark.parametrize(("cores", "jobs", "threads"), [(2, 1, 2), (2, 2, 1), (2, 3, 1), (8, 3, 2)])
def test_each_stage_gets_an_even_share_and_at_least_one(monkeypatch, cores, jobs, threads):
    monkeypatch.setattr(processes.os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert share_of_cores(jobs) == threads


def test_the_share_becomes_torchs_thread_count_unless_the_user_set_one(monkeypatch, tmp_path):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = stage_environment(1)
    assert env["OMP_NUM_THREADS"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert "OMP_NUM_THREADS" not in stage_environment(None)
    # A child started with that environment runs torch on one thread.
    code = "import torch; print(torch.get_num_threads())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "1"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert stage_environment(1)["OMP_NUM_THREADS"] == "3"


def test_spawn_stage_starts_the_stage_with_that_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    seen = {}

    def fake_popen(argv, **kwargs):
        seen.update(argv=argv, env=kwargs["env"])
        return "process"

    monkeypatch.setattr(processes.subprocess, "Popen", fake_popen)
    assert spawn_stage(["status"], tmp_path / "log", 0, threads=1) == "process"
    assert seen["argv"] == [sys.executable, "-m", "smoothcert", "status"]
    assert seen["env"]["OMP_NUM_THREADS"] == "1"


def test_the_cli_gives_each_of_n_jobs_its_share(monkeypatch, tmp_path):
    from smoothcert.cli import main

    monkeypatch.setattr(processes.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    seen = {}

    def fake_run(experiment, main, **kwargs):
        seen["spawn"] = kwargs["spawn"]
        return False

    monkeypatch.setattr("smoothcert.experiments.run_experiment", fake_run)
    toml = Path(__file__).resolve().parents[2] / "experiments" / "cohen-mnist.toml"
    argv = [
        "experiment",
        "run",
        str(toml),
        "--scale",
        "smoke",
        "--jobs",
        "2",
        "--root",
        str(tmp_path),
    ]
    assert main(argv) == 1
    assert seen["spawn"].func is spawn_stage and seen["spawn"].keywords == {"threads": 2}
