"""Run an experiment's stages, skip finished ones, and say where a run stands.

Each stage is a `smoothcert` command, and every command already resumes (training from its
resume state, certification from the rows in its run file), so running an experiment again
after a crash or at the next session continues where it stopped. The runner only keeps books
in ``RUNS/experiment-state.json``: per stage its exact arguments, status, attempts and the
wall time spent (updated every half minute while a stage runs, so a kill loses at most that),
and the stages running now with their process ids.
A stage counts as finished only with the same arguments: editing a scale reruns what changed.
One runner per experiment and scale at a time (an advisory lock on ``RUNS/.experiment.lock``).

The stages run one at a time in this process, or (``jobs`` > 1) side by side, each in a
process of its own that inherits the lock: the experiment stays locked while any of its
stages runs, even after the runner was killed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from smoothcert._util.atomic import atomic_write_json
from smoothcert._util.checks import ParameterError, positive_int
from smoothcert.experiments.schedule import stage_dependencies
from smoothcert.experiments.spec import Experiment, Stage
from smoothcert.experiments.workers import SHARDED, Workers, merge_shards

STATE_FILE = "experiment-state.json"
LOCK_FILE = ".experiment.lock"
_HEARTBEAT_S = 30.0


@dataclass(frozen=True)
class StageStatus:
    stage: Stage
    status: str  # "done" | "running" | "failed" | "interrupted" | "left"
    seconds: float  # wall time spent so far, over every attempt
    left_seconds: float | None  # estimate of the time still needed (None: unknown)
    progress: str  # e.g. "12/30 epochs", "140/500 examples", "" when unknown


def _now() -> str:
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
    return state


@contextlib.contextmanager
def _experiment_lock(experiment: Experiment) -> Iterator[int]:
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


class StageProcess(Protocol):
    """A stage started by ``spawn`` (:class:`subprocess.Popen` is one)."""

    pid: int

    def wait(self) -> int: ...

    def send_signal(self, sig: int) -> None: ...


def spawn_stage(argv: list[str], log_path: Path, keep_fd: int) -> subprocess.Popen:
    """Start ``python -m smoothcert ARGV`` in a process of its own, its output appended to a log.

    What ``smoothcert experiment run --jobs N`` runs each stage with: the same interpreter
    (and environment) as the runner, stdin closed, stdout and stderr appended to
    ``log_path``, and ``keep_fd`` (the experiment's lock) inherited, so that the experiment
    stays locked while the stage lives, even when the runner is killed.

    Parameters
    ----------
    argv : list of str
        The stage's smoothcert arguments, e.g. ``["train", "--out", ...]``.
    log_path : Path
        The file that receives the stage's output (appended to).
    keep_fd : int
        A file descriptor the stage inherits.

    Returns
    -------
    subprocess.Popen
        The running stage.
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "smoothcert", *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            pass_fds=(keep_fd,),
            env=os.environ | {"PYTHONUNBUFFERED": "1"},  # the log follows the stage live
        )


