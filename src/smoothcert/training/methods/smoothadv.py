"""SmoothAdv (Salman et al. 2019, "Provably robust deep learning via adversarially trained
smoothed classifiers", SmoothAdv_PGD training).

Per batch: draw m copies z_1..z_m ~ N(0, σ²I) per example; find one δ with ‖δ‖₂ ≤ ε_t and
x + δ ∈ [0,1] by T steps of L2 PGD (step 2ε_t/T, δ from 0) on the soft smoothed classifier's
loss −log((1/m) Σ_j softmax(f(x + δ + z_j))_y), the same draws at every step; where the
attack's gradient is exactly zero the step goes along a random direction (as the authors'
attack does, instead of not moving). Then minimize the cross-entropy at x + δ + z_j:

- ``train_copies="one"`` (the authors' default): on one of the m copies per example, z_1;
  the other m − 1 copies only shape δ;
- ``train_copies="all"`` (their "multi-noise" option): the mean over all m copies.

The authors' script also splits each loaded batch of B examples into m mini-batches of B/m
examples (each replicated m times, one optimizer step each); here one optimizer step sees one
batch, so ``--batch-size B/m`` gives the same examples per step.

ε_t grows linearly over the first ``warmup_epochs`` epochs: ε_t = ε · min(1, (epoch + 1)/w).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from smoothcert._util import checks
from smoothcert.attacks.pgd import draw_noise, pgd_l2_smoothed
from smoothcert.training.method import BatchContext, Method, MethodOutput, register


def warmup_epsilon(eps: float, warmup_epochs: int, epoch: int) -> float:
    """ε_t = ε·min(1, (t + 1)/w) at the 0-based epoch t (ε from the start when w = 0): the
    linear warm-up of SmoothAdv's attack radius, also used by Consistency's adversarial copies."""
    if warmup_epochs == 0:
        return eps
    return eps * min(1.0, (epoch + 1) / warmup_epochs)


@register
@dataclass
class SmoothAdv(Method):
    name = "smoothadv"

    sigma: float = field(
        default=0.25, metadata={"help": "std of the Gaussian noise (input units, pixels in [0,1])"}
    )
    eps: float = field(
        default=0.5, metadata={"help": "L2 radius of the attack after warm-up (input units)"}
    )
    steps: int = field(default=4, metadata={"help": "PGD steps T of the inner attack (count)"})
    num_noise: int = field(
        default=4, metadata={"help": "noise copies m per example, shared by one δ (count)"}
    )
    warmup_epochs: int = field(
        default=10, metadata={"help": "epochs over which ε grows linearly to eps (epochs)"}
    )
    train_copies: str = field(
        default="one",
        metadata={
            "help": "noisy copies the loss trains on: one (of the m, as the authors' code "
            "does) or all (their multi-noise option)"
        },
    )
    random_zero_grad: bool = field(
        default=True,
        metadata={
            "help": "step along a random direction where the attack's gradient is exactly "
            "zero, as the authors' attack does (false: no step there)"
        },
    )
    objective: str = field(
        default="smoothadv",
        metadata={
            "help": "inner attack loss: smoothadv (log of mean softmax) or expected "
            "(mean cross-entropy, Cohen et al. App. J.3)"
        },
    )

    def __post_init__(self) -> None:
        checks.finite_real("sigma", self.sigma, nonnegative=True)
        checks.finite_real("eps", self.eps, nonnegative=True)
        checks.integer_at_least("steps", self.steps, 0)
        checks.positive_int("num_noise", self.num_noise)
        checks.integer_at_least("warmup_epochs", self.warmup_epochs, 0)
        checks.one_of("train_copies", self.train_copies, ("one", "all"))
        checks.boolean("random_zero_grad", self.random_zero_grad)
        checks.one_of("objective", self.objective, ("smoothadv", "expected"))

    def epsilon(self, epoch: int) -> float:
        """ε_t of the linear warm-up (SmoothAdv's schedule: ε/w after the first epoch)."""
        return warmup_epsilon(self.eps, self.warmup_epochs, epoch)

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        eps = self.epsilon(ctx.epoch)
        noise = draw_noise(x, self.sigma, self.num_noise, ctx.generator)
        x_adv = x
        if eps > 0 and self.steps > 0:
            # The attack runs in eval mode (pgd_l2_smoothed restores train mode afterwards).
            x_adv = pgd_l2_smoothed(
                model,
                x,
                y,
                eps,
                self.steps,
                self.sigma,
                self.num_noise,
                objective=self.objective,
                noise=noise,
                generator=ctx.generator,
                random_zero_grad=self.random_zero_grad,
            )
        if self.train_copies == "one":
            noise = noise[:, :1]  # the copies are i.i.d.: the first is "one of the m"
        batch, m = noise.shape[:2]
        noisy = (x_adv.unsqueeze(1) + noise).reshape(batch * m, *x.shape[1:])
        targets = y.repeat_interleave(m)
        logits = model(noisy)
        return MethodOutput(
            loss=F.cross_entropy(logits, targets),
            logits=logits.detach(),
            targets=targets,
            stats={"eps": eps, "delta": (x_adv - x).flatten(1).norm(dim=1).mean().item()},
        )
