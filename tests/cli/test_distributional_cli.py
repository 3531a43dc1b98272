"""`smoothcert dcert` end to end on real MNIST examples: table, plot, run store, resume."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from helpers import untrained_checkpoint
from smoothcert.analysis.dcert import dcert_report
from smoothcert.cli import main
from smoothcert.models import create_model
from smoothcert.runs.dcert import dcert_dataset
from smoothcert.runs.dcert_file import read_dcert
from smoothcert.runs.store import RunStore

FAST = ["--steps", "2", "--num-noise", "2", "--num-eval", "4", "--batch", "2", "--no-progress"]
FAST += ["--restarts", "1"]  # the ascent restarts are tested in test_evaluation_bias.py
GRID = ["--gammas", "1", "3", "--gamma-adv", "2"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, mnist_test):
    return untrained_checkpoint(tmp_path_factory.mktemp("ck"), mnist_test.info, sigma=0.05)


def _rows(db) -> list[dict]:
    with RunStore.read(db) as store:
        return store.rows()


def test_dcert_cli_writes_table_plot_and_resumes(checkpoint, tmp_path, capsys, mnist_test):
    db, png = tmp_path / "d.db", tmp_path / "d.png"
    args = ["dcert", str(checkpoint), *GRID, *FAST, "--out", str(db)]
    assert main([*args, "--max", "2"]) == 0
    assert len(_rows(db)) == 2
    # a larger --max extends the run and does not recompute the stored examples
    assert main([*args, "--max", "4", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert (
        "estimate at ρ̂_adv" in out
        and "certified bound, min(CE, M)" in out
        and "WRM σ=0" in out
        and "4 examples" in out
    )
    assert png.stat().st_size > 10_000
    rows = _rows(db)
    assert [r["idx"] for r in rows] == [0, 1, 2, 3]
    assert all(
        len(r["cert_smooth_lagrangian"]) == 2 and len(r["adv_plain_loss"]) == 1 for r in rows
    )
    assert [r["label"] for r in rows] == [int(mnist_test[i][1]) for i in range(4)]
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 2
    # the same run in one go gives the same numbers (fixed blocks, seeded per block and γ)
    fresh = tmp_path / "fresh.db"
    assert main(["dcert", str(checkpoint), *GRID, *FAST, "--out", str(fresh), "--max", "4"]) == 0
    # the stored results are complete: read back without the model, report and curve agree
    res = read_dcert(db)
    assert res.tables["cert", "smooth"].lagrangian.shape == (4, 2)
    assert res.tables["adv", "plain"].dim == 784 and res.tables["adv", "plain"].sigma == 0.0
    assert dcert_report(res) in out
    a, b = _rows(db), _rows(fresh)
    for ra, rb in zip(a, b, strict=True):
        for key in ("cert_smooth_lagrangian", "adv_smooth_loss", "cert_plain_cost"):
            np.testing.assert_allclose(ra[key], rb[key], rtol=1e-6)


@pytest.mark.parametrize(("sigma", "shown"), [(None, "None"), (0.0, "0.0")])
def test_dcert_needs_sigma_when_the_checkpoint_has_no_usable_one(
    sigma, shown, tmp_path, capsys, mnist_test
):
    # σ comes from smoothcert.data.inputs.resolve_sigma, as in certify and predict; a model
    # trained without noise (σ = 0) records no σ to smooth at either.
    ck = untrained_checkpoint(tmp_path, mnist_test.info, sigma=sigma)
    db = tmp_path / "d.db"
    assert main(["dcert", str(ck), *FAST, "--out", str(db), "--max", "1"]) == 2
    assert capsys.readouterr().err == (
        f"smoothcert dcert: error: --sigma is needed: the checkpoint gives no usable "
        f"training σ ({shown})\n"
    )
    assert not db.exists()


def test_dcert_cli_bad_input_is_one_line_error(checkpoint, tmp_path, capsys):
    db = tmp_path / "d.db"
    base = ["dcert", str(checkpoint), *FAST, "--out", str(db), "--max", "2"]
    cases = [
        (["--gammas", "0", "1"], "--gammas"),
        (["--gamma-adv", "-1"], "--gamma-adv"),
        (["--sigma", "0"], "--sigma"),
        (["--num-eval", "0"], "--num-eval"),
        (["--step-size", "-0.1"], "--step-size"),
    ]
    for extra, needle in cases:
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err
    assert not db.exists()  # nothing written for bad input
    missing = ["dcert", str(tmp_path / "nope.safetensors"), *FAST, "--out", str(db)]
    assert main(missing) == 2
    # resuming with different arguments is refused and leaves the run intact
    assert main([*base, *GRID]) == 0
    before = _rows(db)
    assert main([*base, "--gammas", "1", "2", "--gamma-adv", "2"]) == 2
    assert "different arguments" in capsys.readouterr().err
    assert _rows(db) == before


def test_dcert_dataset_rejects_bad_arguments(checkpoint, mnist_test, tmp_path):
    model = create_model("cnn3", 10, (1, 28, 28), (0.1307,), (0.3081,))
    kw = {"sigma": 0.05, "gammas": [1.0], "gamma_adv": [2.0], "indices": [0]}
    with pytest.raises(ValueError, match="sigma must be > 0"):
        dcert_dataset(model, mnist_test, tmp_path / "a.db", **(kw | {"sigma": 0.0}))
    with pytest.raises(ValueError, match="no examples"):
        dcert_dataset(model, mnist_test, tmp_path / "a.db", **(kw | {"indices": []}))
    with pytest.raises(ValueError, match="indices"):
        dcert_dataset(model, mnist_test, tmp_path / "a.db", **(kw | {"indices": [10**6]}))


def test_dcert_restarts_default_to_three_and_old_runs_keep_one(checkpoint, tmp_path, capsys):
    quick = [a for a in FAST if a not in ("--restarts", "1")]
    new = tmp_path / "new.db"
    assert main(["dcert", str(checkpoint), *GRID, *quick, "--out", str(new), "--max", "2"]) == 0
    with RunStore.read(new) as store:
        assert store.config["surrogate"]["restarts"] == 3  # recorded for new runs
    old = tmp_path / "old.db"  # a run with one start (as every run made before restarts)
    assert main(["dcert", str(checkpoint), *GRID, *FAST, "--out", str(old), "--max", "2"]) == 0
    with RunStore.read(old) as store:
        assert store.config["surrogate"]["restarts"] == 1
    # the same command without --restarts extends it with one start, as it began
    assert main(["dcert", str(checkpoint), *GRID, *quick, "--out", str(old), "--max", "4"]) == 0
    with RunStore.read(old) as store:
        assert store.config["surrogate"]["restarts"] == 1 and len(store.rows()) == 4
    capsys.readouterr()


def test_ascent_agreement_counts_examples_whose_two_ascents_disagree():
    """Grid (1, 3) and sweep (2, 3) share γ = 3: the rows compare the certificate's and the
    adversary's values there, counting a difference above 0.01 and above three combined
    Monte Carlo standard errors."""
    from smoothcert.analysis.dcert import ascent_agreement
    from smoothcert.distributional import SurrogateTable
    from smoothcert.runs.dcert_file import DcertResult

    def table(gammas, lagr, se):
        lagr = np.asarray(lagr, float)
        z = np.zeros_like(lagr)
        return SurrogateTable(
            gammas=np.asarray(gammas, float), sigma=0.1, dim=4, lagrangian=lagr, loss=z,
            cost=z, value_se=np.asarray(se, float), grad_norm=z, indices=np.arange(len(lagr)),
        )  # fmt: skip

    cert_vals = [[0.0, 1.00], [0.0, 2.00], [0.0, 3.00], [0.0, 4.00]]
    adv_vals = [[9.0, 1.005], [9.0, 2.50], [9.0, 2.90], [9.0, 4.00]]
    se = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.05], [0.0, 0.0]]  # example 2: 0.1 < 3 SE
    tables = {}
    for setting in ("smooth", "plain"):
        tables["cert", setting] = table([1, 3], cert_vals, se)
        tables["adv", setting] = table([2, 3], adv_vals, se)
    result = DcertResult(sigma=0.1, gammas=np.array([1.0, 3.0]), gamma_adv=np.array([2.0, 3.0]),
                         tables=tables)  # fmt: skip
    rows = ascent_agreement(result)
    assert [(r.gamma, r.n, r.disagree) for r in rows] == [(3.0, 4, 1), (3.0, 4, 1)]
    assert rows[0].mean_difference == pytest.approx((-0.005 - 0.5 + 0.1 + 0.0) / 4)
    assert rows[0].max_abs_difference == pytest.approx(0.5)
    assert "| WRM σ=0 | 3 | 4 | -0.1012 | 1 | 0.5000 |" in dcert_report(result)


def test_dcert_progress_bar_shows_the_time_left_unless_no_progress(checkpoint, tmp_path, capsys):
    quiet = [a for a in FAST if a != "--no-progress"]
    args = ["dcert", str(checkpoint), "--gammas", "1", "--gamma-adv", "2", "--max", "2"]
    assert main([*args, *quiet, "--bound-draws", "0", "--out", str(tmp_path / "a.db")]) == 0
    err = capsys.readouterr().err
    assert "dcert: 100%" in err and "2.0/2 ex" in err and "left" in err
    assert main([*args, *FAST, "--bound-draws", "0", "--out", str(tmp_path / "b.db")]) == 0
    assert "dcert:" not in capsys.readouterr().err


def test_dcert_progress_advances_after_every_gamma_of_a_block(mnist_test, tmp_path):
    model = create_model("cnn3", 10, (1, 28, 28), (0.1307,), (0.3081,))
    shares: list[float] = []
    kw = {"sigma": 0.05, "gammas": [1.0, 3.0], "gamma_adv": [2.0], "indices": [0, 1, 2]}
    kw |= {"batch_size": 3, "steps": 1, "num_noise": 2, "num_eval": 2, "restarts": 2}
    dcert_dataset(model, mnist_test, tmp_path / "p.db", progress=shares.append, **kw)
    # (2 + 1) γ, smoothed and σ = 0, then the bound's draws: one call each, 3 examples in all
    assert len(shares) == 2 * 3 + 1
    assert sum(shares) == pytest.approx(3.0)
    # a smoothed γ (2 draws per step) costs twice what the same γ at σ = 0 costs
    assert shares[0] == pytest.approx(shares[1]) == pytest.approx(2 * shares[2])
