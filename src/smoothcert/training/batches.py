"""The training batches of one epoch, from in-memory arrays or streamed from an image folder.

Both yield (batch index, augmented inputs on the device, labels) for the planned batches of
this process (its share of each global batch under torchrun), in the epoch's order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader

from smoothcert._util.seeding import STREAM_AUGMENT, rank_seed
from smoothcert.data import ImageDataset, augment_batch
from smoothcert.data.stream import StreamingImageFolder, TrainItems, UnreadableImage, collate
from smoothcert.training import ddp

if TYPE_CHECKING:
    from smoothcert.training.config import TrainConfig


def memory_batches(
    train_set: ImageDataset,
    order: torch.Tensor,
    plan: list[int],
    config: TrainConfig,
    epoch: int,
    augmentation: str,
    aug_gen: torch.Generator,
    device: torch.device,
    ranks: ddp.Ranks,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(batch index, augmented inputs, labels) of this rank for the batches in ``plan``, from
    in-memory arrays, augmented on the device with ``aug_gen`` (per rank and batch under DDP)."""
    size = config.batch_size
    for i in plan:
        x, y = train_set.batch(ddp.share(order[i * size : (i + 1) * size], ranks))
        x, y = x.to(device), y.to(device)
        if ranks.distributed:
            r = ranks.rank
            aug_gen.manual_seed(rank_seed(config.seed, epoch, i, STREAM_AUGMENT, r))
        yield i, augment_batch(x, augmentation, aug_gen), y


class EpochKeys:
    """The DataLoader batch sampler of a streamed epoch: this rank's (epoch, index) keys per
    planned batch, made lazily (an ImageNet epoch as Python tuples would be ~100 MB)."""

    def __init__(
        self, order: torch.Tensor, plan: list[int], size: int, epoch: int, ranks: ddp.Ranks
    ) -> None:
        self.order, self.plan, self.size, self.epoch, self.ranks = order, plan, size, epoch, ranks

    def __len__(self) -> int:
        return len(self.plan)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for i in self.plan:
            mine = ddp.share(self.order[i * self.size : (i + 1) * self.size], self.ranks)
            yield [(self.epoch, j) for j in mine.tolist()]


def streamed_batches(
    train_set: StreamingImageFolder,
    order: torch.Tensor,
    plan: list[int],
    config: TrainConfig,
    epoch: int,
    augmentation: str,
    device: torch.device,
    ranks: ddp.Ranks,
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """The same batches from an image folder streamed from disk: decoded and augmented per
    (seed, epoch, index) in ``config.workers`` DataLoader processes (0: this one)."""
    loader = DataLoader(
        TrainItems(train_set, augmentation, config.seed),
        batch_sampler=EpochKeys(order, plan, config.batch_size, epoch, ranks),
        num_workers=config.workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
    )
    for i, batch in zip(plan, loader, strict=True):
        if isinstance(batch, str):  # an unreadable image, reported by the worker
            raise UnreadableImage(batch)
        x, y = batch
        yield i, x.to(device, non_blocking=True), y.to(device, non_blocking=True)
