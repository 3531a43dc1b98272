"""The one adapter from user data to (inputs, labels): every accepted form gives the same
tensors, a fault is a ParameterError naming the parameter, and both the attacks and the
distributional certificate read data through it."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from smoothcert._util.checks import ParameterError
from smoothcert._util.user_data import batch_of, dataset_length
from smoothcert.attacks.robust import as_tensors

IMAGES = np.arange(5 * 1 * 2 * 2, dtype=np.uint8).reshape(5, 1, 2, 2) * 12
LABELS = np.array([3, 1, 4, 1, 5])


class _Items:
    """A map-style data set of (float image, int label) items, like a torch Dataset."""

    def __len__(self) -> int:
        return len(LABELS)

    def __getitem__(self, i: int):
        return torch.from_numpy(IMAGES[i]).float() / 255.0, int(LABELS[i])


class _Batched(_Items):
    calls: list[list[int]]

    def __init__(self) -> None:
        self.calls = []

    def batch(self, indices):
        self.calls.append(list(indices))
        idx = np.asarray(indices)
        return torch.from_numpy(IMAGES[idx]).float() / 255.0, torch.from_numpy(LABELS[idx])


FORMS = {
    "numpy pair": lambda: (IMAGES, LABELS),
    "tensor pair": lambda: [torch.from_numpy(IMAGES), torch.from_numpy(LABELS)],
    # Floats in [0, 1] already (Python ints would not be scaled: only uint8 is).
    "python lists": lambda: ((torch.from_numpy(IMAGES).float() / 255.0).tolist(), LABELS.tolist()),
    "items": _Items,
    "list of items": lambda: [(torch.from_numpy(IMAGES[i]), int(LABELS[i])) for i in range(5)],
    "two items": lambda: [(torch.from_numpy(IMAGES[i]), int(LABELS[i])) for i in range(2)],
    "batch method": _Batched,
    "arrays only": lambda: SimpleNamespace(images=IMAGES, labels=LABELS),
}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_form_gives_the_same_scaled_examples(form):
    data = FORMS[form]()
    n = 2 if form == "two items" else 5
    assert dataset_length(data) == n
    x, y = as_tensors(data, max_examples=4)
    k = min(n, 4)
    expected = torch.from_numpy(IMAGES[:k]).float() / 255.0
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.equal(x, expected)
    assert y.tolist() == LABELS[:k].tolist()
    xb, yb = batch_of(data, [1, 0])
    assert yb.tolist() == [1, 3]
    scale = 255.0 if xb.dtype == torch.uint8 else 1.0
    assert torch.equal(xb.float() / scale, expected[[1, 0]])


def test_batch_method_is_used_with_the_indices_asked_for():
    data = _Batched()
    batch_of(data, [4, 2])
    as_tensors(data, max_examples=3)
    assert data.calls == [[4, 2], [0, 1, 2]]


def test_pair_keeps_the_data_dtypes_for_the_callers_checks():
    x, y = batch_of((IMAGES, LABELS.astype(np.float32)), [0, 2])
    assert x.dtype == torch.uint8 and y.dtype == torch.float32
    assert y.tolist() == [3.0, 4.0]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ((IMAGES, LABELS[:4]), "data has 5 inputs but 4 labels"),
        ((IMAGES[0], LABELS[0]), "data labels must hold one label per input"),
        (object(), "data must be (images, labels) or a dataset of (image, label) pairs"),
    ],
)
def test_malformed_data_is_a_parameter_error_naming_data(data, message):
    for read in (dataset_length, lambda d: as_tensors(d)):
        with pytest.raises(ParameterError) as caught:
            read(data)
        assert caught.value.parameter == "data"
        assert str(caught.value).startswith(message)


def test_a_non_integer_label_is_refused_not_truncated():
    # as_tensors used to turn the label 1.7 into class 1 without a word.
    items = [(torch.zeros(2), 0), (torch.zeros(2), 1.7), (torch.zeros(2), 2)]
    for read in (lambda d: batch_of(d, range(3)), as_tensors):
        with pytest.raises(ParameterError) as caught:
            read(items)
        assert str(caught.value) == "data must hold integer class labels; example 1 has 1.7"


def test_a_caller_names_its_own_parameter():
    with pytest.raises(ParameterError) as caught:
        batch_of([(torch.zeros(2), "cat")], [0], name="dataset")
    assert caught.value.parameter == "dataset"


def test_max_examples_below_zero_names_it():
    with pytest.raises(ParameterError, match=r"^max_examples must be >= 0, got -1$"):
        as_tensors((IMAGES, LABELS), max_examples=-1)


def test_attacks_and_the_distributional_package_share_the_adapter():
    import smoothcert.distributional as distributional
    import smoothcert.distributional.table as table

    assert distributional.batch_of is batch_of is table.batch_of
    assert distributional.dataset_length is dataset_length
