"""G_R, the motion refining network (§6.1, Fig. 7, Table 2, Eq. 15), and the 3D encoder it shares with D_V.

Clips travel as (N, K, C, H, W), the layout G_M's `forecast` produces and the pipeline's refiner stage
receives; the 3D convolutions see (N, C, K, H, W) inside.

Table 2 at 16x64x64 (widths from Table 2; the maps are the ground truth where its text is scrambled):

    E0 Conv 128 [4x4x4, 2] ReLU   8x32x32        D3 ConvT 512  [1x4x4, 1] BN ReLU  1x4x4
    E1 Conv 256 [4x4x4, 2] ReLU   4x16x16        D2 ConvT 256  [4x4x4, 2] BN ReLU  2x8x8
    E2 Conv 512 [4x4x4, 2] ReLU   2x8x8          D1 ConvT 128  [4x4x4, 2] BN ReLU  4x16x16
    E3 Conv 1024 [4x4x4, 2] ReLU  1x4x4          D0 ConvT 64   [4x4x4, 2] BN ReLU  8x32x32
    E4 Conv 1024 [1x4x4, 1]       1x1x1          head ConvT 1+3 [4x4x4, 2]         16x64x64 (m, c)

D_i is the transpose of E_{i+1} (D3 of the 1x4x4 layer E4) and ends at the size of E_i; the head is
the transpose of E0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from structvid.config import SKIP_MODES, RefinerConfig
from structvid.models.blocks import blend_residual, check_shape


@dataclass
class RefineOutput:
    """What G_R predicts for a clip, each (N, K, ·, H, W).

    clip: V̄ in [-1, 1] (Eq. 15). mask: m in [0, 1], one channel. content: c in [-1, 1].
    """

    clip: Tensor
    mask: Tensor
    content: Tensor


def video_widths(resolution: int, base_width: int, max_width: int) -> list[int]:
    """Widths of the strided levels E0..E_{L-1}, L levels taking `resolution` down to 4x4.

    Table 2 at 64x64 with base 128: 128, 256, 512, 1024 (E4, the 1x4x4 layer, keeps the last width).
    At 128x128 one more level is added, its width capped at `max_width` (as G_M's `level_widths`).
    """
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    levels = resolution.bit_length() - 3  # log2(resolution / 4)
    return [min(base_width << i, max_width) for i in range(levels)]


def time_halvings(clip_length: int, levels: int) -> list[bool]:
    """Whether each strided level halves time as well: while more than one frame is left.

    Table 2 halves all three dimensions (16 -> 8 -> 4 -> 2 -> 1 at 64x64). A level that finds one frame
    left (16 frames at 128x128) strides in space only with a 1x4x4 kernel; 32 frames at 64x64 keep two
    frames at the bottleneck (2x1x1).
    """
    if clip_length < 1 or clip_length & (clip_length - 1):
        raise ValueError(f"clip_length must be a power of two, got {clip_length}")
    return [clip_length >> i > 1 for i in range(levels)]


def _strided(halves_time: bool) -> dict:
    """Kernel, stride and padding of a level that halves H, W (and T when `halves_time`)."""
    return (dict(kernel_size=4, stride=2, padding=1) if halves_time
            else dict(kernel_size=(1, 4, 4), stride=(1, 2, 2), padding=(0, 1, 1)))


BOTTLENECK = dict(kernel_size=(1, 4, 4), stride=1, padding=0)  # Table 2 E4: [1x4x4, 1], 4x4 -> 1x1


class VideoEncoder(nn.Module):
    """The E* design of Table 2, shared by G_R and D_V: strided 3D convolutions with ReLU, no batch norm,
    no pooling (§6.1), then the 1x4x4 layer E_L without activation ("–" in Table 2).

    `forward` takes (N, C, K, H, W) and returns the outputs of E0..E_L (highest resolution first).
    """

    def __init__(self, in_channels: int, widths: list[int], halvings: list[bool]) -> None:
        super().__init__()
        ins = [in_channels] + widths[:-1]
        self.levels = nn.ModuleList(
            nn.Sequential(nn.Conv3d(a, b, **_strided(h)), nn.ReLU()) for a, b, h in zip(ins, widths, halvings)
        )
        self.bottleneck = nn.Conv3d(widths[-1], widths[-1], **BOTTLENECK)

    def forward(self, x: Tensor) -> list[Tensor]:
        features = []
        for level in self.levels:
            x = level(x)
            features.append(x)
        features.append(self.bottleneck(x))
        return features


def _up(in_channels: int, out_channels: int, shape: dict) -> nn.Sequential:
    """A decoder block of Table 2: transposed 3D convolution, BN, ReLU (the conv's bias is BN's)."""
    return nn.Sequential(nn.ConvTranspose3d(in_channels, out_channels, bias=False, **shape),
                         nn.BatchNorm3d(out_channels), nn.ReLU())


class Refiner(nn.Module):
    """G_R (§6.1): V̄ = m ⊙ c + (1 − m) ⊙ Ṽ (Eq. 15) from the coarse clip Ṽ and its motion maps M.

    The input is [Ṽ, M] concatenated per frame (3 + J channels). Skips join the output of an encoder
    level E_i to the decoder where it reaches the same size (after D_i): by default only from E2 on,
    since §6.1 removes them "from the first two layers" (skips everywhere led to sub-optimal results).
    `skip_mode` concat feeds [D_i, E_i] to the next block; add feeds D_i + P_i(E_i), P_i a 1x1x1 conv
    to D_i's width (Table 2's encoder is twice as wide as the decoder at each size).

    Table 2 leaves D0's width blank: it continues the decoder's halving, base_width / 2 (64). The mask m
    (sigmoid, one channel) and content c (tanh) come from one transposed convolution back to K x H x W.
    """

    def __init__(self, cfg: RefinerConfig) -> None:
        super().__init__()
        if cfg.skip_mode not in SKIP_MODES:
            raise ValueError(f"skip_mode must be one of {SKIP_MODES}, got {cfg.skip_mode!r}")
        self.config = cfg
        widths = video_widths(cfg.resolution, cfg.base_width, cfg.max_width)
        halvings = time_halvings(cfg.clip_length, len(widths))
        levels = len(widths)
        skips = list(range(2, levels)) if cfg.skip_levels is None else [int(i) for i in cfg.skip_levels]
        if any(not 0 <= i < levels for i in skips):
            raise ValueError(f"skip_levels must lie in 0..{levels - 1} (E0..E{levels - 1}), got {cfg.skip_levels}")
        self.skip_levels = sorted(set(skips))
        self.encoder = VideoEncoder(cfg.image_channels + cfg.motion_channels, widths, halvings)

        out_widths = [max(widths[0] // 2, 1)] + widths[:-1]  # D0..D_{L-1}: D_i is as wide as E_{i-1}
        concat = cfg.skip_mode == "concat"

        def joined(i: int) -> int:  # channels after D_i and the skip from E_i
            return out_widths[i] + (widths[i] if concat and i in self.skip_levels else 0)

        blocks = [_up(widths[-1], out_widths[-1], BOTTLENECK)]  # D_{L-1}, the transpose of E_L
        blocks += [_up(joined(i + 1), out_widths[i], _strided(halvings[i + 1])) for i in range(levels - 2, -1, -1)]
        self.decoder = nn.ModuleList(blocks)  # D_{L-1} .. D_0
        self.projections = nn.ModuleDict(
            {str(i): nn.Conv3d(widths[i], out_widths[i], 1) for i in self.skip_levels} if not concat else {}
        )
        self.head = nn.ConvTranspose3d(joined(0), 1 + cfg.image_channels, **_strided(halvings[0]))

    def forward(self, clip: Tensor, motions: Tensor) -> RefineOutput:
        """clip Ṽ (N, K, C, R, R) in [-1, 1], motions M (N, K, J, R, R) -> RefineOutput of (N, K, ·, R, R)."""
        cfg = self.config
        r, k = cfg.resolution, cfg.clip_length
        check_shape("clip", clip, (None, k, cfg.image_channels, r, r))
        check_shape("motions", motions, (clip.shape[0], k, cfg.motion_channels, r, r))
        features = self.encoder(torch.cat([clip, motions.to(clip.dtype)], dim=2).transpose(1, 2))
        h = features[-1]
        for i, block in zip(range(len(self.decoder) - 1, -1, -1), self.decoder):  # D_{L-1} .. D_0
            h = block(h)
            if i in self.skip_levels:  # join E_i, which has the size of D_i's output
                skip = features[i]
                h = torch.cat([h, skip], 1) if cfg.skip_mode == "concat" else h + self.projections[str(i)](skip)
        raw = self.head(h).transpose(1, 2)  # (N, K, 1 + C, R, R)
        mask, content = torch.sigmoid(raw[:, :, :1]), torch.tanh(raw[:, :, 1:])
        return RefineOutput(blend_residual(mask, content, clip), mask, content)  # Eq. 15


def count_gflops_per_clip(model: Refiner) -> float:
    """GFLOP of one G_R forward on one K x R x R clip (batch 1, eval mode), by torch's FlopCounterMode.

    Inputs are made on the model's device and dtype, so a model built under `torch.device("meta")` is
    counted without computing anything.
    """
    cfg, p = model.config, next(model.parameters())
    shape = (1, cfg.clip_length, cfg.image_channels, cfg.resolution, cfg.resolution)
    clip = torch.zeros(shape, device=p.device, dtype=p.dtype)
    motions = torch.zeros(shape[:2] + (cfg.motion_channels,) + shape[3:], device=p.device, dtype=p.dtype)
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        model.eval()  # no running-statistics update from the probe
        with counter, torch.no_grad():
            model(clip, motions)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9
