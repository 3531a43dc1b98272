"""The documentation site's generated parts: the CLI reference covers every command and flag
of the parsers, every page in the navigation exists, every member the API reference shows has
numpydoc Parameters/Returns sections, and the docstring examples of the public modules run (as
doctests)."""

from __future__ import annotations

import argparse
import dataclasses
import doctest
import importlib
import importlib.util
import inspect
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
    assert re.search(r"--precision \{auto,fp32,bf16\}", certify)


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


def api_pages() -> dict[str, list[str] | None]:
    """Every ``::: module`` block of docs/reference/api/*.md: module -> its ``members:`` list
    (None when the block has none, so mkdocstrings shows the module's public names)."""
    yaml = pytest.importorskip("yaml")
    blocks: dict[str, list[str] | None] = {}
    for page in sorted((DOCS / "reference" / "api").glob("*.md")):
        for match in re.finditer(r"^::: (\S+)\n((?:[ \t]+\S.*\n?)*)", page.read_text(), re.M):
            options = (yaml.safe_load(match.group(2) or "") or {}).get("options") or {}
            members = options.get("members")
            blocks[match.group(1)] = members if isinstance(members, list) else None
    return blocks


def shown_members(module_name: str, members: list[str] | None) -> dict[str, object]:
    """The members the API page shows for ``module_name``: the ``members:`` list, else
    ``__all__``, else the public names defined in the module itself."""
    module = importlib.import_module(module_name)
    if members is None:
        members = getattr(module, "__all__", None)
    if members is None:
        members = [
            name
            for name, value in vars(module).items()
            if not name.startswith("_") and getattr(value, "__module__", None) == module_name
        ]
    return {name: getattr(module, name) for name in members}


def has_section(doc: str | None, *titles: str) -> bool:
    """True when the (own, not inherited) docstring ``doc`` has a numpydoc section named one
    of ``titles`` (the title, then a line of dashes)."""
    text = inspect.cleandoc(doc or "")
    return any(re.search(rf"^{title}\n-{{3,}}$", text, re.M) for title in titles)


def takes_parameters(signature: inspect.Signature) -> bool:
    return any(name not in ("self", "cls") for name in signature.parameters)


def returns_something(signature: inspect.Signature) -> bool:
    # Annotations are strings under `from __future__ import annotations`.
    return signature.return_annotation not in (None, "None", inspect.Signature.empty)


def docstring_problems(where: str, function: object, doc: str | None) -> list[str]:
    signature = inspect.signature(function)
    problems = []
    if takes_parameters(signature) and not has_section(doc, "Parameters"):
        problems.append(f"{where}: no Parameters section")
    if returns_something(signature) and not has_section(doc, "Returns", "Yields"):
        problems.append(f"{where}: no Returns/Yields section")
    return problems


def hand_written_init(cls: type) -> object | None:
    """The class's own ``__init__`` when written by hand (not generated by dataclass)."""
    init = vars(cls).get("__init__")
    if init is None:
        return None
    if dataclasses.is_dataclass(cls) and cls.__dataclass_params__.init:
        return None
    return init


def api_members() -> list[tuple[str, object]]:
    """(dotted name, object) of every class and function the API pages show, and of every
    public method and property defined in those classes (mkdocstrings shows no inherited
    members)."""
    pages = api_pages()
    assert len(pages) >= 10
    found: list[tuple[str, object]] = []
    for module_name, members in pages.items():
        for name, member in shown_members(module_name, members).items():
            where = f"{module_name}.{name}"
            if inspect.isclass(member):
                found.append((where, member))
                for attr, value in vars(member).items():
                    if attr.startswith("_"):
                        continue
                    if isinstance(value, (staticmethod, classmethod)):
                        value = value.__func__
                    if isinstance(value, property) or inspect.isfunction(value):
                        found.append((f"{where}.{attr}", value))
            elif inspect.isfunction(member):
                found.append((where, member))
    return found


def test_api_reference_members_document_parameters_and_returns() -> None:
    problems: list[str] = []
    for where, member in api_members():
        if inspect.isclass(member):
            init = hand_written_init(member)
            # numpydoc documents the constructor's parameters in the class docstring
            # (mkdocstrings hides __init__).
            if (
                init is not None
                and takes_parameters(inspect.signature(init))
                and not has_section(member.__doc__, "Parameters")
            ):
                problems.append(f"{where}: no Parameters section for __init__")
        elif inspect.isfunction(member):
            problems += docstring_problems(where, member, member.__doc__)
    assert not problems, "\n".join(problems)


def test_api_reference_members_have_a_one_line_summary() -> None:
    problems = []
    for where, member in api_members():
        doc = member.fget.__doc__ if isinstance(member, property) else member.__doc__
        text = inspect.cleandoc(doc or "")
        if inspect.isclass(member) and text.startswith(f"{member.__name__}("):
            text = ""  # the signature dataclass puts in place of a missing docstring
        if not text:
            problems.append(f"{where}: no docstring")
        elif "\n" in text.split("\n\n")[0]:
            problems.append(f"{where}: the summary is more than one line")
    assert not problems, "\n".join(problems)


def test_every_module_s_doctests_run_with_the_suite() -> None:
    """pytest collects the docstring examples of every module under src/ (--doctest-modules),
    not a hand-kept list of modules."""
    import tomllib

    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in options["addopts"].split()
    assert "src" in options["testpaths"]


@pytest.mark.parametrize(
    "module",
    [
        "smoothcert.certify.adaptive",
        "smoothcert.analysis.certify",
        "smoothcert._util.checks",
        "smoothcert.experiments.schedule",
        "smoothcert._util.hardware",
        "smoothcert.models.create",
        "smoothcert.models.registry",
        "smoothcert.certify.smoothing",
        "smoothcert.certify.stats",
        "smoothcert.training.config",
        "smoothcert.training.registry",
    ],
)
def test_the_api_reference_modules_show_examples(module: str) -> None:
    """The modules of the API reference pages show at least two runnable examples (they run
    with the suite, see above)."""
    tests = doctest.DocTestFinder().find(importlib.import_module(module))
    assert sum(len(test.examples) for test in tests) >= 2
