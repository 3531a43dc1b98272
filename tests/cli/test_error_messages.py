"""Every library error reaches the user one way: the library names a parameter (or, for a run
file holding other arguments, the config keys and the parameter that resumes it), and
``smoothcert.cli._errors.user_message`` shows the flag the user types. One exact line per kind
of error that used to travel another way (a CLI-only message, rewriting of the text, matching
of the text), and a scan that keeps CLI flags out of the library's error messages."""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

import smoothcert
from helpers import untrained_checkpoint
from smoothcert._util.checks import ParameterError
from smoothcert.cli import main
from smoothcert.cli._errors import flag, user_message
from smoothcert.runs.attack import EveryRadiusRun

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, mnist_test) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    return untrained_checkpoint(folder, mnist_test.info, arch="lenet", sigma=0.25)


def _error(capsys, code: int) -> str:
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_flag_defaults_to_dashes_and_takes_the_commands_overrides() -> None:
    assert flag("noise_samples") == "--noise-samples"
    assert flag("root") == "--data-root"  # the same flag in every command
    assert flag("sigma", {"sigma": "--noise-sigma"}) == "--noise-sigma"
    error = ParameterError("sigma", "must be > 0")
    assert user_message(error, {"sigma": "--noise-sigma"}) == "--noise-sigma must be > 0"
    # a parameter the command has no flag for keeps its library name
    assert user_message(error, {}, options={"--n0"}) == "sigma must be > 0"


def test_a_parameter_error_shows_its_flag(checkpoint, tmp_path, capsys) -> None:
    line = _error(capsys, main(["certify", str(checkpoint), "--labels", str(tmp_path / "y.npy"),
                                "--out", str(tmp_path / "r.db"), "--no-progress"]))  # fmt: skip
    assert line == "smoothcert certify: error: --labels go with a dataset npy:IMAGES.npy only"


def test_a_missing_dataset_names_the_data_root_flag(checkpoint, tmp_path, capsys) -> None:
    # It used to carry a second, command-line message of its own.
    empty = tmp_path / "nothing"
    empty.mkdir()
    line = _error(capsys, main(["certify", str(checkpoint), "--data-root", str(empty),
                                "--out", str(tmp_path / "r.db"), "--no-progress"]))  # fmt: skip
    assert line == (
        f"smoothcert certify: error: --data-root (here {empty}) holds no mnist test images: "
        "run `smoothcert fetch mnist` or point it at a directory with the four MNIST IDX "
        "files, .gz or raw"
    )
    assert not (tmp_path / "r.db").exists()


