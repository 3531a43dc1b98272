"""Experiments as files: stages over the CLI at named scales, resumable, with a report.

``load_experiment(path, scale)`` reads an ``experiments/NAME.toml``;
``run_experiment(experiment, execute)`` runs its stages in order, skipping finished ones (or,
with ``jobs=N``, up to N side by side: ``stage_dependencies`` says which waits for which);
``experiment_status`` says what is done, running and left; ``write_report`` writes
``results/NAME/SCALE/report.md`` with the paper's numbers beside ours.
"""

from __future__ import annotations

from smoothcert.experiments.report import write_report
from smoothcert.experiments.runner import run_experiment
from smoothcert.experiments.schedule import stage_dependencies
from smoothcert.experiments.spec import Experiment, Stage, load_experiment
from smoothcert.experiments.status import experiment_status

__all__ = [
    "Experiment",
    "Stage",
    "experiment_status",
    "load_experiment",
    "run_experiment",
    "stage_dependencies",
    "write_report",
]
