"""Standard training: cross-entropy on clean inputs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from smoothcert.training.method import BatchContext, Method, MethodOutput, register


@register
@dataclass
class Standard(Method):
    """min_θ E ℓ(θ; x, y) with ℓ the cross-entropy; no noise, no adversary."""

    name = "standard"

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        logits = model(x)
        return MethodOutput(loss=F.cross_entropy(logits, y), logits=logits, targets=y)
