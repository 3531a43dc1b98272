"""`smoothcert bench`: how fast this machine certifies a given model, and with which settings."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from smoothcert.cli import _denoiser

NAME = "bench"
# Library parameters named otherwise than their flags.
PARAMETER_FLAGS = {"batch_size": "--batch", **_denoiser.PARAMETER_FLAGS}
HELP = "measure certification throughput of a checkpoint on this machine (samples/s per path)"
DESCRIPTION = (
    "For each path (fp32 / bf16 autocast, with and without channels-last), measure the base "
    "model's forward-only samples/s over pre-generated noisy inputs and counts() samples/s at the "
    "same batch size, round-robin so that every path sees the same load; report their ratio, "
    "the batch size the automatic search picks, how often the bf16 and fp32 base classifiers "
    "disagree on noisy test inputs, and the time per certificate at --n samples. Read the "
    "ratios: absolute samples/s move with the machine's load."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from smoothcert.cli._common import add_model_options
    from smoothcert.cli._denoiser import add_denoiser_options

    parser.add_argument(
        "checkpoint", type=Path, nargs="?", default=None,
        help="model checkpoint (.safetensors), or give --model",
    )  # fmt: skip
    add_model_options(parser)
    parser.add_argument(
        "--dataset", default=None, help="dataset for real inputs (default: the checkpoint's)"
    )
    parser.add_argument("--data-root", type=Path, default=None, help="dataset directory")
    parser.add_argument("--sigma", type=float, default=None, help="default: the training σ")
    parser.add_argument("--batch", type=int, default=1000, help="batch size of the paths")
    parser.add_argument("--rounds", type=int, default=5, help="round-robin rounds")
    parser.add_argument(
        "--batches-per-round",
        type=int,
        default=2,
        help="batches per path per round; 8 gives steadier ratios (slower)",
    )
    parser.add_argument(
        "--disagreement-images",
        type=int,
        default=100,
        help="test images for the bf16 vs fp32 disagreement (0: skip)",
    )
    parser.add_argument("--disagreement-draws", type=int, default=100, help="noise draws each")
    parser.add_argument(
        "--n", type=int, default=100_000, help="samples per certificate for the time estimate"
    )
    parser.add_argument(
        "--sound",
        action="store_true",
        help="measure counts() in sound mode (noise on the 8-bit grid; docs/certification.md)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also measure the fastest path with the base model compiled (certify --compile): "
        "its speed-up over the eager model and the compilation's seconds",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if any)")
    add_denoiser_options(parser)  # --denoiser: measure f∘D
    parser.add_argument("--json", type=Path, default=None, help="also write the record here")


def run(args: argparse.Namespace) -> int:
    from smoothcert._util import checks
    from smoothcert.cli import _common

    for name in ("batch", "rounds", "batches_per_round", "n", "disagreement_draws"):
        _common.positive_int(name, getattr(args, name))
    checks.integer_at_least("disagreement_images", args.disagreement_images, 0)
    _common.finite("sigma", args.sigma, positive=True)
    if args.json is not None:  # before minutes of measuring
        _common.check_json_target(args.json, args.checkpoint or Path(args.model or ""))
    import torch

    from smoothcert.bench import throughput
    from smoothcert.data.inputs import resolve_sigma

    inputs = _common.load_inputs(args)  # the test split: bench has no --split
    model, meta, dataset = inputs.model, inputs.meta, inputs.dataset
    sigma = resolve_sigma(meta, args.sigma)
    x, _ = dataset[0]
    count = min(args.disagreement_images, len(dataset))
    from smoothcert._util.torch_helpers import model_device
    from smoothcert.cli._denoiser import load_denoiser_arg

    denoiser, denoiser_config, _ = load_denoiser_arg(
        args, sigma=sigma, input_shape=tuple(dataset.info.input_shape),
        device=model_device(model), dataset_name=dataset.info.name,
    )  # fmt: skip
    # a model run by ONNX Runtime (the classifier or the denoiser) fixes its own arithmetic:
    # no bf16 or channels-last paths to compare, nothing to compile
    onnx = _common.runs_any_onnx(meta, denoiser_config)
    if onnx:
        count = 0
        if args.compile:
            raise checks.ParameterError("compile", _common.ONNX_NOT_COMPILED)
    _common.cede_threads_to_onnx(meta)
    if denoiser is not None:
        from smoothcert.certify.denoised import DenoisedClassifier

        model = DenoisedClassifier(denoiser, model)
    record = throughput.benchmark(
        model, torch.as_tensor(x), num_classes=meta["num_classes"], sigma=sigma,
        batch_size=args.batch, rounds=args.rounds, batches_per_round=args.batches_per_round,
        disagreement_inputs=[torch.as_tensor(dataset[i][0]) for i in range(count)],
        disagreement_draws=args.disagreement_draws, paths=[("fp32", False)] if onnx else None,
        sound=args.sound, compile=args.compile,
    )  # fmt: skip
    arch = meta.get("arch") or meta.get("source", {}).get("format")
    if denoiser is not None:
        arch = f"{arch} behind the denoiser {args.denoiser}"
    record = {"checkpoint": str(inputs.checkpoint or args.model), "arch": arch, **record}
    print(_table(record, args.n))
    if args.json is not None:
        from smoothcert._util.atomic import atomic_write_bytes

        args.json.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(args.json, (json.dumps(record, indent=2) + "\n").encode())
        print(f"wrote {args.json}")
    return 0


_NATIVE = {True: "yes", False: "no (emulated)", None: "not known (measured once)"}


def _table(record: dict, n: int) -> str:
    m = record["machine"]
    lines = [
        f"{record['arch']} {tuple(record['input_shape'])} σ={record['sigma']}"
        f"{' (sound mode)' if record.get('sound') else ''} on {m['device']} "
        f"({m['cores']} cores, {m['torch_threads']} threads, torch {m['torch']})",
        f"CPU capability {m.get('cpu_capability')}, native bf16: "
        f"{_NATIVE.get(m.get('cpu_bf16_native'), '?')}; "
        f"precision auto here: {m.get('precision_auto', '?')}",
        f"batch {record['batch_size']}, {record['rounds']} rounds of "
        f"{record['samples_per_round']} samples per path",
        f"{'path':20} {'forward/s':>10} {'counts/s':>10} {'counts/forward':>15}",
    ]
    for name, p in record["paths"].items():
        lines.append(
            f"{name:20} {p['forward_samples_per_s']:10.0f} {p['counts_samples_per_s']:10.0f} "
            f"{p['ratio']:15.3f}"
        )
    best = record["paths"][record["fastest"]]["counts_samples_per_s"]
    auto = record["auto_batch_size"]
    auto_rate = max(auto["samples_per_s"].values()) if auto["samples_per_s"] else best
    lines += [
        f"fastest: {record['fastest']}, {record['fastest_over_fp32']:.2f}x plain fp32",
        f"automatic batch size ({auto['path']}): {auto['chosen']}",
        f"time per certificate at n={n:,}: {n / best:.1f} s at batch {record['batch_size']}"
        f" (about {n / max(auto_rate, best):.1f} s at the automatic batch size)",
    ]
    c = record.get("compiled")
    if c:
        lines.append(
            f"compiled (--compile) at {c['path']}: {c['compiled_samples_per_s']:.0f} samples/s, "
            f"{c['speedup']:.2f}x eager ({c['eager_samples_per_s']:.0f}); compilation "
            f"{c['compile_seconds']:.1f} s"
        )
    d = record.get("bf16_fp32_disagreement")
    if d:
        lines.append(
            f"bf16 vs fp32 base classifier: {d['disagreements']} of {d['inputs'] * d['draws']} "
            f"noisy test inputs differ ({100 * d['rate']:.3f}%)"
        )
    return "\n".join(lines)
