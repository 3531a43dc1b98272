"""Model registry: ``create_model(arch, num_classes, input_shape, mean, std)``.

Every model is ``nn.Sequential(Normalize(mean, std), body)`` and takes images in [0,1].
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from smoothcert.checks import is_integer
from smoothcert.models.cnn import CNN3, LeNet
from smoothcert.models.normalize import Normalize
from smoothcert.models.resnet import CifarResNet, CifarResNet18, ResNet50
from smoothcert.models.vgg import VGG16

__all__ = ["Normalize", "create_model", "list_models", "count_parameters"]

Builder = Callable[[int, tuple[int, int, int], type[nn.Module]], nn.Module]

_ARCHS: dict[str, tuple[Builder, type[nn.Module], str]] = {
    "cnn3": (
        lambda k, s, a: CNN3(k, s, a),
        nn.ReLU,
        "3-layer CNN of Sinha et al. / the NAL paper (MNIST)",
    ),
    "cnn3-elu": (lambda k, s, a: CNN3(k, s, a), nn.ELU, "cnn3 with ELU (WRM's network)"),
    "lenet": (lambda k, s, a: LeNet(k, s, a), nn.ReLU, "LeNet-5 with ReLU and max-pooling"),
    "resnet18": (
        lambda k, s, a: CifarResNet18(k, s[0], a),
        nn.ReLU,
        "ResNet-18, CIFAR form (11.2M)",
    ),
    "resnet18-elu": (lambda k, s, a: CifarResNet18(k, s[0], a), nn.ELU, "resnet18 with ELU"),
    "vgg16": (lambda k, s, a: VGG16(k, s, a), nn.ReLU, "VGG-16 with batch norm, CIFAR form"),
    "vgg16-elu": (lambda k, s, a: VGG16(k, s, a), nn.ELU, "vgg16 with ELU"),
    "resnet20": (
        lambda k, s, a: CifarResNet(3, k, s[0], a),
        nn.ReLU,
        "CIFAR ResNet-20 of He et al. (0.27M)",
    ),
    "resnet110": (
        lambda k, s, a: CifarResNet(18, k, s[0], a),
        nn.ReLU,
        "CIFAR ResNet-110 (Cohen et al.; 1.7M)",
    ),
    "resnet50": (lambda k, s, a: ResNet50(k, s[0], a), nn.ReLU, "ResNet-50 for 224×224 (25.6M)"),
}


def list_models() -> list[str]:
    return list(_ARCHS)


def describe_model(arch: str) -> str:
    return _ARCHS[arch][2]


def _as_real(value: Any) -> float | None:
    """``value`` as a float, or None when it is no number (str and bool are not numbers)."""
    if isinstance(value, (str, bytes, bool)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _check_input_shape(input_shape: Any) -> tuple[int, int, int]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or not all(is_integer(v) and v > 0 for v in shape):
        raise ValueError(
            f"input_shape must be (C, H, W) with three positive integer sizes, got {input_shape!r}"
        )
    return tuple(int(v) for v in shape)  # type: ignore[return-value]


def _check_channel_values(name: str, values: Any, channels: int) -> list[float]:
    """``values`` (mean or std) as ``channels`` finite floats; std must also be > 0."""
    try:
        items = list(values)
    except TypeError:
        items = None
    if items is None or isinstance(values, (str, bytes)):
        raise ValueError(f"{name} must be a sequence of {channels} number(s), got {values!r}")
    if len(items) != channels:
        raise ValueError(
            f"{name} needs {channels} value(s), one per input channel, got {len(items)}"
        )
    floats = [_as_real(v) for v in items]
    # NaN or inf would build a model whose every output is NaN or constant.
    if not all(f is not None and math.isfinite(f) for f in floats):
        raise ValueError(f"{name} must hold finite numbers, got {items!r}")
    if name == "std" and not all(f > 0 for f in floats):  # type: ignore[operator]
        raise ValueError(f"std must be > 0 per channel, got {items!r}")
    return floats  # type: ignore[return-value]


def create_model(
    arch: str,
    num_classes: int,
    input_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
) -> nn.Sequential:
    """Build ``arch`` for ``num_classes`` classes and C×H×W ``input_shape``; [0,1] inputs.

    The model carries ``input_shape`` as a plain attribute (not a buffer, so checkpoints are
    unchanged): :class:`smoothcert.SmoothedClassifier` reads it to validate its inputs.
    """
    if not isinstance(arch, str) or arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(_ARCHS)}")
    if not is_integer(num_classes) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    shape = _check_input_shape(input_shape)
    mean_values = _check_channel_values("mean", mean, shape[0])
    std_values = _check_channel_values("std", std, shape[0])
    build, act, _ = _ARCHS[arch]
    model = nn.Sequential(Normalize(mean_values, std_values), build(int(num_classes), shape, act))
    model.input_shape = shape
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
