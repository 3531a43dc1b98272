"""Mixed-precision training: the base model under autocast, seen by every method as fp32.

``fp32`` trains in float32. ``bf16`` runs the model's forward and backward under
``torch.autocast(dtype=bfloat16)`` on CPU or CUDA while the weights, the optimizer state and
the loss stay float32 (autocast, not a bf16 copy of the model). ``fp16`` does the same with
float16 on CUDA only, with a gradient scaler, since float16's range underflows small gradients.

Methods never see the precision: the loop hands them :class:`AutocastModel`, whose logits are
float32, so their losses, KL terms and inner attacks (gradients with respect to the input)
are written once and run under every precision.

Why bf16 training reaches about 2× and not bf16 inference's 4× on a CPU (profile of resnet20,
batch 128, 2 threads, bf16 + channels-last): convolutions forward and backward are 37% of a
step; batch norm forward and backward 24%, ReLU forward and backward 18% and the residual adds
11% are memory-bound elementwise kernels that bf16 barely speeds up. In eval mode (inference)
batch norm is an affine map and ReLU is cheap, so convolutions dominate there.
"""

from __future__ import annotations

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16")
"""Accepted values of ``TrainConfig.precision``."""

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse a precision the device cannot train in (one clear message)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision fp16 needs a CUDA device (got {device.type}); use bf16 on this device"
        )
    if precision == "bf16" and not bf16_supported(device):
        raise ValueError(f"precision bf16 is not supported on device {device}; use fp32")


def bf16_supported(device: torch.device) -> bool:
    """Whether autocast to bf16 runs natively on ``device``."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    # CPU: oneDNN kernels, or an exact float32 emulation on CPUs without bf16 units.
    return device.type == "cpu"


def has_conv2d(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def default_channels_last(precision: str, model: nn.Module) -> bool:
    """Channels-last where it helps: conv nets in bf16/fp16 (fp32 keeps the plain layout, so
    fp32 runs stay bit-identical to earlier releases unless asked)."""
    return precision != "fp32" and has_conv2d(model)


class AutocastModel(nn.Module):
    """``model`` run under autocast to ``precision`` with float32 logits.

    Parameters
    ----------
    model : nn.Module
        The base classifier; it is not copied, so its weights are the trained ones.
    precision : str
        ``"fp32"`` (no autocast), ``"bf16"`` or ``"fp16"``.
    channels_last : bool
        Feed 4-D inputs in channels-last layout (the model itself is converted by the caller).
    """

    def __init__(self, model: nn.Module, precision: str, channels_last: bool) -> None:
        super().__init__()
        self.model = model
        self.precision = precision
        self.channels_last = channels_last

    def forward(self, x: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        # *args: further inputs passed through as they are (a diffusion ε-network's timesteps).
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        if self.precision == "fp32":
            return self.model(x, *args)
        with torch.autocast(device_type=x.device.type, dtype=_DTYPES[self.precision]):
            logits = self.model(x, *args)
        return logits.float()


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 (its range needs one); None otherwise."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


class ScaledOptimizer:
    """The optimizer as the training step uses it: ``zero_grad``, ``backward(loss)``, ``step``.
    Under fp16 (a ``scaler``) the loss is scaled so that small gradients survive and the
    gradients unscaled before the step, which the scaler skips when they overflowed; otherwise
    these are the optimizer's own calls."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None = None
    ) -> None:
        self.optimizer = optimizer
        self.scaler = scaler

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def backward(self, loss: torch.Tensor) -> None:
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self) -> None:
        if self.scaler is None:
            self.optimizer.step()
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
