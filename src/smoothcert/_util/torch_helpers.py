"""Small torch helpers shared by every layer: eval and inference mode for a block
(:func:`evaluating`), the floating dtype and the device a model computes in."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[None]:
    """Eval mode and inference mode for the duration; the training flag is restored after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype the base model computes in: that of its first floating parameter
    (else floating buffer, e.g. a normalization layer's), float32 when it has none. Inputs are
    converted to it, since a float64 input into float32 weights fails inside the model."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.float32


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")
