"""Evaluations without optimistic bias: PREDICT's noise independent of its Table 4 reference,
and a reference of another precision refused."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import LinearImage, ToyData
from smoothcert._util.seeding import example_generator
from smoothcert.analysis import check_reference, predict_categories
from smoothcert.certify.smoothing import SmoothedClassifier
from smoothcert.runs import (
    CertifyOptions,
    PredictOptions,
    Selection,
    certify_dataset,
    predict_dataset,
)
from smoothcert.runs.store import RunStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIGMA = 1.0  # wide noise: the toy examples' counts are spread over both classes


def _classifier(precision: str = "fp32") -> SmoothedClassifier:
    return SmoothedClassifier(LinearImage(), 2, SIGMA, batch_size=64, precision=precision)


# ------------------------------------------------------------------ Table 4: PREDICT's noise


def test_predict_draws_are_not_those_of_a_same_seed_certify_run(tmp_path: Path) -> None:
    data = ToyData(m=12)
    ref = certify_dataset(
        _classifier(), data, tmp_path / "c.db", CertifyOptions(n0=40, n=400), Selection(seed=3)
    )
    pred = predict_dataset(
        _classifier(), data, tmp_path / "p.db", PredictOptions(n=40), Selection(seed=3)
    )
    # With one stream per (seed, idx), PREDICT's 40 draws were exactly CERTIFY's 40 selection
    # draws: the counts matched on every example (and a larger n overlapped the estimation).
    same = [
        list(p["counts"]) == list(c["counts_selection"]) for p, c in zip(pred, ref, strict=True)
    ]
    assert sum(same) <= 3, same  # independent draws agree by chance on few examples


def test_certify_noise_is_unchanged_by_the_predict_stream(tmp_path: Path) -> None:
    # Published certify runs must stay reproducible: their draws are still seeded by
    # (seed, idx) alone.
    data = ToyData(m=4)
    rows = certify_dataset(
        _classifier(), data, tmp_path / "c.db", CertifyOptions(n0=30, n=50), Selection(seed=7)
    )
    clf = _classifier()
    for row in rows:
        gen = example_generator(7, row["idx"], torch.device("cpu"))
        cert = clf.certify(data[row["idx"]][0], 30, 50, 0.001, generator=gen)
        assert list(row["counts_selection"]) == list(cert.counts_selection)
        assert list(row["counts_estimation"]) == list(cert.counts_estimation)


def test_reference_drawing_the_same_noise_is_refused(tmp_path: Path) -> None:
    data = ToyData(m=6)
    predict_dataset(_classifier(), data, tmp_path / "a.db", PredictOptions(n=60), Selection(seed=1))
    predict_dataset(
        _classifier(), data, tmp_path / "b.db", PredictOptions(n=60), Selection(seed=1)
    )  # the same draws
    with pytest.raises(ValueError, match="draws the same noise as the predict run"):
        predict_categories(tmp_path / "a.db", tmp_path / "b.db")
    # Another n is another stream: accepted.
    predict_dataset(
        _classifier(), data, tmp_path / "big.db", PredictOptions(n=200), Selection(seed=1)
    )
    assert sum(predict_categories(tmp_path / "a.db", tmp_path / "big.db").values()) == (
        pytest.approx(1.0)
    )


def test_reference_of_another_precision_is_refused(tmp_path: Path) -> None:
    data = ToyData(m=3)
    certify_dataset(
        _classifier("bf16"),
        data,
        tmp_path / "bf16.db",
        CertifyOptions(n0=10, n=20),
        Selection(seed=4),
    )
    predict_dataset(_classifier(), data, tmp_path / "p.db", PredictOptions(n=20), Selection(seed=5))
    with pytest.raises(ValueError, match="precision 'bf16' but the predict run has 'fp32'"):
        predict_categories(tmp_path / "p.db", tmp_path / "bf16.db")
    with RunStore.read(tmp_path / "bf16.db") as ref:
        config = ref.config | {"precision": "fp32"}  # the same run but for its precision
    with pytest.raises(ValueError, match="same precision"):
        check_reference(tmp_path / "bf16.db", config)


def test_reference_of_the_other_mode_sound_or_standard_is_refused(tmp_path: Path) -> None:
    data = ToyData(m=3)
    data.x = torch.round(data.x * 255) / 255  # 8-bit images, which sound mode needs

    def classifier(sound: bool) -> SmoothedClassifier:
        return SmoothedClassifier(LinearImage(), 2, SIGMA, batch_size=64, sound=sound)

    for sound in (True, False):
        certify_dataset(
            classifier(sound),
            data,
            tmp_path / f"c{sound}.db",
            CertifyOptions(n0=10, n=20),
            Selection(seed=4),
        )
        predict_dataset(
            classifier(not sound),
            data,
            tmp_path / f"p{sound}.db",
            PredictOptions(n=20),
            Selection(seed=5),
        )
        with pytest.raises(ValueError, match="sound and standard runs smooth different"):
            predict_categories(tmp_path / f"p{sound}.db", tmp_path / f"c{sound}.db")
        with RunStore.read(tmp_path / f"p{sound}.db") as run:
            config = run.config
        with pytest.raises(ValueError, match="use a reference made in the same mode"):
            check_reference(tmp_path / f"c{sound}.db", config)
    # the same mode is accepted
    predict_dataset(
        classifier(True), data, tmp_path / "p.db", PredictOptions(n=20), Selection(seed=5)
    )
    assert sum(predict_categories(tmp_path / "p.db", tmp_path / "cTrue.db").values()) == (
        pytest.approx(1.0)
    )


# ------------------------------------------------------------------ Theorem 6


def test_theorem6_refuses_alpha_above_one_half() -> None:
    from smoothcert.certify import stats

    # The proof bounds p(1 − p) by α(1 − α) for p ≤ α, true only for α ≤ ½: at α = ½ the bound
    # is still Theorem 6's formula (not clipped: it is well above 0 here).
    log_term = math.log(1 / 0.01)
    expected = (0.9 - 0.5 - math.sqrt(2 * 0.25 * log_term / 100) - log_term / 300) / 0.5
    assert expected > 0.4
    assert stats.certified_accuracy_lower_bound(90, 100, 0.5, 0.01) == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"alpha must be in \(0, 0.5\]"):
        stats.certified_accuracy_lower_bound(90, 100, 0.6, 0.01)


# ------------------------------------------------------------------ robust accuracy


class Band(torch.nn.Module):
    """Two classes on 2×2 images, a function of s = sum of pixels − 1 (the example x0 = 0.25
    everywhere has s = 0; a move of L2 length d along the all-ones direction changes s by 2d).

    - "shell": class 0 (the label) is wrong exactly when s ∈ (0.6, 1.4): a one-step attack of
      size 2ε lands at s = 2ε, inside the shell for ε = 0.5 but past it for ε = 1.
    - "flat": class 0 is wrong when |s| > 0.5 and its loss has zero gradient at x0, so an
      attack that starts at x0 never moves; from a random start it does.
    """

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1).sum(1) - 1.0
        logit0 = (s - 1.0) ** 2 - 0.16 if self.kind == "shell" else 0.25 - s**2
        return torch.stack([self.scale * logit0, torch.zeros_like(s)], 1)


def _band_data(m: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((m, 1, 2, 2), 0.25), torch.zeros(m, dtype=torch.long)


def test_robust_at_a_radius_needs_every_smaller_radius_to_fail() -> None:
    from smoothcert.attacks.robust import robust_accuracy

    every = robust_accuracy(
        Band("shell"), _band_data(), [1.0, 0.5, 0.0], steps=1, skip_fooled=False
    )
    # The attack at 1.0 overshoots the shell (prediction correct), but the one at 0.5, inside
    # the 1.0-ball, fooled every example: not robust at 1.0 either (was 1.0 before).
    assert (every.predictions[:, 0] == 0).all() and (every.predictions[:, 1] == 1).all()
    assert every.accuracy == {1.0: 0.0, 0.5: 0.0, 0.0: 1.0}
    # By default 1.0 is not attacked again: the point found at 0.5 stands for it.
    result = robust_accuracy(Band("shell"), _band_data(), [1.0, 0.5, 0.0], steps=1)
    assert (result.predictions[:, :2] == 1).all() and result.accuracy == every.accuracy


def test_an_attack_run_takes_the_minimum_over_radii_and_attacks(tmp_path: Path) -> None:
    from smoothcert.runs.attack import attack_dataset

    class Pairs:
        def __init__(self) -> None:
            self.x, self.y = _band_data(4)

        def __len__(self) -> int:
            return len(self.y)

        def batch(self, indices):
            return self.x[indices], self.y[indices]

    run = attack_dataset(
        Band("shell"), Pairs(), tmp_path / "a.db", [0.5, 1.0], steps=1, skip_fooled=False
    )
    assert run["accuracy"] == {0.5: 0.0, 1.0: 0.0}
    assert [r["correct"] for r in run["rows"]] == [[0, 1]] * 4  # each radius's own result
    skip = attack_dataset(Band("shell"), Pairs(), tmp_path / "s.db", [0.5, 1.0], steps=1)
    assert skip["accuracy"] == run["accuracy"]
    assert [r["correct"] for r in skip["rows"]] == [[0, 0]] * 4  # 0.5's point stands for 1.0
    # Two attacks: a 1-step one that overshoots at 1.0, a 20-step one that does not; the
    # union never reports more accuracy than either alone.
    both = attack_dataset(Band("shell"), Pairs(), tmp_path / "b.db", [1.0], steps=[1, 20])
    assert both["accuracy"] == {1.0: 0.0}


def test_random_restarts_find_what_the_start_at_x_misses() -> None:
    from smoothcert.attacks.robust import robust_accuracy

    data = _band_data(4)
    one = robust_accuracy(Band("flat"), data, [0.5], steps=10, restarts=1, seed=0)
    assert one.accuracy == {0.5: 1.0}  # zero gradient at x0: PGD from x0 never moves
    three = robust_accuracy(Band("flat"), data, [0.5], steps=10, restarts=3, seed=0)
    assert three.accuracy == {0.5: 0.0}
    with pytest.raises(ValueError, match="restarts must be a positive integer"):
        robust_accuracy(Band("flat"), data, [0.5], restarts=0)


# ------------------------------------------------------------------ NAL certificate, γ grid


def _table(lagrangian: np.ndarray, gammas: np.ndarray):
    from smoothcert.distributional import SurrogateTable

    n, g = lagrangian.shape
    zeros = np.zeros((n, g))
    return SurrogateTable(
        gammas=gammas, sigma=0.0, dim=4, lagrangian=lagrangian, loss=zeros, cost=zeros,
        value_se=zeros, grad_norm=zeros, indices=np.arange(n),
    )  # fmt: skip


def test_gamma_is_chosen_on_other_examples_than_the_bound_is_estimated_on() -> None:
    from smoothcert.distributional import curve_from_table

    # Every γ of the grid has the same true bound T = γρ + E[sup]; the estimates differ only
    # by noise, so the minimum over the grid is the estimate that came out lowest by chance.
    rng = np.random.default_rng(0)
    gammas = np.linspace(0.5, 5.0, 10)
    rho, true_bound, n = 0.4, 3.0, 40
    split, in_sample, ses = [], [], []
    for _ in range(300):
        lag = true_bound - gammas * rho + rng.normal(0.0, 1.0, size=(n, len(gammas)))
        curve = curve_from_table(_table(lag, gammas), [rho])
        split.append(curve.value[0])
        in_sample.append(curve.in_sample[0])
        ses.append(curve.se[0])
    # se of a mean of 20 unit normals; the mean of 300 such estimates is T within 3·se/√300
    assert np.mean(ses) == pytest.approx(1 / np.sqrt(20), rel=0.1)
    assert abs(np.mean(split) - true_bound) < 3 * np.mean(ses) / np.sqrt(300)
    # the in-sample minimum of 10 noisy means of 40 is ≈ 1.5 of their se (0.16) too low
    assert np.mean(in_sample) < true_bound - 0.15
    # The standard error covers the split estimate's spread (it is that of a fixed γ).
    assert np.std(split) == pytest.approx(np.mean(ses), rel=0.15)


def test_the_split_needs_two_examples_and_in_sample_stays_available() -> None:
    from smoothcert.distributional import curve_from_table

    gammas = np.array([1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2 examples"):
        curve_from_table(_table(np.ones((1, 2)), gammas), [0.1])
    lag = np.array([[1.0, 0.0], [3.0, 0.5], [1.0, 0.0], [3.0, 0.5]])
    low = curve_from_table(_table(lag, gammas), [0.1], select="in-sample")
    assert low.value[0] == pytest.approx(min(0.1 + 2.0, 0.2 + 0.25))
    split = curve_from_table(_table(lag, gammas), [0.1])
    # chosen on rows 0 and 2 (γ = 2: 0.2 + 0 < 0.1 + 1), estimated on rows 1 and 3
    assert split.gamma[0] == 2.0 and split.value[0] == pytest.approx(0.2 + 0.5)
    assert (split.n_select, split.n_eval) == (2, 2)


class Shell(torch.nn.Module):
    """Logits (0, h) at x with h = 5·exp(−(‖x‖² − 1)²/0.5): the loss of class 0 is flat at
    x0 = 0 (a stationary point of ℓ − γ‖x − x0‖²) and ≈ 5 nats on the unit sphere."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r2 = x.flatten(1).pow(2).sum(1)
        h = 5.0 * torch.exp(-((r2 - 1.0) ** 2) / 0.5)
        return torch.stack([torch.zeros_like(h), h], 1)


