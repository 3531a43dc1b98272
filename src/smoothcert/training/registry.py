"""The training methods by name: the built-in ones, imported here, and any registered since.

Each method module registers its class with :func:`smoothcert.training.method.register` when
imported; this module imports every built-in one explicitly, so that importing it offers them
all (a method module imports only :mod:`smoothcert.training.method`, never this one).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from smoothcert._util.checks import FLOAT32_MAX, ParameterError, known_names, one_of
from smoothcert.training.method import METHODS, Method

# The built-in methods, imported for their registration.
from smoothcert.training.methods import (  # noqa: F401
    consistency,
    gaussian,
    macer,
    nal,
    smoothadv,
    smoothmix,
    stability,
    standard,
    stn,
    trades,
    wrm,
)


def list_methods() -> list[str]:
    """The registered method names, sorted.

    Returns
    -------
    list of str
        The built-in methods and any registered since.

    Examples
    --------
    >>> list_methods()  # doctest: +NORMALIZE_WHITESPACE
    ['consistency', 'gaussian', 'macer', 'nal', 'smoothadv', 'smoothmix', 'stability', 'standard',
     'stn', 'trades', 'wrm']
    """
    return sorted(METHODS)


def method_class(name: str) -> type[Method]:
    """The class of method ``name``; ParameterError naming ``method``, listing the choices,
    for an unknown name."""
    return METHODS[one_of("method", name, tuple(sorted(METHODS)))]


def get_method(name: str, **hyperparameters: Any) -> Method:
    """Build training method ``name`` with the given hyperparameters.

    Parameters
    ----------
    name : str
        A registered method (:func:`list_methods`).
    **hyperparameters
        The method's dataclass fields (e.g. ``sigma``); a value of None means the default.

    Returns
    -------
    Method
        The method instance.

    Raises
    ------
    ParameterError
        Naming ``method`` if ``name`` is unknown (the message lists the choices); naming an
        unknown hyperparameter (the message lists the method's); naming a float
        hyperparameter that is NaN, infinite or beyond float32's range.

    Examples
    --------
    >>> method = get_method("gaussian", sigma=0.25)
    >>> method.hyperparameters(), method.noise_sigma
    ({'sigma': 0.25}, 0.25)
    """
    cls = method_class(name)
    known = {f.name for f in dataclasses.fields(cls)}
    known_names(hyperparameters, known, name)
    given = {k: v for k, v in hyperparameters.items() if v is not None}
    for key, value in given.items():
        # NaN, inf, or beyond float32 (1e40 is inf once on the model's device) would train
        # to NaN and be reported as a divergence that blames the learning rate.
        if isinstance(value, float) and not abs(value) <= FLOAT32_MAX:
            raise ParameterError(key, f"must be a finite number (float32 range), got {value!r}")
    return cls(**given)
