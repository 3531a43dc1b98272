"""Small torch helpers shared by every layer: eval mode for a block, with or without inference
mode (:func:`evaluating`), and the floating dtype and the device a model computes in
(:func:`model_dtype`, :func:`model_device`)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def evaluating(model: nn.Module, *, inference: bool = True) -> Iterator[nn.Module]:
    """Eval mode for the duration, and inference mode unless ``inference=False`` (attacks need
    gradients with respect to the input); the training flag is restored after."""
    was_training = model.training
    model.eval()
    try:
        if inference:
            with torch.inference_mode():
                yield model
        else:
            yield model
    finally:
        model.train(was_training)


_FLOAT32 = torch.float32


def model_dtype(model: nn.Module, default: torch.dtype | None = _FLOAT32) -> torch.dtype | None:
    """The floating dtype the base model computes in: that of its first floating parameter
    (else floating buffer, e.g. a normalization layer's), ``default`` (float32) when it has
    none. Inputs are converted to it, since a float64 input into float32 weights fails inside
    the model."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return default


def model_device(model: nn.Module, default: torch.device | str = "cpu") -> torch.device:
    """The device of the model's first parameter (else buffer); ``default`` when it has none:
    a fixed function runs wherever its input is, so callers with an input pass its device."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return torch.device(default)


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())
