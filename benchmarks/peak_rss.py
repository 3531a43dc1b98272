"""Peak resident memory of one SmoothedClassifier.counts() call, measured in a fresh process
(run by benchmarks/run.py once per n so that the peaks do not mix):

    python benchmarks/peak_rss.py --arch cnn3 --n 1000000 --precision bf16
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _archs import INPUT_SHAPES, build  # noqa: E402

from smoothcert import SmoothedClassifier  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--arch",
        choices=[*sorted(INPUT_SHAPES), "linear"],
        default="cnn3",
        help="linear: a 784->10 linear layer on 1x28x28, to isolate counts()' own memory",
    )
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    args = p.parse_args(argv)
    if args.arch == "linear":
        model, shape = (
            torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)),
            (1, 28, 28),
        )
    else:
        model, _ = build(args.arch)
        shape = INPUT_SHAPES[args.arch]
    g = SmoothedClassifier(
        model, 10, 0.25, batch_size=args.batch_size, precision=args.precision, input_shape=shape
    )
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    counts = g.counts(x, args.n, generator=torch.Generator().manual_seed(1))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    record = {
        "arch": args.arch,
        "n": args.n,
        "precision": args.precision,
        "batch_size": args.batch_size,
        "peak_rss_mib": peak / 1024,
        "rss_before_counts_mib": before / 1024,
        "seconds": seconds,
        "total": int(counts.sum()),
    }
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
