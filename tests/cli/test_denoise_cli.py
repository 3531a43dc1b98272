"""Denoised smoothing on the command line: `smoothcert train-denoiser` and
``--denoiser`` of certify, predict and attack, on real MNIST.

An untrained DnCNN is the identity (its last convolution starts at zero), so f∘D with it must
give the same rows as f alone, bit for bit on a seed; a trained one must make the same
certificates whether f runs in PyTorch or as ONNX behind it (within ONNX Runtime's float
tolerance)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import smoothcert, untrained_checkpoint
from smoothcert.models.checkpoint import load_checkpoint, load_denoiser, save_checkpoint
from smoothcert.models.denoisers import create_denoiser, denoiser_metadata
from smoothcert.runs import file_sha256

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

MNIST = (1, 28, 28)
SIGMA = 0.25
#: As tests/test_adapters.py: the largest share of noisy inputs on which ONNX Runtime's and
#: PyTorch's float32 kernels may disagree (a near-tie's argmax).
MAX_ORT_DISAGREEMENT = 0.005
SMALL = ["--arch", "dncnn", "--depth", "3", "--width", "8"]
CERTIFY = ["--sigma", str(SIGMA), "--n0", "50", "--n", "400", "--batch", "200", "--skip", "97",
           "--max", "4", "--no-progress", "--threads", "1"]  # fmt: skip


def _train_denoiser(out: Path, *extra: str, check: bool = True, epochs: int = 1):
    return smoothcert(
        "train-denoiser", *SMALL, "--dataset", "mnist", "--subset", "512", "--test-subset",
        "100", "--batch-size", "64", "--epochs", str(epochs), "--threads", "1",
        "--checkpoint-every", "0", "--no-progress", "--precision", "fp32", "--out", str(out),
        *extra, check=check,
    )  # fmt: skip


@pytest.fixture(scope="module")
def classifier(tmp_path_factory, mnist_train) -> Path:
    """A cnn3 trained without noise, briefly (the classifier denoised smoothing is for)."""
    out = tmp_path_factory.mktemp("clf") / "run"
    smoothcert(
        "train", "--dataset", "mnist", "--arch", "cnn3", "--method", "standard", "--epochs",
        "1", "--subset", "600", "--test-subset", "100", "--batch-size", "50", "--optimizer",
        "adam", "--lr", "0.002", "--seed", "0", "--out", str(out), "--no-progress",
        "--threads", "1", "--precision", "fp32",
    )  # fmt: skip
    return out / "last.safetensors"


@pytest.fixture(scope="module")
def onnx_classifier(classifier, tmp_path_factory) -> Path:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from smoothcert.models.adapters.export import export_onnx

    model, _ = load_checkpoint(classifier)
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "cnn3.onnx", MNIST)


def _denoiser_file(path: Path, *, perturb: bool = False) -> Path:
    torch.manual_seed(0)
    d = create_denoiser("dncnn", MNIST, depth=3, width=8)
    if perturb:  # no longer the identity
        with torch.no_grad():
            d.body.net[-1].weight.normal_(0, 0.01)
    return save_checkpoint(path, d, denoiser_metadata(d, dataset="mnist", sigma=SIGMA))


@pytest.fixture(scope="module")
def identity_denoiser(tmp_path_factory) -> Path:
    return _denoiser_file(tmp_path_factory.mktemp("den") / "identity.safetensors")


@pytest.fixture(scope="module")
def mse_run(tmp_path_factory, mnist_train) -> Path:
    """An MSE-trained DnCNN (1 epoch on 512 images): a real, non-identity denoiser."""
    out = tmp_path_factory.mktemp("mse") / "run"
    _train_denoiser(out, "--objective", "mse", "--sigma", str(SIGMA))
    return out


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT idx, label, prediction, radius, counts_selection, counts_estimation "
            "FROM results ORDER BY idx"
        ).fetchall()


def _config(db: Path) -> dict:
    with sqlite3.connect(db) as con:
        return json.loads(con.execute("SELECT value FROM meta WHERE key='config'").fetchone()[0])


# ------------------------------------------------------------------ train-denoiser


def test_mse_training_writes_a_denoiser_checkpoint_and_resumes(mse_run, tmp_path) -> None:
    d, meta = load_denoiser(mse_run / "last.safetensors")
    assert meta["task"] == "denoiser" and meta["arch"] == "dncnn"
    assert meta["arch_options"] == {"depth": 3, "width": 8}
    assert meta["sigma"] == SIGMA and meta["dataset"] == "mnist"
    assert meta["mean"] == [0.0] and meta["std"] == [1.0] and meta["method"] == "denoiser-mse"
    (m1,) = [json.loads(line) for line in (mse_run / "metrics.jsonl").read_text().splitlines()]
    # The identity's MSE is σ² = 0.0625: eight Adam steps already remove part of the noise.
    assert m1["test_mse"] < 0.9 * SIGMA**2 and m1["eval_sigma"] == SIGMA
    config = json.loads((mse_run / "config.json").read_text())
    assert config["method"] == "denoiser-mse" and config["method_options"]["sigma"] == SIGMA
    # The same command with --epochs 2 continues, and ends where a 2-epoch run ends.
    resumed = _train_denoiser(mse_run, "--objective", "mse", "--sigma", str(SIGMA), epochs=2)
    assert "resuming" in resumed.stdout
    fresh = tmp_path / "fresh"
    _train_denoiser(fresh, "--objective", "mse", "--sigma", str(SIGMA), epochs=2)
    a, b = load_file(mse_run / "last.safetensors"), load_file(fresh / "last.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = (mse_run / "metrics.jsonl").read_text().splitlines()
    assert len(history) == 2 and json.loads(history[1])["test_mse"] < m1["test_mse"]


def _one_line_refusal(result, out: Path, *needles: str) -> None:
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_bad_denoiser_training_input_is_one_line_and_writes_nothing(
    onnx_classifier, classifier, tmp_path, mnist_train
) -> None:
    out = tmp_path / "run"
    r = _train_denoiser(out, "--objective", "stability", "--sigma", "0.25", check=False)
    _one_line_refusal(r, out, "--classifier", "--surrogate")
    r = _train_denoiser(out, "--objective", "stability", "--sigma", "0.25", "--classifier",
                        onnx_classifier, check=False)  # fmt: skip
    _one_line_refusal(r, out, "no gradients", "ONNX Runtime", "--surrogate")
    r = _train_denoiser(out, "--objective", "mse", "--sigma", "0.25", "--init", classifier,
                        check=False)  # fmt: skip
    _one_line_refusal(r, out, "--init", "not a denoiser")
    info = SimpleNamespace(name="cifar10", num_classes=10, input_shape=(3, 32, 32),
                           mean=[0.5] * 3, std=[0.25] * 3)  # fmt: skip
    cifar = untrained_checkpoint(tmp_path, info)
    r = _train_denoiser(out, "--objective", "stability", "--sigma", "0.25", "--classifier",
                        cifar, check=False)  # fmt: skip
    _one_line_refusal(r, out, "(3, 32, 32)", "(1, 28, 28)")


def test_query_access_trains_through_a_surrogate_and_evaluates_the_onnx_target(
    onnx_classifier, classifier, mse_run, tmp_path
) -> None:
    """Stability through a PyTorch surrogate, started from the MSE denoiser (--init), while
    the deployed ONNX classifier is only evaluated: accuracy of f∘D under noise."""
    out = tmp_path / "stab"
    _train_denoiser(out, "--objective", "stability", "--sigma", str(SIGMA), "--classifier",
                    onnx_classifier, "--surrogate", classifier, "--init",
                    mse_run / "last.safetensors", "--lr", "1e-4")  # fmt: skip
    (m,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert 0.3 < m["test_acc_noise"] <= 1.0 and "test_mse" in m
    meta = load_checkpoint(out / "last.safetensors")[1]
    sources = meta["hyperparameters"]["sources"]
    assert sources["classifier"]["sha256"] == file_sha256(onnx_classifier)
    assert sources["surrogates"][0]["sha256"] == file_sha256(classifier)
    assert sources["init"]["sha256"] == file_sha256(mse_run / "last.safetensors")


def test_diffusion_training_and_one_step_certification(classifier, tmp_path) -> None:
    out = tmp_path / "diff"
    smoothcert(
        "train-denoiser", "--arch", "unet-small", "--width", "8", "--time-dim", "16",
        "--objective", "diffusion", "--diffusion-steps", "100", "--dataset", "mnist",
        "--subset", "128", "--test-subset", "50", "--batch-size", "64", "--epochs", "1",
        "--threads", "1", "--precision", "fp32", "--no-progress", "--sigma", str(SIGMA),
        "--out", out,
    )  # fmt: skip
    meta = load_checkpoint(out / "last.safetensors")[1]
    assert meta["schedule"]["kind"] == "linear" and meta["schedule"]["steps"] == 100
    m = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert np.isfinite(m["test_diffusion_loss"]) and np.isfinite(m["test_mse"])
    db = tmp_path / "c.db"
    smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, "--denoiser",
               out / "last.safetensors", "--out", db)  # fmt: skip
    from smoothcert.models.diffusion import linear_schedule

    assert _config(db)["denoiser"]["timestep"] == linear_schedule(100).timestep_for(SIGMA)


def test_help_lists_the_options_with_units() -> None:
    text = smoothcert("train-denoiser", "--help").stdout
    flags = ["--objective", "--sigma", "--classifier", "--surrogate", "--init",
             "--diffusion-schedule", "--diffusion-steps", "--precision", "--stream"]  # fmt: skip
    for flag in flags:
        assert flag in text
    assert "pixel units" in text
    for command in ("certify", "predict", "attack"):
        assert "--denoiser" in smoothcert(command, "--help").stdout


# ------------------------------------------------------------------ --denoiser


def test_identity_denoiser_certifies_bit_for_bit_and_is_part_of_the_identity(
    classifier, identity_denoiser, tmp_path
) -> None:
    plain, denoised = tmp_path / "plain.db", tmp_path / "denoised.db"
    smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, "--out", plain)
    smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, "--denoiser",
               identity_denoiser, "--out", denoised)  # fmt: skip
    assert _rows(plain) == _rows(denoised)
    assert _config(denoised)["denoiser"]["sha256"] == file_sha256(identity_denoiser)
    assert "denoiser" not in _config(plain)
    other = _denoiser_file(tmp_path / "other.safetensors", perturb=True)
    r = smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, "--denoiser", other,
                   "--out", denoised, check=False)  # fmt: skip
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "different arguments" in r.stderr and "denoiser" in r.stderr


@pytest.mark.parametrize("mode", [["--sound"], ["--adaptive", "--radii", "0.1", "0.3"]])
def test_sound_and_adaptive_keep_working_with_a_denoiser(
    mode, classifier, identity_denoiser, tmp_path
) -> None:
    plain, denoised = tmp_path / "plain.db", tmp_path / "denoised.db"
    smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, *mode, "--out", plain)
    smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, *mode, "--denoiser",
               identity_denoiser, "--out", denoised)  # fmt: skip
    assert _rows(plain) == _rows(denoised)


def test_onnx_classifier_behind_a_pytorch_denoiser_matches_pytorch(
    classifier, onnx_classifier, mse_run, tmp_path
) -> None:
    """The deployed-model case: ONNX Runtime runs f, PyTorch runs D, the same noise."""
    d = mse_run / "last.safetensors"
    torch_db, mixed_db = tmp_path / "torch.db", tmp_path / "mixed.db"
    smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, "--denoiser", d,
               "--out", torch_db)  # fmt: skip
    smoothcert("certify", "--model", onnx_classifier, "--dataset", "mnist", *CERTIFY,
               "--denoiser", d, "--out", mixed_db)  # fmt: skip
    want, got = _rows(torch_db), _rows(mixed_db)
    assert len(want) == len(got) == 4
    for a, b in zip(want, got, strict=True):
        assert a[:2] == b[:2]
        for col in (4, 5):  # selection and estimation counts: the same noise, so they differ
            # only where the two base classifiers disagree on a noisy input
            ca, cb = np.array(json.loads(a[col])), np.array(json.loads(b[col]))
            assert np.abs(ca - cb).sum() <= 2 * MAX_ORT_DISAGREEMENT * ca.sum() + 2
    assert _config(mixed_db)["model"]["runtime"] == "onnxruntime"


def test_denoiser_of_another_sigma_or_shape(classifier, identity_denoiser, tmp_path) -> None:
    args = [a if a != str(SIGMA) else "0.5" for a in CERTIFY]
    r = smoothcert("certify", classifier, "--dataset", "mnist", *args, "--denoiser",
                   identity_denoiser, "--out", tmp_path / "a.db")  # fmt: skip
    assert "warning" in r.stderr and "σ = 0.25" in r.stderr and "0.5" in r.stderr
    torch.manual_seed(0)
    rgb = create_denoiser("dncnn", (3, 32, 32), depth=3, width=8)
    path = save_checkpoint(tmp_path / "rgb.safetensors", rgb,
                           denoiser_metadata(rgb, dataset="cifar10", sigma=SIGMA))  # fmt: skip
    r = smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, "--denoiser", path,
                   "--out", tmp_path / "b.db", check=False)  # fmt: skip
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "--denoiser" in r.stderr and not (tmp_path / "b.db").exists()
    r = smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, "--denoiser",
                   classifier, "--out", tmp_path / "c.db", check=False)  # fmt: skip
    assert r.returncode == 2 and "not a denoiser" in r.stderr


def test_predict_and_attack_take_a_denoiser(classifier, identity_denoiser, tmp_path) -> None:
    common = ["--dataset", "mnist", "--skip", "97", "--max", "4", "--no-progress",
              "--threads", "1"]  # fmt: skip
    p = smoothcert("predict", classifier, *common, "--sigma", str(SIGMA), "--n", "200",
                   "--denoiser", identity_denoiser, "--out", tmp_path / "p.db")  # fmt: skip
    assert "4 examples" in p.stdout
    attack = ["--eps", "0.5", "1.0", "--steps", "5", "--noise-sigma", str(SIGMA)]
    plain = smoothcert("attack", classifier, *common, *attack, "--out", tmp_path / "a.db")
    denoised = smoothcert("attack", classifier, *common, *attack, "--denoiser",
                          identity_denoiser, "--out", tmp_path / "b.db")  # fmt: skip
    # Gradients through the identity D are f's own: the same attacks, the same accuracies.
    assert plain.stdout == denoised.stdout
    assert _config(tmp_path / "b.db")["denoiser"]["sha256"] == file_sha256(identity_denoiser)


def test_stability_resumes_mid_epoch_to_the_uninterrupted_weights(
    classifier, tmp_path, monkeypatch, mnist_train, mnist_test
) -> None:
    """Interrupted after step 7 of 8 with a resume state every 2 steps, the same call
    continues from step 6, in epoch 2 (its noise generator restored), and ends with the
    uninterrupted weights."""
    from smoothcert.training import TrainConfig, train
    from smoothcert.training.methods.denoiser_methods import Stability

    def config(out: Path) -> TrainConfig:
        return TrainConfig(
            dataset="mnist", arch="dncnn", method="denoiser-stability", out_dir=str(out), epochs=2,
            batch_size=64, optimizer="adam", lr=1e-3, weight_decay=0.0, seed=3,
            method_options={"sigma": SIGMA, "classifier": str(classifier),
                            "arch_options": {"depth": 3, "width": 8}},
            checkpoint_every=2, precision="fp32",
        )  # fmt: skip

    data = dict(train_set=mnist_train.subset(256), test_set=mnist_test.subset(50), progress=False)
    ref = train(config(tmp_path / "ref"), **data)
    original, calls = Stability.loss, [0]

    def interrupted(self, model, x, y, ctx):
        calls[0] += 1
        if calls[0] > 7:  # 4 batches per epoch: stop in epoch 2 after its batch 3
            raise KeyboardInterrupt
        return original(self, model, x, y, ctx)

    out = tmp_path / "cut"
    with monkeypatch.context() as m:
        m.setattr(Stability, "loss", interrupted)
        with pytest.raises(KeyboardInterrupt):
            train(config(out), **data)
    lines: list[str] = []
    resumed = train(config(out), **data, log=lines.append)
    assert lines[0] == f"resuming {out} in epoch 2/2 after batch 2"
    a, b = load_file(ref.last_checkpoint), load_file(resumed.last_checkpoint)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["test_acc_noise"] for h in ref.history] == [
        h["test_acc_noise"] for h in resumed.history
    ]


FACTORY = """
import torch
from smoothcert.models.denoisers import create_denoiser


