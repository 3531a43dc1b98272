"""The certified distributional bound (smoothcert.distributional.certified): the one-dimensional
maximization, the confidence bounds, the count quantile, and coverage in a simulation where
the smoothed loss is known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import special, stats

from smoothcert.distributional.certified import (
    certified_bound,
    clipped_loss_stats,
    dkw_epsilon,
    failures_quantile,
    inner_sup_bound,
    mean_upper_bound,
)


def brute_force_h(p: float, c: float) -> float:
    """sup_t Φ(Φ⁻¹(p) + t) − ct² on a dense grid (a lower estimate of the supremum)."""
    t = np.linspace(0, 40, 400_001)
    return float((special.ndtr(special.ndtri(p) + t) - c * t**2).max())


@pytest.mark.parametrize("p", [1e-9, 1e-6, 0.01, 0.2, 0.5, 0.9, 0.999])
@pytest.mark.parametrize("c", [1e-3, 0.01, 0.05, 0.1, 1.0, 30.0])
def test_inner_sup_bound_brackets_a_dense_grid(p, c):
    upper, lower = inner_sup_bound(p, c)
    dense = brute_force_h(p, c)  # a value the supremum reaches: never above the upper bound
    assert dense <= upper + 1e-12 and lower <= upper
    assert upper - dense < 1e-6  # the dense grid's spacing 1e-4 costs at most ~1e-8 here
    assert upper - lower < 1e-9
    assert p <= lower <= upper <= 1


def test_inner_sup_bound_limits_and_monotonicity():
    p = np.array([0.0, 0.05, 0.3, 0.7, 1.0])
    up, _ = inner_sup_bound(p, 1e9)  # γ → ∞: no move pays, H = p
    assert np.allclose(up, p, atol=1e-6)
    up, lo = inner_sup_bound(p[1:], 1e-9)  # γ → 0: the loss reaches M
    assert np.allclose(lo, 1.0, atol=1e-4) and np.allclose(up, 1.0)
    up, _ = inner_sup_bound(0.0, 0.5)  # ℓ̂(x0) = 0 means ℓ = 0 a.e.: nothing to gain
    assert up == 0.0
    grid = np.linspace(0, 1, 201)
    up, lo = inner_sup_bound(grid, 0.3)
    assert np.all(np.diff(lo) >= -1e-12)  # H increases in p
    # a closed form: the stationary point of Φ(a + t) − ct² at a = 0 solves φ(t) = 2ct
    c = 0.1
    t_star = float(
        __import__("scipy.optimize", fromlist=["brentq"]).brentq(
            lambda t: stats.norm.pdf(t) - 2 * c * t, 0.0, 5.0
        )
    )
    exact = stats.norm.cdf(t_star) - c * t_star**2
    up, lo = inner_sup_bound(0.5, c)
    assert lo - 1e-12 <= exact <= up + 1e-12 and up - exact < 1e-12


def test_mean_upper_bounds():
    # Clopper–Pearson for the 0-1 loss: no error in 1000 draws at 0.01 gives 1 − 0.01^(1/1000)
    ub = mean_upper_bound([0.0], [0.0], 1000, 0.01, "01")[0]
    assert ub == pytest.approx(1 - 0.01 ** (1 / 1000), rel=1e-4)
    # Hoeffding when the variance is large, empirical Bernstein when it is small
    n, d = 1000, 0.01
    hoeffding = 0.5 + math.sqrt(math.log(2 / d) / (2 * n))
    assert mean_upper_bound([0.5], [0.25], n, d)[0] == pytest.approx(hoeffding)
    small = mean_upper_bound([0.01], [1e-4], n, d)[0]
    log4 = math.log(4 / d)
    assert small == pytest.approx(0.01 + math.sqrt(2e-4 * log4 / n) + 7 * log4 / (3 * (n - 1)))
    assert small < 0.01 + math.sqrt(math.log(2 / d) / (2 * n))


def test_mean_upper_bound_covers_at_its_level():
    """Beta-distributed Y in [0, 1]: the bound fails in at most ~δ of 4000 repetitions."""
    rng = np.random.default_rng(0)
    y = rng.beta(0.3, 6.0, size=(4000, 200))  # mean 0.0476, skewed like a clipped CE
    truth = 0.3 / 6.3
    ub = mean_upper_bound(y.mean(1), y.var(1, ddof=1), 200, 0.05)
    assert (ub < truth).mean() <= 0.05


def test_failures_quantile():
    assert failures_quantile(200, 0.001, 0.025) == 1
    assert stats.binom.cdf(1, 200, 0.001) >= 0.975 > stats.binom.cdf(0, 200, 0.001)
    assert failures_quantile(10, 0.5, 0.05) == 8  # P(Bin(10, ½) <= 8) = 0.989, <= 7: 0.945
    assert failures_quantile(1000, 1e-6, 0.025) == 0
    assert dkw_epsilon(200, 0.025) == pytest.approx(math.sqrt(math.log(80) / 400))


def test_certified_bound_structure():
    p = np.full(400, 0.02)
    b = certified_bound(p, [0.0, 0.01, 1.0, 100.0], 0.25, clip=10.0, delta=0.05,
                        delta_draws=0.001, draws=1000)  # fmt: skip
    assert b.replaced == failures_quantile(400, 0.001, 0.025)
    # at ρ = 0 the largest γ is best: M·(mean of H ≈ p with k values replaced by 1 + ε)
    k, eps = b.replaced, dkw_epsilon(400, 0.025)
    expected0 = 10 * ((400 - k) * 0.02 / 400 + k / 400 + eps)
    assert b.value[0] == pytest.approx(expected0, rel=2e-3)
    assert np.all(np.diff(b.value) >= 0) and b.value[-1] == 10.0 and np.isinf(b.gamma[-1])
    assert np.all(b.value <= 10.0)


class LinearModel(torch.nn.Module):
    """Two classes, logits (w·x, 0): the smoothed 0-1 loss at x is exactly Φ(−(w·x)/(σ‖w‖))
    for label 0, and the worst case over E‖x − x0‖² ≤ ρ is known in closed form too."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x):
        s = x.flatten(1) @ self.w
        return torch.stack([s, torch.zeros_like(s)], 1)


