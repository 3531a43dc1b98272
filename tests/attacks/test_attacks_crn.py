"""Randomized models under attack: common random numbers for the votes (issue: accuracy fell
with the number of radii listed because each radius drew fresh votes)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from smoothcert._util.checks import ParameterError
from smoothcert.attacks import robust_accuracy
from smoothcert.attacks.robust import vote_noise
from smoothcert.certify.stats import predict_from_counts
from smoothcert.runs.attack import AttackOptions, attack_dataset, read_attack

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TWELVE = [0.1 * k for k in range(1, 13)]
#: P(Binomial(8, ½) >= 4): the majority of 8 coin flips with ties to class 0.
MAJORITY_OF_8 = 163 / 256


class CoinFlip(nn.Module):
    """Votes are coin flips of the noise: the class is the parity of floor(1e4·(x + z)₀), whose
    gradient is zero, so PGD (normalized gradient steps, no random start) cannot move x."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bit = torch.floor(x.flatten(1)[:, 0] * 1e4) % 2
        return self.scale * torch.stack([1 - bit, bit], 1)


def coin_data(n: int = 400) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.full((n, 1, 2, 2), 0.5), torch.zeros(n, dtype=torch.long)


class CoinDataset:
    """The minimal dataset of attack runs: ``batch(indices)``, ``labels`` and a length."""

    def __init__(self, n: int = 60) -> None:
        self.images, self.labels = coin_data(n)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, indices):
        idx = list(indices)
        return self.images[idx], self.labels[idx]


NOISY = dict(steps=5, noise_sigma=0.5, noise_samples=8, seed=0)


def test_accuracy_does_not_depend_on_how_many_radii_are_listed():
    """The attack cannot move the input: one radius and twelve give the same accuracy (before
    the common random numbers: 0.643 and 0.007 on this model), that of one majority of 8."""
    one = robust_accuracy(CoinFlip(), coin_data(), [0.5], **NOISY)
    twelve = robust_accuracy(CoinFlip(), coin_data(), TWELVE, **NOISY)
    every = robust_accuracy(CoinFlip(), coin_data(), TWELVE, skip_fooled=False, **NOISY)
    assert abs(one.accuracy[0.5] - MAJORITY_OF_8) < 0.08  # 400 examples: SE 0.024
    assert all(a == one.accuracy[0.5] for a in twelve.accuracy.values())
    assert (twelve.correct == one.correct[:, :1]).all()
    assert every.accuracy == twelve.accuracy
    # restarts and several attacks reuse the votes too
    more = robust_accuracy(CoinFlip(), coin_data(), TWELVE, **{**NOISY, "steps": [2, 5]})
    assert more.accuracy == twelve.accuracy


def test_votes_are_fixed_per_example_and_seeded():
    """Same seed, same result; the votes of an example do not depend on the batch size; the
    prediction at ε = 0 is the majority of f over the example's own draws (vote_noise)."""
    data = coin_data(50)
    a = robust_accuracy(CoinFlip(), data, [0.0, 1.0], batch_size=7, **NOISY)
    b = robust_accuracy(CoinFlip(), data, [0.0, 1.0], batch_size=50, **NOISY)
    c = robust_accuracy(CoinFlip(), data, [0.0, 1.0], batch_size=50, **{**NOISY, "seed": 1})
    assert (a.predictions == b.predictions).all()
    assert (a.predictions != c.predictions).any()
    z = vote_noise((1, 2, 2), 0.5, 8, seed=0, example_ids=range(50))
    with torch.no_grad():
        votes = CoinFlip()((data[0].unsqueeze(1) + z).flatten(0, 1)).argmax(1).view(50, 8)
    majority = (votes.sum(1) > 4).long().numpy()  # class 1 needs 5 of 8 (ties go to 0)
    assert (a.predictions[:, 0] == majority).all()


def test_vote_noise_is_a_function_of_seed_and_index():
    a = vote_noise((3,), 1.0, 4, seed=5, example_ids=[0, 1, 2])
    b = vote_noise((3,), 1.0, 4, seed=5, example_ids=[2])
    assert torch.equal(a[2], b[0]) and not torch.equal(a[0], a[1])
    assert not torch.equal(a, vote_noise((3,), 1.0, 4, seed=6, example_ids=[0, 1, 2]))
    big = vote_noise((1000,), 2.0, 2, seed=0, example_ids=[0])
    assert abs(float(big.std()) - 2.0) < 0.1


