"""Inputs and outputs at the public boundary of SmoothedClassifier, adaptive CERTIFY and the
throughput helpers: non-finite logits are an error (never a certificate), inputs of any floating
dtype give the counts of the same values in the model's dtype, numpy scalars are accepted where
Python numbers are, and degenerate benchmark settings fail with a ValueError naming them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from smoothcert import SmoothedClassifier
from smoothcert.bench import throughput
from smoothcert.certify.adaptive import certify_adaptive, plan_looks

SHAPE = (1, 4, 4)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _linear(num_classes: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, num_classes))


class Poisoned(nn.Module):
    """A linear classifier whose logit for class ``label`` is replaced by ``value`` (all
    classes when label is None), e.g. NaN from a bad normalization constant."""

    def __init__(self, value: float, label: int | None) -> None:
        super().__init__()
        self.inner = _linear()
        self.value, self.label = value, label

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        if self.label is None:
            return logits * self.value
        logits[:, self.label] = self.value
        return logits


class TupleOutput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inner = _linear()

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (self.inner(x),)


# ---------------------------------------------------------------- bug 1: non-finite logits


@pytest.mark.parametrize(
    ("value", "label"),
    [(float("nan"), None), (float("nan"), 2), (float("inf"), 1), (float("-inf"), None)],
)
def test_non_finite_logits_are_an_error_not_a_certificate(value: float, label) -> None:
    g = SmoothedClassifier(Poisoned(value, label), 3, 0.5, input_shape=SHAPE, batch_size=16)
    x = torch.rand(SHAPE)
    with pytest.raises(ValueError, match="NaN or infinite logits"):
        g.counts(x, 100, generator=_gen(0))
    with pytest.raises(ValueError, match="NaN or infinite logits"):
        g.certify(x, 10, 100, 0.01, generator=_gen(0))
    with pytest.raises(ValueError, match="NaN or infinite logits"):
        g.predict(x, 100, 0.01, generator=_gen(0))


def test_a_single_non_finite_logit_in_a_late_batch_is_caught() -> None:
    """Only the last of several batches is poisoned: the flag is accumulated over batches."""

    class LateNaN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner, self.calls = _linear(), 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            logits = self.inner(x)
            if self.calls == 4:
                logits[-1, 0] = float("nan")
            return logits

    g = SmoothedClassifier(LateNaN(), 3, 0.5, input_shape=SHAPE, batch_size=25)
    with pytest.raises(ValueError, match="NaN or infinite logits"):
        g.counts(torch.rand(SHAPE), 100, generator=_gen(0))


def test_adaptive_certify_rejects_non_finite_logits() -> None:
    g = SmoothedClassifier(Poisoned(float("nan"), 0), 3, 0.5, input_shape=SHAPE)
    with pytest.raises(ValueError, match="NaN or infinite logits"):
        certify_adaptive(g, torch.rand(SHAPE), [0.25], 0.01, n0=10, n_max=200, n_first=100)


# ---------------------------------------------------------------- bug 2: input dtypes


def test_float64_numpy_input_gives_the_same_counts_as_float32() -> None:
    g = SmoothedClassifier(_linear(), 3, 0.5, input_shape=SHAPE, batch_size=64)
    x = torch.rand(SHAPE)
    expected = g.counts(x, 500, generator=_gen(1))
    as_numpy64 = x.double().numpy()
    assert as_numpy64.dtype == np.float64
    np.testing.assert_array_equal(g.counts(as_numpy64, 500, generator=_gen(1)), expected)
    np.testing.assert_array_equal(g.counts(x.double(), 500, generator=_gen(1)), expected)
    cert64 = g.certify(as_numpy64, 20, 300, 0.01, generator=_gen(2))
    cert32 = g.certify(x, 20, 300, 0.01, generator=_gen(2))
    assert (cert64.prediction, cert64.radius, cert64.n_a) == (
        cert32.prediction,
        cert32.radius,
        cert32.n_a,
    )


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs_are_counted_as_their_float32_values(dtype) -> None:
    g = SmoothedClassifier(_linear(), 3, 0.5, input_shape=SHAPE, batch_size=64)
    x = torch.rand(SHAPE).to(dtype)  # every half value is exact in float32
    np.testing.assert_array_equal(
        g.counts(x, 300, generator=_gen(3)), g.counts(x.float(), 300, generator=_gen(3))
    )


def test_float64_model_gets_float64_inputs() -> None:
    model = _linear().double()
    g = SmoothedClassifier(model, 3, 0.5, input_shape=SHAPE, batch_size=64)
    counts = g.counts(torch.rand(SHAPE), 200, generator=_gen(0))  # a float32 input
    assert counts.sum() == 200


def test_input_too_large_for_the_model_dtype_is_rejected() -> None:
    g = SmoothedClassifier(_linear(), 3, 0.5, input_shape=SHAPE)
    x = np.full(SHAPE, 1e300)  # finite in float64, Inf in float32
    with pytest.raises(ValueError, match="NaN or Inf"):
        g.counts(x, 10)


# ---------------------------------------------------------------- bug 3: argument validation


def test_numpy_scalar_alpha_and_sigma_are_accepted() -> None:
    x = torch.rand(SHAPE)
    plain = SmoothedClassifier(_linear(), 3, 0.5, input_shape=SHAPE)
    numpy = SmoothedClassifier(_linear(), 3, np.float32(0.5), input_shape=SHAPE)
    assert numpy.sigma == 0.5 and type(numpy.sigma) is float
    expected = plain.certify(x, 10, 200, 0.01, generator=_gen(0))
    for alpha in (np.float32(0.01), np.float64(0.01)):
        cert = numpy.certify(x, 10, 200, alpha, generator=_gen(0))
        assert cert.n_a == expected.n_a
        assert cert.radius == pytest.approx(expected.radius, rel=1e-6)
        numpy.predict(x, 200, alpha, generator=_gen(0))
    plan = plan_looks([0.25], np.float32(0.5), np.float32(0.001), 1000, futility=np.float64(0.05))
    assert plan == plan_looks([0.25], 0.5, float(np.float32(0.001)), 1000)
    assert all(type(level) is float for level in plan.levels)


@pytest.mark.parametrize("sigma", [True, np.bool_(True), "0.5"])
def test_bool_or_string_sigma_is_rejected(sigma) -> None:
    with pytest.raises(ValueError, match="sigma must be"):
        SmoothedClassifier(_linear(), 3, sigma)


def test_bool_alpha_is_rejected() -> None:
    g = SmoothedClassifier(_linear(), 3, 0.5, input_shape=SHAPE)
    with pytest.raises(ValueError, match="alpha must be in"):
        g.predict(torch.rand(SHAPE), 10, True)
    with pytest.raises(ValueError, match="alpha must be in"):
        plan_looks([0.25], 0.5, True, 1000)
    with pytest.raises(ValueError, match="sigma must be"):
        plan_looks([0.25], True, 0.01, 1000)


@pytest.mark.parametrize("shape", [16, (1, 0, 4), (1, 4.0, 4), (True, 4, 4), "144"])
def test_bad_input_shape_is_a_value_error(shape) -> None:
    with pytest.raises(ValueError, match="input_shape must be a sequence of positive integers"):
        SmoothedClassifier(_linear(), 3, 0.5, input_shape=shape)


def test_numpy_input_shape_is_accepted() -> None:
    g = SmoothedClassifier(_linear(), 3, 0.5, input_shape=np.array([1, 4, 4]))
    assert g.input_shape == SHAPE and all(type(d) is int for d in g.input_shape)


def test_model_returning_a_tuple_is_a_value_error() -> None:
    g = SmoothedClassifier(TupleOutput(), 3, 0.5, input_shape=SHAPE)
    with pytest.raises(ValueError, match=r"must return a logits tensor \[batch, num_classes\]"):
        g.counts(torch.rand(SHAPE), 10)


# ---------------------------------------------------------------- bug 4: throughput helpers


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rounds": 0}, "rounds must be a positive integer"),
        ({"batches_per_round": 0}, "batches_per_round must be a positive integer"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"disagreement_draws": 0}, "disagreement_draws must be a positive integer"),
    ],
)
def test_benchmark_rejects_empty_settings(kwargs, message: str) -> None:
    args = {"num_classes": 3, "sigma": 0.25, "batch_size": 8, "rounds": 1} | kwargs
    with pytest.raises(ValueError, match=message):
        throughput.benchmark(_linear(), torch.rand(SHAPE), **args)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rounds": 0}, "rounds must be"),
        ({"batches_per_round": 0}, "batches_per_round must be"),
        ({"rounds": True}, "rounds must be"),
    ],
)
def test_interleaved_rejects_empty_settings(kwargs, message: str) -> None:
    args = {"num_classes": 3, "sigma": 0.25, "batch_size": 8, "paths": [("fp32", False)]}
    with pytest.raises(ValueError, match=message):
        throughput.interleaved(_linear(), torch.rand(SHAPE), **(args | kwargs))


def test_disagreement_rejects_no_inputs_and_no_draws() -> None:
    with pytest.raises(ValueError, match="inputs must contain at least one input"):
        throughput.disagreement(_linear(), [], 0.25, 50)
    with pytest.raises(ValueError, match="draws must be a positive integer"):
        throughput.disagreement(_linear(), [torch.rand(SHAPE)], 0.25, 0)


def test_parameterless_model_runs_on_the_inputs_device() -> None:
    model = nn.Flatten()  # 16 "logits": the pixels themselves
    x = torch.rand(SHAPE)
    record = throughput.interleaved(
        model, x, num_classes=16, sigma=0.25, batch_size=8, paths=[("fp32", False)],
        rounds=1, batches_per_round=1,
    )  # fmt: skip
    assert record["paths"]["fp32"]["counts_samples_per_s"] > 0
    result = throughput.disagreement(model, [x], 0.25, 20)
    assert result["draws"] == 20 and 0.0 <= result["rate"] <= 1.0


def test_throughput_helpers_accept_float64_inputs() -> None:
    x = torch.rand(SHAPE, dtype=torch.float64)
    record = throughput.interleaved(
        _linear(), x, num_classes=3, sigma=0.25, batch_size=8, paths=[("fp32", False)],
        rounds=1, batches_per_round=1,
    )  # fmt: skip
    assert record["samples_per_round"] == 8
    assert throughput.disagreement(_linear(), [x], 0.25, 20)["draws"] == 20
