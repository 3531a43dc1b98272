"""The base classifier of denoised smoothing: f∘D, a classifier after a denoiser.

Denoised smoothing (Salman et al. 2020, §3) smooths f∘D: g(x) = argmax_c P(f(D(x + ε)) = c),
ε ~ N(0, σ²I), the noise added before D, so that a classifier f never trained with noise
certifies (in sound mode the lattice noise, also before D). :class:`smoothcert.SmoothedClassifier`
builds it from its ``denoiser`` argument; the denoisers themselves live in
:mod:`smoothcert.models.denoisers` and :mod:`smoothcert.models.diffusion`.

References
----------
.. [1] H. Salman, M. Sun, G. Yang, A. Kapoor, J. Z. Kolter, "Denoised Smoothing: A Provable
   Defense for Pretrained Classifiers", NeurIPS 2020.
"""

from __future__ import annotations

import torch
from torch import nn

from smoothcert._util.checks import ParameterError


class DenoisedClassifier(nn.Module):
    """f∘D, the base classifier of denoised smoothing (Salman et al. 2020, §3).

    Parameters
    ----------
    denoiser : torch.nn.Module
        D, from [B, *input_shape] to the same shape.
    classifier : torch.nn.Module
        f, from [B, *input_shape] to logits.

    Attributes
    ----------
    input_shape : tuple of int
        f's ``input_shape``, else D's, when either has one.

    Raises
    ------
    ParameterError
        If ``denoiser`` is not a module.
    """

    def __init__(self, denoiser: nn.Module, classifier: nn.Module) -> None:
        if not isinstance(denoiser, nn.Module):
            raise ParameterError(
                "denoiser", f"must be a torch.nn.Module or None, got {type(denoiser).__name__}"
            )
        super().__init__()
        self.denoiser = denoiser
        self.classifier = classifier
        shape = getattr(classifier, "input_shape", None)
        shape = shape if shape is not None else getattr(denoiser, "input_shape", None)
        if shape is not None:
            self.input_shape = tuple(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """f(D(x)).

        Parameters
        ----------
        x : torch.Tensor
            A batch of (noisy) inputs.

        Returns
        -------
        torch.Tensor
            f's logits.
        """
        return self.classifier(self.denoiser(x))


def check_denoiser_output(
    denoiser: nn.Module, shape: tuple[int, ...], device: torch.device, dtype: torch.dtype
) -> None:
    """ParameterError naming ``denoiser`` unless D maps zeros [1, *shape] to that shape.

    Runs D once, in eval mode without gradients; its training flag is restored after.

    Parameters
    ----------
    denoiser : torch.nn.Module
        D.
    shape : tuple of int
        The shape of one input of f.
    device : torch.device
        Where to run D.
    dtype : torch.dtype
        The dtype of the zeros.

    Raises
    ------
    ParameterError
        If D fails on the input or returns another shape.
    """
    x = torch.zeros((1, *shape), dtype=dtype, device=device)
    was_training = denoiser.training
    denoiser.eval()
    try:
        with torch.no_grad():
            out = denoiser(x)
    except (RuntimeError, TypeError, ValueError) as exc:  # TypeError: e.g. an ε(x_t, t) net
        lines = str(exc).strip().splitlines()
        problem = lines[0] if lines else type(exc).__name__
        raise ParameterError("denoiser", f"fails on an input of shape {shape}: {problem}") from None
    finally:
        denoiser.train(was_training)
    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != (1, *shape):
        raise ParameterError(
            "denoiser",
            f"must return images of the classifier's input shape {(1, *shape)}, got {got}",
        )
