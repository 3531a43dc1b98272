"""counts() with the base model compiled (SmoothedClassifier(compile=True)) against the eager
model: samples/s of each, alternating round by round in one run, their ratio, the compilation's
seconds, and how often the two base classifiers disagree on noisy inputs.

    python benchmarks/compile_throughput.py --threads 1                  # resnet20, bf16 + CL
    python benchmarks/compile_throughput.py --checkpoint zoo:cifar10-resnet20-sigma0.25
    python benchmarks/compile_throughput.py --checkpoint zoo:cifar10-resnet20-sigma0.25 \
        --denoiser dncnn                       # f∘D, salman-cifar10's DnCNN (7 layers, 32)
    python benchmarks/compile_throughput.py --checkpoint zoo:mnist-cnn3-sigma0.25 \
        --denoiser unet-small --batch-size 128  # one-step diffusion, diffusion-mnist's U-Net

The denoisers are untrained (speed does not depend on the weights; the disagreement line then
says little).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from smoothcert import SmoothedClassifier
from smoothcert.bench.throughput import counts_rate, machine
from smoothcert.models import create_model
from smoothcert.models.checkpoint import load_checkpoint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=None, help="a trained model (default: resnet20)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="bf16")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--samples", type=int, default=10_240, help="noisy samples per measurement")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--sigma", type=float, default=0.25)
    p.add_argument("--denoiser", choices=("dncnn", "unet-small"), default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        model, meta = load_checkpoint(args.checkpoint)
        name, classes, shape = args.checkpoint, meta["num_classes"], tuple(meta["input_shape"])
    else:
        torch.manual_seed(0)
        shape, classes = (3, 32, 32), 10
        model = create_model("resnet20", classes, shape, [0.49, 0.48, 0.45], [0.25, 0.24, 0.26])
        name = "resnet20 (untrained)"
    kw = dict(batch_size=args.batch_size, precision=args.precision, input_shape=shape)
    if args.denoiser is not None:
        kw["denoiser"] = _denoiser(args.denoiser, shape, args.sigma)
        name += f" behind an untrained {args.denoiser}"
    gs = {
        "eager": SmoothedClassifier(model, classes, args.sigma, **kw),
        "compiled": SmoothedClassifier(model, classes, args.sigma, compile=True, **kw),
    }
    x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    counts_rate(gs["compiled"], x, args.batch_size)  # compiles
    compile_seconds = time.perf_counter() - t0
    counts_rate(gs["eager"], x, args.batch_size)
    rates: dict[str, list[float]] = {k: [] for k in gs}
    for r in range(args.rounds):
        for k, g in gs.items():
            rates[k].append(counts_rate(g, x, args.samples, seed=r))
    # disagreement of the two base classifiers: the same noisy inputs (same seed), counts of
    # 8 test points, summed |difference| / 2 is the number of flipped draws at the least
    flips, total = 0, 0
    for i in range(8):
        xi = torch.rand(shape, generator=torch.Generator().manual_seed(100 + i))
        a, b = (g.counts(xi, 2048, generator=torch.Generator().manual_seed(i)) for g in gs.values())
        flips += int(abs(a - b).sum()) // 2
        total += 2048
    median = {k: statistics.median(v) for k, v in rates.items()}
    info = machine()
    print(
        f"{name}, batch {args.batch_size}, {args.precision}, {info['torch_threads']} thread(s), "
        f"torch {torch.__version__}, median of {args.rounds} rounds of {args.samples} samples"
    )
    for k, rate in median.items():
        print(f"  counts() {k:9s} {rate:9.0f} samples/s")
    print(f"  ratio compiled / eager: {median['compiled'] / median['eager']:.2f}")
    print(f"  compilation: {compile_seconds:.1f} s (first batch included)")
    print(f"  noisy draws whose class changes: at least {flips} of {total} ({flips / total:.2%})")
    return 0


def _denoiser(arch: str, shape: tuple[int, ...], sigma: float) -> torch.nn.Module:
    from smoothcert.models.denoisers import create_denoiser
    from smoothcert.models.diffusion import OneStepDiffusionDenoiser, linear_schedule

    torch.manual_seed(0)
    if arch == "dncnn":
        return create_denoiser("dncnn", shape, depth=7, width=32).eval()
    eps_net = create_denoiser("unet-small", shape).eval()
    return OneStepDiffusionDenoiser(eps_net, linear_schedule(), sigma).eval()


if __name__ == "__main__":
    sys.exit(main())
