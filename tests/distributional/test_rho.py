"""Transport costs for epsilon matching (NAL paper Eq. 8) and the `smoothcert rho` command."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from helpers import untrained_checkpoint
from smoothcert.cli import main
from smoothcert.distributional.transport import transport_cost

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def squared_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out[:, 0] - y) ** 2


def test_rho_matches_closed_form_of_linear_model():
    """f(x) = w·x + b, ℓ = (f − y)², ‖w‖² = γ/2: the maximizer is x* = x0 + r0·w/(γ − ‖w‖²)
    with r0 = f(x0) − y (see tests/training/test_methods.py), so
    ρ_adv = mean r0²‖w‖²/(γ − ‖w‖²)²; with fresh noise at x*, ρ = ρ_adv + dσ² in expectation."""
    gamma, d, n = 2.0, 8, 64
    g = torch.Generator().manual_seed(0)
    model = nn.Linear(d, 1)
    with torch.no_grad():
        w = torch.randn(d, generator=g)
        model.weight.copy_((w / w.norm() * (gamma / 2) ** 0.5)[None])
        model.bias.fill_(-0.2)
    x0 = torch.rand(n, d, generator=g)
    y = torch.randint(-2, 3, (n,), generator=g)  # integer targets: data labels are int64
    with torch.no_grad():
        r0 = model(x0)[:, 0] - y
    expected = (r0**2 * (gamma / 2) / (gamma / 2) ** 2).mean().item()  # ‖w‖² = γ − ‖w‖² = γ/2
    exact = transport_cost(model, (x0, y), gamma, steps=40, loss_fn=squared_loss, batch_size=16)
    assert exact.rho_adv == pytest.approx(expected, rel=1e-4)
    assert exact.rho == pytest.approx(exact.rho_adv, rel=1e-6)  # σ = 0: the same
    assert exact.eps == pytest.approx(math.sqrt(expected), rel=1e-4)
    assert exact.grad_norm < 1e-4
    noisy = transport_cost(
        model,
        (x0, y),
        gamma,
        sigma=0.3,
        num_noise=500,
        steps=20,
        loss_fn=squared_loss,
        batch_size=16,
    )
    assert noisy.rho_adv == pytest.approx(expected, rel=0.05)
    assert noisy.rho - noisy.rho_adv == pytest.approx(d * 0.3**2, rel=0.05)


def test_sampled_cost_adds_the_noise_mean_and_the_expected_cost_does_not():
    """A flat loss (zero weights): the sup of E[ℓ − γ‖x + z − x0‖²] is at x0. With Algorithm 1's
    sampled cost and η = 0.5/γ each step lands on x0 − z̄ of its own s draws, so ρ_adv =
    E‖z̄‖² = dσ²/s; the ascent on the cost's expectation (cost_with_noise=False, the same
    gradient as ‖x − x0‖² + dσ²) stays at x0."""
    d, n, sigma, gamma = 50, 400, 0.2, 3.0
    model = nn.Linear(d, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    x0 = torch.rand(n, d, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(n, dtype=torch.long)
    for s in (1, 4):
        sampled = transport_cost(
            model, (x0, y), gamma, sigma=sigma, num_noise=s, loss_fn=squared_loss, batch_size=100
        )
        # ‖z̄‖² = (σ²/s)·χ²_d per example: the mean of n has relative sd sqrt(2/(d n)) = 1%
        assert sampled.rho_adv == pytest.approx(d * sigma**2 / s, rel=0.04)
        expected = transport_cost(
            model, (x0, y), gamma, sigma=sigma, num_noise=s, cost_with_noise=False,
            loss_fn=squared_loss, batch_size=100,
        )  # fmt: skip
        assert expected.rho_adv == 0.0
        assert expected.rho == pytest.approx(d * sigma**2, rel=0.04)


@pytest.mark.parametrize(
    ("gamma", "kwargs", "message"),
    [
        (0.0, {}, "gamma must be > 0"),
        (math.inf, {}, "gamma must be > 0 and finite"),
        (1.0, {"sigma": math.inf}, "sigma must be >= 0 and finite"),
        (1.0, {"sigma": math.nan}, "sigma must be >= 0 and finite"),
        (1.0, {"step_size": math.inf}, "step_size must be > 0 and finite"),
    ],
)
def test_transport_cost_rejects_bad_numbers(gamma, kwargs, message):
    data = (torch.rand(3, 2), torch.zeros(3).long())
    with pytest.raises(ValueError, match=message):
        transport_cost(nn.Linear(2, 2), data, gamma, **kwargs)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, mnist_train):
    return untrained_checkpoint(tmp_path_factory.mktemp("ckpt"), mnist_train.info, arch="lenet")


def test_rho_cli(checkpoint, capsys):
    code = main(
        [
            "rho",
            str(checkpoint),
            "--gamma",
            "2",
            "--sigma",
            "0.05",
            "--num-noise",
            "2",
            "--steps",
            "3",
            "--max",
            "16",
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    rho_adv = float(re.search(r"rho_adv \(without noise\) = ([0-9.]+)", out).group(1))
    eps = float(re.search(r"eps = sqrt\(rho_adv\)\s+= ([0-9.]+)", out).group(1))
    rho = float(re.search(r"rho\s+\(with noise\)\s+= ([0-9.]+)", out).group(1))
    assert eps == pytest.approx(math.sqrt(rho_adv), abs=2e-4)
    assert rho > rho_adv  # the noise adds d·σ² ≈ 1.96 on average
    assert "16 train examples" in out


def test_rho_cli_bad_input_is_one_line(checkpoint, capsys):
    assert main(["rho", str(checkpoint), "--gamma", "-1", "--max", "4", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "gamma must be > 0" in err
