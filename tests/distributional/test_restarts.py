"""The batched ascent over starts (smoothcert.distributional.restarts) against the starts run one
after the other, the way surrogate() ran them before: same draws, same tie rule, same numbers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smoothcert.distributional import objective, surrogate
from smoothcert.distributional.ascent import cross_entropy_per_example
from smoothcert.distributional.restarts import restarted_ascent, restarts_in_turn


def _tiny():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ELU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 4)
    ).eval()
    x0, y = torch.rand(6, 1, 5, 5), torch.randint(0, 4, (6,))
    return model.double(), x0.double(), y


@pytest.mark.parametrize("sigma", [0.0, 0.3])
@pytest.mark.parametrize("restarts", [1, 2, 4])
@pytest.mark.parametrize("step_size", [0.4, lambda k: 1.0 / (k + 2)])
def test_batched_starts_equal_the_starts_run_in_turn(sigma, restarts, step_size):
    model, x0, y = _tiny()  # float64: a larger batch's rounding stays below 1e-12
    kw = dict(gamma=0.5, sigma=sigma, num_noise=3, steps=5, step_size=step_size)
    kw |= dict(loss_fn=cross_entropy_per_example, restarts=restarts)
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    batched = restarted_ascent(model, x0, y, generator=gen_a, **kw)
    oracle = restarts_in_turn(model, x0, y, generator=gen_b, **kw)
    torch.testing.assert_close(batched, oracle, rtol=0, atol=1e-12)
    assert not torch.equal(batched, x0)  # the ascent moved
    # the shared generator ends where it ended with the starts in turn (the re-estimate's
    # draws come next from it)
    assert torch.equal(torch.randn(5, generator=gen_a), torch.randn(5, generator=gen_b))


def test_batched_starts_without_a_generator_draw_from_torchs_default_one():
    model, x0, y = _tiny()
    kw = dict(gamma=2.0, sigma=0.2, num_noise=2, steps=3, step_size=0.1)
    kw |= dict(loss_fn=cross_entropy_per_example, restarts=3, generator=None)
    torch.manual_seed(11)
    batched = restarted_ascent(model, x0, y, **kw)
    after_batched = torch.randn(3)
    torch.manual_seed(11)
    oracle = restarts_in_turn(model, x0, y, **kw)
    torch.testing.assert_close(batched, oracle, rtol=0, atol=1e-12)
    assert torch.equal(after_batched, torch.randn(3))


def test_surrogate_runs_every_start_of_every_example_in_one_batch_per_step(monkeypatch):
    model, x0, y = _tiny()
    sizes = []
    inner = model.forward
    monkeypatch.setattr(model, "forward", lambda x: sizes.append(x.shape[0]) or inner(x))
    gen = torch.Generator().manual_seed(0)
    surrogate(model, x0, y, 1.0, 0.3, num_noise=2, steps=4, num_eval=4, restarts=3, generator=gen)
    # 5 evaluations (x_0 … x_4) of 3 starts × 6 examples × 2 draws, then the re-estimate
    assert sizes == [3 * 6 * 2] * 5 + [6 * 4]


def test_surrogate_values_equal_those_of_the_sequential_starts(monkeypatch):
    model, x0, y = _tiny()
    kw = dict(num_noise=3, steps=4, num_eval=6, restarts=3)
    new = surrogate(model, x0, y, 0.7, 0.25, generator=torch.Generator().manual_seed(1), **kw)
    monkeypatch.setattr(objective, "restarted_ascent", restarts_in_turn)
    old = surrogate(model, x0, y, 0.7, 0.25, generator=torch.Generator().manual_seed(1), **kw)
    for name in ("value", "value_se", "x", "loss", "grad_norm"):
        torch.testing.assert_close(getattr(new, name), getattr(old, name), rtol=0, atol=1e-12)


def test_a_start_whose_first_step_is_not_finite_can_still_win():
    """Run in turn, a later start's first objective was compared with the earlier starts'
    best: a NaN there is skipped, and the start's later steps may still win."""
    x0, y = torch.zeros(2, 1, 2, 2, dtype=torch.float64), torch.zeros(2, dtype=torch.long)

    def loss_fn(logits, _y):  # 5r², not finite beyond r = 0.9 (x0 = 0, so r = ‖x − x0‖)
        r2 = logits.pow(2).sum(1)
        return torch.where(r2 > 0.81, torch.full_like(r2, float("nan")), 5 * r2)

    kw = dict(gamma=1.0, sigma=0.0, num_noise=1, steps=2, step_size=0.25, loss_fn=loss_fn)
    kw |= dict(restarts=2)
    # start 0 stays at x0 (F = 0); start 1 begins at r = 1 (NaN), steps to r = 0.5 (F = 1),
    # then to r = 1.5 (NaN): its middle iterate is the best
    batched = restarted_ascent(
        nn.Flatten(), x0, y, generator=torch.Generator().manual_seed(0), **kw
    )
    oracle = restarts_in_turn(nn.Flatten(), x0, y, generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(batched, oracle, rtol=0, atol=1e-12)
    torch.testing.assert_close(batched.flatten(1).norm(dim=1), torch.full((2,), 0.5).double())
