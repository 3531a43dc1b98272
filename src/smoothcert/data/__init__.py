"""Datasets as in-memory uint8 arrays with metadata, cached as .npy after the first decode;
image folders can also stream from disk (:mod:`smoothcert.data.stream`).

``load_dataset(name, split)`` is the one entry point for a named dataset; ``load_data`` also
takes the user's own data (``npy:``, ``folder:``), and ``model_data`` loads the data a model is
evaluated on, checked against it (:mod:`smoothcert.data.inputs`). ``smoothcert fetch`` obtains
the data.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from smoothcert.data.augment import augment_batch, random_crop_flip
from smoothcert.data.base import AUGMENTATIONS, DatasetInfo, ImageDataset, cache_dir
from smoothcert.data.stream import StreamingImageFolder

DATASETS = ("mnist", "fashion-mnist", "cifar10", "imagefolder")
SPLITS = ("train", "test")

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "DatasetInfo",
    "ImageDataset",
    "StreamingImageFolder",
    "augment_batch",
    "cache_dir",
    "check_model_data",
    "load_data",
    "load_dataset",
    "load_samples",
    "model_data",
    "random_crop_flip",
    "resolve_sigma",
]


def load_dataset(
    name: str, split: str, *, root: str | Path | None = None, **options: Any
) -> ImageDataset | StreamingImageFolder:
    """Load split ``split`` ("train" | "test") of dataset ``name``.

    names: "mnist", "fashion-mnist" (IDX files), "cifar10" (python batches or the JPEG archives),
    "imagefolder" (``root/<split>/<class>/*``; options ``resize``, ``grayscale``,
    ``augmentation``, ``stream``; any other option is a ValueError). With ``stream=True`` the
    result is a :class:`StreamingImageFolder` that decodes images when they are read.
    Raises FileNotFoundError saying how to obtain missing data.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name != "imagefolder" and options:
        raise ValueError(f"dataset {name!r} takes no options (got {', '.join(sorted(options))})")
    if name in ("mnist", "fashion-mnist"):
        from smoothcert.data.idx import load_idx_dataset

        return load_idx_dataset(name, split, root)
    if name == "cifar10":
        from smoothcert.data.cifar import load_cifar10

        return load_cifar10(split, root)
    from smoothcert.data.imagefolder import OPTIONS, load_imagefolder

    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(unknown)} for dataset 'imagefolder'; "
            f"accepted: {', '.join(OPTIONS)}"
        )
    return load_imagefolder(split, root, **options)


def load_samples(name: str) -> ImageDataset:
    """The 20 sample test images bundled with foolbox 3.3.4 (``smoothcert fetch samples``)."""
    from smoothcert.data.fetch import load_samples as _load

    return _load(name)


#: Re-exported from smoothcert.data.inputs on first use (it builds on load_dataset above).
_INPUTS = ("check_model_data", "load_data", "model_data", "resolve_sigma")


def __getattr__(name: str) -> Any:
    if name in _INPUTS:
        return getattr(importlib.import_module("smoothcert.data.inputs"), name)
    raise AttributeError(f"module 'smoothcert.data' has no attribute {name!r}")
