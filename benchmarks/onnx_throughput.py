"""Certifying a deployed ONNX model: samples/s of ``SmoothedClassifier.counts()`` through ONNX
Runtime against ONNX Runtime's own forward throughput (``session.run`` on the same pre-generated
batches), measured round-robin in one run with the median of per-round ratios as the result;
beside it, counts() samples/s of the same model in PyTorch fp32 and bf16 + channels-last, and
how often the ONNX Runtime and PyTorch fp32 base classifiers disagree on the same noisy inputs.

    python benchmarks/onnx_throughput.py --checkpoint CNN3.safetensors   # a trained cnn3
    python benchmarks/onnx_throughput.py --json out.json                 # also write the record

cnn3 comes from --checkpoint (else untrained) and is measured on MNIST test images when the
data is cached; resnet20 is untrained (speed does not depend on the weights) on uniform images.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from smoothcert.bench.throughput import machine, noisy_batches, per_round_ratio
from smoothcert.certify.smoothing import SmoothedClassifier
from smoothcert.models import create_model
from smoothcert.models.adapters import load_model
from smoothcert.models.adapters.export import export_onnx
from smoothcert.models.checkpoint import load_checkpoint

PATHS = ("pytorch fp32", "pytorch bf16+channels-last", "onnxruntime")


def _inputs(arch: str, count: int) -> list[torch.Tensor]:
    """Test images for the disagreement (MNIST for cnn3 when cached, else uniform noise)."""
    if arch == "cnn3":
        try:
            from smoothcert.data import load_dataset

            data = load_dataset("mnist", "test")
            return [data[i][0] for i in range(count)]
        except FileNotFoundError:
            pass
    shape = (1, 28, 28) if arch == "cnn3" else (3, 32, 32)
    gen = torch.Generator().manual_seed(1)
    return [torch.rand(shape, generator=gen) for _ in range(count)]


def _model(arch: str, checkpoint: Path | None) -> tuple[torch.nn.Module, str]:
    if arch == "cnn3" and checkpoint is not None:
        return load_checkpoint(checkpoint)[0], f"trained checkpoint {checkpoint.name}"
    torch.manual_seed(0)
    shape, mean, std = ((1, 28, 28), [0.1307], [0.3081]) if arch == "cnn3" else (
        (3, 32, 32), [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616])  # fmt: skip
    return create_model(arch, 10, shape, mean, std).eval(), "untrained (seed 0)"


def _ort_forward(session, name: str, out: str, batches: list[np.ndarray]) -> float:
    """ONNX Runtime's own throughput: session.run + argmax on pre-generated float32 batches."""
    t0 = time.perf_counter()
    for b in batches:
        session.run([out], {name: b})[0].argmax(1)
    return sum(len(b) for b in batches) / (time.perf_counter() - t0)


def _counts(g: SmoothedClassifier, x: torch.Tensor, n: int, seed: int) -> float:
    t0 = time.perf_counter()
    g.counts(x, n, generator=torch.Generator().manual_seed(seed))
    return n / (time.perf_counter() - t0)


def _disagreement(torch_model, ort_model, inputs, sigma: float, draws: int) -> dict:
    """Noisy inputs x + σε on which the fp32 PyTorch and ONNX Runtime argmax differ."""
    gen = torch.Generator().manual_seed(2)
    differ = 0
    with torch.inference_mode():
        for x in inputs:
            batch = x + sigma * torch.randn((draws, *x.shape), generator=gen)
            differ += int((torch_model(batch).argmax(1) != ort_model(batch).argmax(1)).sum())
    total = len(inputs) * draws
    return {"inputs": len(inputs), "draws": draws, "disagreements": differ, "rate": differ / total}


