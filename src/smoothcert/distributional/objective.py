"""The surrogate objective of one batch (Algorithm 1, lines 3–6): sup_x { ℓ̂(θ; x) − γ‖x − x0‖² } by
gradient ascent from x0 (or a random start), with one perturbation shared by the noise draws
(:func:`surrogate`, :class:`SurrogateResult`), and the checks of its arguments."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from smoothcert._util.checks import (
    ParameterError,
    finite_real,
    integer_at_least,
    is_integer,
)
from smoothcert._util.torch_helpers import model_dtype
from smoothcert.distributional.ascent import LossFn, cross_entropy_per_example
from smoothcert.distributional.restarts import restarted_ascent

# --------------------------------------------------------------------------- per example


@dataclass
class SurrogateResult:
    """Per-example estimate of φ̃γ(θ; x0) at one γ (tensors of shape [B] unless noted)."""

    value: torch.Tensor  # φ̃γ(θ; x0) = lagrangian − γdσ² (the ρ-with-noise form)
    lagrangian: torch.Tensor  # sup_x { ℓ̂(θ; x) − γ‖x − x0‖² } (the ρ_adv form)
    value_se: torch.Tensor  # Monte-Carlo standard error of value (from the fresh draws)
    x: torch.Tensor  # [B, ...] the maximizer x* found by the ascent
    loss: torch.Tensor  # ℓ̂(θ; x*) from the fresh draws
    cost_with_noise: torch.Tensor  # E_z‖x* + z − x0‖² = ‖x* − x0‖² + dσ² (exact expectation)
    cost_without_noise: torch.Tensor  # ‖x* − x0‖²
    grad_norm: torch.Tensor  # ‖∇_x[ℓ̂(θ; x) − γ‖x − x0‖²]‖₂ at x*, fresh draws (0 at a maximizer)
    gamma: float
    sigma: float


def _count(name: str, value: object) -> int:
    """``value`` as an int, refused unless it is an integer >= 1 (2.5 would otherwise reach
    range() or a tensor shape and fail there with a TypeError).

    :func:`smoothcert._util.checks.positive_int` with this module's wording ("an integer >= 1"),
    which callers match on."""
    if not is_integer(value) or value < 1:  # type: ignore[operator]
        raise ParameterError(name, f"must be an integer >= 1, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_surrogate_args(
    gamma: float, sigma: float, num_noise: int, steps: int, num_eval: int
) -> None:
    """Reject arguments the surrogate cannot work with, naming the one at fault.

    Parameters
    ----------
    gamma : float
        Penalty γ of the transport cost, finite and > 0.
    sigma : float
        Noise level σ, finite and >= 0.
    num_noise, num_eval : int
        Noise draws per ascent step and for the re-estimate, integers >= 1.
    steps : int
        Ascent steps, an integer >= 0.

    Raises
    ------
    smoothcert._util.checks.ParameterError
        Naming the first argument out of range.
    """
    finite_real("gamma", gamma, positive=True)
    finite_real("sigma", sigma, nonnegative=True)
    _count("num_noise", num_noise)
    integer_at_least("steps", steps, 0)
    _count("num_eval", num_eval)


def check_batch(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    *,
    class_labels: bool,
    names: tuple[str, str] = ("x0", "y"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate one batch of inputs and labels; return the inputs in the model's dtype.

    Inputs must be a finite floating batch [B, ...]: integer pixels (0–255?) cannot be
    converted safely, and a NaN would come out as a NaN certificate. Float64 data is converted
    to the model's dtype, which is where the computation happens anyway. With ``class_labels``
    (the default cross-entropy) labels must be integer class indices >= 0 of shape [B]; their
    upper end is checked against the model's outputs by :func:`_class_checked`."""
    x_name, y_name = names
    if not isinstance(x0, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(
            f"{x_name} and {y_name} must be torch tensors, got "
            f"{type(x0).__name__} and {type(y).__name__}"
        )
    if x0.dim() < 2 or y.dim() < 1 or x0.shape[0] != y.shape[0]:
        raise ValueError(
            f"{x_name} must be a batch [B, ...] with one label per example in {y_name}, got "
            f"{x_name} {tuple(x0.shape)} and {y_name} {tuple(y.shape)} (add a batch dimension "
            "to a single example with unsqueeze(0))"
        )
    if not x0.is_floating_point():
        raise ValueError(
            f"{x_name} must be a floating-point tensor (images in [0, 1]), got {x0.dtype}"
        )
    if not torch.isfinite(x0).all():
        raise ValueError(f"{x_name} contains NaN or Inf")
    if class_labels:
        if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(
                f"{y_name} must be integer class indices of shape [B], got {y.dtype} of shape "
                f"{tuple(y.shape)}"
            )
        if y.numel() and int(y.min()) < 0:
            # cross-entropy would silently give -100 (its ignore_index) a loss of 0.
            raise ValueError(f"{y_name} must be class indices >= 0, got {int(y.min())}")
        y = y.long()  # cross-entropy takes int64 targets only
    dtype = model_dtype(model, default=None)
    return (x0 if dtype is None else x0.to(dtype)), y


def _class_checked(loss_fn: LossFn, y: torch.Tensor, y_name: str) -> LossFn:
    """``loss_fn`` (cross-entropy) refusing labels the model has no output for: cross-entropy
    would raise an IndexError deep inside torch, or on CUDA a device-side assert."""
    top = int(y.max()) if y.numel() else -1

    def checked(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2:
            raise ValueError(
                f"the model must output logits of shape [B, classes] for the cross-entropy "
                f"loss, got {tuple(logits.shape)}"
            )
        if top >= logits.shape[1]:
            raise ValueError(
                f"{y_name} must be class indices in [0, {logits.shape[1]}) for this model's "
                f"{logits.shape[1]} outputs, got {top}"
            )
        return loss_fn(logits, target)

    return checked


def _check_finite_result(losses: torch.Tensor, lagrangian: torch.Tensor, gamma: float) -> None:
    """A NaN or Inf loss would average into a NaN certificate, returned as if it were one."""
    bad = ~(torch.isfinite(losses).all(1) & torch.isfinite(lagrangian))
    if bad.any():
        raise ValueError(
            f"model: the loss is not finite (NaN or Inf) for {int(bad.sum())} of {bad.numel()} "
            f"examples at gamma={gamma:g}; check the model's outputs (or raise gamma, if the "
            "ascent diverged)"
        )


def _smoothed_loss_and_grad(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    num_draws: int,
    loss_fn: LossFn,
    generator: torch.Generator | None,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-draw losses ℓ(θ; x + z_j) [B, n] and ∇_x ℓ̂ estimated by their mean (Theorem 2)."""
    batch, shape = x.shape[0], x.shape[1:]
    losses, grad = [], torch.zeros_like(x)
    with torch.enable_grad():
        for start in range(0, num_draws, chunk):
            n = min(chunk, num_draws - start)
            xr = x.detach().requires_grad_(True)
            if sigma > 0:
                z = torch.randn(
                    (batch, n, *shape), dtype=x.dtype, device=x.device, generator=generator
                )
                noisy = xr.unsqueeze(1) + sigma * z
            else:
                noisy = xr.unsqueeze(1).expand(batch, n, *shape)
            per_draw = loss_fn(model(noisy.reshape(batch * n, *shape)), y.repeat_interleave(n))
            per_draw = per_draw.view(batch, n)
            (g,) = torch.autograd.grad(per_draw.sum() / num_draws, xr)
            grad += g
            losses.append(per_draw.detach())
    return torch.cat(losses, dim=1), grad


def surrogate(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    gamma: float,
    sigma: float,
    *,
    num_noise: int = 8,
    steps: int = 50,
    step_size: float | Callable[[int], float] | None = None,
    num_eval: int = 64,
    loss_fn: LossFn = cross_entropy_per_example,
    generator: torch.Generator | None = None,
    eval_chunk: int = 32,
    restarts: int = 1,
) -> SurrogateResult:
    """Estimate φ̃γ(θ; x0) = sup_x E_z[ℓ(θ; x+z) − γ‖x+z−x0‖²] for a batch.

    1. Ascent (NAL Algorithm 1, lines 3–7, via :func:`surrogate_ascent`) on
       (1/s) Σ_j ℓ(θ; x + z_j) − γ‖x − x0‖², s = ``num_noise`` fresh draws per step. The noisy
       cost of Algorithm 1 is replaced by its exact expectation ‖x − x0‖² + dσ² (same maximizer,
       less gradient noise). ``step_size`` η defaults to 0.25/γ, half of Table 1's 0.5/γ: with
       0.5/γ a step is the fixed-point map x ← x0 + ∇ℓ̂(x)/(2γ), which oscillates when γ is
       small (docs/distributional.md); a schedule k ↦ η_k is accepted too.
    2. Among the iterates x_0 … x_K the one with the largest ascent objective is kept (the
       fixed-point iteration of η = 0.5/γ can oscillate when γ is small).
    3. The value at x* is re-estimated with ``num_eval`` FRESH draws: the ascent's own draws
       are biased upward by the selection. Its standard error and the gradient norm at x*
       (the convergence diagnostic) come from the same fresh draws.

    With ``restarts`` > 1 the ascent also runs from ``restarts`` − 1 random starts
    x0 + δ, δ uniform in direction with ‖δ‖₂ = 1/√γ (where the penalty γ‖δ‖² is one nat, the
    scale of a cross-entropy), and step 2 keeps, per example, the best iterate of all runs:
    the sup is then not the value of a single local maximum. Random starts come from
    ``generator`` after the first run's draws, so ``restarts=1`` gives the same numbers as
    before restarts existed. All starts of all examples go through the model as one batch of
    restarts·B·num_noise inputs per step, with the draws the starts had when they ran one
    after the other (:mod:`smoothcert.distributional.restarts`): the numbers are theirs up to
    the float rounding of a larger batch. The batch must not couple its rows (eval mode, no
    batch statistics).

    With σ = 0 this is WRM's surrogate sup_x{ℓ(θ; x) − γ‖x − x0‖²} (one draw suffices).
    The model's train/eval mode is left as given; its parameters receive no gradient.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier θ.
    x0 : torch.Tensor
        Clean inputs [B, ...], floating point (converted to the model's dtype).
    y : torch.Tensor
        Labels [B]: class indices >= 0 for the default cross-entropy.
    gamma : float
        Penalty γ > 0 of the transport cost.
    sigma : float
        Noise level σ >= 0 (0: WRM's unsmoothed surrogate).
    num_noise : int, default 8
        Noise draws per ascent step.
    steps : int, default 50
        Ascent steps (0: evaluate at x0).
    step_size : float or callable, optional
        Ascent step η > 0, or a schedule k ↦ η_k; default 0.25/γ.
    num_eval : int, default 64
        Fresh draws for the re-estimate at the maximizer.
    loss_fn : callable, default cross_entropy_per_example
        Per-example loss ``loss_fn(logits, y)``.
    generator : torch.Generator, optional
        Source of the noise and of the random starts.
    eval_chunk : int, default 32
        Draws per forward pass of the re-estimate (memory, not results).
    restarts : int, default 1
        Starts per ascent (x0 and ``restarts`` − 1 random ones).

    Returns
    -------
    SurrogateResult
        Per-example value, Lagrangian, standard error, maximizer, costs and gradient norm.

    Raises
    ------
    ValueError
        If an argument is out of range (a :class:`~smoothcert._util.checks.ParameterError` naming
        it), the batch is malformed, or the loss is not finite.
    """
    check_surrogate_args(gamma, sigma, num_noise, steps, num_eval)
    eval_chunk = _count("eval_chunk", eval_chunk)
    class_labels = loss_fn is cross_entropy_per_example
    x0, y = check_batch(model, x0, y, class_labels=class_labels)
    if class_labels:
        loss_fn = _class_checked(loss_fn, y, "y")
    if step_size is None:
        step_size = 0.25 / gamma
    elif not callable(step_size):
        finite_real("step_size", step_size, positive=True)
    if sigma == 0:
        num_noise = num_eval = 1  # the loss is deterministic
    sigma = float(sigma)
    x0 = x0.detach()
    dim = x0[0].numel()

    restarts = _count("restarts", restarts)
    best_x = restarted_ascent(
        model, x0, y, gamma=gamma, sigma=sigma, num_noise=num_noise, steps=steps,
        step_size=step_size, loss_fn=loss_fn, generator=generator, restarts=restarts,
    )  # fmt: skip

    losses, grad_loss = _smoothed_loss_and_grad(
        model, best_x, y, sigma, num_eval, loss_fn, generator, eval_chunk
    )
    diff = best_x - x0
    cost = diff.flatten(1).pow(2).sum(1)
    loss = losses.mean(1)
    lagrangian = loss - gamma * cost
    _check_finite_result(losses, lagrangian, gamma)
    se = losses.std(1) / math.sqrt(num_eval) if num_eval > 1 else torch.zeros_like(loss)
    grad = grad_loss - 2 * gamma * diff
    return SurrogateResult(
        value=lagrangian - gamma * dim * sigma**2,
        lagrangian=lagrangian,
        value_se=se,
        x=best_x,
        loss=loss,
        cost_with_noise=cost + dim * sigma**2,
        cost_without_noise=cost,
        grad_norm=grad.flatten(1).norm(dim=1),
        gamma=float(gamma),
        sigma=sigma,
    )
