"""Accuracy of the base classifier on clean and Gaussian-noisy inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from smoothcert.data import ImageDataset


@torch.no_grad()
def accuracy(
    model: nn.Module,
    dataset: ImageDataset,
    *,
    sigma: float = 0.0,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
    device: torch.device | str | None = None,
) -> float:
    """Fraction of ``dataset`` with argmax f(x + ε) = y, ε ~ N(0, σ²I) (ε = 0 when σ = 0).

    This is the base classifier's accuracy under noise, the quantity Gaussian augmentation
    raises (Cohen et al. §3.3), not the smoothed classifier's accuracy.
    """
    indices = range(len(dataset))
    correct = count_correct(
        model,
        dataset,
        indices,
        sigma=sigma,
        generator=generator,
        batch_size=batch_size,
        device=device,
    )
    return correct / max(len(dataset), 1)


@torch.no_grad()
def count_correct(
    model: nn.Module,
    dataset: ImageDataset,
    indices: Sequence[int],
    *,
    sigma: float = 0.0,
    generator: torch.Generator | None = None,
    batch_size: int = 500,
    device: torch.device | str | None = None,
) -> int:
    """How many of ``dataset[indices]`` have argmax f(x + ε) = y (one noise draw each, from
    ``generator``, in the order of ``indices``): one rank's share of a sharded evaluation."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    if sigma > 0 and generator is None:
        raise ValueError("a generator is required when sigma > 0")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(indices), batch_size):
        x, y = dataset.batch(indices[start : start + batch_size])
        x, y = x.to(device), y.to(device)
        if sigma > 0:
            x = x + sigma * torch.randn(x.shape, dtype=x.dtype, device=device, generator=generator)
        correct += int((model(x).argmax(1) == y).sum())
    model.train(was_training)
    return correct
