"""SmoothedClassifier: exact oracles, a linear classifier with a known robust radius, and the
guarantees of PREDICT and CERTIFY checked statistically with fixed seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch import nn

from smoothcert import ABSTAIN, SmoothedClassifier


class Constant(nn.Module):
    """Always answers `label` (one dummy parameter so the device can be inferred)."""

    def __init__(self, label: int, num_classes: int = 10) -> None:
        super().__init__()
        self.label, self.num_classes = label, num_classes
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(x.shape[0], self.num_classes)
        logits[:, self.label] = 1.0
        return logits


class Linear2(nn.Module):
    """f(x) = 1[wᵀx + b > 0] as two logits (Appendix B's linear classifier)."""

    def __init__(self, w: torch.Tensor, b: float) -> None:
        super().__init__()
        self.w = nn.Parameter(w.clone())
        self.b = b
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        s = x.flatten(1) @ self.w + self.b
        return torch.stack([-s, s], dim=1)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("n", "ratio"), [(100, 1.5005), (1_000, 2.4633), (100_000, 3.8115)])
def test_constant_model_radius_oracle(n: int, ratio: float) -> None:
    g = SmoothedClassifier(Constant(3), 10, sigma=0.25, batch_size=4096, input_shape=(1, 4, 4))
    cert = g.certify(torch.rand(1, 4, 4), n0=100, n=n, alpha=0.001, generator=_gen(0))
    assert cert.prediction == 3
    assert cert.n_a == n and cert.n == n
    assert cert.radius == pytest.approx(0.25 * ratio, abs=1e-4)
    assert cert.counts_selection.sum() == 100 and cert.counts_estimation.sum() == n
    assert cert.counts_estimation.dtype == np.int64


def test_counts_batches_and_reproducibility() -> None:
    w = torch.tensor([1.0, -2.0, 0.5])
    model = Linear2(w, 0.1)
    g = SmoothedClassifier(model, 2, sigma=1.0, batch_size=1000, input_shape=(3,))
    x = torch.tensor([0.2, 0.1, 0.3])
    a = g.counts(x, 2500, generator=_gen(7))
    assert model.calls == [1000, 1000, 500]
    b = g.counts(x, 2500, generator=_gen(7))
    np.testing.assert_array_equal(a, b)
    assert a.sum() == 2500 and a.dtype == np.int64
    # P(f(x+ε) = 1) = Φ((wᵀx + b)/(σ‖w‖)): the count is within 4 binomial standard errors.
    p1 = norm.cdf(float(w @ x + 0.1) / (1.0 * float(w.norm())))
    big = g.counts(x, 200_000, generator=_gen(8))
    assert abs(big[1] / 200_000 - p1) < 4 * np.sqrt(p1 * (1 - p1) / 200_000)
    c = g.counts(x, 2500, generator=_gen(9))
    assert not np.array_equal(a, c)


def test_training_flag_restored_and_no_grad() -> None:
    model = Linear2(torch.ones(3), 0.0)
    model.train()
    g = SmoothedClassifier(model, 2, sigma=0.5, input_shape=(3,))
    g.certify(torch.zeros(3), 10, 100, 0.01, generator=_gen(0))
    assert model.training
    assert model.w.grad is None
    model.eval()
    g.predict(torch.zeros(3), 100, 0.01, generator=_gen(0))
    assert not model.training


def test_linear_certificate_is_sound_over_many_trials() -> None:
    """Proposition 2: P(certified radius > true radius) ≤ α. For the linear classifier the
    smoothed classifier is the base classifier and its true robust radius is |wᵀx+b|/‖w‖
    (Appendix B), so a certificate beyond it is a failure of CERTIFY."""
    torch.manual_seed(0)
    w, b, sigma, alpha = torch.tensor([0.6, -0.8]), 0.0, 1.0, 0.1
    model = Linear2(w, b)
    g = SmoothedClassifier(model, 2, sigma=sigma, batch_size=10_000, input_shape=(2,))
    gen = _gen(1234)
    trials, failures = 1500, 0
    for t in range(trials):
        x = torch.tensor([0.25 + 0.001 * (t % 7), 0.0])  # true radius ≈ 0.15–0.19, pA ≈ 0.56–0.58
        true_radius = abs(float(w @ x) + b) / float(w.norm())
        cert = g.certify(x, n0=10, n=200, alpha=alpha, generator=gen)
        truth = int(float(w @ x) + b > 0)
        if cert.prediction != ABSTAIN and (cert.prediction != truth or cert.radius > true_radius):
            failures += 1
    rate = failures / trials
    assert rate <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / trials), rate
    assert rate > 0.01  # the bound is nearly tight here: the test would notice a broken CERTIFY


