"""Accuracy under L2 PGD for a list of radii (the NAL paper's Table 2 and Figures 1–3).

Two settings:

- base classifier (``noise_sigma=None``): PGD on f, then the prediction argmax f(x');
- Gaussian noise at test time (the NAL paper's Figure 1): the attacker acts before the noise,
  so PGD attacks the noisy classifier (:func:`pgd_l2_smoothed`, the expected-loss objective of
  Cohen et al. App. J.3 by default), then the prediction is the vote of argmax f(x' + z) over
  ``noise_samples`` draws z ~ N(0, σ²I): the majority (ties to the lowest class), or PREDICT's
  answer (Cohen et al. §3.2) with abstention counted as wrong.

Common random numbers. The vote draws of an example are a fixed function of (seed, example
index) (:func:`vote_noise`): the same draws at every radius, for every attack and restart, and
for any batch size. For each example the noisy evaluation is therefore one deterministic
classifier g_i(x) = vote of f(x + z_ij), j = 1..m, and the attack's own randomness (the noise
of its gradient estimates, its random starts) comes from another generator. Drawing fresh votes
at every radius instead made the accuracy fall with the number of radii listed even when the
attack could not move the input (the first unlucky vote of an example was carried to every
larger radius): with a classifier whose votes are coin flips, 8 votes, 0.75 at one radius and
0.03 at twelve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from smoothcert._util.checks import ParameterError, finite_real, one_of, positive_int, probability
from smoothcert._util.seeding import vote_generator
from smoothcert._util.torch_helpers import evaluating
from smoothcert._util.user_data import batch_of, dataset_length
from smoothcert.attacks.pgd import draw_noise, pgd_l2, pgd_l2_smoothed
from smoothcert.certify.stats import predict_from_counts

#: How the noisy votes are turned into a prediction: "majority" (ties to the lowest class) or
#: "predict" (PREDICT of Cohen et al. §3.2 at level ``vote_alpha``; abstain counts as wrong).
VOTE_MODES = ("majority", "predict")


@dataclass
class RobustAccuracy:
    eps: list[float]
    accuracy: dict[float, float]  # eps -> fraction correct under attack
    correct: np.ndarray  # [N, len(eps)] bool: example i correct under attack at eps[k]
    predictions: np.ndarray  # [N, len(eps)] int
    labels: np.ndarray  # [N]


def _finite_logits(logits: torch.Tensor) -> torch.Tensor:
    # argmax picks a NaN logit, so a broken model (or σ) would give accuracies that mean nothing
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("the model returned NaN or infinite logits; accuracies would mean nothing")
    return logits


def vote_noise(
    shape: Sequence[int],
    sigma: float,
    samples: int,
    seed: int,
    example_ids: Sequence[int],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The vote draws of the examples ``example_ids``: [B, samples, *shape], std ``sigma``.

    Example i's draws come from a generator seeded by (seed, i) alone (through
    :class:`numpy.random.SeedSequence`, with a tag that keeps them apart from the attack's
    streams), so they are the same at every radius, for every attack and restart, and for any
    batch size: common random numbers.

    Parameters
    ----------
    shape : sequence of int
        The shape of one example.
    sigma : float
        Standard deviation of the noise.
    samples : int
        Draws per example.
    seed : int
        The run's seed (>= 0).
    example_ids : sequence of int
        One identifier (>= 0) per example, e.g. its index in the dataset.
    dtype : torch.dtype, default torch.float32
        Type of the draws.
    device : torch.device or str, optional
        Device of the result (the draws are made on the host, so they do not depend on it).

    Returns
    -------
    torch.Tensor
        The draws, [len(example_ids), samples, *shape].

    Examples
    --------
    >>> a = vote_noise((2,), 0.5, 3, seed=0, example_ids=[4, 7])
    >>> b = vote_noise((2,), 0.5, 3, seed=0, example_ids=[7])
    >>> bool(torch.equal(a[1], b[0]))
    True
    """
    out = torch.empty((len(example_ids), samples, *shape), dtype=dtype)
    for k, i in enumerate(example_ids):
        gen = vote_generator(seed, i)
        out[k] = torch.randn((samples, *shape), generator=gen, dtype=dtype)
    return (sigma * out).to(device) if device is not None else sigma * out