GAMMAS = np.geomspace(0.01, 1000, 21)  # a coarser grid than the default, for speed


def test_certified_bound_covers_the_truth_in_simulation():
    """A linear classifier where ℓ̂ of the 0-1 loss is Φ(−m/σ) with m the margin: the
    certified bound at ρ_adv = 0 is >= E_P0 ℓ̂(x0) (the truth, computed exactly from P0) in
    at least 1 − δ of seeded repetitions; at ρ_adv > 0 it is >= the loss of the adversary that
    shifts every input by √ρ_adv against w (a lower bound on the worst case)."""
    sigma, n, draws, delta = 0.5, 100, 200, 0.1
    w = torch.tensor([1.0, 0.0])
    model = LinearModel(w).eval()
    # P0: margins m ~ N(1, 0.5²): E Φ(−m/σ) = Φ(−1/√(σ² + 0.25))
    truth0 = stats.norm.cdf(-1 / math.sqrt(sigma**2 + 0.25))
    rho = 0.09
    shifted = stats.norm.cdf(-(1 - math.sqrt(rho)) / math.sqrt(sigma**2 + 0.25))
    misses = 0
    reps = 40
    for rep in range(reps):
        g = torch.Generator().manual_seed(rep)
        m = 1 + 0.5 * torch.randn(n, generator=g)
        x0 = torch.stack([m, torch.randn(n, generator=g)], 1)
        y = torch.zeros(n, dtype=torch.long)
        s = clipped_loss_stats(model, x0, y, sigma, draws, 10.0, generator=g)
        p_up = mean_upper_bound(s["err_mean"], None, draws, 0.01, "01")
        b = certified_bound(p_up, [0.0, rho], sigma, clip=1.0, delta=delta, delta_draws=0.01,
                            draws=draws, loss="01", gammas=GAMMAS)  # fmt: skip
        misses += b.value[0] < truth0
        assert b.value[1] >= shifted  # the bound is never below an achievable loss
    assert misses <= math.ceil(delta * reps)
    # the Monte Carlo statistics are those of the exact smoothed loss
    x0 = torch.tensor([[0.3, 0.0]])
    s = clipped_loss_stats(model, x0, torch.tensor([0]), sigma, 20_000, 10.0,
                           generator=torch.Generator().manual_seed(0))  # fmt: skip
    assert s["err_mean"][0] == pytest.approx(stats.norm.cdf(-0.3 / sigma), abs=0.01)
