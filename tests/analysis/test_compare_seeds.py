"""Standard errors of the report's comparisons, each against a hand computation: ours −
published (certified accuracy and ACR), the ranking by ACR, differences over training seeds
(with known seed effects) and Figure 2(a)'s estimate against the worst case on the same rows."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from scipy import stats

from smoothcert.analysis.compare import (
    PublishedRow,
    acr_difference_se,
    acr_with_se,
    difference_se,
    paired_acr_difference,
    published_row,
    rank_by_acr,
    run_agreement,
)
from smoothcert.analysis.seeds import attack_seed_differences, seed_difference


def test_difference_se_sums_both_sides_sampling_and_published_seed_variance() -> None:
    p_o, n_o, p_p, n_p, sd, k = 0.8, 50, 0.9, 10_000, 0.02, 5
    hand = math.sqrt(0.8 * 0.2 / 50 + 0.9 * 0.1 / 10_000 + 0.02**2 / 5)
    assert difference_se(p_o, n_o, p_p, n_p, sd, k) == pytest.approx(hand)
    # unknown n_p and no sd: our binomial term alone
    assert difference_se(p_o, n_o, p_p) == pytest.approx(math.sqrt(0.16 / 50))


def test_published_rows_are_lists_or_tables_and_bad_tables_are_refused() -> None:
    assert published_row([0.5, 0.25]) == PublishedRow(accuracy=(0.5, 0.25))
    row = published_row(
        {"accuracy": [0.5, 0.25], "sd": [0.01, 0.02], "n": 100, "runs": 5, "acr": 0.4}
    )
    assert (row.n, row.runs, row.sd, row.acr, row.acr_sd) == (100, 5, (0.01, 0.02), 0.4, None)
    with pytest.raises(ValueError, match="sd has 1 values"):
        published_row({"accuracy": [0.5, 0.25], "sd": [0.01]})
    with pytest.raises(ValueError, match="needs 'accuracy'"):
        published_row({"acc": [0.5]})


def test_acr_se_is_the_sd_of_radius_times_correct_over_root_n() -> None:
    radius = np.array([0.0, 0.5, 1.0, 2.0, 0.3])
    correct = np.array([False, True, True, True, False])
    v = [0.0, 0.5, 1.0, 2.0, 0.0]
    mean = sum(v) / 5
    sd = math.sqrt(sum((x - mean) ** 2 for x in v) / 4)
    acr, se, s = acr_with_se(radius, correct)
    assert (acr, se, s) == pytest.approx((0.7, sd / math.sqrt(5), sd))
    row = PublishedRow(accuracy=(1.0,), n=1000, runs=4, acr=0.9, acr_sd=0.03)
    hand = math.sqrt(se**2 + sd**2 / 1000 + 0.03**2 / 4)
    assert acr_difference_se(se, sd, row) == pytest.approx(hand)


def test_ranking_orders_by_acr_with_shared_ranks_and_unranked_last() -> None:
    acr = {"a": (0.5, 0.1), "b": (0.9, 0.1), "c": (float("nan"), float("nan")), "d": (0.5, 0.2)}
    rows = rank_by_acr(acr, {"a": 0.7, "b": 0.6, "d": 0.8})
    assert [(r.name, r.rank, r.published_rank) for r in rows] == [
        ("b", 1, 3), ("a", 2, 2), ("d", 2, 1), ("c", None, None),
    ]  # fmt: skip


def test_paired_acr_difference_on_shared_examples() -> None:
    def rows(values: dict[int, tuple[float, bool]]) -> list[dict]:
        return [
            {"idx": i, "radius": r, "correct": c, "prediction": 1 if c else -1}
            for i, (r, c) in values.items()
        ]

    a = rows({0: (1.0, True), 1: (0.5, True), 2: (0.2, False), 3: (0.9, True)})
    b = rows({0: (0.5, True), 1: (0.5, True), 2: (0.4, True), 9: (3.0, True)})
    n, d, se = paired_acr_difference(a, b)
    diffs = np.array([0.5, 0.0, -0.4])  # idx 3 and 9 are not shared
    assert n == 3
    assert (d, se) == pytest.approx((diffs.mean(), diffs.std(ddof=1) / math.sqrt(3)))


def test_run_agreement_counts_on_the_shared_examples_only() -> None:
    def rows(values: dict[int, tuple[float, bool, int, int]]) -> list[dict]:
        return [
            {"idx": i, "radius": r, "correct": c, "prediction": p, "n": n}
            for i, (r, c, p, n) in values.items()
        ]

    # adaptive (a) and fixed-n (b) runs of one model; idx 5 and 7 are in one run only
    a = rows({0: (0.6, True, 1, 400), 1: (0.3, True, 2, 200), 2: (0.0, False, -1, 1000),
              5: (1.0, True, 1, 100)})  # fmt: skip
    b = rows({0: (0.5, True, 1, 1000), 1: (0.1, True, 2, 1000), 2: (0.2, False, 4, 1000),
              7: (1.0, True, 1, 1000)})  # fmt: skip
    g = run_agreement(a, b, [0.0, 0.25, 0.5])
    assert g.shared == 3
    assert g.accuracy_a == pytest.approx((2 / 3, 2 / 3, 1 / 3))
    assert g.accuracy_b == pytest.approx((2 / 3, 1 / 3, 1 / 3))
    assert g.same_prediction == 2  # idx 2: an abstention against class 4
    assert (g.mean_samples_a, g.mean_samples_b) == (pytest.approx(1600 / 3), 1000.0)
    assert run_agreement(a[3:], b[3:], [0.0]) is None


def test_certified_accuracy_section_prints_differences_with_their_standard_errors(
    tmp_path,
) -> None:
    """On a real certify run file: each cell's SE is the hand formula of the run's numbers."""
    from helpers import LinearImage, ToyData
    from smoothcert.analysis import analyze
    from smoothcert.certify.smoothing import SmoothedClassifier
    from smoothcert.experiments.report import _certified_accuracy
    from smoothcert.runs import CertifyOptions, Selection, certify_dataset

    g = SmoothedClassifier(LinearImage(), 2, 0.25, batch_size=300, input_shape=(1, 2, 2))
    path = tmp_path / "r.db"
    certify_dataset(g, ToyData(), path, CertifyOptions(n0=10, n=50, alpha=0.01), Selection(seed=0))
    (s,) = analyze(str(path), [0.0, 0.1], names=["ours"])
    published = {"accuracy": [0.9, 0.2], "sd": [0.01, 0.0], "n": 1000, "runs": 4, "acr": 0.3,
                 "acr_sd": 0.02}  # fmt: skip
    experiment = SimpleNamespace(
        path="x.toml",
        stages=[],
        paper={"t": {"source": "src", "rows": {"ours": published, "theirs only": [0.1, 0.1]}}},
    )
    section = {"title": "t", "runs": {"ours": str(path)}, "radii": [0.0, 0.1], "paper": "t"}
    text = "\n".join(_certified_accuracy(experiment, section, tmp_path))
    p, n = s.certified_accuracy[0], s.num_examples
    se0 = math.sqrt(p * (1 - p) / n + 0.9 * 0.1 / 1000 + 0.01**2 / 4)
    assert f"{p:.3f} vs 0.900 ({p - 0.9:+.3f} ± {se0:.3f}" in text
    v = np.where(s.per_example["correct"], s.per_example["radius"], 0.0)
    se_o = v.std(ddof=1) / math.sqrt(n)
    se_acr = math.sqrt(se_o**2 + v.var(ddof=1) / 1000 + 0.02**2 / 4)
    d = v.mean() - 0.3
    mark = "*" if abs(d) > 2 * se_acr else ""
    assert f"{v.mean():.3f} ± {se_o:.3f} vs 0.300 ({d:+.3f} ± {se_acr:.3f}{mark})" in text
    assert "not our own seed variation: one training seed" in text
    assert "Published rows without a run of the same label here: theirs only." in text
    with pytest.raises(ValueError, match="names paper table 'missing'"):
        _certified_accuracy(experiment, {**section, "paper": "missing"}, tmp_path)


def test_seed_difference_matches_the_anova_formula_by_hand() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, (3, 7)).astype(float)
    b = rng.integers(0, 2, (3, 7)).astype(float)
    r = seed_difference(a, b)
    d = a - b
    k, n = d.shape
    v_s = np.var(d.mean(1), ddof=1) / k
    v_i = np.var(d.mean(0), ddof=1) / n
    ms_e = sum(
        (d[s, i] - d[s].mean() - d[:, i].mean() + d.mean()) ** 2 for s in range(k) for i in range(n)
    ) / ((k - 1) * (n - 1))
    assert r.mean == pytest.approx(d.mean())
    assert r.se == pytest.approx(math.sqrt(max(v_s + v_i - ms_e / (k * n), v_s, v_i)))
    assert (r.se_seeds, r.se_images) == pytest.approx((math.sqrt(v_s), math.sqrt(v_i)))
    assert v_s + v_i - ms_e / (k * n) < v_s  # this draw is raised to V_S: its ν = k − 1
    assert r.df == k - 1
    one = seed_difference(a[:1], b[:1])  # one seed: the paired SE over images, ν = N − 1
    assert one.se == pytest.approx(d[0].std(ddof=1) / math.sqrt(n))
    assert one.df == n - 1


def test_seed_difference_degrees_of_freedom_are_satterthwaites_by_hand() -> None:
    rng = np.random.default_rng(2)  # a draw whose SE² is not raised to one of its parts
    d = rng.integers(0, 2, (3, 7)).astype(float) - rng.integers(0, 2, (3, 7)).astype(float)
    k, n = d.shape
    v_s = np.var(d.mean(1), ddof=1) / k
    v_i = np.var(d.mean(0), ddof=1) / n
    ms_e = np.sum((d - d.mean(1)[:, None] - d.mean(0)[None, :] + d.mean()) ** 2) / (
        (k - 1) * (n - 1)
    )
    combined = v_s + v_i - ms_e / (k * n)
    assert combined >= max(v_s, v_i)
    satterthwaite = combined**2 / (
        v_s**2 / (k - 1) + v_i**2 / (n - 1) + (ms_e / (k * n)) ** 2 / ((k - 1) * (n - 1))
    )
    r = seed_difference(d, np.zeros_like(d))
    assert r.se == pytest.approx(math.sqrt(combined))
    assert r.df == pytest.approx(satterthwaite)
    assert r.critical() == pytest.approx(stats.t.ppf(0.975, satterthwaite))


def test_seed_difference_t_bar_keeps_the_false_call_rate_with_three_seeds() -> None:
    """No true difference, seed-to-seed variation dominating (each model's accuracy shifted
    by N(0, 0.08²), 200 images): calling |D̄| > 2 SE is wrong 17% of the time here, the t bar
    with Satterthwaite's ν 7% (ν is itself estimated, so not exactly 5%)."""
    rng = np.random.default_rng(2)
    k, n, reps = 3, 200, 2000
    hardness = rng.uniform(0.4, 0.9, n)

    def outcomes() -> np.ndarray:
        p = np.clip(hardness[None, None, :] + rng.normal(0.0, 0.08, (reps, k, 1)), 0, 1)
        return (rng.random((reps, k, n)) < p).astype(float)

    a, b = outcomes(), outcomes()
    results = [seed_difference(a[j], b[j]) for j in range(reps)]
    two_se = np.mean([abs(r.mean) > 2 * r.se for r in results])
    t_bar = np.mean([r.significant() for r in results])
    assert two_se > 0.13
    assert 0.03 < t_bar < 0.09


