"""Objectives for training denoisers, as pure per-batch functions.

- :func:`mse_loss`: the MSE objective of Salman et al. 2020 (§3.2, Eq. 4).
- :func:`stability_loss`: their stability objective (§3.2, Eq. 5), through a frozen classifier.
- :func:`diffusion_loss`: the simplified noise-prediction objective of a diffusion model
  (Ho et al. 2020, Eq. 14 and Algorithm 1), for the ε-networks of one-step diffusion denoising.

Each takes its randomness as an explicit ``generator`` (or the noise itself, for exact tests)
and returns a scalar tensor to minimize; none steps an optimizer or changes a module's mode.
Images are in [0, 1]; σ is the noise std in those units.

References
----------
.. [1] H. Salman, M. Sun, G. Yang, A. Kapoor, J. Z. Kolter, "Denoised Smoothing: A Provable
   Defense for Pretrained Classifiers", NeurIPS 2020.
.. [2] J. Ho, A. Jain, P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from smoothcert._util.checks import ParameterError, finite_real
from smoothcert.models.diffusion import NoiseSchedule

__all__ = [
    "DENOISER_METHOD_NAMES",
    "DENOISER_OBJECTIVES",
    "diffusion_loss",
    "is_denoiser_method",
    "mse_loss",
    "stability_loss",
]

#: The objectives by name (the ``--objective`` choices of a denoiser training command).
DENOISER_OBJECTIVES = ("mse", "stability", "diffusion")
#: Their method names in a training run's config ("denoiser-" + objective).
DENOISER_METHOD_NAMES = tuple(f"denoiser-{objective}" for objective in DENOISER_OBJECTIVES)


def is_denoiser_method(name: object) -> bool:
    """Whether ``name`` is a denoiser objective's method name (``denoiser-mse``, ...).

    Examples
    --------
    >>> is_denoiser_method("denoiser-mse"), is_denoiser_method("gaussian")
    (True, False)
    """
    return isinstance(name, str) and name in DENOISER_METHOD_NAMES


def _standard_noise(
    x: torch.Tensor, noise: torch.Tensor | None, generator: torch.Generator | None
) -> torch.Tensor:
    """ε ~ N(0, I) shaped like ``x``: ``noise`` when given (checked), else drawn."""
    if noise is None:
        return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)
    if not isinstance(noise, torch.Tensor) or noise.shape != x.shape:
        got = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
        raise ParameterError("noise", f"must be a tensor of x's shape {tuple(x.shape)}, got {got}")
    return noise.to(dtype=x.dtype, device=x.device)


def mse_loss(
    denoiser: nn.Module,
    x: torch.Tensor,
    sigma: float,
    *,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The MSE objective: mean over the batch and pixels of (D(x + δ) − x)², δ ~ N(0, σ²I).

    Salman et al. 2020, Eq. 4, L_MSE = E_δ ‖D(x + δ) − x‖²₂, averaged per pixel (as their
    training code reduces it) so its scale does not depend on the image size.

    Parameters
    ----------
    denoiser : torch.nn.Module
        D, [B, C, H, W] in [0, 1] to the same shape.
    x : torch.Tensor
        Clean images [B, C, H, W] in [0, 1].
    sigma : float
        Noise std σ > 0.
    noise : torch.Tensor, optional
        Standard normal ε of x's shape, so δ = σε; drawn from ``generator`` when absent.
    generator : torch.Generator, optional
        Source of ε.

    Returns
    -------
    torch.Tensor
        Scalar loss.

    Examples
    --------
    >>> x = torch.full((1, 1, 2, 2), 0.5)
    >>> float(mse_loss(nn.Identity(), x, 0.5, noise=torch.ones_like(x)))  # (σ·1)² per pixel
    0.25
    """
    sigma = finite_real("sigma", sigma, positive=True)
    eps = _standard_noise(x, noise, generator)
    return F.mse_loss(denoiser(x + sigma * eps), x)


def stability_loss(
    denoiser: nn.Module,
    classifier: nn.Module,
    x: torch.Tensor,
    sigma: float,
    *,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The stability objective: cross-entropy of f(D(x + δ)) against f's label of clean x.

    Salman et al. 2020, Eq. 5, L_Stab = E_δ ℓ_CE(F(D(x + δ)), f(x)), where f(x) is the frozen
    classifier's hard prediction argmax_c F(x)_c on the clean input (computed without
    gradients; their public training code also takes the argmax), averaged over the batch.

    Parameters
    ----------
    denoiser : torch.nn.Module
        D, [B, C, H, W] in [0, 1] to the same shape.
    classifier : torch.nn.Module
        f, images to logits; frozen: gradients flow through it to D, but only D's parameters
        should be given to the optimizer. Its mode (train/eval) is left as it is.
    x : torch.Tensor
        Clean images [B, C, H, W] in [0, 1].
    sigma : float
        Noise std σ > 0.
    noise : torch.Tensor, optional
        Standard normal ε of x's shape, so δ = σε; drawn from ``generator`` when absent.
    generator : torch.Generator, optional
        Source of ε.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    sigma = finite_real("sigma", sigma, positive=True)
    eps = _standard_noise(x, noise, generator)
    with torch.no_grad():
        target = classifier(x).argmax(dim=1)
    return F.cross_entropy(classifier(denoiser(x + sigma * eps)), target)


def diffusion_loss(
    eps_model: nn.Module,
    x: torch.Tensor,
    schedule: NoiseSchedule,
    *,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DDPM's simplified objective: mean of (ε − ε_θ(√ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, t))².

    Ho et al. 2020, Eq. 14 (Algorithm 1): x₀ = 2x − 1 (images on the [−1, 1] scale the
    network takes), t uniform on {0, …, T − 1}, ε ~ N(0, I); averaged over the batch and pixels.

    Parameters
    ----------
    eps_model : torch.nn.Module
        ε_θ(x_t, t), with t an int64 [B] tensor of 0-based timesteps.
    x : torch.Tensor
        Clean images [B, C, H, W] in [0, 1].
    schedule : NoiseSchedule
        The ᾱ_t (:mod:`smoothcert.models.diffusion`).
    t : torch.Tensor, optional
        [B] timesteps in [0, T − 1]; drawn uniformly from ``generator`` when absent.
    noise : torch.Tensor, optional
        ε of x's shape; drawn from ``generator`` (after t) when absent.
    generator : torch.Generator, optional
        Source of t and ε.

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    if not isinstance(schedule, NoiseSchedule):
        raise ParameterError("schedule", f"must be a NoiseSchedule, got {type(schedule).__name__}")
    batch = x.shape[0]
    if t is None:
        t = torch.randint(0, schedule.steps, (batch,), device=x.device, generator=generator)
    elif (
        not isinstance(t, torch.Tensor)
        or t.shape != (batch,)
        or t.is_floating_point()
        or int(t.min()) < 0
        or int(t.max()) >= schedule.steps
    ):
        raise ParameterError(
            "t", f"must be {batch} integer timesteps in [0, {schedule.steps - 1}], got {t!r}"
        )
    eps = _standard_noise(x, noise, generator)
    alpha_bar = torch.as_tensor(schedule.alpha_bar, dtype=torch.float64, device=x.device)[t]
    scale = alpha_bar.sqrt().to(x.dtype).view(-1, *[1] * (x.dim() - 1))
    spread = (1.0 - alpha_bar).sqrt().to(x.dtype).view(-1, *[1] * (x.dim() - 1))
    x_t = scale * (2.0 * x - 1.0) + spread * eps
    return F.mse_loss(eps_model(x_t, t.to(torch.int64)), eps)
