"""checkpoint_identity: what a run's config and provenance record of the model it was made
with (the library's, so every run kind records it alike; the CLI passes its argv)."""

from __future__ import annotations

import hashlib

from smoothcert.runs.common import checkpoint_identity


def test_a_checkpoint_is_identified_by_its_files_sha256(tmp_path):
    path = tmp_path / "m.safetensors"
    path.write_bytes(b"not really weights, only bytes to hash")
    meta = {"arch": "cnn3", "sigma": 0.25}
    config, info = checkpoint_identity(path, meta, ["smoothcert", "certify"])
    assert config == {"checkpoint_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    assert list(info.items()) == [
        ("checkpoint", str(path.resolve())),
        ("checkpoint_metadata", meta),
        ("argv", ["smoothcert", "certify"]),
    ]


def test_an_outside_model_is_identified_by_its_source(tmp_path):
    source = {"format": "onnx", "sha256": "ab" * 32, "runtime": "onnxruntime"}
    path = tmp_path / "m.onnx"
    config, info = checkpoint_identity(path, {"source": source}, ["x"])
    assert config == {"model": source}
    assert list(info.items()) == [("model", str(path.resolve())), ("argv", ["x"])]
    factory = {"format": "python", "factory": "pkg.mod:build"}
    config, info = checkpoint_identity(None, {"source": factory}, [])
    assert config == {"model": factory} and info == {"model": "pkg.mod:build", "argv": []}
