"""resolve_device: the one check that a named device exists here, used by the commands'
--device and by training alike; its errors name the parameter ``device``."""

from __future__ import annotations

import pytest
import torch

from smoothcert._util.checks import ParameterError
from smoothcert._util.torch_helpers import resolve_device
from smoothcert.cli import main


def test_resolve_device_names_what_is_wrong_with_the_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device(None).type == expected == resolve_device("auto").type
    cases = {
        "meta": "meta holds no data; use e.g. cpu, cuda or cuda:0",
        "cuda:-1": "cuda:-1 is not a torch device (e.g. cpu, cuda, cuda:0)",
    }
    if not torch.cuda.is_available():
        cases["cuda:1"] = "cuda:1: CUDA is not available on this machine"
    if not torch.backends.mps.is_available():
        cases["mps"] = "mps: MPS is not available on this machine"
    for spec, problem in cases.items():
        with pytest.raises(ParameterError) as caught:
            resolve_device(spec)
        assert (caught.value.parameter, caught.value.problem) == ("device", problem)


def test_training_checks_the_device_as_the_other_commands_do(tmp_path, capsys):
    # Training used to accept "meta" and fail later, deep inside torch.
    out = tmp_path / "run"
    argv = ["train", "--dataset", "mnist", "--arch", "cnn3", "--epochs", "1", "--out", str(out)]
    assert main([*argv, "--device", "meta"]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "smoothcert train: error: --device meta holds no data; use e.g. cpu, cuda or cuda:0\n"
    )
    assert not out.exists()
