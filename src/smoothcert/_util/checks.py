"""Checks of scalar arguments, shared by every layer (no torch, no numpy import).

Each check returns the value in its canonical Python type, or raises :class:`ParameterError`
naming the parameter. The library speaks of parameters (``n0``, ``alpha``); the command line
translates a parameter to its flag (``--n0``) when it reports the error, so a message never
names a flag the caller did not use.

Examples
--------
>>> positive_int("n0", 100)
100
>>> probability("alpha", 1.5)
Traceback (most recent call last):
...
smoothcert._util.checks.ParameterError: alpha must be in (0, 1), got 1.5
"""

from __future__ import annotations

import math
import numbers

FLOAT32_MAX = 3.4028234663852886e38
"""The largest finite float32: a number beyond it becomes inf inside a float32 model."""


class ParameterError(ValueError):
    """A bad value for the parameter ``parameter``: the error every check raises.

    A :class:`ValueError`, so code that catches ValueError keeps working. ``str(error)`` reads
    "``parameter`` ``problem``"; the CLI shows the same problem after the parameter's flag
    (the one way a library error reaches the command line in the user's words).

    Parameters
    ----------
    parameter : str or tuple of str
        The name of the argument at fault, as the function that refused it spells it
        (``"n0"``, ``"alpha"``); kept as the attribute ``parameter``. A tuple names arguments
        that are at fault together (``("input_mean", "input_std")``): the message joins them
        with "and", ``parameter`` is the first and ``parameters`` all of them.
    problem : str
        What is wrong with it, e.g. ``"must be a positive integer, got 0"``; kept as the
        attribute ``problem``. It must read well after the parameter's name and after its
        flag alike, so it never names a parameter or a flag itself.

    Examples
    --------
    >>> try:
    ...     positive_int("n0", 0)
    ... except ParameterError as error:
    ...     print(error.parameter, "|", error.problem)
    n0 | must be a positive integer, got 0
    >>> str(ParameterError("sigma", "must be > 0"))
    'sigma must be > 0'
    >>> error = ParameterError(("input_mean", "input_std"), "go together: give both or neither")
    >>> str(error), error.parameters
    ('input_mean and input_std go together: give both or neither', ('input_mean', 'input_std'))
    """

    def __init__(self, parameter: str | tuple[str, ...], problem: str) -> None:
        names = (parameter,) if isinstance(parameter, str) else tuple(parameter)
        super().__init__(f"{' and '.join(names)} {problem}")
        self.parameters = names
        self.parameter = names[0]
        self.problem = problem


class MissingFileError(ParameterError, FileNotFoundError):
    """A parameter names a file or folder that is not there: a :class:`ParameterError` and a
    :class:`FileNotFoundError` alike, so callers that catch either keep working.

    Examples
    --------
    >>> error = MissingFileError("weights", "w.safetensors does not exist")
    >>> isinstance(error, FileNotFoundError), str(error)
    (True, 'weights w.safetensors does not exist')
    """


