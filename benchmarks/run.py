"""The throughput benchmark: one JSON record and a short table.

For each model (cnn3 on 1x28x28, resnet20 on 3x32x32), measured round-robin in one run so that
all figures see the same load of this shared machine (absolute samples/s are noisy; ratios are
the result):
- forward-only samples/s over pre-generated inputs and counts() samples/s, and their ratio,
  for fp32, fp32 + channels-last, bf16 autocast, bf16 + channels-last;
- the fastest path's speedup over plain fp32 counts(), and over the plain pseudocode baseline
  (benchmarks/baseline.py: one example at a time, repeat + randn_like, Python counting);
- the automatically chosen batch size (and the throughput it measured per size);
- how often the bf16 and fp32 base classifiers disagree on noisy real test images;
- peak RSS of counts() at two n, each in a fresh process (benchmarks/peak_rss.py);
- the adaptive mode's summary, read from benchmarks/adaptive_vs_fixed.py's output if given.

    python benchmarks/run.py --out benchmarks/results/run.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _archs import INPUT_SHAPES, build  # noqa: E402
from baseline import plain_counts  # noqa: E402

from smoothcert.bench.throughput import benchmark, machine  # noqa: E402

DATASETS = {"cnn3": "mnist", "resnet20": "cifar10"}


def load_model(arch: str, checkpoint: str | None) -> tuple[torch.nn.Module, str]:
    if checkpoint:
        from smoothcert.models.checkpoint import load_checkpoint

        model, _ = load_checkpoint(checkpoint)
        return model.eval(), f"checkpoint {checkpoint}"
    return build(arch)


def test_images(arch: str, images: int) -> list[torch.Tensor]:
    """The first ``images`` real test images of the model's dataset (none if it is missing)."""
    if images <= 0:
        return []
    from smoothcert.data import load_dataset

    try:
        ds = load_dataset(DATASETS[arch], "test")
    except FileNotFoundError as exc:
        print(f"{arch}: no bf16/fp32 disagreement ({exc})", file=sys.stderr)
        return []
    return [torch.as_tensor(ds[i][0]) for i in range(min(images, len(ds)))]


def peak_rss(arch: str, n: int, precision: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(HERE / "peak_rss.py"), "--arch", arch, "--n", str(n),
         "--precision", precision],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout)


def bench_model(arch: str, args: argparse.Namespace) -> dict:
    """smoothcert.bench.throughput.benchmark (what `smoothcert bench` measures) with the pseudocode
    baseline in every round, plus peak RSS at two n in fresh processes."""
    model, source = load_model(arch, getattr(args, f"{arch}_checkpoint"))
    x = torch.rand(INPUT_SHAPES[arch], generator=torch.Generator().manual_seed(0))

    def plain(n: int) -> None:
        plain_counts(model, x, 10, args.sigma, n, args.batch_size)

    record = {
        "arch": arch,
        "model": source,
        "disagreement_dataset": DATASETS[arch],
        **benchmark(
            model, x, num_classes=10, sigma=args.sigma, batch_size=args.batch_size,
            rounds=args.rounds, batches_per_round=args.batches_per_round,
            disagreement_inputs=test_images(arch, args.disagreement_images),
            disagreement_draws=args.disagreement_draws, baseline=plain,
        ),
    }  # fmt: skip
    rss_n = args.rss_n if arch == "cnn3" else args.rss_n_resnet20
    if rss_n:
        record["peak_rss"] = [peak_rss(arch, n, "bf16") for n in rss_n]
    return record


def table(record: dict) -> str:
    mach = record["machine"]
    lines = [
        f"machine: {mach['cores']} cores, {mach['torch_threads']} torch threads, "
        f"torch {mach['torch']} ({mach['cpu_capability']})",
        f"{'model':9} {'path':20} {'forward/s':>10} {'counts/s':>10} {'ratio':>6}",
    ]
    for r in record["models"]:
        for name, c in r["paths"].items():
            lines.append(
                f"{r['arch']:9} {name:20} {c['forward_samples_per_s']:10.0f} "
                f"{c['counts_samples_per_s']:10.0f} {c['ratio']:6.3f}"
            )
        lines.append(
            f"{r['arch']:9} fastest={r['fastest']}: {r['fastest_over_fp32']:.2f}x plain fp32 "
            f"counts, {r['speedup_over_baseline']:.1f}x the pseudocode baseline "
            f"({r['baseline_samples_per_s']:.0f}/s; "
            f"fp32 alone {r['fp32_speedup_over_baseline']:.1f}x)"
        )
        auto = r["auto_batch_size"]
        lines.append(f"{r['arch']:9} auto batch size ({auto['path']}): {auto['chosen']}")
        d = r.get("bf16_fp32_disagreement")
        if d:
            lines.append(
                f"{r['arch']:9} bf16 vs fp32 disagree on {d['disagreements']}/"
                f"{d['inputs'] * d['draws']} noisy {r['disagreement_dataset']} inputs "
                f"({100 * d['rate']:.3f}%)"
            )
        for p in r.get("peak_rss", []):
            lines.append(
                f"{r['arch']:9} peak RSS n={p['n']:>8}: {p['peak_rss_mib']:.0f} MiB "
                f"({p['seconds']:.0f} s)"
            )
    if "adaptive" in record:
        a = record["adaptive"]
        lines.append(f"adaptive: {json.dumps(a)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--models", nargs="+", choices=sorted(INPUT_SHAPES), default=["cnn3", "resnet20"]
    )
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument(
        "--batches-per-round",
        type=int,
        default=8,
        help="distinct pre-generated batches per measurement: with 2, sub-second measurements "
        "scatter by about ±7%% per round (docs/performance.md, runs 4 and 5)",
    )
    p.add_argument("--cnn3-checkpoint", default=None)
    p.add_argument("--resnet20-checkpoint", default=None)
    p.add_argument("--disagreement-images", type=int, default=100)
    p.add_argument("--disagreement-draws", type=int, default=100)
    p.add_argument("--rss-n", type=int, nargs="*", default=[10_000, 1_000_000])
    p.add_argument("--rss-n-resnet20", type=int, nargs="*", default=[10_000, 100_000])
    p.add_argument("--adaptive-summary", default=None, help="JSON from adaptive_vs_fixed.py")
    p.add_argument("--out", default=None, help="also write the JSON record here")
    args = p.parse_args(argv)

    record: dict = {"machine": machine(), "models": [bench_model(a, args) for a in args.models]}
    if args.adaptive_summary:
        record["adaptive"] = json.loads(Path(args.adaptive_summary).read_text())["summary"]
    text = json.dumps(record, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(table(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
