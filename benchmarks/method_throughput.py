"""Training throughput per method: `smoothcert train`'s loop against a plain loop of the same
objective, measured round-robin in one run.

For each method (its objective as registered, at the hyperparameters given below: those of the
published runs it is compared with) and one architecture, two measurements of one epoch over an
in-memory synthetic training set, taking turns so that both see the same load:

- smoothcert: ``smoothcert.training.train`` for one epoch, no test set; samples/s = examples /
  the epoch's ``train_seconds`` (the loop without checkpoint writes);
- plain: the loop a user would write around the same objective: the model under the same
  autocast, ``method.loss(model, x, y, ctx)``, ``zero_grad``, ``backward``, ``step``, the
  batches sliced from float32 tensors already in memory.

Printed: samples/s of each (median over the rounds), their ratio (goal ≥ 0.9: the loop adds
nothing that matters) and each method's cost beside Gaussian training's, with the CPU
capability and the precision ``auto`` chose.

    python benchmarks/method_throughput.py --arch resnet20 --out benchmarks/results/methods.json

``denoiser-mse`` is train-denoiser's MSE objective on a DnCNN (7 layers, 32 channels) for the
architecture's input shape: the loop of train-denoiser against a plain loop of it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from train_throughput import SHAPES, synthetic

from smoothcert._util.hardware import choose_precision
from smoothcert.models import create_model
from smoothcert.models.denoisers import create_denoiser
from smoothcert.training import TrainConfig, train
from smoothcert.training.method import BatchContext
from smoothcert.training.methods.denoiser_methods import get_denoiser_method
from smoothcert.training.precision import AutocastModel, default_channels_last
from smoothcert.training.registry import get_method

#: method -> hyperparameters (σ = 0.5, the CIFAR-10 comparison of Jeong & Shin).
METHODS = {
    "gaussian": {"sigma": 0.5},
    "stability": {"sigma": 0.5, "lam": 2.0},
    "consistency": {"sigma": 0.5, "num_noise": 2, "lam": 10.0, "eta": 0.5},
    "macer": {"sigma": 0.5, "num_noise": 16, "lam": 4.0, "beta": 16.0, "margin": 8.0},
    "smoothmix": {"sigma": 0.5, "num_noise": 2, "steps": 4},
    "smoothadv": {"sigma": 0.5, "eps": 2.0, "steps": 2, "num_noise": 2},
    # train-denoiser's MSE objective on the cpu-scale DnCNN of salman-cifar10
    "denoiser-mse": {"sigma": 0.5, "arch_options": {"depth": 7, "width": 32}},
}
DENOISER_ARCH = "dncnn"


def _arch(arch: str, method: str) -> str:
    """The network a method trains: the denoiser for a denoiser objective."""
    return DENOISER_ARCH if method.startswith("denoiser-") else arch


LR, MOMENTUM, WEIGHT_DECAY, SEED = 0.01, 0.9, 1e-4, 0


def smoothcert_rate(arch: str, data, batch: int, method: str, precision: str) -> float:
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            dataset="mnist",  # only names the run; train_set replaces the data
            arch=_arch(arch, method), method=method, method_options=METHODS[method],
            out_dir=out, epochs=1,
            batch_size=batch, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
            schedule="constant", seed=SEED, augment="none", precision=precision, device="cpu",
        )  # fmt: skip
        result = train(config, train_set=data, test_set=None, progress=False)
    return len(data) / result.history[-1]["train_seconds"]


def plain_rate(arch: str, data, batch: int, method: str, precision: str) -> float:
    shape = SHAPES[arch]
    torch.manual_seed(SEED)
    if method.startswith("denoiser-"):
        options = METHODS[method]
        model = create_denoiser(DENOISER_ARCH, shape, **options["arch_options"])
        objective = get_denoiser_method(method, **options)
    else:
        model = create_model(arch, 10, shape, (0.5,) * shape[0], (0.25,) * shape[0])
        objective = get_method(method, **METHODS[method])
    channels_last = default_channels_last(precision, model)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    runner = AutocastModel(model, precision, channels_last)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    x_all = torch.from_numpy(data.images).float().div_(255.0)
    y_all = torch.from_numpy(data.labels)
    gen = torch.Generator().manual_seed(SEED)
    t0 = time.perf_counter()
    for step, start in enumerate(range(0, len(data), batch)):
        x, y = x_all[start : start + batch], y_all[start : start + batch]
        out = objective.loss(runner, x, y, BatchContext(0, 1, step, gen))
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
    return len(data) / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet20", choices=list(SHAPES))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=6, help="steps per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    parser.add_argument("--out", type=Path, default=None, help="JSON record")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    precision = args.precision
    if precision == "auto":
        precision = choose_precision("cpu").precision
    data = synthetic(args.arch, args.steps * args.batch)
    rates = {m: {"smoothcert": [], "plain": []} for m in args.methods}
    for _ in range(args.rounds):
        for m in args.methods:  # round-robin: every method sees the same load
            rates[m]["plain"].append(plain_rate(args.arch, data, args.batch, m, precision))
            rates[m]["smoothcert"].append(
                smoothcert_rate(args.arch, data, args.batch, m, precision)
            )
    med = {m: {k: statistics.median(v) for k, v in r.items()} for m, r in rates.items()}
    base = med.get("gaussian", {}).get("smoothcert")
    lines = [
        f"{args.arch}, batch {args.batch}, {args.steps} steps, {args.rounds} rounds, "
        f"{args.threads} thread(s), precision {precision} (CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()})",
        "  method        smoothcert/s  plain/s  loop/plain  cost vs gaussian",
    ]
    for m in args.methods:
        s, p = med[m]["smoothcert"], med[m]["plain"]
        cost = f"{base / s:6.1f}x" if base else "     —"
        lines.append(f"  {m:12s}  {s:12.0f}  {p:7.0f}  {s / p:10.3f}  {cost:>16s}")
    print("\n".join(lines))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"arch": args.arch, "precision": precision, "samples_per_s": rates,
                  "median": med, "summary": lines}  # fmt: skip
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
