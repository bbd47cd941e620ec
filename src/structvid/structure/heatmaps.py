"""Joint heatmaps: the body motion maps of §4 (2D joints mapped to one Gaussian heatmap per joint,
concatenated on depth).

Pixel-centre convention: pixel (row r, column c) has its centre at (x = c, y = r), so a joint at
integer (x, y) = (c, r) puts the exact peak value 1 on that pixel, and the frame spans
x in [0, W - 1], y in [0, H - 1] (the same convention cv2's drawing functions use).
"""

from __future__ import annotations

import numpy as np
import torch

from structvid.errors import UserError
from structvid.structure.base import Structure
from structvid.structure.framing import apply_affine, person_box


class JointHeatmaps(Structure):
    """One Gaussian exp(-d² / 2σ²) per joint, peak 1 at the joint (§4: "mapping the output 2D
    coordinates ... to heatmaps and then concatenating them on depth").

    A joint gives an all-zero channel when its visibility is <= 0, its coordinates are not finite, or it
    lies outside the frame (x < 0, x > W - 1, y < 0 or y > H - 1).
    """

    name = "joint_heatmaps"

    def __init__(self, num_joints: int = 13, sigma: float = 1.5) -> None:
        if num_joints < 1:
            raise ValueError(f"num_joints must be >= 1, got {num_joints}")
        if not sigma > 0:
            raise ValueError(f"sigma must be > 0, got {sigma}")
        self.num_joints = int(num_joints)
        self.sigma = float(sigma)

    @property
    def channels(self) -> int:
        return self.num_joints

    def render(self, params: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """joints (N, J, 3) or (J, 3) [x, y, visibility] in pixels -> (N, J, H, W) or (J, H, W) maps.

        The output has params' dtype when it is floating (float32 otherwise) and params' device.
        Half-precision inputs are evaluated in float32 and cast back, so peaks stay exactly 1.
        """
        joints = torch.as_tensor(params)
        single = joints.dim() == 2
        if single:
            joints = joints.unsqueeze(0)
        if joints.dim() != 3 or joints.shape[-2:] != (self.num_joints, 3):
            raise ValueError(f"expected joints of shape (N, {self.num_joints}, 3), got {tuple(params.shape)}")
        out_dtype = joints.dtype if joints.is_floating_point() else torch.float32
        calc = torch.float64 if out_dtype == torch.float64 else torch.float32
        joints = joints.to(calc)
        x, y, vis = joints.unbind(-1)  # each (N, J)
        valid = (vis > 0) & torch.isfinite(x) & torch.isfinite(y)
        valid &= (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
        # Invalid joints are moved to 0 first so that NaN cannot leak through the multiplication below.
        x = torch.where(valid, x, torch.zeros_like(x))
        y = torch.where(valid, y, torch.zeros_like(y))
        inv = -0.5 / self.sigma**2
        cols = torch.arange(width, device=joints.device, dtype=calc)
        rows = torch.arange(height, device=joints.device, dtype=calc)
        gx = torch.exp((cols - x.unsqueeze(-1)) ** 2 * inv) * valid.unsqueeze(-1)  # (N, J, W)
        gy = torch.exp((rows - y.unsqueeze(-1)) ** 2 * inv)  # (N, J, H)
        maps = (gy.unsqueeze(-1) * gx.unsqueeze(-2)).to(out_dtype)  # separable: outer product
        return maps[0] if single else maps

    def render_numpy(self, joints: np.ndarray, height: int, width: int) -> np.ndarray:
        """numpy convenience: (N, J, 3) or (J, 3) -> float32 (N, J, H, W) or (J, H, W)."""
        t = torch.from_numpy(np.ascontiguousarray(joints, dtype=np.float32))
        return self.render(t, height, width).numpy()

    def config(self):
        from structvid.config import StructureConfig

        return StructureConfig(kind="joints", num_joints=self.num_joints, sigma=self.sigma)

    def check(self, params, source: str | None = None) -> np.ndarray:
        """(T, J, 3) [x, y, visibility] joints as float32."""
        poses = np.asarray(params, dtype=np.float32)
        if poses.ndim != 3 or poses.shape[1:] != (self.num_joints, 3):
            raise UserError(f"poses must be (T, {self.num_joints}, 3) [x, y, visibility], got shape {poses.shape}",
                            source)
        return poses

    def transform(self, params: np.ndarray, affine: np.ndarray) -> np.ndarray:
        return apply_affine(params, affine)

    def box(self, params: np.ndarray, margin: float) -> tuple[float, float, float]:
        """Around the visible joints of every frame (data/clips.py adds the dataset's boxes in training)."""
        return person_box(np.zeros((0, 4)), params, margin)

    def __repr__(self) -> str:
        return f"JointHeatmaps(num_joints={self.num_joints}, sigma={self.sigma})"
