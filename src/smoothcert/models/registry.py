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
    """One architecture: ``build(num_classes, input_shape, activation)`` makes its body.

    Register a spec with :func:`register_model` to make ``name`` an ``arch`` of
    :func:`smoothcert.models.create_model` (and of checkpoints that record it).

    Parameters
    ----------
    name : str
        The architecture's name, the ``arch`` argument (``--arch`` on the command line).
    build : callable
        ``build(num_classes, (C, H, W), activation)`` returns the untrained body: an
        ``nn.Module`` from images (already normalized) to ``num_classes`` logits.
        ``create_model`` puts a ``Normalize`` layer before it.
    activation : type of nn.Module
        The activation class passed to ``build`` (``nn.ReLU``, ``nn.ELU``, ...), so one builder
        serves several registered variants.
    description : str
        One line for ``--arch`` help and :func:`describe_model`.
    """

    name: str
    build: Builder
    activation: type[nn.Module]
    description: str

    def body(self, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
        """The untrained body for ``num_classes`` classes and C×H×W ``input_shape``.

        Parameters
        ----------
        num_classes : int
            Number of output logits.
        input_shape : tuple of int
            (C, H, W) of the images the body takes.

        Returns
        -------
        nn.Module
            ``build(num_classes, input_shape, activation)``, without normalization.
        """
        return self.build(num_classes, input_shape, self.activation)


_MODELS: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Make ``spec`` available to :func:`smoothcert.models.create_model` by its name.

    Register before creating, training or loading a model of that architecture; the
    registry lives in the process (a program that loads a checkpoint of its own architecture
    registers it first).

    Parameters
    ----------
    spec : ModelSpec
        The architecture to add.

    Returns
    -------
    ModelSpec
        ``spec``, unchanged.

    Raises
    ------
    ValueError
        If an architecture of that name is already registered.
    """
    if spec.name in _MODELS:
        raise ValueError(f"architecture {spec.name!r} is already registered")
    _MODELS[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """The registered architecture names, in registration order.

    Returns
    -------
    list of str
        The built-in architectures first (in the order the CLI lists them), then those
        registered since.

    Examples
    --------
    >>> list_models()[:3]
    ['cnn3', 'cnn3-elu', 'lenet']
    """
    return list(_MODELS)


def describe_model(arch: str) -> str:
    """The one-line description of architecture ``arch``.

    Parameters
    ----------
    arch : str
        A registered architecture name.

    Returns
    -------
    str
        Its description (the ``--arch`` help).

    Raises
    ------
    KeyError
        If ``arch`` is not registered.

    Examples
    --------
    >>> describe_model("resnet110")
    'CIFAR ResNet-110 (Cohen et al.; 1.7M)'
    """
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
