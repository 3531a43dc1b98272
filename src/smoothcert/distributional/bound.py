"""The NAL certificate from a surrogate table (Theorem 1, Eq. 3): one γ and ρ
(:func:`distributional_bound`, :class:`DistributionalBound`), a γ grid and several ρ
(:func:`distributional_curve`, :class:`DistributionalCurve`), and the empirical worst-case
loss (:func:`worst_case_loss`). The theory and its caveats: :mod:`smoothcert.distributional`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
from torch import nn

from smoothcert._util.checks import ParameterError, finite_real, one_of
from smoothcert.distributional.objective import check_surrogate_args
from smoothcert.distributional.table import SurrogateTable, check_gammas, surrogate_table

# --------------------------------------------------------------------------- aggregation


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    n = values.shape[0]
    se = float(values.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return float(values.mean()), se


@dataclass
class DistributionalBound:
    """γρ + mean φ̃γ at one (γ, ρ) (Theorem 1, Eq. 3), with its standard error over examples."""

    gamma: float
    rho: float  # with the noise: E‖x + z − x0‖² ≤ ρ
    rho_adv: float  # without the noise: E‖x − x0‖² ≤ ρ_adv = ρ − dσ²
    value: float  # the ESTIMATE of Theorem 1's right-hand side (not a bound; see estimate)
    se: float  # standard error over examples (includes the Monte-Carlo error per example)
    mean_surrogate: float  # mean φ̃γ(θ; x0)
    n: int
    grad_norm_median: float  # convergence diagnostic of the ascents
    grad_norm_max: float

    @property
    def estimate(self) -> float:
        """γρ + mean φ̃γ: an estimate, not a bound (``value`` is its deprecated old name).

        The ascent's sup is a local maximum, so it can be low. A certified upper bound is
        :func:`smoothcert.distributional.certified.certified_bound`."""
        return self.value


def _rho_adv(rho: float, noise_cost: float, rho_with_noise: bool, name: str = "rho") -> float:
    """The adversary's budget ρ_adv of a budget ``rho`` given with or without the noise."""
    rho = finite_real(name, rho, nonnegative=True)
    if not rho_with_noise:
        return rho
    if rho < noise_cost:
        raise ParameterError(
            name,
            f"counted with the noise must be >= dσ² = {noise_cost:.4g} (the noise alone moves "
            f"that far), got {rho}",
        )
    return float(rho - noise_cost)


def bound_from_table(
    table: SurrogateTable, gamma_index: int, rho: float, *, rho_with_noise: bool = False
) -> DistributionalBound:
    """γρ + mean φ̃γ from precomputed per-example surrogates (column ``gamma_index``).

    Parameters
    ----------
    table : SurrogateTable
        Per-example surrogates, e.g. from :func:`surrogate_table`.
    gamma_index : int
        The column of ``table.gammas`` to take the bound at.
    rho : float
        The budget: ρ_adv = E‖x − x0‖², or ρ with the noise if ``rho_with_noise``.
    rho_with_noise : bool, default False
        Whether ``rho`` counts the noise (then it must be >= dσ²).

    Returns
    -------
    DistributionalBound
        The bound, its standard error over examples and the ascents' diagnostics.

    Raises
    ------
    smoothcert._util.checks.ParameterError
        If ``rho`` is negative, not finite, or below dσ² when it counts the noise.
    """
    gamma = float(table.gammas[gamma_index])
    rho_adv = _rho_adv(rho, table.noise_cost, rho_with_noise)
    lag = table.lagrangian[:, gamma_index]
    mean_lag, se = _mean_se(lag)
    gn = table.grad_norm[:, gamma_index]
    return DistributionalBound(
        gamma=gamma,
        rho=rho_adv + table.noise_cost,
        rho_adv=rho_adv,
        value=gamma * rho_adv + mean_lag,
        se=se,
        mean_surrogate=mean_lag - gamma * table.noise_cost,
        n=lag.shape[0],
        grad_norm_median=float(np.median(gn)),
        grad_norm_max=float(gn.max()),
    )