def dncnn():
    return create_denoiser("dncnn", (1, 28, 28), depth=3, width=8)


def eps_net():
    torch.manual_seed(1)
    return create_denoiser("unet-small", (1, 28, 28), width=8, time_dim=16)
"""


def test_denoisers_from_outside_smoothcert(
    classifier, identity_denoiser, tmp_path, monkeypatch
) -> None:
    """The identity DnCNN as a python: factory with safetensors weights and as ONNX gives the
    rows of f alone; a python: ε-network with --diffusion-schedule denoises at t*."""
    from safetensors.torch import save_file

    (tmp_path / "user_denoisers.py").write_text(FACTORY)
    monkeypatch.syspath_prepend(str(tmp_path))
    d, _ = load_denoiser(identity_denoiser)
    weights = tmp_path / "d.safetensors"
    save_file(d.state_dict(), str(weights))
    plain = tmp_path / "plain.db"
    smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, "--out", plain)
    runs = {"python": ["python:user_denoisers:dncnn", "--denoiser-weights", weights]}
    if _has_onnx():
        from smoothcert.models.adapters.export import export_onnx

        runs["onnx"] = [export_onnx(d, tmp_path / "d.onnx", MNIST)]
    for fmt, spec in runs.items():
        db = tmp_path / f"{fmt}.db"
        smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, "--denoiser", *spec,
                   "--out", db)  # fmt: skip
        assert _rows(db) == _rows(plain), fmt
        assert _config(db)["denoiser"]["format"] == fmt
    db = tmp_path / "eps.db"
    smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, "--denoiser",
               "python:user_denoisers:eps_net", "--diffusion-schedule", "cosine",
               "--diffusion-steps", "200", "--out", db)  # fmt: skip
    from smoothcert.models.diffusion import cosine_schedule

    entry = _config(db)["denoiser"]
    assert entry["timestep"] == cosine_schedule(200).timestep_for(SIGMA)
    assert entry["schedule"]["kind"] == "cosine" and entry["format"] == "python"


def _has_onnx() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnxscript"))


def test_stability_trains_through_a_torchscript_classifier(classifier, tmp_path) -> None:
    """TorchScript computes gradients (unlike ONNX Runtime) and states no input shape: the
    data's shape is used, and the file's sha256 is part of the run's identity."""
    from smoothcert.models.adapters.export import export_torchscript

    model, _ = load_checkpoint(classifier)
    ts = export_torchscript(model, tmp_path / "cnn3.ts", MNIST)
    out = tmp_path / "ts"
    _train_denoiser(out, "--objective", "stability", "--sigma", str(SIGMA), "--classifier", ts,
                    "--trust-model-code")  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    source = config["method_options"]["sources"]["classifier"]
    assert source["format"] == "torchscript" and source["sha256"] == file_sha256(ts)
    m = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    assert 0.0 <= m["test_acc_noise"] <= 1.0


