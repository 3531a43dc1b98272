"""scripts/published_certify_logs.py: certified accuracy and ACR of certify.py logs, and the
method and hyperparameters read from the authors' paths, on a tiny hand-made clone."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "published_certify_logs.py"


@pytest.fixture(scope="module")
def logs():
    spec = importlib.util.spec_from_file_location("published_certify_logs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_log(path: Path, rows: list[tuple[float, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["idx\tlabel\tpredict\tradius\tcorrect\ttime"]
    for i, (radius, correct) in enumerate(rows):
        predict = -1 if radius == 0 and not correct else 1
        lines.append(f"{i}\t1\t{predict}\t{radius}\t{correct}\t0:00:01")
    path.write_text("\n".join(lines) + "\n")


def test_accuracy_counts_all_rows_and_acr_is_mean_of_radius_times_correct(logs) -> None:
    rows = [(0.953, 1), (0.3, 1), (0.25, 1), (0.6, 0), (0.0, 0)]  # wrong, abstained
    s = logs.summarize(rows)
    assert s["n"] == 5
    # r = 0: 3/5; r = 0.25: 3/5 (0.25 counts); r = 0.5: 1/5; r >= 1: 0
    assert s["certified_accuracy"] == pytest.approx([0.6, 0.6, 0.2, 0.2, 0, 0, 0, 0, 0])
    assert s["acr"] == pytest.approx((0.953 + 0.3 + 0.25) / 5)


def test_paths_give_method_hyperparameters_and_groups(logs, tmp_path) -> None:
    mnist = tmp_path / "data" / "certify" / "mnist"
    for seed, radius in ((1, 0.5), (2, 0.7)):
        write_log(mnist / "macer_deferred30/num_16/lbd_6.0/gamma_8.0/beta_16.0" /
                  f"noise_1.00_{seed}", [(radius, 1), (0.0, 0)])  # fmt: skip
    write_log(mnist / "consistency/salman_255.0_10_10/num_4/lbd_1.0/eta_0.5/noise_0.25_1",
              [(0.2, 1)])  # fmt: skip
    write_log(tmp_path / "data/certify/cifar10/stab/lbd_2/cifar_resnet20/noise_0.5_1682",
              [(0.1, 1)])  # fmt: skip
    result = logs.collect(tmp_path)
    groups = {g["method"]: g for g in result["groups"]}
    macer = groups["macer"]
    assert macer["hyperparameters"] == {
        "deferred_lr_step_size": 30, "num_noise": 16, "lam": 6.0, "margin": 8.0, "beta": 16.0,
    }  # fmt: skip
    assert (macer["dataset"], macer["arch"], macer["sigma"], macer["n_runs"]) == (
        "mnist", "lenet", 1.0, 2,
    )  # fmt: skip
    assert macer["acr"]["mean"] == pytest.approx((0.25 + 0.35) / 2)
    assert macer["acr"]["sd"] == pytest.approx(0.1 / 2**0.5)
    assert macer["certified_accuracy"][2]["mean"] == pytest.approx(0.5)  # r = 0.5: both runs
    assert macer["certified_accuracy"][3]["min"] == 0.0  # r = 0.75: neither
    mix = groups["consistency+smoothadv"]["hyperparameters"]
    assert mix == {"eps": 255 / 256, "steps": 10, "warmup_epochs": 10, "num_noise": 4,
                   "lam": 1.0, "eta": 0.5}  # fmt: skip
    stab = groups["stability"]
    assert stab["arch"] == "cifar_resnet20"
    assert (stab["hyperparameters"], stab["sigma"]) == ({"lam": 2.0}, 0.5)


def test_toml_rows_give_an_experiment_files_paper_rows(logs, tmp_path) -> None:
    """The rows parse as TOML and as published rows, with n, sd over the runs and the ACR."""
    import tomllib

    from smoothcert.analysis.compare import published_row

    mnist = tmp_path / "data" / "certify" / "mnist"
    for seed, radius in ((1, 0.5), (2, 0.8)):
        write_log(mnist / "stab/lbd_2" / f"noise_0.25_{seed}", [(radius, 1), (0.0, 0)])
    result = logs.collect(tmp_path)
    text = logs.toml_rows(result, "sigma0.25", {"stability": {"method": "stability"}})
    row = tomllib.loads(text)["paper"]["sigma0.25"]["rows"]["stability"]
    parsed = published_row(row)
    assert (parsed.n, parsed.runs) == (2, 2)
    assert parsed.accuracy[:3] == pytest.approx((0.5, 0.5, 0.5))
    assert parsed.sd[2] == 0.0  # r = 0.5: both runs certify 1 of 2
    assert parsed.sd[3] == pytest.approx(0.5 / 2**0.5, abs=1e-5)  # r = 0.75: 0 and ½
    assert parsed.acr == pytest.approx((0.25 + 0.4) / 2)
    assert parsed.acr_sd == pytest.approx(0.15 / 2**0.5, abs=1e-6)
    with pytest.raises(ValueError, match="0 groups match"):
        logs.toml_rows(result, "k", {"x": {"method": "macer"}})


def test_smoothmix_paths_give_hyperparameters_seeds_and_only_its_own_logs(logs, tmp_path) -> None:
    """MNIST paths carry α, T, mix_step, η (``tau_``) and m, runs 21-25 are the seeds (run 0
    beside them is left out); CIFAR-10 logs take EXPERIMENTS.MD's commands by σ and ``_adv``;
    the copied baselines and the ablation folder are not read."""
    certify = tmp_path / "data" / "certify"
    setting = certify / "mnist/smoothmix/smix_1.0_8_m1/tau_5.0/num_4"
    for run_id, radius in (("0", 3.0), ("21", 1.0), ("22", 2.0)):
        write_log(setting / run_id / "noise_1.0", [(radius, 1), (0.0, 0)])
    write_log(certify / "cifar10/smoothmix/noise_0.5_adv", [(0.6, 1), (0.2, 1), (0.9, 0)])
    write_log(certify / "mnist/cohen/noise_0.25_3870", [(0.5, 1)])  # a baseline copy
    write_log(certify / "ablation/m/smix_1.0_8_m0/tau_1.0/num_1/9/noise_1.0", [(0.5, 1)])
    source = logs.SOURCES["smoothmix"]
    result = logs.collect(tmp_path, source)
    assert {r["method"] for r in result["runs"]} == {"smoothmix"}
    assert len(result["runs"]) == 4
    mnist, cifar = sorted(result["groups"], key=lambda g: g["dataset"], reverse=True)
    assert (mnist["dataset"], mnist["arch"], mnist["sigma"]) == ("mnist", "lenet", 1.0)
    assert mnist["hyperparameters"] == {
        "alpha": 1.0, "steps": 8, "mix_step": 1, "eta": 5.0, "num_noise": 4,
    }  # fmt: skip
    # all three ids are present, but 21-25 are not all there: run 0 stays in the mean
    assert mnist["n_runs"] == 3
    assert mnist["acr"]["mean"] == pytest.approx((1.5 + 0.5 + 1.0) / 3)
    assert (cifar["arch"], cifar["sigma"]) == ("cifar_resnet110", 0.5)
    assert cifar["hyperparameters"] == {
        "alpha": 1.0, "steps": 4, "mix_step": 1, "eta": 5.0, "num_noise": 2,
    }  # fmt: skip
    assert cifar["certified_accuracy"][2]["mean"] == pytest.approx(1 / 3)  # r = 0.5: 0.6 only
    assert cifar["acr"]["mean"] == pytest.approx(0.8 / 3)
    for run_id in ("23", "24", "25"):
        write_log(setting / run_id / "noise_1.0", [(1.0, 1), (0.0, 0)])
    (group,) = [g for g in logs.collect(tmp_path, source)["groups"] if g["dataset"] == "mnist"]
    assert group["n_runs"] == 5
    assert group["left_out"] == [
        "data/certify/mnist/smoothmix/smix_1.0_8_m1/tau_5.0/num_4/0/noise_1.0"
    ]
    assert group["acr"]["mean"] == pytest.approx((0.5 + 1.0 + 0.5 * 3) / 5)
    assert "smoothmix.json" in logs.table(result, source)


def test_smoothmix_refuses_paths_it_cannot_read(logs) -> None:
    with pytest.raises(ValueError, match="unexpected SmoothMix path"):
        logs.parse_smoothmix_path(
            Path("data/certify/mnist/smoothmix/smix_1.0_8/tau_5.0/num_4/0/noise_1.0")
        )
    with pytest.raises(ValueError, match="CIFAR-10"):
        logs.parse_smoothmix_path(Path("data/certify/cifar10/smoothmix/noise_0.12"))


def write_rows(path: Path, rows: list[tuple[int, int, str, int]]) -> None:
    """A log of (idx, label, radius as printed, correct) rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["idx\tlabel\tpredict\tradius\tcorrect\ttime"]
    lines += [f"{i}\t{y}\t{y if c else -1}\t{r}\t{c}\t0:00:01" for i, y, r, c in rows]
    path.write_text("\n".join(lines) + "\n")


