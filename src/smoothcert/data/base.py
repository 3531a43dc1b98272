"""The in-memory image dataset every loader returns, and the on-disk cache of decoded arrays."""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from smoothcert._util.atomic import atomic_write
from smoothcert._util.checks import MissingFileError, ParameterError, is_integer

AUGMENTATIONS = ("none", "crop-flip", "resized-crop-flip")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about its data (recorded in every checkpoint)."""

    name: str
    split: str
    num_classes: int
    input_shape: tuple[int, int, int]  # C, H, W
    class_names: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, in [0,1] pixel units
    std: tuple[float, ...]
    augmentation: str = "none"  # training augmentation: "none" | "crop-flip" | "resized-crop-flip"


class ImageDataset(Dataset):
    """Images kept as uint8 [N, C, H, W]; converted to float32 in [0,1] per item or batch."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, info: DatasetInfo) -> None:
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 [N, C, H, W], got {images.dtype} {images.shape}"
            )
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if tuple(images.shape[1:]) != tuple(info.input_shape):
            raise ValueError(f"images are {images.shape[1:]}, info says {info.input_shape}")
        self.images = images
        self.labels = np.asarray(labels, dtype=np.int64)
        self.info = info

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.from_numpy(np.ascontiguousarray(self.images[i])).float().div_(255.0)
        return x, int(self.labels[i])

    def batch(
        self, indices: Sequence[int] | np.ndarray | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Images [B, C, H, W] float32 in [0,1] and labels [B] int64 for ``indices``."""
        idx = np.asarray(
            indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64
        )
        x = torch.from_numpy(self.images[idx]).float().div_(255.0)
        y = torch.from_numpy(self.labels[idx])
        return x, y

    def subset(self, n: int) -> ImageDataset:
        """The first ``n`` examples (``subset`` of a training run)."""
        if not is_integer(n) or n <= 0:
            raise ParameterError("subset", f"size must be a positive integer, got {n!r}")
        if n > len(self):
            raise ValueError(
                f"subset size {n} exceeds the {len(self)} examples of {self.info.name}"
            )
        return ImageDataset(self.images[:n], self.labels[:n], self.info)

    def split_last(self, n: int) -> tuple[ImageDataset, ImageDataset]:
        """(all but the last ``n`` examples, the last ``n``): a held-out validation split."""
        if not isinstance(n, int) or not 0 < n < len(self):
            raise ValueError(f"split size must be an integer in [1, {len(self) - 1}], got {n!r}")
        k = len(self) - n
        head = ImageDataset(self.images[:k], self.labels[:k], self.info)
        return head, ImageDataset(self.images[k:], self.labels[k:], self.info)

    def __repr__(self) -> str:
        i = self.info
        return f"ImageDataset({i.name!r}, split={i.split!r}, n={len(self)}, shape={i.input_shape})"


class DatasetNotFound(MissingFileError):
    """A dataset's files are missing from the data root: an error of the parameter ``root``
    (``--data-root`` on the command line) that says what to do, in words that fit the
    parameter's name and its flag alike. A :class:`FileNotFoundError` too.

    Examples
    --------
    >>> error = DatasetNotFound("(here /data) holds no mnist files: run `smoothcert fetch mnist`")
    >>> error.parameter, isinstance(error, FileNotFoundError)
    ('root', True)
    """

    def __init__(self, problem: str) -> None:
        super().__init__("root", problem)


def cache_dir() -> Path:
    """``$SMOOTHCERT_CACHE``, default ``~/.cache/smoothcert``."""
    env = os.environ.get("SMOOTHCERT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "smoothcert"


def fingerprint(paths: Sequence[Path], extra: str = "") -> str:
    """A cheap key for the decoded-array cache: path, size, mtime, inode and ctime of every
    source file. The inode and ctime catch a file replaced by another of the same size with a
    copied mtime (npm's tarballs give every file the same fixed mtime, and MNIST and
    Fashion-MNIST files have equal sizes); ctime cannot be set back by the user."""
    h = hashlib.sha256(extra.encode())
    for p in paths:
        st = Path(p).stat()
        stamp = f"{st.st_size}|{st.st_mtime_ns}|{st.st_ino}|{st.st_ctime_ns}"
        h.update(f"{Path(p).resolve()}|{stamp}".encode())
    return h.hexdigest()[:20]


def _checksum(images: np.ndarray, labels: np.ndarray) -> dict:
    """What a cache entry must match to be used: shapes, dtypes and CRC-32s of the bytes
    (zlib's CRC runs at GB/s, a few hundredths of a second for MNIST)."""
    return {
        "images": [list(images.shape), str(images.dtype), zlib.crc32(images.tobytes())],
        "labels": [list(labels.shape), str(labels.dtype), zlib.crc32(labels.tobytes())],
    }


def cached_arrays(key: str, decode) -> tuple[np.ndarray, np.ndarray]:
    """Load (images, labels) from ``cache_dir()/arrays/<key>.*.npy`` or decode and store them.

    The cache is written atomically (temp file + rename), so an interrupted decode never leaves
    a half-written array behind; an unwritable cache only costs speed.
    """
    folder = cache_dir() / "arrays"
    xi, yi = folder / f"{key}.images.npy", folder / f"{key}.labels.npy"
    check = folder / f"{key}.check.json"
    if xi.is_file() and yi.is_file() and check.is_file():
        try:
            images, labels = np.load(xi, allow_pickle=False), np.load(yi, allow_pickle=False)
            if json.loads(check.read_text()) == _checksum(images, labels):
                return images, labels
        except (ValueError, OSError, EOFError):
            pass  # a damaged or mismatched entry: decode again
    images, labels = decode()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # The check file last: an entry is used only when all three files agree.
        atomic_write(xi, lambda f: np.save(f, images, allow_pickle=False))
        atomic_write(yi, lambda f: np.save(f, labels, allow_pickle=False))
        atomic_write(check, lambda f: f.write(json.dumps(_checksum(images, labels)).encode()))
    except (OSError, ValueError):  # an unwritable cache (or a directory in the way) costs speed
        pass
    return images, labels


def class_skew(labels: Sequence[int] | np.ndarray, indices: Sequence[int]) -> str | None:
    """A warning when one class dominates a selection far beyond its share of the data.

    Certified accuracy over ``--skip``/``--max`` estimates the data set's only when the
    selection mixes the classes as the data does; a class-sorted or periodic data order can
    make every selected example one class (e.g. every 20th image when class = index mod 10).
    Selections of fewer than 20 labelled examples are not judged.

    Parameters
    ----------
    labels : sequence of int
        The data set's labels (negative values: unlabeled, ignored).
    indices : sequence of int
        The selected examples.

    Returns
    -------
    str or None
        One sentence naming the class and its two shares when the most common selected class
        makes up more than half of the selection and exceeds its share of the data by more
        than 40 points (by chance alone that is rare: 18 of 20 draws of a balanced binary data
        set); None otherwise.

    Examples
    --------
    >>> labels = [i % 10 for i in range(1000)]
    >>> class_skew(labels, range(0, 1000, 20))
    '50 of the 50 selected examples (100%) are class 0, which is 10% of the data set'
    >>> class_skew(labels, range(0, 1000, 7)) is None
    True
    """
    all_labels = np.asarray(labels, dtype=np.int64)
    all_labels = all_labels[all_labels >= 0]
    chosen = np.asarray([labels[i] for i in indices], dtype=np.int64)
    chosen = chosen[chosen >= 0]
    if len(chosen) < 20 or len(all_labels) == 0:
        return None
    top = int(np.bincount(chosen).argmax())
    share = float(np.mean(chosen == top))
    base = float(np.mean(all_labels == top))
    if share <= 0.5 or share - base <= 0.4:
        return None
    return (
        f"{int(np.sum(chosen == top))} of the {len(chosen)} selected examples "
        f"({share:.0%}) are class {top}, which is {base:.0%} of the data set"
    )
