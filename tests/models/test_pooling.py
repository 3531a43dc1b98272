"""MaxPool2x2: bit for bit nn.MaxPool2d(2), without gradients and with them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smoothcert.models import create_model
from smoothcert.models.checkpoint import load_checkpoint
from smoothcert.models.pooling import MaxPool2x2


def _inputs(shape: tuple[int, ...], dtype: torch.dtype, channels_last: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    # rounded to eighths, half of them zero after the ReLU: many ties inside a window
    x = (torch.randn(shape, generator=g) * 8).round().relu() / 8
    x.view(-1)[:3] = torch.tensor([float("inf"), float("-inf"), float("nan")])
    x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("shape", [(5, 6, 28, 28), (3, 16, 10, 10), (2, 3, 9, 11), (1, 1, 3, 2)])
def test_equals_max_pool2d_without_gradients(dtype, channels_last, shape) -> None:
    x = _inputs(shape, dtype, channels_last)
    with torch.inference_mode():
        expected = nn.MaxPool2d(2)(x)
        got = MaxPool2x2()(x)
    assert got.shape == expected.shape == (*shape[:2], shape[2] // 2, shape[3] // 2)
    assert got.dtype == dtype
    torch.testing.assert_close(got, expected, rtol=0, atol=0, equal_nan=True)
    with torch.no_grad():
        torch.testing.assert_close(MaxPool2x2()(x), expected, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gradient_goes_to_the_first_maximum_as_max_pool2d(dtype) -> None:
    x = _inputs((4, 6, 12, 12), dtype, channels_last=False)
    x = torch.nan_to_num(x, nan=0.0, posinf=3.0, neginf=-3.0).requires_grad_(True)
    grad = torch.randn(4, 6, 6, 6).to(dtype)
    expected = torch.autograd.grad(nn.MaxPool2d(2)(x), x, grad)[0]
    got = torch.autograd.grad(MaxPool2x2()(x), x, grad)[0]
    assert torch.equal(got, expected)
    # one nonzero gradient per window even where the window ties
    assert int((got != 0).sum()) == int((grad != 0).sum())


def test_small_models_use_it() -> None:
    for arch, shape in [("lenet", (1, 28, 28)), ("vgg16", (3, 32, 32))]:
        model = create_model(arch, 10, shape, [0.5] * shape[0], [0.25] * shape[0])
        pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
        assert pools and all(type(m) is MaxPool2x2 for m in pools)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_trained_lenet_gives_the_same_logits_as_with_max_pool2d(precision) -> None:
    # a LeNet trained before MaxPool2x2 existed loads unchanged and, on noisy inputs in
    # channels-last (the certify path), computes exactly the logits of nn.MaxPool2d
    model, _ = load_checkpoint("zoo:mnist-lenet-sigma0.25")
    model = model.eval().to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(64, 1, 28, 28, generator=g) + 0.25 * torch.randn(64, 1, 28, 28, generator=g)
    x = x.contiguous(memory_format=torch.channels_last)

    def logits() -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, precision == "bf16"):
            return model(x).float()

    fast = logits()
    for name, module in list(model.named_modules()):
        if isinstance(module, MaxPool2x2):
            parent = model.get_submodule(name.rpartition(".")[0])
            setattr(parent, name.rpartition(".")[2], nn.MaxPool2d(2))
    assert not any(isinstance(m, MaxPool2x2) for m in model.modules())
    assert torch.equal(fast, logits())
