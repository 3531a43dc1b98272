"""The base classifier compiled for inference (``SmoothedClassifier(compile=True)``).

``torch.compile`` with inductor's freezing folds each batch norm into the convolution before
it and fuses the elementwise work (ReLU, residual additions) into the convolutions' kernels:
counts() on a CIFAR ResNet-20 on one CPU core ran 1.62× faster in bf16 and 1.47× in fp32
(``benchmarks/compile_throughput.py``). The compiled model computes the same function in a
different order, so its logits differ in the last bits from the eager model's (and a noisy
input near a decision boundary can change class, as between bf16 and fp32): the smoothed
classifier, and every certificate, is then that of the compiled base classifier, which is why
a run records the setting.

A compiled graph is specialized to a batch shape, and each new shape costs a compilation
(seconds to a minute). Batches are therefore padded to the one batch size of the run and the
padding's outputs dropped: in eval mode every row of a batch is computed independently of the
others, so the padding changes nothing but the cost of the last, short batch. Freezing takes
the weights as constants when the model is first called: a model changed afterwards needs a
new classifier.
"""

from __future__ import annotations

import torch
from torch import nn


class CompiledForward:
    """``model`` compiled once for batches of ``batch_size`` rows; shorter batches are padded.

    Parameters
    ----------
    model : torch.nn.Module
        The base classifier, in eval mode and in the layout it will be called with.
    batch_size : int
        The one batch size it is compiled for; a call takes at most that many rows.
    """

    def __init__(self, model: nn.Module, batch_size: int) -> None:
        self.batch_size = batch_size
        self._compiled = torch.compile(model, dynamic=False)
        self._ready = False

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        b = batch.shape[0]
        if b > self.batch_size:
            raise ValueError(f"a batch of {b} rows, more than the compiled {self.batch_size}")
        if b < self.batch_size:
            # zeros in the batch's layout (channels-last stays channels-last)
            pad = batch.new_zeros((self.batch_size - b, *batch.shape[1:]))
            batch = torch.cat([batch, pad.to(memory_format=_layout(batch))])
        if self._ready:
            return self._run(batch)[:b]
        try:
            out = self._run(batch)
        except Exception as exc:  # inductor needs a C++ compiler (CPU) or Triton (CUDA)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RuntimeError(
                f"compile=True: torch.compile could not compile the base model "
                f"({type(exc).__name__}: {first[:200]}); certify without it"
            ) from exc
        self._ready = True
        return out[:b]

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        # Freezing is read when a graph is compiled, which happens inside the first call (and
        # any recompilation); torch.compile's own options= did not turn it on (measured: no
        # speed-up), inductor's config patched around the call does.
        from torch._inductor import config as inductor_config

        with inductor_config.patch(freezing=True):
            return self._compiled(batch)


def _layout(batch: torch.Tensor) -> torch.memory_format:
    if batch.dim() == 4 and batch.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
