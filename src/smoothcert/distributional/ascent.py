"""Gradient ascent on the Lagrangian surrogate shared by WRM, NAL and the distributional
certificate.

For each example x0 it maximizes over x (one perturbation shared by the noise draws, as NAL
Algorithm 1 computes; docs/threat-model.md)

    F(x) = (1/s) Σ_j [ ℓ(θ; x + z_j) − γ ‖x + z_j − x0‖² ],   z_j ~ N(0, σ² I)

by the update of Algorithm 1, lines 4–6:

    Δx = (1/s) Σ_j [ ∇_x ℓ(θ; x + z_j) − 2γ (x + z_j − x0) ],   x ← x + η Δx,

with s fresh draws at every step. With ``cost_with_noise=False`` the cost is γ‖x − x0‖²
(the ablation of the NAL paper's Figure 2(b)); with σ = 0 and s = 1 it is WRM's ascent on
ℓ(θ; x) − γ‖x − x0‖² (Sinha et al. 2018, Eq. 2 inner problem).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, y) -> per-example loss


def cross_entropy_per_example(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


@dataclass
class AscentResult:
    x: torch.Tensor  # [B, ...] the final iterate x_K (detached)
    noise: torch.Tensor  # [B, s, ...] the draws z_j of the last evaluation (zeros when σ = 0)
    objective: torch.Tensor  # [B] F(x_K) estimated with `noise`
    loss: torch.Tensor  # [B] (1/s) Σ_j ℓ(θ; x_K + z_j)
    cost_with_noise: torch.Tensor  # [B] (1/s) Σ_j ‖x_K + z_j − x0‖²
    cost_without_noise: torch.Tensor  # [B] ‖x_K − x0‖²
    grad_norm: torch.Tensor  # [B] ‖∇_x F(x_K)‖₂: the convergence diagnostic (0 at a maximizer)


def _draw(shape: tuple[int, ...], sigma: float, ref: torch.Tensor, generator) -> torch.Tensor:
    if sigma == 0.0:
        return torch.zeros(shape, dtype=ref.dtype, device=ref.device)
    return sigma * torch.randn(shape, dtype=ref.dtype, device=ref.device, generator=generator)


def _objective_and_grad(
    model: nn.Module,
    x: torch.Tensor,
    x0: torch.Tensor,
    y: torch.Tensor,
    gamma: float,
    sigma: float,
    num_noise: int,
    cost_with_noise: bool,
    loss_fn: LossFn,
    generator: torch.Generator | None,
    create_graph: bool = False,
    noise: torch.Tensor | None = None,
):
    """F at x, its gradient and the pieces of F; the draws z come from ``generator``, or are
    ``noise`` [B, s, ...] when given (already scaled by σ)."""
    batch, shape = x.shape[0], x.shape[1:]
    x = x.detach().requires_grad_(True)
    z = _draw((batch, num_noise, *shape), sigma, x, generator) if noise is None else noise
    noisy = x.unsqueeze(1) + z  # [B, s, ...]: one perturbation shared by the s draws
    losses = loss_fn(
        model(noisy.reshape(batch * num_noise, *shape)), y.repeat_interleave(num_noise)
    )
    loss = losses.view(batch, num_noise).mean(1)
    dims = tuple(range(2, noisy.dim()))
    cost_noisy = (noisy - x0.unsqueeze(1)).pow(2).sum(dim=dims).mean(1)
    cost_clean = (x - x0).flatten(1).pow(2).sum(1)
    objective = loss - gamma * (cost_noisy if cost_with_noise else cost_clean)
    (grad,) = torch.autograd.grad(objective.sum(), x, create_graph=create_graph)
    return objective, grad, z, loss, cost_noisy, cost_clean


def surrogate_ascent(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    *,
    gamma: float,
    sigma: float,
    num_noise: int,
    steps: int,
    step_size: float | Callable[[int], float],
    cost_with_noise: bool = True,
    init: torch.Tensor | None = None,
    loss_fn: LossFn = cross_entropy_per_example,
    generator: torch.Generator | None = None,
    diagnostics: bool = True,
) -> AscentResult:
    """Run ``steps`` ascent steps of Algorithm 1 (lines 3–7) from ``init`` (default x0).

    ``step_size`` is η (the paper's η1; 0.5/γ in its Table 1) or a schedule k ↦ η_k
    (WRM's official code uses 1/√(k+2) on a rescaled objective). No clipping to [0,1]:
    neither WRM nor Algorithm 1 constrains x. With ``diagnostics`` one more evaluation at
    x_K gives the objective, costs and the final gradient norm; without it those fields
    describe the last step's iterate before its update (cheaper, for training).
    The model's parameters receive no gradient; its train/eval mode is left as given.
    """
    if gamma < 0:
        raise ValueError(f"gamma must be >= 0, got {gamma}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if num_noise < 1:
        raise ValueError(f"num_noise must be >= 1, got {num_noise}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    x0 = x0.detach()
    x = (x0 if init is None else init.detach()).clone()
    args = (x0, y, gamma, sigma, num_noise, cost_with_noise, loss_fn, generator)
    with torch.enable_grad():
        result = None
        for k in range(steps):
            result = _objective_and_grad(model, x, *args)
            eta = step_size(k) if callable(step_size) else step_size
            x = (x + eta * result[1]).detach()
        if diagnostics or result is None:
            result = _objective_and_grad(model, x, *args)
    objective, grad, z, loss, cost_noisy, cost_clean = result
    return AscentResult(
        x=x.detach(),
        noise=z.detach(),
        objective=objective.detach(),
        loss=loss.detach(),
        cost_with_noise=cost_noisy.detach(),
        cost_without_noise=cost_clean.detach(),
        grad_norm=grad.flatten(1).norm(dim=1).detach(),
    )
