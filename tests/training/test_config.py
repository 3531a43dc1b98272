"""TrainConfig.validate: every bad field is a ParameterError naming that field."""

from __future__ import annotations

import pytest

from smoothcert._util.checks import ParameterError
from smoothcert.training import TrainConfig

BAD = [
    ("dataset", "svhn"),
    ("arch", "resnet19"),
    ("epochs", 0),
    ("batch_size", 2.0),
    ("step_size", -1),
    ("eval_batch_size", True),
    ("subset", 0),
    ("test_subset", -5),
    ("val_size", -1),
    ("optimizer", "rmsprop"),
    ("schedule", "linear"),
    ("lr", 0.0),
    ("lr", float("nan")),
    ("lr", "0.1"),
    ("momentum", 1.0),
    ("weight_decay", -1e-4),
    ("weight_decay", float("inf")),
    ("lr_decay", 0.0),
    ("lr_decay", 1.5),
    ("eval_sigma", -0.25),
    ("precision", "fp64"),
    ("channels_last", 1),
    ("checkpoint_every", "10s"),
    ("checkpoint_every", -1),
    ("workers", -1),
    ("sync_bn", "yes"),
    ("augment", "flip"),
    ("seed", -1),
    ("seed", 2**64),
]


@pytest.mark.parametrize(("name", "value"), BAD)
def test_a_bad_field_is_a_parameter_error_naming_it(name: str, value: object) -> None:
    config = TrainConfig(**{name: value})
    with pytest.raises(ParameterError) as caught:
        config.validate()
    assert caught.value.parameter == name
    assert repr(value) in caught.value.problem


def test_the_edges_of_the_intervals_are_accepted_and_ints_become_plain() -> None:
    import numpy as np

    config = TrainConfig(
        momentum=0.0,
        lr_decay=1.0,
        weight_decay=0.0,
        eval_sigma=0.0,
        seed=np.uint64(2**64 - 1),
        epochs=np.int64(3),
        channels_last=None,
        precision="auto",
        augment="auto",
    )
    config.validate()
    assert (type(config.seed), config.seed) == (int, 2**64 - 1)
    assert (type(config.epochs), config.epochs) == (int, 3)
    assert (config.lr_decay, config.momentum) == (1.0, 0.0)


def test_an_unknown_name_lists_the_choices() -> None:
    with pytest.raises(ParameterError, match=r"dataset must be one of mnist, .*; got 'svhn'"):
        TrainConfig(dataset="svhn").validate()
