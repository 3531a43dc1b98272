"""Resumable attack runs: accuracy under L2 PGD per example, one committed row each.

The attack counterpart of certify runs (the NAL paper's Table 2 / Figure 2(c, d) protocol):
every selected example is attacked at every radius, and its predictions are stored in the run
store at once, so an interrupted run resumes where it stopped (no duplicate, no gap).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch import nn

from smoothcert.attacks.pgd import OBJECTIVES
from smoothcert.attacks.robust import (
    attack_seeded_batch,
    check_restarts,
    check_steps,
    robust_correct,
)
from smoothcert.checks import FLOAT32_MAX, ParameterError, is_integer, one_of, positive_int
from smoothcert.store import RunStore, pending_blocks

ATTACK_SCHEMA = {
    "label": "INTEGER",
    "predictions": "TEXT",  # JSON list, one prediction per radius (same order as eps)
    "correct": "TEXT",  # JSON list of 0/1, one per radius
    "seconds": "REAL",  # wall time of the example's batch, divided by the batch size
}


#: Blocks seed their noise with seed·1,000,003 + first index (attacks.robust), which must fit
#: in 63 bits for any dataset index below 2**42.
MAX_SEED = 2**43


def attack_dataset(
    model: nn.Module,
    dataset: Any,
    out: str | os.PathLike,
    eps_list: Sequence[float],
    steps: int | Sequence[int] = 20,
    *,
    noise_sigma: float | None = None,
    noise_samples: int = 8,
    objective: str = "expected",
    batch_size: int = 100,
    indices: Sequence[int] | None = None,
    seed: int = 0,
    config: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    restarts: int = 1,
) -> dict[str, Any]:
    """Accuracy under L2 PGD at every radius, one stored row per example; resumable.

    Attacks ``dataset[indices]`` at every radius of ``eps_list`` and stores one row per
    example in the run file ``out``; if ``out`` exists with the same configuration, the run
    resumes. Examples go in fixed blocks of ``batch_size`` positions of ``indices``;
    randomness (only with ``noise_sigma``) comes from a generator per block seeded by (seed,
    first index of the block), so with noise the results depend on ``batch_size`` and it is
    part of the run's config (a resume with another one is refused). A block with a missing
    row (a crash between two rows) is recomputed whole and only the missing rows are added,
    so a resumed run stores exactly what an uninterrupted one would.

    The rows store each radius's prediction; the accuracy counts an example robust at ε only
    if it was correct at every radius ≤ ε (:func:`smoothcert.attacks.robust.robust_correct`).

    Parameters
    ----------
    model : torch.nn.Module
        The classifier attacked (images in [0, 1]).
    dataset : object
        ``dataset.batch(indices)`` gives (images, labels) tensors; ``len(dataset)`` its size.
    out : str or os.PathLike
        The run file (SQLite).
    eps_list : sequence of float
        The L2 radii, finite and >= 0.
    steps : int or sequence of int, default 20
        PGD steps (step size 2ε/steps); several values run several attacks, and an example
        counts as robust only against all of them.
    noise_sigma : float, optional
        Attack the smoothed classifier with Gaussian noise of this σ instead of the base
        classifier.
    noise_samples : int, default 8
        Noise draws per step when ``noise_sigma`` is set.
    objective : {"expected", "smoothadv"}, default "expected"
        The loss under noise: the mean cross-entropy over the draws (Cohen et al., App. J.3)
        or the log of the mean softmax (Salman et al. 2019).
    batch_size : int, default 100
        Examples per block.
    indices : sequence of int, optional
        The examples to attack (default: all, in order).
    seed : int, default 0
        Seed of the noise and random starts, in [0, 2**43).
    config, info : dict, optional
        ``config`` adds entries that identify the run (a resume must match them exactly);
        ``info`` adds provenance.
    progress : callable, optional
        ``progress(done_now, total_to_do)``, called after every stored block.
    restarts : int, default 1
        Runs of each attack (random starts after the first;
        :func:`smoothcert.attacks.robust.attack_batch`).

    Returns
    -------
    dict
        ``"eps"`` (the radii), ``"accuracy"`` (radius -> accuracy under attack; NaN with no
        rows), ``"count"`` (examples) and ``"rows"`` (the stored rows of ``indices``).

    Raises
    ------
    ParameterError
        If an argument is out of range; the message names it.
    ValueError
        If ``out`` holds a different run.
    """
    eps_list = [float(e) for e in eps_list]
    # Finite in float32, where the attack runs (1e40 would become inf there, mid-run).
    if not eps_list or any(not 0 <= e <= FLOAT32_MAX for e in eps_list):
        raise ParameterError("eps", f"must be one or more finite radii >= 0, got {eps_list}")
    if not is_integer(seed) or not 0 <= seed < MAX_SEED:
        raise ParameterError("seed", f"must be an integer in [0, 2**43), got {seed!r}")
    steps_list = check_steps(steps)
    restarts = check_restarts(restarts)
    if noise_sigma is not None and not 0 < noise_sigma <= FLOAT32_MAX:
        raise ParameterError("noise_sigma", f"must be finite and > 0, got {noise_sigma}")
    positive_int("noise_samples", noise_samples)
    one_of("objective", objective, OBJECTIVES)
    positive_int("batch_size", batch_size)
    indices = list(range(len(dataset))) if indices is None else [int(i) for i in indices]
    run_config = {
        "command": "attack",
        "eps": eps_list,
        "steps": steps_list[0] if len(steps_list) == 1 else steps_list,
        "step_size": "2*eps/steps",
        "noise_sigma": noise_sigma,
        "noise_samples": noise_samples if noise_sigma is not None else None,
        "objective": objective if noise_sigma is not None else None,
        "indices_sha": _indices_key(indices),
        "seed": seed,
        **(config or {}),
    }
    if restarts > 1:
        # Added only then, so that runs made before random restarts stay resumable.
        run_config["restarts"] = restarts
    if noise_sigma is not None:
        # The noise is drawn per block, so with noise the results depend on the block size.
        # Added only then, so that runs without noise made before this key stay resumable.
        run_config["batch_size"] = batch_size
    device = next(model.parameters()).device
    with RunStore.open(out, "attack", run_config, ATTACK_SCHEMA, info=info) as store:
        done = store.done_indices()
        total = sum(i not in done for i in indices)
        for chunk, missing in pending_blocks(indices, batch_size, done):
            x, y = dataset.batch(chunk)
            x, y = x.to(device), y.to(device)
            t0 = time.perf_counter()
            pred = attack_seeded_batch(
                model, x, y, eps_list, steps_list, noise_sigma, noise_samples, objective, seed,
                chunk[0], restarts,
            )  # fmt: skip
            seconds = (time.perf_counter() - t0) / len(chunk)
            for k, idx in enumerate(chunk):
                if idx in done:
                    continue
                done.add(idx)
                p = pred[k].tolist()
                store.add(
                    idx,
                    {
                        "label": int(y[k]),
                        "predictions": p,
                        "correct": [int(v == int(y[k])) for v in p],
                        "seconds": seconds,
                    },
                )
            if progress is not None:
                progress(len(missing), total)
        wanted = set(indices)
        rows = [r for r in store.rows() if r["idx"] in wanted]
    raw = np.array([r["correct"] for r in rows], dtype=bool).reshape(len(rows), -1)
    correct = robust_correct(raw, eps_list)
    accuracy = {
        e: float(correct[:, k].mean()) if len(rows) else float("nan")
        for k, e in enumerate(eps_list)
    }
    return {"eps": eps_list, "accuracy": accuracy, "count": len(rows), "rows": rows}


def _indices_key(indices: list[int]) -> str:
    """A short identity of the selected examples (so a resumed run attacks the same ones)."""
    import hashlib

    return hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()[:16]
