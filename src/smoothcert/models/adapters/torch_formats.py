"""Models saved by PyTorch's own exporters: torch.export programs (``.pt2``) and TorchScript
archives. Both loaders run what the file says at load time (``torch.export.load`` unpickles
weights and constants with ``weights_only=False``; ``torch.jit.load`` runs the archive's
TorchScript, its ``__setstate__`` methods included), so they are called only with the caller's
explicit ``trust_code=True``."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import torch
from torch import nn


def archive_kind(path: Path) -> str | None:
    """ "pt2" for a torch.export archive, "torchscript" for a TorchScript archive, "pickle" for
    a plain ``torch.save`` zip (never loaded), None when ``path`` is no zip archive."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return None
    if any(n.endswith("/archive_format") for n in names):
        return "pt2"
    if any("/code/" in n for n in names) and any(n.endswith("constants.pkl") for n in names):
        return "torchscript"
    return "pickle" if any(n.endswith("data.pkl") for n in names) else None


class _Frozen(nn.Module):
    """An exported program's module: its train/eval behaviour was fixed when it was exported
    (calling ``.eval()`` on it is an error in torch), so mode switches stop here."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def train(self, mode: bool = True) -> _Frozen:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)


def load_exported_program(path: Path, device: torch.device) -> nn.Module:
    """The module of a ``torch.export.save`` archive, on ``device``."""
    try:
        program = torch.export.load(str(path))
    except Exception as exc:  # the loader raises many types for a damaged or foreign file
        raise ValueError(f"{path} is not a loadable torch.export program ({_first(exc)})") from None
    users = program.graph_signature.user_inputs
    if len(users) != 1:
        raise ValueError(f"{path} takes {len(users)} inputs ({', '.join(users)}); a classifier "
                         "needs exactly one (the image batch)")  # fmt: skip
    module = _Frozen(program.module())
    (value,) = [n.meta.get("val") for n in program.graph.nodes if n.name == users[0]]
    if value is not None and value.dim() >= 2:
        batch = value.shape[0]
        if isinstance(batch, int):
            raise ValueError(
                f"{path} was exported with a fixed batch size of {batch}; export it with "
                "dynamic_shapes=({0: torch.export.Dim('batch')},)"
            )
        dims = tuple(value.shape[1:])
        if all(isinstance(d, int) for d in dims):
            module.input_shape = tuple(int(d) for d in dims)
    return module.to(device)


def load_torchscript(path: Path, device: torch.device) -> nn.Module:
    try:
        with warnings.catch_warnings():  # torch deprecates TorchScript; loading still works
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device)
    except Exception as exc:
        raise ValueError(f"{path} is not a loadable TorchScript archive ({_first(exc)})") from None


def _first(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
