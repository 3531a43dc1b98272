"""The contract between the training loop and a training method.

A method is a per-batch loss: given the model (in train mode), a batch of clean inputs in
[0,1] and their labels, it returns the loss to minimize, the logits it trained on (for the
running accuracy) and any per-batch statistics worth logging (e.g. WRM/NAL transport costs).
Its hyperparameters are dataclass fields; the CLI turns every field into a flag, using the
field's ``metadata["help"]`` (which states units) and its default.

Methods register themselves with :func:`register`; :func:`get_method` builds one by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from smoothcert.checks import FLOAT32_MAX


@dataclass
class BatchContext:
    """Where the loop is, and the randomness a method must use (never the global RNG)."""

    epoch: int  # 0-based
    epochs: int  # total planned epochs
    step: int  # global optimizer step, 0-based
    generator: torch.Generator  # on the batch's device; its state is checkpointed by the loop


@dataclass
class MethodOutput:
    loss: torch.Tensor  # scalar, to be minimized
    logits: torch.Tensor  # [B', num_classes] logits the loss was computed on
    targets: torch.Tensor  # [B'] labels matching `logits` (methods with noise copies repeat y)
    stats: dict[str, float] = field(default_factory=dict)  # averaged over the epoch and logged


@dataclass
class Method:
    """Base class. Subclasses are dataclasses whose fields are the method's hyperparameters."""

    name: ClassVar[str] = ""
    #: Hyperparameters added after runs were recorded without them, at the value those runs
    #: were trained with (the behaviour before the option existed). A run whose config.json
    #: lacks one resumes with this value, not with the new default (training.loop).
    LEGACY: ClassVar[dict[str, Any]] = {}

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        raise NotImplementedError

    @property
    def noise_sigma(self) -> float | None:
        """The Gaussian noise level this method trains for (None when it has none)."""
        return getattr(self, "sigma", None)

    def hyperparameters(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_REGISTRY: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    _import_builtin_methods()
    return sorted(_REGISTRY)


def method_class(name: str) -> type[Method]:
    _import_builtin_methods()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown training method {name!r}; choose one of {', '.join(sorted(_REGISTRY))}"
        ) from None


def get_method(name: str, **hyperparameters: Any) -> Method:
    """Build method ``name``; unknown hyperparameters are an error, None means the default."""
    cls = method_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(hyperparameters) - known)
    if unknown:
        raise ValueError(f"method {name!r} has no hyperparameter(s) {', '.join(unknown)}")
    given = {k: v for k, v in hyperparameters.items() if v is not None}
    for key, value in given.items():
        # NaN, inf, or beyond float32 (1e40 is inf once on the model's device) would train
        # to NaN and be reported as a divergence that blames the learning rate.
        if isinstance(value, float) and not abs(value) <= FLOAT32_MAX:
            raise ValueError(f"{key} must be a finite number (float32 range), got {value!r}")
    return cls(**given)


_BUILTIN = ("standard", "gaussian", "stn", "smoothadv", "trades", "wrm", "nal")


def _import_builtin_methods() -> None:
    import importlib

    for module in _BUILTIN:
        try:
            importlib.import_module(f"smoothcert.training.{module}")
        except ModuleNotFoundError as exc:
            # A method module not written yet is simply not offered.
            if exc.name != f"smoothcert.training.{module}":
                raise
