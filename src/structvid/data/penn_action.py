"""The Penn Action layout (Zhang, Zhu & Derpanis, ICCV 2013), read and written format-faithfully (§7.1).

    ROOT/frames/NNNN/000001.jpg ...   one folder per sequence, 6-digit 1-based frame numbers
    ROOT/labels/NNNN.mat              action, pose, x, y, visibility, train, bbox, dimensions, nframes

Joints are in pixel coordinates of the original frames (pixel-centre convention, see
`structvid.structure.heatmaps`).

Splits:

- official: each label's ``train`` flag (Zhang et al.'s train / test halves), selected with
  ``PennActionDataset(root, split="train" | "test")`` (``DataConfig.split``). The real files mark the
  training half ``1`` and the test half ``-1``; some re-packings write ``0`` for the test half, so both
  select ``split="test"`` (`in_split`).
- the paper's (§7.1): "We evenly split the standard dataset into three sets. G_M and G_R are trained in
  the first two sets respectively, while we evaluate our models in the last set"; with "no subject
  classified for each video in Penn Action ... we assume that each video has a different subject", so
  videos are split, not subjects. `paper_split(names, "gm" | "gr" | "eval", seed)` returns one part:
  deterministic, disjoint, sizes differing by at most one, independent of the input order; given
  `actions`, every action is also spread evenly over the three parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np
import scipy.io

from structvid.structure.skeleton import NUM_JOINTS, PENN_ACTIONS, PENN_JOINTS
from structvid.errors import UserError
from structvid.io.files import atomic_path
from structvid.io.image_check import jpeg_complete

FIELDS = ("action", "pose", "x", "y", "visibility", "train", "bbox", "dimensions", "nframes")
SPLITS = ("all", "train", "test")
TRAIN_FLAG, TEST_FLAG = 1, -1  # the official files' `train` values; 0 is also read as test
PAPER_PARTS = ("gm", "gr", "eval")  # §7.1: G_M training, G_R training, evaluation


@dataclass(eq=False)
class PennSequence:
    """One Penn Action label file. Arrays are (T, 13) per frame and joint; bbox rows are [x1, y1, x2, y2]."""

    name: str
    action: str
    pose: str  # the camera view: front, back, left or right
    x: np.ndarray  # (T, 13) float64
    y: np.ndarray  # (T, 13) float64
    visibility: np.ndarray  # (T, 13) uint8, 1 = visible
    bbox: np.ndarray  # (T, 4) float64
    dimensions: tuple[int, int, int]  # (H, W, T) of the frames
    train: int  # official split flag as stored: 1 = train, -1 (or 0) = test

    @property
    def nframes(self) -> int:
        return int(self.x.shape[0])

    @property
    def height(self) -> int:
        return int(self.dimensions[0])

    @property
    def width(self) -> int:
        return int(self.dimensions[1])

    @property
    def joints(self) -> np.ndarray:
        """(T, 13, 3) float32 [x, y, visibility]."""
        return np.stack([self.x, self.y, self.visibility], axis=-1).astype(np.float32)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PennSequence):
            return NotImplemented
        arrays = ("x", "y", "visibility", "bbox")
        return (
            (self.name, self.action, self.pose, tuple(self.dimensions), int(self.train))
            == (other.name, other.action, other.pose, tuple(other.dimensions), int(other.train))
            and all(np.array_equal(getattr(self, a), getattr(other, a), equal_nan=True) for a in arrays)
        )


def _string(value: np.ndarray, field: str, path: Path) -> str:
    flat = np.asarray(value).ravel()
    if flat.size != 1 or not isinstance(flat[0], str) or not flat[0]:
        raise UserError(f"field '{field}' must be a non-empty string", path)
    return str(flat[0])


def _integer(value: np.ndarray, field: str, path: Path, size: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.size != size or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise UserError(f"field '{field}' must hold {size} number(s), got shape {arr.shape} ({arr.dtype})", path)
    flat = arr.ravel().astype(np.float64)
    if not np.all(np.isfinite(flat)) or np.any(flat != np.round(flat)) or np.any(flat < 0):
        raise UserError(f"field '{field}' must hold non-negative integers, got {flat.tolist()}", path)
    return flat.astype(np.int64)


def _train_flag(value: np.ndarray, path: Path) -> int:
    arr = np.asarray(value)
    flat = arr.ravel().astype(np.float64) if arr.size == 1 and np.issubdtype(arr.dtype, np.number) else None
    if flat is None or flat[0] not in (TRAIN_FLAG, 0, TEST_FLAG):
        shown = flat.tolist() if flat is not None else f"shape {arr.shape} ({arr.dtype})"
        raise UserError(f"field 'train' must be {TRAIN_FLAG} (train) or {TEST_FLAG} / 0 (test), got {shown}", path)
    return int(flat[0])


def in_split(train: int, split: str) -> bool:
    """Whether a sequence with official flag `train` belongs to `split` ("all", "train": 1, "test": -1 or 0)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return split == "all" or (int(train) == TRAIN_FLAG) == (split == "train")


