"""One-step diffusion denoising for denoised smoothing (Carlini et al. 2023).

A diffusion model's noise-prediction network ε(x_t, t) (Ho et al. 2020) on images scaled to
[−1, 1] becomes a denoiser D of [0, 1] images for one noise level σ: Gaussian noise
δ ~ N(0, σ²I) on [0, 1] images is noise 2δ on [−1, 1] images, and
x_t = √ᾱ_t·(2(x + δ) − 1) is distributed as the forward process
q(x_t | x₀) = N(√ᾱ_t·x₀, (1 − ᾱ_t)I) (Ho et al., Eq. 4) exactly when
(1 − ᾱ_t)/ᾱ_t = 4σ², i.e. ᾱ_t = 1/(1 + 4σ²) (Carlini et al. 2023, §3, Eq. 2). One call of ε
at that timestep t* predicts x₀ (Ho et al., Eq. 15):
x̂₀ = (x_t − √(1 − ᾱ_t)·ε(x_t, t))/√ᾱ_t.

Timesteps are 0-based: step t ∈ {0, …, T − 1} has ᾱ_t = ∏_{s ≤ t} (1 − β_s), so ᾱ_0 = 1 − β_0
(the first step of Ho et al.'s 1-based notation). The ε-network receives t as an int64
tensor of these indices.

References
----------
.. [1] J. Ho, A. Jain, P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
.. [2] A. Nichol, P. Dhariwal, "Improved Denoising Diffusion Probabilistic Models", ICML 2021.
.. [3] N. Carlini, F. Tramèr, K. Dvijotham, L. Rice, M. Sun, J. Z. Kolter, "(Certified!!)
   Adversarial Robustness for Free!", ICLR 2023.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smoothcert._util.checks import ParameterError, finite_real, is_integer, positive_int

__all__ = [
    "SCHEDULE_KINDS",
    "NoiseSchedule",
    "OneStepDiffusionDenoiser",
    "alpha_bar_schedule",
    "cosine_schedule",
    "linear_schedule",
    "schedule_from_metadata",
]

#: The ``kind`` of a :class:`NoiseSchedule` (and of its checkpoint metadata).
SCHEDULE_KINDS = ("linear", "cosine", "array")


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """The cumulative products ᾱ_t of a diffusion model's forward process, t = 0 … T − 1.

    Build one with :func:`linear_schedule`, :func:`cosine_schedule` or
    :func:`alpha_bar_schedule`; they validate ᾱ (finite, in (0, 1), strictly decreasing).

    Attributes
    ----------
    alpha_bar : numpy.ndarray
        float64 [T], strictly decreasing in (0, 1).
    kind : str
        "linear", "cosine" or "array" (:data:`SCHEDULE_KINDS`).
    params : dict
        What rebuilds the schedule: steps and β range, steps and offset s, or the ᾱ values.
    """

    alpha_bar: np.ndarray = field(repr=False)
    kind: str
    params: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def steps(self) -> int:
        """T, the number of timesteps."""
        return len(self.alpha_bar)

    def noise_levels(self) -> np.ndarray:
        """σ_t = √((1 − ᾱ_t)/ᾱ_t)/2: the noise std on [0, 1] images each step stands for.

        x_t/√ᾱ_t = x₀ + √((1 − ᾱ_t)/ᾱ_t)·ε on [−1, 1] images (Ho et al., Eq. 4), and a
        [−1, 1] std is twice a [0, 1] one (Carlini et al. 2023, §3).

        Returns
        -------
        numpy.ndarray
            float64 [T], increasing.
        """
        return np.sqrt((1.0 - self.alpha_bar) / self.alpha_bar) / 2.0

    def timestep_for(self, sigma: float) -> int:
        """t*: the step whose ᾱ_t is nearest to 1/(1 + 4σ²) (Carlini et al. 2023, Eq. 2).

        Nearest in absolute difference of ᾱ; of two steps equally near, the earlier (less
        noisy) one.

        Parameters
        ----------
        sigma : float
            Noise std on [0, 1] images, within the schedule's noise levels
            ``[noise_levels()[0], noise_levels()[-1]]``.

        Returns
        -------
        int
            The 0-based timestep t*.

        Raises
        ------
        ParameterError
            If ``sigma`` is not positive or lies outside the schedule's noise levels.

        Examples
        --------
        >>> linear_schedule().timestep_for(0.5)  # ᾱ_258 = 0.50024 is nearest to 1/2
        258
        """
        sigma = finite_real("sigma", sigma, positive=True)
        levels = self.noise_levels()
        low, high = float(levels[0]), float(levels[-1])
        if not low <= sigma <= high:
            raise ParameterError(
                "sigma",
                f"{sigma} is outside the noise levels of the {self.kind} diffusion schedule, "
                f"[{low:.4g}, {high:.4g}] in [0,1] pixel units (√((1−ᾱ_t)/ᾱ_t)/2 over its "
                f"{self.steps} steps)",
            )
        target = 1.0 / (1.0 + 4.0 * sigma * sigma)
        # argmin returns the first minimum: on a tie, the smaller t.
        return int(np.argmin(np.abs(self.alpha_bar - target)))

    def check_timestep(self, timestep: object, name: str = "timestep") -> int:
        """``timestep`` as an int in {0, …, T − 1}; ParameterError naming ``name`` otherwise.

        Parameters
        ----------
        timestep : object
            The value to check.
        name : str, default "timestep"
            The parameter to name in the error.

        Returns
        -------
        int
            ``timestep``.

        Raises
        ------
        ParameterError
            If it is not an integer in [0, T − 1].
        """
        if not is_integer(timestep) or not 0 <= int(timestep) < self.steps:  # type: ignore[call-overload]
            raise ParameterError(
                name,
                f"must be an integer timestep of the schedule, in [0, {self.steps - 1}], "
                f"got {timestep!r}",
            )
        return int(timestep)  # type: ignore[call-overload]

    def to_metadata(self) -> dict[str, Any]:
        """The JSON description :func:`schedule_from_metadata` rebuilds the schedule from.

        Returns
        -------
        dict
            ``kind`` and the parameters of the builder (or the ᾱ values, kind "array").
        """
        return {"kind": self.kind, **self.params}


def _validated(
    alpha_bar: np.ndarray, kind: str, params: dict[str, Any], name: str
) -> NoiseSchedule:
    if alpha_bar.ndim != 1 or len(alpha_bar) < 1:
        raise ParameterError(
            name, f"must be a 1-D sequence of ᾱ_t values, got shape {alpha_bar.shape}"
        )
    if not np.all(np.isfinite(alpha_bar)) or not np.all((alpha_bar > 0) & (alpha_bar < 1)):
        raise ParameterError(name, "must hold ᾱ_t values strictly between 0 and 1")
    steps_up = np.flatnonzero(np.diff(alpha_bar) >= 0)
    if len(steps_up):
        t = int(steps_up[0])
        raise ParameterError(
            name,
            f"must decrease strictly (ᾱ_t is a cumulative product of 1 − β_t), but "
            f"ᾱ[{t + 1}] = {alpha_bar[t + 1]:.6g} >= ᾱ[{t}] = {alpha_bar[t]:.6g}",
        )
    return NoiseSchedule(alpha_bar.astype(np.float64), kind, params)


def linear_schedule(
    steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
) -> NoiseSchedule:
    """DDPM's linear schedule: β_t from ``beta_start`` to ``beta_end``, ᾱ_t = ∏_{s≤t}(1 − β_s).

    Ho et al. 2020, §4: T = 1000, β from 10⁻⁴ to 0.02 (the defaults); the β_t are evenly
    spaced including both ends, computed in float64.

    Parameters
    ----------
    steps : int, default 1000
        T.
    beta_start, beta_end : float, default 1e-4, 0.02
        β of the first and last step, 0 < beta_start <= beta_end < 1.

    Returns
    -------
    NoiseSchedule

    Examples
    --------
    >>> s = linear_schedule()
    >>> s.steps, round(float(s.alpha_bar[0]), 6)
    (1000, 0.9999)
    """
    steps = positive_int("steps", steps)
    beta_start = finite_real("beta_start", beta_start, positive=True)
    beta_end = finite_real("beta_end", beta_end, positive=True)
    if not beta_start <= beta_end < 1:
        raise ParameterError(
            "beta_end", f"must be in [beta_start, 1) = [{beta_start}, 1), got {beta_end}"
        )
    betas = np.linspace(beta_start, beta_end, steps, dtype=np.float64)
    params = {"steps": steps, "beta_start": beta_start, "beta_end": beta_end}
    return _validated(np.cumprod(1.0 - betas), "linear", params, "beta_end")


def cosine_schedule(steps: int = 1000, s: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
    """The cosine schedule of Nichol & Dhariwal 2021, Eq. 17.

    ᾱ(u) = f(u)/f(0) with f(u) = cos²((u/T + s)/(1 + s)·π/2); β_u = min(1 − ᾱ(u)/ᾱ(u − 1),
    ``max_beta``) for u = 1 … T (the clipping of §3.2), and step t = u − 1 has
    ᾱ_t = ∏_{v≤u}(1 − β_v).

    Parameters
    ----------
    steps : int, default 1000
        T.
    s : float, default 0.008
        The offset s of Eq. 17, >= 0.
    max_beta : float, default 0.999
        The largest β, in (0, 1).

    Returns
    -------
    NoiseSchedule
    """
    steps = positive_int("steps", steps)
    s = finite_real("s", s, nonnegative=True)
    max_beta = finite_real("max_beta", max_beta, positive=True)
    if max_beta >= 1:
        raise ParameterError("max_beta", f"must be in (0, 1), got {max_beta}")
    u = np.arange(steps + 1, dtype=np.float64)
    f = np.cos((u / steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = np.minimum(1.0 - f[1:] / f[:-1], max_beta)
    params = {"steps": steps, "s": s, "max_beta": max_beta}
    return _validated(np.cumprod(1.0 - betas), "cosine", params, "steps")


def alpha_bar_schedule(alpha_bar: Sequence[float] | np.ndarray | str | Path) -> NoiseSchedule:
    """A schedule given by its ᾱ_t values, or a file of them.

    Parameters
    ----------
    alpha_bar : array-like, str or pathlib.Path
        ᾱ_0 … ᾱ_{T−1}, strictly decreasing in (0, 1); or a ``.npy`` file holding them, or a
        text file of whitespace-separated numbers.

    Returns
    -------
    NoiseSchedule
        Of kind "array" (its metadata lists the values).

    Raises
    ------
    FileNotFoundError
        If a file path does not exist.
    ParameterError
        Naming ``alpha_bar``, if the values are not 1-D, finite, in (0, 1) or strictly
        decreasing, or the file cannot be parsed.
    """
    if isinstance(alpha_bar, (str, Path)):
        path = Path(alpha_bar)
        if not path.is_file():
            raise FileNotFoundError(f"alpha_bar file {path} does not exist")
        try:
            if path.suffix == ".npy":
                values = np.load(path, allow_pickle=False)
            else:
                values = np.array(path.read_text().split(), dtype=np.float64)
        except ValueError as exc:
            raise ParameterError(
                "alpha_bar", f"file {path} holds no list of numbers ({exc})"
            ) from None
    else:
        try:
            values = np.asarray(alpha_bar, dtype=np.float64)
        except (TypeError, ValueError):
            raise ParameterError("alpha_bar", f"must be numbers, got {alpha_bar!r}") from None
    values = np.asarray(values, dtype=np.float64)
    schedule = _validated(values, "array", {}, "alpha_bar")
    return NoiseSchedule(schedule.alpha_bar, "array", {"alpha_bar": schedule.alpha_bar.tolist()})


def schedule_from_metadata(meta: object) -> NoiseSchedule:
    """Rebuild a schedule from :meth:`NoiseSchedule.to_metadata` (as checkpoints store it).

    Parameters
    ----------
    meta : dict
        ``{"kind": "linear" | "cosine" | "array", ...}``, the builder's parameters.

    Returns
    -------
    NoiseSchedule

    Raises
    ------
    ParameterError
        Naming ``schedule``, when ``meta`` describes no schedule (or the builder's parameter
        at fault).
    """
    if not isinstance(meta, dict) or meta.get("kind") not in SCHEDULE_KINDS:
        raise ParameterError(
            "schedule",
            f"must be a JSON object whose kind is one of {', '.join(SCHEDULE_KINDS)}, got {meta!r}",
        )
    params = {k: v for k, v in meta.items() if k != "kind"}
    builder = {"linear": linear_schedule, "cosine": cosine_schedule, "array": alpha_bar_schedule}
    try:
        return builder[meta["kind"]](**params)
    except TypeError as exc:
        raise ParameterError(
            "schedule", f"has unexpected fields for {meta['kind']}: {exc}"
        ) from None


class OneStepDiffusionDenoiser(nn.Module):
    """D(x) for [0, 1] images from one call of a noise-prediction network ε(x_t, t).

    Carlini et al. 2023, Algorithm 1 (one-shot denoising): with t* the step of
    :meth:`NoiseSchedule.timestep_for` (ᾱ_t* nearest to 1/(1 + 4σ²), Eq. 2),

    x_t* = √ᾱ_t*·(2x − 1),  x̂₀ = (x_t* − √(1 − ᾱ_t*)·ε(x_t*, t*))/√ᾱ_t*  (Ho et al., Eq. 15),

    D(x) = clamp((x̂₀ + 1)/2, 0, 1), where x = x_clean + δ is the noisy [0, 1] image the
    smoothed classifier draws. The scaling to [−1, 1] and back is done here.

    Parameters
    ----------
    eps_model : torch.nn.Module
        ε(x_t, t): maps [B, C, H, W] images on the [−1, 1] scale and an int64 [B] tensor of
        0-based timesteps to the predicted noise [B, C, H, W].
    schedule : NoiseSchedule
        The ᾱ_t the network was trained with.
    sigma : float
        The smoothing noise std on [0, 1] images, within the schedule's noise levels.
    timestep : int, optional
        Use this step instead of t* (an integer in [0, T − 1]).

    Attributes
    ----------
    timestep : int
        The step used (t*).
    alpha_bar_t : float
        ᾱ at that step.

    Raises
    ------
    ParameterError
        If ``sigma`` is outside the schedule's noise levels or ``timestep`` outside the
        schedule (the message names the parameter).
    """

    def __init__(
        self,
        eps_model: nn.Module,
        schedule: NoiseSchedule,
        sigma: float,
        *,
        timestep: int | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(eps_model, nn.Module):
            raise ParameterError(
                "eps_model", f"must be a torch.nn.Module, got {type(eps_model).__name__}"
            )
        if not isinstance(schedule, NoiseSchedule):
            raise ParameterError(
                "schedule", f"must be a NoiseSchedule, got {type(schedule).__name__}"
            )
        self.eps_model = eps_model
        self.schedule = schedule
        self.sigma = finite_real("sigma", sigma, positive=True)
        if timestep is None:
            self.timestep = schedule.timestep_for(self.sigma)
        else:
            self.timestep = schedule.check_timestep(timestep)
        self.alpha_bar_t = float(schedule.alpha_bar[self.timestep])
        shape = getattr(eps_model, "input_shape", None)
        if shape is not None:
            self.input_shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """D(x) = clamp((x̂₀ + 1)/2, 0, 1), x̂₀ by Ho et al.'s Eq. 15 at t*.

        Parameters
        ----------
        x : torch.Tensor
            Noisy images [B, C, H, W] on the [0, 1] scale.

        Returns
        -------
        torch.Tensor
            The denoised images, same shape, in [0, 1].
        """
        a = self.alpha_bar_t
        x_t = math.sqrt(a) * (2.0 * x - 1.0)
        t = torch.full((x.shape[0],), self.timestep, dtype=torch.int64, device=x.device)
        eps = self.eps_model(x_t, t)
        x0 = (x_t - math.sqrt(1.0 - a) * eps) / math.sqrt(a)
        return ((x0 + 1.0) / 2.0).clamp(0.0, 1.0)

    def extra_repr(self) -> str:
        """The settings shown by ``repr``.

        Returns
        -------
        str
            σ, t* and ᾱ_t*.
        """
        return f"sigma={self.sigma}, timestep={self.timestep}, alpha_bar_t={self.alpha_bar_t:.6g}"
