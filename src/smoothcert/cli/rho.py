"""`smoothcert rho`: transport costs of the Lagrangian adversary (NAL paper Eq. 8)."""

from __future__ import annotations

import argparse
from pathlib import Path

from smoothcert._util import checks
from smoothcert.cli import _common

NAME = "rho"
#: The flags naming the files this command writes (experiment stages are ordered by them).
OUTPUT_FLAGS = ("--json",)  # ρ writes its record to --json; it has no --out
# Library parameters named otherwise than their flags.
PARAMETER_FLAGS = {"batch_size": "--batch", "max_examples": "--max"}
HELP = "mean transport cost ρ (with noise), ρ_adv (without) and ε = √ρ_adv (NAL Eq. 8)"
DESCRIPTION = (
    "Run the surrogate ascent max_x (1/s) Σ_j [ℓ(x + z_j) − γ‖x + z_j − x0‖²] (Algorithm 1, "
    "lines 3–6; WRM's when σ = 0) from every selected example and report the mean transport "
    "cost with the noise, ρ = E‖x_K + z − x0‖², without it, ρ_adv = E‖x_K − x0‖², and the "
    "matched L2 attack radius ε = √ρ_adv."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _common.add_model_and_data(parser)
    parser.set_defaults(split="train")  # Eq. 8 averages over the training set
    parser.add_argument("--gamma", type=float, required=True, help="penalty γ (1/input units²)")
    parser.add_argument(
        "--sigma", type=float, default=0.0, help="noise std σ (input units); 0 for WRM"
    )
    parser.add_argument(
        "--num-noise", type=int, default=None, help="noise draws s per step (default 4, 1 if σ=0)"
    )
    parser.add_argument("--steps", type=int, default=15, help="ascent steps (count)")
    parser.add_argument(
        "--step-size", type=float, default=None, help="ascent step η1 (default 0.5/γ)"
    )
    parser.add_argument(
        "--cost-without-noise",
        action="store_true",
        help="penalize c(x, x0) instead of c(x + z, x0) (the ablation of Fig. 2(b)); its "
        "gradient is that of the expectation E_z c(x + z, x0), so rho_adv is the adversary's "
        "own displacement, without the mean of the sampled noise",
    )
    parser.add_argument("--batch", type=int, default=128, help="examples per batch")
    parser.add_argument(
        "--json",
        default=None,
        metavar="FILE",
        help="also write the result (and the arguments behind it) to this JSON file",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from smoothcert.distributional.transport import transport_cost
    from smoothcert.runs import select_indices

    for name in ("batch", "skip", "max", "num_noise"):
        _common.positive_int(name, getattr(args, name))
    checks.integer_at_least("steps", args.steps, 0)
    _common.finite("gamma", args.gamma, positive=True)
    _common.finite("sigma", args.sigma, positive=False)
    _common.finite("step_size", args.step_size, positive=True)
    num_noise = args.num_noise or (1 if args.sigma == 0 else 4)
    json_path = Path(args.json) if args.json else None
    if json_path is not None:  # before minutes of ascent
        _common.check_json_target(json_path, args.checkpoint or Path(args.model or ""))
    inputs = _common.load_inputs(args)
    model, dataset = inputs.model, inputs.dataset
    indices = select_indices(len(dataset), args.skip, args.max)
    data = dataset.batch(indices)
    result = transport_cost(
        model,
        data,
        args.gamma,
        sigma=args.sigma,
        num_noise=num_noise,
        steps=args.steps,
        step_size=args.step_size,
        cost_with_noise=not args.cost_without_noise,
        batch_size=args.batch,
        seed=args.seed,
        progress=not args.no_progress,
    )
    d = dataset.info.input_shape[0] * dataset.info.input_shape[1] * dataset.info.input_shape[2]
    print(
        f"{result.num_examples} {args.split} examples, gamma = {args.gamma}, sigma = {args.sigma},"
        f" s = {num_noise}, {args.steps} steps of {args.step_size or 0.5 / args.gamma:g}"
    )
    print(
        f"rho     (with noise)    = {result.rho:.4f} ± {result.rho_se:.4f}"
        f"   (d·σ² = {d * args.sigma**2:.4f})"
    )
    print(f"rho_adv (without noise) = {result.rho_adv:.4f} ± {result.rho_adv_se:.4f}")
    print(f"eps = sqrt(rho_adv)     = {result.eps:.4f}")
    print(f"adversarial loss = {result.loss:.4f}, final gradient norm = {result.grad_norm:.4g}")
    if json_path is not None:
        from smoothcert.runs.rho import rho_record, write_rho

        record = rho_record(
            result,
            checkpoint=str(inputs.checkpoint),
            split=args.split,
            gamma=args.gamma,
            sigma=args.sigma,
            num_noise=num_noise,
            steps=args.steps,
            step_size=args.step_size or 0.5 / args.gamma,
            cost_with_noise=not args.cost_without_noise,
            seed=args.seed,
        )
        write_rho(json_path, record)
    return 0
