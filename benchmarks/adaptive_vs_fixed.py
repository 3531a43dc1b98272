"""Adaptive vs fixed-n CERTIFY on the SAME test images: certified accuracy at each radius and
base-classifier evaluations per image. One JSON line per image is appended to --fixed-out or
--adaptive-out as it is done (rerunning resumes; --modes runs one mode alone, e.g. in two
processes), and a summary over the images done in both modes is written to --summary
(benchmarks/run.py --adaptive-summary reads it).

    python benchmarks/adaptive_vs_fixed.py --checkpoint runs/mnist-cnn3-g025/best.safetensors \\
        --images 100 --precision bf16 --fixed-out benchmarks/results/fixed_mnist.jsonl \\
        --adaptive-out benchmarks/results/adaptive_mnist.jsonl \\
        --summary benchmarks/results/adaptive_mnist_summary.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from smoothcert import ABSTAIN, SmoothedClassifier
from smoothcert.certify.adaptive import AdaptiveOptions, certify_adaptive


def summarize(rows: list[dict], radii: list[float]) -> dict:
    """Certified accuracy (correct and radius ≥ r; abstentions count as wrong) per mode at
    radius 0 and each target radius, over the images done in both modes."""
    by_mode: dict[str, dict[int, dict]] = {"fixed": {}, "adaptive": {}}
    for r in rows:
        by_mode[r["mode"]][r["index"]] = r
    common = sorted(set(by_mode["fixed"]) & set(by_mode["adaptive"]))
    out: dict = {"images": len(common), "radii": [0.0, *radii]}
    for mode, done in by_mode.items():
        sel = [done[i] for i in common]
        acc = []
        for rad in out["radii"]:
            if mode == "adaptive" and rad > 0:
                k = radii.index(rad)
                ok = [r["correct"] and r["certified"][k] for r in sel]
            else:
                ok = [r["correct"] and r["radius"] >= rad for r in sel]
            acc.append(float(np.mean(ok)) if sel else float("nan"))
        evals = [r["n0"] + r["n"] for r in sel]
        out[mode] = {
            "certified_accuracy": acc,
            "mean_evaluations": float(np.mean(evals)) if sel else float("nan"),
            "mean_seconds": float(np.mean([r["seconds"] for r in sel])) if sel else float("nan"),
        }
    if common:
        out["accuracy_difference_points"] = [
            100 * (a - f)
            for a, f in zip(
                out["adaptive"]["certified_accuracy"],
                out["fixed"]["certified_accuracy"],
                strict=True,
            )
        ]
        out["evaluation_ratio"] = (
            out["fixed"]["mean_evaluations"] / out["adaptive"]["mean_evaluations"]
        )
        out["seconds_ratio"] = out["fixed"]["mean_seconds"] / out["adaptive"]["mean_seconds"]
        adaptive = [by_mode["adaptive"][i] for i in common]
        fixed = [by_mode["fixed"][i] for i in common]
        stops: dict[int, int] = {}
        for r in adaptive:
            stops[r["n"]] = stops.get(r["n"], 0) + 1
        out["adaptive_stops"] = {str(k): v for k, v in sorted(stops.items())}
        out["images_differing"] = [
            sum(
                (f["correct"] and f["radius"] >= rad)
                != (a["correct"] and (a["certified"][radii.index(rad)] if rad > 0 else True))
                for f, a in zip(fixed, adaptive, strict=True)
            )
            for rad in out["radii"]
        ]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="default: an untrained cnn3 (dry run)")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--images", type=int, default=100, help="the first N test images")
    p.add_argument("--start", type=int, default=0, help="skip the images before this index")
    p.add_argument(
        "--shard", default="0/1", help="K/W: only images with index %% W == K (parallel processes)"
    )
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--n0", type=int, default=100)
    p.add_argument("--n", type=int, default=100_000, help="fixed n, and n_max of adaptive")
    p.add_argument("--alpha", type=float, default=0.001)
    p.add_argument("--radii", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    plan = AdaptiveOptions()  # the library's defaults
    p.add_argument("--n-first", type=int, default=plan.n_first)
    p.add_argument("--growth", type=float, default=plan.growth)
    p.add_argument("--futility", type=float, default=plan.futility)
    p.add_argument("--final-share", type=float, default=plan.final_share)
    p.add_argument("--no-align", action="store_true", help="geometric looks only")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--modes", nargs="+", choices=("fixed", "adaptive"), default=["fixed", "adaptive"]
    )
    p.add_argument("--fixed-out", required=True, help="JSON lines, appended (resumable)")
    p.add_argument("--adaptive-out", required=True, help="JSON lines, appended (resumable)")
    p.add_argument("--summary", default=None)
    args = p.parse_args(argv)

    from smoothcert.data import load_dataset

    ds = load_dataset(args.dataset, "test")
    if args.checkpoint:
        from smoothcert.models.checkpoint import load_checkpoint

        model, meta = load_checkpoint(args.checkpoint)
    else:
        from smoothcert.models import create_model

        x0, _ = ds[0]
        c = x0.shape[0]
        model = create_model("cnn3", 10, tuple(x0.shape), (0.5,) * c, (0.25,) * c)
    g = SmoothedClassifier(
        model.eval(), 10, args.sigma, batch_size=args.batch_size, precision=args.precision
    )
    files = {"fixed": Path(args.fixed_out), "adaptive": Path(args.adaptive_out)}
    rows = []
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            rows += [json.loads(line) for line in path.read_text().splitlines()]
    done = {(r["index"], r["mode"]) for r in rows}
    shard, world = (int(v) for v in args.shard.split("/"))
    for i in range(args.start + shard, args.images, world):
        x, label = ds[i]
        for mode in args.modes:
            if (i, mode) in done:
                continue
            gen = torch.Generator().manual_seed(args.seed * 1_000_003 + i)
            t0 = time.perf_counter()
            if mode == "fixed":
                cert = g.certify(x, args.n0, args.n, args.alpha, generator=gen)
                certified = None
            else:
                cert = certify_adaptive(
                    g, x, args.radii, args.alpha, n0=args.n0, n_max=args.n,
                    n_first=args.n_first, growth=args.growth, futility=args.futility,
                    final_share=args.final_share, align=not args.no_align, generator=gen,
                )  # fmt: skip
                certified = list(cert.certified)
            row = {
                "index": i,
                "label": int(label),
                "mode": mode,
                "prediction": cert.prediction,
                "correct": cert.prediction == int(label) and cert.prediction != ABSTAIN,
                "radius": cert.radius,
                "p_a_lower": cert.p_a_lower,
                "n0": int(cert.counts_selection.sum()),
                "n": cert.n,
                "n_a": cert.n_a,
                "certified": certified,
                "seconds": time.perf_counter() - t0,
                "precision": g.precision,
                "batch_size": g.batch_size,
            }
            with files[mode].open("a") as f:
                f.write(json.dumps(row) + "\n")
            rows.append(row)
    summary = {
        "settings": {
            k: v
            for k, v in vars(args).items()
            if k not in ("fixed_out", "adaptive_out", "summary", "modes", "shard", "start")
        },
        "summary": summarize(rows, sorted(args.radii)),
    }
    text = json.dumps(summary, indent=2)
    print(text)
    if args.summary:
        Path(args.summary).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
