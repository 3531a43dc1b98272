"""Denoiser architectures (DnCNN, the small U-Net), their registry and their checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from smoothcert._util.checks import ParameterError
from smoothcert.models import (
    create_denoiser,
    create_model,
    list_denoisers,
    list_models,
    load_denoiser,
    register_denoiser,
)
from smoothcert.models.checkpoint import load_checkpoint, save_checkpoint
from smoothcert.models.denoisers import DenoiserSpec, DnCNN, ImageDenoiser, denoiser_metadata
from smoothcert.models.diffusion import OneStepDiffusionDenoiser, cosine_schedule, linear_schedule
from smoothcert.models.unet import timestep_embedding

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_denoisers_have_their_own_registry() -> None:
    assert list_denoisers()[:2] == ["dncnn", "unet-small"]
    assert not set(list_denoisers()) & set(list_models())
    with pytest.raises(ValueError, match="unknown arch 'dncnn'"):
        create_model("dncnn", 10, (1, 28, 28), [0.5], [0.5])
    with pytest.raises(ParameterError, match="not a denoiser architecture: 'lenet'"):
        create_denoiser("lenet", (1, 28, 28))
    for taken in ("dncnn", "lenet"):
        with pytest.raises(ValueError, match="already registered"):
            register_denoiser(DenoiserSpec(taken, lambda s: nn.Identity(), "image"))


def test_dncnn_is_the_salman_et_al_network() -> None:
    d = create_denoiser("dncnn", (3, 32, 32))
    assert isinstance(d, ImageDenoiser) and isinstance(d.body, DnCNN)
    convs = [m for m in d.body.net if isinstance(m, nn.Conv2d)]
    bns = [m for m in d.body.net if isinstance(m, nn.BatchNorm2d)]
    relus = [m for m in d.body.net if isinstance(m, nn.ReLU)]
    assert len(convs) == 17 and len(bns) == 15 and len(relus) == 16
    assert [c.out_channels for c in convs] == [64] * 16 + [3]
    assert [c.bias is not None for c in convs] == [True] + [False] * 16
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    # conv(3→64)+bias, 15 × (conv 64→64 + BN), conv(64→3): counted by hand.
    expected = (3 * 64 * 9 + 64) + 15 * (64 * 64 * 9 + 2 * 64) + 64 * 3 * 9
    assert sum(p.numel() for p in d.parameters()) == expected == 558_400
    # Orthogonal init: a hidden conv's weight, flattened to 64 rows of 64·9 entries, has
    # orthonormal rows; the last conv starts at zero.
    w = convs[1].weight.flatten(1)
    torch.testing.assert_close(w @ w.T, torch.eye(64), atol=1e-4, rtol=0)
    assert not convs[-1].weight.any()


def test_dncnn_depth_width_and_residual_form() -> None:
    d = create_denoiser("dncnn", (1, 8, 8), mean=[0.25], std=[0.5], depth=4, width=8)
    convs = [m for m in d.body.net if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and convs[0].out_channels == 8
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(d(x), x)  # untrained: the last conv is zero, D is the identity
    with torch.no_grad():
        convs[-1].weight.normal_()
    d.eval()
    # D(x) = x − std·net((x − mean)/std): the noise prediction is subtracted in pixel units.
    expected = x - 0.5 * d.body.net((x - 0.25) / 0.5)
    torch.testing.assert_close(d(x), expected, atol=1e-6, rtol=0)
    assert not torch.allclose(d(x), x)


@pytest.mark.parametrize(
    ("options", "parameter"),
    [({"depth": 1}, "depth"), ({"width": 0}, "width"), ({"layers": 3}, "layers")],
)
def test_bad_options_name_the_option(options, parameter) -> None:
    with pytest.raises(ParameterError) as excinfo:
        create_denoiser("dncnn", (1, 8, 8), **options)
    assert excinfo.value.parameter == parameter


def test_noise_prediction_networks_take_minus_one_to_one_inputs() -> None:
    u = create_denoiser("unet-small", (1, 28, 28), width=8, time_dim=16)
    assert u.denoiser_config["mean"] == [0.5] and u.denoiser_config["std"] == [0.5]
    with pytest.raises(ParameterError) as excinfo:
        create_denoiser("unet-small", (1, 28, 28), mean=[0.1307], std=[0.3081])
    assert excinfo.value.parameter == "mean"
    with pytest.raises(ValueError, match="even height and width"):
        create_denoiser("unet-small", (1, 27, 28))


def test_timestep_embedding_by_hand() -> None:
    # dim 4: ω = (1, 10000^(−1/2) = 0.01); [sin 3ω, cos 3ω].
    emb = timestep_embedding(torch.tensor([3]), 4)[0].tolist()
    expected = [math.sin(3), math.sin(0.03), math.cos(3), math.cos(0.03)]
    assert emb == pytest.approx(expected, abs=1e-6)


def test_unet_predicts_noise_of_the_input_shape_and_depends_on_t() -> None:
    u = create_denoiser("unet-small", (3, 16, 16), width=8, time_dim=16)
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([5, 5])
    assert not u(x, t).any()  # the output conv starts at zero
    with torch.no_grad():
        u.out[-1].weight.normal_()
    a, b = u(x, t), u(x, torch.tensor([5, 900]))
    assert a.shape == (2, 3, 16, 16)
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])


def test_dncnn_checkpoint_round_trip(tmp_path) -> None:
    d = create_denoiser("dncnn", (1, 28, 28), mean=[0.1307], std=[0.3081], depth=5, width=16)
    with torch.no_grad():
        for p in d.parameters():
            p.add_(0.01 * torch.randn_like(p))
    d.eval()
    meta = denoiser_metadata(d, dataset="mnist", sigma=0.5, method="mse", epoch=3)
    path = save_checkpoint(tmp_path / "d.safetensors", d, meta)
    loaded, back = load_checkpoint(path)
    assert back["task"] == "denoiser" and back["dataset"] == "mnist" and back["sigma"] == 0.5
    assert back["mean"] == [0.1307] and back["std"] == [0.3081]
    assert back["arch"] == "dncnn" and back["arch_options"] == {"depth": 5, "width": 16}
    assert back["input_shape"] == [1, 28, 28] and back["epoch"] == 3
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(loaded(x), d(x))
    ready, _ = load_denoiser(path, sigma=0.5)
    assert torch.equal(ready(x), d(x)) and not ready.training
    with pytest.raises(ParameterError) as excinfo:
        load_denoiser(path, sigma=0.25)
    assert excinfo.value.parameter == "sigma" and "trained at" in str(excinfo.value)


def test_diffusion_checkpoint_round_trip(tmp_path) -> None:
    u = create_denoiser("unet-small", (1, 28, 28), width=8, time_dim=16)
    with torch.no_grad():
        u.out[-1].weight.normal_(std=0.1)
    schedule = cosine_schedule()
    meta = denoiser_metadata(u, dataset="mnist", schedule=schedule.to_metadata())
    path = save_checkpoint(tmp_path / "u.safetensors", u, meta)
    ready, back = load_denoiser(path, sigma=0.5)
    assert back["schedule"] == {"kind": "cosine", "steps": 1000, "s": 0.008, "max_beta": 0.999}
    assert back["sigma"] is None and back["mean"] == [0.5]
    assert isinstance(ready, OneStepDiffusionDenoiser)
    assert ready.timestep == schedule.timestep_for(0.5) == 495
    x = torch.rand(2, 1, 28, 28)
    expected = OneStepDiffusionDenoiser(u.eval(), schedule, 0.5)(x)
    assert torch.equal(ready(x), expected)
    with pytest.raises(ParameterError) as excinfo:
        load_denoiser(path)
    assert excinfo.value.parameter == "sigma"
    ready, _ = load_denoiser(path, sigma=0.5, timestep=7)
    assert ready.timestep == 7


def test_denoiser_metadata_must_record_sigma_or_schedule_and_dataset(tmp_path) -> None:
    d = create_denoiser("dncnn", (1, 8, 8), depth=3, width=4)
    with pytest.raises(ParameterError) as excinfo:
        denoiser_metadata(d, dataset="mnist")
    assert excinfo.value.parameter == "sigma"
    u = create_denoiser("unet-small", (1, 8, 8), width=8, time_dim=8)
    with pytest.raises(ParameterError) as excinfo:
        denoiser_metadata(u, dataset="mnist", sigma=0.5)
    assert excinfo.value.parameter == "schedule"
    # Hand-written metadata is checked when saving (and loading): no σ, no dataset.
    meta = denoiser_metadata(d, dataset="mnist", sigma=0.5)
    for key, pattern in (("sigma", "sigma must be > 0"), ("dataset", "lacks required key")):
        broken = {k: v for k, v in meta.items() if k != key}
        with pytest.raises(ValueError, match=pattern):
            save_checkpoint(tmp_path / "x.safetensors", d, broken)
    assert not (tmp_path / "x.safetensors").exists()


def test_weights_must_match_the_described_denoiser(tmp_path) -> None:
    d = create_denoiser("dncnn", (1, 8, 8), depth=3, width=4)
    meta = denoiser_metadata(d, dataset="toy", sigma=0.5) | {"arch_options": {"depth": 4}}
    with pytest.raises(ValueError, match="do not match the architecture"):
        save_checkpoint(tmp_path / "x.safetensors", d, meta)


def test_classifier_checkpoints_are_unchanged(tmp_path) -> None:
    model = create_model("lenet", 10, (1, 28, 28), [0.1307], [0.3081])
    meta = {"arch": "lenet", "num_classes": 10, "input_shape": [1, 28, 28]}
    meta |= {"mean": [0.1307], "std": [0.3081]}
    path = save_checkpoint(tmp_path / "c.safetensors", model, meta)
    loaded, back = load_checkpoint(path)
    assert "task" not in back
    x = torch.rand(2, 1, 28, 28)
    assert torch.equal(loaded(x), model.eval()(x))
    with pytest.raises(ValueError, match="classifier checkpoint, not a denoiser"):
        load_denoiser(path)
    with pytest.raises(ValueError, match="unknown task 'segmenter'"):
        save_checkpoint(tmp_path / "s.safetensors", model, meta | {"task": "segmenter"})


def test_linear_schedule_metadata_round_trip(tmp_path) -> None:
    u = create_denoiser("unet-small", (1, 8, 8), width=8, time_dim=8)
    meta = denoiser_metadata(u, dataset="toy", schedule=linear_schedule().to_metadata())
    path = save_checkpoint(tmp_path / "u.safetensors", u, meta)
    ready, back = load_denoiser(path, sigma=0.25)
    assert back["schedule"] == {
        "kind": "linear",
        "steps": 1000,
        "beta_start": 1e-4,
        "beta_end": 0.02,
    }
    assert ready.timestep == 144
