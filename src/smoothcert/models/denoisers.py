"""Denoisers for denoised smoothing: ``create_denoiser(arch, input_shape, mean, std, **options)``.

Denoised smoothing (Salman et al. 2020) smooths f∘D, a classifier f after a denoiser D, so that
a classifier never trained with noise certifies. Denoisers have a registry of their own,
beside the classifiers' (:mod:`smoothcert.models.registry`): they map images to images and
take no number of classes, so ``list_models`` and ``--arch`` keep listing classifiers only.
Each :class:`DenoiserSpec` has a ``kind``:

- ``"image"``: D itself, [0, 1] images to [0, 1] images. ``create_denoiser`` returns
  :class:`ImageDenoiser`: normalize, the body, un-normalize. DnCNN (``"dncnn"``).
- ``"noise-prediction"``: a diffusion model's ε(x_t, t) on [−1, 1] images (input normalization
  fixed at mean 0.5, std 0.5), made a D of [0, 1] images for one σ by
  :class:`smoothcert.models.diffusion.OneStepDiffusionDenoiser`. The small U-Net
  (``"unet-small"``).

Checkpoints (:mod:`smoothcert.models.checkpoint`) of a denoiser carry ``task = "denoiser"``,
``arch``, ``arch_options``, ``input_shape``, ``mean``, ``std``, ``dataset`` and, for an image
denoiser, the ``sigma`` it was trained at or, for a noise-prediction network, its diffusion
``schedule`` (:meth:`~smoothcert.models.diffusion.NoiseSchedule.to_metadata`).
:func:`denoiser_metadata` writes them; :func:`load_denoiser` returns a ready D.

References
----------
.. [1] H. Salman, M. Sun, G. Yang, A. Kapoor, J. Z. Kolter, "Denoised Smoothing: A Provable
   Defense for Pretrained Classifiers", NeurIPS 2020.
.. [2] K. Zhang, W. Zuo, Y. Chen, D. Meng, L. Zhang, "Beyond a Gaussian Denoiser: Residual
   Learning of Deep CNN for Image Denoising", IEEE TIP 2017.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from smoothcert._util.checks import ParameterError, finite_real, integer_at_least, one_of
from smoothcert.models.diffusion import schedule_from_metadata
from smoothcert.models.normalize import Normalize
from smoothcert.models.unet import SmallUNet

__all__ = [
    "DENOISER_KINDS",
    "DenoiserSpec",
    "DnCNN",
    "ImageDenoiser",
    "create_denoiser",
    "denoiser_from_metadata",
    "denoiser_metadata",
    "describe_denoiser",
    "list_denoisers",
    "register_denoiser",
]

#: The kinds of denoiser a :class:`DenoiserSpec` builds.
DENOISER_KINDS = ("image", "noise-prediction")


class DnCNN(nn.Module):
    """DnCNN (Zhang et al. 2017, Fig. 1) in the form Salman et al. 2020 train (§3, App. B).

    conv 3×3 + ReLU, then ``depth − 2`` blocks of conv 3×3 (no bias) + BatchNorm + ReLU, then
    conv 3×3 (no bias) back to C channels; ``width`` channels throughout, 'same' padding.
    Residual learning: the network predicts the noise and D(z) = z − net(z) (Zhang et al.,
    Eq. 1). Initialization as Salman et al.'s released denoisers: orthogonal convolution
    weights, zero biases, BatchNorm at identity, and the last convolution zero, so the untrained
    D is the identity; BatchNorm with eps 1e-4 and momentum 0.95 (their setting).

    Parameters
    ----------
    channels : int
        Image channels C.
    depth : int, default 17
        Convolution layers, >= 2.
    width : int, default 64
        Channels of the hidden layers.
    """

    def __init__(self, channels: int, depth: int = 17, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width, eps=1e-4, momentum=0.95),
                nn.ReLU(),
            ]
        layers.append(nn.Conv2d(width, channels, 3, padding=1, bias=False))
        self.net = nn.Sequential(*layers)
        convs = [m for m in self.net if isinstance(m, nn.Conv2d)]
        for conv in convs:
            nn.init.orthogonal_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
        nn.init.zeros_(convs[-1].weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z − net(z): the input minus the predicted noise (Zhang et al., Eq. 1).

        Parameters
        ----------
        z : torch.Tensor
            Noisy (normalized) images [B, C, H, W].

        Returns
        -------
        torch.Tensor
            The denoised images, same shape.
        """
        return z - self.net(z)


