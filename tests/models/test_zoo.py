"""The model zoo: shipped checkpoints load by name after a hash check; the limits hold."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import smoothcert.models.zoo as zoo
from helpers import smoothcert, untrained_checkpoint
from smoothcert._util.hashing import file_sha256
from smoothcert.models.checkpoint import load_checkpoint
from smoothcert.models.zoo import ZooEntry, list_zoo


def test_every_shipped_model_matches_its_manifest_and_the_size_limits():
    entries = list_zoo()
    total = 0
    for e in entries:
        assert e.path.is_file(), e.name
        size = e.path.stat().st_size
        assert size <= 5_000_000, e.name
        total += size
        assert file_sha256(e.path) == e.sha256, e.name
        model, meta = load_checkpoint(f"zoo:{e.name}")
        assert (meta["dataset"], meta["arch"], meta["method"]) == (e.dataset, e.arch, e.method)
        assert meta.get("sigma") == e.sigma
        assert e.train_command.startswith("smoothcert train ")
    assert total <= 40_000_000
    files = {p.name for p in zoo.ZOO_DIR.glob("*.safetensors")}
    assert files == {e.file for e in entries}  # no unlisted file ships


@pytest.fixture
def tmp_zoo(tmp_path, monkeypatch, mnist_test):
    """A zoo with one untrained MNIST cnn3 in a temporary folder."""
    ckpt = untrained_checkpoint(tmp_path, mnist_test.info, sigma=0.25)
    target = tmp_path / "zoo" / "tiny.safetensors"
    target.parent.mkdir()
    target.write_bytes(ckpt.read_bytes())
    _, meta = load_checkpoint(target)
    entry = ZooEntry(
        name="tiny", file=target.name, sha256=file_sha256(target), dataset=meta["dataset"],
        arch=meta["arch"], method="untrained", sigma=meta.get("sigma"),
        train_command="smoothcert train --dataset mnist --arch cnn3 --out runs/x",
        certified_accuracy={"0": 0.5}, certify_command="smoothcert certify runs/x/last.safetensors",
    )  # fmt: skip
    manifest = {"models": [dataclasses.asdict(entry)]}
    (target.parent / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setattr(zoo, "ZOO_DIR", target.parent)
    return target


def test_load_by_name_and_certify_by_name(tmp_zoo, tmp_path, mnist_test):
    model, meta = load_checkpoint("zoo:tiny")
    reference, _ = load_checkpoint(tmp_zoo)
    for a, b in zip(model.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    out = tmp_path / "r.db"
    r = smoothcert(
        "certify", "zoo:tiny", "--sigma", "0.25", "--n0", "10", "--n", "50", "--max", "2",
        "--batch", "50", "--no-progress", "--out", out,
    )  # fmt: skip
    assert "2 examples" in r.stdout
    listing = smoothcert("zoo")
    assert "zoo:tiny" in listing.stdout and "mnist" in listing.stdout
    assert "trained by: smoothcert train" in smoothcert("zoo", "tiny").stdout


def test_a_damaged_zoo_file_or_unknown_name_is_refused(tmp_zoo, tmp_path):
    r = smoothcert("zoo", "nope", check=False)
    assert r.returncode == 2 and "no model 'nope' in the zoo (models: tiny)" in r.stderr
    data = bytearray(tmp_zoo.read_bytes())
    data[-1] ^= 1
    tmp_zoo.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="does not match the manifest's sha256"):
        load_checkpoint("zoo:tiny")
    out = tmp_path / "r.db"
    r = smoothcert("certify", "zoo:tiny", "--out", out, check=False)
    assert r.returncode == 2 and "sha256" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not out.exists()


def test_a_model_trained_against_attacks_lists_its_pgd_accuracy(tmp_zoo):
    manifest_path = tmp_zoo.parent / "manifest.json"
    rows = json.loads(manifest_path.read_text())["models"]
    rows[0] |= {
        "certified_accuracy": {},
        "certify_command": "",
        "attack_accuracy": {"0": 0.99, "0.84": 0.87},
        "attack_command": "smoothcert attack runs/x/last.safetensors --eps 0 0.84 --out a.db",
    }
    manifest_path.write_text(json.dumps({"models": rows}))
    listing = smoothcert("zoo").stdout.splitlines()
    assert listing[1].startswith("zoo:tiny") and listing[1].endswith("PGD r=0:0.99 r=0.84:0.87")
    shown = smoothcert("zoo", "tiny").stdout
    assert "accuracy under L2 PGD: r=0: 0.990, r=0.84: 0.870" in shown
    assert "measured by: smoothcert attack runs/x/last.safetensors" in shown
    assert "certified accuracy" not in shown
