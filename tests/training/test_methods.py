"""The robust training methods: STN, SmoothAdv, TRADES, WRM, NAL (and, training a tiny model,
stability, Consistency, MACER, SmoothMix: their objectives are in test_methods_smoothing)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from smoothcert.distributional.ascent import surrogate_ascent
from smoothcert.training.method import BatchContext
from smoothcert.training.methods.nal import NAL
from smoothcert.training.methods.smoothadv import SmoothAdv
from smoothcert.training.methods.trades import trades_adversary
from smoothcert.training.methods.wrm import wrm_adversary
from smoothcert.training.registry import get_method

pytestmark = pytest.mark.usefixtures("one_torch_thread")


METHODS = [
    *("stn", "smoothadv", "trades", "wrm", "nal"),
    *("stability", "consistency", "macer", "smoothmix"),
]


def ctx(seed: int = 0, epoch: int = 0, epochs: int = 1) -> BatchContext:
    return BatchContext(
        epoch=epoch, epochs=epochs, step=0, generator=torch.Generator().manual_seed(seed)
    )


# --- the inner ascent against its closed form ------------------------------------------------


def squared_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (out[:, 0] - y) ** 2


def linear_problem(d: int = 6, n: int = 5, gamma: float = 2.0):
    """A linear model f(x) = w·x + b with ℓ = (f(x) − y)², ‖w‖² = γ/2 (strong concavity).

    Closed form. F(x) = E_z[(w·(x+z) + b − y)² − γ‖x + z − x0‖²]
                      = (w·x + b − y)² + σ²‖w‖² − γ‖x − x0‖² − γdσ²,
    whose Hessian 2wwᵀ − 2γI is negative definite iff ‖w‖² < γ. Setting
    ∇F = 2(w·x + b − y)w − 2γ(x − x0) = 0 gives x − x0 = t·w with γt = r0 + t‖w‖²,
    r0 = w·x0 + b − y, hence  x* = x0 + r0·w / (γ − ‖w‖²)  (the same with or without noise).
    With η = 0.5/γ the error contracts by ‖w‖²/γ = ½ per step along w and vanishes elsewhere.
    """
    g = torch.Generator().manual_seed(7)
    model = nn.Linear(d, 1).double()
    with torch.no_grad():
        w = torch.randn(d, generator=g, dtype=torch.float64)
        model.weight.copy_((w / w.norm() * (gamma / 2) ** 0.5)[None])
        model.bias.fill_(0.3)
    x0 = torch.rand(n, d, generator=g, dtype=torch.float64)
    y = torch.randn(n, generator=g, dtype=torch.float64)
    w = model.weight[0].detach()
    r0 = x0 @ w + 0.3 - y
    x_star = x0 + r0[:, None] * w[None] / (gamma - w.dot(w))
    return model, x0, y, x_star


def test_wrm_ascent_converges_to_closed_form():
    model, x0, y, x_star = linear_problem()
    x = surrogate_ascent(
        model,
        x0,
        y,
        gamma=2.0,
        sigma=0.0,
        num_noise=1,
        steps=40,
        step_size=0.25,
        loss_fn=squared_loss,
    ).x
    assert torch.allclose(x, x_star, atol=1e-9)
    # the default WRM schedule (authors': (0.5/γ)/√(k+2) from x0 + (0.5/γ)∇ℓ(x0))
    x = wrm_adversary(model, x0, y, gamma=2.0, steps=200, loss_fn=squared_loss)
    assert torch.allclose(x, x_star, atol=1e-6)
    # and 15 steps get most of the way
    x15 = wrm_adversary(model, x0, y, gamma=2.0, steps=15, loss_fn=squared_loss)
    assert ((x15 - x_star).norm(dim=1) < 0.05 * (x0 - x_star).norm(dim=1)).all()


def test_nal_ascent_converges_to_closed_form_on_average():
    """With noise, the step-K iterate is x* plus zero-mean noise of variance O(σ²/s)."""
    model, x0, y, x_star = linear_problem()
    sigma, s = 0.1, 2000
    result = surrogate_ascent(
        model,
        x0,
        y,
        gamma=2.0,
        sigma=sigma,
        num_noise=s,
        steps=25,
        step_size=0.25,
        loss_fn=squared_loss,
        generator=torch.Generator().manual_seed(1),
    )
    # with η = 0.5/γ: x_{k+1} = x0 − z̄ + (w·(x_k + z̄) + b − y)·w/γ, so the error is ~σ/√s
    err = (result.x - x_star).abs().max()
    assert err < 10 * sigma / s**0.5  # 0.022, vs a displacement of order 1:
    assert err < 0.05 * (x_star - x0).abs().max()
    assert (result.x - x_star).abs().max() > 0  # the noise is really there
    assert result.grad_norm.max() < 0.05  # convergence diagnostic at the maximizer


# --- each method trains a tiny model on real MNIST ------------------------------------------


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 48), nn.ELU(), nn.Linear(48, 10))


SMALL = {
    "stn": dict(sigma=0.25, lam=1.0),
    "smoothadv": dict(sigma=0.25, eps=0.5, steps=2, num_noise=2, warmup_epochs=1),
    "trades": dict(eps=0.5, steps=3, beta=1.0),
    "wrm": dict(gamma=1.0, steps=5),
    "nal": dict(sigma=0.05, gamma=1.0, steps=2, num_noise=2),
    "stability": dict(sigma=0.25, lam=2.0),
    "consistency": dict(sigma=0.25, num_noise=2, lam=5.0),
    "macer": dict(sigma=0.25, num_noise=4, lam=1.0, beta=4.0),
    "smoothmix": dict(sigma=0.25, num_noise=2, steps=2, alpha=0.5, eta=1.0),
}


def method_loss(method, model, x, y, seed=0):
    model.train()
    return method.loss(model, x, y, ctx(seed)).loss.item()


@pytest.mark.parametrize("name", METHODS)
def test_method_trains_tiny_model_on_mnist(name, mnist_train):
    method = get_method(name, **SMALL[name])
    model = tiny_net()
    x, y = mnist_train.batch(range(400))
    before = sum(method_loss(method, model, x[i : i + 100], y[i : i + 100]) for i in (0, 200))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    for epoch in range(4):
        for i in range(0, 400, 50):
            c = BatchContext(epoch=epoch, epochs=4, step=0, generator=gen)
            out = method.loss(model, x[i : i + 50], y[i : i + 50], c)
            assert out.loss.dim() == 0 and torch.isfinite(out.loss)
            assert out.logits.shape == (len(out.targets), 10)
            opt.zero_grad()
            out.loss.backward()
            opt.step()
    after = sum(method_loss(method, model, x[i : i + 100], y[i : i + 100]) for i in (0, 200))
    assert after < 0.5 * before, (before, after)
    with torch.no_grad():
        acc = (model.eval()(x).argmax(1) == y).float().mean().item()
    assert acc > 0.8


# --- NAL specifics ---------------------------------------------------------------------------


def test_nal_k0_s1_is_gaussian_augmentation(mnist_train):
    model = tiny_net()
    x, y = mnist_train.batch(range(64))
    out = NAL(sigma=0.1, steps=0, num_noise=1).loss(model, x, y, ctx(5))
    g = torch.Generator().manual_seed(5)
    noisy = x + 0.1 * torch.randn(x.shape, generator=g)
    expected = F.cross_entropy(model(noisy), y)
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-6)
    assert out.stats["rho_adv"] == 0.0
    assert out.stats["rho"] == pytest.approx(784 * 0.1**2, rel=0.02)  # E‖z‖² = dσ²


def test_nal_k0_s1_equals_gaussian_method(mnist_train):
    gaussian = pytest.importorskip("smoothcert.training.methods.gaussian")
    del gaussian
    model = tiny_net()
    x, y = mnist_train.batch(range(64))
    nal = NAL(sigma=0.1, steps=0, num_noise=1).loss(model, x, y, ctx(5))
    gauss = get_method("gaussian", sigma=0.1).loss(model, x, y, ctx(5))
    assert nal.loss.item() == pytest.approx(gauss.loss.item(), abs=1e-6)


def test_nal_stats_and_no_parameter_grads(mnist_train):
    model = tiny_net()
    x, y = mnist_train.batch(range(32))
    out = NAL(sigma=0.05, gamma=0.25, steps=4, num_noise=4).loss(model, x, y, ctx(0))
    assert all(p.grad is None for p in model.parameters())  # the ascent leaves none
    assert out.targets.shape == (128,)
    assert out.stats["rho_adv"] > 0
    # ρ = ρ_adv + dσ² + 2E⟨x_K − x0, z⟩ with fresh draws: about ρ_adv + 784·0.0025
    assert out.stats["rho"] == pytest.approx(out.stats["rho_adv"] + 1.96, rel=0.1)


def test_nal_reused_noise_cancels_with_half_over_gamma():
    """x_K = x0 − z̄ + ḡ/(2γ) when η1 = 0.5/γ, so with s = 1 and reused draws x_K + z = x0 + g/2γ
    (the reason fresh draws are the default)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    x = torch.rand(8, 12)
    y = torch.randint(0, 3, (8,))
    nal = NAL(sigma=0.5, gamma=1.0, steps=1, num_noise=1, reuse_noise=True)
    x_k, noise = nal.adversary(model, x, y, torch.Generator().manual_seed(0))
    xz = x + noise[:, 0]
    xz.requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xz), y, reduction="sum"), xz)
    assert torch.allclose(x_k + noise[:, 0], x + g / 2.0, atol=1e-6)


