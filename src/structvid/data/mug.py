"""The MUG Facial Expression Database (Aifanti, Papachristou & Delopoulos, WIAMIS 2010) in its released
layout (Zhao et al., IJCV 2020, §7.1)::

    ROOT/001/anger/take000/img_0000.jpg ...   subject (digits) / expression / take / numbered frames

MUG is licensed per user: request it from its authors (https://mug.ee.auth.gr/fed/); structvid cannot
download it. Take folders are ``take`` + a number, in the release sometimes with a suffix (``take000nsg``,
``take001end``), and are kept as spelled. Frames are sorted by their number (img_0010 after img_0002);
non-image files are skipped.

Splits:

- the paper's (§7.1): "We evenly split the database into three groups according to the subjects. Two groups
  are used for training G_M and G_R respectively, and the results are evaluated on the last one", using
  "only the sequences representing one of the six facial expressions" (`EXPRESSIONS`). `paper_split` deals
  the subjects to parts gm / gr / eval (`structvid.config.DataConfig.part`), deterministically given a seed.
- the authors' own (FRGAN, `MUG_SPLIT_URL`): lists train.txt / val.txt / test.txt of
  ``SUBJECT EXPRESSION TAKE`` lines (19 / 19 / 12 subjects, 345 / 316 / 206 videos); FRGAN's files add the
  frame name as a fourth field, one line per frame, and are read as well. `authors_split` selects the
  scanned videos they list. FRGAN trains its forecasting network (G_M) on train.txt and shows test.txt
  results (mug_train_forecast.py); `AUTHORS_PARTS` reads val.txt as G_R's part, which the paper's
  three-group protocol implies but the repository does not show.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from structvid.data.face_videos import FaceVideoEntry, list_frames, split_by_subject
from structvid.errors import UserError

__all__ = [
    "EXPRESSIONS",
    "PAPER_PARTS",
    "AUTHORS_SPLITS",
    "AUTHORS_PARTS",
    "MUG_SPLIT_URL",
    "MugVideo",
    "scan_mug",
    "paper_split",
    "read_split_list",
    "read_split_lists",
    "authors_split",
]

log = logging.getLogger(__name__)

#: The six expressions the paper trains on (§7.1), as MUG spells its folders. MUG also has "neutral".
EXPRESSIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
PAPER_PARTS: tuple[str, ...] = ("gm", "gr", "eval")  # §7.1: G_M training, G_R training, evaluation
AUTHORS_SPLITS: tuple[str, ...] = ("train", "val", "test")  # the list files' names (train.txt, ...)
#: How the authors' lists map onto the paper's parts (see the module docstring for what is inferred).
AUTHORS_PARTS: dict[str, str] = {"train": "gm", "val": "gr", "test": "eval"}
#: FRGAN's split lists (Zhao et al.'s code for the MUG experiments), at the commit they were read from.
MUG_SPLIT_URL = "https://github.com/garyzhao/FRGAN/tree/4c4956d655b9d3cea0607a1a518531b436df85d5/datasets/mug"

_TAKE = re.compile(r"take(\d+)([A-Za-z]*)")
_LAYOUT = "expected ROOT/SUBJECT/EXPRESSION/takeNNN/img_NNNN.jpg, e.g. 001/anger/take000/img_0000.jpg"


@dataclass
class MugVideo(FaceVideoEntry):
    """One MUG take: `name` is "subject/expression/take", e.g. "001/anger/take000"."""

    take: str


def _subject_order(name: str) -> tuple[int, str]:
    return (int(name), name)


def _take_order(name: str) -> tuple[int, str]:
    m = _TAKE.fullmatch(name)
    return (int(m.group(1)), m.group(2)) if m else (-1, name)


def _subdirs(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]


def scan_mug(root: str | Path, expressions: Iterable[str] | None = EXPRESSIONS) -> list[MugVideo]:
    """Every take under `root` with at least one frame, sorted by subject (numerically), expression, take.

    Only expression folders in `expressions` are read (default: the paper's six; None: every folder, e.g.
    also "neutral"). Takes without frames are skipped and reported in one warning. A missing root, a root
    without subject folders (all-digit names) or one without any video raises UserError naming the root.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError("MUG folder not found", root)
    keep = None if expressions is None else set(expressions)
    subjects = sorted((p for p in _subdirs(root) if p.name.isdigit()), key=lambda p: _subject_order(p.name))
    if not subjects:
        raise UserError(f"not a MUG layout: no subject folders such as 001/ ({_LAYOUT})", root)
    videos: list[MugVideo] = []
    empty: list[Path] = []
    for subject in subjects:
        for expression in sorted(_subdirs(subject), key=lambda p: p.name):
            if keep is not None and expression.name not in keep:
                continue
            takes = [p for p in _subdirs(expression) if _TAKE.fullmatch(p.name)]
            for take in sorted(takes, key=lambda p: _take_order(p.name)):
                frames = list_frames(take)
                if not frames:
                    empty.append(take)
                    continue
                videos.append(MugVideo(name=f"{subject.name}/{expression.name}/{take.name}", subject=subject.name,
                                       expression=expression.name, frames=frames, take=take.name))
    if empty:
        shown = ", ".join(str(p.relative_to(root)) for p in empty[:5])
        log.warning("%s: %d take folder(s) without frames skipped: %s%s", root, len(empty), shown,
                    " ..." if len(empty) > 5 else "")
    if not videos:
        wanted = "any expression" if keep is None else ", ".join(sorted(keep))
        raise UserError(f"no MUG videos found for {wanted} in {len(subjects)} subject folder(s) ({_LAYOUT})", root)
    return videos


