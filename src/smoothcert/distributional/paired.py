"""Two estimates of Theorem 1 compared on the same examples, with a paired standard error.

NAL Theorem 3 (Eq. 7) says that at one budget ρ the smoothed certificate
inf_γ {γρ + E φγ} lies below WRM's inf_γ {γρ + E sup_x'[ℓ − γc]}. Both estimates are means over
the same held-out examples (γ chosen on the even positions, the value taken on the odd ones, as
:func:`~smoothcert.distributional.bound.curve_from_table` does), so their difference has a
standard error over the per-example differences: far smaller than the two standard errors
combined as if independent, because an example that is hard for one is hard for the other.

The theorem counts ρ with the noise: the smoothed side's adversary then moves by
ρ_adv = ρ − dσ² on average and the noise takes the rest (with one perturbation shared by
the noise draws, φ̃γ = sup_x{ℓ̂ − γ‖x − x0‖²} − γdσ²; see the threat-model page of the docs),
while WRM's adversary gets all of ρ. Comparing at equal
ρ_adv instead (the same adversary against both) is a different question; callers pick the
budgets of each side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smoothcert._util.checks import ParameterError
from smoothcert.distributional.table import SurrogateTable

__all__ = ["PairedDifference", "paired_difference"]


@dataclass(frozen=True)
class PairedDifference:
    """Estimates a and b at their budgets, and a − b with its paired standard error."""

    rho_adv_a: np.ndarray  # [R] side a's budget E‖x − x0‖²
    rho_adv_b: np.ndarray  # [R]
    value_a: np.ndarray  # [R] γa ρa + mean over the held-out examples of sup[ℓ̂ − γa c]
    value_b: np.ndarray  # [R]
    gamma_a: np.ndarray  # [R] the γ of each side, chosen on the other half
    gamma_b: np.ndarray  # [R]
    difference: np.ndarray  # [R] value_a − value_b
    se: np.ndarray  # [R] sd of the per-example differences / √m (test examples only)
    n_eval: int  # m, the held-out examples both means are over


def _held_out_values(table: SurrogateTable, rho_adv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per held-out example, γ*ρ_adv + sup[ℓ̂ − γ*c] at the γ* the even positions choose
    ([m, R]), and γ* ([R])."""
    choose, evaluate = table.lagrangian[0::2], table.lagrangian[1::2]
    best = (rho_adv[:, None] * table.gammas[None, :] + choose.mean(0)[None, :]).argmin(1)
    gamma = table.gammas[best]
    return evaluate[:, best] + (rho_adv * gamma)[None, :], gamma


def paired_difference(
    a: SurrogateTable,
    b: SurrogateTable,
    rho_adv_a: Sequence[float],
    rho_adv_b: Sequence[float],
) -> PairedDifference:
    """Estimate a at ``rho_adv_a`` minus estimate b at ``rho_adv_b``, with a paired SE.

    Budget by budget; the standard error is that of the mean per-example difference.

    Each side's value is exactly :func:`~smoothcert.distributional.bound.curve_from_table`'s
    (``select="split"``) at its budget, so the difference is that of the two curves.

    Parameters
    ----------
    a, b : SurrogateTable
        Tables of the same examples (same data-set indices, in the same order).
    rho_adv_a, rho_adv_b : sequence of float
        Budgets ρ_adv of each side, as many for a as for b, each >= 0.

    Returns
    -------
    PairedDifference

    Raises
    ------
    smoothcert._util.checks.ParameterError
        If the tables hold other examples, or the budgets are unusable.
    ValueError
        With fewer than 4 examples (two to choose γ on, two for a standard error).

    Examples
    --------
    >>> import numpy as np
    >>> from smoothcert.distributional.table import SurrogateTable
    >>> def table(lag):
    ...     lag = np.asarray(lag, float)
    ...     zeros = np.zeros_like(lag)
    ...     return SurrogateTable(np.array([1.0]), 0.0, 1, lag, zeros, zeros, zeros, zeros,
    ...                           np.arange(len(lag)))
    >>> d = paired_difference(table([[1], [2], [3], [5]]), table([[1], [1], [3], [3]]),
    ...                       [0.0], [0.0])
    >>> float(d.difference[0]), float(d.se[0])  # odd rows: (2 − 1, 5 − 3)
    (1.5, 0.5)
    """
    if not np.array_equal(a.indices, b.indices):
        raise ParameterError("b", "must hold the same examples as a, in the same order")
    ra = np.asarray(list(rho_adv_a), dtype=np.float64)
    rb = np.asarray(list(rho_adv_b), dtype=np.float64)
    if ra.ndim != 1 or ra.shape != rb.shape or ra.size == 0:
        raise ParameterError(
            "rho_adv_b", f"must have as many budgets as rho_adv_a ({ra.size}), got {rb.size}"
        )
    for name, r in (("rho_adv_a", ra), ("rho_adv_b", rb)):
        if not np.all(np.isfinite(r) & (r >= 0)):
            raise ParameterError(name, f"must be finite numbers >= 0, got {r.tolist()}")
    n = a.lagrangian.shape[0]
    if n < 4:
        raise ValueError(f"a paired difference needs at least 4 examples, got {n}")
    va, ga = _held_out_values(a, ra)
    vb, gb = _held_out_values(b, rb)
    d = va - vb  # [m, R]
    m = d.shape[0]
    return PairedDifference(
        rho_adv_a=ra,
        rho_adv_b=rb,
        value_a=va.mean(0),
        value_b=vb.mean(0),
        gamma_a=ga,
        gamma_b=gb,
        difference=d.mean(0),
        se=d.std(0, ddof=1) / math.sqrt(m),
        n_eval=m,
    )
