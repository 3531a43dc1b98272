"""`smoothcert attack` and resumable attack runs."""

from __future__ import annotations

import math

import pytest
import torch

from smoothcert.attacks import robust_accuracy
from smoothcert.cli import main
from smoothcert.runs.attack import attack_dataset
from smoothcert.runs.store import RunStore

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def lenet(tmp_path_factory, mnist_train):
    """A LeNet trained for a few steps on real MNIST, saved as a checkpoint."""
    from torch.nn import functional as F

    from smoothcert.models import create_model
    from smoothcert.models.checkpoint import save_checkpoint

    info = mnist_train.info
    torch.manual_seed(0)
    model = create_model("lenet", info.num_classes, info.input_shape, info.mean, info.std)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = mnist_train.batch(range(1000))
    for _ in range(2):
        for i in range(0, 1000, 50):
            opt.zero_grad()
            F.cross_entropy(model(x[i : i + 50]), y[i : i + 50]).backward()
            opt.step()
    model.eval()
    meta = {
        "arch": "lenet",
        "dataset": "mnist",
        "num_classes": info.num_classes,
        "input_shape": list(info.input_shape),
        "mean": list(info.mean),
        "std": list(info.std),
    }
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "lenet.safetensors", model, meta)
    return model, path


def test_attack_run_resumes_without_duplicates_or_gaps(lenet, mnist_test, tmp_path):
    model, _ = lenet
    out = tmp_path / "attack.db"
    indices = list(range(10))

    class Interrupt(Exception):
        pass

    def stop_after_first_batch(done_now, total):
        raise Interrupt

    with pytest.raises(Interrupt):
        attack_dataset(
            model,
            mnist_test,
            out,
            [0.0, 1.0],
            5,
            batch_size=4,
            indices=indices,
            progress=stop_after_first_batch,
        )
    with RunStore.read(out) as store:
        assert store.done_indices() == {0, 1, 2, 3}  # the first batch was committed
    result = attack_dataset(model, mnist_test, out, [0.0, 1.0], 5, batch_size=4, indices=indices)
    with RunStore.read(out) as store:
        rows = store.rows()
    assert [r["idx"] for r in rows] == indices
    # the same as one uninterrupted pass (PGD on the base classifier is deterministic)
    direct = robust_accuracy(model, mnist_test.batch(indices), [0.0, 1.0], steps=5)
    assert [r["predictions"] for r in rows] == direct.predictions.tolist()
    assert result["accuracy"] == direct.accuracy
    assert result["accuracy"][0.0] > result["accuracy"][1.0] or result["accuracy"][0.0] == 0
    # The same file over a reordered test set (another loader order or root) is refused
    # untouched instead of mixing two example sets.
    from smoothcert.data.base import ImageDataset

    reordered = ImageDataset(
        mnist_test.images[::-1].copy(), mnist_test.labels[::-1].copy(), mnist_test.info
    )
    differing = int((reordered.labels[:10] != mnist_test.labels[:10]).sum())
    before = out.read_bytes()
    with pytest.raises(ValueError, match=f"{differing} of 10 stored rows have another label"):
        attack_dataset(model, reordered, out, [0.0, 1.0], 5, batch_size=4, indices=indices)
    assert differing > 0 and out.read_bytes() == before


def test_noisy_attack_run_killed_between_two_rows_resumes_bit_identically(
    lenet, mnist_test, tmp_path, monkeypatch
):
    """A crash in the middle of a block (rows are committed one by one) must not shift the
    blocks, whose first index seeds the attack's noise: the resumed run stores exactly the
    rows of an uninterrupted one."""
    model, _ = lenet
    kwargs = dict(
        eps_list=[0.5, 1.5], steps=3, noise_sigma=0.5, noise_samples=2, batch_size=4,
        indices=list(range(10)), seed=3,
    )  # fmt: skip
    whole = attack_dataset(model, mnist_test, tmp_path / "whole.db", **kwargs)

    class Crash(Exception):
        pass

    real_add, calls = RunStore.add, []

    def add_then_crash(self, idx, row):
        if len(calls) == 5:  # rows 0-3 (block 1) and 4 (block 2) are stored, then the crash
            raise Crash
        calls.append(idx)
        real_add(self, idx, row)

    out = tmp_path / "resumed.db"
    monkeypatch.setattr(RunStore, "add", add_then_crash)
    with pytest.raises(Crash):
        attack_dataset(model, mnist_test, out, **kwargs)
    monkeypatch.setattr(RunStore, "add", real_add)
    with RunStore.read(out) as store:
        assert store.done_indices() == {0, 1, 2, 3, 4}
    resumed = attack_dataset(model, mnist_test, out, **kwargs)
    strip = [{k: v for k, v in r.items() if k != "seconds"} for r in resumed["rows"]]
    assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in whole["rows"]]
    assert resumed["accuracy"] == whole["accuracy"]


