"""The run store: one SQLite file per run (certify, predict, attack, dcert, ...).

A run file holds
- ``meta``: key/value rows — the format marker, the run kind, the *config* (every argument that
  determines the results; a resumed run must match it exactly) and the *info* (provenance:
  checkpoint path and metadata, package version, machine, start time);
- ``sessions``: one row per start or resume of the run (time, host, version);
- ``results``: one row per example, ``idx`` the primary key, typed columns given by the
  run's schema; lists, dicts and numpy arrays are stored as JSON text.

Each row is committed as soon as it is produced (synchronous=FULL), so a crash loses at most
the example in flight, and rerunning the same command resumes where it stopped. Opening a file
that is not a run store, or a run with a different config, raises ValueError and never
modifies the file. While one process may write to a run, another that tries to is refused at
once (an advisory lock); reading (analyze, export) is always possible.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import socket
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from smoothcert import __version__

FORMAT = "smoothcert-run-store"
FORMAT_VERSION = 1
#: The first bytes of every SQLite file (a file starting otherwise is not a run store).
SQLITE_HEADER = b"SQLite format 3\x00"
_TYPES = {"INTEGER", "REAL", "TEXT"}


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def canonical_json(value: Any) -> str:
    return json.dumps(_jsonable(value), sort_keys=True, separators=(",", ":"))


def machine_info() -> dict[str, Any]:
    import torch

    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def pending_blocks(
    indices: Sequence[int], block_size: int, done: set[int]
) -> Iterator[tuple[list[int], list[int]]]:
    """(block, its indices not in ``done``) for the fixed blocks of ``block_size`` positions of
    ``indices`` that still miss a row. Blocks never shift when a run resumes, so a block that
    seeds its randomness by its first index, recomputed whole, reproduces its stored rows.
    ``done`` is read as each block is reached (callers add to it as they store rows)."""
    for start in range(0, len(indices), block_size):
        block = list(indices[start : start + block_size])
        missing = [i for i in block if i not in done]
        if missing:
            yield block, missing


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _read_only_query(path: Path, sql: str) -> tuple | None:
    """The first row of ``sql`` on the file opened read-only (the file is never modified)."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchone()
    finally:
        con.close()


def _check_is_store(path: Path) -> None:
    """Refuse, without writing, a file that is not a sound smoothcert run store of the format
    version this code reads."""
    with open(path, "rb") as fh:
        header = fh.read(len(SQLITE_HEADER))
    if header != SQLITE_HEADER:
        raise ValueError(f"{path} exists and is not a smoothcert run store (not an SQLite file)")
    try:
        row = _read_only_query(
            path,
            "SELECT (SELECT value FROM meta WHERE key = 'format'),"
            " (SELECT value FROM meta WHERE key = 'format_version')",
        )
    except sqlite3.DatabaseError:
        row = None
    if row is None or row[0] is None or json.loads(row[0]) != FORMAT:
        raise ValueError(f"{path} is an SQLite file but not a smoothcert run store")
    problem = _integrity_problem(path)
    if problem is not None:
        raise ValueError(
            f"{path} is a damaged run store (SQLite reports: {problem}); it was not modified. "
            "Keep a copy; recover its rows with the sqlite3 shell's .recover, or start the run "
            "in a new file"
        )
    version = None if row[1] is None else json.loads(row[1])
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} is a run store of format version {version}; smoothcert {__version__} "
            f"reads version {FORMAT_VERSION} only"
        )


def _integrity_problem(path: Path) -> str | None:
    """SQLite's quick_check of the file, read-only: None when it is sound, else its first
    complaint. Checked before any write, so a damaged run is never extended or logged to."""
    try:
        first = _read_only_query(path, "PRAGMA quick_check(1)")
    except sqlite3.DatabaseError as exc:
        return str(exc)
    if first is not None and first[0] == "ok":
        return None
    text = str(first[0] if first else "no answer").replace("*** in database main ***", "")
    return " ".join(text.split())  # one line


