"""Stability training as Jeong & Shin (2020) run it for Li et al. (2019).

Li, Chen, Wang, Carin 2019, "Certified adversarial robustness with additive noise" (NeurIPS):
their stability-training objective L = L_CE(f(x), y) + λ·L_stab(f(x), f(x + z)),
z ~ N(0, σ²I). Jeong & Shin's ``train_stab.py`` (jh-jeong/smoothing-consistency, the baseline
"Stability training" of their Tables) writes the stability term as the cross-entropy of the
noisy prediction against the clean one,

    L = CE(f(x), y) + λ · H( softmax f(x), softmax f(x + z) ),
    H(p, q) = −Σ_c p_c log q_c = KL(p ‖ q) + H(p),

with gradients through both branches (the clean softmax is not detached), the clean and the
noisy inputs in two separate forward passes, one noise draw per example, λ = 2 in every one of
their runs (MNIST σ ∈ {0.25, 0.5, 1.0}, CIFAR-10 σ = 0.5).

How it relates to ``stn``: same structure, same passes and options (this class is :class:`STN`
with another divergence and default λ, no code of its own but the divergence). It differs in
the divergence only: ``stn`` uses KL(p ‖ q), this uses the cross-entropy H(p, q), which adds
the clean prediction's entropy H(p) and so also pushes the clean branch toward confident
predictions. With the clean prediction one-hot the two coincide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch.nn import functional as F

from smoothcert.training.method import register
from smoothcert.training.methods.stn import STN


def soft_cross_entropy(target_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Per-example H(softmax target, softmax logits) = −Σ_c p_c log q_c (both differentiable)."""
    return -(F.softmax(target_logits, dim=1) * F.log_softmax(logits, dim=1)).sum(1)


@register
@dataclass
class Stability(STN):
    """Stability training (Li et al. 2019) with Jeong & Shin's cross-entropy stability term.

    Per batch: CE(f(x), y) + λ · mean_i H(softmax f(x_i), softmax f(x_i + z_i)), z ~ N(0, σ²I);
    see the module docstring for the sources and for how it differs from ``stn``.
    """

    name = "stability"
    divergence_stat: ClassVar[str] = "xent"

    lam: float = field(
        default=2.0,
        metadata={
            "help": "weight λ of the stability term: KL(f(x) ‖ f(x+z)) for stn, the "
            "cross-entropy H(f(x), f(x+z)) for stability (unitless)"
        },
    )

    def divergence(self, clean: torch.Tensor, noisy: torch.Tensor) -> torch.Tensor:
        """Per-example H(softmax clean, softmax noisy), gradients through both."""
        return soft_cross_entropy(clean, noisy)
