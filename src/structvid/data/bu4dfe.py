"""The BU-4DFE database (Yin et al., FG 2008; the paper cites Zhang et al. 2013b) in its released layout
(Zhao et al., IJCV 2020, §7.1)::

    ROOT/F001/Happy/000.jpg ...   subject (F### or M###) / expression / numbered texture frames

BU-4DFE is licensed per user by Binghamton University; structvid cannot download it. Releases store the 2D
texture frames as .jpg or .bmp (both read; see `structvid.data.face_videos.list_frames`), next to non-image
files (3D meshes, landmarks), which are skipped. Expression folders are matched case-insensitively and
named as in `EXPRESSIONS`.

The paper uses BU-4DFE "only for training" and says: "This dataset contains 606 facial expression sequences
captured from 101 subjects ... We evenly split the dataset into two parts for training G_M and G_R
respectively" (§7.1). It does not say by what; `paper_split` splits by subject, as the paper does for MUG
and Human3.6M ("according to the subjects"), so G_M and G_R never see the same face, and with every
subject recorded in all six expressions the two halves hold about as many sequences as subjects allow.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Sequence

from structvid.data.face_videos import FaceVideoEntry, list_frames, split_by_subject
from structvid.errors import UserError

__all__ = ["EXPRESSIONS", "PAPER_PARTS", "scan_bu4dfe", "paper_split"]

log = logging.getLogger(__name__)

#: The six expressions (§7.1 "angry, disgust, fear, happiness, sadness, and surprise"), as BU-4DFE spells them.
EXPRESSIONS: tuple[str, ...] = ("Angry", "Disgust", "Fear", "Happy", "Sad", "Surprise")
PAPER_PARTS: tuple[str, ...] = ("gm", "gr")  # §7.1: one half trains G_M, the other G_R; none is evaluated

_SUBJECT = re.compile(r"[FM]\d{3}")
_LAYOUT = "expected ROOT/SUBJECT/EXPRESSION/NNN.jpg (or .bmp), e.g. F001/Happy/000.jpg"


def scan_bu4dfe(root: str | Path) -> list[FaceVideoEntry]:
    """Every (subject, expression) sequence under `root` with at least one frame, sorted by subject (F
    before M, then number) and expression; `name` is "F001/Happy".

    Folders that are not subjects (F### / M###) or not one of the six expressions are ignored; sequences
    without frames are skipped and reported in one warning. A missing root, a root without subject folders
    or one without any sequence raises UserError naming the root.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError("BU-4DFE folder not found", root)
    canonical = {e.lower(): e for e in EXPRESSIONS}
    subjects = sorted(p for p in root.iterdir() if p.is_dir() and _SUBJECT.fullmatch(p.name))
    if not subjects:
        raise UserError(f"not a BU-4DFE layout: no subject folders such as F001/ or M001/ ({_LAYOUT})", root)
    videos: list[FaceVideoEntry] = []
    empty: list[Path] = []
    for subject in subjects:
        folders = {canonical[p.name.lower()]: p for p in subject.iterdir()
                   if p.is_dir() and p.name.lower() in canonical}
        for expression in EXPRESSIONS:
            if expression not in folders:
                continue
            frames = list_frames(folders[expression])
            if not frames:
                empty.append(folders[expression])
                continue
            videos.append(FaceVideoEntry(name=f"{subject.name}/{expression}", subject=subject.name,
                                         expression=expression, frames=frames))
    if empty:
        shown = ", ".join(str(p.relative_to(root)) for p in empty[:5])
        log.warning("%s: %d sequence folder(s) without frames skipped: %s%s", root, len(empty), shown,
                    " ..." if len(empty) > 5 else "")
    if not videos:
        raise UserError(f"no BU-4DFE sequences found in {len(subjects)} subject folder(s) ({_LAYOUT})", root)
    return videos


def paper_split(videos: Sequence[FaceVideoEntry], seed: int = 0) -> dict[str, list[FaceVideoEntry]]:
    """The paper's even two-way split (§7.1): {"gm": ..., "gr": ...}, by subject.

    Women (F###) and men (M###) are each dealt evenly (`split_by_subject` with the sex as group), so both
    halves get about as many of each; the result depends only on the set of subjects and `seed`.
    """
    return split_by_subject(videos, PAPER_PARTS, seed=seed, group=lambda s: s[0])
