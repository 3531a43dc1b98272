"""kill -9 mid-run, rerun the same command: it resumes at the last committed epoch and ends
with the same weights as an uninterrupted run with the same seed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from smoothcert.training import TrainConfig, train

ARGS = dict(
    dataset="mnist", arch="lenet", epochs=3, subset=512, test_subset=100, batch_size=32,
    optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, schedule="cosine",
    method="gaussian", sigma=0.25, seed=3,
    precision="fp32",  # the CLI's default is auto; the library's reference runs are fp32
)  # fmt: skip


def _command(out) -> list[str]:
    cmd = [sys.executable, "-m", "smoothcert", "train", "--out", str(out), "--threads", "1"]
    cmd += ["--no-progress"]
    for key, value in ARGS.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


def _committed_epoch(out) -> int:
    data = (out / "resume.safetensors").read_bytes()
    n = int.from_bytes(data[:8], "little")
    return json.loads(json.loads(data[8 : 8 + n])["__metadata__"]["smoothcert"])["epoch"]


@pytest.mark.slow
def test_kill_dash_nine_then_rerun_resumes_with_identical_weights(
    tmp_path, mnist_train, mnist_test
):
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_command(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 300
    while not (out / "metrics.jsonl").exists():  # epoch 1 committed (the log is written last)
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "epoch 1 never finished"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    committed = _committed_epoch(out)
    assert 1 <= committed < ARGS["epochs"], "the kill did not land mid-run"

    rerun = subprocess.run(_command(out), capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming {out} after epoch {committed}/3" in rerun.stdout
    assert [
        json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()
    ] == [1, 2, 3]

    # The uninterrupted reference, in this process with the same thread count.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        options = {k: v for k, v in ARGS.items() if k not in ("method", "sigma")}
        config = TrainConfig(
            **options,
            method="gaussian",
            method_options={"sigma": 0.25},
            out_dir=str(tmp_path / "ref"),
        )
        ref = train(config, train_set=mnist_train, test_set=mnist_test, progress=False)
    finally:
        torch.set_num_threads(threads)
    a, b = load_file(str(ref.last_checkpoint)), load_file(str(out / "last.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
