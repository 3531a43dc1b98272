"""Regression values of PREDICT, CERTIFY and adaptive CERTIFY, Gaussian and sound (lattice)
noise, on a fixed random linear model: counts, pA lower bounds and radii must stay exactly
these (recorded from the code before the noise models were factored out of
SmoothedClassifier), so any change to the noise stream, the noisy inputs, the bound or the
radius shows up here."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smoothcert.certify.adaptive import certify_adaptive
from smoothcert.certify.smoothing import SmoothedClassifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHAPE = (3, 2, 2)
LEVELS = (  # three 8-bit images (grid levels k, x = k/255), valid in sound mode too
    (12, 200, 37, 90, 255, 0, 140, 61, 77, 180, 3, 99),
    (128, 128, 127, 129, 130, 126, 128, 128, 131, 125, 128, 128),
    (250, 5, 240, 17, 33, 221, 9, 198, 64, 64, 190, 2),
)


class Halve(nn.Module):
    """A fixed denoiser D(x) = x/2 (exact in binary floating point)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5


def _model(dtype: torch.dtype) -> nn.Module:
    gen = torch.Generator().manual_seed(7)
    linear = nn.Linear(12, 3)
    with torch.no_grad():
        linear.weight.copy_(torch.randn((3, 12), generator=gen) * 3)
        linear.bias.copy_(torch.randn(3, generator=gen))
    return nn.Sequential(nn.Flatten(), linear).to(dtype)


def _classifier(dtype: str, sound: bool, denoiser: bool = False) -> SmoothedClassifier:
    return SmoothedClassifier(
        _model(getattr(torch, dtype)), 3, 0.25, batch_size=70, input_shape=SHAPE, sound=sound,
        denoiser=Halve() if denoiser else None,
    )  # fmt: skip


def _x(i: int) -> torch.Tensor:
    return (torch.tensor(LEVELS[i], dtype=torch.float64) / 255).reshape(SHAPE)


def _case(key: str) -> tuple[str, bool, bool, int]:
    # "f32-L-D-0": float32 model, lattice (sound) noise, denoiser, input 0; G for Gaussian.
    dtype, noise, *denoised, i = key.split("-")
    return {"f32": "float32", "f64": "float64"}[dtype], noise == "L", bool(denoised), int(i)


def _certify_case(key: str) -> tuple:
    dtype, sound, denoiser, i = _case(key)
    g = _classifier(dtype, sound, denoiser)
    cert = g.certify(_x(i), 40, 600, 0.001, generator=torch.Generator().manual_seed(i))
    assert cert.sigma == 0.25 and cert.n_a == cert.counts_estimation[cert.prediction]
    return (
        cert.prediction, cert.radius, cert.p_a_lower,
        cert.counts_selection.tolist(), cert.counts_estimation.tolist(),
    )  # fmt: skip


def _predict_case(key: str) -> tuple:
    dtype, sound, _, i = _case(key)
    g = _classifier(dtype, sound)
    gen = torch.Generator().manual_seed(100 + i)
    counts = g.counts(_x(i), 250, generator=gen).tolist()
    return g.predict(_x(i), 250, 0.01, generator=gen), counts


def _adaptive_case(key: str) -> tuple:
    dtype, _, _, i = _case(key)
    g = _classifier(dtype, False)
    cert = certify_adaptive(
        g, _x(i), [0.05, 0.2], 0.001, n0=40, n_max=1500, n_first=40,
        generator=torch.Generator().manual_seed(200 + i),
    )  # fmt: skip
    return (
        cert.prediction, cert.radius, cert.p_a_lower, cert.n, cert.looks, cert.certified,
        cert.counts_estimation.tolist(),
    )  # fmt: skip


CERTIFY = [
    f"{d}-{noise}{den}-{i}" for d in ("f32", "f64") for noise in "GL" for den in ("", "-D")
    for i in range(3)
]  # fmt: skip
PREDICT = [f"{d}-{noise}-{i}" for d in ("f32", "f64") for noise in "GL" for i in range(3)]
ADAPTIVE = [f"{d}-G-{i}" for d in ("f32", "f64") for i in range(3)]