def read_label(path: str | Path) -> PennSequence:
    """Read and validate one Penn Action label file; every problem raises UserError naming the file.

    Known quirk of the real data: one file (1865.mat) has one bbox row fewer than frames; a bbox short by
    exactly one row is padded by repeating its last row. Other shape mismatches are errors.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError("label file not found", path)
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as e:  # scipy raises many types (ValueError, TypeError, MatReadError, ...)
        raise UserError(f"cannot read as a .mat file ({type(e).__name__}: {e})", path) from None
    missing = [f for f in FIELDS if f not in mat]
    if missing:
        raise UserError(f"missing field(s) {', '.join(missing)}", path)

    action = _string(mat["action"], "action", path)
    pose = _string(mat["pose"], "pose", path)
    nframes = int(_integer(mat["nframes"], "nframes", path, 1)[0])
    dims = _integer(mat["dimensions"], "dimensions", path, 3)
    train = _train_flag(mat["train"], path)

    arrays = {}
    for field in ("x", "y", "visibility"):
        arr = np.asarray(mat[field])
        if arr.ndim != 2 or arr.shape != (nframes, NUM_JOINTS):
            raise UserError(f"field '{field}' has shape {arr.shape}, expected (nframes={nframes}, {NUM_JOINTS})",
                            path)
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise UserError(f"field '{field}' is not numeric ({arr.dtype})", path)
        arrays[field] = arr
    # Some real files store x / y as integers; the canonical in-memory type is float64.
    x = arrays["x"].astype(np.float64)
    y = arrays["y"].astype(np.float64)
    vis_raw = arrays["visibility"]
    if np.issubdtype(vis_raw.dtype, np.floating) and not np.all(np.isfinite(vis_raw)):
        raise UserError("field 'visibility' holds non-finite values", path)
    visibility = (vis_raw > 0).astype(np.uint8)

    bbox = np.asarray(mat["bbox"])
    if bbox.ndim != 2 or bbox.shape[1] != 4 or not np.issubdtype(bbox.dtype, np.number):
        raise UserError(f"field 'bbox' has shape {bbox.shape}, expected (nframes={nframes}, 4)", path)
    bbox = bbox.astype(np.float64)
    if bbox.shape[0] == nframes - 1 and nframes > 1:
        bbox = np.concatenate([bbox, bbox[-1:]], axis=0)
    elif bbox.shape[0] != nframes:
        raise UserError(f"field 'bbox' has {bbox.shape[0]} rows, expected nframes={nframes}", path)
    if int(dims[2]) != nframes:
        raise UserError(f"dimensions say {int(dims[2])} frames but nframes is {nframes}", path)
    if nframes < 1:
        raise UserError("sequence has no frames", path)

    # A visible joint must have a position; invisible ones may hold anything (often 0 or stale values).
    bad = (visibility > 0) & ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise UserError(f"visible joint '{PENN_JOINTS[j]}' has non-finite coordinates in frame {t + 1} "
                        f"(1-based; {int(bad.sum())} such joint(s) in all)", path)

    return PennSequence(name=path.stem, action=action, pose=pose, x=x, y=y, visibility=visibility, bbox=bbox,
                        dimensions=(int(dims[0]), int(dims[1]), int(dims[2])), train=train)


def write_label(path: str | Path, seq: PennSequence) -> None:
    """Write `seq` as a .mat with the real files' field names and dtypes, atomically."""
    path = Path(path)
    t = seq.nframes
    for field, cols in (("x", NUM_JOINTS), ("y", NUM_JOINTS), ("visibility", NUM_JOINTS), ("bbox", 4)):
        if np.shape(getattr(seq, field)) != (t, cols):
            raise ValueError(f"{seq.name}: {field} has shape {np.shape(getattr(seq, field))}, expected {(t, cols)}")
    if tuple(seq.dimensions)[2] != t:
        raise ValueError(f"{seq.name}: dimensions {seq.dimensions} disagree with {t} frames")
    if int(seq.train) not in (TRAIN_FLAG, 0, TEST_FLAG):  # what read_label accepts
        raise ValueError(f"{seq.name}: train flag {seq.train} is not {TRAIN_FLAG}, 0 or {TEST_FLAG}")
    mat = {
        "action": str(seq.action),
        "pose": str(seq.pose),
        "x": np.asarray(seq.x, dtype=np.float64),
        "y": np.asarray(seq.y, dtype=np.float64),
        "visibility": np.asarray(seq.visibility, dtype=np.uint8),
        "train": np.array([[int(seq.train)]], dtype=np.int32),
        "bbox": np.asarray(seq.bbox, dtype=np.float64),
        "dimensions": np.array([list(seq.dimensions)], dtype=np.uint16),
        # The real files use uint8 and switch to uint16 for sequences longer than 255 frames.
        "nframes": np.array([[t]], dtype=np.uint8 if t <= 255 else np.uint16),
    }
    with atomic_path(path) as tmp:
        scipy.io.savemat(str(tmp), mat)


def frame_name(index: int) -> str:
    """File name of 0-based frame `index`: 000001.jpg for index 0."""
    return f"{index + 1:06d}.jpg"


