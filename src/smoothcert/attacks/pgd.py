"""L2 projected gradient descent on a base classifier and on a smoothed classifier.

The attack of the NAL paper's evaluation (Section 5, "Attack parameters"; Madry et al. 2018,
Kurakin et al. 2018): K steps along the L2-normalized gradient of the loss at the true label,
step 2ε/K, each iterate clamped to [0,1] and projected back onto the ε-ball around x.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from smoothcert._util.torch_helpers import evaluating

_TINY = 1e-12  # below this a (rescaled) gradient norm is treated as zero

OBJECTIVES = ("smoothadv", "expected")


def per_example(value: float | torch.Tensor, x: torch.Tensor, name: str) -> torch.Tensor:
    """``value`` as a [B] tensor on x's device (a float is broadcast); must be finite, >= 0."""
    v = torch.as_tensor(value, dtype=x.dtype, device=x.device)
    if v.dim() == 0:
        v = v.expand(x.shape[0])
    if v.dim() != 1 or v.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} must be a number or a tensor of shape [{x.shape[0]}], got {tuple(v.shape)}"
        )
    if not torch.isfinite(v).all() or (v < 0).any():
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return v


def _view(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (x.dim() - 1)))


def l2_normalize(g: torch.Tensor) -> torch.Tensor:
    """Per-example g/‖g‖₂, safe for tiny gradients (a naive norm's underflow has
    been seen to change a reported robust accuracy from 26% to 2%).

    Squaring entries near 1e-20 underflows float32 to 0, so ‖g‖₂ computed naively is 0 and the
    direction is lost (or NaN). Rescaling by max|g| first keeps the direction exact; a gradient
    that is exactly zero gives a zero direction (no step) instead of NaN.
    """
    flat = g.flatten(1)
    scale = flat.abs().amax(dim=1, keepdim=True)
    safe_scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    unit = flat / safe_scale
    norm = unit.norm(dim=1, keepdim=True)
    unit = torch.where(norm > _TINY, unit / norm.clamp_min(_TINY), torch.zeros_like(unit))
    return unit.view_as(g)


