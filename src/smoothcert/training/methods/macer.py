"""MACER (Zhai et al. 2020, "MACER: attack-free and scalable robust training via maximizing
certified radius", ICLR), Algorithm 1.

Per batch, for each example x draw m copies z_1..z_m ~ N(0, σ²I) and minimize

    l_C + λ · l_R,
    l_C = −log ĝ_y(x),                    ĝ(x) = (1/m) Σ_j softmax f(x + z_j)
    l_R = (σ/2) · max(0, γ − ξ(x)) · 1[x ∈ Ĝ],
    ξ(x) = Φ⁻¹(g̃_y(x)) − Φ⁻¹(max_{c≠y} g̃_c(x)),   g̃(x) = (1/m) Σ_j softmax(β · f(x + z_j)),

averaged over the batch (l_R is summed over the examples it applies to and divided by the
batch size B, as the authors' code does). Ĝ, the examples the hinge applies to, are those
the β-smoothed soft classifier g̃ gets right (argmax_c g̃_c = y) with both Φ⁻¹ values finite;
σ/2 · ξ is the soft certified radius of g̃ (Cohen et al.'s radius with p_A, p_B replaced by the
soft scores), so the hinge pushes radii below σγ/2 up. The inverse temperature β applies to
the radius term only; l_C uses the plain softmax.

Choices the paper leaves open, from the authors' code (RuntianZ/macer ``macer.py``, the same
function in jh-jeong/smoothing-consistency ``code/third_party/macer.py``):

- Ĝ drops examples where ξ is not finite (g̃_y rounds to 1 or the runner-up to 0), and the
  hinge is taken over examples with ξ ≤ γ only (the others contribute 0).
- Defaults m = 16, λ = 12, γ = 8, β = 16 (their script's defaults, CIFAR-10 σ = 0.25).
  Jeong & Shin's published MACER runs: MNIST λ = 16 (σ = 0.25, 0.5), λ = 6 (σ = 1.0), γ = 8,
  β = 16, m = 16, deferred; CIFAR-10 ResNet-20 σ = 0.5: λ = 4.
- Deferred start (Jeong & Shin's ``--deferred``, their MNIST runs): λ = 0, so l_C alone, for
  the first ``deferred_epochs`` epochs. Their code tests ``epoch <= lr_step_size`` (31 epochs
  at step size 30) and its first learning-rate drop also comes at epoch 31 (its scheduler is
  stepped with the finished epoch's index); smoothcert's step schedule drops at epoch
  ``step_size``, so ``--deferred-epochs 30 --step-size 30`` starts the radius term at the first
  drop, as theirs does.

Numerics: log ĝ_y is logsumexp_j log softmax − log m (exact; the authors add 1e-10 inside the
log, which caps the loss near 23 for a confidently wrong example); Φ⁻¹(p) = √2 erfinv(2p − 1)
in float32 (the loop hands methods float32 logits under every precision).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from smoothcert._util import checks
from smoothcert.attacks.pgd import draw_noise
from smoothcert.training.method import BatchContext, Method, MethodOutput, register
from smoothcert.training.methods.consistency import copies_log_probs


def normal_icdf(p: torch.Tensor) -> torch.Tensor:
    """Φ⁻¹(p), the standard normal quantile, differentiable (±inf at 0 and 1)."""
    return math.sqrt(2.0) * torch.erfinv(2.0 * p - 1.0)


def macer_hinge(
    logits: torch.Tensor, y: torch.Tensor, beta: float, margin: float
) -> tuple[torch.Tensor, int]:
    """Σ over Ĝ of max(0, γ − ξ) (without the σ/2), and |Ĝ ∩ {ξ ≤ γ}|; logits [B, m, C]."""
    scores = F.softmax(beta * logits, dim=2).mean(1)
    top, index = scores.topk(2, dim=1)
    with torch.no_grad():  # which examples the hinge applies to
        xi = normal_icdf(top[:, 0]) - normal_icdf(top[:, 1])
        active = (index[:, 0] == y) & torch.isfinite(xi) & (xi <= margin)
    # Φ⁻¹ again on those only: where it is infinite its gradient is too, and a masked-out
    # infinite gradient would still turn the parameters' gradients into NaN (inf · 0)
    kept = top[active]
    xi = normal_icdf(kept[:, 0]) - normal_icdf(kept[:, 1])
    return (margin - xi).sum(), int(active.sum())


@register
@dataclass
class MACER(Method):
    """MACER (Zhai et al. 2020, Algorithm 1); see the module docstring."""

    name = "macer"

    sigma: float = field(
        default=0.25,
        metadata={"help": "std of the Gaussian noise (input units, pixels in [0,1])"},
    )
    num_noise: int = field(default=16, metadata={"help": "noise copies m per example (count)"})
    lam: float = field(default=12.0, metadata={"help": "weight λ of the radius hinge (unitless)"})
    margin: float = field(
        default=8.0,
        metadata={
            "help": "MACER's hinge margin γ on ξ = Φ⁻¹(top score) − Φ⁻¹(runner-up), in "
            "standard-normal quantile units (radius σγ/2)"
        },
    )
    beta: float = field(
        default=16.0,
        metadata={
            "help": "β (unitless): macer: inverse temperature of the softmax in the radius "
            "term; trades: weight of the robust KL term (the paper: 6 on CIFAR-10, 1 on MNIST)"
        },
    )
    deferred_epochs: int = field(
        default=0,
        metadata={
            "help": "epochs trained with λ = 0 (the smoothed cross-entropy alone) before the "
            "radius term starts; Jeong & Shin's MNIST runs: 30 with --step-size 30 (epochs)"
        },
    )

    def __post_init__(self) -> None:
        checks.finite_real("sigma", self.sigma, positive=True)  # the radius is σ/2·ξ
        checks.positive_int("num_noise", self.num_noise)
        checks.finite_real("lam", self.lam, nonnegative=True)
        checks.finite_real("margin", self.margin, positive=True)
        checks.finite_real("beta", self.beta, positive=True)
        checks.integer_at_least("deferred_epochs", self.deferred_epochs, 0)

    def weight(self, epoch: int) -> float:
        """λ at ``epoch`` (0-based): 0 during the deferred start, then λ."""
        return 0.0 if epoch < self.deferred_epochs else self.lam

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        noise = draw_noise(x, self.sigma, self.num_noise, ctx.generator)
        batch, m = noise.shape[:2]
        logits = model((x.unsqueeze(1) + noise).reshape(batch * m, *x.shape[1:]))
        _, log_mean = copies_log_probs(logits, batch)
        classification = F.nll_loss(log_mean, y)
        lam = self.weight(ctx.epoch)
        loss = classification
        stats = {"ce": classification.item(), "lam": lam}
        if lam > 0:
            hinge, active = macer_hinge(logits.view(batch, m, -1), y, self.beta, self.margin)
            robust = (self.sigma / 2) * hinge / batch
            loss = loss + lam * robust
            stats.update({"robust": robust.item(), "hinge_frac": active / batch})
        else:
            stats.update({"robust": 0.0, "hinge_frac": 0.0})
        # the running accuracy is that of the smoothed soft classifier ĝ, one row per example
        return MethodOutput(loss=loss, logits=log_mean.detach(), targets=y, stats=stats)
