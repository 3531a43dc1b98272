"""L2 PGD on base and smoothed classifiers: invariants, numerics, and a real-data check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from smoothcert.attacks import pgd_l2, pgd_l2_smoothed, robust_accuracy
from smoothcert.attacks.pgd import l2_normalize, smoothed_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(seed: int = 0, dropout: bool = True) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Flatten(), nn.Linear(3 * 8 * 8, 32), nn.ReLU()]
    if dropout:  # makes train/eval mode observable in the output
        layers.append(nn.Dropout(0.5))
    return nn.Sequential(*layers, nn.Linear(32, 5))


def batch(seed: int = 1, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=g)
    x[0] = 0.0  # corner of the box: clamping is active
    x[1] = 1.0
    y = torch.randint(0, 5, (n,), generator=g)
    return x, y


ATTACKS = {
    "pgd_l2": lambda m, x, y, eps, **kw: pgd_l2(m, x, y, eps, steps=7, **kw),
    "smoothadv": lambda m, x, y, eps, **kw: pgd_l2_smoothed(
        m,
        x,
        y,
        eps,
        5,
        sigma=0.25,
        num_noise=3,
        objective="smoothadv",
        generator=torch.Generator().manual_seed(0),
        **kw,
    ),
    "expected": lambda m, x, y, eps, **kw: pgd_l2_smoothed(
        m,
        x,
        y,
        eps,
        5,
        sigma=0.25,
        num_noise=3,
        objective="expected",
        generator=torch.Generator().manual_seed(0),
        **kw,
    ),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
@pytest.mark.parametrize("random_start", [False, True])
def test_attack_invariants(attack, random_start):
    model = tiny_model()
    model.train()
    x, y = batch()
    x_before = x.clone()
    eps = torch.linspace(0.0, 3.0, len(x))  # per-example radii, eps[0] = 0
    kw = {"random_start": random_start}
    if random_start and attack == "pgd_l2":
        kw["generator"] = torch.Generator().manual_seed(5)
    x_adv = ATTACKS[attack](model, x, y, eps, **kw)
    norms = (x_adv - x).flatten(1).norm(dim=1)
    assert (norms <= eps + 1e-6).all()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert torch.equal(x_adv[0], x[0])  # eps = 0
    assert norms[-4:].min() > 0.5  # large radii are used
    assert torch.equal(x, x_before)  # input untouched
    assert all(p.grad is None for p in model.parameters())
    assert model.training  # mode restored
    assert not x_adv.requires_grad


def test_eps_zero_returns_input_exactly():
    model = tiny_model()
    x, y = batch()
    assert torch.equal(pgd_l2(model, x, y, 0.0, steps=10), x)
    out = pgd_l2_smoothed(model, x, y, 0.0, 3, sigma=0.5, num_noise=2)
    assert torch.equal(out, x)


def test_pgd_increases_loss_and_hits_the_boundary():
    model = tiny_model(dropout=False).eval()
    x, y = batch(n=64)
    x = 0.25 + 0.5 * x  # interior: the ball does not leave the box at eps = 0.2
    eps = 0.2
    x_adv = pgd_l2(model, x, y, eps, steps=10)
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y, reduction="none")
        adv = F.cross_entropy(model(x_adv), y, reduction="none")
        g = torch.Generator().manual_seed(3)
        r = torch.randn(x.shape, generator=g)
        rand = x + eps * r / r.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        rnd = F.cross_entropy(model(rand), y, reduction="none")
    assert (adv > clean).all()
    # the ascent direction gains ~√d times more than a random direction of the same norm
    assert (adv - clean).mean() > 5 * (rnd - clean).abs().mean()
    # a nearly linear loss in a small ball: PGD ends on the sphere
    norms = (x_adv - x).flatten(1).norm(dim=1)
    assert torch.allclose(norms, torch.full_like(norms, eps), atol=1e-5)


def test_l2_normalize_survives_underflow():
    g64 = torch.randn(4, 1, 5, 5, dtype=torch.float64)
    tiny = (g64 * 1e-30).float()  # squares underflow in float32: naive norm is 0
    assert (tiny.flatten(1).pow(2).sum(1) == 0).all()
    unit = l2_normalize(tiny)
    expected = (g64 / g64.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).float()
    assert torch.allclose(unit, expected, atol=1e-6)
    zero = l2_normalize(torch.zeros(2, 3))
    assert torch.equal(zero, torch.zeros(2, 3))


def test_smoothed_loss_objectives():
    model = tiny_model(dropout=False).eval()
    x, y = batch(n=6)
    noise = 0.3 * torch.randn(6, 4, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        probs = torch.stack([F.softmax(model(x + noise[:, j]), 1) for j in range(4)], 1)
        naive_adv = -torch.log(probs.mean(1).gather(1, y[:, None]).squeeze(1))
        naive_exp = -torch.log(probs.gather(2, y[:, None, None].expand(6, 4, 1))).squeeze(2).mean(1)
        adv = smoothed_loss(model, x, y, noise, "smoothadv")
        exp = smoothed_loss(model, x, y, noise, "expected")
    assert torch.allclose(adv, naive_adv, atol=1e-5)
    assert torch.allclose(exp, naive_exp, atol=1e-5)
    assert (exp >= adv - 1e-6).all()  # Jensen: −log mean p ≤ mean −log p
    with torch.no_grad():  # one copy: both are the cross-entropy
        one = noise[:, :1]
        ce = F.cross_entropy(model(x + one[:, 0]), y, reduction="none")
        assert torch.allclose(smoothed_loss(model, x, y, one, "smoothadv"), ce, atol=1e-5)


def test_fixed_noise_is_deterministic():
    model = tiny_model(dropout=False)
    x, y = batch()
    noise = 0.2 * torch.randn(len(x), 2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    a = pgd_l2_smoothed(model, x, y, 1.0, 4, 0.2, 2, noise=noise)
    b = pgd_l2_smoothed(model, x, y, 1.0, 4, 0.2, 2, noise=noise)
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"eps": -0.1}, "eps must be finite and >= 0"),
        ({"eps": torch.ones(3)}, "eps must be a number or a tensor of shape"),
        ({"steps": -1}, "steps must be >= 0"),
    ],
)
def test_pgd_rejects_bad_arguments(kwargs, message):
    model = tiny_model()
    x, y = batch()
    args = {"eps": 0.5, "steps": 3} | kwargs
    with pytest.raises(ValueError, match=message):
        pgd_l2(model, x, y, **args)


def test_smoothed_rejects_bad_objective():
    model = tiny_model()
    x, y = batch()
    with pytest.raises(ValueError, match="objective must be one of"):
        pgd_l2_smoothed(model, x, y, 0.5, 3, 0.1, 2, objective="max")
    with pytest.raises(ValueError, match="num_noise must be >= 1"):
        pgd_l2_smoothed(model, x, y, 0.5, 3, 0.1, 0)


def _train_mlp(data, n: int = 2000, epochs: int = 4) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))
    x, y = data.batch(range(n))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(epochs):
        for i in range(0, n, 50):
            opt.zero_grad()
            F.cross_entropy(model(x[i : i + 50]), y[i : i + 50]).backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def mnist_mlp(mnist_train):
    return _train_mlp(mnist_train)


def test_attack_lowers_accuracy_on_real_mnist(mnist_mlp, mnist_test):
    result = robust_accuracy(mnist_mlp, mnist_test, [0.0, 1.0, 2.0], steps=20, max_examples=300)
    acc = result.accuracy
    assert acc[0.0] > 0.85
    assert acc[1.0] < acc[0.0] - 0.2
    assert acc[2.0] < 0.2
    assert result.correct.shape == (300, 3)
    x, y = mnist_test.batch(range(300))
    with torch.no_grad():
        clean = (mnist_mlp(x).argmax(1) == y).numpy()
    assert (result.correct[:, 0] == clean).all()  # eps = 0 is the clean accuracy
    # PGD beats random noise of the same norm by far
    r = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        noisy = (x + 2.0 * r / r.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(0, 1)
        rand_acc = (mnist_mlp(noisy).argmax(1) == y).float().mean().item()
    assert rand_acc > acc[2.0] + 0.5


def test_robust_accuracy_with_test_time_noise(mnist_mlp, mnist_test):
    result = robust_accuracy(
        mnist_mlp,
        mnist_test,
        [0.0, 1.5],
        steps=10,
        max_examples=100,
        noise_sigma=0.1,
        noise_samples=8,
        seed=3,
    )
    again = robust_accuracy(
        mnist_mlp,
        mnist_test,
        [0.0, 1.5],
        steps=10,
        max_examples=100,
        noise_sigma=0.1,
        noise_samples=8,
        seed=3,
    )
    assert (result.predictions == again.predictions).all()  # seeded
    assert result.accuracy[0.0] > 0.8
    assert result.accuracy[1.5] < result.accuracy[0.0] - 0.2


def test_skipping_fooled_examples_gives_the_per_example_minimum_with_less_work(
    mnist_mlp, mnist_test
):
    """Base classifier, one attack from x: every radius's attack is deterministic, so the
    verdicts with skip_fooled equal robust_correct over independent attacks at every radius,
    while the radii above the first fooling one are never attacked."""
    eps = [2.0, 0.0, 0.5, 1.0, 1.5]  # unsorted on purpose
    calls: list[int] = []
    model = _CountingModel(mnist_mlp, calls)
    every = robust_accuracy(model, mnist_test, eps, steps=10, max_examples=200, skip_fooled=False)
    work_every = sum(calls)
    calls.clear()
    skip = robust_accuracy(model, mnist_test, eps, steps=10, max_examples=200)
    work_skip = sum(calls)
    assert (skip.correct == every.correct).all()
    assert skip.accuracy == every.accuracy and every.accuracy[2.0] < 0.2 < every.accuracy[0.5]
    # a fooled example keeps a wrong prediction at every larger radius
    order = np.argsort(eps)
    wrong = skip.predictions[:, order] != skip.labels[:, None]
    assert (np.logical_or.accumulate(wrong, axis=1) == wrong).all()
    # rows attacked: eps = 0 costs one pass per example, each other radius 10 steps + 1
    alive = every.correct[:, order][:, :-1].sum(axis=0)  # still robust below each radius > 0
    assert work_every == 200 * (1 + 4 * 11)
    assert work_skip == 200 + 11 * int(alive.sum())
    assert work_skip < 0.7 * work_every


class _CountingModel(nn.Module):
    """Counts the examples each forward pass sees."""

    def __init__(self, model: nn.Module, calls: list[int]):
        super().__init__()
        self.model, self.calls = model, calls

    def forward(self, x):
        self.calls.append(len(x))
        return self.model(x)


def test_skipping_fooled_examples_under_test_time_noise_and_restarts(mnist_mlp, mnist_test):
    """With noise and restarts the draws differ, so the accuracies match independent attacks
    only statistically; a fooled example stays fooled at every larger radius."""
    kw = dict(steps=[5, 10], restarts=2, max_examples=200, noise_sigma=0.1, noise_samples=4)
    eps = [0.0, 0.75, 1.5]
    every = robust_accuracy(mnist_mlp, mnist_test, eps, skip_fooled=False, seed=1, **kw)
    skip = robust_accuracy(mnist_mlp, mnist_test, eps, seed=1, **kw)
    wrong = skip.predictions != skip.labels[:, None]
    assert (np.logical_or.accumulate(wrong, axis=1) == wrong).all()
    assert (skip.correct == ~wrong).all()
    for e in eps:  # 200 examples: a binomial standard error under 3.6 points
        assert abs(skip.accuracy[e] - every.accuracy[e]) <= 0.08
