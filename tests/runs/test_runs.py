"""The run store, resumable certify/predict runs, TSV export and the analyses."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from helpers import LinearImage, ToyData, ToyInfo
from smoothcert import analysis
from smoothcert._util.checks import ParameterError
from smoothcert.certify import stats
from smoothcert.certify.adaptive import AdaptiveOptions
from smoothcert.certify.smoothing import SmoothedClassifier
from smoothcert.runs import (
    CertifyOptions,
    PredictOptions,
    RunStore,
    Selection,
    certify_dataset,
    export_tsv,
    predict_dataset,
)


def _classifier() -> SmoothedClassifier:
    return SmoothedClassifier(LinearImage(), 2, 0.25, batch_size=300, input_shape=(1, 2, 2))


def test_certify_run_rows_resume_and_determinism(tmp_path) -> None:
    data = ToyData()
    out = tmp_path / "run.db"
    full = certify_dataset(
        _classifier(),
        data,
        tmp_path / "full.db",
        CertifyOptions(n0=20, n=500, alpha=0.01),
        Selection(seed=3),
    )
    assert [r["idx"] for r in full] == list(range(12))
    # Interrupt after 5 examples (the 6th raises), then resume.
    calls = {"k": 0}

    def crash(row):
        calls["k"] += 1
        if calls["k"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        certify_dataset(
            _classifier(),
            data,
            out,
            CertifyOptions(n0=20, n=500, alpha=0.01),
            Selection(seed=3),
            progress=crash,
        )
    with RunStore.read(out) as store:
        assert store.done_indices() == set(range(5))
    resumed = certify_dataset(
        _classifier(), data, out, CertifyOptions(n0=20, n=500, alpha=0.01), Selection(seed=3)
    )
    assert len(resumed) == 12
    for a, b in zip(full, resumed, strict=True):
        assert {k: v for k, v in a.items() if k != "seconds"} == {
            k: v for k, v in b.items() if k != "seconds"
        }
    with RunStore.read(out) as store:
        assert len(store.sessions()) == 2
    # rows are consistent with CERTIFY
    for r in full:
        assert sum(r["counts_estimation"]) == 500 and sum(r["counts_selection"]) == 20
        c_hat = int(np.argmax(r["counts_selection"]))
        assert r["n_a"] == r["counts_estimation"][c_hat]
        assert r["p_a_lower"] == pytest.approx(stats.lower_confidence_bound(r["n_a"], 500, 0.01))
        assert r["correct"] == int(r["prediction"] == r["label"])
    assert any(r["prediction"] == -1 for r in full) or any(r["correct"] == 0 for r in full)


def test_skip_and_max_select_by_count(tmp_path) -> None:
    rows = certify_dataset(
        _classifier(),
        ToyData(),
        tmp_path / "r.db",
        CertifyOptions(n0=10, n=100, alpha=0.01),
        Selection(skip=3, max_examples=3),
    )
    assert [r["idx"] for r in rows] == [0, 3, 6]


def test_different_arguments_are_refused_and_file_untouched(tmp_path) -> None:
    out = tmp_path / "run.db"
    certify_dataset(
        _classifier(),
        ToyData(),
        out,
        CertifyOptions(n0=10, n=100, alpha=0.01),
        Selection(max_examples=2),
    )
    before = out.read_bytes()
    with pytest.raises(ValueError, match=r"different arguments \(n: 100 -> 200\)"):
        certify_dataset(
            _classifier(),
            ToyData(),
            out,
            CertifyOptions(n0=10, n=200, alpha=0.01),
            Selection(max_examples=2),
        )
    with pytest.raises(ValueError, match="not a 'predict' run|holds a 'certify' run"):
        predict_dataset(
            _classifier(),
            ToyData(),
            out,
            PredictOptions(n=100, alpha=0.01),
            Selection(max_examples=2),
        )
    bf16 = SmoothedClassifier(
        LinearImage(), 2, 0.25, batch_size=300, input_shape=(1, 2, 2), precision="bf16"
    )
    with pytest.raises(ValueError, match=r"different arguments \(precision: 'fp32' -> 'bf16'\)"):
        certify_dataset(
            bf16,
            ToyData(),
            out,
            CertifyOptions(n0=10, n=100, alpha=0.01),
            Selection(max_examples=2),
        )
    assert out.read_bytes() == before


def test_a_run_is_not_resumed_on_other_examples(tmp_path) -> None:
    """Same arguments, data reordered (a loader change, another root): the stored rows'
    labels no longer match, and mixing the two example sets in one table is refused."""
    out = tmp_path / "run.db"
    certify_dataset(
        _classifier(),
        ToyData(),
        out,
        CertifyOptions(n0=10, n=100, alpha=0.01),
        Selection(max_examples=6),
    )
    before = out.read_bytes()
    shuffled = ToyData()
    order = torch.arange(11, -1, -1)
    shuffled.x, shuffled.y = shuffled.x[order], shuffled.y[order]
    assert (shuffled.y[:6] != ToyData().y[:6]).sum() == 3  # examples 0, 1 and 4 differ
    with pytest.raises(ValueError, match=r"other examples .* 3 of 6 stored rows .* new out file"):
        certify_dataset(
            _classifier(),
            shuffled,
            out,
            CertifyOptions(n0=10, n=100, alpha=0.01),
            Selection(max_examples=6),
        )
    predict_dataset(
        _classifier(),
        ToyData(),
        tmp_path / "p.db",
        PredictOptions(n=50, alpha=0.01),
        Selection(max_examples=6),
    )
    with pytest.raises(ValueError, match=r"3 of 6 stored rows"):
        predict_dataset(
            _classifier(),
            shuffled,
            tmp_path / "p.db",
            PredictOptions(n=50, alpha=0.01),
            Selection(max_examples=6),
        )
    assert out.read_bytes() == before
    rows = certify_dataset(
        _classifier(),
        ToyData(),
        out,
        CertifyOptions(n0=10, n=100, alpha=0.01),
        Selection(max_examples=6),
    )
    assert len(rows) == 6  # the same data resumes


def test_non_store_files_are_refused_and_never_modified(tmp_path) -> None:
    text = tmp_path / "notes.db"
    text.write_text("my precious notes\n")
    with pytest.raises(ValueError, match="not a smoothcert run store"):
        certify_dataset(_classifier(), ToyData(), text, CertifyOptions(n0=10, n=100, alpha=0.01))
    assert text.read_text() == "my precious notes\n"
    other = tmp_path / "other.db"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (a)")
    con.commit()
    con.close()
    before = other.read_bytes()
    with pytest.raises(ValueError, match="SQLite file but not a smoothcert run store"):
        certify_dataset(_classifier(), ToyData(), other, CertifyOptions(n0=10, n=100, alpha=0.01))
    assert other.read_bytes() == before
    with pytest.raises(FileNotFoundError):
        analysis.analyze([tmp_path / "missing.db"])


def test_unwritable_output_is_a_clear_error(tmp_path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="cannot create output directory"):
        certify_dataset(
            _classifier(),
            ToyData(),
            blocker / "sub" / "r.db",
            CertifyOptions(n0=10, n=100, alpha=0.01),
        )
    assert blocker.read_text() == "x"
    with pytest.raises(ValueError, match="is a directory"):
        certify_dataset(
            _classifier(), ToyData(), tmp_path, CertifyOptions(n0=10, n=100, alpha=0.01)
        )


def test_export_tsv_matches_rows(tmp_path) -> None:
    out = tmp_path / "run.db"
    rows = certify_dataset(
        _classifier(),
        ToyData(),
        out,
        CertifyOptions(n0=10, n=200, alpha=0.01),
        Selection(max_examples=4),
    )
    tsv = tmp_path / "run.tsv"
    assert export_tsv(out, tsv) == 4
    lines = tsv.read_text().splitlines()
    assert lines[0].split("\t") == ["idx", "label", "predict", "radius", "correct", "time"]
    for line, r in zip(lines[1:], rows, strict=True):
        idx, label, pred, radius, correct, elapsed = line.split("\t")
        assert (int(idx), int(label), int(pred), int(correct)) == (
            r["idx"],
            r["label"],
            r["prediction"],
            r["correct"],
        )
        assert float(radius) == r["radius"]  # exactly: never rounded up past a threshold
        assert elapsed.startswith("0:00:")


def test_analysis_matches_hand_computation_and_reanalysis(tmp_path) -> None:
    out = tmp_path / "run.db"
    rows = certify_dataset(
        _classifier(), ToyData(), out, CertifyOptions(n0=20, n=1000, alpha=0.001)
    )
    radius = np.array([r["radius"] for r in rows])
    correct = np.array([r["correct"] == 1 for r in rows])
    radii = [0.0, 0.1, 0.3]
    [summary] = analysis.analyze([out], radii)
    expected = [np.mean(correct & (radius >= r)) for r in radii]
    assert summary.certified_accuracy == pytest.approx(expected)
    assert summary.acr == pytest.approx(np.mean(radius * correct))
    m = len(rows)
    assert summary.lower_bound[0] == pytest.approx(
        stats.certified_accuracy_lower_bound(round(expected[0] * m), m, 0.001, 0.001)
    )
    # Re-analysis from counts at the run's own α and n reproduces the stored radii exactly.
    r2, c2 = analysis.reanalyze(rows, 0.25, 0.001)
    np.testing.assert_allclose(r2, radius, rtol=1e-12)
    np.testing.assert_array_equal(c2, correct)
    fig8 = analysis.bound_comparison(out, radii, alphas=(0.1, 0.001), ns=(1000, 100_000))
    by_bound = {s.name: s for s in fig8["bounds"]}
    assert by_bound["cohen"].acr >= by_bound["li"].acr >= by_bound["lecuyer"].acr
    by_alpha = fig8["alpha"]
    assert by_alpha[0].acr >= by_alpha[1].acr  # larger α, larger radii
    by_n = fig8["n"]
    assert by_n[1].acr >= by_n[0].acr  # more samples at the same proportion, larger radii
    table = analysis.format_table(fig8["bounds"], "markdown")
    assert "**" in table and table.count("\n") == 4
    latex = analysis.format_table(fig8["bounds"], "latex")
    assert "\\textbf" in latex and "\\begin{tabular}" in latex
    png = tmp_path / "curve.png"
    analysis.plot_curves({"bounds": fig8["bounds"]}, png)
    assert png.stat().st_size > 1000


def test_predict_run_and_table4_categories(tmp_path) -> None:
    data = ToyData()
    rows = predict_dataset(
        _classifier(),
        data,
        tmp_path / "p.db",
        PredictOptions(n=200, alpha=0.001),
        Selection(seed=1),
    )
    assert len(rows) == 12
    for r in rows:
        assert sum(r["counts"]) == 200
        assert r["prediction"] == stats.predict_from_counts(np.array(r["counts"]), 0.001)
    certify_dataset(
        _classifier(), data, tmp_path / "ref.db", CertifyOptions(n0=10, n=20_000, alpha=0.001)
    )
    cats = analysis.predict_categories(tmp_path / "p.db", tmp_path / "ref.db")
    assert sum(cats.values()) == pytest.approx(1.0)
    accuracy = np.mean([r["correct"] for r in rows])
    assert cats["correct, accurate"] + cats["correct, inaccurate"] == pytest.approx(accuracy)
    assert cats["abstain"] == pytest.approx(np.mean([r["prediction"] < 0 for r in rows]))


def test_predict_from_counts() -> None:
    assert stats.predict_from_counts(np.array([0, 90, 10]), 0.001) == 1
    assert stats.predict_from_counts(np.array([50, 50, 0]), 0.001) == -1
    with pytest.raises(ValueError, match="counts must be"):
        stats.predict_from_counts(np.array([5]), 0.01)


def test_adaptive_run_uses_fewer_samples_and_records_them(tmp_path) -> None:
    out = tmp_path / "adaptive.db"
    rows = certify_dataset(
        _classifier(),
        ToyData(),
        out,
        CertifyOptions(
            n0=20,
            n=20_000,
            alpha=0.001,
            adaptive_radii=[0.1, 0.25],
            adaptive_options=AdaptiveOptions(n_first=100, growth=2.0),
        ),
        Selection(seed=2),
    )
    assert len(rows) == 12
    assert all(sum(r["counts_estimation"]) == r["n"] <= 20_000 for r in rows)
    assert min(r["n"] for r in rows) < 20_000  # some example stopped early
    with RunStore.read(out) as store:
        assert store.config["adaptive_radii"] == [0.1, 0.25]
        # the plan is pinned with the defaults filled in, so a resume cannot change it
        assert store.config["adaptive_options"] == {
            "n_first": 100, "growth": 2.0, "futility": 0.05, "final_share": 0.5, "align": True,
        }  # fmt: skip
    with pytest.raises(ValueError, match="adaptive_options"):
        certify_dataset(
            _classifier(), ToyData(), out,
            CertifyOptions(n0=20, n=20_000, alpha=0.001, adaptive_radii=[0.1, 0.25],
                           adaptive_options=AdaptiveOptions(n_first=100, growth=1.5)),
            Selection(seed=2),
        )  # fmt: skip
    with pytest.raises(ValueError, match="adaptive run"):
        analysis.bound_comparison(out)


def test_adaptive_options_are_typed_and_the_defaults_are_the_same_run(tmp_path) -> None:
    """CertifyOptions takes an AdaptiveOptions (a dict is refused, naming the parameter); no
    options and the default options make the same run: the same config, so each resumes the
    other."""
    with pytest.raises(ParameterError, match="adaptive_options must be an AdaptiveOptions"):
        CertifyOptions(adaptive_radii=[0.1], adaptive_options={"n_first": 100})  # type: ignore[arg-type]
    kw = {"n0": 20, "n": 20_000, "alpha": 0.001, "adaptive_radii": [0.1, 0.25]}
    out = tmp_path / "t.db"
    typed = certify_dataset(
        _classifier(),
        ToyData(),
        out,
        CertifyOptions(**kw, adaptive_options=AdaptiveOptions(n_first=100)),
        Selection(seed=2),
    )
    default = certify_dataset(
        _classifier(), ToyData(), out, CertifyOptions(**kw), Selection(seed=2)
    )
    assert typed == default


def test_dataset_that_does_not_fit_the_model_is_refused(tmp_path) -> None:
    @dataclass(frozen=True)
    class ColorInfo(ToyInfo):
        input_shape: tuple[int, ...] = (3, 2, 2)

    data = ToyData()
    data.info = ColorInfo()
    with pytest.raises(ValueError, match=r"shape \(3, 2, 2\) but the model expects \(1, 2, 2\)"):
        certify_dataset(
            _classifier(), data, tmp_path / "r.db", CertifyOptions(n0=10, n=100, alpha=0.01)
        )
    assert not (tmp_path / "r.db").exists()


def test_shards_merge_into_the_unsharded_run(tmp_path) -> None:
    from smoothcert.runs import shards

    options = CertifyOptions(n0=20, n=400, alpha=0.01)
    whole = certify_dataset(
        _classifier(), ToyData(), tmp_path / "whole.db", options, Selection(seed=4, skip=2)
    )
    paths = []
    for rank in range(3):
        path = shards.shard_path(tmp_path / "r.db", rank, 3)
        shard = Selection(seed=4, skip=2, shard=(rank, 3))
        rows = certify_dataset(_classifier(), ToyData(), path, options, shard)
        assert [r["idx"] for r in rows] == [0, 2, 4, 6, 8, 10][rank::3]
        paths.append(path)
    assert paths[1].name == "r.shard1-of-3.db"
    with pytest.raises(ValueError, match=r"shards \[2\] of 3 are missing"):
        shards.merge_runs(tmp_path / "m.db", paths[:2])
    assert not (tmp_path / "m.db").exists()
    assert shards.merge_runs(tmp_path / "m.db", paths) == 6
    with RunStore.read(tmp_path / "m.db") as merged, RunStore.read(tmp_path / "whole.db") as ref:
        assert merged.config == ref.config
        strip = [{k: v for k, v in r.items() if k != "seconds"} for r in merged.rows()]
        assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in whole]
    other = certify_dataset(
        _classifier(), ToyData(), tmp_path / "o.db", CertifyOptions(n0=20, n=500, alpha=0.01),
        Selection(seed=4, skip=2, shard=(0, 3)),
    )  # fmt: skip
    assert other
    with pytest.raises(ValueError, match="not a shard of the same run"):
        shards.merge_runs(tmp_path / "m2.db", [tmp_path / "o.db", *paths[1:]])
    with pytest.raises(ValueError, match="exists"):
        shards.merge_runs(tmp_path / "m.db", paths)


def test_shard_from_torchrun_environment() -> None:
    from smoothcert.runs import shards

    assert shards.shard_from_env({}) == (0, 1)
    assert shards.shard_from_env({"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4)
    assert shards.parse_shard("1/2") == (1, 2)
    with pytest.raises(ValueError, match="RANK/WORLD"):
        shards.parse_shard("1-2")
    with pytest.raises(ValueError, match="shard rank must be"):
        shards.parse_shard("2/2")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"alpha": True}, "alpha must be in"),
    ({"n": True}, "n must be a positive integer"),
])  # fmt: skip
def test_bool_arguments_are_refused_before_the_run_file(tmp_path, kwargs, message) -> None:
    args = {"n0": 10, "n": 100, "alpha": 0.01} | kwargs
    with pytest.raises(ValueError, match=message):
        certify_dataset(_classifier(), ToyData(), tmp_path / "r.db", CertifyOptions(**args))
    assert not (tmp_path / "r.db").exists()


def test_class_skew_flags_a_selection_that_is_one_class() -> None:
    from smoothcert.data.base import class_skew
    from smoothcert.data.cifar import jpeg_order
    from smoothcert.runs.common import select_indices

    periodic = [i % 10 for i in range(10000)]  # class = index mod 10
    assert class_skew(periodic, select_indices(10000, 20, 500)) == (
        "500 of the 500 selected examples (100%) are class 0, which is 10% of the data set"
    )
    shuffled = [c for c, _ in jpeg_order(1000, 10)]  # the CIFAR-10 JPEG copy's order
    assert class_skew(shuffled, select_indices(10000, 20, 500)) is None
    sorted_by_class = sorted(periodic)  # an image folder: class by class
    assert class_skew(sorted_by_class, select_indices(10000, 1, 100)).startswith("100 of the 100")
    assert class_skew(sorted_by_class, select_indices(10000, 20, 500)) is None  # a stride spreads
    assert class_skew(periodic, select_indices(10000, 20, 19)) is None  # too few to judge
    skewed = [0] * 8000 + [1] * 2000  # class 0 is 80% of the data: 100% of a prefix is fine
    assert class_skew(skewed, range(100)) is None
    assert class_skew([-1] * 10 + [3] * 30 + [1] * 60, range(40)).startswith("30 of the 30")


def test_the_cli_warns_when_the_selection_is_one_class(capsys) -> None:
    from smoothcert.cli._common import warn_if_one_class

    data = ToyData(m=40, flip_every=0)
    data.y = torch.arange(40) % 2
    warn_if_one_class(data, list(range(0, 40, 2)))
    err = capsys.readouterr().err
    assert err.startswith("warning: 20 of the 20 selected examples (100%) are class 0, which")
    assert "50% of the data set" in err and "--skip" in err
    warn_if_one_class(data, list(range(40)))
    assert capsys.readouterr().err == ""
