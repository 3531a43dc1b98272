"""VGG-16 with batch norm in its CIFAR form (Simonyan & Zisserman 2015, configuration D):
13 3×3 convs in five blocks, each followed by 2×2 max-pooling, then one linear layer on the
512-channel feature map (1×1 for 32×32 inputs)."""

from __future__ import annotations

import torch
from torch import nn

from smoothcert.models.pooling import MaxPool2x2

CONFIG_D = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG16(nn.Module):
    def __init__(
        self, num_classes: int, input_shape: tuple[int, int, int], act: type[nn.Module]
    ) -> None:
        super().__init__()
        c, h, w = input_shape
        if h < 32 or w < 32:
            raise ValueError(
                f"vgg16 needs inputs of at least 32×32 (five 2×2 poolings), got {h}×{w}"
            )
        layers: list[nn.Module] = []
        for v in CONFIG_D:
            if v == "M":
                layers.append(MaxPool2x2())
            else:
                layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v), act()]
                c = v
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.classifier = nn.Linear(512 * (h // 32) * (w // 32), num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
