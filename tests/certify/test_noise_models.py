"""The noise models of the smoothed classifier: Gaussian and lattice (sound) noise checked
against their closed forms, and SmoothedClassifier shown to go through the interface only."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import norm
from torch import nn

from smoothcert.certify import sound, stats
from smoothcert.certify.noise_models import (
    GaussianNoise,
    LatticeGaussianNoise,
    NoiseModel,
    noise_model,
)
from smoothcert.certify.smoothing import SmoothedClassifier
from smoothcert.certify.stats import ABSTAIN

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CPU = torch.device("cpu")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gaussian_sigma_is_the_one_torch_applies() -> None:
    noise = GaussianNoise(0.12)
    sigma32 = float(torch.tensor(0.12, dtype=torch.float32))
    assert sigma32 != 0.12
    assert noise.sigma_for(torch.float64) == 0.12
    assert noise.sigma_for(torch.float32) == noise.sigma_for(torch.bfloat16) == sigma32


def test_gaussian_draws_and_perturbs_like_x_plus_sigma_eps() -> None:
    noise = GaussianNoise(0.3)
    x = noise.prepare(torch.rand(1, 5, dtype=torch.float64), torch.float32, CPU)
    assert x.dtype == torch.float32
    eps = torch.empty(7, 5)
    noise.fill(eps, _gen(3))
    assert torch.equal(eps, torch.randn((7, 5), generator=_gen(3)))
    out = torch.empty(7, 5)
    noise.perturb(x, eps, out)
    assert torch.equal(out, torch.add(x, eps, alpha=0.3))
    assert noise.input_point(x) is x


def test_gaussian_prepare_refuses_values_infinite_in_the_model_dtype() -> None:
    with pytest.raises(ValueError, match="NaN or Inf"):
        GaussianNoise(0.3).prepare(torch.tensor([[1e300]], dtype=torch.float64), torch.float32, CPU)


def test_gaussian_bound_and_radius_are_cohen_s() -> None:
    noise = GaussianNoise(0.5)
    p = noise.lower_bound(990, 1000, 0.001, dim=784)
    assert p == float(stats.lower_confidence_bound(990, 1000, 0.001))
    assert noise.radius(p, torch.float64) == 0.5 * norm.ppf(p)
    assert noise.radius(p, torch.float64) == stats.certify_decision(0, p, 0.5)[1]


def test_lattice_noise_lives_on_the_8_bit_grid() -> None:
    noise = LatticeGaussianNoise(0.25, torch.float32, CPU)
    k = torch.tensor([[0.0, 17.0, 255.0]])
    x = noise.prepare(k / 255, torch.float32, CPU)
    assert torch.equal(x, k) and noise.sigma_for(torch.float32) == 0.25
    assert torch.equal(noise.input_point(x), k / 255)
    j = torch.empty(4, 3)
    noise.fill(j, _gen(5))
    expected = torch.empty(4, 3)
    sound.draw_lattice_noise(sound.lattice_noise(0.25), expected, _gen(5))
    assert torch.equal(j, expected) and torch.equal(j, j.round())
    out = torch.empty(4, 3)
    noise.perturb(x, j, out)
    assert torch.equal(out, (k + j) / 255)
    with pytest.raises(ValueError, match="8-bit grid"):
        noise.prepare(torch.tensor([[0.5]]), torch.float32, CPU)


def test_lattice_bound_and_radius_carry_the_corrections() -> None:
    noise = LatticeGaussianNoise(0.25, torch.float64, CPU)
    tv = sound.lattice_noise(0.25).tv
    p = float(stats.lower_confidence_bound(990, 1000, 0.001))
    assert noise.lower_bound(990, 1000, 0.001, dim=3072) == p - 3072 * tv
    assert noise.correct(1e-20, 3072) == 0.0  # clipped at 0
    assert noise.radius(p, torch.float64) == 0.25 * norm.ppf(p) * (1 - sound.RADIUS_MARGIN)


def test_noise_model_chooses_by_sound_and_refuses_low_precision_sound_models() -> None:
    assert type(noise_model(0.25, sound=False, dtype=torch.float16, device=CPU)) is GaussianNoise
    lattice = noise_model(0.25, sound=True, dtype=torch.float64, device=CPU)
    assert type(lattice) is LatticeGaussianNoise and lattice.sound
    assert lattice.table.guide.dtype == torch.float64
    with pytest.raises(ValueError, match="float32 or float64"):
        noise_model(0.25, sound=True, dtype=torch.bfloat16, device=CPU)


def test_the_classifier_holds_the_noise_model_of_its_mode() -> None:
    f = nn.Sequential(nn.Flatten(), nn.Linear(3, 2))
    g = SmoothedClassifier(f, 2, 0.25, input_shape=(3,))
    assert type(g.noise) is GaussianNoise and not g.sound
    with pytest.raises(ValueError, match="needs a sound classifier"):
        g.sound_lower_bound(0.9, 3)
    s = SmoothedClassifier(f, 2, 0.25, input_shape=(3,), sound=True)
    assert type(s.noise) is LatticeGaussianNoise and s.sound
    assert s.sound_lower_bound(0.9, 3) == 0.9 - 3 * s.noise.table.tv


class Shift(NoiseModel):
    """A deterministic "noise" for the interface test: every draw is +1 on every value; the
    bound is nA/n and the radius 10·pA."""

    def sigma_for(self, dtype: torch.dtype) -> float:
        return self.sigma

    def prepare(self, x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        return x.to(dtype=dtype, device=device)

    def fill(self, out: torch.Tensor, generator: torch.Generator | None) -> None:
        out.fill_(1.0)

    def perturb(self, x: torch.Tensor, noise: torch.Tensor, out: torch.Tensor) -> None:
        torch.add(x, noise, out=out)

    def lower_bound(self, n_a: int, n: int, alpha: float, dim: int) -> float:
        return n_a / n

    def radius(self, p_a_lower: float, dtype: torch.dtype) -> float:
        return 10 * p_a_lower


class Sign(nn.Module):
    """Class 1 when the first value is positive, else class 0."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, 0]
        return torch.stack([-s, s], dim=1)


def test_certify_and_predict_go_through_the_noise_model_only() -> None:
    g = SmoothedClassifier(Sign(), 2, 0.25, input_shape=(2,), batch_size=3)
    g.noise = Shift(0.25)
    x = torch.tensor([-0.5, 0.0])  # f(x) = 0, but f(x + 1) = 1 on every draw
    cert = g.certify(x, 5, 10, 0.001)
    assert (cert.prediction, cert.p_a_lower, cert.radius) == (1, 1.0, 10.0)
    assert cert.counts_estimation.tolist() == [0, 10] and cert.sigma == 0.25
    assert g.predict(x, 10, 0.01) == 1
    x = torch.tensor([-1.5, 0.0])  # f(x + 1) = 0 on every draw
    cert = g.certify(x, 5, 10, 0.001)
    assert (cert.prediction, cert.radius, cert.counts_selection.tolist()) == (0, 10.0, [5, 0])


def test_certify_abstains_below_one_half_whatever_the_radius() -> None:
    class Half(Shift):
        def lower_bound(self, n_a: int, n: int, alpha: float, dim: int) -> float:
            return 0.4

    g = SmoothedClassifier(Sign(), 2, 0.25, input_shape=(2,))
    g.noise = Half(0.25)
    cert = g.certify(torch.tensor([1.0, 0.0]), 5, 10, 0.001)
    assert (cert.prediction, cert.radius, cert.p_a_lower) == (ABSTAIN, 0.0, 0.4)
