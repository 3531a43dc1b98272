"""Resumable ``dcert`` runs: the estimate of the NAL certificate curve, the statistics of its
certified bound and the empirical worst-case loss per example (smoothcert.distributional,
smoothcert.distributional.certified), one committed row each in a run file (store.py), and the
results read back as a :class:`DcertResult` without the model or the data.

A run goes in five steps, one function each (as certify runs do, runs/certify.py):

1. validate: the run's settings (:class:`DcertOptions`) and its examples
   (:class:`DcertSelection`) are checked when built, before any file exists;
2. open: :func:`_open_run` creates the run file, or resumes it when its config matches;
3. select: :meth:`DcertSelection.blocks` and the stored rows give the blocks still to do;
4. evaluate: :func:`_evaluate_block` computes every (part, setting) of a block at once;
5. write: :func:`_store_block` commits the rows of the block's wanted examples, and
   :func:`_result_from_rows` reads the run's tables back from the stored rows.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smoothcert._util.checks import ParameterError, finite_real, integer_at_least, positive_int
from smoothcert.distributional import (
    batch_of,
    block_rows,
    block_seed,
    check_batch,
    check_gammas,
    dataset_length,
)
from smoothcert.distributional.certified import clipped_loss_stats
from smoothcert.runs.common import model_fingerprint, selection_sha
from smoothcert.runs.dcert_file import (
    BOUND_FIELDS,
    DEFAULT_BOUND_DRAWS,
    PARTS,
    ROW_FIELDS,
    SETTINGS,
    DcertResult,
    _result_from_rows,
    dcert_schema,
)
from smoothcert.runs.store import RunStore, pending_blocks
from smoothcert.runs.versions import DCERT_CONFIG_VERSION, VERSION_KEY, upgrade_dcert_config

SELECTION_KEY = "selection_sha"

#: Starts per ascent of a new dcert run: x0 and two random starts (best of the three).
DEFAULT_RESTARTS = 3

# (part, setting) -> the block's arrays of :class:`SurrogateTable` (ROW_FIELDS).
BlockArrays = dict[tuple[str, str], dict[str, np.ndarray]]


# ------------------------------------------------------------------ 1. validate


@dataclass(frozen=True, eq=False)  # eq=False: its grids are arrays, which == cannot compare
class DcertOptions:
    """The settings of a ``dcert`` run, checked when built (a refused run leaves no file).

    ``restarts`` None means "not resolved yet": :meth:`with_restarts` resolves it against the
    run file (a run resumes with the starts it began with) and checks it.

    Parameters
    ----------
    sigma : float
        Noise level σ > 0 (σ = 0 is always computed too); stored as a float.
    gammas : sequence of float
        The estimate's grid of penalties γ; stored as a float64 array.
    gamma_adv : sequence of float
        The empirical adversary's penalties; stored as a float64 array.
    batch_size : int, default 50
        Positions of the selection per block.
    seed : int, default 0
        Seed of the draws.
    restarts : int, optional
        Starts per ascent, once resolved.
    surrogate : dict, optional
        Keyword arguments of :func:`smoothcert.distributional.surrogate` (``steps``,
        ``num_noise``, ...), without ``restarts``.
    bound_draws : int, optional
        Noise draws per example at x0 for the certified bound (0: none), once resolved
        (:meth:`with_restarts`: None means :data:`DEFAULT_BOUND_DRAWS` for a new run, what an
        existing run was made with, 0 for runs from before the bound).
    clip : float, default 10.0
        M, the level the cross-entropy is clipped at for the certified bound (nats).

    Raises
    ------
    ParameterError
        If a field is out of range; the message names it.
    """

    sigma: float
    gammas: Sequence[float]
    gamma_adv: Sequence[float]
    batch_size: int = 50
    seed: int = 0
    restarts: int | None = None
    surrogate: Mapping[str, Any] = field(default_factory=dict)
    bound_draws: int | None = None
    clip: float = 10.0

    def __post_init__(self) -> None:
        grid = check_gammas(self.gammas)
        adv = check_gammas(self.gamma_adv, "gamma_adv")
        sigma = finite_real("sigma", self.sigma, nonnegative=True)
        if sigma == 0:
            raise ParameterError(
                "sigma", "must be > 0 for dcert (σ = 0, WRM's certificate, is always added)"
            )
        batch_size = positive_int("batch_size", self.batch_size)
        if self.restarts is not None:
            object.__setattr__(self, "restarts", positive_int("restarts", self.restarts))
        if self.bound_draws is not None:
            draws = integer_at_least("bound_draws", self.bound_draws, 0)
            if draws == 1:
                raise ParameterError("bound_draws", "must be 0 (no bound) or >= 2, got 1")
            object.__setattr__(self, "bound_draws", draws)
        object.__setattr__(self, "clip", finite_real("clip", self.clip, positive=True))
        object.__setattr__(self, "gammas", grid)
        object.__setattr__(self, "gamma_adv", adv)
        object.__setattr__(self, "sigma", float(sigma))
        object.__setattr__(self, "batch_size", batch_size)
        object.__setattr__(self, "surrogate", dict(self.surrogate))

    def with_restarts(
        self, restarts: int | None, out: str | os.PathLike, bound_draws: int | None = None
    ) -> DcertOptions:
        """These options with ``restarts`` and ``bound_draws`` resolved and checked: None
        means :data:`DEFAULT_RESTARTS` (:data:`DEFAULT_BOUND_DRAWS`) for a new run and, for an
        existing run at ``out``, what it was made with (1 start for runs from before restarts,
        0 draws for runs from before the certified bound).

        Parameters
        ----------
        restarts : int, optional
            Starts per ascent, or None.
        out : str or os.PathLike
            The run file, read only when an argument is None.
        bound_draws : int, optional
            Draws at x0 per example for the certified bound, or None.

        Returns
        -------
        DcertOptions
            A copy with ``restarts`` an int >= 1 and ``bound_draws`` an int >= 0.
        """
        stored = _stored_settings(out)
        if restarts is None:
            restarts = stored["restarts"]
        if bound_draws is None:
            bound_draws = stored["bound_draws"]
        return replace(self, restarts=restarts, bound_draws=bound_draws)

    def surrogate_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of every ascent: ``surrogate``, and ``restarts`` when > 1
        (one start is the ascent's default)."""
        if self.restarts is None:
            raise ValueError("restarts is not resolved yet (see DcertOptions.with_restarts)")
        if self.restarts > 1:
            return dict(self.surrogate) | {"restarts": self.restarts}
        return dict(self.surrogate)

    def config(self, model_sha256: str, selection: DcertSelection) -> dict[str, Any]:
        """The run-config entries of these settings, every one (a resume must match them
        exactly; a config of an earlier version is upgraded first, see
        :mod:`smoothcert.runs.versions`).

        Parameters
        ----------
        model_sha256 : str
            The model's fingerprint (:func:`smoothcert.runs.model_fingerprint`).
        selection : DcertSelection
            The run's examples.

        Returns
        -------
        dict
            The config entries, without the caller's.
        """
        # Every ascent's settings, its starts included (1 when the surrogate names none).
        kwargs = {"restarts": 1} | self.surrogate_kwargs()
        return {
            "command": "dcert",
            "model_sha256": model_sha256,
            "sigma": self.sigma,
            "gammas": self.gammas.tolist(),
            "gamma_adv": self.gamma_adv.tolist(),
            "batch_size": self.batch_size,
            "seed": self.seed,
            "surrogate": {k: v for k, v in sorted(kwargs.items()) if not callable(v)},
            # The blocks are positions of the selection, so it determines the results.
            SELECTION_KEY: selection.key(),
        } | self.bound_config()

    def bound_config(self) -> dict[str, Any]:
        """The config entry of the certified bound's statistics (None when they are not
        computed), and the config's version."""
        bound = None
        if self.bound_draws:
            bound = {"draws": int(self.bound_draws), "clip": float(self.clip)}
        return {"bound": bound, VERSION_KEY: DCERT_CONFIG_VERSION}


