"""The smoothed classifier g(x) = argmax_c P(f(x + ε) = c), ε ~ N(0, σ²I), with PREDICT and
CERTIFY (Cohen, Rosenfeld, Kolter 2019, §3.2 and Appendix C).

The module reads as the algorithm, top to bottom:

1. :class:`Certificate`, what CERTIFY returns.
2. :class:`SmoothedClassifier`, whose methods follow the paper's pseudocode:
   :meth:`~SmoothedClassifier.counts` (SAMPLE UNDER NOISE: the class counts of f(x + ε) over
   n draws), then :meth:`~SmoothedClassifier.predict` (PREDICT: a binomial test on the counts)
   and :meth:`~SmoothedClassifier.certify` (CERTIFY: a selection stage, an estimation stage
   and a Clopper–Pearson bound turned into a radius). The statistics themselves, and the
   ``ABSTAIN`` label they return, live in :mod:`smoothcert.certify.stats`. Input checks, the
   execution settings and the batch size come after.
The helpers live elsewhere: the noise model (input preparation, draws, noisy inputs, the bound
on pA and the radius) in :mod:`smoothcert.certify.noise_models`; eval/inference mode, the
model's dtype and device in :mod:`smoothcert._util.torch_helpers`.

Noise is added in the caller's input space ([0,1] pixels for images); normalization belongs
inside the base model, so σ and certified radii are L2 distances in input units.

Speed (docs/performance.md): counts are tallied on the device; noise is drawn in fixed chunks
of samples so the counts for a seed do not depend on the batch size; the base classifier can
run under bf16 autocast and in channels-last layout; the batch size can be tuned to the
throughput plateau (:func:`smoothcert.certify.tuning.tune_batch_size`). With precision="bf16" the
certificate holds for the bf16 classifier.

The radius uses the σ that scaled the noise (:attr:`SmoothedClassifier.noise_sigma`: σ rounded
to float32 for float32 models, as torch rounds the ``alpha`` of x + σε). With ``sound=True``
inputs, noise and noisy inputs live on the 8-bit grid (:mod:`smoothcert.certify.sound`) and the
certificate holds for the classifier as computed in floating point.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from smoothcert._util.checks import (
    ParameterError,
    finite_real,
    integer_at_least,
    one_of,
    optional_input_shape,
    optional_positive_int,
    positive_int,
    probability,
)
from smoothcert._util.hardware import choose_precision
from smoothcert._util.torch_helpers import evaluating, has_conv2d, model_device, model_dtype
from smoothcert.certify import stats
from smoothcert.certify.compiled import CompiledForward
from smoothcert.certify.denoised import DenoisedClassifier, check_denoiser_output
from smoothcert.certify.noise_models import LatticeGaussianNoise, NoiseModel, noise_model
from smoothcert.certify.stats import ABSTAIN
from smoothcert.certify.tuning import tune_batch_size


@dataclass(frozen=True)
class Certificate:
    """Outcome of CERTIFY on one input.

    With probability at least 1 − α over the sampling, if ``prediction`` is not ABSTAIN then
    g(x + δ) = prediction for every ‖δ‖₂ < ``radius`` (Theorem 1 and Proposition 2).

    Attributes
    ----------
    prediction : int
        The certified class ĉA, or ``ABSTAIN`` (-1).
    radius : float
        The certified L2 radius σ·Φ⁻¹(pA_lower) in input units (0.0 when abstaining).
    n_a : int
        Estimation draws on which the base classifier returned ĉA.
    n : int
        Estimation draws.
    p_a_lower : float
        One-sided (1 − α) Clopper–Pearson lower bound on P(f(x + ε) = ĉA).
    counts_selection : numpy.ndarray
        Class counts of the n0 selection draws.
    counts_estimation : numpy.ndarray
        Class counts of the n estimation draws.
    """

    prediction: int
    radius: float
    n_a: int
    n: int
    p_a_lower: float
    counts_selection: np.ndarray = field(repr=False)
    counts_estimation: np.ndarray = field(repr=False)
    sigma: float | None = field(default=None, kw_only=True)
    """The σ of the radius: the σ that scaled the noise (None where not recorded)."""

    @property
    def abstained(self) -> bool:
        """Whether the prediction is ``ABSTAIN``."""
        return self.prediction == ABSTAIN


PRECISIONS = ("fp32", "bf16")
"""Accepted values of ``precision``: fp32, or bf16 autocast on the model's device."""


