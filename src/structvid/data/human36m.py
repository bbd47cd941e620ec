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

Training (§7.1): G_M and G_R train on two subject halves of the training subjects (`SUBJECT_PARTS`, the
`DataConfig.part` values gm / gr; eval is the test subjects). `prepare_h36m` writes G_M's training clips as a
prepared store (`structvid.data.prepare`'s format) that `ClipSampler` reads like a Penn Action store;
`Human36MPoses` hands the pose LSTM the 2D poses of each trial (observe 10, predict 64, tested on 128).
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import cv2
import numpy as np

from structvid.errors import UserError

if TYPE_CHECKING:
    from structvid.data.prepare import PreparedStore

__all__ = [
    "TRAIN_SUBJECTS",
    "TEST_SUBJECTS",
    "SUBJECT_PARTS",
    "subjects_of",
    "Human36MPoses",
    "H36MPoseSequence",
    "is_h36m_root",
    "prepare_h36m",
    "store_subjects",
    "select_store_videos",
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
#: §7.1: "We evenly split the training set into two parts according to the subjects. G_M and G_R are trained with
#: them respectively." Five subjects do not halve: G_M, which learns a person's appearance from single frames and
#: is the stage every video goes through, gets three (S1, S5, S6, in the release's order) and G_R, which learns
#: temporal refinement of G_M's output, the other two (S7, S8). Every subject performs all 15 actions, so both
#: halves see every action. eval is the test subjects (the `DataConfig.part` values; `all` is every subject).
SUBJECT_PARTS: dict[str, tuple[str, ...]] = {"gm": ("S1", "S5", "S6"), "gr": ("S7", "S8"), "eval": TEST_SUBJECTS}
ACTIONS: tuple[str, ...] = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases", "Sitting",
    "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether",
)
_ALIASES = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}
CAMERAS: tuple[str, ...] = ("54138969", "55011271", "58860488", "60457274")
NUM_JOINTS = 32

#: H36M joint index for each Penn Action joint (order of `structvid.structure.skeleton.PENN_JOINTS`): head,
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
    def name(self) -> str:
        """A name without spaces or slashes, e.g. "S1.Walking_1.54138969" (sequence and store video names)."""
        return f"{self.subject}.{self.stem}".replace(" ", "_")

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
        return self.load_clips(item, size, margin, step, length=max_frames, max_clips=1)[0]

    def load_clips(
        self, item: H36MItem, size: int = 128, margin: float = 0.1, step: int = 1, length: int | None = None,
        max_clips: int | None = None,
    ) -> list[H36MClip]:
        """Frames 0, step, 2·step, ... cut into consecutive clips of `length` frames (None: one clip of the whole
        trial; at most `max_clips`), each cropped with its own temporal-tube box (§7.1) and resized.

        A last clip shorter than `length` is kept when it has at least 2 frames (or is the first). The video is
        decoded once, frame by frame, and each frame cropped at once, so memory scales with the output only.
        """
        if size < 1 or step < 1 or (length is not None and length < 1) or (max_clips is not None and max_clips < 1):
            raise ValueError(f"size, step, length and max_clips must be >= 1, got {size}, {step}, {length}, {max_clips}")
        joints = self.joints(item)[::step]
        span = len(joints) if length is None else length
        chunks = [(a, min(a + span, len(joints))) for a in range(0, len(joints), span)][:max_clips]
        chunks = [(a, b) for a, b in chunks if a == 0 or b - a >= 2]
        boxes = []
        for a, b in chunks:
            x1, y1, x2, y2 = temporal_tube_box(joints[a:b], margin)
            bx, by = math.floor(x1), math.floor(y1)
            boxes.append((bx, by, max(math.ceil(x2) - bx, math.ceil(y2) - by, 1)))
        path = item.video_path
        if not path.is_file():
            raise UserError("video file not found", path)
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise UserError("cannot open video", path)
        frames: list[np.ndarray] = []
        wanted = chunks[-1][1]
        # An .mp4 whose index (moov) precedes its data still opens when the file is cut short; the decoder
        # then just stops early. The index's frame count tells a cut file from a short video.
        claimed = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        try:
            index = 0
            while len(frames) < wanted:
                ok, frame = cap.read()
                if not ok:
                    if 0 < index < claimed:
                        raise UserError(f"video stops after {index} of its {claimed} frames (truncated or "
                                        "corrupt file)", path)
                    break
                if index % step == 0:
                    bx, by, side = boxes[len(frames) // span]
                    crop = _crop_square(frame, bx, by, side)
                    crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if side > size else cv2.INTER_LINEAR)
                    frames.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
                index += 1
        finally:
            cap.release()
        if not frames:
            raise UserError("video has no readable frames", path)
        clips = []
        for (a, b), (bx, by, side) in zip(chunks, boxes):
            b = min(b, len(frames))
            if b - a < (1 if a == 0 else 2):
                break
            out = joints[a:b].copy()
            out[..., 0] = (out[..., 0] - bx) * size / side
            out[..., 1] = (out[..., 1] - by) * size / side
            clips.append(H36MClip(np.stack(frames[a:b]), out, (float(bx), float(by), float(bx + side), float(by + side))))
        return clips


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


