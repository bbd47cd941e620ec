"""Framing (§7.1): the square crop the networks see, and how image coordinates follow it.

A structure decides its own square (`Structure.box`: around a person's joints and boxes, or a face's
landmarks); these helpers crop frames to it and map coordinates through the crop's affine.
"""

from __future__ import annotations

import cv2
import numpy as np


def person_box(bbox: np.ndarray, joints: np.ndarray, margin: float) -> tuple[float, float, float]:
    """Square (cx, cy, side) around every frame's bounding box (and visible joints), enlarged by `margin`."""
    boxes = np.asarray(bbox, dtype=np.float64).reshape(-1, 4)
    vis = joints[..., 2] > 0
    xs, ys = joints[..., 0][vis], joints[..., 1][vis]
    ok = np.isfinite(boxes).all(1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    x1 = np.concatenate([boxes[ok, 0], xs]).min()
    y1 = np.concatenate([boxes[ok, 1], ys]).min()
    x2 = np.concatenate([boxes[ok, 2], xs]).max()
    y2 = np.concatenate([boxes[ok, 3], ys]).max()
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    return (x1 + x2) / 2, (y1 + y2) / 2, max(side, 1.0)


def crop_affine(box: tuple[float, float, float], size: int) -> np.ndarray:
    """2x3 affine mapping the square box onto a size x size image (pixel-centre convention)."""
    cx, cy, side = box
    s = size / side
    # The box [c - side/2, c + side/2] maps onto the output's pixel edges [-0.5, size - 0.5].
    return np.array([[s, 0, s * (side / 2 - cx) - 0.5], [0, s, s * (side / 2 - cy) - 0.5]])


def crop_frame(frame: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """Crop the square box (replicating the border outside the image) and resize it to size x size."""
    side = box[2]
    if side <= size:
        return cv2.warpAffine(frame, crop_affine(box, size), (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    # Downscaling: crop at native scale first, then area-average (warpAffine alone would alias).
    native = max(int(round(side)), size)
    crop = cv2.warpAffine(frame, crop_affine(box, native), (native, native), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def apply_affine(joints: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map (..., J, 3) [x, y, v] joints through a 2x3 affine; visibility is kept."""
    out = joints.astype(np.float32).copy()
    xy = joints[..., :2].astype(np.float64)
    out[..., :2] = xy @ affine[:, :2].T + affine[:, 2]
    return out
