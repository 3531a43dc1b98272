"""smoothcert.data.inputs: the data specs of the command line (npy:, folder:, a name) and the
model/data compatibility check, offered to the Python API."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from smoothcert import ParameterError
from smoothcert.data.inputs import check_model_data, load_data, resolve_sigma

META = {"input_shape": [1, 4, 4], "num_classes": 3}


def test_npy_spec_reads_the_user_arrays_as_the_model_takes_them(tmp_path) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 1), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    np.save(tmp_path / "y.npy", np.array([0, 1, 2, 1, 0]))
    data = load_data(f"npy:{tmp_path / 'x.npy'}", labels=tmp_path / "y.npy", meta=META)
    assert tuple(data.info.input_shape) == (1, 4, 4) and len(data) == 5
    check_model_data(META, data, "npy")
    with pytest.raises(ValueError, match="labels"):
        check_model_data({**META, "num_classes": 2}, data, "npy")  # label 2 is not a class


def test_folder_spec_reads_one_channel_for_a_one_channel_model(tmp_path) -> None:
    for i in range(2):
        Image.fromarray(np.full((4, 4, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
    data = load_data(f"folder:{tmp_path}", meta=META)
    assert tuple(data.info.input_shape) == (1, 4, 4)


def test_labels_go_with_npy_only_and_shapes_must_match(tmp_path) -> None:
    with pytest.raises(ParameterError) as info:
        load_data("mnist", labels=tmp_path / "y.npy")
    assert info.value.parameter == "labels"
    images = np.zeros((2, 2, 2, 1), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    data = load_data(f"npy:{tmp_path / 'x.npy'}")
    with pytest.raises(
        ValueError, match=r"shape \(1, 2, 2\) but the checkpoint expects \(1, 4, 4\)"
    ):
        check_model_data(META, data, "x")


@pytest.mark.parametrize(
    ("meta", "sigma", "expected"),
    [({"sigma": 0.25}, None, 0.25), ({"sigma": 0.25}, 0.5, 0.5), ({"sigma": 0.0}, 0.12, 0.12)],
)
def test_resolve_sigma_takes_the_callers_sigma_else_the_training_one(meta, sigma, expected):
    assert resolve_sigma(meta, sigma) == expected


@pytest.mark.parametrize("trained", [None, 0.0, -0.5, float("nan"), float("inf"), 1e39, "0.25"])
def test_resolve_sigma_refuses_an_unusable_training_sigma(trained):
    # 0 is what a model trained without noise (WRM, σ = 0 NAL) records; inf used to pass.
    with pytest.raises(ParameterError) as caught:
        resolve_sigma({"sigma": trained})
    assert caught.value.parameter == "sigma"
    assert (
        caught.value.problem == f"is needed: the checkpoint gives no usable training σ ({trained})"
    )