def test_seed_difference_se_covers_a_known_seed_effect() -> None:
    """Outcomes drawn with a seed effect (each model's accuracy shifted by N(0, 0.05²)): over
    many replications the SE² averages the actual variance of the mean difference, while the
    images-only SE falls short of it."""
    rng = np.random.default_rng(1)
    k, n, reps = 3, 200, 1500
    hardness = rng.uniform(0.3, 0.9, n)  # the images' base accuracy, shared by all models

    def outcomes(shift: float) -> np.ndarray:
        seed_effect = rng.normal(0.0, 0.05, (reps, k, 1))
        p = np.clip(hardness[None, None, :] + shift + seed_effect, 0, 1)
        return (rng.random((reps, k, n)) < p).astype(float)

    a, b = outcomes(0.05), outcomes(0.0)
    results = [seed_difference(a[j], b[j]) for j in range(reps)]
    means = np.array([r.mean for r in results])
    actual = means.var(ddof=1)
    assert means.mean() == pytest.approx(0.05, abs=0.005)
    assert np.mean([r.se**2 for r in results]) == pytest.approx(actual, rel=0.15)
    assert np.mean([r.se_images**2 for r in results]) < 0.7 * actual


def test_attack_seed_differences_pair_seeds_on_the_images_every_run_attacked(tmp_path) -> None:
    from smoothcert.runs.attack import ATTACK_SCHEMA, read_attack
    from smoothcert.runs.store import RunStore

    def run(name: str, verdicts: dict[int, int]) -> dict:
        path = tmp_path / f"{name}.db"
        with RunStore.open(path, "attack", {"eps": [0.0, 1.0]}, ATTACK_SCHEMA) as store:
            for idx, c in verdicts.items():
                store.add(idx, {"label": 1, "predictions": [1, c], "correct": [1, c],
                                "seconds": 0.0})  # fmt: skip
        return read_attack(path)

    a = [run("a0", {i: 1 for i in range(6)}), run("a1", {i: int(i < 3) for i in range(5)})]
    b = [run("b0", {i: int(i % 2) for i in range(6)}), run("b1", {i: 0 for i in range(6)})]
    shared, out = attack_seed_differences(a, b, [0.0, 1.0])
    assert shared == 5  # image 5 is missing from a1
    ya = np.array([[1] * 5, [1, 1, 1, 0, 0]], float)
    yb = np.array([[0, 1, 0, 1, 0], [0] * 5], float)
    expected = seed_difference(ya, yb)
    assert out[1.0] == expected
    assert out[0.0].mean == 0.0 and out[0.0].se == 0.0
    with pytest.raises(ValueError, match="as many runs of A as of B"):
        attack_seed_differences(a, b[:1], [1.0])


