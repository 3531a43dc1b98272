"""Ours against published runs on the same test images: the paired difference and its
standard error against a hand computation, the refusal when a label or an index differs, and
the report's comparison from a synthetic yardstick with its examples file (written by
scripts/published_certify_logs.py), paired where the labels agree, unpaired where not."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from smoothcert.analysis import analyze
from smoothcert.analysis.compare import paired_with_published
from smoothcert.runs import CERTIFY_SCHEMA, RunStore

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "published_certify_logs.py"

# Ours: test indices 0, 2, 4, 6; certified correct at 0.6 and 0.3, an abstention, a wrong one.
OURS = [
    {"idx": 0, "label": 1, "prediction": 1, "radius": 0.6, "correct": 1},
    {"idx": 2, "label": 2, "prediction": 2, "radius": 0.3, "correct": 1},
    {"idx": 4, "label": 3, "prediction": -1, "radius": 0.0, "correct": 0},
    {"idx": 6, "label": 4, "prediction": 5, "radius": 0.8, "correct": 0},
]
LABELS = [1, 9, 2, 9, 3, 9, 4, 9]  # of test indices 0-7
# Two published runs over all 8 indices: (radius, correct) per index
RUN_A = [(0.9, 1), (0.1, 0), (0.4, 1), (0.1, 0), (0.55, 1), (0.1, 0), (0.7, 1), (0.1, 0)]
RUN_B = [(0.2, 1), (1.0, 1), (0.6, 0), (1.0, 1), (0.8, 1), (1.0, 1), (0.0, 0), (1.0, 1)]


def _run(rows: list[tuple[float, int]], labels: list[int] = LABELS) -> SimpleNamespace:
    return SimpleNamespace(
        idx=np.arange(len(rows)),
        label=np.array(labels),
        radius=np.array([r for r, _ in rows]),
        correct=np.array([c == 1 for _, c in rows]),
    )


def test_the_paired_difference_and_its_standard_error_are_the_hand_values() -> None:
    p = paired_with_published(OURS, [_run(RUN_A), _run(RUN_B)], [0.0, 0.5])
    assert (p.n, p.runs, p.published_n) == (4, 2, 8)
    # r = 0: ours 1, 1, 0, 0; theirs (A and B averaged) 1, ½, 1, ½
    # r = 0.5: ours 1, 0, 0, 0; theirs ½, 0, 1, ½
    assert p.ours == (0.5, 0.25)
    assert p.published == (0.75, 0.5)
    assert p.published_all == pytest.approx((0.625, 0.5))  # A 4/8 and B 6/8; A 3/8 and B 5/8
    assert p.difference == (-0.25, -0.25)
    # differences 0, ½, −1, −½ (r = 0) and ½, 0, −1, −½ (r = 0.5): sum of squares 1.25
    assert p.se == pytest.approx((math.sqrt(1.25 / 3) / 2,) * 2)
    # radius·1[correct]: ours .6 .3 0 0; theirs (.9+.2)/2, (.4+0)/2, (.55+.8)/2, (.7+0)/2
    # differences .05, .1, −.675, −.35: mean −0.21875, squared deviations sum 0.39921875
    assert (p.acr, p.acr_published) == pytest.approx((0.225, 0.44375))
    assert p.acr_difference == pytest.approx(-0.21875)
    assert p.acr_se == pytest.approx(math.sqrt(0.39921875 / 3) / 2)
    assert p.acr_published_all == pytest.approx((2.55 / 8 + 5.0 / 8) / 2)


def test_a_label_or_an_index_that_differs_refuses_the_pairing() -> None:
    other = list(LABELS)
    other[4] = 7  # test index 4: 7 there, 3 here
    with pytest.raises(ValueError, match=r"labels differ at 1 of our 4 .*index 4, ours 3, pub"):
        paired_with_published(OURS, [_run(RUN_A), _run(RUN_B, other)], [0.0])
    beyond = [*OURS, {"idx": 8, "label": 1, "prediction": 1, "radius": 0.1, "correct": 1}]
    with pytest.raises(ValueError, match="1 of our 5 test indices are not in a published log"):
        paired_with_published(beyond, [_run(RUN_A)], [0.0])
    with pytest.raises(ValueError, match="at least one published run"):
        paired_with_published(OURS, [], [0.0])


def _script():
    spec = importlib.util.spec_from_file_location("published_certify_logs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _logs(clone: Path) -> None:
    """Two runs of Gaussian σ = 0.25 on an 8-image "MNIST" (RUN_A, RUN_B)."""
    for run_id, rows in (("1", RUN_A), ("2", RUN_B)):
        path = clone / "data/certify/mnist/cohen" / f"noise_0.25_{run_id}"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = ["idx\tlabel\tpredict\tradius\tcorrect\ttime"]
        for i, ((radius, correct), label) in enumerate(zip(rows, LABELS, strict=True)):
            lines.append(f"{i}\t{label}\t{label if correct else 0}\t{radius}\t{correct}\t0:00:01")
        path.write_text("\n".join(lines) + "\n")


def _certify_run(path: Path, rows: list[dict]) -> str:
    meta = {"method": "gaussian", "arch": "lenet", "hyperparameters": {}}
    config = {"command": "certify", "n0": 10, "n": 200, "alpha": 0.001, "sigma": 0.25,
              "dataset": "mnist"}  # fmt: skip
    info = {"checkpoint_metadata": meta}
    with RunStore.open(path, "certify", config, CERTIFY_SCHEMA, info) as store:
        for r in rows:
            store.add(r["idx"], {k: v for k, v in r.items() if k != "idx"} | {"n": 200})
    return str(path)


def test_the_report_compares_on_the_same_images_where_the_labels_agree(tmp_path) -> None:
    from smoothcert.experiments.comparisons import versus_published, with_published

    _logs(tmp_path / "clone")
    published = tmp_path / "published"
    out, examples = published / "jeong-shin.json", published / "jeong-shin-examples.npz"
    assert (
        _script().main([str(tmp_path / "clone"), "--out", str(out), "--examples", str(examples)])
        == 0
    )
    wrong = [dict(r) for r in OURS]
    wrong[1]["label"] = 5  # the images of another copy of the test set
    present = {
        "gaussian": _certify_run(tmp_path / "a.db", OURS),
        "shuffled": _certify_run(tmp_path / "b.db", wrong),
    }
    experiment = SimpleNamespace(path=tmp_path / "e.toml", paper={})
    radii = [0.0, 0.5]
    paper = with_published(experiment, {"published": True}, present, radii)
    assert paper["rows"]["gaussian"]["logs"] == [
        "data/certify/mnist/cohen/noise_0.25_1", "data/certify/mnist/cohen/noise_0.25_2",
    ]  # fmt: skip
    summaries = analyze(list(present.values()), radii, names=list(present))
    text = "\n".join(versus_published(experiment, summaries, paper, present, radii))
    se = math.sqrt(1.25 / 3) / 2
    assert f"| gaussian | 4 × 2 / 8 | 0.500 vs 0.750 (-0.250 ± {se:.3f}); all 0.625 |" in text
    assert "0.225 vs 0.444 (-0.219 ± 0." in text
    assert "the sampling of the test images of our subset" in text
    # the other run's label differs: compared unpaired, with the reason
    assert "| shuffled | 4 / 8 × 2 | 0.500 vs 0.625 (-0.125 ± " in text
    assert "Not compared on the same test images: shuffled: the labels differ at 1 of our 4" in text
    assert "Both sides are treated as independent samples" in text
    # a row whose accuracy is not its logs' mean is not paired either
    row = dict(paper["rows"]["gaussian"], accuracy=[0.7, 0.5])
    off = {"rows": {"gaussian": row}}
    text = "\n".join(versus_published(experiment, summaries[:1], off, present, radii))
    assert "the row's accuracy at r = 0 (0.70000) is not the mean of its logs (0.62500)" in text
    # no examples file: unpaired, and said so
    (published / "jeong-shin-examples.npz").unlink()
    text = "\n".join(versus_published(experiment, summaries[:1], paper, present, radii))
    assert "| gaussian | 4 / 8 × 2 |" in text and "jeong-shin-examples.npz" in text


def test_runs_on_the_jpeg_copy_pair_through_its_order_and_not_by_raw_index() -> None:
    from smoothcert.analysis.yardsticks import _in_official_order
    from smoothcert.data.cifar import jpeg_original_indices

    official = np.random.default_rng(5).permutation(np.repeat(np.arange(10), 3))
    where = jpeg_original_indices(official)  # our index -> official index
    published = SimpleNamespace(
        idx=np.arange(30), label=official, radius=np.linspace(0, 1, 30), correct=np.ones(30, bool)
    )
    ours = [  # every 3rd image of the copy, certified with the published run's radius
        {"idx": i, "label": int(official[where[i]]), "prediction": int(official[where[i]]),
         "radius": float(published.radius[where[i]]), "correct": 1}
        for i in range(0, 30, 3)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="labels differ"):  # raw indices: other images
        paired_with_published(ours, [published], [0.0, 0.5])
    mapped = _in_official_order(ours, published)
    assert [r["idx"] for r in mapped] == [int(where[i]) for i in range(0, 30, 3)]
    p = paired_with_published(mapped, [published], [0.0, 0.5])
    assert p.difference == (0.0, 0.0) and p.acr_difference == 0.0  # the same images
