"""Sound mode's cost: SmoothedClassifier.counts() samples per second with sound=True (8-bit
grid noise from random integers) over the standard path (x + σε), measured alternately in
the same run, standard first in even rounds and sound first in odd ones; the median of the
per-round ratios is the result (absolute rates on a shared machine are noisy).

    python benchmarks/sound_throughput.py                       # cnn3, 1x28x28, fp32
    python benchmarks/sound_throughput.py --arch resnet20 --precision bf16
    python benchmarks/sound_throughput.py --arch linear         # the noise's own cost
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _archs import INPUT_SHAPES, build  # noqa: E402

from smoothcert.bench.throughput import counts_rate, machine  # noqa: E402
from smoothcert.certify.smoothing import SmoothedClassifier  # noqa: E402


def _model(arch: str) -> tuple[nn.Module, tuple[int, ...], str]:
    if arch == "linear":  # almost free: what remains is the noise and the input arithmetic
        shape = INPUT_SHAPES["cnn3"]
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 10)), shape, "a 784x10 linear layer"
    model, source = build(arch)
    return model, INPUT_SHAPES[arch], source


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=sorted(INPUT_SHAPES) + ["linear"], default="cnn3")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--batches-per-round", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", action="store_true", help="print the JSON record only")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    model, shape, source = _model(args.arch)
    model.eval()
    levels = torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(0))
    x = levels.float() / 255  # an input on the 8-bit grid, which sound mode requires
    paths = {
        mode: SmoothedClassifier(
            model,
            10,
            args.sigma,
            batch_size=args.batch_size,
            input_shape=shape,
            precision=args.precision,
            sound=(mode == "sound"),
        )  # fmt: skip
        for mode in ("standard", "sound")
    }
    n = args.batch_size * args.batches_per_round
    for g in paths.values():  # warm-up (and the noise table, built once per σ)
        counts_rate(g, x, args.batch_size)
    rates: dict[str, list[float]] = {mode: [] for mode in paths}
    for r in range(args.rounds):
        order = ("standard", "sound") if r % 2 == 0 else ("sound", "standard")
        for mode in order:
            rates[mode].append(counts_rate(paths[mode], x, n, seed=r))
    ratios = [s / t for s, t in zip(rates["sound"], rates["standard"], strict=True)]
    record = {
        "machine": machine(),
        "arch": args.arch,
        "model_source": source,
        "input_shape": list(shape),
        "precision": args.precision,
        "sigma": args.sigma,
        "batch_size": args.batch_size,
        "samples_per_round": n,
        "rates": rates,
        "ratio_sound_over_standard": statistics.median(ratios),
        "ratios": ratios,
    }
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    m = record["machine"]
    print(
        f"{args.arch} {shape} σ={args.sigma} {args.precision} batch {args.batch_size} "
        f"({source}; {m['torch_threads']} threads, torch {m['torch']})"
    )
    for mode in ("standard", "sound"):
        print(f"  counts() {mode:9s} {statistics.median(rates[mode]):10.0f} samples/s (median)")
    ratio = record["ratio_sound_over_standard"]
    print(
        f"  sound/standard: {ratio:.3f} (median of {args.rounds} per-round ratios; "
        f"{100 * (1 - ratio):.1f}% lower throughput)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
