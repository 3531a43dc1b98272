"""The repository speaks to users: no absolute path of any machine in a tracked file, and no
citation of files that are not in the repository (private notes, design drafts, issue numbers).

Scope: every tracked text file (docs, README, scripts, source, tests, benchmark scripts and
their JSON/text records, experiment files). Tests needing a scratch directory use pytest's
``tmp_path``, never a literal path, so nothing legitimate is exempt but this file itself.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SELF = Path(__file__).resolve().relative_to(ROOT).as_posix()

#: A path rooted at a machine's home, scratch or workspace directory: /work/..., /root/...,
#: /home/..., /tmp/..., /Users/..., /mnt/..., or a Windows user folder. Not preceded by a word
#: character, dot, slash or "~", so relative paths (runs/work/x), URLs (https://h/home/x) and
#: ~/.cache are not matched.
ABSOLUTE_PATH = re.compile(
    r"(?<![\w.~/-])/(?:work|root|home|tmp|Users|mnt)/[\w.$~-]"
    r"|\b[A-Za-z]:\\Users\\",
)

#: Citations of files users do not have.
UNSHIPPED_REFERENCE = re.compile(r"PAPER-NOTES|DESIGN\.md|\b[Ii]ssues? ?#?\d+\b")

#: Files every checkout has: the file list below must contain them, or the check is vacuous.
SENTINELS = (
    "README.md",
    "docs/index.md",
    "docs/performance.md",
    "src/smoothcert/certify/smoothing.py",
    "tests/conftest.py",
    "benchmarks/results/run5_idle_long.json",
    "scripts/setup.sh",
)

BINARY_SUFFIXES = {".png", ".jpg", ".jpeg", ".gz", ".tgz", ".safetensors", ".db", ".npz", ".npy"}


def tracked_files() -> list[str]:
    """``git ls-files`` of the checkout; without git, every file under the repository's own
    folders (so the check never silently covers nothing)."""
    git = shutil.which("git")
    if git is not None and (ROOT / ".git").exists():
        out = subprocess.run(
            [git, "-C", str(ROOT), "ls-files", "-z"], capture_output=True, check=True
        ).stdout
        return [f for f in out.decode().split("\0") if f]
    folders = ("docs", "src", "tests", "benchmarks", "scripts", "experiments")
    files = [p for d in folders for p in (ROOT / d).rglob("*") if p.is_file()]
    files += [ROOT / n for n in ("README.md", "pyproject.toml", "mkdocs.yml")]
    return [p.relative_to(ROOT).as_posix() for p in files if "__pycache__" not in p.parts]


def text_files() -> dict[str, str]:
    texts = {}
    for name in tracked_files():
        path = ROOT / name
        if name == SELF or path.suffix in BINARY_SUFFIXES or not path.is_file():
            continue
        try:
            texts[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary without a telling suffix
    return texts


@pytest.fixture(scope="module")
def texts() -> dict[str, str]:
    return text_files()


def offending_lines(texts: dict[str, str], pattern: re.Pattern[str]) -> list[str]:
    return [
        f"{name}:{number}: {line.strip()[:120]}"
        for name, text in sorted(texts.items())
        for number, line in enumerate(text.splitlines(), start=1)
        if pattern.search(line)
    ]


def test_the_check_covers_the_repository(texts: dict[str, str]) -> None:
    missing = [s for s in SENTINELS if s not in texts]
    assert not missing, f"files not scanned: {missing}"
    assert len(texts) > 100
    assert any(name.startswith("benchmarks/results/") and name.endswith(".json") for name in texts)


@pytest.mark.parametrize(
    "text",
    [
        "--checkpoint /work/artifacts/mnist-cnn3-g025/best.safetensors",
        '"model": "checkpoint /tmp/h4/epoch1.safetensors"',
        "cd /root/smoothcert && ls",
        "see /home/alice/runs",
        "(/Users/bob/data)",
        r"C:\Users\carol\runs",
    ],
)
def test_absolute_paths_are_recognised(text: str) -> None:
    assert ABSOLUTE_PATH.search(text)


@pytest.mark.parametrize(
    "text",
    [
        "--checkpoint runs/mnist-cnn3-g025/best.safetensors",
        "default ~/.cache/smoothcert",
        "https://example.org/home/index.html",
        "out = tmp_path / 'run.db'",
        "results/work/table.md and ../shared/data",
        "$SMOOTHCERT_CACHE/mnist",
    ],
)
def test_relative_paths_pass(text: str) -> None:
    assert not ABSOLUTE_PATH.search(text)


def test_no_absolute_machine_paths(texts: dict[str, str]) -> None:
    bad = offending_lines(texts, ABSOLUTE_PATH)
    assert not bad, "absolute machine paths (use relative paths such as runs/NAME/...):\n" + (
        "\n".join(bad)
    )


@pytest.mark.parametrize(
    ("text", "cites"),
    [
        ("the threshold (PAPER-NOTES §2)", True),
        ("see DESIGN.md, Layers", True),
        ("issue 7's benchmark", True),
        ("Issue #12", True),
        ("no issue here: the tissue 3 of a sample", False),
        ("docs/threat-model.md states it", False),
    ],
)
def test_unshipped_references_are_recognised(text: str, cites: bool) -> None:
    assert bool(UNSHIPPED_REFERENCE.search(text)) is cites


def test_no_references_to_unshipped_files(texts: dict[str, str]) -> None:
    bad = offending_lines(texts, UNSHIPPED_REFERENCE)
    assert not bad, "state the point inline or cite a page in docs/:\n" + "\n".join(bad)
