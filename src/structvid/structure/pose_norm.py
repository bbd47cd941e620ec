"""Pose normalisation for the pose LSTM (G_C for bodies, §4 Eq. 3-5): the one place that defines how poses are
normalised and how invisible observed joints are filled, used by training windows (data/pose_windows.py), the
model at inference (models/pose_lstm.py) and the §7.3 protocol (metrics/pose.py), so all see identical inputs.

Normalisation (the paper is silent; we use a per-window, bounding-box-centric one that needs nothing but
the observed poses, so a predictor can apply it at test time without labels):

* reference box = union box of the VISIBLE joints over the observed frames (`pose_box`);
* centre = centre of that box, scale = its longer side (at least 1 pixel);
* coords = (pixels - centre) / scale, exactly inverted by `denormalize` (pixels = coords * scale + centre).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from structvid.errors import UserError

MIN_SCALE = 1.0  # pixels; guards a degenerate (single-point) reference box


# ---------------------------------------------------------------- validation


def check_joints(joints: Any, num_joints: int | None = None, min_frames: int = 1, source: str | None = None) -> np.ndarray:
    """Validate a (..., T, J, 3) [x, y, visibility] joint array; raise UserError naming `source` if bad.

    Visible joints must have finite coordinates; invisible ones may hold anything (Penn Action allows it,
    see `structvid.data.penn_action.read_label`), consumers never use their stored values unchecked.
    """
    arr = np.asarray(joints)
    if arr.ndim < 3 or arr.shape[-1] != 3:
        raise UserError(f"joints must have shape (..., T, J, 3) [x, y, visibility], got {arr.shape}", source)
    if num_joints is not None and arr.shape[-2] != num_joints:
        raise UserError(f"expected {num_joints} joints per pose, got {arr.shape[-2]}", source)
    if arr.shape[-3] < min_frames:
        raise UserError(f"need at least {min_frames} poses, got {arr.shape[-3]}", source)
    if not np.issubdtype(arr.dtype, np.number):
        raise UserError(f"joints must be numeric, got {arr.dtype}", source)
    vis = arr[..., 2]
    if not np.isfinite(vis).all():
        raise UserError("joint visibility contains NaN or infinite values", source)
    bad = (vis > 0) & ~np.isfinite(arr[..., :2]).all(-1)
    if bad.any():
        raise UserError(f"{int(bad.sum())} visible joint(s) have NaN or infinite coordinates", source)
    return arr


# ---------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class PoseNorm:
    """Per-window normalisation: `center` (..., 2) and `scale` (...,) in pixels, batch dims leading."""

    center: np.ndarray
    scale: np.ndarray

    def apply(self, xy: np.ndarray) -> np.ndarray:
        """Pixels (..., T, J, 2) -> normalised coords."""
        return (np.asarray(xy, np.float64) - self.center[..., None, None, :]) / self.scale[..., None, None, None]

    def invert(self, coords: np.ndarray) -> np.ndarray:
        """Normalised coords (..., T, J, 2) -> pixels (float64)."""
        return np.asarray(coords, np.float64) * self.scale[..., None, None, None] + self.center[..., None, None, :]


def pose_box(joints: np.ndarray) -> np.ndarray:
    """Union box (..., 4) [x1, y1, x2, y2] of the visible joints of (..., T, J, 3) over all frames.

    Where no joint is visible in any frame, all joints with finite coordinates are used (Penn Action
    stores coordinates for invisible joints too).
    """
    joints = np.asarray(joints, np.float64)
    xy = joints[..., :2].reshape(*joints.shape[:-3], -1, 2)
    finite = np.isfinite(xy).all(-1)
    vis = (joints[..., 2] > 0).reshape(*joints.shape[:-3], -1) & finite
    vis = np.where(vis.any(-1, keepdims=True), vis, finite)
    lo = np.where(vis[..., None], xy, np.inf).min(-2)
    hi = np.where(vis[..., None], xy, -np.inf).max(-2)
    return np.concatenate([lo, hi], -1)


def normalization(ref_bbox: np.ndarray) -> PoseNorm:
    """PoseNorm of reference boxes (..., 4): centre of the box, scale = its longer side (>= 1 px)."""
    b = np.asarray(ref_bbox, np.float64)
    center = np.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2], -1)
    scale = np.maximum(np.maximum(b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]), MIN_SCALE)
    return PoseNorm(center, scale)


def normalize_poses(joints: np.ndarray, ref_bbox: np.ndarray | None = None) -> tuple[np.ndarray, PoseNorm]:
    """(..., T, J, 3) pixel joints -> ((..., T, J, 2) float64 normalised coords, PoseNorm).

    `ref_bbox` (..., 4) defaults to `pose_box(joints)`. Invisible joints are normalised as stored; use
    `fill_invisible` first to replace them. `denormalize(coords, norm)` inverts this exactly.
    """
    joints = np.asarray(joints, np.float64)
    norm = normalization(pose_box(joints) if ref_bbox is None else ref_bbox)
    return norm.apply(joints[..., :2]), norm


def denormalize(coords: np.ndarray | torch.Tensor, norm: PoseNorm) -> np.ndarray:
    """Normalised coords (..., K, J, 2) -> pixels (float64), the inverse of `normalize_poses`."""
    if isinstance(coords, torch.Tensor):
        coords = coords.detach().double().cpu().numpy()
    return norm.invert(coords)


def fill_invisible(joints: np.ndarray, fallback: np.ndarray | None = None, keep_stored: bool = False) -> np.ndarray:
    """(..., T, J, 3) -> (..., T, J, 2): each invisible joint takes its last visible position.

    The paper does not say how invisible joints are fed to the LSTM. We carry the last visible position
    forward in time (causal: never uses a later frame), except before a joint's first visible frame, where
    that first visible position is used. A joint invisible in every frame gets `fallback` (..., 2)
    (default: the centre of `pose_box(joints)`).

    With ``keep_stored`` an invisible joint whose stored coordinates are known keeps them; only unknown
    ones, non-finite or exactly (0, 0) (the COCO/OpenPose placeholder, and what `structvid.io.poses`
    stores for NaN), are filled as above. Penn Action annotates the position of occluded joints too (it
    only flags them invisible, never at (0, 0)); about 18% of the joints of a first window are invisible
    in all 10 observed frames, and replacing those by the box centre raises even the zero-velocity error
    at h=32 from 0.178 to 0.191 on the shared labels.
    """
    joints = np.asarray(joints, np.float64)
    xy, vis = joints[..., :2], joints[..., 2] > 0
    t = np.arange(vis.shape[-2])[:, None]
    last = np.maximum.accumulate(np.where(vis, t, -1), axis=-2)  # (..., T, J)
    first = np.where(vis.any(-2), vis.argmax(-2), -1)[..., None, :]  # (..., 1, J)
    src = np.where(last >= 0, last, first)
    filled = np.take_along_axis(xy, np.clip(src, 0, None)[..., None].repeat(2, -1), axis=-3)
    if fallback is None:
        b = pose_box(joints)
        fallback = np.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2], -1)
    filled = np.where((src < 0)[..., None], np.asarray(fallback)[..., None, None, :], filled)
    if keep_stored:
        known = np.isfinite(xy).all(-1) & (xy != 0).any(-1)
        filled = np.where((~vis & known)[..., None], xy, filled)
    return filled


INVISIBLE_INPUTS = ("stored", "carry")


def prepare_observed(observed: np.ndarray, invisible: str = "stored") -> tuple[np.ndarray, PoseNorm]:
    """The LSTM's view of observed (..., T_obs, J, 3) pixel joints -> (normalised (..., T_obs, J, 2), PoseNorm).

    Normalised by `pose_box` of the observed poses; invisible joints filled by `fill_invisible` with the
    box centre as fallback, keeping known stored coordinates when `invisible` is "stored" (the default,
    see `fill_invisible`) or carrying the last visible position when it is "carry". Training windows
    (`PoseWindows`) and inference (`structvid.models.pose_lstm.pose_lstm_predictor`) both call this.
    """
    if invisible not in INVISIBLE_INPUTS:
        raise UserError(f"invisible must be one of {INVISIBLE_INPUTS}, got {invisible!r}")
    obs = np.asarray(observed, np.float64)
    norm = normalization(pose_box(obs))
    return norm.apply(fill_invisible(obs, norm.center, keep_stored=invisible == "stored")), norm


# ---------------------------------------------------------------- windows
