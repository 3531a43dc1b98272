"""The data of a training run: the training and test splits (or the caller's datasets), the
held-out validation examples, the augmentation and the σ of the noisy evaluation
(:func:`prepare_data`, step 2 of :func:`smoothcert.training.train`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from smoothcert.data import ImageDataset, load_dataset
from smoothcert.data.base import class_skew
from smoothcert.data.stream import StreamingImageFolder
from smoothcert.training.config import TrainConfig
from smoothcert.training.method import Method


@dataclass
class TrainData:
    """The splits a run trains, selects and reports on, and how it treats them."""

    train: ImageDataset | StreamingImageFolder
    test: ImageDataset | None  # reported only (None: the dataset has no test split)
    val: ImageDataset | None  # the last val_size training examples, best.safetensors' judge
    augmentation: str  # "none", "crop-flip" or "resized-crop-flip"
    eval_sigma: float | None  # σ of the noisy evaluation (None: clean only)


def _warn_if_one_class(config: TrainConfig, full: ImageDataset, say: Callable[[str], None]) -> None:
    """``val_size`` takes the last examples and ``subset`` the first: on a class-sorted split
    (an image folder) either can be mostly one class."""
    labels = getattr(full, "labels", None)
    if labels is None:
        return
    n, parts = len(labels), []
    if config.val_size and config.val_size < n:
        parts.append(("val_size", "held-out validation", range(n - config.val_size, n)))
    if config.subset is not None:
        kept = n - (config.val_size or 0)
        parts.append(("subset", "training subset", range(min(config.subset, kept))))
    for name, what, indices in parts:
        skew = class_skew(labels, indices)
        if skew:
            skew = skew.replace("selected", what)
            say(f"warning: {name}: {skew} (the split is ordered by class?)")


def prepare_data(
    config: TrainConfig,
    method: Method,
    train_set: ImageDataset | None,
    test_set: ImageDataset | None,
    say: Callable[[str], None],
) -> TrainData:
    """Load (unless given) the splits, hold out the validation examples, apply the subsets;
    warn (``say``) when a held-out or subset slice is mostly one class."""
    if train_set is None:
        train_set = load_dataset(
            config.dataset, "train", root=config.data_root, **config.data_options
        )
    if test_set is None:
        try:
            test_set = load_dataset(
                config.dataset, "test", root=config.data_root, **config.data_options
            )
        except FileNotFoundError:
            test_set = None
    _warn_if_one_class(config, train_set, say)
    val_set = None
    if config.val_size:
        if config.val_size >= len(train_set):
            raise ValueError(
                f"val_size {config.val_size} leaves no training examples "
                f"(the training split has {len(train_set)})"
            )
        train_set, val_set = train_set.split_last(config.val_size)
    if config.subset is not None:
        train_set = train_set.subset(min(config.subset, len(train_set)))
    if test_set is not None and config.test_subset is not None:
        test_set = test_set.subset(min(config.test_subset, len(test_set)))
    if len(train_set) < 2:
        raise ValueError(f"the training set needs at least 2 examples, got {len(train_set)}")
    augmentation = train_set.info.augmentation if config.augment == "auto" else config.augment
    eval_sigma = config.eval_sigma if config.eval_sigma is not None else method.noise_sigma
    if augmentation == "resized-crop-flip" and not isinstance(train_set, StreamingImageFolder):
        raise ValueError(
            "augment resized-crop-flip needs a streamed image folder "
            "(dataset imagefolder with stream=True)"
        )
    return TrainData(train_set, test_set, val_set, augmentation, eval_sigma)
