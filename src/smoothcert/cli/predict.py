"""`smoothcert predict`: PREDICT on every selected example, stored like certify."""

from __future__ import annotations

import argparse
import sys

from smoothcert.cli import _common, _denoiser

NAME = "predict"
#: The flags naming the files this command writes (experiment stages are ordered by them).
OUTPUT_FLAGS = ("--out",)
#: Under torchrun each process writes a shard file (merged after).
DISTRIBUTED = "sharded"
# Library parameters named otherwise than their flags.
PARAMETER_FLAGS = {"max_examples": "--max", **_denoiser.PARAMETER_FLAGS}
HELP = "predict with the smoothed classifier on a dataset (Cohen et al. PREDICT)"
DESCRIPTION = (
    "Run PREDICT on every --skip-th example (--max in all), one committed row per example in --out "
    "(resumable). PREDICT returns g(x) or abstains with probability at least 1 - alpha."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _common.add_model_and_data(parser)
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise level σ in input units (default: the checkpoint's training σ)",
    )
    parser.add_argument("--n", type=int, default=1000, help="Monte-Carlo samples")
    parser.add_argument(
        "--alpha", type=float, default=0.001, help="failure probability (binomial test level)"
    )
    _common.add_classifier_options(parser)
    _denoiser.add_denoiser_options(parser)  # --denoiser: denoised smoothing
    parser.add_argument("--out", required=True, help="run file (.db) to create or resume")
    parser.add_argument(
        "--reference",
        default=None,
        help="a run with large n (certify or predict) on the same examples: "
        "report Table 4's five categories",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from smoothcert.analysis import check_reference, predict_categories
    from smoothcert.runs import PredictOptions, Selection, predict_dataset
    from smoothcert.runs.common import run_identity

    if args.reference:
        check_reference(args.reference)  # exists, and is a certify or predict run
    prepared = _common.prepare_smoothed_run(args, ("n", "skip", "max"), "predicting")
    classifier, dataset, out = prepared.classifier, prepared.dataset, prepared.out
    if args.reference and getattr(dataset, "labeled", True) is False:
        raise ValueError("--reference needs labeled data")
    if args.reference:
        identity = run_identity(classifier) | {"precision": classifier.precision}
        _check_reference_matches(args, out, prepared.config | identity)
        shared = _reference_overlap(args, len(dataset))

    def postfix(tally: dict, row: dict) -> dict:
        tally["correct"] = tally.get("correct", 0) + (row["correct"] or 0)  # None: no label
        tally["abstain"] = tally.get("abstain", 0) + int(row["prediction"] < 0)
        return {
            "acc": f"{tally['correct'] / tally['done']:.3f}",
            "abstain": f"{tally['abstain'] / tally['done']:.3f}",
        }

    bar = _common.RowProgress(args.no_progress, postfix, run=out)
    try:
        rows = predict_dataset(
            classifier,
            dataset,
            out,
            PredictOptions(n=args.n, alpha=args.alpha),
            Selection(skip=args.skip, max_examples=args.max, seed=args.seed, shard=prepared.shard),
            config=prepared.config,
            info=prepared.info,
            progress=bar,
            on_start=bar.start,
        )
    except KeyboardInterrupt:
        bar.close()
        print(f"smoothcert predict: {bar.interrupted()}", file=sys.stderr)
        return 130
    finally:
        bar.close()
    m = len(rows)
    accuracy = sum(r["correct"] or 0 for r in rows) / m if m else 0.0
    abstain = sum(r["prediction"] < 0 for r in rows) / m if m else 0.0
    shown = f"accuracy {accuracy:.3f}" if getattr(dataset, "labeled", True) else "no labels"
    print(f"{m} examples: {shown}, abstained {abstain:.3f} (n = {args.n}, alpha = {args.alpha})")
    if args.reference:
        categories = predict_categories(out, args.reference)
        covered = len(shared & {r["idx"] for r in rows})
        print(f"Table 4 categories over the {covered} of {m} examples the reference run holds:")
        print("| " + " | ".join(categories) + " |")
        print("|" + "|".join("---" for _ in categories) + "|")
        print("| " + " | ".join(f"{v:.3f}" for v in categories.values()) + " |")
    return 0


def _reference_overlap(args: argparse.Namespace, num_examples: int) -> set[int]:
    """The selected examples the reference run holds; none at all is refused before any work
    (the categories are computed over the shared examples only)."""
    from smoothcert.runs.common import select_indices
    from smoothcert.runs.store import RunStore

    with RunStore.read(args.reference) as ref:
        shared = set(select_indices(num_examples, args.skip, args.max)) & ref.done_indices()
    if not shared:
        raise ValueError(
            f"--reference {args.reference} holds none of the selected examples "
            "(same --skip and --max as the reference run?)"
        )
    return shared


def _check_reference_matches(args: argparse.Namespace, out: str, config: dict) -> None:
    """Before any example: the reference must be another run of the same model, σ, dataset
    and split (``config`` is what the predict run ``out`` will store), drawing other noise."""
    from pathlib import Path

    from smoothcert.analysis import check_independent_noise, check_reference
    from smoothcert.runs.common import PREDICT_NOISE_STREAM
    from smoothcert.runs.store import RunStore

    if Path(args.reference).resolve() == Path(out).resolve():
        raise ValueError(f"--reference {args.reference} is the --out run itself")
    check_reference(args.reference, config)
    with RunStore.read(args.reference) as ref:
        ref_kind, ref_config, ref_seed = ref.kind, ref.config, ref.info.get("seed_used")
    stream_config = {"n": args.n, "noise_stream": PREDICT_NOISE_STREAM}
    check_independent_noise("predict", stream_config, args.seed, ref_kind, ref_config, ref_seed)
