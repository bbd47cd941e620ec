"""Human3.6M (Ionescu et al., TPAMI 2014) in its commonly distributed per-subject form (§7.1, §7.3).

Layout (the official release's folder and file names)::

    ROOT/S1/Videos/Walking.54138969.mp4                         one video per action trial and camera
    ROOT/S1/MyPoseFeatures/D2_Positions/Walking.54138969.cdf    its 2D pose projections (official form)
    ROOT/S1/MyPoseFeatures/D2_Positions/Walking.54138969.npz    or: key "pose", (T, 64) = 32 joints × (x, y)

A trial's file stem is ``ACTION[ SUBACTION].CAMERA``, e.g. ``Walking 1.54138969``. Both spellings of the
official release are accepted for two actions (``TakingPhoto``/``Photo``, ``WalkingDog``/``WalkDog``) and
mapped to the 15 canonical names in `ACTIONS`; files of other names (e.g. ``_ALL``) are ignored.

Pose files: an ``.npz`` (as many preprocessed releases ship it) is preferred when both exist. A ``.cdf``
is read directly when the optional ``cdflib`` package is installed; otherwise convert the CDFs once with::

    python -c "import sys,cdflib,numpy as np; [np.savez(p[:-4]+'.npz', pose=cdflib.CDF(p).varget('Pose').reshape(-1,64)) for p in sys.argv[1:]]" ROOT/S*/MyPoseFeatures/D2_Positions/*.cdf

The paper trains on S1, S5, S6, S7, S8 and tests on S9, S11; it crops every frame of a clip with one
temporal-tube box that contains the person in all frames and scales the crop to 128×128 (§7.1).
Poses and videos are both 50 Hz; where their frame counts differ, the first min(T_pose, T_video) are used.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from structvid.errors import UserError

__all__ = [
    "TRAIN_SUBJECTS",
    "TEST_SUBJECTS",
    "ACTIONS",
    "CAMERAS",
    "NUM_JOINTS",
    "H36M_TO_PENN",
    "H36MItem",
    "H36MClip",
    "Human36MDataset",
    "to_penn13",
    "temporal_tube_box",
    "make_h36m_fixture",
]

TRAIN_SUBJECTS: tuple[str, ...] = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS: tuple[str, ...] = ("S9", "S11")
ACTIONS: tuple[str, ...] = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases", "Sitting",
    "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether",
)
_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}
CAMERAS: tuple[str, ...] = ("54138969", "55011271", "58860488", "60457274")
NUM_JOINTS = 32

#: H36M joint index for each Penn Action joint (order of `structvid.data.skeleton.PENN_JOINTS`): head,
#: l/r shoulder, l/r elbow, l/r wrist, l/r hip, l/r knee, l/r ankle. H36M indices follow the 32-joint
#: skeleton of the release (0 hip, 1-3 right leg, 6-8 left leg, 15 head, 17-19 left arm, 25-27 right arm).
H36M_TO_PENN: tuple[int, ...] = (15, 17, 25, 18, 26, 19, 27, 6, 1, 7, 2, 8, 3)


@dataclass(frozen=True, order=True)
class H36MItem:
    """One trial seen by one camera. `trial` is the file-name action part, e.g. "Walking 1"."""

    subject: str
    action: str
    trial: str
    camera: str
    root: Path

    @property
    def stem(self) -> str:
        return f"{self.trial}.{self.camera}"

    @property
    def video_path(self) -> Path:
        return self.root / self.subject / "Videos" / f"{self.stem}.mp4"

    def pose_path(self) -> Path:
        """The .npz pose file if present, else the .cdf one."""
        folder = self.root / self.subject / "MyPoseFeatures" / "D2_Positions"
        npz = folder / f"{self.stem}.npz"
        return npz if npz.is_file() else folder / f"{self.stem}.cdf"


@dataclass
class H36MClip:
    """A cropped clip: `frames` uint8 RGB (T, size, size, 3), `joints` (T, 32, 3) in crop pixels, and the
    square crop `box` (x1, y1, x2, y2) in original pixels (integer-aligned, contains the tube box)."""

    frames: np.ndarray
    joints: np.ndarray
    box: tuple[float, float, float, float]


def _canonical_action(trial: str) -> str | None:
    base = trial.split(" ")[0]
    base = _ALIASES.get(base, base)
    return base if base in ACTIONS else None


class Human36MDataset:
    """Lists the (subject, action, camera) trials of `subjects` under `root` that have a pose file.

    `actions` (canonical names, default all 15) filters them. Items are sorted. A missing root or subject
    folder, an unknown subject/action name, or a subject without D2_Positions raises UserError.
    """

    def __init__(self, root: str | Path, subjects: Sequence[str], actions: Iterable[str] | None = None) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError("Human3.6M folder not found", self.root)
        self.subjects = tuple(subjects)
        known = TRAIN_SUBJECTS + TEST_SUBJECTS + ("S2", "S3", "S4")
        bad = sorted(set(self.subjects) - set(known))
        if bad:
            raise UserError(f"unknown subject(s) {bad}; expected names like S1, S9", self.root)
        self.actions = ACTIONS if actions is None else tuple(actions)
        bad = sorted(set(self.actions) - set(ACTIONS))
        if bad:
            raise UserError(f"unknown action(s) {bad}; known: {', '.join(ACTIONS)}", self.root)
        items: set[H36MItem] = set()
        for subject in self.subjects:
            folder = self.root / subject / "MyPoseFeatures" / "D2_Positions"
            if not folder.is_dir():
                raise UserError("missing pose folder MyPoseFeatures/D2_Positions", self.root / subject)
            for p in folder.iterdir():
                if p.suffix not in (".npz", ".cdf") or p.name.startswith(".") or "." not in p.stem:
                    continue
                trial, camera = p.stem.rsplit(".", 1)
                action = _canonical_action(trial)
                if action in self.actions:
                    items.add(H36MItem(subject, action, trial, camera, self.root))
        self.items: list[H36MItem] = sorted(items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> H36MItem:
        return self.items[index]

    def joints(self, item: H36MItem) -> np.ndarray:
        """(T, 32, 3) float32 [x, y, 1] in video pixels (all joints visible)."""
        return read_pose(item.pose_path())

    def load_clip(
        self, item: H36MItem, size: int = 128, margin: float = 0.1, step: int = 1, max_frames: int | None = None
    ) -> H36MClip:
        """Frames 0, step, 2·step, ... (at most `max_frames`) cropped with one temporal-tube box and resized.

        The box is `temporal_tube_box` of the loaded frames' joints; regions outside the video are black.
        Frames are decoded one by one with cv2.VideoCapture, so memory scales with the output only.
        """
        if size < 1 or step < 1:
            raise ValueError(f"size and step must be >= 1, got {size}, {step}")
        joints = self.joints(item)[::step]
        if max_frames is not None:
            joints = joints[:max_frames]
        path = item.video_path
        if not path.is_file():
            raise UserError("video file not found", path)
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise UserError("cannot open video", path)
        x1, y1, x2, y2 = temporal_tube_box(joints, margin)
        bx, by = math.floor(x1), math.floor(y1)
        side = max(math.ceil(x2) - bx, math.ceil(y2) - by, 1)
        frames: list[np.ndarray] = []
        # An .mp4 whose index (moov) precedes its data still opens when the file is cut short; the decoder
        # then just stops early. The index's frame count tells a cut file from a short video.
        claimed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        try:
            index = 0
            while len(frames) < len(joints):
                ok, frame = cap.read()
                if not ok:
                    if 0 < index < claimed:
                        raise UserError(f"video stops after {index} of its {claimed} frames (truncated or "
                                        "corrupt file)", path)
                    break
                if index % step == 0:
                    crop = _crop_square(frame, bx, by, side)
                    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
                    frames.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
                index += 1
        finally:
            cap.release()
        if not frames:
            raise UserError("video has no readable frames", path)
        out = joints[: len(frames)].copy()
        out[..., 0] = (out[..., 0] - bx) * size / side
        out[..., 1] = (out[..., 1] - by) * size / side
        return H36MClip(np.stack(frames), out, (float(bx), float(by), float(bx + side), float(by + side)))


def read_pose(path: str | Path) -> np.ndarray:
    """Read a D2_Positions file (.npz key "pose" or .cdf variable "Pose") -> (T, 32, 3) float32, vis = 1."""
    path = Path(path)
    if not path.is_file():
        raise UserError("pose file not found", path)
    if path.suffix == ".cdf":
        try:
            import cdflib  # type: ignore[import-not-found]
        except ImportError:
            raise UserError(
                "reading .cdf pose files needs the 'cdflib' package (pip install cdflib), or convert them to "
                ".npz once with the one-liner in structvid.data.human36m's docstring",
                path,
            ) from None
        try:
            pose = np.asarray(cdflib.CDF(str(path)).varget("Pose"))
        except Exception as e:  # cdflib raises several types on corrupt files
            raise UserError(f"cannot read CDF pose file ({type(e).__name__}: {e})", path) from None
    else:
        try:
            with np.load(path, allow_pickle=False) as data:
                if "pose" not in data:
                    raise UserError(f"no 'pose' array (has {sorted(data.files)})", path)
                pose = np.asarray(data["pose"])
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise UserError(f"cannot read .npz pose file ({type(e).__name__}: {e})", path) from None
    pose = pose.reshape(pose.shape[-2:]) if pose.ndim == 3 and pose.shape[0] == 1 else pose
    if pose.ndim != 2 or pose.shape[1] != 2 * NUM_JOINTS or len(pose) == 0:
        raise UserError(f"pose must be (T, {2 * NUM_JOINTS}) = {NUM_JOINTS} joints × (x, y), got {pose.shape}", path)
    if not np.issubdtype(pose.dtype, np.number) or not np.isfinite(pose).all():
        raise UserError("pose holds non-numeric, NaN or infinite values", path)
    xy = pose.astype(np.float32).reshape(len(pose), NUM_JOINTS, 2)
    return np.concatenate([xy, np.ones((*xy.shape[:2], 1), np.float32)], -1)


def to_penn13(joints: np.ndarray) -> np.ndarray:
    """Map (..., 32, C) Human3.6M joints to (..., 13, C) in Penn Action order (see `H36M_TO_PENN`).

    H36M's "Foot" joints stand in for Penn's ankles and its "Head" joint for Penn's head.
    """
    joints = np.asarray(joints)
    if joints.ndim < 2 or joints.shape[-2] != NUM_JOINTS:
        raise UserError(f"expected (..., {NUM_JOINTS}, C) Human3.6M joints, got {joints.shape}")
    return joints[..., list(H36M_TO_PENN), :]


def temporal_tube_box(joints: np.ndarray, margin: float = 0.1) -> tuple[float, float, float, float]:
    """Square (x1, y1, x2, y2) containing every visible joint of (T, J, 3) in EVERY frame (§7.1).

    The union box of all frames' visible joints is centred in a square whose side is its longer side
    times (1 + 2·margin), i.e. `margin` of that side is added on each side. All joints count when none
    is marked visible.
    """
    joints = np.asarray(joints, np.float64)
    if joints.ndim != 3 or joints.shape[-1] < 2 or joints.shape[0] == 0:
        raise UserError(f"expected non-empty (T, J, 3) joints, got {joints.shape}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    xy = joints[..., :2].reshape(-1, 2)
    vis = joints[..., 2].reshape(-1) > 0 if joints.shape[-1] > 2 else np.ones(len(xy), bool)
    xy = xy[vis] if vis.any() else xy
    if not np.isfinite(xy).all():
        raise UserError("joints contain NaN or infinite values")
    (lx, ly), (hx, hy) = xy.min(0), xy.max(0)
    half = max(hx - lx, hy - ly, 1.0) * (1 + 2 * margin) / 2
    cx, cy = (lx + hx) / 2, (ly + hy) / 2
    return (float(cx - half), float(cy - half), float(cx + half), float(cy + half))


def _crop_square(frame: np.ndarray, x: int, y: int, side: int) -> np.ndarray:
    """frame[y:y+side, x:x+side] with zero padding where the square leaves the frame."""
    h, w = frame.shape[:2]
    out = np.zeros((side, side, frame.shape[2]), frame.dtype)
    sx0, sy0, sx1, sy1 = max(x, 0), max(y, 0), min(x + side, w), min(y + side, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = frame[sy0:sy1, sx0:sx1]
    return out


def make_h36m_fixture(
    root: str | Path,
    subjects: Sequence[str] = ("S1",),
    actions: Sequence[str] = ("Walking",),
    frames: int = 20,
    size: tuple[int, int] = (100, 120),
    cameras: Sequence[str] = (CAMERAS[0],),
    seed: int = 0,
) -> Human36MDataset:
    """Write a tiny synthetic Human3.6M tree (layout above) under `root` and return its dataset.

    For each subject × action × camera: a random 32-joint figure drifting over `frames` frames of size
    `size` = (height, width), saved as ``.npz`` poses and an ``.mp4`` (joints drawn as white dots on a
    dark-grey background). Joints stay inside the frame.
    """
    from structvid.io.files import atomic_path
    from structvid.io.video import write_video

    root = Path(root)
    rng = np.random.default_rng(seed)
    h, w = size
    for subject in subjects:
        for action in actions:
            for camera in cameras:
                stem = f"{action}.{camera}"
                offsets = rng.uniform(-0.2, 0.2, (NUM_JOINTS, 2)) * min(h, w)
                start = np.array([w, h]) / 2 + rng.uniform(-0.1, 0.1, 2) * min(h, w)
                drift = np.cumsum(rng.normal(0, 0.5, (frames, 1, 2)), 0)
                jitter = rng.normal(0, 0.5, (frames, NUM_JOINTS, 2))
                xy = np.clip(start + offsets + drift + jitter, 1, [w - 2, h - 2]).astype(np.float32)
                pose_dir = root / subject / "MyPoseFeatures" / "D2_Positions"
                with atomic_path(pose_dir / f"{stem}.npz") as tmp:
                    with open(tmp, "wb") as f:
                        np.savez(f, pose=xy.reshape(frames, 2 * NUM_JOINTS))
                video = np.full((frames, h, w, 3), 40, np.uint8)
                for t in range(frames):
                    for x, y in xy[t]:
                        cv2.circle(video[t], (int(round(x)), int(round(y))), 1, (255, 255, 255), -1)
                write_video(root / subject / "Videos" / f"{stem}.mp4", video, fps=50)
    return Human36MDataset(root, subjects, actions)
