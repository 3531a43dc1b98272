"""Training augmentation as batch transforms with an explicit generator."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Random crop after zero padding by ``padding`` pixels, then a horizontal flip with prob. ½.

    The standard CIFAR augmentation (He et al. 2016, §4.2), one random offset and flip per
    image, drawn from ``generator`` (on x's device) so a seeded run is reproducible.
    """
    b, _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=x.device)
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=generator, device=x.device)
    flip = torch.rand(b, generator=generator, device=x.device) < 0.5
    # Gather rows/cols with per-image offsets: index grids of shape [B, H] and [B, W].
    rows = dy[:, None] + torch.arange(h, device=x.device)[None]
    cols = dx[:, None] + torch.arange(w, device=x.device)[None]
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[bi, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    if kind == "none":
        return x
    if kind == "crop-flip":
        return random_crop_flip(x, generator)
    raise ValueError(f"unknown augmentation {kind!r}; choose none or crop-flip")
