"""`smoothcert certify`: CERTIFY every selected example, one committed row per example."""

from __future__ import annotations

import argparse
import math
import sys

from smoothcert.cli import _common, _denoiser

NAME = "certify"
#: The flags naming the files this command writes (experiment stages are ordered by them).
OUTPUT_FLAGS = ("--out", "--tsv")
#: Under torchrun each process writes a shard file (merged after).
DISTRIBUTED = "sharded"
# Library parameters named otherwise than their flags.
PARAMETER_FLAGS = {
    "max_examples": "--max",
    "adaptive_radii": "--radii",
    **_denoiser.PARAMETER_FLAGS,
}
HELP = "certify a model's smoothed classifier on a dataset (Cohen et al. CERTIFY)"
DESCRIPTION = (
    "Run CERTIFY on every --skip-th example (--max in all). Each example's result is committed to "
    "the SQLite run file --out as soon as it is produced; rerunning the same command resumes. "
    "With probability at least 1 - alpha per example, a non-abstaining prediction is the smoothed "
    "classifier's and is constant within the certified L2 radius (input units, [0,1] pixels)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _common.add_model_and_data(parser)
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise level σ in input units (default: the checkpoint's training σ)",
    )
    parser.add_argument("--n0", type=int, default=100, help="selection samples")
    parser.add_argument("--n", type=int, default=100_000, help="estimation samples")
    parser.add_argument(
        "--alpha", type=float, default=0.001, help="failure probability per example"
    )
    _common.add_classifier_options(parser)
    _denoiser.add_denoiser_options(parser)  # --denoiser: denoised smoothing
    parser.add_argument(
        "--adaptive",
        action="store_true",
        help="sequential CERTIFY: sample in rounds up to --n and stop once every --radii target "
        "is decided (same failure probability alpha; docs/adaptive.md)",
    )
    parser.add_argument(
        "--radii",
        type=float,
        nargs="+",
        default=None,
        help="target L2 radii for --adaptive (input units)",
    )
    # The plan options' defaults have one copy: smoothcert.certify.adaptive.AdaptiveOptions.
    from smoothcert.certify.adaptive import AdaptiveOptions

    defaults = AdaptiveOptions()
    parser.add_argument(
        "--n-first",
        type=int,
        default=defaults.n_first,
        help="--adaptive: the first look's sample size",
    )
    parser.add_argument(
        "--growth",
        type=float,
        default=defaults.growth,
        help="--adaptive: geometric growth of the looks",
    )
    parser.add_argument(
        "--futility",
        type=float,
        default=defaults.futility,
        help="--adaptive: level of the upper bound that gives up an unreachable radius "
        "(power only, never validity)",
    )
    parser.add_argument(
        "--final-share",
        type=float,
        default=defaults.final_share,
        help="--adaptive: share of alpha spent at the last look (n = --n)",
    )
    parser.add_argument("--out", required=True, help="run file (.db) to create or resume")
    parser.add_argument(
        "--tsv", default=None, help="also write the reference code's TSV format here"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _check_adaptive(args: argparse.Namespace) -> None:
    """Refuse bad --adaptive flags before the model is loaded. The plan options' ranges are
    AdaptiveOptions' own: its ParameterError names the option, and main() shows its flag."""
    from smoothcert.certify.adaptive import AdaptiveOptions

    if args.adaptive != (args.radii is not None):
        raise ValueError("--adaptive and --radii go together: give both or neither")
    if args.radii is not None and not all(math.isfinite(r) and r >= 0 for r in args.radii):
        raise ValueError(f"--radii must be finite and >= 0, got {args.radii}")
    AdaptiveOptions(
        n_first=args.n_first,
        growth=args.growth,
        futility=args.futility,
        final_share=args.final_share,
    )
    if args.adaptive and args.n_first > args.n:
        raise ValueError(f"--n-first must be at most --n ({args.n}), got {args.n_first}")


def _check_tsv(args: argparse.Namespace) -> None:
    """Refuse a --tsv that could only fail or lose data, before hours of work rather than after."""
    from smoothcert.runs import shards
    from smoothcert.runs.tsv import check_tsv_target

    if args.tsv is None:
        return
    shard = args.shard
    rank, world = shards.shard_from_env() if shard == "auto" else shards.parse_shard(shard)
    if world > 1:
        # Each shard would overwrite the TSV with its own examples only.
        every = shards.shard_path(args.out, "*", world)  # a glob of every shard file
        raise ValueError(
            f"--tsv cannot be used with a sharded run (shard {rank}/{world}): once every shard "
            f"is done, run `smoothcert merge {args.out} {every}` "
            f"then `smoothcert export {args.out} {args.tsv}`"
        )
    check_tsv_target(args.tsv, args.out)


def run(args: argparse.Namespace) -> int:
    from smoothcert.analysis import analyze, format_table
    from smoothcert.certify.adaptive import AdaptiveOptions
    from smoothcert.runs import CertifyOptions, Selection, certify_dataset, export_tsv

    _check_adaptive(args)
    _check_tsv(args)
    prepared = _common.prepare_smoothed_run(
        args, ("n0", "n", "skip", "max", "n_first"), "certifying"
    )
    out = prepared.out
    if args.n0 > args.n:
        _common.warn(
            f"--n0 {args.n0} is larger than --n {args.n}: the selection draws more samples "
            "than the estimation the radius comes from (usually n0 is far smaller than n)"
        )

    def postfix(tally: dict, row: dict) -> dict:
        tally["certified"] = tally.get("certified", 0) + int(
            row["correct"] and row["prediction"] >= 0
        )
        tally["seconds"] = tally.get("seconds", 0.0) + row["seconds"]
        return {
            "cert_acc": f"{tally['certified'] / tally['done']:.3f}",
            "s_per_ex": f"{tally['seconds'] / tally['done']:.2f}",
        }

    bar = _common.RowProgress(args.no_progress, postfix, run=out)
    try:
        rows = certify_dataset(
            prepared.classifier,
            prepared.dataset,
            out,
            CertifyOptions(
                n0=args.n0,
                n=args.n,
                alpha=args.alpha,
                adaptive_radii=args.radii,
                adaptive_options=(
                    AdaptiveOptions(
                        n_first=args.n_first,
                        growth=args.growth,
                        futility=args.futility,
                        final_share=args.final_share,
                    )
                    if args.radii
                    else None
                ),
            ),
            Selection(skip=args.skip, max_examples=args.max, seed=args.seed, shard=prepared.shard),
            config=prepared.config,
            info=prepared.info,
            progress=bar,
            on_start=bar.start,
        )
    except KeyboardInterrupt:
        bar.close()
        print(f"smoothcert certify: {bar.interrupted()}", file=sys.stderr)
        return 130
    finally:
        bar.close()
    if rows:  # a shard can be given no examples (more shards than examples)
        print(format_table(analyze([out]), "markdown"))
    print(f"{len(rows)} examples in {out}")
    if args.tsv:  # never sharded (_check_tsv): out is --out
        export_tsv(out, args.tsv)
        print(f"wrote {args.tsv}")
    return 0