def measure(arch: str, args: argparse.Namespace, folder: Path) -> dict:
    model, source = _model(arch, args.checkpoint if arch == "cnn3" else None)
    shape = tuple(model.input_shape)
    onnx_path = export_onnx(model, folder / f"{arch}.onnx", shape)
    ort_model, meta = load_model(onnx_path)
    ort = ort_model
    classifiers = {
        "pytorch fp32": SmoothedClassifier(
            model, 10, args.sigma, batch_size=args.batch, channels_last=False),
        "pytorch bf16+channels-last": SmoothedClassifier(
            model, 10, args.sigma, batch_size=args.batch, precision="bf16", channels_last=True),
        "onnxruntime": SmoothedClassifier(ort_model, 10, args.sigma, batch_size=args.batch),
    }  # fmt: skip
    x = _inputs(arch, 1)[0]
    batches = [b.numpy() for b in noisy_batches(x, args.sigma, args.batch, args.batches)]
    n = args.batch * args.batches
    threads = torch.get_num_threads()
    fwd: list[float] = []
    rates: dict[str, list[float]] = {p: [] for p in PATHS}
    for g in classifiers.values():  # warm-up (allocator, kernel choice, ORT's first run)
        _counts(g, x, args.batch, 0)
    _ort_forward(ort.session, ort.input_name, ort.output_name, batches[:1])
    for r in range(args.rounds):
        # ORT's forward right before and after its counts(), alternating, so drifts in the
        # machine's load hit both sides of the ratio alike.
        order = PATHS if r % 2 == 0 else PATHS[::-1]
        for p in order:
            if p == "onnxruntime" and r % 2 == 0:
                fwd.append(_ort_forward(ort.session, ort.input_name, ort.output_name, batches))
            classifiers[p].base.to(memory_format=torch.contiguous_format)
            # As the CLI runs them: with an ONNX Runtime model torch only draws noise, on one
            # thread (idle OpenMP threads would spin against ONNX Runtime's; --ort-torch-threads).
            torch.set_num_threads(args.ort_torch_threads if p == "onnxruntime" else threads)
            rates[p].append(_counts(classifiers[p], x, n, r))
            torch.set_num_threads(threads)
            if p == "onnxruntime" and r % 2 == 1:
                fwd.append(_ort_forward(ort.session, ort.input_name, ort.output_name, batches))
    model.to(memory_format=torch.contiguous_format)
    record = {
        "arch": arch,
        "weights": source,
        "input_shape": list(shape),
        "onnxruntime": meta["source"]["runtime_version"],
        "providers": meta["source"]["providers"],
        "ort_forward_samples_per_s": statistics.median(fwd),
        "counts_samples_per_s": {p: statistics.median(v) for p, v in rates.items()},
        "ort_counts_over_ort_forward": per_round_ratio(rates["onnxruntime"], fwd),
        "torch_threads_during_ort_counts": args.ort_torch_threads,
        "per_round_ort_counts_over_forward": [
            c / f for c, f in zip(rates["onnxruntime"], fwd, strict=True)
        ],
        "over_pytorch_fp32": {
            p: per_round_ratio(v, rates["pytorch fp32"]) for p, v in rates.items()
        },
    }
    if args.disagreement_images:
        record["ort_vs_pytorch_fp32_disagreement"] = _disagreement(
            model, ort_model, _inputs(arch, args.disagreement_images), args.sigma, args.draws
        )
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="a trained cnn3 checkpoint")
    p.add_argument("--archs", nargs="+", default=["cnn3", "resnet20"])
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--batches", type=int, default=4, help="batches per round and path")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--disagreement-images", type=int, default=100)
    p.add_argument("--draws", type=int, default=100, help="noise draws per image")
    p.add_argument(
        "--ort-torch-threads", type=int, default=1,
        help="torch threads (noise drawing) while counts() runs the ONNX model; the CLI uses 1",
    )  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="also write the record here")
    args = p.parse_args(argv)
    record: dict = {"machine": machine(), "load_average_at_start": os.getloadavg(),
                    "sigma": args.sigma, "batch": args.batch, "rounds": args.rounds,
                    "samples_per_round": args.batch * args.batches, "models": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for arch in args.archs:
            record["models"].append(measure(arch, args, Path(tmp)))
    record["load_average_at_end"] = os.getloadavg()
    m = record["machine"]
    load = record["load_average_at_start"][0], record["load_average_at_end"][0]
    print(f"{m['cores']} cores, {m['torch_threads']} torch threads, torch {m['torch']}, "
          f"batch {args.batch}, {args.rounds} rounds, σ = {args.sigma}, load average "
          f"{load[0]:.1f} -> {load[1]:.1f}")  # fmt: skip
    for r in record["models"]:
        print(f"\n{r['arch']} {tuple(r['input_shape'])}, {r['weights']}, onnxruntime "
              f"{r['onnxruntime']} {r['providers'][0]}")  # fmt: skip
        print(f"  {'path':28} {'counts() samples/s':>18} {'vs pytorch fp32':>16}")
        for path, rate in r["counts_samples_per_s"].items():
            print(f"  {path:28} {rate:18.0f} {r['over_pytorch_fp32'][path]:16.2f}")
        print(f"  onnxruntime's own forward (session.run): {r['ort_forward_samples_per_s']:.0f}"
              f" samples/s; counts()/forward = {r['ort_counts_over_ort_forward']:.3f} "
              "(median of per-round ratios; target >= 0.95)")  # fmt: skip
        d = r.get("ort_vs_pytorch_fp32_disagreement")
        if d:
            print(
                f"  onnxruntime vs pytorch fp32 base classifier: {d['disagreements']} of "
                f"{d['inputs'] * d['draws']} noisy inputs differ ({100 * d['rate']:.3f}%)"
            )
    if args.json is not None:
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
