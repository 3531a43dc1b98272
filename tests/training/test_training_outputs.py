"""The training output directory: never overwrite what is not ours, no dead run after a
refused or diverged start, missing outputs rewritten on rerun, older runs resumable."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import torch
from safetensors.torch import load_file

from smoothcert.cli import main
from smoothcert.training import TrainConfig, train

FAST = dict(
    dataset="mnist", arch="lenet", optimizer="adam", lr=3e-3, weight_decay=0.0,
    schedule="constant", batch_size=64, epochs=1, subset=128, test_subset=50,
)  # fmt: skip


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _one_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def _argv(out, *extra) -> list[str]:
    return ["train", "--dataset", "mnist", "--arch", "lenet", "--epochs", "1", "--subset",
            "128", "--test-subset", "50", "--batch-size", "64", "--no-progress", "--threads",
            "1", "--out", str(out), *extra]  # fmt: skip


def test_a_folder_holding_only_checkpoint_names_is_not_overwritten(
    tmp_path, capsys, mnist_train
) -> None:
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "best.safetensors").write_bytes(b"somebody's model")
    before = _digest(out / "best.safetensors")
    line = _one_line(capsys, _argv(out))
    assert "not empty and holds no smoothcert training run" in line
    assert _digest(out / "best.safetensors") == before


@pytest.mark.parametrize("text", ["[]", "null", "3"])
def test_a_config_that_is_not_an_object_is_corrupt(tmp_path, capsys, text, mnist_train) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(text)
    assert "config.json is corrupt" in _one_line(capsys, _argv(out))


def test_a_refused_architecture_leaves_no_run_behind(tmp_path, capsys, mnist_train) -> None:
    out = tmp_path / "run"
    assert "vgg16 needs inputs of at least" in _one_line(capsys, _argv(out, "--arch", "vgg16"))
    assert not (out / "config.json").exists()
    assert main(_argv(out)) == 0  # the corrected command is not refused as "different"
    capsys.readouterr()


def test_seed_beyond_64_bits_is_named(tmp_path, capsys, mnist_train) -> None:
    line = _one_line(capsys, _argv(tmp_path / "run", "--seed", str(2**64)))
    assert "seed must be an integer in [0, 2**64)" in line
    assert not (tmp_path / "run" / "config.json").exists()


def test_divergence_in_the_first_epoch_keeps_nothing_and_frees_the_folder(
    tmp_path, capsys, mnist_train
) -> None:
    out = tmp_path / "run"
    line = _one_line(capsys, _argv(out, "--optimizer", "sgd", "--lr", "1e30"))
    assert "training diverged" in line and "nothing was kept" in line
    assert not any(p for p in out.iterdir() if not p.name.startswith("."))
    assert main(_argv(out, "--optimizer", "sgd", "--lr", "0.01")) == 0
    capsys.readouterr()


def test_rerun_rewrites_deleted_outputs_from_the_resume_state(tmp_path, mnist_train) -> None:
    cfg = TrainConfig(**FAST, method="gaussian", out_dir=str(tmp_path / "run"))
    first = train(cfg, train_set=mnist_train, progress=False)
    last = load_file(first.last_checkpoint)
    lines = (tmp_path / "run" / "metrics.jsonl").read_text()
    for name in ("last.safetensors", "best.safetensors", "metrics.jsonl"):
        (tmp_path / "run" / name).unlink()
    said: list[str] = []
    again = train(cfg, train_set=mnist_train, progress=False, log=said.append)
    assert again.resumed_from_epoch == 1
    for name in ("last.safetensors", "best.safetensors"):  # no --val-size: best is the last
        restored = load_file(tmp_path / "run" / name)
        assert restored.keys() == last.keys()
        assert all(torch.equal(restored[k], last[k]) for k in last)
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == lines
    assert any("rewrote the missing" in s for s in said)


def test_a_rerun_with_another_method_option_names_it(tmp_path, mnist_train) -> None:
    cfg = TrainConfig(**(FAST | {"epochs": 1}), method="nal", out_dir=str(tmp_path / "run"))
    cfg = dataclasses.replace(cfg, method_options={"steps": 1, "num_noise": 1})
    train(cfg, train_set=mnist_train, progress=False)
    changed = dataclasses.replace(cfg, method_options={"steps": 2, "num_noise": 1})
    with pytest.raises(ValueError, match=r"method_options\.steps: 1 there, 2 now"):
        train(changed, train_set=mnist_train, progress=False)


@pytest.mark.parametrize(
    ("method", "flag", "value"),
    [("gaussian", "--sigma", "1e40"), ("wrm", "--gamma", "inf"), ("nal", "--sigma", "nan")],
)
def test_method_numbers_beyond_float32_are_refused(
    tmp_path, capsys, method, flag, value, mnist_train
) -> None:
    line = _one_line(capsys, _argv(tmp_path / "run", "--method", method, flag, value))
    assert f"{flag[2:]} must be a finite number" in line
    assert not (tmp_path / "run").exists()
