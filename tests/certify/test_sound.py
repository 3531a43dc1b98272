"""Certificates for the classifier as computed in floating point: the radius's σ is the σ that
scaled the noise, and sound mode (8-bit inputs, rounded-Gaussian noise on the 8-bit grid drawn
from random integers, exact noisy inputs) is checked against exact oracles, a chi-square test,
and a constructed classifier whose standard certificate is contradicted by an adversarial
example well inside the certified radius."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import mpmath
import numpy as np
import pytest
import torch
from scipy import stats as sps
from torch import nn

from helpers import smoothcert, untrained_checkpoint
from smoothcert import analysis
from smoothcert.certify import sound, stats
from smoothcert.certify.smoothing import SmoothedClassifier
from smoothcert.runs import CertifyOptions, certify_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ALPHA = 0.001


class Constant(nn.Module):
    """Always class 0; records every batch it sees."""

    def __init__(self, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1, dtype=dtype))
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        logits = torch.zeros(x.shape[0], 2, dtype=x.dtype)
        logits[:, 0] = 1
        return logits


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- σ of the radius


def test_radius_uses_the_float32_sigma_that_scaled_the_noise() -> None:
    model = Constant()
    g = SmoothedClassifier(model, 2, 0.12, batch_size=400, input_shape=(5,))
    x = torch.rand(5)
    cert = g.certify(x, 10, 1000, ALPHA, generator=_gen())
    sigma32 = float(np.float32(0.12))
    assert sigma32 < 0.12 and g.noise_sigma == sigma32 == cert.sigma
    p = ALPHA ** (1 / 1000)
    assert cert.p_a_lower == pytest.approx(p, rel=1e-9)
    # exactly the float32 σ times Φ⁻¹(pA_lower), not the float64 σ (2.2e-8 relatively larger)
    assert cert.radius == stats.certify_decision(0, cert.p_a_lower, sigma32)[1]
    assert cert.radius < stats.certify_decision(0, cert.p_a_lower, 0.12)[1]
    # ... and σ₃₂ is what scaled the noise: the inputs are fl(x + σ₃₂ε) bit for bit (the noise
    # stream is unchanged: torch rounds alpha=0.12 to the same float32)
    eps = torch.randn((1000, 5), generator=_gen())[:10]  # the first chunk's first 10 draws
    assert torch.equal(model.seen[0], torch.add(x, eps, alpha=sigma32))
    assert torch.equal(model.seen[0], torch.add(x, eps, alpha=0.12))


def test_float64_models_keep_the_float64_sigma() -> None:
    g = SmoothedClassifier(Constant(torch.float64), 2, 0.12, input_shape=(3,))
    assert g.noise_sigma == 0.12
    assert g.certify(torch.rand(3), 5, 100, ALPHA, generator=_gen()).sigma == 0.12


# --------------------------------------------------------------------------- the noise table


def test_noise_table_is_the_rounded_gaussian_within_its_tv_bound() -> None:
    sigma = 0.02  # s = 5.1 grid steps
    table = sound.lattice_noise(sigma)
    assert table.support == math.ceil(10 * (sigma * 255)) + 1
    probs = table.probabilities()
    assert probs.sum() == 1 << 62 and (probs >= 0).all()
    with mpmath.workprec(128):
        s = mpmath.mpf(sigma) * 255  # exact at this precision
        # every threshold is Φ((j + ½)/s) rounded to the nearest multiple of 2⁻⁶²
        for i, j in enumerate(range(-table.support, table.support)):
            exact = mpmath.ncdf((j + mpmath.mpf(0.5)) / s) * mpmath.mpf(2) ** 62
            assert abs(int(table.thresholds[i]) - exact) <= 0.5
        p0 = mpmath.ncdf(mpmath.mpf(0.5) / s) - mpmath.ncdf(-mpmath.mpf(0.5) / s)
        assert abs(probs[table.support] / mpmath.mpf(2) ** 62 - p0) < 2**-61
    # the distance is that of 2·support rounded thresholds: at most support·2⁻⁶² (plus a
    # tail of 1.5e-23); far below anything a certificate can resolve
    assert 0 < table.tv <= table.support * 2.0**-62 + 1e-22


def test_guide_lookup_equals_the_full_table_inversion() -> None:
    table = sound.lattice_noise(0.05)
    # every bucket, each with a random and with the extreme low bits
    bucket = torch.arange(1 << 16, dtype=torch.int32).repeat(3)
    g = _gen(3)
    low = torch.randint(0, 1 << 46, (bucket.numel(),), generator=g)
    low[: 1 << 16] = 0
    low[1 << 16 : 2 << 16] = (1 << 46) - 1
    amb = torch.isnan(table.guide[bucket.long()])
    drawn = []

    def draw_low(m: int) -> torch.Tensor:
        drawn.append(m)
        return low[amb][:m]

    values = sound.values_from_bits(table, bucket, draw_low)
    u = (bucket.long() << 46) | low
    expected = torch.searchsorted(table.thresholds, u, right=True) - table.support
    # where the guide decides, the low bits cannot matter: the same value for all three
    assert torch.equal(values, expected.float())
    assert drawn == [int(amb.sum())] and 0 < drawn[0] < bucket.numel() / 50


def test_drawn_noise_follows_the_table_chi_square() -> None:
    table = sound.lattice_noise(0.02)
    out = torch.empty(400, 500)
    sound.draw_lattice_noise(table, out, _gen(11))
    values = out.flatten().long() + table.support
    observed = np.bincount(values.numpy(), minlength=2 * table.support + 1)
    expected = table.probabilities() / 2.0**62 * values.numel()
    keep = expected > 5  # pool the far tails into one cell
    obs = np.append(observed[keep], observed[~keep].sum())
    exp = np.append(expected[keep], expected[~keep].sum())
    assert observed[~keep].sum() < 20
    chi2 = float(((obs - exp) ** 2 / exp).sum())
    assert sps.chi2.sf(chi2, len(obs) - 1) > 1e-3
    assert out.std().item() == pytest.approx(0.02 * 255, rel=0.01)


def test_randint_gives_uniform_bits() -> None:
    """The random integers behind the noise: randint over 2¹⁶ and 2⁴⁶ uses every bit."""
    for bits, dtype in ((16, torch.int32), (46, torch.int64)):
        draws = torch.randint(0, 1 << bits, (100_000,), dtype=dtype, generator=_gen(5)).long()
        assert draws.min() >= 0 and draws.max() < 1 << bits
        for b in (0, bits // 2, bits - 1):  # lowest, middle and top bit: set half the time
            ones = int(((draws >> b) & 1).sum())
            assert abs(ones - 50_000) < 4 * math.sqrt(25_000)


# --------------------------------------------------------------------------- inputs


def test_grid_levels_accepts_8_bit_images_and_refuses_the_rest() -> None:
    k = torch.arange(256)
    for dtype in (torch.float32, torch.float64):
        assert torch.equal(sound.grid_levels((k / 255).to(dtype)), k.double())
    for bad in (0.5, 1 + 1 / 255, -1 / 255, float("nan")):
        with pytest.raises(ValueError, match="8-bit grid"):
            sound.grid_levels(torch.tensor([0.0, bad]))
    g = SmoothedClassifier(Constant(), 2, 0.25, input_shape=(2,), sound=True)
    with pytest.raises(ValueError, match=r"8-bit grid .* got the value 0\.3"):
        g.counts(torch.tensor([0.0, 0.3]), 10)
    with pytest.raises(ValueError, match="float32 or float64"):
        SmoothedClassifier(Constant().half(), 2, 0.25, sound=True)
    with pytest.raises(ValueError, match="sound must be True or False"):
        SmoothedClassifier(Constant(), 2, 0.25, sound=1)


def test_sound_inputs_are_exact_grid_points_and_batch_size_free() -> None:
    x = torch.tensor([0, 1, 128, 255]) / 255
    runs = []
    for batch in (7, 1000):
        model = Constant()
        g = SmoothedClassifier(model, 2, 0.25, batch_size=batch, input_shape=(4,), sound=True)
        g.counts(x, 300, generator=_gen(2))
        runs.append(torch.cat(model.seen))
    assert torch.equal(runs[0], runs[1])
    seen = runs[0]
    levels = torch.round(seen.double() * 255)
    # each input is fl((k + J)/255): one correctly rounded division of an integer
    assert torch.equal(seen, levels.float() / 255)
    noise = levels - x.double() * 255
    assert abs(float(noise.std()) - 0.25 * 255) < 4


def test_sound_certificate_subtracts_the_tv_bound() -> None:
    d = 8
    g = SmoothedClassifier(Constant(), 2, 0.25, input_shape=(d,), sound=True)
    cert = g.certify(torch.zeros(d), 10, 1000, ALPHA, generator=_gen())
    tv = sound.lattice_noise(0.25).tv
    p = stats.lower_confidence_bound(1000, 1000, ALPHA) - d * tv
    assert cert.p_a_lower == p and cert.sigma == 0.25
    assert cert.radius == 0.25 * sps.norm.ppf(p) * (1 - sound.RADIUS_MARGIN)


# --------------------------------------------------------------------------- the failure case

SIGMA = 0.35  # σ₃₂ has mantissa 1.4: products σ₃₂·e skip about 1 float in 3.5 below 2^k·σ


def _is_scaled_float32(y: torch.Tensor) -> torch.Tensor:
    """Whether each float32 y equals RN32(σ₃₂·e) for some float32 e, decided exactly: σ₃₂·e
    is exact in float64 (24 + 24 bits), and e lies within two float32 steps of y/σ₃₂."""
    s = torch.tensor(SIGMA, dtype=torch.float32).double()
    e = (y.double() / s).float()
    inf = torch.tensor(math.inf)
    candidates = [e]
    for direction in (inf, -inf):
        step = e
        for _ in range(2):
            step = torch.nextafter(step, direction)
            candidates.append(step)
    return torch.stack([(c.double() * s).float() == y for c in candidates]).any(dim=0)


class ScaledNoiseDetector(nn.Module):
    """A fixed base classifier: class 0 when every input value is a float32 product σ₃₂·e
    (what fl(0 + σ₃₂ε) always is, whatever ε), else class 1. As a function of the input it is
    legitimate; smoothing it in exact arithmetic would give the same class at every point
    within any small distance of another."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        scaled = _is_scaled_float32(y).all(dim=1)
        return torch.stack([scaled, ~scaled], 1).float()


