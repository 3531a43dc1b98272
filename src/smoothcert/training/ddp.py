"""Data-parallel training over the processes of a ``torchrun`` launch.

Each of the W ranks trains on a disjoint share of every global batch (``torch.tensor_split``
of the batch's indices, so per-rank batch = global batch / W), and after the backward pass
the gradients are summed over ranks in one all-reduce and divided by W: DistributedDataParallel's
gradient averaging. With per-rank mean losses over B/W examples that average is the gradient
of the global batch's mean loss (each rank's loss is weighted by its share when the last batch
does not split evenly), so W processes follow one process with the same global batch up to
float rounding (batch norm aside: its batch statistics are per rank unless synchronized).

The averaging is done here rather than by wrapping the model in DistributedDataParallel
because DDP's reducer expects every forward pass under autograd to be followed by a backward
pass through the parameters; the inner attacks of SmoothAdv, TRADES, WRM and NAL take
gradients with respect to the input only, which that reducer rejects.

Per-rank randomness (method noise, inner-attack starts, augmentation, evaluation noise) is
seeded by (seed, epoch, batch, stream, rank), so it needs no state in the resume file and a
run can be resumed with another world size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from smoothcert._util.launch import local_device, shard_from_env


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the only process that writes files and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def ranks_from_env() -> Ranks:
    """(rank, world) of a torchrun worker, or rank 0 of 1."""
    return Ranks(*shard_from_env())


def default_device() -> str | None:
    """``cuda:LOCAL_RANK`` under torchrun with CUDA, else None (the usual default)."""
    return local_device()


def start(ranks: Ranks, device: torch.device) -> bool:
    """Join the process group (gloo on CPU, nccl on CUDA); True when this call created it."""
    if not ranks.distributed or dist.is_initialized():
        return False
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def stop(started: bool, *, finished: bool = False) -> None:
    """Leave the process group. After a finished run every process first waits for the
    others: a process that tears down gloo while a peer is still closing its connections can
    make that peer abort ("terminate called without an active exception")."""
    if started and dist.is_initialized():
        if finished:
            dist.barrier()
        dist.destroy_process_group()


def share(indices: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's part of a global batch: contiguous, sizes differ by at most one."""
    if not ranks.distributed:
        return indices
    return torch.tensor_split(indices, ranks.world)[ranks.rank]


def check_batch_size(batch_size: int, world: int) -> None:
    if batch_size % world:
        raise ValueError(
            f"batch_size {batch_size} (the global batch) must be a multiple of the world size "
            f"{world}; each process trains on batch_size / world examples"
        )


def reduce_step(
    model: nn.Module, values: torch.Tensor, world: int, sums: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One all-reduce per step: gradients and ``values`` averaged over ranks, ``sums`` summed.

    Gradients are packed into one flat buffer together with the step's statistics, so the step
    costs one collective. Returns (averaged values, summed sums).
    """
    params = [p for p in model.parameters() if p.grad is not None]
    grads = [p.grad.reshape(-1) for p in params]
    device = values.device
    flat = torch.cat([*grads, values.to(grads[0].dtype), sums.to(grads[0].dtype)])
    dist.all_reduce(flat)
    n_grad = flat.numel() - values.numel() - sums.numel()
    flat[: n_grad + values.numel()].div_(world)
    offset = 0
    for p in params:
        k = p.grad.numel()
        p.grad.copy_(flat[offset : offset + k].view_as(p.grad))
        offset += k
    averaged = flat[n_grad : n_grad + values.numel()].to(device)
    return averaged, flat[n_grad + values.numel() :].to(device)


def all_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over ranks (float64 on the wire: counts stay exact)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def same_everywhere(values: list[int], device: torch.device) -> bool:
    """Whether every rank holds the same integers ``values`` (sums of x and x² over ranks)."""
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    both = torch.cat([t, t * t])
    reduced = both.clone()
    dist.all_reduce(reduced)
    return bool(torch.equal(reduced, both * dist.get_world_size()))


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (batch-norm running statistics) to every rank, as DDP does."""
    for buffer in model.buffers():
        dist.broadcast(buffer, src=0)


def agree(ok: bool, device: torch.device) -> bool:
    """True on every rank when ``ok`` is true on every rank."""
    t = torch.tensor([0.0 if ok else 1.0], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() == 0.0


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def sync_batch_norm(model: nn.Module, device: torch.device, ranks: Ranks) -> nn.Module:
    """Batch norm with statistics over the global batch (``--sync-bn``): CUDA only, as PyTorch's
    SyncBatchNorm is; with one process it computes what batch norm does."""
    if not has_batch_norm(model):
        raise ValueError("sync_bn needs a model with batch norm; this architecture has none")
    if ranks.distributed and device.type != "cuda":
        raise ValueError(f"sync_bn needs CUDA devices (PyTorch's SyncBatchNorm), got {device.type}")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)
