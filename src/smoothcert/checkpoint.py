"""Checkpoints: safetensors weights with the JSON metadata in the safetensors header.

File layout (one file, ``*.safetensors``): the tensors of ``model.state_dict()`` and, in the
header's ``__metadata__`` (a str→str map), the key ``"smoothcert"`` holding a JSON object:
arch, dataset, num_classes, input_shape, mean, std, method, hyperparameters, sigma, epoch,
metrics, seed, smoothcert_version (plus anything else the caller adds). Loading parses the
header and raw tensor bytes only: nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

METADATA_KEY = "smoothcert"
REQUIRED_KEYS = ("arch", "num_classes", "input_shape", "mean", "std")
STANDARD_KEYS = (
    "arch", "dataset", "num_classes", "input_shape", "mean", "std", "method",
    "hyperparameters", "sigma", "epoch", "metrics", "seed", "smoothcert_version",
)  # fmt: skip


def _version() -> str:
    from smoothcert import __version__

    return __version__


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temp file + fsync + rename, so a crash leaves the old file or the new one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def encode_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> bytes:
    """safetensors bytes with ``metadata`` JSON-encoded under the header key ``smoothcert``."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return st_save(flat, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def decode_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file written by :func:`encode_tensors`; ValueError if it is damaged."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    data = path.read_bytes()
    try:
        tensors = st_load(data)
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        raw_meta = (header.get("__metadata__") or {}).get(METADATA_KEY)
    except (SafetensorError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise ValueError(f"checkpoint {path} is truncated or corrupt ({exc})") from None
    if raw_meta is None:
        raise ValueError(f"{path} is a safetensors file without smoothcert metadata")
    try:
        metadata = json.loads(raw_meta)
    except json.JSONDecodeError as exc:
        raise ValueError(f"checkpoint {path} has corrupt metadata ({exc})") from None
    return tensors, metadata


def save_checkpoint(path: str | Path, model: nn.Module, metadata: dict[str, Any]) -> Path:
    """Save ``model``'s weights and ``metadata`` (must be JSON-serializable) atomically.

    ``metadata`` needs at least arch, num_classes, input_shape, mean, std (what
    :func:`smoothcert.models.create_model` needs); smoothcert_version is filled in.
    """
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise ValueError(f"checkpoint metadata lacks required key(s) {', '.join(missing)}")
    meta = {k: None for k in STANDARD_KEYS} | dict(metadata)
    meta["smoothcert_version"] = _version()
    try:
        blob = encode_tensors(model.state_dict(), meta)
    except TypeError as exc:
        raise ValueError(f"checkpoint metadata is not JSON-serializable: {exc}") from None
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, blob)
    return path


def model_from_metadata(metadata: dict[str, Any]) -> nn.Module:
    from smoothcert.models import create_model

    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise ValueError(f"checkpoint metadata lacks required key(s) {', '.join(missing)}")
    return create_model(
        metadata["arch"],
        int(metadata["num_classes"]),
        tuple(metadata["input_shape"]),
        metadata["mean"],
        metadata["std"],
    )


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """``load_state_dict`` with a one-line ValueError when names or shapes do not match."""
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or extra or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s) e.g. {missing[0]}")
        if extra:
            parts.append(f"{len(extra)} unexpected tensor(s) e.g. {extra[0]}")
        if wrong:
            k = wrong[0]
            parts.append(
                f"shape mismatch for {k}: {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}"
            )
        raise ValueError(f"weights in {where} do not match the architecture: {'; '.join(parts)}")
    model.load_state_dict(tensors)


def load_checkpoint(
    path: str | Path, *, device: str | torch.device | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model its metadata describes and load the weights.

    Returns (model in eval mode, metadata); never unpickles.
    """
    tensors, metadata = decode_tensors(path)
    model = model_from_metadata(metadata)
    load_state(model, tensors, str(path))
    model.eval()
    if device is not None:
        model.to(device)
    return model, metadata
