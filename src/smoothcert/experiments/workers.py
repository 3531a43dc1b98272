"""The processes an experiment runs on: one, or the workers of a ``torchrun`` launch.

``torchrun --nproc-per-node W -m smoothcert -- experiment run FILE --scale S`` starts W
runners that walk the same stages together:

- train stages run on every worker: the train command finds the process group the runner
  joined and trains data-parallel (:mod:`smoothcert.training.ddp`);
- certify and predict stages run on every worker, each into its own shard file (the
  commands' ``--shard auto``); once all are done, worker 0 merges the shards into the stage's
  ``--out`` (:func:`smoothcert.runs.shards.merge_runs`) and keeps them, so a crash between the
  merge and the bookkeeping costs nothing on the rerun;
- every other stage (attacks, ρ, reports) runs on worker 0 while the others wait.

Only worker 0 takes the experiment's lock and writes its state file. After each stage the
workers agree on the outcome, so a failure anywhere stops every worker at the same stage.
"""

from __future__ import annotations

import datetime
import functools
from dataclasses import dataclass, field
from pathlib import Path


@functools.cache
def data_parallel() -> frozenset[str]:
    """Commands every worker runs on its share of each batch (``DISTRIBUTED`` in their CLI
    module); with :func:`sharded`, the commands every worker runs (the rest run on worker 0)."""
    from smoothcert.cli import distributed_commands

    return distributed_commands("data-parallel")


@functools.cache
def sharded() -> frozenset[str]:
    """Commands whose workers each write a shard file, merged after."""
    from smoothcert.cli import distributed_commands

    return distributed_commands("sharded")


# Workers wait for worker 0 through stages that only it runs (ρ ascent, attacks): the
# collectives' default timeout (10 to 30 minutes) would end the launch during a long stage.
_WAIT = datetime.timedelta(days=7)


@dataclass
class Workers:
    """This process's place among the experiment's runners (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world: int = 1
    _device: object = field(default=None, repr=False)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def runs(self, command: str) -> bool:
        """Whether this worker runs a stage of ``command``."""
        return self.main or command in data_parallel() or command in sharded()

    def agree(self, ok: bool) -> bool:
        """True on every worker when ``ok`` holds on every worker; also a barrier."""
        if self.world == 1:
            return ok
        import torch
        import torch.distributed as dist

        flag = torch.tensor([0.0 if ok else 1.0], dtype=torch.float64, device=self._device)
        dist.all_reduce(flag)
        return flag.item() == 0.0

    def close(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                self.agree(True)  # no worker tears gloo down while a peer still talks
                dist.destroy_process_group()


def join_workers() -> Workers:
    """Workers from torchrun's environment, joining the process group when there are several
    (nccl on CUDA, gloo otherwise, as training does)."""
    from smoothcert._util.launch import local_device, shard_from_env

    rank, world = shard_from_env()
    if world == 1:
        return Workers()
    import torch
    import torch.distributed as dist

    device = torch.device(local_device() or "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", timeout=_WAIT)
    return Workers(rank, world, device)


def shard_files(out: str | Path, world: int) -> list[Path]:
    """The shard files W workers write for a run whose ``--out`` is ``out``."""
    from smoothcert.runs.shards import shard_path

    return [shard_path(out, rank, world) for rank in range(world)]


def merge_shards(out: str | Path, world: int) -> int:
    """Merge the W shard files of ``out`` into ``out``; returns the merged run's row count.

    A merged file left by an earlier attempt (its info lists the shards it came from) is
    rebuilt from the shards; any other file at ``out`` (a run made by one process) is refused
    rather than overwritten.
    """
    from smoothcert.runs.shards import merge_runs
    from smoothcert.runs.store import RunStore

    out, shards = Path(out), shard_files(out, world)
    if out.exists():
        with RunStore.read(out) as existing:
            merged_before = existing.info.get("merged_from")
        if merged_before != [str(s) for s in shards]:
            raise ValueError(
                f"{out} exists and is not a merge of this stage's {world} shard files; move it "
                "away to let the workers' shards replace it"
            )
        out.unlink()
    return merge_runs(out, [str(s) for s in shards])
