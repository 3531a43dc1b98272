"""Sound randomized smoothing in floating point (after Voráček and Hein, ICLR 2023): inputs on
the 8-bit grid, noise on that grid sampled exactly from random integers, the noisy input
computed exactly.

Why standard smoothing is not sound as computed: it feeds the base classifier fl(x + σε) with
ε a float32 sample of N(0, 1). The float grid ε lives on, and the rounding of the sum, depend
on x, so the base classifier "as computed" is not a fixed function of the real point x + σε,
and Cohen et al.'s Theorem 1 does not apply to it (tests/certify/test_sound.py builds a classifier
whose standard-path certificate at a black image of 400 pixels, radius 0.86, is contradicted by the
image one grey level brighter, at L2 distance 20/255 ≈ 0.078).

The construction here (derivation in docs/certification.md, "Sound mode"):

- x = k/255 with integer levels k (images on the 8-bit grid; :func:`grid_levels`). A value
  within :data:`GRID_TOLERANCE` of a level is taken as that level, without a warning: the
  certificate is then about the nearest 8-bit image (its radii are distances from that image);
- noise h·J with h = 1/255 and J_i i.i.d. from the *rounded Gaussian* on Z: P(J_i = j) =
  Φ((j + ½)/s) − Φ((j − ½)/s), s = σ/h. Then x + hJ = Q(x + σg), g ~ N(0, I), where Q rounds
  each coordinate to the grid, so the smoothed classifier on grid points is exactly Gaussian
  smoothing (σ) of the fixed classifier f∘Q, and Theorem 1 gives the radius σΦ⁻¹(pA) for
  every grid point (indeed every point) within it;
- J is drawn by inverting a table of the CDF in units of 2⁻⁶² from uniform 62-bit integers
  (:class:`LatticeNoise`; the first 16 bits usually decide, the other 46 are drawn only when
  they do not); the table's total-variation distance to the rounded Gaussian
  (rounding of the table plus the tail beyond the support) is computed in 128-bit arithmetic
  and subtracted from pA's lower bound, d times for d coordinates. PREDICT has no such
  correction: its failure probability against the smoothed classifier of the rounded Gaussian
  is at most α + n·d·tv (the distance of n draws of d coordinates), e.g. about 5·10⁻⁸ for
  n = 100,000 CIFAR-10 draws at σ = 1;
- the base classifier sees fl((k + J)/255): the integer k + J is exact in float32, and on CPU
  one correctly rounded division makes the input a fixed function of the grid point. On CUDA
  torch divides by a scalar as a multiplication by fl(1/255), which may differ from the
  division by one ulp: the input is then another fixed function of k + J, which is all the
  argument needs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import mpmath
import numpy as np
import torch

from smoothcert._util.checks import ParameterError

GRID_LEVELS = 255
"""Inputs are x = k/255, k an integer in [0, 255]."""

GRID_TOLERANCE = 1e-3
"""An input value v is on the grid when |255·v − k| ≤ 10⁻³ for an integer k: float32 and
float64 renderings of k/255 pass (their error is below 10⁻⁴ levels), anything else is refused.
A value that passes is snapped to k/255 silently: the certificate is about that 8-bit image."""

TABLE_BITS = 62
"""Uniform integers of 62 bits index the CDF table: each cell's probability is a multiple of
2⁻⁶²."""

TAIL_Z = 10.0
"""Support of the table: |J| ≤ ⌈10·s⌉ + 1; the rounded Gaussian puts mass < 2·Φ(−10) ≈
1.5·10⁻²³ beyond it (counted in the total-variation bound)."""

RADIUS_MARGIN = 1e-12
"""Relative amount the radius is lowered by, covering the float64 evaluation of σ·Φ⁻¹ (a few
ulps)."""

_GUIDE_BITS = 16  # the first 16 of the 62 bits pick a bucket; most buckets hold one value
_LOW_BITS = TABLE_BITS - _GUIDE_BITS  # the other 46 bits, drawn only where needed
_MAX_LEVEL = (1 << 24) - 1  # integers k + J stay exact in float32


def grid_levels(x: torch.Tensor) -> torch.Tensor:
    """The integer levels k of an input on the 8-bit grid (x = k/255), in x's shape, as a
    float64 tensor of integers; refused with a ValueError unless every value is within
    :data:`GRID_TOLERANCE` of a level in [0, 255].

    A value within the tolerance is rounded to its level without a warning (up to 10⁻³/255
    per coordinate away): what is then certified, and what radii are measured from, is the
    nearest 8-bit image, not x itself."""
    scaled = x.detach().to(torch.float64) * GRID_LEVELS
    levels = torch.round(scaled)
    off = (scaled - levels).abs()
    if not torch.isfinite(scaled).all() or bool((off > GRID_TOLERANCE).any()):
        worst = float(x.flatten()[int(torch.nan_to_num(off, nan=math.inf).flatten().argmax())])
        raise ValueError(
            "with sound=True, x must be an image on the 8-bit grid (every value k/255 for an "
            f"integer k in [0, 255], within {GRID_TOLERANCE}/255); got the value {worst!r}"
        )
    if bool(((levels < 0) | (levels > GRID_LEVELS)).any()):
        raise ValueError(
            "with sound=True, x must be an image on the 8-bit grid with values in [0, 1]; got "
            f"values in [{float(x.min())}, {float(x.max())}]"
        )
    return levels


@dataclass(frozen=True)
class LatticeNoise:
    """The noise table for σ: J = −support + #{i : thresholds[i] ≤ U} for U uniform on
    [0, 2⁶²), so P(J = j) is the width of cell j of the table (a multiple of 2⁻⁶²).

    ``tv`` bounds the total-variation distance between one coordinate of this noise and the
    rounded Gaussian (rounding of every threshold plus the tail beyond ±support); over d
    independent coordinates the distance is at most d·tv. ``guide`` maps the first 16 bits of
    U to J when that bucket of 2⁴⁶ values holds a single value, else NaN."""

    sigma: float
    support: int
    thresholds: torch.Tensor  # int64, nondecreasing, 2·support entries
    guide: torch.Tensor  # float32 (or the model's float64, see to), 2**16 entries
    tv: float

    def to(self, device: torch.device, dtype: torch.dtype | None = None) -> LatticeNoise:
        """The same table with its tensors on ``device`` and the guide in ``dtype`` (the
        noise's: float32 or float64; default unchanged), moved once, not per draw."""
        return dataclasses.replace(
            self,
            thresholds=self.thresholds.to(device),
            guide=self.guide.to(device=device, dtype=dtype or self.guide.dtype),
        )

    def probabilities(self) -> np.ndarray:
        """P(J = j) for j = −support … support under the table, as exact fractions of 2⁶²
        (int64 numerators)."""
        edges = np.concatenate(([0], self.thresholds.numpy(), [1 << TABLE_BITS]))
        return np.diff(edges)


def _phi(t: mpmath.mpf) -> mpmath.mpf:
    return mpmath.erfc(-t / mpmath.sqrt(2)) / 2


@functools.lru_cache(maxsize=8)
def lattice_noise(sigma: float) -> LatticeNoise:
    """The table of the rounded Gaussian with standard deviation s = 255σ on Z (noise in grid
    units), its exact total-variation bound, and its guide (module docstring)."""
    if not (isinstance(sigma, float) and math.isfinite(sigma) and sigma > 0):
        raise ParameterError("sigma", f"must be a positive finite float, got {sigma!r}")
    with mpmath.workprec(128):
        s = mpmath.mpf(sigma) * GRID_LEVELS  # exact: σ is a float64, 255 an integer
        support = math.ceil(TAIL_Z * float(s)) + 1
        if support + GRID_LEVELS > _MAX_LEVEL:
            raise ParameterError("sigma", f"is too large for sound mode (at most 6e4), got {sigma}")
        scale = mpmath.mpf(2) ** TABLE_BITS
        # cdf[i] = Φ((j + ½)/s) for j = −support … support − 1: the upper edge of cell j.
        cdf = [_phi((mpmath.mpf(j) + mpmath.mpf(0.5)) / s) for j in range(-support, support)]
        thresholds = [int(mpmath.nint(c * scale)) for c in cdf]
        # Total variation: ½ Σ_j |table_j − p_j| over the support, plus ½ of the mass beyond
        # it (where the table puts none, and whose mass the end cells absorb).
        edges_true = [mpmath.mpf(0), *cdf, mpmath.mpf(1)]
        edges_table = [mpmath.mpf(0), *(t / scale for t in thresholds), mpmath.mpf(1)]
        lower_tail = _phi((mpmath.mpf(-support) - mpmath.mpf(0.5)) / s)
        edges_true[0] = lower_tail  # the true mass of cell −support starts here
        edges_true[-1] = 1 - lower_tail  # symmetric tail beyond +support
        diff = mpmath.fsum(
            abs((edges_table[i + 1] - edges_table[i]) - (edges_true[i + 1] - edges_true[i]))
            for i in range(len(edges_true) - 1)
        )
        tv = (diff + 2 * lower_tail) / 2
        tv_bound = float(tv * (1 + mpmath.mpf(2) ** -40)) + 1e-300  # rounded up
    table = torch.tensor(thresholds, dtype=torch.int64)
    guide = _guide(table, support)
    return LatticeNoise(float(sigma), support, table, guide, tv_bound)


def _guide(thresholds: torch.Tensor, support: int) -> torch.Tensor:
    shift = TABLE_BITS - _GUIDE_BITS
    buckets = torch.arange(1 << _GUIDE_BITS, dtype=torch.int64)
    first = torch.searchsorted(thresholds, buckets << shift, right=True)
    last = torch.searchsorted(thresholds, ((buckets + 1) << shift) - 1, right=True)
    values = (first - support).to(torch.float32)
    return torch.where(first == last, values, torch.full_like(values, math.nan))


def values_from_bits(
    noise: LatticeNoise,
    bucket: torch.Tensor,
    draw_low: Callable[[int], torch.Tensor],
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """J (integer values) for uniform 16-bit integers ``bucket`` (int32, the top 16 of the 62
    bits): looked up in the guide, and only where the bucket is ambiguous completed by
    ``draw_low(m)`` (m uniform 46-bit integers, int64) and inverted in the full table. Equals
    −support + #{i : thresholds[i] ≤ bucket·2⁴⁶ + low} for every element. Written into
    ``out`` (float32 or float64, contiguous, bucket's shape) when given, else float32; the
    values are integers of at most 2²⁴ in magnitude, exact in either dtype, so a float64 model
    sees the same noise as a float32 one."""
    if out is None:
        out = torch.empty(bucket.shape, dtype=torch.float32, device=bucket.device)
    values = out.view(-1)
    guide = noise.guide if noise.guide.dtype == out.dtype else noise.guide.to(out.dtype)
    torch.index_select(guide, 0, bucket.flatten(), out=values)
    ambiguous = torch.isnan(values).nonzero().squeeze(1)
    if ambiguous.numel():
        low = draw_low(ambiguous.numel())
        full = (bucket.flatten()[ambiguous].to(torch.int64) << _LOW_BITS) | low
        exact = torch.searchsorted(noise.thresholds, full, right=True) - noise.support
        values[ambiguous] = exact.to(out.dtype)
    return out


def draw_lattice_noise(
    noise: LatticeNoise, out: torch.Tensor, generator: torch.Generator | None
) -> None:
    """Fill ``out`` (float32 or float64, contiguous) with i.i.d. draws of J (in grid units)
    from random integers of ``generator``: 16 bits per element (a bucket of the guide), 46
    more for the few in ambiguous buckets. ``randint`` over a power-of-two range is exactly
    uniform (the generator's 32- or 64-bit words modulo the range); it runs serially, which on
    a busy CPU beats splitting a 31-bit draw with a parallel shift."""
    bucket = torch.randint(
        0, 1 << _GUIDE_BITS, tuple(out.shape), dtype=torch.int32, device=out.device,
        generator=generator,
    )  # fmt: skip

    def draw_low(m: int) -> torch.Tensor:
        return torch.randint(
            0, 1 << _LOW_BITS, (m,), dtype=torch.int64, device=out.device, generator=generator
        )

    values_from_bits(noise, bucket, draw_low, out=out)
