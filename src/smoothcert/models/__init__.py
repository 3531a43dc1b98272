"""Model registry: ``create_model(arch, num_classes, input_shape, mean, std)``.

Every model is ``nn.Sequential(Normalize(mean, std), body)`` and takes images in [0,1].
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

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


def create_model(
    arch: str,
    num_classes: int,
    input_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
) -> nn.Sequential:
    """Build ``arch`` for ``num_classes`` classes and C×H×W ``input_shape``; [0,1] inputs."""
    if arch not in _ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(_ARCHS)}")
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) <= 0:
        raise ValueError(
            f"input_shape must be (C, H, W) with positive sizes, got {tuple(input_shape)}"
        )
    if len(mean) != shape[0] or len(std) != shape[0]:
        raise ValueError(f"mean/std need {shape[0]} channel(s), got {len(mean)}/{len(std)}")
    build, act, _ = _ARCHS[arch]
    return nn.Sequential(Normalize(mean, std), build(num_classes, shape, act))


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
