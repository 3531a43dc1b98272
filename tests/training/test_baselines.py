"""Baselines as their authors ran them: SmoothAdv trains on one of its m noisy copies by
default (all of them with multi-noise) and steps randomly where the attack's gradient is zero;
WRM smooths its labels (0.1); STN passes clean and noisy inputs through the model separately.
Runs recorded before these options resume with the behaviour they began with."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from smoothcert.attacks.pgd import draw_noise, pgd_l2_smoothed
from smoothcert.training.method import BatchContext
from smoothcert.training.registry import get_method

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _ctx(seed: int = 0) -> BatchContext:
    return BatchContext(epoch=0, epochs=1, step=0, generator=torch.Generator().manual_seed(seed))


def _net(batch_norm: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layers = [nn.Flatten(), nn.Linear(16, 8)]
    if batch_norm:
        layers.append(nn.BatchNorm1d(8))
    layers += [nn.ReLU(), nn.Linear(8, 3)]
    return nn.Sequential(*layers)


def _batch(b: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.rand(b, 1, 4, 4, generator=g), torch.randint(0, 3, (b,), generator=g)


# ------------------------------------------------------------------ SmoothAdv


@pytest.mark.parametrize("copies", ["one", "all"])
def test_smoothadv_trains_on_one_noisy_copy_by_default_or_on_all(copies: str) -> None:
    model, (x, y) = _net(), _batch()
    options = {"sigma": 0.5, "eps": 0.0, "num_noise": 4}  # ε = 0: x' = x, only the noise
    extra = {} if copies == "one" else {"train_copies": copies}  # "one" is the default
    method = get_method("smoothadv", **options, **extra)
    out = method.loss(model, x, y, _ctx(3))
    z = draw_noise(x, 0.5, 4, torch.Generator().manual_seed(3))  # the same draws
    kept = z[:, :1] if copies == "one" else z
    noisy = (x.unsqueeze(1) + kept).reshape(-1, *x.shape[1:])
    targets = y.repeat_interleave(kept.shape[1])
    assert out.loss.item() == pytest.approx(F.cross_entropy(model(noisy), targets).item(), rel=1e-6)
    assert len(out.targets) == (6 if copies == "one" else 24)


def test_smoothadv_attack_steps_randomly_where_the_gradient_is_zero() -> None:
    class Constant(nn.Module):  # logits independent of the input: zero gradient everywhere
        def __init__(self) -> None:
            super().__init__()
            self.bias = nn.Parameter(torch.tensor([1.0, 0.0, 0.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.bias.expand(len(x), 3) + 0 * x.flatten(1).sum(1, keepdim=True)

    x, y = torch.full((4, 1, 4, 4), 0.5), torch.zeros(4, dtype=torch.long)
    kw = dict(eps=0.3, steps=4, sigma=0.1, num_noise=2, generator=torch.Generator())
    still = pgd_l2_smoothed(Constant(), x, y, **kw)
    assert torch.equal(still, x)  # a zero gradient gives no step
    moved = pgd_l2_smoothed(Constant(), x, y, **kw, random_zero_grad=True)
    dist = (moved - x).flatten(1).norm(dim=1)
    # 4 random steps of 0.15 each, projected onto the 0.3-ball: every example moved
    assert bool((dist > 0.15).all()) and bool((dist <= 0.3 + 1e-6).all()), dist
    # ... and SmoothAdv training uses it by default
    assert get_method("smoothadv").random_zero_grad is True


# ------------------------------------------------------------------ WRM


def test_wrm_trains_on_labels_smoothed_to_point_nine() -> None:
    model, (x, y) = _net(), _batch()
    out = get_method("wrm", steps=2).loss(model, x, y, _ctx())
    # the authors' script clips one-hot labels to [0.1/(K-1), 0.9]
    targets = torch.full((6, 3), 0.1 / 2)
    targets[torch.arange(6), y] = 0.9
    expected = -(targets * F.log_softmax(out.logits, dim=1)).sum(1).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-6)
    hard = get_method("wrm", steps=2, label_smoothing=0.0).loss(model, x, y, _ctx())
    assert hard.loss.item() == pytest.approx(F.cross_entropy(hard.logits, y).item(), rel=1e-6)


# ------------------------------------------------------------------ STN


def test_stn_batch_norm_sees_clean_and_noisy_inputs_separately() -> None:
    model, (x, y) = _net(batch_norm=True), _batch(8)
    alone = copy.deepcopy(model).train()
    out = get_method("stn", sigma=0.5).loss(model.train(), x, y, _ctx())
    # the clean logits are those of a train-mode pass over the clean batch alone
    assert torch.allclose(out.logits, alone(x).detach(), atol=1e-6)
    joint = get_method("stn", sigma=0.5, separate_passes=False).loss(
        copy.deepcopy(alone), x, y, _ctx()
    )
    assert not torch.allclose(joint.logits, out.logits, atol=1e-3)
