"""Which arithmetic is fast on a device: ``precision="auto"`` and the emulated-bf16 warning.

bf16 autocast pays only where the hardware computes in bf16. On CUDA that is compute
capability 8.0 and newer (``torch.cuda.is_bf16_supported(including_emulation=False)``). On an
x86 CPU it is AVX-512 BF16 or AMX: there oneDNN's bf16 convolutions run about 2-3× faster than
fp32 (resnet20 inference 2.95×, training 2.29× on an AMD EPYC with AVX-512 BF16, one thread).
Without them bf16 is emulated by converting to float32 around every kernel, and it runs about
6× *slower* than fp32 (resnet20 inference 0.16× on an AVX2-only CPU).

:func:`choose_precision` decides by capability where that is conclusive: native bf16
(``avx512_bf16`` or AMX) means bf16, a CPU without AVX-512 (torch's capability ``AVX2``,
``DEFAULT``, ``NO AVX``) means fp32. Elsewhere (AVX-512 without bf16, ARM, other
architectures) it measures: :func:`bf16_speedup` times a small convolutional net both ways,
once per machine, and caches the ratio in ``$SMOOTHCERT_CACHE/precision-probe.json`` keyed by
the CPU, torch's capability, the torch version and the thread count.

Examples
--------
>>> import torch
>>> choice = choose_precision(torch.device("cpu"), native=lambda: True)
>>> choice.precision, choice.reason
('bf16', 'native bf16 on this CPU: AVX-512 BF16 or AMX')
>>> choose_precision(torch.device("cpu"), native=lambda: False).precision
'fp32'
>>> choose_precision(torch.device("cpu"), native=lambda: None, speedup=lambda: 0.8).precision
'fp32'
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

PRECISION_CHOICES = ("auto", "fp32", "bf16")
"""What ``--precision`` accepts where the arithmetic is bf16 or fp32 (certify, predict,
attack); ``train`` also takes fp16 on CUDA."""

#: bf16 is chosen by the probe only when it is clearly faster (timings of a shared machine vary).
PROBE_MARGIN = 1.1

_PROBE_FILE = "precision-probe.json"


@dataclass(frozen=True)
class PrecisionChoice:
    """What ``precision="auto"`` resolved to on a device, and why (one line for the user)."""

    precision: str  # "fp32" | "bf16"
    reason: str


def cpu_capability() -> str:
    """torch's ATen CPU capability.

    Returns
    -------
    str
        ``"AVX512"``, ``"AVX2"``, ``"DEFAULT"``, ``"NO AVX"``, … (``"unknown"`` when this torch
        cannot tell).
    """
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # noqa: BLE001 - an old torch without the call: say so, decide by probe
        return "unknown"


def cpu_bf16_native() -> bool | None:
    """Whether this CPU computes bf16 natively.

    Returns
    -------
    bool or None
        True with AVX-512 BF16 or AMX; False on an x86 CPU without AVX-512 (bf16 is emulated);
        None when the capability does not settle it (AVX-512 without BF16, ARM and other
        architectures: measure with :func:`bf16_speedup`).
    """
    flags = getattr(torch, "cpu", None)
    for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        probe = getattr(flags, name, None)
        if probe is not None and bool(probe()):
            return True
    machine = platform.machine().lower()
    if machine in ("x86_64", "amd64", "i386", "i686") and cpu_capability() in (
        "AVX2",
        "DEFAULT",
        "NO AVX",
    ):
        return False
    return None


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "cpu model", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _probe_key() -> str:
    return "|".join(
        (platform.machine(), _cpu_name(), cpu_capability(), torch.__version__,
         f"threads={torch.get_num_threads()}")
    )  # fmt: skip


def _probe_path() -> Path:
    env = os.environ.get("SMOOTHCERT_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "smoothcert"
    return root / _PROBE_FILE


def _measure_bf16_speedup(seconds: float = 0.3) -> float:
    """Images/s of a small conv net in bf16 autocast (channels-last) over fp32 on this CPU."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(64 * 16 * 16, 10),
    ).eval()  # fmt: skip
    x = torch.rand(32, 3, 32, 32)

    def rate(bf16: bool) -> float:
        model, inputs = net, x
        if bf16:
            model = net.to(memory_format=torch.channels_last)
            inputs = x.contiguous(memory_format=torch.channels_last)
        best = 0.0
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            model(inputs)  # warm-up: oneDNN builds its kernels on the first call
            for _ in range(3):
                count, t0 = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - t0) < seconds / 3:
                    model(inputs)
                    count += len(inputs)
                best = max(best, count / elapsed)
        return best

    fp32 = rate(False)
    return rate(True) / fp32


