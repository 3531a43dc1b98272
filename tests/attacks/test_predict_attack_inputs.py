"""predict --reference coverage, and attack/predict numbers that only overflow in float32 or
in the seed arithmetic: refused before a run file exists."""

from __future__ import annotations

import pytest

from helpers import smoothcert, untrained_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, mnist_test):
    return untrained_checkpoint(tmp_path_factory.mktemp("ck"), mnist_test.info, sigma=0.25)


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("attack", ["--eps", "0", "--seed", str(2**44)], "seed must be an integer in [0, 2**43)"),
        ("attack", ["--eps", "0", "--seed", "-1"], "seed must be an integer in [0, 2**43)"),
        ("attack", ["--eps", "0", "1e40"], "eps"),
        ("attack", ["--eps", "0", "--noise-sigma", "1e40"], "--noise-sigma must be > 0 and finite"),
        ("predict", ["--n", "10", "--sigma", "1e40"], "--sigma must be > 0 and finite (float32)"),
    ],
)
def test_numbers_that_overflow_later_are_refused_first(
    checkpoint, tmp_path, command, args, message
) -> None:
    out = tmp_path / "r.db"
    result = smoothcert(command, checkpoint, "--max", "2", "--no-progress", *args, "--out", out,
                        check=False)  # fmt: skip
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_predict_reference_coverage_is_stated_and_none_is_refused(checkpoint, tmp_path) -> None:
    ref = tmp_path / "ref.db"
    smoothcert("predict", checkpoint, "--n", "50", "--max", "1", "--no-progress", "--out", ref)
    done = smoothcert("predict", checkpoint, "--n", "20", "--max", "4", "--no-progress",
                      "--out", tmp_path / "p.db", "--reference", ref)  # fmt: skip
    assert "over the 1 of 4 examples the reference run holds" in done.stdout
    # a reference holding only example 1 (shard 1 of 2) shares nothing with a run of example 0
    smoothcert("predict", checkpoint, "--n", "50", "--max", "2", "--shard", "1/2",
               "--no-progress", "--out", tmp_path / "half.db")  # fmt: skip
    half = tmp_path / "half.shard1-of-2.db"
    none = smoothcert("predict", checkpoint, "--n", "20", "--max", "1", "--no-progress",
                      "--out", tmp_path / "q.db", "--reference", half, check=False)  # fmt: skip
    assert none.returncode == 2 and "holds none of the selected examples" in none.stderr
    assert not (tmp_path / "q.db").exists()  # refused before any work
