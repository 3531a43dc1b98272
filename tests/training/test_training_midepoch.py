"""Resume within an epoch: the state written every ``checkpoint_every`` steps holds the place in
the epoch, its running sums and the augmentation generator, so a rerun ends with the weights
and metrics of an uninterrupted run; states written at epoch ends (and by earlier versions)
still resume."""

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

from smoothcert.cli import main
from smoothcert.models.checkpoint import decode_tensors
from smoothcert.training import TrainConfig, train
from smoothcert.training.methods.gaussian import Gaussian
from smoothcert.training.resume import CheckpointEvery, parse_checkpoint_every

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_parse_checkpoint_every_steps_minutes_and_off() -> None:
    assert parse_checkpoint_every(500) == CheckpointEvery(steps=500)
    assert parse_checkpoint_every("500") == CheckpointEvery(steps=500)
    assert parse_checkpoint_every("10m") == CheckpointEvery(seconds=600.0)
    assert parse_checkpoint_every("0.5m") == CheckpointEvery(seconds=30.0)
    assert parse_checkpoint_every("off") == CheckpointEvery()
    assert parse_checkpoint_every(0) == CheckpointEvery()
    for bad in (-1, "10s", "m", "0m", "1.5", True, "ten"):
        with pytest.raises(ValueError, match="checkpoint_every must be N steps"):
            parse_checkpoint_every(bad)


def _config(out, **kw) -> TrainConfig:
    options = dict(
        dataset="mnist", arch="cnn3", method="gaussian", method_options={"sigma": 0.25},
        epochs=3, batch_size=64, lr=0.05, schedule="cosine", augment="crop-flip", seed=5,
        out_dir=str(out),
    )  # fmt: skip
    return TrainConfig(**(options | kw))


def _meta(path) -> tuple[dict, set[str]]:
    tensors, meta = decode_tensors(path)
    return meta, set(tensors)


def _interrupt_after(monkeypatch, calls: int) -> None:
    """Make the gaussian loss raise KeyboardInterrupt on its (calls+1)-th batch."""
    original, count = Gaussian.loss, [0]

    def loss(self, model, x, y, ctx):
        count[0] += 1
        if count[0] > calls:
            raise KeyboardInterrupt
        return original(self, model, x, y, ctx)

    monkeypatch.setattr(Gaussian, "loss", loss)


def _same_weights(a, b) -> bool:
    a, b = load_file(str(a)), load_file(str(b))
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _metrics(out) -> list[dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.endswith("_seconds")} for r in rows]


def test_mid_epoch_state_resumes_to_the_uninterrupted_weights(
    tmp_path, monkeypatch, mnist_train, mnist_test
) -> None:
    data = dict(train_set=mnist_train.subset(600), test_set=mnist_test.subset(100), progress=False)
    ref = train(_config(tmp_path / "ref", checkpoint_every=0), **data)

    out = tmp_path / "cut"
    with monkeypatch.context() as m:  # 10 batches per epoch: stop in epoch 2 after batch 4
        _interrupt_after(m, 14)
        with pytest.raises(KeyboardInterrupt):
            train(_config(out, checkpoint_every=4), **data)
    meta, tensors = _meta(out / "resume.safetensors")
    # The last state is after step 12, batch 2 of epoch 2 (steps 4, 8, 12 were due).
    assert (meta["epoch"], meta["batch"], meta["step"]) == (1, 2, 12)
    assert meta["epoch_sums"]["batches"] == 2 and meta["epoch_sums"]["seen"] == 128
    assert "rng/augment" in tensors

    lines: list[str] = []
    resumed = train(_config(out, checkpoint_every=4), **data, log=lines.append)
    assert lines[0] == f"resuming {out} in epoch 2/3 after batch 2"
    assert _same_weights(ref.last_checkpoint, resumed.last_checkpoint)
    assert _metrics(out) == _metrics(tmp_path / "ref")  # running sums carried over exactly


def test_epoch_boundary_state_has_the_old_format_and_resumes(
    tmp_path, monkeypatch, mnist_train, mnist_test
) -> None:
    """A state at an epoch end carries no mid-epoch fields, exactly what earlier versions wrote,
    so runs started before this feature resume as they did."""
    data = dict(train_set=mnist_train.subset(600), test_set=mnist_test.subset(100), progress=False)
    ref = train(_config(tmp_path / "ref", epochs=2, checkpoint_every=0), **data)
    out = tmp_path / "cut"
    with monkeypatch.context() as m:
        _interrupt_after(m, 13)
        with pytest.raises(KeyboardInterrupt):
            train(_config(out, epochs=2, checkpoint_every=0), **data)
    meta, tensors = _meta(out / "resume.safetensors")
    assert meta["epoch"] == 1 and "batch" not in meta and "epoch_sums" not in meta
    assert "rng/augment" not in tensors
    resumed = train(_config(out, epochs=2, checkpoint_every="10m"), **data)  # not identity
    assert _same_weights(ref.last_checkpoint, resumed.last_checkpoint)


def test_bad_checkpoint_every_is_one_line_and_writes_nothing(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(
        ["train", "--dataset", "mnist", "--arch", "cnn3", "--out", str(out)]
        + ["--checkpoint-every", "10s"]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--checkpoint-every must be N steps" in err  # in the flag's words
    assert not out.exists()


ARGS = dict(
    dataset="mnist", arch="lenet", epochs=2, subset=512, test_subset=100, batch_size=32,
    lr=0.05, schedule="cosine", method="gaussian", sigma=0.25, seed=3, checkpoint_every=5,
    precision="fp32",  # the CLI's default is auto; the library's reference runs are fp32
)  # fmt: skip


def _command(out) -> list[str]:
    cmd = [sys.executable, "-m", "smoothcert", "train", "--out", str(out), "--threads", "1"]
    cmd += ["--no-progress"]
    for key, value in ARGS.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    return cmd


@pytest.mark.slow
def test_kill_dash_nine_mid_epoch_then_rerun_gives_identical_weights(
    tmp_path, mnist_train, mnist_test
) -> None:
    out = tmp_path / "killed"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(_command(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + 300
    state = out / "resume.safetensors"
    while not state.exists():  # the first mid-epoch state (after step 5 of 16)
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "no resume state was written"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    meta, _ = _meta(state)
    assert meta["epoch"] == 0 and meta["batch"] > 0, "the kill did not land mid-epoch"
    assert not (out / "last.safetensors").exists()  # no epoch had completed

    rerun = subprocess.run(_command(out), capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming {out} in epoch 1/2 after batch {meta['batch']}" in rerun.stdout

    options = {k: v for k, v in ARGS.items() if k not in ("method", "sigma")}
    config = TrainConfig(
        **options, method="gaussian", method_options={"sigma": 0.25}, out_dir=str(tmp_path / "ref")
    )
    ref = train(config, train_set=mnist_train, test_set=mnist_test, progress=False)
    assert _same_weights(ref.last_checkpoint, out / "last.safetensors")
