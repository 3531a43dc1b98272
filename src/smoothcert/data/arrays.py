"""Datasets from the user's own files: NumPy arrays (``npy:images.npy`` with optional labels)
and a folder of images without labels. Unlabeled data yields ``None`` labels (PREDICT only)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from smoothcert.data.base import DatasetInfo
from smoothcert.data.imagefolder import EXTENSIONS, _read_image

LAYOUTS = ("auto", "nchw", "nhwc")
_CHANNELS = (1, 3, 4)  # grayscale, RGB, RGBA


class ArrayDataset(Dataset):
    """Images [N, C, H, W], uint8 (divided by 255 per item) or float32 in [0,1], with int64
    labels or none. ``info.num_classes`` is None: the model, not the data, says how many classes
    there are (labels must be below it; see :meth:`check_labels`)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, info: DatasetInfo) -> None:
        self.images, self.labels, self.info = images, labels, info

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int | None]:
        x = torch.from_numpy(np.ascontiguousarray(self.images[i]))
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        return x, None if self.labels is None else int(self.labels[i])

    @property
    def labeled(self) -> bool:
        return self.labels is not None

    def check_labels(self, num_classes: int) -> None:
        """ValueError unless every label is a class of a model with ``num_classes`` classes."""
        if self.labels is not None and len(self.labels) and self.labels.max() >= num_classes:
            raise ValueError(
                f"labels go up to {int(self.labels.max())} but the model has {num_classes} "
                f"classes (0 .. {num_classes - 1})"
            )


def _layout(shape: tuple[int, ...], layout: str, expected: Sequence[int] | None) -> str:
    """ "nchw" or "nhwc" for a 4-D array: as stated, else the one that gives ``expected``
    (C, H, W), else the one whose channel axis alone has 1, 3 or 4 entries."""
    if layout != "auto":
        return layout
    if expected is not None:
        fits = [lay for lay, chw in (("nchw", shape[1:]), ("nhwc", (shape[3], *shape[1:3])))
                if tuple(chw) == tuple(expected)]  # fmt: skip
        if len(fits) == 1:
            return fits[0]
    first, last = shape[1] in _CHANNELS, shape[3] in _CHANNELS
    if first != last:
        return "nchw" if first else "nhwc"
    raise ValueError(
        f"cannot tell whether images of shape {shape} are [N, C, H, W] or [N, H, W, C]; "
        "give layout ('nchw' or 'nhwc')"
    )


def _load_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    try:
        return np.load(path, allow_pickle=False)  # never unpickle
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{what} {path} is not a NumPy .npy array ({exc})") from None


def load_npy_dataset(
    path: str | Path,
    labels: str | Path | None = None,
    *,
    layout: str = "auto",
    input_shape: Sequence[int] | None = None,
) -> ArrayDataset:
    """Images from ``path`` (.npy): uint8 [N, H, W, C] or [N, C, H, W], or floating point in
    [0,1]; [N, H, W] is one channel. ``labels`` (.npy, N integers >= 0) or none (PREDICT only).
    ``layout`` is "nchw", "nhwc" or "auto" (inferred from ``input_shape`` when given, else from
    which axis has 1, 3 or 4 entries; ValueError when that is ambiguous)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    path = Path(path)
    images = _load_npy(path, "images")
    if images.ndim == 3:
        images = images[:, None]
        layout = "nchw"
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images {path} must be [N, H, W, C] or [N, C, H, W], got {images.shape}")
    if images.dtype != np.uint8:
        if not np.issubdtype(images.dtype, np.floating):
            raise ValueError(f"images {path} must be uint8 or floating point, got {images.dtype}")
        images = images.astype(np.float32, copy=False)
        if not (np.isfinite(images).all() and images.min() >= 0 and images.max() <= 1):
            raise ValueError(f"floating-point images {path} must be finite and in [0, 1]")
    if _layout(images.shape, layout, input_shape) == "nhwc":
        images = images.transpose(0, 3, 1, 2)
    images = np.ascontiguousarray(images)
    y = None
    if labels is not None:
        y = _load_npy(Path(labels), "labels")
        if y.shape != (len(images),) or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
            raise ValueError(
                f"labels {labels} must be {len(images)} integers >= 0 (one per image), "
                f"got {y.dtype} {y.shape}"
            )
        y = y.astype(np.int64)
    return ArrayDataset(images, y, _info(f"npy:{path}", images))


def load_unlabeled_folder(
    folder: str | Path, *, resize: int | None = None, grayscale: bool = False
) -> ArrayDataset:
    """The .png/.jpg images directly in ``folder`` (sorted by name), without labels."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    files = sorted(f for f in folder.iterdir() if f.suffix.lower() in EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"{folder} has no .png/.jpg images")
    arrays = [_read_image(f, "L" if grayscale else "RGB", resize) for f in files]
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"the images in {folder} differ in size {sorted(shapes)[:2]}; set resize")
    images = np.stack(arrays)
    return ArrayDataset(images, None, _info(f"folder:{folder}", images))


def _info(name: str, images: np.ndarray) -> DatasetInfo:
    c = images.shape[1]
    return DatasetInfo(name, "test", None, tuple(images.shape[1:]), (), (0.5,) * c, (0.5,) * c)
