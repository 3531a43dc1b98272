"""The transport cost of the Lagrangian adversary, for matching attack budgets (NAL paper Eq. 8).

Following Sinha et al. (2018) and the NAL paper (§5, "Training hyperparameters"): for a
trained model and a penalty γ, run the surrogate ascent (15 steps) from every training point
x0 and average the transport costs of the final iterates x_K:

    ρ     = E_P0 E_z ‖x_K + z − x0‖²      (with the noise, Eq. 8 as written; ≥ dσ² on average)
    ρ_adv = E_P0 ‖x_K − x0‖²              (the adversary's own displacement)

and ε = √ρ_adv is the L2 radius that SmoothAdv, TRADES and the PGD evaluation use to match
(the paper's Table 1 ε values are below √(dσ²), so they must be √ρ_adv).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from smoothcert._util.checks import finite_real, positive_int
from smoothcert._util.torch_helpers import evaluating
from smoothcert.attacks.robust import as_tensors
from smoothcert.distributional.ascent import LossFn, cross_entropy_per_example, surrogate_ascent


@dataclass
class TransportCost:
    gamma: float
    sigma: float
    num_examples: int
    rho: float  # mean ‖x_K + z − x0‖² (with the noise)
    rho_adv: float  # mean ‖x_K − x0‖²
    rho_se: float  # standard errors over examples
    rho_adv_se: float
    loss: float  # mean (1/s) Σ_j ℓ(θ; x_K + z_j): the adversarial loss reached
    grad_norm: float  # mean final ‖∇_x F(x_K)‖₂ (convergence diagnostic)

    @property
    def eps(self) -> float:
        """ε = √ρ_adv, the matched L2 attack radius."""
        return math.sqrt(self.rho_adv)


def transport_cost(
    model: nn.Module,
    data,
    gamma: float,
    *,
    sigma: float = 0.0,
    num_noise: int = 1,
    steps: int = 15,
    step_size: float | None = None,
    cost_with_noise: bool = True,
    loss_fn: LossFn = cross_entropy_per_example,
    batch_size: int = 128,
    max_examples: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> TransportCost:
    """ρ and ρ_adv of the ``steps``-step surrogate ascent (Algorithm 1 lines 3–6; Eq. 8).

    ``step_size`` defaults to η1 = 0.5/γ (NAL paper Table 1). With σ = 0 and s = 1 this is the
    WRM adversary with constant steps. The model runs in eval mode.
    """
    finite_real("gamma", gamma, positive=True)
    finite_real("sigma", sigma, nonnegative=True)
    if step_size is not None:
        finite_real("step_size", step_size, positive=True)
    positive_int("batch_size", batch_size)
    eta = 0.5 / gamma if step_size is None else step_size
    x_all, y_all = as_tensors(data, max_examples)
    if len(y_all) == 0:
        raise ValueError("no examples to compute the transport cost on")
    device = next(model.parameters()).device
    starts = range(0, len(y_all), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="rho", unit="batch")
    parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("rho", "adv", "loss", "grad")}
    with evaluating(model, inference=False):
        for start in starts:
            x = x_all[start : start + batch_size].to(device)
            y = y_all[start : start + batch_size].to(device)
            gen = torch.Generator(device=device).manual_seed(seed * 1_000_003 + start)
            r = surrogate_ascent(
                model,
                x,
                y,
                gamma=gamma,
                sigma=sigma,
                num_noise=num_noise,
                steps=steps,
                step_size=eta,
                cost_with_noise=cost_with_noise,
                generator=gen,
                loss_fn=loss_fn,
            )
            parts["rho"].append(r.cost_with_noise.cpu())
            parts["adv"].append(r.cost_without_noise.cpu())
            parts["loss"].append(r.loss.cpu())
            parts["grad"].append(r.grad_norm.cpu())
    rho, adv, loss, grad = (torch.cat(parts[k]).double().numpy() for k in parts)

    def se(v: np.ndarray) -> float:
        return float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")

    return TransportCost(
        gamma=gamma,
        sigma=sigma,
        num_examples=len(rho),
        rho=float(rho.mean()),
        rho_adv=float(adv.mean()),
        rho_se=se(rho),
        rho_adv_se=se(adv),
        loss=float(loss.mean()),
        grad_norm=float(grad.mean()),
    )