def test_stability_under_torchrun(classifier, tmp_path) -> None:
    """Two gloo processes on the CPU: rank 0 alone writes and speaks, and the evaluation sums
    the ranks' shares (the accuracy is a count over all 100 test examples)."""
    import os
    import subprocess
    import sys

    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
           "2", "-m", "smoothcert", "--", "train-denoiser", *SMALL, "--objective",
           "stability", "--sigma", str(SIGMA), "--classifier", str(classifier), "--dataset",
           "mnist", "--subset", "256", "--test-subset", "100", "--batch-size", "64",
           "--epochs", "1", "--threads", "1", "--no-progress", "--precision", "fp32",
           "--out", str(out)]  # fmt: skip
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("epoch 1/1, loss") == 1, done.stdout
    (m,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert abs(m["test_acc_noise"] * 100 - round(m["test_acc_noise"] * 100)) < 1e-9
    assert 0 < m["test_mse"] < 1 and "train_acc" not in m
    assert load_checkpoint(out / "last.safetensors")[1]["task"] == "denoiser"


def test_compile_certifies_like_the_eager_model_and_is_recorded(classifier, tmp_path) -> None:
    eager_db, compiled_db = tmp_path / "eager.db", tmp_path / "compiled.db"
    smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, "--out", eager_db)
    smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, "--compile",
               "--out", compiled_db)  # fmt: skip
    assert _config(eager_db)["compile"] is False and _config(compiled_db)["compile"] is True
    want, got = _rows(eager_db), _rows(compiled_db)
    assert len(want) == len(got) == 4
    for a, b in zip(want, got, strict=True):
        for col in (4, 5):  # the same noise: counts differ only at a near-tie's argmax
            ca, cb = np.array(json.loads(a[col])), np.array(json.loads(b[col]))
            assert np.abs(ca - cb).sum() <= 2
    # a resume must keep the setting
    r = smoothcert("certify", classifier, "--dataset", "mnist", *CERTIFY, "--out", compiled_db,
                   check=False)  # fmt: skip
    assert r.returncode != 0 and "compile" in r.stderr


