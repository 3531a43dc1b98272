"""The resume state of a training run, and when to write it within an epoch.

``resume.safetensors`` holds the model, the optimizer state (flattened, no pickle), the
method generator's state and JSON metadata: ``epoch`` (completed epochs), ``step`` (optimizer
steps so far), the metrics history and the best validation score. A state written within an
epoch adds ``batch`` (batches of epoch ``epoch`` already trained), the running sums of that
epoch's metrics, and the augmentation generator's state; data order and the schedule are
pure functions of (seed, epoch, step), so these are all a rerun needs to continue exactly.
A state without ``batch`` (written at an epoch boundary) resumes at the start of epoch
``epoch``.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smoothcert._util.atomic import atomic_write_bytes
from smoothcert._util.checks import ParameterError
from smoothcert.models.checkpoint import decode_tensors, encode_tensors, load_state
from smoothcert.training.state import flatten_optimizer, unflatten_optimizer

DEFAULT_CHECKPOINT_EVERY = "10m"


@dataclass
class EpochSums:
    """The running sums behind an epoch's training metrics (exact in JSON: floats round-trip)."""

    loss: float = 0.0
    correct: int = 0
    seen: int = 0
    batches: int = 0
    seconds: float = 0.0  # training time of this epoch before the current process
    stats: dict[str, float] = field(default_factory=dict)

    def add(self, loss: float, correct: int, seen: int, stats: dict[str, float]) -> None:
        self.loss += loss
        self.correct += correct
        self.seen += seen
        self.batches += 1
        for key, value in stats.items():
            self.stats[key] = self.stats.get(key, 0.0) + float(value)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> EpochSums:
        return cls(**d)


@dataclass(frozen=True)
class CheckpointEvery:
    """Write a mid-epoch resume state every ``steps`` optimizer steps or ``seconds`` of
    training (None: never within an epoch; epoch boundaries are always written)."""

    steps: int | None = None
    seconds: float | None = None


def parse_checkpoint_every(value: int | str) -> CheckpointEvery:
    """``N`` (steps, int or digits), ``Nm`` (minutes, N may be fractional) or ``0``/``off``
    (epoch boundaries only) -> :class:`CheckpointEvery`."""
    allowed = "N steps (a positive integer), Nm minutes (e.g. 10m, 0.5m) or 0/off"
    if isinstance(value, bool):
        raise ParameterError("checkpoint_every", f"must be {allowed}, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ParameterError("checkpoint_every", f"must be {allowed}, got {value!r}")
        return CheckpointEvery(steps=value or None)
    text = str(value).strip().lower()
    if text in ("0", "off"):
        return CheckpointEvery()
    if re.fullmatch(r"[0-9]+", text):
        return CheckpointEvery(steps=int(text))
    m = re.fullmatch(r"([0-9]*\.?[0-9]+)m", text)
    if m and float(m.group(1)) > 0 and math.isfinite(float(m.group(1))):
        return CheckpointEvery(seconds=60.0 * float(m.group(1)))
    raise ParameterError("checkpoint_every", f"must be {allowed}, got {value!r}")


class CheckpointClock:
    """Decides after each step whether a mid-epoch state is due: one integer test or one
    clock read per step, nothing else (the loop's cost with no checkpoint due stays nil)."""

    def __init__(self, every: CheckpointEvery) -> None:
        self.every = every
        self.restart()

    def restart(self) -> None:
        s = self.every.seconds
        self.deadline = time.monotonic() + s if s is not None else math.inf

    def due(self, step: int) -> bool:
        if self.every.steps is not None:
            return step % self.every.steps == 0
        return self.every.seconds is not None and time.monotonic() >= self.deadline


def write_resume(
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    meta: dict[str, Any],
    augment_generator: torch.Generator | None = None,
) -> None:
    """Write the resume state atomically (temp file + rename): the commit point of a run."""
    tensors = {f"model/{k}": v for k, v in model.state_dict().items()}
    optim_tensors, structure = flatten_optimizer(optimizer.state_dict())
    tensors.update(optim_tensors)
    tensors["rng/method"] = generator.get_state()
    if augment_generator is not None:
        tensors["rng/augment"] = augment_generator.get_state()
    atomic_write_bytes(path, encode_tensors(tensors, meta | {"optimizer": structure}))


def read_resume(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator
) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Load the state into ``model``, ``optimizer`` and ``generator``; returns the metadata and
    the augmentation generator's state (None at an epoch boundary)."""
    tensors, meta = decode_tensors(path)
    model_tensors = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    load_state(model, model_tensors, str(path))
    device = next(model.parameters()).device
    optim_tensors = {k: v.to(device) for k, v in tensors.items() if k.startswith("optim/")}
    # Adam's "step" counters stay on the CPU, as torch keeps them.
    for k in optim_tensors:
        if k.endswith("/step"):
            optim_tensors[k] = tensors[k]
    optimizer.load_state_dict(unflatten_optimizer(optim_tensors, meta["optimizer"]))
    generator.set_state(tensors["rng/method"])
    return meta, tensors.get("rng/augment")
