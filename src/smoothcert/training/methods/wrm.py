"""WRM (Sinha, Namkoong, Duchi 2018, "Certifying some distributional robustness with
principled adversarial training", Eq. 2 and Algorithm 1).

Per batch: for each x0, approximately solve  x' = argmax_x  ℓ(θ; x) − γ ‖x − x0‖²  by gradient
ascent (:func:`smoothcert.distributional.surrogate_ascent` with σ = 0, s = 1; no clipping), then
minimize ℓ(θ; x') on the adversarial points only. The default schedule is the authors'
public one, rewritten for F(x) = ℓ − γ‖x − x0‖²: start at x0 + (0.5/γ)∇ℓ(x0) and take
``steps`` steps x ← x + (0.5/γ)/√(k+2) · ∇F(x); a number ``inner_step_size`` gives constant steps
instead. Meant for smooth networks (the ``-elu`` architectures): the inner problem is strongly
concave only when ∇ℓ is Lipschitz with constant below 2γ.

The training loss uses label smoothing 0.1 as the authors' MNIST training script does: the
targets are clipped to [0.1/(K − 1), 0.9], i.e. 0.9 on the label and 0.1/(K − 1) elsewhere
(``label_smoothing``; 0 for hard labels). The inner ascent attacks the hard label.

Logged per batch: ``rho`` = ``rho_adv`` = mean ‖x' − x0‖² (there is no noise), so that
ε = √rho_adv matches attack budgets across methods (NAL paper, Eq. 8 and Table 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from smoothcert._util import checks
from smoothcert._util.torch_helpers import evaluating
from smoothcert.distributional.ascent import LossFn, cross_entropy_per_example, surrogate_ascent
from smoothcert.training.method import BatchContext, Method, MethodOutput, register


def wrm_adversary(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    gamma: float,
    steps: int,
    step_size: float | None = None,
    loss_fn: LossFn = cross_entropy_per_example,
) -> torch.Tensor:
    """The inner maximizer of WRM's Lagrangian surrogate (Sinha et al., Eq. 2), detached."""
    common = dict(gamma=gamma, sigma=0.0, num_noise=1, diagnostics=False, loss_fn=loss_fn)
    if step_size is not None:
        return surrogate_ascent(model, x0, y, steps=steps, step_size=step_size, **common).x
    eta = 0.5 / gamma
    # Start: x0 + η∇ℓ(x0), i.e. one step of size η on F from x0 (the cost's gradient is 0 there).
    init = surrogate_ascent(model, x0, y, steps=1, step_size=eta, **common).x
    return surrogate_ascent(
        model, x0, y, steps=steps, step_size=lambda k: eta / (k + 2) ** 0.5, init=init, **common
    ).x


def smoothed_cross_entropy(logits: torch.Tensor, y: torch.Tensor, eps: float) -> torch.Tensor:
    """Mean cross-entropy against targets 1 − ε on the label and ε/(K − 1) on each other class
    (the clipped one-hot labels of the authors' script). torch's ``label_smoothing`` = s puts
    1 − s + s/K on the label, so s = ε·K/(K − 1) gives the same targets."""
    k = logits.shape[1]
    return F.cross_entropy(logits, y, label_smoothing=eps * k / (k - 1) if eps else 0.0)


@register
@dataclass
class WRM(Method):
    name = "wrm"

    gamma: float = field(
        default=0.385,
        metadata={
            "help": "penalty γ on the transport cost ‖x − x0‖² (1/input units²; the "
            "authors' MNIST value 1/(2·1.3))"
        },
    )
    steps: int = field(default=15, metadata={"help": "ascent steps of the inner problem (count)"})
    inner_step_size: float | None = field(
        default=None,
        metadata={
            "help": "constant ascent step on F (input units² per unit loss)",
            "default_text": "the schedule (0.5/gamma)/sqrt(k+2) from x0 + (0.5/gamma)∇ℓ(x0)",
        },
    )

    label_smoothing: float = field(
        default=0.1,
        metadata={
            "help": "probability mass ε moved off the label in the training targets "
            "(0.9 / (0.1/(K-1)) for the authors' 0.1; 0: hard labels)"
        },
    )

    def __post_init__(self) -> None:
        checks.probability("label_smoothing", self.label_smoothing, allow_zero=True)
        checks.finite_real("gamma", self.gamma, positive=True)
        checks.integer_at_least("steps", self.steps, 0)
        if self.inner_step_size is not None:
            checks.finite_real("inner_step_size", self.inner_step_size, positive=True)

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        # The adversary attacks the model as deployed: eval mode, restored for the outer step.
        with evaluating(model, inference=False):
            x_adv = wrm_adversary(model, x, y, self.gamma, self.steps, self.inner_step_size)
        logits = model(x_adv)
        cost = (x_adv - x).flatten(1).pow(2).sum(1).mean().item()
        return MethodOutput(
            loss=smoothed_cross_entropy(logits, y, self.label_smoothing),
            logits=logits.detach(),
            targets=y,
            stats={"rho": cost, "rho_adv": cost},
        )
