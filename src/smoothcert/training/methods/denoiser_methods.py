"""The denoiser objectives as training methods of the one training loop.

:func:`smoothcert.training.train` trains a denoiser instead of a classifier when
``config.method`` names one of these (``"denoiser-mse"``, ``"denoiser-stability"``,
``"denoiser-diffusion"``; the objectives ``mse``, ``stability``, ``diffusion`` of
`smoothcert train-denoiser --objective`, prefixed so that they never clash with a classifier
method: the classifier method ``stability`` is Li et al.'s stability training). A
:class:`DenoiserMethod` is a :class:`~smoothcert.training.method.Method` (a per-batch loss
with hyperparameters) that also tells the loop how to build the model
(:meth:`~DenoiserMethod.build_model`: a registered denoiser, optionally started from an
``init`` checkpoint), how to evaluate an epoch (:meth:`~DenoiserMethod.evaluate_split`: test
MSE at σ and, with a classifier, the accuracy of f∘D on noisy inputs), which validation
number selects ``best.safetensors`` and what its checkpoints record
(:meth:`~DenoiserMethod.checkpoint_metadata`: :func:`smoothcert.models.denoiser_metadata`).

- ``mse``: Salman et al. 2020, Eq. 4
  (:func:`~smoothcert.training.methods.denoiser_objectives.mse_loss`).
- ``stability``: their Eq. 5 through a frozen classifier — the target f (full access) or,
  with ``surrogates``, the average over surrogate classifiers (their query-access setting)
  (:func:`~smoothcert.training.methods.denoiser_objectives.stability_loss`).
- ``diffusion``: Ho et al. 2020, Eq. 14, for the ε-network of one-step diffusion denoising
  (:func:`~smoothcert.training.methods.denoiser_objectives.diffusion_loss`).

These methods have their own registry (:data:`DENOISER_METHODS`): ``smoothcert train`` and
:func:`smoothcert.training.list_methods` keep listing the classifier methods only.

References
----------
.. [1] H. Salman, M. Sun, G. Yang, A. Kapoor, J. Z. Kolter, "Denoised Smoothing: A Provable
   Defense for Pretrained Classifiers", NeurIPS 2020.
.. [2] J. Ho, A. Jain, P. Abbeel, "Denoising Diffusion Probabilistic Models", NeurIPS 2020.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from smoothcert._util.checks import ParameterError, boolean, finite_real, known_names
from smoothcert.training.method import BatchContext, Method, MethodOutput
from smoothcert.training.methods.denoiser_objectives import (
    diffusion_loss,
    is_denoiser_method,
    mse_loss,
    stability_loss,
)

if TYPE_CHECKING:
    from smoothcert.training.config import TrainConfig

__all__ = [
    "DENOISER_METHODS",
    "OBJECTIVES",
    "DenoiserMethod",
    "get_denoiser_method",
    "is_denoiser_method",
]


@dataclass
class DenoiserMethod(Method):
    """Base of the denoiser objectives: hyperparameters shared by all three.

    The frozen classifiers are loaded by :meth:`build_model` (on the CPU, for the data's
    input shape; moved to the batch's device on first use), which the loop calls before it
    writes anything, so that a bad ``classifier``, ``surrogates`` or ``init`` leaves nothing
    behind. Their identities (format and file sha256) are then recorded in ``sources``, part
    of the run's identity: a resume with another file is refused.
    """

    name: ClassVar[str] = ""  # "denoiser-" + objective
    objective: ClassVar[str] = ""  # the --objective of train-denoiser
    kind: ClassVar[str] = "image"  # the denoiser kind the objective trains

    # The metadata is what `smoothcert train-denoiser` makes each field's flag from (its help
    # speaks of the command's flags, as the user reads it there).
    sigma: float | None = field(
        default=None,
        metadata={
            "help": "std of the Gaussian noise, L2 pixel units on [0,1] images: the noise of mse "
            "and stability (required there; certify with the same --sigma); for diffusion only "
            "the σ of the per-epoch one-step denoising evaluation",
            "metavar": "STD",
        },
    )
    classifier: str | None = field(
        default=None,
        metadata={
            "help": "the frozen classifier f (any source --model of certify takes: checkpoint, "
            "zoo:NAME, .onnx, .pt2, TorchScript, python:mod:factory): stability trains through "
            "it; with --surrogate or another objective it is only evaluated (accuracy of f∘D "
            "under noise)",
            "metavar": "MODEL",
        },
    )
    surrogates: list[str] = field(
        default_factory=list,
        metadata={
            "help": "repeatable: a PyTorch classifier to train through instead of --classifier "
            "(query access to f); the stability loss is averaged over the surrogates",
            "metavar": "MODEL",
        },
    )
    init: str | None = field(
        default=None,
        metadata={
            "help": "start from this denoiser checkpoint (e.g. mse-trained, then stability: "
            "Salman et al.'s recommended route); same --arch and options",
            "metavar": "CKPT",
        },
    )
    arch_options: dict[str, int] = field(default_factory=dict)
    trust_model_code: bool = field(
        default=False,
        metadata={
            "help": "allow .pt2 and TorchScript classifiers (their loaders run code in the file)"
        },
    )
    # Filled by __post_init__ (a given value is replaced): the sha256 of every file above.
    sources: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.sigma is not None:
            self.sigma = finite_real("sigma", self.sigma, positive=True)
        boolean("trust_model_code", self.trust_model_code)
        self.surrogates = [str(s) for s in self.surrogates]
        self._frozen_target: nn.Module | None = None
        self._frozen_surrogates: list[nn.Module] = []
        self._built_config: dict[str, Any] | None = None
        self._moved = False
        self.sources = {}  # filled by build_model

    def _load_classifiers(self, shape: tuple[int, ...]) -> None:
        """Load the target and the surrogates for inputs of ``shape``; record their
        identities (and the ``init`` file's sha256) in ``sources``."""
        from smoothcert._util.hashing import file_sha256
        from smoothcert.models.checkpoint import resolve_checkpoint
        from smoothcert.models.denoiser_sources import load_any_classifier

        def load(parameter: str, spec: str) -> Any:
            try:
                return load_any_classifier(
                    spec, input_shape=shape, trust_code=bool(self.trust_model_code)
                )
            except ParameterError:
                raise
            except ValueError as exc:  # named by the flag that gave the model
                raise ParameterError(parameter, str(exc)) from None

        sources: dict[str, Any] = {}
        if self.classifier is not None:
            loaded = load("classifier", self.classifier)
            self._frozen_target = loaded.module
            sources["classifier"] = loaded.identity
        self._frozen_surrogates = []
        for spec in self.surrogates:
            loaded = load("surrogates", spec)
            self._frozen_surrogates.append(loaded.module)
            sources.setdefault("surrogates", []).append(loaded.identity)
        if self.init is not None:
            sources["init"] = {"sha256": file_sha256(resolve_checkpoint(self.init))}
        self.sources = sources
        self._check_frozen(shape)

    def _check_frozen(self, shape: tuple[int, ...]) -> None:
        """What an objective requires of the classifiers it loaded (nothing by default)."""

    # ------------------------------------------------------------------ the loop's hooks

    @property
    def noise_sigma(self) -> float | None:
        """σ of the objective (and of the per-epoch evaluation)."""
        return self.sigma

    def build_model(self, config: TrainConfig, info: Any) -> nn.Module:
        """The untrained denoiser ``config.arch`` for the dataset's inputs, or the ``init``
        checkpoint's weights; checked against every classifier's input shape.

        Parameters
        ----------
        config : TrainConfig
            The run (its ``arch``).
        info : DatasetInfo
            The training data's description (``input_shape``).

        Returns
        -------
        torch.nn.Module
            From :func:`smoothcert.models.create_denoiser`.

        Raises
        ------
        ParameterError
            Naming ``arch`` (not a denoiser of this objective's kind), ``init`` (not a
            denoiser checkpoint, or another architecture) or ``classifier`` (its inputs are
            not the denoiser's images).
        """
        from smoothcert.models.denoisers import create_denoiser, denoiser_spec

        spec = denoiser_spec(config.arch)
        if spec.kind != self.kind:
            raise ParameterError(
                "arch",
                f"{config.arch} is a denoiser of kind {spec.kind}; objective {self.objective} "
                f"trains {self.kind} denoisers",
            )
        shape = tuple(info.input_shape)
        model = create_denoiser(config.arch, shape, **self.arch_options)
        self._load_classifiers(shape)
        if self.init is not None:
            self._load_init(model)
        self._built_config = model.denoiser_config
        return model

    def _load_init(self, model: nn.Module) -> None:
        from smoothcert.models.checkpoint import load_checkpoint

        start, meta = load_checkpoint(self.init)
        if meta.get("task") != "denoiser":
            raise ParameterError(
                "init",
                f"{self.init} is a {meta.get('task') or 'classifier'} checkpoint, not a denoiser",
            )
        mine, theirs = model.denoiser_config, start.denoiser_config
        keys = ("arch", "arch_options", "input_shape", "mean", "std")
        differ = [k for k in keys if mine[k] != theirs[k]]
        if differ:
            k = differ[0]
            raise ParameterError(
                "init",
                f"{self.init} is a denoiser with {k} {theirs[k]!r}, this run's has {mine[k]!r}",
            )
        model.load_state_dict(start.state_dict())

    def _frozen(self, device: torch.device) -> None:
        """Move the frozen classifiers to the batch's device, once."""
        if self._moved:
            return
        for m in [self._frozen_target, *self._frozen_surrogates]:
            if m is not None and next(m.parameters(), None) is not None:
                m.to(device)
        self._moved = True

    def validation_score(self, metrics: dict[str, Any]) -> float:
        """The number ``best.safetensors`` maximizes: the accuracy of f∘D under noise on the
        validation split with a classifier, else minus the validation MSE."""
        if "val_acc_noise" in metrics:
            return float(metrics["val_acc_noise"])
        return -float(metrics["val_mse"])

    def checkpoint_metadata(
        self, config: TrainConfig, train_set: Any, epoch: int, metrics: dict[str, Any]
    ) -> dict[str, Any]:
        """The metadata of a checkpoint: :func:`smoothcert.models.denoiser_metadata` plus the
        run's method, hyperparameters, epoch, metrics and identity.

        Returns
        -------
        dict
        """
        from smoothcert import __version__
        from smoothcert.models.denoisers import denoiser_metadata

        extra = {
            "dataset_label": train_set.info.name,
            "data_root": config.data_root,
            "data_options": config.data_options,
            "method": self.name,
            "hyperparameters": self.hyperparameters(),
            "precision": config.precision,
            "channels_last": config.channels_last,
            "epoch": epoch,
            "metrics": metrics,
            "seed": config.seed,
            "training": config.identity(),
            "smoothcert_version": __version__,
        }
        return denoiser_metadata(
            # What denoiser_metadata reads of the model: the config build_model recorded.
            SimpleNamespace(denoiser_config=self._built_config),  # type: ignore[arg-type]
            dataset=config.dataset,
            sigma=self._metadata_sigma(),
            schedule=self._metadata_schedule(),
            **extra,
        )

    def _metadata_sigma(self) -> float | None:
        return self.sigma

    def _metadata_schedule(self) -> dict[str, Any] | None:
        return None

    def _as_image_denoiser(self, model: nn.Module) -> nn.Module:
        """D of [0, 1] images, as the evaluation calls it."""
        return model

    @torch.no_grad()
    def evaluate_split(
        self,
        model: nn.Module,
        dataset: Any,
        name: str,
        eval_sigma: float | None,
        config: TrainConfig,
        epoch: int,
        stream: int,
        device: torch.device,
        ranks: Any = None,
    ) -> dict[str, Any]:
        """``{name}_mse``, the mean of (D(x + δ) − x)² per pixel, δ ~ N(0, σ²I) at
        ``eval_sigma`` (one draw per example, seeded per epoch and split), and with a
        classifier f ``{name}_acc_noise``, the accuracy of f(D(x + δ)) on those inputs (the
        base classifier of denoised smoothing, Salman et al. §3); under DDP each rank takes
        every world-th example and the sums are added.

        Returns
        -------
        dict
            Empty without ``eval_sigma``.
        """
        from smoothcert._util.seeding import derived_seed, rank_seed
        from smoothcert.training import ddp

        if not eval_sigma:
            return {}
        distributed = ranks is not None and ranks.distributed
        indices = (
            range(ranks.rank, len(dataset), ranks.world) if distributed else range(len(dataset))
        )
        gen = torch.Generator(device=device)
        seed = (
            rank_seed(config.seed, epoch, 0, stream, ranks.rank)
            if distributed
            else derived_seed(config.seed, epoch, stream)
        )
        gen.manual_seed(seed)
        denoise = self._as_image_denoiser(model)
        was_training = model.training
        model.eval()
        self._frozen(device)
        squared, pixels, correct = 0.0, 0, 0
        target = self._frozen_target
        for start in range(0, len(indices), config.eval_batch_size):
            x, y = dataset.batch(indices[start : start + config.eval_batch_size])
            x, y = x.to(device), y.to(device)
            noisy = x + eval_sigma * torch.randn(
                x.shape, dtype=x.dtype, device=device, generator=gen
            )
            out = denoise(noisy).float()
            squared += float(((out - x) ** 2).sum(dtype=torch.float64))
            pixels += x.numel()
            if target is not None:
                correct += int((target(out).argmax(1) == y.to(device)).sum())
        model.train(was_training)
        sums = [squared, float(pixels), float(correct)]
        if distributed:
            sums = ddp.all_sum(sums, device)
        metrics: dict[str, Any] = {
            "eval_sigma": eval_sigma,
            f"{name}_mse": sums[0] / max(sums[1], 1),
        }
        if target is not None:
            metrics[f"{name}_acc_noise"] = sums[2] / max(len(dataset), 1)
        return metrics


@dataclass
class MSE(DenoiserMethod):
    """Salman et al. 2020, Eq. 4: min_D E_δ ‖D(x + δ) − x‖², δ ~ N(0, σ²I) (per pixel)."""

    name: ClassVar[str] = "denoiser-mse"
    objective: ClassVar[str] = "mse"

    def __post_init__(self) -> None:
        if self.surrogates:
            raise ParameterError("surrogates", "apply to the stability objective only")
        super().__post_init__()
        if self.sigma is None:
            raise ParameterError("sigma", "is needed by the mse objective (the noise std)")

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        loss = mse_loss(model, x, self.sigma, generator=ctx.generator)  # type: ignore[arg-type]
        return MethodOutput(loss=loss, logits=None, targets=y)  # type: ignore[arg-type]


@dataclass
class Stability(DenoiserMethod):
    """Salman et al. 2020, Eq. 5: min_D E_δ ℓ_CE(f(D(x + δ)), f(x)), through the frozen
    target f (full access) or averaged over the ``surrogates`` (query access)."""

    name: ClassVar[str] = "denoiser-stability"
    objective: ClassVar[str] = "stability"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sigma is None:
            raise ParameterError("sigma", "is needed by the stability objective (the noise std)")
        if self.classifier is None and not self.surrogates:
            raise ParameterError(
                ("classifier", "surrogates"),
                "are both missing: the stability objective needs the frozen classifier f to "
                "train through, or surrogate models for query access",
            )

    def _check_frozen(self, shape: tuple[int, ...]) -> None:
        """Refuse a classifier to train through that gives no gradients (ONNX Runtime)."""
        from smoothcert.models.denoiser_sources import has_gradients

        through = (
            [(self.classifier, self._frozen_target)]
            if not self.surrogates
            else list(zip(self.surrogates, self._frozen_surrogates, strict=True))
        )
        for spec, model in through:
            if not has_gradients(model, shape, torch.device("cpu")):
                # Either way the way out is surrogates: name that parameter.
                what = "the classifier " if not self.surrogates else ""
                raise ParameterError(
                    "surrogates",
                    f"must be PyTorch models: {what}{spec} gives no gradients (it is run by ONNX "
                    "Runtime, outside autograd), so the stability objective cannot train "
                    "through it (query access: the target is then only evaluated)",
                )

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        self._frozen(x.device)
        through = self._frozen_surrogates or [self._frozen_target]
        noise = torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=ctx.generator)
        # One noise draw for every surrogate: the average of Eq. 5 over the surrogates.
        losses = [stability_loss(model, f, x, self.sigma, noise=noise) for f in through]  # type: ignore[arg-type]
        loss = torch.stack(losses).mean()
        return MethodOutput(loss=loss, logits=None, targets=y)  # type: ignore[arg-type]


@dataclass
class Diffusion(DenoiserMethod):
    """Ho et al. 2020, Eq. 14: min_θ E_{t,ε} ‖ε − ε_θ(√ᾱ_t·x₀ + √(1 − ᾱ_t)·ε, t)‖², for a
    noise-prediction network later used by one-step denoising at t* (Carlini et al. 2023).
    ``sigma``, when given, is only the σ of the per-epoch evaluation (one-step denoising MSE
    at t*); the test diffusion loss is reported always."""

    name: ClassVar[str] = "denoiser-diffusion"
    objective: ClassVar[str] = "diffusion"
    kind: ClassVar[str] = "noise-prediction"
    schedule: dict[str, Any] = field(
        default_factory=lambda: {
            "kind": "linear",
            "steps": 1000,
            "beta_start": 1e-4,
            "beta_end": 0.02,
        }
    )

    def __post_init__(self) -> None:
        from smoothcert.models.diffusion import schedule_from_metadata

        if self.surrogates:
            raise ParameterError("surrogates", "apply to the stability objective only")
        super().__post_init__()
        self._schedule = schedule_from_metadata(self.schedule)
        self._eval_sigma = self.sigma
        self.schedule = self._schedule.to_metadata()
        if self.sigma is not None:
            self._schedule.timestep_for(self.sigma)  # σ within the schedule's noise levels

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        loss = diffusion_loss(model, x, self._schedule, generator=ctx.generator)
        return MethodOutput(loss=loss, logits=None, targets=y)  # type: ignore[arg-type]

    def _metadata_sigma(self) -> float | None:
        return None

    def _metadata_schedule(self) -> dict[str, Any] | None:
        return self.schedule

    def _as_image_denoiser(self, model: nn.Module) -> nn.Module:
        from smoothcert.models.diffusion import OneStepDiffusionDenoiser

        return OneStepDiffusionDenoiser(model, self._schedule, self._eval_sigma)

    @torch.no_grad()
    def evaluate_split(
        self, model, dataset, name, eval_sigma, config, epoch, stream, device, ranks=None
    ) -> dict[str, Any]:
        """The diffusion loss on the split (t and ε seeded per epoch and split) and, with
        ``eval_sigma``, the one-step denoising metrics of :meth:`DenoiserMethod.evaluate_split`
        at t* of that σ.

        Returns
        -------
        dict
        """
        from smoothcert._util.seeding import derived_seed
        from smoothcert.training import ddp

        distributed = ranks is not None and ranks.distributed
        indices = (
            range(ranks.rank, len(dataset), ranks.world) if distributed else range(len(dataset))
        )
        gen = torch.Generator(device=device)
        gen.manual_seed(
            derived_seed(config.seed, epoch, stream) + (ranks.rank if distributed else 0)
        )
        was_training = model.training
        model.eval()
        total, count = 0.0, 0
        for start in range(0, len(indices), config.eval_batch_size):
            x, _ = dataset.batch(indices[start : start + config.eval_batch_size])
            x = x.to(device)
            total += float(diffusion_loss(model, x, self._schedule, generator=gen)) * len(x)
            count += len(x)
        model.train(was_training)
        sums = ddp.all_sum([total, float(count)], device) if distributed else [total, count]
        metrics = {f"{name}_diffusion_loss": sums[0] / max(sums[1], 1)}
        if eval_sigma:
            self._eval_sigma = eval_sigma
            metrics |= super().evaluate_split(
                model, dataset, name, eval_sigma, config, epoch, stream, device, ranks
            )
        return metrics

    def validation_score(self, metrics: dict[str, Any]) -> float:
        """Minus the validation diffusion loss, or the one-step metrics when evaluated."""
        if "val_mse" in metrics or "val_acc_noise" in metrics:
            return super().validation_score(metrics)
        return -float(metrics["val_diffusion_loss"])


#: The denoiser objectives by method name ("denoiser-mse", ...).
DENOISER_METHODS: dict[str, type[DenoiserMethod]] = {
    cls.name: cls for cls in (MSE, Stability, Diffusion)
}
#: The objectives of `smoothcert train-denoiser --objective` -> their method names.
OBJECTIVES: dict[str, str] = {cls.objective: cls.name for cls in DENOISER_METHODS.values()}


def get_denoiser_method(name: str, **hyperparameters: Any) -> DenoiserMethod:
    """Build denoiser objective ``name``: loads its classifiers and checks them.

    Parameters
    ----------
    name : str
        ``"denoiser-mse"``, ``"denoiser-stability"`` or ``"denoiser-diffusion"``.
    **hyperparameters
        The fields of :class:`DenoiserMethod` (and ``schedule`` for diffusion); None means
        the default.

    Returns
    -------
    DenoiserMethod

    Raises
    ------
    ValueError
        For an unknown name, or a classifier the objective cannot use (the message names the
        parameter); an unknown hyperparameter is a ParameterError naming it (the message lists
        the objective's).
    """
    if not is_denoiser_method(name):
        raise ValueError(
            f"unknown denoiser objective {name!r}; choose one of {', '.join(DENOISER_METHODS)}"
        )
    cls = DENOISER_METHODS[name]
    known = {f.name for f in dataclasses.fields(cls)}
    known_names(hyperparameters, known, name)
    given = {k: v for k, v in hyperparameters.items() if v is not None}
    if isinstance(given.get("sigma"), float) and not math.isfinite(given["sigma"]):
        raise ParameterError("sigma", f"must be a finite number > 0, got {given['sigma']}")
    return cls(**given)
