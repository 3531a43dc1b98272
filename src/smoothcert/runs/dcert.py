"""Resumable ``dcert`` runs: the NAL certificate curve and the empirical worst-case loss per
example (smoothcert.distributional), one committed row each in a run file (store.py), and the
results read back as a :class:`DcertResult` without the model or the data.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from smoothcert.checks import ParameterError, finite_real, positive_int
from smoothcert.distributional import (
    DistributionalCurve,
    SurrogateTable,
    WorstCasePoint,
    batch_of,
    block_rows,
    check_gammas,
    curve_from_table,
    dataset_length,
    worst_case_from_table,
)
from smoothcert.runs.certify import model_fingerprint
from smoothcert.store import RunStore, pending_blocks

ROW_FIELDS = ("lagrangian", "loss", "cost", "value_se", "grad_norm")
PARTS = ("cert", "adv")  # the certificate's γ grid, the empirical adversary's γ_adv sweep
SETTINGS = ("smooth", "plain")  # σ as given, and σ = 0 (WRM, Theorem 3)


def dcert_schema() -> dict[str, str]:
    """Columns of a ``dcert`` run: one JSON list over the γ grid per (part, setting, field)."""
    schema = {"label": "INTEGER", "seconds": "REAL"}
    for part in PARTS:
        for setting in SETTINGS:
            for name in ROW_FIELDS:
                schema[f"{part}_{setting}_{name}"] = "TEXT"
    return schema


@dataclass
class DcertResult:
    """Everything a ``dcert`` run measured, as tables keyed by part and setting."""

    sigma: float
    gammas: np.ndarray  # the certificate's grid
    gamma_adv: np.ndarray  # the empirical adversary's sweep
    tables: dict[tuple[str, str], SurrogateTable]  # (part, setting) -> per-example table

    def curve(self, setting: str, rhos: Sequence[float]) -> DistributionalCurve:
        """The certificate with γ chosen on half the examples; with a single example there is
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


