"""What a new user tripped over, each now one line and nothing lost: a checkpoint certified on
another dataset of the same shape, --n0 above --n, a resumed or interrupted run that said
nothing (and a running accuracy that forgot the rows before the resume), export into a
missing folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import smoothcert, untrained_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, mnist_test) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    return untrained_checkpoint(folder, mnist_test.info, arch="lenet", sigma=0.25)


FAST = ("--n0", "10", "--n", "20", "--batch", "32", "--max", "3", "--skip", "500")


def test_certify_on_another_dataset_of_the_same_shape_warns(checkpoint, tmp_path) -> None:
    from smoothcert.data import load_dataset

    try:
        load_dataset("fashion-mnist", "test")
    except FileNotFoundError as exc:
        if os.environ.get("SMOOTHCERT_REQUIRE_DATA") == "1":
            pytest.fail(f"required dataset missing: {exc}")
        pytest.skip(str(exc))
    result = smoothcert(
        "certify", checkpoint, "--dataset", "fashion-mnist", *FAST,
        "--out", tmp_path / "f.db", "--no-progress", check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warning == [
        "warning: the checkpoint was trained on 'mnist', not on --dataset 'fashion-mnist' "
        "(allowed when the inputs have the same shape, but its predictions there are usually "
        "meaningless)"
    ]
    same = smoothcert("certify", checkpoint, "--dataset", "mnist", *FAST,
                      "--out", tmp_path / "m.db", "--no-progress")  # fmt: skip
    assert "warning" not in same.stderr


def test_n0_above_n_warns(checkpoint, tmp_path) -> None:
    result = smoothcert("certify", checkpoint, "--n0", "50", "--n", "20", "--max", "1",
                        "--out", tmp_path / "r.db", "--no-progress")  # fmt: skip
    assert "warning: --n0 50 is larger than --n 20" in result.stderr
    assert result.stderr.count("\n") == 1


def test_a_resumed_run_says_so_and_counts_the_rows_before_it(checkpoint, tmp_path) -> None:
    out = tmp_path / "r.db"
    first = smoothcert("certify", checkpoint, *FAST[:-4], "--max", "2", "--out", out,
                       "--no-progress")  # fmt: skip
    assert "resuming" not in first.stderr
    # --max is part of the run's identity: resume by interrupting instead
    import smoothcert.runs.certify as runs

    real = runs.RunStore.add
    calls = []

    def add_then_stop(self, idx, row):
        real(self, idx, row)
        calls.append(idx)
        if len(calls) == 2:
            raise KeyboardInterrupt

    out = tmp_path / "i.db"
    runs.RunStore.add = add_then_stop
    try:
        stopped = smoothcert("certify", checkpoint, *FAST[:-4], "--max", "5", "--out", out,
                             "--no-progress", check=False)  # fmt: skip
    finally:
        runs.RunStore.add = real
    assert stopped.returncode == 130
    assert stopped.stderr.strip().splitlines()[-1] == (
        "smoothcert certify: interrupted after 2/5; rerun the same command to resume"
    )
    resumed = smoothcert("certify", checkpoint, *FAST[:-4], "--max", "5", "--out", out,
                         "--no-progress")  # fmt: skip
    assert f"resuming {out}: 2/5 done" in resumed.stderr
    assert "5 examples in" in resumed.stdout


def test_the_running_accuracy_counts_rows_stored_before_a_resume(tmp_path) -> None:
    from smoothcert.cli._common import RowProgress
    from smoothcert.runs.store import RunStore

    out = tmp_path / "r.db"
    with RunStore.open(out, "certify", {"a": 1}, {"correct": "INTEGER"}) as store:
        store.add(0, {"correct": 1})
        store.add(1, {"correct": 1})
        store.add(2, {"correct": 0})

    def postfix(tally: dict, row: dict) -> dict:
        tally["right"] = tally.get("right", 0) + row["correct"]
        return {"acc": tally["right"] / tally["done"]}

    bar = RowProgress(True, postfix, run=str(out))
    bar.start(3, 1)
    bar({"correct": 1})
    bar.close()
    assert bar.tally == {"done": 4, "right": 3}  # 3 of 4, not 1 of 1
    # an interrupt reports the rows committed to the run file (this bar's 4th row is not)
    assert bar.interrupted() == "interrupted after 3/4; rerun the same command to resume"


def test_export_creates_a_missing_folder_as_certify_out_does(checkpoint, tmp_path) -> None:
    run = tmp_path / "new" / "deeper" / "r.db"  # certify --out creates its folders
    smoothcert("certify", checkpoint, *FAST[:-4], "--max", "2", "--out", run, "--no-progress")
    tsv = tmp_path / "elsewhere" / "sub" / "r.tsv"
    done = smoothcert("export", run, tsv)
    assert done.stdout.strip() == f"wrote 2 rows to {tsv}"
    assert len(tsv.read_text().splitlines()) == 3
    (tmp_path / "file").write_text("x")
    bad = smoothcert("export", run, tmp_path / "file" / "r.tsv", check=False)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "is a file" in bad.stderr


def test_analyze_says_each_radius_holds_separately(checkpoint, tmp_path) -> None:
    run = tmp_path / "r.db"
    smoothcert("certify", checkpoint, *FAST[:-4], "--max", "2", "--out", run, "--no-progress")
    out = smoothcert("analyze", run, "--radii", "0", "0.5", "1", "--rho", "0.01").stdout
    assert (
        "lower bound (Theorem 6), holding at each radius separately with probability 0.99; "
        "at all 3 radii together with probability >= 0.97 (union bound)" in out
    )
