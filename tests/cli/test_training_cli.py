"""`smoothcert train` / `fetch` on the command line: generated method flags, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from smoothcert.cli import build_parser, main


def _error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "pattern"),
    [
        (["--dataset", "svhn"], "--dataset must be one of"),
        (["--arch", "resnet19"], "--arch must be one of"),
        (["--data-root", "{tmp}/nothing"], "smoothcert fetch mnist"),
        (["--method", "gaussian", "--sigma", "-0.5"], "--sigma must be >= 0 and finite"),
        (["--epochs", "0"], "epochs must be a positive integer"),
        (["--epochs", "-3"], "epochs must be a positive integer"),
        (["--out", "{tmp}/file/sub"], "cannot write to output directory"),
        (
            ["--method", "standard", "--sigma", "0.25"],
            "--sigma do(es) not apply to method 'standard'",
        ),
        (["--method", "bogus"], "--method must be one of"),
        (["--method", "smoothadv", "--num-noise", "0"], "--num-noise must be a positive integer"),
        (["--method", "wrm", "--label-smoothing", "1"], "--label-smoothing must be in [0, 1)"),
        (["--subset", "0"], "subset"),
    ],
)
def test_bad_input_is_one_line(capsys, tmp_path, extra, pattern):
    (tmp_path / "file").write_text("a regular file")
    argv = {
        "--dataset": "mnist",
        "--arch": "lenet",
        "--epochs": "1",
        "--out": str(tmp_path / "out"),
    }
    extra = [e.replace("{tmp}", str(tmp_path)) for e in extra]
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        argv[flag] = value
    line = _error(capsys, ["train", *[t for kv in argv.items() for t in kv]])
    assert line.startswith("smoothcert train: error: ") and pattern in line
    assert not (tmp_path / "out").exists()  # nothing created on bad input


def test_help_lists_generated_method_flags_with_units():
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["train"]
    text = sub.format_help()
    assert "--sigma FLOAT" in text and "pixel units" in text and "gaussian: 0.25" in text
    for flag in (
        "--lr",
        "--weight-decay",
        "--schedule",
        "--subset",
        "--device",
        "--seed",
        "--eval-sigma",
    ):
        assert flag in text


def test_subprocess_error_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "smoothcert", "train", "--dataset", "mnist", "--arch", "cnn3",
         "--epochs", "0", "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert (
        proc.stderr.strip() == "smoothcert train: error: --epochs must be a positive integer, got 0"
    )


def test_fetch_mnist_present(capsys, mnist_test):
    assert main(["fetch", "mnist"]) == 0
    assert "mnist: present in" in capsys.readouterr().out
