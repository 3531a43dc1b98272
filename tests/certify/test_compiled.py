"""SmoothedClassifier(compile=True): the base model compiled once, short batches padded."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from smoothcert import SmoothedClassifier
from smoothcert._util.checks import ParameterError
from smoothcert.certify import compiled as compiled_module
from smoothcert.certify.compiled import CompiledForward

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]


def _net() -> nn.Module:
    # conv → batch norm → ReLU: what freezing folds and fuses
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 3),
    )  # fmt: skip
    with torch.no_grad():  # batch-norm statistics that are not the identity
        net[1].running_mean.uniform_(-0.2, 0.2)
        net[1].running_var.uniform_(0.5, 2.0)
    return net.eval()


def test_compiled_counts_match_eager_counts_with_one_compilation() -> None:
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    x = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(3))
    eager = SmoothedClassifier(_net(), 3, 0.5, batch_size=64)
    fast = SmoothedClassifier(_net(), 3, 0.5, batch_size=64, compile=True)
    # 150 draws: batches of 64, 64 and 22 (padded to 64), then 30 (padded): one shape
    want = eager.counts(x, 150, generator=torch.Generator().manual_seed(0))
    got = fast.counts(x, 150, generator=torch.Generator().manual_seed(0))
    got_30 = fast.counts(x, 30, generator=torch.Generator().manual_seed(1))
    assert int(got.sum()) == 150 and int(got_30.sum()) == 30
    # the same noise; the logits differ in the last bits only, so at most a near-tie flips
    assert np.abs(got - want).sum() <= 2
    assert len(set(want.nonzero()[0])) >= 2  # the counts are not trivially all one class
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1


def test_padding_leaves_every_row_as_in_a_full_batch() -> None:
    model = _net()
    forward = CompiledForward(model, 16)
    batch = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        full = forward(batch)
        short = forward(batch[:5])
        eager = model(batch)
    assert short.shape == (5, 3)
    assert torch.equal(short, full[:5])
    torch.testing.assert_close(full, eager, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="more than the compiled 16"):
        forward(torch.rand(17, 1, 8, 8))


def test_compile_must_be_a_bool() -> None:
    with pytest.raises(ParameterError, match="compile"):
        SmoothedClassifier(_net(), 3, 0.5, compile="yes")


def test_a_failed_compilation_is_one_clear_error(monkeypatch) -> None:
    def broken(*args, **kwargs):
        def fails(batch):
            raise OSError("g++: command not found\nmore detail")

        return fails

    monkeypatch.setattr(compiled_module.torch, "compile", broken)
    g = SmoothedClassifier(_net(), 3, 0.5, batch_size=8, compile=True)
    with pytest.raises(RuntimeError) as caught:
        g.counts(torch.rand(1, 8, 8), 8, generator=torch.Generator().manual_seed(0))
    message = str(caught.value)
    assert "\n" not in message
    assert "compile=True" in message and "g++: command not found" in message