def subjects_of(part: str) -> tuple[str, ...]:
    """The subjects of `DataConfig.part` `part` (§7.1, `SUBJECT_PARTS`); "all": every training and test subject."""
    if part == "all":
        return TRAIN_SUBJECTS + TEST_SUBJECTS
    if part not in SUBJECT_PARTS:
        raise UserError(f"unknown part {part!r}; expected all, {', '.join(SUBJECT_PARTS)}")
    return SUBJECT_PARTS[part]


def _subjects_of_split(split: str) -> tuple[str, ...]:
    """Human3.6M's official split by subjects (§7.1): train, test or all."""
    splits = {"train": TRAIN_SUBJECTS, "test": TEST_SUBJECTS, "all": TRAIN_SUBJECTS + TEST_SUBJECTS}
    if split not in splits:
        raise UserError(f"unknown split {split!r}; expected one of {', '.join(splits)}")
    return splits[split]


def _check_actions(actions: Iterable[str] | None, source: Path | None = None) -> tuple[str, ...] | None:
    """None (every action) for None, [] or ["all"]; else the names, which must be canonical action names."""
    names = tuple(actions or ())
    if not names or names == ("all",):
        return None
    bad = sorted(set(names) - set(ACTIONS))
    if bad:
        raise UserError(f"unknown Human3.6M action(s) {bad}; known: {', '.join(ACTIONS)}", source)
    return names


def is_h36m_root(root: str | Path) -> bool:
    """True when `root` looks like a Human3.6M folder: a subject folder (S1, S9, ...) with MyPoseFeatures."""
    root = Path(root)
    return any((root / s / "MyPoseFeatures").is_dir() for s in TRAIN_SUBJECTS + TEST_SUBJECTS + ("S2", "S3", "S4"))


# ---------------------------------------------------------------- the pose LSTM's sequences (§4, §7.1)


@dataclass(eq=False)
class H36MPoseSequence:
    """One trial's 2D poses with what the pose code reads of a `PennSequence`: `name`, `action`, `joints`
    (T, 13, 3) in Penn Action order (`to_penn13`, all visible), `nframes` and `bbox` (T, 4), each frame's box of
    its joints (the §7.3 error is normalised by the box of the last observed frame)."""

    name: str
    action: str
    subject: str
    joints: np.ndarray

    @property
    def nframes(self) -> int:
        return int(len(self.joints))

    @property
    def bbox(self) -> np.ndarray:
        xy = self.joints[..., :2].astype(np.float64)
        return np.concatenate([xy.min(1), xy.max(1)], -1)


class Human36MPoses:
    """The trials of `subjects` (`actions`: canonical names, None / [] / ["all"]: all 15) as pose sequences, with
    the interface of `PennActionDataset` that pose training and evaluation use: `names` (sorted) and
    `label(name)` -> `H36MPoseSequence` (read once, then cached). `split` train / test / all picks the official
    subjects when `subjects` is None. Poses are used at the 50 Hz they are stored at (§7.1 does not subsample)."""

    def __init__(self, root: str | Path, subjects: Sequence[str] | None = None, actions: Iterable[str] | None = None,
                 split: str = "train") -> None:
        self.dataset = Human36MDataset(root, subjects if subjects is not None else _subjects_of_split(split),
                                       _check_actions(actions, Path(root)))
        self.root = self.dataset.root
        self.items = {item.name: item for item in self.dataset.items}
        self.names: list[str] = sorted(self.items)
        self._cache: dict[str, H36MPoseSequence] = {}

    def __len__(self) -> int:
        return len(self.names)

    def label(self, name: str) -> H36MPoseSequence:
        if name not in self.items:
            raise UserError(f"no Human3.6M trial {name!r}", self.root)
        if name not in self._cache:
            item = self.items[name]
            self._cache[name] = H36MPoseSequence(name, item.action, item.subject, to_penn13(self.dataset.joints(item)))
        return self._cache[name]


# ---------------------------------------------------------------- G_M / G_R training clips (prepared store)


