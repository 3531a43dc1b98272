"""Checkpoints: round trip, never pickle, clear errors; optimizer state round trip."""

from __future__ import annotations

import json

import pytest
import torch

from smoothcert.models import create_model
from smoothcert.models.checkpoint import load_checkpoint, save_checkpoint
from smoothcert.training.state import flatten_optimizer, unflatten_optimizer

META = {
    "arch": "resnet20",
    "dataset": "cifar10",
    "num_classes": 10,
    "input_shape": [3, 32, 32],
    "mean": [0.4914, 0.4822, 0.4465],
    "std": [0.2470, 0.2435, 0.2616],
    "method": "gaussian",
    "hyperparameters": {"sigma": 0.25},
    "sigma": 0.25,
    "epoch": 3,
    "metrics": {"test_acc": 0.5},
    "seed": 7,
}


@pytest.fixture
def saved(tmp_path):
    torch.manual_seed(1)
    model = create_model("resnet20", 10, (3, 32, 32), META["mean"], META["std"])
    # Non-trivial batch-norm statistics, so buffers are checked too.
    model.train()
    model(torch.rand(8, 3, 32, 32))
    model.eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, META)
    return model, path


def test_round_trip(saved):
    model, path = saved
    loaded, meta = load_checkpoint(path)
    assert not loaded.training
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert {k: meta[k] for k in META} == META
    assert meta["smoothcert_version"]


def test_file_is_safetensors_with_json_header(saved):
    _, path = saved
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    assert json.loads(header["__metadata__"]["smoothcert"])["arch"] == "resnet20"
    assert b"\x80\x04" not in data[:16]  # not a pickle / torch.save zip


def test_truncated_and_corrupt_files(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    for name, blob in (
        ("half", data[: len(data) // 2]),
        ("short", data[:5]),
        ("garbage-header", data[:8] + b"{" * 20 + data[28:]),
        ("empty", b""),
    ):
        bad = tmp_path / f"{name}.safetensors"
        bad.write_bytes(blob)
        with pytest.raises(ValueError, match="truncated or corrupt"):
            load_checkpoint(bad)
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.safetensors")


def test_weights_not_matching_metadata(tmp_path):
    model = create_model("resnet20", 10, (3, 32, 32), META["mean"], META["std"])
    for change, pattern in (
        ({"arch": "resnet110"}, "do not match"),
        ({"num_classes": 5}, "shape mismatch"),
        ({"arch": "resnet21"}, "unknown arch"),
    ):
        # Refused at save time, so no file that cannot be loaded is ever written.
        with pytest.raises(ValueError, match=pattern):
            save_checkpoint(tmp_path / "x.safetensors", model, META | change)
        assert not (tmp_path / "x.safetensors").exists()
    with pytest.raises(ValueError, match="lacks required"):
        save_checkpoint(tmp_path / "y.safetensors", model, {"arch": "resnet20"})


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_optimizer_state_round_trip_without_pickle(kind):
    def build():
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        if kind == "sgd":
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        else:
            opt = torch.optim.Adam(model.parameters(), lr=0.01)
        return model, opt

    def step(model, opt, seed):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(5, 4, generator=g)
        opt.zero_grad()
        model(x).square().sum().backward()
        opt.step()

    a, opt_a = build()
    for s in range(3):
        step(a, opt_a, s)
    tensors, structure = flatten_optimizer(opt_a.state_dict())
    structure = json.loads(json.dumps(structure))  # what the header stores
    b, opt_b = build()
    b.load_state_dict(a.state_dict())
    opt_b.load_state_dict(
        unflatten_optimizer({k: v.clone() for k, v in tensors.items()}, structure)
    )
    step(a, opt_a, 99)
    step(b, opt_b, 99)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
