"""Denoisers and frozen classifiers from any model source, for denoised smoothing.

Denoised smoothing (Salman et al. 2020) puts a denoiser D before a classifier f that was never
trained with noise. Both may come from anywhere a smoothcert model may: a smoothcert
checkpoint (or ``zoo:NAME``), an ONNX file (run by ONNX Runtime), a torch.export ``.pt2``
program, a TorchScript archive, or ``python:package.module:factory`` (with safetensors
weights). This module loads

- a ready D of [0, 1] images (:func:`load_any_denoiser`): an image denoiser as it is, or a
  diffusion model's noise-prediction network ε(x_t, t) wrapped in
  :class:`~smoothcert.models.diffusion.OneStepDiffusionDenoiser` at the timestep t* of σ
  (Carlini et al. 2023, Eq. 2: ᾱ_t* = 1/(1 + 4σ²));
- a frozen classifier f for the denoiser objectives (:func:`load_any_classifier`), with
  :func:`has_gradients` telling whether gradients flow through it (ONNX Runtime computes
  none).

Each returns the model's identity (format and sha256 of its file or files): runs and trainings
record it, so that a resume with another file is refused.

References
----------
.. [1] H. Salman, M. Sun, G. Yang, A. Kapoor, J. Z. Kolter, "Denoised Smoothing: A Provable
   Defense for Pretrained Classifiers", NeurIPS 2020.
.. [2] N. Carlini, F. Tramèr, K. Dvijotham, L. Rice, M. Sun, J. Z. Kolter, "(Certified!!)
   Adversarial Robustness for Free!", ICLR 2023.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smoothcert._util.checks import ParameterError, positive_int
from smoothcert._util.hashing import file_sha256
from smoothcert.certify.denoised import check_denoiser_output
from smoothcert.models.diffusion import (
    NoiseSchedule,
    OneStepDiffusionDenoiser,
    alpha_bar_schedule,
    cosine_schedule,
    linear_schedule,
    schedule_from_metadata,
)

__all__ = [
    "LoadedModel",
    "has_gradients",
    "load_any_classifier",
    "load_any_denoiser",
    "schedule_from_spec",
]

#: The built-in schedules ``schedule_from_spec`` names; anything else is a file of ᾱ_t values.
SCHEDULE_NAMES = ("linear", "cosine")


@dataclass
class LoadedModel:
    """A model loaded from a source, with what identifies it.

    Attributes
    ----------
    module : torch.nn.Module
        The model, in eval mode.
    metadata : dict
        A smoothcert checkpoint's metadata, or an outside model's (``source`` etc.).
    identity : dict
        JSON entries that identify the model for a run: ``format``, ``sha256`` (and, for a
        python: factory, ``factory`` and ``source_sha256``; for a diffusion model ``schedule``
        and ``timestep``).
    path : pathlib.Path or None
        The model file (``zoo:NAME`` resolved); None for a python: factory.
    """

    module: nn.Module
    metadata: dict[str, Any]
    identity: dict[str, Any]
    path: Path | None = None
    notes: list[str] = field(default_factory=list)


def schedule_from_spec(spec: str, steps: int | None = None) -> NoiseSchedule:
    """The diffusion schedule a command line names: ``linear``, ``cosine`` or a file.

    Parameters
    ----------
    spec : str
        "linear" (Ho et al. 2020, §4: β from 10⁻⁴ to 0.02), "cosine" (Nichol & Dhariwal 2021,
        Eq. 17), or a ``.npy``/text file of the ᾱ_0 … ᾱ_{T−1} the model was trained with.
    steps : int, optional
        T for "linear" and "cosine" (default 1000); for a file, if given, its length.

    Returns
    -------
    NoiseSchedule

    Raises
    ------
    ParameterError
        Naming ``diffusion_steps`` if ``steps`` is not a positive integer or disagrees with a
        file's length; naming ``alpha_bar`` if the file holds no valid schedule.
    FileNotFoundError
        If ``spec`` names neither a built-in schedule nor an existing file.
    """
    if steps is not None:
        steps = positive_int("diffusion_steps", steps)
    if spec == "linear":
        return linear_schedule(steps or 1000)
    if spec == "cosine":
        return cosine_schedule(steps or 1000)
    if not Path(spec).is_file():
        raise FileNotFoundError(
            f"diffusion schedule {spec!r} is neither linear, cosine nor an existing file of "
            "alpha-bar values"
        )
    schedule = alpha_bar_schedule(spec)
    if steps is not None and steps != schedule.steps:
        raise ParameterError(
            "diffusion_steps", f"is {steps} but the schedule file {spec} has {schedule.steps} steps"
        )
    return schedule


def _outside(
    spec: str, device: torch.device, weights: str | Path | None, trust_code: bool
) -> tuple[nn.Module, dict[str, Any], Path | None]:
    """(module, identity, file) of a model from outside smoothcert, without the classifier
    probe of :func:`smoothcert.models.adapters.load_model` (a denoiser returns images)."""
    from smoothcert.models.adapters import RUNS_CODE, _load, model_format

    fmt = model_format(spec)
    if fmt in RUNS_CODE and not trust_code:
        raise ParameterError(
            "trust_code",
            f"is needed to load {spec}: its loader runs code stored in the file (pickle or "
            "TorchScript); set it only for a file you trust, or export the model to ONNX",
        )
    if weights is not None and fmt != "python":
        raise ParameterError("denoiser_weights", "applies to a python: denoiser only")
    # A denoised run has two weights files, the classifier's and the denoiser's: errors about
    # the denoiser's name denoiser_weights.
    module, source = _load(fmt, spec, device, weights, weights_name="denoiser_weights")
    module.eval()
    return module, source, None if fmt == "python" else Path(spec)


def load_any_denoiser(
    spec: str,
    *,
    sigma: float | None,
    input_shape: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
    weights: str | Path | None = None,
    trust_code: bool = False,
    schedule: NoiseSchedule | None = None,
    timestep: int | None = None,
) -> LoadedModel:
    """A denoiser D of [0, 1] images for smoothing at ``sigma``, from any model source.

    - A smoothcert denoiser checkpoint (``task = "denoiser"``): an image denoiser as it is
      (a ``notes`` entry when it was trained at another σ); a noise-prediction network with
      the schedule its metadata records, at t*.
    - An ONNX, ``.pt2``, TorchScript or python: model: an image denoiser, or with
      ``schedule`` an ε-network ε(x_t, t) (on [−1, 1] images, t an int64 [B] tensor of
      0-based steps) made D by :class:`OneStepDiffusionDenoiser` at
      t* = argmin_t |ᾱ_t − 1/(1 + 4σ²)| (Carlini et al. 2023, Eq. 2), or ``timestep``.

    Parameters
    ----------
    spec : str
        The model: a checkpoint path or ``zoo:NAME``, ``FILE.onnx``, ``FILE.pt2``, a
        TorchScript archive or ``python:package.module:factory``.
    sigma : float or None
        The smoothing noise std (on [0, 1] images); diffusion models need it (t*).
    input_shape : sequence of int, optional
        (C, H, W) of the classifier's inputs: D must map them to the same shape (checked by
        running it once).
    device : torch.device or str, default "cpu"
        Where D runs.
    weights : str or pathlib.Path, optional
        safetensors weights of a python: factory. Errors about them name
        ``denoiser_weights``, to tell them from the classifier's ``weights``.
    trust_code : bool, default False
        Allow ``.pt2`` and TorchScript files, whose loaders run code from the file.
    schedule : NoiseSchedule, optional
        Outside models only: the model is an ε-network trained with this schedule.
    timestep : int, optional
        Diffusion models: this step instead of t*.

    Returns
    -------
    LoadedModel
        D (eval mode), the metadata, the identity (format, sha256, and for a diffusion model
        its schedule and the timestep used), the file, and ``notes``: what the caller should
        warn about (a denoiser trained at another σ).

    Raises
    ------
    ValueError
        If the file is a classifier checkpoint, a checkpoint is given a schedule, an ONNX or
        ``.pt2`` ε-network is given (one-input models only), σ is outside the schedule, or D
        does not map ``input_shape`` to itself (the messages name the flag or parameter).
    FileNotFoundError
        If the file does not exist.
    """
    from smoothcert.models.adapters import model_format
    from smoothcert.models.checkpoint import load_checkpoint, resolve_checkpoint

    device = torch.device(device)
    fmt = model_format(spec)
    notes: list[str] = []
    if fmt == "checkpoint":
        if schedule is not None:
            raise ParameterError(
                "diffusion_schedule",
                f"applies to outside diffusion models only: the checkpoint {spec} records "
                "its own schedule",
            )
        if weights is not None:
            raise ParameterError("denoiser_weights", "applies to a python: denoiser only")
        path = resolve_checkpoint(spec)
        model, meta = load_checkpoint(path, device=device)
        if meta.get("task") != "denoiser":
            raise ParameterError(
                "denoiser",
                f"{spec} is a {meta.get('task') or 'classifier'} checkpoint, not a denoiser "
                "(train one with `smoothcert train-denoiser`)",
            )
        identity: dict[str, Any] = {"format": "checkpoint", "sha256": file_sha256(path)}
        if model.denoiser_config["kind"] == "image":
            if timestep is not None:
                raise ParameterError("timestep", "applies to diffusion denoisers only")
            trained = meta.get("sigma")
            if None not in (trained, sigma) and float(trained) != float(sigma):
                notes.append(
                    f"the denoiser {spec} was trained at σ = {trained}, the smoothing σ is "
                    f"{sigma} (allowed, but it removes noise of another level)"
                )
            denoiser: nn.Module = model
        else:
            sched = schedule_from_metadata(meta.get("schedule"))
            _need_sigma(sigma, spec)
            denoiser = OneStepDiffusionDenoiser(model, sched, sigma, timestep=timestep).eval()
            identity |= {"timestep": denoiser.timestep}
    else:
        if fmt in ("onnx", "pt2") and schedule is not None:
            raise ParameterError(
                "denoiser",
                f"{spec}: a noise-prediction network takes two inputs (x_t, t), which "
                f"{fmt} models here cannot; give it as python:package.module:factory or a "
                "TorchScript archive (or an exported image denoiser without a schedule)",
            )
        module, identity, path = _outside(spec, device, weights, trust_code)
        meta = {"source": identity}
        if schedule is not None:
            _need_sigma(sigma, spec)
            denoiser = OneStepDiffusionDenoiser(module, schedule, sigma, timestep=timestep).eval()
            identity = identity | {
                "schedule": schedule.to_metadata(),
                "timestep": denoiser.timestep,
            }
        else:
            if timestep is not None:
                raise ParameterError("timestep", "applies to diffusion denoisers only")
            denoiser = module
    if input_shape is not None:
        check_denoiser_output(
            denoiser, tuple(input_shape), _device_of(denoiser, device), torch.float32
        )
    return LoadedModel(denoiser, meta, identity, path, notes)


def _need_sigma(sigma: float | None, spec: str) -> None:
    if sigma is None:
        raise ParameterError(
            "sigma", f"is needed to denoise with the diffusion model {spec} (its timestep t*)"
        )


def _device_of(model: nn.Module, default: torch.device) -> torch.device:
    """Where ``model``'s parameters are (an ONNX Runtime model has none: the CPU)."""
    p = next(model.parameters(), None)
    if p is not None:
        return p.device
    return torch.device("cpu") if getattr(model, "session", None) is not None else default


