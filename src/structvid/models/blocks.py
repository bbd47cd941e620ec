"""Building blocks of the E*/D* design of Table 1, shared by G_M (§5.1) and the critic D_I (§5.2)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """A 3x3 convolution that keeps the spatial size (every conv of Table 1 is [3 x 3, width])."""
    return nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)


def _preactivation(channels: int, norm: bool) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU()] if norm else [nn.ReLU()]


class ResidualBlock(nn.Module):
    """Pre-activation residual block as in Gulrajani et al. (2017): x + conv(act(conv(act(x)))).

    act is ReLU in the encoders E1..E4 (`norm=False`: Table 1 uses batch norm only in D*) and
    BatchNorm + ReLU in the decoder blocks D4..D1 (`norm=True`). The shortcut is a 1x1 conv when the
    width changes.
    """

    def __init__(self, in_channels: int, out_channels: int, norm: bool = False) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_preactivation(in_channels, norm),
            conv3x3(in_channels, out_channels, bias=not norm),  # a following BatchNorm has its own bias
            *_preactivation(out_channels, norm),
            conv3x3(out_channels, out_channels),
        )
        self.shortcut = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.shortcut(x) + self.body(x)


def downsample(x: Tensor) -> Tensor:
    """Pooling after each encoder block (Table 1 caption: 2x2 window, stride 2).

    The paper does not say max or mean; we use mean pooling as Gulrajani et al. (2017) do in the critic.
    """
    return F.avg_pool2d(x, 2)


def upsample(x: Tensor, factor: int = 2) -> Tensor:
    """Unpooling before each decoder block (Table 1 caption), as nearest-neighbour upsampling by `factor`."""
    return x if factor == 1 else F.interpolate(x, scale_factor=factor, mode="nearest")


def blend_residual(mask: Tensor, content: Tensor, image: Tensor) -> Tensor:
    """Eq. 7: I_{t+k} = m ⊙ c + (1 − m) ⊙ I_t (residual motion + static content).

    `mask` (N, 1, H, W) in [0, 1] broadcasts over the channels of `content` and `image` (N, C, H, W).
    Written as the two products of Eq. 7 so that m = 0 returns I_t and m = 1 returns c exactly.
    """
    return mask * content + (1 - mask) * image


def level_widths(resolution: int, base_width: int, max_width: int) -> list[int]:
    """Widths of E0..E_L, where L levels of pooling take `resolution` down to the 4x4 bottleneck.

    Table 1 at 64x64 with base 64: E0..E4 = 64, 64, 128, 256, 512. At 128x128 one more level is added
    (E5, widths capped at `max_width`).
    """
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    levels = resolution.bit_length() - 3  # log2(resolution / 4)
    return [min(base_width, max_width)] + [min(base_width << i, max_width) for i in range(levels)]


class Encoder(nn.Module):
    """The E* design of Table 1, shared by f_I, f_M (§5.1) and D_I (§5.2).

    E0 is one 3x3 conv at full resolution; E1..E_L are residual blocks without batch norm, each
    preceded by 2x2 pooling of the previous block's output ("pooling after each block"), so E_L is at
    4x4. `forward` returns the outputs of E0..E_L (highest resolution first); E_L is the embedding.
    """

    def __init__(self, in_channels: int, widths: list[int]) -> None:
        super().__init__()
        self.stem = conv3x3(in_channels, widths[0])  # E0
        self.blocks = nn.ModuleList(ResidualBlock(a, b) for a, b in zip(widths, widths[1:]))  # E1..E_L

    def forward(self, x: Tensor) -> list[Tensor]:
        features = [self.stem(x)]
        for block in self.blocks:
            features.append(block(downsample(features[-1])))
        return features


def check_shape(name: str, x: Tensor, expected: tuple[int | None, ...]) -> None:
    """Raise ValueError naming the argument when `x` does not have shape `expected` (None: any size)."""
    if x.dim() != len(expected) or any(e is not None and e != s for e, s in zip(expected, x.shape)):
        want = ", ".join("*" if e is None else str(e) for e in expected)
        raise ValueError(f"{name} must have shape ({want}), got {tuple(x.shape)}")
