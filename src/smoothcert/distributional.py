"""The distributional robustness certificate of the NAL paper (Theorem 1), with one
perturbation shared by the noise draws (docs/threat-model.md).

Not to be confused with :class:`smoothcert.smoothing.Certificate`, the pointwise certificate
of one input: this module bounds the expected loss over a data distribution. Its names say
"distributional" or "bound": :func:`distributional_bound` (one γ and ρ, a
:class:`DistributionalBound`) and :func:`distributional_curve` (a γ grid and several ρ, a
:class:`DistributionalCurve`), each also computable from a stored :class:`SurrogateTable`
(:func:`bound_from_table`, :func:`curve_from_table`).

Threat model: a clean input x0 ~ P0 is moved by the adversary to x (any
deterministic or random map, independent of the defender's noise); the defender adds
z ~ N(0, σ²I); the classifier sees x + z. The surrogate with ONE perturbation shared by the
noise draws (what Algorithm 1 computes) is

    φ̃γ(θ; x0) = sup_x E_z[ ℓ(θ; x+z) − γ‖x+z−x0‖² ] = sup_x { ℓ̂(θ; x) − γ‖x−x0‖² } − γdσ²,

with ℓ̂(θ; x) = E_z ℓ(θ; x+z) the smoothed loss (Theorem 2) and d the input dimension. By weak
duality, for every γ ≥ 0 and every adversary with E‖x+z−x0‖² ≤ ρ (Theorem 1, Eq. 3),

    E ℓ(θ; x+z) ≤ γρ + E_P0 φ̃γ(θ; x0).

Since E‖x+z−x0‖² = ‖x−x0‖² + dσ², the same bound in the adversary's own budget
ρ_adv = E‖x−x0‖² = ρ − dσ² reads

    bound(ρ_adv) = inf_γ { γρ_adv + E_P0 sup_x [ ℓ̂(θ; x) − γ‖x−x0‖² ] }.

With σ = 0 it is WRM's certificate of the unsmoothed loss (Sinha et al. 2018), the right-hand
side of Theorem 3 (Eq. 7).

What is estimated here, not guaranteed (every number of this module is an ESTIMATE; the
certified upper bound is :mod:`smoothcert.distributional_bound`): ℓ̂ by Monte-Carlo draws,
the sup by gradient ascent (a local maximizer gives a value BELOW the sup, so the estimate
may be too small when the ascent has not converged: see the gradient-norm diagnostic), and
E_P0 by a finite data set (standard error over examples). Nothing is clipped to [0, 1]: the
theorem takes X = R^d.
"""

from __future__ import annotations

import hashlib
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from numbers import Real

import numpy as np
import torch
from torch import nn

from smoothcert.attacks.surrogate import LossFn, cross_entropy_per_example, surrogate_ascent
from smoothcert.checks import ParameterError, finite_real, integer_at_least, is_integer, one_of

__all__ = [
    "DistributionalBound",
    "DistributionalCurve",
    "SurrogateResult",
    "SurrogateTable",
    "WorstCasePoint",
    "bound_from_table",
    "curve_from_table",
    "distributional_bound",
    "distributional_curve",
    "surrogate",
    "surrogate_table",
    "worst_case_from_table",
    "worst_case_loss",
]


# --------------------------------------------------------------------------- per example


@dataclass
class SurrogateResult:
    """Per-example estimate of φ̃γ(θ; x0) at one γ (tensors of shape [B] unless noted)."""

    value: torch.Tensor  # φ̃γ(θ; x0) = lagrangian − γdσ² (the ρ-with-noise form)
    lagrangian: torch.Tensor  # sup_x { ℓ̂(θ; x) − γ‖x − x0‖² } (the ρ_adv form)
    value_se: torch.Tensor  # Monte-Carlo standard error of value (from the fresh draws)
    x: torch.Tensor  # [B, ...] the maximizer x* found by the ascent
    loss: torch.Tensor  # ℓ̂(θ; x*) from the fresh draws
    cost_with_noise: torch.Tensor  # E_z‖x* + z − x0‖² = ‖x* − x0‖² + dσ² (exact expectation)
    cost_without_noise: torch.Tensor  # ‖x* − x0‖²
    grad_norm: torch.Tensor  # ‖∇_x[ℓ̂(θ; x) − γ‖x − x0‖²]‖₂ at x*, fresh draws (0 at a maximizer)
    gamma: float
    sigma: float