def distributional_bound(
    model: nn.Module,
    data,
    gamma: float,
    rho: float,
    sigma: float,
    *,
    rho_with_noise: bool = False,
    **kwargs,
) -> DistributionalBound:
    """An estimate of the bound γρ + E_P̂ φ̃γ(θ; x0) of Theorem 1 (Eq. 3) at one γ and ρ.

    Not certified: see :mod:`smoothcert.distributional.certified` for a certified bound.

    ``rho`` is the adversary's own budget ρ_adv = E‖x − x0‖² unless ``rho_with_noise``, when
    it counts the noise (E‖x + z − x0‖² ≤ ρ, as printed in Eq. 3); the result reports both.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier θ.
    data : pair of tensors or arrays, or a data set
        The examples (see :func:`surrogate_table`).
    gamma : float
        Penalty γ > 0.
    rho : float
        The budget, >= 0 (see ``rho_with_noise``).
    sigma : float
        Noise level σ >= 0 (0: WRM's certificate).
    rho_with_noise : bool, default False
        Whether ``rho`` counts the noise.
    **kwargs
        Passed to :func:`surrogate_table` (``indices``, ``batch_size``, ``seed``,
        ``progress``) and :func:`surrogate`.

    Returns
    -------
    DistributionalBound
        The estimate of the bound on the worst-case expected loss and its standard error.

    Raises
    ------
    ValueError
        If an argument is out of range (a :class:`~smoothcert._util.checks.ParameterError` naming
        it) or the data or the loss is unusable.
    """
    # Before the long computation; names gamma, not the one-element list "gammas".
    check_surrogate_args(gamma, sigma, 1, 0, 1)
    _rho_adv(rho, 0.0, False)
    table = surrogate_table(model, data, [gamma], sigma, **kwargs)
    return bound_from_table(table, 0, rho, rho_with_noise=rho_with_noise)


@dataclass
class DistributionalCurve:
    """For each ρ: γρ + mean φ̃γ at a γ of the grid chosen without optimistic bias.

    The minimum over γ of Monte-Carlo estimates picks, among the grid, the estimate that came
    out lowest by chance, so it is biased low. With ``select="split"`` (the default) γ is chosen
    on the examples at even positions and the certificate is the mean over the examples at odd
    positions (fresh examples and fresh draws) at that γ; its standard error over those
    examples is that of a fixed γ, since the choice did not see them. ``in_sample`` keeps the
    minimum over the grid on all examples, for comparison (optimistic)."""

    rho_adv: np.ndarray  # [R] the adversary's budget E‖x − x0‖²
    rho: np.ndarray  # [R] the same budget counted with the noise, ρ_adv + dσ²
    value: np.ndarray  # [R] the ESTIMATE of the bound (not certified; see estimate)
    se: np.ndarray  # [R] its standard error over the examples it is a mean over
    gamma: np.ndarray  # [R] the γ of the grid the bound is taken at
    gammas: np.ndarray  # [G] the grid
    mean_lagrangian: np.ndarray  # [G] mean sup_x{ℓ̂ − γ‖x − x0‖²} over all examples
    grad_norm_median: np.ndarray  # [G] convergence diagnostic per γ
    sigma: float
    noise_cost: float  # dσ²
    n: int  # examples in all
    select: str = "split"
    n_select: int = 0  # examples γ was chosen on
    n_eval: int = 0  # examples the value is a mean over
    in_sample: np.ndarray | None = None  # [R] min over the grid on all examples (optimistic)

    @property
    def estimate(self) -> np.ndarray:
        """The estimate per ρ, not a bound (``value`` is its deprecated old name).

        Not certified, since the ascent's sup is a local maximum. A certified upper bound is
        :func:`smoothcert.distributional.certified.certified_bound`."""
        return self.value


SELECT = ("split", "in-sample")


