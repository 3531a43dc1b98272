"""`smoothcert train`: train a base classifier with any registered method (resumable)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from smoothcert._util.checks import positive_int
from smoothcert.cli._options import add_field_flag, add_method_options, method_options_from_args

NAME = "train"
#: The flags naming the files this command writes (experiment stages are ordered by them).
OUTPUT_FLAGS = ("--out",)
#: Under torchrun each process trains on its share of every batch.
DISTRIBUTED = "data-parallel"
#: Library parameter -> flag where the names differ. The method hyperparameters are added by
#: add_arguments as it builds their flags (their dests carry a prefix), before the CLI reads it.
PARAMETER_FLAGS: dict[str, str] = {"out_dir": "--out"}
HELP = "train a base classifier (standard, gaussian, ... methods); rerun the same command to resume"
DESCRIPTION = (
    "Train a base classifier for randomized smoothing. Writes OUT/last.safetensors, "
    "OUT/best.safetensors (the epoch with the best accuracy on the --val-size held-out training "
    "examples, under noise when the method has σ; the last epoch without --val-size: never "
    "chosen on the test set), OUT/metrics.jsonl and "
    "the resume state (at each epoch end and every --checkpoint-every within an epoch); "
    "rerunning the same command after an interruption continues from the last one. Under "
    "torchrun, each process trains on its share of every --batch-size batch. Method "
    "hyperparameter flags apply to the methods that have them; their default (None) means "
    "the method's own default."
)


@dataclass
class RunFlags:
    """The flags of train and train-denoiser that set no TrainConfig field, declared like its
    fields (help in the metadata) so that every flag of the one loop comes from a field."""

    resize: int | None = field(
        default=None,
        metadata={
            "help": "imagefolder only: resize the short side to PIXELS and centre-crop a square",
            "metavar": "PIXELS",
        },
    )
    stream: bool = field(
        default=False,
        metadata={
            "help": "imagefolder only: read images from disk as training needs them (decoded "
            "and augmented in --workers processes) instead of loading the split into memory"
        },
    )
    threads: int | None = field(
        default=None, metadata={"help": "CPU threads for torch (default: torch's choice)"}
    )
    no_progress: bool = field(default=False, metadata={"help": "no progress bar"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from smoothcert.models import list_models
    from smoothcert.training import TrainConfig
    from smoothcert.training.registry import list_methods

    g = parser.add_argument_group("data and model")
    add_data_flags(g)
    add_field_flag(
        g,
        TrainConfig,
        "arch",
        required=True,
        metavar="ARCH",
        help=f"architecture: {', '.join(list_models())}",
    )
    g = parser.add_argument_group("optimization")
    add_field_flag(
        g,
        TrainConfig,
        "method",
        metavar="METHOD",
        help=f"training method: {', '.join(list_methods())}",
    )
    add_optimization_flags(g, optimizer="sgd", lr=0.1, weight_decay=1e-4)
    add_output_flags(parser.add_argument_group("evaluation and output"))
    PARAMETER_FLAGS.update(add_method_options(parser))


def add_data_flags(g: argparse._ArgumentGroup, **help_overrides: str) -> None:
    """The data flags of every command that trains with the one loop (train, train-denoiser);
    ``help_overrides`` (field name -> help) where a command's meaning differs."""
    from smoothcert.data import DATASETS
    from smoothcert.training import TrainConfig

    helps = {"dataset": f"dataset: {', '.join(DATASETS)}", **help_overrides}
    add_field_flag(g, TrainConfig, "dataset", required=True, metavar="NAME", help=helps["dataset"])
    _fields(g, TrainConfig, ("data_root",), helps)
    _fields(g, RunFlags, ("resize", "stream"), helps)
    _fields(g, TrainConfig, ("subset", "test_subset", "val_size", "augment"), helps)


