"""Data-parallel training under a real ``torchrun`` (2 gloo processes on CPU, 1 thread each):
two processes with global batch B follow one process with batch B (cnn3 has no batch norm),
a kill -9 of the whole job mid-epoch followed by the same command ends with the weights of an
uninterrupted job, and the killed job's state also resumes in one process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from smoothcert._util.seeding import rank_seed
from smoothcert.cli import main
from smoothcert.models.checkpoint import decode_tensors
from smoothcert.training import TrainConfig, ddp, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# 384 examples, global batch 64: 6 steps per epoch, 32 examples per process and step.
ARGS = dict(
    dataset="mnist", arch="cnn3", method="standard", epochs=2, subset=384, test_subset=100,
    batch_size=64, lr=0.05, schedule="cosine", seed=1,
    precision="fp32",  # the CLI's default is auto; the library's one-process reference is fp32
)  # fmt: skip
ENV = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(out: Path, *extra: str) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "smoothcert", "--", "train", "--out", str(out), "--threads", "1",
           "--no-progress", *extra]  # fmt: skip
    for key, value in ARGS.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def _one_process(out: Path, mnist_train, mnist_test):
    config = TrainConfig(**ARGS, out_dir=str(out))
    return train(config, train_set=mnist_train, test_set=mnist_test, progress=False)


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "two"
    done = subprocess.run(_torchrun(out), capture_output=True, text=True, env=ENV, timeout=300)
    assert done.returncode == 0, _failed(done)
    # Rank 0 alone speaks and writes: one line per epoch and one summary.
    assert done.stdout.count("epoch 2/2, loss") == 1, done.stdout
    assert done.stdout.count("last checkpoint:") == 1, done.stdout
    return out


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(
    two_process_run, tmp_path, mnist_train, mnist_test
) -> None:
    one = _one_process(tmp_path / "one", mnist_train, mnist_test)
    a, b = _weights(one.last_checkpoint), _weights(two_process_run / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:  # the same gradients, summed in another order: float rounding only
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6)
    # Sharded evaluation sums to the same test accuracy; the train loss is the global mean.
    two = [
        json.loads(line) for line in (two_process_run / "metrics.jsonl").read_text().splitlines()
    ]
    assert [m["test_acc"] for m in two] == [m["test_acc"] for m in one.history]
    assert [m["train_acc"] for m in two] == [m["train_acc"] for m in one.history]
    for m, n in zip(two, one.history, strict=True):
        assert m["train_loss"] == pytest.approx(n["train_loss"], rel=1e-5)


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(c) for c in text.split()]


def _gone(pid: int) -> bool:
    """True once a killed process has exited (reaped, or a zombie waiting for its reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def _failed(done: subprocess.CompletedProcess) -> str:
    """Both streams of a failed torchrun: a worker's own traceback comes before torchrun's."""
    return f"stdout:\n{done.stdout[-2000:]}\nstderr:\n{done.stderr[:6000]}"


@pytest.mark.slow
def test_kill_dash_nine_of_the_job_then_the_same_command_gives_the_same_weights(
    two_process_run, tmp_path, mnist_train, mnist_test
) -> None:
    out = tmp_path / "killed"
    cmd = _torchrun(out, "--checkpoint-every", "2")
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, start_new_session=True
    )
    state = out / "resume.safetensors"
    deadline = time.monotonic() + 300
    while not state.exists():  # the first mid-epoch state: after step 2 of 6
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "no resume state was written"
        time.sleep(0.005)
    # kill -9 of the job: torchrun starts each worker in a session of its own, so each process
    # (the workers first, then torchrun) gets its own SIGKILL.
    killed = [*_children(proc.pid), proc.pid]
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    proc.wait()
    while not all(_gone(pid) for pid in killed):  # no killed worker may outlive the rerun's start
        assert time.monotonic() < deadline, "a killed worker is still running"
        time.sleep(0.01)
    _, meta = decode_tensors(state)
    assert meta["epoch"] == 0 and meta["batch"] > 0, "the kill did not land mid-epoch"
    other_world = tmp_path / "killed-copy"
    shutil.copytree(out, other_world)

    rerun = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert rerun.returncode == 0, _failed(rerun)
    assert f"resuming {out} in epoch 1/2 after batch {meta['batch']}" in rerun.stdout
    a, b = _weights(two_process_run / "last.safetensors"), _weights(out / "last.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)

    # The order of examples depends on (seed, epoch) only: one process takes over the job.
    resumed = _one_process(other_world, mnist_train, mnist_test)
    one = _one_process(tmp_path / "one", mnist_train, mnist_test)
    c, d = _weights(resumed.last_checkpoint), _weights(one.last_checkpoint)
    for k in c:
        torch.testing.assert_close(c[k], d[k], rtol=1e-5, atol=1e-6)


def test_per_rank_seeds_are_distinct_and_reproducible() -> None:
    seeds = {rank_seed(0, 0, 0, 4, r) for r in range(8)}
    assert len(seeds) == 8
    assert rank_seed(7, 3, 2, 4, 1) == rank_seed(7, 3, 2, 4, 1)
    assert rank_seed(7, 3, 2, 4, 1) != rank_seed(7, 3, 3, 4, 1)


def test_shares_of_a_batch_are_disjoint_and_cover_it() -> None:
    idx = torch.arange(21)
    parts = [ddp.share(idx, ddp.Ranks(r, 4)) for r in range(4)]
    assert [len(p) for p in parts] == [6, 5, 5, 5]
    assert torch.equal(torch.cat(parts), idx)
    assert torch.equal(ddp.share(idx, ddp.Ranks()), idx)


def _refused(tmp_path: Path, monkeypatch, capsys, env: dict[str, str], *extra: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = tmp_path / "run"
    code = main(
        ["train", "--out", str(out), "--no-progress", "--dataset", "mnist", "--arch", "cnn3"]
        + ["--subset", "64", *extra]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    return err


def test_a_world_size_that_does_not_divide_the_batch_is_refused(
    tmp_path, monkeypatch, capsys
) -> None:
    env = {"RANK": "0", "WORLD_SIZE": "3", "LOCAL_RANK": "0"}
    err = _refused(tmp_path, monkeypatch, capsys, env, "--batch-size", "64")
    assert "batch_size 64 (the global batch) must be a multiple of the world size 3" in err


def test_sync_bn_without_batch_norm_is_refused(tmp_path, monkeypatch, capsys) -> None:
    err = _refused(tmp_path, monkeypatch, capsys, {}, "--sync-bn")
    assert "sync_bn needs a model with batch norm" in err
