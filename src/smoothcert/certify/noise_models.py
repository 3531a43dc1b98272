"""The noise of the smoothed classifier: what :class:`~smoothcert.SmoothedClassifier` asks of
it, and its two kinds.

A :class:`NoiseModel` answers every question where Gaussian smoothing and sound smoothing
differ, so PREDICT and CERTIFY read the same for both:

- :meth:`~NoiseModel.prepare`: one input as the point the noise is added to;
- :meth:`~NoiseModel.stream` and :meth:`~NoiseModel.fill`: draw noise into a buffer, in the
  fixed chunks of :mod:`smoothcert.certify.noise` (the draws do not depend on the batch size);
- :meth:`~NoiseModel.perturb`: the noisy input the base classifier sees;
- :meth:`~NoiseModel.lower_bound`: the lower confidence bound on pA from the counts;
- :meth:`~NoiseModel.radius`: the certified radius for that bound.

:class:`GaussianNoise` is the noise of Cohen et al. (2019): ε ~ N(0, σ²I), the base
classifier sees fl(x + σε). :class:`LatticeGaussianNoise` is sound mode
(:mod:`smoothcert.certify.sound`): inputs on the 8-bit grid, the rounded Gaussian on that
grid drawn from random integers, noisy inputs computed exactly; its bound and radius carry
the table's total-variation bound and a rounding margin.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from scipy.stats import norm

from smoothcert.certify import sound as lattice
from smoothcert.certify import stats
from smoothcert.certify.noise import NoiseStream


class NoiseModel(ABC):
    """The noise distribution of a smoothed classifier and the certificate it gives.

    Parameters
    ----------
    sigma : float
        The noise level σ > 0, in input units ([0, 1] pixels); checked by the caller.
    """

    sound: ClassVar[bool] = False
    """Whether the certificate holds for the base classifier as computed in floating point."""

    def __init__(self, sigma: float) -> None:
        self.sigma = sigma

    @abstractmethod
    def sigma_for(self, dtype: torch.dtype) -> float:
        """The σ that scales noise drawn in ``dtype``: the σ of every radius.

        Parameters
        ----------
        dtype : torch.dtype
            The dtype the noise is drawn in (the base model's).

        Returns
        -------
        float
            σ as the noise applies it.
        """

    @abstractmethod
    def prepare(self, x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """One input as the point the noise is added to, validated.

        Parameters
        ----------
        x : torch.Tensor
            A batch of one input [1, *shape], floating point, in input units.
        dtype : torch.dtype
            The base model's dtype, which the noise is drawn in.
        device : torch.device
            Where the noise is drawn.

        Returns
        -------
        torch.Tensor
            The point, [1, *shape] in ``dtype`` on ``device``.

        Raises
        ------
        ValueError
            If ``x`` is not a valid input for this noise.
        """

    @abstractmethod
    def fill(self, out: torch.Tensor, generator: torch.Generator | None) -> None:
        """Fill ``out`` with independent noise draws.

        Parameters
        ----------
        out : torch.Tensor
            A contiguous buffer [b, *shape] in the dtype of the prepared point.
        generator : torch.Generator or None
            The source of randomness (torch's default one when None).
        """

    @abstractmethod
    def perturb(self, x: torch.Tensor, noise: torch.Tensor, out: torch.Tensor) -> None:
        """Write the noisy inputs the base classifier sees into ``out``.

        Parameters
        ----------
        x : torch.Tensor
            The prepared point [1, *shape] (:meth:`prepare`).
        noise : torch.Tensor
            Draws [b, *shape] from :meth:`fill`.
        out : torch.Tensor
            The batch [b, *shape] to write, in any memory layout.
        """

    def stream(
        self,
        shape: tuple[int, ...],
        dtype: torch.dtype,
        device: torch.device,
        generator: torch.Generator | None,
    ) -> NoiseStream:
        """The noise for one call of the classifier: :meth:`fill` in fixed chunks of samples.

        Parameters
        ----------
        shape : tuple of int
            The shape of one input.
        dtype : torch.dtype
            The dtype of the prepared point.
        device : torch.device
            Where the noise is drawn.
        generator : torch.Generator or None
            The source of randomness.

        Returns
        -------
        NoiseStream
            Consecutive draws, the same for a seed whatever the batch size.
        """
        draw = functools.partial(self.fill, generator=generator)
        return NoiseStream(shape, dtype, device, generator, draw)

    def input_point(self, x: torch.Tensor) -> torch.Tensor:
        """The prepared point in input units ([0, 1] pixels).

        ``x`` itself unless the noise works in other units.

        Parameters
        ----------
        x : torch.Tensor
            The prepared point (:meth:`prepare`).

        Returns
        -------
        torch.Tensor
            The same point in input units.
        """
        return x

    def lower_bound(self, n_a: int, n: int, alpha: float, dim: int) -> float:
        """A (1 − α) lower confidence bound on pA from nA of n draws.

        The one-sided Clopper–Pearson bound of CERTIFY (Cohen et al., §3.2).

        Parameters
        ----------
        n_a : int
            Draws on which the base classifier returned ĉA.
        n : int
            Draws.
        alpha : float
            Failure probability, in (0, 1).
        dim : int
            The number of values of one input (C·H·W).

        Returns
        -------
        float
            The lower bound, in [0, 1].
        """
        return float(stats.lower_confidence_bound(n_a, n, alpha))

    def radius(self, p_a_lower: float, dtype: torch.dtype) -> float:
        """The certified L2 radius σ·Φ⁻¹(pA_lower) (Theorem 1 with pB = 1 − pA_lower).

        Parameters
        ----------
        p_a_lower : float
            A lower bound on pA, at least ½ (below it CERTIFY abstains).
        dtype : torch.dtype
            The dtype the noise was drawn in (:meth:`sigma_for`).

        Returns
        -------
        float
            The radius, in input units.
        """
        return float(self.sigma_for(dtype) * norm.ppf(p_a_lower))


class GaussianNoise(NoiseModel):
    """ε ~ N(0, σ²I): the base classifier sees fl(x + σε) (Cohen et al. 2019).

    The noise is drawn in the base model's dtype, and σ scales it as torch rounds it: to
    float32 unless the model is float64.

    Parameters
    ----------
    sigma : float
        The noise level σ > 0, in input units.

    Examples
    --------
    >>> import torch
    >>> noise = GaussianNoise(0.1)
    >>> noise.sigma_for(torch.float64), noise.sigma_for(torch.float32)
    (0.1, 0.10000000149011612)
    """

    def __init__(self, sigma: float) -> None:
        super().__init__(sigma)
        # torch computes x + σε with σ as a float32 for float32, bf16 and float16 tensors.
        self._sigma32 = float(torch.tensor(sigma, dtype=torch.float32))

    def sigma_for(self, dtype: torch.dtype) -> float:
        """σ for float64 noise, else σ rounded to float32.

        Parameters
        ----------
        dtype : torch.dtype
            The dtype the noise is drawn in.

        Returns
        -------
        float
            σ as the noise applies it.
        """
        return self.sigma if dtype == torch.float64 else self._sigma32

    def prepare(self, x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """``x`` in ``dtype`` on ``device``, refused if it has NaN or Inf values.

        Parameters
        ----------
        x : torch.Tensor
            A batch of one input [1, *shape].
        dtype : torch.dtype
            The base model's dtype.
        device : torch.device
            Where the noise is drawn.

        Returns
        -------
        torch.Tensor
            The point the noise is added to.

        Raises
        ------
        ValueError
            If a value is NaN or infinite in ``dtype``.
        """
        # Convert before the check: a huge float64 value becomes Inf in float32.
        x = x.to(dtype=dtype)
        if not torch.isfinite(x).all():
            raise ValueError(f"x contains NaN or Inf (as {dtype}, the base model's dtype)")
        return x.to(device)

    def fill(self, out: torch.Tensor, generator: torch.Generator | None) -> None:
        """Standard normal draws ε.

        Parameters
        ----------
        out : torch.Tensor
            The buffer to fill.
        generator : torch.Generator or None
            The source of randomness.
        """
        torch.randn(out.shape, generator=generator, out=out)

    def perturb(self, x: torch.Tensor, noise: torch.Tensor, out: torch.Tensor) -> None:
        """x + σε, in one pass.

        Parameters
        ----------
        x : torch.Tensor
            The prepared point.
        noise : torch.Tensor
            Standard normal draws ε.
        out : torch.Tensor
            The batch to write.
        """
        torch.add(x, noise, alpha=self.sigma_for(x.dtype), out=out)


class LatticeGaussianNoise(NoiseModel):
    """Sound mode: the rounded Gaussian on the 8-bit grid (:mod:`smoothcert.certify.sound`).

    The input is its grid levels k (x = k/255), the noise integers J drawn exactly from the
    table of :func:`smoothcert.certify.sound.lattice_noise`, and the base classifier sees
    (k + J)/255, a fixed function of the grid point k + J. The lower bound on pA is lowered by
    the table's total-variation bound, d times for d values per input, and the radius by
    :data:`~smoothcert.certify.sound.RADIUS_MARGIN`.

    Parameters
    ----------
    sigma : float
        The noise level σ > 0, in input units.
    dtype : torch.dtype
        The base model's dtype (float32 or float64), which the noise is drawn in.
    device : torch.device
        Where the noise is drawn.

    Examples
    --------
    >>> import torch
    >>> cpu = torch.device("cpu")
    >>> noise = LatticeGaussianNoise(0.25, torch.float32, cpu)
    >>> noise.prepare(torch.tensor([[0.0, 1.0]]), torch.float32, cpu)  # the levels k
    tensor([[  0., 255.]])
    """

    sound: ClassVar[bool] = True

    def __init__(self, sigma: float, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__(sigma)
        # Built once per σ (and validates σ for the table), moved to the device once, its
        # guide in the dtype the noise is drawn in.
        self.table = lattice.lattice_noise(sigma).to(device, dtype)

    def sigma_for(self, dtype: torch.dtype) -> float:
        """σ itself: the noise table is built for it.

        Parameters
        ----------
        dtype : torch.dtype
            The dtype the noise is drawn in.

        Returns
        -------
        float
            σ.
        """
        return self.sigma

    def prepare(self, x: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The grid levels k = 255·x, exact integers in ``dtype`` on ``device``.

        Parameters
        ----------
        x : torch.Tensor
            A batch of one input [1, *shape], on the 8-bit grid.
        dtype : torch.dtype
            The base model's dtype.
        device : torch.device
            Where the noise is drawn.

        Returns
        -------
        torch.Tensor
            The levels k.

        Raises
        ------
        ValueError
            If a value is not on the 8-bit grid (:func:`smoothcert.certify.sound.grid_levels`).
        """
        return lattice.grid_levels(x).to(dtype=dtype, device=device)

    def fill(self, out: torch.Tensor, generator: torch.Generator | None) -> None:
        """Integer draws J of the rounded Gaussian in grid units.

        Parameters
        ----------
        out : torch.Tensor
            The buffer to fill (float32 or float64).
        generator : torch.Generator or None
            The source of the random integers.
        """
        lattice.draw_lattice_noise(self.table, out, generator)

    def perturb(self, x: torch.Tensor, noise: torch.Tensor, out: torch.Tensor) -> None:
        """(k + J)/255.

        Parameters
        ----------
        x : torch.Tensor
            The grid levels k.
        noise : torch.Tensor
            Integer draws J.
        out : torch.Tensor
            The batch to write.
        """
        # The integer k + J is exact, then one rounded division on CPU (CUDA multiplies by
        # fl(1/255): another fixed function of k + J).
        torch.add(x, noise, out=out)
        out.div_(lattice.GRID_LEVELS)

    def input_point(self, x: torch.Tensor) -> torch.Tensor:
        """The levels k as the image k/255.

        Parameters
        ----------
        x : torch.Tensor
            The grid levels k.

        Returns
        -------
        torch.Tensor
            k/255.
        """
        return x / lattice.GRID_LEVELS

    def lower_bound(self, n_a: int, n: int, alpha: float, dim: int) -> float:
        """The Clopper–Pearson bound under the drawn noise, corrected (:meth:`correct`).

        A bound under the rounded Gaussian, whose smoothed classifier Theorem 1 certifies.

        Parameters
        ----------
        n_a : int
            Draws on which the base classifier returned ĉA.
        n : int
            Draws.
        alpha : float
            Failure probability, in (0, 1).
        dim : int
            The number of values of one input (C·H·W).

        Returns
        -------
        float
            The lower bound on pA under the rounded Gaussian.
        """
        return self.correct(super().lower_bound(n_a, n, alpha, dim), dim)

    def correct(self, p_a_lower: float, dim: int) -> float:
        """A lower bound on pA under the rounded Gaussian from one under the drawn noise.

        The bound minus ``dim`` times the table's total-variation bound per coordinate (the
        distance between product measures is at most the sum of the coordinates' distances).

        Parameters
        ----------
        p_a_lower : float
            A lower confidence bound on pA under the drawn (lattice) noise.
        dim : int
            The number of values of one input (C·H·W).

        Returns
        -------
        float
            The lower bound on pA under the rounded Gaussian, clipped below at 0.
        """
        return max(0.0, p_a_lower - dim * self.table.tv)

    def radius(self, p_a_lower: float, dtype: torch.dtype) -> float:
        """σ·Φ⁻¹(pA_lower), lowered by the margin covering its float64 evaluation.

        Parameters
        ----------
        p_a_lower : float
            A lower bound on pA under the rounded Gaussian, at least ½.
        dtype : torch.dtype
            The dtype the noise was drawn in.

        Returns
        -------
        float
            The radius, in input units.
        """
        return super().radius(p_a_lower, dtype) * (1 - lattice.RADIUS_MARGIN)


def noise_model(
    sigma: float, *, sound: bool, dtype: torch.dtype, device: torch.device
) -> NoiseModel:
    """The noise of a smoothed classifier: Gaussian, or the lattice noise of sound mode.

    With ``sound``, the rounded Gaussian on the 8-bit grid.

    Parameters
    ----------
    sigma : float
        The noise level σ > 0 (checked by the caller).
    sound : bool
        Sound mode (:class:`LatticeGaussianNoise`).
    dtype : torch.dtype
        The base model's dtype.
    device : torch.device
        Where the noise is drawn.

    Returns
    -------
    NoiseModel
        :class:`GaussianNoise` or :class:`LatticeGaussianNoise`.

    Raises
    ------
    ValueError
        With ``sound``, if ``dtype`` is neither float32 nor float64.
    """
    if not sound:
        return GaussianNoise(sigma)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"sound=True needs a float32 or float64 base model, got {dtype}")
    return LatticeGaussianNoise(sigma, dtype, device)
