"""Small torch helpers shared by every layer: eval mode for a block, with or without inference
mode (:func:`evaluating`), the floating dtype and the device a model computes in
(:func:`model_dtype`, :func:`model_device`), and the device a caller names, checked to exist
here (:func:`resolve_device`)."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator

import torch
from torch import nn

from smoothcert._util.checks import ParameterError


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


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The torch device ``device`` names (None or ``"auto"``: CUDA when available, else CPU),
    checked to exist on this machine, so that a typo or a missing GPU is a one-line error and
    not a traceback from deep inside torch when the model is moved.

    Raises
    ------
    ParameterError
        Naming ``device``, when it is not a device torch knows, holds no data (``meta``), or
        is not present or not working on this machine.

    Examples
    --------
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> resolve_device("meta")
    Traceback (most recent call last):
    ...
    smoothcert._util.checks.ParameterError: device meta holds no data; use e.g. cpu, cuda or cuda:0
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        problem = f"{device} is not a torch device (e.g. cpu, cuda, cuda:0)"
        raise ParameterError("device", problem) from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError("device", f"{device}: CUDA is not available on this machine")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ParameterError("device", f"{device}: this machine has {count} CUDA device(s)")
    elif resolved.type == "mps":
        if not torch.backends.mps.is_available():
            raise ParameterError("device", f"{device}: MPS is not available on this machine")
    elif resolved.type == "meta":
        raise ParameterError("device", f"{device} holds no data; use e.g. cpu, cuda or cuda:0")
    elif resolved.type != "cpu":
        _probe(resolved, device)
    return resolved


def _probe(device: torch.device, spec: object) -> None:
    """Allocate on a less common device type (xpu, hpu, ...) to find out whether it works."""
    try:
        torch.empty(0, device=device)
    except Exception as exc:  # each backend fails its own way (AssertionError, ImportError, ...)
        # The first sentence only: some backends explain at length on one line.
        reason = (str(exc).strip() or type(exc).__name__).splitlines()[0].split(". ")[0][:120]
        raise ParameterError(
            "device", f"{spec} is not available on this machine ({reason})"
        ) from None
