"""Checkpoints: safetensors weights with the JSON metadata in the safetensors header.

File layout (one file, ``*.safetensors``): the tensors of ``model.state_dict()`` and, in the
header's ``__metadata__`` (a str→str map), the key ``"smoothcert"`` holding a JSON object:
arch, dataset, num_classes, input_shape, mean, std, method, hyperparameters, sigma, epoch,
metrics, seed, smoothcert_version (plus anything else the caller adds). Loading parses the
header and raw tensor bytes only: nothing is ever unpickled.

A denoiser's checkpoint has ``task = "denoiser"`` and the keys of
:func:`smoothcert.models.denoisers.denoiser_metadata` (arch, arch_options, input_shape, mean,
std, dataset, and sigma or the diffusion schedule) instead of num_classes; a checkpoint without
``task`` is a classifier's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn

from smoothcert._util.atomic import atomic_write_bytes
from smoothcert._util.checks import ParameterError, finite_real
from smoothcert.models.diffusion import OneStepDiffusionDenoiser, schedule_from_metadata

METADATA_KEY = "smoothcert"
REQUIRED_KEYS = ("arch", "num_classes", "input_shape", "mean", "std")
STANDARD_KEYS = (
    "arch", "dataset", "num_classes", "input_shape", "mean", "std", "method",
    "hyperparameters", "sigma", "epoch", "metrics", "seed", "smoothcert_version",
)  # fmt: skip


def _version() -> str:
    from smoothcert import __version__

    return __version__


def encode_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, Any]) -> bytes:
    """safetensors bytes with ``metadata`` JSON-encoded under the header key ``smoothcert``."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return st_save(flat, metadata={METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def resolve_checkpoint(path: str | Path) -> Path:
    """``path`` as a file path; ``"zoo:NAME"`` becomes the shipped checkpoint NAME once its
    sha256 matches the zoo's manifest (:mod:`smoothcert.models.zoo`)."""
    from smoothcert.models.zoo import is_zoo_name, zoo_path

    return zoo_path(path) if is_zoo_name(path) else Path(path)


def decode_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a safetensors file written by :func:`encode_tensors`; ValueError if it is damaged."""
    path = resolve_checkpoint(path)
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
    """Save ``model``'s weights and ``metadata`` atomically, as safetensors with JSON metadata.

    The weights must fit the model the metadata describes, so every saved file loads; a file
    is either written whole or not at all.

    Parameters
    ----------
    path : str or pathlib.Path
        The file to write (conventionally ``.safetensors``); missing parent folders are made
        and an existing file is replaced.
    model : torch.nn.Module
        The model whose ``state_dict`` is saved.
    metadata : dict
        JSON-serializable; at least ``arch``, ``num_classes``, ``input_shape``, ``mean`` and
        ``std`` (what :func:`smoothcert.models.create_model` needs). The other standard keys
        (``dataset``, ``method``, ``sigma``, ``epoch``, ...) are stored as None when absent;
        ``smoothcert_version`` is filled in.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        If ``path`` is a folder or under a file, the metadata is not JSON-serializable or
        misses a required key, or the weights do not match the model it describes; nothing
        is written.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a file path to write to")
    state = model.state_dict()
    _check_model_matches_metadata(state, metadata, path)
    meta = {k: None for k in STANDARD_KEYS} | dict(metadata)
    meta["smoothcert_version"] = _version()
    try:
        blob = encode_tensors(state, meta)
    except TypeError as exc:
        raise ValueError(f"checkpoint metadata is not JSON-serializable: {exc}") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ValueError(f"cannot save {path}: a parent of it is a file, not a folder") from None
    atomic_write_bytes(path, blob)
    return path


def _check_model_matches_metadata(
    state: dict[str, torch.Tensor], metadata: dict[str, Any], path: Path
) -> None:
    """ValueError unless ``state`` loads into the model ``metadata`` describes.

    Without this check a mismatched file is written and only refused when loaded, possibly
    long after the model that produced it is gone.
    """
    # The meta device builds the architecture without allocating or initializing weights.
    with torch.device("meta"):
        expected = model_from_metadata(metadata, f"checkpoint {path}")
    problem = state_mismatch(expected.state_dict(), state)
    if problem:
        described = ", ".join(f"{k}={metadata.get(k)!r}" for k in REQUIRED_KEYS[:3])
        raise ValueError(
            f"cannot save {path}: the model's weights do not match the architecture its "
            f"metadata describes ({described}): {problem}"
        )


