"""The state file and the lock of an experiment: what each stage did (status, exit code, time,
pid), kept current by :class:`Books` with a heartbeat, and whether a runner holds the lock."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from smoothcert._util.atomic import atomic_write_json
from smoothcert.experiments.spec import Experiment, Stage

STATE_FILE = "experiment-state.json"
LOCK_FILE = ".experiment.lock"
_HEARTBEAT_S = 30.0


def now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_state(experiment: Experiment) -> dict[str, Any]:
    path = experiment.runs_dir / STATE_FILE
    if not path.is_file():
        return {"stages": {}}
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise ValueError(f"{path} is corrupt; delete it to start the bookkeeping anew") from None
    if not isinstance(state, dict) or not isinstance(state.get("stages"), dict):
        raise ValueError(f"{path} is corrupt; delete it to start the bookkeeping anew")
    for entry in state["stages"].values():
        for key in ("argv", "previous_argv"):
            if isinstance(entry, dict) and isinstance(entry.get(key), list):
                entry[key] = spelled_here(entry[key], experiment.runs_dir)
    return state


def spelled_here(argv: list[str], runs_dir: Path) -> list[str]:
    """``argv`` with every path into ``runs_dir`` spelled as ``runs_dir`` is spelled now.

    A stage's arguments carry the runs folder as the runner saw it (``--root /abs`` or the
    current directory), so the same finished stage would otherwise read as a different
    command when the report or the next run spells the folder another way. Only a prefix
    that resolves to this very folder is rewritten; any other path is left alone.

    >>> here = Path("runs/x/cpu")
    >>> spelled_here(["--out", str(Path.cwd() / "runs/x/cpu/a.db"), "/elsewhere/runs/x/cpu"], here)
    ['--out', 'runs/x/cpu/a.db', '/elsewhere/runs/x/cpu']
    """
    tail, folder = str(Path(*runs_dir.parts[-3:])), runs_dir.resolve()
    out = []
    for arg in argv:
        at = arg.find(tail)
        if at >= 0 and (at == 0 or arg[at - 1] == "/"):
            prefix = arg[: at + len(tail)]
            rest = arg[len(prefix) :]
            if (not rest or rest.startswith("/")) and Path(prefix).resolve() == folder:
                arg = str(runs_dir) + rest
        out.append(arg)
    return out


@contextlib.contextmanager
def experiment_lock(experiment: Experiment) -> Iterator[int]:
    """Hold the experiment's lock; yields its file descriptor (a stage process that inherits
    it keeps the experiment locked: flock belongs to the open file description)."""
    experiment.runs_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(experiment.runs_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(
                f"experiment {experiment.name} at scale {experiment.scale} is already running "
                f"(lock {experiment.runs_dir / LOCK_FILE}); see `experiment status`"
            ) from None
        yield fd
    finally:
        os.close(fd)


def is_running(experiment: Experiment) -> bool:
    """Whether a runner holds this experiment's lock now."""
    lock = experiment.runs_dir / LOCK_FILE
    if not lock.exists():
        return False
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def is_done(stage: Stage, state: dict[str, Any]) -> bool:
    entry = state["stages"].get(stage.name)
    return bool(entry) and entry.get("status") == "done" and entry.get("argv") == list(stage.argv)


class Books:
    """``experiment-state.json`` during a run: every write under one lock, and one heartbeat
    thread that adds every running stage's wall time to its entry every half minute (so a
    kill loses at most that). ``state["running"]`` maps each running stage to its process id
    and start time."""

    def __init__(self, path: Path, state: dict[str, Any]) -> None:
        self.path, self.state = path, state
        self.lock = threading.Lock()
        self._clocks: dict[str, tuple[float, float]] = {}  # stage -> (seconds before, t0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, daemon=True)
        state.pop("current", None)  # what earlier versions kept of the one running stage
        state["running"] = {}  # this runner holds the lock: whatever was listed has ended

    def __enter__(self) -> Books:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _save(self) -> None:
        atomic_write_json(self.path, self.state, sort_keys=True)

    def _tick(self, name: str, *, stop: bool = False) -> None:
        clock = self._clocks.pop(name, None) if stop else self._clocks.get(name)
        if clock is not None:
            self.state["stages"][name]["seconds"] = clock[0] + time.monotonic() - clock[1]

    def start(self, stage: Stage, pid: int | None) -> None:
        with self.lock:
            entry = self.state["stages"].setdefault(stage.name, {"seconds": 0.0, "attempts": 0})
            if entry.get("argv") not in (None, list(stage.argv)):
                entry["previous_argv"] = entry.get("argv")
            entry.update(argv=list(stage.argv), status="running", started=now_text())
            entry["attempts"] = int(entry.get("attempts", 0)) + 1
            self.state["running"][stage.name] = {"pid": pid, "started": entry["started"]}
            self._clocks[stage.name] = (float(entry.get("seconds", 0.0)), time.monotonic())
            self._save()

    def set_pid(self, name: str, pid: int) -> None:
        with self.lock:
            self.state["running"][name]["pid"] = pid
            self._save()

    def stop_clock(self, name: str) -> None:
        with self.lock:
            self._tick(name, stop=True)

    def finish(self, name: str, code: int | None, status: str) -> dict[str, Any]:
        with self.lock:
            self._tick(name, stop=True)
            entry = self.state["stages"][name]
            entry.update(finished=now_text(), status=status, exit_code=code)
            self.state["running"].pop(name, None)
            self._save()
            return entry

    def _beat(self) -> None:
        while not self._stop.wait(_HEARTBEAT_S):
            with self.lock:
                if not self._clocks:
                    continue
                for name in self._clocks:
                    self._tick(name)
                with contextlib.suppress(OSError):
                    self._save()