def dcert_dataset(
    model: nn.Module,
    dataset,
    out,
    *,
    sigma: float,
    gammas: Sequence[float],
    gamma_adv: Sequence[float],
    indices: Sequence[int],
    selection: Sequence[int] | None = None,
    batch_size: int = 50,
    seed: int = 0,
    config: dict | None = None,
    info: dict | None = None,
    progress: Callable[[int], None] | None = None,
    restarts: int | None = None,
    **surrogate_kwargs,
) -> DcertResult:
    """The distributional certificate and the empirical worst-case loss, as a resumable run.

    The certificate curve and empirical worst-case loss, smoothed (σ) and unsmoothed
    (σ = 0), for the examples ``indices`` of ``dataset``, stored in the run file ``out`` (one
    committed row per example; rerunning resumes).

    ``indices`` are the first examples of ``selection`` (default: ``indices`` itself), the
    ordered list a run may grow along: examples go in fixed blocks of ``batch_size`` positions
    of ``selection``, each computed whole (its seeds are drawn per block) even where it runs
    past ``indices``, and only the rows of ``indices`` are stored. So a run extended to a
    longer prefix of the same ``selection`` stores exactly the rows a fresh run over that
    prefix would, and a block with a missing row (a crash) is recomputed to the same numbers.
    The selection is part of the run's config: pass it to be able to extend a run (the CLI
    passes every ``skip``-th example). The certificate's ascents (γ grid) and the adversary's
    (γ_adv sweep) use independent draws, so comparing them is an honest check of weak duality.
    ``progress`` is called with the number of examples added after each block.
    ``restarts`` is the number of starts of each ascent
    (:func:`smoothcert.distributional.surrogate`);
    None means :data:`DEFAULT_RESTARTS` for a new run and, for an existing run, what it was
    made with (1 for runs from before restarts), so a run resumes as it began.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier θ.
    dataset : data set or pair of tensors
        The examples (see :func:`smoothcert.distributional.batch_of`).
    out : str or os.PathLike
        The run file to create or resume.
    sigma : float
        Noise level σ > 0 (σ = 0 is always computed too).
    gammas : sequence of float
        The certificate's grid of penalties γ.
    gamma_adv : sequence of float
        The empirical adversary's penalties.
    indices : sequence of int
        The examples to compute: the first ``len(indices)`` entries of ``selection``.
    selection : sequence of int, optional
        The ordered examples the run may grow along; default ``indices``.
    batch_size : int, default 50
        Positions of ``selection`` per block (results depend on it).
    seed : int, default 0
        Seed of the draws.
    config, info : dict, optional
        More entries for the run file's config (part of the run's identity) and info.
    progress : callable, optional
        Called with the number of examples added after each block.
    restarts : int, optional
        Starts per ascent (see above).
    **surrogate_kwargs
        Passed to :func:`smoothcert.distributional.surrogate` (``steps``, ``num_noise``, ...).

    Returns
    -------
    DcertResult
        The tables of every example of ``indices``.

    Raises
    ------
    ValueError
        If an argument is out of range (a :class:`~smoothcert.checks.ParameterError` naming
        it) or ``out`` holds another run.
    """
    grid = check_gammas(gammas)
    adv = check_gammas(gamma_adv, "gamma_adv")
    sigma = finite_real("sigma", sigma, nonnegative=True)
    if sigma == 0:
        raise ParameterError(
            "sigma", "must be > 0 for dcert (σ = 0, WRM's certificate, is always added)"
        )
    batch_size = positive_int("batch_size", batch_size)
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError("no examples selected")
    pool = idx if selection is None else [int(i) for i in selection]
    _check_selection(idx, pool, dataset_length(dataset))
    if restarts is None:
        restarts = _stored_restarts(out)
    restarts = positive_int("restarts", restarts)
    if restarts > 1:  # runs with one start store no key: those from before restarts resume
        surrogate_kwargs = surrogate_kwargs | {"restarts": restarts}
    run_config = {
        "command": "dcert",
        "model_sha256": model_fingerprint(model),
        "sigma": float(sigma),
        "gammas": grid.tolist(),
        "gamma_adv": adv.tolist(),
        "batch_size": batch_size,
        "seed": seed,
        "surrogate": {k: v for k, v in sorted(surrogate_kwargs.items()) if not callable(v)},
        # The blocks are positions of the selection, so it determines the results.
        SELECTION_KEY: _selection_key(pool),
        **(config or {}),
    }
    x_first, _ = batch_of(dataset, idx[:1])
    dim = x_first[0].numel()
    sigmas = {"smooth": float(sigma), "plain": 0.0}
    info = (info or {}) | {"input_dim": dim}
    # The whole blocks that cover ``idx``; their examples past ``idx`` are computed, not stored.
    end = min(len(pool), -(-len(idx) // batch_size) * batch_size)
    with RunStore.open(out, "dcert", run_config, dcert_schema(), info=info) as store:
        done = store.done_indices()
        # Unwanted examples count as done so that they never make a block pending on their own.
        skip = done | set(pool[len(idx) : end])
        for block, missing in pending_blocks(pool[:end], batch_size, skip):
            t0 = time.perf_counter()
            computed = {
                (part, setting): block_rows(
                    model, dataset, block, grid if part == "cert" else adv, sigmas[setting],
                    seed=seed, stream=part, **surrogate_kwargs,
                )
                for part in PARTS
                for setting in SETTINGS
            }  # fmt: skip
            seconds = (time.perf_counter() - t0) / len(block)
            _, labels = batch_of(dataset, block)
            for pos, i in enumerate(block):
                if i in skip:
                    continue
                row = {"label": int(labels[pos]), "seconds": seconds}
                for (part, setting), arrays in computed.items():
                    for name in ROW_FIELDS:
                        row[f"{part}_{setting}_{name}"] = arrays[name][pos].tolist()
                store.add(i, row)
                skip.add(i)
            if progress is not None:
                progress(len(missing))
        wanted = set(idx)
        rows = [r for r in store.rows() if r["idx"] in wanted]
    return _result_from_rows(rows, float(sigma), grid, adv, dim)


SELECTION_KEY = "selection_sha"

#: Starts per ascent of a new dcert run: x0 and two random starts (best of the three).
DEFAULT_RESTARTS = 3


def _stored_restarts(out) -> int:
    """The restarts an existing dcert run at ``out`` was made with (1 when its config names
    none), or DEFAULT_RESTARTS when there is no such run."""
    path = Path(out)
    if not path.is_file() or path.stat().st_size == 0:
        return DEFAULT_RESTARTS
    try:
        with RunStore.read(path) as store:
            if store.kind != "dcert":
                return DEFAULT_RESTARTS
            return int(store.config.get("surrogate", {}).get("restarts", 1))
    except (ValueError, OSError, sqlite3.DatabaseError):
        return DEFAULT_RESTARTS  # not a (sound) run store: RunStore.open gives the error


def _check_selection(idx: list[int], pool: list[int], n_data: int) -> None:
    if pool[: len(idx)] != idx:
        raise ValueError("indices must be the first len(indices) entries of selection")
    if len(set(pool)) != len(pool):
        raise ValueError("selection must not repeat an example")
    if not all(0 <= i < n_data for i in pool):
        raise ValueError(f"indices must lie in [0, {n_data})")


def _selection_key(pool: list[int]) -> str:
    """A short identity of the ordered selection the run's blocks are positions of."""
    return hashlib.sha256(",".join(map(str, pool)).encode()).hexdigest()[:16]


def _result_from_rows(
    rows: list[dict], sigma: float, grid: np.ndarray, adv: np.ndarray, dim: int
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
    return DcertResult(sigma=sigma, gammas=grid, gamma_adv=adv, tables=tables)


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
    return _result_from_rows(rows, float(config["sigma"]), grid, adv, int(info["input_dim"]))
