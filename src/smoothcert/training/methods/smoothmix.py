"""SmoothMix (Jeong, Park, Kim, Lee, Kim, Shin 2021, "SmoothMix: training confidence-calibrated
smoothed classifiers for certified robustness", NeurIPS), §3.

Per batch, for each example x draw m copies z_1..z_m ~ N(0, σ²I), shared by every step below.

1. The adversary of the smoothed classifier (the paper's Eq. for x̂_T): T steps of
   x_{t+1} = clamp_[0,1]( x_t + α · ∇ℓ(x_t)/‖∇ℓ(x_t)‖₂ ),  x_0 = x,
   ℓ(x') = −log( (1/m) Σ_j softmax f(x' + z_j) )_y   (the soft smoothed classifier's loss),
   the model in eval mode. The clean side of the mix is x̃ = x (``mix_step = 0``) or the
   "one-step adversary" x̃ = x_s at s = ``mix_step``, projected onto the L2 ball of radius
   w_t · ``mix_max_norm`` around x (default α·s).
2. Mixup along the path to the adversary: λ ~ U(0, ½) per example,
   x_mix = (1 − λ) x̃ + λ x_T,   ŷ_mix = (1 − λ) p̂(x̃) + λ · 1/C,
   p̂(x̃) = (1/m) Σ_j softmax f(x̃ + z_j), the smoothed prediction at the clean side.
3. The loss (the paper's L_SmoothMix):
   (1/m) Σ_j CE(f(x̃ + z_j), y)
       + η · w_t · 1[argmax p̂(x̃) = y] · (1/m) Σ_j KL(ŷ_mix ‖ softmax f(x_mix + z_j)),
   averaged over the batch, with w_t = min(1, (epoch + 1)/``warmup_epochs``).

Choices the paper leaves open, from the authors' code (jh-jeong/smoothmix ``code/train.py``):

- The cross-entropy is on the clean side x̃ (so on the one-step adversary when s = 1), over all
  m copies; the indicator uses p̂(x̃); ŷ_mix is not detached (gradients flow through p̂(x̃)).
- The adversary's steps have fixed length α (no ε-ball unless ``max_norm`` is given) and are
  not warmed up; the warm-up w_t scales η and the one-step adversary's radius only.
- The same m draws serve the attack, the clean side and the mixed inputs.
- Defaults m = 2, T = 4, α = 0.5, η = 5, s = 0: their CIFAR-10 σ = 0.25 run. Others they
  publish: CIFAR-10 σ = 0.5: α = 1.0 (m = 2, T = 4, η = 5); MNIST (m = 4, α = 1.0, η ∈ {1, 5},
  s ∈ {0, 1}): T = 3 (σ = 0.25; T = 2 with η = 5), 4 (σ = 0.5), 8 (σ = 1.0).
- Their script splits each loaded batch of B examples into m mini-batches of B/m (one
  optimizer step each); here one step sees the whole batch, so ``--batch-size B/m`` matches
  their steps. m need not divide the batch: every example gets its own m copies.

Numerics: the attack's log-mean is logsumexp − log m (the authors clamp the mean at 1e-20);
the gradient is normalized safely (:func:`smoothcert.attacks.pgd.l2_normalize`; theirs divides
by ‖g‖ + 1e-8); a ball, when given, is applied after clamping (theirs before).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from smoothcert._util import checks
from smoothcert._util.torch_helpers import evaluating
from smoothcert.attacks.pgd import (
    draw_noise,
    l2_normalize,
    per_example,
    project_l2,
    smoothed_loss,
)
from smoothcert.training.method import BatchContext, Method, MethodOutput, register
from smoothcert.training.methods.consistency import copies_log_probs


def _to_ball(x: torch.Tensor, x_adv: torch.Tensor, radius: float | None) -> torch.Tensor:
    """Clamp to [0,1] and, when ``radius`` is given, scale onto the L2 ball around x."""
    if radius is None:
        return x_adv.clamp(0.0, 1.0)
    return project_l2(x, x_adv, per_example(radius, x, "radius"))


def smoothmix_adversary(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    noise: torch.Tensor,
    steps: int,
    alpha: float,
    mix_step: int,
    max_norm: float | None = None,
    mix_radius: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean side x̃, adversary x_T) of SmoothMix's step 1, model in eval mode, both detached.

    ``noise`` [B, m, ...] is used at every step; x̃ is the iterate after ``mix_step`` steps
    projected onto the ball of radius ``mix_radius`` around x (x itself when mix_step = 0).
    """
    x = x.detach()
    x_adv, clean_side = x, x
    with evaluating(model, inference=False):
        for t in range(steps):
            if t == mix_step:
                clean_side = x_adv
            x_adv = x_adv.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = smoothed_loss(model, x_adv, y, noise, "smoothadv").sum()
                (grad,) = torch.autograd.grad(loss, x_adv)
            x_adv = _to_ball(x, x_adv.detach() + alpha * l2_normalize(grad), max_norm)
    return _to_ball(x, clean_side, mix_radius).detach(), x_adv.detach()


