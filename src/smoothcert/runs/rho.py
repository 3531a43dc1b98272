"""The ρ record of ``smoothcert rho --json``: the settings and the mean transport costs of one
surrogate ascent (:func:`smoothcert.distributional.transport.transport_cost`), one JSON object
per file. Its one writer (:func:`write_rho`) and reader (:func:`read_rho`); the experiment
reports read it through the latter."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from smoothcert._util.atomic import atomic_write_bytes
from smoothcert.distributional.transport import TransportCost


def rho_record(
    result: TransportCost,
    *,
    checkpoint: str,
    split: str,
    gamma: float,
    sigma: float,
    num_noise: int,
    steps: int,
    step_size: float,
    cost_with_noise: bool,
    seed: int,
) -> dict[str, Any]:
    """The record of one run: its settings, then ρ, ρ_adv (each ± its standard error), ε, the
    adversarial loss and the final gradient norm."""
    return {
        "checkpoint": checkpoint,
        "split": split,
        "examples": result.num_examples,
        "gamma": gamma,
        "sigma": sigma,
        "num_noise": num_noise,
        "steps": steps,
        "step_size": step_size,
        "cost_with_noise": cost_with_noise,
        "seed": seed,
        "rho": result.rho,
        "rho_se": result.rho_se,
        "rho_adv": result.rho_adv,
        "rho_adv_se": result.rho_adv_se,
        "eps": result.eps,
        "loss": result.loss,
        "grad_norm": result.grad_norm,
    }


def write_rho(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Write ``record`` (from :func:`rho_record`) to ``path`` atomically, indented JSON."""
    atomic_write_bytes(path, (json.dumps(record, indent=2) + "\n").encode())


def read_rho(path: str | os.PathLike) -> dict[str, Any]:
    """The record in ``path``, as :func:`write_rho` wrote it."""
    return json.loads(Path(path).read_text())
