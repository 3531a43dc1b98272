"""The Gaussian noise stream of the smoothed classifier: noise drawn in fixed chunks of samples
(:func:`noise_chunk`), so that the counts for a seed depend only on the generator and the input
shape, never on the batch size."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

# ---------------------------------------------------------------------------- helpers

_NOISE_CHUNK_ELEMENTS = 1 << 20  # randn calls of up to ~1M values: few ops per batch
_MAX_NOISE_CHUNK = 1000  # samples: the default batch size draws its noise in one call


def noise_chunk(sample_numel: int) -> int:
    """Samples per randn call: the noise stream is a sequence of randn([chunk, *shape]) calls,
    so it depends only on the generator and the input shape, never on the batch size."""
    return max(1, min(_MAX_NOISE_CHUNK, _NOISE_CHUNK_ELEMENTS // max(1, sample_numel)))


class NoiseStream:
    """Draws ε ~ N(0, I) for consecutive samples in fixed chunks (see :func:`noise_chunk`);
    with ``draw``, any noise that ``draw(out)`` writes into a [chunk, *shape] tensor."""

    def __init__(
        self,
        shape: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None,
        draw: Callable[[torch.Tensor], None] | None = None,
    ) -> None:
        self.chunk = noise_chunk(math.prod(shape))
        self.generator = generator
        self.draw = draw or self._randn
        self.pool = torch.empty((self.chunk, *shape), dtype=dtype, device=device)
        self.left = 0  # unused samples at the end of the pool

    def _randn(self, out: torch.Tensor) -> None:
        torch.randn(out.shape, generator=self.generator, out=out)

    def fill(self, out: torch.Tensor) -> None:
        """Fill ``out`` ([b, *shape], contiguous) with the next b samples of the stream."""
        b, pos, c = out.shape[0], 0, self.chunk
        while pos < b:
            if self.left == 0 and b - pos >= c:  # a whole chunk: draw in place, no copy
                self.draw(out[pos : pos + c])
                pos += c
                continue
            if self.left == 0:
                self.draw(self.pool)
                self.left = c
            take = min(self.left, b - pos)
            start = c - self.left
            out[pos : pos + take].copy_(self.pool[start : start + take])
            self.left -= take
            pos += take
