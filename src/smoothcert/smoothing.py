"""The smoothed classifier g(x) = argmax_c P(f(x + ε) = c), ε ~ N(0, σ²I), with PREDICT and
CERTIFY (Cohen, Rosenfeld, Kolter 2019, §3.2 and Appendix C).

Noise is added in the caller's input space ([0,1] pixels for images); normalization belongs
inside the base model, so σ and certified radii are L2 distances in input units.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.stats import norm
from torch import nn

from smoothcert import stats

ABSTAIN = -1
"""The label PREDICT and CERTIFY return when they abstain."""


@dataclass(frozen=True)
class Certificate:
    """Outcome of CERTIFY on one input.

    With probability at least 1 − α over the sampling, if ``prediction`` is not ABSTAIN then
    g(x + δ) = prediction for every ‖δ‖₂ < ``radius`` (Theorem 1 and Proposition 2).
    """

    prediction: int
    radius: float
    n_a: int
    n: int
    p_a_lower: float
    counts_selection: np.ndarray = field(repr=False)
    counts_estimation: np.ndarray = field(repr=False)

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN


def _model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and inference mode for the duration; the training flag is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


class SmoothedClassifier:
    """Randomized smoothing of any base classifier ``base``: a module mapping a batch
    [B, *input_shape] to logits [B, num_classes].

    Parameters
    ----------
    base: the base classifier f (its argmax over logits is f's prediction).
    num_classes: number of classes.
    sigma: noise level σ > 0, in input units.
    batch_size: noisy copies evaluated per forward pass (the last pass may be smaller).
    device: where to sample and evaluate; default the device of ``base``'s parameters.
    input_shape: the shape of one input; default ``base.input_shape`` if the model has one.
        When known, inputs of any other shape are rejected with a clear message.
    """

    def __init__(
        self,
        base: nn.Module,
        num_classes: int,
        sigma: float,
        *,
        batch_size: int = 1000,
        device: torch.device | str | None = None,
        input_shape: Sequence[int] | None = None,
    ) -> None:
        if not isinstance(base, nn.Module):
            raise ValueError(f"base must be a torch.nn.Module, got {type(base).__name__}")
        if not isinstance(num_classes, int | np.integer) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if not (isinstance(sigma, int | float) and math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be a positive finite noise level, got {sigma!r}")
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.base = base
        self.num_classes = int(num_classes)
        self.sigma = float(sigma)
        self.batch_size = int(batch_size)
        self.device = torch.device(device) if device is not None else _model_device(base)
        shape = input_shape if input_shape is not None else getattr(base, "input_shape", None)
        self.input_shape: tuple[int, ...] | None = tuple(shape) if shape is not None else None

    # ------------------------------------------------------------------ input handling

    def _prepare(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """One input as a [1, *input_shape] float tensor on the device, validated."""
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a torch.Tensor or numpy array, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"x must be a floating-point tensor (inputs in [0,1]), got {x.dtype}")
        if self.input_shape is not None:
            if tuple(x.shape) == self.input_shape:
                x = x.unsqueeze(0)
            elif tuple(x.shape) != (1, *self.input_shape):
                raise ValueError(
                    f"x must be one input of shape {self.input_shape} "
                    f"(or (1, *{self.input_shape})), got shape {tuple(x.shape)}"
                )
        else:
            x = x.unsqueeze(0)
        if not torch.isfinite(x).all():
            raise ValueError("x contains NaN or Inf")
        return x.to(self.device)

    def _check_generator(self, generator: torch.Generator | None) -> None:
        if generator is not None and torch.device(generator.device).type != self.device.type:
            raise ValueError(
                f"generator is on {generator.device} but sampling happens on {self.device}; "
                f"create it with torch.Generator(device={str(self.device)!r})"
            )

    @staticmethod
    def _check_count(name: str, value: int) -> int:
        if not isinstance(value, int | np.integer) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
        return int(value)

    # ------------------------------------------------------------------ SAMPLE UNDER NOISE

    def _counts_tensor(
        self, x: torch.Tensor, n: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        # Appendix C, SAMPLE UNDER NOISE: counts of f(x + ε_i), i = 1..n, in batches of at
        # most batch_size; counted on the device so nothing per sample crosses to the host.
        counts = torch.zeros(self.num_classes, dtype=torch.int64, device=self.device)
        noise = torch.empty(
            (min(self.batch_size, n), *x.shape[1:]), dtype=x.dtype, device=self.device
        )
        remaining = n
        while remaining > 0:
            b = min(self.batch_size, remaining)
            batch = noise[:b]
            torch.randn(batch.shape, generator=generator, out=batch)
            batch.mul_(self.sigma).add_(x)
            logits = self.base(batch)
            if logits.dim() != 2 or logits.shape != (b, self.num_classes):
                raise ValueError(
                    f"the base model must return logits of shape [batch, {self.num_classes}], "
                    f"got {tuple(logits.shape)}"
                )
            counts += torch.bincount(logits.argmax(dim=1), minlength=self.num_classes)
            remaining -= b
        return counts

    def counts(
        self, x: torch.Tensor | np.ndarray, n: int, *, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """Class counts of f(x + ε) over n noise draws (int64 array of length num_classes)."""
        n = self._check_count("n", n)
        x = self._prepare(x)
        self._check_generator(generator)
        with evaluating(self.base):
            counts = self._counts_tensor(x, n, generator)
        return counts.cpu().numpy()

    # ------------------------------------------------------------------ PREDICT / CERTIFY

    def predict(
        self,
        x: torch.Tensor | np.ndarray,
        n: int,
        alpha: float,
        *,
        generator: torch.Generator | None = None,
    ) -> int:
        """PREDICT (§3.2; Proposition 1): return the top class ĉA when the two-sided binomial
        test of nA ~ Binomial(nA + nB, ½) rejects at level α, else ABSTAIN. With probability at
        least 1 − α the answer is g(x) or ABSTAIN."""
        _check_alpha(alpha)
        counts = self.counts(x, n, generator=generator)
        top2 = np.argsort(counts, kind="stable")[::-1][:2]
        n_a, n_b = int(counts[top2[0]]), int(counts[top2[1]])
        if stats.binom_pvalue(n_a, n_a + n_b, 0.5) > alpha:
            return ABSTAIN
        return int(top2[0])

    def certify(
        self,
        x: torch.Tensor | np.ndarray,
        n0: int,
        n: int,
        alpha: float,
        *,
        generator: torch.Generator | None = None,
    ) -> Certificate:
        """CERTIFY (§3.2; Proposition 2). n0 selection draws choose ĉA; n fresh draws count nA;
        pA_lower is the one-sided (1 − α) Clopper–Pearson bound; abstain when pA_lower < ½,
        else return ĉA with radius σ·Φ⁻¹(pA_lower)."""
        n0 = self._check_count("n0", n0)
        n = self._check_count("n", n)
        _check_alpha(alpha)
        counts_selection = self.counts(x, n0, generator=generator)
        c_hat = int(np.argmax(counts_selection))
        counts_estimation = self.counts(x, n, generator=generator)
        n_a = int(counts_estimation[c_hat])
        p_a_lower = float(stats.lower_confidence_bound(n_a, n, alpha))
        if p_a_lower < 0.5:
            prediction, radius = ABSTAIN, 0.0
        else:
            prediction, radius = c_hat, float(self.sigma * norm.ppf(p_a_lower))
        return Certificate(
            prediction=prediction,
            radius=radius,
            n_a=n_a,
            n=n,
            p_a_lower=p_a_lower,
            counts_selection=counts_selection,
            counts_estimation=counts_estimation,
        )


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, int | float) and 0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
