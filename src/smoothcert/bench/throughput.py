"""Throughput of certification on this machine: samples/s of the base model's own forward pass
over pre-generated noisy inputs and of ``SmoothedClassifier.counts()`` at the same batch size,
measured round-robin (every configuration in every round) so that all figures see the same
load, with the median of per-round ratios as the result. Used by ``smoothcert bench`` and the
benchmarks in benchmarks/.

The automatic batch size of ``SmoothedClassifier(batch_size=None)`` lives below the classifier,
in :mod:`smoothcert.certify.tuning`.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import torch
from torch import nn

from smoothcert._util.checks import ParameterError, positive_int
from smoothcert._util.hardware import choose_precision, cpu_bf16_native
from smoothcert._util.torch_helpers import model_device, model_dtype
from smoothcert.certify.smoothing import SmoothedClassifier
from smoothcert.certify.tuning import sync

#: (precision, channels_last) paths, slowest first.
PATHS: tuple[tuple[str, bool], ...] = (
    ("fp32", False),
    ("fp32", True),
    ("bf16", False),
    ("bf16", True),
)


def path_name(precision: str, channels_last: bool) -> str:
    return f"{precision}{'+channels_last' if channels_last else ''}"


def machine(device: torch.device | str = "cpu") -> dict:
    """Cores, threads, versions and the device: the context a throughput figure needs."""
    device = torch.device(device)
    info = {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_native": cpu_bf16_native(),  # None: the capability does not tell
        "precision_auto": choose_precision(device).precision,
        "python": platform.python_version(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _check_fits(x: torch.Tensor, batch_size: int, batches_per_round: int) -> None:
    """The pre-generated forward inputs (plus a channels-last copy) must fit in half the
    machine's memory: a typo in --batch should be a clear error, not an allocator failure."""
    need = 2 * batch_size * batches_per_round * x.numel() * x.element_size()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no check
        return
    if need > memory // 2:
        raise ValueError(
            f"batch_size {batch_size} × batches_per_round {batches_per_round} inputs of "
            f"{tuple(x.shape)} need {need / 2**30:.1f} GiB, more than half of this machine's "
            f"{memory / 2**30:.1f} GiB; use a smaller batch"
        )


def set_layout(model: nn.Module, channels_last: bool) -> None:
    """Put the model's 4-D parameters in a path's layout (counts() with channels-last converts
    them in place, so every measurement resets it first)."""
    model.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def noisy_batches(
    x: torch.Tensor, sigma: float, batch_size: int, k: int, seed: int = 0
) -> list[torch.Tensor]:
    """k batches of x + σε, generated before timing starts."""
    gen = torch.Generator(device=x.device).manual_seed(seed)
    shape = (batch_size, *x.shape)
    return [
        x.unsqueeze(0) + sigma * torch.randn(shape, generator=gen, dtype=x.dtype, device=x.device)
        for _ in range(k)
    ]


def forward_rate(
    model: nn.Module, batches: list[torch.Tensor], *, precision: str, channels_last: bool
) -> float:
    """Samples/s of model(batch).argmax(1) over pre-generated batches (eval, inference mode),
    after one warm-up call."""
    device = batches[0].device
    set_layout(model, channels_last)
    if channels_last:
        batches = [b.contiguous(memory_format=torch.channels_last) for b in batches]
    cast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if precision == "bf16"
        else contextlib.nullcontext()
    )
    model.eval()
    with torch.inference_mode(), cast:
        model(batches[0]).argmax(1)
        sync(device)
        t0 = time.perf_counter()
        for b in batches:
            model(b).argmax(1)
        sync(device)
        return sum(b.shape[0] for b in batches) / (time.perf_counter() - t0)


def counts_rate(g: SmoothedClassifier, x: torch.Tensor, n: int, seed: int = 0) -> float:
    """Samples/s of g.counts(x, n) (which returns on the host, so no extra sync is needed)."""
    gen = torch.Generator(device=g.device).manual_seed(seed)
    t0 = time.perf_counter()
    g.counts(x, n, generator=gen)
    return n / (time.perf_counter() - t0)


