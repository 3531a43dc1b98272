"""The benchmarks' view of smoothcert.throughput (the measurement code `smoothcert bench` uses):
the same round-robin measurement, with the pseudocode baseline of benchmarks/baseline.py as an
extra contender, in the record layout benchmarks/run.py and certify_throughput.py print."""

from __future__ import annotations

import torch
from torch import nn

from smoothcert.throughput import interleaved as _interleaved
from smoothcert.throughput import machine  # noqa: F401  (re-exported for the scripts)


def interleaved(
    model: nn.Module,
    x: torch.Tensor,
    *,
    num_classes: int = 10,
    sigma: float = 0.25,
    batch_size: int = 1000,
    configs: tuple[tuple[str, bool], ...] = (("fp32", False),),
    rounds: int = 5,
    batches_per_round: int = 4,
    baseline: bool = False,
) -> dict:
    """smoothcert.throughput.interleaved over ``configs``; with ``baseline``, the plain
    pseudocode joins every round."""
    from baseline import plain_counts

    def plain(n: int) -> None:
        plain_counts(model, x, num_classes, sigma, n, batch_size)

    out = _interleaved(
        model, x, num_classes=num_classes, sigma=sigma, batch_size=batch_size, paths=configs,
        rounds=rounds, batches_per_round=batches_per_round,
        baseline=plain if baseline else None,
    )  # fmt: skip
    out["configs"] = out.pop("paths")
    rates = {k: v.pop("counts_rates") for k, v in out["configs"].items()}
    if baseline:
        out["counts_rates"] = rates
    return out
