"""``create_model``: an architecture of the registry by name, behind the input normalization,
with its arguments (input shape, per-channel mean and std) checked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn

from smoothcert._util.checks import ParameterError, integer_at_least, is_integer
from smoothcert.models.normalize import Normalize
from smoothcert.models.registry import model_spec


def _as_real(value: Any) -> float | None:
    """``value`` as a float, or None when it is no number (str and bool are not numbers)."""
    if isinstance(value, (str, bytes, bool)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _check_input_shape(input_shape: Any) -> tuple[int, int, int]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or not all(is_integer(v) and v > 0 for v in shape):
        raise ParameterError(
            "input_shape",
            f"must be (C, H, W) with three positive integer sizes, got {input_shape!r}",
        )
    return tuple(int(v) for v in shape)  # type: ignore[return-value]


def _check_channel_values(name: str, values: Any, channels: int) -> list[float]:
    """``values`` (mean or std) as ``channels`` finite floats; std must also be > 0."""
    try:
        items = list(values)
    except TypeError:
        items = None
    if items is None or isinstance(values, (str, bytes)):
        raise ParameterError(name, f"must be a sequence of {channels} number(s), got {values!r}")
    if len(items) != channels:
        raise ParameterError(
            name, f"needs {channels} value(s), one per input channel, got {len(items)}"
        )
    floats = [_as_real(v) for v in items]
    # NaN or inf would build a model whose every output is NaN or constant.
    if not all(f is not None and math.isfinite(f) for f in floats):
        raise ParameterError(name, f"must hold finite numbers, got {items!r}")
    if name == "std" and not all(f > 0 for f in floats):  # type: ignore[operator]
        raise ParameterError("std", f"must be > 0 per channel, got {items!r}")
    return floats  # type: ignore[return-value]


def create_model(
    arch: str,
    num_classes: int,
    input_shape: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
) -> nn.Sequential:
    """Build ``arch`` for ``num_classes`` classes and C×H×W ``input_shape``; [0,1] inputs.

    The model is ``nn.Sequential(Normalize(mean, std), body)``, untrained. It carries
    ``input_shape`` as a plain attribute (not a buffer, so checkpoints are unchanged):
    :class:`smoothcert.SmoothedClassifier` reads it to validate its inputs.

    Parameters
    ----------
    arch : str
        A registered architecture (:func:`list_models`; add one with :func:`register_model`).
    num_classes : int
        Number of classes, >= 2.
    input_shape : sequence of int
        (C, H, W), three positive sizes.
    mean : sequence of float
        Per-channel mean subtracted from the [0, 1] input, one finite value per channel.
    std : sequence of float
        Per-channel standard deviation the input is divided by, one value > 0 per channel.

    Returns
    -------
    nn.Sequential
        ``Normalize(mean, std)`` followed by the architecture's body.

    Raises
    ------
    ValueError
        If ``arch`` is not registered (the message lists the choices).
    ParameterError
        If ``num_classes``, ``input_shape``, ``mean`` or ``std`` is invalid (a ValueError
        too).

    Examples
    --------
    >>> model = create_model("lenet", 10, (1, 28, 28), mean=[0.1307], std=[0.3081])
    >>> model.input_shape
    (1, 28, 28)
    """
    spec = model_spec(arch)
    classes = integer_at_least("num_classes", num_classes, 2)
    shape = _check_input_shape(input_shape)
    mean_values = _check_channel_values("mean", mean, shape[0])
    std_values = _check_channel_values("std", std, shape[0])
    model = nn.Sequential(Normalize(mean_values, std_values), spec.body(classes, shape))
    model.input_shape = shape
    return model


def count_parameters(model: nn.Module) -> int:
    """The number of scalar parameters of ``model``.

    Parameters
    ----------
    model : nn.Module
        Any module.

    Returns
    -------
    int
        The total number of elements of its parameters (trainable or not; buffers excluded).

    Examples
    --------
    >>> from torch import nn
    >>> count_parameters(nn.Linear(3, 2))  # 3×2 weights and 2 biases
    8
    """
    return sum(p.numel() for p in model.parameters())
