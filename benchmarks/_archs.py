"""Models for the benchmarks: the registry's ``cnn3`` / ``resnet20`` when smoothcert.models is
available, else local stand-ins with the same layer shapes (so benchmarks run before the model
zoo lands). Only the compute profile matters here, not the weights."""

from __future__ import annotations

import torch
from torch import nn

INPUT_SHAPES = {"cnn3": (1, 28, 28), "resnet20": (3, 32, 32)}


class _Cnn3(nn.Module):
    # NAL / Sinha et al. MNIST net: conv 64@8x8 s2, conv 128@6x6 s2, conv 128@5x5, linear.
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 64, 8, stride=2, padding=3),
            nn.ReLU(),
            nn.Conv2d(64, 128, 6, stride=2),
            nn.ReLU(),
            nn.Conv2d(128, 128, 5),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(out)) + self.short(x))


class _ResNet20(nn.Module):
    # He et al. CIFAR ResNet-20: 3 stages of 3 basic blocks, 16/32/64 channels.
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, 16, 3, 1, 1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        ]
        cin = 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                layers.append(_Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def build(arch: str, num_classes: int = 10, *, seed: int = 0) -> tuple[nn.Module, str]:
    """(model in eval mode, where it came from) for ``arch`` in INPUT_SHAPES."""
    if arch not in INPUT_SHAPES:
        raise ValueError(f"arch must be one of {sorted(INPUT_SHAPES)}, got {arch!r}")
    torch.manual_seed(seed)
    try:
        from smoothcert.models import create_model

        shape = INPUT_SHAPES[arch]
        c = shape[0]
        model = create_model(arch, num_classes, shape, (0.5,) * c, (0.25,) * c)
        source = "smoothcert.models"
    except (ImportError, AttributeError, TypeError):
        model = _Cnn3(num_classes) if arch == "cnn3" else _ResNet20(num_classes)
        source = "benchmarks/_archs.py stand-in"
    return model.eval(), source