def project_l2(x: torch.Tensor, x_adv: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Clamp to [0,1], then project onto {‖x' − x‖₂ ≤ ε} by radial scaling.

    Scaling δ by a factor ≤ 1 moves toward x ∈ [0,1]: a convex combination of two points in
    the box, so the result satisfies both constraints at once.
    """
    delta = x_adv.clamp(0.0, 1.0) - x
    norm = delta.flatten(1).norm(dim=1)
    factor = torch.where(norm > eps, eps / norm.clamp_min(_TINY), torch.ones_like(norm))
    return x + delta * _view(factor, x)


def _random_start(x: torch.Tensor, eps: torch.Tensor, generator) -> torch.Tensor:
    """A point drawn uniformly from the ε-ball around x (direction ~ N(0,I), radius ε·U^(1/d))."""
    d = x[0].numel()
    direction = l2_normalize(
        torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    )
    u = torch.rand(x.shape[0], dtype=x.dtype, device=x.device, generator=generator)
    return project_l2(x, x + direction * _view(eps * u.pow(1.0 / d), x), eps)


def pgd_ascent(
    x: torch.Tensor,
    eps: torch.Tensor,
    steps: int,
    step_size: torch.Tensor,
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    start: torch.Tensor,
    zero_grad_generator: torch.Generator | None = None,
    random_zero_grad: bool = False,
) -> torch.Tensor:
    """The L2 PGD loop: ascend ``loss_of`` (a per-example loss of x') from ``start``. With
    ``random_zero_grad``, an example whose gradient is exactly zero steps along a random
    unit direction (from ``zero_grad_generator``) instead of staying where it is."""
    x_adv = start
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(loss_of(x_adv).sum(), x_adv)
        direction = l2_normalize(grad)
        if random_zero_grad:
            direction = _random_where_zero(grad, direction, zero_grad_generator)
        x_adv = project_l2(x, x_adv.detach() + _view(step_size, x) * direction, eps)
    return x_adv.detach()


def _random_where_zero(grad: torch.Tensor, direction: torch.Tensor, generator) -> torch.Tensor:
    zero = grad.flatten(1).abs().amax(dim=1) == 0
    if not bool(zero.any()):
        return direction
    # drawn for the whole batch, so the stream does not depend on which examples are zero
    random = l2_normalize(
        torch.randn(grad.shape, dtype=grad.dtype, device=grad.device, generator=generator)
    )
    return torch.where(_view(zero, grad), random, direction)


def _check(x: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if x.dim() < 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be [B, ...] and y [B]; got {tuple(x.shape)}, {tuple(y.shape)}")


def _step_size(step_size, eps: torch.Tensor, steps: int, x: torch.Tensor) -> torch.Tensor:
    if step_size is None:
        return 2.0 * eps / max(steps, 1)  # the NAL paper's evaluation: η = 2ε/K
    return per_example(step_size, x, "step_size")


def pgd_l2(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | torch.Tensor,
    steps: int,
    step_size: float | torch.Tensor | None = None,
    random_start: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L2 PGD on the cross-entropy at the true labels ``y`` (NAL paper §5; Madry et al. 2018).

    x_{t+1} = Π_{B(x,ε) ∩ [0,1]^d}( x_t + α ∇ℓ(x_t)/‖∇ℓ(x_t)‖₂ ),  α = 2ε/steps by default.

    ``eps`` (and ``step_size``) are L2 radii in input units, a number or one per example.
    Returns the adversarial inputs (detached); ``x`` is not modified, the model runs in eval
    mode (restored afterwards) and its parameters get no ``.grad``. ε = 0 returns x.
    """
    _check(x, y, steps)
    x = x.detach()
    eps_t = per_example(eps, x, "eps")
    alpha = _step_size(step_size, eps_t, steps, x)
    start = _random_start(x, eps_t, generator) if random_start else x.clone()

    def loss_of(x_adv: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x_adv), y, reduction="none")

    with evaluating(model, inference=False):
        return pgd_ascent(x, eps_t, steps, alpha, loss_of, start)


def smoothed_loss(
    model: nn.Module,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    noise: torch.Tensor,
    objective: str,
) -> torch.Tensor:
    """Per-example loss of the smoothed classifier at x_adv with the draws ``noise`` [B, m, ...].

    - "smoothadv" (Salman et al. 2019, Eq. for the soft smoothed classifier):
      −log( (1/m) Σ_j softmax(f(x' + z_j))_y ), one δ shared by the m copies.
    - "expected" (Cohen et al. 2019, App. J.3): (1/m) Σ_j CE(f(x' + z_j), y), so the gradient is
      the average of the copies' gradients.
    """
    batch, m = noise.shape[:2]
    noisy = (x_adv.unsqueeze(1) + noise).reshape(batch * m, *x_adv.shape[1:])
    logits = model(noisy)
    if objective == "expected":
        return (
            F.cross_entropy(logits, y.repeat_interleave(m), reduction="none").view(batch, m).mean(1)
        )
    log_probs = F.log_softmax(logits, dim=1).view(batch, m, -1)
    # log of the mean of softmaxes, computed stably as logsumexp − log m
    log_mean = torch.logsumexp(log_probs, dim=1) - torch.log(torch.tensor(float(m)))
    return F.nll_loss(log_mean, y, reduction="none")


def draw_noise(x: torch.Tensor, sigma: float, num_noise: int, generator) -> torch.Tensor:
    """``num_noise`` Gaussian draws per example: [B, num_noise, ...], std ``sigma``."""
    shape = (x.shape[0], num_noise, *x.shape[1:])
    return sigma * torch.randn(shape, dtype=x.dtype, device=x.device, generator=generator)


def pgd_l2_smoothed(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float | torch.Tensor,
    steps: int,
    sigma: float,
    num_noise: int,
    objective: str = "smoothadv",
    generator: torch.Generator | None = None,
    step_size: float | torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    random_start: bool = False,
    random_zero_grad: bool = False,
) -> torch.Tensor:
    """L2 PGD on the smoothed classifier (Salman et al. 2019, SmoothAdv; Cohen et al. App. J.3).

    Maximizes ``smoothed_loss`` over δ with ‖δ‖₂ ≤ ε, x + δ ∈ [0,1]: δ from 0, ``steps`` steps
    of size 2ε/steps along the normalized gradient. By default each step draws ``num_noise``
    fresh copies z ~ N(0, σ²I) from ``generator``; passing ``noise`` [B, m, ...] fixes the draws
    for every step instead (what SmoothAdv's training code does, which then trains on x' + the
    same draws). With ``random_zero_grad`` an example whose gradient is exactly zero steps
    along a random direction from ``generator`` (SmoothAdv's attack). Same guarantees as
    :func:`pgd_l2` (eval mode, no parameter grads, x intact).
    """
    _check(x, y, steps)
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if num_noise < 1:
        raise ValueError(f"num_noise must be >= 1, got {num_noise}")
    if noise is not None and (noise.shape[0] != x.shape[0] or noise.shape[2:] != x.shape[1:]):
        raise ValueError(f"noise must be [B, m, ...] matching x, got {tuple(noise.shape)}")
    x = x.detach()
    eps_t = per_example(eps, x, "eps")
    alpha = _step_size(step_size, eps_t, steps, x)
    start = _random_start(x, eps_t, generator) if random_start else x.clone()

    def loss_of(x_adv: torch.Tensor) -> torch.Tensor:
        z = noise if noise is not None else draw_noise(x_adv, sigma, num_noise, generator)
        return smoothed_loss(model, x_adv, y, z, objective)

    with evaluating(model, inference=False):
        return pgd_ascent(
            x, eps_t, steps, alpha, loss_of, start, generator, random_zero_grad=random_zero_grad
        )
