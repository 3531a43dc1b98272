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


def set_layout(model: nn.Module, channels_last: bool) -> None:
    """Put the model's 4-D parameters in the layout a configuration expects (counts() with
    channels_last converts them in place, so reset before every measurement)."""
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


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
    """For each (precision, channels_last) config, alternate forward-only and counts()
    measurements round-robin for ``rounds`` rounds at the same batch size, so every config sees
    the same machine load; report medians and the median of per-round ratios. With
    ``baseline``, the plain pseudocode of benchmarks/baseline.py joins each round too."""
    from baseline import plain_counts

    batches = noisy_batches(x, sigma, batch_size, batches_per_round)
    n = batch_size * batches_per_round
    shape = tuple(x.shape)
    gs = {
        cfg: SmoothedClassifier(
            model,
            num_classes,
            sigma,
            batch_size=batch_size,
            precision=cfg[0],
            channels_last=cfg[1],
            input_shape=shape,
        )
        for cfg in configs
    }
    fwd: dict = {cfg: [] for cfg in configs}
    cnt: dict = {cfg: [] for cfg in configs}
    base: list[float] = []
    for cfg, g in gs.items():  # warm-up
        set_layout(model, cfg[1])
        counts_rate(g, x, batch_size)
    for r in range(rounds):
        for cfg, g in gs.items():
            set_layout(model, cfg[1])
            fwd[cfg].append(
                forward_rate(model, batches, precision=cfg[0], channels_last=cfg[1], min_seconds=0)
            )
            set_layout(model, cfg[1])
            cnt[cfg].append(counts_rate(g, x, n, generator_seed=r))
        if baseline:
            set_layout(model, False)
            t0 = time.perf_counter()
            plain_counts(model, x, num_classes, sigma, n, batch_size)
            base.append(n / (time.perf_counter() - t0))
    set_layout(model, False)
    out: dict = {"batch_size": batch_size, "rounds": rounds, "samples_per_round": n, "configs": {}}
    for cfg in configs:
        out["configs"][f"{cfg[0]}{'+channels_last' if cfg[1] else ''}"] = {
            "precision": cfg[0],
            "channels_last": cfg[1],
            "forward_samples_per_s": statistics.median(fwd[cfg]),
            "counts_samples_per_s": statistics.median(cnt[cfg]),
            "ratio": statistics.median(c / f for c, f in zip(cnt[cfg], fwd[cfg], strict=True)),
        }
    if baseline:
        out["baseline_samples_per_s"] = statistics.median(base)
        out["baseline_rates"] = base
        out["counts_rates"] = {
            f"{c[0]}{'+channels_last' if c[1] else ''}": v for c, v in cnt.items()
        }
    return out
