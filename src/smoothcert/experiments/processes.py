"""The stage processes of an experiment: spawning a stage's command with its log, waiting for
it, and passing the runner's signals on (SIGTERM, then SIGKILL after a grace period)."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

from smoothcert.experiments.state import Books


class StageProcess(Protocol):
    """A stage started by ``spawn`` (:class:`subprocess.Popen` is one)."""

    pid: int

    def wait(self) -> int: ...

    def send_signal(self, sig: int) -> None: ...


def share_of_cores(jobs: int) -> int:
    """Torch threads for each of ``jobs`` stages side by side: the usable cores divided evenly,
    at least one. More threads than cores make every stage several times slower."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // max(jobs, 1))  # run_experiment rejects jobs < 1 itself


def stage_environment(threads: int | None) -> dict[str, str]:
    """The environment of a stage process: the runner's, unbuffered output, and with
    ``threads`` as OMP_NUM_THREADS (torch's default thread count) unless the user set it. A
    stage's own ``--threads`` still wins: it sets torch's count after startup."""
    env = os.environ | {"PYTHONUNBUFFERED": "1"}  # the log follows the stage live
    if threads is not None and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def spawn_stage(
    argv: list[str], log_path: Path, keep_fd: int, *, threads: int | None = None
) -> subprocess.Popen:
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
    threads : int, optional
        Torch's default thread count in the stage (see :func:`stage_environment`).

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
            env=stage_environment(threads),
        )


LOGS_DIR = "logs"
SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]")
POLL_S = 0.5  # how often the runner looks for a signal while stages run
_GRACE_S = 60.0  # after SIGTERM, how long a stage may take to exit before SIGKILL
INTERRUPTED = frozenset({130, -signal.SIGTERM, -signal.SIGINT})


def wait_into(name: str, process: StageProcess, results: queue.Queue) -> None:
    """Wait for ``process`` on a thread of its own; report (name, exit code) to the runner."""
    try:
        code = process.wait()
    except Exception:  # a broken process handle must not hang the runner
        code = 1
    results.put((name, code))


def exit_status(code: int) -> str:
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def log_tail(path: Path, lines: int = 10) -> list[str]:
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
def signals_to(received: list[int]) -> Iterator[None]:
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


def interrupt(
    running: dict[str, StageProcess],
    results: queue.Queue,
    books: Books,
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
            name, code = results.get(timeout=POLL_S)
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
        say(f"{name}: {status} ({exit_status(code)})")
