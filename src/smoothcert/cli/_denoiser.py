"""``--denoiser`` of certify, predict and attack: denoised smoothing of any classifier.

The flags name a denoiser D from any model source (a `smoothcert train-denoiser` checkpoint,
zoo:NAME, ONNX, .pt2, TorchScript, python:package.module:factory); the commands then smooth
(or attack) f∘D. The run's config records D's identity (format, file sha256 and, for a
diffusion model, its schedule and timestep t*), so a resume with another denoiser is refused.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from smoothcert.cli._warn import warn

#: Library parameters named otherwise than their flags (merged into a command's PARAMETER_FLAGS).
PARAMETER_FLAGS = {
    "diffusion_schedule": "--diffusion-schedule",
    "diffusion_steps": "--diffusion-steps",
    "denoiser_weights": "--denoiser-weights",
    "timestep": "--diffusion-timestep",
}


def add_denoiser_options(parser: argparse.ArgumentParser) -> None:
    """--denoiser and what a denoiser from outside smoothcert needs."""
    g = parser.add_argument_group("denoised smoothing (docs/denoised-smoothing.md)")
    g.add_argument(
        "--denoiser",
        default=None,
        metavar="MODEL",
        help="smooth f∘D, this denoiser D before the classifier (Salman et al. 2020): a "
        "`smoothcert train-denoiser` checkpoint, zoo:NAME, FILE.onnx, FILE.pt2, a TorchScript "
        "archive or python:package.module:factory; it maps [0,1] images to [0,1] images of the "
        "classifier's input shape (a diffusion ε-network with --diffusion-schedule)",
    )
    g.add_argument(
        "--denoiser-weights",
        type=Path,
        default=None,
        metavar="FILE",
        help="safetensors weights for a python: denoiser",
    )
    g.add_argument(
        "--diffusion-schedule",
        default=None,
        metavar="linear|cosine|FILE",
        help="the --denoiser is a diffusion noise-prediction network ε(x_t, t) on [-1,1] images "
        "trained with this schedule (linear: DDPM β 1e-4..0.02; cosine; or a .npy/text file of "
        "alpha-bar values); it denoises in one step at t*, where alpha-bar(t*) = 1/(1+4σ²). "
        "A smoothcert diffusion checkpoint records its own",
    )
    g.add_argument(
        "--diffusion-steps",
        type=int,
        default=None,
        metavar="T",
        help="timesteps T of a linear or cosine --diffusion-schedule (default 1000)",
    )
    g.add_argument(
        "--diffusion-timestep",
        type=int,
        default=None,
        metavar="T",
        help="denoise at this 0-based timestep instead of t* (diffusion denoisers)",
    )


def load_denoiser_arg(
    args: argparse.Namespace,
    *,
    sigma: float | None,
    input_shape: Any,
    device: Any,
    dataset_name: str | None,
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """(D or None, run-config entries, provenance) for ``--denoiser``; warns (stderr) when D was
    trained at another σ or on another dataset, naming both.

    A diffusion denoiser needs σ (its t*): ``sigma`` None with one is refused.
    """
    if getattr(args, "denoiser", None) is None:
        given = [
            f
            for f in (
                "denoiser_weights",
                "diffusion_schedule",
                "diffusion_steps",
                "diffusion_timestep",
            )
            if getattr(args, f, None) is not None
        ]
        if given:
            flags = ", ".join("--" + f.replace("_", "-") for f in given)
            raise ValueError(f"{flags} go(es) with --denoiser")
        return None, {}, {}
    from smoothcert.models.denoiser_sources import load_any_denoiser, schedule_from_spec

    schedule = None
    if args.diffusion_schedule is not None:
        schedule = schedule_from_spec(args.diffusion_schedule, args.diffusion_steps)
    elif args.diffusion_steps is not None:
        raise ValueError("--diffusion-steps goes with --diffusion-schedule")
    loaded = load_any_denoiser(
        args.denoiser,
        sigma=sigma,
        input_shape=input_shape,
        device=device,
        weights=args.denoiser_weights,
        trust_code=args.trust_model_code,
        schedule=schedule,
        timestep=args.diffusion_timestep,
    )
    for note in loaded.notes:
        warn(note)
    trained_on = loaded.metadata.get("dataset")
    if trained_on and dataset_name and trained_on != dataset_name:
        warn(
            f"the denoiser {args.denoiser} was trained on {trained_on!r}, this run's data is "
            f"{dataset_name!r}"
        )
    shown = str(loaded.path.resolve()) if loaded.path is not None else args.denoiser
    info = {"denoiser": shown}
    if "source" not in loaded.metadata:
        info["denoiser_metadata"] = loaded.metadata
    return loaded.module, {"denoiser": loaded.identity}, info