def test_attack_cli_table_resume_and_config_mismatch(lenet, tmp_path, capsys):
    _, ckpt = lenet
    out = tmp_path / "a.db"
    args = [
        "attack",
        str(ckpt),
        "--dataset",
        "mnist",
        "--eps",
        "0",
        "1.5",
        "--steps",
        "10",
        "--max",
        "40",
        "--batch",
        "20",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "| L2 radius | 0 | 1.5 |" in first
    acc = [float(v) for v in first.strip().splitlines()[-1].strip("| ").split(" | ")[1:]]
    assert acc[0] > 0.7 and acc[1] < acc[0] - 0.2
    assert main(args) == 0  # rerun: nothing to do, same table
    assert capsys.readouterr().out == first
    with RunStore.read(out) as store:
        assert len(store.rows()) == 40
    bad = args[:]
    bad[bad.index("1.5")] = "2.0"
    assert main(bad) == 2
    err = capsys.readouterr().err
    assert "different arguments" in err and "eps" in err and err.count("\n") == 1


def test_attack_cli_with_test_time_noise(lenet, tmp_path, capsys):
    _, ckpt = lenet
    out = tmp_path / "n.db"
    assert (
        main(
            [
                "attack",
                str(ckpt),
                "--dataset",
                "mnist",
                "--eps",
                "0",
                "1",
                "--steps",
                "4",
                "--noise-sigma",
                "0.1",
                "--noise-samples",
                "4",
                "--max",
                "12",
                "--out",
                str(out),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "noise σ = 0.1 at test time, 4 draws" in capsys.readouterr().out


def test_attack_cli_rejects_negative_radius(lenet, tmp_path, capsys):
    _, ckpt = lenet
    code = main(
        ["attack", str(ckpt), "--eps", "-1", "--out", str(tmp_path / "x.db"), "--no-progress"]
    )
    assert code == 2
    assert "--eps must be radii >= 0" in capsys.readouterr().err


def test_every_radius_flag_is_part_of_the_run(lenet, tmp_path, capsys):
    """--every-radius attacks every radius; the two modes give one table here (deterministic
    attack), and a run file of one mode does not resume in the other."""
    _, ckpt = lenet
    base = ["attack", str(ckpt), "--dataset", "mnist", "--eps", "0", "1", "2", "--steps", "5",
            "--max", "30", "--no-progress"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "skip.db")]) == 0
    skip_table = capsys.readouterr().out.splitlines()[-1]
    every = [*base, "--every-radius", "--out", str(tmp_path / "every.db")]
    assert main(every) == 0
    assert capsys.readouterr().out.splitlines()[-1] == skip_table
    with RunStore.read(tmp_path / "skip.db") as store:
        assert store.config["skip_fooled"] is True
    with RunStore.read(tmp_path / "every.db") as store:
        assert store.config["skip_fooled"] is False
    assert main([*base, "--out", str(tmp_path / "every.db")]) == 2
    err = capsys.readouterr().err
    assert "different arguments" in err and err.count("\n") == 1
    assert err.rstrip().endswith("it attacks every radius: resume it with --every-radius")


def test_threads_flag_sets_torch_threads_and_refuses_zero(lenet, tmp_path, capsys):
    _, ckpt = lenet
    base = ["attack", str(ckpt), "--dataset", "mnist", "--eps", "0.5", "--steps", "2",
            "--max", "4", "--no-progress", "--out", str(tmp_path / "t.db")]  # fmt: skip
    assert main([*base, "--threads", "0"]) == 2
    assert capsys.readouterr().err.strip().endswith("--threads must be a positive integer, got 0")
    assert not (tmp_path / "t.db").exists()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main([*base, "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_read_attack_counts_an_example_fooled_below_a_radius_as_fooled_there(tmp_path):
    """A run file of the every-radius mode can hold a success at 0.5 and a failure at 1.0;
    its accuracy at 1.0 (what reports and the zoo read) still counts the example fooled."""
    from smoothcert.runs.attack import ATTACK_SCHEMA, read_attack

    config = {"command": "attack", "eps": [0.0, 0.5, 1.0]}
    with RunStore.open(tmp_path / "r.db", "attack", config, ATTACK_SCHEMA) as store:
        for idx, correct in enumerate([[1, 0, 1], [1, 1, 1], [1, 1, 0], [0, 1, 1]]):
            p = [3 if c else 4 for c in correct]
            store.add(idx, {"label": 3, "predictions": p, "correct": correct, "seconds": 0.1})
    result = read_attack(tmp_path / "r.db")
    assert result["count"] == 4 and result["eps"] == [0.0, 0.5, 1.0]
    assert result["accuracy"] == {0.0: 0.75, 0.5: 0.5, 1.0: 0.25}


def test_read_attack_of_a_run_that_has_no_rows_yet(tmp_path):
    """A run file created but not yet past its first block (an experiment report written while
    the attack runs) reads as zero examples with an undefined accuracy, not an error."""
    from smoothcert.runs.attack import ATTACK_SCHEMA, read_attack

    config = {"command": "attack", "eps": [0.0, 0.5]}
    with RunStore.open(tmp_path / "r.db", "attack", config, ATTACK_SCHEMA):
        pass
    result = read_attack(tmp_path / "r.db")
    assert result["count"] == 0 and result["robust"].shape == (0, 2)
    assert all(math.isnan(a) for a in result["accuracy"].values())
