"""The documentation site's generated parts: the CLI reference covers every command and flag
of the parsers, every page in the navigation exists, and the docstring examples of the public
modules run (as doctests)."""

from __future__ import annotations

import argparse
import doctest
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

from smoothcert.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def gen_cli():
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def subparsers() -> dict[str, argparse.ArgumentParser]:
    [sub] = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_cli_reference_has_every_command_and_flag() -> None:
    page = gen_cli().render()
    commands = subparsers()
    assert len(commands) >= 10
    sections = re.split(r"^## ", page, flags=re.M)[1:]
    by_command = {s.split("`")[1].removeprefix("smoothcert "): s for s in sections}
    assert sorted(by_command) == sorted(commands)
    for name, parser in commands.items():
        section = by_command[name]
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or action.dest == "help":
                continue
            for flag in action.option_strings or [action.metavar or action.dest]:
                assert f"`{flag}" in section or f", {flag}" in section, (name, flag)


def test_cli_reference_states_defaults_and_choices() -> None:
    section = re.split(r"^## ", gen_cli().render(), flags=re.M)
    [certify] = [s for s in section if s.startswith("`smoothcert certify`")]
    n_row = next(line for line in certify.splitlines() if line.startswith("| `--n N`"))
    assert "(default: 100000)" in n_row
    assert re.search(r"--precision \{fp32,bf16\}", certify)


def nav_pages(node) -> list[str]:
    if isinstance(node, str):
        return [node] if node.endswith(".md") else []
    if isinstance(node, dict):
        return [p for v in node.values() for p in nav_pages(v)]
    return [p for item in node for p in nav_pages(item)]


def test_every_nav_page_exists_and_every_page_is_in_the_nav() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    assert "docs/gen_cli.py" in config["hooks"]
    pages = nav_pages(config["nav"])
    generated = {gen_cli().PAGE}
    assert generated <= set(pages)
    missing = [p for p in pages if p not in generated and not (DOCS / p).is_file()]
    assert not missing
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert not on_disk - set(pages), "pages left out of the navigation"


@pytest.mark.parametrize(
    "module",
    ["smoothcert.checks", "smoothcert.smoothing", "smoothcert.stats", "smoothcert.training.loop"],
)
def test_docstring_examples_run(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 2
    assert result.failed == 0
