"""Consistency regularization (Jeong & Shin 2020, "Consistency regularization for certified
robustness of smoothed classifiers", NeurIPS), alone or on SmoothAdv's adversarial inputs.

Per batch, for each example x draw m copies z_1..z_m ~ N(0, σ²I), let p_j = softmax f(x' + z_j)
and p̂ = (1/m) Σ_j p_j, and minimize (the paper's §3 objective: the m-copy classification
loss plus the consistency regularizer L^con)

    (1/m) Σ_j CE(f(x' + z_j), y)  +  λ · (1/m) Σ_j KL(p̂ ‖ p_j)  +  η · H(p̂),

averaged over the batch, where x' = x (Gaussian augmentation, "Cohen + Consistency") or, with
``adversarial``, x' = x + δ from SmoothAdv's attack (Salman et al. 2019) on the soft smoothed
classifier −log p̂_y over the same m draws ("SmoothAdv + Consistency"). H(p̂) = −Σ_c p̂_c log p̂_c.

Choices the paper leaves open, from the authors' code (jh-jeong/smoothing-consistency,
``code/consistency.py`` and ``code/train_consistency.py``):

- KL direction: KL(p̂ ‖ p_j), the mean as the first argument; p̂ is not detached, so gradients
  flow through the mean too; the entropy is that of the mean prediction.
- All m copies enter the cross-entropy (mean over the B·m noisy inputs), one forward pass.
- Defaults m = 2, λ = 10, η = 0.5 (their MNIST σ = 0.25 and CIFAR-10 runs; their other
  published runs: λ = 5 at MNIST σ = 0.5, 1.0; λ = 20 CIFAR-10 σ = 0.25; with SmoothAdv,
  m = 4, λ = 1 on MNIST, m = 4, λ = 2 / m = 2, λ = 1 on CIFAR-10).
- The adversarial variant: δ from 0, T steps of 2ε_t/T along the normalized gradient, one δ
  shared by the m copies, the same draws in the attack and the loss, model in eval mode; ε_t
  grows linearly, ε_t = ε·min(1, (epoch + 1)/w); no random step where the gradient is zero
  (unlike their SmoothAdv script). Their script's defaults: ε = 512/256 = 2.0, T = 4, w = 10;
  their MNIST runs: ε = 255/256, T = 10. smoothcert's projection clamps to [0,1] first and
  then scales onto the ball (theirs scales, then clamps, which can leave the ball's surface
  slightly inside); :func:`smoothcert.attacks.pgd.pgd_l2_smoothed` does the attack.
- Their script splits each loaded batch of B examples into m mini-batches of B/m (one
  optimizer step each); here one step sees the whole batch, so ``--batch-size B/m`` matches
  their steps. m need not divide the batch: every example gets its own m copies.

Numerics: log p̂ is computed as logsumexp_j log p_j − log m (exact; the authors clamp p̂ at
1e-20 before the log, which only matters below that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from smoothcert._util import checks
from smoothcert.attacks.pgd import draw_noise, pgd_l2_smoothed
from smoothcert.training.method import BatchContext, Method, MethodOutput, register
from smoothcert.training.methods.smoothadv import warmup_epsilon


def copies_log_probs(logits: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """log p_j [B, m, C] of the copies (logits ordered example-major) and log p̂ [B, C]."""
    log_p = F.log_softmax(logits, dim=1).view(batch, -1, logits.shape[1])
    log_mean = torch.logsumexp(log_p, dim=1) - math.log(log_p.shape[1])
    return log_p, log_mean


@register
@dataclass
class Consistency(Method):
    """Consistency regularization (Jeong & Shin 2020, §3); see the module docstring."""

    name = "consistency"

    sigma: float = field(
        default=0.25,
        metadata={"help": "std of the Gaussian noise (input units, pixels in [0,1])"},
    )
    num_noise: int = field(
        default=2, metadata={"help": "noise copies per example (m; NAL's s) (count)"}
    )
    lam: float = field(
        default=10.0,
        metadata={
            "help": "weight λ of the method's regularizer (unitless): consistency: KL of each "
            "copy to the mean prediction; macer: the radius hinge; stability: cross-entropy "
            "H(f(x), f(x+z)); stn: KL(f(x) ‖ f(x+z))"
        },
    )
    eta: float = field(
        default=0.5,
        metadata={
            "help": "weight η (unitless): consistency: of the entropy of the mean prediction; "
            "smoothmix: of the mixup loss"
        },
    )
    adversarial: bool = field(
        default=False,
        metadata={
            "help": "consistency on SmoothAdv's adversarial inputs x + δ (--eps, --steps, "
            "--warmup-epochs) instead of x"
        },
    )
    eps: float = field(
        default=2.0,
        metadata={"help": "L2 radius of the inner attack after warm-up (input units)"},
    )
    steps: int = field(
        default=4,
        metadata={"help": "steps of the inner attack or ascent (T; NAL's and WRM's K) (count)"},
    )
    warmup_epochs: int = field(
        default=10,
        metadata={
            "help": "epochs over which the method's warm-up grows linearly: smoothadv and "
            "consistency: ε; smoothmix: η and the one-step adversary's radius (epochs)"
        },
    )

    def __post_init__(self) -> None:
        checks.finite_real("sigma", self.sigma, nonnegative=True)
        # the consistency term compares copies
        checks.integer_at_least("num_noise", self.num_noise, 2)
        checks.finite_real("lam", self.lam, nonnegative=True)
        checks.finite_real("eta", self.eta, nonnegative=True)
        checks.boolean("adversarial", self.adversarial)
        checks.finite_real("eps", self.eps, nonnegative=True)
        checks.integer_at_least("steps", self.steps, 0)
        checks.integer_at_least("warmup_epochs", self.warmup_epochs, 0)

    def epsilon(self, epoch: int) -> float:
        """ε_t of the linear warm-up: ε·min(1, (epoch + 1)/w) (0-based epoch), as SmoothAdv."""
        return warmup_epsilon(self.eps, self.warmup_epochs, epoch)

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        noise = draw_noise(x, self.sigma, self.num_noise, ctx.generator)
        stats: dict[str, float] = {}
        x_in = x
        if self.adversarial:
            eps = self.epsilon(ctx.epoch)
            stats["eps"] = eps
            if eps > 0 and self.steps > 0:
                x_in = pgd_l2_smoothed(
                    model, x, y, eps, self.steps, self.sigma, self.num_noise, noise=noise
                )
        batch, m = noise.shape[:2]
        logits = model((x_in.unsqueeze(1) + noise).reshape(batch * m, *x.shape[1:]))
        targets = y.repeat_interleave(m)
        ce = F.cross_entropy(logits, targets)
        log_p, log_mean = copies_log_probs(logits, batch)
        mean = log_mean.exp()
        # KL(p̂ ‖ p_j) per copy, averaged over the copies and the batch
        kl = (mean.unsqueeze(1) * (log_mean.unsqueeze(1) - log_p)).sum(2).mean()
        entropy = -(mean * log_mean).sum(1).mean()
        stats.update({"ce": ce.item(), "kl": kl.item(), "entropy": entropy.item()})
        return MethodOutput(
            loss=ce + self.lam * kl + self.eta * entropy,
            logits=logits.detach(),
            targets=targets,
            stats=stats,
        )