def test_dcert_estimate_against_worst_case_on_the_same_rows() -> None:
    from smoothcert.analysis.dcert import same_rows_comparison
    from smoothcert.distributional import SurrogateTable
    from smoothcert.runs.dcert_file import DcertResult

    rng = np.random.default_rng(2)
    n, gammas, gamma_adv = 6, np.array([0.5, 2.0]), np.array([1.0])

    def table(gs: np.ndarray, sigma: float) -> SurrogateTable:
        shape = (n, len(gs))
        return SurrogateTable(
            gammas=gs, sigma=sigma, dim=4, lagrangian=rng.uniform(0, 2, shape),
            loss=rng.uniform(0, 2, shape), cost=rng.uniform(0, 1, shape),
            value_se=np.zeros(shape), grad_norm=np.zeros(shape), indices=np.arange(n),
        )  # fmt: skip

    tables = {}
    for setting, sigma in (("smooth", 0.25), ("plain", 0.0)):
        tables["cert", setting] = table(gammas, sigma)
        tables["adv", setting] = table(gamma_adv, sigma)
    result = DcertResult(sigma=0.25, gammas=gammas, gamma_adv=gamma_adv, tables=tables)
    rows = same_rows_comparison(result)
    assert [(r.setting, r.rows) for r in rows] == [("smooth", 3), ("plain", 3)]
    for r in rows:
        cert, adv = tables["cert", r.setting], tables["adv", r.setting]
        # γ: chosen on the even rows at the adversary's mean cost over all rows
        rho_all = adv.cost[:, 0].mean()
        j = int(np.argmin(rho_all * gammas + cert.lagrangian[0::2].mean(0)))
        assert r.gamma == gammas[j]
        d = cert.lagrangian[1::2, j] + gammas[j] * adv.cost[1::2, 0] - adv.loss[1::2, 0]
        assert r.difference == pytest.approx(d.mean())
        assert r.se == pytest.approx(d.std(ddof=1) / math.sqrt(3))
        assert r.estimate - r.worst_case == pytest.approx(r.difference)
        assert r.worst_case_all == pytest.approx(adv.loss[:, 0].mean())


