"""Models from outside smoothcert as base classifiers: ONNX (run by ONNX Runtime), torch.export
programs (``.pt2``), TorchScript archives and the user's own ``python:package.module:factory``
with safetensors weights. Each loads as an nn.Module mapping [B, *input_shape] in [0,1] to
logits [B, num_classes], so :class:`smoothcert.SmoothedClassifier` smooths it like any other.

The certificate is in the model's input space: a model that expects normalized inputs must
include its normalization, or ``input_mean``/``input_std`` prepend one, for σ and radii in
[0,1] pixel units. :func:`load_model` also returns the model's identity (file sha256, format,
runtime and its version), which runs store so that a resume with another model is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smoothcert._util.checks import ParameterError, optional_input_shape
from smoothcert._util.hashing import file_sha256
from smoothcert.models.normalize import Normalize

__all__ = ["FORMATS", "model_format", "load_model", "probe"]

#: Model formats: smoothcert checkpoints and the external ones.
FORMATS = ("checkpoint", "onnx", "pt2", "torchscript", "python")
#: Formats whose loader runs code from the file (or the user's code): explicit opt-in only.
RUNS_CODE = ("pt2", "torchscript")


def model_format(spec: str | Path) -> str:
    """The format of a model argument: ``python:...``, ``*.onnx``, ``*.pt2``, a TorchScript
    archive (by its content), else a smoothcert checkpoint (a file or ``zoo:NAME``)."""
    text = str(spec)
    if text.startswith("python:"):
        return "python"
    if text.startswith("zoo:"):
        return "checkpoint"  # a shipped smoothcert checkpoint (smoothcert.models.zoo)
    path = Path(text)
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".pt2":
        return "pt2"
    if suffix == ".safetensors":
        return "checkpoint"
    if not path.is_file():
        raise FileNotFoundError(f"model {path} does not exist")
    from smoothcert.models.adapters.torch_formats import archive_kind

    kind = archive_kind(path)
    if kind in ("pt2", "torchscript"):
        return kind
    if kind == "pickle":
        raise ValueError(
            f"{path} is a pickled torch.save file, which is never loaded (unpickling runs "
            "arbitrary code); save the state dict with safetensors and use "
            "python:package.module:factory with weights, or export to ONNX or torch.export"
        )
    return "checkpoint"


def load_model(
    spec: str | Path,
    *,
    device: torch.device | str = "cpu",
    weights: str | Path | None = None,
    num_classes: int | None = None,
    input_shape: Sequence[int] | None = None,
    input_mean: Sequence[float] | None = None,
    input_std: Sequence[float] | None = None,
    trust_code: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Load an external model (see :func:`model_format`) as a checked base classifier.

    Parameters
    ----------
    spec: a ``.onnx`` / ``.pt2`` / TorchScript file, or ``python:package.module:factory``.
    device: where it runs (ONNX: the CPU or CUDA execution provider).
    weights: safetensors weights for a ``python:`` factory (strict names and shapes).
    num_classes, input_shape: needed where the model does not state them; when it does, they
        must agree. The logit width is read by running the model once.
    input_mean, input_std: prepend (x − mean) / std per channel (one value or one per channel),
        for a model that expects normalized inputs.
    trust_code: required for ``.pt2`` and TorchScript, whose loaders run code from the file.

    Returns (model in eval mode, metadata): num_classes, input_shape, and ``source``, the
    model's identity for a run (format, sha256, runtime and version, normalization).
    """
    device = torch.device(device)
    fmt = model_format(spec)
    if fmt == "checkpoint":
        raise ValueError(f"{spec} is a smoothcert checkpoint; load it with load_checkpoint")
    if fmt in RUNS_CODE and not trust_code:
        raise ValueError(
            f"loading {spec} ({fmt}) runs code stored in the file (unpickling or TorchScript); "
            "pass trust_code=True only for a file you trust, or export the model to ONNX"
        )
    if weights is not None and fmt != "python":
        raise ParameterError("weights", "apply only to a python:package.module:factory model")
    base, source = _load(fmt, spec, device, weights)
    shape = _resolve_shape(optional_input_shape(input_shape), getattr(base, "input_shape", None))
    if (input_mean is None) != (input_std is None):
        raise ParameterError(("input_mean", "input_std"), "go together: give both or neither")
    # Where inputs (and the noise) live: the device for PyTorch, the CPU for ONNX Runtime,
    # which takes host memory whatever its execution provider.
    torch_side = torch.device("cpu") if fmt == "onnx" else device
    model = base
    if input_mean is not None:
        mean = _per_channel("input_mean", input_mean, shape[0])
        std = _per_channel("input_std", input_std, shape[0])  # type: ignore[arg-type]
        model = nn.Sequential(Normalize(mean, std).to(torch_side), base)
        source |= {"input_mean": mean, "input_std": std}
    model.eval()
    model.input_shape = shape
    width = probe(model, shape, torch_side)
    if num_classes is not None and num_classes != width:
        raise ParameterError(
            "num_classes", f"is {num_classes} but the model returns logits of width {width}"
        )
    return model, {"num_classes": width, "input_shape": list(shape), "source": source}


