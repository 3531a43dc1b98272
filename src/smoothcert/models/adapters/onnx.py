"""ONNX models run by ONNX Runtime, as a base classifier ``SmoothedClassifier`` can smooth.

The session is the deployed artifact: the certificate is for this graph as ONNX Runtime computes
it with the chosen execution provider, in the graph's own precision (float32 inputs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

#: ONNX Runtime's execution provider for each torch device type.
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}
MISSING = "ONNX models need ONNX Runtime: pip install 'smoothcert[onnx]'"


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise ValueError(MISSING) from None
    return onnxruntime


def runtime_version() -> str:
    return str(_onnxruntime().__version__)


def _dims(shape: list[Any]) -> list[int | None]:
    """A graph shape with symbolic or unknown dimensions as None."""
    return [d if isinstance(d, int) and d > 0 else None for d in shape]


class OnnxClassifier(nn.Module):
    """An ONNX graph with one float32 input [batch, *input_shape] and (first) output
    [batch, num_classes], run by an ONNX Runtime session on ``device``'s execution provider.

    It has no parameters, so ``SmoothedClassifier`` draws the noise on the CPU; with the CUDA
    provider ONNX Runtime copies each batch to the GPU itself. bf16 autocast and channels-last
    do not apply (the graph fixes its own arithmetic).
    """

    def __init__(self, path: str | Path, device: torch.device, threads: int | None = None):
        super().__init__()
        ort = _onnxruntime()
        provider = PROVIDERS.get(device.type)
        if provider is None:
            raise ValueError(f"device {device} has no ONNX Runtime execution provider (cpu, cuda)")
        if provider not in ort.get_available_providers():
            raise ValueError(
                f"this ONNX Runtime build has no {provider} (it has "
                f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu for CUDA"
            )
        options = ort.SessionOptions()
        # As many threads as torch uses, so one setting governs both runtimes on a shared CPU.
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3  # errors only: the library never prints
        # No busy-waiting between runs: idle ORT threads spinning would take the cores torch
        # needs to draw the next batch of noise.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        provider_options = [{"device_id": device.index or 0}] if device.type == "cuda" else [{}]
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=[provider], provider_options=provider_options
            )
        except Exception as exc:  # ORT raises its own exception types for a bad file
            reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise ValueError(f"{path} is not a valid ONNX model ({reason})") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ValueError(f"{path} has {len(inputs)} graph inputs ({names}); a classifier "
                             "needs exactly one (the image batch)")  # fmt: skip
        if inputs[0].type != "tensor(float)":
            raise ValueError(f"{path}'s input {inputs[0].name!r} is {inputs[0].type}; "
                             "only float32 inputs (tensor(float)) are supported")  # fmt: skip
        shape = _dims(inputs[0].shape)
        if len(shape) < 2:
            raise ValueError(f"{path}'s input has shape {inputs[0].shape}; expected [batch, ...]")
        if shape[0] is not None:
            raise ValueError(
                f"{path} has a fixed batch size of {shape[0]} (input {inputs[0].name!r} is "
                f"{inputs[0].shape}); re-export it with a dynamic batch dimension, e.g. "
                "torch.onnx.export(..., dynamic_shapes=({0: torch.export.Dim('batch')},))"
            )
        out_shape = _dims(outputs[0].shape)
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.graph_input_shape: tuple[int | None, ...] = tuple(shape[1:])
        self.graph_num_classes: int | None = out_shape[-1] if len(out_shape) == 2 else None
        self.providers: list[str] = list(self.session.get_providers())
        if all(d is not None for d in self.graph_input_shape):
            self.input_shape = tuple(int(d) for d in self.graph_input_shape)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(x.device.type):
            raise ValueError("precision bf16 does not apply to an ONNX Runtime model; use fp32")
        # On CPU this shares memory with x (no copy) when x is float32 and contiguous.
        batch = x.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self.session.run([self.output_name], {self.input_name: batch})
        return torch.from_numpy(logits).to(x.device)

    def extra_repr(self) -> str:
        shape = "×".join("?" if d is None else str(d) for d in self.graph_input_shape)
        return f"input={self.input_name}[batch×{shape}], providers={self.providers}"