def test_restarts_find_the_sup_a_single_ascent_from_x0_misses() -> None:
    from smoothcert.distributional import surrogate

    x0, y = torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.long)
    kw = {"steps": 30, "generator": torch.Generator().manual_seed(0)}
    one = surrogate(Shell(), x0, y, 1.0, 0.0, **kw)
    at_x0 = math.log1p(math.exp(5.0 * math.exp(-2.0)))  # CE of class 0 at x0
    assert one.lagrangian.tolist() == pytest.approx([at_x0] * 3, rel=1e-5)
    best = surrogate(Shell(), x0, y, 1.0, 0.0, restarts=3, **kw)
    assert bool((best.lagrangian > 3.5).all())  # ≈ 5 nats of loss minus a cost below 1


# ------------------------------------------------------------------ adaptive CERTIFY docs


def test_the_adaptive_docs_state_one_bound_for_the_futility_rule() -> None:
    # Words, whatever the line wrapping: a phrase broken across lines is still found.
    text = " ".join((Path(__file__).parents[2] / "docs" / "adaptive.md").read_text().split())
    # It used to say "at most β" in one section and "at most Jβ" in another; the rule is
    # checked at the J − 1 looks before the last, each wrong with probability ≤ β.
    assert "(J − 1)·β" in text
    assert "at most Jβ" not in text
    assert "given up with probability at most β" not in text


def test_the_predict_stream_id_is_not_swallowed_by_seedsequence_zero_padding() -> None:
    """numpy's SeedSequence pads short entropy with zeros: a stream of zeros would be a certify
    run's own noise. The predict stream's id is nonzero, so its keys never meet a certify key."""
    from smoothcert.runs.common import PREDICT_STREAM

    def first_draws(stream: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(8, generator=example_generator(3, 5, torch.device("cpu"), stream))

    certify = first_draws(())
    assert torch.equal(first_draws((0,)), certify)  # the padding: stream (0,) is no stream
    assert torch.equal(first_draws((0, 0)), certify)
    assert PREDICT_STREAM != 0
    for n in (1, 100, 100_000):
        assert not torch.equal(first_draws((PREDICT_STREAM, n)), certify)
