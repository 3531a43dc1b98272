"""Training loop and methods on real MNIST subsets: learning, determinism, resume, errors."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from safetensors.torch import load_file
from torch.nn import functional as F

from smoothcert.data import ImageDataset
from smoothcert.models.checkpoint import load_checkpoint
from smoothcert.training import BatchContext, TrainConfig, get_method, train
from smoothcert.training.loop import derived_seed, learning_rate

FAST = dict(
    dataset="mnist",
    arch="lenet",
    optimizer="adam",
    lr=3e-3,
    weight_decay=0.0,
    schedule="constant",
    batch_size=32,
    eval_batch_size=500,
)


def test_tiny_model_learns_on_real_mnist(tmp_path, mnist_train, mnist_test):
    config = TrainConfig(
        **FAST, epochs=3, subset=512, test_subset=500, out_dir=str(tmp_path / "run")
    )
    result = train(config, train_set=mnist_train, test_set=mnist_test, progress=False)
    losses = [m["train_loss"] for m in result.history]
    assert losses[0] > losses[-1] and losses[-1] < 0.6 * losses[0]
    assert result.history[-1]["test_acc"] > 0.75  # chance is 0.10
    assert "test_acc_noise" not in result.history[-1]  # standard training has no σ
    model, meta = load_checkpoint(result.last_checkpoint)
    assert (meta["arch"], meta["dataset"], meta["method"], meta["epoch"]) == (
        "lenet",
        "mnist",
        "standard",
        3,
    )
    assert meta["metrics"]["test_acc"] == result.history[-1]["test_acc"]
    assert meta["sigma"] is None and meta["seed"] == 0 and meta["hyperparameters"] == {}
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3


def test_best_is_chosen_on_held_out_training_examples_never_on_test(
    tmp_path, mnist_train, mnist_test
):
    # A test set with every label wrong: its accuracy falls as the model learns, so choosing
    # the checkpoint on it would pick epoch 1.
    wrong = ImageDataset(
        mnist_test.images[:200], (mnist_test.labels[:200] + 1) % 10, mnist_test.info
    )
    base = TrainConfig(**FAST, method="gaussian", epochs=3, subset=256)
    plain = train(
        dataclasses.replace(base, out_dir=str(tmp_path / "plain")),
        train_set=mnist_train, test_set=wrong, progress=False,
    )  # fmt: skip
    assert plain.history[0]["test_acc_noise"] > plain.history[-1]["test_acc_noise"]
    assert load_checkpoint(plain.best_checkpoint)[1]["epoch"] == 3  # no held-out set: the last
    best, last = load_file(plain.best_checkpoint), load_file(plain.last_checkpoint)
    assert best.keys() == last.keys() and all(torch.equal(best[k], last[k]) for k in best)

    held = train(
        dataclasses.replace(base, val_size=300, out_dir=str(tmp_path / "held")),
        train_set=mnist_train, test_set=wrong, progress=False,
    )  # fmt: skip
    scores = [m["val_acc_noise"] for m in held.history]
    assert all("val_acc" in m and "test_acc" in m for m in held.history)
    assert load_checkpoint(held.best_checkpoint)[1]["epoch"] == 1 + scores.index(max(scores))
    # the held-out examples are the last 300 of the split; the first 256 are trained on
    assert held.history[-1]["val_acc_noise"] > 0.5 > held.history[-1]["test_acc_noise"]
    with pytest.raises(ValueError, match="val_size 60000 leaves no training examples"):
        train(
            dataclasses.replace(base, val_size=60000, out_dir=str(tmp_path / "none")),
            train_set=mnist_train, progress=False,
        )  # fmt: skip


def test_gaussian_loss_is_ce_on_x_plus_sigma_times_the_generator_draw():
    method = get_method("gaussian", sigma=0.3)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.rand(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    out = method.loss(model, x, y, BatchContext(0, 1, 0, torch.Generator().manual_seed(7)))
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(out.loss, F.cross_entropy(model(x + 0.3 * noise), y))
    zero = get_method("gaussian", sigma=0.0).loss(
        model, x, y, BatchContext(0, 1, 0, torch.Generator())
    )
    std = get_method("standard").loss(model, x, y, BatchContext(0, 1, 0, torch.Generator()))
    assert torch.equal(zero.loss, std.loss)
    with pytest.raises(ValueError, match="sigma must be"):
        get_method("gaussian", sigma=-0.1)
    with pytest.raises(ValueError, match="sigma is not a hyperparameter of standard; it has none"):
        get_method("standard", sigma=0.1)


def test_learning_rate_schedules():
    c = TrainConfig(lr=0.1, epochs=4, schedule="step", step_size=2, lr_decay=0.1)
    assert [learning_rate(c, e, 0, 10) for e in range(4)] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    c = dataclasses.replace(c, schedule="cosine")
    assert learning_rate(c, 0, 0, 10) == pytest.approx(0.1)
    assert learning_rate(c, 2, 0, 10) == pytest.approx(0.05)  # halfway: ½·0.1·(1 + cos π/2)
    assert learning_rate(c, 3, 9, 10) == pytest.approx(0.05 * (1 + math.cos(math.pi * 39 / 40)))
    assert derived_seed(0, 1, 1) != derived_seed(0, 2, 1) != derived_seed(1, 1, 1)


def _weights(path):
    return load_file(str(path))


def test_interrupted_run_resumes_to_the_same_weights(tmp_path, mnist_train, mnist_test):
    """Ctrl-C after epoch 1 (raised from the log callback, i.e. after the commit), then rerun."""
    base = dict(
        **FAST,
        epochs=2,
        subset=128,
        test_subset=100,
        method="gaussian",
        method_options={"sigma": 0.5},
    )
    full = train(
        TrainConfig(**base, out_dir=str(tmp_path / "a")),
        train_set=mnist_train,
        test_set=mnist_test,
        progress=False,
    )

    def interrupt(line: str) -> None:
        if line.startswith("epoch 1/"):
            raise KeyboardInterrupt

    cfg = TrainConfig(**base, out_dir=str(tmp_path / "b"))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, train_set=mnist_train, test_set=mnist_test, progress=False, log=interrupt)
    messages = []
    resumed = train(
        cfg, train_set=mnist_train, test_set=mnist_test, progress=False, log=messages.append
    )
    assert resumed.resumed_from_epoch == 1 and messages[0].startswith("resuming")
    a, b = _weights(full.last_checkpoint), _weights(resumed.last_checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history == [
        {**h, "train_seconds": r["train_seconds"], "eval_seconds": r["eval_seconds"]}
        for h, r in zip(full.history, resumed.history, strict=True)
    ]
    last = resumed.history[-1]
    assert last["eval_sigma"] == 0.5 and 0.0 < last["test_acc_noise"] <= 1.0
    _, meta = load_checkpoint(resumed.best_checkpoint)
    assert (meta["method"], meta["sigma"], meta["hyperparameters"]) == (
        "gaussian",
        0.5,
        {"sigma": 0.5},
    )
    # A finished run is not trained again.
    again = train(cfg, train_set=mnist_train, test_set=mnist_test, progress=False)
    assert again.resumed_from_epoch == 2 and len(again.history) == 2


def test_resume_refuses_different_arguments_and_foreign_dirs(tmp_path, mnist_train):
    cfg = TrainConfig(**FAST, epochs=1, subset=64, test_subset=50, out_dir=str(tmp_path / "r"))
    train(cfg, train_set=mnist_train, test_set=None, progress=False)
    with pytest.raises(ValueError, match="different arguments.*lr"):
        train(dataclasses.replace(cfg, lr=1e-4), train_set=mnist_train, progress=False)
    # Device is not part of a run's identity.
    train(dataclasses.replace(cfg, device="cpu"), train_set=mnist_train, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not empty"):
        train(dataclasses.replace(cfg, out_dir=str(foreign)), train_set=mnist_train, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_more_epochs_continue_a_run_as_if_planned_from_the_start(tmp_path, mnist_train):
    """Constant schedule: a 1-epoch run extended to 2 equals a 2-epoch run; shortening below
    what is trained, or changing the total under the cosine schedule, is refused."""
    base = dict(**FAST, subset=128, test_subset=None, method="gaussian",
                method_options={"sigma": 0.25})  # fmt: skip
    full = train(TrainConfig(**base, epochs=2, out_dir=str(tmp_path / "a")),
                 train_set=mnist_train, progress=False)  # fmt: skip
    short = TrainConfig(**base, epochs=1, out_dir=str(tmp_path / "b"))
    train(short, train_set=mnist_train, progress=False)
    messages: list[str] = []
    longer = train(dataclasses.replace(short, epochs=2), train_set=mnist_train, progress=False,
                   log=messages.append)  # fmt: skip
    assert longer.resumed_from_epoch == 1 and messages[0].endswith("after epoch 1/2")
    a, b = _weights(full.last_checkpoint), _weights(longer.last_checkpoint)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "b" / "config.json").read_text())["epochs"] == 2
    config_before = (tmp_path / "b" / "config.json").read_bytes()
    with pytest.raises(ValueError, match="has trained 2 epochs already; epochs must be at least 2"):
        train(short, train_set=mnist_train, progress=False)
    assert (tmp_path / "b" / "config.json").read_bytes() == config_before
    cosine = TrainConfig(**{**base, "schedule": "cosine"}, epochs=1, out_dir=str(tmp_path / "c"))
    train(cosine, train_set=mnist_train, progress=False)
    with pytest.raises(ValueError, match=r"different arguments \(epochs: 1 there, 2 now\)"):
        train(dataclasses.replace(cosine, epochs=2), train_set=mnist_train, progress=False)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"batch_size": -1}, "batch_size"),
        ({"lr": 0.0}, "lr must be"),
        ({"optimizer": "rmsprop"}, "optimizer must be"),
        ({"schedule": "linear"}, "schedule must be"),
        ({"eval_sigma": -1.0}, "eval_sigma"),
        ({"val_size": -1}, "val_size must be an integer >= 0"),
        ({"arch": "resnet19"}, "arch must be one of .*; got 'resnet19'"),
        ({"dataset": "svhn"}, "dataset must be one of .*; got 'svhn'"),
        ({"method": "nope"}, "method must be one of .*; got 'nope'"),
    ],
)
def test_config_validation(tmp_path, change, pattern):
    with pytest.raises(ValueError, match=pattern):
        train(TrainConfig(**(FAST | change), out_dir=str(tmp_path / "x")), progress=False)
    assert not (tmp_path / "x").exists()


def test_a_class_sorted_split_warns_that_val_size_and_subset_are_one_class(tmp_path, mnist_train):
    """An image folder's split is ordered by class: the last val_size examples and the first
    subset examples are then mostly one class, which the run's log says."""
    order = mnist_train.labels[:1000].argsort(kind="stable")
    by_class = ImageDataset(
        mnist_train.images[:1000][order], mnist_train.labels[:1000][order], mnist_train.info
    )
    lines: list[str] = []
    config = TrainConfig(**FAST, epochs=1, val_size=60, subset=64, out_dir=str(tmp_path / "r"))
    train(config, train_set=by_class, progress=False, log=lines.append)
    nines = int((by_class.labels == 9).sum())
    warned = [line for line in lines if line.startswith("warning:")]
    assert warned == [
        f"warning: val_size: 60 of the 60 held-out validation examples (100%) are class 9, "
        f"which is {nines / 1000:.0%} of the data set (the split is ordered by class?)",
        f"warning: subset: 64 of the 64 training subset examples (100%) are class 0, which is "
        f"{int((by_class.labels == 0).sum()) / 1000:.0%} of the data set (the split is "
        "ordered by class?)",
    ]
    lines.clear()
    train(
        dataclasses.replace(config, out_dir=str(tmp_path / "plain")),
        train_set=mnist_train, progress=False, log=lines.append,
    )  # fmt: skip
    assert not [line for line in lines if line.startswith("warning:")]  # MNIST's own order
