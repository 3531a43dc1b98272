"""Image folders streamed from disk: the dataset holds file names, not pixels; each training
image is decoded and augmented per (seed, epoch, index), so worker processes, resumes and
world sizes see the same batches; memory does not grow with the folder; an unreadable image
stops the run with one line naming it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from smoothcert.cli import main
from smoothcert.data import StreamingImageFolder, load_dataset
from smoothcert.data.stream import TrainItems, random_resized_crop
from smoothcert.training import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CLASSES = 10


def _make_folder(root: Path, split: str, per_class: int, size: int, seed: int) -> None:
    """Small JPEGs whose colour depends on the class (learnable), with noise."""
    rng = np.random.default_rng(seed)
    for c in range(CLASSES):
        folder = root / split / f"class{c:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array([25 * c, 255 - 25 * c, (80 * c) % 256], dtype=np.float64)
        for k in range(per_class):
            noise = rng.normal(0, 30, size=(size, size, 3))
            pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"img{k:05d}.JPEG", quality=90)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """3,000 training JPEGs of 40×40 (10 classes) and 100 test ones."""
    root = tmp_path_factory.mktemp("stream")
    _make_folder(root, "train", 300, 40, 0)
    _make_folder(root, "test", 10, 40, 1)
    return root


def test_a_streamed_folder_holds_file_names_not_images(folder) -> None:
    ds = load_dataset("imagefolder", "train", root=folder, stream=True, resize=32)
    assert isinstance(ds, StreamingImageFolder) and len(ds) == 3000
    assert ds.files.dtype.kind == "S" and ds.files[0] == b"class00/img00000.JPEG"
    assert ds.info.input_shape == (3, 32, 32) and ds.info.num_classes == CLASSES
    arrays = [v for v in vars(ds).values() if isinstance(v, np.ndarray | torch.Tensor)]
    held = sum(a.nbytes if isinstance(a, np.ndarray) else a.numel() for a in arrays)
    assert held < 3000 * 60  # names and labels: far below the 9 MB of decoded pixels
    x, y = ds.batch([0, 2999])
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [0, 9]
    # The red channel of class c is about 25c/255 (noise averages out over the sample).
    assert ds.info.mean[0] == pytest.approx(np.mean([25 * c for c in range(10)]) / 255, abs=0.02)


def test_augmentation_is_a_function_of_seed_epoch_and_index(folder) -> None:
    ds = load_dataset("imagefolder", "train", root=folder, stream=True, resize=32)
    for augmentation in ("crop-flip", "resized-crop-flip"):
        items = TrainItems(ds, augmentation, seed=4)
        a, label = items[(0, 17)]
        assert a.shape == (3, 32, 32) and label == 0
        assert torch.equal(a, items[(0, 17)][0])  # same key, same pixels (any process)
        assert not torch.equal(a, items[(1, 17)][0])  # another epoch, another crop
        assert not torch.equal(a, TrainItems(ds, augmentation, seed=5)[(0, 17)][0])


def test_random_resized_crop_keeps_within_the_image_and_resizes() -> None:
    im = Image.fromarray(np.arange(60 * 80 * 3, dtype=np.uint8).reshape(60, 80, 3))
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = random_resized_crop(im, (24, 24), rng)
        assert out.size == (24, 24)


def _config(folder: Path, out: Path, **kw) -> TrainConfig:
    options = dict(
        dataset="imagefolder", data_root=str(folder),
        data_options={"stream": True, "resize": 32, "augmentation": "resized-crop-flip"},
        arch="lenet", method="gaussian", method_options={"sigma": 0.25}, epochs=1,
        subset=600, test_subset=50, batch_size=50, lr=0.05, seed=2, out_dir=str(out),
    )  # fmt: skip
    return TrainConfig(**(options | kw))


def test_workers_and_a_mid_epoch_resume_give_the_same_weights(folder, tmp_path) -> None:
    in_process = train(_config(folder, tmp_path / "w0", workers=0), progress=False)
    two_workers = train(_config(folder, tmp_path / "w2", workers=2), progress=False)
    a, b = load_file(str(in_process.last_checkpoint)), load_file(str(two_workers.last_checkpoint))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert in_process.history[0]["train_acc"] > 0.2  # it learns the colours (chance: 0.1)

    # Stop after 7 of 12 steps (a state every 3 steps), then the same command finishes.
    out = tmp_path / "cut"
    from smoothcert.training.methods.gaussian import Gaussian

    original, calls = Gaussian.loss, [0]

    def loss(self, model, x, y, ctx):
        calls[0] += 1
        if calls[0] > 7:
            raise KeyboardInterrupt
        return original(self, model, x, y, ctx)

    Gaussian.loss = loss
    try:
        with pytest.raises(KeyboardInterrupt):
            train(_config(folder, out, workers=1, checkpoint_every=3), progress=False)
    finally:
        Gaussian.loss = original
    resumed = train(_config(folder, out, workers=1, checkpoint_every=3), progress=False)
    c = load_file(str(resumed.last_checkpoint))
    assert all(torch.equal(a[k], c[k]) for k in a)


PEAK_RSS = textwrap.dedent(
    """
    import json, resource, sys, torch
    torch.set_num_threads(1)
    from smoothcert.training import TrainConfig, train
    root, out = sys.argv[1], sys.argv[2]
    config = TrainConfig(
        dataset="imagefolder", data_root=root, data_options={"stream": True}, arch="lenet",
        method="standard", epochs=1, batch_size=100, lr=0.05, out_dir=out,
    )
    train(config, progress=False)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": peak_kb / 1024}))
    """
)


def _peak_mb(root: Path, out: Path) -> float:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-c", PEAK_RSS, str(root), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_the_folder(folder, tmp_path) -> None:
    """Training on all 3,000 images peaks no higher than on 300 of them, up to a few MB: the
    in-memory loader would hold 2,700 × 40 × 40 × 3 bytes (13 MB) more as uint8 alone."""
    small = tmp_path / "small"
    for split, per_class in (("train", 30), ("test", 10)):
        for c in range(CLASSES):
            dest = small / split / f"class{c:02d}"
            dest.mkdir(parents=True)
            for k in range(per_class):
                name = f"img{k:05d}.JPEG"
                os.link(folder / split / f"class{c:02d}" / name, dest / name)
    small_peak = _peak_mb(small, tmp_path / "out-small")
    large_peak = _peak_mb(folder, tmp_path / "out-large")
    assert large_peak - small_peak < 4.0, (small_peak, large_peak)


def test_an_unreadable_image_stops_with_one_line_and_keeps_nothing(folder, tmp_path) -> None:
    root = tmp_path / "data"
    for split in ("train", "test"):
        for c in range(2):
            dest = root / split / f"class{c}"
            dest.mkdir(parents=True)
            for k in range(4):
                name = f"img{k:05d}.JPEG"
                os.link(folder / split / f"class{c:02d}" / name, dest / name)
    dataset = load_dataset("imagefolder", "train", root=root, stream=True)
    bad = root / "train" / "class1" / "img00002.JPEG"
    bad.unlink()
    bad.write_bytes(b"not a JPEG")  # damaged after the listing: met in the first epoch
    out = tmp_path / "run"
    config = TrainConfig(
        dataset="imagefolder", data_root=str(root), data_options={"stream": True},
        arch="lenet", epochs=1, batch_size=4, out_dir=str(out),
    )  # fmt: skip
    with pytest.raises(ValueError) as err:
        train(config, train_set=dataset, test_set=None, progress=False)
    message = str(err.value)
    assert str(bad) in message and "is not a readable image" in message
    assert "nothing was kept" in message and "\n" not in message
    assert not any(out.iterdir())  # its config.json removed again


def test_an_unreadable_image_at_load_is_one_cli_line(folder, tmp_path, capsys) -> None:
    root = tmp_path / "data"
    for c in range(2):
        dest = root / "train" / f"class{c}"
        dest.mkdir(parents=True)
        os.link(folder / "train" / f"class{c:02d}" / "img00000.JPEG", dest / "a.JPEG")
    (root / "train" / "class1" / "b.JPEG").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "run"
    code = main(
        ["train", "--dataset", "imagefolder", "--data-root", str(root), "--stream"]
        + ["--arch", "lenet", "--out", str(out), "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(root / "train" / "class1" / "b.JPEG") in err
    assert not out.exists()


def test_resized_crop_flip_needs_a_streamed_folder(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    code = main(
        ["train", "--dataset", "mnist", "--arch", "cnn3", "--augment", "resized-crop-flip"]
        + ["--out", str(out), "--subset", "64"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "resized-crop-flip needs a streamed image folder" in err
    assert not out.exists()