def model_from_metadata(metadata: dict[str, Any], where: str = "checkpoint") -> nn.Module:
    """The untrained model ``metadata`` describes; ValueError naming ``where`` and the bad key."""
    from smoothcert.models.create import create_model

    if not isinstance(metadata, dict):
        raise ValueError(f"{where} metadata must be a JSON object, got {type(metadata).__name__}")
    task = metadata.get("task") or "classifier"
    if task == "denoiser":
        from smoothcert.models.denoisers import denoiser_from_metadata

        return denoiser_from_metadata(metadata, where)
    if task != "classifier":
        raise ValueError(f"{where} has an unknown task {task!r}; expected classifier or denoiser")
    missing = [k for k in REQUIRED_KEYS if k not in metadata]
    if missing:
        raise ValueError(f"{where} metadata lacks required key(s) {', '.join(missing)}")
    try:
        # create_model validates every field and names the offending argument, which is the
        # metadata key of the same name; no int()/tuple() coercion here, as 3.7 classes
        # must not silently become 3.
        return create_model(
            metadata["arch"],
            metadata["num_classes"],
            metadata["input_shape"],
            metadata["mean"],
            metadata["std"],
        )
    except ValueError as exc:
        raise ValueError(f"{where} has invalid metadata: {exc}") from None


def state_mismatch(own: dict[str, torch.Tensor], tensors: dict[str, torch.Tensor]) -> str:
    """How ``tensors`` differ in names or shapes from the state dict ``own``; "" if they fit."""
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} tensor(s) e.g. {missing[0]}")
    if extra:
        parts.append(f"{len(extra)} unexpected tensor(s) e.g. {extra[0]}")
    if wrong:
        k = wrong[0]
        parts.append(f"shape mismatch for {k}: {tuple(tensors[k].shape)} vs {tuple(own[k].shape)}")
    return "; ".join(parts)


def load_state(model: nn.Module, tensors: dict[str, torch.Tensor], where: str) -> None:
    """``load_state_dict`` with a one-line ValueError when names or shapes do not match."""
    problem = state_mismatch(model.state_dict(), tensors)
    if problem:
        raise ValueError(f"weights in {where} do not match the architecture: {problem}")
    model.load_state_dict(tensors)


def load_checkpoint(
    path: str | Path, *, device: str | torch.device | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model a checkpoint's metadata describes and load its weights.

    Checkpoints are safetensors files with JSON metadata; nothing is ever unpickled.

    Parameters
    ----------
    path : str or pathlib.Path
        A checkpoint file (``.safetensors``) or ``"zoo:NAME"``, a shipped model
        (``smoothcert zoo`` lists them).
    device : str or torch.device, optional
        Where to put the model; default where it was built (CPU).

    Returns
    -------
    model : torch.nn.Module
        The model, in eval mode; it takes images in [0, 1] and normalizes inside.
    metadata : dict
        The checkpoint's metadata: architecture, dataset, training method and σ, history.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file is not a smoothcert checkpoint, its weights do not match its metadata,
        or ``device`` is not a torch device.
    """
    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device must name a torch device such as 'cpu' or 'cuda:0', got {device!r}"
            ) from None
    tensors, metadata = decode_tensors(path)
    model = model_from_metadata(metadata, f"checkpoint {path}")
    load_state(model, tensors, str(path))
    model.eval()
    if device is not None:
        model.to(device)
    return model, metadata


def load_denoiser(
    path: str | Path,
    *,
    sigma: float | None = None,
    timestep: int | None = None,
    device: str | torch.device | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """A ready denoiser D of [0, 1] images from a denoiser checkpoint, in eval mode.

    Parameters
    ----------
    path : str or pathlib.Path
        A checkpoint saved with :func:`smoothcert.models.denoisers.denoiser_metadata`.
    sigma : float, optional
        The smoothing σ. Image denoisers: default the σ they were trained at, and any other
        value is refused. Noise-prediction networks: required; picks t*
        (:class:`~smoothcert.models.diffusion.OneStepDiffusionDenoiser`).
    timestep : int, optional
        Noise-prediction networks only: use this step instead of t*.
    device : str or torch.device, optional
        Where to put it.

    Returns
    -------
    denoiser : torch.nn.Module
        D, mapping [B, C, H, W] in [0, 1] to the same shape.
    metadata : dict
        The checkpoint's metadata.

    Raises
    ------
    ValueError
        If the file is not a denoiser checkpoint, or ``sigma``/``timestep`` does not fit it
        (the message names the parameter).
    """

    model, meta = load_checkpoint(path, device=device)
    if meta.get("task") != "denoiser":
        raise ValueError(
            f"{path} is a {meta.get('task') or 'classifier'} checkpoint, not a denoiser"
        )
    kind = model.denoiser_config["kind"]
    if kind == "image":
        if timestep is not None:
            raise ParameterError(
                "timestep", "applies to diffusion (noise-prediction) denoisers only"
            )
        if sigma is not None and finite_real("sigma", sigma, positive=True) != float(meta["sigma"]):
            raise ParameterError(
                "sigma",
                f"{sigma} differs from the σ = {meta['sigma']} the denoiser {path} was trained at",
            )
        return model, meta
    if sigma is None:
        raise ParameterError("sigma", f"is needed to denoise with the diffusion model {path}")
    schedule = schedule_from_metadata(meta["schedule"])
    denoiser = OneStepDiffusionDenoiser(model, schedule, sigma, timestep=timestep)
    return denoiser.eval(), meta