def interleaved(
    model: nn.Module,
    x: torch.Tensor,
    *,
    num_classes: int,
    sigma: float,
    batch_size: int,
    paths: Sequence[tuple[str, bool]] = PATHS,
    rounds: int = 5,
    batches_per_round: int = 2,
    baseline: Callable[[int], object] | None = None,
    sound: bool = False,
) -> dict:
    """For each (precision, channels_last) path, alternate forward-only and counts()
    measurements round-robin for ``rounds`` rounds at the same batch size. ``baseline(n)``, if
    given, is timed in each round too (e.g. a plain implementation of the paper's pseudocode).
    ``x`` is converted to the model's dtype, as ``SmoothedClassifier`` does. With ``sound``,
    counts() runs in sound mode (x must be on the 8-bit grid)."""
    rounds = positive_int("rounds", rounds)
    batches_per_round = positive_int("batches_per_round", batches_per_round)
    batch_size = positive_int("batch_size", batch_size)
    device = model_device(model, x.device)
    x = x.to(device=device, dtype=model_dtype(model))
    gs = {
        p: SmoothedClassifier(
            model,
            num_classes,
            sigma,
            batch_size=batch_size,
            precision=p[0],
            channels_last=p[1],
            input_shape=tuple(x.shape),
            device=device,
            sound=sound,
        )  # fmt: skip
        for p in paths
    }  # built first: the constructor validates num_classes and sigma before any work
    _check_fits(x, batch_size, batches_per_round)
    batches = noisy_batches(x, sigma, batch_size, batches_per_round)
    n = batch_size * batches_per_round
    fwd: dict = {p: [] for p in paths}
    cnt: dict = {p: [] for p in paths}
    base: list[float] = []
    for p, g in gs.items():  # warm-up
        set_layout(model, p[1])
        counts_rate(g, x, batch_size)
    for r in range(rounds):
        for p, g in gs.items():
            fwd[p].append(forward_rate(model, batches, precision=p[0], channels_last=p[1]))
            set_layout(model, p[1])
            cnt[p].append(counts_rate(g, x, n, seed=r))
        if baseline is not None:
            set_layout(model, False)
            t0 = time.perf_counter()
            baseline(n)
            sync(device)
            base.append(n / (time.perf_counter() - t0))
    set_layout(model, False)
    out: dict = {"batch_size": batch_size, "rounds": rounds, "samples_per_round": n, "paths": {}}
    for p in paths:
        out["paths"][path_name(*p)] = {
            "precision": p[0],
            "channels_last": p[1],
            "forward_samples_per_s": statistics.median(fwd[p]),
            "counts_samples_per_s": statistics.median(cnt[p]),
            "ratio": statistics.median(c / f for c, f in zip(cnt[p], fwd[p], strict=True)),
            "counts_rates": cnt[p],
        }
    if baseline is not None:
        out["baseline_samples_per_s"] = statistics.median(base)
        out["baseline_rates"] = base
    return out


def per_round_ratio(a: Sequence[float], b: Sequence[float]) -> float:
    """Median over rounds of a[r] / b[r] (rates measured back to back in the same round)."""
    return statistics.median(p / q for p, q in zip(a, b, strict=True))


def disagreement(
    model: nn.Module, inputs: Sequence[torch.Tensor], sigma: float, draws: int, seed: int = 0
) -> dict:
    """How often the bf16 + channels-last and the fp32 base classifiers disagree on the same
    noisy inputs x + σε (``draws`` per input): the price of certifying the bf16 classifier."""
    if len(inputs) == 0:
        raise ParameterError("inputs", "must contain at least one input, got none")
    draws = positive_int("draws", draws)
    device = model_device(model, inputs[0].device)
    dtype = model_dtype(model)
    gen = torch.Generator(device=device).manual_seed(seed)
    differ = total = 0
    model.eval()
    with torch.inference_mode():
        for x in inputs:
            x = x.to(device=device, dtype=dtype)
            batch = x.unsqueeze(0) + sigma * torch.randn(
                (draws, *x.shape), generator=gen, dtype=dtype, device=device
            )
            set_layout(model, False)
            fp32 = model(batch).argmax(1)
            conv = batch.dim() == 4
            set_layout(model, conv)
            with torch.autocast(device.type, dtype=torch.bfloat16):
                lowp = batch.contiguous(memory_format=torch.channels_last) if conv else batch
                bf16 = model(lowp).argmax(1)
            differ += int((fp32 != bf16).sum())
            total += draws
    set_layout(model, False)
    return {"inputs": len(inputs), "draws": draws, "disagreements": differ, "rate": differ / total}


