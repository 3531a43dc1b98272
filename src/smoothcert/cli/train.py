"""`smoothcert train`: train a base classifier with any registered method (resumable)."""

from __future__ import annotations

import argparse
import sys

from smoothcert._util.checks import positive_int
from smoothcert.cli._options import add_method_options, method_options_from_args

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from smoothcert.models import list_models
    from smoothcert.training.registry import list_methods

    g = parser.add_argument_group("data and model")
    add_data_flags(g)
    g.add_argument(
        "--arch",
        required=True,
        metavar="ARCH",
        help=f"architecture: {', '.join(list_models())}",
    )
    g = parser.add_argument_group("optimization")
    g.add_argument(
        "--method",
        default="standard",
        metavar="METHOD",
        help=f"training method: {', '.join(list_methods())}",
    )
    add_optimization_flags(g, optimizer="sgd", lr=0.1, weight_decay=1e-4)
    add_output_flags(
        parser.add_argument_group("evaluation and output"),
        eval_sigma_help="noise std (L2, pixel units) for the per-epoch noisy test accuracy; "
        "default: the method's sigma",
    )
    PARAMETER_FLAGS.update(add_method_options(parser))


def add_data_flags(
    g: argparse._ArgumentGroup,
    val_size_help: str = "hold out the last N training examples (not trained on) to choose "
    "best.safetensors; 0 = best is the last epoch",
) -> None:
    """The data flags of every command that trains with the one loop (train, train-denoiser)."""
    from smoothcert.data import DATASETS

    g.add_argument(
        "--dataset", required=True, metavar="NAME", help=f"dataset: {', '.join(DATASETS)}"
    )
    g.add_argument(
        "--data-root",
        default=None,
        metavar="DIR",
        help="directory with the dataset (default: its standard location)",
    )
    g.add_argument(
        "--resize",
        type=int,
        default=None,
        metavar="PIXELS",
        help="imagefolder only: resize the short side to PIXELS and centre-crop a square",
    )
    g.add_argument(
        "--stream",
        action="store_true",
        help="imagefolder only: read images from disk as training needs them (decoded and "
        "augmented in --workers processes) instead of loading the split into memory",
    )
    g.add_argument(
        "--subset",
        type=int,
        default=None,
        metavar="N",
        help="train on the first N training examples only",
    )
    g.add_argument(
        "--test-subset",
        type=int,
        default=None,
        metavar="N",
        help="evaluate on the first N test examples only",
    )
    g.add_argument("--val-size", type=int, default=0, metavar="N", help=val_size_help)
    g.add_argument(
        "--augment",
        choices=("auto", "none", "crop-flip", "resized-crop-flip"),
        default="auto",
        help="training augmentation; auto = what the dataset calls for "
        "(crop-flip for CIFAR-10, none for MNIST); resized-crop-flip (ImageNet style) needs "
        "--stream",
    )


def add_optimization_flags(
    g: argparse._ArgumentGroup, *, optimizer: str, lr: float, weight_decay: float
) -> None:
    """The optimizer, schedule, seed and arithmetic flags of the one loop, with the command's
    own optimizer defaults."""
    from smoothcert.training.config import OPTIMIZERS, SCHEDULES
    from smoothcert.training.precision import PRECISIONS

    g.add_argument(
        "--epochs",
        type=int,
        default=10,
        help="passes over the training set; rerun a run with a larger value to continue it "
        "(constant or step schedule)",
    )
    g.add_argument("--batch-size", type=int, default=128, help="examples per optimizer step")
    g.add_argument(
        "--optimizer", choices=OPTIMIZERS, default=optimizer, help="sgd (with momentum) or adam"
    )
    g.add_argument("--lr", type=float, default=lr, help="initial learning rate")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (ignored by adam)")
    g.add_argument(
        "--weight-decay", type=float, default=weight_decay, help="L2 weight decay coefficient"
    )
    g.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="step",
        help="learning-rate schedule: constant; step (x lr-decay every step-size epochs); "
        "cosine (per step, to 0)",
    )
    g.add_argument(
        "--step-size",
        type=int,
        default=30,
        help="epochs between learning-rate decays (step schedule)",
    )
    g.add_argument(
        "--lr-decay",
        type=float,
        default=0.1,
        help="multiplicative learning-rate decay (step schedule)",
    )
    g.add_argument(
        "--seed", type=int, default=0, help="seed of model init, data order, augmentation and noise"
    )
    g.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="training arithmetic: auto = bf16 where the device computes it natively (a GPU "
        "with bf16, a CPU with AVX-512 BF16 or AMX; measured once per machine where the CPU "
        "does not tell), else fp32, and a resumed run keeps the precision it recorded; fp32; "
        "bf16 = autocast to bfloat16 (CPU or CUDA; weights and optimizer stay fp32; emulated, "
        "and several times slower than fp32, on CPUs without bf16 units); fp16 = autocast to "
        "float16 with a gradient scaler (CUDA only). Give it explicitly for bit-identical "
        "retraining on machines of another kind",
    )
    g.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="channels-last memory layout for conv nets (auto: on with bf16/fp16, off in fp32)",
    )


def add_output_flags(g: argparse._ArgumentGroup, *, eval_sigma_help: str) -> None:
    """The evaluation, output and machine flags of the one loop."""
    g.add_argument("--eval-sigma", type=float, default=None, metavar="STD", help=eval_sigma_help)
    g.add_argument(
        "--eval-batch-size", type=int, default=500, help="examples per evaluation forward pass"
    )
    g.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory (checkpoints, metrics, resume state)",
    )
    g.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA when available)"
    )
    g.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)"
    )
    g.add_argument(
        "--checkpoint-every",
        default="10m",
        metavar="N|Nm",
        help="also write the resume state within an epoch every N optimizer steps or every N "
        "minutes (e.g. 500, 10m); 0 = at epoch ends only",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="DataLoader worker processes decoding a streamed image folder (0: in this process)",
    )
    g.add_argument(
        "--sync-bn",
        action="store_true",
        help="under torchrun on CUDA: batch-norm statistics over the global batch "
        "(default: per process)",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


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
