"""MUG and BU-4DFE readers (§7.1): layouts, frame order, the paper's subject splits, the authors' MUG lists."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from structvid.data import bu4dfe, mug
from structvid.data.face_videos import FaceVideoEntry, frame_key, load_frames, split_by_subject
from structvid.data.mug import MugVideo, authors_split, read_split_list, read_split_lists, scan_mug
from structvid.errors import UserError


def _write(path: Path, value: int, size: int = 8) -> None:
    """An 8x8 frame of one grey level (cv2 picks JPEG or BMP from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((size, size, 3), value, np.uint8))


@pytest.fixture()
def mug_root(tmp_path: Path) -> Path:
    """3 subjects x 2 expressions x 1-2 takes x 3 frames, plus clutter the scanner must skip."""
    root = tmp_path / "mug"
    for subject in ("010", "002", "001"):
        for expression in ("happiness", "anger"):
            takes = ("take000", "take001") if subject == "001" else ("take000",)
            for take in takes:
                for i in (10, 2, 1):  # written out of order; numbers chosen so text order != numeric order
                    _write(root / subject / expression / take / f"img_{i:04d}.jpg", 20 * i)
                (root / subject / expression / take / "notes.txt").write_text("not a frame")
    (root / "001" / "neutral" / "take000").mkdir(parents=True)
    _write(root / "001" / "neutral" / "take000" / "img_0000.jpg", 0)
    (root / "002" / "anger" / "take001").mkdir()  # a take without frames
    (root / "README.txt").write_text("clutter")
    return root


def test_scan_mug_order_and_numeric_frames(mug_root: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="structvid.data.mug"):
        videos = scan_mug(mug_root)
    assert [v.name for v in videos] == [
        "001/anger/take000", "001/anger/take001", "001/happiness/take000", "001/happiness/take001",
        "002/anger/take000", "002/happiness/take000", "010/anger/take000", "010/happiness/take000",
    ]
    v = videos[0]
    assert isinstance(v, MugVideo) and (v.subject, v.expression, v.take) == ("001", "anger", "take000")
    assert [p.name for p in v.frames] == ["img_0001.jpg", "img_0002.jpg", "img_0010.jpg"]  # notes.txt skipped
    assert "1 take folder(s) without frames" in caplog.text and "002/anger/take001" in caplog.text
    # neutral is not one of the paper's six; expressions=None keeps it
    assert "001/neutral/take000" in {v.name for v in scan_mug(mug_root, expressions=None)}


def test_frame_key_and_take_suffixes(tmp_path: Path) -> None:
    assert sorted(["img_0010.jpg", "img_0002.jpg", "img_0100.jpg"], key=frame_key) == [
        "img_0002.jpg", "img_0010.jpg", "img_0100.jpg"]
    # unpadded numbers, where text order differs: 10 after 9, unnumbered names last
    assert sorted(["img_10.jpg", "img_9.jpg", "cover.jpg", "img_100.jpg"], key=frame_key) == [
        "img_9.jpg", "img_10.jpg", "img_100.jpg", "cover.jpg"]
    for take in ("take002", "take000nsg", "take010", "take000"):  # the real release has take000nsg, take001end
        _write(tmp_path / "001" / "fear" / take / "img_0000.jpg", 5)
    assert [v.take for v in scan_mug(tmp_path)] == ["take000", "take000nsg", "take002", "take010"]


def test_load_frames(mug_root: Path) -> None:
    video = scan_mug(mug_root)[0]
    frames = load_frames(video)
    assert frames.shape == (3, 8, 8, 3) and frames.dtype == np.uint8
    assert np.abs(frames[:, 0, 0, 0].astype(int) - [20, 40, 200]).max() <= 2  # numeric order, JPEG rounding
    assert load_frames(video, every=2).shape == (2, 8, 8, 3)
    _write(video.frames[1], 40, size=16)
    with pytest.raises(UserError, match="16x16") as err:
        load_frames(video)
    assert err.value.path == str(video.frames[1])


