"""The dcert run file's format: its row schema (:func:`dcert_schema`) and its reader
(:func:`read_dcert`, a :class:`DcertResult`); :mod:`smoothcert.runs.dcert` writes it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smoothcert.distributional import (
    DistributionalCurve,
    SurrogateTable,
    WorstCasePoint,
    curve_from_table,
    worst_case_from_table,
)
from smoothcert.distributional.certified import (
    CertifiedBound,
    certified_bound,
    mean_upper_bound,
)
from smoothcert.runs.store import RunStore

ROW_FIELDS = ("lagrangian", "loss", "cost", "value_se", "grad_norm")
PARTS = ("cert", "adv")  # the estimate's γ grid, the empirical adversary's γ_adv sweep
SETTINGS = ("smooth", "plain")  # σ as given, and σ = 0 (WRM, Theorem 3)


#: Monte Carlo statistics at x0 of the certified bound (smoothcert.distributional.certified):
#: mean and unbiased variance of min(CE, M)/M, and the fraction of misclassified draws.
BOUND_FIELDS = ("ce_mean", "ce_var", "err_mean")

#: Noise draws per example at x0 for the certified bound of a new run.
DEFAULT_BOUND_DRAWS = 1000


def dcert_schema(bound: bool = True) -> dict[str, str]:
    """Columns of a ``dcert`` run: one JSON list over the γ grid per (part, setting, field),
    and with ``bound`` the statistics of the certified bound (runs made before it have none)."""
    schema = {"label": "INTEGER", "seconds": "REAL"}
    for part in PARTS:
        for setting in SETTINGS:
            for name in ROW_FIELDS:
                schema[f"{part}_{setting}_{name}"] = "TEXT"
    if bound:
        for name in BOUND_FIELDS:
            schema[f"bound_{name}"] = "REAL"
    return schema


@dataclass
class DcertResult:
    """Everything a ``dcert`` run measured, as tables keyed by part and setting."""

    sigma: float
    gammas: np.ndarray  # the estimate's grid
    gamma_adv: np.ndarray  # the empirical adversary's sweep
    tables: dict[tuple[str, str], SurrogateTable]  # (part, setting) -> per-example table
    bound_stats: dict[str, np.ndarray] | None = None  # BOUND_FIELDS -> [n], None if not run
    bound_draws: int = 0  # s, the draws at x0 per example
    clip: float | None = None  # M of the clipped cross-entropy

    def certified(
        self,
        rhos: Sequence[float],
        loss: str = "ce",
        *,
        delta: float = 0.05,
        delta_draws: float = 0.001,
    ) -> CertifiedBound | None:
        """The certified upper bound on the worst-case expected loss at each ρ_adv, or None.

        :func:`smoothcert.distributional.certified.certified_bound` from the run's statistics at
        x0; None for a run made without them.

        Parameters
        ----------
        rhos : sequence of float
            Budgets ρ_adv = E‖x − x0‖², each >= 0.
        loss : {"ce", "01"}, default "ce"
            min(cross-entropy, M) with the run's M, or the 0-1 loss (M = 1).
        delta : float, default 0.05
            Probability that the statement fails.
        delta_draws : float, default 0.001
            δ1 of each example's Monte Carlo bound.

        Returns
        -------
        CertifiedBound or None
            The bound, with every ingredient of its statement.
        """
        if self.bound_stats is None or self.bound_draws < 2 or self.clip is None:
            return None
        if loss == "01":
            p_up = mean_upper_bound(self.bound_stats["err_mean"], None, self.bound_draws,
                                    delta_draws, "01")  # fmt: skip
            clip = 1.0
        else:
            p_up = mean_upper_bound(
                self.bound_stats["ce_mean"], self.bound_stats["ce_var"], self.bound_draws,
                delta_draws, "ce",
            )  # fmt: skip
            clip = self.clip
        return certified_bound(
            p_up, rhos, self.sigma, clip=clip, delta=delta, delta_draws=delta_draws,
            draws=self.bound_draws, loss=loss,
        )  # fmt: skip

    def curve(self, setting: str, rhos: Sequence[float]) -> DistributionalCurve:
        """The estimate with γ chosen on half the examples; with a single example there is
        no other half, and the curve is the in-sample minimum (its ``select`` says so).

        Parameters
        ----------
        setting : {"smooth", "plain"}
            The smoothed loss (σ) or the unsmoothed one (σ = 0, WRM).
        rhos : sequence of float
            Budgets ρ_adv = E‖x − x0‖², each >= 0.

        Returns
        -------
        DistributionalCurve
            One bound per ρ_adv.
        """
        table = self.tables["cert", setting]
        select = "split" if table.lagrangian.shape[0] >= 2 else "in-sample"
        return curve_from_table(table, rhos, select=select)

    def worst_case(self, setting: str) -> list[WorstCasePoint]:
        """The empirical worst-case points of ``setting`` ("smooth" or "plain"), one per
        γ_adv (:func:`smoothcert.distributional.worst_case_from_table`)."""
        return worst_case_from_table(self.tables["adv", setting])


def _result_from_rows(
    rows: list[dict],
    sigma: float,
    grid: np.ndarray,
    adv: np.ndarray,
    dim: int,
    bound: tuple[int, float] = (0, 10.0),
) -> DcertResult:
    sigmas = {"smooth": sigma, "plain": 0.0}
    tables = {}
    for part in PARTS:
        for setting in SETTINGS:
            tables[part, setting] = SurrogateTable(
                gammas=grid if part == "cert" else adv,
                sigma=sigmas[setting],
                dim=dim,
                indices=np.asarray([r["idx"] for r in rows]),
                **{
                    name: np.asarray([r[f"{part}_{setting}_{name}"] for r in rows], np.float64)
                    for name in ROW_FIELDS
                },
            )
    draws, clip = bound
    stats = None
    if draws and rows and all(r.get(f"bound_{n}") is not None for r in rows for n in BOUND_FIELDS):
        stats = {n: np.asarray([r[f"bound_{n}"] for r in rows], np.float64) for n in BOUND_FIELDS}
    return DcertResult(
        sigma=sigma, gammas=grid, gamma_adv=adv, tables=tables, bound_stats=stats,
        bound_draws=draws if stats is not None else 0, clip=clip if stats is not None else None,
    )  # fmt: skip


def read_dcert(path) -> DcertResult:
    """The results of a ``dcert`` run file (all its rows), without the model or the data.

    Parameters
    ----------
    path : str or os.PathLike
        A run file written by :func:`dcert_dataset` (or ``smoothcert dcert``).

    Returns
    -------
    DcertResult
        Its tables.

    Raises
    ------
    ValueError
        If the file holds another kind of run, or no rows yet.
    """
    with RunStore.read(path) as store:
        if store.kind != "dcert":
            raise ValueError(f"{path} holds a {store.kind!r} run, not a 'dcert' run")
        config, info, rows = store.config, store.info, store.rows()
    if not rows:
        raise ValueError(f"{path} holds no results yet")
    grid = np.asarray(config["gammas"], np.float64)
    adv = np.asarray(config["gamma_adv"], np.float64)
    bound = config.get("bound") or {}  # None (or absent, in older runs): no bound
    return _result_from_rows(
        rows, float(config["sigma"]), grid, adv, int(info["input_dim"]),
        (int(bound.get("draws", 0)), float(bound.get("clip", 10.0))),
    )  # fmt: skip
