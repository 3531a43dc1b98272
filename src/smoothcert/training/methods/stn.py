"""STN: stability training with noise (Li, Chen, Wang, Carin 2019, "Certified adversarial
robustness with additive noise", the stability-training objective).

Per batch:  CE(f(x), y) + λ · KL( softmax f(x) ‖ softmax f(x + z) ),  z ~ N(0, σ²I).

Li et al.'s code writes the divergence as a cross-entropy of the noisy prediction against the
clean one; KL differs from it by the clean prediction's entropy, which (unlike in their
code) also trains the clean branch toward confident predictions. Gradients flow through both
branches. The clean and the noisy inputs go through the model in
separate forward passes, so batch-norm statistics are those of one kind of input each (as
TRADES does; ``separate_passes=False`` gives one joint pass).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from smoothcert._util import checks
from smoothcert.training.method import BatchContext, Method, MethodOutput, register


def kl_from_logits(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """Per-example KL(softmax p ‖ softmax q) = Σ_c p_c (log p_c − log q_c)."""
    log_p = F.log_softmax(p_logits, dim=1)
    log_q = F.log_softmax(q_logits, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(1)


@register
@dataclass
class STN(Method):
    name = "stn"

    sigma: float = field(
        default=0.25,
        metadata={"help": "std of the Gaussian noise z (input units, pixels in [0,1])"},
    )
    lam: float = field(
        default=1.0,
        metadata={"help": "weight λ of the stability term KL(f(x) ‖ f(x+z)) (unitless)"},
    )

    separate_passes: bool = field(
        default=True,
        metadata={
            "help": "clean and noisy inputs in separate forward passes, so batch-norm "
            "statistics do not mix them (false: one joint pass)"
        },
    )

    def __post_init__(self) -> None:
        checks.finite_real("sigma", self.sigma, nonnegative=True)
        checks.finite_real("lam", self.lam, nonnegative=True)
        checks.boolean("separate_passes", self.separate_passes)

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        z = self.sigma * torch.randn(
            x.shape, dtype=x.dtype, device=x.device, generator=ctx.generator
        )
        if self.separate_passes:
            clean, noisy = model(x), model(x + z)
        else:  # one joint pass: batch statistics, if any, see both
            logits = model(torch.cat([x, x + z]))
            clean, noisy = logits[: len(x)], logits[len(x) :]
        ce = F.cross_entropy(clean, y)
        stability = self.divergence(clean, noisy).mean()
        return MethodOutput(
            loss=ce + self.lam * stability,
            logits=clean.detach(),
            targets=y,
            stats={"ce": ce.item(), self.divergence_stat: stability.item()},
        )

    #: name of the stability term in the logged statistics
    divergence_stat: ClassVar[str] = "kl"

    def divergence(self, clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
        """Per-example D(f(x), f(x+z)) of the stability term: KL(softmax clean ‖ softmax noisy)."""
        return kl_from_logits(clean, noisy)
