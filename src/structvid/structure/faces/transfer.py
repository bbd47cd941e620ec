"""Expression transfer (§4, Eq. 1): a reference video's expressions on the target's face.

The target image gives α (identity), β_target and its pose; the reference video gives β_t (and pose_t) per
frame. Each generated frame's face is S̄ + A_id·α_target + A_exp·β'_t (Eq. 1), posed like the target (Eq. 2):

* relative (default): β'_t = β_target + k ⊙ (β_t − β_0) — the reference's change from its first frame, so a
  reference that does not start neutral still works (the most common complaint about first-order-model and
  LivePortrait's absolute driving);
* absolute (the paper, §4): β'_t = k ⊙ β_t.

k is the intensity, one factor or one per expression coefficient. With `head_pose`, the reference's head
rotation relative to its first frame, R_t·R_0ᵀ, is applied to the target's rotation as well (and its
translation change, scaled by the faces' size ratio).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from structvid.errors import UserError
from structvid.structure.faces.morphable import FaceParams

TRANSFER_MODES = ("relative", "absolute")


@dataclass
class TransferSettings:
    mode: str = "relative"  # relative | absolute (see module docstring)
    intensity: float | list[float] = 1.0  # k: one factor, or one per expression coefficient
    head_pose: bool = False  # also move the head as the reference does (relative to its first frame)
    # β' is clipped to this range: the blendshapes are not meant to be extrapolated far (SFM: 0 = neutral)
    beta_range: tuple[float, float] = field(default=(-0.5, 1.5))

    def __post_init__(self) -> None:
        if self.mode not in TRANSFER_MODES:
            raise UserError(f"transfer mode must be one of {', '.join(TRANSFER_MODES)}, got {self.mode!r}")
        k = np.atleast_1d(np.asarray(self.intensity, np.float64))
        if not np.isfinite(k).all() or (k < 0).any():
            raise UserError(f"intensity must be finite and >= 0, got {self.intensity}")


def transfer(target: np.ndarray, reference: np.ndarray, n_id: int, n_exp: int,
             settings: TransferSettings | None = None, reference_first: np.ndarray | None = None) -> np.ndarray:
    """Packed target (P,) + reference (T, P) face parameters -> (T, P) transferred parameters (see module doc).

    `reference_first` is the reference's first frame (default reference[0]); it lets a video be transferred
    in chunks."""
    s = settings or TransferSettings()
    tgt = FaceParams.unpack(target, n_id, n_exp)
    ref = FaceParams.unpack(np.atleast_2d(reference), n_id, n_exp)
    first = FaceParams.unpack(reference[0] if reference_first is None else reference_first, n_id, n_exp)
    k = np.asarray(s.intensity, np.float64)
    if k.ndim and k.shape != (n_exp,):
        raise UserError(f"per-coefficient intensity needs {n_exp} values, got {k.shape[0]}")
    lo, hi = s.beta_range
    if s.mode == "relative":
        beta = tgt.beta[None] + k * (ref.beta - first.beta[None])
        # never clip the target's own expression: a reference that does not move leaves it exactly as fitted
        beta = np.clip(beta, np.minimum(lo, tgt.beta), np.maximum(hi, tgt.beta))
    else:
        beta = np.clip(k * ref.beta, lo, hi)
    t = len(ref.beta)
    rotvec = np.repeat(tgt.rotvec[None], t, 0)
    scale = np.repeat(np.asarray(tgt.scale, np.float64)[None], t, 0)
    trans = np.repeat(tgt.translation[None], t, 0).astype(np.float64)
    if s.head_pose:
        from scipy.spatial.transform import Rotation

        change = Rotation.from_rotvec(ref.rotvec) * Rotation.from_rotvec(first.rotvec).inv()  # R_t R_0^T
        rotvec = (change * Rotation.from_rotvec(tgt.rotvec)).as_rotvec()
        ratio = float(tgt.scale) / max(float(first.scale), 1e-9)
        trans = trans + (ref.translation - first.translation[None]) * ratio
        scale = scale * (ref.scale / max(float(first.scale), 1e-9))
    out = FaceParams(rotvec, scale, trans, np.repeat(tgt.alpha[None], t, 0), beta)
    return out.pack()