def run_experiment(
    experiment: Experiment,
    execute: Callable[[list[str]], int],
    *,
    only: list[str] | None = None,
    log: Callable[[str], None] | None = None,
    workers: Workers | None = None,
    jobs: int = 1,
    spawn: Callable[[list[str], Path, int], StageProcess] | None = None,
) -> bool:
    """Run the stages not yet done; stop at the first that fails.

    With ``jobs`` = 1 the stages run in file order, one at a time, in this process. With
    ``jobs`` > 1 each stage runs in a process of its own (``spawn``), its output appended to
    ``RUNS/logs/STAGE.log``, up to ``jobs`` at a time: in file order, each stage starts as
    soon as the stages it depends on are done
    (:func:`smoothcert.experiments.stage_dependencies`). A failure starts nothing
    new, lets the running stages finish and returns False. SIGTERM or SIGINT sends SIGTERM to
    every running stage, waits for them, records them as interrupted and raises
    KeyboardInterrupt.

    Parameters
    ----------
    experiment : Experiment
        From :func:`smoothcert.experiments.load_experiment`.
    execute : callable
        Runs one stage's smoothcert arguments and returns its exit code (the CLI's ``main``);
        used when ``jobs`` is 1.
    only : list of str, optional
        Run just these stages (names), still in file order. With ``jobs`` > 1, a selected
        stage that depends on a stage neither selected nor done is refused.
    log : callable, optional
        Receives one line per stage started, skipped or finished (on worker 0).
    workers : Workers, optional
        The runners of a torchrun launch (:mod:`smoothcert.experiments.workers`); one
        process by default.
    jobs : int, default 1
        How many stages may run at once (> 1 only outside torchrun).
    spawn : callable, optional
        Starts one stage when ``jobs`` > 1: ``spawn(argv, log_path, lock_fd)`` returns a
        process with ``pid``, ``wait()`` and ``send_signal()``; it must let the process
        inherit ``lock_fd``. Default: :func:`spawn_stage`.

    Returns
    -------
    bool
        True when every selected stage is done.

    Raises
    ------
    ValueError
        Another runner holds the experiment; an unknown stage name; a selected stage needs
        one neither selected nor done; ``jobs`` is not a positive integer, or > 1 under
        torchrun (:class:`smoothcert._util.checks.ParameterError`).
    KeyboardInterrupt
        With ``jobs`` > 1, after a SIGTERM or SIGINT stopped the running stages.
    """
    jobs = positive_int("jobs", jobs)
    workers = workers or Workers()
    if jobs > 1 and workers.world > 1:
        raise ParameterError(
            "jobs",
            "runs stages side by side on one machine; under torchrun the workers already "
            "share each stage",
        )
    say = (log or (lambda _line: None)) if workers.main else (lambda _line: None)
    stages = [s for s in experiment.stages if only is None or s.name in only]
    if only is not None:
        unknown = sorted(set(only) - {s.name for s in experiment.stages})
        if unknown:
            names = ", ".join(s.name for s in experiment.stages)
            raise ValueError(f"unknown stage(s) {', '.join(unknown)}; stages are: {names}")
    with contextlib.ExitStack() as held:
        refused: ValueError | None = None
        lock_fd = -1
        if workers.main:  # one set of books: worker 0 holds the lock and writes the state
            try:
                lock_fd = held.enter_context(_experiment_lock(experiment))
            except ValueError as exc:
                refused = exc
        if not workers.agree(refused is None):
            raise refused or ValueError(
                f"experiment {experiment.name} at scale {experiment.scale}: worker 0 could not "
                "take its lock"
            )
        # Every worker decides what to skip from the same state, read before any is written.
        state = read_state(experiment)
        workers.agree(True)
        state_path = experiment.runs_dir / STATE_FILE
        if jobs > 1:
            return _run_side_by_side(
                experiment, stages, state, lock_fd, jobs, spawn or spawn_stage, say
            )
        books = held.enter_context(_Books(state_path, state)) if workers.main else None
        for i, stage in enumerate(stages, 1):
            if is_done(stage, state):
                say(f"[{i}/{len(stages)}] {stage.name}: done")
                continue
            say(f"[{i}/{len(stages)}] {stage.name}: {stage.command}")
            if books is not None:
                books.start(stage, os.getpid())
            code = _run_stage(execute, stage, books, workers, say)
            if books is None:
                if code != 0:
                    return False
                continue
            status = "done" if code == 0 else ("interrupted" if code == 130 else "failed")
            entry = books.finish(stage.name, code, status)
            if code != 0:
                say(f"{stage.name}: {status} (exit code {code}); rerun to continue")
                return False
            say(f"{stage.name}: done in {format_seconds(entry['seconds'])}")
    return True


