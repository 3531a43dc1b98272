"""Image folders streamed from disk: the ImageNet / Tiny ImageNet ``<split>/<class>/*`` layout
without holding the split in memory.

The dataset keeps only the file names (one fixed-width byte array) and labels (int64), so
forked DataLoader workers share them without copying and memory does not grow with the
number of images. Each training item is decoded and augmented where it is read (a DataLoader
worker with ``workers > 0``) with a generator seeded by (seed, epoch, index): the same image
gets the same crop in every run, at every world size and after a resume.

Augmentations: ``resized-crop-flip`` (ImageNet style: a random crop of 8–100% of the area
with aspect ratio in [3/4, 4/3], resized to ``size``×``size``, then a horizontal flip with
probability ½, as in Szegedy et al. 2015 and the ResNet ImageNet recipe), ``crop-flip`` (the
CIFAR style: the resized image padded by 4 pixels, a random ``size`` crop and a flip) and
``none``. Evaluation items (``batch``) are the short side resized to ``size`` and the centre
crop.

An unreadable image stops the run with one line naming the file (a documented choice:
skipping it would silently change the epoch's batches and with them every later weight).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from smoothcert._util.checks import ParameterError, is_integer
from smoothcert._util.seeding import item_seed
from smoothcert.data.augment import random_crop_flip
from smoothcert.data.base import DatasetInfo

SCALE, RATIO = (0.08, 1.0), (3 / 4, 4 / 3)  # the Inception / ResNet ImageNet crop ranges
MEAN_STD_SAMPLE = 1000  # images (evenly spaced) behind the normalization statistics


class UnreadableImage(ValueError):
    """An image file that cannot be decoded (the message names it)."""


def _open(path: str, mode: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert(mode)
    except (OSError, Image.DecompressionBombError) as exc:  # truncated/unidentified: OSError
        raise UnreadableImage(f"{path} is not a readable image ({exc})") from None


def _to_tensor(im: Image.Image) -> torch.Tensor:
    a = np.asarray(im, dtype=np.uint8)
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(a)).float().div_(255.0)


def resize_center_crop(im: Image.Image, size: int) -> Image.Image:
    """Resize the short side to ``size`` and take the central size×size crop."""
    w, h = im.size
    scale = size / min(w, h)
    im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    w, h = im.size
    left, top = (w - size) // 2, (h - size) // 2
    return im.crop((left, top, left + size, top + size))


def random_resized_crop(
    im: Image.Image, size: tuple[int, int], rng: np.random.Generator
) -> Image.Image:
    """A crop of random area fraction in SCALE and aspect ratio in RATIO (log-uniform), resized
    to ``size`` (width, height); after 10 rejected draws, the centre crop."""
    w, h = im.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*SCALE)
        ratio = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            return im.resize(size, Image.BILINEAR, box=(left, top, left + cw, top + ch))
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return im.resize(size, Image.BILINEAR, box=(left, top, left + side, top + side))


class StreamingImageFolder(Dataset):
    """Files and labels of an image folder; images are decoded when read.

    ``files`` are the paths relative to ``folder`` as a fixed-width byte array, ``labels``
    int64; ``size`` is the side of the square images produced (None: the images' own size,
    which must then be one square size for all).
    """

    def __init__(
        self,
        folder: Path,
        files: np.ndarray,
        labels: np.ndarray,
        info: DatasetInfo,
        size: int | None,
        mode: str,
    ) -> None:
        self.folder = Path(folder)
        self.files = files
        self.labels = np.asarray(labels, dtype=np.int64)
        self.info = info
        self.size = size
        self.mode = mode

    def __len__(self) -> int:
        return len(self.labels)

    def path(self, i: int) -> str:
        return str(self.folder / self.files[i].decode())

    def _image(self, i: int) -> Image.Image:
        im = _open(self.path(i), self.mode)
        if self.size is None and tuple(im.size[::-1]) != self.info.input_shape[1:]:
            raise UnreadableImage(
                f"{self.path(i)} is {im.size[1]}x{im.size[0]} but the folder's images are "
                f"{self.info.input_shape[1]}x{self.info.input_shape[2]}; set resize"
            )
        return im

    def item(self, i: int) -> torch.Tensor:
        """Evaluation view of image ``i``: float32 [C, H, W] in [0,1], centre crop."""
        im = self._image(i)
        if self.size is not None:
            im = resize_center_crop(im, self.size)
        return _to_tensor(im)

    def augmented(self, i: int, augmentation: str, seed: int, epoch: int) -> torch.Tensor:
        """Training view of image ``i``: augmented with the generator of (seed, epoch, i)."""
        s = item_seed(seed, epoch, i)
        im = self._image(i)
        if augmentation == "resized-crop-flip":
            rng = np.random.default_rng(s)
            _, height, width = self.info.input_shape
            x = _to_tensor(random_resized_crop(im, (width, height), rng))
            return x.flip(-1) if rng.random() < 0.5 else x
        if self.size is not None:
            im = resize_center_crop(im, self.size)
        x = _to_tensor(im)
        if augmentation == "crop-flip":
            return random_crop_flip(x[None], torch.Generator().manual_seed(s))[0]
        return x

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.item(i), int(self.labels[i])

    def batch(self, indices: Sequence[int] | np.ndarray | torch.Tensor):
        """Images [B, C, H, W] float32 in [0,1] (centre crops) and labels [B] int64."""
        idx = np.asarray(
            indices.cpu() if isinstance(indices, torch.Tensor) else indices, dtype=np.int64
        )
        x = torch.stack([self.item(int(i)) for i in idx])
        return x, torch.from_numpy(self.labels[idx])

    def _take(self, sl: slice) -> StreamingImageFolder:
        return StreamingImageFolder(
            self.folder, self.files[sl], self.labels[sl], self.info, self.size, self.mode
        )

    def subset(self, n: int) -> StreamingImageFolder:
        """The first ``n`` examples."""
        if not is_integer(n) or not 0 < n <= len(self):
            raise ParameterError(
                "subset", f"size must be an integer in [1, {len(self)}], got {n!r}"
            )
        return self._take(slice(0, n))

    def split_last(self, n: int) -> tuple[StreamingImageFolder, StreamingImageFolder]:
        """(all but the last ``n`` examples, the last ``n``): a held-out validation split."""
        if not isinstance(n, int) or not 0 < n < len(self):
            raise ValueError(f"split size must be an integer in [1, {len(self) - 1}], got {n!r}")
        k = len(self) - n
        return self._take(slice(0, k)), self._take(slice(k, None))

    def __repr__(self) -> str:
        i = self.info
        return f"StreamingImageFolder({str(self.folder)!r}, n={len(self)}, shape={i.input_shape})"


class TrainItems(Dataset):
    """What a DataLoader worker reads for training: key (epoch, index) -> (augmented image,
    label), or the error of an unreadable image as a string (raised by the loop, so the
    message stays one line rather than a worker traceback)."""

    def __init__(self, dataset: StreamingImageFolder, augmentation: str, seed: int) -> None:
        self.dataset, self.augmentation, self.seed = dataset, augmentation, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, i = key
        try:
            x = self.dataset.augmented(i, self.augmentation, self.seed, epoch)
        except UnreadableImage as exc:
            return str(exc)
        return x, int(self.dataset.labels[i])


def collate(items: list) -> tuple[torch.Tensor, torch.Tensor] | str:
    """Stack a batch, or pass on the first error message in it."""
    for item in items:
        if isinstance(item, str):
            return item
    xs, ys = zip(*items, strict=True)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.int64)


def channel_mean_std_sample(
    dataset: StreamingImageFolder, sample: int = MEAN_STD_SAMPLE
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the evaluation view of ``sample`` evenly spaced images (the
    whole split would mean decoding it all once more); std floored at 1e-3."""
    n = len(dataset)
    picks = np.unique(np.linspace(0, n - 1, min(sample, n)).round().astype(np.int64))
    total = sq = None
    count = 0
    for i in picks:
        x = dataset.item(int(i)).double()
        s, q = x.sum(dim=(1, 2)), (x * x).sum(dim=(1, 2))
        total = s if total is None else total + s
        sq = q if sq is None else sq + q
        count += x.shape[1] * x.shape[2]
    mean = total / count
    var = (sq / count - mean * mean).clamp_min(0)
    return tuple(mean.tolist()), tuple(max(v, 1e-3) for v in var.sqrt().tolist())
