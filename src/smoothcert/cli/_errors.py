"""How a library error reaches the command line: the one place that turns an exception into
the line a user reads.

The library names *parameters* (``n0``, ``root``, ``skip_fooled``), never flags: a
:class:`~smoothcert._util.checks.ParameterError` carries the parameter's name and the problem,
and :func:`user_message` puts the flag the user types in the parameter's place (:func:`flag`).
A run file holding other arguments (:class:`~smoothcert.runs.store.ConfigMismatch`) carries the
mismatching config keys, and, where one parameter resumes it, that parameter.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from smoothcert._util.checks import ParameterError

#: Parameters whose flag is the same in every command and differs from ``--name-with-dashes``.
COMMON_FLAGS: dict[str, str] = {"root": "--data-root", "trust_code": "--trust-model-code"}


def flag(parameter: str, overrides: Mapping[str, str] | None = None) -> str:
    """The flag of a library parameter: the command's ``overrides`` (its ``PARAMETER_FLAGS``),
    then :data:`COMMON_FLAGS`, else ``--`` and the name with dashes.

    Examples
    --------
    >>> flag("noise_samples"), flag("root"), flag("sigma", {"sigma": "--noise-sigma"})
    ('--noise-samples', '--data-root', '--noise-sigma')
    """
    table = {**COMMON_FLAGS, **(overrides or {})}
    return table.get(parameter) or "--" + parameter.replace("_", "-")


def user_message(
    exc: BaseException,
    overrides: Mapping[str, str] | None = None,
    options: Collection[str] | None = None,
) -> str:
    """The one line a user reads for ``exc`` (without the "smoothcert CMD: error:" prefix),
    with parameters spelled as the command's flags (``overrides``: see :func:`flag`).
    ``options``: the command's flags, when known; a parameter the command has no flag for
    (one it sets itself) keeps its library name.

    Examples
    --------
    >>> user_message(ParameterError("max_examples", "must be a positive integer, got 0"),
    ...              {"max_examples": "--max"})
    '--max must be a positive integer, got 0'
    >>> user_message(ParameterError(("input_mean", "input_std"), "go together"))
    '--input-mean and --input-std go together'
    >>> user_message(FileNotFoundError("model m.onnx does not exist"))
    'model m.onnx does not exist'
    """
    if isinstance(exc, ParameterError):
        names = " and ".join(_spell(p, overrides, options) for p in exc.parameters)
        return f"{names} {exc.problem}"
    resume = getattr(exc, "resume_parameter", None)
    if resume is not None and _is_config_mismatch(exc):
        # A run file one parameter resumes: the store's message, then that parameter's flag.
        return f"{exc.mismatch}; {exc.reason}: resume it with {_spell(resume, overrides, options)}"
    return str(exc)


def _spell(parameter: str, overrides: Mapping[str, str] | None, options) -> str:
    name = flag(parameter, overrides)
    return name if options is None or name in options else parameter


def _is_config_mismatch(exc: BaseException) -> bool:
    from smoothcert.runs.store import ConfigMismatch

    return isinstance(exc, ConfigMismatch)
