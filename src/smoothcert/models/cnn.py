"""Small CNNs for 28×28 (and 32×32) inputs: the NAL/WRM three-layer CNN and LeNet-5."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from smoothcert.models.pooling import MaxPool2x2


class SamePadConv2d(nn.Conv2d):
    """Conv with TensorFlow-style 'same' padding for any stride: output = ceil(input / stride).

    The WRM reference network pads its first conv 'SAME' (28→14 at stride 2), which PyTorch's
    ``padding='same'`` does not support for stride > 1; the pad may be asymmetric.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(
            x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1], strict=True
        ):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def _flat_size(body: nn.Module, input_shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        out = body(torch.zeros(1, *input_shape))
    if out.numel() == 0:
        raise ValueError(f"input_shape {input_shape} is too small for this architecture")
    return out.numel()


def _check_min_size(name: str, input_shape: tuple[int, int, int], min_size: int, why: str) -> None:
    """A clear ValueError instead of torch's "Kernel size can't be greater than input size"."""
    h, w = input_shape[1:]
    if h < min_size or w < min_size:
        raise ValueError(
            f"{name} needs inputs of at least {min_size}×{min_size} ({why}), got {h}×{w}"
        )


class CNN3(nn.Module):
    """conv 64@8×8 s2 'same' → conv 128@6×6 s2 → conv 128@5×5 → linear.

    The MNIST network of Sinha et al. (2018), used by the NAL paper.
    """

    # H → ceil(H/2) ('same', stride 2) → (ceil(H/2) − 6) // 2 + 1 (6×6, stride 2), which the
    # final 5×5 conv needs to be ≥ 5: ceil(H/2) ≥ 14, so H ≥ 27 (likewise W).
    MIN_SIZE = 27

    def __init__(
        self, num_classes: int, input_shape: tuple[int, int, int], act: type[nn.Module]
    ) -> None:
        super().__init__()
        _check_min_size("cnn3", input_shape, self.MIN_SIZE, "8×8/2, 6×6/2 and 5×5 convolutions")
        c = input_shape[0]
        self.features = nn.Sequential(
            SamePadConv2d(c, 64, 8, stride=2), act(),
            nn.Conv2d(64, 128, 6, stride=2), act(),
            nn.Conv2d(128, 128, 5), act(),
            nn.Flatten(),
        )  # fmt: skip
        self.classifier = nn.Linear(_flat_size(self.features, input_shape), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class LeNet(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max-pooling: conv 6@5×5 (pad 2) → pool →
    conv 16@5×5 → pool → 120 → 84 → classes."""

    # H → H (padded 5×5) → H // 2 (pool) → H // 2 − 4 (5×5), which the last 2×2 pool needs to
    # be ≥ 2: H // 2 ≥ 6, so H ≥ 12 (likewise W).
    MIN_SIZE = 12

    def __init__(
        self, num_classes: int, input_shape: tuple[int, int, int], act: type[nn.Module]
    ) -> None:
        super().__init__()
        _check_min_size("lenet", input_shape, self.MIN_SIZE, "two 5×5 convolutions and poolings")
        c = input_shape[0]
        self.features = nn.Sequential(
            nn.Conv2d(c, 6, 5, padding=2), act(), MaxPool2x2(),
            nn.Conv2d(6, 16, 5), act(), MaxPool2x2(),
            nn.Flatten(),
        )  # fmt: skip
        self.classifier = nn.Sequential(
            nn.Linear(_flat_size(self.features, input_shape), 120), act(),
            nn.Linear(120, 84), act(),
            nn.Linear(84, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
