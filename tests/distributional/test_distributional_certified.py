"""The certified bound in dcert runs and reports: stored statistics, resume of runs made
before the bound, and the certified value against the estimate on real MNIST examples."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import untrained_checkpoint
from smoothcert.analysis.dcert import dcert_report
from smoothcert.cli import main
from smoothcert.runs.dcert import dcert_dataset
from smoothcert.runs.dcert_file import read_dcert
from smoothcert.runs.store import RunStore

FAST = ["--steps", "2", "--num-noise", "2", "--num-eval", "4", "--batch", "3", "--no-progress"]
FAST += ["--restarts", "1", "--gammas", "1", "3", "--gamma-adv", "2"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, mnist_test):
    return untrained_checkpoint(tmp_path_factory.mktemp("ck"), mnist_test.info, sigma=0.25)


def test_certified_value_is_printed_beside_the_estimate_and_lies_above_it(
    checkpoint, tmp_path, capsys
):
    db = tmp_path / "d.db"
    args = ["dcert", str(checkpoint), *FAST, "--bound-draws", "300", "--max", "6"]
    assert main([*args, "--out", str(db), "--rhos", "0", "0.01", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "with probability ≥ 1 − δ = 0.95" in out and "M = 10 nats" in out
    assert "s = 300 noise draws" in out and "N = 6 test examples" in out
    assert "Estimates (not bounds)" in out and "| estimate, smoothed |" in out
    result = read_dcert(db)
    assert result.bound_draws == 300 and result.clip == 10.0
    stats = result.bound_stats
    assert stats is not None and set(stats) == {"ce_mean", "ce_var", "err_mean"}
    assert np.all((stats["ce_mean"] >= 0) & (stats["ce_mean"] <= 1))
    rhos = [0.0, 0.01, 0.1, 1.0]
    certified = result.certified(rhos)
    estimate = result.curve("smooth", rhos)
    assert np.all(certified.value >= estimate.value)  # an untrained model: CE ≈ log 10
    assert np.all(np.diff(certified.value) >= 0) and np.all(certified.value <= 10.0)
    err = result.certified(rhos, "01")
    assert err.clip == 1.0 and np.all(err.value <= 1.0)
    # the 0-1 bound at ρ = 0 is at least the observed error rate of the noisy draws
    assert err.value[0] >= stats["err_mean"].mean()
    # the statistics have their own seed stream: the estimate's numbers are those of a run
    # without the bound
    plain = tmp_path / "plain.db"
    assert main([*args, "--bound-draws", "0", "--out", str(plain)]) == 0
    capsys.readouterr()
    without = read_dcert(plain)
    assert without.bound_stats is None and without.certified([0.0]) is None
    for key, table in without.tables.items():
        assert np.array_equal(table.lagrangian, result.tables[key].lagrangian)
    assert "No certified bound" in dcert_report(without)
    # Theorem 3 on the same held-out rows: the report's difference and paired SE are the
    # library's, and a verdict needs two paired SEs
    report = dcert_report(without, [0.0, 0.1])
    from smoothcert.distributional import paired_difference

    d = paired_difference(without.tables["cert", "smooth"], without.tables["cert", "plain"],
                          [0.0, 0.1], [0.0, 0.1])  # fmt: skip
    row = next(line for line in report.splitlines() if line.startswith("| equal ρ_adv | "))
    assert f"{d.difference[0]:+.4f} ± {d.se[0]:.4f}" in row
    expected = "no" if abs(d.difference[0]) <= 2 * d.se[0] else "lower*"
    assert row.rstrip(" |").endswith(expected)
    assert "| equal ρ | " in report and "test-image sampling only" in report


def test_a_run_made_before_the_bound_resumes_without_it(checkpoint, tmp_path, mnist_test):
    from smoothcert.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    kw = dict(sigma=0.25, gammas=[1.0], gamma_adv=[2.0], batch_size=2, steps=1, num_noise=2,
              num_eval=2, restarts=1)  # fmt: skip
    out = tmp_path / "old.db"
    dcert_dataset(model, mnist_test, out, indices=[0, 1], selection=range(4), bound_draws=0, **kw)
    with RunStore.read(out) as store:
        assert store.config["bound"] is None and "bound_ce_mean" not in store.schema
    # extended without naming bound_draws: it keeps the run's (none), as restarts do
    result = dcert_dataset(model, mnist_test, out, indices=range(4), selection=range(4), **kw)
    assert result.bound_stats is None and len(result.tables["cert", "smooth"].indices) == 4
    new = tmp_path / "new.db"
    result = dcert_dataset(model, mnist_test, new, indices=range(4), bound_draws=50, **kw)
    with RunStore.read(new) as store:
        assert store.config["bound"] == {"draws": 50, "clip": 10.0}
    assert result.bound_stats["ce_mean"].shape == (4,)
    with pytest.raises(ValueError, match="bound_draws must be 0"):
        dcert_dataset(model, mnist_test, tmp_path / "x.db", indices=[0], bound_draws=1, **kw)


def test_certified_value_of_a_trained_nal_model_lies_above_its_estimate(tmp_path, mnist_test):
    """The zoo's NAL model (σ = 0.05) on 6 real test images: the certified bound of
    min(CE, 10) is above the estimate at every budget (the estimate is not a bound, but a
    valid bound must exceed the true value, which the estimate approximates), and trivial (M)
    from ρ_adv = 0.05 on: at σ = 0.05 the Lipschitz bound reaches only tiny budgets."""
    db = tmp_path / "nal.db"
    args = ["dcert", "zoo:mnist-cnn3elu-nal-gamma0.25", "--dataset", "mnist", *FAST]
    assert main([*args, "--bound-draws", "200", "--max", "6", "--out", str(db)]) == 0
    result = read_dcert(db)
    rhos = [0.0, 0.001, 0.01, 0.05]
    certified = result.certified(rhos)
    estimate = result.curve("smooth", rhos)
    assert np.all(certified.value >= estimate.value)
    assert estimate.value[0] < 0.5 and certified.value[-1] == 10.0
