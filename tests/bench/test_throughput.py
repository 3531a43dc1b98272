"""Functional checks of the fast paths of SmoothedClassifier (no timing here; speed is measured
by benchmarks/): the noise stream does not depend on the batch size, bf16 autocast and
channels-last are really used and agree with fp32, and the automatic batch size works."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from smoothcert import SmoothedClassifier
from smoothcert.certify.noise import noise_chunk
from smoothcert.certify.tuning import AUTO_BATCH_CANDIDATES


class Recorder(nn.Module):
    """Logits (−x₀, x₀) from the first input coordinate; keeps every input it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.seen: list[torch.Tensor] = []
        self.autocast: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        self.autocast.append(torch.is_autocast_enabled("cpu"))
        s = x.flatten(1)[:, 0]
        return torch.stack([-s, s], dim=1)


class TinyConv(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 6 * 6, 4)
        self.layouts: list[bool] = []
        self.dtypes: list[torch.dtype] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.layouts.append(x.is_contiguous(memory_format=torch.channels_last))
        h = torch.relu(self.conv(x))
        self.dtypes.append(h.dtype)
        return self.fc(h.flatten(1))


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("shape", [(2,), (1, 28, 28), (3, 32, 32)])
def test_noise_does_not_depend_on_batch_size(shape: tuple[int, ...]) -> None:
    x = torch.rand(shape)
    n = 3 * noise_chunk(int(np.prod(shape))) + 5  # a partial chunk at the end
    streams = []
    for batch_size in (1, 7, noise_chunk(int(np.prod(shape))), 1000):
        model = Recorder()
        g = SmoothedClassifier(model, 2, sigma=0.5, batch_size=batch_size, input_shape=shape)
        g.counts(x, n, generator=_gen(11))
        assert [t.shape[0] for t in model.seen][:-1] == [batch_size] * (len(model.seen) - 1)
        streams.append(torch.cat(model.seen))
    for other in streams[1:]:
        assert torch.equal(streams[0], other)
    # and the noise is N(0, σ²): mean and spread of (input − x)/σ over the n·d values
    eps = (streams[0] - x) / 0.5
    assert abs(float(eps.mean())) < 5 / np.sqrt(eps.numel())
    assert abs(float(eps.std()) - 1) < 0.05


def test_same_seed_bit_identical_across_calls_and_bf16() -> None:
    x = torch.rand(3, 6, 6)
    model = TinyConv()
    g = SmoothedClassifier(model, 4, sigma=0.25, batch_size=100, precision="bf16")
    a = g.counts(x, 1000, generator=_gen(1))
    b = g.counts(x, 1000, generator=_gen(1))
    np.testing.assert_array_equal(a, b)
    assert g.precision == "bf16" and g.channels_last  # None -> used for conv nets on CPU
    assert all(model.layouts) and set(model.dtypes) == {torch.bfloat16}


def test_bf16_and_channels_last_agree_with_fp32() -> None:
    """The four paths see the same noise; their base classifiers differ only by rounding, so
    the counts of a random conv net agree to within a few percent of n."""
    x = torch.rand(3, 6, 6)
    results = {}
    for precision in ("fp32", "bf16"):
        for cl in (False, True):
            model = TinyConv()
            g = SmoothedClassifier(
                model, 4, sigma=0.25, batch_size=500, precision=precision, channels_last=cl
            )
            results[precision, cl] = g.counts(x, 2000, generator=_gen(5))
            assert all(layout == cl for layout in model.layouts)
            assert set(model.dtypes) == {torch.bfloat16 if precision == "bf16" else torch.float32}
    ref = results["fp32", False]
    assert (results["fp32", True] - ref).__abs__().sum() <= 2  # rounding only
    for key, counts in results.items():
        assert counts.sum() == 2000
        assert np.abs(counts - ref).sum() <= 0.05 * 2000, (key, counts, ref)


def test_channels_last_default_only_for_conv_nets() -> None:
    assert not SmoothedClassifier(Recorder(), 2, 0.5, input_shape=(2,)).channels_last
    assert SmoothedClassifier(TinyConv(), 4, 0.5).channels_last
    assert not SmoothedClassifier(TinyConv(), 4, 0.5, channels_last=False).channels_last
    model = Recorder()
    SmoothedClassifier(model, 2, 0.5, precision="bf16", input_shape=(2,)).counts(torch.zeros(2), 10)
    assert model.autocast == [True]


