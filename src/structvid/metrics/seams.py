"""Seams of windowed refinement (§6 on long videos): is a window boundary visible as a jump between frames?

G_R refines windows of K frames (pipelines/windows.py). Where consecutive frames come from different windows the
output can jump. We compare the mean absolute frame difference |V_{t+1} - V_t| over the transitions where the
windows that made frame t and frame t+1 differ ("seams") with the transitions inside one window, for the refined
video and, as the reference for how much the motion itself moves there, for the coarse one.
"""

from __future__ import annotations

import numpy as np

from structvid.metrics.pixel import to_unit
from structvid.pipelines.windows import window_starts


def seam_transitions(total: int, k: int, overlap: int = 0) -> np.ndarray:
    """(total - 1,) bool: True where frames t and t+1 are not made by the same set of windows."""
    starts = window_starts(total, k, overlap)
    stride = k - overlap
    members: list[set[int]] = [set() for _ in range(total)]
    for i, s in enumerate(starts):
        first = s
        if i and s % stride:  # the extra last window: only frames no regular window has yielded yet
            first = starts[i - 1] + k - overlap
        for t in range(first, min(s + k, total)):
            members[t].add(i)
    return np.array([members[t] != members[t + 1] for t in range(total - 1)], dtype=bool)


def frame_differences(frames: np.ndarray) -> np.ndarray:
    """(T - 1,) mean |V_{t+1} - V_t| of uint8 (T, H, W, 3) frames, in [0, 1] units."""
    return np.abs(np.diff(to_unit(frames), axis=0)).mean(axis=(1, 2, 3))


def seam_report(refined: np.ndarray, coarse: np.ndarray, k: int, overlap: int = 0) -> dict[str, float | int]:
    """Mean frame difference at seams and inside windows, refined and coarse, and their ratios."""
    seams = seam_transitions(len(refined), k, overlap)
    out: dict[str, float | int] = {"frames": len(refined), "k": k, "overlap": overlap, "seams": int(seams.sum())}
    for name, video in (("refined", refined), ("coarse", coarse)):
        d = frame_differences(video)
        at, inside = float(d[seams].mean()) if seams.any() else float("nan"), float(d[~seams].mean())
        out[f"{name}_seam"], out[f"{name}_inside"] = at, inside
        out[f"{name}_ratio"] = at / inside if inside > 0 else float("nan")
    return out
