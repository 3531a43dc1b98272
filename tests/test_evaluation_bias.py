"""Evaluations without optimistic bias: PREDICT's noise independent of its Table 4 reference,
and a reference of another precision refused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import LinearImage, ToyData
from smoothcert.analysis import check_reference, predict_categories
from smoothcert.runs import certify_dataset, example_generator, predict_dataset
from smoothcert.smoothing import SmoothedClassifier
from smoothcert.store import RunStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIGMA = 1.0  # wide noise: the toy examples' counts are spread over both classes


def _classifier(precision: str = "fp32") -> SmoothedClassifier:
    return SmoothedClassifier(LinearImage(), 2, SIGMA, batch_size=64, precision=precision)


# ------------------------------------------------------------------ Table 4: PREDICT's noise


def test_predict_draws_are_not_those_of_a_same_seed_certify_run(tmp_path: Path) -> None:
    data = ToyData(m=12)
    ref = certify_dataset(_classifier(), data, tmp_path / "c.db", n0=40, n=400, seed=3)
    pred = predict_dataset(_classifier(), data, tmp_path / "p.db", n=40, seed=3)
    # With one stream per (seed, idx), PREDICT's 40 draws were exactly CERTIFY's 40 selection
    # draws: the counts matched on every example (and a larger n overlapped the estimation).
    same = [
        list(p["counts"]) == list(c["counts_selection"]) for p, c in zip(pred, ref, strict=True)
    ]
    assert sum(same) <= 3, same  # independent draws agree by chance on few examples


def test_certify_noise_is_unchanged_by_the_predict_stream(tmp_path: Path) -> None:
    # Published certify runs must stay reproducible: their draws are still seeded by
    # (seed, idx) alone.
    data = ToyData(m=4)
    rows = certify_dataset(_classifier(), data, tmp_path / "c.db", n0=30, n=50, seed=7)
    clf = _classifier()
    for row in rows:
        gen = example_generator(7, row["idx"], torch.device("cpu"))
        cert = clf.certify(data[row["idx"]][0], 30, 50, 0.001, generator=gen)
        assert list(row["counts_selection"]) == list(cert.counts_selection)
        assert list(row["counts_estimation"]) == list(cert.counts_estimation)


def test_reference_drawing_the_same_noise_is_refused(tmp_path: Path) -> None:
    data = ToyData(m=6)
    predict_dataset(_classifier(), data, tmp_path / "a.db", n=60, seed=1)
    predict_dataset(_classifier(), data, tmp_path / "b.db", n=60, seed=1)  # the same draws
    with pytest.raises(ValueError, match="draws the same noise as the predict run"):
        predict_categories(tmp_path / "a.db", tmp_path / "b.db")
    # Another n is another stream: accepted.
    predict_dataset(_classifier(), data, tmp_path / "big.db", n=200, seed=1)
    assert sum(predict_categories(tmp_path / "a.db", tmp_path / "big.db").values()) == (
        pytest.approx(1.0)
    )


def _drop_noise_stream(path: Path) -> None:
    """Make ``path`` look like a predict run from before the predict stream."""
    con = sqlite3.connect(path)
    config = json.loads(con.execute("SELECT value FROM meta WHERE key='config'").fetchone()[0])
    del config["noise_stream"]
    con.execute("UPDATE meta SET value=? WHERE key='config'", (json.dumps(config),))
    con.commit()
    con.close()


def test_an_old_predict_run_resumes_with_its_own_noise_and_is_checked(tmp_path: Path) -> None:
    data = ToyData(m=6)
    old = tmp_path / "old.db"

    done = []

    def stop_after_three(row: dict) -> None:
        done.append(row)
        if len(done) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_dataset(_classifier(), data, old, n=50, seed=2, progress=stop_after_three)
    _drop_noise_stream(old)
    rows = predict_dataset(_classifier(), data, old, n=50, seed=2)
    clf = _classifier()
    for row in rows[3:]:  # the resumed rows draw from the stream the run began with
        gen = example_generator(2, row["idx"], torch.device("cpu"))
        assert list(row["counts"]) == list(clf.counts(data[row["idx"]][0], 50, generator=gen))
    # ... and such a run is no independent sample of a same-seed certify run.
    certify_dataset(_classifier(), data, tmp_path / "c.db", n0=20, n=100, seed=2)
    with pytest.raises(ValueError, match="same noise"):
        predict_categories(old, tmp_path / "c.db")


def test_reference_of_another_precision_is_refused(tmp_path: Path) -> None:
    data = ToyData(m=3)
    certify_dataset(_classifier("bf16"), data, tmp_path / "bf16.db", n0=10, n=20, seed=4)
    predict_dataset(_classifier(), data, tmp_path / "p.db", n=20, seed=5)
    with pytest.raises(ValueError, match="precision 'bf16' but the predict run has 'fp32'"):
        predict_categories(tmp_path / "p.db", tmp_path / "bf16.db")
    with RunStore.read(tmp_path / "bf16.db") as ref:
        config = ref.config | {"precision": "fp32"}  # the same run but for its precision
    with pytest.raises(ValueError, match="same precision"):
        check_reference(tmp_path / "bf16.db", config)


# ------------------------------------------------------------------ Theorem 6


def test_theorem6_refuses_alpha_above_one_half() -> None:
    from smoothcert import stats

    # The proof bounds p(1 − p) by α(1 − α) for p ≤ α, true only for α ≤ ½.
    assert stats.certified_accuracy_lower_bound(90, 100, 0.5, 0.01) >= 0.0
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 0.5\]"):
        stats.certified_accuracy_lower_bound(90, 100, 0.6, 0.01)
