"""One-step diffusion denoising (Carlini et al. 2023): schedules, the timestep t*, the
denoising formula against an oracle noise-prediction network, and the errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from smoothcert._util.checks import ParameterError
from smoothcert.models.diffusion import (
    NoiseSchedule,
    OneStepDiffusionDenoiser,
    alpha_bar_schedule,
    cosine_schedule,
    linear_schedule,
    schedule_from_metadata,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hand_linear_alpha_bar(steps: int = 1000, lo: float = 1e-4, hi: float = 0.02) -> list[float]:
    """ᾱ_t = ∏_{s≤t} (1 − β_s) with β evenly spaced from lo to hi, in plain Python."""
    out, prod = [], 1.0
    for i in range(steps):
        prod *= 1.0 - (lo + (hi - lo) * i / (steps - 1))
        out.append(prod)
    return out


class OracleEps(nn.Module):
    """ε(x_t, t) that knows the clean image: (x_t − √ᾱ_t·x0)/√(1 − ᾱ_t), x0 on [−1, 1].

    Records the timesteps it was called with and the noise it returned."""

    def __init__(self, x0: torch.Tensor, schedule: NoiseSchedule) -> None:
        super().__init__()
        self.x0 = 2.0 * x0 - 1.0
        self.alpha_bar = torch.as_tensor(schedule.alpha_bar)
        self.seen_t: list[torch.Tensor] = []
        self.returned: list[torch.Tensor] = []

    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.seen_t.append(t)
        a = self.alpha_bar[t].to(x_t.dtype).view(-1, 1, 1, 1)
        eps = (x_t - a.sqrt() * self.x0) / (1 - a).sqrt()
        self.returned.append(eps)
        return eps


class ZeroEps(nn.Module):
    def forward(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x_t)


def test_linear_schedule_is_ddpm_products() -> None:
    hand = _hand_linear_alpha_bar()
    s = linear_schedule()
    assert s.steps == 1000 and s.kind == "linear"
    np.testing.assert_allclose(s.alpha_bar, hand, rtol=1e-12)
    assert s.alpha_bar[0] == pytest.approx(1 - 1e-4, abs=1e-15)


@pytest.mark.parametrize(("sigma", "t_star"), [(0.25, 144), (0.5, 258)])
def test_t_star_matches_hand_computation_for_the_linear_schedule(sigma, t_star) -> None:
    # target ᾱ = 1/(1 + 4σ²): 0.8 at σ = 0.25, 0.5 at σ = 0.5; argmin over the hand products.
    hand = _hand_linear_alpha_bar()
    target = 1 / (1 + 4 * sigma**2)
    assert target == {0.25: 0.8, 0.5: 0.5}[sigma]
    by_hand = min(range(1000), key=lambda t: abs(hand[t] - target))
    assert by_hand == t_star
    # Its neighbours straddle the target and are farther from it.
    assert hand[t_star - 1] > target > hand[t_star + 1]
    assert abs(hand[t_star] - target) < min(
        abs(hand[t_star - 1] - target), abs(hand[t_star + 1] - target)
    )
    assert linear_schedule().timestep_for(sigma) == t_star
    assert OneStepDiffusionDenoiser(ZeroEps(), linear_schedule(), sigma).timestep == t_star


def test_t_star_tie_goes_to_the_earlier_step() -> None:
    # ᾱ = (0.75, 0.25) and σ = 0.5 (target 0.5): both at distance 0.25 exactly.
    s = alpha_bar_schedule([0.75, 0.25])
    assert s.timestep_for(0.5) == 0


def test_cosine_schedule_follows_nichol_dhariwal_eq_17() -> None:
    s = cosine_schedule()

    def f(u: float) -> float:
        return math.cos((u / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2

    # Before β reaches its clip, ᾱ_t = f(t + 1)/f(0) (the product telescopes).
    for t in (0, 10, 500, 900):
        assert s.alpha_bar[t] == pytest.approx(f(t + 1) / f(0), rel=1e-10)
    # The last β is clipped at 0.999.
    assert s.alpha_bar[-1] / s.alpha_bar[-2] == pytest.approx(1 - 0.999, rel=1e-9)


@pytest.mark.parametrize("schedule", [linear_schedule(), cosine_schedule()], ids=["linear", "cos"])
@pytest.mark.parametrize("sigma", [0.12, 0.25, 0.5, 1.0])
def test_oracle_network_gives_back_the_clean_image(schedule, sigma) -> None:
    g = torch.Generator().manual_seed(int(sigma * 100))
    x = torch.rand(1, 1, 28, 28, generator=g)
    copies = 64
    oracle = OracleEps(x.expand(copies, -1, -1, -1), schedule)
    denoiser = OneStepDiffusionDenoiser(oracle, schedule, sigma)
    delta = sigma * torch.randn(copies, 1, 28, 28, generator=g)
    out = denoiser(x + delta)
    # x̂0 = x0 up to float32 rounding of x_t (|x_t| grows with σ), then (x̂0 + 1)/2 = x.
    torch.testing.assert_close(out, x.expand_as(out), rtol=0, atol=1e-5)
    (t,) = oracle.seen_t
    assert t.dtype == torch.int64 and t.tolist() == [denoiser.timestep] * copies
    # The implied noise is δ·2√ᾱ/√(1 − ᾱ): variance v = 4σ²ᾱ*/(1 − ᾱ*), within 2% of 1 (ᾱ* is
    # the grid point nearest 1/(1 + 4σ²)), and its sample moments match at 5 standard errors
    # (50,176 values: SE(mean) = 0.0045, SE(variance) ≈ √(2/n) = 0.0063).
    a = denoiser.alpha_bar_t
    v = 4 * sigma**2 * a / (1 - a)
    assert abs(v - 1) < 0.02
    eps = oracle.returned[0].double()
    n = eps.numel()
    assert abs(float(eps.mean())) < 5 * math.sqrt(v / n)
    assert abs(float(eps.var()) - v) < 5 * v * math.sqrt(2 / n)


def test_zero_network_returns_the_clamped_noisy_image() -> None:
    # ε = 0: x̂0 = x_t/√ᾱ = 2(x + δ) − 1, so D(x + δ) = clamp(x + δ, 0, 1): the scaling is exact.
    d = OneStepDiffusionDenoiser(ZeroEps(), linear_schedule(), 0.5)
    z = torch.tensor([[[[-0.3, 0.2], [0.7, 1.4]]]])
    torch.testing.assert_close(d(z), torch.tensor([[[[0.0, 0.2], [0.7, 1.0]]]]), atol=1e-6, rtol=0)


def test_explicit_timestep_is_used() -> None:
    s = linear_schedule()
    d = OneStepDiffusionDenoiser(ZeroEps(), s, 0.5, timestep=10)
    assert d.timestep == 10 and d.alpha_bar_t == s.alpha_bar[10]


def _one_line_error(excinfo: pytest.ExceptionInfo, parameter: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    assert message.startswith(parameter + " ")
    assert excinfo.value.parameter == parameter
    return message


def test_sigma_beyond_the_schedule_is_refused() -> None:
    short = linear_schedule(steps=10)  # ᾱ_9 ≈ 0.90: noise levels up to ≈ 0.167
    with pytest.raises(ParameterError) as excinfo:
        OneStepDiffusionDenoiser(ZeroEps(), short, 0.5)
    message = _one_line_error(excinfo, "sigma")
    assert "outside the noise levels" in message and "0.1" in message
    with pytest.raises(ParameterError) as excinfo:
        linear_schedule().timestep_for(1e-3)  # below the first step's level 0.005
    _one_line_error(excinfo, "sigma")


@pytest.mark.parametrize("timestep", [-1, 1000, 2.5, "3"])
def test_timestep_outside_the_schedule_is_refused(timestep) -> None:
    with pytest.raises(ParameterError) as excinfo:
        OneStepDiffusionDenoiser(ZeroEps(), linear_schedule(), 0.5, timestep=timestep)
    assert "[0, 999]" in _one_line_error(excinfo, "timestep")


def test_non_monotone_alpha_bar_is_refused(tmp_path) -> None:
    values = [0.99, 0.9, 0.95, 0.5]
    with pytest.raises(ParameterError) as excinfo:
        alpha_bar_schedule(values)
    assert "ᾱ[2] = 0.95 >= ᾱ[1] = 0.9" in _one_line_error(excinfo, "alpha_bar")
    np.save(tmp_path / "ab.npy", np.array(values))
    (tmp_path / "ab.txt").write_text("\n".join(map(str, values)))
    for name in ("ab.npy", "ab.txt"):
        with pytest.raises(ParameterError) as excinfo:
            alpha_bar_schedule(tmp_path / name)
        _one_line_error(excinfo, "alpha_bar")
    with pytest.raises(ParameterError):
        alpha_bar_schedule([0.9, 1.0])  # ᾱ must stay below 1 (and decrease)
    with pytest.raises(FileNotFoundError, match="alpha_bar file"):
        alpha_bar_schedule(tmp_path / "missing.npy")


def test_alpha_bar_from_file_and_metadata_round_trip(tmp_path) -> None:
    values = linear_schedule(steps=50).alpha_bar
    np.save(tmp_path / "ab.npy", values)
    (tmp_path / "ab.txt").write_text(" ".join(repr(float(v)) for v in values))
    for name in ("ab.npy", "ab.txt"):
        s = alpha_bar_schedule(tmp_path / name)
        np.testing.assert_array_equal(s.alpha_bar, values)
        assert s.kind == "array"
    for s in (linear_schedule(), cosine_schedule(steps=200), alpha_bar_schedule(values)):
        back = schedule_from_metadata(s.to_metadata())
        assert back.kind == s.kind
        np.testing.assert_array_equal(back.alpha_bar, s.alpha_bar)
    with pytest.raises(ParameterError) as excinfo:
        schedule_from_metadata({"kind": "quadratic"})
    _one_line_error(excinfo, "schedule")


def test_unet_trained_with_the_diffusion_objective_denoises_in_one_step() -> None:
    """diffusion_loss and OneStepDiffusionDenoiser agree on t, ᾱ_t and the [−1, 1] scaling:
    a small U-Net trained 200 steps on four 8×8 bar images denoises them in one step.

    Seeded run: mean squared error 0.0063 at σ = 0.25 and 0.016 at σ = 0.5, against σ² =
    0.0625 and 0.25 for the noisy image (0.035 and 0.11 once clamped to [0, 1]). The test asks
    for at most 0.2·σ² and a third of the clamped noisy image's error."""
    from smoothcert.models import create_denoiser
    from smoothcert.training.methods.denoiser_objectives import diffusion_loss

    torch.manual_seed(0)
    bars = torch.zeros(4, 1, 8, 8)
    bars[0, :, :, :4] = bars[1, :, :, 4:] = bars[2, :, :4, :] = bars[3, :, 4:, :] = 1
    bars = 0.1 + 0.8 * bars
    eps_model = create_denoiser("unet-small", (1, 8, 8), width=8, time_dim=32)
    schedule = linear_schedule()
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(eps_model.parameters(), 2e-3)
    for _ in range(200):
        x = bars[torch.randint(0, 4, (16,), generator=g)]
        loss = diffusion_loss(eps_model, x, schedule, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    eps_model.eval()
    x = bars.repeat(64, 1, 1, 1)
    for sigma in (0.25, 0.5):
        noisy = x + sigma * torch.randn(x.shape, generator=g)
        with torch.no_grad():
            out = OneStepDiffusionDenoiser(eps_model, schedule, sigma)(noisy)
        error = float(((out - x) ** 2).mean())
        assert error < 0.2 * sigma**2, (sigma, error)
        assert error < float(((noisy.clamp(0, 1) - x) ** 2).mean()) / 3, (sigma, error)
