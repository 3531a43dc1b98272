"""The surrogate over a data set (:class:`SurrogateTable`): per example and γ, the ascent's
losses, transport costs and gradient norms, computed in fixed blocks of examples whose seeds
depend only on the block (:func:`block_seed`), so that a run resumes and extends to the same
numbers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from smoothcert._util.checks import ParameterError
from smoothcert._util.seeding import block_seed
from smoothcert._util.user_data import batch_of, dataset_length
from smoothcert.distributional.ascent import cross_entropy_per_example
from smoothcert.distributional.objective import _class_checked, _count, check_batch, surrogate

# --------------------------------------------------------------------------- over a data set


@dataclass
class SurrogateTable:
    """Per-example surrogate results for a grid of γ: arrays of shape [n, G] (numpy, float64)."""

    gammas: np.ndarray  # [G]
    sigma: float
    dim: int  # d, the input dimension
    lagrangian: np.ndarray  # sup_x{ℓ̂ − γ‖x − x0‖²}
    loss: np.ndarray  # ℓ̂(θ; x*)
    cost: np.ndarray  # ‖x* − x0‖² (without noise)
    value_se: np.ndarray  # Monte-Carlo standard error per example
    grad_norm: np.ndarray  # convergence diagnostic per example
    indices: np.ndarray  # [n] data-set indices of the rows

    @property
    def noise_cost(self) -> float:
        """dσ², the transport cost of the noise alone: ρ = ρ_adv + dσ²."""
        return self.dim * self.sigma**2


def check_gammas(gammas: Sequence[float], name: str = "gammas") -> np.ndarray:
    """A grid of penalties γ as a float64 array.

    Parameters
    ----------
    gammas : sequence of float
        The grid: a non-empty list of finite numbers > 0.
    name : str, default "gammas"
        The parameter named in the error.

    Returns
    -------
    numpy.ndarray
        The grid, shape [G], float64.

    Raises
    ------
    smoothcert._util.checks.ParameterError
        If ``gammas`` is not a non-empty list of finite numbers > 0.
    """
    try:
        g = np.asarray(list(gammas), dtype=np.float64)
    except (TypeError, ValueError):
        raise ParameterError(name, f"must be a non-empty list of numbers, got {gammas!r}") from None
    if g.ndim != 1 or g.size == 0:
        raise ParameterError(name, f"must be a non-empty list of numbers, got {gammas!r}")
    if not np.all(np.isfinite(g)) or np.any(g <= 0):
        raise ParameterError(name, f"must all be finite and > 0, got {list(g)}")
    return g


def surrogate_table(
    model: nn.Module,
    data,
    gammas: Sequence[float],
    sigma: float,
    *,
    indices: Sequence[int] | None = None,
    batch_size: int = 50,
    seed: int = 0,
    progress: bool = False,
    **surrogate_kwargs,
) -> SurrogateTable:
    """Run :func:`surrogate` on every example of ``data`` (or ``indices``) at every γ.

    Examples are processed in fixed blocks of ``batch_size`` consecutive positions of
    ``indices``; each (block, γ, σ) gets its own seed (:func:`block_seed`). The model is put in
    eval mode for the computation and restored afterwards.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier θ.
    data : pair of tensors or arrays, or a data set
        (inputs, labels), a data set with a ``batch(indices)`` method, or any indexable set
        of (x, y) items (:func:`batch_of`).
    gammas : sequence of float
        The grid of penalties γ, each finite and > 0.
    sigma : float
        Noise level σ >= 0.
    indices : sequence of int, optional
        The examples to use; default all of ``data``.
    batch_size : int, default 50
        Examples per block (the seeds are drawn per block, so results depend on it).
    seed : int, default 0
        Seed of the draws.
    progress : bool, default False
        Show a progress bar.
    **surrogate_kwargs
        Passed to :func:`surrogate` (``steps``, ``num_noise``, ``restarts``, ...).

    Returns
    -------
    SurrogateTable
        Arrays [n, G]: one row per example, one column per γ.

    Raises
    ------
    ValueError
        If ``gammas``, ``batch_size`` or ``indices`` is out of range (a
        :class:`~smoothcert._util.checks.ParameterError` naming it), or ``data`` is empty or
        malformed.
    """
    g = check_gammas(gammas)
    batch_size = _count("batch_size", batch_size)
    n_data = dataset_length(data)
    idx = list(range(n_data)) if indices is None else [int(i) for i in indices]
    if not idx:
        raise ValueError("data is empty: need at least one example")
    bad = [i for i in idx if not 0 <= i < n_data]
    if bad:
        raise ParameterError("indices", f"must lie in [0, {n_data}), got {bad[:3]}")
    rows = [
        block_rows(model, data, idx[s : s + batch_size], g, sigma, seed=seed, **surrogate_kwargs)
        for s in _progress(range(0, len(idx), batch_size), progress, "surrogate")
    ]
    x_first, _ = batch_of(data, idx[:1])
    return SurrogateTable(
        gammas=g,
        sigma=float(sigma),
        dim=x_first[0].numel(),
        indices=np.asarray(idx),
        **{k: np.concatenate([r[k] for r in rows]) for k in rows[0]},
    )


def block_rows(
    model: nn.Module,
    data,
    block: Sequence[int],
    gammas: Sequence[float],
    sigma: float,
    *,
    seed: int = 0,
    stream: str = "",
    tick: Callable[[], None] | None = None,
    **surrogate_kwargs,
) -> dict[str, np.ndarray]:
    """The [len(block), G] arrays of :class:`SurrogateTable` for one block of examples;
    ``tick()`` is called after each γ (for a progress bar)."""
    device = next(iter(model.parameters()), torch.empty(0)).device
    x0, y = batch_of(data, block)
    # Checked here too so that a fault in the data names ``data``, not surrogate()'s x0.
    loss_fn = surrogate_kwargs.get("loss_fn", cross_entropy_per_example)
    class_labels = loss_fn is cross_entropy_per_example
    names = ("data (its inputs)", "data (its labels)")
    x0, y = check_batch(model, x0.to(device), y.to(device), class_labels=class_labels, names=names)
    if class_labels:
        surrogate_kwargs = surrogate_kwargs | {"loss_fn": _class_checked(loss_fn, y, names[1])}
    out: dict[str, list[np.ndarray]] = {
        k: [] for k in ("lagrangian", "loss", "cost", "value_se", "grad_norm")
    }
    was_training = model.training
    model.eval()
    try:
        for gamma in gammas:
            gen = torch.Generator(device=device)
            gen.manual_seed(block_seed(seed, block[0], gamma, sigma, stream))
            r = surrogate(model, x0, y, float(gamma), sigma, generator=gen, **surrogate_kwargs)
            out["lagrangian"].append(r.lagrangian.double().cpu().numpy())
            out["loss"].append(r.loss.double().cpu().numpy())
            out["cost"].append(r.cost_without_noise.double().cpu().numpy())
            out["value_se"].append(r.value_se.double().cpu().numpy())
            out["grad_norm"].append(r.grad_norm.double().cpu().numpy())
            if tick is not None:
                tick()
    finally:
        model.train(was_training)
    return {k: np.stack(v, axis=1) for k, v in out.items()}


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit="batch")