def test_nal_cost_without_noise_changes_the_ascent(mnist_train):
    model = tiny_net()
    x, y = mnist_train.batch(range(16))
    a = NAL(steps=2, cost_with_noise=True).adversary(model, x, y, torch.Generator().manual_seed(0))
    b = NAL(steps=2, cost_with_noise=False).adversary(model, x, y, torch.Generator().manual_seed(0))
    # without the noise in the cost, x_K no longer subtracts the mean draw: x_1 = x0 + ḡ/(2γ)
    assert not torch.allclose(a[0], b[0])
    assert (b[0] - x).flatten(1).norm(dim=1).mean() < (a[0] - x).flatten(1).norm(dim=1).mean()


# --- other methods' specifics ----------------------------------------------------------------


def test_smoothadv_warmup_and_radius(mnist_train):
    m = SmoothAdv(eps=1.0, warmup_epochs=4, steps=3, num_noise=2, sigma=0.1)
    assert [m.epsilon(e) for e in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert SmoothAdv(eps=1.0, warmup_epochs=0).epsilon(0) == 1.0
    model = tiny_net()
    x, y = mnist_train.batch(range(16))
    out = m.loss(model, x, y, ctx(0, epoch=1))
    assert out.stats["eps"] == 0.5
    assert 0.3 < out.stats["delta"] <= 0.5 + 1e-6
    assert out.targets.shape == (16,)  # trained on one of the 2 noisy copies per example
    multi = SmoothAdv(eps=1.0, warmup_epochs=4, steps=3, num_noise=2, sigma=0.1, train_copies="all")
    assert multi.loss(model, x, y, ctx(0, epoch=1)).targets.shape == (32,)


def test_trades_adversary_in_ball_and_raises_kl(mnist_train):
    model = tiny_net().eval()
    x, y = mnist_train.batch(range(32))
    x_adv = trades_adversary(model, x, 1.0, 10, None, torch.Generator().manual_seed(0))
    norms = (x_adv - x).flatten(1).norm(dim=1)
    assert (norms <= 1.0 + 1e-6).all() and x_adv.min() >= 0 and x_adv.max() <= 1
    with torch.no_grad():
        p = F.log_softmax(model(x), 1)
        kl = (p.exp() * (p - F.log_softmax(model(x_adv), 1))).sum(1)
    assert kl.mean() > 1e-3


def test_trades_outer_loss_uses_separate_passes_with_batch_norm(mnist_train):
    # With batch norm, the clean and adversarial batches are normalized by their own statistics
    # (the authors' two forward passes), which a single concatenated pass would not do.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.BatchNorm1d(32), nn.ReLU(),
                          nn.Linear(32, 10))  # fmt: skip
    x, y = mnist_train.batch(range(32))
    method = get_method("trades", eps=1.0, steps=3, beta=6.0)
    reference = copy.deepcopy(model)  # the loss's train-mode passes update BN running stats
    out = method.loss(model, x, y, ctx(3))
    model = reference
    x_adv = trades_adversary(model, x, 1.0, 3, None, ctx(3).generator)
    with torch.no_grad():
        clean, adv = model(x), model(x_adv)
        p = F.log_softmax(clean, 1)
        kl = (p.exp() * (p - F.log_softmax(adv, 1))).sum(1).mean()
        separate = F.cross_entropy(clean, y) + 6.0 * kl
        joint = model(torch.cat([x, x_adv]))
        q = F.log_softmax(joint[:32], 1)
        kl_joint = (q.exp() * (q - F.log_softmax(joint[32:], 1))).sum(1).mean()
        concatenated = F.cross_entropy(joint[:32], y) + 6.0 * kl_joint
    assert out.loss.item() == pytest.approx(float(separate), rel=1e-5)
    assert abs(float(concatenated) - float(separate)) > 1e-3  # the check can tell them apart