def add_optimization_flags(
    g: argparse._ArgumentGroup, *, optimizer: str, lr: float, weight_decay: float
) -> None:
    """The optimizer, schedule, seed and arithmetic flags of the one loop, with the command's
    own optimizer defaults."""
    from smoothcert.training import TrainConfig

    defaults = {"optimizer": optimizer, "lr": lr, "weight_decay": weight_decay}
    names = ("epochs", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "schedule")
    for name in (*names, "step_size", "lr_decay", "seed"):
        kwargs = {"default": defaults[name]} if name in defaults else {}
        add_field_flag(g, TrainConfig, name, **kwargs)
    # The command line's auto: the library's "auto" precision, and None for channels_last.
    add_field_flag(g, TrainConfig, "precision", default="auto")
    add_field_flag(
        g, TrainConfig, "channels_last", default="auto", choices=("auto", "on", "off"), type=None
    )


def add_output_flags(g: argparse._ArgumentGroup, **help_overrides: str) -> None:
    """The evaluation, output and machine flags of the one loop; ``help_overrides`` (field
    name -> help) where a command's meaning differs."""
    from smoothcert.training import TrainConfig

    _fields(g, TrainConfig, ("eval_sigma", "eval_batch_size"), help_overrides)
    add_field_flag(g, TrainConfig, "out_dir", "--out", required=True)
    add_field_flag(g, TrainConfig, "device", default="auto")  # auto: the library's None
    _fields(g, RunFlags, ("threads",), help_overrides)
    _fields(g, TrainConfig, ("checkpoint_every", "workers", "sync_bn"), help_overrides)
    _fields(g, RunFlags, ("no_progress",), help_overrides)


def _fields(
    g: argparse._ArgumentGroup, cls: type, names: tuple[str, ...], helps: dict[str, str]
) -> None:
    """The flags of ``cls``'s fields ``names``, with the help of ``helps`` where given."""
    for name in names:
        add_field_flag(g, cls, name, **({"help": helps[name]} if name in helps else {}))


def _data_options(args: argparse.Namespace) -> dict:
    options: dict = {}
    if args.resize is not None:
        options["resize"] = args.resize
    if args.stream:
        options["stream"] = True
    return options


def run(args: argparse.Namespace) -> int:
    return train_from_args(args, args.method, method_options_from_args(args, args.method), NAME)


def train_from_args(args: argparse.Namespace, method: str, options: dict, command: str) -> int:
    """Train ``method`` with ``options`` from the flags `train` and `train-denoiser` share
    (data, optimization, evaluation, output, machine); print what a run's end says."""
    import torch

    from smoothcert.training import TrainConfig, train

    if args.threads is not None:
        torch.set_num_threads(positive_int("threads", args.threads))
    config = TrainConfig(
        dataset=args.dataset,
        arch=args.arch,
        method=method,
        method_options=options,
        out_dir=args.out,
        data_root=args.data_root,
        data_options=_data_options(args),
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        lr=args.lr,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        step_size=args.step_size,
        lr_decay=args.lr_decay,
        seed=args.seed,
        subset=args.subset,
        test_subset=args.test_subset,
        val_size=args.val_size,
        eval_sigma=args.eval_sigma,
        augment=args.augment,
        eval_batch_size=args.eval_batch_size,
        device=args.device,
        precision=args.precision,
        channels_last={"auto": None, "on": True, "off": False}[args.channels_last],
        checkpoint_every=args.checkpoint_every,
        workers=args.workers,
        sync_bn=args.sync_bn,
    )
    try:
        result = train(
            config, progress=not args.no_progress, log=lambda line: print(line, flush=True)
        )
    except KeyboardInterrupt:
        print(
            f"smoothcert {command}: interrupted; rerun the same command to resume from the "
            f"last resume point in {args.out}",
            file=sys.stderr,
        )
        return 130
    if result.rank != 0:  # under torchrun, rank 0 speaks for the job
        return 0
    if result.resumed_from_epoch == config.epochs:
        print(f"{args.out}: already trained for {config.epochs} epochs; nothing to do")
    print(f"last checkpoint: {result.last_checkpoint}")
    if result.best_checkpoint is not None:
        print(f"best checkpoint: {result.best_checkpoint}")
    return 0