def test_examples_file_gives_back_every_row_exactly(logs, tmp_path) -> None:
    """Index, label, radius (the printed digits, below 0.1 too) and correct of every row, read
    back through the report's reader; labels once per data set; the same bytes each time."""
    import numpy as np

    from smoothcert.analysis.yardsticks import load_examples

    mnist = tmp_path / "data/certify/mnist/cohen"
    first = [(0, 7, "0.953", 1), (20, 2, "0.0102", 1), (40, 1, "0.0", 0), (60, 0, "1.84", 0)]
    write_rows(mnist / "noise_0.25_1", first)
    write_rows(mnist / "noise_0.25_2", [(0, 7, "2.5e-05", 1), (40, 1, "3.81", 1)])
    write_rows(tmp_path / "data/certify/imagenet/cohen/noise_0.50", [(0, 418, "0.5", 1)])
    arrays = logs.examples_arrays(tmp_path, logs.SOURCES["smoothing-consistency"])
    # imagenet first (sorted paths): 0.5; then 0.953, 0.0102, 0, 1.84; 2.5e-05, 3.81
    assert arrays["radius_code"].tolist() == [3500, 3953, 4102, 0, 2184, 7250, 2381]
    assert arrays["radius_code"].dtype == np.uint16 and arrays["label"].dtype == np.uint16
    assert arrays["datasets"].tolist() == ["imagenet", "mnist"]
    assert arrays["label"].tolist() == [418, 7, 2, 1, 0]  # imagenet index 0; mnist 0-60
    out = tmp_path / "examples.npz"
    logs.write_examples(arrays, out)
    once = out.read_bytes()
    logs.write_examples(logs.examples_arrays(tmp_path, logs.SOURCES["smoothing-consistency"]), out)
    assert out.read_bytes() == once
    read = load_examples(out, ["data/certify/mnist/cohen/noise_0.25_1",
                               "data/certify/mnist/cohen/noise_0.25_2"])  # fmt: skip
    one, two = read.values()
    assert one.idx.tolist() == [0, 20, 40, 60] and one.label.tolist() == [7, 2, 1, 0]
    assert one.radius.tolist() == [0.953, 0.0102, 0.0, 1.84]  # == float() of the printed text
    assert one.correct.tolist() == [True, True, False, False]
    assert (two.idx.tolist(), two.label.tolist(), two.radius.tolist()) == (
        [0, 40], [7, 1], [2.5e-05, 3.81],
    )  # fmt: skip
    with pytest.raises(KeyError, match="holds no log"):
        load_examples(out, ["data/certify/mnist/cohen/noise_0.5_1"])


