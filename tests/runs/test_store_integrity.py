"""Damaged run files are refused untouched; merging is all-or-nothing and reports gaps."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from smoothcert.cli import main
from smoothcert.runs import shards as shard_files
from smoothcert.runs.store import RunStore

SCHEMA = {"value": "REAL", "note": "TEXT"}


def _run(path: Path, indices, config=None) -> Path:
    with RunStore.open(path, "toy", config or {"skip": 1}, SCHEMA) as store:
        for i in indices:
            store.add(i, {"value": i / 10, "note": [i, "x" * 200]})
    return path


def _damage_results_root(path: Path) -> None:
    """Overwrite the b-tree header of the results table's root page, as a disk fault might."""
    con = sqlite3.connect(path)
    (root,) = con.execute("SELECT rootpage FROM sqlite_master WHERE name = 'results'").fetchone()
    (page_size,) = con.execute("PRAGMA page_size").fetchone()
    con.close()
    with open(path, "r+b") as fh:
        fh.seek((root - 1) * page_size)
        fh.write(b"\xff" * 8)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_damaged_run_is_refused_and_left_untouched(tmp_path, capsys) -> None:
    path = _run(tmp_path / "r.db", range(40))
    _damage_results_root(path)
    before = _digest(path)
    with pytest.raises(ValueError, match="damaged run store .* it was not modified"):
        RunStore.open(path, "toy", {"skip": 1}, SCHEMA)  # resume: would log a session
    with pytest.raises(ValueError, match="damaged run store"):
        RunStore.read(path)
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged run store" in err[0]
    assert _digest(path) == before


def test_merge_refuses_a_damaged_shard_and_writes_nothing(tmp_path) -> None:
    config = {"skip": 1}
    shards = []
    for rank in range(2):
        shard = shard_files.shard_path(tmp_path / "m.db", rank, 2)
        shards.append(_run(shard, range(rank, 40, 2), config | {"shard": [rank, 2]}))
    _damage_results_root(shards[1])
    with pytest.raises(ValueError, match="damaged run store"):
        shard_files.merge_runs(tmp_path / "m.db", shards)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(s.name for s in shards)


def test_merge_failing_half_way_leaves_no_partial_run(tmp_path) -> None:
    # Two shards claiming the same example: detected only while copying rows.
    a = _run(tmp_path / "a.db", [0, 2, 4], {"skip": 1, "shard": [0, 2]})
    b = _run(tmp_path / "b.db", [1, 4], {"skip": 1, "shard": [1, 2]})
    with pytest.raises(ValueError, match="example 4 is already in"):
        shard_files.merge_runs(tmp_path / "m.db", [a, b])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.db", "b.db"]


def test_merge_warns_about_examples_no_shard_holds(tmp_path, capsys) -> None:
    a = _run(tmp_path / "a.db", [0, 4, 8], {"skip": 2, "shard": [0, 2]})
    b = _run(tmp_path / "b.db", [2, 10], {"skip": 2, "shard": [1, 2]})  # 6 never finished
    assert main(["merge", str(tmp_path / "m.db"), str(a), str(b)]) == 0
    out, err = capsys.readouterr()
    assert "5 examples" in out
    assert "1 selected examples have no row (6)" in err and "--out" in err
    assert shard_files.selection_gaps(tmp_path / "m.db") == [6]
    whole = _run(tmp_path / "w.db", [0, 2, 4], {"skip": 2})
    assert shard_files.selection_gaps(whole) == []


def test_a_second_writer_is_refused_while_the_first_has_the_run_open(tmp_path) -> None:
    path = tmp_path / "r.db"
    first = RunStore.open(path, "toy", {"skip": 1}, SCHEMA)
    first.add(0, {"value": 0.0, "note": "a"})
    with pytest.raises(ValueError, match="being written by another process"):
        RunStore.open(path, "toy", {"skip": 1}, SCHEMA)
    with RunStore.read(path) as reader:  # readers are never blocked
        assert [r["idx"] for r in reader.rows()] == [0]
    first.add(1, {"value": 0.1, "note": "b"})  # the refused open did not disturb the writer
    first.close()
    with RunStore.open(path, "toy", {"skip": 1}, SCHEMA) as again:  # released on close
        assert again.done_indices() == {0, 1}
        assert len(again.sessions()) == 2  # the refused open logged nothing


def test_a_run_store_of_another_format_version_is_refused_unmodified(tmp_path: Path) -> None:
    path = _run(tmp_path / "r.db", [0, 1])
    with sqlite3.connect(path) as con:
        con.execute("UPDATE meta SET value = '2' WHERE key = 'format_version'")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="format version 2; .* reads version 1 only"):
        RunStore.read(path)
    with pytest.raises(ValueError, match="format version 2"):
        RunStore.open(path, "toy", {"skip": 1}, SCHEMA)
    assert path.read_bytes() == before
