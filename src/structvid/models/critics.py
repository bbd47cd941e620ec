"""D_I, the conditional image critic of the forecasting stage (§5.2, Eq. 12-14)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structvid.config import CriticConfig
from structvid.models.blocks import Encoder, check_shape, level_widths


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
