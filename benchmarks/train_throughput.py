"""Training throughput: `smoothcert train`'s loop against a plain PyTorch loop, per path.

For cnn3 (1×28×28) and resnet20 (3×32×32), and for each path (fp32; fp32 + channels-last;
bf16 autocast; bf16 + channels-last), measured round-robin in one run so that every figure
sees the same load of the machine:

- smoothcert: ``smoothcert.training.train`` with Gaussian noise (σ = 0.25) for one epoch over
  an in-memory synthetic training set (uint8 images, as every loader stores them), no test
  set; samples/s = examples / the epoch's ``train_seconds`` (the loop, without checkpoints);
- plain: the loop a user would write: same model and initialization, same batch, same noise,
  SGD with the same momentum and weight decay, the same images already in memory as float32.

Printed: the CPU capability and what ``--precision auto`` picks, samples/s per path (median
over the rounds), the loop/plain ratio per path (goal ≥ 0.9) and each path's speedup over fp32
(goals: the fastest ≥ 2× for resnet20 where bf16 is native; ``auto`` ≥ 1× fp32 everywhere).

    python benchmarks/train_throughput.py --out benchmarks/results/train_throughput.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from smoothcert._util.hardware import choose_precision
from smoothcert.bench.throughput import machine
from smoothcert.data import DatasetInfo, ImageDataset
from smoothcert.models import create_model
from smoothcert.training import TrainConfig, train

SHAPES = {"cnn3": (1, 28, 28), "resnet20": (3, 32, 32)}
PATHS = {  # name: (precision, channels_last)
    "fp32": ("fp32", False),
    "fp32+channels_last": ("fp32", True),
    "bf16": ("bf16", False),
    "bf16+channels_last": ("bf16", True),
    "auto": ("auto", None),  # what --precision auto picks on this machine, with its layout
}
SIGMA, LR, MOMENTUM, WEIGHT_DECAY, SEED = 0.25, 0.01, 0.9, 1e-4, 0


def synthetic(arch: str, n: int) -> ImageDataset:
    shape = SHAPES[arch]
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n)
    c = shape[0]
    info = DatasetInfo(
        "synthetic", "train", 10, shape, tuple(str(k) for k in range(10)), (0.5,) * c, (0.25,) * c
    )
    return ImageDataset(images, labels, info)


def smoothcert_rate(arch: str, data: ImageDataset, batch: int, path: str) -> float:
    precision, channels_last = PATHS[path]
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            dataset="mnist",  # only names the run; train_set replaces the data
            arch=arch,
            method="gaussian",
            method_options={"sigma": SIGMA},
            out_dir=out,
            epochs=1,
            batch_size=batch,
            lr=LR,
            momentum=MOMENTUM,
            weight_decay=WEIGHT_DECAY,
            schedule="constant",
            seed=SEED,
            augment="none",
            precision=precision,
            channels_last=channels_last,
            device="cpu",
        )
        result = train(config, train_set=data, test_set=None, progress=False)
    return len(data) / result.history[-1]["train_seconds"]


def plain_rate(arch: str, data: ImageDataset, batch: int, path: str) -> float:
    precision, channels_last = PATHS[path]
    if precision == "auto":  # the plain loop a user would write for the same arithmetic
        precision = choose_precision("cpu").precision
        channels_last = precision != "fp32"
    shape = SHAPES[arch]
    torch.manual_seed(SEED)
    model = create_model(arch, 10, shape, (0.5,) * shape[0], (0.25,) * shape[0])
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    x_all = torch.from_numpy(data.images).float().div_(255.0)
    y_all = torch.from_numpy(data.labels)
    gen = torch.Generator().manual_seed(SEED)
    order = torch.randperm(len(data), generator=gen)
    t0 = time.perf_counter()
    for start in range(0, len(data), batch):
        idx = order[start : start + batch]
        x, y = x_all[idx], y_all[idx]
        x = x + SIGMA * torch.randn(x.shape, generator=gen)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return len(data) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=None, help="steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None, help="JSON record")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    record: dict = {"machine": machine(), "threads": args.threads, "batch": args.batch}
    choice = choose_precision("cpu")
    lines = [
        f"CPU capability {record['machine']['cpu_capability']}; precision auto picks "
        f"{choice.precision} ({choice.reason})"
    ]
    for arch in args.archs:
        steps = args.steps or (60 if arch == "cnn3" else 20)
        data = synthetic(arch, steps * args.batch)
        rates: dict[str, dict[str, list[float]]] = {
            p: {"smoothcert": [], "plain": []} for p in args.paths
        }
        for _ in range(args.rounds):
            for path in args.paths:  # round-robin: every path sees the same load
                rates[path]["plain"].append(plain_rate(arch, data, args.batch, path))
                rates[path]["smoothcert"].append(smoothcert_rate(arch, data, args.batch, path))
        med = {p: {k: statistics.median(v) for k, v in r.items()} for p, r in rates.items()}
        fp32 = med.get("fp32")
        lines.append(f"{arch} (batch {args.batch}, {steps} steps, {args.rounds} rounds):")
        lines.append("  path                  smoothcert/s  plain/s  loop/plain  vs fp32")
        for path in args.paths:
            m = med[path]
            speedup = m["smoothcert"] / fp32["smoothcert"] if fp32 else float("nan")
            lines.append(
                f"  {path:20s}  {m['smoothcert']:12.0f}  {m['plain']:7.0f}  "
                f"{m['smoothcert'] / m['plain']:10.3f}  {speedup:7.2f}x"
            )
        record[arch] = {"samples_per_s": rates, "median": med, "steps": steps}
    print("\n".join(lines))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record["summary"] = lines
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
