"""Models: ``create_model(arch, num_classes, input_shape, mean, std)``.

Denoisers (images to images, for denoised smoothing) have their own registry and builder,
``create_denoiser(arch, input_shape, mean, std, **options)``: :mod:`.denoisers`.

Every model is ``nn.Sequential(Normalize(mean, std), body)`` and takes images in [0,1]; the
architectures (``arch``) are the :class:`ModelSpec` entries of :mod:`smoothcert.models.registry`.
"""

from __future__ import annotations

from smoothcert.models.checkpoint import load_denoiser
from smoothcert.models.create import count_parameters, create_model
from smoothcert.models.denoisers import create_denoiser, list_denoisers, register_denoiser
from smoothcert.models.normalize import Normalize
from smoothcert.models.pooling import MaxPool2x2
from smoothcert.models.registry import (
    ModelSpec,
    describe_model,
    list_models,
    register_model,
)

__all__ = [
    "MaxPool2x2",
    "ModelSpec",
    "Normalize",
    "count_parameters",
    "create_denoiser",
    "create_model",
    "describe_model",
    "list_denoisers",
    "list_models",
    "load_denoiser",
    "register_denoiser",
    "register_model",
]