class ImageDenoiser(nn.Module):
    """D(x) = denormalize(body(normalize(x))): [0, 1] images in and out.

    With ``body`` a residual z − net(z), D(x) = x − std·net((x − mean)/std): the residual form
    holds in pixel units too.

    Parameters
    ----------
    mean, std : sequence of float
        Per-channel input normalization (identity by default in :func:`create_denoiser`).
    body : torch.nn.Module
        Normalized images to normalized images, same shape.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], body: nn.Module) -> None:
        super().__init__()
        self.normalize = Normalize(mean, std)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """body((x − mean)/std)·std + mean.

        Parameters
        ----------
        x : torch.Tensor
            Noisy images [B, C, H, W] on the [0, 1] scale.

        Returns
        -------
        torch.Tensor
            The denoised images, same shape (not clamped).
        """
        return self.body(self.normalize(x)) * self.normalize.std + self.normalize.mean


#: (input_shape (C, H, W), **options) -> the body.
DenoiserBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class DenoiserSpec:
    """One denoiser architecture: ``build(input_shape, **options)`` makes its body.

    Parameters
    ----------
    name : str
        The ``arch`` of :func:`create_denoiser` and of checkpoints.
    build : callable
        ``build((C, H, W), **options)``; for kind "image" a module from normalized images to
        normalized images, for "noise-prediction" a module ``(x_t, t) -> ε``.
    kind : {"image", "noise-prediction"}
        See the module docstring.
    options : dict of str to int
        The architecture's options (positive integers) and their defaults.
    description : str
        One line for :func:`describe_denoiser`.
    """

    name: str
    build: DenoiserBuilder
    kind: str
    options: dict[str, int] = field(default_factory=dict)
    description: str = ""


_DENOISERS: dict[str, DenoiserSpec] = {}

#: The smallest value of each built-in option.
_OPTION_MINIMA = {"depth": 2, "width": 1, "time_dim": 2}


def register_denoiser(spec: DenoiserSpec) -> DenoiserSpec:
    """Make ``spec`` available to :func:`create_denoiser` (and checkpoints) by its name.

    Parameters
    ----------
    spec : DenoiserSpec
        The architecture to add.

    Returns
    -------
    DenoiserSpec
        ``spec``, unchanged.

    Raises
    ------
    ValueError
        If the name is taken, by a denoiser or a classifier, or the kind is unknown.
    """
    from smoothcert.models.registry import list_models

    one_of("kind", spec.kind, DENOISER_KINDS)
    if spec.name in _DENOISERS or spec.name in list_models():
        raise ValueError(f"architecture {spec.name!r} is already registered")
    _DENOISERS[spec.name] = spec
    return spec


def list_denoisers() -> list[str]:
    """The registered denoiser architectures, in registration order.

    Returns
    -------
    list of str
        The built-in ones first, then those registered since.

    Examples
    --------
    >>> list_denoisers()[:2]
    ['dncnn', 'unet-small']
    """
    return list(_DENOISERS)


def describe_denoiser(arch: str) -> str:
    """The one-line description of denoiser ``arch``.

    Parameters
    ----------
    arch : str
        A registered denoiser architecture.

    Returns
    -------
    str
        Its description.

    Raises
    ------
    KeyError
        If ``arch`` is not registered.
    """
    return _DENOISERS[arch].description


def denoiser_spec(arch: object) -> DenoiserSpec:
    """The spec of ``arch``; ParameterError naming ``arch`` and listing the choices."""
    if not isinstance(arch, str) or arch not in _DENOISERS:
        raise ParameterError(
            "arch",
            f"is not a denoiser architecture: {arch!r}; choose one of {', '.join(_DENOISERS)}",
        )
    return _DENOISERS[arch]


def _options(spec: DenoiserSpec, options: dict[str, Any]) -> dict[str, int]:
    unknown = sorted(set(options) - set(spec.options))
    if unknown:
        allowed = ", ".join(spec.options) or "none"
        raise ParameterError(
            unknown[0], f"is not an option of denoiser {spec.name!r} (options: {allowed})"
        )
    merged = dict(spec.options) | options
    return {k: integer_at_least(k, v, _OPTION_MINIMA.get(k, 1)) for k, v in merged.items()}


def create_denoiser(
    arch: str,
    input_shape: Sequence[int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **options: int,
) -> nn.Module:
    """Build denoiser ``arch`` for C×H×W ``input_shape``, untrained.

    Parameters
    ----------
    arch : str
        A registered denoiser (:func:`list_denoisers`).
    input_shape : sequence of int
        (C, H, W).
    mean, std : sequence of float, optional
        Per-channel input normalization. Image denoisers: default mean 0, std 1 (the [0, 1]
        images as they are, as Salman et al.). Noise-prediction networks take [−1, 1] images:
        mean and std are 0.5 per channel and may only be given as such.
    **options : int
        Architecture options (``depth``, ``width`` of DnCNN; ``width``, ``time_dim`` of the
        U-Net), defaults from the spec.

    Returns
    -------
    torch.nn.Module
        Kind "image": an :class:`ImageDenoiser`. Kind "noise-prediction": the network
        ε(x_t, t). It carries ``input_shape`` and ``denoiser_config`` (arch, kind, options,
        input shape, mean, std: what :func:`denoiser_metadata` records) as plain attributes.

    Raises
    ------
    ParameterError
        If ``arch`` is unknown, an option is unknown or not a positive integer, or
        ``input_shape``, ``mean`` or ``std`` is invalid (the message names it).

    Examples
    --------
    >>> d = create_denoiser("dncnn", (1, 28, 28), depth=5, width=16)
    >>> x = torch.rand(2, 1, 28, 28)
    >>> bool(torch.equal(d(x), x))  # the last convolution starts at zero: D = identity
    True
    """
    from smoothcert.models.create import _check_channel_values, _check_input_shape

    spec = denoiser_spec(arch)
    shape = _check_input_shape(input_shape)
    opts = _options(spec, options)
    channels = shape[0]
    if spec.kind == "noise-prediction":
        for name, given in (("mean", mean), ("std", std)):
            if (
                given is not None
                and _check_channel_values(name, given, channels) != [0.5] * channels
            ):
                raise ParameterError(
                    name,
                    f"of a noise-prediction network is fixed at 0.5 per channel (it takes "
                    f"images scaled to [-1, 1]), got {list(given)!r}",
                )
        mean_values = std_values = [0.5] * channels
        model = spec.build(shape, **opts)
    else:
        mean_values = _check_channel_values(
            "mean", [0.0] * channels if mean is None else mean, channels
        )
        std_values = _check_channel_values(
            "std", [1.0] * channels if std is None else std, channels
        )
        model = ImageDenoiser(mean_values, std_values, spec.build(shape, **opts))
    model.input_shape = shape
    model.denoiser_config = {
        "arch": spec.name,
        "kind": spec.kind,
        "arch_options": opts,
        "input_shape": list(shape),
        "mean": mean_values,
        "std": std_values,
    }
    return model


def denoiser_metadata(
    model: nn.Module,
    *,
    dataset: str,
    sigma: float | None = None,
    schedule: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """The checkpoint metadata of a denoiser built by :func:`create_denoiser`.

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`create_denoiser` (it carries ``denoiser_config``).
    dataset : str
        The data it was trained on.
    sigma : float, optional
        Image denoisers: the noise std (on [0, 1] images) it was trained for. Required.
    schedule : dict, optional
        Noise-prediction networks: the diffusion schedule,
        :meth:`~smoothcert.models.diffusion.NoiseSchedule.to_metadata`. Required.
    **extra
        Further JSON-serializable keys (method, hyperparameters, epoch, metrics, seed, ...).

    Returns
    -------
    dict
        ``task = "denoiser"``, arch, arch_options, input_shape, mean, std, dataset, sigma,
        schedule and ``extra``; :func:`smoothcert.models.checkpoint.save_checkpoint` takes it.

    Raises
    ------
    ParameterError
        If ``model`` has no ``denoiser_config`` or the metadata is incomplete.
    """
    config = getattr(model, "denoiser_config", None)
    if not isinstance(config, dict):
        raise ParameterError(
            "model", "must be built by create_denoiser (it has no denoiser_config)"
        )
    meta = {k: v for k, v in config.items() if k != "kind"}
    meta |= {"task": "denoiser", "dataset": dataset, "sigma": sigma, "schedule": schedule}
    meta |= extra
    _check_denoiser_fields(meta, config["kind"])
    return meta


def _check_denoiser_fields(meta: dict[str, Any], kind: str) -> None:
    """ParameterError naming the key unless ``meta`` records what a denoiser needs."""
    if not isinstance(meta.get("dataset"), str) or not meta["dataset"]:
        raise ParameterError("dataset", f"must name the training data, got {meta.get('dataset')!r}")
    if kind == "image":
        finite_real("sigma", meta.get("sigma"), positive=True)
    else:
        schedule_from_metadata(meta.get("schedule"))


def denoiser_from_metadata(metadata: dict[str, Any], where: str = "checkpoint") -> nn.Module:
    """The untrained denoiser a checkpoint's metadata describes.

    What :func:`smoothcert.models.checkpoint.load_checkpoint` builds for ``task = "denoiser"``.

    Parameters
    ----------
    metadata : dict
        A denoiser checkpoint's metadata (:func:`denoiser_metadata`).
    where : str, default "checkpoint"
        What to call its source in errors.

    Returns
    -------
    torch.nn.Module
        As :func:`create_denoiser` builds it, untrained.

    Raises
    ------
    ValueError
        Naming ``where`` and the bad key, if a required key is missing or invalid (arch,
        input_shape, mean, std, dataset, and sigma or schedule by kind).
    """
    missing = [k for k in ("arch", "input_shape", "mean", "std", "dataset") if k not in metadata]
    if missing:
        raise ValueError(f"{where} metadata lacks required key(s) {', '.join(missing)}")
    try:
        options = metadata.get("arch_options") or {}
        if not isinstance(options, dict):
            raise ParameterError("arch_options", f"must be a JSON object, got {options!r}")
        model = create_denoiser(
            metadata["arch"], metadata["input_shape"], metadata["mean"], metadata["std"], **options
        )
        _check_denoiser_fields(metadata, model.denoiser_config["kind"])
    except ValueError as exc:
        raise ValueError(f"{where} has invalid metadata: {exc}") from None
    return model


BUILTIN_DENOISERS = (
    DenoiserSpec(
        "dncnn",
        lambda s, depth, width: DnCNN(s[0], depth, width),
        "image",
        {"depth": 17, "width": 64},
        "DnCNN of Zhang et al. as in Salman et al. (17 layers, 64 channels; residual)",
    ),
    DenoiserSpec(
        "unet-small",
        lambda s, width, time_dim: SmallUNet(s, width, time_dim),
        "noise-prediction",
        {"width": 32, "time_dim": 128},
        "small two-resolution U-Net ε(x_t, t) for one-step diffusion denoising",
    ),
)
for _spec in BUILTIN_DENOISERS:
    register_denoiser(_spec)
