"""Gaussian data augmentation (Cohen et al. 2019, §3.3 and Appendix F)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from smoothcert._util import checks
from smoothcert.training.method import BatchContext, Method, MethodOutput, register


@register
@dataclass
class Gaussian(Method):
    """Train the base classifier f on x + ε, ε ~ N(0, σ²I): min_θ E_ε ℓ(θ; x + ε, y).

    Cohen et al. train with noise at the σ later used for smoothing, so that f classifies
    noisy inputs well and g(x) = argmax_c P(f(x+ε) = c) is accurate (§3.3). One fresh noise
    draw per example per step, in [0,1] pixel units, before the model's Normalize layer; no
    clamping (the smoothed classifier does not clamp either).
    """

    name = "gaussian"
    sigma: float = field(
        default=0.25,
        metadata={"help": "std of the Gaussian training noise, L2 pixel units on [0,1] images"},
    )

    def __post_init__(self) -> None:
        self.sigma = checks.finite_real("sigma", self.sigma, nonnegative=True)

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=ctx.generator)
        logits = model(x + self.sigma * noise)
        return MethodOutput(loss=F.cross_entropy(logits, y), logits=logits, targets=y)
