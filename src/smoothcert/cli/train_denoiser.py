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
    from smoothcert.cli._options import add_field_flag
    from smoothcert.cli.train import add_data_flags, add_optimization_flags, add_output_flags
    from smoothcert.models.denoisers import list_denoisers
    from smoothcert.training.methods.denoiser_methods import OBJECTIVES, DenoiserMethod

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
    # The flags of DenoiserMethod's fields come from their metadata (help, metavar, type).
    add_field_flag(g, DenoiserMethod, "sigma")
    add_field_flag(g, DenoiserMethod, "classifier")
    add_field_flag(g, DenoiserMethod, "surrogates", "--surrogate", action="append", default=None)
    add_field_flag(g, DenoiserMethod, "init")
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
    add_field_flag(g, DenoiserMethod, "trust_model_code")

    add_data_flags(
        parser.add_argument_group("data"),
        val_size="hold out the last N training examples to choose best.safetensors "
        "(f∘D accuracy under noise with --classifier, else the lowest MSE); 0 = "
        "best is the last epoch",
    )
    add_optimization_flags(
        parser.add_argument_group("optimization"), optimizer="adam", lr=1e-3, weight_decay=0.0
    )
    add_output_flags(
        parser.add_argument_group("evaluation and output"),
        eval_sigma="noise std (L2 pixel units) of the per-epoch test MSE and f∘D "
        "accuracy; default: --sigma",
    )


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
