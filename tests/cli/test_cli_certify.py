"""End to end through the command line on a small real MNIST subset: train → certify
(a real subprocess) → kill -9 mid-run → rerun → analyze equals an uninterrupted run; and the
one-line errors of bad input."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import smoothcert

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, mnist_train) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    smoothcert(
        "train",
        "--dataset",
        "mnist",
        "--arch",
        "lenet",
        "--method",
        "gaussian",
        "--sigma",
        "0.25",
        "--epochs",
        "2",
        "--subset",
        "1000",
        "--test-subset",
        "200",
        "--batch-size",
        "50",
        "--optimizer",
        "adam",
        "--lr",
        "0.002",
        "--seed",
        "0",
        "--out",
        str(out),
        "--no-progress",
    )
    ckpt = out / "last.safetensors"
    assert ckpt.is_file()
    return ckpt


CERTIFY = ["--n0", "50", "--n", "1000", "--alpha", "0.001", "--batch", "500", "--skip", "7"]


def _rows(db: Path) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT idx, label, prediction, radius, correct, n_a, n, p_a_lower,"
            " counts_selection, counts_estimation FROM results ORDER BY idx"
        ).fetchall()
    finally:
        con.close()


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return con.execute("SELECT count(*) FROM results").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def test_kill_and_resume_equals_uninterrupted(checkpoint: Path, tmp_path: Path) -> None:
    common = [str(checkpoint), "--dataset", "mnist", "--sigma", "0.25", *CERTIFY, "--seed", "1"]
    ref = tmp_path / "ref.db"
    smoothcert("certify", *common, "--max", "16", "--out", str(ref), "--no-progress")

    db = tmp_path / "killed.db"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "smoothcert",
            "certify",
            *common,
            "--max",
            "16",
            "--out",
            str(db),
            "--no-progress",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while _count(db) < 4 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _count(db)
    assert 4 <= partial < 16, partial  # killed in the middle

    rerun = smoothcert("certify", *common, "--max", "16", "--out", str(db), "--no-progress")
    assert _rows(db) == _rows(ref)  # no duplicate, no gap, same results
    table = smoothcert("analyze", str(db), "--radii", "0", "0.25", "0.5").stdout
    ref_table = smoothcert("analyze", str(ref), "--radii", "0", "0.25", "0.5").stdout
    assert table.replace("killed", "ref") == ref_table
    assert "r = 0.25" in rerun.stdout and "16 examples" in rerun.stdout  # the table is printed

    # The model learned something: certified accuracy at r = 0 well above chance (0.1).
    first_row = [line for line in ref_table.splitlines() if line.startswith("| ref")][0]
    assert float(first_row.split("|")[2].strip("* ")) > 0.3

    tsv = tmp_path / "out.tsv"
    smoothcert("export", str(db), str(tsv))
    assert len(tsv.read_text().splitlines()) == 17


def test_changed_arguments_refused_without_damage(checkpoint: Path, tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    base = [
        str(checkpoint),
        "--dataset",
        "mnist",
        "--sigma",
        "0.25",
        "--n0",
        "20",
        "--n",
        "200",
        "--max",
        "2",
        "--no-progress",
        "--out",
        str(db),
    ]
    smoothcert("certify", *base)
    before = db.read_bytes()
    proc = smoothcert("certify", *base[:-3], "--alpha", "0.01", "--out", str(db), check=False)
    assert proc.returncode == 2
    assert "different arguments (alpha: 0.001 -> 0.01)" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert db.read_bytes() == before


def test_sigma_mismatch_warns(checkpoint: Path, tmp_path: Path) -> None:
    proc = smoothcert(
        "certify",
        str(checkpoint),
        "--dataset",
        "mnist",
        "--sigma",
        "0.5",
        "--n0",
        "10",
        "--n",
        "100",
        "--max",
        "1",
        "--no-progress",
        "--out",
        str(tmp_path / "s.db"),
    )
    assert "trained with σ = 0.25" in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n", "0"], "--n must be a positive integer"),
        (["--n0", "-1"], "--n0 must be a positive integer"),
        (["--alpha", "1.5"], "--alpha must be in (0, 1)"),
        (["--sigma", "-0.1"], "--sigma must be > 0"),
        (["--skip", "0"], "--skip must be a positive integer"),
        (["--max", "0"], "--max must be a positive integer"),
        (["--dataset", "nope"], "nope"),
    ],
)
def test_bad_arguments_one_line_error(checkpoint: Path, tmp_path: Path, args, message) -> None:
    proc = smoothcert(
        "certify",
        str(checkpoint),
        "--dataset",
        "mnist",
        "--no-progress",
        "--out",
        str(tmp_path / "x.db"),
        *args,
        check=False,
    )
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_bad_files_one_line_error(checkpoint: Path, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me")
    cases = [
        (
            [
                "certify",
                str(tmp_path / "missing.safetensors"),
                "--dataset",
                "mnist",
                "--out",
                str(tmp_path / "a.db"),
            ],
            "missing.safetensors",
        ),
        (
            ["certify", str(notes), "--dataset", "mnist", "--out", str(tmp_path / "b.db")],
            "notes.txt",
        ),
        (
            ["certify", str(checkpoint), "--dataset", "mnist", "--max", "1", "--out", str(notes)],
            "not a smoothcert run store",
        ),
        (
            [
                "certify",
                str(checkpoint),
                "--dataset",
                "mnist",
                "--max",
                "1",
                "--out",
                str(notes / "sub" / "x.db"),
            ],
            "cannot create output directory",
        ),
        (["analyze", str(notes)], "not a smoothcert run store"),
        (["export", str(tmp_path / "none.db"), str(tmp_path / "o.tsv")], "does not exist"),
    ]
    for args, message in cases:
        proc = smoothcert(*args, check=False)
        assert proc.returncode != 0, args
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (
            proc.stderr
        )
    assert notes.read_text() == "keep me"


def test_real_torchrun_shards_then_merge_equal_one_process(
    checkpoint: Path, tmp_path: Path
) -> None:
    """The README's command, for real: torchrun starts two workers that pick their shard from
    RANK/WORLD_SIZE. (Without the `--` after the module, torchrun takes --n and --max for
    abbreviations of its own options and stops.)"""
    args = [str(checkpoint), "--dataset", "mnist", "--sigma", "0.25", "--n0", "20", "--n", "300",
            "--max", "5", "--no-progress"]  # fmt: skip
    smoothcert("certify", *args, "--out", str(tmp_path / "one.db"))
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "smoothcert", "--", "certify", *args, "--out", str(tmp_path / "r.db")],
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    shards = sorted(str(p) for p in tmp_path.glob("r.shard*-of-2.db"))
    assert [Path(s).name for s in shards] == ["r.shard0-of-2.db", "r.shard1-of-2.db"]
    smoothcert("merge", str(tmp_path / "r.db"), *shards)
    assert _rows(tmp_path / "r.db") == _rows(tmp_path / "one.db")


def test_sharded_certify_merges_to_the_single_process_run(checkpoint: Path, tmp_path: Path) -> None:
    base = [
        str(checkpoint),
        "--dataset",
        "mnist",
        "--sigma",
        "0.25",
        "--n0",
        "20",
        "--n",
        "300",
        "--max",
        "6",
        "--no-progress",
    ]
    smoothcert("certify", *base, "--out", str(tmp_path / "one.db"))
    for rank in (0, 1):
        smoothcert("certify", *base, "--shard", f"{rank}/2", "--out", str(tmp_path / "r.db"))
    shards = [str(tmp_path / f"r.shard{rank}-of-2.db") for rank in (0, 1)]
    smoothcert("merge", str(tmp_path / "r.db"), *shards)
    assert _rows(tmp_path / "r.db") == _rows(tmp_path / "one.db")


def test_bench_reports_every_path_and_the_disagreement(checkpoint: Path, tmp_path: Path) -> None:
    import json

    out = tmp_path / "bench.json"
    proc = smoothcert(
        "bench", str(checkpoint), "--dataset", "mnist", "--rounds", "1", "--batch", "64",
        "--batches-per-round", "1", "--disagreement-images", "3", "--disagreement-draws", "20",
        "--compile", "--json", str(out),
    )  # fmt: skip
    record = json.loads(out.read_text())
    assert list(record["paths"]) == ["fp32", "fp32+channels_last", "bf16", "bf16+channels_last"]
    for path in record["paths"].values():
        assert path["forward_samples_per_s"] > 0 and path["counts_samples_per_s"] > 0
        assert path["ratio"] > 0
    assert record["samples_per_round"] == 64 and record["sigma"] == 0.25
    assert record["fastest"] in record["paths"]
    assert record["auto_batch_size"]["chosen"] in {
        int(k) for k in record["auto_batch_size"]["samples_per_s"]
    }
    d = record["bf16_fp32_disagreement"]
    assert d["inputs"] == 3 and d["draws"] == 20 and 0 <= d["disagreements"] <= 60
    assert "counts/forward" in proc.stdout and "time per certificate" in proc.stdout
    c = record["compiled"]  # --compile: the fastest path, compiled against eager
    assert c["path"] == record["fastest"] and c["compile_seconds"] > 0
    assert c["eager_samples_per_s"] > 0 and c["compiled_samples_per_s"] > 0 and c["speedup"] > 0
    assert f"compiled (--compile) at {c['path']}" in proc.stdout
    bad = smoothcert("bench", str(checkpoint), "--rounds", "0", check=False)
    assert bad.returncode != 0 and "--rounds must be a positive integer" in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--futility", "1.5"], "--futility must be in (0, 1)"),
        (["--final-share", "0"], "--final-share must be in (0, 1)"),
        (["--growth", "1"], "--growth must be > 1"),
    ],
)
def test_adaptive_bad_arguments_one_line_error(
    checkpoint: Path, tmp_path: Path, args, message
) -> None:
    proc = smoothcert(
        "certify", str(checkpoint), "--adaptive", "--radii", "0.25", "--no-progress",
        "--out", str(tmp_path / "a.db"), *args, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "a.db").exists()
