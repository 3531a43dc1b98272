"""Accuracy of the base classifier on clean and Gaussian-noisy inputs, and the per-epoch
evaluation of a split (:func:`evaluate_split`, summed over ranks under DDP)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from smoothcert._util.seeding import derived_seed, rank_seed
from smoothcert.data import ImageDataset
from smoothcert.training import ddp
from smoothcert.training.config import TrainConfig


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


def evaluate_split(
    model: nn.Module,
    dataset: ImageDataset,
    name: str,
    eval_sigma: float | None,
    config: TrainConfig,
    epoch: int,
    stream: int,
    device: torch.device,
    ranks: ddp.Ranks | None = None,
) -> dict[str, Any]:
    """``{name}_acc`` and, when the method has σ, ``{name}_acc_noise`` at that σ (one noise
    draw per example, seeded per epoch and split) with ``eval_sigma``. Under DDP each rank
    evaluates every world-th example (its noise seeded per rank) and the counts are summed."""
    if ranks is None or not ranks.distributed:
        out: dict[str, Any] = {
            f"{name}_acc": accuracy(
                model, dataset, batch_size=config.eval_batch_size, device=device
            )
        }
        if eval_sigma:
            gen = torch.Generator(device=device)
            gen.manual_seed(derived_seed(config.seed, epoch, stream))
            out["eval_sigma"] = eval_sigma
            out[f"{name}_acc_noise"] = accuracy(
                model,
                dataset,
                sigma=eval_sigma,
                generator=gen,
                batch_size=config.eval_batch_size,
                device=device,
            )
        return out
    mine = range(ranks.rank, len(dataset), ranks.world)
    counts = [count_correct(model, dataset, mine, batch_size=config.eval_batch_size)]
    if eval_sigma:
        gen = torch.Generator(device=device)
        gen.manual_seed(rank_seed(config.seed, epoch, 0, stream, ranks.rank))
        counts.append(
            count_correct(
                model,
                dataset,
                mine,
                sigma=eval_sigma,
                generator=gen,
                batch_size=config.eval_batch_size,
            )
        )
    total = ddp.all_sum([float(c) for c in counts], device)
    out = {f"{name}_acc": total[0] / len(dataset)}
    if eval_sigma:
        out["eval_sigma"] = eval_sigma
        out[f"{name}_acc_noise"] = total[1] / len(dataset)
    return out
