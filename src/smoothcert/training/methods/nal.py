"""NAL: noisy adversarial learning (Yang et al., "A Distributional Robustness Certificate by
Randomized Smoothing", Algorithm 1, with one perturbation shared by the noise draws:
docs/threat-model.md).

Per batch, from x_0 = x0 (lines 3–6, :func:`smoothcert.distributional.surrogate_ascent`):
    for k = 0..K−1: draw z_1..z_s ~ N(0, σ²I);
        Δx = (1/s) Σ_j [∇_x ℓ(θ; x_k + z_j) − 2γ (x_k + z_j − x0)];   x_{k+1} = x_k + η1 Δx
then the θ step (line 8) on  (1/(ns)) Σ_i Σ_j ℓ(θ; x_K^i + z_ij),  η1 = 0.5/γ by default.

Choices where the paper is silent (all options):
- ``reuse_noise=False``: line 8 draws s fresh z per example. Reusing the draws of the last
  inner step would cancel the noise: with η1 = 0.5/γ, x_K = x0 − z̄ + ḡ/(2γ), so
  x_K + z_j = x0 + ḡ/(2γ) + (z_j − z̄), and with s = 1 the model would train on no noise at all.
- ``inner_train_mode=False``: the ascent runs with the model in eval mode (it attacks the
  model as it is deployed, and adversarial points do not update normalization statistics);
  the θ step runs in train mode.
- ``cost_with_noise=True``: c(x + z, x0) as in Algorithm 1; False gives c(x, x0), the
  ablation of the paper's Figure 2(b).
- The optimizer is the training loop's (the paper's η2 = 1e-4 suggests Adam).

With K = 0 and s = 1 this is exactly Gaussian data augmentation (same draws, same loss).
Logged per batch: ``rho`` = mean ‖x_K + z − x0‖² (with the noise, ≥ dσ² on average) and
``rho_adv`` = mean ‖x_K − x0‖²; ε = √rho_adv matches attack budgets (Eq. 8, Table 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from smoothcert._util import checks
from smoothcert._util.torch_helpers import evaluating
from smoothcert.attacks.pgd import draw_noise
from smoothcert.distributional.ascent import surrogate_ascent
from smoothcert.training.method import BatchContext, Method, MethodOutput, register


@register
@dataclass
class NAL(Method):
    name = "nal"

    sigma: float = field(
        default=0.05,
        metadata={
            "help": "std of the Gaussian noise z (input units; the paper: 0.05 MNIST, "
            "0.1 CIFAR-10/Tiny ImageNet)"
        },
    )
    gamma: float = field(
        default=0.25,
        metadata={
            "help": "penalty γ on the transport cost (1/input units²; the paper's best: "
            "0.25 MNIST, 1.5 otherwise)"
        },
    )
    steps: int = field(default=4, metadata={"help": "inner ascent steps K (count)"})
    num_noise: int = field(default=4, metadata={"help": "noise draws s per example (count)"})
    inner_step_size: float | None = field(
        default=None,
        metadata={
            "help": "inner step η1 (input units² per unit loss)",
            "default_text": "0.5/gamma",
        },
    )
    cost_with_noise: bool = field(
        default=True,
        metadata={
            "help": "transport cost c(x+z, x0) (Algorithm 1); false: c(x, x0), "
            "the ablation of Fig. 2(b)"
        },
    )
    reuse_noise: bool = field(
        default=False,
        metadata={
            "help": "outer step reuses the last inner step's draws instead of fresh "
            "ones (cancels the noise when η1 = 0.5/γ)"
        },
    )
    inner_train_mode: bool = field(
        default=False, metadata={"help": "run the inner ascent with the model in train mode"}
    )

    def __post_init__(self) -> None:
        checks.finite_real("sigma", self.sigma, nonnegative=True)
        checks.finite_real("gamma", self.gamma, positive=True)
        checks.integer_at_least("steps", self.steps, 0)
        checks.positive_int("num_noise", self.num_noise)
        if self.inner_step_size is not None:
            checks.finite_real("inner_step_size", self.inner_step_size, positive=True)
        checks.boolean("cost_with_noise", self.cost_with_noise)
        checks.boolean("reuse_noise", self.reuse_noise)
        checks.boolean("inner_train_mode", self.inner_train_mode)

    @property
    def eta(self) -> float:
        return 0.5 / self.gamma if self.inner_step_size is None else self.inner_step_size

    def adversary(
        self, model: nn.Module, x0: torch.Tensor, y: torch.Tensor, generator
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Lines 3–6: x_K and, for ``reuse_noise``, the draws of the last inner step."""
        if self.steps == 0 and not self.reuse_noise:
            return x0, None  # x_K = x0; draw nothing, so K = 0 is Gaussian augmentation
        was_training = model.training
        with evaluating(model, inference=False):
            model.train(self.inner_train_mode and was_training)
            result = surrogate_ascent(
                model,
                x0,
                y,
                gamma=self.gamma,
                sigma=self.sigma,
                num_noise=self.num_noise,
                steps=self.steps,
                step_size=self.eta,
                cost_with_noise=self.cost_with_noise,
                generator=generator,
                diagnostics=False,
            )
        return result.x, result.noise

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        x_k, last_noise = self.adversary(model, x, y, ctx.generator)
        noise = (
            last_noise
            if self.reuse_noise
            else draw_noise(x_k, self.sigma, self.num_noise, ctx.generator)
        )
        batch, s = noise.shape[:2]
        noisy = x_k.unsqueeze(1) + noise  # [B, s, ...]
        logits = model(noisy.reshape(batch * s, *x.shape[1:]))  # line 8
        targets = y.repeat_interleave(s)
        rho = (noisy - x.unsqueeze(1)).flatten(2).pow(2).sum(2).mean().item()
        rho_adv = (x_k - x).flatten(1).pow(2).sum(1).mean().item()
        return MethodOutput(
            loss=F.cross_entropy(logits, targets),
            logits=logits.detach(),
            targets=targets,
            stats={"rho": rho, "rho_adv": rho_adv},
        )
