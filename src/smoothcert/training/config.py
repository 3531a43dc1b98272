"""What determines a training run (:class:`TrainConfig`, checked by ``validate``; its
``identity`` is what a resumed run must share) and what :func:`~smoothcert.training.train`
returns (:class:`TrainResult`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from smoothcert._util import checks
from smoothcert.data import AUGMENTATIONS
from smoothcert.training.precision import PRECISIONS
from smoothcert.training.resume import (
    DEFAULT_CHECKPOINT_EVERY,
    parse_checkpoint_every,
)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")
# Fields that do not change the result, so a resumed run may differ in them.
NOT_IDENTITY = ("out_dir", "device", "eval_batch_size", "checkpoint_every", "workers")


@dataclass
class TrainConfig:
    """Everything that determines a training run.

    Every field has a default; ``smoothcert train --help`` gives the unit and range of each
    (the CLI flags set these fields). Validated by ``train`` before anything is written.

    Examples
    --------
    >>> config = TrainConfig(dataset="mnist", arch="cnn3", method="gaussian",
    ...                      method_options={"sigma": 0.25}, epochs=5, out_dir="runs/x")
    >>> config.method_options["sigma"], config.batch_size
    (0.25, 128)
    """

    dataset: str = "mnist"  # a smoothcert.data.load_dataset name
    arch: str = "cnn3"  # a smoothcert.models.list_models() name
    method: str = "standard"  # a smoothcert.training.list_methods() name
    method_options: dict[str, Any] = field(default_factory=dict)  # the method's hyperparameters
    out_dir: str = "runs/train"
    data_root: str | None = None  # load_dataset root (None: the dataset's default location)
    data_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"resize": 64} (imagefolder)
    epochs: int = 10  # passes over the training set
    batch_size: int = 128  # examples per optimizer step
    optimizer: str = "sgd"  # "sgd" (heavy-ball momentum) | "adam"
    lr: float = 0.1  # initial learning rate
    momentum: float = 0.9  # SGD momentum (ignored by Adam)
    weight_decay: float = 1e-4  # L2 penalty coefficient (coupled, as torch.optim applies it)
    schedule: str = (
        "step"  # "constant" | "step" (×lr_decay every step_size epochs) | "cosine" (per step, to 0)
    )
    step_size: int = 30  # epochs between decays of the step schedule
    lr_decay: float = 0.1  # multiplicative decay of the step schedule
    seed: int = 0  # model init, data order, augmentation, method noise, evaluation noise
    subset: int | None = None  # train on the first N training examples only
    test_subset: int | None = None  # evaluate on the first N test examples only
    # Hold out the last N training examples to choose best.safetensors on (never the test
    # set); 0: no held-out set, and best.safetensors is the last epoch.
    val_size: int = 0
    eval_sigma: float | None = None  # σ of the noisy evaluation (None: the method's σ, or none)
    augment: str = "auto"  # "auto" (what the dataset calls for) | "none" | "crop-flip"
    eval_batch_size: int = 500  # examples per evaluation forward pass
    # "fp32" | "bf16" (autocast, CPU or CUDA) | "fp16" (CUDA, scaled) | "auto" (bf16 where the
    # device computes it natively, else fp32; a resumed run keeps its recorded precision)
    precision: str = "fp32"
    channels_last: bool | None = None  # None: on for conv nets in bf16/fp16, off in fp32
    device: str | None = None  # None: CUDA when available (under torchrun cuda:LOCAL_RANK)
    # Mid-epoch resume states: N steps (int or "N"), "Nm" minutes, or 0/"off" (epochs only).
    checkpoint_every: int | str = DEFAULT_CHECKPOINT_EVERY
    workers: int = 0  # DataLoader worker processes decoding a streamed image folder
    sync_bn: bool = False  # batch-norm statistics over the global batch under torchrun (CUDA)

    def validate(self) -> None:
        """Check every field (ParameterError naming it); integer fields become plain ints.

        Float fields keep the value given (an int stays an int), so config.json records what
        the caller passed, as before.
        """
        from smoothcert.data import DATASETS
        from smoothcert.models import list_models

        checks.one_of("dataset", self.dataset, tuple(DATASETS))
        # Denoiser objectives train a registered denoiser instead of a classifier.
        if not _is_denoiser_run(self):
            checks.one_of("arch", self.arch, tuple(list_models()))
        # Plain ints: the fields are recorded in config.json, which takes no numpy integers.
        for name in ("epochs", "batch_size", "step_size", "eval_batch_size"):
            setattr(self, name, checks.positive_int(name, getattr(self, name)))
        for name in ("subset", "test_subset"):
            setattr(self, name, checks.optional_positive_int(name, getattr(self, name)))
        self.val_size = checks.integer_at_least("val_size", self.val_size, 0)
        checks.one_of("optimizer", self.optimizer, OPTIMIZERS)
        checks.one_of("schedule", self.schedule, SCHEDULES)
        checks.finite_real("lr", self.lr, positive=True)
        checks.probability("momentum", self.momentum, allow_zero=True)
        checks.finite_real("weight_decay", self.weight_decay, nonnegative=True)
        checks.probability("lr_decay", self.lr_decay, allow_one=True)
        if self.eval_sigma is not None:
            checks.finite_real("eval_sigma", self.eval_sigma, nonnegative=True)
        checks.one_of("precision", self.precision, ("auto", *PRECISIONS))
        checks.boolean("channels_last", self.channels_last, allow_none=True)
        parse_checkpoint_every(self.checkpoint_every)
        self.workers = checks.integer_at_least("workers", self.workers, 0)
        checks.boolean("sync_bn", self.sync_bn)
        checks.one_of("augment", self.augment, ("auto", *AUGMENTATIONS))
        self.seed = checks.integer_below("seed", self.seed, 0, 2**64, "2**64")  # torch: 64 bits

    def identity(self) -> dict[str, Any]:
        """The fields a resumed run must share with the run it continues.

        Returns
        -------
        dict
            Every field but those that change nothing trained (``out_dir``, ``device``,
            ``eval_batch_size``, ``checkpoint_every``, ``workers``).
        """
        d = dataclasses.asdict(self)
        return {k: v for k, v in d.items() if k not in NOT_IDENTITY}


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    out_dir : Path
        The run's output folder.
    model : nn.Module
        The trained model (the last epoch's weights).
    history : list of dict
        One metrics dict per completed epoch.
    last_checkpoint : Path
        ``last.safetensors``.
    best_checkpoint : Path or None
        ``best.safetensors``, the best epoch's weights (None when that file does not exist).
    resumed_from_epoch : int
        Completed epochs found on disk at the start (0: a fresh run).
    rank : int
        This process's rank under torchrun (only rank 0 writes files).
    """

    out_dir: Path
    model: nn.Module
    history: list[dict[str, Any]]  # one metrics dict per completed epoch
    last_checkpoint: Path
    best_checkpoint: Path | None
    resumed_from_epoch: int  # completed epochs found on disk at the start (0: fresh run)
    rank: int = 0  # this process's rank under torchrun (only rank 0 writes files)


def _is_denoiser_run(config: TrainConfig) -> bool:
    """A denoiser objective on a registered denoiser architecture."""
    from smoothcert.models.denoisers import list_denoisers
    from smoothcert.training.methods.denoiser_methods import is_denoiser_method

    return is_denoiser_method(config.method) and config.arch in list_denoisers()
