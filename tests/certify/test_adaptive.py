"""Adaptive CERTIFY: its failure probability stays ≤ α over many repetitions on the linear
classifier with a known robust radius (and the same test catches an uncorrected procedure),
exact oracles on a constant classifier, early abstention, and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from smoothcert import ABSTAIN, SmoothedClassifier
from smoothcert.certify.adaptive import (
    all_correct_look,
    certify_adaptive,
    look_levels,
    look_schedule,
    plan_looks,
    run_plan,
)


class Linear2(nn.Module):
    """f(x) = 1[wᵀx + b > 0] as two logits (Appendix B's linear classifier)."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([-s, s], dim=1)


class Constant(nn.Module):
    def __init__(self, label: int, num_classes: int = 10) -> None:
        super().__init__()
        self.label, self.num_classes = label, num_classes
        self.dummy = nn.Parameter(torch.zeros(()))
        self.evaluations = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.evaluations += x.shape[0]
        logits = torch.zeros(x.shape[0], self.num_classes)
        logits[:, self.label] = 1.0
        return logits


class Thirds(nn.Module):
    """Three classes, each with probability ⅓ at x = 0 (by the tercile of x₀ + ε₀)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.q = float(norm.ppf(1 / 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, 0]
        label = (s > self.q).long() + (s > -self.q).long()
        return nn.functional.one_hot(label, 3).float()


def _failure_rate(
    alpha: float, trials: int, seed: int, final_share: float = 0.5, align: bool = True
) -> float:
    """Fraction of trials whose certificate is wrong: a non-abstaining answer that is not the
    true class or claims a radius beyond the true robust radius |wᵀx + b|/‖w‖ (Appendix B).
    The target radius is the true radius itself, so no look can certify it without failing
    and the procedure runs through (nearly) all its looks: the union bound is what is tested."""
    w = torch.tensor([0.6, -0.8])  # ‖w‖ = 1
    g = SmoothedClassifier(Linear2(w, 0.0), 2, sigma=1.0, batch_size=4096, input_shape=(2,))
    gen = torch.Generator().manual_seed(seed)
    failures = 0
    for t in range(trials):
        x = torch.tensor([0.15 + 0.01 * (t % 5), 0.0])  # true radius 0.09–0.13, pA ≈ 0.54–0.55
        true_radius = abs(float(w @ x))
        cert = certify_adaptive(
            g,
            x,
            [true_radius],
            alpha,
            n0=10,
            n_max=3200,
            n_first=100,
            growth=2.0,
            final_share=final_share,
            align=align,
            generator=gen,
        )
        if cert.prediction != ABSTAIN and (cert.prediction != 1 or cert.radius > true_radius):
            failures += 1
    return failures / trials


def test_adaptive_failure_rate_at_most_alpha() -> None:
    alpha, trials = 0.1, 800
    se = math.sqrt(alpha * (1 - alpha) / trials)
    rate = _failure_rate(alpha, trials, seed=2024)
    assert rate <= alpha + 3 * se, rate
    assert rate > 0.01  # not vacuous: failures do occur near the boundary
    # The same test rejects the uncorrected procedure (level α at each of the J = 6 looks,
    # i.e. alpha·J overall): repeated looks without the union bound inflate the failure rate.
    looks = len(look_schedule(3200, 100, 2.0))
    assert looks == 6 and look_levels(alpha * looks, looks, 1 / looks) == pytest.approx([alpha] * 6)
    naive = _failure_rate(alpha * looks, trials, seed=2024, final_share=1 / looks, align=False)
    assert naive > alpha + 3 * se, naive


def test_constant_model_stops_at_the_aligned_look_of_the_largest_reachable_radius() -> None:
    """pA = 1: at look n_j the bound is exactly α_j^(1/n_j) (Clopper–Pearson with k = n), so
    the stopping look, the radius and the cost are known in closed form."""
    sigma, alpha, radii = 0.25, 0.001, [0.25, 0.5, 0.75, 1.0]
    model = Constant(3)
    g = SmoothedClassifier(model, 10, sigma=sigma, batch_size=4096, input_shape=(1, 4, 4))
    cert = certify_adaptive(
        g, torch.rand(1, 4, 4), radii, alpha, generator=torch.Generator().manual_seed(0)
    )
    plan = plan_looks(radii, sigma, alpha, 100_000)
    assert plan.looks == cert.schedule and plan.looks[-1] == 100_000
    assert sum(plan.levels) <= alpha * (1 + 1e-12) and plan.levels[-1] == alpha / 2
    level = plan.levels[0]  # every look but the last
    assert set(plan.levels[:-1]) == {level}
    # radius 1.0 = 4σ needs pA_lower ≥ Φ(4), beyond (α/2)^(1/n_max): out of reach from the
    # start; 0.75 = 3σ decides the stop, at n* = ⌈ln a / ln Φ(3)⌉, which is a look.
    assert (alpha / 2) ** (1 / 100_000) < norm.cdf(4.0)
    stop = math.ceil(math.log(level) / math.log(norm.cdf(3.0)))
    assert level ** (1 / stop) >= norm.cdf(3.0) > level ** (1 / (stop - 1))
    assert stop in plan.looks and stop == all_correct_look(float(norm.cdf(3.0)), level)
    assert cert.n == stop and cert.looks == plan.looks.index(stop) + 1
    assert cert.prediction == 3 and cert.n_a == stop
    assert cert.p_a_lower == pytest.approx(level ** (1 / stop), rel=1e-10)  # level margin
    assert cert.radius == pytest.approx(sigma * norm.ppf(level ** (1 / stop)), rel=1e-9)
    assert cert.certified == (True, True, True, False)
    assert model.evaluations == 100 + stop  # selection + estimation, nothing more
    assert 100_100 / model.evaluations > 13  # the saving on a perfectly robust input
    # Without the aligned looks the stop is the next point of the geometric grid.
    unaligned = certify_adaptive(
        g, torch.rand(1, 4, 4), radii, alpha, align=False,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    grid = look_schedule(100_000)
    grid_level = look_levels(alpha, len(grid))[0]
    assert unaligned.n == next(n for n in grid if grid_level ** (1 / n) >= norm.cdf(3.0)) > stop


def test_matches_fixed_n_on_a_linear_classifier_and_uses_fewer_samples() -> None:
    """Far from the boundary, adaptive certifies the same target radii as fixed-n CERTIFY with
    n_max draws, and stops long before n_max."""
    w = torch.tensor([3.0, 4.0])  # ‖w‖ = 5
    g = SmoothedClassifier(Linear2(w, 0.0), 2, sigma=0.5, batch_size=10_000, input_shape=(2,))
    x = torch.tensor([0.18, 0.0])  # wᵀx = 0.54: true radius 0.108, pA = Φ(0.216) ≈ 0.586
    radii = [0.0, 0.05, 0.2]
    adaptive = certify_adaptive(
        g, x, radii, 0.001, n_max=100_000, generator=torch.Generator().manual_seed(1)
    )
    fixed = g.certify(x, 100, 100_000, 0.001, generator=torch.Generator().manual_seed(1))
    assert adaptive.prediction == fixed.prediction == 1
    assert adaptive.certified == tuple(fixed.radius >= r for r in radii) == (True, True, False)
    assert adaptive.n < 100_000
    assert adaptive.radius <= 0.108


def test_abstains_early_when_pa_is_clearly_below_half() -> None:
    g = SmoothedClassifier(Thirds(), 3, sigma=1.0, batch_size=4096, input_shape=(2,))
    cert = certify_adaptive(
        g, torch.zeros(2), [0.25, 0.5], 0.001, generator=torch.Generator().manual_seed(0)
    )
    assert cert.prediction == ABSTAIN and cert.radius == 0.0
    assert cert.certified == (False, False)
    assert cert.n <= 400  # decided within the first few looks, not at n_max = 100,000
    assert cert.counts_estimation.sum() == cert.n and cert.counts_selection.sum() == 100


def test_same_seed_same_certificate() -> None:
    g = SmoothedClassifier(Linear2(torch.tensor([1.0, 1.0]), 0.0), 2, 1.0, input_shape=(2,))
    x = torch.tensor([0.3, 0.2])
    a = certify_adaptive(g, x, [0.1, 0.3], 0.01, generator=torch.Generator().manual_seed(4))
    b = certify_adaptive(g, x, [0.1, 0.3], 0.01, generator=torch.Generator().manual_seed(4))
    assert (a.prediction, a.radius, a.n, a.looks) == (b.prediction, b.radius, b.n, b.looks)
    np.testing.assert_array_equal(a.counts_estimation, b.counts_estimation)
    np.testing.assert_array_equal(a.counts_selection, b.counts_selection)


def test_look_levels_spend_exactly_alpha() -> None:
    assert look_levels(0.01, 1) == [0.01]
    assert look_levels(0.01, 5, 0.5) == pytest.approx([0.00125] * 4 + [0.005])
    assert sum(look_levels(0.001, 19, 0.3)) == pytest.approx(0.001)


def test_look_schedule() -> None:
    assert look_schedule(1000, 100, 2.0) == [100, 200, 400, 800, 1000]
    assert look_schedule(100, 100) == [100]
    s = look_schedule(100_000, 100, 1.5)
    assert s[0] == 100 and s[-1] == 100_000 and all(np.diff(s) > 0)


def test_plan_spends_at_most_alpha_and_aligns_one_look_per_reachable_radius() -> None:
    grid = look_schedule(100_000, 100, 2.0)  # 100 … 51,200 and 100,000: 12 looks
    plan = plan_looks([0.0, 0.25, 0.5, 0.75, 1.0], 0.25, 0.001, 100_000, growth=2.0)
    # Φ(1), Φ(2), Φ(3) have aligned looks inside the grid; Φ(4) is past n_max; radius 0 is ½.
    assert len(plan.looks) == len(grid) + 3 and set(grid) < set(plan.looks)
    assert list(plan.looks) == sorted(plan.looks) and plan.looks[-1] == 100_000
    early = 0.001 * 0.5 / (len(plan.looks) - 1)
    assert plan.levels == pytest.approx((early,) * (len(plan.looks) - 1) + (0.0005,))
    assert sum(plan.levels) == pytest.approx(0.001)
    for t in plan.thresholds[2:4]:
        n = all_correct_look(t, early)
        assert n in plan.looks and early ** (1 / n) >= t > early ** (1 / (n - 1))
    single = plan_looks([0.5], 1.0, 0.01, 100, n_first=100)
    assert single.looks == (100,) and single.levels == (0.01,)


def test_run_plan_on_simulated_draws_equals_the_closed_form() -> None:
    """run_plan works on any source of counts (the tuning simulation's entry point): all draws
    in class 0 stop at the aligned look of the largest reachable threshold."""
    plan = plan_looks([0.5], 1.0, 0.001, 10_000)
    cert = run_plan(plan, lambda m: np.array([m, 0]), n0=100)
    assert cert.n == all_correct_look(plan.thresholds[1], plan.levels[0])
    assert cert.certified == (True,) and cert.prediction == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"radii": []}, "at least one"),
        ({"radii": [-0.1]}, "finite and >= 0"),
        ({"radii": [float("nan")]}, "finite and >= 0"),
        ({"radii": "abc"}, "sequence of numbers"),
        ({"alpha": 0.0}, "alpha must be in"),
        ({"futility": 1.5}, "futility must be in"),
        ({"n0": 0}, "n0 must be"),
        ({"n_max": 50}, "n_first must be at most"),
        ({"growth": 1.0}, "growth must be"),
        ({"final_share": 0.0}, "final_share must be in"),
        ({"final_share": 1.0}, "final_share must be < 1"),
    ],
)
def test_bad_arguments(kwargs, message: str) -> None:
    g = SmoothedClassifier(Constant(0), 10, 0.5, input_shape=(1, 2, 2))
    args = {"radii": [0.25], "alpha": 0.001} | kwargs
    with pytest.raises(ValueError, match=message):
        certify_adaptive(g, torch.rand(1, 2, 2), **args)
    with pytest.raises(ValueError, match="SmoothedClassifier"):
        certify_adaptive(Constant(0), torch.rand(1, 2, 2), [0.25], 0.001)


def test_cli_defaults_are_the_library_defaults() -> None:
    import argparse

    from smoothcert.certify.adaptive import AdaptiveOptions
    from smoothcert.cli import certify

    parser = argparse.ArgumentParser()
    certify.add_arguments(parser)
    names = ("n_first", "growth", "futility", "final_share")
    assert [parser.get_default(n) for n in names] == [getattr(AdaptiveOptions(), n) for n in names]
