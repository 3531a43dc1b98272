"""Choose the adaptive plan's defaults (growth, futility β, final share s) without touching the
images the procedure is evaluated on (the first test images; benchmarks/adaptive_vs_fixed.py).

1. ``screen``: estimate pA on HELD-OUT test images (default: the last 400 of the test set) with
   a fixed number of draws, and more draws where any draw disagrees with the top class. One
   JSON line per image (resumable).
2. ``simulate``: replay the adaptive procedure (smoothcert.certify.adaptive.run_plan, the code that
   certifies) and fixed-n CERTIFY on Binomial draws at those pA, for a grid of plans, and print
   the mean base-classifier evaluations and the expected certified-accuracy difference
   (percentage points) at each radius. Images whose screening draws all agree are simulated
   at pA = 1.

    python benchmarks/adaptive_tuning.py screen --checkpoint CKPT --out screen.jsonl
    python benchmarks/adaptive_tuning.py simulate --screen screen.jsonl
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from smoothcert.certify.adaptive import plan_looks, run_plan
from smoothcert.certify.stats import certify_decision, lower_confidence_bound


def screen(args: argparse.Namespace) -> None:
    from smoothcert import SmoothedClassifier
    from smoothcert.data import load_dataset
    from smoothcert.models.checkpoint import load_checkpoint

    ds = load_dataset(args.dataset, "test")
    model, _ = load_checkpoint(args.checkpoint)
    g = SmoothedClassifier(model.eval(), 10, args.sigma, batch_size=512, precision="bf16")
    out = Path(args.out)
    done = (
        {json.loads(line)["index"] for line in out.read_text().splitlines()}
        if out.exists()
        else set()
    )
    start = len(ds) - args.images if args.start is None else args.start
    with out.open("a") as f:
        for i in range(start, start + args.images):
            if i in done:
                continue
            x, label = ds[i]
            gen = torch.Generator().manual_seed(10_000_019 + i)  # not the evaluation's seeds
            counts = g.counts(x, args.draws, generator=gen)
            if counts.max() < counts.sum():
                counts = counts + g.counts(x, args.more_draws, generator=gen)
            row = {"index": i, "label": int(label), "counts": counts.tolist()}
            f.write(json.dumps(row) + "\n")
            f.flush()


def _fixed(p: float, n0: int, n: int, alpha: float, sigma: float, rng) -> float:
    """Fixed-n CERTIFY's radius on simulated draws (class 0 is the top class, ĉA = 0 unless
    the selection picks the rest)."""
    k0 = rng.binomial(n0, p)
    if k0 < n0 - k0:
        return -1.0
    pl = float(lower_confidence_bound(rng.binomial(n, p), n, alpha))
    prediction, radius = certify_decision(0, pl, sigma)
    return radius if prediction == 0 else -1.0


def _count_from_bound(p_a_lower: float, n: int, alpha: float) -> int:
    """The k with lower_confidence_bound(k, n, α) = p_a_lower (older rows stored only the
    bound; it is strictly increasing in k, so bisection recovers k exactly). The tolerance
    1e-9 absorbs stats.LEVEL_MARGIN, which moved bounds by < 1e-10 after those rows were
    written, and is far below the gap between consecutive k (≥ 1e-6 up to n = 10⁶)."""
    lo, hi = 0, n
    while lo < hi:
        mid = (lo + hi) // 2
        if float(lower_confidence_bound(mid, n, alpha)) < p_a_lower - 1e-9:
            lo = mid + 1
        else:
            hi = mid
    return lo


def load_images(args: argparse.Namespace) -> list[tuple[float, bool]]:
    """(pA, top class correct) per image: from a screen file, or (--fixed-rows) from the rows
    of a fixed-n run of adaptive_vs_fixed.py, pA = n_a / n (an abstention counts as wrong)."""
    rows = [json.loads(line) for line in Path(args.screen).read_text().splitlines()]
    images = []
    for r in rows:
        if args.fixed_rows:
            k = r["n_a"] if "n_a" in r else _count_from_bound(r["p_a_lower"], r["n"], args.alpha)
            p = 1.0 if k == r["n"] else k / r["n"]
            images.append((p, bool(r["correct"])))
            continue
        c = np.asarray(r["counts"])
        top = int(c.argmax())
        p = 1.0 if c[top] == c.sum() else c[top] / c.sum()
        images.append((p, top == r["label"]))
    return images


def simulate(args: argparse.Namespace) -> None:
    images = load_images(args)
    radii = sorted(args.radii)
    print(f"{len(images)} images; {sum(p < 1 for p, _ in images)} with some disagreement")
    rng = np.random.default_rng(0)

    def draws(p: float):
        return lambda m: np.array([rng.binomial(m, p), 0]) if p < 1 else np.array([m, 0])

    # fixed-n reference: P(certified at r) per image, by simulation
    fixed = []
    for p, _ in images:
        reps = 1 if p == 1 else args.reps
        rad = [_fixed(p, args.n0, args.n, args.alpha, args.sigma, rng) for _ in range(reps)]
        fixed.append([np.mean([x >= r for x in rad]) for r in [0.0, *radii]])
    fixed = np.asarray(fixed)
    correct = np.array([c for _, c in images], dtype=float)
    print("growth  futility  share  mean_evals  ratio  max|diff| pp per radius")
    for growth, beta, share in itertools.product(args.growth, args.futility, args.final_share):
        plan = plan_looks(
            radii, args.sigma, args.alpha, args.n, n_first=100, growth=growth,
            futility=beta, final_share=share,
        )  # fmt: skip
        evals, cert = [], []
        for p, _ in images:
            reps = 1 if p == 1 else args.reps
            e, c = [], []
            for _ in range(reps):
                a = run_plan(plan, draws(p), args.n0)
                e.append(args.n0 + a.n)
                c.append([a.prediction == 0, *a.certified])
            evals.append(np.mean(e))
            cert.append(np.mean(c, axis=0))
        diff = 100 * ((np.asarray(cert) - fixed) * correct[:, None]).mean(axis=0)
        mean = float(np.mean(evals))
        print(
            f"{growth:6.2f}  {beta:8.3f}  {share:5.2f}  {mean:10.0f}  "
            f"{(args.n0 + args.n) / mean:5.2f}  " + " ".join(f"{d:+.2f}" for d in diff)
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("screen")
    s.add_argument("--checkpoint", required=True)
    s.add_argument("--dataset", default="mnist")
    s.add_argument("--sigma", type=float, default=0.25)
    s.add_argument("--images", type=int, default=400)
    s.add_argument("--start", type=int, default=None, help="default: the last --images")
    s.add_argument("--draws", type=int, default=5000)
    s.add_argument("--more-draws", type=int, default=20_000)
    s.add_argument("--out", required=True)
    m = sub.add_parser("simulate")
    m.add_argument("--screen", required=True, help="screen JSON lines (or --fixed-rows)")
    m.add_argument(
        "--fixed-rows",
        action="store_true",
        help="--screen is a fixed-n run of adaptive_vs_fixed.py: report the expected "
        "evaluations on its images (a measurement, not for choosing the plan)",
    )
    m.add_argument("--sigma", type=float, default=0.25)
    m.add_argument("--alpha", type=float, default=0.001)
    m.add_argument("--n0", type=int, default=100)
    m.add_argument("--n", type=int, default=100_000)
    m.add_argument("--radii", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    m.add_argument("--reps", type=int, default=40)
    m.add_argument("--growth", type=float, nargs="+", default=[1.5, 2.0, 3.0])
    m.add_argument("--futility", type=float, nargs="+", default=[0.001, 0.01, 0.05, 0.2])
    m.add_argument("--final-share", type=float, nargs="+", default=[0.25, 0.5])
    args = p.parse_args(argv)
    screen(args) if args.command == "screen" else simulate(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
