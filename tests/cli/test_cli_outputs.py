"""Outputs and arguments are checked before any work and never destroy data: the TSV export
(never onto a run file or a directory, no stray temporary file), arguments refused before the
run file exists, --tsv refused for sharded runs, and the PREDICT reference run (Table 4) must
be a run of the same model, σ, dataset and split."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest

from helpers import LinearImage, Result, ToyData, smoothcert
from smoothcert import analysis
from smoothcert.certify.smoothing import SmoothedClassifier
from smoothcert.runs import (
    CertifyOptions,
    PredictOptions,
    Selection,
    certify_dataset,
    export_tsv,
    predict_dataset,
)

pytestmark = pytest.mark.slow

# ----------------------------------------------------------------------------- helpers


def refused(result: Result, *phrases: str) -> None:
    """A refusal: exit code 2, one line on stderr holding every phrase, no traceback."""
    assert result.returncode == 2, result
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr)


def _train(out: Path, seed: int) -> Path:
    smoothcert(
        "train", "--dataset", "mnist", "--arch", "lenet", "--method", "gaussian",
        "--sigma", "0.25", "--epochs", "1", "--subset", "300", "--test-subset", "50",
        "--batch-size", "50", "--seed", str(seed), "--out", out, "--no-progress",
    )  # fmt: skip
    return out / "last.safetensors"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, mnist_train) -> Path:
    return _train(tmp_path_factory.mktemp("train"), seed=0)


# The smallest real certify/predict runs: 3 MNIST test images, a few hundred draws.
TINY = ["--dataset", "mnist", "--max", "3", "--n", "200", "--no-progress"]


def certify(checkpoint: Path, *args: str | Path, check: bool = True) -> Result:
    return smoothcert("certify", checkpoint, *TINY, "--n0", "20", *args, check=check)


def predict(checkpoint: Path, *args: str | Path, check: bool = True) -> Result:
    return smoothcert("predict", checkpoint, *TINY, *args, check=check)


@pytest.fixture(scope="module")
def certify_run(checkpoint: Path, tmp_path_factory) -> Path:
    """A finished certify run (tests copy it before touching anything)."""
    db = tmp_path_factory.mktemp("run") / "run.db"
    certify(checkpoint, "--out", db)
    return db


def _tmp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ------------------------------------------------- 1. the export never overwrites a run file


def test_export_refuses_the_run_file_another_run_and_a_directory(
    certify_run: Path, tmp_path: Path
) -> None:
    run = shutil.copy(certify_run, tmp_path / "e.db")
    other = shutil.copy(certify_run, tmp_path / "g.db")
    before = Path(run).read_bytes()

    refused(smoothcert("export", run, run, check=False), "is the run file itself")
    refused(smoothcert("export", run, other, check=False), "is an SQLite file")
    (tmp_path / "link.tsv").symlink_to(run)  # the run under another name
    refused(smoothcert("export", other, tmp_path / "link.tsv", check=False), "SQLite file")
    folder = tmp_path / "somedir"
    folder.mkdir()
    refused(smoothcert("export", run, folder, check=False), "is a directory")

    assert Path(run).read_bytes() == before and Path(other).read_bytes() == before
    assert _tmp_files(tmp_path) == [] and list(folder.iterdir()) == []
    # The runs are intact: exporting them still works and gives every row.
    proc = smoothcert("export", run, tmp_path / "e.tsv")
    assert proc.stdout.strip() == f"wrote 3 rows to {tmp_path / 'e.tsv'}"
    lines = (tmp_path / "e.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["idx", "0", "1", "2"]


def test_certify_tsv_onto_its_own_run_file_is_refused_before_work(
    checkpoint: Path, tmp_path: Path
) -> None:
    db = tmp_path / "f.db"
    refused(certify(checkpoint, "--out", db, "--tsv", db, check=False), "is the run file itself")
    assert not db.exists()
    # With the run already there (a resume), it is left byte for byte.
    certify(checkpoint, "--out", db)
    before = db.read_bytes()
    refused(certify(checkpoint, "--out", db, "--tsv", db, check=False), "is the run file itself")
    assert db.read_bytes() == before


def test_export_failure_leaves_no_temporary_file(
    certify_run: Path, tmp_path: Path, monkeypatch
) -> None:
    tsv = tmp_path / "out.tsv"
    tsv.write_text("old export\n")

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        export_tsv(certify_run, tsv)
    assert _tmp_files(tmp_path) == []
    assert tsv.read_text() == "old export\n"  # the previous export is kept


# ---------------------------------------- 2. bad arguments are refused before the run file


@pytest.mark.parametrize(
    ("args", "phrase", "corrected"),
    [
        (["--seed", "-1"], "--seed must be an integer >= 0, got -1", ["--seed", "1"]),
        (
            ["--adaptive", "--radii", "0.5", "--n-first", "1000"],
            "--n-first must be at most --n (200), got 1000",
            ["--adaptive", "--radii", "0.5", "--n-first", "50"],
        ),
        (
            ["--adaptive", "--radii", "nan", "0.5"],
            "--radii must be finite and >= 0, got [nan, 0.5]",
            ["--adaptive", "--radii", "0.5"],
        ),
        (
            ["--adaptive", "--radii", "inf"],
            "--radii must be finite",
            ["--adaptive", "--radii", "1"],
        ),
        (
            ["--adaptive", "--radii", "0.5", "--growth", "inf"],
            "growth must be a finite number > 1, got inf",
            ["--adaptive", "--radii", "0.5", "--growth", "3"],
        ),
    ],
)
def test_bad_arguments_leave_no_run_file(
    checkpoint: Path, tmp_path: Path, args, phrase, corrected
) -> None:
    db = tmp_path / "s.db"
    refused(certify(checkpoint, "--out", db, *args, check=False), phrase)
    assert not db.exists()
    # ... so the corrected command is a fresh run, not refused as "different arguments".
    proc = certify(checkpoint, "--out", db, *corrected)
    assert proc.stdout.strip().endswith(f"3 examples in {db}")


def test_bad_seed_refused_by_predict_without_a_file(checkpoint: Path, tmp_path: Path) -> None:
    db = tmp_path / "p.db"
    refused(predict(checkpoint, "--out", db, "--seed", "-2", check=False), "--seed must be")
    assert not db.exists()


def toy_data(seed: int = 5) -> ToyData:
    """Six examples, labels all by the rule: a library-level run in milliseconds."""
    return ToyData(m=6, seed=seed, flip_every=0)


def toy_classifier(sigma: float = 0.25) -> SmoothedClassifier:
    return SmoothedClassifier(LinearImage(), 2, sigma, batch_size=200, input_shape=(1, 2, 2))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"adaptive_radii": [math.nan, 0.5]}, "radii must be finite and >= 0"),
        ({"adaptive_radii": [0.5], "adaptive_options": {"n_first": 1000}}, "n_first must be at"),
        ({"adaptive_radii": [0.5], "adaptive_options": {"growth": math.inf}}, "growth must be"),
    ],
)
def test_library_refuses_before_creating_or_touching_the_run(
    tmp_path: Path, kwargs, message
) -> None:
    from smoothcert.certify.adaptive import AdaptiveOptions

    def run(out: Path, **kwargs) -> None:
        """A certify run; the options and selection built here, where a refusal is caught."""
        selection = Selection(seed=kwargs.pop("seed", 0))
        plan = kwargs.pop("adaptive_options", None)
        plan = AdaptiveOptions(**plan) if plan is not None else None
        options = CertifyOptions(n0=10, n=200, alpha=0.01, adaptive_options=plan, **kwargs)
        certify_dataset(toy_classifier(), toy_data(), out, options, selection)

    db = tmp_path / "new.db"
    with pytest.raises(ValueError, match=message):
        run(db, **kwargs)
    assert not db.exists()
    existing = tmp_path / "old.db"
    run(existing)
    before = existing.read_bytes()
    with pytest.raises(ValueError, match=message):
        run(existing, **kwargs)
    assert existing.read_bytes() == before


# ---------------------------------------------------------- 3. --tsv with a sharded run


def test_sharded_tsv_is_refused_before_any_work(
    checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    db, tsv = tmp_path / "ts.db", tmp_path / "ts.tsv"
    for rank in (0, 1):
        proc = certify(checkpoint, "--out", db, "--shard", f"{rank}/2", "--tsv", tsv, check=False)
        refused(
            proc,
            f"--tsv cannot be used with a sharded run (shard {rank}/2)",
            f"smoothcert merge {db} {tmp_path / 'ts.shard*-of-2.db'}",
            f"smoothcert export {db} {tsv}",
        )
    monkeypatch.setenv("RANK", "1")  # sharded by torchrun rather than --shard
    monkeypatch.setenv("WORLD_SIZE", "3")
    refused(certify(checkpoint, "--out", db, "--tsv", tsv, check=False), "shard 1/3")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ------------------------------------------ 4. the reference run must be the same g(x)


def test_reference_of_another_split_sigma_or_model_is_refused(
    checkpoint: Path, tmp_path: Path
) -> None:
    train_split = tmp_path / "train-split.db"
    certify(checkpoint, "--split", "train", "--out", train_split)
    other_sigma = tmp_path / "sigma05.db"
    certify(checkpoint, "--sigma", "0.5", "--out", other_sigma)
    other_model = tmp_path / "other-model.db"
    certify(_train(tmp_path / "train1", seed=1), "--out", other_model)
    out = tmp_path / "p.db"
    for reference, phrase in [
        (train_split, "has split 'train' but the predict run has 'test'"),
        (other_sigma, "has sigma 0.5 but the predict run has 0.25"),
        (other_model, "has model_sha256 '"),
    ]:
        refused(predict(checkpoint, "--out", out, "--reference", reference, check=False), phrase)
        assert not out.exists()  # refused before the run


def test_reference_of_another_dataset_is_refused(checkpoint: Path, tmp_path: Path) -> None:
    try:
        from smoothcert.data import load_dataset

        load_dataset("fashion-mnist", "test")
    except FileNotFoundError as exc:
        pytest.skip(f"fashion-mnist is not installed: {exc}")
    fashion = tmp_path / "fashion.db"
    certify(checkpoint, "--dataset", "fashion-mnist", "--out", fashion)
    out = tmp_path / "p.db"
    proc = predict(checkpoint, "--out", out, "--reference", fashion, check=False)
    refused(proc, "has dataset 'fashion-mnist' but the predict run has 'mnist'")
    assert not out.exists()


def test_predict_categories_checks_the_reference(tmp_path: Path) -> None:
    mnist = {"dataset": "mnist", "split": "test"}
    predict_dataset(
        toy_classifier(), toy_data(), tmp_path / "p.db", PredictOptions(n=100), config=mnist
    )
    fashion = {"dataset": "fashion-mnist", "split": "test"}
    certify_dataset(
        toy_classifier(),
        toy_data(),
        tmp_path / "f.db",
        CertifyOptions(n0=10, n=100),
        config=fashion,
    )
    with pytest.raises(ValueError, match="has dataset 'fashion-mnist' but the predict run has"):
        analysis.predict_categories(tmp_path / "p.db", tmp_path / "f.db")
    # Runs whose configs name no dataset: the labels of shared examples must still agree.
    predict_dataset(toy_classifier(), toy_data(), tmp_path / "q.db", PredictOptions(n=100))
    certify_dataset(
        toy_classifier(), toy_data(seed=9), tmp_path / "g.db", CertifyOptions(n0=10, n=100)
    )
    with pytest.raises(ValueError, match="not the same examples"):
        analysis.predict_categories(tmp_path / "q.db", tmp_path / "g.db")
    # The same model, σ and examples: the categories, which add up to 1.
    certify_dataset(toy_classifier(), toy_data(), tmp_path / "r.db", CertifyOptions(n0=10, n=2000))
    categories = analysis.predict_categories(tmp_path / "q.db", tmp_path / "r.db")
    assert sum(categories.values()) == pytest.approx(1.0)


# ---------------------------------------------------- 5. outputs checked before the run


def test_missing_reference_is_refused_before_the_run(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.db"
    proc = predict(checkpoint, "--out", out, "--reference", tmp_path / "nope.db", check=False)
    refused(proc, f"reference run {tmp_path / 'nope.db'} does not exist")
    assert not out.exists()
    # A predict run as its own reference is no reference at all.
    predict(checkpoint, "--out", out)
    before = out.read_bytes()
    refused(predict(checkpoint, "--out", out, "--reference", out, check=False), "run itself")
    assert out.read_bytes() == before


def test_matching_reference_gives_table4(checkpoint: Path, certify_run: Path, tmp_path: Path):
    proc = predict(checkpoint, "--out", tmp_path / "p.db", "--reference", certify_run)
    header, _, values = proc.stdout.strip().splitlines()[-3:]
    assert header.startswith("| correct, accurate | correct, inaccurate |")
    assert sum(float(v) for v in values.strip("| ").split(" | ")) == pytest.approx(1.0, abs=2e-3)


def test_unwritable_tsv_target_is_refused_before_the_run(checkpoint: Path, tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    (tmp_path / "file").write_text("not a folder")
    proc = certify(checkpoint, "--out", db, "--tsv", tmp_path / "file" / "x.tsv", check=False)
    refused(proc, f"cannot create directory {tmp_path / 'file'} of TSV output", "is a file")
    assert not db.exists()
    other = tmp_path / "other.db"
    certify(checkpoint, "--out", other)
    before = other.read_bytes()
    refused(certify(checkpoint, "--out", db, "--tsv", other, check=False), "is an SQLite file")
    assert not db.exists() and other.read_bytes() == before
    # The run file's own new directory is created with it, so a TSV beside it is fine.
    proc = certify(checkpoint, "--out", tmp_path / "new" / "r.db", "--tsv", tmp_path / "new/r.tsv")
    assert proc.stdout.strip().endswith(f"wrote {tmp_path / 'new' / 'r.tsv'}")
    assert len((tmp_path / "new" / "r.tsv").read_text().splitlines()) == 4
