"""Checks of scalar arguments, shared by every layer (no torch, no numpy import).

Each check returns the value in its canonical Python type, or raises :class:`ParameterError`
naming the parameter. The library speaks of parameters (``n0``, ``alpha``); the command line
translates a parameter to its flag (``--n0``) when it reports the error, so a message never
names a flag the caller did not use.

>>> positive_int("n0", 100)
100
>>> probability("alpha", 1.5)
Traceback (most recent call last):
...
smoothcert.checks.ParameterError: alpha must be in (0, 1), got 1.5
"""

from __future__ import annotations

import math
import numbers

#: The largest finite float32: a number beyond it becomes inf inside a float32 model.
FLOAT32_MAX = 3.4028234663852886e38


class ParameterError(ValueError):
    """A bad value for the parameter ``parameter``.

    ``str(error)`` reads "``parameter`` ``problem``"; the CLI shows the same problem after the
    parameter's flag.
    """

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter} {problem}")
        self.parameter = parameter
        self.problem = problem


def is_real(value: object) -> bool:
    """A real scalar: int, float or a numpy integer/floating scalar, but not a bool (True
    would otherwise pass silently as 1)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value: object) -> bool:
    """An integer: int or a numpy integer, but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer_at_least(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, refused unless it is an integer >= ``minimum``."""
    if not is_integer(value) or value < minimum:  # type: ignore[operator]
        kind = {0: "an integer >= 0", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        raise ParameterError(name, f"must be {kind}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def positive_int(name: str, value: object) -> int:
    """``value`` as an int, refused unless it is an integer >= 1."""
    return integer_at_least(name, value, 1)


def optional_positive_int(name: str, value: object) -> int | None:
    """None, or ``value`` as a positive int."""
    return None if value is None else positive_int(name, value)


def finite_real(
    name: str, value: object, *, positive: bool = False, nonnegative: bool = False
) -> float:
    """``value`` as a float, refused unless it is a real number, finite in float32 (the
    models compute in float32, where 1e40 is already inf) and, when asked, > 0 or >= 0."""
    ok = is_real(value) and abs(value) <= FLOAT32_MAX  # type: ignore[arg-type]
    if ok and positive:
        ok = value > 0  # type: ignore[operator]
    elif ok and nonnegative:
        ok = value >= 0  # type: ignore[operator]
    if not ok:
        bound = "> 0 and " if positive else ">= 0 and " if nonnegative else ""
        raise ParameterError(name, f"must be {bound}finite (float32), got {value!r}")
    return float(value)  # type: ignore[arg-type]


def probability(
    name: str, value: object, *, allow_zero: bool = False, allow_one: bool = False
) -> float:
    """``value`` as a float in (0, 1); ``allow_zero`` / ``allow_one`` close either end."""
    ok = is_real(value) and not math.isnan(value)  # type: ignore[arg-type]
    if ok:
        low_ok = value >= 0 if allow_zero else value > 0  # type: ignore[operator]
        high_ok = value <= 1 if allow_one else value < 1  # type: ignore[operator]
        ok = low_ok and high_ok
    if not ok:
        interval = f"{'[' if allow_zero else '('}0, 1{']' if allow_one else ')'}"
        raise ParameterError(name, f"must be in {interval}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def one_of(name: str, value: object, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of the strings ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ParameterError(name, f"must be one of {', '.join(choices)}; got {value!r}")
    return value
