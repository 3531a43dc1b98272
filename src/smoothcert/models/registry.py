"""The architectures ``create_model`` can build, each described by a :class:`ModelSpec`.

A spec names the architecture, how to build its body for a number of classes and a C×H×W
input shape, the activation it uses and a one-line description (the ``--arch`` help). The
table at the bottom registers every built-in architecture, in the order the CLI lists them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from smoothcert.models.cnn import CNN3, LeNet
from smoothcert.models.resnet import CifarResNet, CifarResNet18, ResNet50
from smoothcert.models.vgg import VGG16

#: (num_classes, (C, H, W), activation class) -> the model body (without Normalize).
Builder = Callable[[int, tuple[int, int, int], type[nn.Module]], nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """One architecture: ``build(num_classes, input_shape, activation)`` makes its body."""

    name: str
    build: Builder
    activation: type[nn.Module]
    description: str

    def body(self, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        """The untrained body for ``num_classes`` classes and C×H×W ``input_shape``."""
        return self.build(num_classes, input_shape, self.activation)


_MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Make ``spec`` available to :func:`smoothcert.models.create_model` by its name."""
    if spec.name in _MODELS:
        raise ValueError(f"architecture {spec.name!r} is already registered")
    _MODELS[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """The registered architecture names, in registration order."""
    return list(_MODELS)


def describe_model(arch: str) -> str:
    """The one-line description of architecture ``arch``."""
    return _MODELS[arch].description


def model_spec(arch: object) -> ModelSpec:
    """The spec of ``arch``; ValueError listing the choices for an unknown name."""
    if not isinstance(arch, str) or arch not in _MODELS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {', '.join(_MODELS)}")
    return _MODELS[arch]


BUILTIN_MODELS = (
    ModelSpec("cnn3", CNN3, nn.ReLU, "3-layer CNN of Sinha et al. / the NAL paper (MNIST)"),
    ModelSpec("cnn3-elu", CNN3, nn.ELU, "cnn3 with ELU (WRM's network)"),
    ModelSpec("lenet", LeNet, nn.ReLU, "LeNet-5 with ReLU and max-pooling"),
    ModelSpec(
        "resnet18",
        lambda k, s, a: CifarResNet18(k, s[0], a),
        nn.ReLU,
        "ResNet-18, CIFAR form (11.2M)",
    ),
    ModelSpec(
        "resnet18-elu", lambda k, s, a: CifarResNet18(k, s[0], a), nn.ELU, "resnet18 with ELU"
    ),
    ModelSpec("vgg16", VGG16, nn.ReLU, "VGG-16 with batch norm, CIFAR form"),
    ModelSpec("vgg16-elu", VGG16, nn.ELU, "vgg16 with ELU"),
    ModelSpec(
        "resnet20",
        lambda k, s, a: CifarResNet(3, k, s[0], a),
        nn.ReLU,
        "CIFAR ResNet-20 of He et al. (0.27M)",
    ),
    ModelSpec(
        "resnet110",
        lambda k, s, a: CifarResNet(18, k, s[0], a),
        nn.ReLU,
        "CIFAR ResNet-110 (Cohen et al.; 1.7M)",
    ),
    ModelSpec(
        "resnet50", lambda k, s, a: ResNet50(k, s[0], a), nn.ReLU, "ResNet-50 for 224×224 (25.6M)"
    ),
)
for _spec in BUILTIN_MODELS:
    register_model(_spec)
