"""Where this process sits in a ``torchrun`` launch: rank, world size and local device.

torchrun (``torch.distributed.run``) sets RANK, WORLD_SIZE and LOCAL_RANK in each worker's
environment; outside torchrun the process is rank 0 of 1. Sharded certification and
distributed training both read their place from here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping


def shard_from_env(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(rank, world size) from torchrun's RANK and WORLD_SIZE; (0, 1) when not under torchrun."""
    env = os.environ if env is None else env
    try:
        world = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
    except ValueError:
        raise ValueError("RANK and WORLD_SIZE must be integers") from None
    return check_shard(rank, world)


def check_shard(rank: int, world: int) -> tuple[int, int]:
    if world < 1 or not 0 <= rank < world:
        raise ValueError(
            f"shard rank must be in [0, {world}) with world size >= 1, got {rank}/{world}"
        )
    return rank, world


def local_device(env: Mapping[str, str] | None = None) -> str | None:
    """``cuda:LOCAL_RANK`` under torchrun with CUDA available, else None (the default device)."""
    import torch

    env = os.environ if env is None else env
    if "LOCAL_RANK" in env and torch.cuda.is_available():
        return f"cuda:{int(env['LOCAL_RANK']) % torch.cuda.device_count()}"
    return None
