"""Image folders: ``root/<split>/<class>/*.{png,jpg,jpeg}``, the Tiny ImageNet / ImageNet
layout."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from smoothcert._util.checks import ParameterError, is_integer
from smoothcert.data.base import (
    AUGMENTATIONS,
    DatasetInfo,
    DatasetNotFound,
    ImageDataset,
    cached_arrays,
    fingerprint,
)
from smoothcert.data.stream import StreamingImageFolder, channel_mean_std_sample, resize_center_crop

EXTENSIONS = (".png", ".jpg", ".jpeg")
# The keyword options of load_imagefolder, which load_dataset passes through.
OPTIONS = ("resize", "grayscale", "augmentation", "stream")


def channel_mean_std(
    images: np.ndarray, chunk: int = 128
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images [N, C, H, W] in [0,1] units, from
    exact integer sums over chunks of images: memory stays O(chunk), not a float64 copy of the
    whole split (21 GB for Tiny ImageNet's training set). Std is floored at 1e-3."""
    channels = images.shape[1]
    total = np.zeros(channels, dtype=np.int64)
    squares = np.zeros(channels, dtype=np.int64)
    for i in range(0, len(images), chunk):
        part = images[i : i + chunk].astype(np.int64)
        total += part.sum(axis=(0, 2, 3))
        np.multiply(part, part, out=part)  # in place: one chunk-sized buffer
        squares += part.sum(axis=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    # exact in Python integers until the last division: var = (count·Σx² − (Σx)²) / count²
    var = [(int(q) * count - int(t) ** 2) / count**2 for q, t in zip(squares, total, strict=True)]
    return (
        tuple(int(t) / count / 255.0 for t in total),
        tuple(max(v**0.5 / 255.0, 1e-3) for v in var),
    )


def _check_options(resize: object, grayscale: object, augmentation: object, stream: object) -> None:
    # bool is an int to Python, but resize=True is surely a mistake.
    if resize is not None and not (is_integer(resize) and resize > 0):
        raise ParameterError("resize", f"must be a positive integer (pixels), got {resize!r}")
    # A truthy string such as "no" would otherwise silently mean grayscale.
    if not isinstance(grayscale, bool | np.bool_):
        raise ValueError(f"grayscale must be True or False, got {grayscale!r}")
    if augmentation not in AUGMENTATIONS:
        raise ValueError(
            f"augmentation must be one of {', '.join(AUGMENTATIONS)}, got {augmentation!r}"
        )
    if not isinstance(stream, bool | np.bool_):
        raise ValueError(f"stream must be True or False, got {stream!r}")
    if augmentation == "resized-crop-flip" and not stream:
        raise ValueError("augmentation resized-crop-flip needs stream=True (it crops the files)")


def _list_images(folder: Path, classes: list[str]) -> list[tuple[int, Path]]:
    """(label, file) for every image, labels numbered by sorted class-folder name."""
    per_class = [
        sorted(f for f in (folder / c).iterdir() if f.suffix.lower() in EXTENSIONS) for c in classes
    ]
    if not any(per_class):
        raise FileNotFoundError(f"{folder} has no .png/.jpg images")
    empty = [c for c, found in zip(classes, per_class, strict=True) if not found]
    if empty:
        # Refused rather than skipped: dropping a class would renumber every later class and
        # silently change what each label means.
        raise ValueError(
            f"class folder {folder / empty[0]} has no .png/.jpg images"
            + (f" (nor do {len(empty) - 1} other class folder(s))" if len(empty) > 1 else "")
            + "; add images or remove the folder"
        )
    return [(ci, f) for ci, found in enumerate(per_class) for f in found]


def _read_image(path: Path, mode: str, resize: int | None) -> np.ndarray:
    """One image as uint8 [C, H, W]; ValueError naming the file if it cannot be decoded."""
    try:
        with Image.open(path) as im:
            im = im.convert(mode)
            if resize is not None:
                im = resize_center_crop(im, resize)
            a = np.asarray(im, dtype=np.uint8)
    except (OSError, Image.DecompressionBombError) as exc:  # unidentified/truncated are OSErrors
        raise ValueError(f"{path} is not a readable image ({exc})") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def load_imagefolder(
    split: str,
    root: str | Path | None,
    *,
    resize: int | None = None,
    grayscale: bool = False,
    augmentation: str = "crop-flip",
    stream: bool = False,
) -> ImageDataset | StreamingImageFolder:
    """Class = sub-folder name (sorted); all images must share one size unless ``resize`` is set.

    Every class folder must hold at least one image (ValueError naming the empty one).
    ``stream=True`` keeps only the file names and decodes each image when it is read (see
    :mod:`smoothcert.data.stream`); otherwise the split is decoded once into a cached array.
    """
    _check_options(resize, grayscale, augmentation, stream)
    if root is None:
        layout = "a directory with <split>/<class>/*.png|jpg subfolders"
        raise DatasetNotFound(f"is needed by dataset 'imagefolder': {layout}")
    folder = Path(root).expanduser() / split
    if not folder.is_dir():
        raise FileNotFoundError(
            f"image folder {folder} not found (expected <root>/{split}/<class>/...)"
        )
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"{folder} has no class sub-folders")
    files = _list_images(folder, classes)
    resize = None if resize is None else int(resize)
    mode = "L" if grayscale else "RGB"
    if stream:
        return _streaming(folder, files, classes, split, resize, mode, augmentation)

    def decode():
        arrays = []
        for _, f in files:
            a = _read_image(f, mode, resize)
            if arrays and a.shape != arrays[0].shape:
                raise ValueError(
                    f"{f} is {a.shape[1:]} but earlier images are {arrays[0].shape[1:]}; set resize"
                )
            arrays.append(a)
        return np.stack(arrays), np.array([ci for ci, _ in files], dtype=np.int64)

    key = "imagefolder-" + fingerprint([f for _, f in files], extra=f"{split}|{resize}|{mode}")
    images, labels = cached_arrays(key, decode)
    mean, std = channel_mean_std(images)
    info = DatasetInfo(
        name="imagefolder",
        split=split,
        num_classes=len(classes),
        input_shape=tuple(images.shape[1:]),
        class_names=tuple(classes),
        mean=mean,
        std=std,
        augmentation=augmentation,
    )
    return ImageDataset(images, labels, info)


def _streaming(
    folder: Path,
    files: list[tuple[int, Path]],
    classes: list[str],
    split: str,
    resize: int | None,
    mode: str,
    augmentation: str,
) -> StreamingImageFolder:
    """The streamed view: relative file names in one byte array, statistics from a sample."""
    names = np.array([str(f.relative_to(folder)).encode() for _, f in files])
    labels = np.array([ci for ci, _ in files], dtype=np.int64)
    if resize is None:
        first = _read_image(files[0][1], mode, None)
        shape = first.shape
    else:
        shape = (1 if mode == "L" else 3, resize, resize)
    info = DatasetInfo(
        name="imagefolder",
        split=split,
        num_classes=len(classes),
        input_shape=tuple(int(v) for v in shape),
        class_names=tuple(classes),
        mean=(0.5,) * shape[0],
        std=(0.25,) * shape[0],
        augmentation=augmentation,
    )
    dataset = StreamingImageFolder(folder, names, labels, info, resize, mode)
    mean, std = channel_mean_std_sample(dataset)
    dataset.info = dataclasses.replace(info, mean=mean, std=std)
    return dataset
