"""Input validation of create_model, save_checkpoint/load_checkpoint and the image-folder loader.

Each test pins a confirmed bug: the old code accepted the input silently, produced a broken
file, or failed with an unhelpful TypeError/RuntimeError instead of a ValueError naming the
argument.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from smoothcert import SmoothedClassifier
from smoothcert.data import load_dataset
from smoothcert.models import Normalize, create_model
from smoothcert.models.checkpoint import encode_tensors, load_checkpoint, save_checkpoint

SMALL = (1, 12, 12)  # the smallest input lenet takes: keeps every model here tiny
META = {"arch": "lenet", "num_classes": 3, "input_shape": [1, 12, 12], "mean": [0.5], "std": [0.5]}


def _lenet(classes: int = 3) -> torch.nn.Sequential:
    torch.manual_seed(0)
    return create_model("lenet", classes, SMALL, [0.5], [0.5])


# --- create_model -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mean", "std", "name"),
    [
        ([0.5], [math.nan], "std"),
        ([0.5], [math.inf], "std"),
        ([math.nan], [0.5], "mean"),
        ([-math.inf], [0.5], "mean"),
        ([0.5], [0.0], "std"),
    ],
)
def test_create_model_refuses_non_finite_mean_std(mean, std, name):
    # Before: NaN std gave all-NaN logits and inf std a constant model.
    with pytest.raises(ValueError, match=name):
        create_model("lenet", 3, SMALL, mean, std)
    with pytest.raises(ValueError, match=name):
        Normalize(mean, std)


@pytest.mark.parametrize(("arch", "minimum"), [("cnn3", 27), ("cnn3-elu", 27), ("lenet", 12)])
def test_small_cnns_name_their_minimum_input_size(arch, minimum):
    # Before: RuntimeError "Kernel size can't be greater than actual input size".
    with pytest.raises(ValueError, match=f"at least {minimum}×{minimum}.*got 4×4"):
        create_model(arch, 3, (1, 4, 4), [0.5], [0.5])
    with pytest.raises(ValueError, match=f"at least {minimum}×{minimum}"):
        create_model(arch, 3, (1, minimum, minimum - 1), [0.5], [0.5])
    model = create_model(arch, 3, (1, minimum, minimum), [0.5], [0.5]).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, minimum, minimum)).shape == (2, 3)


def test_create_model_accepts_numpy_integers_and_refuses_bool():
    # Before: np.int64 num_classes was "not an integer".
    model = create_model("lenet", np.int64(4), np.array([1, 12, 12]), [0.5], [0.5])
    assert model[1].classifier[-1].out_features == 4
    assert type(model[1].classifier[-1].out_features) is int
    with pytest.raises(ValueError, match="num_classes"):
        create_model("lenet", True, SMALL, [0.5], [0.5])
    with pytest.raises(ValueError, match="input_shape"):
        create_model("lenet", 3, (1, 12.5, 12), [0.5], [0.5])  # was silently truncated to 12


def test_model_carries_input_shape_for_smoothed_classifier(tmp_path):
    # Before: no input_shape attribute, so SmoothedClassifier could not check its inputs.
    model = _lenet()
    assert model.input_shape == SMALL
    assert not any("input_shape" in k for k in model.state_dict())  # not a buffer
    g = SmoothedClassifier(model, 3, 0.25)
    assert g.input_shape == SMALL
    with pytest.raises(ValueError, match="shape"):
        g.counts(torch.rand(1, 4, 4), 10)
    loaded, _ = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", model, META))
    assert loaded.input_shape == SMALL


# --- save_checkpoint / load_checkpoint ------------------------------------------------------


def test_save_to_a_directory_is_refused_and_leaves_no_temp_file(tmp_path):
    # Before: IsADirectoryError after writing a full-size .<name>.<pid>.tmp next to it.
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(ValueError, match="is a directory"):
        save_checkpoint(target, _lenet(), META)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert list(target.iterdir()) == []


def test_failed_atomic_write_removes_its_temp_file(tmp_path, monkeypatch):
    import smoothcert._util.atomic as atomic

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "m.safetensors", _lenet(), META)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"arch": "resnet20", "input_shape": [1, 8, 8]}, "missing .* tensor"),
        ({"num_classes": 5}, "shape mismatch"),
        ({"arch": "resnet21"}, "unknown arch"),
    ],
)
def test_save_refuses_metadata_that_describes_another_model(tmp_path, change, pattern):
    # Before: the file was written and load_checkpoint refused it afterwards.
    path = tmp_path / "m.safetensors"
    with pytest.raises(ValueError, match=pattern):
        save_checkpoint(path, _lenet(), META | change)
    assert list(tmp_path.iterdir()) == []


def test_load_still_refuses_weights_that_do_not_fit(tmp_path):
    # Files written by other tools bypass the save-time check; loading must still catch them.
    path = tmp_path / "m.safetensors"
    path.write_bytes(encode_tensors(_lenet(5).state_dict(), META))
    with pytest.raises(ValueError, match="shape mismatch"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"num_classes": 3.7}, "num_classes"),  # was silently truncated to 3
        ({"num_classes": "ten"}, "num_classes"),  # was "invalid literal for int()"
        ({"num_classes": True}, "num_classes"),
        ({"input_shape": 8}, "input_shape"),  # was TypeError
        ({"input_shape": [1, 12]}, "input_shape"),
        ({"mean": 0.5}, "mean"),  # was TypeError
        ({"std": [0.0]}, "std"),
        ({"arch": 7}, "arch"),
    ],
)
def test_load_names_the_bad_metadata_key_and_the_file(tmp_path, change, key):
    path = tmp_path / "bad.safetensors"
    tensors = {k: v.contiguous() for k, v in _lenet().state_dict().items()}
    save_file(tensors, str(path), metadata={"smoothcert": json.dumps(META | change)})
    with pytest.raises(ValueError, match=f"{path}.*{key}") as info:
        load_checkpoint(path)
    assert "int()" not in str(info.value)
    with pytest.raises(ValueError, match=key):
        save_checkpoint(tmp_path / "again.safetensors", _lenet(), META | change)


def test_load_refuses_non_object_metadata_and_bad_device(tmp_path):
    path = tmp_path / "list.safetensors"
    tensors = {k: v.contiguous() for k, v in _lenet().state_dict().items()}
    save_file(tensors, str(path), metadata={"smoothcert": "[1, 2]"})
    with pytest.raises(ValueError, match="JSON object"):
        load_checkpoint(path)
    good = save_checkpoint(tmp_path / "good.safetensors", _lenet(), META)
    with pytest.raises(ValueError, match="device"):
        load_checkpoint(good, device="bogus")


# --- load_dataset("imagefolder") --------------------------------------------------------------


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """root/test/{a,b}/*.png, two 6×6 images per class; decoded arrays cached under tmp_path."""
    monkeypatch.setenv("SMOOTHCERT_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "images"
    for cls, value in (("a", 0), ("b", 255)):
        d = root / "test" / cls
        d.mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (6, 6), (value, value, value)).save(d / f"{i}.png")
    return root


def test_imagefolder_unknown_option_is_a_value_error(folder):
    # Before: TypeError "unexpected keyword argument".
    with pytest.raises(ValueError, match="foo.*resize, grayscale, augmentation"):
        load_dataset("imagefolder", "test", root=folder, foo=1)


def test_imagefolder_validates_augmentation_and_grayscale(folder):
    # Before: augmentation="zzz" ended up in DatasetInfo; grayscale="no" meant grayscale.
    with pytest.raises(ValueError, match="augmentation.*none, crop-flip"):
        load_dataset("imagefolder", "test", root=folder, augmentation="zzz")
    with pytest.raises(ValueError, match="augmentation"):  # checked before the folder
        load_dataset("imagefolder", "test", root=folder / "absent", augmentation="zzz")
    with pytest.raises(ValueError, match="grayscale"):
        load_dataset("imagefolder", "test", root=folder, grayscale="no")
    ds = load_dataset("imagefolder", "test", root=folder, augmentation="none", grayscale=True)
    assert ds.info.augmentation == "none" and ds.info.input_shape == (1, 6, 6)


def test_imagefolder_empty_class_folder_is_refused(folder):
    # Before: counted as a class (num_classes 3 with 'empty').
    (folder / "test" / "empty").mkdir()
    (folder / "test" / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="empty has no .png/.jpg images"):
        load_dataset("imagefolder", "test", root=folder)
    (folder / "test" / "empty" / "notes.txt").unlink()
    (folder / "test" / "empty").rmdir()
    ds = load_dataset("imagefolder", "test", root=folder)
    assert ds.info.num_classes == 2 and ds.labels.tolist() == [0, 0, 1, 1]


def test_imagefolder_unreadable_image_names_the_file(folder):
    # Before: PIL's UnidentifiedImageError escaped.
    (folder / "test" / "a" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png is not a readable image"):
        load_dataset("imagefolder", "test", root=folder)
