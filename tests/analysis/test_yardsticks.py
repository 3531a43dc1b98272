"""Published yardsticks (experiments/published/*.json): a certify run finds the one group of
its dataset, σ, method, architecture and hyperparameters, as a published row at the section's
radii; and the report's comparison picks such rows up beside the paper table's."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from smoothcert.analysis import analyze
from smoothcert.analysis.compare import published_row
from smoothcert.analysis.yardsticks import (
    RunIdentity,
    find_published,
    load_yardsticks,
    matches,
    run_identity,
)
from smoothcert.runs import CERTIFY_SCHEMA, RunStore


def _spread(mean: float, sd: float | None) -> dict:
    return {"mean": mean, "sd": sd, "min": mean, "max": mean}


def _group(eta: float, acc: list[float], acr: float, files: list[str], sd: float | None) -> dict:
    return {
        "dataset": "mnist",
        "arch": "lenet",
        "method": "smoothmix",
        "hyperparameters": {"alpha": 1.0, "steps": 8, "eta": eta, "warmup_epochs": 10},
        "sigma": 1.0,
        "runs": files,
        "n_runs": len(files),
        "certified_accuracy": [_spread(a, sd) for a in acc],
        "acr": _spread(acr, sd),
    }


YARDSTICK = {
    "source": {"repository": "https://example.org/logs", "commit": "0123456789abcdef"},
    "definitions": {"radii": [0.0, 0.5, 1.0]},
    "groups": [
        _group(1.0, [0.9, 0.8, 0.7], 1.5, ["a/21", "a/22"], 0.01),
        _group(5.0, [0.8, 0.75, 0.6], 1.7, ["b/0"], None),
        {
            **_group(5.0, [0.5, 0.4, 0.3], 1.0, ["c/0"], None),
            "arch": "cifar_resnet20",
            "dataset": "cifar10",
        },  # fmt: skip
    ],
    "runs": [
        {"file": "a/21", "n": 10000},
        {"file": "a/22", "n": 10000},
        {"file": "b/0", "n": 10000},
        {"file": "c/0", "n": 500},
    ],  # fmt: skip
}


def _ours(**changes) -> RunIdentity:
    base = {
        "dataset": "mnist",
        "sigma": 1.0,
        "method": "smoothmix",
        "arch": "lenet",
        "hyperparameters": {
            "sigma": 1.0,
            "alpha": 1.0,
            "steps": 8,
            "eta": 1.0,
            "warmup_epochs": 3,
            "max_norm": None,
        },  # fmt: skip
    }
    return RunIdentity(**(base | changes))


@pytest.fixture
def folder(tmp_path) -> Path:
    (tmp_path / "smoothmix.json").write_text(json.dumps(YARDSTICK))
    (tmp_path / "other.json").write_text(json.dumps({"not": "a yardstick"}))
    return tmp_path


def test_the_group_of_our_hyperparameters_is_found_at_the_sections_radii(folder) -> None:
    yardsticks = load_yardsticks(folder)
    assert list(yardsticks) == ["smoothmix.json"]  # a JSON without groups is not one
    row, origin = find_published(yardsticks, _ours(), [0.0, 1.0])
    assert origin == "smoothmix.json: https://example.org/logs at 0123456"
    parsed = published_row(row)
    # warm-up 3 against their 10 is not compared; η = 1 picks the first group; r = 0.5 skipped
    assert parsed.accuracy == (0.9, 0.7)
    assert parsed.sd == (0.01, 0.01)
    assert (parsed.n, parsed.runs, parsed.acr, parsed.acr_sd) == (10000, 2, 1.5, 0.01)
    one, _ = find_published(yardsticks, _ours(hyperparameters={"eta": 5.0}), [0.0, 0.25, 1.0])
    assert one["accuracy"] == [0.8]  # stops at r = 0.25, which the grid does not hold
    assert "sd" not in one and "acr_sd" not in one and one["runs"] == 1
    assert one["note"] == "smoothmix (alpha=1, eta=5, steps=8, warmup_epochs=10), lenet, one run"


def test_architecture_dataset_sigma_and_method_must_agree(folder) -> None:
    cifar = YARDSTICK["groups"][2]
    assert matches(cifar, _ours(dataset="cifar10", arch="resnet20", hyperparameters={}))
    assert not matches(cifar, _ours(dataset="cifar10", arch="resnet110", hyperparameters={}))
    assert matches(cifar, _ours(dataset="cifar10", arch=None, hyperparameters={}))
    yardsticks = load_yardsticks(folder)
    for other in (_ours(sigma=0.5), _ours(method="gaussian"), _ours(arch="cnn3")):
        assert find_published(yardsticks, other, [0.0]) == (None, None)
    row, why = find_published(yardsticks, _ours(hyperparameters={}), [0.0])
    assert row is None and why.startswith("2 published groups of smoothmix on mnist")
    assert load_yardsticks(folder / "absent") == {}


def _certify_run(path: Path, method: str | None, radii: list[float]) -> Path:
    meta = {"method": method, "arch": "lenet", "hyperparameters": {"eta": 5.0}}
    config = {"command": "certify", "n0": 10, "n": 200, "alpha": 0.001, "sigma": 1.0,
              "dataset": "mnist"}  # fmt: skip
    info = {"checkpoint_metadata": meta if method else {"source": {"factory": "x"}}}
    with RunStore.open(path, "certify", config, CERTIFY_SCHEMA, info) as store:
        for i, r in enumerate(radii):
            store.add(i, {"label": 1, "prediction": 1, "radius": r, "correct": 1, "n": 200})
    return path


def test_the_report_adds_the_yardstick_row_of_a_run_the_paper_table_lacks(tmp_path) -> None:
    from smoothcert.experiments.comparisons import ranking, versus_paper, with_published

    (tmp_path / "published").mkdir()
    (tmp_path / "published" / "smoothmix.json").write_text(json.dumps(YARDSTICK))
    runs = {
        "smoothmix": _certify_run(tmp_path / "a.db", "smoothmix", [0.2, 0.9, 1.2, 2.0]),
        "gaussian": _certify_run(tmp_path / "b.db", "gaussian", [0.1]),
        "outside": _certify_run(tmp_path / "c.db", None, [0.1]),
    }
    present = {k: str(v) for k, v in runs.items()}
    table = {"source": "the paper", "rows": {"gaussian": [0.5, 0.4, 0.3]}}
    experiment = SimpleNamespace(path=tmp_path / "e.toml", paper={"t": table})
    assert run_identity(runs["smoothmix"]).hyperparameters == {"eta": 5.0}
    assert run_identity(runs["outside"]) is None
    radii = [0.0, 0.5, 1.0]
    paper = with_published(experiment, {"paper": "t"}, present, radii)
    assert paper["rows"]["gaussian"] == [0.5, 0.4, 0.3]  # the paper table's row wins
    assert paper["rows"]["smoothmix"]["accuracy"] == [0.8, 0.75, 0.6]
    assert set(paper["rows"]) == {"gaussian", "smoothmix"}
    assert paper["source"] == "the paper"
    text = "\n".join(versus_paper(analyze(list(present.values()), radii,
                                          names=list(present)), paper, radii))  # fmt: skip
    # ours at r = 1: 2 of 4 certified (1.2, 2.0) against their 0.6
    assert "| smoothmix | 4 / 10,000 × 1 | 1.000 vs 0.800" in text
    assert "0.500 vs 0.600 (-0.100" in text
    assert "Rows from the published yardsticks" in text and "smoothmix.json" in text
    ranked = "\n".join(ranking({"smoothmix": present["smoothmix"]}, paper))
    assert "| smoothmix | 4 | 1.075 ± " in ranked and "| 1.700 |" in ranked
    # off in a section that says so, and in one that names no paper table
    off = with_published(experiment, {"paper": "t", "published": False}, present, radii)
    assert off is table
    assert with_published(experiment, {}, present, radii) == {}
    alone = with_published(experiment, {"published": True}, present, radii)
    assert set(alone["rows"]) == {"smoothmix"} and alone["source"] == "published yardsticks"