def test_ranking_section_lists_runs_by_acr_with_the_published_rank(tmp_path) -> None:
    from helpers import LinearImage, ToyData
    from smoothcert.analysis import analyze, load_certify_run
    from smoothcert.certify.smoothing import SmoothedClassifier
    from smoothcert.experiments.comparisons import ranking
    from smoothcert.runs import CertifyOptions, Selection, certify_dataset

    paths = {}
    for sigma in (0.1, 0.5):
        g = SmoothedClassifier(LinearImage(), 2, sigma, batch_size=300, input_shape=(1, 2, 2))
        paths[f"σ = {sigma}"] = str(tmp_path / f"r{sigma}.db")
        certify_dataset(
            g,
            ToyData(),
            paths[f"σ = {sigma}"],
            CertifyOptions(n0=10, n=100, alpha=0.01),
            Selection(seed=0),
        )
    acr = {s.name: s.acr for s in analyze(list(paths.values()), [0.0], names=list(paths))}
    first, second = sorted(acr, key=acr.get, reverse=True)
    paper = {
        "rows": {first: {"accuracy": [1.0], "acr": 0.1}, second: {"accuracy": [1.0], "acr": 0.2}}
    }
    lines = [line for line in ranking(paths, paper) if line.startswith("| 1 ") or
             line.startswith("| 2 ")]  # fmt: skip
    assert [line.split(" | ")[1] for line in lines] == [first, second]
    _, d, se = paired_acr_difference(
        load_certify_run(paths[first])[1], load_certify_run(paths[second])[1]
    )
    assert d == pytest.approx(acr[first] - acr[second])  # the same 12 examples
    # no per-example published logs here: no published ACR on our images (—)
    assert lines[0].endswith(f" | 0.100 | 2 | — | {d:+.3f} ± {se:.3f}"
                             f"{'*' if d > 2 * se else ''} ({second}) |")  # fmt: skip
    assert lines[1].endswith(" | 0.200 | 1 | — |  |")


