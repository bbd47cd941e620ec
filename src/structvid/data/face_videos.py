"""Face-expression videos stored as folders of numbered frames (MUG, BU-4DFE; Zhao et al., IJCV 2020, §7.1).

`FaceVideoEntry` is what `structvid.data.mug.scan_mug` and `structvid.data.bu4dfe.scan_bu4dfe` return: one
expression sequence of one subject with its frame files in playing order. `load_frames` decodes them with the
project's image reader. `split_by_subject` is the subject-disjoint, deterministic split both readers use for
the paper's protocol ("We evenly split the database into three groups according to the subjects", §7.1).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, Mapping, Sequence, TypeVar

import numpy as np

from structvid.errors import UserError
from structvid.io.images import load_image

__all__ = [
    "IMAGE_SUFFIXES",
    "FaceVideoEntry",
    "frame_key",
    "list_frames",
    "load_frames",
    "split_by_subject",
]

log = logging.getLogger(__name__)

#: Frame file types, in order of preference when one folder holds the same sequence in several (BU-4DFE
#: releases ship .jpg or .bmp textures next to non-image files such as .wrl meshes).
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")

_DIGITS = re.compile(r"\d+")

V = TypeVar("V", bound="FaceVideoEntry")


@dataclass
class FaceVideoEntry:
    """One expression sequence: `name` is unique in its dataset ("001/anger/take000", "F001/Happy");
    `frames` are the frame files in playing order (numeric order of their numbers)."""

    name: str
    subject: str
    expression: str
    frames: list[Path]

    @property
    def stem(self) -> str:
        """`name` without slashes ("001.anger.take000"), for one file per video (cf. the H36M store names)."""
        return self.name.replace("/", ".")

    def __len__(self) -> int:
        return len(self.frames)


def frame_key(path: Path | str) -> tuple[int, int, str]:
    """Sort key of a frame file: the last number in its stem, so img_0010 follows img_0002 and 10.jpg 9.jpg;
    files without a number sort after the numbered ones, by name."""
    stem = Path(path).stem
    numbers = _DIGITS.findall(stem)
    return (0, int(numbers[-1]), stem) if numbers else (1, 0, stem)


def list_frames(folder: Path) -> list[Path]:
    """The image files of `folder` (suffixes in IMAGE_SUFFIXES, any case; hidden files skipped), sorted by
    `frame_key`. A folder holding several image types keeps only the most preferred one (and says so)."""
    by_suffix: dict[str, list[Path]] = {}
    for p in folder.iterdir():
        suffix = p.suffix.lower()
        if suffix in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file():
            by_suffix.setdefault(suffix, []).append(p)
    if not by_suffix:
        return []
    keep = min(by_suffix, key=IMAGE_SUFFIXES.index)
    if len(by_suffix) > 1:
        dropped = sorted(s for s in by_suffix if s != keep)
        log.warning("%s: holds %s and %s frames; using the %s ones", folder, keep, "/".join(dropped), keep)
    return sorted(by_suffix[keep], key=frame_key)


def load_frames(entry: FaceVideoEntry, every: int = 1) -> np.ndarray:
    """Every `every`-th frame of `entry` (starting with the first) as uint8 RGB (T, H, W, 3).

    Frames are read with `structvid.io.images.load_image` (its checks: RGB, at least 8x8, readable); a frame
    whose size differs from the first one's, or a video without frames, raises UserError naming the file.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    paths = entry.frames[::every]
    if not paths:
        raise UserError(f"video '{entry.name}' has no frames")
    first = load_image(paths[0])
    out = np.empty((len(paths), *first.shape), dtype=np.uint8)  # (T, H, W, 3)
    out[0] = first
    for t, path in enumerate(paths[1:], start=1):
        img = load_image(path)
        if img.shape != first.shape:
            raise UserError(f"frame is {img.shape[1]}x{img.shape[0]} (WxH) but the video's first frame "
                            f"{paths[0].name} is {first.shape[1]}x{first.shape[0]}", path)
        out[t] = img
    return out


def _subject_key(subject: str) -> tuple[str, int, str]:
    # "001" < "010" < "100"; "F001" < "F010" < "M001": by letters, then number, then spelling
    letters = subject.rstrip("0123456789")
    digits = subject[len(letters):]
    return (letters, int(digits) if digits else -1, subject)


def split_by_subject(videos: Sequence[V], parts: Sequence[str], seed: int = 0,
                     group: Callable[[str], Hashable] | None = None) -> dict[str, list[V]]:
    """Split `videos` into `parts` by subject: no subject appears in two parts (§7.1 "according to the
    subjects").

    The distinct subjects are sorted, permuted with `np.random.default_rng(seed)` and dealt round-robin to
    the parts, so the split depends only on the set of subjects and `seed` (not on the input order), and the
    parts' subject counts differ by at most one ("evenly"). With `group` (subject -> key, e.g. the sex in
    BU-4DFE's F###/M### names) the permutation is done within each group (groups in sorted order) and the
    deal continues across them, so each group is also spread evenly. Each part lists its videos in input
    order. Fewer subjects than parts raise UserError.
    """
    if len(set(parts)) != len(parts) or not parts:
        raise ValueError(f"parts must be distinct and non-empty, got {list(parts)}")
    names = [v.name for v in videos]
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"duplicate video names: {dupes[:5]}")
    subjects = sorted({v.subject for v in videos}, key=_subject_key)
    if len(subjects) < len(parts):
        raise UserError(f"{len(subjects)} subject(s) cannot be split by subject into {len(parts)} parts "
                        f"({', '.join(parts)})")
    rng = np.random.default_rng(seed)
    if group is None:
        groups = [subjects]
    else:
        keys: Mapping[str, Hashable] = {s: group(s) for s in subjects}
        groups = [[s for s in subjects if keys[s] == k] for k in sorted(set(keys.values()), key=str)]
    dealt = [g[i] for g in groups for i in rng.permutation(len(g))]
    part_of = {s: parts[i % len(parts)] for i, s in enumerate(dealt)}
    out: dict[str, list[V]] = {p: [] for p in parts}
    for v in videos:
        out[part_of[v.subject]].append(v)
    return out