def test_scan_mug_wrong_layout(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found") as err:
        scan_mug(tmp_path / "nope")
    assert err.value.path == str(tmp_path / "nope")
    _write(tmp_path / "subjects3" / "001" / "anger" / "take000" / "img_0000.jpg", 1)  # one level too high
    with pytest.raises(UserError, match="not a MUG layout") as err:
        scan_mug(tmp_path)
    assert err.value.path == str(tmp_path)
    (tmp_path / "001" / "anger" / "take000").mkdir(parents=True)  # subject but no frames anywhere
    with pytest.raises(UserError, match="no MUG videos") as err:
        scan_mug(tmp_path)
    assert err.value.path == str(tmp_path)


def test_mug_paper_split(mug_root: Path) -> None:
    videos = scan_mug(mug_root)
    parts = mug.paper_split(videos, seed=0)
    assert list(parts) == ["gm", "gr", "eval"]
    subjects = [{v.subject for v in parts[p]} for p in parts]
    assert all(len(s) == 1 for s in subjects) and set().union(*subjects) == {"001", "002", "010"}
    assert sorted(v.name for p in parts.values() for v in p) == sorted(v.name for v in videos)
    again = mug.paper_split(list(reversed(videos)), seed=0)
    assert {p: {v.name for v in vs} for p, vs in again.items()} == {p: {v.name for v in vs} for p, vs in parts.items()}
    with pytest.raises(UserError, match="2 subject"):
        mug.paper_split([v for v in videos if v.subject != "010"])


def _list_videos(lists: dict[str, list[str]]) -> list[MugVideo]:
    """Videos named like the list entries (no files needed: splits only look at names and subjects)."""
    out = []
    for names in lists.values():
        for name in names:
            s, e, t = name.split("/")
            out.append(MugVideo(name=name, subject=s, expression=e, frames=[], take=t))
    return out


def test_authors_split_real_lists(shared_data: Path, caplog) -> None:
    split_dir = shared_data / "mug_splits"
    lists = read_split_lists(split_dir)
    assert {p: len(n) for p, n in lists.items()} == {"train": 345, "val": 316, "test": 206}
    subjects = {p: len({n.split("/")[0] for n in names}) for p, names in lists.items()}
    assert subjects == {"train": 19, "val": 19, "test": 12}
    videos = _list_videos(lists)
    parts = authors_split(videos, split_dir)
    assert {p: len(v) for p, v in parts.items()} == {"train": 345, "val": 316, "test": 206}
    assert "028/disgust/take000nsg" in {v.name for v in parts["test"]}
    # a copy lacking 5 listed takes: reported as a count, not an error
    dropped = {v.name for v in parts["val"][:5]}
    with caplog.at_level(logging.WARNING, logger="structvid.data.mug"):
        partial = authors_split([v for v in videos if v.name not in dropped], split_dir)
    assert len(partial["val"]) == 311 and "val.txt 5 of 316" in caplog.text and "train.txt" not in caplog.text
    # the paper's split of the same 50 subjects: 17 / 17 / 16, disjoint
    paper = mug.paper_split(videos, seed=3)
    counts = sorted(len({v.subject for v in vs}) for vs in paper.values())
    assert counts == [16, 17, 17] and sum(len(vs) for vs in paper.values()) == 867


def test_authors_split_fixture_lists(mug_root: Path, tmp_path: Path) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("# the authors' train part\n001 anger take000\n\n001 anger take001  # x\n")
    # FRGAN's own files: one line per frame, folded into its video
    (lists / "val.txt").write_text("002 anger take000 img_0000.jpg\n002 anger take000 img_0001.jpg\n")
    (lists / "test.txt").write_text("010 happiness take000\n099 fear take000\n")
    parts = authors_split(scan_mug(mug_root), lists)
    assert {p: [v.name for v in vs] for p, vs in parts.items()} == {
        "train": ["001/anger/take000", "001/anger/take001"], "val": ["002/anger/take000"],
        "test": ["010/happiness/take000"]}
    assert mug.AUTHORS_PARTS == {"train": "gm", "val": "gr", "test": "eval"}


@pytest.mark.parametrize("line", ["001 anger", "abc anger take000", "001 anger scene000", "001 anger take000 x y",
                                  "001 anger take000 frame.txt"])
def test_malformed_list_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "train.txt"
    path.write_text(f"001 anger take000\n\n{line}\n")
    with pytest.raises(UserError, match="line 3") as err:
        read_split_list(path)
    assert err.value.path == str(path)


def test_list_duplicates_and_missing_files(tmp_path: Path) -> None:
    for part, text in (("train", "001 anger take000\n"), ("val", "001 anger take000\n"), ("test", "")):
        (tmp_path / f"{part}.txt").write_text(text)
    with pytest.raises(UserError, match="also listed in train.txt") as err:
        read_split_lists(tmp_path)
    assert err.value.path == str(tmp_path / "val.txt")
    (tmp_path / "test.txt").unlink()
    (tmp_path / "val.txt").write_text("")
    with pytest.raises(UserError, match="split list not found") as err:
        read_split_lists(tmp_path)
    assert err.value.path == str(tmp_path / "test.txt")


def test_bu4dfe_scan_both_extensions(tmp_path: Path, caplog) -> None:
    root = tmp_path / "bu"
    for subject, suffix in (("F001", ".jpg"), ("M002", ".bmp"), ("F010", ".jpg")):
        for expression in ("Happy", "angry"):  # folder case varies between copies
            for i in (0, 12, 3):
                stem = f"{i}" if subject == "M002" else f"{i:03d}"  # one copy with unpadded numbers
                _write(root / subject / expression / f"{stem}{suffix}", 10 * i + 1)
            (root / subject / expression / "000.wrl").write_text("mesh")
    (root / "F001" / "Sad").mkdir()  # no frames
    _write(root / "M002" / "Happy" / "000.jpg", 99)  # the same sequence in two formats: .jpg wins
    (root / "models").mkdir()
    with caplog.at_level(logging.WARNING):
        videos = bu4dfe.scan_bu4dfe(root)
    assert [v.name for v in videos] == ["F001/Angry", "F001/Happy", "F010/Angry", "F010/Happy", "M002/Angry",
                                        "M002/Happy"]
    assert [p.name for p in videos[0].frames] == ["000.jpg", "003.jpg", "012.jpg"]
    assert [p.name for p in videos[4].frames] == ["0.bmp", "3.bmp", "12.bmp"]  # 12 after 3
    assert [p.name for p in videos[5].frames] == ["000.jpg"]
    assert "F001/Sad" in caplog.text and "using the .jpg ones" in caplog.text
    bmp = load_frames(videos[4])
    assert bmp.shape == (3, 8, 8, 3) and bmp[:, 0, 0, 0].tolist() == [1, 31, 121]  # BMP is lossless


def test_bu4dfe_wrong_layout(tmp_path: Path) -> None:
    _write(tmp_path / "001" / "anger" / "take000" / "img_0000.jpg", 1)  # a MUG layout
    with pytest.raises(UserError, match="not a BU-4DFE layout") as err:
        bu4dfe.scan_bu4dfe(tmp_path)
    assert err.value.path == str(tmp_path)


def _entries(subjects: list[str]) -> list[FaceVideoEntry]:
    return [FaceVideoEntry(name=f"{s}/{e}", subject=s, expression=e, frames=[])
            for s in subjects for e in bu4dfe.EXPRESSIONS]


def test_bu4dfe_paper_split() -> None:
    # the paper's 101 subjects x 6 expressions = 606 sequences (§7.1); 58 women, 43 men as in the release
    subjects = [f"F{i:03d}" for i in range(1, 59)] + [f"M{i:03d}" for i in range(1, 44)]
    videos = _entries(subjects)
    parts = bu4dfe.paper_split(videos, seed=0)
    gm, gr = ({v.subject for v in parts[p]} for p in ("gm", "gr"))
    assert not gm & gr and gm | gr == set(subjects)
    assert sorted([len(gm), len(gr)]) == [50, 51] and sorted(len(parts[p]) for p in parts) == [300, 306]
    for sex in "FM":  # each sex dealt evenly
        assert abs(sum(s[0] == sex for s in gm) - sum(s[0] == sex for s in gr)) <= 1
    assert {p: [v.name for v in vs] for p, vs in bu4dfe.paper_split(videos[::-1], seed=0).items()} == {
        p: [v.name for v in vs][::-1] for p, vs in parts.items()}
    other = bu4dfe.paper_split(videos, seed=1)
    assert {v.subject for v in other["gm"]} != gm  # the seed matters


def test_split_by_subject_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        split_by_subject(_entries(["F001", "M001"]) * 2, ("a", "b"))