def _run_stage(
    execute: Callable[[list[str]], int],
    stage: Stage,
    books: _Books | None,
    workers: Workers,
    say: Callable[[str], None],
) -> int:
    """One stage on the workers that run it, then (sharded stages) worker 0's merge; the exit
    code every worker agrees on (1 when another worker failed). ``books``: worker 0's."""
    command = stage.argv[0]
    code = 0
    if books is not None:
        try:
            code = execute(list(stage.argv))
        except KeyboardInterrupt:
            code = 130
        finally:
            books.stop_clock(stage.name)
    elif workers.runs(command):
        code = execute(list(stage.argv))
    if not workers.agree(code == 0):
        return code or 1
    if workers.world > 1 and command in SHARDED and stage.option("--out"):
        merged = True
        if workers.main:
            try:
                rows = merge_shards(stage.option("--out"), workers.world)
                say(f"{stage.name}: merged {workers.world} shards ({rows} rows)")
            except (ValueError, OSError) as exc:
                say(f"{stage.name}: merging the shards failed: {exc}")
                merged = False
        if not workers.agree(merged):
            return 1
    return 0


class _Books:
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

    def __enter__(self) -> _Books:
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
            entry.update(argv=list(stage.argv), status="running", started=_now())
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
            entry.update(finished=_now(), status=status, exit_code=code)
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


def _run_side_by_side(
    experiment: Experiment,
    stages: list[Stage],
    state: dict[str, Any],
    lock_fd: int,
    jobs: int,
    spawn: Callable[[list[str], Path, int], StageProcess],
    say: Callable[[str], None],
) -> bool:
    """``run_experiment`` with ``jobs`` > 1: each stage in a process of its own, up to
    ``jobs`` at a time, a stage once its dependencies are done."""
    deps = stage_dependencies(experiment.stages)
    selected = {s.name for s in stages}
    finished = {s.name for s in experiment.stages if is_done(s, state)}
    for stage in stages:
        missing = [
            s.name
            for s in experiment.stages
            if s.name in deps[stage.name] and s.name not in selected | finished
        ]
        if missing and stage.name not in finished:
            raise ValueError(
                f"stage {stage.name} needs {', '.join(missing)}, which is neither done nor "
                "selected; select it too"
            )
    number = {s.name: f"[{i}/{len(stages)}] {s.name}" for i, s in enumerate(stages, 1)}
    pending = []
    for stage in stages:
        if stage.name in finished:
            say(f"{number[stage.name]}: done")
        else:
            pending.append(stage)
    if not pending:
        return True
    logs = experiment.runs_dir / LOGS_DIR
    logs.mkdir(parents=True, exist_ok=True)
    log_paths = {s.name: logs / f"{_SAFE.sub('_', s.name)}.log" for s in pending}
    results: queue.Queue[tuple[str, int]] = queue.Queue()
    running: dict[str, StageProcess] = {}
    failed = False
    signals: list[int] = []

    def start(stage: Stage, books: _Books) -> bool:
        log_path = log_paths[stage.name]
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"==== {_now()} smoothcert experiment run: {stage.command}\n")
        books.start(stage, None)
        try:
            process = spawn(list(stage.argv), log_path, lock_fd)
        except OSError as exc:
            books.finish(stage.name, None, "failed")
            say(f"{number[stage.name]}: could not start: {exc}")
            return False
        books.set_pid(stage.name, process.pid)
        running[stage.name] = process
        threading.Thread(target=_wait, args=(stage.name, process, results), daemon=True).start()
        say(f"{number[stage.name]}: started (pid {process.pid}), log {log_path}")
        return True

    with _Books(experiment.runs_dir / STATE_FILE, state) as books, _signals_to(signals):
        try:
            while pending or running:
                if signals:
                    raise KeyboardInterrupt
                if not failed:
                    for stage in list(pending):
                        if len(running) >= jobs:
                            break
                        if deps[stage.name] <= finished:
                            pending.remove(stage)
                            if not start(stage, books):
                                failed = True
                                break
                if not running:
                    break  # after a failure (nothing else can start then)
                try:
                    name, code = results.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                running.pop(name)
                if code == 0:
                    entry = books.finish(name, code, "done")
                    finished.add(name)
                    say(f"{name}: done in {format_seconds(entry['seconds'])}")
                    continue
                status = "interrupted" if code in _INTERRUPTED else "failed"
                books.finish(name, code, status)
                failed = True
                say(f"{name}: {status} ({_exit(code)}); rerun to continue; {log_paths[name]} ends:")
                for line in _tail(log_paths[name]):
                    say(f"    {line}")
                if running:
                    say(f"no new stage starts; waiting for {', '.join(running)}")
        except KeyboardInterrupt:
            _interrupt(running, results, books, say)
            raise
    return not failed and not pending


