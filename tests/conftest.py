"""Shared fixtures. Real-data fixtures skip when the data is absent, except under
SMOOTHCERT_REQUIRE_DATA=1 (set by scripts/test.sh, which fetches MNIST first), where absence is
a failure. CIFAR-10 is not fetched by setup (users bring the official batches): its absence
fails only under SMOOTHCERT_REQUIRE_CIFAR10=1, which CI sets (.ci/run), and skips elsewhere."""

from __future__ import annotations

import os

import pytest
import torch


def _dataset_or_skip(name: str, split: str):
    from smoothcert.data import load_dataset

    try:
        return load_dataset(name, split)
    except FileNotFoundError as exc:
        flag = "SMOOTHCERT_REQUIRE_CIFAR10" if name == "cifar10" else "SMOOTHCERT_REQUIRE_DATA"
        if os.environ.get(flag) == "1":
            pytest.fail(f"required dataset missing: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def mnist_train():
    return _dataset_or_skip("mnist", "train")


@pytest.fixture(scope="session")
def mnist_test():
    return _dataset_or_skip("mnist", "test")


@pytest.fixture(scope="session")
def cifar10_test():
    return _dataset_or_skip("cifar10", "test")


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_torch_thread():
    """For modules of tiny models (``pytestmark = pytest.mark.usefixtures(...)``): one torch
    thread is far faster than a pool fighting over a shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
