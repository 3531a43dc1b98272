"""`smoothcert train-denoiser`: train a denoiser for denoised smoothing (resumable).

The same loop as `smoothcert train` (:func:`smoothcert.training.train`), with a denoiser
objective as the method: precision, resume, torchrun, streamed folders, metrics.jsonl and
config.json work alike.
"""

from __future__ import annotations

import argparse

NAME = "train-denoiser"
HELP = (
    "train a denoiser (mse; stability through a classifier or surrogates; diffusion) "
    "for denoised smoothing"
)
DESCRIPTION = (
    "Train a denoiser D so that a classifier f never trained with noise certifies as f∘D "
    "(denoised smoothing, Salman et al. 2020; docs/denoised-smoothing.md). Objectives: mse "
    "(Eq. 4: D(x+δ) close to x), stability (Eq. 5: f(D(x+δ)) agrees with f(x), through "
    "--classifier, or the average over --surrogate classifiers when you only have query "
    "access to f), diffusion (a noise-prediction U-Net, Ho et al. Eq. 14, used by one-step "
    "denoising at t*). Writes OUT/last.safetensors and OUT/best.safetensors (denoiser "
    "checkpoints for --denoiser of certify, predict and attack), OUT/metrics.jsonl and the "
    "resume state; rerunning the same command continues."
)
# Library parameters named otherwise than their flags.
PARAMETER_FLAGS = {"surrogates": "--surrogate", "diffusion_steps": "--diffusion-steps"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from smoothcert.data import DATASETS
    from smoothcert.models.denoisers import list_denoisers
    from smoothcert.training.config import OPTIMIZERS, SCHEDULES
    from smoothcert.training.methods.denoiser_methods import OBJECTIVES
    from smoothcert.training.precision import PRECISIONS

    g = parser.add_argument_group("denoiser and objective")
    g.add_argument(
        "--arch",
        required=True,
        choices=list_denoisers(),
        help="denoiser: dncnn (an image denoiser, for mse/stability) or unet-small (a "
        "noise-prediction network, for diffusion)",
    )
    g.add_argument(
        "--depth",
        type=int,
        default=None,
        metavar="LAYERS",
        help="dncnn: convolution layers (default 17)",
    )
    g.add_argument(
        "--width",
        type=int,
        default=None,
        metavar="CHANNELS",
        help="channels of the hidden layers (default: dncnn 64, unet-small 32)",
    )
    g.add_argument(
        "--time-dim",
        type=int,
        default=None,
        metavar="DIM",
        help="unet-small: size of the timestep embedding (default 128)",
    )
    g.add_argument(
        "--objective",
        required=True,
        choices=tuple(OBJECTIVES),
        help="mse: mean squared error to the clean image; stability: cross-entropy of the "
        "classifier on the denoised image against its label of the clean one; diffusion: "
        "noise prediction over the diffusion schedule",
    )
    g.add_argument(
        "--sigma",
        type=float,
        default=None,
        metavar="STD",
        help="std of the Gaussian noise, L2 pixel units on [0,1] images: the noise of mse and "
        "stability (required there; certify with the same --sigma); for diffusion only the σ "
        "of the per-epoch one-step denoising evaluation",
    )
    g.add_argument(
        "--classifier",
        default=None,
        metavar="MODEL",
        help="the frozen classifier f (any source --model of certify takes: checkpoint, zoo:NAME, "
        ".onnx, .pt2, TorchScript, python:mod:factory): stability trains through it; with "
        "--surrogate or another objective it is only evaluated (accuracy of f∘D under noise)",
    )
    g.add_argument(
        "--surrogate",
        action="append",
        default=None,
        metavar="MODEL",
        help="repeatable: a PyTorch classifier to train through instead of --classifier (query "
        "access to f); the stability loss is averaged over the surrogates",
    )
    g.add_argument(
        "--init",
        default=None,
        metavar="CKPT",
        help="start from this denoiser checkpoint (e.g. mse-trained, then stability: Salman "
        "et al.'s recommended route); same --arch and options",
    )
    g.add_argument(
        "--diffusion-schedule",
        default="linear",
        metavar="linear|cosine|FILE",
        help="diffusion: the noise schedule: linear (DDPM, β 1e-4 to 0.02), cosine (Nichol & "
        "Dhariwal), or a .npy/text file of the alpha-bar values",
    )
    g.add_argument(
        "--diffusion-steps",
        type=int,
        default=None,
        metavar="T",
        help="diffusion: number of timesteps T of a linear or cosine schedule (default 1000)",
    )
    g.add_argument(
        "--trust-model-code",
        action="store_true",
        help="allow .pt2 and TorchScript classifiers (their loaders run code in the file)",
    )

    g = parser.add_argument_group("data")
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
        help="imagefolder only: resize the short side to PIXELS, centre-crop a square",
    )
    g.add_argument(
        "--stream",
        action="store_true",
        help="imagefolder only: read images from disk as training needs them",
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
    g.add_argument(
        "--val-size",
        type=int,
        default=0,
        metavar="N",
        help="hold out the last N training examples to choose best.safetensors "
        "(f∘D accuracy under noise with --classifier, else the lowest MSE); 0 = "
        "best is the last epoch",
    )
    g.add_argument(
        "--augment",
        choices=("auto", "none", "crop-flip", "resized-crop-flip"),
        default="auto",
        help="training augmentation; auto = the dataset's",
    )

    g = parser.add_argument_group("optimization")
    g.add_argument("--epochs", type=int, default=10, help="passes over the training set")
    g.add_argument("--batch-size", type=int, default=128, help="examples per optimizer step")
    g.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="sgd or adam")
    g.add_argument("--lr", type=float, default=1e-3, help="initial learning rate")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (ignored by adam)")
    g.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay coefficient")
    g.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default="step",
        help="learning-rate schedule: constant; step; cosine (per step, to 0)",
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
        "--seed", type=int, default=0, help="seed of init, data order, augmentation and noise"
    )
    g.add_argument(
        "--precision",
        choices=("auto", *PRECISIONS),
        default="auto",
        help="training arithmetic (as `smoothcert train`): auto = bf16 where the "
        "device computes it natively, else fp32; fp32; bf16; fp16 (CUDA)",
    )
    g.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="channels-last memory layout (auto: on with bf16/fp16)",
    )

    g = parser.add_argument_group("evaluation and output")
    g.add_argument(
        "--eval-sigma",
        type=float,
        default=None,
        metavar="STD",
        help="noise std (L2 pixel units) of the per-epoch test MSE and f∘D "
        "accuracy; default: --sigma",
    )
    g.add_argument(
        "--eval-batch-size", type=int, default=500, help="examples per evaluation forward pass"
    )
    g.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="output directory (checkpoints, metrics, resume state)",
    )
    g.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    g.add_argument(
        "--checkpoint-every",
        default="10m",
        metavar="N|Nm",
        help="also write the resume state within an epoch every N optimizer steps "
        "or N minutes; 0 = at epoch ends only",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=0,
        metavar="N",
        help="DataLoader worker processes decoding a streamed image folder",
    )
    g.add_argument(
        "--sync-bn",
        action="store_true",
        help="under torchrun on CUDA: batch-norm statistics over the global batch",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def method_options(args: argparse.Namespace) -> dict:
    """The objective's hyperparameters from the flags (validated by the method)."""
    from smoothcert.models.denoiser_sources import schedule_from_spec

    arch_options = {
        k: getattr(args, k) for k in ("depth", "width", "time_dim") if getattr(args, k) is not None
    }
    options: dict = {
        "sigma": args.sigma,
        "classifier": args.classifier,
        "surrogates": list(args.surrogate or []),
        "init": args.init,
        "arch_options": arch_options,
        "trust_model_code": args.trust_model_code,
    }
    if args.objective == "diffusion":
        options["schedule"] = schedule_from_spec(
            args.diffusion_schedule, args.diffusion_steps
        ).to_metadata()
    elif args.diffusion_steps is not None or args.diffusion_schedule != "linear":
        raise ValueError(
            "--diffusion-schedule and --diffusion-steps apply to --objective diffusion"
        )
    for spec in [args.classifier, *(args.surrogate or [])]:
        _check_trusted(spec, args.trust_model_code)
    if args.objective == "stability" and args.sigma is None:
        raise ValueError("--sigma is needed by --objective stability (the noise std)")
    return options


def _check_trusted(spec: str | None, trusted: bool) -> None:
    """Refuse a .pt2 or TorchScript classifier without --trust-model-code, in flag words."""
    from smoothcert.models.adapters import RUNS_CODE, model_format

    if spec is not None and not trusted and model_format(spec) in RUNS_CODE:
        raise ValueError(
            f"loading {spec} runs code stored in the file (pickle or TorchScript): pass "
            "--trust-model-code only for a file you trust, or export the model to ONNX"
        )


def run(args: argparse.Namespace) -> int:
    from smoothcert.cli.train import train_from_args
    from smoothcert.training.methods.denoiser_methods import OBJECTIVES

    # "denoiser-mse", ...: the one training loop with a denoiser objective
    return train_from_args(args, OBJECTIVES[args.objective], method_options(args), NAME)