def test_standard_path_certifies_past_an_adversarial_example_and_sound_path_does_not() -> None:
    d = 400
    x0 = torch.zeros(d)  # a black image
    x1 = torch.full((d,), 1 / 255)  # one grey level brighter: on the 8-bit grid too
    distance = float(torch.linalg.vector_norm(x1 - x0))
    assert distance == pytest.approx(20 / 255)  # 0.078
    standard = SmoothedClassifier(ScaledNoiseDetector(), 2, SIGMA, input_shape=(d,))
    at_x0 = standard.certify(x0, 100, 1000, ALPHA, generator=_gen())
    at_x1 = standard.certify(x1, 100, 1000, ALPHA, generator=_gen(1))
    # exact: fl(0 + σ₃₂ε) = RN32(σ₃₂ε) for every ε, so all 1000 draws say class 0
    assert at_x0.prediction == 0 and at_x0.n_a == 1000
    assert at_x0.radius > 10 * distance  # 0.86 certified ...
    # ... yet one grey level away the smoothed classifier as computed says class 1, certified
    assert at_x1.prediction == 1 and at_x1.radius > 0.5

    sound_g = SmoothedClassifier(ScaledNoiseDetector(), 2, SIGMA, input_shape=(d,), sound=True)
    at_x0 = sound_g.certify(x0, 100, 1000, ALPHA, generator=_gen())
    at_x1 = sound_g.certify(x1, 100, 1000, ALPHA, generator=_gen(1))
    # sound: whatever it certifies at x0 holds at x1
    assert at_x0.prediction != -1 and at_x0.radius > distance
    assert at_x1.prediction == at_x0.prediction


