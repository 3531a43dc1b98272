"""Flags and loading shared by the certify / predict / attack-style commands.

Checks here raise :class:`smoothcert._util.checks.ParameterError` naming the flag's argparse dest
(``noise_samples``); the command line reports it as the flag (``--noise-samples``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smoothcert._util import checks
from smoothcert.cli._progress import RowProgress as RowProgress  # used by the commands
from smoothcert.cli._warn import warn


def add_model_and_data(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        type=Path,
        nargs="?",
        default=None,
        help="model checkpoint (.safetensors) from `smoothcert train`, or zoo:NAME "
        "(`smoothcert zoo` lists them); or give --model",
    )
    add_model_options(parser)
    parser.add_argument(
        "--dataset",
        default=None,
        help="dataset name, npy:IMAGES.npy (with --labels), or folder:DIR (images without "
        "labels, predict only) (default: the checkpoint's dataset)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="directory holding the dataset files (default: the cache)",
    )
    parser.add_argument("--split", default="test", choices=("train", "test"), help="dataset split")
    parser.add_argument("--skip", type=int, default=1, help="use every skip-th example")
    parser.add_argument(
        "--max",
        type=int,
        default=None,
        help="number of examples in all (a count, not an index; default: all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same results)")
    parser.add_argument(
        "--device",
        default=None,
        help="torch device, e.g. cpu or cuda:0 (default: cuda if available)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch (default: torch's choice, one per core; with several runs "
        "side by side give each its share of the cores)",
    )


MODEL_HELP = (
    "the model: a smoothcert checkpoint or zoo:NAME, FILE.onnx (run by ONNX Runtime; pip install "
    "'smoothcert[onnx]'), FILE.pt2 (torch.export), a TorchScript archive, or "
    "python:package.module:factory (your code; with --weights). The certificate is in the "
    "model's input space: the model must include its own normalization (or add it with "
    "--input-mean/--input-std) for σ and radii in [0,1] pixel units"
)


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model and what a model from outside smoothcert needs (see docs/own-model.md)."""
    group = parser.add_argument_group("models from outside smoothcert (docs/own-model.md)")
    group.add_argument("--model", default=None, help=MODEL_HELP)
    group.add_argument(
        "--weights", type=Path, default=None, help="safetensors weights for a python: model"
    )
    group.add_argument(
        "--trust-model-code",
        action="store_true",
        help="allow loading .pt2 and TorchScript files: their loaders run code stored in the "
        "file (pickle, TorchScript); only for files you trust",
    )
    group.add_argument(
        "--num-classes", type=int, default=None, help="number of classes (default: the model's)"
    )
    group.add_argument(
        "--input-shape",
        type=int,
        nargs="+",
        default=None,
        metavar="DIM",
        help="shape of one input, e.g. 1 28 28 (default: the model's, where it states it)",
    )
    group.add_argument(
        "--input-mean",
        type=float,
        nargs="+",
        default=None,
        help="prepend (x - mean) / std to a model that expects normalized inputs (per channel)",
    )
    group.add_argument("--input-std", type=float, nargs="+", default=None, help="see --input-mean")
    group.add_argument(
        "--labels", type=Path, default=None, help="labels .npy for --dataset npy:IMAGES.npy"
    )
    group.add_argument(
        "--layout",
        default="auto",
        choices=("auto", "nchw", "nhwc"),
        help="axis order of an npy: dataset (auto: from the model's input shape, else inferred)",
    )


def _dest(name: str) -> str:
    """The argparse dest of a flag name: "noise-samples" and "noise_samples" alike."""
    return name.removeprefix("--").replace("-", "_")


def positive_int(name: str, value: int | None) -> None:
    """Refuse an integer flag (None: not given) below 1."""
    checks.optional_positive_int(_dest(name), value)


def finite(name: str, values: float | Sequence[float] | None, *, positive: bool) -> None:
    """Reject a float flag (one value or a list; None: not given) that is nan, infinite (in
    float32), negative, or zero when ``positive``: argparse's float() accepts "nan" and "inf",
    which would otherwise run and print nan (or a meaningless number) with exit code 0."""
    if values is None:
        return
    items = list(values) if isinstance(values, Sequence) else [values]
    for v in items:
        checks.finite_real(_dest(name), v, positive=positive, nonnegative=not positive)


