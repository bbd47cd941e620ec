"""The motion-map interface (§4): a structure renderer turns per-frame structure parameters into maps.

Two implementations are planned: joint heatmaps for human bodies (2D joints, `JointHeatmaps`) and
3-channel normal maps rendered from a 3D morphable model for faces. The forecasting networks only see
the resulting (N, C, H, W) maps, so they never depend on which structure produced them.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
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

    # ---- what the pipeline and the data need besides rendering: the parameters' shape, and framing (§7.1)

    @abc.abstractmethod
    def config(self) -> Any:
        """The `StructureConfig` that rebuilds this renderer (structure/factory.py)."""

    @abc.abstractmethod
    def check(self, params: Any, source: str | None = None) -> np.ndarray:
        """(T, ...) float32 parameters, or a UserError naming `source` when their shape or values are wrong."""

    @abc.abstractmethod
    def transform(self, params: np.ndarray, affine: np.ndarray) -> np.ndarray:
        """The parameters of the same structure after the 2x3 image transform `affine` (a crop and resize)."""

    @abc.abstractmethod
    def box(self, params: np.ndarray, margin: float) -> tuple[float, float, float]:
        """The square (cx, cy, side) the networks see around the subject of (T, ...) parameters."""

    def to_rgb(self, maps: np.ndarray | torch.Tensor) -> np.ndarray:
        """(T, C, H, W) maps -> (T, H, W, 3) uint8 pictures for panels and sample grids (default: max over C,
        inferno colormap)."""
        from structvid.io.images import heatmap_to_rgb

        return heatmap_to_rgb(maps)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, channels={self.channels})"
