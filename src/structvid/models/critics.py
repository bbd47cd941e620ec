"""D_I, the conditional image critic (§5.2, Eq. 12-14), and D_V, the conditional video critic (§6.2, Eq. 17-20)."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structvid.config import CriticConfig, RefineCriticsConfig, VideoCriticConfig
from structvid.models.blocks import Encoder, check_shape, level_widths
from structvid.models.refiner import VideoEncoder, time_halvings, video_widths


class ImageCritic(nn.Module):
    """D_I([I, M]): the E* design of Table 1 on the channel concatenation of an image and its motion map.

    Conditioned on the motion (Eq. 12-14, after Mirza and Osindero 2014). No batch norm anywhere (the
    gradient penalty of WGAN-GP is per sample). The 4x4 embedding goes through a final ReLU (the
    residual blocks are pre-activated) and one linear layer to a scalar score.
    """

    def __init__(self, cfg: CriticConfig) -> None:
        super().__init__()
        self.config = cfg
        widths = level_widths(cfg.resolution, cfg.base_width, cfg.max_width)
        self.encoder = Encoder(cfg.image_channels + cfg.motion_channels, widths)
        self.score = nn.Linear(widths[-1] * 4 * 4, 1)

    def forward(self, image: Tensor, motion: Tensor) -> Tensor:
        """image (N, C, H, W), motion (N, J, H, W) -> scores (N,)."""
        r = self.config.resolution
        check_shape("image", image, (None, self.config.image_channels, r, r))
        check_shape("motion", motion, (image.shape[0], self.config.motion_channels, r, r))
        embedding = self.encoder(torch.cat([image, motion], dim=1))[-1]  # (N, w_L, 4, 4)
        return self.score(F.relu(embedding).flatten(1)).squeeze(1)  # (N, w_L*16) -> (N, 1) -> (N,)


class VideoCritic(nn.Module):
    """D_V([V, M]) (§6.2): the E* design of Table 2 (G_R's encoder) on a clip concatenated per frame with
    its motion maps, conditioned on the motion like D_I.

    No batch norm (Table 2 has none in E*; WGAN-GP's penalty is per sample). As in D_I, the output of the
    last layer E_L (T_L x 1 x 1) goes through a ReLU and one linear layer to a scalar score, no sigmoid.
    `forward(..., layers)` also returns the feature maps of blocks `layers` (0 = E0 .. L = E_L) from the
    same pass, for the Gram matrices of the ranking loss (Eq. 18), so that DDP sees one forward.
    """

    def __init__(self, cfg: VideoCriticConfig) -> None:
        super().__init__()
        self.config = cfg
        widths = video_widths(cfg.resolution, cfg.base_width, cfg.max_width)
        halvings = time_halvings(cfg.clip_length, len(widths))
        self.encoder = VideoEncoder(cfg.image_channels + cfg.motion_channels, widths, halvings)
        frames_left = cfg.clip_length >> sum(halvings)  # T_L: 1 for Table 2's 16x64x64
        self.score = nn.Linear(widths[-1] * frames_left, 1)

    def forward(self, clip: Tensor, motions: Tensor,
                layers: Sequence[int] | None = None) -> Tensor | tuple[Tensor, list[Tensor]]:
        """clip (N, K, C, R, R), motions (N, K, J, R, R) -> scores (N,); with `layers`, (scores, the
        feature maps (N, C_i, T_i, H_i, W_i) of those blocks, in the order asked)."""
        cfg = self.config
        r, k = cfg.resolution, cfg.clip_length
        check_shape("clip", clip, (None, k, cfg.image_channels, r, r))
        check_shape("motions", motions, (clip.shape[0], k, cfg.motion_channels, r, r))
        features = self.encoder(torch.cat([clip, motions.to(clip.dtype)], dim=2).transpose(1, 2))
        scores = self.score(F.relu(features[-1]).flatten(1)).squeeze(1)  # (N, w_L * T_L) -> (N,)
        if layers is None:
            return scores
        if any(not 0 <= i < len(features) for i in layers):
            last = len(features) - 1
            raise ValueError(f"layers must lie in 0..{last} (E0..E{last}), got {list(layers)}")
        return scores, [features[i] for i in layers]

    def features(self, clip: Tensor, motions: Tensor, layers: Sequence[int]) -> list[Tensor]:
        """The feature maps of blocks `layers` for [clip, motions] (see `forward`)."""
        return self(clip, motions, layers)[1]


class RefineCritics(nn.Module):
    """Stage 2's critics as one module (§6.2: "we update D_I and D_V in one step while fixing G_R"): one
    optimizer steps both and a checkpoint stores both (`critics.safetensors`)."""

    def __init__(self, cfg: RefineCriticsConfig) -> None:
        super().__init__()
        self.config = cfg
        self.video = VideoCritic(cfg.video)
        self.image = ImageCritic(cfg.image)
