"""`smoothcert attack`: accuracy under L2 PGD per radius (the NAL paper's Table 2 protocol)."""

from __future__ import annotations

import argparse
import math
import sys

from smoothcert._util.checks import ParameterError
from smoothcert.cli import _common, _denoiser

NAME = "attack"
#: The flags naming the files this command writes (experiment stages are ordered by them).
OUTPUT_FLAGS = ("--out",)
# Library parameters named otherwise than their flags.
PARAMETER_FLAGS = {
    "max_examples": "--max",
    "batch_size": "--batch",
    "sigma": "--noise-sigma",
    "skip_fooled": "--every-radius",  # the flag that sets it False
    **_denoiser.PARAMETER_FLAGS,
}
HELP = "accuracy under L2 PGD at several radii (resumable; NAL paper Table 2)"
DESCRIPTION = (
    "Attack every --skip-th example (--max in all) with L2 PGD (--steps steps of 2ε/steps, true "
    "labels) at every radius in --eps and store one committed row per example in --out "
    "(resumable). With --noise-sigma the classifier sees Gaussian noise at test time: the attack "
    "targets the noisy classifier (expected loss over --noise-samples draws, or SmoothAdv's "
    "objective) and the prediction is the vote over --noise-samples draws, which are fixed per "
    "example (the same at every radius and for every attack: common random numbers)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _common.add_model_and_data(parser)
    parser.add_argument(
        "--eps", type=float, nargs="+", required=True, help="L2 radii (input units)"
    )
    parser.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=[20],
        help="PGD steps (step 2ε/steps); several values run one attack each, and an example "
        "counts as robust only if every attack failed",
    )
    parser.add_argument(
        "--restarts",
        type=int,
        default=1,
        help="runs of each attack per radius: the first from the input, the others from a "
        "random point in the ball",
    )
    parser.add_argument(
        "--noise-sigma", type=float, default=None, help="Gaussian noise std at test time"
    )
    parser.add_argument(
        "--noise-samples", type=int, default=8, help="noise draws per prediction and attack step"
    )
    parser.add_argument(
        "--vote",
        choices=("majority", "predict"),
        default="majority",
        help="with --noise-sigma: the prediction is the majority of the votes, or PREDICT's "
        "answer (Cohen et al.; binomial test at --vote-alpha, an abstention counts as wrong)",
    )
    parser.add_argument(
        "--vote-alpha",
        type=float,
        default=0.001,
        help="level of PREDICT's test with --vote predict (needs --noise-samples >= "
        "log2(2/alpha), e.g. 11 at 0.001)",
    )
    parser.add_argument(
        "--objective",
        choices=("expected", "smoothadv"),
        default="expected",
        help="attack loss under noise: mean cross-entropy (Cohen et al. App. J.3) or "
        "SmoothAdv's log of the mean softmax",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=100,
        help="examples per attack batch; with --noise-sigma the noise is drawn per batch, so "
        "results depend on it and a resumed run must use the same --batch",
    )
    parser.add_argument(
        "--every-radius",
        action="store_true",
        help="attack every example at every radius, also above one where it was already "
        "fooled (by default the point that fooled it counts at every larger radius, which "
        "gives the same accuracies with less work; run files of versions that always attacked "
        "every radius resume only with this flag)",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("auto", "fp32", "bf16"),
        help="model arithmetic for the attack and the predictions: fp32; bf16 autocast; auto = "
        "bf16 where the device computes it natively, else fp32 (a resumed run keeps the "
        "precision it recorded)",
    )
    _denoiser.add_denoiser_options(parser)  # --denoiser: attack f∘D
    parser.add_argument("--out", required=True, help="run file (.db) to create or resume")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from smoothcert.runs import select_indices
    from smoothcert.runs.attack import attack_dataset
    from smoothcert.runs.common import checkpoint_identity

    for name in ("batch", "skip", "max", "restarts", "noise_samples"):
        _common.positive_int(name, getattr(args, name))
    for steps in args.steps:
        _common.positive_int("steps", steps)
    if not all(math.isfinite(e) and e >= 0 for e in args.eps):
        raise ParameterError("eps", f"must be radii >= 0 and finite, got {args.eps}")
    _common.finite("noise_sigma", args.noise_sigma, positive=True)
    inputs = _common.load_inputs(args)
    model, dataset = inputs.model, inputs.dataset
    indices = select_indices(len(dataset), args.skip, args.max)
    _common.warn_if_one_class(dataset, indices)
    config, info = checkpoint_identity(inputs.checkpoint, inputs.meta, sys.argv)
    config |= {"dataset": dataset.info.name, "split": args.split}
    model = _denoised(args, model, dataset, config, info)  # --denoiser: f∘D
    device = next((p.device for p in model.parameters()), None)
    precision = _common.resolve_precision_flag(
        args.precision, device or "cpu", args.out, onnx=_common.runs_onnx(inputs.meta)
    )
    if precision != "fp32":
        # The run's config records the precision of the model it attacks (attack_dataset).
        from smoothcert.training.precision import AutocastModel, default_channels_last

        model = AutocastModel(model, precision, default_channels_last(precision, model))
        if model.channels_last:
            model.model.to(memory_format=torch.channels_last)
    bar = tqdm(
        disable=args.no_progress, unit="ex", dynamic_ncols=True, file=sys.stderr, desc="attack"
    )

    def progress(done_now: int, total: int) -> None:
        bar.total = total
        bar.update(done_now)

    try:
        result = attack_dataset(
            model,
            dataset,
            args.out,
            args.eps,
            args.steps,
            restarts=args.restarts,
            skip_fooled=not args.every_radius,
            vote=args.vote,
            vote_alpha=args.vote_alpha,
            noise_sigma=args.noise_sigma,
            noise_samples=args.noise_samples,
            objective=args.objective,
            batch_size=args.batch,
            indices=indices,
            seed=args.seed,
            config=config,
            info=info,
            progress=progress,
        )
    finally:
        bar.close()
    setting = (
        "base classifier"
        if args.noise_sigma is None
        else f"noise σ = {args.noise_sigma} at test time, {args.noise_samples} draws per "
        "example fixed across radii, "
        + ("majority vote" if args.vote == "majority" else f"PREDICT at α = {args.vote_alpha:g}")
    )
    steps = "/".join(map(str, args.steps))
    print(
        f"{result['count']} examples, L2 PGD {steps} steps x {args.restarts} restart(s), "
        f"{setting}; robust at a radius = correct under every attack at every radius up to it"
    )
    radii = [f"{e:g}" for e in result["eps"]]
    print("| L2 radius | " + " | ".join(radii) + " |")
    print("|---|" + "|".join("---" for _ in radii) + "|")
    print("| accuracy | " + " | ".join(f"{a:.3f}" for a in result["accuracy"].values()) + " |")
    return 0


def _denoised(args: argparse.Namespace, model, dataset, config: dict, info: dict):
    """``model`` itself, or with --denoiser D the model f∘D that the attack differentiates
    through (gradients through D and f); D's identity joins the run's config."""
    from smoothcert.certify.denoised import DenoisedClassifier
    from smoothcert.models.denoiser_sources import has_gradients

    device = next((p.device for p in model.parameters()), None)
    shape = tuple(dataset.info.input_shape)
    denoiser, denoiser_config, denoiser_info = _denoiser.load_denoiser_arg(
        args,
        sigma=args.noise_sigma,
        input_shape=shape,
        device=device or "cpu",
        dataset_name=dataset.info.name,
    )
    if denoiser is None:
        return model
    composed = DenoisedClassifier(denoiser, model)
    if not has_gradients(composed, shape, device or "cpu"):
        raise ValueError(
            f"no gradients flow through the denoiser {args.denoiser} and the classifier (a "
            "model run by ONNX Runtime computes none): the attack on f∘D needs PyTorch models"
        )
    config |= denoiser_config
    info |= denoiser_info
    return composed
