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
from smoothcert.training.methods.denoiser_objectives import is_denoiser_method
from smoothcert.training.precision import PRECISIONS
from smoothcert.training.resume import (
    DEFAULT_CHECKPOINT_EVERY,
    parse_checkpoint_every,
)

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "step", "cosine")
# Fields that do not change the result, so a resumed run may differ in them.
NOT_IDENTITY = ("out_dir", "device", "eval_batch_size", "checkpoint_every", "workers")


def _described(default: Any, help: str, **extra: Any) -> Any:
    """A field with ``default`` and ``metadata`` {"help": help, **extra} ("metavar",
    "choices"): what the command line turns into the field's flag."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class TrainConfig:
    """Everything that determines a training run.

    Every field has a default and a ``metadata["help"]`` stating its meaning and unit, from
    which the CLI builds the flag that sets it (``smoothcert train --help`` shows them).
    Validated by ``train`` before anything is written.

    Examples
    --------
    >>> config = TrainConfig(dataset="mnist", arch="cnn3", method="gaussian",
    ...                      method_options={"sigma": 0.25}, epochs=5, out_dir="runs/x")
    >>> config.method_options["sigma"], config.batch_size
    (0.25, 128)
    """

    dataset: str = _described("mnist", "dataset (a smoothcert.data.load_dataset name)")
    arch: str = _described("cnn3", "architecture (a smoothcert.models.list_models() name)")
    method: str = _described(
        "standard", "training method (a smoothcert.training.list_methods() name)"
    )
    method_options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "the method's hyperparameters"}
    )
    out_dir: str = _described(
        "runs/train", "output directory (checkpoints, metrics, resume state)", metavar="DIR"
    )
    data_root: str | None = _described(
        None, "directory with the dataset (default: its standard location)", metavar="DIR"
    )
    data_options: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": 'load_dataset options, e.g. {"resize": 64} (imagefolder)'},
    )
    epochs: int = _described(
        10,
        "passes over the training set; rerun a run with a larger value to continue it "
        "(constant or step schedule)",
    )
    batch_size: int = _described(128, "examples per optimizer step")
    optimizer: str = _described("sgd", "sgd (with momentum) or adam", choices=OPTIMIZERS)
    lr: float = _described(0.1, "initial learning rate")
    momentum: float = _described(0.9, "SGD momentum (ignored by adam)")
    # coupled with the gradient, as torch.optim applies it
    weight_decay: float = _described(1e-4, "L2 weight decay coefficient")
    schedule: str = _described(
        "step",
        "learning-rate schedule: constant; step (x lr-decay every step-size epochs); "
        "cosine (per step, to 0)",
        choices=SCHEDULES,
    )
    step_size: int = _described(30, "epochs between learning-rate decays (step schedule)")
    lr_decay: float = _described(0.1, "multiplicative learning-rate decay (step schedule)")
    seed: int = _described(0, "seed of model init, data order, augmentation and noise")
    subset: int | None = _described(
        None, "train on the first N training examples only", metavar="N"
    )
    test_subset: int | None = _described(
        None, "evaluate on the first N test examples only", metavar="N"
    )
    # never the test set: 0 means no held-out set, and best.safetensors is the last epoch
    val_size: int = _described(
        0,
        "hold out the last N training examples (not trained on) to choose best.safetensors; "
        "0 = best is the last epoch",
        metavar="N",
    )
    eval_sigma: float | None = _described(
        None,
        "noise std (L2, pixel units) for the per-epoch noisy test accuracy; default: the "
        "method's sigma",
        metavar="STD",
    )
    augment: str = _described(
        "auto",
        "training augmentation; auto = what the dataset calls for (crop-flip for CIFAR-10, "
        "none for MNIST); resized-crop-flip (ImageNet style) needs --stream",
        choices=("auto", *AUGMENTATIONS),
    )
    eval_batch_size: int = _described(500, "examples per evaluation forward pass")
    precision: str = _described(
        "fp32",
        "training arithmetic: auto = bf16 where the device computes it natively (a GPU "
        "with bf16, a CPU with AVX-512 BF16 or AMX; measured once per machine where the CPU "
        "does not tell), else fp32, and a resumed run keeps the precision it recorded; fp32; "
        "bf16 = autocast to bfloat16 (CPU or CUDA; weights and optimizer stay fp32; emulated, "
        "and several times slower than fp32, on CPUs without bf16 units); fp16 = autocast to "
        "float16 with a gradient scaler (CUDA only). Give it explicitly for bit-identical "
        "retraining on machines of another kind",
        choices=("auto", *PRECISIONS),
    )
    channels_last: bool | None = _described(
        None,
        "channels-last memory layout for conv nets (auto: on with bf16/fp16, off in fp32)",
    )
    device: str | None = _described(
        None, "cpu, cuda, cuda:N or auto (CUDA when available)"
    )  # None: CUDA when available (under torchrun cuda:LOCAL_RANK)
    checkpoint_every: int | str = _described(
        DEFAULT_CHECKPOINT_EVERY,
        "also write the resume state within an epoch every N optimizer steps or every N "
        "minutes (e.g. 500, 10m); 0 = at epoch ends only",
        metavar="N|Nm",
    )
    workers: int = _described(
        0,
        "DataLoader worker processes decoding a streamed image folder (0: in this process)",
        metavar="N",
    )
    sync_bn: bool = _described(
        False,
        "under torchrun on CUDA: batch-norm statistics over the global batch "
        "(default: per process)",
    )

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

    return is_denoiser_method(config.method) and config.arch in list_denoisers()