def paper_split(videos: Sequence[MugVideo], seed: int = 0) -> dict[str, list[MugVideo]]:
    """The paper's even three-way split by subject (§7.1): {"gm": ..., "gr": ..., "eval": ...}.

    Subjects are dealt by `split_by_subject` (sorted, permuted with `seed`, round-robin), so the parts share
    no subject, cover every video, hold subject counts differing by at most one, and depend only on the
    set of subjects and `seed`. Pass the six-expression videos `scan_mug` returns by default.
    """
    return split_by_subject(videos, PAPER_PARTS, seed=seed)


def read_split_list(path: str | Path) -> list[str]:
    """The video names ("subject/expression/take") one split list holds, in file order, each once.

    Lines are ``SUBJECT EXPRESSION TAKE`` or FRGAN's ``SUBJECT EXPRESSION TAKE FRAME.jpg`` (one line per
    frame, folded into its video). Blank lines and ``#`` comments are skipped; any other line raises
    UserError naming the file and the line number.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError("split list not found", path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read split list ({e})", path) from None
    names: dict[str, None] = {}  # ordered set
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        ok = (len(fields) in (3, 4) and fields[0].isdigit() and fields[1].isalpha()
              and _TAKE.fullmatch(fields[2]) is not None)
        if ok and len(fields) == 4:
            ok = "/" not in fields[3] and Path(fields[3]).suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")
        if not ok:
            raise UserError(f"line {number}: expected 'SUBJECT EXPRESSION takeNNN' (e.g. '001 anger take000'), "
                            f"optionally followed by a frame file name, got {raw.strip()!r}", path)
        names["/".join(fields[:3])] = None
    return list(names)


def read_split_lists(split_dir: str | Path) -> dict[str, list[str]]:
    """train.txt, val.txt and test.txt of `split_dir` as {"train": names, "val": ..., "test": ...}; a name
    listed in two files raises UserError naming the second file."""
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise UserError("split list folder not found", split_dir)
    lists: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for part in AUTHORS_SPLITS:
        path = split_dir / f"{part}.txt"
        lists[part] = read_split_list(path)
        for name in lists[part]:
            if name in seen:
                raise UserError(f"video {name} is also listed in {seen[name]}.txt", path)
            seen[name] = part
    return lists


def authors_split(videos: Sequence[MugVideo], split_dir: str | Path) -> dict[str, list[MugVideo]]:
    """The authors' split (FRGAN's lists in `split_dir`, see `MUG_SPLIT_URL`): {"train", "val", "test"} ->
    the scanned `videos` each list names, in list order.

    Listed videos absent from `videos` are reported (a count per list, in one warning), not an error: a
    copy of MUG may lack a few takes. `AUTHORS_PARTS` maps the keys onto the paper's gm / gr / eval.
    """
    lists = read_split_lists(split_dir)
    by_name = {v.name: v for v in videos}
    out: dict[str, list[MugVideo]] = {}
    missing: dict[str, int] = {}
    for part, names in lists.items():
        out[part] = [by_name[n] for n in names if n in by_name]
        if len(out[part]) < len(names):
            missing[part] = len(names) - len(out[part])
    if missing:
        counts = ", ".join(f"{part}.txt {n} of {len(lists[part])}" for part, n in missing.items())
        log.warning("%s: listed videos not found in the scanned MUG copy: %s", Path(split_dir), counts)
    return out