def compiled_speedup(
    model: nn.Module,
    x: torch.Tensor,
    *,
    num_classes: int,
    sigma: float,
    batch_size: int,
    precision: str,
    channels_last: bool,
    rounds: int = 5,
    samples: int = 2000,
    sound: bool = False,
) -> dict:
    """counts() with the base model compiled (``compile=True``) against the eager model on
    one path, round-robin for ``rounds`` rounds of ``samples`` draws, after the compilation
    (timed, with its first batch): their samples/s and the median per-round speed-up."""
    device = model_device(model, x.device)
    x = x.to(device=device, dtype=model_dtype(model))
    kw = dict(
        batch_size=batch_size, precision=precision, channels_last=channels_last,
        input_shape=tuple(x.shape), device=device, sound=sound,
    )  # fmt: skip
    eager = SmoothedClassifier(model, num_classes, sigma, **kw)
    compiled = SmoothedClassifier(model, num_classes, sigma, compile=True, **kw)
    set_layout(model, channels_last)  # the compiled graph takes the weights as they are now
    t0 = time.perf_counter()
    counts_rate(compiled, x, batch_size)
    seconds = time.perf_counter() - t0
    counts_rate(eager, x, batch_size)  # warm-up
    e: list[float] = []
    c: list[float] = []
    for r in range(positive_int("rounds", rounds)):
        set_layout(model, channels_last)
        e.append(counts_rate(eager, x, samples, seed=r))
        c.append(counts_rate(compiled, x, samples, seed=r))
    set_layout(model, False)
    return {
        "path": path_name(precision, channels_last),
        "eager_samples_per_s": statistics.median(e),
        "compiled_samples_per_s": statistics.median(c),
        "speedup": per_round_ratio(c, e),
        "compile_seconds": seconds,
    }


def benchmark(
    model: nn.Module,
    x: torch.Tensor,
    *,
    num_classes: int,
    sigma: float,
    batch_size: int = 1000,
    rounds: int = 5,
    batches_per_round: int = 2,
    disagreement_inputs: Sequence[torch.Tensor] = (),
    disagreement_draws: int = 100,
    baseline: Callable[[int], object] | None = None,
    paths: Sequence[tuple[str, bool]] | None = None,
    sound: bool = False,
    compile: bool = False,
) -> dict:
    """What ``smoothcert bench`` reports for a model and an input like ``x``: every path
    (channels-last ones only for conv nets) measured by :func:`interleaved`, each path's and
    the fastest path's speedup over plain fp32 (median of per-round ratios), the batch size the
    automatic search picks for the fastest path, and the bf16/fp32 disagreement on
    ``disagreement_inputs`` (skipped when empty). ``paths`` limits the paths measured.
    ``baseline(n)``, if given (benchmarks/: the
    paper's pseudocode), joins every round, and the record adds the speedups over it. With
    ``compile``, the fastest path is also measured compiled (:func:`compiled_speedup`)."""
    # disagreement_draws is used only after all the timing: check it before, not after.
    positive_int("disagreement_draws", disagreement_draws)
    device = model_device(model, x.device)
    conv = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if paths is None:  # every path that applies (an ONNX Runtime model: fp32 only)
        paths = [p for p in PATHS if conv or not p[1]]
    measured = interleaved(
        model, x, num_classes=num_classes, sigma=sigma, batch_size=batch_size, paths=paths,
        rounds=rounds, batches_per_round=batches_per_round, baseline=baseline, sound=sound,
    )  # fmt: skip
    rates = {k: v.pop("counts_rates") for k, v in measured["paths"].items()}
    base = measured.pop("baseline_rates", None)
    fastest = max(rates, key=lambda k: measured["paths"][k]["counts_samples_per_s"])
    plain = rates[path_name("fp32", False)]
    record: dict = {
        "machine": machine(device),
        "input_shape": list(x.shape),
        "sigma": sigma,
        "sound": sound,
        **measured,
        "fastest": fastest,
        "over_fp32": {k: per_round_ratio(r, plain) for k, r in rates.items()},
    }
    record["fastest_over_fp32"] = record["over_fp32"][fastest]
    if base is not None:
        record["speedup_over_baseline"] = per_round_ratio(rates[fastest], base)
        record["fp32_speedup_over_baseline"] = per_round_ratio(plain, base)
    best = measured["paths"][fastest]
    auto = SmoothedClassifier(
        model, num_classes, sigma, batch_size=None, precision=best["precision"],
        channels_last=best["channels_last"], input_shape=tuple(x.shape), device=device,
        sound=sound,
    )  # fmt: skip
    chosen = auto.resolve_batch_size(x)
    set_layout(model, False)
    record["auto_batch_size"] = {
        "path": fastest,
        "chosen": chosen,
        "samples_per_s": {str(k): round(v) for k, v in auto.batch_size_timings.items()},
    }
    if compile:
        record["compiled"] = compiled_speedup(
            model, x, num_classes=num_classes, sigma=sigma, batch_size=batch_size,
            precision=best["precision"], channels_last=best["channels_last"], rounds=rounds,
            samples=measured["samples_per_round"], sound=sound,
        )  # fmt: skip
    if disagreement_inputs:
        record["bf16_fp32_disagreement"] = disagreement(
            model, disagreement_inputs, sigma, disagreement_draws
        )
    return record