def test_seed_differences_section_renders_the_mean_and_its_standard_errors(tmp_path) -> None:
    from smoothcert.experiments.report import _seed_differences
    from smoothcert.runs.attack import ATTACK_SCHEMA
    from smoothcert.runs.store import RunStore

    def run(name: str, verdicts: list[int]) -> str:
        path = tmp_path / f"{name}.db"
        with RunStore.open(path, "attack", {"eps": [0.0, 1.0]}, ATTACK_SCHEMA) as store:
            for idx, c in enumerate(verdicts):
                store.add(idx, {"label": 1, "predictions": [1, c], "correct": [1, c],
                                "seconds": 0.0})  # fmt: skip
        return str(path)

    ya = [[1, 1, 0, 1], [1, 1, 1, 1]]
    yb = [[0, 1, 0, 0], [0, 0, 1, 1]]
    groups = {
        "A": [run("a0", ya[0]), run("a1", ya[1]), str(tmp_path / "a2.db")],  # seed 2: not yet
        "B": [run("b0", yb[0]), run("b1", yb[1]), str(tmp_path / "b2.db")],
    }
    experiment = SimpleNamespace(path="x.toml", stages=[])
    section = {"title": "t", "groups": groups, "differences": [["A", "B"]]}
    text = "\n".join(_seed_differences(experiment, section, tmp_path))
    r = seed_difference(np.array(ya), np.array(yb))
    mark = "*" if abs(r.mean) > stats.t.ppf(0.975, r.df) * r.se else ""
    assert "**A − B**: 2 seed pairs of the 3 listed, 4 test images every run attacked." in text
    assert (
        f"| 1 | {r.mean:+.3f} ± {r.se:.3f}{mark} | {r.df:.1f} | {r.se_images:.3f} | "
        f"{r.se_seeds:.3f} | "
        f"{r.per_seed[0]:+.3f}, {r.per_seed[1]:+.3f} |"
    ) in text
    assert "- A, run 2: `" in text and "(not run yet)" in text
    with pytest.raises(ValueError, match="pairs of its groups' labels"):
        _seed_differences(experiment, {**section, "differences": [["A", "C"]]}, tmp_path)


def test_holm_rejects_step_down_and_keeps_the_family_wise_rate() -> None:
    from smoothcert.analysis.multiplicity import holm, normal_p, t_p

    # by hand, m = 5: sorted 0.004 ≤ 0.01, 0.011 ≤ 0.0125, 0.02 > 0.05/3 stops
    assert holm([0.02, 0.004, 0.5, 0.011, 0.03]) == [False, True, False, True, False]
    assert holm([float("nan"), 0.001]) == [False, True]  # NaN still counts in m = 2
    assert holm([]) == []
    assert normal_p(0.0, 0.0) == 1.0 and normal_p(0.1, 0.0) == 0.0
    assert t_p(0.03, 0.01, math.inf) == pytest.approx(normal_p(0.03, 0.01))
    assert t_p(0.03, 0.01, 2) == pytest.approx(2 * stats.t.sf(3.0, 2))
    # twelve correlated radii under the null (one shared component): some raw p < 0.05 in a
    # large share of the families, any Holm rejection in at most about 5% of them
    rng = np.random.default_rng(3)
    shared, own = rng.normal(size=(4000, 1)), rng.normal(size=(4000, 12))
    z = 0.6 * shared + 0.8 * own
    p = 2 * stats.norm.sf(np.abs(z))
    assert np.mean((p < 0.05).any(axis=1)) > 0.3
    assert np.mean([any(holm(list(row))) for row in p]) < 0.06