def check_vote(vote: str, vote_alpha: float, noise_samples: int) -> tuple[str, float]:
    """(vote, vote_alpha) checked: a mode of :data:`VOTE_MODES`, α in (0, 1), and with
    "predict" enough draws that a unanimous vote can pass the test (2·2^−m ≤ α)."""
    one_of("vote", vote, VOTE_MODES)
    vote_alpha = probability("vote_alpha", vote_alpha)
    if vote == "predict" and 2.0 * 0.5**noise_samples > vote_alpha:
        need = int(np.ceil(np.log2(2.0 / vote_alpha)))
        raise ParameterError(
            "noise_samples",
            f"must be >= {need} for PREDICT at vote_alpha = {vote_alpha:g} (with fewer draws "
            f"it always abstains), got {noise_samples}",
        )
    return vote, vote_alpha


def _predict(
    model: nn.Module,
    x: torch.Tensor,
    noise: torch.Tensor | None,
    vote: str = "majority",
    vote_alpha: float = 0.001,
) -> torch.Tensor:
    """Predictions [B] at x: argmax f(x) without ``noise``, else the vote of argmax f(x + z)
    over the draws ``noise`` [B, m, ...] (majority, or PREDICT with -1 for abstain)."""
    with torch.no_grad(), evaluating(model, inference=False):
        if noise is None:
            return _finite_logits(model(x)).argmax(1)
        batch, samples = noise.shape[:2]
        noisy = (x.unsqueeze(1) + noise).reshape(batch * samples, *x.shape[1:])
        votes = _finite_logits(model(noisy)).argmax(1).view(batch, samples)
        num_classes = max(int(votes.max()) + 1, 2)
        counts = torch.zeros(batch, num_classes, dtype=torch.long, device=x.device)
        counts.scatter_add_(1, votes, torch.ones_like(votes))
        if vote == "majority":
            return counts.argmax(1)  # first maximum: ties go to the lowest class index
        decided = [predict_from_counts(c, vote_alpha) for c in counts.cpu().numpy()]
        return torch.tensor(decided, dtype=torch.long, device=x.device)


def check_steps(steps: int | Sequence[int]) -> list[int]:
    """The attacks' step counts as a non-empty list of positive integers.

    Parameters
    ----------
    steps : int or sequence of int
        One step count or several (one attack each).

    Returns
    -------
    list of int
        The step counts.

    Raises
    ------
    smoothcert._util.checks.ParameterError
        If ``steps`` is empty or holds anything but integers >= 1.
    """
    try:
        items = list(steps)  # type: ignore[arg-type]
    except TypeError:  # one number (a bool or a float is refused below, not iterated)
        items = [steps]
    if not items:
        raise ParameterError(
            "steps", f"must be a positive integer or a list of them, got {steps!r}"
        )
    return [positive_int("steps", s) for s in items]