def _model_spec(args: argparse.Namespace) -> str:
    """The model argument: the positional checkpoint or --model, exactly one of them."""
    model = getattr(args, "model", None)
    if (args.checkpoint is None) == (model is None):
        raise ValueError("give the model either as CHECKPOINT or as --model, not both or neither")
    return str(args.checkpoint if model is None else model)


def load_model(args: argparse.Namespace, device: Any) -> tuple[Any, dict[str, Any], Path | None]:
    """(model, metadata, model file) for a smoothcert checkpoint or a model from outside (the
    metadata then holds its ``source``: format, sha256, runtime). The model file is the
    checkpoint (zoo:NAME resolved to its verified file), the outside model's file, or None for
    a python: factory."""
    from smoothcert.models.adapters import RUNS_CODE, model_format
    from smoothcert.models.adapters import load_model as load_external
    from smoothcert.models.checkpoint import load_checkpoint, resolve_checkpoint

    spec = _model_spec(args)
    fmt = model_format(spec)
    outside = ("weights", "num_classes", "input_shape", "input_mean", "input_std")
    if fmt == "checkpoint":
        given = [n for n in outside if getattr(args, n, None) is not None]
        if given:
            flags = ", ".join("--" + n.replace("_", "-") for n in given)
            raise ValueError(f"{flags}: only for models from outside (the checkpoint says it)")
        # zoo:NAME becomes its verified file, so run files record a real path and its sha256.
        checkpoint = resolve_checkpoint(spec)
        return (*load_checkpoint(checkpoint, device=device), checkpoint)
    if fmt in RUNS_CODE and not args.trust_model_code:
        raise ValueError(
            f"loading {spec} runs code stored in the file (pickle or TorchScript): pass "
            "--trust-model-code only for a file you trust, or export the model to ONNX"
        )
    positive_int("num_classes", args.num_classes)
    finite("input_std", args.input_std, positive=True)
    if args.input_mean is not None and not all(math.isfinite(v) for v in args.input_mean):
        raise checks.ParameterError("input_mean", f"must be finite, got {args.input_mean}")
    # Its errors name its parameters (input_shape, ...), which the CLI shows as their flags.
    model, meta = load_external(
        spec,
        device=device,
        weights=args.weights,
        num_classes=args.num_classes,
        input_shape=args.input_shape,
        input_mean=args.input_mean,
        input_std=args.input_std,
        trust_code=args.trust_model_code,
    )
    return model, meta, None if fmt == "python" else Path(spec)


@dataclass(frozen=True)
class Inputs:
    """What a command's model and data flags resolve to (see :func:`load_inputs`)."""

    model: Any
    meta: dict[str, Any]  # the checkpoint's metadata, or an outside model's (with its source)
    dataset: Any
    checkpoint: Path | None  # the model file (zoo:NAME resolved); None for a python: factory


def load_inputs(args: argparse.Namespace, device: Any = None) -> Inputs:
    """The model and the dataset of the model and data flags, validated against each other
    (``device``: a torch.device; default: the one --device names). ``args`` is not changed."""
    from smoothcert._util.torch_helpers import resolve_device
    from smoothcert.data.inputs import model_data

    if getattr(args, "threads", None) is not None:
        import torch

        positive_int("threads", args.threads)
        torch.set_num_threads(args.threads)
    if device is None:
        device = resolve_device(args.device)
    model, meta, checkpoint = load_model(args, device)
    dataset = model_data(
        meta,
        args.dataset,
        getattr(args, "split", "test"),  # bench has no --split: it measures on the test split
        labels=getattr(args, "labels", None),
        layout=getattr(args, "layout", "auto"),
        root=args.data_root,
    )
    if args.dataset and meta.get("dataset") not in (None, args.dataset):
        # after the checks above: a refused command prints its error alone
        warn(
            f"the checkpoint was trained on {meta['dataset']!r}, not on --dataset "
            f"{args.dataset!r} (allowed when the inputs have the same shape, but its "
            "predictions there are usually meaningless)"
        )
    return Inputs(model, meta, dataset, checkpoint)


#: Why --compile refuses a model run by ONNX Runtime (the classifier or the denoiser).
ONNX_NOT_COMPILED = "does not apply to an ONNX model (ONNX Runtime runs and optimizes its graph)"


def runs_onnx(meta: dict[str, Any]) -> bool:
    return meta.get("source", {}).get("runtime") == "onnxruntime"


def runs_any_onnx(meta: dict[str, Any], denoiser_config: dict[str, Any]) -> bool:
    """Whether ONNX Runtime runs the classifier (``meta``) or the ``--denoiser`` (the run-config
    entries of :func:`smoothcert.cli._denoiser.load_denoiser_arg`)."""
    return runs_onnx(meta) or runs_onnx({"source": denoiser_config.get("denoiser", {})})


