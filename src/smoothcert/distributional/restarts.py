"""The ascent of :func:`smoothcert.distributional.surrogate` for all its starts at once: every
start of every example of a batch goes through the model as one batch per ascent step.

The draws are those of the starts run one after the other from one generator (how the
surrogate has always drawn them, so stored runs keep their numbers): start r begins where
start r − 1's draws end. Each start gets its own generator, a copy of the shared one taken at
the point its draws begin, found by drawing the earlier starts' numbers once ahead of time
and discarding them (the random numbers only, no model evaluation). The last start draws
from the shared generator itself, which therefore ends where it always ended.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from smoothcert.distributional.ascent import LossFn, _draw, _objective_and_grad, surrogate_ascent


def random_start(x0: torch.Tensor, gamma: float, generator: torch.Generator | None):
    """x0 + δ with a uniformly random direction and ‖δ‖₂ = 1/√γ (a restart of the ascent)."""
    d = torch.randn(x0.shape, dtype=x0.dtype, device=x0.device, generator=generator)
    d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x0.dim() - 1)))
    return x0 + d / math.sqrt(gamma)


def _shared_generator(generator: torch.Generator | None, device: torch.device):
    """The generator torch draws from when given ``generator`` (None: the device's default)."""
    if generator is not None:
        return generator
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return torch.cuda.default_generators[index]
    if device.type != "cpu":
        raise ValueError(f"generator: pass one for inputs on {device.type} (restarts > 1)")
    return torch.default_generator


def _copy(generator: torch.Generator) -> torch.Generator:
    copy = torch.Generator(device=generator.device)
    copy.set_state(generator.get_state())
    return copy


def start_generators(
    generator: torch.Generator | None,
    x0: torch.Tensor,
    restarts: int,
    draws_per_start: int,
    noise_shape: tuple[int, ...],
    sigma: float,
) -> list[torch.Generator]:
    """One generator per start, each where the start's draws began when the starts ran one
    after the other: start r > 0 first draws its random start (the shape of ``x0``), then
    every start draws ``draws_per_start`` noise tensors of ``noise_shape`` (none when σ = 0)."""
    shared = _shared_generator(generator, x0.device)
    gens = []
    for run in range(restarts - 1):
        gens.append(_copy(shared))
        # advance the shared generator past this start's draws, exactly as they are drawn
        if run > 0:
            torch.randn(x0.shape, dtype=x0.dtype, device=x0.device, generator=shared)
        for _ in range(draws_per_start if sigma != 0.0 else 0):
            torch.randn(noise_shape, dtype=x0.dtype, device=x0.device, generator=shared)
    gens.append(shared)
    return gens


def restarted_ascent(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    *,
    gamma: float,
    sigma: float,
    num_noise: int,
    steps: int,
    step_size: float | Callable[[int], float],
    loss_fn: LossFn,
    generator: torch.Generator | None,
    restarts: int,
) -> torch.Tensor:
    """The best iterate x* [B, ...] of ``restarts`` ascents per example (x0 and random starts
    at distance 1/√γ), by the ascent objective F(x_k) = ℓ̂(x_k) − γ‖x_k − x0‖² estimated with
    ``num_noise`` fresh draws at each of x_0 … x_K.

    The tie rule is that of the starts run in turn: the first (start, step) reaching the
    maximum is kept. The starts' rows are independent (the model sees no other row of its
    batch in eval mode), so this equals the starts run one after the other up to the float
    rounding of a larger batch.
    """
    batch, shape = x0.shape[0], tuple(x0.shape[1:])
    noise_shape = (batch, num_noise, *shape)
    gens = start_generators(generator, x0, restarts, steps + 1, noise_shape, sigma)
    starts = [x0.clone()] + [random_start(x0, gamma, gens[r]) for r in range(1, restarts)]
    x = torch.cat(starts)  # [R·B, ...], start-major
    x0_all = x0.repeat(restarts, *([1] * len(shape)))
    y_all = y.repeat(restarts)
    best_obj: torch.Tensor | None = None
    best_x = x.clone()
    with torch.enable_grad():
        for k in range(steps + 1):
            noise = torch.cat([_draw(noise_shape, sigma, x0, g) for g in gens])
            obj, grad, *_ = _objective_and_grad(
                model, x, x0_all, y_all, gamma, sigma, num_noise, False, loss_fn, None,
                noise=noise,
            )  # fmt: skip
            obj = obj.detach()
            if best_obj is None:
                # -inf, not F(x_0), for the later starts: run in turn, they were compared
                # with the best of the earlier ones from their first step on, so a NaN there
                # must not stick; the first start's F(x_0) is kept whatever it is.
                best_obj = torch.full_like(obj, -math.inf)
            better = obj > best_obj  # strict: the earliest step of a tie stays
            if k == 0:
                better[:batch] = True
            best_obj = torch.where(better, obj, best_obj)
            best_x[better] = x[better]
            if k < steps:
                eta = step_size(k) if callable(step_size) else step_size
                x = (x + eta * grad).detach()
    assert best_obj is not None
    # across starts in their order, strict again: the earliest start of a tie stays
    per_start = best_obj.view(restarts, batch)
    chosen_obj, chosen_x = per_start[0], best_x[:batch].clone()
    for run in range(1, restarts):
        better = per_start[run] > chosen_obj
        chosen_obj = torch.where(better, per_start[run], chosen_obj)
        chosen_x[better] = best_x[run * batch : (run + 1) * batch][better]
    return chosen_x


def restarts_in_turn(
    model, x0, y, *, gamma, sigma, num_noise, steps, step_size, loss_fn, generator, restarts
):
    """The reference for :func:`restarted_ascent`: each start's whole ascent in turn from the one
    generator, one step per call of :func:`~smoothcert.distributional.ascent.surrogate_ascent`,
    the first best (start, step) kept. The batched starts must give its result; the test
    suite and the dcert benchmark compare the two."""
    best_x, best_obj = x0.clone(), None
    for run in range(restarts):
        x = x0.clone() if run == 0 else random_start(x0, gamma, generator)
        for k in range(steps + 1):
            r = surrogate_ascent(
                model, x0, y, gamma=gamma, sigma=sigma, num_noise=num_noise,
                steps=1 if k < steps else 0,
                step_size=(lambda _i, k=k: step_size(k)) if callable(step_size) else step_size,
                cost_with_noise=False, init=x, loss_fn=loss_fn, generator=generator,
                diagnostics=k == steps,
            )  # fmt: skip
            obj = r.objective
            better = torch.ones_like(obj, dtype=torch.bool) if best_obj is None else obj > best_obj
            best_obj = obj if best_obj is None else torch.where(better, obj, best_obj)
            best_x[better] = x[better]
            x = r.x
    return best_x
