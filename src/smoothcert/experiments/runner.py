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

The books and the lock are state.py, the stage processes and signals processes.py, and what
``--status`` shows status.py.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from smoothcert._util.checks import ParameterError, positive_int
from smoothcert.experiments.processes import (
    INTERRUPTED,
    LOGS_DIR,
    POLL_S,
    SAFE_NAME,
    StageProcess,
    exit_status,
    interrupt,
    log_tail,
    signals_to,
    spawn_stage,
    wait_into,
)
from smoothcert.experiments.schedule import stage_dependencies
from smoothcert.experiments.spec import Experiment, Stage
from smoothcert.experiments.state import (
    STATE_FILE,
    Books,
    experiment_lock,
    is_done,
    now_text,
    read_state,
)
from smoothcert.experiments.status import format_seconds
from smoothcert.experiments.workers import Workers, merge_shards, sharded


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
                lock_fd = held.enter_context(experiment_lock(experiment))
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
        books = held.enter_context(Books(state_path, state)) if workers.main else None
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
    books: Books | None,
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
    if workers.world > 1 and command in sharded() and stage.option("--out"):
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
    log_paths = {s.name: logs / f"{SAFE_NAME.sub('_', s.name)}.log" for s in pending}
    results: queue.Queue[tuple[str, int]] = queue.Queue()
    running: dict[str, StageProcess] = {}
    failed = False
    signals: list[int] = []

    def start(stage: Stage, books: Books) -> bool:
        log_path = log_paths[stage.name]
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(f"==== {now_text()} smoothcert experiment run: {stage.command}\n")
        books.start(stage, None)
        try:
            process = spawn(list(stage.argv), log_path, lock_fd)
        except OSError as exc:
            books.finish(stage.name, None, "failed")
            say(f"{number[stage.name]}: could not start: {exc}")
            return False
        books.set_pid(stage.name, process.pid)
        running[stage.name] = process
        threading.Thread(target=wait_into, args=(stage.name, process, results), daemon=True).start()
        say(f"{number[stage.name]}: started (pid {process.pid}), log {log_path}")
        return True

    with Books(experiment.runs_dir / STATE_FILE, state) as books, signals_to(signals):
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
                    name, code = results.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                running.pop(name)
                if code == 0:
                    entry = books.finish(name, code, "done")
                    finished.add(name)
                    say(f"{name}: done in {format_seconds(entry['seconds'])}")
                    continue
                status = "interrupted" if code in INTERRUPTED else "failed"
                books.finish(name, code, status)
                failed = True
                say(
                    f"{name}: {status} ({exit_status(code)}); rerun to continue; "
                    f"{log_paths[name]} ends:"
                )
                for line in log_tail(log_paths[name]):
                    say(f"    {line}")
                if running:
                    say(f"no new stage starts; waiting for {', '.join(running)}")
        except KeyboardInterrupt:
            interrupt(running, results, books, say)
            raise
    return not failed and not pending
