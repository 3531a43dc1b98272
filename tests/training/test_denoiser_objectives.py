"""The denoiser objectives (MSE and stability of Salman et al. 2020, DDPM's noise-prediction
loss) against values computed by hand on tiny models with fixed noise."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from smoothcert._util.checks import ParameterError
from smoothcert.models.diffusion import alpha_bar_schedule
from smoothcert.training.methods.denoiser_objectives import diffusion_loss, mse_loss, stability_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")

X = torch.tensor([[[[0.2, 0.4], [0.6, 0.8]]]])  # [1, 1, 2, 2]
EPS = torch.tensor([[[[1.0, -1.0], [0.5, 0.0]]]])
SIGMA = 0.2


def _affine_denoiser() -> nn.Conv2d:
    """D(z) = 0.5·z + 0.1 per pixel."""
    d = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        d.weight.fill_(0.5)
        d.bias.fill_(0.1)
    return d


def _pick_classifier() -> nn.Sequential:
    """Logits (z₀, z₁, z₃) of the flattened 2×2 image z."""
    f = nn.Sequential(nn.Flatten(), nn.Linear(4, 3, bias=False))
    with torch.no_grad():
        f[1].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]))
    return f


def test_mse_by_hand() -> None:
    # x + σε = (0.4, 0.2, 0.7, 0.8); D = (0.3, 0.2, 0.45, 0.5); D − x = (0.1, −0.2, −0.15, −0.3):
    # squares 0.01 + 0.04 + 0.0225 + 0.09 = 0.1625, mean over the 4 pixels 0.040625.
    loss = mse_loss(_affine_denoiser(), X, SIGMA, noise=EPS)
    assert loss.item() == pytest.approx(0.040625, abs=1e-7)
    loss.backward()  # a loss to train D with


def test_mse_draws_noise_from_the_generator() -> None:
    d = _affine_denoiser()
    a = mse_loss(d, X, SIGMA, generator=torch.Generator().manual_seed(3))
    b = mse_loss(
        d, X, SIGMA, noise=torch.randn(X.shape, generator=torch.Generator().manual_seed(3))
    )
    assert a.item() == b.item()


def test_stability_uses_the_hard_label_of_the_clean_input() -> None:
    # Example 1: f(x) = (0.2, 0.4, 0.8) -> label 2; f(D(x + σε)) = (0.3, 0.2, 0.5).
    # Example 2: x' = 1 − x, f(x') = (0.8, 0.6, 0.2) -> label 0; x' + σε = (1.0, 0.4, 0.5, 0.2),
    # D = (0.6, 0.3, 0.35, 0.2), f(D) = (0.6, 0.3, 0.2).
    x = torch.cat([X, 1 - X])
    noise = torch.cat([EPS, EPS])
    loss = stability_loss(_affine_denoiser(), _pick_classifier(), x, SIGMA, noise=noise)

    def lse(*v: float) -> float:
        return math.log(sum(math.exp(u) for u in v))

    hard = (lse(0.3, 0.2, 0.5) - 0.5 + lse(0.6, 0.3, 0.2) - 0.6) / 2
    assert hard == pytest.approx(0.9099650033425328, abs=1e-12)
    assert loss.item() == pytest.approx(hard, abs=1e-6)
    # Not the soft target −Σ softmax(f(x))_c log softmax(f(D))_c, which is larger here.
    logits = torch.tensor([[0.3, 0.2, 0.5], [0.6, 0.3, 0.2]])
    soft_target = torch.tensor([[0.2, 0.4, 0.8], [0.8, 0.6, 0.2]]).softmax(1)
    soft = -(soft_target * logits.log_softmax(1)).sum(1).mean().item()
    assert soft - loss.item() > 0.1


def test_stability_gradient_reaches_the_denoiser_only_through_the_noisy_path() -> None:
    d, f = _affine_denoiser(), _pick_classifier()
    stability_loss(d, f, X, SIGMA, noise=EPS).backward()
    assert d.weight.grad is not None and d.weight.grad.abs().item() > 0


def test_diffusion_loss_by_hand() -> None:
    # ᾱ = (0.9, 0.5, 0.1); ε_θ(x_t, t) = 0.5·x_t + 0.1·t; x₀ = 2x − 1.
    schedule = alpha_bar_schedule([0.9, 0.5, 0.1])

    class Eps(nn.Module):
        def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            assert t.dtype == torch.int64
            return 0.5 * x_t + 0.1 * t.view(-1, 1, 1, 1)

    x = torch.tensor([[[[0.25, 0.75]]], [[[0.5, 1.0]]]])  # x₀ = (−0.5, 0.5), (0, 1)
    noise = torch.tensor([[[[1.0, -1.0]]], [[[0.5, 2.0]]]])
    t = torch.tensor([0, 2])
    s9, s1 = math.sqrt(0.9), math.sqrt(0.1)
    x_t = [-0.5 * s9 + s1, 0.5 * s9 - s1, s1 * 0 + s9 * 0.5, s1 * 1 + s9 * 2]  # √ᾱ·x₀ + √(1−ᾱ)·ε
    pred = [0.5 * x_t[0], 0.5 * x_t[1], 0.5 * x_t[2] + 0.2, 0.5 * x_t[3] + 0.2]
    by_hand = sum((p - e) ** 2 for p, e in zip(pred, [1.0, -1.0, 0.5, 2.0], strict=True)) / 4
    assert by_hand == pytest.approx(0.7033013548742757, abs=1e-12)
    loss = diffusion_loss(Eps(), x, schedule, t=t, noise=noise)
    assert loss.item() == pytest.approx(by_hand, abs=1e-6)


def test_diffusion_timesteps_are_uniform() -> None:
    # 3,000 draws over T = 3 steps: each count is Binomial(3000, 1/3), SD 25.8; within 5 SD.
    schedule = alpha_bar_schedule([0.9, 0.5, 0.1])
    seen: list[torch.Tensor] = []

    class Record(nn.Module):
        def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            seen.append(t)
            return torch.zeros_like(x_t)

    x = torch.rand(3000, 1, 1, 1)
    diffusion_loss(Record(), x, schedule, generator=torch.Generator().manual_seed(0))
    counts = torch.bincount(seen[0], minlength=3).tolist()
    assert len(counts) == 3
    assert all(abs(c - 1000) < 5 * math.sqrt(3000 / 3 * 2 / 3) for c in counts)


def test_bad_noise_and_timesteps_name_the_parameter() -> None:
    with pytest.raises(ParameterError) as excinfo:
        mse_loss(_affine_denoiser(), X, SIGMA, noise=torch.zeros(2, 2))
    assert excinfo.value.parameter == "noise"
    schedule = alpha_bar_schedule([0.9, 0.5, 0.1])
    for t in (torch.tensor([3]), torch.tensor([-1]), torch.tensor([0.5]), torch.tensor([0, 1])):
        with pytest.raises(ParameterError) as excinfo:
            diffusion_loss(nn.Identity(), X, schedule, t=t)
        assert excinfo.value.parameter == "t"
    with pytest.raises(ParameterError) as excinfo:
        mse_loss(_affine_denoiser(), X, 0.0)
    assert excinfo.value.parameter == "sigma"


def test_the_denoiser_method_names_the_config_knows_are_the_registered_classes() -> None:
    # training.config tells a denoiser run by these names without importing the classes
    from smoothcert.training.methods.denoiser_methods import DENOISER_METHODS
    from smoothcert.training.methods.denoiser_objectives import (
        DENOISER_METHOD_NAMES,
        is_denoiser_method,
    )

    assert tuple(DENOISER_METHODS) == DENOISER_METHOD_NAMES
    assert all(is_denoiser_method(name) for name in DENOISER_METHODS)
    assert not is_denoiser_method("gaussian") and not is_denoiser_method(None)