LOGS_DIR = "logs"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
_POLL_S = 0.5  # how often the runner looks for a signal while stages run
_GRACE_S = 60.0  # after SIGTERM, how long a stage may take to exit before SIGKILL
_INTERRUPTED = frozenset({130, -signal.SIGTERM, -signal.SIGINT})


def _wait(name: str, process: StageProcess, results: queue.Queue) -> None:
    """Wait for ``process`` on a thread of its own; report (name, exit code) to the runner."""
    try:
        code = process.wait()
    except Exception:  # a broken process handle must not hang the runner
        code = 1
    results.put((name, code))


def _exit(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def _tail(path: Path, lines: int = 10) -> list[str]:
    """The last ``lines`` non-empty lines of a stage's log."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 16384, 0))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


@contextlib.contextmanager
def _signals_to(received: list[int]) -> Iterator[None]:
    """While inside: SIGTERM and SIGINT are appended to ``received`` (the runner stops its
    stages at its next look) instead of ending the runner wherever it is; the previous
    handlers come back after. Only the main thread can install handlers: elsewhere nothing
    changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


def _interrupt(
    running: dict[str, StageProcess],
    results: queue.Queue,
    books: _Books,
    say: Callable[[str], None],
) -> None:
    """SIGTERM to every running stage, wait for them (SIGKILL after a grace period), and
    record them as interrupted (as done when one finished meanwhile)."""
    if running:
        say(f"interrupted: stopping {', '.join(running)}")
    for process in running.values():
        with contextlib.suppress(OSError):
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_S
    while running:
        try:
            name, code = results.get(timeout=_POLL_S)
        except queue.Empty:
            if time.monotonic() > deadline:
                for process in running.values():
                    with contextlib.suppress(OSError):
                        process.send_signal(signal.SIGKILL)
                deadline = float("inf")
            continue
        running.pop(name)
        status = "done" if code == 0 else "interrupted"
        books.finish(name, code, status)
        say(f"{name}: {status} ({_exit(code)})")


def format_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(round(s))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def experiment_status(experiment: Experiment) -> list[StageStatus]:
    """Each stage's status, time spent and an estimate of the time left.

    The estimate reads the stage's own outputs where it can (a training run's completed epochs
    and their mean time; a certification run's rows and their mean seconds); otherwise it uses
    the time a finished stage of the same template took; otherwise it is unknown.

    Parameters
    ----------
    experiment : Experiment
        From :func:`smoothcert.experiments.load_experiment`.

    Returns
    -------
    list of StageStatus
        One per stage, in order, with attributes ``stage``, ``status`` (``"done"``,
        ``"running"`` (while a runner holds the experiment: every stage it runs now),
        ``"failed"``, ``"interrupted"`` or ``"left"``), ``seconds`` (wall time
        spent over every attempt), ``left_seconds`` (the estimate; None when unknown) and
        ``progress`` (e.g. ``"12/30 epochs"``; empty when unknown).
    """
    state = read_state(experiment)
    running: set[str] = set()
    if is_running(experiment):  # else whatever the books list as running has ended
        running = set(state.get("running") or {})
        if isinstance(state.get("current"), dict):  # the books of a runner of earlier versions
            running.add(state["current"].get("stage"))
    finished_by_template: dict[str, float] = {}
    for stage in experiment.stages:
        if is_done(stage, state):
            finished_by_template.setdefault(
                stage.template, state["stages"][stage.name].get("seconds", 0.0)
            )
    out = []
    for stage in experiment.stages:
        entry = state["stages"].get(stage.name, {})
        seconds = float(entry.get("seconds", 0.0))
        if is_done(stage, state):
            out.append(StageStatus(stage, "done", seconds, 0.0, ""))
            continue
        if stage.name in running:
            status = "running"
        elif entry.get("argv") == list(stage.argv) and entry.get("status") in (
            "failed",
            "interrupted",
        ):
            status = entry["status"]
        else:
            status = "left"
        left, progress = _probe(stage)
        if left is None and stage.template in finished_by_template:
            left = max(finished_by_template[stage.template] - seconds, 0.0)
        out.append(StageStatus(stage, status, seconds, left, progress))
    return out


def _probe(stage: Stage) -> tuple[float | None, str]:
    """(seconds left, progress text) from the stage's own outputs, when they tell."""
    command, out = stage.argv[0], stage.option("--out")
    if out is None:
        return None, ""
    if command == "train":
        return _probe_training(Path(out), stage.option("--epochs"))
    if command in ("certify", "predict", "attack"):
        return _probe_rows(Path(out), stage.option("--max"))
    return None, ""


def _probe_training(out: Path, epochs_text: str | None) -> tuple[float | None, str]:
    epochs = int(epochs_text) if epochs_text and epochs_text.isdigit() else 10
    metrics = out / "metrics.jsonl"
    if not metrics.is_file():
        return None, f"0/{epochs} epochs"
    try:
        rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
    except json.JSONDecodeError:
        return None, ""
    done = len(rows)
    if not rows:
        return None, f"0/{epochs} epochs"
    per_epoch = sum(r.get("train_seconds", 0) + r.get("eval_seconds", 0) for r in rows) / done
    return max(epochs - done, 0) * per_epoch, f"{done}/{epochs} epochs"


def _probe_rows(out: Path, max_text: str | None) -> tuple[float | None, str]:
    if not out.is_file():
        return _probe_shards(out, max_text)
    counted = _count_rows(out)
    if counted is None:
        return None, ""
    return _rows_progress(*counted, max_text)


def _probe_shards(out: Path, max_text: str | None) -> tuple[float | None, str]:
    """Progress of a stage that workers of a torchrun launch write as shard files."""
    shards = sorted(out.parent.glob(f"{out.stem}.shard*-of-*{out.suffix}"))
    counts = [c for c in (_count_rows(s) for s in shards) if c is not None]
    if not counts:
        return None, ""
    done = sum(c[0] for c in counts)
    spent = sum(c[1] or 0.0 for c in counts) / len(counts)  # the workers run side by side
    return _rows_progress(done, spent if any(c[1] for c in counts) else None, max_text)


def _count_rows(out: Path) -> tuple[int, float | None] | None:
    """(rows, summed seconds or None) of a run file; None when it cannot be read."""
    try:
        con = sqlite3.connect(f"file:{out}?mode=ro", uri=True)
        try:
            cols = [r[1] for r in con.execute("PRAGMA table_info(results)")]
            if "seconds" in cols:
                done, spent = con.execute("SELECT COUNT(*), SUM(seconds) FROM results").fetchone()
            else:
                done, spent = con.execute("SELECT COUNT(*), NULL FROM results").fetchone()
        finally:
            con.close()
    except sqlite3.Error:
        return None
    return int(done), spent


def _rows_progress(
    done: int, spent: float | None, max_text: str | None
) -> tuple[float | None, str]:
    total = int(max_text) if max_text and max_text.isdigit() else None
    progress = f"{done}/{total} examples" if total else f"{done} examples"
    if total is None or not done or spent is None:
        return None, progress
    return max(total - done, 0) * spent / done, progress
