"""CIFAR-10: the official ``cifar-10-batches-py`` directory, or the JPEG image-folder tarballs.

The official batches are Python pickles. We decode them with an unpickler that refuses every
global except the handful numpy needs to rebuild a plain uint8/int array, so a crafted file
cannot run code; and only from the directory the user names explicitly, or from the cache
directory that :func:`smoothcert.data.fetch.fetch_cifar10` filled from the official archive
after checking its published MD5.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from smoothcert._util.checks import ParameterError
from smoothcert._util.hashing import file_sha256
from smoothcert.data.base import (
    DatasetInfo,
    DatasetNotFound,
    ImageDataset,
    cache_dir,
    cached_arrays,
    fingerprint,
)

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

JPEG_SHA256 = {
    "train.tar.gz": "a535d698b82754229fa7f3774ac711a607cb8936992fd7ca3d9ef1a55204f457",
    "test.tar.gz": "6105939178564d665213b1d8a0be087359a13dfadc0e225b0f2dd3c6cc017178",
}


def missing(folder: Path) -> DatasetNotFound:
    """The error for CIFAR-10 absent from ``folder``, the data root."""
    return DatasetNotFound(
        f"(here {folder}) holds no CIFAR-10 data: run `smoothcert fetch cifar10` (in Python "
        "smoothcert.data.fetch.fetch_cifar10(); downloads the official python batches into the "
        "cache, 163 MB), or point it at a directory holding cifar-10-batches-py"
    )


def cache_batches_dir() -> Path:
    """Where `smoothcert fetch cifar10` puts the official python batches."""
    return cache_dir() / "cifar10" / "cifar-10-batches-py"


def default_jpeg_dir() -> Path:
    env = os.environ.get("SMOOTHCERT_CIFAR10_JPEG")
    if env:
        return Path(env).expanduser()
    # src/smoothcert/data/cifar.py -> repository root -> ../shared/data/cifar10-jpeg
    return Path(__file__).resolve().parents[3].parent / "shared" / "data" / "cifar10-jpeg"


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Rebuilds dicts, lists, bytes and numpy arrays; any other global is refused."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        return super().find_class(module, name)


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as f:
            d = _NumpyOnlyUnpickler(f, encoding="bytes").load()
        data = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, EOFError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    # Checked per batch: an extra label in one batch and a missing one in the next would
    # otherwise shift every later label by one without any count mismatch overall.
    if len(data) != len(labels):
        raise ValueError(f"{path}: {len(data)} images but {len(labels)} labels")
    _check_labels(path, labels)
    return data, labels


def _check_labels(where: object, labels: np.ndarray) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        bad = labels[(labels < 0) | (labels >= len(CLASS_NAMES))][0]
        raise ValueError(f"{where}: label {int(bad)} is outside 0..{len(CLASS_NAMES) - 1}")


def _load_batches(root: Path, split: str) -> tuple[list[Path], callable]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    paths = [root / n for n in names]
    absent = [p.name for p in paths if not p.is_file()]
    if absent:
        raise FileNotFoundError(f"{root} lacks CIFAR-10 batch file(s) {', '.join(absent)}")

    def decode():
        parts = [_read_batch(p) for p in paths]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    return paths, decode


def _load_jpeg(root: Path, split: str, pinned: bool) -> tuple[list[Path], callable]:
    tar_path = root / f"{split}.tar.gz"
    if not tar_path.is_file():
        raise missing(root)

    def decode():
        if pinned and file_sha256(tar_path) != JPEG_SHA256[tar_path.name]:
            raise ValueError(f"{tar_path} does not match its pinned sha256")
        # Images in the archive are <split>/<class>/NNNN.jpg, NNNN in CIFAR-10's order within
        # the class; the global order is lost (see jpeg_order for the order we present).
        try:
            found = _read_jpeg_archive(tar_path, split)
        except (EOFError, OSError, tarfile.TarError, zlib.error) as exc:
            raise ValueError(f"{tar_path}: not a readable .tar.gz archive ({exc})") from None
        if not found:
            raise ValueError(f"{tar_path}: no images found")
        # CIFAR-10 is balanced: a missing image would shift the order of its class.
        counts = np.bincount([t[0] for t in found], minlength=len(CLASS_NAMES))
        if counts.min() != counts.max():
            shown = ", ".join(f"{c}: {k}" for c, k in zip(CLASS_NAMES, counts, strict=True))
            raise ValueError(f"{tar_path}: classes hold different numbers of images ({shown})")
        found.sort(key=lambda t: (t[0], t[1]))  # class by class, each in CIFAR-10's order
        per_class = int(counts[0])
        found = [found[c * per_class + k] for c, k in jpeg_order(per_class, len(CLASS_NAMES))]
        return np.stack([t[2] for t in found]), np.array([t[0] for t in found], dtype=np.int64)

    return [tar_path], decode


#: Seed of the JPEG copy's presentation order (see :func:`jpeg_order`); part of the cache key.
JPEG_ORDER_SEED = 10
JPEG_ORDER = f"stratified-shuffle-seed{JPEG_ORDER_SEED}"


def jpeg_order(per_class: int, classes: int) -> list[tuple[int, int]]:
    """(class, rank within the class) of each example of the JPEG copy, in the order we present.

    Blocks of one image per class: block k holds image k of every class, in a fixed
    pseudo-random class order drawn per block (seed :data:`JPEG_ORDER_SEED`). Like the
    official order, a stride (``--skip 20``: every 20th test image) then draws its classes at
    random; and any prefix of whole blocks is exactly class-balanced. A plain interleave
    (class = index mod 10) would make every 10th, 20th or 100th image the same class.
    """
    rng = np.random.default_rng(JPEG_ORDER_SEED)
    return [(int(c), k) for k in range(per_class) for c in rng.permutation(classes)]


def jpeg_original_indices(official_labels: Sequence[int] | np.ndarray) -> np.ndarray:
    """The official CIFAR-10 index of each example of the JPEG copy, in our order.

    The copy keeps CIFAR-10's order within each class (file k of class c is the k-th image of
    class c in the official set), and we present it in :func:`jpeg_order`; the official label
    sequence says where the k-th image of class c sits. Published per-example results on the
    official test set (whose label column is that sequence) then pair with ours image by
    image.

    Parameters
    ----------
    official_labels : sequence of int
        The official set's labels in its order (10,000 for the test split).

    Returns
    -------
    numpy.ndarray
        int64 array: entry i is the official index of our example i.

    Raises
    ------
    smoothcert._util.checks.ParameterError
        If the labels are not a class-balanced sequence over the ten classes.

    Examples
    --------
    >>> labels = np.tile(np.arange(10), 3)[::-1]  # any balanced order
    >>> mapped = jpeg_original_indices(labels)
    >>> [int(labels[mapped[i]]) for i in range(10)] == [c for c, _ in jpeg_order(3, 10)[:10]]
    True
    """
    labels = np.asarray(official_labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(CLASS_NAMES)) if labels.size else np.zeros(1)
    if labels.ndim != 1 or len(counts) != len(CLASS_NAMES) or counts.min() != counts.max():
        raise ParameterError(
            "official_labels", "must be a class-balanced sequence of CIFAR-10's ten labels"
        )
    positions = [np.flatnonzero(labels == c) for c in range(len(CLASS_NAMES))]
    order = jpeg_order(int(counts[0]), len(CLASS_NAMES))
    return np.array([positions[c][k] for c, k in order], dtype=np.int64)


def _read_jpeg_archive(tar_path: Path, split: str) -> list[tuple[int, str, np.ndarray]]:
    """(class index, file name, CHW uint8 image) for every <split>/<class>/NNNN.jpg member."""
    found: list[tuple[int, str, np.ndarray]] = []
    with tarfile.open(tar_path, "r:gz") as tar:
        for member in tar:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3 or not parts[2].lower().endswith(".jpg"):
                continue
            if parts[0] != split:
                raise ValueError(f"{tar_path}: {member.name} is not under {split}/")
            if parts[1] not in CLASS_NAMES:
                raise ValueError(f"{tar_path}: unknown class folder {parts[1]!r}")
            blob = tar.extractfile(member).read()
            try:
                with Image.open(io.BytesIO(blob)) as im:
                    arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                where = f"{tar_path}:{member.name}"
                raise ValueError(f"{where} is not a readable JPEG ({exc})") from None
            if arr.shape != (32, 32, 3):
                raise ValueError(f"{tar_path}:{member.name} is {arr.shape}, expected 32x32 RGB")
            found.append((CLASS_NAMES.index(parts[1]), parts[2], arr.transpose(2, 0, 1)))
    return found


def _default_folder(split: str) -> Path:
    """The official batches fetched into the cache; else a JPEG copy at the default JPEG
    location, when one is there; else an error saying how to fetch the batches."""
    if cache_batches_dir().is_dir():
        return cache_batches_dir()
    jpeg = default_jpeg_dir()
    if (jpeg / f"{split}.tar.gz").is_file():
        return jpeg
    raise missing(cache_batches_dir())


def load_cifar10(split: str, root: str | Path | None = None) -> ImageDataset:
    """CIFAR-10 from ``root`` (batches or JPEG archives), or by default the official batches
    that :func:`smoothcert.data.fetch.fetch_cifar10` puts in the cache (else a JPEG copy at
    ``$SMOOTHCERT_CIFAR10_JPEG``, when present)."""
    folder = Path(root).expanduser() if root is not None else _default_folder(split)
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    if (folder / "test_batch").is_file() or (folder / "data_batch_1").is_file():
        paths, decode = _load_batches(folder, split)
        name = "CIFAR-10"
    elif (folder / f"{split}.tar.gz").is_file() or root is None:
        paths, decode = _load_jpeg(folder, split, pinned=root is None)
        name = "CIFAR-10 (JPEG)"
    else:
        raise missing(folder)
    order = JPEG_ORDER if name == "CIFAR-10 (JPEG)" else "original"
    key = f"cifar10-{split}-" + fingerprint(paths, extra=f"{name}|{order}")
    images, labels = cached_arrays(key, decode)
    info = DatasetInfo(
        name=name,
        split=split,
        num_classes=10,
        input_shape=(3, 32, 32),
        class_names=CLASS_NAMES,
        mean=MEAN,
        std=STD,
        augmentation="crop-flip",
    )
    return ImageDataset(images, labels, info)
