"""Streaming image folders: images/s of the training input with 0, 1 and 2 DataLoader workers.

A folder of generated JPEGs (``--images`` of ``--width``×``--height``, 10 classes, written to
a temporary directory) is read as a streamed ``imagefolder`` with ImageNet-style
augmentation (random-resized-crop to ``--size`` + flip), measured round-robin in one run:

- input: the training input pipeline alone (the loop's DataLoader: decode, augment, collate),
  images/s over one epoch;
- train: ``smoothcert.training.train`` for one epoch of lenet with Gaussian noise on the same
  folder, images/s = examples / the epoch's ``train_seconds`` (decoding overlaps the model's
  work when workers > 0).

    python benchmarks/stream_throughput.py --out benchmarks/results/stream_throughput.json
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
from PIL import Image
from torch.utils.data import DataLoader

from smoothcert.bench.throughput import machine
from smoothcert.data import load_dataset
from smoothcert.data.stream import TrainItems, collate
from smoothcert.training import TrainConfig, train

WORKERS = (0, 1, 2)
CLASSES = 10


def make_folder(root: Path, images: int, width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    for k in range(images):
        c = k % CLASSES
        folder = root / "train" / f"n{c:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        # Smooth content with some noise: JPEG sizes closer to photographs than pure noise.
        yy, xx = np.mgrid[0:height, 0:width]
        base = np.stack([(xx * (c + 1)) % 256, (yy * 3) % 256, ((xx + yy) * 2) % 256], -1)
        pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img{k:06d}.JPEG", quality=90)


def input_rate(root: Path, size: int, batch: int, workers: int) -> float:
    ds = load_dataset("imagefolder", "train", root=root, stream=True, resize=size)
    keys = [(0, i) for i in torch.randperm(len(ds)).tolist()]
    batches = [keys[i : i + batch] for i in range(0, len(keys), batch)]
    loader = DataLoader(
        TrainItems(ds, "resized-crop-flip", seed=0),
        batch_sampler=batches,
        num_workers=workers,
        collate_fn=collate,
    )
    t0 = time.perf_counter()
    seen = sum(len(x) for x, _ in loader)  # worker start-up included, as each epoch pays it
    return seen / (time.perf_counter() - t0)


def train_rate(root: Path, size: int, batch: int, workers: int) -> float:
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            dataset="imagefolder",
            data_root=str(root),
            data_options={"stream": True, "resize": size, "augmentation": "resized-crop-flip"},
            arch="lenet",
            method="gaussian",
            method_options={"sigma": 0.25},
            epochs=1,
            batch_size=batch,
            lr=0.01,
            out_dir=out,
            workers=workers,
            device="cpu",
        )
        result = train(config, test_set=None, progress=False)
    n = len(load_dataset("imagefolder", "train", root=root, stream=True, resize=size))
    return n / result.history[-1]["train_seconds"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--size", type=int, default=64, help="side of the training crops")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the trainer")
    parser.add_argument("--out", type=Path, default=None, help="JSON record")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    record: dict = {"machine": machine(), **{k: v for k, v in vars(args).items() if k != "out"}}
    rates = {kind: {w: [] for w in WORKERS} for kind in ("input", "train")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_folder(root, args.images, args.width, args.height)
        for _ in range(args.rounds):
            for w in WORKERS:  # round-robin: every setting sees the same load
                rates["input"][w].append(input_rate(root, args.size, args.batch, w))
                rates["train"][w].append(train_rate(root, args.size, args.batch, w))
    med = {k: {w: statistics.median(v) for w, v in r.items()} for k, r in rates.items()}
    lines = [
        f"{args.images} JPEGs {args.width}x{args.height} -> random-resized-crop {args.size} + flip,"
        f" batch {args.batch}, {args.rounds} rounds, median images/s:",
        "  workers   input/s   vs 0   train/s   vs 0",
    ]
    for w in WORKERS:
        i, t = med["input"][w], med["train"][w]
        lines.append(
            f"  {w:7d}  {i:8.0f}  {i / med['input'][0]:5.2f}x  {t:8.0f}  "
            f"{t / med['train'][0]:5.2f}x"
        )
    print("\n".join(lines))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record |= {"images_per_s": rates, "median": med, "summary": lines}
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
