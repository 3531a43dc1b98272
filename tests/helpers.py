"""Helpers shared by several test modules: the CLI run in-process, and a toy dataset and
linear classifier on 2×2 images for library-level runs that take milliseconds."""

from __future__ import annotations

import contextlib
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from smoothcert.cli import main


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


def smoothcert(*args: str | Path, check: bool = True) -> Result:
    """Run `smoothcert ARGS` in-process (fast); ``check`` asserts that it succeeded."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse errors
            code = exc.code if isinstance(exc.code, int) else 1
    result = Result(code, out.getvalue(), err.getvalue())
    if check and code != 0:
        raise AssertionError(f"smoothcert {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


@dataclass(frozen=True)
class ToyInfo:
    name: str = "toy"
    num_classes: int = 2
    input_shape: tuple[int, ...] = (1, 2, 2)


class ToyData:
    """``m`` random 2×2 images labelled by the linear rule sum > 2 (so radii vary with the
    distance to the boundary); every ``flip_every``-th label is flipped (0: none), so that
    some predictions are wrong."""

    info = ToyInfo()

    def __init__(self, m: int = 12, seed: int = 5, flip_every: int = 5) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(m, 1, 2, 2, generator=g)
        self.y = (self.x.flatten(1).sum(1) > 2.0).long()
        if flip_every:
            self.y[::flip_every] = 1 - self.y[::flip_every]

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        return self.x[i], int(self.y[i])

    @property
    def labels(self) -> np.ndarray:
        return self.y.numpy()


class LinearImage(nn.Module):
    """Logits (−s, s) with s = sum of the 4 pixels − 2: the classifier ToyData's rule."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.flatten(1) @ self.w - 2.0
        return torch.stack([-s, s], 1)


def untrained_checkpoint(
    folder: Path, info, arch: str = "cnn3", sigma: float | None = None, seed: int = 0
) -> Path:
    """An untrained ``arch`` for the dataset ``info`` describes, saved with its metadata: for
    tests of plumbing and bit-identity, not of accuracy."""
    from smoothcert.models import create_model
    from smoothcert.models.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    model = create_model(arch, info.num_classes, info.input_shape, info.mean, info.std)
    meta = {
        "arch": arch,
        "dataset": info.name,
        "num_classes": info.num_classes,
        "input_shape": list(info.input_shape),
        "mean": list(info.mean),
        "std": list(info.std),
    }
    if sigma is not None:
        meta["sigma"] = sigma
    return save_checkpoint(folder / "model.safetensors", model, meta)


def idx_bytes(arr: np.ndarray) -> bytes:
    """``arr`` as an IDX file (unsigned bytes), the MNIST format."""
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def write_cifar_batch(path: Path, data: np.ndarray, labels: list[int]) -> None:
    """A CIFAR-10 python batch (a pickle, as the official files are)."""
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"labels": labels, b"data": data}, f)
