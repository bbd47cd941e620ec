"""Validate a Penn Action layout folder (see `structvid.data.penn_action`) and report EVERY problem found.

Checks, per sequence: the label reads and has every field with consistent shapes (`read_label`, which
also rejects NaN/inf coordinates of visible joints and nframes ≠ dimensions[2]); a label has a frame
folder and a frame folder has a label; the folder holds exactly nframes frame files and none of
000001.jpg .. nframes is missing; every frame decodes completely (`structvid.io.image_check.verify_image`
reports truncated or zero-filled JPEGs, which cv2.imread decodes with grey in place of the missing part,
and empty or undecodable files; about 1.2 ms per 480x360 frame; `read_images=False` checks the first
frame only); every checked frame's size equals the label's dimensions (the first mismatch is reported,
with the count of others).

A labels-only copy (no frames/ folder at all, like the shared training labels) is reported ONCE, as a
problem on frames/, and the frame checks are skipped; labels are still checked. Without labels/ nothing
else can be checked, so only that is reported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from structvid.data.penn_action import PennSequence, frame_name, read_label
from structvid.errors import UserError
from structvid.io.image_check import verify_image

__all__ = ["Problem", "check_penn_dataset"]

_FRAME = re.compile(r"^\d{6}\.jpg$")


@dataclass(frozen=True)
class Problem:
    """One problem: the file or folder concerned and what is wrong with it."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


def _visible(p: Path) -> bool:
    return not p.name.startswith(".")


def check_penn_dataset(root: str | Path, read_images: bool = True) -> list[Problem]:
    """Every problem of the Penn Action folder `root` (empty list: valid), in a stable order."""
    root = Path(root)
    if not root.is_dir():
        return [Problem(str(root), "dataset folder not found")]
    labels_dir, frames_dir = root / "labels", root / "frames"
    problems: list[Problem] = []
    if not labels_dir.is_dir():
        problems.append(Problem(str(labels_dir), "missing labels/ folder; nothing else can be checked"))
        return problems
    has_frames = frames_dir.is_dir()
    if not has_frames:
        problems.append(Problem(str(frames_dir), "missing frames/ folder (labels-only copy): frame checks skipped"))

    label_names = sorted(p.stem for p in labels_dir.glob("*.mat") if _visible(p))
    if not label_names:
        problems.append(Problem(str(labels_dir), "no .mat label files"))
    folders = sorted(p.name for p in frames_dir.iterdir() if p.is_dir() and _visible(p)) if has_frames else []

    for name in label_names:
        path = labels_dir / f"{name}.mat"
        seq: PennSequence | None
        try:
            seq = read_label(path)
        except UserError as e:
            problems.append(Problem(str(path), e.problem))
            seq = None
        if has_frames:
            problems.extend(_check_frames(frames_dir / name, seq, read_images))
    for name in sorted(set(folders) - set(label_names)):
        problems.append(Problem(str(frames_dir / name), f"frame folder has no label labels/{name}.mat"))
    return problems


def _check_frames(folder: Path, seq: PennSequence | None, read_images: bool) -> list[Problem]:
    if not folder.is_dir():
        return [Problem(str(folder), "label has no frame folder")]
    present = {p.name for p in folder.iterdir() if _FRAME.match(p.name)}
    if not present:
        return [Problem(str(folder), "frame folder holds no NNNNNN.jpg frames")]
    out: list[Problem] = []
    if seq is not None:
        if len(present) != seq.nframes:
            out.append(Problem(str(folder), f"holds {len(present)} frames but the label says nframes={seq.nframes}"))
        missing = [frame_name(i) for i in range(seq.nframes) if frame_name(i) not in present]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            out.append(Problem(str(folder), f"missing frame file(s) {shown} ({len(missing)} in all)"))
    expected = None if seq is None else (seq.width, seq.height)
    wrong_size: list[tuple[str, tuple[int, int]]] = []
    for fname in sorted(present) if read_images else sorted(present)[:1]:
        try:
            size = verify_image(folder / fname)
        except UserError as e:
            out.append(Problem(str(folder / fname), f"unreadable image file: {e.problem}"))
            continue
        if expected is not None and size != expected:
            wrong_size.append((fname, size))
    if wrong_size and expected is not None:
        (fname, (w, h)), more = wrong_size[0], len(wrong_size) - 1
        out.append(Problem(
            str(folder / fname),
            f"image is {w}x{h} (WxH) but the label's dimensions say {expected[0]}x{expected[1]}"
            + (f" ({more} more frame(s) of a wrong size)" if more else ""),
        ))
    return out