def cede_threads_to_onnx(meta: dict[str, Any]) -> None:
    """With an ONNX Runtime model, torch only draws the noise: one torch thread, so that idle
    OpenMP threads spinning after each draw do not take the cores from ONNX Runtime's own
    threads (on a busy two-core machine that cost a quarter of the throughput; see
    benchmarks/onnx_throughput.py)."""
    if runs_onnx(meta):
        import torch

        torch.set_num_threads(1)


def warn_if_one_class(dataset: Any, indices: list[int]) -> None:
    """Warn when the selected examples are mostly one class the data set is not (see
    :func:`smoothcert.data.base.class_skew`): the results would describe that class."""
    from smoothcert.data.base import class_skew

    labels = getattr(dataset, "labels", None)
    skew = class_skew(labels, indices) if labels is not None else None
    if skew:
        warn(
            f"{skew}: the results describe that class, not the data set; check the data's "
            "order or choose another --skip"
        )


def add_classifier_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--batch",
        default="1000",
        help="noisy copies per forward pass, or 'auto' (the throughput plateau; results do not "
        "depend on it)",
    )
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("auto", "fp32", "bf16"),
        help="base-model arithmetic; with bf16 the certificate is for the bf16 base classifier; "
        "auto = bf16 where the device computes it natively, else fp32 (a resumed run keeps "
        "the precision it recorded)",
    )
    parser.add_argument(
        "--shard",
        default="auto",
        help="RANK/WORLD: handle every WORLD-th example into OUT.shardRANK-of-WORLD.db (merge "
        "with `smoothcert merge`); auto = from torchrun's RANK/WORLD_SIZE, else no sharding",
    )
    parser.add_argument(
        "--channels-last",
        default="auto",
        choices=("auto", "on", "off"),
        help="channels-last memory layout for conv nets (auto: on CPU or with bf16)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run the base model compiled by torch.compile (batch norms folded, elementwise "
        "work fused; needs a C++ compiler on CPU): faster on long runs after a compilation of "
        "up to a minute; the certificate is for the compiled base classifier",
    )
    parser.add_argument(
        "--sound",
        action="store_true",
        help="certify the classifier as computed in floating point: 8-bit inputs, noise on the "
        "8-bit grid drawn from random integers (docs/certification.md, 'Sound mode')",
    )


def resolve_precision_flag(
    requested: str, device: Any, out: str | Path | None, onnx: bool = False
) -> str:
    """The concrete --precision of a run: ``auto`` keeps what the run file ``out`` recorded
    when it resumes one, else the fast arithmetic on ``device`` (always fp32 for an ONNX
    graph, which fixes its own); says the choice once on stderr, and warns about an explicit
    bf16 that this CPU emulates."""
    from smoothcert._util.hardware import resolve_precision
    from smoothcert.runs.store import stored_config

    if onnx:
        if requested == "bf16":
            raise ValueError(
                "--precision bf16 does not apply to an ONNX model (its graph fixes it)"
            )
        return "fp32"
    recorded = (stored_config(out) or {}).get("precision") if out is not None else None
    if requested == "auto" and recorded is None and out is not None and Path(out).is_file():
        recorded = "fp32"  # a run file without a precision was made before bf16 existed
    precision, note = resolve_precision(requested, device, recorded=recorded)
    if note and requested == "auto":
        print(note, file=sys.stderr)
    elif note:
        warn(note)
    return precision


def smoothed_classifier(
    args: argparse.Namespace,
    model: Any,
    meta: dict,
    dataset: Any,
    sigma: float,
    precision: str | None = None,
    denoiser: Any = None,  # denoised smoothing: the base classifier becomes f∘D
):
    from smoothcert.certify.smoothing import SmoothedClassifier

    if args.batch == "auto":
        batch = None
    else:
        try:
            batch = int(args.batch)
        except ValueError:
            raise checks.ParameterError(
                "batch", f"must be a positive integer or 'auto', got {args.batch!r}"
            ) from None
        positive_int("batch", batch)
    channels_last = {"auto": None, "on": True, "off": False}[args.channels_last]
    return SmoothedClassifier(
        model,
        meta["num_classes"],
        sigma,
        batch_size=batch,
        input_shape=dataset.info.input_shape,
        precision=precision if precision is not None else args.precision,
        channels_last=channels_last,
        compile=args.compile,
        sound=args.sound,
        denoiser=denoiser,
    )


