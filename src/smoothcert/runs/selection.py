"""The selection of a certify or predict run: which examples it evaluates (every skip-th,
max_examples in all, this shard's), and the seed of their noise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smoothcert._util.checks import (
    ParameterError,
    integer_at_least,
    optional_positive_int,
    positive_int,
)
from smoothcert.runs.common import select_indices
from smoothcert.runs.shards import check_shard, shard_of

__all__ = ["Selection"]


@dataclass(frozen=True)
class Selection:
    """Which examples a run evaluates, and with which noise; checked when built.

    A refused selection leaves no run file. Every example gets its own generator seeded by
    (``seed``, idx).

    Parameters
    ----------
    skip : int, default 1
        Every ``skip``-th example of the dataset.
    max_examples : int, optional
        That many of them in all (a count, not an index; None: all).
    seed : int or None, default 0
        Seed of every example's generator (None: one drawn now and kept in the run file).
    shard : (int, int), default (0, 1)
        ``(rank, world)``: only every world-th selected example, from position rank (see
        ``smoothcert.runs.shards``); shards merge into the unsharded run.

    Raises
    ------
    ParameterError
        If a field is out of range; the message names it.
    """

    skip: int = 1
    max_examples: int | None = None
    seed: int | None = 0
    shard: tuple[int, int] = (0, 1)

    def __post_init__(self) -> None:
        # numpy's SeedSequence would only say "expected non-negative integer", naming nothing.
        if self.seed is not None:
            integer_at_least("seed", self.seed, 0)
        positive_int("skip", self.skip)
        optional_positive_int("max_examples", self.max_examples)
        _, world = check_shard(*self.shard)
        if world > 1 and self.seed is None:
            raise ParameterError(
                "seed", "is needed by a sharded run (every shard must draw the same noise)"
            )

    def indices(self, num_examples: int) -> list[int]:
        """The selected examples this shard handles.

        Parameters
        ----------
        num_examples : int
            The size of the dataset.

        Returns
        -------
        list of int
            Their indices, in order.
        """
        indices = select_indices(num_examples, self.skip, self.max_examples)
        return shard_of(indices, *self.shard) if self.shard[1] > 1 else indices

    def config(self) -> dict[str, Any]:
        """The run-config entries of the selection, but the shard's.

        Returns
        -------
        dict
            ``skip``, ``max`` and ``seed``.
        """
        return {"skip": self.skip, "max": self.max_examples, "seed": self.seed}

    def shard_config(self) -> dict[str, Any]:
        """The run-config entry of the shard (added last, so no caller entry overrides it).

        Returns
        -------
        dict
            ``shard`` for a shard of a sharded run; empty for an unsharded run, whose shards
            merge into it (``smoothcert.runs.shards.merge_runs``).
        """
        return {"shard": list(self.shard)} if self.shard[1] > 1 else {}
