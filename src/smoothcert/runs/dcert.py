"""Resumable ``dcert`` runs: the NAL certificate curve and the empirical worst-case loss per
example (smoothcert.certificates), one committed row each in a run file (store.py), and the
results read back as a :class:`DcertResult` without the model or the data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from smoothcert.certificates import (
    CertificateCurve,
    SurrogateTable,
    WorstCasePoint,
    batch_of,
    block_rows,
    check_gammas,
    check_surrogate_args,
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

    def curve(self, setting: str, rhos: Sequence[float]) -> CertificateCurve:
        return curve_from_table(self.tables["cert", setting], rhos)

    def worst_case(self, setting: str) -> list[WorstCasePoint]:
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
    batch_size: int = 50,
    seed: int = 0,
    config: dict | None = None,
    info: dict | None = None,
    progress: Callable[[int], None] | None = None,
    **surrogate_kwargs,
) -> DcertResult:
    """Certificate curve and empirical worst-case loss, smoothed (σ) and unsmoothed (σ = 0),
    for the examples ``indices`` of ``dataset``, stored in the run file ``out`` (one committed
    row per example; rerunning resumes, and a larger ``indices`` list extends the run).

    Examples go in fixed blocks of ``batch_size`` positions of ``indices``; a block with a
    missing row is recomputed whole (same seeds, same numbers) and only the missing rows are
    added. The certificate's ascents (γ grid) and the adversary's (γ_adv sweep) use
    independent draws, so comparing them is an honest check of weak duality.
    ``progress`` is called with the number of examples added after each block.
    """
    grid = check_gammas(gammas)
    adv = check_gammas(gamma_adv, "gamma_adv")
    check_surrogate_args(1.0, sigma, 1, 0, 1)
    if sigma == 0:
        raise ValueError("sigma must be > 0 for dcert (σ = 0, WRM's certificate, is always added)")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    idx = [int(i) for i in indices]
    if not idx:
        raise ValueError("no examples selected")
    n_data = dataset_length(dataset)
    if not all(0 <= i < n_data for i in idx):
        raise ValueError(f"indices must lie in [0, {n_data})")
    run_config = {
        "command": "dcert",
        "model_sha256": model_fingerprint(model),
        "sigma": float(sigma),
        "gammas": grid.tolist(),
        "gamma_adv": adv.tolist(),
        "batch_size": batch_size,
        "seed": seed,
        "surrogate": {k: v for k, v in sorted(surrogate_kwargs.items()) if not callable(v)},
        **(config or {}),
    }
    x_first, _ = batch_of(dataset, idx[:1])
    dim = x_first[0].numel()
    sigmas = {"smooth": float(sigma), "plain": 0.0}
    info = (info or {}) | {"input_dim": dim}
    with RunStore.open(out, "dcert", run_config, dcert_schema(), info=info) as store:
        done = store.done_indices()
        for block, missing in pending_blocks(idx, batch_size, done):
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
                if i in done:
                    continue
                row = {"label": int(labels[pos]), "seconds": seconds}
                for (part, setting), arrays in computed.items():
                    for name in ROW_FIELDS:
                        row[f"{part}_{setting}_{name}"] = arrays[name][pos].tolist()
                store.add(i, row)
                done.add(i)
            if progress is not None:
                progress(len(missing))
        wanted = set(idx)
        rows = [r for r in store.rows() if r["idx"] in wanted]
    return _result_from_rows(rows, float(sigma), grid, adv, dim)


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
    """The results of a ``dcert`` run file (all its rows), without the model or the data."""
    with RunStore.read(path) as store:
        if store.kind != "dcert":
            raise ValueError(f"{path} holds a {store.kind!r} run, not a 'dcert' run")
        config, info, rows = store.config, store.info, store.rows()
    if not rows:
        raise ValueError(f"{path} holds no results yet")
    grid = np.asarray(config["gammas"], np.float64)
    adv = np.asarray(config["gamma_adv"], np.float64)
    return _result_from_rows(rows, float(config["sigma"]), grid, adv, int(info["input_dim"]))