def curve_from_table(
    table: SurrogateTable,
    rhos: Sequence[float],
    *,
    rho_with_noise: bool = False,
    select: str = "split",
) -> DistributionalCurve:
    """bound(ρ_adv) = γ*ρ_adv + mean sup_x[ℓ̂(θ; x) − γ*‖x − x0‖²], γ* from the grid.

    ``select="split"``: γ* = argmin_γ {γρ_adv + mean over the even-position examples}, the
    value and its standard error from the odd-position examples (needs two examples).
    ``select="in-sample"``: γ* and the value from all examples, the min over the grid (biased
    low by the selection; kept for comparison and for the grid's lower envelope).

    Parameters
    ----------
    table : SurrogateTable
        Per-example surrogates over the γ grid.
    rhos : sequence of float
        Budgets ρ_adv (or ρ with the noise if ``rho_with_noise``), each >= 0.
    rho_with_noise : bool, default False
        Whether ``rhos`` count the noise.
    select : {"split", "in-sample"}, default "split"
        How γ* is chosen (see above).

    Returns
    -------
    DistributionalCurve
        One bound per ρ, with its standard error and the γ it is taken at.

    Raises
    ------
    ValueError
        If ``rhos`` or ``select`` is invalid (a :class:`~smoothcert._util.checks.ParameterError`),
        or ``select="split"`` with fewer than two examples.
    """
    one_of("select", select, SELECT)
    r = np.asarray(list(rhos), dtype=np.float64)
    if r.ndim != 1 or r.size == 0:
        raise ParameterError("rhos", f"must be a non-empty list of numbers, got {rhos!r}")
    rho_adv = np.array([_rho_adv(float(v), table.noise_cost, rho_with_noise, "rhos") for v in r])
    n = table.lagrangian.shape[0]
    lag = table.lagrangian
    if select == "split" and n < 2:
        raise ValueError(
            "the certificate needs at least 2 examples: γ is chosen on half of them and the "
            "bound estimated on the other half"
        )
    mean_lag = lag.mean(0)
    in_sample = (rho_adv[:, None] * table.gammas[None, :] + mean_lag[None, :]).min(1)
    choose, evaluate = (lag[0::2], lag[1::2]) if select == "split" else (lag, lag)
    bounds = rho_adv[:, None] * table.gammas[None, :] + choose.mean(0)[None, :]  # [R, G]
    best = bounds.argmin(1)
    m = evaluate.shape[0]
    se_eval = evaluate.std(0, ddof=1) / math.sqrt(m) if m > 1 else np.full(lag.shape[1], np.nan)
    return DistributionalCurve(
        rho_adv=rho_adv,
        rho=rho_adv + table.noise_cost,
        value=rho_adv * table.gammas[best] + evaluate.mean(0)[best],
        se=se_eval[best],
        gamma=table.gammas[best],
        gammas=table.gammas.copy(),
        mean_lagrangian=mean_lag,
        grad_norm_median=np.median(table.grad_norm, axis=0),
        sigma=table.sigma,
        noise_cost=table.noise_cost,
        n=n,
        select=select,
        n_select=choose.shape[0],
        n_eval=m,
        in_sample=in_sample,
    )