def _count(name: str, value: object) -> int:
    """``value`` as an int, refused unless it is an integer >= 1 (2.5 would otherwise reach
    range() or a tensor shape and fail there with a TypeError).

    :func:`smoothcert.checks.positive_int` with this module's wording ("an integer >= 1"),
    which callers match on."""
    if not is_integer(value) or value < 1:  # type: ignore[operator]
        raise ParameterError(name, f"must be an integer >= 1, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_surrogate_args(
    gamma: float, sigma: float, num_noise: int, steps: int, num_eval: int
) -> None:
    """Reject arguments the surrogate cannot work with, naming the one at fault.

    Parameters
    ----------
    gamma : float
        Penalty γ of the transport cost, finite and > 0.
    sigma : float
        Noise level σ, finite and >= 0.
    num_noise, num_eval : int
        Noise draws per ascent step and for the re-estimate, integers >= 1.
    steps : int
        Ascent steps, an integer >= 0.

    Raises
    ------
    smoothcert.checks.ParameterError
        Naming the first argument out of range.
    """
    finite_real("gamma", gamma, positive=True)
    finite_real("sigma", sigma, nonnegative=True)
    _count("num_noise", num_noise)
    integer_at_least("steps", steps, 0)
    _count("num_eval", num_eval)


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def check_batch(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    *,
    class_labels: bool,
    names: tuple[str, str] = ("x0", "y"),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate one batch of inputs and labels; return the inputs in the model's dtype.

    Inputs must be a finite floating batch [B, ...]: integer pixels (0–255?) cannot be
    converted safely, and a NaN would come out as a NaN certificate. Float64 data is converted
    to the model's dtype, which is where the computation happens anyway. With ``class_labels``
    (the default cross-entropy) labels must be integer class indices >= 0 of shape [B]; their
    upper end is checked against the model's outputs by :func:`_class_checked`."""
    x_name, y_name = names
    if not isinstance(x0, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise ValueError(
            f"{x_name} and {y_name} must be torch tensors, got "
            f"{type(x0).__name__} and {type(y).__name__}"
        )
    if x0.dim() < 2 or y.dim() < 1 or x0.shape[0] != y.shape[0]:
        raise ValueError(
            f"{x_name} must be a batch [B, ...] with one label per example in {y_name}, got "
            f"{x_name} {tuple(x0.shape)} and {y_name} {tuple(y.shape)} (add a batch dimension "
            "to a single example with unsqueeze(0))"
        )
    if not x0.is_floating_point():
        raise ValueError(
            f"{x_name} must be a floating-point tensor (images in [0, 1]), got {x0.dtype}"
        )
    if not torch.isfinite(x0).all():
        raise ValueError(f"{x_name} contains NaN or Inf")
    if class_labels:
        if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValueError(
                f"{y_name} must be integer class indices of shape [B], got {y.dtype} of shape "
                f"{tuple(y.shape)}"
            )
        if y.numel() and int(y.min()) < 0:
            # cross-entropy would silently give -100 (its ignore_index) a loss of 0.
            raise ValueError(f"{y_name} must be class indices >= 0, got {int(y.min())}")
        y = y.long()  # cross-entropy takes int64 targets only
    dtype = _model_dtype(model)
    return (x0 if dtype is None else x0.to(dtype)), y


def _class_checked(loss_fn: LossFn, y: torch.Tensor, y_name: str) -> LossFn:
    """``loss_fn`` (cross-entropy) refusing labels the model has no output for: cross-entropy
    would raise an IndexError deep inside torch, or on CUDA a device-side assert."""
    top = int(y.max()) if y.numel() else -1

    def checked(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2:
            raise ValueError(
                f"the model must output logits of shape [B, classes] for the cross-entropy "
                f"loss, got {tuple(logits.shape)}"
            )
        if top >= logits.shape[1]:
            raise ValueError(
                f"{y_name} must be class indices in [0, {logits.shape[1]}) for this model's "
                f"{logits.shape[1]} outputs, got {top}"
            )
        return loss_fn(logits, target)

    return checked


def _check_finite_result(losses: torch.Tensor, lagrangian: torch.Tensor, gamma: float) -> None:
    """A NaN or Inf loss would average into a NaN certificate, returned as if it were one."""
    bad = ~(torch.isfinite(losses).all(1) & torch.isfinite(lagrangian))
    if bad.any():
        raise ValueError(
            f"model: the loss is not finite (NaN or Inf) for {int(bad.sum())} of {bad.numel()} "
            f"examples at gamma={gamma:g}; check the model's outputs (or raise gamma, if the "
            "ascent diverged)"
        )


def _smoothed_loss_and_grad(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    sigma: float,
    num_draws: int,
    loss_fn: LossFn,
    generator: torch.Generator | None,
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-draw losses ℓ(θ; x + z_j) [B, n] and ∇_x ℓ̂ estimated by their mean (Theorem 2)."""
    batch, shape = x.shape[0], x.shape[1:]
    losses, grad = [], torch.zeros_like(x)
    with torch.enable_grad():
        for start in range(0, num_draws, chunk):
            n = min(chunk, num_draws - start)
            xr = x.detach().requires_grad_(True)
            if sigma > 0:
                z = torch.randn(
                    (batch, n, *shape), dtype=x.dtype, device=x.device, generator=generator
                )
                noisy = xr.unsqueeze(1) + sigma * z
            else:
                noisy = xr.unsqueeze(1).expand(batch, n, *shape)
            per_draw = loss_fn(model(noisy.reshape(batch * n, *shape)), y.repeat_interleave(n))
            per_draw = per_draw.view(batch, n)
            (g,) = torch.autograd.grad(per_draw.sum() / num_draws, xr)
            grad += g
            losses.append(per_draw.detach())
    return torch.cat(losses, dim=1), grad


def surrogate(
    model: nn.Module,
    x0: torch.Tensor,
    y: torch.Tensor,
    gamma: float,
    sigma: float,
    *,
    num_noise: int = 8,
    steps: int = 50,
    step_size: float | Callable[[int], float] | None = None,
    num_eval: int = 64,
    loss_fn: LossFn = cross_entropy_per_example,
    generator: torch.Generator | None = None,
    eval_chunk: int = 32,
    restarts: int = 1,
) -> SurrogateResult:
    """Estimate φ̃γ(θ; x0) = sup_x E_z[ℓ(θ; x+z) − γ‖x+z−x0‖²] for a batch.

    1. Ascent (NAL Algorithm 1, lines 3–7, via :func:`surrogate_ascent`) on
       (1/s) Σ_j ℓ(θ; x + z_j) − γ‖x − x0‖², s = ``num_noise`` fresh draws per step. The noisy
       cost of Algorithm 1 is replaced by its exact expectation ‖x − x0‖² + dσ² (same maximizer,
       less gradient noise). ``step_size`` η defaults to 0.25/γ, half of Table 1's 0.5/γ: with
       0.5/γ a step is the fixed-point map x ← x0 + ∇ℓ̂(x)/(2γ), which oscillates when γ is
       small (docs/distributional.md); a schedule k ↦ η_k is accepted too.
    2. Among the iterates x_0 … x_K the one with the largest ascent objective is kept (the
       fixed-point iteration of η = 0.5/γ can oscillate when γ is small).
    3. The value at x* is re-estimated with ``num_eval`` FRESH draws: the ascent's own draws
       are biased upward by the selection. Its standard error and the gradient norm at x*
       (the convergence diagnostic) come from the same fresh draws.

    With ``restarts`` > 1 the ascent also runs from ``restarts`` − 1 random starts
    x0 + δ, δ uniform in direction with ‖δ‖₂ = 1/√γ (where the penalty γ‖δ‖² is one nat, the
    scale of a cross-entropy), and step 2 keeps, per example, the best iterate of all runs:
    the sup is then not the value of a single local maximum. Random starts come from
    ``generator`` after the first run's draws, so ``restarts=1`` gives the same numbers as
    before restarts existed.

    With σ = 0 this is WRM's surrogate sup_x{ℓ(θ; x) − γ‖x − x0‖²} (one draw suffices).
    The model's train/eval mode is left as given; its parameters receive no gradient.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier θ.
    x0 : torch.Tensor
        Clean inputs [B, ...], floating point (converted to the model's dtype).
    y : torch.Tensor
        Labels [B]: class indices >= 0 for the default cross-entropy.
    gamma : float
        Penalty γ > 0 of the transport cost.
    sigma : float
        Noise level σ >= 0 (0: WRM's unsmoothed surrogate).
    num_noise : int, default 8
        Noise draws per ascent step.
    steps : int, default 50
        Ascent steps (0: evaluate at x0).
    step_size : float or callable, optional
        Ascent step η > 0, or a schedule k ↦ η_k; default 0.25/γ.
    num_eval : int, default 64
        Fresh draws for the re-estimate at the maximizer.
    loss_fn : callable, default cross_entropy_per_example
        Per-example loss ``loss_fn(logits, y)``.
    generator : torch.Generator, optional
        Source of the noise and of the random starts.
    eval_chunk : int, default 32
        Draws per forward pass of the re-estimate (memory, not results).
    restarts : int, default 1
        Starts per ascent (x0 and ``restarts`` − 1 random ones).

    Returns
    -------
    SurrogateResult
        Per-example value, Lagrangian, standard error, maximizer, costs and gradient norm.

    Raises
    ------
    ValueError
        If an argument is out of range (a :class:`~smoothcert.checks.ParameterError` naming
        it), the batch is malformed, or the loss is not finite.
    """
    check_surrogate_args(gamma, sigma, num_noise, steps, num_eval)
    eval_chunk = _count("eval_chunk", eval_chunk)
    class_labels = loss_fn is cross_entropy_per_example
    x0, y = check_batch(model, x0, y, class_labels=class_labels)
    if class_labels:
        loss_fn = _class_checked(loss_fn, y, "y")
    if step_size is None:
        step_size = 0.25 / gamma
    elif not callable(step_size):
        finite_real("step_size", step_size, positive=True)
    if sigma == 0:
        num_noise = num_eval = 1  # the loss is deterministic
    sigma = float(sigma)
    x0 = x0.detach()
    dim = x0[0].numel()

    restarts = _count("restarts", restarts)
    best_x, best_obj = x0.clone(), None
    for run in range(restarts):
        x = x0.clone() if run == 0 else _random_start(x0, gamma, generator)
        for k in range(steps + 1):
            # steps=1 evaluates F at x_k with fresh draws and returns x_{k+1}; the last call
            # only evaluates x_K.
            r = surrogate_ascent(
                model, x0, y, gamma=gamma, sigma=sigma, num_noise=num_noise,
                steps=1 if k < steps else 0,
                step_size=(lambda _i, k=k: step_size(k)) if callable(step_size) else step_size,
                cost_with_noise=False, init=x, loss_fn=loss_fn, generator=generator,
                diagnostics=k == steps,
            )  # fmt: skip
            obj = r.objective
            better = torch.ones_like(obj, dtype=torch.bool) if best_obj is None else obj > best_obj
            best_obj = obj if best_obj is None else torch.where(better, obj, best_obj)
            best_x[better] = x[better]
            x = r.x

    losses, grad_loss = _smoothed_loss_and_grad(
        model, best_x, y, sigma, num_eval, loss_fn, generator, eval_chunk
    )
    diff = best_x - x0
    cost = diff.flatten(1).pow(2).sum(1)
    loss = losses.mean(1)
    lagrangian = loss - gamma * cost
    _check_finite_result(losses, lagrangian, gamma)
    se = losses.std(1) / math.sqrt(num_eval) if num_eval > 1 else torch.zeros_like(loss)
    grad = grad_loss - 2 * gamma * diff
    return SurrogateResult(
        value=lagrangian - gamma * dim * sigma**2,
        lagrangian=lagrangian,
        value_se=se,
        x=best_x,
        loss=loss,
        cost_with_noise=cost + dim * sigma**2,
        cost_without_noise=cost,
        grad_norm=grad.flatten(1).norm(dim=1),
        gamma=float(gamma),
        sigma=sigma,
    )


def _random_start(x0: torch.Tensor, gamma: float, generator: torch.Generator | None):
    """x0 + δ with a uniformly random direction and ‖δ‖₂ = 1/√γ (a restart of the ascent)."""
    d = torch.randn(x0.shape, dtype=x0.dtype, device=x0.device, generator=generator)
    d = d / d.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *([1] * (x0.dim() - 1)))
    return x0 + d / math.sqrt(gamma)


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


def block_seed(seed: int, first_index: int, gamma: float, sigma: float, stream: str = "") -> int:
    """A seed for the draws of one block of examples at one (γ, σ): the same block gives the
    same draws whatever else is computed, so runs resume and γ grids refine reproducibly.
    ``stream`` separates independent uses (e.g. the certificate and the empirical adversary)."""
    key = f"{seed}:{first_index}:{float(gamma)!r}:{float(sigma)!r}:{stream}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1


def batch_of(data, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of ``data`` at ``indices``; ``data`` is a pair of tensors (or numpy
    arrays), a data set with a ``batch(indices)`` method (smoothcert.data), or any indexable
    set of (x, y) items with integer labels."""
    if _is_pair(data):
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return torch.as_tensor(data[0])[idx], torch.as_tensor(data[1])[idx]
    if callable(getattr(data, "batch", None)):
        return data.batch(list(indices))
    items = [data[i] for i in indices]
    xs = torch.stack([torch.as_tensor(x) for x, _ in items])
    labels = [_item_label(y, i) for i, (_, y) in zip(indices, items, strict=True)]
    return xs, torch.as_tensor(labels)


def _item_label(y, index: int) -> int:
    # int(1.7) would silently make it class 1; operator.index takes only whole-number types.
    try:
        return operator.index(y)
    except TypeError:
        raise ValueError(
            f"data: the label of example {index} must be an integer class, got {y!r}"
        ) from None


def _is_pair(data) -> bool:
    return (
        isinstance(data, tuple | list)
        and len(data) == 2
        and isinstance(data[0], torch.Tensor | np.ndarray)
    )


def dataset_length(data) -> int:
    """The number of examples of ``data`` (see :func:`batch_of`); a pair of inputs and labels
    must hold one label per input."""
    if _is_pair(data):
        if np.ndim(data[1]) == 0:
            raise ValueError(
                f"data: labels must hold one label per input, got a single label of shape "
                f"{tuple(np.shape(data[1]))} (pass a batch: inputs [B, ...] and labels [B])"
            )
        if len(data[0]) != len(data[1]):
            raise ValueError(f"data: {len(data[0])} inputs but {len(data[1])} labels")
        return len(data[0])
    return len(data)


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
    smoothcert.checks.ParameterError
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
        :class:`~smoothcert.checks.ParameterError` naming it), or ``data`` is empty or
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
    **surrogate_kwargs,
) -> dict[str, np.ndarray]:
    """The [len(block), G] arrays of :class:`SurrogateTable` for one block of examples."""
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
    finally:
        model.train(was_training)
    return {k: np.stack(v, axis=1) for k, v in out.items()}


def _progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit="batch")


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
        :func:`smoothcert.distributional_bound.certified_bound`."""
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
    smoothcert.checks.ParameterError
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

    Not certified: see :mod:`smoothcert.distributional_bound` for a certified bound.

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
        If an argument is out of range (a :class:`~smoothcert.checks.ParameterError` naming
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
        :func:`smoothcert.distributional_bound.certified_bound`."""
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
        If ``rhos`` or ``select`` is invalid (a :class:`~smoothcert.checks.ParameterError`),
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
    a test-set mean (:mod:`smoothcert.distributional_bound` gives a certified bound). NAL
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
        If an argument is out of range (a :class:`~smoothcert.checks.ParameterError` naming
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
        If an argument is out of range (a :class:`~smoothcert.checks.ParameterError` naming
        it) or the data or the loss is unusable.
    """
    # One number (numpy's scalars and 0-d arrays included) is a sweep of one.
    one = isinstance(gamma_adv, Real) or (isinstance(gamma_adv, np.ndarray) and gamma_adv.ndim == 0)
    gammas = [gamma_adv] if one else gamma_adv
    gammas = check_gammas(gammas, "gamma_adv")
    return worst_case_from_table(surrogate_table(model, data, gammas, sigma, **kwargs))