@dataclass(frozen=True)
class SmoothedRun:
    """What the shared flags of certify and predict resolve to (see
    :func:`prepare_smoothed_run`)."""

    classifier: Any  # the SmoothedClassifier
    dataset: Any
    config: dict[str, Any]  # run-config entries identifying the model, dataset and split
    info: dict[str, Any]  # provenance: the model file, its metadata, argv
    shard: tuple[int, int]  # (rank, world): --shard, or torchrun's
    out: str  # the run file this process writes (the shard's file when sharded)
    device: Any  # the torch.device
    sigma: float  # --sigma, or the model's training σ
    meta: dict[str, Any]  # the model's metadata
    checkpoint: Path | None  # the model file (zoo:NAME resolved); None for a python: factory


def prepare_smoothed_run(
    args: argparse.Namespace, counts: tuple[str, ...], verb: str
) -> SmoothedRun:
    """Validate the shared flags (``counts``: the integer flags that must be positive), resolve
    the shard, its run file and the device, load model and data, resolve σ (warning when it
    differs from the training σ) and build the smoothed classifier. ``args`` is not changed."""
    from smoothcert._util.torch_helpers import resolve_device
    from smoothcert.data.inputs import resolve_sigma
    from smoothcert.runs import shards

    for name in counts:
        positive_int(name, getattr(args, name))
    checks.integer_at_least("seed", args.seed, 0)
    shard = shards.shard_from_env() if args.shard == "auto" else shards.parse_shard(args.shard)
    out = str(shards.shard_path(args.out, *shard))
    device_spec = args.device if args.device is not None else shards.local_device()
    checks.probability("alpha", args.alpha)
    finite("sigma", args.sigma, positive=True)
    device = resolve_device(device_spec)
    inputs = load_inputs(args, device)
    meta = inputs.meta
    sigma = resolve_sigma(meta, args.sigma)
    precision = resolve_precision_flag(args.precision, device, out, onnx=runs_onnx(meta))
    cede_threads_to_onnx(meta)
    if meta.get("sigma") not in (None, sigma):
        warn(
            f"{verb} at σ = {sigma} a model trained with σ = {meta['sigma']} "
            "(allowed, as in Cohen et al.'s Appendix H.3, but usually worse)"
        )
    from smoothcert.runs.common import checkpoint_identity, select_indices

    warn_if_one_class(inputs.dataset, select_indices(len(inputs.dataset), args.skip, args.max))
    # Denoised smoothing: --denoiser D (cli/_denoiser.py) smooths f∘D, and the run's
    # config records D's identity (sha256), so a resume with another denoiser is refused.
    from smoothcert.cli._denoiser import load_denoiser_arg

    denoiser, denoiser_config, denoiser_info = load_denoiser_arg(
        args, sigma=sigma, input_shape=tuple(inputs.dataset.info.input_shape), device=device,
        dataset_name=inputs.dataset.info.name,
    )  # fmt: skip
    if args.compile and runs_any_onnx(meta, denoiser_config):
        raise checks.ParameterError("compile", ONNX_NOT_COMPILED)
    classifier = smoothed_classifier(
        args, inputs.model, meta, inputs.dataset, sigma, precision, denoiser=denoiser
    )
    config, info = checkpoint_identity(inputs.checkpoint, meta, sys.argv)
    config |= {"dataset": inputs.dataset.info.name, "split": args.split} | denoiser_config
    info |= denoiser_info
    return SmoothedRun(
        classifier=classifier,
        dataset=inputs.dataset,
        config=config,
        info=info,
        shard=shard,
        out=out,
        device=device,
        sigma=sigma,
        meta=meta,
        checkpoint=inputs.checkpoint,
    )


def check_json_target(path: Path, checkpoint: Path) -> None:
    """--json may replace an earlier JSON record, never anything else (a run file, the
    checkpoint itself): refuse those, and a directory, before any measuring."""
    if path.is_dir():
        raise ValueError(f"--json {path} is a directory; give a file name")
    if checkpoint.exists() and path.exists() and path.samefile(checkpoint):
        raise ValueError(f"--json {path} is the checkpoint being measured")
    if path.is_file():
        try:
            json.loads(path.read_text())
        except (UnicodeDecodeError, ValueError):
            raise ValueError(
                f"--json {path} exists and is not a JSON file; refusing to overwrite it"
            ) from None