def store_subjects(store: "PreparedStore") -> dict[str, str] | None:
    """Video name -> subject of a Human3.6M prepared store (`prepare_h36m`); None for any other store."""
    try:
        meta = json.loads(store.index_path.read_text())
        if meta.get("dataset") != "human36m":
            return None
        return {n: str(v["subject"]) for n, v in meta["videos"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"not a valid Human3.6M store index ({type(e).__name__}: {e})", store.index_path) from None


def select_store_videos(store: "PreparedStore", subjects: dict[str, str], actions: Iterable[str] | None = None,
                        split: str = "all") -> list[str]:
    """Names of a Human3.6M store (`subjects`: its `store_subjects`) of `actions` (canonical names; None / []: all)
    and of the subjects of `split` (train / test / all), in store order. `ClipSampler` then keeps `part`'s
    subjects (`subjects_of`)."""
    wanted = _check_actions(actions, store.index_path)
    keep = set(_subjects_of_split(split))
    return [n for n in store.names if subjects[n] in keep and (wanted is None or store.actions[n] in wanted)]


def prepare_h36m(root: str | Path, out: str | Path, image_size: int = 128, subjects: Sequence[str] = TRAIN_SUBJECTS,
                 actions: Iterable[str] | None = None, margin: float = 0.1, clip_frames: int = 130, step: int = 1,
                 max_clips: int | None = None, progress: bool = True) -> Path:
    """Write a prepared store (`structvid.data.prepare`'s format, read by `ClipSampler`) of Human3.6M clips.

    Every trial × camera of `subjects` is cut into clips of `clip_frames` frames (default 130: the 10 observed +
    120 generated frames of the Table 6 protocol, so G_M trains on crops like those it is evaluated on), each
    cropped with its own temporal-tube box (`margin`, §7.1; `load_clips`) and resized to `image_size`; joints
    are mapped to the 13 Penn joints. `step` keeps every step-th frame, `max_clips` the first clips of each
    trial (the whole training set at 128×128 is about 1.5 M frames). Video names are ``S1.Walking_1.54138969.000``
    (trial, camera, clip); the index records each clip's subject (the `DataConfig.part` halves, `SUBJECT_PARTS`)
    and `train` 1 for training subjects, -1 for test subjects (`data.split`). Written into a temporary folder and
    renamed at the end; an existing `out` is replaced only if it is empty or a prepared store.
    """
    from structvid.data.prepare import FORMAT, INDEX, VERSION, write_npz, is_prepared
    from structvid.io.files import atomic_dir, atomic_path

    out = Path(out)
    if image_size < 1 or margin < 0 or clip_frames < 2 or step < 1 or (max_clips is not None and max_clips < 1):
        raise UserError(f"need image_size >= 1, margin >= 0, clip_frames >= 2, step >= 1 and max_clips >= 1, got "
                        f"{image_size}, {margin}, {clip_frames}, {step}, {max_clips}")
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not is_prepared(out))):
        raise UserError(f"exists and is not a prepared store ({INDEX} missing); refusing to replace it", out)
    ds = Human36MDataset(root, subjects, _check_actions(actions, Path(root)))
    if not ds.items:
        raise UserError(f"no trial of subjects {list(subjects)} to prepare", root)
    from tqdm import tqdm

    videos: dict[str, dict[str, object]] = {}
    with atomic_dir(out) as tmp:
        for item in tqdm(ds.items, desc="prepare h36m", unit="video", disable=not progress):
            for c, clip in enumerate(ds.load_clips(item, image_size, margin, step, clip_frames, max_clips)):
                name, rel = f"{item.name}.{c:03d}", f"videos/{item.name}.{c:03d}.npz"
                train = 1 if item.subject in TRAIN_SUBJECTS else -1
                x1, y1, x2, y2 = clip.box  # stored as the Penn stores' (cx, cy, side) in source pixels
                write_npz(tmp / rel, {
                    "frames": clip.frames, "joints": to_penn13(clip.joints).astype(np.float32),
                    "box": np.array([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1]), "action": np.array(item.action),
                    "pose": np.array(item.camera), "name": np.array(name), "train": np.array(train),
                })
                videos[name] = {"file": rel, "nframes": int(len(clip.frames)), "action": item.action,
                                "pose": item.camera, "train": train, "subject": item.subject}
        index = {"format": FORMAT, "version": VERSION, "dataset": "human36m", "image_size": image_size,
                 "crop_margin": float(margin), "source": str(Path(root).resolve()),
                 "actions": None if _check_actions(actions) is None else sorted(actions or ()),
                 "subjects": list(subjects), "clip_frames": clip_frames, "step": step, "num_videos": len(videos),
                 "num_frames": sum(int(v["nframes"]) for v in videos.values()), "videos": videos}
        with atomic_path(tmp / INDEX) as p:
            p.write_text(json.dumps(index, indent=1) + "\n")
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