def load_any_classifier(
    spec: str,
    *,
    input_shape: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
    trust_code: bool = False,
) -> LoadedModel:
    """A frozen classifier f (eval mode, parameters without gradients), from any model source.

    Parameters
    ----------
    spec : str
        A classifier checkpoint or ``zoo:NAME``, ``FILE.onnx``, ``FILE.pt2``, a TorchScript
        archive or ``python:package.module:factory`` (which loads its own weights).
    input_shape : sequence of int, optional
        (C, H, W) of its inputs, for an outside model that does not state it; a model that
        states another shape is refused.
    device : torch.device or str, default "cpu"
        Where it runs.
    trust_code : bool, default False
        Allow ``.pt2`` and TorchScript files.

    Returns
    -------
    LoadedModel
        f, its metadata (num_classes, input_shape), its identity (format and sha256) and file.

    Raises
    ------
    ValueError
        If the file is a denoiser checkpoint, or the model is not a classifier of
        ``input_shape`` inputs.
    """
    from smoothcert.models.adapters import load_model, model_format
    from smoothcert.models.checkpoint import load_checkpoint, resolve_checkpoint

    device = torch.device(device)
    if model_format(spec) == "checkpoint":
        path: Path | None = resolve_checkpoint(spec)
        model, meta = load_checkpoint(path, device=device)
        if meta.get("task") == "denoiser":
            raise ValueError(f"{spec} is a denoiser checkpoint, not a classifier")
        identity = {"format": "checkpoint", "sha256": file_sha256(path)}
        own = meta.get("input_shape")
        if input_shape is not None and own is not None and tuple(own) != tuple(input_shape):
            raise ValueError(
                f"{spec} takes inputs of shape {tuple(own)}, but the denoiser returns images "
                f"of shape {tuple(input_shape)}"
            )
    else:
        try:
            model, meta = load_model(
                spec, device=device, input_shape=input_shape, trust_code=trust_code
            )
        except ValueError as exc:
            raise ValueError(f"{spec}: {exc}") from None
        identity = dict(meta["source"])
        path = None if spec.startswith("python:") else Path(spec)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return LoadedModel(model, meta, identity, path)


def has_gradients(model: nn.Module, input_shape: Sequence[int], device: torch.device) -> bool:
    """Whether gradients flow from ``model``'s outputs back to its inputs.

    Runs the model once on a batch of two zero images that require gradients. A model run by
    ONNX Runtime returns tensors cut from the autograd graph, so the denoiser objectives
    cannot train through it.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier (in eval mode).
    input_shape : sequence of int
        (C, H, W).
    device : torch.device
        Where its inputs live.

    Returns
    -------
    bool
    """
    x = torch.zeros((2, *input_shape), device=_device_of(model, device), requires_grad=True)
    with torch.enable_grad():
        out = model(x)
    return isinstance(out, torch.Tensor) and out.requires_grad