def _writer_lock(path: Path, con: sqlite3.Connection) -> int | None:
    """An exclusive advisory lock (flock) on the run file for as long as a store may write to
    it, so that a second process given the same run file stops at once with a clear message
    instead of computing the same examples and failing on the first duplicate row. Readers
    (analyze, export) take no lock. SQLite's own locks are fcntl byte ranges, independent of
    flock. Returns the descriptor holding the lock (None where flock does not exist)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no guard, SQLite still keeps every row consistent
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        con.close()
        raise ValueError(
            f"{path} is being written by another process (a second run with the same run "
            "file?); wait for it to finish, or choose another run file"
        ) from None
    return fd


def stored_config(path: str | os.PathLike) -> dict[str, Any] | None:
    """The config recorded by the run file at ``path``; None when there is no run file there
    (what a resume must keep, e.g. the precision that ``auto`` chose when the run started)."""
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    with RunStore.read(path) as store:
        return dict(store.config)


class ConfigMismatch(ValueError):
    """A run file holds a run with other arguments: ``keys`` are the config entries that
    differ (the message lists them with both values)."""

    def __init__(self, message: str, keys: list[str]) -> None:
        super().__init__(message)
        self.keys = keys


class RunStore:
    """A resumable run. Use :meth:`open` (create or resume) or :meth:`read` (read-only)."""

    def __init__(self, path: Path, con: sqlite3.Connection) -> None:
        self.path = path
        self._con = con
        self._lock_fd: int | None = None  # held while this store may write (see open)
        meta = dict(con.execute("SELECT key, value FROM meta").fetchall())
        self.kind: str = json.loads(meta["kind"])
        self.config: dict[str, Any] = json.loads(meta["config"])
        self.info: dict[str, Any] = json.loads(meta.get("info", "{}"))
        self.schema: dict[str, str] = json.loads(meta["schema"])

    # ------------------------------------------------------------------ opening

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        kind: str,
        config: Mapping[str, Any],
        schema: Mapping[str, str],
        info: Mapping[str, Any] | None = None,
        upgrade: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None,
    ) -> RunStore:
        """Create the run at ``path``, or resume it if it exists with the same kind and config.

        ``schema`` maps result column names to SQLite types (INTEGER, REAL, TEXT); ``idx`` is
        added as the primary key. ``info`` is provenance recorded at creation. ``upgrade``
        brings a stored config of an older version to the layout of ``config`` before they
        are compared (see :mod:`smoothcert.runs.versions`); the file keeps its config.
        """
        path = Path(path)
        schema = {str(k): str(v).upper() for k, v in schema.items()}
        bad = {k: v for k, v in schema.items() if v not in _TYPES or not k.isidentifier()}
        if bad or "idx" in schema:
            raise ValueError(f"invalid run schema {bad or schema}: columns need types {_TYPES}")
        config_json = canonical_json(config)
        if path.is_file() and path.stat().st_size == 0:
            path.unlink()  # an empty file (e.g. from `touch`) holds nothing to protect
        if path.exists():
            if path.is_dir():
                raise ValueError(f"output {path} is a directory, expected a run file (.db)")
            _check_is_store(path)
            store = cls(path, cls._connect(path))
            if store.kind != kind:
                store.close()
                raise ValueError(
                    f"{path} holds a {store.kind!r} run, not a {kind!r} run; "
                    "choose another run file"
                )
            try:
                stored = store.config if upgrade is None else upgrade(store.config)
            except ValueError as exc:
                store.close()
                raise ValueError(f"{path}: {exc}") from None
            new = json.loads(config_json)
            if stored != new:
                store.close()
                diff = sorted(k for k in set(stored) | set(new) if stored.get(k) != new.get(k))
                details = ", ".join(f"{k}: {stored.get(k)!r} -> {new.get(k)!r}" for k in diff)
                raise ConfigMismatch(
                    f"{path} holds a run with different arguments ({details}); "
                    "rerun with the same arguments to resume, or choose another run file",
                    diff,
                )
            store._lock_for_writing()
            store._log_session()
            return store
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.exists():
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise ValueError(
                    f"cannot create output directory {parent}: {exc.strerror}"
                ) from None
        if not os.access(parent, os.W_OK):
            raise ValueError(f"output directory {parent} is not writable")
        con = cls._connect(path)
        lock_fd = _writer_lock(path, con)
        columns = "".join(f", {name} {typ}" for name, typ in schema.items())
        with con:
            con.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            con.execute(
                "CREATE TABLE sessions"
                " (id INTEGER PRIMARY KEY, started TEXT, host TEXT, version TEXT)"
            )
            con.execute(f"CREATE TABLE results (idx INTEGER PRIMARY KEY{columns})")
            full_info = {
                "created": _now(),
                "smoothcert_version": __version__,
                "machine": machine_info(),
            }
            full_info.update(_jsonable(dict(info or {})))
            con.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("format", json.dumps(FORMAT)),
                    ("format_version", json.dumps(FORMAT_VERSION)),
                    ("kind", json.dumps(kind)),
                    ("config", config_json),
                    ("schema", json.dumps(schema)),
                    ("info", canonical_json(full_info)),
                ],
            )
        store = cls(path, con)
        store._lock_fd = lock_fd
        store._log_session()
        return store

    @classmethod
    def read(cls, path: str | os.PathLike) -> RunStore:
        """Open an existing run read-only (for analysis and export)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"run file {path} does not exist")
        _check_is_store(path)
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        return cls(path, con)

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(path)
        except sqlite3.OperationalError as exc:
            raise ValueError(f"cannot open run file {path}: {exc}") from None
        con.execute("PRAGMA synchronous = FULL")
        return con

    def _log_session(self) -> None:
        with self._con:
            self._con.execute(
                "INSERT INTO sessions (started, host, version) VALUES (?, ?, ?)",
                (_now(), socket.gethostname(), __version__),
            )

    # ------------------------------------------------------------------ rows

    def done_indices(self) -> set[int]:
        return {row[0] for row in self._con.execute("SELECT idx FROM results")}

    def stored_labels(self) -> dict[int, int]:
        """idx → label of every stored row that has one (empty when rows carry no label)."""
        if "label" not in self.schema:
            return {}
        query = "SELECT idx, label FROM results WHERE label IS NOT NULL"
        return {int(i): int(label) for i, label in self._con.execute(query)}

    def add(self, idx: int, row: Mapping[str, Any]) -> None:
        """Insert and commit one example's result."""
        unknown = sorted(set(row) - set(self.schema))
        if unknown:
            raise ValueError(
                f"columns {unknown} are not in this run's schema {sorted(self.schema)}"
            )
        names = ["idx", *row]
        values = [int(idx)]
        for name, value in row.items():
            value = _jsonable(value)
            if self.schema[name] == "TEXT" and not isinstance(value, str):
                value = json.dumps(value)
            values.append(value)
        placeholders = ", ".join("?" for _ in names)
        try:
            with self._con:
                self._con.execute(
                    f"INSERT INTO results ({', '.join(names)}) VALUES ({placeholders})", values
                )
        except sqlite3.IntegrityError:
            raise ValueError(f"example {idx} is already in {self.path}") from None

    def rows(self) -> list[dict[str, Any]]:
        """All results, ordered by idx; JSON columns decoded."""
        cursor = self._con.execute("SELECT * FROM results ORDER BY idx")
        names = [d[0] for d in cursor.description]
        out = []
        for values in cursor:
            row = dict(zip(names, values, strict=True))
            for name, typ in self.schema.items():
                if typ == "TEXT" and isinstance(row.get(name), str):
                    with contextlib.suppress(json.JSONDecodeError):
                        row[name] = json.loads(row[name])
            out.append(row)
        return out

    def progress(self, recent: int) -> tuple[int, float | None]:
        """(rows stored, mean ``seconds`` of the last ``recent`` of them; None without rows or
        seconds): the pace now, which a restart with other threads or a busier machine
        changes."""
        (done,) = self._con.execute("SELECT COUNT(*) FROM results").fetchone()
        if "seconds" not in self.schema:
            return int(done), None
        (pace,) = self._con.execute(
            "SELECT AVG(seconds) FROM (SELECT seconds FROM results ORDER BY rowid DESC LIMIT ?)",
            (recent,),
        ).fetchone()
        return int(done), pace

    def sessions(self) -> list[dict[str, Any]]:
        cursor = self._con.execute("SELECT started, host, version FROM sessions ORDER BY id")
        return [dict(zip(("started", "host", "version"), r, strict=True)) for r in cursor]

    def _lock_for_writing(self) -> None:
        try:
            self._lock_fd = _writer_lock(self.path, self._con)
        except ValueError:
            self._con.close()
            raise

    def close(self) -> None:
        self._con.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the writer lock
            self._lock_fd = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
