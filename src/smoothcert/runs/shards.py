"""Scaling certification out over processes and machines (e.g. with PyTorch's ``torchrun``).

Per-example work is embarrassingly parallel and every example draws its noise from a generator
seeded by (seed, idx), so sharding needs no communication: worker ``rank`` of ``world``
handles every world-th selected example into its own run file, and :func:`merge_runs` joins the
shard files into one run that is identical to the run a single process would have produced.

``torchrun --nproc-per-node 4 -m smoothcert -- certify CKPT ... --out r.db`` starts four workers
(the ``--`` keeps torchrun from reading ``--n``/``--max`` as abbreviations of its own options);
each reads RANK / WORLD_SIZE / LOCAL_RANK from the environment torchrun sets, writes
``r.shard0-of-4.db`` ... ``r.shard3-of-4.db`` (on ``cuda:LOCAL_RANK`` when CUDA is present), and
``smoothcert merge r.db r.shard*-of-4.db`` gives the complete run. On several machines, run the
same command on each with the usual ``--nnodes/--node-rank`` and copy the shard files together.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from smoothcert._util.checks import ParameterError
from smoothcert._util.launch import check_shard, local_device, shard_from_env
from smoothcert.runs.store import RunStore

__all__ = [
    "check_shard",
    "local_device",
    "merge_runs",
    "parse_shard",
    "selection_gaps",
    "shard_from_env",
    "shard_of",
    "shard_path",
]


def parse_shard(text: str) -> tuple[int, int]:
    """'R/W' (0-based rank R of W workers) -> (R, W)."""
    try:
        rank, world = (int(part) for part in text.split("/"))
    except ValueError:
        raise ParameterError(
            "shard", f"must look like RANK/WORLD, e.g. 0/4, got {text!r}"
        ) from None
    return check_shard(rank, world)


def shard_path(out: str | os.PathLike, rank: int, world: int) -> Path:
    """``r.db`` -> ``r.shard2-of-4.db`` (unchanged when world == 1)."""
    out = Path(out)
    if world == 1:
        return out
    return out.with_name(f"{out.stem}.shard{rank}-of-{world}{out.suffix}")


def shard_files(out: str | os.PathLike) -> list[Path]:
    """The shard files of ``out`` on disk, of any world size, sorted: the files
    :func:`shard_path` names (``r.db`` -> ``r.shard*-of-*.db``)."""
    pattern = shard_path(out, "*", "*")  # type: ignore[arg-type]
    return sorted(pattern.parent.glob(pattern.name))


def shard_of(indices: Sequence[int], rank: int, world: int) -> list[int]:
    """The examples worker ``rank`` handles: every world-th of the selection, from position rank."""
    return list(indices[rank::world])


def merge_runs(out: str | os.PathLike, shards: Sequence[str | os.PathLike]) -> int:
    """Join the shard files of one sharded run into the run file ``out``; returns its row count.

    The shards must hold the same kind of run with the same config apart from the shard
    itself, and together all shards 0..W−1. ``out`` must not exist (nothing is overwritten).
    """
    if not shards:
        raise ValueError("no shard files to merge")
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} exists; merge writes a new run file")
    stores: list[RunStore] = []
    try:
        for path in shards:  # each is checked (format, integrity) before anything is written
            stores.append(RunStore.read(path))
        first = stores[0]
        base = {k: v for k, v in first.config.items() if k != "shard"}
        seen: dict[int, Path] = {}
        world = None
        for store in stores:
            config = {k: v for k, v in store.config.items() if k != "shard"}
            if store.kind != first.kind or config != base:
                raise ValueError(f"{store.path} is not a shard of the same run as {first.path}")
            shard = store.config.get("shard")
            if shard is None:
                raise ValueError(f"{store.path} is not a shard (it has no shard in its config)")
            world = world or shard[1]
            if shard[1] != world or shard[0] in seen:
                raise ValueError(
                    f"{store.path}: shard {shard[0]}/{shard[1]} repeated or mismatched"
                )
            seen[shard[0]] = store.path
        missing = sorted(set(range(world)) - set(seen))
        if missing:
            raise ValueError(f"shards {missing} of {world} are missing")
        info = dict(first.info) | {"merged_from": [str(s.path) for s in stores]}
        # Build the merged run under a temporary name and rename it at the end, so a failure
        # half-way leaves no partial run at ``out`` (which a rerun would then refuse).
        partial = out.with_name(f".{out.name}.merging-{os.getpid()}")
        partial.unlink(missing_ok=True)
        try:
            with RunStore.open(partial, first.kind, base, first.schema, info=info) as merged:
                for store in stores:
                    for row in store.rows():
                        idx = row.pop("idx")
                        merged.add(idx, row)
                count = len(merged.done_indices())
            os.replace(partial, out)
        finally:
            partial.unlink(missing_ok=True)
        return count
    finally:
        for store in stores:
            store.close()


def selection_gaps(run_path: str | os.PathLike) -> list[int]:
    """Selected examples missing below the run's last stored one: with ``skip`` s the selection
    is 0, s, 2s, ..., so any such index without a row means a shard stopped early. (A missing
    tail cannot be told apart from the end of the dataset.) Rerunning the run's command with
    the merged file as its run file fills them in."""
    with RunStore.read(run_path) as store:
        skip = store.config.get("skip")
        done = store.done_indices()
    if not isinstance(skip, int) or skip < 1 or not done:
        return []
    return [i for i in range(0, max(done), skip) if i not in done]
