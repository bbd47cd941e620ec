"""The Penn Action skeleton (13 joints), its action names, and a skeleton drawer for panels."""

from __future__ import annotations

import cv2
import numpy as np

#: Joint order of Penn Action labels (columns of x / y / visibility). "left" is the person's left.
PENN_JOINTS: tuple[str, ...] = (
    "head",
    "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow",
    "left_wrist", "right_wrist",
    "left_hip", "right_hip",
    "left_knee", "right_knee",
    "left_ankle", "right_ankle",
)
NUM_JOINTS = len(PENN_JOINTS)
HEAD, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = range(7)
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = range(7, 13)

#: Pairs of joint indices forming the body (arms, legs, torso outline, head to shoulders).
LIMBS: tuple[tuple[int, int], ...] = (
    (L_SHOULDER, L_ELBOW), (L_ELBOW, L_WRIST),
    (R_SHOULDER, R_ELBOW), (R_ELBOW, R_WRIST),
    (L_HIP, L_KNEE), (L_KNEE, L_ANKLE),
    (R_HIP, R_KNEE), (R_KNEE, R_ANKLE),
    (L_SHOULDER, R_SHOULDER), (L_HIP, R_HIP),
    (L_SHOULDER, L_HIP), (R_SHOULDER, R_HIP),
    (HEAD, L_SHOULDER), (HEAD, R_SHOULDER),
)

#: Left/right joint pairs, e.g. for horizontal-flip augmentation.
FLIP_PAIRS: tuple[tuple[int, int], ...] = tuple((i, i + 1) for i in range(1, NUM_JOINTS, 2))

#: Joint order of the mirror image: joint i of a mirrored pose is joint MIRROR_ORDER[i] of the original.
MIRROR_ORDER: tuple[int, ...] = tuple(
    next((b if i == a else a for a, b in FLIP_PAIRS if i in (a, b)), i) for i in range(NUM_JOINTS)
)


def mirror_joints(xy: "torch.Tensor") -> "torch.Tensor":
    """Mirror image of (..., J, 2) box-centred coordinates (x negated, left/right joints swapped).

    Serves the mirroring augmentation and the pose LSTM's mirror averaging; its own inverse.
    """
    import torch

    if xy.shape[-2:] != (NUM_JOINTS, 2):
        raise ValueError(f"mirror_joints needs (..., {NUM_JOINTS}, 2) coordinates, got {tuple(xy.shape)}")
    return xy[..., list(MIRROR_ORDER), :] * torch.tensor([-1.0, 1.0], dtype=xy.dtype, device=xy.device)


#: The 15 actions of Penn Action (Zhang, Zhu & Derpanis, ICCV 2013).
PENN_ACTIONS: tuple[str, ...] = (
    "baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk", "golf_swing",
    "jump_rope", "jumping_jacks", "pullup", "pushup", "situp", "squat", "strum_guitar",
    "tennis_forehand", "tennis_serve",
)

#: The 8 actions the paper uses (§7.1, following Villegas et al. 2017b).
PAPER_ACTIONS: tuple[str, ...] = (
    "baseball_pitch", "baseball_swing", "clean_and_jerk", "golf_swing", "jumping_jacks", "jump_rope",
    "tennis_forehand", "tennis_serve",
)

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel accurate drawing


def _fix(x: float, y: float) -> tuple[int, int]:
    return int(round(x * (1 << _SHIFT))), int(round(y * (1 << _SHIFT)))


def draw_skeleton(frame: np.ndarray, joints: np.ndarray, color: tuple[int, int, int] = (255, 0, 0),
                  thickness: int = 1, radius: int = 1) -> np.ndarray:
    """Return a copy of `frame` (H, W, 3 uint8) with the skeleton `joints` (J, 3) [x, y, vis] drawn on it.

    Coordinates are pixel-centre based (pixel column c has centre x = c). Joints with visibility <= 0
    or non-finite coordinates are skipped, and so are limbs touching them.
    """
    out = np.ascontiguousarray(frame, dtype=np.uint8).copy()
    joints = np.asarray(joints, dtype=np.float64)
    ok = (joints[:, 2] > 0) & np.isfinite(joints[:, :2]).all(1)
    color = tuple(int(c) for c in color)
    for a, b in LIMBS:
        if a < len(joints) and b < len(joints) and ok[a] and ok[b]:
            cv2.line(out, _fix(*joints[a, :2]), _fix(*joints[b, :2]), color, thickness, cv2.LINE_AA, _SHIFT)
    for j in np.flatnonzero(ok):
        cv2.circle(out, _fix(*joints[j, :2]), radius << _SHIFT, color, -1, cv2.LINE_AA, _SHIFT)
    return out
