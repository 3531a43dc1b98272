"""Data: IDX parsing on real MNIST, caching, CIFAR-10 readers, image folders, augmentation."""

from __future__ import annotations

import gzip
import os
import pickle
import time

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import idx_bytes, write_cifar_batch
from smoothcert.data import load_dataset, random_crop_flip
from smoothcert.data.idx import parse_idx


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    """Decoded arrays of throw-away test data go to a temporary cache, not the user's."""
    monkeypatch.setenv("SMOOTHCERT_CACHE", str(tmp_path / "cache"))


def test_mnist_real_labels_shapes_and_pixels(mnist_train, mnist_test):
    assert len(mnist_train) == 60000 and len(mnist_test) == 10000
    assert mnist_test.labels[:5].tolist() == [7, 2, 1, 0, 4]
    assert mnist_train.labels[:5].tolist() == [5, 0, 4, 1, 9]
    assert np.bincount(mnist_test.labels).tolist() == [
        980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009,
    ]  # fmt: skip
    x, y = mnist_test[0]
    assert x.dtype == torch.float32 and tuple(x.shape) == (1, 28, 28) and y == 7
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    info = mnist_test.info
    assert (info.num_classes, info.input_shape, info.mean, info.std) == (
        10, (1, 28, 28), (0.1307,), (0.3081,),
    )  # fmt: skip
    # The published MNIST training mean/std, recomputed from the decoded pixels.
    hist = np.bincount(mnist_train.images.ravel(), minlength=256).astype(np.float64)
    values = np.arange(256) / 255
    mean = (hist * values).sum() / hist.sum()
    std = np.sqrt((hist * (values - mean) ** 2).sum() / hist.sum())
    assert mean == pytest.approx(0.1307, abs=1e-4) and std == pytest.approx(0.3081, abs=1e-4)


def test_batch_matches_items_and_subset(mnist_test):
    xb, yb = mnist_test.batch([3, 0, 9999])
    for row, i in enumerate([3, 0, 9999]):
        x, y = mnist_test[i]
        assert torch.equal(xb[row], x) and int(yb[row]) == y
    sub = mnist_test.subset(100)
    assert len(sub) == 100 and torch.equal(
        sub.batch(range(100))[0], mnist_test.batch(range(100))[0]
    )
    with pytest.raises(ValueError, match="subset size"):
        mnist_test.subset(0)


def test_second_load_is_fast(mnist_train):
    t0 = time.perf_counter()
    again = load_dataset("mnist", "train")
    assert time.perf_counter() - t0 < 1.0
    assert np.array_equal(again.labels, mnist_train.labels)


def test_user_root_gz_and_raw_round_trip(tmp_path, private_cache, mnist_test):
    images = mnist_test.images[:50, 0]
    labels = mnist_test.labels[:50]
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    ds = load_dataset("mnist", "test", root=tmp_path)
    assert np.array_equal(ds.images[:, 0], images) and np.array_equal(ds.labels, labels)


def test_idx_format_errors():
    good = idx_bytes(np.zeros((2, 3), dtype=np.uint8))
    assert parse_idx(good).shape == (2, 3)
    with pytest.raises(ValueError, match="magic"):
        parse_idx(b"\x01" + good[1:])
    with pytest.raises(ValueError, match="size mismatch"):
        parse_idx(good[:-1])
    with pytest.raises(ValueError, match="element type"):
        parse_idx(good[:2] + b"\x0d" + good[3:])


def test_missing_data_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="smoothcert fetch mnist"):
        load_dataset("mnist", "train", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_dataset("cifar10", "train", root=tmp_path)
    with pytest.raises(FileNotFoundError, match="root"):
        load_dataset("imagefolder", "train")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("svhn", "train")
    with pytest.raises(ValueError, match="split"):
        load_dataset("mnist", "val")


def test_cifar_python_batches(tmp_path, private_cache):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, size=(6, 3 * 32 * 32), dtype=np.uint8)
    write_cifar_batch(root / "test_batch", data, [3, 1, 4, 1, 5, 9])
    ds = load_dataset("cifar10", "test", root=tmp_path)
    assert ds.info.name == "CIFAR-10" and ds.info.augmentation == "crop-flip"
    assert ds.labels.tolist() == [3, 1, 4, 1, 5, 9]
    # Row-major 3072 bytes = R plane, G plane, B plane, each 32×32.
    assert np.array_equal(ds.images[2, 1], data[2, 1024:2048].reshape(32, 32))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_cifar_batches_refuse_arbitrary_globals(tmp_path, private_cache):
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    with open(root / "test_batch", "wb") as f:
        pickle.dump({b"labels": [0], b"data": _Evil()}, f)
    with pytest.raises(ValueError, match="refusing to load global"):
        load_dataset("cifar10", "test", root=tmp_path)


def test_imagefolder_with_resize(tmp_path, private_cache):
    for cls, color, size in (("cat", (255, 0, 0), (40, 30)), ("dog", (0, 0, 255), (20, 20))):
        d = tmp_path / "train" / cls
        d.mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", size, color).save(d / f"{i}.png")
    with pytest.raises(ValueError, match="resize"):
        load_dataset("imagefolder", "train", root=tmp_path)
    ds = load_dataset("imagefolder", "train", root=tmp_path, resize=16)
    assert ds.info.class_names == ("cat", "dog") and ds.info.input_shape == (3, 16, 16)
    assert ds.labels.tolist() == [0, 0, 1, 1]
    x, _ = ds[0]
    assert torch.allclose(x[:, 8, 8], torch.tensor([1.0, 0.0, 0.0]))
    assert ds.info.mean == pytest.approx((0.5, 0.0, 0.5))


def test_channel_mean_std_exact_and_in_bounded_memory():
    import tracemalloc

    from smoothcert.data.imagefolder import channel_mean_std

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(2000, 3, 32, 32), dtype=np.uint8)
    x = images.astype(np.float64) / 255.0
    tracemalloc.start()
    mean, std = channel_mean_std(images)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)), rtol=1e-12)
    # int64 chunks of 128 images (3.1 MB each), where a float64 copy of the split is 49 MB
    assert peak < 8 << 20, peak
    flat = np.full((4, 1, 5, 5), 7, dtype=np.uint8)  # constant images: std floored, not 0
    assert channel_mean_std(flat) == ((7 / 255,), (1e-3,))


def test_crop_flip_is_a_shifted_possibly_flipped_window():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 8, 8)
    out = random_crop_flip(x, g, padding=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    flips = 0
    for b in range(64):
        windows = [
            (dy, dx, f)
            for dy in range(5)
            for dx in range(5)
            for f in (False, True)
            if torch.equal(
                out[b],
                padded[b, :, dy : dy + 8, dx : dx + 8].flip(-1)
                if f
                else padded[b, :, dy : dy + 8, dx : dx + 8],
            )
        ]
        assert windows, f"image {b} is not a crop of its padded input"
        flips += windows[0][2]
    assert 16 <= flips <= 48  # Bin(64, ½): ±4σ
    again = random_crop_flip(x, torch.Generator().manual_seed(0), padding=2)
    assert torch.equal(out, again)
