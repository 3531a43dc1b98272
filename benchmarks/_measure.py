"""Shared measurement helpers for the benchmarks: throughput of the base model's forward
pass over pre-generated inputs and of SmoothedClassifier.counts(), interleaved in one run so
that the ratio is robust to the load of a shared machine."""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time

import torch
from torch import nn

from smoothcert.smoothing import SmoothedClassifier


def machine() -> dict:
    """Cores, threads and versions: the context a throughput figure needs."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "python": platform.python_version(),
    }


def forward_rate(
    model: nn.Module,
    batches: list[torch.Tensor],
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    min_seconds: float = 1.0,
) -> float:
    """Samples/s of model(batch) over pre-generated batches (inference mode, eval)."""
    model.eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
        batches = [b.contiguous(memory_format=torch.channels_last) for b in batches]
    else:
        model.to(memory_format=torch.contiguous_format)
    cast = (
        torch.autocast("cpu", dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    with torch.inference_mode(), cast:
        model(batches[0])  # warm-up
        done, i, t0 = 0, 0, time.perf_counter()
        while i < len(batches) or time.perf_counter() - t0 < min_seconds:
            model(batches[i % len(batches)]).argmax(1)
            done += batches[i % len(batches)].shape[0]
            i += 1
        return done / (time.perf_counter() - t0)


def counts_rate(
    g: SmoothedClassifier, x: torch.Tensor, n: int, *, generator_seed: int = 0
) -> float:
    """Samples/s of g.counts(x, n)."""
    gen = torch.Generator().manual_seed(generator_seed)
    t0 = time.perf_counter()
    g.counts(x, n, generator=gen)
    return n / (time.perf_counter() - t0)


def noisy_batches(
    x: torch.Tensor, sigma: float, batch_size: int, k: int, seed: int = 0
) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        x.unsqueeze(0) + sigma * torch.randn((batch_size, *x.shape), generator=gen)
        for _ in range(k)
    ]


def interleaved(
    model: nn.Module,
    x: torch.Tensor,
    *,
    num_classes: int = 10,
    sigma: float = 0.25,
    batch_size: int = 1000,
    precision: str = "fp32",
    channels_last: bool = False,
    rounds: int = 5,
    batches_per_round: int = 4,
) -> dict:
    """Alternate forward-only and counts() measurements for ``rounds`` rounds at the same batch
    size and settings; report the medians and the median of the per-round ratios."""
    g = SmoothedClassifier(
        model,
        num_classes,
        sigma,
        batch_size=batch_size,
        precision=precision,
        channels_last=channels_last,
        input_shape=tuple(x.shape),
    )
    batches = noisy_batches(x, sigma, batch_size, batches_per_round)
    n = batch_size * batches_per_round
    counts_rate(g, x, batch_size)  # warm-up
    fwd, cnt = [], []
    for r in range(rounds):
        fwd.append(
            forward_rate(
                model, batches, precision=precision, channels_last=channels_last, min_seconds=0
            )
        )
        cnt.append(counts_rate(g, x, n, generator_seed=r))
    return {
        "batch_size": batch_size,
        "precision": precision,
        "channels_last": channels_last,
        "forward_samples_per_s": statistics.median(fwd),
        "counts_samples_per_s": statistics.median(cnt),
        "ratio": statistics.median(c / f for c, f in zip(cnt, fwd, strict=True)),
        "rounds": rounds,
        "samples_per_round": n,
    }