def is_real(value: object) -> bool:
    """Whether ``value`` is a real scalar: int, float or a numpy integer/floating scalar.

    A bool is not (True would otherwise pass silently as 1), nor is a string.

    Parameters
    ----------
    value : object
        Any value.

    Returns
    -------
    bool
        True for a real scalar.

    Examples
    --------
    >>> is_real(0.5), is_real(3), is_real(True), is_real("1")
    (True, True, False, False)
    """
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_integer(value: object) -> bool:
    """Whether ``value`` is an integer: int or a numpy integer, but not a bool.

    Parameters
    ----------
    value : object
        Any value.

    Returns
    -------
    bool
        True for an integer; a float with an integral value (3.0) is not one.

    Examples
    --------
    >>> is_integer(3), is_integer(3.0), is_integer(False)
    (True, False, False)
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def integer_at_least(name: str, value: object, minimum: int) -> int:
    """``value`` as an int, refused unless it is an integer >= ``minimum``.

    Parameters
    ----------
    name : str
        The parameter's name, for the error.
    value : object
        The value to check.
    minimum : int
        The smallest value accepted.

    Returns
    -------
    int
        ``value`` as a Python int.

    Raises
    ------
    ParameterError
        If ``value`` is not an integer (a bool or a float is not) or is below ``minimum``.

    Examples
    --------
    >>> integer_at_least("num_classes", 10, 2)
    10
    >>> integer_at_least("num_classes", 1, 2)
    Traceback (most recent call last):
    ...
    smoothcert._util.checks.ParameterError: num_classes must be an integer >= 2, got 1
    """
    if not is_integer(value) or value < minimum:  # type: ignore[operator]
        kind = {0: "an integer >= 0", 1: "a positive integer"}.get(
            minimum, f"an integer >= {minimum}"
        )
        raise ParameterError(name, f"must be {kind}, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def positive_int(name: str, value: object) -> int:
    """``value`` as an int, refused unless it is an integer >= 1.

    Parameters
    ----------
    name : str
        The parameter's name, for the error.
    value : object
        The value to check.

    Returns
    -------
    int
        ``value`` as a Python int.

    Raises
    ------
    ParameterError
        If ``value`` is not a positive integer.

    Examples
    --------
    >>> positive_int("batch_size", 1000)
    1000
    >>> positive_int("n0", 0)
    Traceback (most recent call last):
    ...
    smoothcert._util.checks.ParameterError: n0 must be a positive integer, got 0
    """
    return integer_at_least(name, value, 1)


def optional_positive_int(name: str, value: object) -> int | None:
    """None, or ``value`` as a positive int (for an optional limit).

    Parameters
    ----------
    name : str
        The parameter's name, for the error.
    value : object
        None, or the value to check.

    Returns
    -------
    int or None
        None when ``value`` is None, else ``value`` as a Python int.

    Raises
    ------
    ParameterError
        If ``value`` is neither None nor a positive integer.

    Examples
    --------
    >>> optional_positive_int("max_examples", None) is None
    True
    >>> optional_positive_int("max_examples", 500)
    500
    """
    return None if value is None else positive_int(name, value)


def finite_real(
    name: str, value: object, *, positive: bool = False, nonnegative: bool = False
) -> float:
    """``value`` as a float, refused unless it is a real number finite in float32.

    The models compute in float32, where 1e40 is already inf, so the bound is
    ``FLOAT32_MAX`` rather than float64's.

    Parameters
    ----------
    name : str
        The parameter's name, for the error.
    value : object
        The value to check.
    positive : bool, default False
        Also refuse values <= 0.
    nonnegative : bool, default False
        Also refuse values < 0 (ignored when ``positive`` is set).

    Returns
    -------
    float
        ``value`` as a Python float.

    Raises
    ------
    ParameterError
        If ``value`` is not a real number, is NaN or beyond float32's range, or breaks the
        sign asked for.

    Examples
    --------
    >>> finite_real("sigma", 1, positive=True)
    1.0
    >>> finite_real("sigma", 0.0, positive=True)
    Traceback (most recent call last):
    ...
    smoothcert._util.checks.ParameterError: sigma must be > 0 and finite (float32), got 0.0
    """
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
    """``value`` as a float in (0, 1); ``allow_zero`` / ``allow_one`` close either end.

    Parameters
    ----------
    name : str
        The parameter's name, for the error.
    value : object
        The value to check.
    allow_zero : bool, default False
        Accept 0.
    allow_one : bool, default False
        Accept 1.

    Returns
    -------
    float
        ``value`` as a Python float.

    Raises
    ------
    ParameterError
        If ``value`` is not a real number in the interval (NaN never is).

    Examples
    --------
    >>> probability("alpha", 0.001)
    0.001
    >>> probability("rho", 1, allow_one=True)
    1.0
    """
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
    """``value`` if it is one of the strings ``choices``.

    Parameters
    ----------
    name : str
        The parameter's name, for the error.
    value : object
        The value to check.
    choices : tuple of str
        The accepted strings, in the order the error lists them.

    Returns
    -------
    str
        ``value``.

    Raises
    ------
    ParameterError
        If ``value`` is not one of ``choices``.

    Examples
    --------
    >>> one_of("precision", "bf16", ("fp32", "bf16"))
    'bf16'
    >>> one_of("precision", "fp16", ("fp32", "bf16"))
    Traceback (most recent call last):
    ...
    smoothcert._util.checks.ParameterError: precision must be one of fp32, bf16; got 'fp16'
    """
    if not isinstance(value, str) or value not in choices:
        raise ParameterError(name, f"must be one of {', '.join(choices)}; got {value!r}")
    return value


def boolean(name: str, value: object, *, allow_none: bool = False) -> bool | None:
    """``value`` if it is True or False (or None, with ``allow_none``).

    A 1 or "yes" is refused: a switch is a bool, never a truthy stand-in for one.

    Parameters
    ----------
    name : str
        The parameter's name, for the error.
    value : object
        The value to check.
    allow_none : bool, default False
        Accept None too (a switch whose default is decided later).

    Returns
    -------
    bool or None
        ``value``.

    Raises
    ------
    ParameterError
        If ``value`` is not a bool (nor None where allowed).

    Examples
    --------
    >>> boolean("sync_bn", False)
    False
    >>> boolean("channels_last", 1, allow_none=True)
    Traceback (most recent call last):
    ...
    smoothcert._util.checks.ParameterError: channels_last must be True, False or None, got 1
    """
    if isinstance(value, bool) or (allow_none and value is None):
        return value
    accepted = "True, False or None" if allow_none else "True or False"
    raise ParameterError(name, f"must be {accepted}, got {value!r}")


def integer_below(name: str, value: object, minimum: int, limit: int, limit_text: str) -> int:
    """``value`` as an int, refused unless it is an integer in [``minimum``, ``limit``).

    Parameters
    ----------
    name : str
        The parameter's name, for the error.
    value : object
        The value to check.
    minimum : int
        The smallest value accepted.
    limit : int
        The first value refused above.
    limit_text : str
        How the error writes ``limit`` (``"2**64"`` reads better than its digits).

    Returns
    -------
    int
        ``value`` as a Python int.

    Raises
    ------
    ParameterError
        If ``value`` is not an integer or lies outside the interval.

    Examples
    --------
    >>> integer_below("seed", 7, 0, 2**64, "2**64")
    7
    >>> integer_below("seed", -1, 0, 2**64, "2**64")
    Traceback (most recent call last):
    ...
    smoothcert._util.checks.ParameterError: seed must be an integer in [0, 2**64), got -1
    """
    if not is_integer(value) or not minimum <= value < limit:  # type: ignore[operator]
        raise ParameterError(
            name, f"must be an integer in [{minimum}, {limit_text}), got {value!r}"
        )
    return int(value)  # type: ignore[call-overload]


def known_names(given: object, known: object, owner: str, kind: str = "hyperparameter") -> None:
    """Refuse the names of ``given`` (a mapping or an iterable of names) outside ``known``: a
    ParameterError naming the unknown ones, listing those ``owner`` has.

    Examples
    --------
    >>> known_names({"sigma": 0.25}, {"sigma"}, "gaussian")
    >>> known_names({"eps": 0.5}, {"sigma", "lam"}, "stn")
    Traceback (most recent call last):
    ...
    smoothcert._util.checks.ParameterError: eps is not a hyperparameter of stn; it has: lam, sigma
    """
    unknown = tuple(sorted(set(given) - set(known)))  # type: ignore[call-overload]
    if not unknown:
        return
    has = ", ".join(sorted(known))  # type: ignore[call-overload]
    verb = f"is not a {kind}" if len(unknown) == 1 else f"are not {kind}s"
    raise ParameterError(
        unknown, f"{verb} of {owner}; " + (f"it has: {has}" if has else "it has none")
    )


def optional_input_shape(shape: object) -> tuple[int, ...] | None:
    """The shape of one input as a tuple of positive ints (None stays None)."""
    if shape is None:
        return None
    try:
        dims = tuple(shape)  # type: ignore[call-overload]
    except TypeError:
        dims = None
    if dims is None or not all(is_integer(d) and d >= 1 for d in dims):
        raise ParameterError(
            "input_shape",
            f"must be a sequence of positive integers (the shape of one input, e.g. "
            f"(1, 28, 28)), got {shape!r}",
        )
    return tuple(int(d) for d in dims)