@register
@dataclass
class SmoothMix(Method):
    """SmoothMix (Jeong et al. 2021, §3); see the module docstring."""

    name = "smoothmix"

    sigma: float = field(
        default=0.25,
        metadata={"help": "std of the Gaussian noise (input units, pixels in [0,1])"},
    )
    num_noise: int = field(default=2, metadata={"help": "noise copies m per example (count)"})
    steps: int = field(default=4, metadata={"help": "steps T of the inner attack (count)"})
    alpha: float = field(
        default=0.5,
        metadata={"help": "SmoothMix: L2 length α of each adversary step (input units)"},
    )
    eta: float = field(default=5.0, metadata={"help": "weight η of the mixup loss (unitless)"})
    mix_step: int = field(
        default=0,
        metadata={
            "help": "SmoothMix: the adversary iterate used as the clean side of the mix: 0 = "
            "x, 1 = the one-step adversary (steps, 0 <= mix_step < --steps)"
        },
    )
    max_norm: float | None = field(
        default=None,
        metadata={
            "help": "SmoothMix: L2 ball the adversary is projected onto (input units)",
            "default_text": "no ball",
        },
    )
    mix_max_norm: float | None = field(
        default=None,
        metadata={
            "help": "SmoothMix: L2 radius of the one-step adversary's ball, before warm-up "
            "(input units)",
            "default_text": "alpha*mix_step",
        },
    )
    warmup_epochs: int = field(
        default=10,
        metadata={"help": "epochs over which η and the mix radius grow linearly (epochs)"},
    )

    def __post_init__(self) -> None:
        checks.finite_real("sigma", self.sigma, nonnegative=True)
        checks.positive_int("num_noise", self.num_noise)
        checks.positive_int("steps", self.steps)
        checks.finite_real("alpha", self.alpha, positive=True)
        checks.finite_real("eta", self.eta, nonnegative=True)
        mix_step = checks.integer_at_least("mix_step", self.mix_step, 0)
        if mix_step >= self.steps:
            raise checks.ParameterError(
                "mix_step", f"must be in 0..steps-1 = 0..{self.steps - 1}, got {self.mix_step!r}"
            )
        if self.max_norm is not None:
            checks.finite_real("max_norm", self.max_norm, positive=True)
        if self.mix_max_norm is not None:
            checks.finite_real("mix_max_norm", self.mix_max_norm, nonnegative=True)
        checks.integer_at_least("warmup_epochs", self.warmup_epochs, 0)

    def warmup(self, epoch: int) -> float:
        """w_t = min(1, (epoch + 1)/warmup_epochs) (0-based epoch; 1 without warm-up)."""
        if self.warmup_epochs == 0:
            return 1.0
        return min(1.0, (epoch + 1) / self.warmup_epochs)

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        w = self.warmup(ctx.epoch)
        mix_norm = self.alpha * self.mix_step if self.mix_max_norm is None else self.mix_max_norm
        noise = draw_noise(x, self.sigma, self.num_noise, ctx.generator)
        clean_side, x_adv = smoothmix_adversary(
            model, x, y, noise, self.steps, self.alpha, self.mix_step,
            self.max_norm, w * mix_norm,
        )  # fmt: skip
        batch, m = noise.shape[:2]
        shape = (batch * m, *x.shape[1:])
        logits = model((clean_side.unsqueeze(1) + noise).reshape(shape))
        targets = y.repeat_interleave(m)
        ce = F.cross_entropy(logits, targets)
        _, log_mean = copies_log_probs(logits, batch)
        mean = log_mean.exp()  # p̂(x̃), not detached (the authors' code)
        lam = torch.rand(batch, dtype=x.dtype, device=x.device, generator=ctx.generator) / 2
        lam_x = lam.view(-1, *([1] * (x.dim() - 1)))
        x_mix = (1 - lam_x) * clean_side + lam_x * x_adv
        soft = (1 - lam[:, None]) * mean + lam[:, None] / mean.shape[1]
        log_q = F.log_softmax(model((x_mix.unsqueeze(1) + noise).reshape(shape)), dim=1)
        log_q = log_q.view(batch, m, -1)
        kl = (torch.xlogy(soft, soft).unsqueeze(1) - soft.unsqueeze(1) * log_q).sum(2)  # [B, m]
        right = (mean.argmax(1) == y).to(kl.dtype)
        mix = (right[:, None] * kl).mean()
        return MethodOutput(
            loss=ce + self.eta * w * mix,
            logits=logits.detach(),
            targets=targets,
            stats={
                "ce": ce.item(),
                "mix": mix.item(),
                "adv_dist": (x_adv - x).flatten(1).norm(dim=1).mean().item(),
            },
        )
