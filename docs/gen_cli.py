"""The CLI reference page, generated from the argparse parsers so that it never drifts.

MkDocs runs this file as a hook (``hooks:`` in mkdocs.yml): ``on_files`` adds
``reference/cli.md`` to the site, built from ``smoothcert.cli.build_parser()`` at build time.
Run it directly to print the page: ``python docs/gen_cli.py``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from smoothcert.cli import _command_modules, build_parser

if TYPE_CHECKING:  # MkDocs is needed only to build the site, not to print the page
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files

PAGE = "reference/cli.md"


def _cell(text: str) -> str:
    """One markdown table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _invocation(action: argparse.Action) -> str:
    """How the flag is written, e.g. ``--radii R [R ...]`` or ``CKPT``."""
    formatter = argparse.HelpFormatter("smoothcert")
    if not action.option_strings:
        # by name (its choices, if any, go to the meaning column)
        name = action.metavar or action.dest
        return f"{name} [{name} ...]" if action.nargs in ("+", "*") else name
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    args = formatter._format_args(action, action.metavar or action.dest.upper())
    return ", ".join(f"{opt} {args}" for opt in action.option_strings)


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage line as ``--help`` prints it, wrapped at 80 columns whatever the terminal."""
    formatter = argparse.HelpFormatter(parser.prog, width=80)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    return formatter.format_help()


def _command_section(name: str, parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    lines = [f"## `smoothcert {name}`", "", _cell(parser.description or ""), "", "```text"]
    lines += [_usage(parser).rstrip(), "```", ""]
    rows = [a for a in parser._actions if a.help != argparse.SUPPRESS and a.dest != "help"]
    if rows:
        lines += ["| argument | meaning |", "|---|---|"]
        for action in rows:
            text = formatter._expand_help(action) if action.help else ""
            if action.choices is not None and "{" not in _invocation(action):
                text += f" (one of: {', '.join(map(str, action.choices))})"
            lines.append(f"| `{_cell(_invocation(action))}` | {_cell(text)} |")
        lines.append("")
    return lines


def render() -> str:
    """The whole CLI reference page as markdown."""
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    names = [m.NAME for m in _command_modules()]
    lines = [
        "# Command-line reference",
        "",
        "Generated from the argument parsers of this version of smoothcert; "
        "`smoothcert COMMAND --help` prints the same text. Units: σ, ε and radii are L2 "
        "distances in [0, 1] pixel units.",
        "",
        "| command | what it does |",
        "|---|---|",
    ]
    helps = {c.dest: c.help for c in sub._choices_actions}
    lines += [f"| [`{n}`](#smoothcert-{n}) | {_cell(helps.get(n) or '')} |" for n in names]
    lines.append("")
    for name in names:
        lines += _command_section(name, sub.choices[name])
    return "\n".join(lines)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """MkDocs hook: add the generated page to the site's files."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render()))
    return files


if __name__ == "__main__":
    print(render())
