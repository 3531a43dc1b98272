"""LeNet's certification throughput with smoothcert's 2×2 max-pooling (MaxPool2x2) against the
same model with torch's nn.MaxPool2d(2): samples/s of SmoothedClassifier.counts() for each,
alternating round by round in one run, and their ratio (the counts are identical: the pooling
is exact).

    python benchmarks/pool_throughput.py                             # bf16 + channels-last
    python benchmarks/pool_throughput.py --precision fp32 --no-channels-last --threads 1
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys

import torch
from torch import nn

from smoothcert import SmoothedClassifier
from smoothcert.bench.throughput import counts_rate, machine, set_layout
from smoothcert.models import create_model
from smoothcert.models.pooling import MaxPool2x2


def with_torch_pooling(model: nn.Module) -> nn.Module:
    """A copy of ``model`` whose MaxPool2x2 layers are nn.MaxPool2d(2)."""
    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, MaxPool2x2):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, nn.MaxPool2d(2))
    return model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    p.add_argument("--no-channels-last", dest="channels_last", action="store_false")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--samples", type=int, default=20_000, help="noisy samples per measurement")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    fast = create_model("lenet", 10, (1, 28, 28), [0.1307], [0.3081]).eval()
    models = {"MaxPool2x2": fast, "nn.MaxPool2d": with_torch_pooling(fast)}
    x = torch.rand(1, 28, 28, generator=torch.Generator().manual_seed(0))
    gs = {
        name: SmoothedClassifier(
            m,
            10,
            0.25,
            batch_size=args.batch_size,
            precision=args.precision,
            channels_last=args.channels_last,
        )  # fmt: skip
        for name, m in models.items()
    }
    gen = torch.Generator().manual_seed(0)
    a, b = (g.counts(x, args.batch_size, generator=gen.manual_seed(0)) for g in gs.values())
    assert torch.equal(torch.as_tensor(a), torch.as_tensor(b)), "the two poolings disagree"
    rates: dict[str, list[float]] = {name: [] for name in gs}
    for r in range(args.rounds):
        for name, g in gs.items():
            set_layout(models[name], args.channels_last)
            rates[name].append(counts_rate(g, x, args.samples, seed=r))
    median = {name: statistics.median(v) for name, v in rates.items()}
    info = machine()
    layout = " + channels-last" if args.channels_last else ""
    print(
        f"lenet 1x28x28, batch {args.batch_size}, {args.precision}{layout}, "
        f"{info['torch_threads']} thread(s), torch {torch.__version__}, "
        f"median of {args.rounds} rounds of {args.samples} samples"
    )
    for name, rate in median.items():
        print(f"  counts() with {name:13s} {rate:10.0f} samples/s")
    print(f"  ratio MaxPool2x2 / nn.MaxPool2d: {median['MaxPool2x2'] / median['nn.MaxPool2d']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
