"""precision auto: bf16 only where the hardware computes it, recorded, never switched on resume."""

from __future__ import annotations

import json

import pytest
import torch

import smoothcert._util.hardware as hw
from helpers import smoothcert, untrained_checkpoint
from smoothcert._util.hardware import (
    bf16_speedup,
    choose_precision,
    emulated_bf16_warning,
    resolve_precision,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")


def _never(*_a, **_k):
    raise AssertionError("the probe must not run when the capability is conclusive")


@pytest.mark.parametrize(
    "native, speedup, expected",
    [
        (True, _never, "bf16"),  # AVX-512 BF16 or AMX: no probe needed
        (False, _never, "fp32"),  # AVX2-only x86: emulated, no probe needed
        (None, lambda: 2.3, "bf16"),  # inconclusive: the probe says faster
        (None, lambda: 0.16, "fp32"),  # inconclusive: the probe says slower
        (None, lambda: 1.05, "fp32"),  # within the margin: not clearly faster
    ],
)
def test_auto_follows_the_capability_then_the_probe(native, speedup, expected):
    choice = choose_precision(CPU, native=lambda: native, speedup=speedup)
    assert choice.precision == expected
    assert choice.reason  # one line for the user


@pytest.mark.parametrize("supported, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_asks_the_gpu(monkeypatch, supported, expected):
    calls = []

    def fake(including_emulation=True):
        calls.append(including_emulation)
        return supported

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", fake)
    assert choose_precision("cuda:0", native=_never, speedup=_never).precision == expected
    assert calls == [False]  # emulated bf16 on an old GPU is not "native"


def test_explicit_bf16_on_an_emulating_cpu_warns_with_the_measured_slowdown():
    line = emulated_bf16_warning(CPU, native=lambda: False, speedup=lambda: 0.16)
    assert line is not None and "0.16×" in line and "\n" not in line
    assert emulated_bf16_warning(CPU, native=lambda: True, speedup=_never) is None
    assert emulated_bf16_warning(CPU, native=lambda: None, speedup=lambda: 1.8) is None
    precision, note = resolve_precision("bf16", CPU, native=lambda: False, speedup=lambda: 0.2)
    assert precision == "bf16" and "0.20×" in note  # it still runs in bf16


def test_a_recorded_precision_wins_over_this_machine(monkeypatch):
    # recorded bf16, resumed on a machine that emulates it: bf16, and the slowdown is said
    precision, note = resolve_precision(
        "auto", CPU, recorded="bf16", native=lambda: False, speedup=lambda: 0.16
    )
    assert precision == "bf16" and "recorded" in note and "0.16×" in note
    precision, note = resolve_precision("auto", CPU, recorded="fp32", native=lambda: True)
    assert precision == "fp32" and "recorded" in note
    assert resolve_precision("fp32", CPU, native=_never) == ("fp32", None)


def test_the_probe_is_measured_once_per_machine_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOOTHCERT_CACHE", str(tmp_path))
    calls = []
    monkeypatch.setattr(hw, "_measure_bf16_speedup", lambda: calls.append(1) or 0.5)
    assert bf16_speedup() == 0.5 and bf16_speedup() == 0.5
    assert len(calls) == 1
    cached = json.loads((tmp_path / "precision-probe.json").read_text())
    assert list(cached.values()) == [0.5]
    assert torch.__version__ in next(iter(cached))  # keyed by the machine and torch
    (tmp_path / "precision-probe.json").write_text("not json")  # a damaged cache: measure again
    assert bf16_speedup() == 0.5 and len(calls) == 2


def test_the_real_probe_returns_a_positive_ratio():
    ratio = hw._measure_bf16_speedup(seconds=0.03)
    assert 0.01 < ratio < 100


def _fake_machine(monkeypatch, native: bool) -> None:
    monkeypatch.setattr(hw, "cpu_bf16_native", lambda: native)
    monkeypatch.setattr(hw, "bf16_speedup", lambda **_: 3.0 if native else 0.16)


def test_a_training_run_under_auto_resumes_with_its_recorded_precision(
    tmp_path, mnist_train, monkeypatch
):
    from smoothcert.models.checkpoint import load_checkpoint
    from smoothcert.training import TrainConfig, train

    def config(epochs: int, precision: str = "auto") -> TrainConfig:
        return TrainConfig(
            dataset="mnist", arch="lenet", method="standard", out_dir=str(tmp_path / "run"),
            epochs=epochs, subset=128, test_subset=64, batch_size=64, schedule="constant",
            lr=0.05, seed=0, device="cpu", precision=precision,
        )  # fmt: skip

    lines: list[str] = []
    _fake_machine(monkeypatch, native=True)
    train(config(1), train_set=mnist_train, progress=False, log=lines.append)
    assert any(line.startswith("precision auto: bf16") for line in lines)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["precision"] == "bf16"
    _, meta = load_checkpoint(tmp_path / "run" / "last.safetensors")
    assert meta["precision"] == "bf16"

    # The same command on a machine that emulates bf16: the run keeps bf16 (and says why).
    lines.clear()
    _fake_machine(monkeypatch, native=False)
    result = train(config(2), train_set=mnist_train, progress=False, log=lines.append)
    assert result.resumed_from_epoch == 1
    assert any("as recorded" in line and "0.16×" in line for line in lines)
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "bf16"
    # An explicit other precision is refused, naming it.
    with pytest.raises(ValueError, match="precision"):
        train(config(3, "fp32"), train_set=mnist_train, progress=False)

    # A new run on that machine: fp32.
    fresh = train(
        TrainConfig(**{**config(1).__dict__, "out_dir": str(tmp_path / "new")}),
        train_set=mnist_train,
        progress=False,
    )
    assert json.loads((fresh.out_dir / "config.json").read_text())["precision"] == "fp32"


def test_certify_under_auto_records_the_choice_and_keeps_it(tmp_path, mnist_test, monkeypatch):
    import sqlite3

    ckpt = untrained_checkpoint(tmp_path, mnist_test.info, arch="lenet", sigma=0.25)
    out = tmp_path / "c.db"
    common = ["certify", ckpt, "--n0", "10", "--n", "50", "--batch", "50", "--skip", "500"]
    _fake_machine(monkeypatch, native=True)
    r = smoothcert(*common, "--max", "2", "--precision", "auto", "--no-progress", "--out", out)
    assert "precision auto: bf16" in r.stderr

    def stored() -> dict:
        con = sqlite3.connect(out)
        try:
            (value,) = con.execute("SELECT value FROM meta WHERE key='config'").fetchone()
        finally:
            con.close()
        return json.loads(value)

    assert stored()["precision"] == "bf16"
    _fake_machine(monkeypatch, native=False)
    r = smoothcert(*common, "--max", "2", "--precision", "auto", "--no-progress", "--out", out)
    assert "as recorded" in r.stderr
    assert stored()["precision"] == "bf16"
    # explicit bf16 where it is emulated: runs, with a one-line warning giving the slowdown
    r = smoothcert(
        *common, "--max", "1", "--precision", "bf16", "--no-progress", "--out", tmp_path / "b.db"
    )
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert any("emulated" in w and "0.16×" in w for w in warnings)


def test_attack_records_a_non_fp32_precision_and_auto_keeps_it(tmp_path, mnist_test, monkeypatch):
    import sqlite3

    ckpt = untrained_checkpoint(tmp_path, mnist_test.info, arch="lenet")
    out = tmp_path / "a.db"
    common = ["attack", ckpt, "--eps", "0", "0.5", "--steps", "2", "--skip", "1000"]
    _fake_machine(monkeypatch, native=True)
    smoothcert(*common, "--max", "3", "--precision", "auto", "--no-progress", "--out", out)
    con = sqlite3.connect(out)
    (value,) = con.execute("SELECT value FROM meta WHERE key='config'").fetchone()
    con.close()
    assert json.loads(value)["precision"] == "bf16"
    _fake_machine(monkeypatch, native=False)  # resumed elsewhere: still bf16, so it resumes
    r = smoothcert(*common, "--max", "3", "--precision", "auto", "--no-progress", "--out", out)
    assert "as recorded" in r.stderr
    r = smoothcert(*common, "--max", "3", "--no-progress", "--out", out, check=False)
    assert r.returncode == 2 and "precision" in r.stderr  # fp32 would change the results
