"""G_M, the motion forecasting network (§5.1, Fig. 6, Table 1)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from structvid.config import RESIDUAL_MODES, SKIP_CONTENTS, ForecasterConfig
from structvid.models.blocks import (
    Encoder,
    ResidualBlock,
    blend_residual,
    check_shape,
    conv3x3,
    level_widths,
    upsample,
)


@dataclass
class ForecastOutput:
    """What G_M predicts for I_{t+k}; (N, ...) from `forward`, (N, T, ...) from `forecast`.

    frame: Ĩ_{t+k} in [-1, 1]. mask: m_{t+k} in [0, 1] with one channel (Eq. 7), None unless
    residual == "mask". content: c_{t+k} in [-1, 1] ("mask"), Δ in [-2, 2] ("difference", Eq. 6), or the
    frame itself ("none").
    """

    frame: Tensor
    mask: Tensor | None
    content: Tensor


class Decoder(nn.Module):
    """f_D: blocks D_L..D_1 (residual, BatchNorm + ReLU) and D0 (one conv) of Table 1.

    D_i unpools its input to the resolution of E_{i-1} and sees [input, skip from E_{i-1} (U-Net, `skip`;
    `skip_streams` feature maps of width w_{i-1}: f_I alone, or f_I, f_M(M_{t+k}), f_M(M_t)), dense inputs].
    Dense connections (§5.1): every block's output reaches the first conv of
    every later block, upsampled. The block right after it already takes that output at full width, so
    the extra dense inputs come from the blocks before the predecessor. §5.1 does not give their width;
    the authors' code concatenates full-width feature stacks (~56 GFLOP/frame at 64x64), so each block's
    output is first projected by a 1x1 conv to `growth` channels and only those are upsampled and
    concatenated (DenseNet's growth rate).
    """

    def __init__(self, widths: list[int], skip: bool, dense: bool, growth: int, skip_streams: int = 1) -> None:
        super().__init__()
        levels = len(widths) - 1
        self.skip = skip
        grow = growth if dense else 0
        blocks: list[nn.Module] = []
        for k, i in enumerate(range(levels, 0, -1)):  # D_L .. D_1; k earlier blocks precede D_i
            skip_width = widths[i - 1] * skip_streams if skip else 0
            in_channels = widths[min(i + 1, levels)] + skip_width + grow * max(k - 1, 0)
            blocks.append(ResidualBlock(in_channels, widths[i], norm=True))
        in_channels = widths[1] + grow * (levels - 1)
        blocks.append(  # D0: 1 x Conv, ReLU after it (Table 1), pre-activated like D_L..D_1
            nn.Sequential(
                nn.BatchNorm2d(in_channels), nn.ReLU(), conv3x3(in_channels, widths[0], bias=False),
                nn.BatchNorm2d(widths[0]), nn.ReLU(),
            )
        )
        self.blocks = nn.ModuleList(blocks)
        # Projections of D_L..D_2, the blocks that have a later block other than their successor.
        self.projections = nn.ModuleList(
            nn.Conv2d(widths[levels - k], growth, 1) for k in range(levels - 1) if dense
        )

    def forward(self, h: Tensor, skips: list[Tensor]) -> Tensor:
        """h: (B, w_L, 4, 4) embedding of Eq. 8; skips: the skip features of levels E0..E_{L-1} (each the
        channel concat of its streams). Returns (B, w_0, H, W)."""
        levels = len(self.blocks) - 1
        x, dense = h, []
        for k, block in enumerate(self.blocks):
            parts = [upsample(x) if k < levels else x]  # unpooling before D_L..D_1; D0 stays at full size
            if self.skip and k < levels:
                parts.append(skips[levels - 1 - k])
            size = parts[0].shape[-1]
            parts += [upsample(p, size // p.shape[-1]) for p in dense[: max(k - 1, 0)]]
            x = block(torch.cat(parts, dim=1))  # channel concat: (B, sum of widths, s, s)
            if k < len(self.projections):
                dense.append(self.projections[k](x))  # (B, growth, s, s)
        return x


class Forecaster(nn.Module):
    """G_M (§5.1): Ĩ_{t+k} from I_t, its motion map M_t and the target motion map M_{t+k}.

    Image encoder f_I and motion encoder f_M follow the E* design of Table 1; the embedding is the
    analogy of Eq. 8, h = f_M(M_{t+k}) − f_M(M_t) + f_I(I_t), taken at the 4x4 bottleneck, with one f_M
    (shared weights) for both motion maps. The decoder f_D (D* of Table 1, dense connections) produces
    the residual: Eq. 7 ("mask"), Eq. 6 ("difference") or the frame itself ("none").

    The U-Net skips carry f_I features alone by default (`skip_content: image`): §5.1 adds them "between
    f_I and f_D" so that f_D can reuse the static content of I_t, and defines the analogy on the embedding
    only, so it is not applied to the skip features. `skip_content: image_motion` concatenates, per level,
    [f_I(I_t), f_M(M_{t+k}), f_M(M_t)] as the authors' released code does (docs/design.md, "Differences
    from the authors' G_M").
    """

    def __init__(self, cfg: ForecasterConfig) -> None:
        super().__init__()
        if cfg.residual not in RESIDUAL_MODES:
            raise ValueError(f"residual must be one of {RESIDUAL_MODES}, got {cfg.residual!r}")
        if cfg.skip_content not in SKIP_CONTENTS:
            raise ValueError(f"skip_content must be one of {SKIP_CONTENTS}, got {cfg.skip_content!r}")
        self.config = cfg
        widths = level_widths(cfg.resolution, cfg.base_width, cfg.max_width)
        self.image_encoder = Encoder(cfg.image_channels, widths)  # f_I
        self.motion_encoder = Encoder(cfg.motion_channels, widths)  # f_M, applied to M_t and M_{t+k}
        self.skip_motion = cfg.skip and cfg.skip_content == "image_motion"
        self.decoder = Decoder(widths, cfg.skip, cfg.dense, cfg.dense_growth, 3 if self.skip_motion else 1)  # f_D
        self.content_head = conv3x3(widths[0], cfg.image_channels)
        self.mask_head = conv3x3(widths[0], 1) if cfg.residual == "mask" else None

    def forward(self, image_t: Tensor, motion_t: Tensor, motion_tk: Tensor) -> ForecastOutput:
        """image_t (N, C, H, W) in [-1, 1]; motion_t, motion_tk (N, J, H, W). Returns (N, ...) tensors."""
        n = self._check_inputs(image_t, motion_t)
        check_shape("motion_tk", motion_tk, (n, self.config.motion_channels, *image_t.shape[-2:]))
        return self._predict(image_t, motion_t, motion_tk)

    def forecast(self, image_t: Tensor, motion_t: Tensor, motion_targets: Tensor) -> ForecastOutput:
        """T frames from one I_t: motion_targets (N, T, J, H, W) -> ForecastOutput of (N, T, ...) tensors.

        f_I(I_t) and f_M(M_t) are computed once; the T frames are decoded as one batch of N*T.
        """
        n = self._check_inputs(image_t, motion_t)
        check_shape("motion_targets", motion_targets, (n, None, self.config.motion_channels, *image_t.shape[-2:]))
        t = motion_targets.shape[1]
        out = self._predict(image_t, motion_t, motion_targets.flatten(0, 1))  # (N*T, J, H, W), sample-major

        def unflatten(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.unflatten(0, (n, t))  # (N*T, ...) -> (N, T, ...)

        return ForecastOutput(unflatten(out.frame), unflatten(out.mask), unflatten(out.content))

    def _check_inputs(self, image_t: Tensor, motion_t: Tensor) -> int:
        """Check image_t (N, C, R, R) and motion_t (N, J, R, R) against the config; returns N."""
        r = self.config.resolution
        check_shape("image_t", image_t, (None, self.config.image_channels, r, r))
        check_shape("motion_t", motion_t, (image_t.shape[0], self.config.motion_channels, r, r))
        return image_t.shape[0]

    def _predict(self, image_t: Tensor, motion_t: Tensor, motion_targets: Tensor) -> ForecastOutput:
        """motion_targets (N*T, J, H, W), the T targets of each sample adjacent; outputs (N*T, ...)."""
        n = image_t.shape[0]
        t = motion_targets.shape[0] // n
        image_features = self.image_encoder(image_t)  # f_I: E0..E_L outputs
        # One f_M call over [M_t; M_{t+k}]: (N + N*T, J, H, W) -> E0..E_L outputs, E_L (N + N*T, w_L, 4, 4).
        motion_levels = self.motion_encoder(torch.cat([motion_t, motion_targets]))
        motion_features = motion_levels[-1]

        def per_target(x: Tensor) -> Tensor:
            return x if t == 1 else x.repeat_interleave(t, dim=0)  # (N, ...) -> (N*T, ...)

        h = motion_features[n:] + per_target(image_features[-1] - motion_features[:n])  # Eq. 8 at 4x4
        skips = [per_target(f) for f in image_features[:-1]]
        if self.skip_motion:  # per level: [f_I(I_t), f_M(M_{t+k}), f_M(M_t)], the authors' order
            skips = [torch.cat([s, m[n:], per_target(m[:n])], dim=1) for s, m in zip(skips, motion_levels[:-1])]
        y = self.decoder(h, skips)  # (N*T, w_0, H, W)
        return self._output(y, per_target(image_t))

    def _output(self, y: Tensor, image_t: Tensor) -> ForecastOutput:
        raw = self.content_head(y)  # (B, C, H, W)
        if self.mask_head is not None:  # Eq. 7
            mask, content = torch.sigmoid(self.mask_head(y)), torch.tanh(raw)
            return ForecastOutput(blend_residual(mask, content, image_t), mask, content)
        if self.config.residual == "difference":
            # Eq. 6: Δ spans [-2, 2], every change between two images in [-1, 1]; the sum is clamped back
            # to the image range (no gradient reaches Δ where the clamp is active).
            delta = 2 * torch.tanh(raw)
            return ForecastOutput((image_t + delta).clamp(-1, 1), None, delta)
        frame = torch.tanh(raw)
        return ForecastOutput(frame, None, frame)


def count_gflops_per_frame(model: Forecaster, resolution: int, motion_channels: int) -> float:
    """GFLOP of one G_M forward per generated frame (batch 1, eval mode), by torch's FlopCounterMode.

    Inputs are made on the model's device and dtype, so a model built under `torch.device("meta")` is
    counted without computing anything.
    """
    p = next(model.parameters())
    image = torch.zeros(1, model.config.image_channels, resolution, resolution, device=p.device, dtype=p.dtype)
    motion = torch.zeros(1, motion_channels, resolution, resolution, device=p.device, dtype=p.dtype)
    was_training = model.training
    counter = FlopCounterMode(display=False)
    try:
        model.eval()  # no running-statistics update from the probe
        with counter, torch.no_grad():
            model(image, motion, motion)
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9
