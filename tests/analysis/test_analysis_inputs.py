"""Bad or edge-case inputs to the analyses and the distributional certificate: each is a
ValueError naming the argument, never a silently wrong number or a TypeError from deep inside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from smoothcert import analysis
from smoothcert.certify import stats
from smoothcert.cli import main
from smoothcert.distributional import distributional_bound, surrogate, worst_case_loss
from smoothcert.runs import CERTIFY_SCHEMA, CertifyOptions, RunStore, certify_dataset

CONFIG = {"command": "certify", "n0": 10, "n": 200, "alpha": 0.01, "sigma": 0.5}
FAST = {"steps": 1, "num_noise": 2, "num_eval": 2}  # the certificate's ascent, kept tiny


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _model(classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, classes))


def _data(m: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(m, 1, 4, 4, generator=g), torch.arange(m) % 3


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    x, y = _data(6)
    out = tmp_path_factory.mktemp("runs") / "a.db"
    items = [(x[i], int(y[i])) for i in range(len(y))]
    certify_dataset(
        _model(), items, out, CertifyOptions(n0=10, n=200, alpha=0.01), sigma=0.5, num_classes=3
    )
    return out


@pytest.fixture
def empty_run(tmp_path) -> Path:
    path = tmp_path / "empty.db"
    RunStore.open(path, "certify", CONFIG, CERTIFY_SCHEMA).close()
    return path


# --------------------------------------------------------------------------- 1. format_table


def test_format_table_refuses_summaries_at_different_radii(run):
    a = analysis.analyze([run], radii=[0.0, 0.25], names=["a"])[0]
    b = analysis.analyze([run], radii=[0.0, 1.0], names=["b"])[0]
    # Before: one header "r = 0.25" with b's value at r = 1.0 under it.
    with pytest.raises(ValueError, match=r"same radii.*'a'.*'b'"):
        analysis.format_table([a, b])
    c = analysis.analyze([run], radii=[0.0, 1.0, 2.0], names=["c"])[0]
    with pytest.raises(ValueError, match=r"same radii.*'a'.*'c'"):  # before: numpy's shape error
        analysis.format_table([a, c])
    assert "r = 0.25" in analysis.format_table([a, a])


# --------------------------------------------------------------------------- 2. shapes


def test_certified_accuracy_and_acr_refuse_mismatched_shapes():
    # Before: one `correct` flag broadcast over both radii, returning [1.].
    with pytest.raises(ValueError, match="radius and correct"):
        analysis.certified_accuracy([1.0, 2.0], [True], [0.0])
    with pytest.raises(ValueError, match="radius and correct"):
        analysis.average_certified_radius([1.0, 2.0], [True])
    acc = analysis.certified_accuracy([1.0, 2.0], [True, False], [0.0, 1.5])
    np.testing.assert_allclose(acc, [0.5, 0.0])


# --------------------------------------------------------------------------- 3. analyze


def test_empty_run_is_an_error_not_a_table_of_zeros(empty_run):
    with pytest.raises(ValueError, match="has no rows yet"):
        analysis.analyze([empty_run])
    with pytest.raises(ValueError, match="has no rows yet"):
        analysis.analyze([empty_run], rho=0.5)
    with pytest.raises(ValueError, match="has no rows yet"):
        analysis.bound_comparison(empty_run)
    with pytest.raises(ValueError, match="empty"):
        analysis.certified_accuracy([], [], [0.0])


def test_cli_analyze_of_an_empty_run_is_one_line_on_stderr(empty_run, capsys):
    assert main(["analyze", str(empty_run)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and "has no rows yet" in err[0]
    assert "r = 0" not in captured.out


def test_analyze_checks_rho_even_for_an_empty_run(empty_run):
    with pytest.raises(ValueError, match="rho"):
        analysis.analyze([empty_run], rho=0)


@pytest.mark.parametrize(
    ("radii", "match"),
    [([float("nan")], "finite"), ([0.0, float("inf")], "finite"), ("0.5", "list"), ([], "empty")],
)
def test_analyze_refuses_bad_radii(run, radii, match):
    with pytest.raises(ValueError, match=rf"radii .*{match}"):
        analysis.analyze([run], radii=radii)


def test_analyze_accepts_a_single_path(run):
    [one] = analysis.analyze(str(run), radii=[0.0])
    [listed] = analysis.analyze([run], radii=[0.0])
    assert one.certified_accuracy == listed.certified_accuracy and one.name == "a"
    [pathlike] = analysis.analyze(run, radii=[0.0])
    assert pathlike.num_examples == 6


def test_plot_curves_refuses_empty_groups(run, tmp_path):
    [s] = analysis.analyze([run])
    with pytest.raises(ValueError, match="group 'g' has no run summaries"):
        analysis.plot_curves({"g": []}, tmp_path / "p.png")
    with pytest.raises(ValueError, match="groups"):
        analysis.plot_curves({}, tmp_path / "p.png")
    assert not (tmp_path / "p.png").exists()
    analysis.plot_curves({"g": [s]}, tmp_path / "p.svg")
    assert (tmp_path / "p.svg").stat().st_size > 1000


@pytest.mark.parametrize("name", ["fig", "fig.xyz"])
def test_plot_curves_writes_the_path_given_or_refuses_it(run, tmp_path, name):
    [s] = analysis.analyze([run])
    # Before: "fig" silently became fig.png.
    with pytest.raises(ValueError, match=r"plot path .*fig.* file type"):
        analysis.plot_curves({"g": [s]}, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_cli_analyze_refuses_a_plot_path_before_printing(run, tmp_path, capsys):
    assert main(["analyze", str(run), "--plot", str(tmp_path / "fig")]) == 2
    captured = capsys.readouterr()
    assert "file type" in captured.err and captured.out == ""


# --------------------------------------------------------------------------- 4. certificates


def test_certificate_refuses_nan_inputs_instead_of_returning_nan():
    x, y = _data()
    with pytest.raises(ValueError, match="data .*NaN"):
        distributional_bound(_model(), (x * float("nan"), y), 1.0, 0.1, 0.25, **FAST)
    with pytest.raises(ValueError, match="x0 contains NaN"):
        surrogate(_model(), x * float("nan"), y, 1.0, 0.25, **FAST)


class _NaNModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.flatten(1)) * float("nan")


def test_certificate_refuses_a_model_with_non_finite_loss():
    with pytest.raises(ValueError, match="not finite"):
        distributional_bound(_NaNModel(), _data(), 1.0, 0.1, 0.25, **FAST)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda x, y: ((x * 255).long(), y), "floating-point"),
        (lambda x, y: (x[0], y[0]), "one label per input"),
        (lambda x, y: (x, y.float()), "integer class indices"),
        (lambda x, y: (x, y + 5), r"class indices in \[0, 3\)"),
        (lambda x, y: (x, y - 100), ">= 0"),  # cross-entropy's ignore_index: a silent loss of 0
        (lambda x, y: [(x[i], 1.5) for i in range(len(y))], "integer class"),
    ],
)
def test_certificate_refuses_bad_data_naming_it(make, match):
    with pytest.raises(ValueError, match=rf"data.*{match}"):
        distributional_bound(_model(), make(*_data()), 1.0, 0.1, 0.25, **FAST)


def test_certificate_converts_float64_and_numpy_data_to_the_model_dtype():
    x, y = _data()
    ref = distributional_bound(_model(), (x, y), 1.0, 0.1, 0.25, seed=2, **FAST).value
    assert (
        distributional_bound(_model(), (x.double(), y), 1.0, 0.1, 0.25, seed=2, **FAST).value == ref
    )
    arrays = (x.numpy(), y.numpy())
    assert distributional_bound(_model(), arrays, 1.0, 0.1, 0.25, seed=2, **FAST).value == ref


def test_surrogate_refuses_bad_batches_naming_them():
    x, y = _data()
    with pytest.raises(ValueError, match="x0 must be a batch"):
        surrogate(_model(), x[0], y[0], 1.0, 0.25, **FAST)
    with pytest.raises(ValueError, match=r"y must be class indices in \[0, 3\)"):
        surrogate(_model(), x, y + 5, 1.0, 0.25, **FAST)


def test_certificate_names_gamma_not_gammas():
    with pytest.raises(ValueError, match=r"^gamma must"):
        distributional_bound(_model(), _data(), 0.0, 0.1, 0.25, **FAST)


def test_worst_case_loss_accepts_numpy_scalars():
    x, y = _data()
    [p32] = worst_case_loss(_model(), (x, y), np.float32(1.0), 0.25, **FAST)
    [p] = worst_case_loss(_model(), (x, y), 1.0, 0.25, **FAST)
    assert p32.loss == p.loss


@pytest.mark.parametrize("name", ["batch_size", "num_noise", "steps", "num_eval"])
def test_fractional_counts_are_value_errors_naming_them(name):
    kwargs = FAST | {name: 2.5}
    with pytest.raises(ValueError, match=rf"^{name} must be an integer"):
        distributional_bound(_model(), _data(), 1.0, 0.1, 0.25, **kwargs)


def _summary(name: str, acc: list[float], lower: list[float]) -> analysis.RunSummary:
    return analysis.RunSummary(
        name=name, radii=[0.0, 0.5, 1.0], certified_accuracy=acc, lower_bound=lower, acr=0.3,
        num_examples=100, sigma=0.25, n=1000, alpha=0.001,
    )  # fmt: skip


def test_best_per_radius_takes_each_radius_from_its_best_run():
    a = _summary("σ = 0.25", [0.9, 0.6, 0.0], [0.85, 0.55, 0.0])
    b = _summary("σ = 0.5", [0.8, 0.7, float("nan")], [0.75, 0.65, float("nan")])
    best = analysis.best_per_radius([a, b], "best σ")
    assert best.name == "best σ (max of 2 noisy estimates, biased upward)"
    assert best.certified_accuracy == [0.9, 0.7, 0.0]  # NaN (not measured) never wins
    # the winning run's Theorem 6 bound at ρ/2 (Bonferroni over the two runs), not at ρ
    at_half = stats.certified_accuracy_lower_bound(np.array([90, 70, 0]), 100, 0.001, 0.0005)
    assert best.lower_bound == pytest.approx(np.asarray(at_half).tolist())
    at_rho = stats.certified_accuracy_lower_bound(np.array([90, 70]), 100, 0.001, 0.001)
    assert (np.array(best.lower_bound[:2]) < at_rho).all()
    assert np.isnan(best.acr)
    c = _summary("c", [0.9, 0.6, float("nan")], [0.8, 0.5, float("nan")])
    d = _summary("d", [0.1, 0.1, float("nan")], [0.0, 0.0, float("nan")])
    assert np.isnan(analysis.best_per_radius([c, d]).certified_accuracy[2])
    with pytest.raises(ValueError, match="at least one"):
        analysis.best_per_radius([])
