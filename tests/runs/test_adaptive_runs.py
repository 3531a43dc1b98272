"""Adaptive certify runs in the store and in the tables, and the benchmark's output checks."""

from __future__ import annotations

import hashlib
import math

import pytest
import torch

from helpers import LinearImage, ToyData, smoothcert, untrained_checkpoint
from smoothcert import analysis
from smoothcert.bench.throughput import interleaved
from smoothcert.certify.adaptive import look_schedule
from smoothcert.certify.smoothing import SmoothedClassifier
from smoothcert.runs import CertifyOptions, RunStore, Selection, certify_dataset


def _classifier() -> SmoothedClassifier:
    return SmoothedClassifier(LinearImage(), 2, 0.25, batch_size=300, input_shape=(1, 2, 2))


def _run(path, radii, max_examples=None):
    options = CertifyOptions(n0=20, n=4000, alpha=0.01, adaptive_radii=radii)
    selection = Selection(max_examples=max_examples)
    return certify_dataset(_classifier(), ToyData(m=6, flip_every=0), path, options, selection)


def test_analysis_of_an_adaptive_run_stops_at_its_largest_target(tmp_path) -> None:
    _run(tmp_path / "a.db", [0.25])
    fixed = certify_dataset(
        _classifier(),
        ToyData(m=6, flip_every=0),
        tmp_path / "f.db",
        CertifyOptions(n0=20, n=4000, alpha=0.01),
    )
    assert fixed
    adaptive, plain = analysis.analyze([tmp_path / "a.db", tmp_path / "f.db"], [0, 0.25, 0.5])
    assert not math.isnan(adaptive.certified_accuracy[1])
    assert math.isnan(adaptive.certified_accuracy[2]) and math.isnan(adaptive.lower_bound[2])
    assert math.isnan(adaptive.acr) and not math.isnan(plain.acr)
    rows = [[c.strip(" |") for c in line.split(" | ")] for line in
            analysis.format_table([adaptive, plain]).splitlines()[2:]]  # fmt: skip
    assert rows[0][3:] == ["—", "—"]  # r = 0.5 and ACR: not measured for the adaptive run
    assert rows[1][3].startswith("**")  # so the fixed run is the best measured there
    csv = analysis.format_table([adaptive, plain], "csv").splitlines()[1]
    assert csv.endswith(",,")


def test_the_same_target_radii_in_another_order_resume_the_run(tmp_path) -> None:
    first = _run(tmp_path / "r.db", [0.5, 0.25, 0.25], max_examples=3)
    with RunStore.read(tmp_path / "r.db") as store:
        assert store.config["adaptive_radii"] == [0.25, 0.5]
    again = _run(tmp_path / "r.db", [0.25, 0.5], max_examples=3)
    assert [r["idx"] for r in again] == [r["idx"] for r in first]


def test_a_huge_growth_ends_the_grid_at_n_max() -> None:
    assert look_schedule(100_000, 100, 1e307) == [100, 100_000]


def test_benchmark_refuses_inputs_that_cannot_fit_in_memory() -> None:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    with pytest.raises(ValueError, match="more than half of this machine's"):
        interleaved(model, torch.rand(1, 2, 2), num_classes=2, sigma=0.25,
                    batch_size=10**12, rounds=1, batches_per_round=1)  # fmt: skip


def test_bench_json_never_overwrites_a_run_or_the_checkpoint(tmp_path, mnist_test) -> None:
    ckpt = untrained_checkpoint(tmp_path, mnist_test.info, sigma=0.25)
    run = tmp_path / "run.db"
    with RunStore.open(run, "toy", {"a": 1}, {"v": "REAL"}) as store:
        store.add(0, {"v": 1.0})
    (tmp_path / "folder").mkdir()
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (run, ckpt)}
    common = ["bench", ckpt, "--rounds", "1", "--batches-per-round", "1", "--batch", "8",
              "--disagreement-images", "0"]  # fmt: skip
    for target, message in (
        (run, "is not a JSON file; refusing to overwrite it"),
        (ckpt, "is the checkpoint being measured"),
        (tmp_path / "folder", "is a directory"),
    ):
        result = smoothcert(*common, "--json", target, check=False)
        assert result.returncode == 2 and message in result.stderr
        assert result.stdout == ""  # refused before any measuring
    assert before == {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in (run, ckpt)}
