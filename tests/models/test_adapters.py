"""Models from outside smoothcert (models/adapters): a trained cnn3 and a batch-norm net exported
in the test to ONNX, torch.export and TorchScript, and a user's python: factory with safetensors
weights, certify the same examples with the same seed as the original PyTorch model. PyTorch
formats run the same kernels, so their counts are identical; ONNX Runtime computes its own
floats, so its base predictions on the same noisy inputs are compared and the disagreement
bounded."""

from __future__ import annotations

import json
import sqlite3
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from helpers import smoothcert
from smoothcert.certify.smoothing import SmoothedClassifier
from smoothcert.models.adapters import load_model, model_format
from smoothcert.models.adapters.export import export_onnx, export_program, export_torchscript
from smoothcert.runs import file_sha256

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")  # torch.onnx.export's exporter
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]

MNIST = (1, 28, 28)
SIGMA = 0.25
#: ONNX Runtime's and PyTorch's float32 kernels differ in the last bits, which can flip the
#: argmax of a near-tie: the largest share of noisy inputs on which they may disagree.
MAX_ORT_DISAGREEMENT = 0.005


class BatchNormNet(nn.Module):
    """conv → batch norm → ReLU → linear, with running statistics far from (0, 1) so that an
    exporter that dropped or mis-folded the batch norm would change the predictions."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 5, stride=3)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def batchnorm_net() -> BatchNormNet:
    torch.manual_seed(3)
    net = BatchNormNet()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.3, 0.3)
        net.bn.running_var.uniform_(0.2, 2.0)
        net.bn.weight.uniform_(0.5, 1.5)
    return net.eval()


FACTORY_SOURCE = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 5, stride=3)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


def build():
    return Net()
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_train) -> Path:
    """A cnn3 trained briefly on an MNIST subset with Gaussian noise (a real, non-constant
    classifier; the tests compare runtimes, not accuracy)."""
    out = tmp_path_factory.mktemp("train") / "run"
    smoothcert(
        "train", "--dataset", "mnist", "--arch", "cnn3", "--method", "gaussian", "--sigma",
        str(SIGMA), "--epochs", "1", "--subset", "600", "--test-subset", "100", "--batch-size",
        "50", "--optimizer", "adam", "--lr", "0.002", "--seed", "0", "--out", str(out),
        "--no-progress",
    )  # fmt: skip
    return out / "last.safetensors"


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> dict[str, Path]:
    from smoothcert.models.checkpoint import load_checkpoint

    folder = tmp_path_factory.mktemp("exported")
    model, _ = load_checkpoint(trained)
    bn = batchnorm_net()
    return {
        "cnn3.onnx": export_onnx(model, folder / "cnn3.onnx", MNIST),
        "cnn3.pt2": export_program(model, folder / "cnn3.pt2", MNIST),
        "cnn3.ts": export_torchscript(model, folder / "cnn3.ts", MNIST),
        "bn.onnx": export_onnx(bn, folder / "bn.onnx", MNIST),
        "bn.pt2": export_program(bn, folder / "bn.pt2", MNIST),
        "bn.ts": export_torchscript(bn, folder / "bn.ts", MNIST),
    }


def _counts(model: nn.Module, images: list[torch.Tensor], n: int) -> list[np.ndarray]:
    g = SmoothedClassifier(model, 10, SIGMA, batch_size=256, input_shape=MNIST)
    return [
        g.counts(x, n, generator=torch.Generator().manual_seed(i)) for i, x in enumerate(images)
    ]


def _disagreement(a: nn.Module, b: nn.Module, images: list[torch.Tensor], draws: int) -> float:
    """Share of the same noisy inputs x + σε on which a's and b's argmax differ."""
    gen = torch.Generator().manual_seed(7)
    differ = 0
    with torch.inference_mode():
        for x in images:
            batch = x + SIGMA * torch.randn((draws, *x.shape), generator=gen)
            differ += int((a(batch).argmax(1) != b(batch).argmax(1)).sum())
    return differ / (len(images) * draws)


@pytest.mark.parametrize("name", ["cnn3", "bn"])
def test_every_format_counts_like_the_original(name, trained, exported, mnist_test) -> None:
    from smoothcert.models.checkpoint import load_checkpoint

    original = load_checkpoint(trained)[0] if name == "cnn3" else batchnorm_net()
    images = [mnist_test[i][0] for i in range(4)]
    reference = _counts(original, images, 600)
    assert sum(len(np.flatnonzero(c)) for c in reference) > 4  # not a constant classifier
    for fmt in ("pt2", "ts"):
        model, meta = load_model(exported[f"{name}.{fmt}"], trust_code=True, input_shape=MNIST)
        assert meta["num_classes"] == 10
        # Same kernels, same floats: bit-identical counts for the same seed.
        for got, want in zip(_counts(model, images, 600), reference, strict=True):
            np.testing.assert_array_equal(got, want)
    onnx, meta = load_model(exported[f"{name}.onnx"])
    assert meta["input_shape"] == list(MNIST)  # read from the graph
    rate = _disagreement(original, onnx, images, 500)
    assert rate <= MAX_ORT_DISAGREEMENT, f"ONNX Runtime vs PyTorch disagree on {rate:.2%}"
    for got, want in zip(_counts(onnx, images, 600), reference, strict=True):
        # The same noise: counts can differ only where the two base classifiers disagree.
        assert np.abs(got - want).sum() <= 2 * MAX_ORT_DISAGREEMENT * 600


def test_python_factory_with_safetensors_weights(tmp_path, monkeypatch, mnist_test) -> None:
    (tmp_path / "user_models_byom.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    net = batchnorm_net()
    save_file(net.state_dict(), str(tmp_path / "net.safetensors"))
    spec = "python:user_models_byom:build"
    assert model_format(spec) == "python"
    model, meta = load_model(spec, weights=tmp_path / "net.safetensors", input_shape=MNIST)
    assert not model.training  # eval mode: batch norm uses the running statistics
    source = meta["source"]
    assert source["sha256"] == file_sha256(tmp_path / "net.safetensors")
    assert source["source_sha256"] == file_sha256(tmp_path / "user_models_byom.py")
    images = [mnist_test[i][0] for i in range(3)]
    for got, want in zip(_counts(model, images, 400), _counts(net, images, 400), strict=True):
        np.testing.assert_array_equal(got, want)
    # Wrong weights: one line naming the mismatch, not a torch traceback.
    save_file({"conv.weight": torch.zeros(3)}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(ValueError, match="do not match"):
        load_model(spec, weights=tmp_path / "bad.safetensors", input_shape=MNIST)
    sys.modules.pop("user_models_byom", None)


def _config(db: Path) -> dict:
    with sqlite3.connect(db) as con:
        return json.loads(con.execute("SELECT value FROM meta WHERE key='config'").fetchone()[0])


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(
            "SELECT idx, label, prediction, radius, counts_estimation FROM results ORDER BY idx"
        ).fetchall()


CERTIFY = ["--n0", "50", "--n", "400", "--batch", "200", "--skip", "97", "--max", "4",
           "--no-progress"]  # fmt: skip


def test_cli_certifies_the_onnx_model_and_refuses_another(trained, exported, tmp_path) -> None:
    onnx = exported["cnn3.onnx"]
    ckpt_run, onnx_run = tmp_path / "ckpt.db", tmp_path / "onnx.db"
    smoothcert("certify", trained, "--dataset", "mnist", *CERTIFY, "--out", ckpt_run)
    smoothcert("certify", "--model", onnx, "--dataset", "mnist", "--sigma", str(SIGMA),
               *CERTIFY, "--out", onnx_run)  # fmt: skip
    want, got = _rows(ckpt_run), _rows(onnx_run)
    assert [r[:3] for r in got] == [r[:3] for r in want]  # same examples, labels, predictions
    for g, w in zip(got, want, strict=True):
        moved = np.abs(np.array(json.loads(g[4])) - np.array(json.loads(w[4]))).sum()
        assert moved <= 2 * MAX_ORT_DISAGREEMENT * 400
        if moved == 0:
            assert g[3] == w[3]  # identical counts: identical radius
    model = _config(onnx_run)["model"]
    import onnxruntime

    assert model == {
        "format": "onnx", "sha256": file_sha256(onnx), "runtime": "onnxruntime",
        "runtime_version": onnxruntime.__version__, "providers": ["CPUExecutionProvider"],
    }  # fmt: skip
    # Rerunning resumes; another model file (or runtime) on the same run is refused, untouched.
    smoothcert("certify", "--model", onnx, "--dataset", "mnist", "--sigma", str(SIGMA),
               *CERTIFY, "--out", onnx_run)  # fmt: skip
    before = onnx_run.read_bytes()
    proc = smoothcert("certify", "--model", exported["cnn3.pt2"], "--trust-model-code",
                      "--dataset", "mnist", "--sigma", str(SIGMA), *CERTIFY, "--out", onnx_run,
                      check=False)  # fmt: skip
    assert proc.returncode != 0 and "different arguments" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert onnx_run.read_bytes() == before


def test_npy_arrays_give_the_same_certificates(exported, mnist_test, tmp_path) -> None:
    """uint8 [N, H, W, C] and float [N, C, H, W] arrays of the same images certify exactly like
    the built-in dataset (same inputs, same seed)."""
    images = mnist_test.images[:4]  # uint8 [N, 1, 28, 28]
    np.save(tmp_path / "nhwc.npy", images.transpose(0, 2, 3, 1))
    np.save(tmp_path / "nchw.npy", images.astype(np.float32) / 255)
    np.save(tmp_path / "labels.npy", mnist_test.labels[:4])
    common = ["--model", exported["cnn3.onnx"], "--sigma", str(SIGMA), "--n0", "50", "--n",
              "400", "--batch", "200", "--no-progress"]  # fmt: skip
    smoothcert("certify", *common, "--dataset", "mnist", "--max", "4", "--out", tmp_path / "ref.db")
    ref = _rows(tmp_path / "ref.db")
    assert len(ref) == 4
    for name in ("nhwc", "nchw"):
        smoothcert("certify", *common, "--dataset", f"npy:{tmp_path / name}.npy", "--labels",
                   tmp_path / "labels.npy", "--out", tmp_path / f"{name}.db")  # fmt: skip
        assert _rows(tmp_path / f"{name}.db") == ref, name


def test_unlabeled_folder_predicts_but_does_not_certify(exported, mnist_test, tmp_path) -> None:
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(mnist_test.images[i, 0]).save(folder / f"img{i}.png")
    args = ["--model", exported["cnn3.onnx"], "--dataset", f"folder:{folder}", "--sigma",
            str(SIGMA), "--batch", "200", "--no-progress"]  # fmt: skip
    proc = smoothcert("predict", *args, "--n", "200", "--out", tmp_path / "p.db")
    assert "no labels" in proc.stdout
    with sqlite3.connect(tmp_path / "p.db") as con:
        rows = con.execute("SELECT label, correct, prediction FROM results").fetchall()
    assert len(rows) == 3 and all(r[0] is None and r[1] is None for r in rows)
    assert {r[2] for r in rows} <= set(range(-1, 10))
    proc = smoothcert("certify", *args, "--out", tmp_path / "c.db", check=False)
    assert proc.returncode != 0 and "labeled data" in proc.stderr
    assert not (tmp_path / "c.db").exists()


class TwoInputs(nn.Module):
    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :10] + y.flatten(1)[:, :10]


class NanNet(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(-1.0 - x.flatten(1)[:, :10].abs())  # NaN everywhere


class Narrow(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :5]


class CifarShaped(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3)).repeat(1, 4)[:, :10]


def _legacy_onnx(model: nn.Module, path: Path, inputs: tuple, dynamic: bool = True) -> Path:
    """The TorchScript-based exporter: fast, and able to write the broken graphs tested here."""
    names = [f"in{i}" for i in range(len(inputs))]
    axes = {n: {0: "batch"} for n in names} if dynamic else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, inputs, str(path), dynamo=False, input_names=names,
                          dynamic_axes=axes)  # fmt: skip
    return path


def test_bad_models_one_line_error_run_untouched(trained, exported, tmp_path, monkeypatch) -> None:
    x = torch.rand(2, *MNIST)
    bad = {
        "fixed": _legacy_onnx(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
                              tmp_path / "fixed.onnx", (x[:1],), dynamic=False),
        "two": _legacy_onnx(TwoInputs(), tmp_path / "two.onnx", (x, x)),
        "nan": _legacy_onnx(NanNet(), tmp_path / "nan.onnx", (x,)),
        "narrow": _legacy_onnx(Narrow(), tmp_path / "narrow.onnx", (x,)),
        "cifar": _legacy_onnx(CifarShaped(), tmp_path / "cifar.onnx", (torch.rand(2, 3, 32, 32),)),
    }  # fmt: skip
    (tmp_path / "fake.onnx").write_bytes(b"this is not a protobuf graph")
    torch.save(batchnorm_net().state_dict(), tmp_path / "pickled.pt")
    run = tmp_path / "keep.db"
    smoothcert("certify", "--model", exported["cnn3.onnx"], "--dataset", "mnist", "--sigma",
               str(SIGMA), *CERTIFY, "--out", run)  # fmt: skip
    before = run.read_bytes()
    cases = [
        (["--model", bad["fixed"]], "fixed batch size of 1"),
        (["--model", bad["two"]], "has 2 graph inputs"),
        (["--model", bad["nan"]], "NaN or infinite logits"),
        (["--model", bad["narrow"]], "has 10 classes but the model has 5"),
        (["--model", exported["cnn3.onnx"], "--num-classes", "7"], "logits of width 10"),
        (["--model", bad["cifar"]], "but the model expects (3, 32, 32)"),
        (["--model", tmp_path / "fake.onnx"], "is not a valid ONNX model"),
        (["--model", tmp_path / "missing.onnx"], "does not exist"),
        (["--model", exported["cnn3.pt2"]], "--trust-model-code"),
        (["--model", exported["cnn3.ts"]], "--trust-model-code"),
        (["--model", tmp_path / "pickled.pt"], "never loaded"),
        (["--model", exported["cnn3.ts"], "--trust-model-code"], "--input-shape is needed"),
        (["--model", exported["cnn3.onnx"], "--precision", "bf16"], "--precision bf16"),
        (["--model", exported["cnn3.onnx"], trained], "not both"),
        (["--model", "zoo:cnn3-mnist"], "no model 'cnn3-mnist' in the zoo"),
        (["--model", "python:no_such_module_byom:build", "--input-shape", "1", "28", "28"],
         "cannot import"),
    ]  # fmt: skip
    for args, message in cases:
        proc = smoothcert("certify", *args, "--dataset", "mnist", "--sigma", str(SIGMA),
                          *CERTIFY, "--out", run, check=False)  # fmt: skip
        assert proc.returncode != 0, args
        assert message in proc.stderr, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, (
            proc.stderr
        )
        assert run.read_bytes() == before, args
    # ONNX Runtime missing: the error names the extra to install.
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    proc = smoothcert("certify", "--model", exported["cnn3.onnx"], "--dataset", "mnist",
                      "--sigma", str(SIGMA), *CERTIFY, "--out", run, check=False)  # fmt: skip
    assert proc.returncode != 0 and "pip install 'smoothcert[onnx]'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and run.read_bytes() == before


def test_npy_layout_and_dtype_errors(tmp_path) -> None:
    from smoothcert.data.arrays import load_npy_dataset

    np.save(tmp_path / "amb.npy", np.zeros((2, 3, 5, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="give layout"):
        load_npy_dataset(tmp_path / "amb.npy")
    # The model's input shape settles it; so does an explicit layout.
    assert load_npy_dataset(tmp_path / "amb.npy", input_shape=(3, 3, 5)).info.input_shape == (
        3, 3, 5)  # fmt: skip
    assert load_npy_dataset(tmp_path / "amb.npy", layout="nchw").info.input_shape == (3, 5, 3)
    np.save(tmp_path / "big.npy", np.full((2, 1, 5, 5), 1.5, dtype=np.float32))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        load_npy_dataset(tmp_path / "big.npy")
    np.save(tmp_path / "x.npy", np.zeros((2, 1, 5, 5), dtype=np.uint8))
    np.save(tmp_path / "y.npy", np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="2 integers"):
        load_npy_dataset(tmp_path / "x.npy", tmp_path / "y.npy")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="not a NumPy"):
        load_npy_dataset(tmp_path / "obj.npy")  # object arrays are pickles: never loaded


def test_help_says_where_the_radius_lives(capsys) -> None:
    """--help of certify, predict and bench names the formats and the normalization rule."""
    from smoothcert.cli import build_parser

    for command in ("certify", "predict", "bench"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "must include its own normalization" in text, command
        assert "[0,1] pixel units" in text and "--trust-model-code" in text, command


def test_input_normalization_is_prepended_and_stored(trained, exported, tmp_path) -> None:
    """A graph that expects normalized inputs, with --input-mean/--input-std, certifies like
    the graph that normalizes itself; the normalization is part of the run's identity."""
    from smoothcert.models.checkpoint import load_checkpoint

    model, meta = load_checkpoint(trained)
    body = export_onnx(model[1], tmp_path / "body.onnx", MNIST)  # without its Normalize layer
    norm = ["--input-mean", str(meta["mean"][0]), "--input-std", str(meta["std"][0])]
    common = ["--dataset", "mnist", "--sigma", str(SIGMA), *CERTIFY]
    smoothcert("certify", "--model", exported["cnn3.onnx"], *common, "--out", tmp_path / "a.db")
    smoothcert("certify", "--model", body, *norm, *common, "--out", tmp_path / "b.db")
    for a, b in zip(_rows(tmp_path / "a.db"), _rows(tmp_path / "b.db"), strict=True):
        assert a[:3] == b[:3]
        moved = np.abs(np.array(json.loads(a[4])) - np.array(json.loads(b[4]))).sum()
        assert moved <= 2 * MAX_ORT_DISAGREEMENT * 400
    stored = _config(tmp_path / "b.db")["model"]
    assert stored["input_mean"] == [meta["mean"][0]] and stored["input_std"] == [meta["std"][0]]
    # Without the normalization it is another run: refused, the file untouched.
    before = (tmp_path / "b.db").read_bytes()
    proc = smoothcert("certify", "--model", body, *common, "--out", tmp_path / "b.db", check=False)
    assert proc.returncode != 0 and (tmp_path / "b.db").read_bytes() == before


def test_bench_measures_the_onnx_model(exported, tmp_path) -> None:
    out = tmp_path / "bench.json"
    proc = smoothcert("bench", "--model", exported["cnn3.onnx"], "--dataset", "mnist",
                      "--sigma", str(SIGMA), "--batch", "100", "--rounds", "1",
                      "--batches-per-round", "1", "--json", out)  # fmt: skip
    record = json.loads(out.read_text())
    assert list(record["paths"]) == ["fp32"]  # bf16 / channels-last do not apply to a graph
    assert record["paths"]["fp32"]["counts_samples_per_s"] > 0
    assert "bf16_fp32_disagreement" not in record and "onnx" in proc.stdout
