"""Cached arrays are never stale or damaged, and damaged source files give one-line errors that
name them: gzip, labels out of range, CIFAR batches and JPEG archives."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import numpy as np
import pytest
from PIL import Image

from helpers import idx_bytes, write_cifar_batch
from smoothcert.data import load_dataset
from smoothcert.data.base import cache_dir


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SMOOTHCERT_CACHE", str(tmp_path / "cache"))


def _mnist_root(folder, labels, images=None):
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels)
    if images is None:
        images = np.arange(len(labels) * 4, dtype=np.uint8).reshape(len(labels), 2, 2)
    (folder / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (folder / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return folder


def _cache_files(suffix):
    return sorted((cache_dir() / "arrays").glob(f"*{suffix}"))


def test_an_emptied_cache_entry_is_decoded_again(tmp_path, private_cache) -> None:
    root = _mnist_root(tmp_path / "m", [7, 2, 1, 0])
    load_dataset("mnist", "test", root=root)
    (labels_file,) = _cache_files(".labels.npy")
    labels_file.write_bytes(b"")  # what a crash after rename without fsync could leave
    assert load_dataset("mnist", "test", root=root).labels.tolist() == [7, 2, 1, 0]
    assert labels_file.stat().st_size > 0  # and the entry was repaired


def test_a_cache_entry_changed_in_place_is_not_used(tmp_path, private_cache) -> None:
    root = _mnist_root(tmp_path / "m", [7, 2, 1, 0])
    first = load_dataset("mnist", "test", root=root).images.copy()
    (images_file,) = _cache_files(".images.npy")
    raw = bytearray(images_file.read_bytes())
    raw[-4:] = b"\xff\xff\xff\xff"  # same size, other pixels
    images_file.write_bytes(bytes(raw))
    assert np.array_equal(load_dataset("mnist", "test", root=root).images, first)


def test_a_source_replaced_with_the_same_size_and_mtime_is_decoded_again(
    tmp_path, private_cache
) -> None:
    root = _mnist_root(tmp_path / "m", [7, 2, 1, 0])
    labels_path = root / "t10k-labels-idx1-ubyte"
    stamp = (499162500, 499162500)  # npm tarballs give every file one fixed mtime
    os.utime(labels_path, stamp)
    assert load_dataset("mnist", "test", root=root).labels.tolist() == [7, 2, 1, 0]
    replacement = tmp_path / "other"
    replacement.write_bytes(idx_bytes(np.array([3, 6, 1, 1])))
    os.replace(replacement, labels_path)
    os.utime(labels_path, stamp)
    assert load_dataset("mnist", "test", root=root).labels.tolist() == [3, 6, 1, 1]


def test_truncated_gzip_and_out_of_range_labels_name_the_file(tmp_path, private_cache) -> None:
    root = _mnist_root(tmp_path / "m", [7, 2, 1, 0])
    data = gzip.compress((root / "t10k-images-idx3-ubyte").read_bytes())
    (root / "t10k-images-idx3-ubyte").unlink()
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: not a readable gzip"):
        load_dataset("mnist", "test", root=root)
    bad = _mnist_root(tmp_path / "b", [7, 200, 1, 0])
    with pytest.raises(ValueError, match=r"labels-idx1-ubyte: label 200 is outside 0..9"):
        load_dataset("mnist", "test", root=bad)


def test_cifar_batches_check_their_own_labels(tmp_path, private_cache) -> None:
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    data = np.zeros((3, 3 * 32 * 32), dtype=np.uint8)
    write_cifar_batch(root / "test_batch", data, [3, 300, 4])
    with pytest.raises(ValueError, match="test_batch: label 300 is outside 0..9"):
        load_dataset("cifar10", "test", root=tmp_path)
    write_cifar_batch(root / "test_batch", data, [3, 1, 4, 1])
    with pytest.raises(ValueError, match="test_batch: 3 images but 4 labels"):
        load_dataset("cifar10", "test", root=tmp_path)


def _jpeg(color) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), color).save(buf, format="JPEG")
    return buf.getvalue()


def _archive(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def test_cifar_jpeg_archive_problems_are_named(tmp_path, private_cache) -> None:
    from smoothcert.data.cifar import CLASS_NAMES

    good = {f"test/{c}/0000.jpg": _jpeg((i * 20, 0, 0)) for i, c in enumerate(CLASS_NAMES)}
    root = tmp_path / "jpeg"
    root.mkdir()
    _archive(root / "test.tar.gz", good)
    from smoothcert.data.cifar import jpeg_order

    loaded = load_dataset("cifar10", "test", root=root)
    assert loaded.labels.tolist() == [c for c, _ in jpeg_order(1, 10)]
    assert sorted(loaded.labels.tolist()) == list(range(10))
    assert loaded.labels.tolist() != list(range(10))  # the fixed shuffle of the block

    cases = [
        (good | {"test/cat/0001.jpg": b"not a jpeg"}, "test/cat/0001.jpg is not a readable JPEG"),
        (good | {"test/cat/0001.jpg": _jpeg((1, 2, 3))}, "classes hold different numbers"),
        ({k.replace("test/", "train/"): v for k, v in good.items()}, "is not under test/"),
    ]
    for i, (members, message) in enumerate(cases):
        folder = tmp_path / f"case{i}"
        folder.mkdir()
        _archive(folder / "test.tar.gz", members)
        with pytest.raises(ValueError, match=message):
            load_dataset("cifar10", "test", root=folder)
    cut = tmp_path / "cut"
    cut.mkdir()
    blob = (root / "test.tar.gz").read_bytes()
    (cut / "test.tar.gz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="not a readable .tar.gz archive"):
        load_dataset("cifar10", "test", root=cut)
