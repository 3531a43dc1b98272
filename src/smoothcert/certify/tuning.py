"""The automatic batch size of ``SmoothedClassifier(batch_size=None)``: time the base model at
doubling batch sizes and choose the smallest within 5% of the throughput plateau. Only speed
depends on the choice (the noise, hence the counts, do not depend on the batch size).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

#: Batch sizes the automatic search tries, in order: 16 .. 8192.
AUTO_BATCH_CANDIDATES = tuple(2**k for k in range(4, 14))
AUTO_BATCH_MAX_BYTES = 256 << 20  # noisy-input buffer cap while tuning
AUTO_BATCH_BUDGET_S = 8.0  # stop tuning when the next size would exceed this wall time ...
AUTO_BATCH_MIN = 256  # ... but always try sizes up to here: small batches waste throughput


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tune_batch_size(
    model: Callable[[torch.Tensor], object],
    noisy_batch: Callable[[int], torch.Tensor],
    bytes_per_sample: int,
    device: torch.device,
) -> tuple[int, dict[int, float]]:
    """The automatic batch size: time ``model`` on ``noisy_batch(b)`` at the doubling sizes of
    :data:`AUTO_BATCH_CANDIDATES`, stop at the plateau (two sizes without a 5% gain) or when the
    next size would exceed the time budget, and choose the smallest size within 5% of the best.

    Parameters
    ----------
    model : callable
        The base model, called on a batch; the caller sets eval, inference mode and autocast.
    noisy_batch : callable
        ``noisy_batch(b)``: a batch of b noisy inputs, as the classifier would build it.
    bytes_per_sample : int
        Size of one input: sizes whose batch exceeds :data:`AUTO_BATCH_MAX_BYTES` are skipped.
    device : torch.device
        Where ``model`` runs (synchronized after each pass on CUDA).

    Returns
    -------
    tuple of (int, dict)
        The chosen batch size, and the samples/s measured at each size tried.
    """
    rates: dict[int, float] = {}
    best, stale, started = 0.0, 0, time.perf_counter()
    for b in AUTO_BATCH_CANDIDATES:
        if b > 16 and b * bytes_per_sample > AUTO_BATCH_MAX_BYTES:
            break
        batch = noisy_batch(b)
        model(batch)  # warm-up (allocator, kernel selection)
        reps, t0 = 0, time.perf_counter()
        while reps < 2 or time.perf_counter() - t0 < 0.1:
            model(batch)
            reps += 1
            sync(device)
        rates[b] = reps * b / (time.perf_counter() - t0)
        stale = 0 if rates[b] > 1.05 * best else stale + 1
        best = max(best, rates[b])
        # the next size costs about 3 passes (warm-up + 2) of 2b samples at this rate
        next_cost = 3 * 2 * b / rates[b]
        over_budget = time.perf_counter() - started + next_cost > AUTO_BATCH_BUDGET_S
        if stale >= 2 or (over_budget and b >= AUTO_BATCH_MIN):
            break
    return min(b for b, r in rates.items() if r >= 0.95 * best), rates