# --------------------------------------------------------------------------- runs and CLI


class GridData:
    """Toy 2×2 images on the 8-bit grid, labelled by the linear rule sum > 2."""

    class info:  # noqa: N801 (an attribute namespace, like a dataset's info)
        name = "grid"
        num_classes = 2
        input_shape = (1, 2, 2)

    def __init__(self, m: int = 4) -> None:
        levels = torch.randint(0, 256, (m, 1, 2, 2), generator=_gen(9))
        self.x = levels / 255
        self.y = (self.x.flatten(1).sum(1) > 2).long()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w - 2.0
        return torch.stack([-s, s], 1)


def _run_config(path: Path) -> dict:
    con = sqlite3.connect(path)
    try:
        return json.loads(con.execute("SELECT value FROM meta WHERE key='config'").fetchone()[0])
    finally:
        con.close()


def test_sound_is_stored_and_a_resume_in_the_other_mode_is_refused(tmp_path: Path) -> None:
    def classifier(on: bool) -> SmoothedClassifier:
        return SmoothedClassifier(Linear(), 2, 0.25, input_shape=(1, 2, 2), sound=on)

    options = CertifyOptions(n0=10, n=200, alpha=0.01)
    sound_run, plain_run = tmp_path / "sound.db", tmp_path / "plain.db"
    rows = certify_dataset(classifier(True), GridData(), sound_run, options)
    assert len(rows) == 4 and _run_config(sound_run)["sound"] is True
    certify_dataset(classifier(False), GridData(), plain_run, options)
    # Stored either way (runs made before sound mode, without it, still resume:
    # tests/runs/test_config_versions.py).
    assert _run_config(plain_run)["sound"] is False
    for path, other in ((sound_run, False), (plain_run, True)):
        before = path.read_bytes()
        with pytest.raises(ValueError, match="different arguments .*sound"):
            certify_dataset(classifier(other), GridData(), path, options)
        assert path.read_bytes() == before
    # the stored rows are re-analysed as they are; Figure 8's re-derivation would drop dη
    assert analysis.analyze([sound_run])[0].num_examples == 4
    with pytest.raises(ValueError, match="is a sound run"):
        analysis.bound_comparison(sound_run)
    with pytest.raises(ValueError, match="adaptive_radii cannot be used with a sound"):
        certify_dataset(
            classifier(True), GridData(), tmp_path / "a.db", CertifyOptions(adaptive_radii=[0.1])
        )
    assert not (tmp_path / "a.db").exists()