EXPECTED = {
    "f32-G-0": (2, 0.19615442144085868, 0.7836611212452171, [2, 7, 31], [39, 60, 501]),
    "f32-G-1": (2, 0.05751870533294201, 0.59098318511803, [0, 16, 24], [7, 201, 392]),
    "f32-G-2": (2, 0.2277562759986432, 0.818858926687853, [0, 0, 40], [57, 23, 520]),
    "f32-G-D-0": (2, 0.24625042582519605, 0.8376883828484432, [2, 2, 36], [57, 13, 530]),
    "f32-G-D-1": (2, 0.2224881128291276, 0.8132542909457137, [1, 6, 33], [15, 68, 517]),
    "f32-G-D-2": (2, 0.2561217091926741, 0.8471973074674529, [0, 0, 40], [64, 1, 535]),
    "f32-L-0": (2, 0.16648078653623283, 0.747269887451678, [5, 4, 31], [52, 67, 481]),
    "f32-L-1": (2, 0.06528478615714409, 0.6030073971889436, [1, 18, 21], [8, 193, 399]),
    "f32-L-2": (2, 0.21564016068014558, 0.8058104613112814, [2, 5, 33], [54, 33, 513]),
    "f32-L-D-0": (2, 0.24053903404057728, 0.8320144104246809, [6, 0, 34], [65, 8, 527]),
    "f32-L-D-1": (2, 0.22248811282890457, 0.8132542909457131, [3, 4, 33], [19, 64, 517]),
    "f32-L-D-2": (2, 0.23681227542045338, 0.8282440699236456, [2, 2, 36], [68, 7, 525]),
    "f64-G-0": (2, 0.13165120826846138, 0.7007659824872514, [0, 8, 32], [60, 85, 455]),
    "f64-G-1": (2, 0.05531498103730992, 0.5875549737285533, [1, 10, 29], [8, 202, 390]),
    "f64-G-2": (2, 0.2521175386295378, 0.8433855956822386, [3, 0, 37], [42, 25, 533]),
    "f64-G-D-0": (2, 0.20897825557561503, 0.7983980820520749, [0, 0, 40], [79, 12, 509]),
    "f64-G-D-1": (2, 0.21062713880530426, 0.8002483235059465, [1, 3, 36], [22, 68, 510]),
    "f64-G-D-2": (2, 0.2819810327932939, 0.8703240191447837, [3, 0, 37], [50, 3, 547]),
    "f64-L-0": (2, 0.16648078653623283, 0.747269887451678, [5, 4, 31], [52, 67, 481]),
    "f64-L-1": (2, 0.06528478615714409, 0.6030073971889436, [1, 18, 21], [8, 193, 399]),
    "f64-L-2": (2, 0.21564016068014558, 0.8058104613112814, [2, 5, 33], [54, 33, 513]),
    "f64-L-D-0": (2, 0.24053903404057728, 0.8320144104246809, [6, 0, 34], [65, 8, 527]),
    "f64-L-D-1": (2, 0.22248811282890457, 0.8132542909457131, [3, 4, 33], [19, 64, 517]),
    "f64-L-D-2": (2, 0.23681227542045338, 0.8282440699236456, [2, 2, 36], [68, 7, 525]),
    "Pf32-G-0": (2, [20, 29, 201]),
    "Pf32-G-1": (2, [4, 88, 158]),
    "Pf32-G-2": (2, [12, 15, 223]),
    "Pf32-L-0": (2, [22, 34, 194]),
    "Pf32-L-1": (2, [7, 101, 142]),
    "Pf32-L-2": (2, [22, 8, 220]),
    "Pf64-G-0": (2, [16, 34, 200]),
    "Pf64-G-1": (2, [3, 92, 155]),
    "Pf64-G-2": (2, [24, 14, 212]),
    "Pf64-L-0": (2, [22, 34, 194]),
    "Pf64-L-1": (2, [7, 101, 142]),
    "Pf64-L-2": (2, [22, 8, 220]),
    "Af32-G-0": (2, 0.11897984732832391, 0.6829340959265204, 320, 6, (True, False), [25, 45, 250]),
    "Af32-G-1": (
        2,
        0.05702643954198107,
        0.5902179881382671,
        1280,
        8,
        (True, False),
        [22, 435, 823],
    ),
    "Af32-G-2": (2, 0.21225481637702837, 0.8020647138881698, 640, 7, (True, True), [51, 38, 551]),
    "Af64-G-0": (2, 0.12885133954713573, 0.6968651055000333, 320, 6, (True, False), [28, 38, 254]),
    "Af64-G-1": (
        2,
        0.055207658108702484,
        0.5873878444515359,
        1500,
        9,
        (True, False),
        [27, 529, 944],
    ),
    "Af64-G-2": (2, 0.22711322659080732, 0.8181805078769239, 640, 7, (True, True), [48, 32, 560]),
}


@pytest.mark.parametrize("case", CERTIFY)
def test_certify_is_unchanged(case: str) -> None:
    assert _certify_case(case) == EXPECTED[case]


@pytest.mark.parametrize("case", PREDICT)
def test_predict_and_counts_are_unchanged(case: str) -> None:
    assert _predict_case(case) == EXPECTED["P" + case]


@pytest.mark.parametrize("case", ADAPTIVE)
def test_adaptive_certify_is_unchanged(case: str) -> None:
    assert _adaptive_case(case) == EXPECTED["A" + case]