def test_predict_vote_abstains_and_counts_abstention_wrong():
    """--vote predict: PREDICT's answer on the example's fixed draws (abstain = -1 = wrong),
    the same at every radius when the attack cannot move the input."""
    kw = {**NOISY, "noise_samples": 16}
    data = coin_data(60)
    result = robust_accuracy(CoinFlip(), data, TWELVE, vote="predict", vote_alpha=0.05, **kw)
    z = vote_noise((1, 2, 2), 0.5, 16, seed=0, example_ids=range(60))
    with torch.no_grad():
        votes = CoinFlip()((data[0].unsqueeze(1) + z).flatten(0, 1)).argmax(1).view(60, 16)
    ones = votes.sum(1).numpy()
    expected = [predict_from_counts(np.array([16 - k, k]), 0.05) for k in ones]
    assert (result.predictions == np.array(expected)[:, None]).all()
    assert (result.predictions == -1).mean() > 0.8  # coin flips: PREDICT mostly abstains
    acc = float((np.array(expected) == 0).mean())
    assert all(a == acc for a in result.accuracy.values())
    with pytest.raises(ParameterError, match="noise_samples must be >= 11"):
        robust_accuracy(CoinFlip(), data, [0.5], vote="predict", **NOISY)  # 8 draws at 0.001
    with pytest.raises(ParameterError, match="vote needs noise_sigma"):
        robust_accuracy(CoinFlip(), data, [0.5], vote="predict")


def test_attack_runs_use_the_dataset_index_for_the_votes(tmp_path):
    """A run's votes are fixed by (seed, dataset index): blocks of 4 or 9 give the same
    predictions, equal to robust_accuracy's on the same examples, at every radius."""
    data = CoinDataset(20)
    kw = dict(steps=3, noise_sigma=0.5, noise_samples=8, seed=2)
    four = attack_dataset(CoinFlip(), data, tmp_path / "a.db", TWELVE, batch_size=4, **kw)
    nine = attack_dataset(CoinFlip(), data, tmp_path / "b.db", TWELVE, batch_size=9, **kw)
    p4 = [r["predictions"] for r in four["rows"]]
    assert p4 == [r["predictions"] for r in nine["rows"]]
    assert all(len(set(p)) == 1 for p in p4)
    direct = robust_accuracy(CoinFlip(), (data.images, data.labels), TWELVE, **kw)
    assert four["accuracy"] == direct.accuracy


def test_a_noisy_run_of_the_old_evaluation_is_refused(tmp_path, monkeypatch):
    """A noisy run file without the "evaluation" entry was made with fresh votes per radius:
    it does not resume, and the one-line message says why and what to do."""
    data, out = CoinDataset(8), tmp_path / "old.db"
    kw = dict(steps=3, noise_sigma=0.5, noise_samples=8, batch_size=4)
    real = AttackOptions.later_config

    def old_config(self, precision):
        """The later entries as a version before common random numbers stored them: no
        config version, evaluation or vote; skip_fooled and the noisy batch size only."""
        return {
            k: v for k, v in real(self, precision).items() if k in ("skip_fooled", "batch_size")
        }

    monkeypatch.setattr(AttackOptions, "later_config", old_config)
    attack_dataset(CoinFlip(), data, out, [0.5], **kw)
    monkeypatch.setattr(AttackOptions, "later_config", real)
    with pytest.raises(ValueError) as info:
        attack_dataset(CoinFlip(), data, out, [0.5], **kw)
    assert read_attack(out)["evaluation"] == "fresh votes per radius"  # reports flag it
    message = str(info.value)
    assert "older version" in message and "common random numbers" in message
    assert "delete it or choose another run file" in message and "\n" not in message
    # a base-classifier run keeps its config (its evaluation did not change) and resumes
    base = tmp_path / "base.db"
    attack_dataset(CoinFlip(), data, base, [0.5], steps=3, batch_size=4)
    assert attack_dataset(CoinFlip(), data, base, [0.5], steps=3, batch_size=4)["count"] == 8
    assert read_attack(base)["evaluation"] is None
    attack_dataset(CoinFlip(), data, tmp_path / "new.db", [0.5], **kw)
    assert read_attack(tmp_path / "new.db")["evaluation"] == "crn"
    with pytest.raises(ParameterError, match="vote needs noise_sigma"):
        attack_dataset(CoinFlip(), data, tmp_path / "v.db", [0.5], vote="predict")
