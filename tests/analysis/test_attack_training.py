"""smoothcert.analysis.attack and .training: the numbers the experiment reports show of attack
and training runs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smoothcert.analysis.attack import binomial_se, paired_difference
from smoothcert.analysis.training import training_summary


def _run(idx: list[int], robust: list[list[int]], eps: list[float]) -> dict:
    return {"rows": [{"idx": i} for i in idx], "robust": np.array(robust, bool), "eps": eps}


def test_binomial_se() -> None:
    assert binomial_se([0.25], 300) == [pytest.approx(math.sqrt(0.25 * 0.75 / 300))]


def test_paired_difference_uses_the_shared_images_only() -> None:
    a = _run([0, 1, 2, 3], [[1, 1], [1, 0], [0, 0], [1, 1]], [0.5, 1.0])
    b = _run([1, 2, 3, 9], [[0, 0], [0, 0], [1, 0], [1, 1]], [0.5])
    shared, d = paired_difference(a, b, [0.5, 1.0])
    assert shared == 3  # images 1, 2, 3
    mean, se = d[0.5]
    diffs = np.array([1 - 0, 0 - 0, 1 - 1], float)
    assert mean == pytest.approx(diffs.mean())
    assert se == pytest.approx(diffs.std(ddof=1) / math.sqrt(3))
    assert d[1.0] is None  # b was not attacked at 1.0


def test_training_summary() -> None:
    rows = [
        {"epoch": e, "test_acc_noise": 0.1 * e, "train_seconds": 10.0 + e, "eval_seconds": 1.0}
        for e in range(1, 8)
    ]
    s = training_summary(rows)
    assert s.last["epoch"] == 7
    assert s.trend == pytest.approx(0.7 - 0.2)
    assert s.median_seconds == pytest.approx(15.0) and s.fastest_seconds == pytest.approx(12.0)
    assert math.isnan(training_summary(rows[:3]).trend)
