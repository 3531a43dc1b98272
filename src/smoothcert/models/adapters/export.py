"""Export a PyTorch classifier to the formats :func:`smoothcert.models.adapters.load_model`
reads, with a dynamic batch dimension (the smoothed classifier evaluates noisy copies in
batches). Thin wrappers over ``torch.onnx.export`` (needs the onnx and onnxscript packages),
``torch.export`` and ``torch.jit.trace``; the model is exported in eval mode."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn


def _example(input_shape: Sequence[int]) -> tuple[torch.Tensor]:
    # A batch of 2: a batch of 1 can let the exporter specialize the batch dimension.
    return (torch.rand(2, *input_shape, generator=torch.Generator().manual_seed(0)),)


def _dynamic_batch() -> tuple[dict[int, object]]:
    return ({0: torch.export.Dim("batch")},)


def export_onnx(model: nn.Module, path: str | Path, input_shape: Sequence[int]) -> Path:
    """``model`` as ONNX at ``path``: one input ``x`` [batch, *input_shape], output ``logits``."""
    model.eval()
    # The exporter reports its progress on stdout and warns freely; the library never prints.
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, _example(input_shape), str(path), input_names=["x"],
                output_names=["logits"], dynamic_shapes=_dynamic_batch(),
            )  # fmt: skip
    finally:
        logger.setLevel(level)
    return Path(path)


def export_program(model: nn.Module, path: str | Path, input_shape: Sequence[int]) -> Path:
    """``model`` as a torch.export program (``.pt2``) at ``path``."""
    model.eval()
    program = torch.export.export(model, _example(input_shape), dynamic_shapes=_dynamic_batch())
    torch.export.save(program, str(path))
    return Path(path)


def export_torchscript(model: nn.Module, path: str | Path, input_shape: Sequence[int]) -> Path:
    """``model`` traced to TorchScript at ``path``."""
    model.eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation and tracer warnings: the library never prints
        torch.jit.trace(model, _example(input_shape)).save(str(path))
    return Path(path)