def attack_batch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_list: Sequence[float],
    steps: int | Sequence[int],
    *,
    noise_sigma: float | None = None,
    noise_samples: int = 8,
    objective: str = "expected",
    generator: torch.Generator | None = None,
    restarts: int = 1,
    skip_fooled: bool = True,
    votes: torch.Tensor | None = None,
    vote: str = "majority",
    vote_alpha: float = 0.001,
) -> torch.Tensor:
    """Predictions [B, len(eps_list)] of one batch under PGD at each radius (see module doc).

    Every attack in ``steps`` (one PGD run per step count) runs ``restarts`` times: the first
    from x (the NAL paper's protocol), the others from a point drawn uniformly in the ε-ball
    (``generator``). An example's prediction at ε is that of the first run that fooled it, so
    it counts as correct only if every run failed. With one step count and one restart no
    random start is drawn: the results are those of the single attack.

    With ``noise_sigma`` every prediction is the vote over the draws ``votes`` [B, m, ...]
    (:func:`vote_noise`; drawn once from ``generator`` when not given), the same draws at every
    radius and for every run: common random numbers. So example i is judged by one fixed
    classifier g_i (its vote over its own draws, majority or PREDICT with abstention counted
    wrong), exactly as the base classifier is judged without noise; the attack's randomness
    (its gradient noise and random starts) comes from ``generator`` only.

    The radii are attacked smallest first. With ``skip_fooled`` an example fooled at a radius
    is not attacked again at the larger ones: the point that fooled it lies in every larger
    ball, and since g_i is the same function at every radius it fools g_i there too, so its
    prediction carries over (this is sound only with common random numbers: with fresh votes
    per radius a point is judged by another random classifier at each radius). The verdicts
    are therefore monotone in the radius and equal those of :func:`robust_correct` (robust at
    ε only if not fooled at any radius ≤ ε) at a fraction of the work once the accuracy
    falls; an attack that cannot move the input gives the same verdict at every radius.
    Without ``skip_fooled`` every radius attacks every example and keeps its own result.
    """
    runs = [(s, r) for s in check_steps(steps) for r in range(restarts)]
    if noise_sigma is not None and votes is None:
        votes = draw_noise(x, noise_sigma, noise_samples, generator)
    if noise_sigma is None:
        votes = None

    def attack_at(eps: float, todo: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
        """``pred`` with the examples ``todo`` attacked at ``eps``; a success is kept."""
        pred = pred.clone()
        for j, (num_steps, restart) in enumerate(runs if eps > 0 else runs[:1]):
            # the later runs only need the examples the earlier ones did not fool
            idx = todo if j == 0 or not skip_fooled else todo[pred[todo] == y[todo]]
            if len(idx) == 0:
                break
            x_adv = x[idx] if eps == 0 else _attack(
                model, x[idx], y[idx], eps, num_steps, restart > 0, noise_sigma, noise_samples,
                objective, generator,
            )  # fmt: skip
            p = _predict(model, x_adv, None if votes is None else votes[idx], vote, vote_alpha)
            pred[idx] = p if j == 0 else torch.where(pred[idx] == y[idx], p, pred[idx])
        return pred

    everyone = torch.arange(len(y), device=y.device)
    columns: dict[int, torch.Tensor] = {}
    pred = torch.full_like(y, -1)  # the prediction under the strongest attack so far
    order = range(len(eps_list))
    for k in sorted(order, key=lambda k: eps_list[k]) if skip_fooled else order:
        if skip_fooled and columns:
            pred = attack_at(eps_list[k], everyone[pred == y], pred)
        else:
            pred = attack_at(eps_list[k], everyone, pred)
        columns[k] = pred
    return torch.stack([columns[k] for k in range(len(eps_list))], dim=1)


def _attack(model, x, y, eps, steps, random_start, noise_sigma, noise_samples, objective, gen):
    if noise_sigma is None:
        return pgd_l2(model, x, y, eps, steps, random_start=random_start, generator=gen)
    return pgd_l2_smoothed(
        model, x, y, eps, steps, noise_sigma, noise_samples, objective=objective,
        generator=gen, random_start=random_start,
    )  # fmt: skip


def robust_correct(correct: np.ndarray, eps_list: Sequence[float]) -> np.ndarray:
    """[N, K] bool: example i is robust at eps_list[k] only if it was correct under attack at
    every radius ε ≤ eps_list[k] — the ε-ball contains every smaller ball, so an adversarial
    example found at a smaller radius also lies within ε (per-example minimum over radii; a
    weaker run at a larger radius must not report the example robust again)."""
    correct = np.asarray(correct, dtype=bool)
    eps = np.asarray(list(eps_list), dtype=float)
    if correct.size == 0:
        return correct.reshape(len(correct), len(eps))
    order = np.argsort(eps, kind="stable")
    running = np.logical_and.accumulate(correct[:, order], axis=1)
    out = np.empty_like(running)
    out[:, order] = running
    # equal radii share the verdict of the stricter of them
    for value in np.unique(eps):
        same = eps == value
        out[:, same] = out[:, same].all(axis=1, keepdims=True)
    return out


def check_restarts(restarts: int) -> int:
    """``restarts`` (runs per attack) as an int >= 1, else a
    :class:`~smoothcert._util.checks.ParameterError`."""
    return positive_int("restarts", restarts)


def as_tensors(data, max_examples: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``max_examples`` (images in [0,1], labels) of ``data``, in any form
    :mod:`smoothcert._util.user_data` takes (uint8 images are scaled by 1/255), as float32
    images and int64 labels."""
    if max_examples is not None and max_examples < 0:
        raise ParameterError("max_examples", f"must be >= 0, got {max_examples}")
    n = dataset_length(data)
    x, y = batch_of(data, range(n if max_examples is None else min(n, max_examples)))
    x, y = torch.as_tensor(x), torch.as_tensor(y)
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    return x.float(), y.long()


def attack_seeded_batch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_list: list[float],
    steps: int | Sequence[int],
    noise_sigma: float | None,
    noise_samples: int,
    objective: str,
    seed: int,
    first_index: int,
    restarts: int = 1,
    skip_fooled: bool = True,
    example_ids: Sequence[int] | None = None,
    vote: str = "majority",
    vote_alpha: float = 0.001,
) -> torch.Tensor:
    """:func:`attack_batch` with the batch's attack generator seeded by (seed, its first
    index) and each example's vote draws by (seed, its id in ``example_ids``, default
    first_index, first_index + 1, ...) (:func:`vote_noise`), on the host: the seeding shared
    by :func:`robust_accuracy` and the resumable attack runs."""
    gen = torch.Generator(device=x.device).manual_seed(seed * 1_000_003 + first_index)
    votes = None
    if noise_sigma is not None:
        ids = range(first_index, first_index + len(y)) if example_ids is None else example_ids
        votes = vote_noise(
            x.shape[1:], noise_sigma, noise_samples, seed, list(ids), dtype=x.dtype,
            device=x.device,
        )  # fmt: skip
    return attack_batch(
        model,
        x,
        y,
        eps_list,
        steps,
        noise_sigma=noise_sigma,
        noise_samples=noise_samples,
        objective=objective,
        generator=gen,
        restarts=restarts,
        skip_fooled=skip_fooled,
        votes=votes,
        vote=vote,
        vote_alpha=vote_alpha,
    ).cpu()


def robust_accuracy(
    model: nn.Module,
    data,
    eps_list: Sequence[float],
    steps: int | Sequence[int] = 20,
    *,
    noise_sigma: float | None = None,
    noise_samples: int = 8,
    objective: str = "expected",
    batch_size: int = 100,
    max_examples: int | None = None,
    seed: int = 0,
    progress: bool = False,
    restarts: int = 1,
    skip_fooled: bool = True,
    vote: str = "majority",
    vote_alpha: float = 0.001,
) -> RobustAccuracy:
    """Accuracy under L2 PGD (``steps`` steps of 2ε/steps) at every radius in ``eps_list``.

    ``steps`` may list several attacks and ``restarts`` adds random starts (see
    :func:`attack_batch`); an example counts as robust at ε only if every run at every radius
    ≤ ε failed on it (:func:`robust_correct`), so more attacks never raise the accuracy.
    ``correct`` holds that per-example verdict, ``predictions`` each radius's own result.

    ``data`` is (images in [0,1], labels) or a dataset (see :func:`as_tensors`); the first
    ``max_examples`` examples are attacked. With ``noise_sigma`` the classifier is evaluated with
    Gaussian noise at test time: the vote over ``noise_samples`` draws, by majority or, with
    ``vote="predict"``, PREDICT at level ``vote_alpha`` (abstain counts as wrong). The vote
    draws of example i are fixed by (seed, i) (common random numbers, :func:`attack_batch`);
    the attack's own randomness comes from one generator per batch, seeded by seed and the
    batch's first index: the same seed and batch size give the same result.
    """
    eps_list = [float(e) for e in eps_list]
    if not eps_list or any(not np.isfinite(e) or e < 0 for e in eps_list):
        raise ParameterError("eps_list", f"must be non-empty radii >= 0, got {eps_list}")
    if noise_sigma is not None:
        finite_real("noise_sigma", noise_sigma, nonnegative=True)
    positive_int("noise_samples", noise_samples)
    positive_int("batch_size", batch_size)
    check_steps(steps)
    check_restarts(restarts)
    if noise_sigma is None and vote != "majority":
        raise ParameterError("vote", "needs noise_sigma (the base classifier has no votes)")
    check_vote(vote, vote_alpha, noise_samples if noise_sigma is not None else 64)
    x_all, y_all = as_tensors(data, max_examples)
    device = next(model.parameters()).device
    starts = range(0, len(y_all), batch_size)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="attack", unit="batch")
    predictions = []
    for start in starts:
        x = x_all[start : start + batch_size].to(device)
        y = y_all[start : start + batch_size].to(device)
        predictions.append(
            attack_seeded_batch(
                model,
                x,
                y,
                eps_list,
                steps,
                noise_sigma,
                noise_samples,
                objective,
                seed,
                start,
                restarts,
                skip_fooled,
                vote=vote,
                vote_alpha=vote_alpha,
            )  # fmt: skip
        )
    pred = torch.cat(predictions).numpy() if predictions else np.zeros((0, len(eps_list)), int)
    labels = y_all.numpy()
    correct = robust_correct(pred == labels[:, None], eps_list)
    accuracy = {
        e: float(correct[:, k].mean()) if len(labels) else float("nan")
        for k, e in enumerate(eps_list)
    }
    return RobustAccuracy(eps_list, accuracy, correct, pred, labels)
