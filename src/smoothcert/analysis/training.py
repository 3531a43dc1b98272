"""The numbers of a training run from its per-epoch metrics (``metrics.jsonl``, read by
:func:`smoothcert.training.outputs.read_metrics`): the last epoch, the noisy test accuracy per
epoch and its change over the last five epochs (had training converged?), and the time per
epoch."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TrainingSummary:
    """What the report shows of one training run."""

    last: dict[str, Any]  # the last epoch's metrics
    noisy: list[float]  # test accuracy under noise per epoch (NaN where not measured)
    trend: float  # change of the noisy test accuracy over the last five epochs (NaN: fewer)
    median_seconds: float  # wall time per epoch (train + eval), median ...
    fastest_seconds: float  # ... and fastest: an epoch sharing the cores took longer


def training_summary(rows: Sequence[dict[str, Any]]) -> TrainingSummary:
    """The summary of a run's metrics rows (at least one)."""
    noisy = [r.get("test_acc_noise", float("nan")) for r in rows]
    trend = noisy[-1] - noisy[-6] if len(noisy) > 5 else float("nan")
    seconds = [r["train_seconds"] + r["eval_seconds"] for r in rows]
    return TrainingSummary(
        last=rows[-1],
        noisy=noisy,
        trend=trend,
        median_seconds=float(np.median(seconds)),
        fastest_seconds=min(seconds),
    )