def test_automatic_batch_size_is_chosen_once_and_gives_the_same_counts() -> None:
    x = torch.rand(3, 6, 6)
    model = TinyConv()
    model.train()
    g = SmoothedClassifier(model, 4, sigma=0.25, batch_size=None, channels_last=False)
    assert g.auto_batch_size and g.batch_size is None
    chosen = g.resolve_batch_size(x)
    assert chosen in AUTO_BATCH_CANDIDATES and g.batch_size == chosen
    assert set(g.batch_size_timings) <= set(AUTO_BATCH_CANDIDATES)
    assert all(rate > 0 for rate in g.batch_size_timings.values())
    assert model.training  # restored after timing
    timings = dict(g.batch_size_timings)
    a = g.counts(x, 1500, generator=_gen(2))
    assert g.batch_size_timings == timings  # cached: not tuned again
    fixed = SmoothedClassifier(TinyConv(), 4, sigma=0.25, batch_size=37, channels_last=False)
    np.testing.assert_array_equal(a, fixed.counts(x, 1500, generator=_gen(2)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp16"}, "precision must be one of"),
        ({"channels_last": "yes"}, "channels_last must be"),
        ({"batch_size": True}, "batch_size must be"),
        ({"batch_size": -3}, "batch_size must be"),
    ],
)
def test_fast_path_options_are_validated(kwargs, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SmoothedClassifier(TinyConv(), 4, 0.5, **kwargs)


def test_automatic_batch_size_needs_a_shape() -> None:
    g = SmoothedClassifier(Recorder(), 2, 0.5, batch_size=None)
    with pytest.raises(ValueError, match="x is needed"):
        g.resolve_batch_size()


def test_bf16_agrees_with_fp32_on_noisy_real_mnist(mnist_test) -> None:
    """Real inputs: the same noisy MNIST images through a small random conv net, fp32 vs bf16
    autocast + channels-last. The noise is identical, so the counts differ only where rounding
    flips the argmax: a small fraction of the draws."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 8, 5, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 12 * 12, 10)
    )
    fp32 = SmoothedClassifier(model, 10, 0.25, batch_size=250, channels_last=False)
    bf16 = SmoothedClassifier(model, 10, 0.25, batch_size=250, precision="bf16")
    for i in range(3):
        x, _ = mnist_test[i]
        a = fp32.counts(x, 500, generator=_gen(i))
        model.to(memory_format=torch.contiguous_format)
        b = bf16.counts(x, 500, generator=_gen(i))
        assert a.sum() == b.sum() == 500
        assert np.abs(a - b).sum() <= 0.03 * 500, (a, b)  # independent noise: ~30-40
        assert np.argmax(a) == np.argmax(b) or max(a) < 0.6 * 500


def test_benchmark_record_for_a_non_conv_model() -> None:
    """smoothcert.bench.throughput.benchmark (what `smoothcert bench` prints): no channels-last
    paths without Conv2d; the disagreement counts every draw; bf16 and fp32 agree on a classifier
    whose decision margins are far above bf16's rounding."""
    from smoothcert.bench import throughput

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[8.0, 0, 0, 0], [0, 8.0, 0, 0], [0, 0, 8.0, 0]]))
        model[1].bias.zero_()
    inputs = [torch.tensor([1.0, 0, 0, 0]), torch.tensor([0, 1.0, 0, 0])]
    record = throughput.benchmark(
        model, inputs[0], num_classes=3, sigma=0.01, batch_size=32, rounds=2,
        batches_per_round=1, disagreement_inputs=inputs, disagreement_draws=50,
    )  # fmt: skip
    assert list(record["paths"]) == ["fp32", "bf16"]
    assert record["samples_per_round"] == 32 and record["rounds"] == 2
    assert all(p["counts_samples_per_s"] > 0 for p in record["paths"].values())
    assert record["bf16_fp32_disagreement"] == {
        "inputs": 2, "draws": 50, "disagreements": 0, "rate": 0.0,
    }  # fmt: skip
    assert record["auto_batch_size"]["path"] == record["fastest"]
    assert record["over_fp32"]["fp32"] == 1.0
    assert "speedup_over_baseline" not in record


def test_benchmark_times_the_baseline_in_every_round() -> None:
    """With ``baseline=``, the hook runs once per round on the round's sample count, and the
    record's speedups over it are per-round ratios of the measured rates."""
    from smoothcert.bench import throughput

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    calls: list[int] = []
    record = throughput.benchmark(
        model, torch.zeros(4), num_classes=3, sigma=0.5, batch_size=16, rounds=3,
        batches_per_round=2, baseline=calls.append,
    )  # fmt: skip
    assert calls == [32, 32, 32]
    assert record["baseline_samples_per_s"] > 0
    assert record["speedup_over_baseline"] > 0 and record["fp32_speedup_over_baseline"] > 0
    assert set(record["over_fp32"]) == {"fp32", "bf16"}