def test_an_outside_models_errors_name_its_flags(tmp_path, monkeypatch, capsys) -> None:
    # These used to be rewritten by matching parameter names in the message's text.
    (tmp_path / "tiny_factory_mod.py").write_text(
        textwrap.dedent("""
        from torch import nn

        def build():
            return nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    base = ["certify", "--model", "python:tiny_factory_mod:build", "--dataset", "mnist",
            "--sigma", "0.25", "--out", str(tmp_path / "r.db"), "--no-progress"]  # fmt: skip
    line = _error(capsys, main([*base, "--input-shape", "1", "28", "28", "--input-mean", "0.5"]))
    assert line == (
        "smoothcert certify: error: --input-mean and --input-std go together: give both or neither"
    )
    weights = tmp_path / "weights.safetensors"  # "weights" in a path stays as it is
    line = _error(
        capsys, main([*base, "--input-shape", "1", "28", "28", "--weights", str(weights)])
    )
    assert line == f"smoothcert certify: error: --weights {weights} does not exist"
    line = _error(capsys, main(base))
    assert line == (
        "smoothcert certify: error: --input-shape is needed: the model does not state its input "
        "shape (C, H, W of one input)"
    )


@pytest.mark.parametrize("command", ["certify", "predict", "attack"])
def test_a_denoisers_missing_weights_name_the_denoiser_weights_flag(
    command, checkpoint, tmp_path, monkeypatch, capsys
) -> None:
    # The factory's weights error used to name --weights, the classifier's flag.
    (tmp_path / "tiny_denoiser_mod.py").write_text(
        textwrap.dedent("""
        from torch import nn

        def build():
            return nn.Identity()
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    weights = tmp_path / "denoiser.safetensors"
    extra = {"certify": ["--sigma", "0.25"], "predict": [], "attack": ["--eps", "0.5"]}[command]
    argv = [command, str(checkpoint), *extra, "--denoiser", "python:tiny_denoiser_mod:build",
            "--denoiser-weights", str(weights), "--max", "1", "--out", str(tmp_path / "r.db"),
            "--no-progress"]  # fmt: skip
    line = _error(capsys, main(argv))
    assert line == f"smoothcert {command}: error: --denoiser-weights {weights} does not exist"
    assert not (tmp_path / "r.db").exists()


def test_an_every_radius_run_says_which_flag_resumes_it(checkpoint, tmp_path, capsys) -> None:
    # It used to be recognised by its config keys and carry a second message of its own.
    out = tmp_path / "every.db"
    base = ["attack", str(checkpoint), "--eps", "0", "1", "--steps", "2", "--max", "2",
            "--no-progress", "--out", str(out)]  # fmt: skip
    assert main([*base, "--every-radius"]) == 0
    capsys.readouterr()
    line = _error(capsys, main(base))
    assert line == (
        f"smoothcert attack: error: {out} holds a run with different arguments (skip_fooled: "
        "False -> True); rerun with the same arguments to resume, or choose another run file; "
        "it attacks every radius: resume it with --every-radius"
    )


def test_every_radius_run_in_the_librarys_words() -> None:
    error = EveryRadiusRun("r.db holds a run with different arguments (...)", ["skip_fooled"])
    assert error.keys == ["skip_fooled"] and "--" not in str(error)
    assert str(error).endswith("resume it with skip_fooled=False")
    assert user_message(error, {"skip_fooled": "--every-radius"}).endswith(
        "resume it with --every-radius"
    )


_FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_ERROR_NAME = re.compile(r"(Error|Exception|NotFound|Mismatch|Run)$")


def _name(node: ast.expr) -> str:
    return node.id if isinstance(node, ast.Name) else getattr(node, "attr", "")


def flags_in_error_messages(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string naming a CLI flag inside a raise, an exception's
    construction or an exception class's body."""
    tree = ast.parse(source)
    docstrings = {  # documentation may speak of flags; messages may not
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef | ast.Module)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found = []
    for node in ast.walk(tree):
        is_error = (isinstance(node, ast.Call) and _ERROR_NAME.search(_name(node.func))) or (
            isinstance(node, ast.ClassDef) and any(_ERROR_NAME.search(_name(b)) for b in node.bases)
        )
        if isinstance(node, ast.Raise) and node.exc is not None:
            scope = node.exc
        elif is_error:
            scope = node
        else:
            continue
        for part in ast.walk(scope):
            if (
                isinstance(part, ast.Constant)
                and isinstance(part.value, str)
                and id(part) not in docstrings
                and _FLAG.search(part.value)
            ):
                found.append((part.lineno, part.value))
    return found


def test_the_scan_finds_a_flag_in_an_error_message() -> None:
    assert flags_in_error_messages('raise ValueError(f"x {y}: pass --data-root DIR")')
    assert flags_in_error_messages('e = DatasetNotFound("give --sigma")')
    assert flags_in_error_messages('class E(ValueError):\n    hint = "use --every-radius"')
    assert not flags_in_error_messages('raise ParameterError("root", "is needed")')
    assert not flags_in_error_messages('class E(ValueError):\n    """Like --max."""')


def test_no_library_error_message_names_a_cli_flag() -> None:
    package = Path(smoothcert.__file__).parent
    hits = [
        f"{path.relative_to(package)}:{line}: {text!r}"
        for path in sorted(package.rglob("*.py"))
        if path.relative_to(package).parts[0] != "cli"
        for line, text in flags_in_error_messages(path.read_text())
    ]
    assert hits == []
