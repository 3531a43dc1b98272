"""The baseline: a plain implementation of the paper's pseudocode (Cohen et al. 2019,
Appendix C, SAMPLE UNDER NOISE), the way a first implementation would write it: one example at
a time, the input repeated into a batch, ``randn_like`` noise, every prediction copied to the
host and counted in a Python loop. The benchmarks measure smoothcert's speed against it."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def plain_counts(
    model: nn.Module, x: torch.Tensor, num_classes: int, sigma: float, n: int, batch_size: int
) -> np.ndarray:
    """Counts of f(x + ε) over n draws: repeat x, add σ·randn_like, argmax, count in Python."""
    counts = np.zeros(num_classes, dtype=np.int64)
    model.eval()
    with torch.no_grad():
        remaining = n
        while remaining > 0:
            this_batch = min(batch_size, remaining)
            remaining -= this_batch
            batch = x.unsqueeze(0).repeat((this_batch, *([1] * x.dim())))
            noise = torch.randn_like(batch) * sigma
            predictions = model(batch + noise).argmax(1)
            for label in predictions.cpu().numpy():
                counts[label] += 1
    return counts
