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
    """Where the loop is, and the randomness a method must use (never the global RNG).

    Attributes
    ----------
    epoch : int
        The current epoch, 0-based.
    epochs : int
        Total planned epochs.
    step : int
        The global optimizer step, 0-based.
    generator : torch.Generator
        On the batch's device; its state is checkpointed by the loop, so a resumed run draws
        the same noise.
    """

    epoch: int  # 0-based
    epochs: int  # total planned epochs
    step: int  # global optimizer step, 0-based
    generator: torch.Generator  # on the batch's device; its state is checkpointed by the loop


@dataclass
class MethodOutput:
    """What :meth:`Method.loss` returns for one batch.

    Attributes
    ----------
    loss : torch.Tensor
        Scalar, to be minimized.
    logits : torch.Tensor or None
        [B', num_classes], the logits the loss was computed on (for the running accuracy);
        None for an objective without a prediction (the denoiser objectives of
        :mod:`smoothcert.training.methods.denoiser_methods`), which logs no training accuracy.
    targets : torch.Tensor
        [B'], the labels matching ``logits`` (methods with noisy copies repeat y).
    stats : dict of str to float
        Per-batch statistics, averaged over the epoch and logged.
    """

    loss: torch.Tensor  # scalar, to be minimized
    logits: torch.Tensor | None  # [B', num_classes] logits the loss was computed on (None: none)
    targets: torch.Tensor  # [B'] labels matching `logits` (methods with noise copies repeat y)
    stats: dict[str, float] = field(default_factory=dict)  # averaged over the epoch and logged


@dataclass
class Method:
    """Base class of training methods: a per-batch loss with hyperparameters.

    Subclasses are dataclasses whose fields are the method's hyperparameters (the CLI turns
    each into a flag, with the field's ``metadata["help"]`` and default), set a class
    attribute ``name`` and are decorated with :func:`register`.
    """

    name: ClassVar[str] = ""

    def loss(
        self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext
    ) -> MethodOutput:
        """The loss of one batch, to be minimized; every subclass defines it.

        Parameters
        ----------
        model : nn.Module
            The model, in train mode.
        x : torch.Tensor
            A batch of clean inputs in [0, 1].
        y : torch.Tensor
            Their labels.
        ctx : BatchContext
            Where the loop is and the generator to draw any randomness from.

        Returns
        -------
        MethodOutput
            The loss, the logits it trained on with their labels, and statistics to log.
        """
        raise NotImplementedError

    @property
    def noise_sigma(self) -> float | None:
        """The Gaussian noise level this method trains for (None when it has none)."""
        return getattr(self, "sigma", None)

    def hyperparameters(self) -> dict[str, Any]:
        """The method's hyperparameters, as stored in checkpoints.

        Returns
        -------
        dict
            Field name -> value.
        """
        return dataclasses.asdict(self)


#: name -> method class, filled by :func:`register` (read through training.registry).
METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: make a method available by its ``name``.

    Names are unique: registering a second class under a name already taken raises (it used
    to replace the first silently).

    Parameters
    ----------
    cls : type of Method
        The method class, with a non-empty ``name``.

    Returns
    -------
    type of Method
        ``cls``, unchanged.

    Raises
    ------
    ValueError
        If ``cls.name`` is empty, or another class is registered under it.
    """
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    existing = METHODS.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"a training method named {cls.name!r} is already registered "
            f"({existing.__module__}.{existing.__qualname__}); give {cls.__qualname__} another name"
        )
    METHODS[cls.name] = cls
    return cls
