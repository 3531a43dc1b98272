"""The training methods by name: the built-in ones, imported here, and any registered since.

Each method module registers its class with :func:`smoothcert.training.method.register` when
imported; this module imports every built-in one explicitly, so that importing it offers them
all (a method module imports only :mod:`smoothcert.training.method`, never this one).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from smoothcert.checks import FLOAT32_MAX

# The built-in methods, imported for their registration.
from smoothcert.training import gaussian, nal, smoothadv, standard, stn, trades, wrm  # noqa: F401
from smoothcert.training.method import METHODS, Method


def list_methods() -> list[str]:
    """The registered method names, sorted."""
    return sorted(METHODS)


def method_class(name: str) -> type[Method]:
    """The class of method ``name``; ValueError listing the choices for an unknown name."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(
            f"unknown training method {name!r}; choose one of {', '.join(sorted(METHODS))}"
        ) from None


def get_method(name: str, **hyperparameters: Any) -> Method:
    """Build method ``name``; unknown hyperparameters are an error, None means the default."""
    cls = method_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(hyperparameters) - known)
    if unknown:
        raise ValueError(f"method {name!r} has no hyperparameter(s) {', '.join(unknown)}")
    given = {k: v for k, v in hyperparameters.items() if v is not None}
    for key, value in given.items():
        # NaN, inf, or beyond float32 (1e40 is inf once on the model's device) would train
        # to NaN and be reported as a divergence that blames the learning rate.
        if isinstance(value, float) and not abs(value) <= FLOAT32_MAX:
            raise ValueError(f"{key} must be a finite number (float32 range), got {value!r}")
    return cls(**given)
