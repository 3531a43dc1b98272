"""Every command's --help: each default said once, and never an empty "(default: None)"."""

from __future__ import annotations

import re

import pytest

from smoothcert.cli import _command_modules, build_parser


@pytest.mark.parametrize("name", [m.NAME for m in _command_modules()])
def test_help_states_each_default_once(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([name, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "(default: None)" not in text
    assert "(default: False)" not in text
    # one option's help is the text up to the next option; "default" at most once in each
    options = re.split(r"\n  (?=-)", text.split("\noptions:", 1)[1])
    twice = [o.split()[0] for o in options if o.count("default") > 1]
    assert not twice, f"{name}: defaults stated twice for {twice}"


def test_numeric_defaults_still_shown(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["certify", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "same results) (default: 0)" in text  # a zero default is not dropped as "falsy"
    assert "(default: 100000)" in text


def test_computed_method_defaults_say_how(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "nal: None" not in text and "trades: None" not in text
    assert "nal: 0.5/gamma; trades: 2*eps/steps; wrm: the schedule (0.5/gamma)/sqrt(k+2)" in text
