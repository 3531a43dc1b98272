"""Flags generated from dataclass fields: those of every registered training method, and
one field's flag (:func:`add_field_flag`, for :class:`~smoothcert.training.TrainConfig`).

A field ``num_noise: int`` with ``metadata={"help": ...}`` becomes ``--num-noise N``; left
out, the method's own default applies; methods sharing a field name share the flag. A flag
given for a method that lacks the field is an error (see :func:`method_options_from_args`).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

_DEST_PREFIX = "method__"


def _field_type(hint: Any) -> Any:
    """float | int | str | bool for argparse, from a (possibly Optional) annotation."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args:  # Optional[T] / T | None
        hint = args[0]
    return hint if hint in (int, float, str, bool) else str


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def method_fields() -> dict[str, list[tuple[str, dataclasses.Field, Any]]]:
    """field name -> [(method name, field, resolved type)] over every registered method."""
    from smoothcert.training.registry import list_methods, method_class

    found: dict[str, list[tuple[str, dataclasses.Field, Any]]] = {}
    for name in list_methods():
        cls = method_class(name)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            found.setdefault(f.name, []).append((name, f, _field_type(hints.get(f.name, str))))
    return found


def add_method_options(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Add a flag per hyperparameter name; returns hyperparameter -> flag for the flags added
    (their dests carry a prefix, so a method's ParameterError maps to its flag through this)."""
    added: dict[str, str] = {}
    group = parser.add_argument_group("method hyperparameters (default: the method's own)")
    taken = set(parser._option_string_actions)  # flags of the command itself win on a clash
    for fname, owners in sorted(method_fields().items()):
        flag = "--" + fname.replace("_", "-")
        if flag in taken:
            continue
        _, f, ftype = owners[0]
        parts = []
        for method, mf, _ in owners:
            default = mf.default if mf.default is not dataclasses.MISSING else "required"
            # a None default is computed by the method; its metadata says how
            parts.append(f"{method}: {mf.metadata.get('default_text', default)}")
        help_text = f.metadata.get("help", fname)
        group.add_argument(
            flag,
            dest=_DEST_PREFIX + fname,
            type=_parse_bool if ftype is bool else ftype,
            default=argparse.SUPPRESS,  # absent: the method's own default
            metavar=ftype.__name__.upper() if ftype is not bool else "BOOL",
            help=f"{help_text} [defaults: {'; '.join(parts)}]",
        )
        added[fname] = flag
    return added


def method_options_from_args(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The method hyperparameters given on the command line; error for flags the method lacks."""
    from smoothcert.training.registry import method_class

    cls = method_class(method)
    own = {f.name for f in dataclasses.fields(cls)}
    given = {
        key[len(_DEST_PREFIX) :]: value
        for key, value in vars(args).items()
        if key.startswith(_DEST_PREFIX) and value is not None
    }
    foreign = sorted(k for k in given if k not in own)
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        has = ", ".join("--" + k.replace("_", "-") for k in sorted(own)) or "no hyperparameters"
        raise ValueError(f"{flags} do(es) not apply to method {method!r} (it takes: {has})")
    return given


def _flag_type(hint: Any) -> Any:
    """int or float for argparse from a (possibly Optional) annotation; None (a string) for
    anything else, mixed unions such as ``int | str`` included."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return args[0] if len(args) == 1 and args[0] in (int, float) else None


def add_field_flag(
    group: argparse._ArgumentGroup, cls: type, name: str, flag: str | None = None, **overrides: Any
) -> argparse.Action:
    """The flag of dataclass field ``cls.name``, from the field: ``--name-with-dashes``, its
    type, default and ``metadata`` ("help", "metavar", "choices"); a bool field is a switch.

    ``overrides`` are argparse keywords that win over the field's (a command's own default or
    help where its meaning differs); a ``required`` flag has no default.
    """
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    kwargs: dict[str, Any] = {"help": f.metadata["help"]}
    hint = typing.get_type_hints(cls)[name]
    if hint is bool:
        kwargs["action"] = "store_true"
    else:
        kwargs["type"] = _flag_type(hint)
        for key in ("metavar", "choices"):
            if key in f.metadata:
                kwargs[key] = f.metadata[key]
    if f.default is not dataclasses.MISSING:
        kwargs["default"] = f.default
    kwargs.update(overrides)
    if kwargs.get("required"):
        kwargs.pop("default", None)
    if kwargs.get("type") is None:
        kwargs.pop("type", None)
    return group.add_argument(flag or "--" + name.replace("_", "-"), **kwargs)