def test_compile_does_not_apply_to_an_onnx_model(
    onnx_classifier, classifier, identity_denoiser, tmp_path
) -> None:
    from smoothcert.models.adapters.export import export_onnx

    d, _ = load_denoiser(identity_denoiser)
    onnx_denoiser = export_onnx(d, tmp_path / "d.onnx", MNIST)
    out = tmp_path / "c.db"
    for model in (["--model", onnx_classifier], [classifier, "--denoiser", onnx_denoiser]):
        r = smoothcert("certify", *model, "--dataset", "mnist", *CERTIFY, "--compile",
                       "--out", out, check=False)  # fmt: skip
        assert r.returncode != 0 and not out.exists()
        assert r.stderr.strip().count("\n") == 0
        assert "--compile" in r.stderr and "ONNX" in r.stderr
        r = smoothcert("bench", *model, "--dataset", "mnist", "--sigma", str(SIGMA), "--compile",
                       check=False)  # fmt: skip
        assert r.returncode != 0 and r.stderr.strip().count("\n") == 0
        assert "--compile" in r.stderr and "ONNX" in r.stderr


def test_bench_measures_the_classifier_behind_its_denoiser(
    classifier, identity_denoiser, tmp_path
) -> None:
    out = tmp_path / "bench.json"
    proc = smoothcert(
        "bench", classifier, "--denoiser", identity_denoiser, "--dataset", "mnist", "--rounds",
        "1", "--batch", "32", "--batches-per-round", "1", "--disagreement-images", "0",
        "--sigma", str(SIGMA), "--json", out,
    )  # fmt: skip
    record = json.loads(out.read_text())
    assert record["arch"] == f"cnn3 behind the denoiser {identity_denoiser}"
    assert record["arch"] in proc.stdout
    assert all(p["counts_samples_per_s"] > 0 for p in record["paths"].values())
