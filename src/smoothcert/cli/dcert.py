"""`smoothcert dcert`: the distributional certificate of the NAL paper (Theorem 1), certified
bound and estimate, against the empirical worst-case loss (Figure 2(a)), smoothed and
unsmoothed (Theorem 3)."""

from __future__ import annotations

import argparse
import math
import sys

from smoothcert._util.checks import ParameterError
from smoothcert.cli import _common

NAME = "dcert"
#: The flags naming the files this command writes (experiment stages are ordered by them).
OUTPUT_FLAGS = ("--out", "--plot")
HELP = "distributional robustness: certified bound, estimate and empirical worst case (NAL Thm 1)"
DESCRIPTION = (
    "Certified bound: from --bound-draws noise draws at each example, an upper bound on the "
    "expected loss min(CE, --clip) (and the 0-1 error) of any adversary that moves inputs by "
    "E‖x − x0‖² ≤ ρ_adv before the noise, holding with probability ≥ 1 − --delta if the "
    "examples are iid from the test distribution (docs/distributional.md). "
    "Estimate (not a bound): for every selected example and every γ of --gammas, "
    "sup_x {ℓ̂(x) − γ‖x − x0‖²} "
    "(ℓ̂ the loss smoothed at noise σ, one perturbation shared by the noise draws) by gradient "
    "ascent (best of --restarts starts), re-estimated with fresh draws; the estimate is "
    "γ·ρ_adv + mean sup at the γ of the grid that minimizes it on the even-position examples, "
    "estimated on the odd-position ones (ρ with the noise = "
    "ρ_adv + dσ²). The empirical worst case runs the same ascent at each --gamma-adv with "
    "independent draws. Everything is also computed at σ = 0 (WRM's certificate of the "
    "unsmoothed loss). Rows are committed to --out as they are produced; rerunning resumes, a "
    "larger --max extends the run (to the same numbers as a fresh run with that --max). "
    "Units: ρ in squared L2 input units ([0,1] pixels), γ in 1/input units², loss in nats."
)
#: dcert_dataset's parameters whose flag has another name (errors name the flag).
PARAMETER_FLAGS = {"batch_size": "--batch"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _common.add_model_and_data(parser)
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise level σ in input units (default: the checkpoint's training σ)",
    )
    parser.add_argument(
        "--gammas",
        type=float,
        nargs="+",
        default=[0.25, 0.5, 1.0, 1.5, 3.0],
        help="the estimate's grid of penalties γ (1/input units²)",
    )
    parser.add_argument(
        "--gamma-adv",
        type=float,
        nargs="+",
        default=[0.25, 0.5, 1.0, 2.0, 4.0],
        help="penalties γ_adv of the empirical worst-case adversary (NAL §5.1)",
    )
    parser.add_argument(
        "--rhos",
        type=float,
        nargs="+",
        default=None,
        help="ρ_adv values for the smoothed-vs-WRM table (default: the empirical ρ̂_adv)",
    )
    parser.add_argument("--steps", type=int, default=50, help="ascent steps per γ")
    parser.add_argument(
        "--step-size",
        type=float,
        default=None,
        help="ascent step η in input units² (default 0.25/γ)",
    )
    parser.add_argument(
        "--num-noise", type=int, default=8, help="noise draws per ascent step (σ > 0)"
    )
    parser.add_argument(
        "--num-eval",
        type=int,
        default=64,
        help="fresh noise draws to re-estimate ℓ̂ at the maximizer (σ > 0)",
    )
    parser.add_argument(
        "--restarts",
        type=int,
        default=None,
        help="starts per ascent, the best kept: x0 and random points at distance 1/√γ "
        "(default: 3 for a new run, what an existing run was made with)",
    )
    parser.add_argument(
        "--bound-draws",
        type=int,
        default=None,
        help="noise draws per example at x0 for the certified bound (0: none; default 1000 "
        "for a new run, what an existing run was made with)",
    )
    parser.add_argument(
        "--clip",
        type=float,
        default=10.0,
        help="M: the certified bound is for the cross-entropy clipped to [0, M] nats",
    )
    parser.add_argument(
        "--delta",
        type=float,
        default=0.05,
        help="the certified bound fails with probability at most this",
    )
    parser.add_argument(
        "--delta-draws",
        type=float,
        default=0.001,
        help="δ1: failure probability of each example's Monte Carlo bound (sets how many "
        "examples are counted at M)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=50,
        help="examples per block (seeded per block, so results depend on it); a block is "
        "computed whole, so a --max that is not a multiple of it costs the rest of its block",
    )
    parser.add_argument("--out", required=True, help="run file (.db) to create or resume")
    parser.add_argument("--plot", default=None, help="write the figure here (.png, .pdf)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_sigma(sigma: float | None) -> None:
    """σ = 0 (WRM) is always computed beside the smoothed estimate, so --sigma is > 0; checked
    before the model loads, with that hint."""
    if sigma is not None and not (math.isfinite(sigma) and sigma > 0):
        problem = f"must be > 0 and finite (σ = 0 is always computed too), got {sigma}"
        raise ParameterError("sigma", problem)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from smoothcert._util.checks import probability
    from smoothcert.analysis.dcert import dcert_report, plot_dcert
    from smoothcert.data.inputs import resolve_sigma
    from smoothcert.runs import select_indices
    from smoothcert.runs.common import checkpoint_identity
    from smoothcert.runs.dcert import dcert_dataset

    probability("delta", args.delta)
    probability("delta_draws", args.delta_draws)
    _common.finite("clip", args.clip, positive=True)
    for name in ("steps", "num_noise", "num_eval", "batch", "skip", "max", "restarts"):
        if name == "steps" and args.steps == 0:
            continue
        _common.positive_int(name.replace("_", "-"), getattr(args, name))
    _common.finite("step-size", args.step_size, positive=True)
    _common.finite("gammas", args.gammas, positive=True)
    _common.finite("gamma-adv", args.gamma_adv, positive=True)
    _common.finite("rhos", args.rhos, positive=False)
    _check_sigma(args.sigma)
    inputs = _common.load_inputs(args)
    model, meta, dataset = inputs.model, inputs.meta, inputs.dataset
    sigma = resolve_sigma(meta, args.sigma)
    model.eval()
    # Blocks are positions of every --skip-th example, so a larger --max extends the run to
    # exactly the rows a fresh run with that --max stores.
    selection = select_indices(len(dataset), args.skip)
    indices = selection[: args.max] if args.max is not None else selection
    config, info = checkpoint_identity(inputs.checkpoint, meta, sys.argv)
    config |= {"dataset": dataset.info.name, "split": args.split, "skip": args.skip}
    bar = tqdm(
        total=len(indices), disable=args.no_progress, unit="ex", dynamic_ncols=True,
        file=sys.stderr, desc="dcert",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total} ex "
        "[{elapsed} elapsed, {remaining} left, {rate_fmt}]",
    )  # fmt: skip
    try:
        result = dcert_dataset(
            model,
            dataset,
            args.out,
            sigma=sigma,
            gammas=args.gammas,
            gamma_adv=args.gamma_adv,
            indices=indices,
            selection=selection,
            batch_size=args.batch,
            seed=args.seed,
            config=config,
            info=info,
            progress=bar.update,
            steps=args.steps,
            step_size=args.step_size,
            num_noise=args.num_noise,
            num_eval=args.num_eval,
            restarts=args.restarts,
            bound_draws=args.bound_draws,
            clip=args.clip,
        )
    finally:
        bar.close()
    print(dcert_report(result, args.rhos, delta=args.delta, delta_draws=args.delta_draws))
    print(f"{len(indices)} examples in {args.out}")
    if args.plot:
        plot_dcert(result, args.plot, title=f"{_model_name(inputs)}, σ = {sigma:g}")
        print(f"wrote {args.plot}")
    return 0


def _model_name(inputs: _common.Inputs) -> str:
    """The model's file name for a plot title (an outside model's source when it has no file)."""
    if inputs.checkpoint is not None:
        return inputs.checkpoint.name
    return str(inputs.meta.get("source", "model"))