class SmoothedClassifier:
    """Randomized smoothing of any base classifier (Cohen et al. 2019, §3).

    The smoothed classifier is g(x) = argmax_c P(f(x + ε) = c), ε ~ N(0, σ²I), where the base
    classifier f is ``base``: a module mapping a batch [B, *input_shape] to logits
    [B, num_classes] (f's prediction is their argmax).

    Parameters
    ----------
    base : torch.nn.Module
        The base classifier f.
    num_classes : int
        Number of classes (at least 2).
    sigma : float
        Noise level σ > 0, in input units ([0, 1] pixels).
    batch_size : int or None, default 1000
        Noisy copies evaluated per forward pass (the last pass may be smaller). None chooses
        it on first use by timing the base model at powers of two (the smallest within 5% of
        the best throughput), cached per instance and input shape.
    device : torch.device or str, optional
        Where to sample and evaluate; default the device of ``base``'s parameters.
    input_shape : sequence of int, optional
        The shape of one input; default ``base.input_shape`` if the model has one. When
        known, inputs of any other shape are rejected with a clear message.
    precision : {"fp32", "bf16", "auto"}, default "fp32"
        "bf16" runs the base model under bf16 autocast on its device. The smoothed classifier
        (and any certificate) is then that of the bf16 base classifier. "auto" is bf16 where
        the device computes it natively and fp32 elsewhere
        (:func:`smoothcert._util.hardware.choose_precision`); the attribute ``precision`` holds the
        choice.
    channels_last : bool or None, default None
        Feed image batches [B, C, H, W] in channels-last layout (and convert the base model's
        4-D parameters to it, in place: values are unchanged). None means where it helps:
        models with Conv2d layers, on CPU or with bf16.
    compile : bool, default False
        Run the base model compiled by ``torch.compile`` (:mod:`smoothcert.certify.compiled`):
        faster for long runs after a compilation of seconds to a minute; the smoothed
        classifier is then that of the compiled model (its logits differ in the last bits).
    sound : bool, default False
        Certify the classifier as computed in floating point (:mod:`smoothcert.certify.sound`):
        inputs must be on the 8-bit grid (every value k/255; a value within 10⁻³/255 of a
        level is snapped to it silently, so certificates are about the nearest 8-bit image),
        the noise is the rounded Gaussian on that grid drawn from random integers, the base
        model sees (k + J)/255 as a fixed function of the integer k + J, and CERTIFY's pA
        lower bound is lowered by the noise table's total-variation bound dη (below 10⁻¹² for
        CIFAR-10). PREDICT is not corrected: its failure probability against the
        rounded-Gaussian smoothed classifier is at most α + n·dη (η per draw and coordinate,
        over n draws). Needs a float32 or float64 model.
    denoiser : torch.nn.Module, optional
        Denoised smoothing (Salman et al. 2020, §3): the base classifier becomes f∘D
        (:class:`smoothcert.certify.denoised.DenoisedClassifier`),
        g(x) = argmax_c P(f(D(x + ε)) = c), the noise added before D. D maps a batch
        [B, *input_shape] to the same shape (checked once, on zeros, when the input shape is
        known), e.g.
        :func:`smoothcert.models.create_denoiser` or
        :class:`smoothcert.models.diffusion.OneStepDiffusionDenoiser`; put it on f's device.
        Counts, PREDICT and CERTIFY are unchanged otherwise, and so is the noise for a seed.

    Raises
    ------
    ValueError
        If an argument is out of range; the message names the argument.

    Notes
    -----
    Inputs (tensors or numpy arrays of any floating dtype) are converted to the dtype of the
    base model's floating parameters (float32 when it has none; see ``model_dtype``)
    before any noise is drawn: for images in [0, 1] the rounding of float64 to float32 (about
    6e-8) is far below any σ. The noise is drawn in that dtype and, for a seed, depends only
    on the generator, the input shape and the model's dtype, not on the batch size,
    precision, layout or the input's own dtype: the same seed and the same input values give
    bit-identical counts.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> f = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> g = SmoothedClassifier(f, num_classes=3, sigma=0.25, batch_size=100)
    >>> counts = g.counts(torch.zeros(1, 2, 2), n=500, generator=torch.Generator().manual_seed(0))
    >>> int(counts.sum())
    500
    """

    def __init__(
        self,
        base: nn.Module,
        num_classes: int,
        sigma: float,
        *,
        batch_size: int | None = 1000,
        device: torch.device | str | None = None,
        input_shape: Sequence[int] | None = None,
        precision: str = "fp32",
        channels_last: bool | None = None,
        compile: bool = False,
        sound: bool = False,
        denoiser: nn.Module | None = None,
    ) -> None:
        if not isinstance(base, nn.Module):
            raise ParameterError("base", f"must be a torch.nn.Module, got {type(base).__name__}")
        self.denoiser = denoiser
        if denoiser is not None:
            base = DenoisedClassifier(denoiser, base)
        num_classes = integer_at_least("num_classes", num_classes, 2)
        sigma = finite_real("sigma", sigma, positive=True)
        batch_size = optional_positive_int("batch_size", batch_size)
        precision = one_of("precision", precision, (*PRECISIONS, "auto"))
        if channels_last is not None and not isinstance(channels_last, bool):
            raise ParameterError(
                "channels_last", f"must be True, False or None, got {channels_last!r}"
            )
        if not isinstance(sound, bool):
            raise ParameterError("sound", f"must be True or False, got {sound!r}")
        if not isinstance(compile, bool):
            raise ParameterError("compile", f"must be True or False, got {compile!r}")
        self.base = base
        self.num_classes = num_classes
        self.sigma = sigma
        self.device = torch.device(device) if device is not None else model_device(base)
        shape = input_shape if input_shape is not None else getattr(base, "input_shape", None)
        self.input_shape: tuple[int, ...] | None = optional_input_shape(shape)
        if denoiser is not None and self.input_shape is not None:
            check_denoiser_output(denoiser, self.input_shape, self.device, model_dtype(denoiser))
        if precision == "auto":
            precision = choose_precision(self.device).precision
        self.precision = precision
        # Gaussian, or the lattice noise of sound mode: the only place the two differ.
        self.noise: NoiseModel = noise_model(
            sigma, sound=sound, dtype=model_dtype(base), device=self.device
        )
        if channels_last is None:
            channels_last = has_conv2d(base) and (self.device.type == "cpu" or precision == "bf16")
        self.channels_last: bool = channels_last
        self.compile = compile
        self._compiled: CompiledForward | None = None
        self.auto_batch_size: bool = batch_size is None
        self._fixed_batch_size = batch_size
        self._tuned: dict[tuple[tuple[int, ...], torch.dtype], int] = {}
        self.batch_size_timings: dict[int, float] = {}  # batch size -> samples/s when tuned

    @property
    def sound(self) -> bool:
        """Whether the classifier is in sound mode (built with ``sound=True``)."""
        return self.noise.sound

    @property
    def noise_sigma(self) -> float:
        """The σ that scales the noise, hence the σ of every radius.

        σ itself in sound mode (the noise table is built for it) and for float64 models, else
        σ rounded to float32 (torch computes x + σε with σ as a float32 for float32, bf16 and
        float16 tensors)."""
        return self.noise.sigma_for(model_dtype(self.base))

    @property
    def batch_size(self) -> int | None:
        """The batch size in use: the fixed one, else the last automatically chosen one.

        None before the first automatic choice."""
        if self._fixed_batch_size is not None:
            return self._fixed_batch_size
        if self._tuned:
            return next(reversed(self._tuned.values()))
        return None

    # ------------------------------------------------------------------ SAMPLE UNDER NOISE

    def counts(
        self, x: torch.Tensor | np.ndarray, n: int, *, generator: torch.Generator | None = None
    ) -> np.ndarray:
        """Count the base classifier's answers f(x + ε) over n noise draws.

        SAMPLE UNDER NOISE of Cohen et al., Appendix C.

        Parameters
        ----------
        x : torch.Tensor or numpy.ndarray
            One input of shape ``input_shape``, in [0, 1] pixel units.
        n : int
            Number of noise draws (at least 1).
        generator : torch.Generator, optional
            Source of the noise; on the classifier's device. The same seed gives the same
            counts, whatever the batch size.

        Returns
        -------
        numpy.ndarray
            int64 counts of length ``num_classes``, summing to n.

        Raises
        ------
        ValueError
            If ``x`` has the wrong shape or non-finite values, or ``n`` is not a positive
            integer.
        """
        n = positive_int("n", n)
        return self._sample(self._prepare(x), n, generator)

    def _sample(self, x: torch.Tensor, n: int, generator: torch.Generator | None) -> np.ndarray:
        # counts() of a prepared input.
        self._check_generator(generator)
        self._prepare_model(x)
        with evaluating(self.base):
            counts = self._counts_tensor(x, n, generator)
        return counts.cpu().numpy()

    def _counts_tensor(
        self, x: torch.Tensor, n: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        # Appendix C, SAMPLE UNDER NOISE: counts of f(x + ε_i), i = 1..n, in batches of at
        # most batch_size; counted on the device so nothing per sample crosses to the host.
        batch_size = self._batch_size_for(x)
        counts = torch.zeros(self.num_classes, dtype=torch.int64, device=self.device)
        noise = self.noise.stream(tuple(x.shape[1:]), x.dtype, self.device, generator)
        eps = torch.empty((min(batch_size, n), *x.shape[1:]), dtype=x.dtype, device=self.device)
        inputs = eps
        if self._uses_channels_last(x):
            inputs = torch.empty_like(eps, memory_format=torch.channels_last)
        # argmax silently picks a NaN logit, so NaN/Inf logits would yield confident counts
        # (and certificates) that mean nothing. Track them on the device, with no host sync
        # per batch; the caller syncs once when it reads the counts anyway.
        all_finite = torch.ones((), dtype=torch.bool, device=self.device)
        remaining = n
        forward = self._forward(batch_size)
        with self._autocast():
            while remaining > 0:
                b = min(batch_size, remaining)
                noise.fill(eps[:b])
                batch = inputs[:b]
                self.noise.perturb(x, eps[:b], out=batch)  # x + σε (sound: (k + J)/255)
                logits = self._check_logits(forward(batch), b)
                all_finite &= torch.isfinite(logits).all()
                counts += torch.bincount(logits.argmax(dim=1), minlength=self.num_classes)
                remaining -= b
        if not bool(all_finite):
            raise ValueError(
                "the base model returned NaN or infinite logits for noisy copies of x "
                f"(x + σε, σ = {self.sigma}); counts from such a model are meaningless. Check "
                "the model's weights and normalization constants"
            )
        return counts

    def _check_logits(self, logits: object, b: int) -> torch.Tensor:
        if not isinstance(logits, torch.Tensor):
            raise ValueError(
                f"the base model must return a logits tensor [batch, num_classes] = [batch, "
                f"{self.num_classes}], got {type(logits).__name__}"
            )
        if logits.dim() != 2 or logits.shape != (b, self.num_classes):
            raise ValueError(
                f"the base model must return logits of shape [batch, "
                f"{self.num_classes}], got {tuple(logits.shape)}"
            )
        return logits

    # ------------------------------------------------------------------ PREDICT

    def predict(
        self,
        x: torch.Tensor | np.ndarray,
        n: int,
        alpha: float,
        *,
        generator: torch.Generator | None = None,
    ) -> int:
        """PREDICT (§3.2, Proposition 1): the smoothed classifier's class, or ABSTAIN.

        Returns the top class ĉA of n noise draws when the two-sided binomial test of
        nA ~ Binomial(nA + nB, ½) rejects at level α, else ABSTAIN.

        Parameters
        ----------
        x : torch.Tensor or numpy.ndarray
            One input of shape ``input_shape``, in [0, 1] pixel units.
        n : int
            Number of noise draws.
        alpha : float
            Failure probability, in (0, 1).
        generator : torch.Generator, optional
            Source of the noise.

        Returns
        -------
        int
            A class index, or ``ABSTAIN`` (-1). With probability at least 1 − α it is g(x) or
            ``ABSTAIN``.
        """
        alpha = probability("alpha", alpha)
        return stats.predict_from_counts(self.counts(x, n, generator=generator), alpha)

    # ------------------------------------------------------------------ CERTIFY

    def certify(
        self,
        x: torch.Tensor | np.ndarray,
        n0: int,
        n: int,
        alpha: float,
        *,
        generator: torch.Generator | None = None,
    ) -> Certificate:
        """CERTIFY (§3.2, Proposition 2): a class and an L2 radius within which it is constant.

        n0 selection draws choose ĉA; n fresh draws count nA; pA_lower is the one-sided
        (1 − α) Clopper–Pearson bound; abstain when pA_lower < ½, else return ĉA with radius
        σ·Φ⁻¹(pA_lower).

        Parameters
        ----------
        x : torch.Tensor or numpy.ndarray
            One input of shape ``input_shape``, in [0, 1] pixel units.
        n0 : int
            Selection draws (the paper uses 100).
        n : int
            Estimation draws (the paper uses 100,000).
        alpha : float
            Failure probability, in (0, 1).
        generator : torch.Generator, optional
            Source of the noise for both stages.

        Returns
        -------
        Certificate
            With probability at least 1 − α, if ``prediction`` is not ``ABSTAIN`` then
            g(x + δ) = prediction for every ‖δ‖₂ < ``radius``.

        Examples
        --------
        >>> import torch
        >>> from torch import nn
        >>> f = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
        >>> with torch.no_grad():
        ...     _ = f[1].weight.zero_(), f[1].bias.copy_(torch.tensor([1.0, 0.0]))
        >>> g = SmoothedClassifier(f, num_classes=2, sigma=0.5)
        >>> cert = g.certify(torch.zeros(1, 2, 2), n0=100, n=1000, alpha=0.001)
        >>> cert.prediction, round(cert.radius / 0.5, 4)  # every draw agrees: σ·Φ⁻¹(α^(1/n))
        (0, 2.4633)
        """
        n0 = positive_int("n0", n0)
        n = positive_int("n", n)
        alpha = probability("alpha", alpha)
        x = self._prepare(x)
        counts_selection = self._sample(x, n0, generator)
        c_hat = int(np.argmax(counts_selection))
        counts_estimation = self._sample(x, n, generator)
        n_a = int(counts_estimation[c_hat])
        p_a_lower = self.noise.lower_bound(n_a, n, alpha, dim=x[0].numel())
        if p_a_lower < 0.5:
            prediction, radius = ABSTAIN, 0.0
        else:
            prediction, radius = c_hat, self.noise.radius(p_a_lower, x.dtype)
        return Certificate(
            prediction=prediction,
            radius=radius,
            n_a=n_a,
            n=n,
            p_a_lower=p_a_lower,
            counts_selection=counts_selection,
            counts_estimation=counts_estimation,
            sigma=self.noise.sigma_for(x.dtype),
        )

    def sound_lower_bound(self, p_a_lower: float, dim: int) -> float:
        """A lower bound on pA under the rounded Gaussian from one under the drawn noise.

        Sound mode only (a classifier built with ``sound=True``): the bound minus ``dim``
        times the noise table's total-variation bound per coordinate
        (:meth:`smoothcert.certify.noise_models.LatticeGaussianNoise.correct`).

        Parameters
        ----------
        p_a_lower : float
            A lower confidence bound on pA under the drawn (lattice) noise.
        dim : int
            The number of values of one input (C·H·W).

        Returns
        -------
        float
            The lower bound on pA under the rounded Gaussian, clipped below at 0.

        Raises
        ------
        ValueError
            If the classifier is not in sound mode.
        """
        if not isinstance(self.noise, LatticeGaussianNoise):
            raise ValueError("sound_lower_bound needs a sound classifier (sound=True)")
        return self.noise.correct(p_a_lower, dim)

    # ------------------------------------------------------------------ input handling

    def _prepare(self, x: torch.Tensor | np.ndarray) -> torch.Tensor:
        """One input as a [1, *input_shape] tensor on the device in the model's dtype
        (:func:`model_dtype`), validated; the noise model makes it the point the noise is
        added to (in sound mode its grid levels k = 255·x)."""
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
        return self.noise.prepare(x, model_dtype(self.base), self.device)

    def _check_generator(self, generator: torch.Generator | None) -> None:
        if generator is not None and torch.device(generator.device).type != self.device.type:
            raise ValueError(
                f"generator is on {generator.device} but sampling happens on {self.device}; "
                f"create it with torch.Generator(device={str(self.device)!r})"
            )

    # ------------------------------------------------------------------ execution settings

    def _uses_channels_last(self, x: torch.Tensor) -> bool:
        return self.channels_last and x.dim() == 4

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _forward(self, batch_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
        # The base model, or (compile=True) its compiled form for batches of batch_size,
        # compiled again only if the batch size changes (a tuned size is fixed per shape).
        if not self.compile:
            return self.base
        if self._compiled is None or self._compiled.batch_size != batch_size:
            self._compiled = CompiledForward(self.base, batch_size)
        return self._compiled

    def _prepare_model(self, x: torch.Tensor) -> None:
        # Channels-last weights with channels-last inputs avoid a layout reorder per call.
        if self._uses_channels_last(x):
            self.base.to(memory_format=torch.channels_last)

    # ------------------------------------------------------------------ batch size

    def resolve_batch_size(self, x: torch.Tensor | np.ndarray | None = None) -> int:
        """The batch size used for inputs like ``x``.

        The fixed ``batch_size`` the instance was built with; with ``batch_size=None``, the
        size tuned by timing the base model, once per input shape and dtype (only speed
        depends on it: the counts do not).

        Parameters
        ----------
        x : torch.Tensor or numpy.ndarray, optional
            An input; default zeros of ``input_shape``.

        Returns
        -------
        int
            Noisy copies per forward pass.

        Raises
        ------
        ValueError
            If ``x`` is None and the input shape is unknown, or ``x`` is not a valid input.
        """
        if self._fixed_batch_size is not None:
            return self._fixed_batch_size
        if x is None:
            if self.input_shape is None:
                raise ValueError("x is needed to choose a batch size when input_shape is unknown")
            x = torch.zeros(self.input_shape)
        x = self._prepare(x)
        self._prepare_model(x)
        with evaluating(self.base):
            return self._batch_size_for(x)

    def _batch_size_for(self, x: torch.Tensor) -> int:
        # x is prepared ([1, *shape]); the caller holds eval + inference mode.
        if self._fixed_batch_size is not None:
            return self._fixed_batch_size
        key = (tuple(x.shape[1:]), x.dtype)
        if key not in self._tuned:
            self._tuned[key] = self._tune_batch_size(x)
        return self._tuned[key]

    def _tune_batch_size(self, x: torch.Tensor) -> int:
        """Time the base model on noisy copies of x
        (:func:`smoothcert.certify.tuning.tune_batch_size`).
        Only speed depends on the choice: the noise, hence the counts, do not depend on the
        batch size."""
        generator = torch.Generator(device=self.device).manual_seed(0)  # never the caller's
        center = self.noise.input_point(x)

        def noisy_batch(b: int) -> torch.Tensor:
            batch = torch.randn(
                (b, *x.shape[1:]), generator=generator, dtype=x.dtype, device=self.device
            )
            batch.mul_(self.sigma).add_(center)
            if self._uses_channels_last(batch):
                batch = batch.contiguous(memory_format=torch.channels_last)
            return batch

        with self._autocast():
            chosen, self.batch_size_timings = tune_batch_size(
                self.base, noisy_batch, x[0].numel() * x.element_size(), self.device
            )
        return chosen
