"""`smoothcert fetch cifar10`: the official python batches over HTTP, checked against the
published MD5, tested against a local server on 127.0.0.1 serving a small generated archive
(this machine has no internet); and what a user without CIFAR-10 is told."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from helpers import smoothcert, write_cifar_batch
from smoothcert.data import fetch, load_dataset
from smoothcert.data.base import DatasetNotFound


def _archive(folder: Path) -> bytes:
    """A cifar-10-python.tar.gz in the official layout: 7 batches of 4 images each."""
    rng = np.random.default_rng(0)
    staged = folder / "cifar-10-batches-py"
    staged.mkdir()
    for name in fetch.CIFAR10_FILES:
        data = rng.integers(0, 256, size=(4, 3072), dtype=np.uint8)
        write_cifar_batch(staged / name, data, [0, 1, 2, 9])
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(staged, arcname="cifar-10-batches-py")
    return buf.getvalue()


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields (base url, www folder)."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def no_cifar(tmp_path, monkeypatch):
    """An empty cache and no JPEG copy: a user who has never fetched CIFAR-10."""
    monkeypatch.setenv("SMOOTHCERT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SMOOTHCERT_CIFAR10_JPEG", str(tmp_path / "no-jpeg"))


def test_fetch_cifar10_downloads_checks_md5_and_loads(server, no_cifar, tmp_path, monkeypatch):
    base, www = server
    blob = _archive(tmp_path)
    (www / "cifar-10-python.tar.gz").write_bytes(blob)
    monkeypatch.setattr(fetch, "CIFAR10_URL", f"{base}/cifar-10-python.tar.gz")
    monkeypatch.setattr(fetch, "CIFAR10_MD5", hashlib.md5(blob).hexdigest())
    done = smoothcert("fetch", "cifar10")
    target = tmp_path / "cache" / "cifar10" / "cifar-10-batches-py"
    assert done.stdout.strip() == f"cifar10: fetched in {target}"
    assert sorted(p.name for p in target.iterdir()) == sorted(fetch.CIFAR10_FILES)
    test = load_dataset("cifar10", "test")  # the default location is the fetched batches
    assert test.info.name == "CIFAR-10" and len(test) == 4
    assert test.labels.tolist() == [0, 1, 2, 9]
    assert len(load_dataset("cifar10", "train")) == 20
    assert smoothcert("fetch", "cifar10").stdout.strip() == f"cifar10: present in {target}"


def test_a_wrong_checksum_installs_nothing(server, no_cifar, tmp_path, monkeypatch):
    base, www = server
    (www / "cifar-10-python.tar.gz").write_bytes(_archive(tmp_path))
    monkeypatch.setattr(fetch, "CIFAR10_URL", f"{base}/cifar-10-python.tar.gz")
    # the real published checksum: the generated archive does not match it
    result = smoothcert("fetch", "cifar10", check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "does not match the published MD5" in result.stderr
    assert fetch.CIFAR10_MD5 == "c58f30108f718f92721af3b95e74349a"
    cache = tmp_path / "cache" / "cifar10"
    assert not cache.exists() or list(cache.iterdir()) == []
    # a server error is one line too
    monkeypatch.setattr(fetch, "CIFAR10_URL", f"{base}/nothing-here.tar.gz")
    missing = smoothcert("fetch", "cifar10", check=False)
    assert missing.returncode == 2 and "cannot download" in missing.stderr
    assert missing.stderr.count("\n") == 1


def test_missing_cifar10_says_how_in_the_callers_words(no_cifar, tmp_path) -> None:
    with pytest.raises(DatasetNotFound) as info:
        load_dataset("cifar10", "test")
    api = str(info.value)
    assert info.value.parameter == "root" and api.startswith("root (here ")
    assert "fetch_cifar10()" in api and "--" not in api  # no CLI flags
    result = smoothcert("train", "--dataset", "cifar10", "--arch", "cnn3", "--epochs", "1",
                        "--out", tmp_path / "run", "--no-progress", check=False)  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "run `smoothcert fetch cifar10`" in result.stderr and "--data-root" in result.stderr
    assert not (tmp_path / "run").exists()  # a refused command leaves nothing behind


@pytest.mark.parametrize("stride", [1, 2, 5, 10, 20, 50, 100])
def test_jpeg_order_mixes_classes_under_every_stride_and_balances_every_block(stride):
    """Every 20th test image (the papers' CIFAR-10 protocol) must not be one class: with a
    plain interleave (class = index mod 10) it was, and `--skip 20` certified only airplanes."""
    from smoothcert.data.cifar import jpeg_order

    order = jpeg_order(1000, 10)
    assert sorted(order) == [(c, k) for c in range(10) for k in range(1000)]  # a permutation
    for block in range(1000):  # any prefix of whole blocks is exactly balanced
        assert sorted(c for c, _ in order[10 * block : 10 * block + 10]) == list(range(10))
    assert all(order[10 * b + i][1] == b for b in range(1000) for i in range(10))
    picked = np.bincount([c for c, _ in order[::stride]][:500], minlength=10)
    assert picked.min() >= 0.05 * picked.sum() and picked.max() <= 0.16 * picked.sum()


def test_jpeg_original_indices_send_image_k_of_each_class_to_its_official_place() -> None:
    # The copy holds, per class, the official images of that class in their official order,
    # presented in jpeg_order; the mapping must find each one's official index.
    import numpy as np

    from smoothcert._util.checks import ParameterError
    from smoothcert.data.cifar import jpeg_order, jpeg_original_indices

    official = np.random.default_rng(3).permutation(np.repeat(np.arange(10), 5))
    mapped = jpeg_original_indices(official)
    assert sorted(mapped.tolist()) == list(range(50))  # a permutation of the official set
    for i, (c, k) in enumerate(jpeg_order(5, 10)):
        assert official[mapped[i]] == c
        assert mapped[i] == np.flatnonzero(official == c)[k]  # the k-th image of class c
    with pytest.raises(ParameterError, match="class-balanced"):
        jpeg_original_indices(official[:-1])
