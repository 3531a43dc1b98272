"""Tests of smoothcert.distributional: the NAL Theorem 1 certificate, with one perturbation
shared by the noise draws (docs/threat-model.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from smoothcert.distributional import (
    curve_from_table,
    distributional_bound,
    distributional_curve,
    surrogate,
    surrogate_table,
    worst_case_loss,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------- closed form


def _linear(d: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor, float]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    w = w / w.norm()  # a = ‖w‖ = 1
    model = nn.Linear(d, 1)
    with torch.no_grad():
        model.weight.copy_(w[None])
        model.bias.fill_(0.3)
    return model, w, 0.3


def _squared(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out.squeeze(-1) - y) ** 2


@pytest.mark.parametrize("gamma", [2.0, 4.0])
@pytest.mark.parametrize("sigma", [0.0, 0.1])
def test_surrogate_matches_closed_form_for_linear_squared_loss(gamma, sigma):
    """Linear model f(x) = w·x + b, squared loss ℓ(x) = (w·x + b − y)², a = ‖w‖, r0 = f(x0) − y.

    Smoothed loss: ℓ̂(x) = E_z (w·x + b − y + w·z)² = (w·x + b − y)² + σ²a².
    Write x = x0 + t·w/a + u with u ⟂ w: the objective ℓ̂(x) − γ‖x − x0‖² is
    (r0 + ta)² + σ²a² − γt² − γ‖u‖², so u = 0 and, for γ > a² (strict concavity),
    2a(r0 + ta) = 2γt gives t = a·r0/(γ − a²), i.e. the maximizer x* = x0 + r0·w/(γ − a²),
    and sup_x{ℓ̂(x) − γ‖x − x0‖²} = γ r0²/(γ − a²) + σ²a².
    Hence φ̃γ = γ r0²/(γ − a²) + σ²a² − γdσ², ‖x* − x0‖² = a²r0²/(γ − a²)², and the expected
    cost with the noise is that plus dσ². (Reading 1 would give γ r0²/(γ − a²) at every σ.)
    """
    d, batch = 20, 16
    model, w, b = _linear(d)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(batch, d, generator=g)
    y = torch.randn(batch, generator=g)
    r = surrogate(
        model, x0, y, gamma, sigma, num_noise=8, steps=60, num_eval=256, loss_fn=_squared,
        generator=torch.Generator().manual_seed(2),
    )  # fmt: skip
    r0 = (x0 @ w + b - y).detach()
    a2 = 1.0
    lagrangian = gamma * r0**2 / (gamma - a2) + sigma**2 * a2
    x_star = x0 + (r0 / (gamma - a2))[:, None] * w
    cost = a2 * r0**2 / (gamma - a2) ** 2
    if sigma == 0:
        assert torch.allclose(r.lagrangian, lagrangian, atol=1e-4, rtol=1e-4)
        assert torch.allclose(r.x, x_star, atol=1e-3)
        assert torch.allclose(r.cost_without_noise, cost, atol=1e-3, rtol=1e-3)
        assert torch.all(r.value_se == 0)
        assert r.grad_norm.max() < 1e-2
    else:
        # Monte-Carlo error only (the optimization error is second order): per example and
        # for the mean over examples.
        err = r.lagrangian - lagrangian
        assert torch.all(err.abs() <= 4 * r.value_se + 1e-3), (err, r.value_se)
        assert abs(err.mean()) <= 4 * r.value_se.pow(2).sum().sqrt() / batch
        assert torch.allclose(r.x, x_star, atol=0.1)
        assert r.value_se.min() > 0
    assert torch.allclose(r.value, r.lagrangian - gamma * d * sigma**2)
    assert torch.allclose(r.cost_with_noise, r.cost_without_noise + d * sigma**2)
    assert r.x.shape == x0.shape and r.gamma == gamma and r.sigma == sigma


def test_surrogate_without_ascent_is_the_smoothed_loss_at_x0():
    """steps=0: the value is ℓ̂(x0) − γdσ² = r0² + σ²a² − γdσ² (same linear model)."""
    d = 20
    model, w, b = _linear(d)
    x0 = torch.rand(8, d, generator=torch.Generator().manual_seed(3))
    y = torch.zeros(8)
    r = surrogate(model, x0, y, 1.0, 0.2, steps=0, num_eval=4000, loss_fn=_squared,
                  generator=torch.Generator().manual_seed(4))  # fmt: skip
    expected = (x0 @ w + b).detach() ** 2 + 0.04 - d * 0.04
    assert torch.all((r.value - expected).abs() <= 4 * r.value_se)
    assert torch.equal(r.x, x0) and torch.all(r.cost_without_noise == 0)


# --------------------------------------------------------------------------- real data


def _tiny_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 5, stride=2), nn.ELU(),
        nn.Conv2d(8, 16, 5, stride=2), nn.ELU(),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 10),
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(mnist_train, mnist_test):
    """A tiny ELU CNN trained for a few seconds on 300 MNIST examples with noise σ = 0.05,
    and 40 test examples."""
    torch.manual_seed(0)
    model = _tiny_cnn()
    x, y = mnist_train.batch(range(300))
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(6):
        perm = torch.randperm(300, generator=g)
        for i in range(0, 300, 50):
            j = perm[i : i + 50]
            noisy = x[j] + 0.05 * torch.randn(x[j].shape, generator=g)
            loss = nn.functional.cross_entropy(model(noisy), y[j])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    xt, yt = mnist_test.batch(range(500))
    with torch.no_grad():
        acc = (model(xt).argmax(1) == yt).float().mean().item()
    assert acc > 0.6, acc  # far above chance (0.1): a real model
    return model, (xt[:40], yt[:40])


@pytest.mark.parametrize("sigma", [0.05, 0.0])
def test_certificate_curve_lies_above_empirical_worst_case_loss(trained, sigma):
    """Weak duality (Theorem 1): at ρ_adv = ρ̂_test(γ_adv), the certified bound is at least the
    loss the γ_adv-adversary reaches, on the same data (independent draws; γ_adv off the grid)."""
    model, data = trained
    fast = {"steps": 30, "num_noise": 4, "num_eval": 32}
    table = surrogate_table(model, data, [0.5, 1.0, 2.0, 4.0], sigma, seed=1, **fast)
    points = worst_case_loss(model, data, [0.75, 1.5, 3.0], sigma, seed=2, **fast)
    # Weak duality is an identity on the same examples: compare the in-sample minimum (the
    # split certificate is a mean over other examples, with its own sampling error).
    curve = curve_from_table(table, [p.rho_adv_test for p in points], select="in-sample")
    mc = math.sqrt((table.value_se**2).mean() / len(data[0]))  # Monte-Carlo error of a mean
    for p, bound in zip(points, curve.value, strict=True):
        assert p.rho_adv_test > 0 and p.loss > 0
        assert bound >= p.loss - 3 * mc, (p, bound)
        assert p.rho_test == pytest.approx(p.rho_adv_test + 784 * sigma**2)
    # the ascents converged (the premise of the comparison)
    assert np.all(curve.grad_norm_median < 0.1)
    # ρ with and without the noise differ by dσ² exactly
    np.testing.assert_allclose(curve.rho - curve.rho_adv, 784 * sigma**2)


def test_refining_the_gamma_grid_never_raises_the_certificate(trained):
    model, (x, y) = trained
    data = (x[:20], y[:20])
    kw = {
        "seed": 5,
        "steps": 15,
        "num_noise": 2,
        "num_eval": 8,
    }  # exact checks: no need to converge
    rhos = [0.1, 0.5, 1.0, 3.0, 10.0]
    # the in-sample minimum over the grid: refining can only lower it
    kw["select"] = "in-sample"
    coarse = distributional_curve(model, data, [1.0, 4.0], rhos, 0.05, **kw)
    fine = distributional_curve(model, data, [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], rhos, 0.05, **kw)
    del kw["select"]
    # the draws are keyed by (block, γ, σ): shared γ give identical surrogates
    np.testing.assert_array_equal(coarse.mean_lagrangian, fine.mean_lagrangian[[1, 5]])
    assert np.all(fine.value <= coarse.value)
    assert np.any(fine.value < coarse.value - 0.05)  # the refinement helps somewhere
    assert np.all(np.diff(fine.value) > 0)  # the bound grows with the budget
    # a single certificate is the same number as the curve's term at that γ
    one = distributional_bound(model, data, 4.0, 0.5, 0.05, **kw)
    assert one.value == pytest.approx(4.0 * 0.5 + coarse.mean_lagrangian[1])
    noisy = distributional_bound(
        model, data, 4.0, 0.5 + 784 * 0.05**2, 0.05, rho_with_noise=True, **kw
    )
    assert noisy.value == pytest.approx(one.value) and noisy.rho_adv == pytest.approx(0.5)
    assert one.mean_surrogate == pytest.approx(coarse.mean_lagrangian[1] - 4.0 * 784 * 0.05**2)


def test_theorem3_smoothed_surrogate_is_at_most_unsmoothed_wrm_surrogate(trained):
    """Theorem 3 (Eq. 7), per example: φ̃γ (σ = 0.05, shared perturbation) ≤ WRM's
    sup_x{ℓ(θ; x) − γ‖x − x0‖²} (σ = 0) at the same γ, up to Monte-Carlo error, wherever both
    ascents converged."""
    model, (x, y) = trained
    for gamma in (0.5, 1.0, 2.0):
        gen = torch.Generator().manual_seed(7)
        smooth = surrogate(model, x, y, gamma, 0.05, num_noise=4, num_eval=32, generator=gen)
        wrm = surrogate(model, x, y, gamma, 0.0, generator=gen)
        converged = (smooth.grad_norm < 0.1) & (wrm.grad_norm < 0.1)
        assert converged.float().mean() >= 0.75
        ok = smooth.value <= wrm.value + 3 * smooth.value_se + 1e-4
        assert torch.all(ok[converged]), (smooth.value - wrm.value)[converged]


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"gamma": 0.0}, "gamma"),
        ({"gamma": -1.0}, "gamma"),
        ({"gamma": float("nan")}, "gamma"),
        ({"sigma": -0.1}, "sigma"),
        ({"num_noise": 0}, "num_noise"),
        ({"num_eval": 0}, "num_eval"),
        ({"steps": -1}, "steps"),
        ({"step_size": 0.0}, "step_size"),
    ],
)
def test_surrogate_rejects_bad_arguments(kwargs, match):
    model, _, _ = _linear(4)
    args = {"gamma": 1.0, "sigma": 0.1, **kwargs}
    with pytest.raises(ValueError, match=match):
        surrogate(model, torch.zeros(2, 4), torch.zeros(2), loss_fn=_squared, **args)


def test_bad_shapes_budgets_and_grids_are_rejected():
    model, _, _ = _linear(4)
    data = (torch.zeros(3, 4), torch.zeros(3))
    kw = {"loss_fn": _squared, "steps": 1, "num_eval": 2}
    with pytest.raises(ValueError, match="one label per example"):
        surrogate(model, torch.zeros(2, 4), torch.zeros(3), 1.0, 0.1, **kw)
    with pytest.raises(ValueError, match="gammas"):
        distributional_curve(model, data, [], [0.1], 0.1, **kw)
    with pytest.raises(ValueError, match="gammas"):
        distributional_curve(model, data, [1.0, -2.0], [0.1], 0.1, **kw)
    with pytest.raises(ValueError, match="gamma_adv"):
        worst_case_loss(model, data, [0.0], 0.1, **kw)
    with pytest.raises(ValueError, match=r"dσ²"):  # 4·0.1² = 0.04 > 0.01
        distributional_bound(model, data, 1.0, 0.01, 0.1, rho_with_noise=True, **kw)
    with pytest.raises(ValueError, match="rho"):
        distributional_bound(model, data, 1.0, -1.0, 0.1, **kw)
    with pytest.raises(ValueError, match="indices"):
        distributional_bound(model, data, 1.0, 1.0, 0.1, indices=[5], **kw)
    with pytest.raises(ValueError, match="batch_size"):
        distributional_bound(model, data, 1.0, 1.0, 0.1, batch_size=0, **kw)
    with pytest.raises(ValueError, match="empty"):
        distributional_bound(model, (torch.zeros(0, 4), torch.zeros(0)), 1.0, 1.0, 0.1, **kw)
    with pytest.raises(ValueError, match="labels"):
        distributional_bound(model, (torch.zeros(3, 4), torch.zeros(2)), 1.0, 1.0, 0.1, **kw)