def distributional_curve(
    model: nn.Module,
    data,
    gammas: Sequence[float],
    rhos: Sequence[float],
    sigma: float,
    *,
    rho_with_noise: bool = False,
    select: str = "split",
    **kwargs,
) -> DistributionalCurve:
    """An estimate of the bound on the worst-case expected loss as a function of ρ.

    Not certified: the inner sup comes from gradient ascent, ℓ̂ from Monte Carlo, E_P0 from
    a test-set mean (:mod:`smoothcert.distributional.certified` gives a certified bound). NAL
    Theorem 1, at a γ of the grid as in Theorem 3, chosen on other examples than those it
    is estimated on (:func:`curve_from_table`). ``rhos`` are ρ_adv = E‖x − x0‖² unless
    ``rho_with_noise``; the result reports both.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier θ.
    data : pair of tensors or arrays, or a data set
        The examples (see :func:`surrogate_table`).
    gammas : sequence of float
        The grid of penalties γ, each finite and > 0.
    rhos : sequence of float
        Budgets, each >= 0 (see ``rho_with_noise``).
    sigma : float
        Noise level σ >= 0 (0: WRM's certificate).
    rho_with_noise : bool, default False
        Whether ``rhos`` count the noise.
    select : {"split", "in-sample"}, default "split"
        How the γ of each bound is chosen (:func:`curve_from_table`).
    **kwargs
        Passed to :func:`surrogate_table` and :func:`surrogate` (e.g. ``restarts``).

    Returns
    -------
    DistributionalCurve
        One estimate per ρ.

    Raises
    ------
    ValueError
        If an argument is out of range (a :class:`~smoothcert._util.checks.ParameterError` naming
        it) or the data or the loss is unusable.
    """
    one_of("select", select, SELECT)
    table = surrogate_table(model, data, gammas, sigma, **kwargs)
    return curve_from_table(table, rhos, rho_with_noise=rho_with_noise, select=select)


@dataclass
class WorstCasePoint:
    """One point of the empirical worst-case curve (NAL §5.1, Figure 2(a))."""

    gamma_adv: float
    rho_test: float  # ρ̂_test = mean E_z‖x* + z − x0‖² (with the noise)
    rho_adv_test: float  # mean ‖x* − x0‖² (without)
    loss: float  # mean E_z ℓ(θ; x* + z) = mean ℓ̂(θ; x*)
    se: float  # standard error over examples
    n: int
    grad_norm_median: float


def worst_case_from_table(table: SurrogateTable) -> list[WorstCasePoint]:
    """(ρ̂_test, mean ℓ̂(θ; x*)) for each γ_adv of the table, x* the ascent's maximizer.

    Parameters
    ----------
    table : SurrogateTable
        Per-example surrogates over the sweep of γ_adv.

    Returns
    -------
    list of WorstCasePoint
        One per γ_adv, in the table's order.
    """
    points = []
    for j, gamma in enumerate(table.gammas):
        loss, se = _mean_se(table.loss[:, j])
        cost = float(table.cost[:, j].mean())
        points.append(
            WorstCasePoint(
                gamma_adv=float(gamma),
                rho_test=cost + table.noise_cost,
                rho_adv_test=cost,
                loss=loss,
                se=se,
                n=table.loss.shape[0],
                grad_norm_median=float(np.median(table.grad_norm[:, j])),
            )
        )
    return points


def worst_case_loss(
    model: nn.Module, data, gamma_adv: Sequence[float] | float, sigma: float, **kwargs
) -> list[WorstCasePoint]:
    """The empirical worst-case loss of NAL §5.1 for a sweep of γ_adv (Figure 2(a)).

    x* = argmax_x E_z[ℓ(θ; x+z) − γ_adv‖x+z−x0‖²] per test example, ρ̂_test the mean transport
    cost and the mean loss at x* + z with fresh draws.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier θ.
    data : pair of tensors or arrays, or a data set
        The examples (see :func:`surrogate_table`).
    gamma_adv : float or sequence of float
        The adversary's penalties, each finite and > 0 (one number is a sweep of one).
    sigma : float
        Noise level σ >= 0.
    **kwargs
        Passed to :func:`surrogate_table` and :func:`surrogate`.

    Returns
    -------
    list of WorstCasePoint
        One per γ_adv.

    Raises
    ------
    ValueError
        If an argument is out of range (a :class:`~smoothcert._util.checks.ParameterError` naming
        it) or the data or the loss is unusable.
    """
    # One number (numpy's scalars and 0-d arrays included) is a sweep of one.
    one = isinstance(gamma_adv, Real) or (isinstance(gamma_adv, np.ndarray) and gamma_adv.ndim == 0)
    gammas = [gamma_adv] if one else gamma_adv
    gammas = check_gammas(gammas, "gamma_adv")
    return worst_case_from_table(surrogate_table(model, data, gammas, sigma, **kwargs))