def _name_key(name: str) -> tuple[int, str]:
    # Numeric names sort numerically (so 10000 follows 9999), others after them by name.
    return (int(name), name) if name.isdigit() else (1 << 62, name)


class PennActionDataset:
    """A folder in the Penn Action layout: lists sequences (sorted by name) and loads labels and frames.

    `actions` keeps only those actions; `split` keeps the official train (train == 1) or test (train == -1
    or 0) sequences.
    Filtering reads every label once (about 0.5 ms per file); labels are cached.
    """

    def __init__(self, root: str | Path, actions: Iterable[str] | None = None, split: str = "all") -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError("dataset folder not found", self.root)
        self.labels_dir = self.root / "labels"
        self.frames_dir = self.root / "frames"
        if not self.labels_dir.is_dir():
            raise UserError("not a Penn Action layout: missing labels/ folder", self.root)
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}", self.root)
        self.split = split
        self.actions = None if actions is None else tuple(actions)
        if self.actions is not None:
            unknown = sorted(set(self.actions) - set(PENN_ACTIONS))
            if unknown:
                raise UserError(f"unknown action(s) {', '.join(unknown)}; known: {', '.join(PENN_ACTIONS)}",
                                self.root)
        self._labels: dict[str, PennSequence] = {}
        names = sorted((p.stem for p in self.labels_dir.glob("*.mat") if not p.name.startswith(".")), key=_name_key)
        if self.actions is not None:
            names = [n for n in names if self.label(n).action in self.actions]
        if split != "all":
            names = [n for n in names if in_split(self.label(n).train, split)]
        self.names: list[str] = names

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"PennActionDataset({str(self.root)!r}, {len(self)} sequences, split={self.split!r})"

    def label_path(self, name: str) -> Path:
        return self.labels_dir / f"{name}.mat"

    def label(self, name: str) -> PennSequence:
        """The (cached) label of sequence `name`, e.g. "0002"."""
        seq = self._labels.get(name)
        if seq is None:
            seq = self._labels[name] = read_label(self.label_path(name))
        return seq

    def frame_paths(self, name: str) -> list[Path]:
        """The label's nframes frame files frames/NAME/000001.jpg ... (whether or not they exist)."""
        folder = self.frames_dir / name
        return [folder / frame_name(i) for i in range(self.label(name).nframes)]

    def load_frames(self, name: str, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """RGB frames as uint8 (T', H, W, 3); `indices` are 0-based frame indices (default: all)."""
        seq = self.label(name)
        paths = self.frame_paths(name)
        idx = range(len(paths)) if indices is None else [int(i) for i in np.asarray(indices).ravel()]
        out = np.empty((len(idx), seq.height, seq.width, 3), dtype=np.uint8)
        for k, i in enumerate(idx):
            if not 0 <= i < len(paths):
                raise IndexError(f"{name}: frame index {i} out of range [0, {len(paths)})")
            try:
                data = paths[i].read_bytes()
            except FileNotFoundError:
                raise UserError("frame missing", paths[i]) from None
            # libjpeg fills a truncated file's missing part with grey without an error: check the end marker
            if not jpeg_complete(data):
                raise UserError("frame is a truncated or corrupt JPEG (no end-of-image marker)", paths[i])
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
            if img is None:
                raise UserError("frame unreadable as an image", paths[i])
            if img.shape[:2] != (seq.height, seq.width):
                raise UserError(f"frame is {img.shape[1]}x{img.shape[0]} (WxH) but the label says "
                                f"{seq.width}x{seq.height}", paths[i])
            cv2.cvtColor(img, cv2.COLOR_BGR2RGB, dst=out[k])
        return out



def paper_split(names: Sequence[str], part: str, seed: int = 0, actions: Mapping[str, str] | None = None) -> list[str]:
    """The paper's even three-way split of Penn Action videos (§7.1): part "gm" (G_M training), "gr"
    (G_R training) or "eval"; returned sorted like `PennActionDataset.names`.

    The names are sorted, permuted with `np.random.default_rng(seed)` and dealt round-robin to gm, gr,
    eval, so the result depends on the set of names and `seed` only, the parts are disjoint and their
    sizes differ by at most one. With `actions` (name -> action) the permutation is done within each
    action (actions in sorted order) and the deal continues across them: each action's videos are also
    split as evenly as possible.
    """
    if part not in PAPER_PARTS:
        raise UserError(f"unknown split part {part!r}; expected one of {', '.join(PAPER_PARTS)}")
    ordered = sorted(names, key=_name_key)
    dupes = sorted({a for a, b in zip(ordered, ordered[1:]) if a == b})
    if dupes:
        raise ValueError(f"duplicate video names: {dupes[:5]}")
    rng = np.random.default_rng(seed)
    if actions is None:
        groups = [ordered]
    else:
        missing = [n for n in ordered if n not in actions]
        if missing:
            raise ValueError(f"no action given for video(s) {missing[:5]}")
        groups = [[n for n in ordered if actions[n] == a] for a in sorted({actions[n] for n in ordered})]
    dealt = [g[i] for g in groups for i in rng.permutation(len(g))]
    k = PAPER_PARTS.index(part)
    return sorted(dealt[k::3], key=_name_key)