@dataclass(frozen=True)
class DcertSelection:
    """The examples of a ``dcert`` run: ``indices``, the first examples of ``pool``, the
    ordered selection the run may grow along (its blocks are positions of ``pool``).

    Parameters
    ----------
    indices : tuple of int
        The examples to compute and store, a non-empty prefix of ``pool``.
    pool : tuple of int
        The ordered selection, no example twice, each in [0, ``num_examples``).
    num_examples : int
        The size of the dataset.

    Raises
    ------
    ValueError
        If the examples do not fit these rules.
    """

    indices: tuple[int, ...]
    pool: tuple[int, ...]
    num_examples: int

    def __post_init__(self) -> None:
        if not self.indices:
            raise ValueError("no examples selected")
        if self.pool[: len(self.indices)] != self.indices:
            raise ValueError("indices must be the first len(indices) entries of selection")
        if len(set(self.pool)) != len(self.pool):
            raise ValueError("selection must not repeat an example")
        if not all(0 <= i < self.num_examples for i in self.pool):
            raise ValueError(f"indices must lie in [0, {self.num_examples})")

    @classmethod
    def of(
        cls, indices: Sequence[int], selection: Sequence[int] | None, dataset: Any
    ) -> DcertSelection:
        """The selection of ``dcert_dataset``'s arguments (``selection`` defaults to
        ``indices``).

        Parameters
        ----------
        indices, selection : sequence of int
            As :func:`dcert_dataset` takes them.
        dataset : data set or pair of tensors
            The examples (see :func:`smoothcert.distributional.dataset_length`).

        Returns
        -------
        DcertSelection
            The checked selection.
        """
        idx = tuple(int(i) for i in indices)
        if not idx:  # before the dataset is looked at, as always
            raise ValueError("no examples selected")
        pool = idx if selection is None else tuple(int(i) for i in selection)
        return cls(idx, pool, dataset_length(dataset))

    def key(self) -> str:
        """A short identity of the ordered selection (stored in the run's config)."""
        return selection_sha(self.pool)

    def blocks(self, batch_size: int, done: set[int]) -> Iterator[tuple[list[int], list[int]]]:
        """The pending blocks (block, its missing examples) of the whole blocks that cover
        ``indices``; their examples past ``indices`` are computed, not stored, so they count
        as done (they never make a block pending on their own) and are added to ``done``."""
        end = min(len(self.pool), -(-len(self.indices) // batch_size) * batch_size)
        done |= set(self.pool[len(self.indices) : end])
        return pending_blocks(list(self.pool[:end]), batch_size, done)


def _stored_settings(out) -> dict[str, int]:
    """The restarts and bound draws an existing dcert run at ``out`` was made with (1 and 0
    when its config names none), or the defaults when there is no such run."""
    new = {"restarts": DEFAULT_RESTARTS, "bound_draws": DEFAULT_BOUND_DRAWS}
    path = Path(out)
    if not path.is_file() or path.stat().st_size == 0:
        return new
    try:
        with RunStore.read(path) as store:
            if store.kind != "dcert":
                return new
            config = upgrade_dcert_config(store.config)
    except (ValueError, OSError, sqlite3.DatabaseError):
        return new  # not a (sound) run store: RunStore.open gives the error
    bound = config["bound"] or {}
    return {
        "restarts": int(config.get("surrogate", {}).get("restarts", 1)),
        "bound_draws": int(bound.get("draws", 0)),
    }


# ------------------------------------------------------------------ 2. open


def _open_run(
    out: str | os.PathLike,
    model: nn.Module,
    options: DcertOptions,
    selection: DcertSelection,
    dim: int,
    config: dict | None,
    info: dict | None,
) -> RunStore:
    """The run file, created or resumed (its config must match this run's exactly)."""
    run_config = {
        **options.config(model_fingerprint(model), selection),
        **(config or {}),
        VERSION_KEY: DCERT_CONFIG_VERSION,  # the caller's entries cannot change it
    }
    info = (info or {}) | {"input_dim": dim}
    schema = dcert_schema(bound=bool(options.bound_draws))
    return RunStore.open(out, "dcert", run_config, schema, info=info, upgrade=upgrade_dcert_config)


# ------------------------------------------------------------------ 3-5. select, evaluate, write


def _evaluate_block(
    model: nn.Module,
    dataset: Any,
    block: list[int],
    options: DcertOptions,
    tick: Callable[[float], None] | None = None,
) -> tuple[BlockArrays, dict[str, np.ndarray] | None, float]:
    """(the arrays of every (part, setting), the bound's statistics or None, seconds per
    example) of one block; the draws are seeded per block, part and γ, so a block's numbers
    do not depend on when it runs. ``tick(share)`` reports each finished share of the block
    (after each γ of each part; the shares sum to 1), for a progress bar with the time left."""
    sigmas = {"smooth": options.sigma, "plain": 0.0}
    kwargs = options.surrogate_kwargs()
    # shares of the work: an ascent with noise costs num_noise forward passes per step, one
    # without noise costs one; the bound's draws cost one pass each, without backward
    steps = (int(kwargs.get("steps", 50)) + 1) * int(kwargs.get("restarts", 1))
    noisy = 3 * steps * int(kwargs.get("num_noise", 8))
    cost = {
        (part, setting): (noisy if setting == "smooth" else 3 * steps)
        * len(options.gammas if part == "cert" else options.gamma_adv)
        for part in PARTS
        for setting in SETTINGS
    }
    cost["bound", "smooth"] = int(options.bound_draws or 0)
    total_cost = sum(cost.values())
    start = time.perf_counter()
    computed = {}
    for part in PARTS:
        for setting in SETTINGS:
            grid = options.gammas if part == "cert" else options.gamma_adv
            share = cost[part, setting] / total_cost / len(grid)
            computed[part, setting] = block_rows(
                model, dataset, block, grid, sigmas[setting], seed=options.seed, stream=part,
                tick=None if tick is None else (lambda share=share: tick(share)), **kwargs,
            )  # fmt: skip
    stats = _bound_stats(model, dataset, block, options) if options.bound_draws else None
    if tick is not None and stats is not None:
        tick(cost["bound", "smooth"] / total_cost)
    return computed, stats, (time.perf_counter() - start) / len(block)


def _bound_stats(
    model: nn.Module, dataset: Any, block: list[int], options: DcertOptions
) -> dict[str, np.ndarray]:
    """The Monte Carlo statistics at x0 of the certified bound for one block (its own seed
    stream, so the estimate's numbers do not change)."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    x0, y = batch_of(dataset, block)
    x0, y = check_batch(model, x0.to(device), y.to(device), class_labels=True)
    gen = torch.Generator(device=device)
    gen.manual_seed(block_seed(options.seed, block[0], 0.0, options.sigma, "bound"))
    was_training = model.training
    model.eval()
    try:
        return clipped_loss_stats(
            model, x0, y, options.sigma, int(options.bound_draws), options.clip, generator=gen
        )
    finally:
        model.train(was_training)


def _store_block(
    store: RunStore,
    dataset: Any,
    block: list[int],
    computed: BlockArrays,
    seconds: float,
    done: set[int],
    stats: dict[str, np.ndarray] | None = None,
) -> None:
    """Commit the rows of the block's examples not in ``done`` (and add them to it)."""
    _, labels = batch_of(dataset, block)
    for pos, i in enumerate(block):
        if i in done:
            continue
        row = {"label": int(labels[pos]), "seconds": seconds}
        for (part, setting), arrays in computed.items():
            for name in ROW_FIELDS:
                row[f"{part}_{setting}_{name}"] = arrays[name][pos].tolist()
        if stats is not None:
            for name in BOUND_FIELDS:
                row[f"bound_{name}"] = float(stats[name][pos])
        store.add(i, row)
        done.add(i)


# ------------------------------------------------------------------ the run


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
    progress: Callable[[float], None] | None = None,
    restarts: int | None = None,
    bound_draws: int | None = None,
    clip: float = 10.0,
    **surrogate_kwargs,
) -> DcertResult:
    """The distributional certificate (estimate and bound) and the empirical worst case, resumable.

    The estimated certificate curve and empirical worst-case loss, smoothed (σ) and unsmoothed
    (σ = 0), for the examples ``indices`` of ``dataset``, stored in the run file ``out`` (one
    committed row per example; rerunning resumes).

    ``indices`` are the first examples of ``selection`` (default: ``indices`` itself), the
    ordered list a run may grow along: examples go in fixed blocks of ``batch_size`` positions
    of ``selection``, each computed whole (its seeds are drawn per block) even where it runs
    past ``indices``, and only the rows of ``indices`` are stored. So a run extended to a
    longer prefix of the same ``selection`` stores exactly the rows a fresh run over that
    prefix would, and a block with a missing row (a crash) is recomputed to the same numbers.
    The selection is part of the run's config: pass it to be able to extend a run (the CLI
    passes every ``skip``-th example). The estimate's ascents (γ grid) and the adversary's
    (γ_adv sweep) use independent draws, so comparing them is an honest check of weak duality.
    ``progress`` is called with a number of examples as the work advances (fractions of a
    block after each γ of each of its parts; they add up to the examples added).
    With ``bound_draws`` > 0 every example also gets ``bound_draws`` noise draws at x0
    (its own seed stream), the Monte Carlo statistics of the certified bound
    (:meth:`DcertResult.certified`, :mod:`smoothcert.distributional.certified`) of the loss
    min(CE, ``clip``) and of the 0-1 loss.
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
        The estimate's grid of penalties γ.
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
        Called with the (fractional) number of examples done as the work advances.
    restarts : int, optional
        Starts per ascent (see above).
    bound_draws : int, optional
        Draws at x0 per example for the certified bound (0: none); None means
        :data:`DEFAULT_BOUND_DRAWS` for a new run, and for an existing run what it was made
        with (0 for runs from before the bound).
    clip : float, default 10.0
        M: the cross-entropy is clipped to [0, M] for the certified bound.
    **surrogate_kwargs
        Passed to :func:`smoothcert.distributional.surrogate` (``steps``, ``num_noise``, ...).

    Returns
    -------
    DcertResult
        The tables of every example of ``indices``.

    Raises
    ------
    ValueError
        If an argument is out of range (a :class:`~smoothcert._util.checks.ParameterError` naming
        it) or ``out`` holds another run.
    """
    options = DcertOptions(
        sigma=sigma,
        gammas=gammas,
        gamma_adv=gamma_adv,
        batch_size=batch_size,
        seed=seed,
        surrogate=surrogate_kwargs,
        bound_draws=bound_draws,
        clip=clip,
    )
    examples = DcertSelection.of(indices, selection, dataset)
    options = options.with_restarts(restarts, out, bound_draws)
    x_first, _ = batch_of(dataset, examples.indices[:1])
    dim = x_first[0].numel()
    with _open_run(out, model, options, examples, dim, config, info) as store:
        done = store.done_indices()
        for block, missing in examples.blocks(options.batch_size, done):
            tick = None if progress is None else _share_of(progress, len(missing))
            computed, stats, seconds = _evaluate_block(model, dataset, block, options, tick)
            _store_block(store, dataset, block, computed, seconds, done, stats)
        wanted = set(examples.indices)
        rows = [r for r in store.rows() if r["idx"] in wanted]
    bound = (int(options.bound_draws or 0), options.clip)
    return _result_from_rows(rows, options.sigma, options.gammas, options.gamma_adv, dim, bound)


def _share_of(progress: Callable[[float], None], count: int) -> Callable[[float], None]:
    """``progress`` called with a share of ``count`` examples."""
    return lambda share: progress(count * share)
