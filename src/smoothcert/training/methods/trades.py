"""TRADES (Zhang et al. 2019, "Theoretically principled trade-off between robustness and
accuracy", Eq. 5), L2 version.

Per batch:  CE(f(x), y) + β · KL( softmax f(x) ‖ softmax f(x') ),
x' ≈ argmax_{‖x'−x‖₂ ≤ ε, x' ∈ [0,1]} KL( f(x) ‖ f(x') ), found by ``steps`` normalized-gradient
steps of size ``inner_step_size`` (default 2ε/steps) from x + 0.001·N(0, I), each clamped to [0,1]
and projected onto the ball. The inner maximization runs with the model in eval mode and the
clean prediction fixed (detached), as in the authors' code; the outer loss in train mode, with
clean and adversarial inputs in separate forward passes (as the authors' code does), so batch
norm normalizes each with its own batch statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from smoothcert._util import checks
from smoothcert._util.torch_helpers import evaluating
from smoothcert.attacks.pgd import per_example, pgd_ascent, project_l2
from smoothcert.training.method import BatchContext, Method, MethodOutput, register
from smoothcert.training.methods.stn import kl_from_logits


def trades_adversary(
    model: nn.Module,
    x: torch.Tensor,
    eps: float,
    steps: int,
    step_size: float | None,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The inner maximization of TRADES (Eq. 5's sup), L2 ball, model in eval mode."""
    x = x.detach()
    eps_t = per_example(eps, x, "eps")
    alpha = per_example(
        2.0 * eps / max(steps, 1) if step_size is None else step_size, x, "step_size"
    )
    start = x + 0.001 * torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    with evaluating(model, inference=False):
        with torch.no_grad():
            clean = model(x)
        return pgd_ascent(
            x,
            eps_t,
            steps,
            alpha,
            lambda xa: kl_from_logits(clean, model(xa)),
            project_l2(x, start, eps_t),
        )


@register
@dataclass
class TRADES(Method):
    name = "trades"

    eps: float = field(
        default=0.5, metadata={"help": "L2 radius of the inner maximization (input units)"}
    )
    steps: int = field(default=10, metadata={"help": "steps of the inner maximization (count)"})
    inner_step_size: float | None = field(
        default=None,
        metadata={"help": "inner step length (input units)", "default_text": "2*eps/steps"},
    )
    beta: float = field(
        default=6.0,
        metadata={
            "help": "weight β of the robust KL term (unitless; the paper "
            "uses 6 on CIFAR-10, 1 on MNIST)"
        },
    )

    def __post_init__(self) -> None:
        checks.finite_real("eps", self.eps, nonnegative=True)
        checks.integer_at_least("steps", self.steps, 0)
        if self.inner_step_size is not None:
            checks.finite_real("inner_step_size", self.inner_step_size, positive=True)
        checks.finite_real("beta", self.beta, nonnegative=True)

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        x_adv = trades_adversary(
            model, x, self.eps, self.steps, self.inner_step_size, ctx.generator
        )
        # Two passes, not one over torch.cat([x, x_adv]): with batch norm a joint pass would
        # normalize clean inputs with statistics of the adversarial ones and vice versa.
        clean, adv = model(x), model(x_adv)
        ce = F.cross_entropy(clean, y)
        robust = kl_from_logits(clean, adv).mean()
        return MethodOutput(
            loss=ce + self.beta * robust,
            logits=clean.detach(),
            targets=y,
            stats={"ce": ce.item(), "kl": robust.item()},
        )