def bf16_speedup(*, refresh: bool = False) -> float:
    """bf16 autocast throughput over fp32 on this CPU, measured once per machine and cached.

    Parameters
    ----------
    refresh : bool, default False
        Measure again even when a cached value exists.

    Returns
    -------
    float
        The ratio (above 1: bf16 is faster), from a short probe (about a second).
    """
    path, key = _probe_path(), _probe_key()
    cache: dict[str, float] = {}
    try:
        loaded = json.loads(path.read_text())
        if isinstance(loaded, dict):
            cache = {k: float(v) for k, v in loaded.items() if isinstance(v, int | float)}
    except (OSError, ValueError):
        pass
    if key in cache and not refresh:
        return cache[key]
    ratio = round(_measure_bf16_speedup(), 3)
    cache[key] = ratio
    try:  # a cache that cannot be written costs a probe next time, nothing else
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
        tmp.replace(path)
    except OSError:
        pass
    return ratio


def choose_precision(
    device: torch.device | str,
    *,
    native: Callable[[], bool | None] | None = None,
    speedup: Callable[[], float] | None = None,
) -> PrecisionChoice:
    """The fast arithmetic on ``device``: what ``precision="auto"`` means.

    Parameters
    ----------
    device : torch.device or str
        Where the model runs.
    native, speedup : callable, optional
        The capability test and the measured probe; default :func:`cpu_bf16_native` and
        :func:`bf16_speedup` (replaceable for tests).

    Returns
    -------
    PrecisionChoice
        ``"bf16"`` where bf16 autocast is faster on ``device``, else ``"fp32"``, with the
        reason in one line.
    """
    device = torch.device(device)
    native = native or cpu_bf16_native
    speedup = speedup or bf16_speedup
    if device.type == "cuda":
        try:
            ok = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # older torch: no including_emulation argument
            ok = torch.cuda.is_bf16_supported()
        if ok:
            return PrecisionChoice("bf16", "native bf16 on this GPU")
        return PrecisionChoice("fp32", "this GPU has no native bf16")
    if device.type != "cpu":
        return PrecisionChoice("fp32", f"bf16 autocast is not chosen automatically on {device}")
    is_native = native()
    if is_native is True:
        return PrecisionChoice("bf16", "native bf16 on this CPU: AVX-512 BF16 or AMX")
    if is_native is False:
        return PrecisionChoice(
            "fp32", f"this CPU emulates bf16 (capability {cpu_capability()}): fp32 is faster"
        )
    ratio = speedup()
    if ratio >= PROBE_MARGIN:
        return PrecisionChoice("bf16", f"bf16 measured {ratio:.2f}× fp32 on this CPU")
    return PrecisionChoice("fp32", f"bf16 measured {ratio:.2f}× fp32 on this CPU")


def emulated_bf16_warning(
    device: torch.device | str,
    *,
    native: Callable[[], bool | None] | None = None,
    speedup: Callable[[], float] | None = None,
) -> str | None:
    """The warning for an explicit bf16 on a device that emulates it.

    Parameters
    ----------
    device : torch.device or str
        Where the model runs.
    native, speedup : callable, optional
        The capability test and the measured probe, as in :func:`choose_precision`.

    Returns
    -------
    str or None
        One line with the measured slowdown and what to use instead; None where bf16 is native
        or measured no slower than fp32.
    """
    device = torch.device(device)
    native = native or cpu_bf16_native
    speedup = speedup or bf16_speedup
    if device.type != "cpu" or native() is True:
        return None
    ratio = speedup()
    if ratio >= 1.0:
        return None
    return (
        f"precision bf16 is emulated on this CPU (capability {cpu_capability()}): it runs at "
        f"{ratio:.2f}× the speed of fp32 here (measured); use precision auto or fp32"
    )


def resolve_precision(
    requested: str,
    device: torch.device | str,
    *,
    recorded: str | None = None,
    native: Callable[[], bool | None] | None = None,
    speedup: Callable[[], float] | None = None,
) -> tuple[str, str | None]:
    """The precision a run uses, and the one line to tell the user (None: nothing to say).

    ``"auto"`` becomes ``recorded`` when the run being resumed recorded one (a resume never
    switches precision, whatever this machine prefers), else :func:`choose_precision`. An
    explicit precision is kept as given; for ``"bf16"`` on a CPU that emulates it the line is
    the warning of :func:`emulated_bf16_warning`.

    Parameters
    ----------
    requested : str
        ``"auto"`` or a concrete precision (``"fp32"``, ``"bf16"``, ``"fp16"``).
    device : torch.device or str
        Where the model runs.
    recorded : str, optional
        The precision stored by the run this one resumes.

    Returns
    -------
    (str, str or None)
        The concrete precision and a message.
    """
    if requested == "auto":
        if recorded is not None:
            note = f"precision auto: {recorded}, as recorded by the run being resumed"
            slow = recorded == "bf16" and emulated_bf16_warning(
                device, native=native, speedup=speedup
            )
            return recorded, f"{note}; {slow}" if slow else note
        choice = choose_precision(device, native=native, speedup=speedup)
        return choice.precision, f"precision auto: {choice.precision} ({choice.reason})"
    if requested == "bf16":
        return requested, emulated_bf16_warning(device, native=native, speedup=speedup)
    return requested, None
