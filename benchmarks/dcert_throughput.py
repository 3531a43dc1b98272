"""Seconds per example of `smoothcert dcert`'s surrogate, the starts of each ascent run one
after the other (the code before the batched restarts) against all starts in one batch per step
(smoothcert.distributional.restarts), measured in one run, taking turns.

For each γ and for σ (the checkpoint's training σ unless ``--sigma``) and σ = 0 (WRM, which
dcert always computes too), both paths run :func:`smoothcert.distributional.surrogate` on the
same block of MNIST test images with the same seed; the sequential path is the old restart
loop (one :func:`surrogate_ascent` step per call, start after start), swapped in for the
batched one. Printed: seconds per example of each (median over the rounds), their ratio, and
the largest difference of the Lagrangians the two give (float rounding of a larger batch).

    python benchmarks/dcert_throughput.py --examples 20 --rounds 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from smoothcert.data import load_dataset
from smoothcert.distributional import objective, surrogate
from smoothcert.distributional.restarts import restarts_in_turn
from smoothcert.models.checkpoint import load_checkpoint

BATCHED = objective.restarted_ascent


def timed(path, model, x0, y, gamma, sigma, args) -> tuple[float, float, torch.Tensor]:
    """(wall and CPU seconds per example, the Lagrangians) of one surrogate call on the block;
    the CPU time is that of this process, less sensitive to other jobs on the machine."""
    objective.restarted_ascent = path
    try:
        gen = torch.Generator().manual_seed(args.seed)
        start, cpu = time.perf_counter(), time.process_time()
        r = surrogate(
            model, x0, y, gamma, sigma, num_noise=args.num_noise, steps=args.steps,
            num_eval=args.num_eval, restarts=args.restarts, generator=gen,
        )  # fmt: skip
        n = x0.shape[0]
        wall, cpu = (time.perf_counter() - start) / n, (time.process_time() - cpu) / n
        return wall, cpu, r.lagrangian
    finally:
        objective.restarted_ascent = BATCHED


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="zoo:mnist-cnn3elu-nal-gamma0.25")
    parser.add_argument("--sigma", type=float, default=None, help="default: the checkpoint's")
    parser.add_argument("--gammas", type=float, nargs="+", default=[0.25, 0.5, 1.0, 2.0])
    parser.add_argument("--examples", type=int, default=20, help="one block of this many")
    parser.add_argument("--skip", type=int, default=50, help="every skip-th test image")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--num-noise", type=int, default=8)
    parser.add_argument("--num-eval", type=int, default=64)
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, meta = load_checkpoint(args.model)
    model.eval()
    sigma = args.sigma if args.sigma is not None else float(meta["sigma"])
    data = load_dataset("mnist", "test")
    x0, y = data.batch(list(range(0, args.skip * args.examples, args.skip)))
    print(
        f"{args.model}, {args.examples} MNIST test images (every {args.skip}th) in one block, "
        f"{args.restarts} starts, {args.steps} steps, {args.num_noise} draws per step, "
        f"{args.num_eval} fresh draws; {args.rounds} rounds, {args.threads} thread(s), "
        f"torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()})"
    )
    print("  sigma   gamma   wall s/ex: sequential  batched  ratio"
          "   CPU s/ex: sequential  batched  ratio   max |Δ lagrangian|")  # fmt: skip
    paths = (("sequential", restarts_in_turn), ("batched", BATCHED))
    totals = {(p, c): 0.0 for p, _ in paths for c in ("wall", "cpu")}
    for s in (sigma, 0.0):
        for gamma in args.gammas:
            times: dict[tuple[str, str], list[float]] = {key: [] for key in totals}
            values = {}
            for _ in range(args.rounds):
                for name, path in paths:
                    wall, cpu, values[name] = timed(path, model, x0, y, gamma, s, args)
                    times[name, "wall"].append(wall)
                    times[name, "cpu"].append(cpu)
            med = {key: statistics.median(v) for key, v in times.items()}
            for key in totals:
                totals[key] += med[key]
            diff = float((values["sequential"] - values["batched"]).abs().max())
            cols = [
                f"{med['sequential', c]:10.3f} {med['batched', c]:8.3f} "
                f"{med['sequential', c] / med['batched', c]:6.2f}"
                for c in ("wall", "cpu")
            ]
            print(f"  {s:5g}  {gamma:6g}   {cols[0]}            {cols[1]}   {diff:.2e}")
    for c in ("wall", "cpu"):
        seq, bat = totals["sequential", c], totals["batched", c]
        print(
            f"  sum over these γ, σ and 0, {c}: {seq:.2f} s/ex sequential, {bat:.2f} s/ex "
            f"batched ({seq / bat:.2f}x)"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
