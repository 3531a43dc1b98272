"""`smoothcert <command>`: argument parsing and printing only; the work lives in the library.

Each command is a module in this package that defines::

    NAME: str                       # the sub-command, e.g. "certify"
    HELP: str                       # one line for `smoothcert --help`
    def add_arguments(parser): ...  # its flags (argparse lives only under smoothcert.cli)
    def run(args) -> int: ...       # the exit code
    PARAMETER_FLAGS: dict           # optional: library parameter -> flag where it is not
                                    # --name-with-dashes (see cli/_errors.py)
    OUTPUT_FLAGS: tuple             # optional: the flags naming the files it writes
    DISTRIBUTED: str                # optional: "data-parallel" or "sharded" under torchrun

Commands are discovered, so adding one is adding a module.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import pkgutil
import sqlite3
import sys
from collections.abc import Sequence

from smoothcert import __version__
from smoothcert.cli._errors import user_message


def _command_modules() -> list:
    modules = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "NAME") and hasattr(module, "run"):
            modules.append(module)
    return modules


def output_flags() -> dict[str, tuple[str, ...]]:
    """command -> the flags naming the files it writes, as each command declares them."""
    return {m.NAME: m.OUTPUT_FLAGS for m in _command_modules() if hasattr(m, "OUTPUT_FLAGS")}


def distributed_commands(mode: str) -> frozenset[str]:
    """The commands that use a torchrun launch's processes in ``mode`` ("data-parallel" or
    "sharded"), as each command declares it."""
    return frozenset(m.NAME for m in _command_modules() if getattr(m, "DISTRIBUTED", None) == mode)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" only where it says something: not when the help already names
    its default, and not for None or for a flag's False."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "default" in text or any(action.default is v for v in (None, False, argparse.SUPPRESS)):
            return text
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smoothcert",
        description="Certified robustness of PyTorch classifiers by randomized smoothing.",
    )
    parser.add_argument("--version", action="version", version=f"smoothcert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _command_modules():
        p = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=_HelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(
            _run=module.run,
            _flags=getattr(module, "PARAMETER_FLAGS", {}),
            _options=frozenset(p._option_string_actions),
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:
        # The reader went away (`smoothcert analyze r.db | head`): not an error of ours. Point
        # stdout at /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a killed writer
    except (ValueError, FileNotFoundError, FileExistsError, PermissionError, OSError) as exc:
        # Bad input: one line on stderr, never a traceback; a parameter the library names is
        # shown as the flag the user types (cli/_errors.py).
        message = user_message(exc, args._flags, args._options)
        print(f"smoothcert {args.command}: error: {message}", file=sys.stderr)
        return 2
    except sqlite3.DatabaseError as exc:
        # A run file damaged while in use (opening one is checked first): rows already
        # committed stay in the file.
        print(f"smoothcert {args.command}: error: run file: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"smoothcert {args.command}: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The ``smoothcert`` program (console script and ``python -m smoothcert``): :func:`main`,
    then exit with its code.

    A torchrun worker leaves by ``os._exit`` once its output is flushed: with gloo, a worker
    that has finished everything, its process group destroyed and its atexit handlers run, can
    still abort in the C++ teardown that follows ("terminate called without an active
    exception", SIGABRT; 1 of 38 two-process training runs here), and torchrun then fails the
    whole job. Every file is closed and every run committed before ``main`` returns."""
    code = main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # set by torchrun for every worker
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a broken pipe: nothing to lose
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