def _load(
    fmt: str,
    spec: str | Path,
    device: torch.device,
    weights: str | Path | None,
    weights_name: str = "weights",
) -> tuple[nn.Module, dict[str, Any]]:
    """(module, identity) of one external format; ``weights_name`` is the parameter that gave
    ``weights``, which errors about them name."""
    torch_runtime = {"runtime": "torch", "runtime_version": torch.__version__,
                     "device": device.type}  # fmt: skip
    if fmt == "python":
        from smoothcert.models.adapters.factory import build

        factory = str(spec).removeprefix("python:")
        module, source_file = build(
            factory, Path(weights) if weights is not None else None, weights_name
        )
        source = {
            "format": "python",
            "factory": factory,
            "source_sha256": file_sha256(source_file) if source_file else None,
            "sha256": file_sha256(Path(weights)) if weights is not None else None,
        }
        return module.to(device), source | torch_runtime
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"model {path} does not exist")
    source = {"format": fmt, "sha256": file_sha256(path)}
    if fmt == "onnx":
        from smoothcert.models.adapters.onnx import OnnxClassifier, runtime_version

        module = OnnxClassifier(path, device)
        return module, source | {
            "runtime": "onnxruntime",
            "runtime_version": runtime_version(),
            "providers": module.providers,
        }
    from smoothcert.models.adapters import torch_formats

    load = torch_formats.load_exported_program if fmt == "pt2" else torch_formats.load_torchscript
    return load(path, device), source | torch_runtime


def _resolve_shape(given: tuple[int, ...] | None, own: Any) -> tuple[int, ...]:
    if given is not None and own is not None and tuple(own) != given:
        raise ParameterError("input_shape", f"is {given} but the model's inputs are {tuple(own)}")
    shape = given if given is not None else own
    if shape is None:
        raise ParameterError(
            "input_shape",
            "is needed: the model does not state its input shape (C, H, W of one input)",
        )
    return tuple(shape)


def _per_channel(name: str, values: Sequence[float], channels: int) -> list[float]:
    items = [float(v) for v in values]
    if len(items) == 1:
        items *= channels
    if len(items) != channels:
        raise ParameterError(
            name, f"needs 1 or {channels} values (one per channel), got {len(items)}"
        )
    return items


def probe(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> int:
    """Run the model once on a batch of two constant images (0 and ½): the logit width, after
    checking that it takes a batch of two, returns [2, K] with K ≥ 2, and finite values. Catches
    a fixed batch size, a wrong input shape or a model that outputs NaN before any run starts."""
    x = torch.stack([torch.zeros(input_shape), torch.full(input_shape, 0.5)]).to(device)
    try:
        with torch.inference_mode():
            out = model(x)
    except ValueError:
        raise
    except Exception as exc:  # each runtime fails its own way on a bad shape
        text = str(exc).strip()
        reason = (text.splitlines()[0] if text else type(exc).__name__)[:200]
        raise ParameterError(
            "input_shape",
            f"{tuple(input_shape)} does not fit the model: it fails on a batch of 2 such inputs "
            f"({reason}); check the shape and that the batch dimension is dynamic",
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(
            f"the model must return logits [batch, num_classes]; for a batch of 2 it returned "
            f"{shape} (a fixed batch size, or not a classifier?)"
        )
    if out.shape[1] < 2:
        raise ValueError(f"the model returns logits of width {out.shape[1]}; need >= 2 classes")
    if not torch.isfinite(out).all():
        raise ValueError("the model returns NaN or infinite logits on constant images (0 and ½)")
    return int(out.shape[1])