@pytest.mark.slow
def test_cli_certify_and_predict_sound(tmp_path: Path, mnist_test) -> None:
    ckpt = untrained_checkpoint(tmp_path, mnist_test.info, sigma=0.25)
    common = ["--max", "2", "--skip", "500", "--batch", "100", "--no-progress", "--sound"]
    out = tmp_path / "c.db"
    smoothcert("certify", ckpt, "--n0", "10", "--n", "100", "--out", out, *common)
    assert _run_config(out)["sound"] is True
    smoothcert("predict", ckpt, "--n", "100", "--out", tmp_path / "p.db", *common)
    assert _run_config(tmp_path / "p.db")["sound"] is True
    again = smoothcert("certify", ckpt, "--n0", "10", "--n", "100", "--out", out, "--max", "2",
                       "--skip", "500", "--batch", "100", "--no-progress", check=False)  # fmt: skip
    assert again.returncode != 0 and "sound" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    bench = smoothcert("bench", ckpt, "--sound", "--batch", "50", "--rounds", "1",
                       "--batches-per-round", "1", "--disagreement-images", "0", "--json",
                       tmp_path / "bench.json")  # fmt: skip
    assert "(sound mode)" in bench.stdout
    assert json.loads((tmp_path / "bench.json").read_text())["sound"] is True


def test_float64_models_draw_the_same_sound_noise_in_float64() -> None:
    """The docs promise float32 or float64 models: a float64 one gets the same J as a float32
    one, and (k + J)/255 computed in float64."""
    x = torch.tensor([0, 1, 128, 255]) / 255
    seen = {}
    for dtype in (torch.float32, torch.float64):
        model = Constant(dtype)
        g = SmoothedClassifier(model, 2, 0.25, batch_size=100, input_shape=(4,), sound=True)
        assert int(g.counts(x, 300, generator=_gen(2)).sum()) == 300
        seen[dtype] = torch.cat(model.seen)
        assert seen[dtype].dtype == dtype
        cert = g.certify(x, 10, 100, ALPHA, generator=_gen())
        assert cert.prediction == 0 and cert.sigma == 0.25
    levels = torch.round(seen[torch.float64] * 255)
    assert torch.equal(levels, torch.round(seen[torch.float32].double() * 255))
    assert torch.equal(seen[torch.float64], levels / 255)  # one float64 division
