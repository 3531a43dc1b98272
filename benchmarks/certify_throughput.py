"""Certification throughput: noisy samples per second of SmoothedClassifier.counts() and of
the base model's own forward pass over pre-generated inputs at the same batch size, and their ratio,
measured interleaved in the same run (absolute figures on a shared machine are noisy; the ratio
is the result).

    python benchmarks/certify_throughput.py                      # cnn3, 1x28x28, fp32
    python benchmarks/certify_throughput.py --arch resnet20 --precision bf16 --channels-last
    python benchmarks/certify_throughput.py --arch resnet20 --denoiser-depth 7 --denoiser-width 32

With ``--denoiser-depth`` the base classifier is f∘D for a DnCNN D of that depth (denoised
smoothing): "forward only" is then D followed by f on pre-generated noisy inputs, and counts()
is SmoothedClassifier(f, denoiser=D) (goal: ratio ≥ 0.95).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _archs import INPUT_SHAPES, build  # noqa: E402

from smoothcert.bench.throughput import interleaved, machine  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", choices=sorted(INPUT_SHAPES), default="cnn3")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--batches-per-round", type=int, default=4)
    p.add_argument(
        "--denoiser-depth", type=int, default=None, help="put a DnCNN of this depth first"
    )
    p.add_argument("--denoiser-width", type=int, default=64, help="the DnCNN's channels")
    p.add_argument("--json", action="store_true", help="print the JSON record only")
    args = p.parse_args(argv)

    model, source = build(args.arch)
    if args.denoiser_depth is not None:
        from smoothcert.certify.denoised import DenoisedClassifier
        from smoothcert.models.denoisers import create_denoiser

        torch.manual_seed(0)
        denoiser = create_denoiser(
            "dncnn", INPUT_SHAPES[args.arch], depth=args.denoiser_depth, width=args.denoiser_width
        ).eval()
        model = DenoisedClassifier(denoiser, model)
        source += f", behind a DnCNN of {args.denoiser_depth} layers x {args.denoiser_width}"
    x = torch.rand(INPUT_SHAPES[args.arch], generator=torch.Generator().manual_seed(0))
    measured = interleaved(
        model,
        x,
        num_classes=10,
        sigma=args.sigma,
        batch_size=args.batch_size,
        paths=((args.precision, args.channels_last),),
        rounds=args.rounds,
        batches_per_round=args.batches_per_round,
    )
    result = {**measured, **next(iter(measured.pop("paths").values()))}
    result.pop("counts_rates")
    record = {"machine": machine(), "arch": args.arch, "model_source": source, **result}
    if args.json:
        print(json.dumps(record, indent=2))
        return 0
    print(
        f"{args.arch} {INPUT_SHAPES[args.arch]} batch {args.batch_size} {args.precision}"
        f"{' channels-last' if args.channels_last else ''} ({source}; "
        f"{record['machine']['torch_threads']} threads, torch {torch.__version__})"
    )
    fwd, cnt = result["forward_samples_per_s"], result["counts_samples_per_s"]
    print(f"  forward only (pre-generated inputs): {fwd:10.0f} samples/s")
    print(f"  SmoothedClassifier.counts():          {cnt:10.0f} samples/s")
    print(f"  ratio counts/forward (median of {args.rounds} rounds): {result['ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
