"""``python:package.module:factory``: the user's own code builds the nn.Module, and weights come
from a safetensors file (never a pickle). Naming a factory is the explicit opt-in to running
that code: importing the module runs it."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from smoothcert._util.checks import MissingFileError, ParameterError
from smoothcert.models.checkpoint import load_state

_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def parse_spec(spec: str) -> tuple[str, str]:
    """("package.module", "factory") from "package.module:factory"."""
    if not _SPEC.match(spec):
        raise ValueError(
            f"model python:{spec} must have the form python:package.module:factory "
            "(an importable module and a function in it that returns an nn.Module)"
        )
    module, name = spec.split(":")
    return module, name


def build(
    spec: str, weights: Path | None, weights_name: str = "weights"
) -> tuple[nn.Module, Path | None]:
    """The module ``factory()`` returns, with ``weights`` loaded (strict names and shapes), and
    the path of the factory's source file (its sha256 identifies the code of a run).
    ``weights_name``: the caller's parameter that gave ``weights``, which its errors name (a
    denoiser's weights are ``denoiser_weights``)."""
    module_name, name = parse_spec(spec)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"cannot import {module_name!r} for model python:{spec} ({exc}); put its folder on "
            "PYTHONPATH or install it"
        ) from None
    factory = getattr(module, name, None)
    if not callable(factory):
        raise ValueError(f"{module_name} has no function {name!r} (model python:{spec})")
    model = factory()
    if not isinstance(model, nn.Module):
        raise ValueError(f"python:{spec} returned {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        if not Path(weights).is_file():
            raise MissingFileError(weights_name, f"{weights} does not exist")
        try:
            tensors = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ParameterError(
                weights_name, f"{weights} is not a safetensors file ({exc})"
            ) from None
        load_state(model, tensors, str(weights))
    source = inspect.getsourcefile(module)
    return model, Path(source) if source else None