def test_examples_refuse_labels_that_differ_and_keep_radii_the_code_cannot_hold(
    logs, tmp_path
) -> None:
    from smoothcert.analysis.yardsticks import load_examples

    mnist = tmp_path / "data/certify/mnist/cohen"
    write_rows(mnist / "noise_0.25_1", [(0, 7, "0.1234", 1), (1, 2, "0.5", 1)])
    arrays = logs.examples_arrays(tmp_path, logs.SOURCES["smoothing-consistency"])
    assert "radius_code" not in arrays and arrays["radius"].dtype.name == "float32"
    logs.write_examples(arrays, tmp_path / "e.npz")
    (read,) = load_examples(tmp_path / "e.npz", ["data/certify/mnist/cohen/noise_0.25_1"]).values()
    assert read.radius.tolist() == pytest.approx([0.1234, 0.5], rel=1e-7)
    write_rows(mnist / "noise_0.25_2", [(1, 3, "0.5", 1)])
    with pytest.raises(ValueError, match="test index 1 has label 3, another log of the data set 2"):
        logs.examples_arrays(tmp_path, logs.SOURCES["smoothing-consistency"])


def test_a_git_directory_without_a_tree_is_read_at_its_head(logs, tmp_path) -> None:
    """The same JSON as from a checked-out clone, with its HEAD as the commit; --examples
    changes no byte of the JSON."""
    import subprocess

    clone = tmp_path / "clone"
    write_log(clone / "data/certify/mnist/stab/lbd_2/noise_0.25_1", [(0.5, 1), (0.0, 0)])
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C"]
    subprocess.run([*git[:-1], "init", "-q", str(clone)], check=True)
    subprocess.run([*git, str(clone), "add", "."], check=True)
    subprocess.run([*git, str(clone), "commit", "-qm", "logs"], check=True)
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(clone), str(bare)], check=True)
    head = logs.commit_of(bare)
    assert head is not None and head == logs.commit_of(clone)
    assert logs.main([str(clone), "--out", str(tmp_path / "a.json")]) == 0
    out = [str(bare), "--out", str(tmp_path / "b.json"), "--examples", str(tmp_path / "b.npz")]
    assert logs.main(out) == 0
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert f'"commit": "{head}"' in (tmp_path / "b.json").read_text()
    assert (tmp_path / "b.npz").stat().st_size > 0
    assert logs.main([str(tmp_path / "empty"), "--out", str(tmp_path / "c.json")]) == 1


def test_toml_rows_name_their_yardstick_and_logs(logs, tmp_path) -> None:
    import tomllib

    from smoothcert.analysis.compare import published_row

    for seed in (1, 2):
        write_log(tmp_path / "data/certify/mnist/stab/lbd_2" / f"noise_0.25_{seed}", [(0.5, 1)])
    result = logs.collect(tmp_path)
    text = logs.toml_rows(result, "k", {"stability": {"method": "stability"}}, "jeong-shin.json")
    parsed = published_row(tomllib.loads(text)["paper"]["k"]["rows"]["stability"])
    assert parsed.yardstick == "jeong-shin.json"
    assert parsed.logs == ("data/certify/mnist/stab/lbd_2/noise_0.25_1",
                           "data/certify/mnist/stab/lbd_2/noise_0.25_2")  # fmt: skip
    with pytest.raises(ValueError, match="logs need the yardstick"):
        published_row({"accuracy": [0.5], "logs": ["a"]})
