"""Resumable attack runs: accuracy under L2 PGD per example, one committed row each.

The attack counterpart of certify runs (the NAL paper's Table 2 / Figure 2(c, d) protocol):
every selected example is attacked at every radius, and its predictions are stored in the run
store at once, so an interrupted run resumes where it stopped (no duplicate, no gap).

A run goes in five steps, one function each (as certify runs do, runs/certify.py):

1. validate: the attack's settings are an :class:`AttackOptions`, checked when built, before
   any file exists;
2. open: :func:`_open_run` creates the run file, or resumes it when its config matches;
3. select: :func:`_selected` gives the examples, and the stored rows the blocks still to do;
4. evaluate: :func:`_attack_block` attacks a block of examples with its own seeded noise;
5. write: :func:`_store_block` commits the block's missing rows, and :func:`_summary` gives
   the accuracy at every radius from the stored rows.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from smoothcert._util.checks import FLOAT32_MAX, ParameterError, is_integer, one_of, positive_int
from smoothcert.attacks.pgd import OBJECTIVES
from smoothcert.attacks.robust import (
    attack_seeded_batch,
    check_restarts,
    check_steps,
    check_vote,
    robust_correct,
)
from smoothcert.runs.common import check_same_examples, selection_sha
from smoothcert.runs.store import ConfigMismatch, RunStore, pending_blocks
from smoothcert.runs.versions import (
    ATTACK_CONFIG_VERSION,
    OLD_NOISY_EVALUATION,
    VERSION_KEY,
    upgrade_attack_config,
)

ATTACK_SCHEMA = {
    "label": "INTEGER",
    "predictions": "TEXT",  # JSON list, one prediction per radius (same order as eps)
    "correct": "TEXT",  # JSON list of 0/1, one per radius
    "seconds": "REAL",  # wall time of the example's batch, divided by the batch size
}


#: The evaluation of a classifier with noise at test time, stored in the config of noisy runs:
#: "crn" = each example's vote draws fixed by (seed, its index), the same at every radius and
#: for every attack (:func:`smoothcert.attacks.robust.attack_batch`). Run files made before
#: have no such entry (they drew fresh votes at every radius) and are refused on resume.
NOISY_EVALUATION = "crn"

#: Blocks seed their noise with seed·1,000,003 + first index (attacks.robust), which must fit
#: in 63 bits for any dataset index below 2**42.
MAX_SEED = 2**43

# ------------------------------------------------------------------ 1. validate


@dataclass(frozen=True)
class AttackOptions:
    """The settings of an attack run, checked when built (a refused run leaves no file).

    Parameters
    ----------
    eps : sequence of float
        The L2 radii, finite (in float32) and >= 0; stored as a tuple of float.
    steps : int or sequence of int, default 20
        PGD steps, one attack per value; stored as a tuple of int.
    restarts : int, default 1
        Runs of each attack (random starts after the first).
    noise_sigma : float, optional
        Attack the smoothed classifier with Gaussian noise of this σ.
    noise_samples : int, default 8
        Noise draws per step when ``noise_sigma`` is set.
    objective : {"expected", "smoothadv"}, default "expected"
        The loss under noise.
    batch_size : int, default 100
        Examples per block.
    seed : int, default 0
        Seed of the noise and random starts, in [0, 2**43).
    skip_fooled : bool, default True
        Do not attack an example again at the radii above one where it was fooled
        (:func:`smoothcert.attacks.robust.attack_batch`); False attacks every radius.
    vote : {"majority", "predict"}, default "majority"
        With noise: the majority of the votes, or PREDICT at ``vote_alpha`` (abstain = wrong).
    vote_alpha : float, default 0.001
        Level of PREDICT's test (``vote="predict"`` only).

    Raises
    ------
    ParameterError
        If a field is out of range; the message names it.
    """

    eps: Sequence[float]
    steps: int | Sequence[int] = 20
    restarts: int = 1
    noise_sigma: float | None = None
    noise_samples: int = 8
    objective: str = "expected"
    batch_size: int = 100
    seed: int = 0
    skip_fooled: bool = True
    vote: str = "majority"
    vote_alpha: float = 0.001

    def __post_init__(self) -> None:
        eps = tuple(float(e) for e in self.eps)
        # Finite in float32, where the attack runs (1e40 would become inf there, mid-run).
        if not eps or any(not 0 <= e <= FLOAT32_MAX for e in eps):
            raise ParameterError("eps", f"must be one or more finite radii >= 0, got {list(eps)}")
        if not is_integer(self.seed) or not 0 <= self.seed < MAX_SEED:
            raise ParameterError("seed", f"must be an integer in [0, 2**43), got {self.seed!r}")
        steps = tuple(check_steps(self.steps))
        restarts = check_restarts(self.restarts)
        if self.noise_sigma is not None and not 0 < self.noise_sigma <= FLOAT32_MAX:
            raise ParameterError("noise_sigma", f"must be finite and > 0, got {self.noise_sigma}")
        positive_int("noise_samples", self.noise_samples)
        one_of("objective", self.objective, OBJECTIVES)
        positive_int("batch_size", self.batch_size)
        if not isinstance(self.skip_fooled, bool):
            raise ParameterError("skip_fooled", f"must be True or False, got {self.skip_fooled!r}")
        if self.noise_sigma is None and self.vote != "majority":
            raise ParameterError("vote", "needs noise_sigma (the base classifier has no votes)")
        vote, vote_alpha = check_vote(self.vote, self.vote_alpha, self.noise_samples)
        object.__setattr__(self, "vote_alpha", vote_alpha)
        object.__setattr__(self, "eps", eps)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "restarts", restarts)

    def config(self, indices: list[int]) -> dict[str, Any]:
        """The run-config entries of these settings for the examples ``indices`` (a resume
        must match them exactly; their keys and values are those of every earlier version).

        Parameters
        ----------
        indices : list of int
            The examples attacked (stored as a short hash).

        Returns
        -------
        dict
            The config entries, without the caller's.
        """
        noisy = self.noise_sigma is not None
        steps = list(self.steps)
        return {
            "command": "attack",
            "eps": list(self.eps),
            "steps": steps[0] if len(steps) == 1 else steps,
            "step_size": "2*eps/steps",
            "noise_sigma": self.noise_sigma,
            "noise_samples": self.noise_samples if noisy else None,
            "objective": self.objective if noisy else None,
            "indices_sha": selection_sha(indices),
            "seed": self.seed,
        }

    def later_config(self, precision: str) -> dict[str, Any]:
        """The config entries added after the first version (they follow the caller's), every
        one stored; None where a setting does not apply. The version-0 layout stored them only
        when they were not their old implicit value (:mod:`smoothcert.runs.versions`)."""
        noisy = self.noise_sigma is not None
        return {
            "restarts": self.restarts,
            "skip_fooled": self.skip_fooled,
            # The attack's noise is drawn per block, so with noise the results depend on the
            # block size (the vote draws do not: they are fixed per example).
            "batch_size": self.batch_size if noisy else None,
            # The noisy evaluation changed (common random numbers): a run file made before
            # drew fresh votes per radius, so it does not resume with the new one.
            "evaluation": NOISY_EVALUATION if noisy else None,
            "vote": self.vote if noisy else None,
            "vote_alpha": self.vote_alpha if noisy and self.vote == "predict" else None,
            "precision": precision,
            VERSION_KEY: ATTACK_CONFIG_VERSION,
        }


def _selected(dataset: Any, indices: Sequence[int] | None) -> list[int]:
    """The examples to attack: ``indices``, or all of ``dataset`` in order."""
    return list(range(len(dataset))) if indices is None else [int(i) for i in indices]


# ------------------------------------------------------------------ 2. open


def _open_run(
    out: str | os.PathLike,
    options: AttackOptions,
    indices: list[int],
    config: dict[str, Any] | None,
    info: dict[str, Any] | None,
    precision: str,
) -> RunStore:
    """The run file, created or resumed (its config must match this run's exactly)."""
    run_config = {
        **options.config(indices),
        **(config or {}),
        **options.later_config(precision),
    }
    try:
        return RunStore.open(
            out, "attack", run_config, ATTACK_SCHEMA, info=info, upgrade=upgrade_attack_config
        )
    except ValueError as exc:
        if options.noise_sigma is not None and _old_noisy_evaluation(out):
            raise ValueError(
                f"{out} was made by an older version that drew fresh noise votes at every "
                "radius (accuracy then falls with the number of radii); this version fixes "
                "each example's votes (common random numbers): delete it or choose another "
                "run file to rerun the attack"
            ) from None
        if options.skip_fooled and isinstance(exc, ConfigMismatch) and "skip_fooled" in exc.keys:
            raise EveryRadiusRun(str(exc), exc.keys) from None
        raise


def _old_noisy_evaluation(out: str | os.PathLike) -> bool:
    """Whether ``out`` is an attack run with noise at test time made before the common random
    numbers (no "evaluation" entry in its config)."""
    try:
        with RunStore.read(out) as store:
            config = store.config
            kind = store.kind
    except (ValueError, OSError):
        return False
    return (
        kind == "attack" and config.get("noise_sigma") is not None and ("evaluation" not in config)
    )


class EveryRadiusRun(ConfigMismatch):
    """A run file that attacked every radius (as versions before ``skip_fooled`` did), met by
    a run that skips: ``skip_fooled=False`` resumes it.

    Structured for each caller to say in its own words: ``keys`` are the mismatching config
    entries, ``mismatch`` the run store's message, ``reason`` why the file differs, and
    ``resume_parameter`` the parameter whose other value (False) resumes it.

    Examples
    --------
    >>> error = EveryRadiusRun("r.db holds a run with other arguments", ["skip_fooled"])
    >>> print(error)
    r.db holds a run with other arguments; it attacks every radius: resume it with skip_fooled=False
    >>> error.keys, error.resume_parameter
    (['skip_fooled'], 'skip_fooled')
    """

    resume_parameter = "skip_fooled"
    reason = "it attacks every radius"

    def __init__(self, mismatch: str, keys: list[str]) -> None:
        super().__init__(f"{mismatch}; {self.reason}: resume it with skip_fooled=False", keys)
        self.mismatch = mismatch


# ------------------------------------------------------------------ 3-5. select, evaluate, write


def _attack_block(
    model: nn.Module,
    dataset: Any,
    block: list[int],
    options: AttackOptions,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(labels, predictions [len(block), radii], seconds per example) of one block, whose
    attack noise is seeded by (seed, the block's first index) and each example's vote draws
    by (seed, its dataset index)."""
    x, y = dataset.batch(block)
    x, y = x.to(device), y.to(device)
    start = time.perf_counter()
    pred = attack_seeded_batch(
        model, x, y, list(options.eps), list(options.steps), options.noise_sigma,
        options.noise_samples, options.objective, options.seed, block[0], options.restarts,
        options.skip_fooled, example_ids=block, vote=options.vote, vote_alpha=options.vote_alpha,
    )  # fmt: skip
    return y, pred, (time.perf_counter() - start) / len(block)


def _store_block(
    store: RunStore,
    block: list[int],
    labels: torch.Tensor,
    pred: torch.Tensor,
    seconds: float,
    done: set[int],
) -> None:
    """Commit the rows of the block's examples not in ``done`` (and add them to it)."""
    for k, idx in enumerate(block):
        if idx in done:
            continue
        done.add(idx)
        label = int(labels[k])
        p = pred[k].tolist()
        row = {
            "label": label,
            "predictions": p,
            "correct": [int(v == label) for v in p],
            "seconds": seconds,
        }
        store.add(idx, row)


def _summary(rows: list[dict[str, Any]], eps: list[float]) -> dict[str, Any]:
    """The result of the run: its radii, accuracy per radius (robust at ε = correct at every
    radius up to ε), count, rows and ``robust`` (that verdict, [rows, radii] bool)."""
    raw = np.array([r["correct"] for r in rows], dtype=bool).reshape(len(rows), len(eps))
    correct = robust_correct(raw, eps)
    accuracy = {
        e: float(correct[:, k].mean()) if len(rows) else float("nan") for k, e in enumerate(eps)
    }
    return {"eps": eps, "accuracy": accuracy, "count": len(rows), "rows": rows, "robust": correct}


def read_attack(path: str | os.PathLike) -> dict[str, Any]:
    """The result of the attack run file ``path`` as :func:`attack_dataset` returns it (its
    radii, accuracy per radius with the per-example minimum over radii, count and rows), and
    ``evaluation``: None for the base classifier, :data:`NOISY_EVALUATION` for noise at test
    time with common random numbers, :data:`OLD_NOISY_EVALUATION` for a noisy run made
    before them."""
    with RunStore.read(path) as store:
        eps = [float(e) for e in store.config["eps"]]
        rows = store.rows()
        config = store.config
    evaluation = None
    if config.get("noise_sigma") is not None:
        evaluation = config.get("evaluation", OLD_NOISY_EVALUATION)
    return _summary(rows, eps) | {"evaluation": evaluation}


# ------------------------------------------------------------------ the run


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
    skip_fooled: bool = True,
    vote: str = "majority",
    vote_alpha: float = 0.001,
) -> dict[str, Any]:
    """Accuracy under L2 PGD at every radius, one stored row per example; resumable.

    Attacks ``dataset[indices]`` at every radius of ``eps_list`` and stores one row per
    example in the run file ``out``; if ``out`` exists with the same configuration, the run
    resumes. Examples go in fixed blocks of ``batch_size`` positions of ``indices``;
    randomness (only with ``noise_sigma``) comes from a generator per block seeded by (seed,
    first index of the block) for the attack, so with noise the results depend on
    ``batch_size`` and it is part of the run's config (a resume with another one is refused),
    and from each example's vote draws, fixed by (seed, its index) and shared by every radius
    and attack (common random numbers; the config's ``"evaluation": "crn"`` entry marks it,
    and a noisy run file made before, without it, is refused with a message saying so). A
    block with a missing row (a crash between two rows) is recomputed whole and only the
    missing rows are added, so a resumed run stores exactly what an uninterrupted one would.

    The rows store each radius's prediction; the accuracy counts an example robust at ε only
    if it was correct at every radius ≤ ε (:func:`smoothcert.attacks.robust.robust_correct`).
    By default an example fooled at a radius is not attacked again at the larger ones (its
    prediction there is that of the point that fooled it, which lies in every larger ball);
    ``skip_fooled=False`` attacks it at every radius, as runs made before this option did
    (such a run resumes only with it).

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
    skip_fooled : bool, default True
        Skip the radii above the first one that fooled an example (see above).
    vote : {"majority", "predict"}, default "majority"
        With ``noise_sigma``: the prediction is the majority of the votes, or PREDICT's
        answer at level ``vote_alpha`` (Cohen et al. §3.2), an abstention counting as wrong.
    vote_alpha : float, default 0.001
        Level of PREDICT's test; ``noise_samples`` must be >= log2(2/vote_alpha).

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
    options = AttackOptions(
        eps=eps_list,
        steps=steps,
        restarts=restarts,
        noise_sigma=noise_sigma,
        noise_samples=noise_samples,
        objective=objective,
        batch_size=batch_size,
        seed=seed,
        skip_fooled=skip_fooled,
        vote=vote,
        vote_alpha=vote_alpha,
    )
    indices = _selected(dataset, indices)
    device = next(model.parameters()).device
    check_same_examples(out, dataset)
    # The arithmetic of the model attacked: a model under bf16 autocast
    # (smoothcert.training.precision.AutocastModel) says so, any other is fp32.
    precision = str(getattr(model, "precision", "fp32"))
    with _open_run(out, options, indices, config, info, precision) as store:
        done = store.done_indices()
        total = sum(i not in done for i in indices)
        for block, missing in pending_blocks(indices, options.batch_size, done):
            labels, pred, seconds = _attack_block(model, dataset, block, options, device)
            _store_block(store, block, labels, pred, seconds, done)
            if progress is not None:
                progress(len(missing), total)
        wanted = set(indices)
        rows = [r for r in store.rows() if r["idx"] in wanted]
    return _summary(rows, list(options.eps))
