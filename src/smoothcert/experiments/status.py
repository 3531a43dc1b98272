"""What an experiment's stages have done: status per stage (done, running, failed, left) with
the progress probed from their outputs (epochs trained, rows written, shards) and the time
spent (``smoothcert experiment --status``)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from smoothcert.experiments.spec import Experiment, Stage
from smoothcert.experiments.state import is_done, is_running, read_state

# Time left is estimated from the latest rows or epochs, not the average since the start: a
# stage resumed with other threads, or on a busier machine, keeps its new pace.
RECENT_ROWS = 50
RECENT_EPOCHS = 3


@dataclass(frozen=True)
class StageStatus:
    stage: Stage
    status: str  # "done" | "running" | "failed" | "interrupted" | "left"
    seconds: float  # wall time spent so far, over every attempt
    left_seconds: float | None  # estimate of the time still needed (None: unknown)
    progress: str  # e.g. "12/30 epochs", "140/500 examples", "" when unknown


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

    The estimate reads the stage's own outputs where it can, at their latest pace (a training
    run's last ``RECENT_EPOCHS`` epochs; a certification or attack run's last ``RECENT_ROWS``
    rows); otherwise it uses the time a finished stage of the same template took; otherwise it
    is unknown.

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
    if command in ("certify", "predict", "attack", "dcert"):
        return _probe_rows(Path(out), stage.option("--max"))
    return None, ""


def _probe_training(out: Path, epochs_text: str | None) -> tuple[float | None, str]:
    from smoothcert.training.config import TrainConfig
    from smoothcert.training.outputs import read_metrics

    # Without --epochs the stage trains for TrainConfig's default.
    epochs = int(epochs_text) if epochs_text and epochs_text.isdigit() else TrainConfig().epochs
    try:
        rows = read_metrics(out)
    except json.JSONDecodeError:
        return None, ""
    if rows is None:
        return None, f"0/{epochs} epochs"
    done = len(rows)
    if not rows:
        return None, f"0/{epochs} epochs"
    latest = [r.get("train_seconds", 0) + r.get("eval_seconds", 0) for r in rows[-RECENT_EPOCHS:]]
    per_epoch = sum(latest) / len(latest)  # the pace now: a resume may run on other threads
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
    from smoothcert.runs.shards import shard_files

    shards = shard_files(out)
    counts = [c for c in (_count_rows(s) for s in shards) if c is not None]
    if not counts:
        return None, ""
    done = sum(c[0] for c in counts)
    paces = [c[1] for c in counts if c[1] is not None]
    # the workers run side by side: together they finish len(counts) rows per row-time
    pace = sum(paces) / len(paces) / len(counts) if paces else None
    return _rows_progress(done, pace, max_text)


def _count_rows(out: Path) -> tuple[int, float | None] | None:
    """(rows, seconds per row over the latest rows, or None) of a run file; None when it
    cannot be read."""
    from smoothcert.runs.store import RunStore

    try:
        with RunStore.read(out) as store:
            return store.progress(RECENT_ROWS)
    except (ValueError, OSError, sqlite3.Error):
        return None


def _rows_progress(done: int, pace: float | None, max_text: str | None) -> tuple[float | None, str]:
    """(seconds left at ``pace`` seconds per row, progress text)."""
    total = int(max_text) if max_text and max_text.isdigit() else None
    progress = f"{done}/{total} examples" if total else f"{done} examples"
    if total is None or not done or pace is None:
        return None, progress
    return max(total - done, 0) * pace, progress
