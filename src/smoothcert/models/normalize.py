"""The first layer of every model: per-channel (x − mean) / std on [0,1] inputs.

Keeping normalization inside the model means noise σ and radii are in pixel units
(Cohen et al. add noise before normalization).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class Normalize(nn.Module):
    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean has {len(mean)} channels, std has {len(std)}")
        # NaN slips through a plain "<= 0" test and inf makes the model constant: both would
        # give a model that silently predicts garbage, so demand finite values.
        if not all(math.isfinite(m) for m in mean):
            raise ValueError(f"mean must be finite per channel, got {tuple(mean)}")
        if not all(math.isfinite(s) and s > 0 for s in std):
            raise ValueError(f"std must be finite and > 0 per channel, got {tuple(std)}")
        # Buffers: saved in checkpoints and moved with .to(device), never trained.
        self.register_buffer(
            "mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1, 1)
        )
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"
