"""The motion-map interface (§4): a structure renderer turns per-frame structure parameters into maps.

Two implementations are planned: joint heatmaps for human bodies (2D joints, `JointHeatmaps`) and
3-channel normal maps rendered from a 3D morphable model for faces. The forecasting networks only see
the resulting (N, C, H, W) maps, so they never depend on which structure produced them.
"""

from __future__ import annotations

import abc

import torch


class Structure(abc.ABC):
    """Renders structure parameters (one row per sample) as C-channel motion maps M_t (§4; they condition G_M in Eq. 6)."""

    #: Short identifier, e.g. for configs and logs.
    name: str = "structure"

    @property
    @abc.abstractmethod
    def channels(self) -> int:
        """Number of channels C of the rendered maps."""

    @abc.abstractmethod
    def render(self, params: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """Render a batch of parameters (N, ...) as (N, C, height, width) float maps on params' device."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, channels={self.channels})"