def test_wrm_stats(mnist_train):
    model = tiny_net()
    x, y = mnist_train.batch(range(16))
    out = get_method("wrm", gamma=1.0, steps=3).loss(model, x, y, ctx())
    assert out.stats["rho"] == out.stats["rho_adv"] > 0


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("nal", {"sigma": -1.0}, r"sigma must be >= 0 and finite \(float32\), got -1\.0"),
        ("nal", {"gamma": 0.0}, "gamma must be > 0"),
        ("nal", {"num_noise": 0}, "num_noise must be a positive integer"),
        ("wrm", {"steps": -2}, "steps must be an integer >= 0"),
        ("stn", {"lam": -1.0}, "lam must be >= 0"),
        ("smoothadv", {"objective": "foo"}, "objective must be"),
        ("trades", {"beta": -1.0}, "beta must be >= 0"),
        ("trades", {"inner_step_size": 0.0}, "inner_step_size must be > 0"),
    ],
)
def test_methods_validate_hyperparameters(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_method(name, **kwargs)


def test_register_refuses_a_second_method_under_a_taken_name():
    from dataclasses import dataclass

    from smoothcert.training.method import METHODS, Method, register
    from smoothcert.training.methods.gaussian import Gaussian

    @dataclass
    class Impostor(Method):
        name = "gaussian"

    with pytest.raises(ValueError, match="already registered"):
        register(Impostor)
    assert METHODS["gaussian"] is Gaussian
    assert register(Gaussian) is Gaussian  # the same class again is harmless
