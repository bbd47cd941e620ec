"""check_penn_dataset reports every problem of a Penn Action folder, not just the first."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import scipy.io

from structvid.data.check import Problem, check_penn_dataset
from structvid.data.penn_action import PennSequence, frame_name, write_label

H, W, T = 24, 32, 5


def make_valid(root: Path, names: list[str]) -> None:
    rng = np.random.default_rng(0)
    for name in names:
        x = rng.uniform(2, W - 2, (T, 13))
        y = rng.uniform(2, H - 2, (T, 13))
        seq = PennSequence(name, "golf_swing", "front", x, y, np.ones((T, 13), np.uint8),
                           np.tile([1.0, 1.0, W - 1.0, H - 1.0], (T, 1)), (H, W, T), 1)
        write_label(root / "labels" / f"{name}.mat", seq)
        folder = root / "frames" / name
        folder.mkdir(parents=True)
        for i in range(T):
            cv2.imwrite(str(folder / frame_name(i)), rng.integers(0, 255, (H, W, 3), dtype=np.uint8))


def reported(problems: list[Problem], path: Path, *words: str) -> bool:
    return any(p.path == str(path) and all(w in p.problem for w in words) for p in problems)


def test_valid_fixture_has_no_problem(tmp_path) -> None:
    make_valid(tmp_path, ["0001", "0002"])
    assert check_penn_dataset(tmp_path) == []


def test_every_planted_problem_is_reported(tmp_path) -> None:
    names = [f"{i:04d}" for i in range(1, 10)]
    make_valid(tmp_path, names)
    labels, frames = tmp_path / "labels", tmp_path / "frames"

    # 1. label without a frame folder
    for f in (frames / "0001").iterdir():
        f.unlink()
    (frames / "0001").rmdir()
    # 2. frame folder without a label
    (frames / "0099").mkdir()
    cv2.imwrite(str(frames / "0099" / frame_name(0)), np.zeros((H, W, 3), np.uint8))
    # 3. corrupt .mat
    (labels / "0002.mat").write_bytes(b"\x00garbage, not a MAT file")
    # 4. missing field
    mat = scipy.io.loadmat(str(labels / "0003.mat"))
    scipy.io.savemat(str(labels / "0003.mat"), {k: v for k, v in mat.items() if not k.startswith("__") and k != "bbox"})
    # 5. a missing frame file (so the count differs from nframes too)
    (frames / "0004" / frame_name(2)).unlink()
    # 6. an unreadable image
    (frames / "0005" / frame_name(3)).write_bytes(b"not a jpeg")
    # 7. NaN joint (visible)
    mat = scipy.io.loadmat(str(labels / "0006.mat"))
    mat["x"][1, 4] = np.nan
    scipy.io.savemat(str(labels / "0006.mat"), {k: v for k, v in mat.items() if not k.startswith("__")})
    # 8. dimensions disagree with the images
    mat = scipy.io.loadmat(str(labels / "0007.mat"))
    mat["dimensions"] = np.array([[H + 10, W, T]], np.uint16)
    scipy.io.savemat(str(labels / "0007.mat"), {k: v for k, v in mat.items() if not k.startswith("__")})
    # 9. an extra frame beyond nframes
    cv2.imwrite(str(frames / "0008" / frame_name(T)), np.zeros((H, W, 3), np.uint8))

    problems = check_penn_dataset(tmp_path)
    text = "\n".join(map(str, problems))
    assert reported(problems, frames / "0001", "no frame folder"), text
    assert reported(problems, frames / "0099", "no label"), text
    assert reported(problems, labels / "0002.mat", "cannot read"), text
    assert reported(problems, labels / "0003.mat", "missing field", "bbox"), text
    assert reported(problems, frames / "0004", "missing frame", frame_name(2)), text
    assert reported(problems, frames / "0004", "4 frames", "nframes=5"), text
    assert reported(problems, frames / "0005" / frame_name(3), "unreadable"), text
    assert reported(problems, labels / "0006.mat", "non-finite"), text
    assert reported(problems, frames / "0007" / frame_name(0), "dimensions"), text
    assert reported(problems, frames / "0008", "6 frames", "nframes=5"), text
    assert not any("0009" in p.path for p in problems), text  # the untouched sequence is clean
    assert len(problems) == 10, text


def test_missing_folders(tmp_path) -> None:
    assert check_penn_dataset(tmp_path / "nowhere") == [Problem(str(tmp_path / "nowhere"), "dataset folder not found")]
    (tmp_path / "frames").mkdir()
    problems = check_penn_dataset(tmp_path)
    assert len(problems) == 1 and "labels/" in problems[0].problem


def test_labels_only_copy_is_one_problem(shared_data) -> None:
    root = shared_data / "penn_action"
    problems = check_penn_dataset(root)
    assert problems == [Problem(str(root / "frames"), problems[0].problem)]
    assert "frames/" in problems[0].problem


def test_cli_reports_truncated_and_corrupt_frames(tmp_path, capsys) -> None:
    """cv2.imread decodes a truncated or zero-filled JPEG with grey in place of the missing part; the check
    decodes every frame completely and reports each bad one, exit status 2."""
    from structvid.cli import main

    make_valid(tmp_path, ["0001", "0002", "0003", "0004", "0005"])
    frames = tmp_path / "frames"
    truncated = frames / "0001" / frame_name(1)
    data = truncated.read_bytes()
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    assert cv2.imread(str(truncated)) is not None  # why a plain cv2.imread check passed it
    corrupt = frames / "0002" / frame_name(2)
    corrupt.write_bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    empty = frames / "0003" / frame_name(0)
    empty.write_bytes(b"")
    zero_filled = frames / "0004" / frame_name(4)  # e.g. an interrupted copy into a preallocated file
    data = zero_filled.read_bytes()
    zero_filled.write_bytes(data[: len(data) // 2] + bytes(len(data) - len(data) // 2))
    assert cv2.imread(str(zero_filled)) is not None

    assert main(["data", "check", str(tmp_path)]) == 2
    out, err = capsys.readouterr()
    lines = out.splitlines()
    for path, words in ((truncated, "truncated"), (corrupt, "not a readable image"), (empty, "empty"),
                        (zero_filled, "truncated")):
        assert any(line.startswith(f"{path}: unreadable image file") and words in line for line in lines), out
    assert len(lines) == 4 and "4 problem(s) found" in err  # and nothing about the intact 0005


def test_every_frame_size_is_checked(tmp_path) -> None:
    make_valid(tmp_path, ["0001"])
    for i in (2, 4):
        cv2.imwrite(str(tmp_path / "frames" / "0001" / frame_name(i)), np.zeros((H, W + 8, 3), np.uint8))
    problems = check_penn_dataset(tmp_path)
    assert problems == [Problem(str(tmp_path / "frames" / "0001" / frame_name(2)),
                                f"image is {W + 8}x{H} (WxH) but the label's dimensions say {W}x{H} "
                                "(1 more frame(s) of a wrong size)")]


def test_official_test_half_flags_pass(tmp_path, capsys) -> None:
    """Labels of the real test half (train = -1) and re-packed ones (train = 0) are valid."""
    from structvid.cli import main

    make_valid(tmp_path, ["0001", "0002", "0003"])
    for name, value in (("0002", np.array([[-1]], np.int32)), ("0003", np.array([[0]], np.uint8))):
        path = tmp_path / "labels" / f"{name}.mat"
        mat = {k: v for k, v in scipy.io.loadmat(str(path)).items() if not k.startswith("__")}
        mat["train"] = value
        scipy.io.savemat(str(path), mat)
    assert main(["data", "check", str(tmp_path)]) == 0
    assert "no problems found" in capsys.readouterr().out