def test_linear_certificate_is_tight_with_large_n() -> None:
    w, sigma = torch.tensor([3.0, 4.0]), 0.5
    model = Linear2(w, -1.0)
    g = SmoothedClassifier(model, 2, sigma=sigma, batch_size=50_000, input_shape=(2,))
    x = torch.tensor([0.3, 0.2])  # wᵀx + b = 0.7, true radius 0.14, pA = Φ(0.28)
    cert = g.certify(x, n0=100, n=400_000, alpha=0.001, generator=_gen(3))
    assert cert.prediction == 1
    assert cert.radius == pytest.approx(0.14, rel=0.05)
    assert cert.radius <= 0.14


def test_predict_abstains_on_tie_and_returns_dominant_class() -> None:
    # A tie: the classifier splits exactly in half along the first coordinate at x = 0.
    model = Linear2(torch.tensor([1.0, 0.0]), 0.0)
    g = SmoothedClassifier(model, 2, sigma=1.0, batch_size=5000, input_shape=(2,))
    abstained = sum(
        g.predict(torch.zeros(2), 1000, 0.001, generator=_gen(s)) == ABSTAIN for s in range(20)
    )
    assert abstained >= 19  # P(wrong non-abstention) ≤ α per call
    assert g.predict(torch.tensor([2.0, 0.0]), 1000, 0.001, generator=_gen(0)) == 1
    assert g.predict(torch.tensor([-2.0, 0.0]), 1000, 0.001, generator=_gen(0)) == 0
    const = SmoothedClassifier(Constant(4), 10, sigma=0.5, input_shape=(1, 2, 2))
    assert const.predict(torch.zeros(1, 2, 2), 50, 0.001) == 4


def test_certify_abstains_when_uncertain() -> None:
    model = Linear2(torch.tensor([1.0, 0.0]), 0.0)
    g = SmoothedClassifier(model, 2, sigma=1.0, batch_size=5000, input_shape=(2,))
    cert = g.certify(torch.zeros(2), 100, 1000, 0.001, generator=_gen(0))
    assert cert.prediction == ABSTAIN and cert.radius == 0.0 and cert.p_a_lower < 0.5


def test_leading_batch_dimension_accepted() -> None:
    """x of shape [1, C, H, W] is the same input as x of shape [C, H, W]: the same counts under
    the same noise. The model's decision boundary passes through x, so the counts split between
    the classes and depend on x and on every noise draw (a constant model would hide a
    difference)."""
    w = torch.linspace(-1.0, 1.0, 9)
    x = torch.rand(1, 3, 3, generator=_gen(1))
    g = SmoothedClassifier(Linear2(w, -float(x.flatten() @ w)), 2, sigma=0.5, input_shape=(1, 3, 3))
    a = g.counts(x, 200, generator=_gen(0))
    b = g.counts(x.unsqueeze(0), 200, generator=_gen(0))
    np.testing.assert_array_equal(a, b)
    assert 50 < a[1] < 150
    other = g.counts((x + 0.3 * w.reshape(1, 3, 3)).unsqueeze(0), 200, generator=_gen(0))
    assert other[1] > a[1]  # a different input gives different counts


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sigma": 0.0}, "sigma must be"),
        ({"sigma": -0.5}, "sigma must be"),
        ({"sigma": float("nan")}, "sigma must be"),
        ({"num_classes": 1}, "num_classes must be"),
        ({"batch_size": 0}, "batch_size must be"),
    ],
)
def test_constructor_rejects_bad_arguments(kwargs, message: str) -> None:
    args = {"num_classes": 10, "sigma": 0.5} | kwargs
    with pytest.raises(ValueError, match=message):
        SmoothedClassifier(Constant(0), **args)


def test_bad_inputs_raise_value_error() -> None:
    g = SmoothedClassifier(Constant(0), 10, sigma=0.5, input_shape=(1, 3, 3))
    good = torch.rand(1, 3, 3)
    with pytest.raises(ValueError, match=r"shape \(1, 3, 3\)"):
        g.counts(torch.rand(2, 1, 3, 3), 10)
    with pytest.raises(ValueError, match="shape"):
        g.counts(torch.rand(3, 3), 10)
    bad = good.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        g.counts(bad, 10)
    bad[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or Inf"):
        g.certify(bad, 10, 10, 0.01)
    with pytest.raises(ValueError, match="n must be a positive integer"):
        g.counts(good, 0)
    with pytest.raises(ValueError, match="n0 must be a positive integer"):
        g.certify(good, 0, 10, 0.01)
    with pytest.raises(ValueError, match="alpha must be in"):
        g.certify(good, 10, 10, 1.0)
    with pytest.raises(ValueError, match="alpha must be in"):
        g.predict(good, 10, 0.0)
    with pytest.raises(ValueError, match="floating-point"):
        g.counts(torch.zeros(1, 3, 3, dtype=torch.int64), 10)


def test_wrong_logits_shape_is_reported() -> None:
    g = SmoothedClassifier(Constant(0, num_classes=10), 5, sigma=0.5, input_shape=(1, 2, 2))
    with pytest.raises(ValueError, match=r"logits of shape \[batch, 5\]"):
        g.counts(torch.rand(1, 2, 2), 10)
