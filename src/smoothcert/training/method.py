"""The contract between the training loop and a training method.

A method is a per-batch loss: given the model (in train mode), a batch of clean inputs in
[0,1] and their labels, it returns the loss to minimize, the logits it trained on (for the
running accuracy) and any per-batch statistics worth logging (e.g. WRM/NAL transport costs).
Its hyperparameters are dataclass fields; the CLI turns every field into a flag, using the
field's ``metadata["help"]`` (which states units) and its default.

Methods register themselves with :func:`register`; :mod:`smoothcert.training.registry`
imports the built-in ones and builds one by name (``get_method``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn


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


#: name -> method class, filled by :func:`register` (read through training.registry).
METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    METHODS[cls.name] = cls
    return cls
