"""Mixed-precision training: bf16 autocast for every method, recorded in the run, resumable."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from helpers import smoothcert
from smoothcert.models.checkpoint import load_checkpoint
from smoothcert.training import TrainConfig, list_methods, train
from smoothcert.training.precision import AutocastModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(tmp_path, name: str, **kw) -> TrainConfig:
    args = dict(
        dataset="mnist", arch="cnn3", method="gaussian", method_options={"sigma": 0.25},
        out_dir=str(tmp_path / name), epochs=1, subset=256, test_subset=100, batch_size=64,
        lr=0.05, schedule="constant", seed=1, device="cpu",
    )  # fmt: skip
    args.update(kw)
    return TrainConfig(**args)


def _conv_output_dtypes(model: nn.Module) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    return seen


@pytest.mark.parametrize(
    "precision, conv_dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)]
)
def test_autocast_model_runs_convs_in_the_precision_and_returns_float32(precision, conv_dtype):
    from smoothcert.models import create_model

    model = create_model("cnn3", 10, (1, 28, 28), (0.5,), (0.25,))
    seen = _conv_output_dtypes(model)
    runner = AutocastModel(model, precision, channels_last=precision == "bf16")
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    logits = runner(x)
    assert logits.dtype == torch.float32
    assert seen and set(seen) == {conv_dtype}
    # Input gradients (the inner attacks' ascent) flow back to a float32 input.
    (grad,) = torch.autograd.grad(logits.sum(), x)
    assert grad.dtype == torch.float32 and grad.abs().sum() > 0


@pytest.mark.parametrize("method", list_methods())
def test_every_method_trains_in_bf16_with_bf16_convolutions(
    tmp_path, mnist_train, method, monkeypatch
):
    import smoothcert.training.loop as loop

    conv_dtypes: list[torch.dtype] = []
    real_create = loop.create_model

    def create_and_watch(*args, **kw):
        model = real_create(*args, **kw)
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                m.register_forward_hook(lambda _m, _i, out: conv_dtypes.append(out.dtype))
        return model

    monkeypatch.setattr(loop, "create_model", create_and_watch)
    options = {"sigma": 0.25} if method in ("gaussian", "stn", "smoothadv") else {}
    config = _config(
        tmp_path, method, method=method, method_options=options, subset=64, batch_size=32,
        precision="bf16",
    )  # fmt: skip
    result = train(config, test_set=None, progress=False)
    # Every convolution the method ran (inner attacks included) ran in bf16.
    assert conv_dtypes and set(conv_dtypes) == {torch.bfloat16}, method
    assert all(torch.isfinite(p).all() for p in result.model.parameters())
    meta = load_checkpoint(result.last_checkpoint)[1]
    assert meta["precision"] == "bf16" and meta["channels_last"] is True
    assert meta["training"]["precision"] == "bf16"


def test_bf16_run_is_recorded_and_a_resume_with_fp32_is_refused(tmp_path, mnist_train):
    config = _config(tmp_path, "run", precision="bf16", test_subset=None)
    train(config, test_set=None, progress=False)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["precision"] == "bf16" and recorded["channels_last"] is True
    r = smoothcert(
        "train", "--dataset", "mnist", "--arch", "cnn3", "--method", "gaussian", "--sigma", "0.25",
        "--epochs", "1", "--subset", "256", "--batch-size", "64", "--lr", "0.05",
        "--schedule", "constant", "--seed", "1", "--device", "cpu", "--out", tmp_path / "run",
        "--precision", "fp32", "--no-progress", check=False,
    )  # fmt: skip
    assert r.returncode != 0
    assert "precision: 'bf16' there, 'fp32' now" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_fp16_on_cpu_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "fp16"
    r = smoothcert(
        "train", "--dataset", "mnist", "--arch", "cnn3", "--epochs", "1",
        "--precision", "fp16", "--device", "cpu", "--out", out, check=False,
    )  # fmt: skip
    assert r.returncode != 0
    assert "fp16 needs a CUDA device" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_interrupted_bf16_run_resumes_to_identical_weights(tmp_path, mnist_train):
    reference = train(_config(tmp_path, "ref", epochs=2, precision="bf16"), progress=False)

    def stop_after_first_epoch(line: str) -> None:
        if line.startswith("epoch 1/2"):
            raise KeyboardInterrupt

    config = _config(tmp_path, "cut", epochs=2, precision="bf16")
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False, log=stop_after_first_epoch)
    resumed = train(config, progress=False)
    assert resumed.resumed_from_epoch == 1
    a = load_file(reference.last_checkpoint)
    b = load_file(resumed.last_checkpoint)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_bf16_and_fp32_reach_the_same_noisy_accuracy(tmp_path, mnist_train, mnist_test):
    accs = {}
    for precision in ("fp32", "bf16"):
        config = _config(
            tmp_path, precision, subset=3000, test_subset=1000, batch_size=64, precision=precision
        )
        accs[precision] = train(config, progress=False).history[-1]["test_acc_noise"]
    # One epoch on 3,000 images: runs differing only in rounding drift apart by a few points
    # (0.868 fp32 vs 0.834 bf16 here); the 1-point parity is measured on the full data sets.
    assert accs["fp32"] > 0.8
    assert abs(accs["bf16"] - accs["fp32"]) <= 0.05, accs
