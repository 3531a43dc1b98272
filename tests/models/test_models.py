"""Model zoo: output shapes, published parameter counts, ELU variants, the Normalize layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smoothcert.models import Normalize, count_parameters, create_model, list_models

MNIST = (1, 28, 28)
CIFAR = (3, 32, 32)


def _make(arch, shape=CIFAR, classes=10):
    c = shape[0]
    return create_model(arch, classes, shape, [0.5] * c, [0.25] * c)


@pytest.mark.parametrize(
    ("arch", "shape", "expected", "rel"),
    [
        ("resnet20", CIFAR, 0.27e6, 0.01),  # He et al. 2016, Table 6
        ("resnet110", CIFAR, 1.7e6, 0.02),
        ("resnet18", CIFAR, 11.2e6, 0.01),
        ("vgg16", CIFAR, 14.7e6, 0.01),  # 13 convs + BN + one 512→10 linear
        ("cnn3", MNIST, 710_218, 0),  # 4160 + 295040 + 409728 + 1290, counted by hand
        ("lenet", MNIST, 61_706, 0),  # LeCun et al. 1998 layer sizes with a 10-way output
    ],
)
def test_parameter_counts(arch, shape, expected, rel):
    assert count_parameters(_make(arch, shape)) == pytest.approx(expected, rel=rel)


def test_resnet50_parameter_count_and_output():
    model = _make("resnet50", (3, 224, 224), classes=1000)
    assert count_parameters(model) == pytest.approx(25.56e6, rel=0.005)  # He et al. 2016
    model.eval()
    with torch.no_grad():  # global average pooling: any input size ≥ 32 works; 64 keeps it quick
        assert model(torch.rand(1, 3, 64, 64)).shape == (1, 1000)


@pytest.mark.parametrize("arch", [a for a in list_models() if a != "resnet50"])
def test_output_shapes_and_normalize_first(arch):
    shape = MNIST if arch in ("cnn3", "cnn3-elu", "lenet") else CIFAR
    model = _make(arch, shape, classes=7).eval()
    assert isinstance(model[0], Normalize)
    with torch.no_grad():
        assert model(torch.rand(2, *shape)).shape == (2, 7)


@pytest.mark.parametrize("arch", ["cnn3-elu", "resnet18-elu", "vgg16-elu"])
def test_elu_variants_have_no_relu(arch):
    shape = MNIST if arch == "cnn3-elu" else CIFAR
    model = _make(arch, shape)
    kinds = {type(m) for m in model.modules()}
    assert nn.ELU in kinds and not any(issubclass(k, nn.ReLU) for k in kinds)
    base = _make(arch.removesuffix("-elu"), shape)
    assert count_parameters(model) == count_parameters(base)


def test_cnn3_feature_map_sizes_28_and_32():
    """28→14 ('same', stride 2) →5 (6×6 stride 2) →1 (5×5); on 32×32: 32→16→6→2, so the
    linear layer has 128·2·2 inputs."""
    m = _make("cnn3", MNIST)
    x = torch.rand(1, *MNIST)
    sizes = []
    for layer in m[1].features:
        x = layer(x)
        if isinstance(layer, nn.Conv2d):
            sizes.append(tuple(x.shape[1:]))
    assert sizes == [(64, 14, 14), (128, 5, 5), (128, 1, 1)]
    assert m[1].classifier.in_features == 128
    assert _make("cnn3", CIFAR)[1].classifier.in_features == 128 * 2 * 2


def test_normalize_is_per_channel_affine():
    norm = Normalize([0.5, 0.25], [0.5, 2.0])
    x = torch.rand(2, 2, 3, 3)
    out = norm(x)
    assert torch.allclose(out[:, 0], (x[:, 0] - 0.5) / 0.5)
    assert torch.allclose(out[:, 1], (x[:, 1] - 0.25) / 2.0)
    assert set(dict(norm.named_buffers())) == {"mean", "std"}


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown arch"):
        _make("resnet19")
    with pytest.raises(ValueError, match="num_classes"):
        _make("cnn3", MNIST, classes=1)
    with pytest.raises(ValueError, match="channel"):
        create_model("cnn3", 10, MNIST, [0.5, 0.5], [0.2, 0.2])
    with pytest.raises(ValueError, match="32×32"):
        _make("vgg16", (3, 28, 28))
