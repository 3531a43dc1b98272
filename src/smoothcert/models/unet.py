"""A small U-Net noise-prediction network ε(x_t, t) for diffusion models (Ho et al. 2020).

Two resolutions (H×W and H/2×W/2): a stem convolution, a residual block at each resolution on
the way down, one in the middle, and one on the way up after concatenating the skip
connection, then GroupNorm, SiLU and an output convolution initialized to zero. The timestep
enters every residual block as a sinusoidal embedding (Vaswani et al. 2017, §3.5, as in Ho et
al. 2020, Appendix B) passed through a two-layer MLP and added, per channel, after the block's
first convolution. Inputs are images on the [−1, 1] scale; see
:class:`smoothcert.models.diffusion.OneStepDiffusionDenoiser` for [0, 1] images.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps (Vaswani et al. 2017, §3.5).

    [sin(t·ω_k), cos(t·ω_k)] for ω_k = max_period^(−k/(dim/2)), k = 0 … dim/2 − 1.

    Parameters
    ----------
    t : torch.Tensor
        [B] timesteps (any numeric dtype).
    dim : int
        Embedding size, even.
    max_period : float, default 10000
        The longest wavelength.

    Returns
    -------
    torch.Tensor
        float32 [B, dim].

    Examples
    --------
    >>> timestep_embedding(torch.tensor([0]), 4).tolist()  # sin 0 = 0, cos 0 = 1
    [[0.0, 0.0, 1.0, 1.0]]
    """
    half = dim // 2
    k = torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(-math.log(max_period) * k / half)
    angles = t.to(torch.float32)[:, None] * freqs[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class TimeResBlock(nn.Module):
    """GN → SiLU → conv3×3, + MLP(time embedding) per channel, GN → SiLU → conv3×3; residual."""

    def __init__(self, cin: int, cout: int, time_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(cin), cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(time_dim, cout)
        self.norm2 = nn.GroupNorm(_groups(cout), cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.act = nn.SiLU()
        self.skip: nn.Module = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.act(self.norm1(x)))
        h = h + self.time(self.act(temb))[:, :, None, None]
        h = self.conv2(self.act(self.norm2(h)))
        return h + self.skip(x)


class SmallUNet(nn.Module):
    """ε(x_t, t) at two resolutions; ``width`` channels at H×W, 2·``width`` at H/2×W/2.

    Parameters
    ----------
    input_shape : tuple of int
        (C, H, W), H and W even (one 2× downsampling).
    width : int, default 32
        Channels at full resolution.
    time_dim : int, default 128
        Size of the timestep embedding after its MLP (the sinusoid has ``width`` entries,
        rounded up to even).

    Raises
    ------
    ValueError
        If H or W is odd.
    """

    def __init__(self, input_shape: tuple[int, int, int], width: int = 32, time_dim: int = 128):
        super().__init__()
        c, h, w = input_shape
        if h % 2 or w % 2:
            raise ValueError(
                f"unet-small needs an even height and width (one 2× downsampling), got {h}×{w}"
            )
        self.embed_dim = width + width % 2
        self.time_mlp = nn.Sequential(
            nn.Linear(self.embed_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        self.stem = nn.Conv2d(c, width, 3, padding=1)
        self.down = TimeResBlock(width, width, time_dim)
        self.downsample = nn.Conv2d(width, width, 3, stride=2, padding=1)
        self.low = TimeResBlock(width, 2 * width, time_dim)
        self.middle = TimeResBlock(2 * width, 2 * width, time_dim)
        self.upsample = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
        )
        self.up = TimeResBlock(3 * width, width, time_dim)
        self.out = nn.Sequential(
            nn.GroupNorm(_groups(width), width), nn.SiLU(), nn.Conv2d(width, c, 3, padding=1)
        )
        # Zero output convolution: the untrained network predicts ε = 0.
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.time_mlp(timestep_embedding(t, self.embed_dim).to(x.dtype))
        skip = self.down(self.stem(x), temb)
        h = self.low(self.downsample(skip), temb)
        h = self.upsample(self.middle(h, temb))
        h = self.up(torch.cat([h, skip], dim=1), temb)
        return self.out(h)
