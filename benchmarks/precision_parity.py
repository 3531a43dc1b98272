"""bf16 against fp32 training: the same run in both precisions, noisy test accuracy side by side.

    python benchmarks/precision_parity.py --dataset mnist --arch cnn3 --epochs 3
    python benchmarks/precision_parity.py --dataset cifar10 --arch resnet20 --epochs 3

Runs `smoothcert train --method gaussian --sigma 0.25` with --precision fp32 and bf16 (same
seed, data order, noise and schedule) into runs/parity/DATASET-ARCH-PRECISION (resumable), then
prints each epoch's test accuracy under noise (one draw per test image at σ = 0.25) and the
difference. Goal: within 1 point after the last epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from smoothcert.cli import main as smoothcert


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--arch", default="cnn3")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=Path("runs/parity"))
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    history = {}
    for precision in ("fp32", "bf16"):
        out = args.out / f"{args.dataset}-{args.arch}-{precision}"
        cmd = [
            "train", "--dataset", args.dataset, "--arch", args.arch, "--method", "gaussian",
            "--sigma", "0.25", "--epochs", str(args.epochs), "--batch-size", "128",
            "--lr", str(args.lr), "--schedule", "cosine", "--seed", "0",
            "--precision", precision, "--threads", str(args.threads), "--no-progress",
            "--out", str(out),
        ]  # fmt: skip
        print("smoothcert " + " ".join(cmd), flush=True)
        if smoothcert(cmd) != 0:
            return 1
        lines = (out / "metrics.jsonl").read_text().splitlines()
        history[precision] = [json.loads(line) for line in lines]
    print(f"{args.dataset} {args.arch}, Gaussian σ = 0.25, {args.epochs} epochs")
    print("epoch  fp32 noisy acc  bf16 noisy acc  bf16 - fp32  fp32 s/epoch  bf16 s/epoch")
    for a, b in zip(history["fp32"], history["bf16"], strict=True):
        print(
            f"{a['epoch']:5d}  {a['test_acc_noise']:14.4f}  {b['test_acc_noise']:14.4f}  "
            f"{b['test_acc_noise'] - a['test_acc_noise']:+11.4f}  {a['train_seconds']:12.1f}"
            f"  {b['train_seconds']:12.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps(history, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
