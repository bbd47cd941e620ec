"""Human3.6M reader: layout listing, pose files, Penn mapping, temporal-tube crops (§7.1)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from structvid.data.human36m import (
    ACTIONS,
    TEST_SUBJECTS,
    TRAIN_SUBJECTS,
    H36MItem,
    Human36MDataset,
    make_h36m_fixture,
    read_pose,
    temporal_tube_box,
    to_penn13,
)
from structvid.errors import UserError


@pytest.fixture(scope="module")
def fixture_ds(tmp_path_factory) -> Human36MDataset:
    root = tmp_path_factory.mktemp("h36m")
    return make_h36m_fixture(root, ("S1", "S9"), ("Walking", "Eating"), frames=20, size=(100, 120))


def test_constants() -> None:
    assert TRAIN_SUBJECTS == ("S1", "S5", "S6", "S7", "S8") and TEST_SUBJECTS == ("S9", "S11")
    assert len(ACTIONS) == 15 == len(set(ACTIONS))


def test_fixture_round_trip(fixture_ds: Human36MDataset) -> None:
    ds = fixture_ds
    assert [(i.subject, i.action) for i in ds.items] == [
        ("S1", "Eating"), ("S1", "Walking"), ("S9", "Eating"), ("S9", "Walking")
    ]
    assert (ds.root / "S1" / "Videos" / "Walking.54138969.mp4").is_file()
    assert (ds.root / "S1" / "MyPoseFeatures" / "D2_Positions" / "Walking.54138969.npz").is_file()
    assert len(Human36MDataset(ds.root, ["S9"], ["Walking"])) == 1

    item = ds.items[1]
    joints = ds.joints(item)
    assert joints.shape == (20, 32, 3) and (joints[..., 2] == 1).all()
    box = temporal_tube_box(joints, margin=0.1)
    x1, y1, x2, y2 = box
    assert x2 - x1 == pytest.approx(y2 - y1)  # square
    for t in range(len(joints)):  # contains the person in EVERY frame
        assert (joints[t, :, 0] >= x1).all() and (joints[t, :, 0] <= x2).all()
        assert (joints[t, :, 1] >= y1).all() and (joints[t, :, 1] <= y2).all()

    clip = ds.load_clip(item, size=128)
    assert clip.frames.shape == (20, 128, 128, 3) and clip.frames.dtype == np.uint8
    assert clip.joints.shape == (20, 32, 3)
    assert (clip.joints[..., :2] >= 0).all() and (clip.joints[..., :2] <= 128).all()
    # the drawn joints land where the crop's joint coordinates say (bright dots on a dark frame)
    f = clip.frames[5].mean(-1)
    xs = np.clip(np.round(clip.joints[5, :, 0]).astype(int), 0, 127)
    ys = np.clip(np.round(clip.joints[5, :, 1]).astype(int), 0, 127)
    assert f[ys, xs].mean() > 3 * f.mean()
    half = ds.load_clip(item, size=64, step=2, max_frames=4)
    assert half.frames.shape == (4, 64, 64, 3)
    bx, by, bx2, _ = half.box
    np.testing.assert_allclose(half.joints[1, :, :2], (joints[2, :, :2] - [bx, by]) * 64 / (bx2 - bx), atol=1e-4)


def test_to_penn13() -> None:
    joints = np.arange(32 * 3, dtype=np.float32).reshape(1, 32, 3)
    penn = to_penn13(joints)
    assert penn.shape == (1, 13, 3)
    assert penn[0, 0, 0] == joints[0, 15, 0]  # head
    assert penn[0, 1, 0] == joints[0, 17, 0] and penn[0, 2, 0] == joints[0, 25, 0]  # shoulders
    assert penn[0, 11, 0] == joints[0, 8, 0] and penn[0, 12, 0] == joints[0, 3, 0]  # ankles (feet)
    with pytest.raises(UserError):
        to_penn13(np.zeros((5, 17, 3)))


def test_bad_files_name_the_file(tmp_path) -> None:
    ds = make_h36m_fixture(tmp_path, ("S5",), ("Posing",), frames=6, size=(40, 40))
    item = ds.items[0]
    pose = item.pose_path()

    pose.write_bytes(b"not a zip")
    with pytest.raises(UserError) as e:
        ds.joints(item)
    assert e.value.path == str(pose)

    np.savez(pose, pose=np.zeros((6, 50)))
    with pytest.raises(UserError, match="32 joints"):
        ds.joints(item)
    np.savez(pose, other=np.zeros((6, 64)))
    with pytest.raises(UserError, match="'pose'"):
        ds.joints(item)
    np.savez(pose, pose=np.full((6, 64), np.nan))
    with pytest.raises(UserError, match="NaN"):
        ds.joints(item)

    np.savez(pose, pose=np.full((6, 64), 10.0))
    item.video_path.write_bytes(b"garbage")
    with pytest.raises(UserError) as e:
        ds.load_clip(item)
    assert e.value.path == str(item.video_path)
    item.video_path.unlink()
    with pytest.raises(UserError, match="not found"):
        ds.load_clip(item)

    missing = H36MItem("S5", "Posing", "Posing 2", "54138969", tmp_path)
    with pytest.raises(UserError, match="not found"):
        ds.joints(missing)
    with pytest.raises(UserError, match="unknown subject"):
        Human36MDataset(tmp_path, ["S12"])
    with pytest.raises(UserError, match="D2_Positions"):
        Human36MDataset(tmp_path, ["S6"])
    with pytest.raises(UserError, match="not found"):
        Human36MDataset(tmp_path / "nowhere", ["S1"])


@pytest.mark.skipif(importlib.util.find_spec("cdflib") is not None, reason="cdflib is installed")
def test_cdf_without_cdflib_explains(tmp_path) -> None:
    path = tmp_path / "S1" / "MyPoseFeatures" / "D2_Positions" / "Walking 1.54138969.cdf"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"CDF")
    ds = Human36MDataset(tmp_path, ["S1"])
    assert [(i.action, i.trial) for i in ds.items] == [("Walking", "Walking 1")]
    with pytest.raises(UserError, match="cdflib") as e:
        read_pose(path)
    assert e.value.path == str(path)


def test_official_action_aliases(tmp_path) -> None:
    folder = tmp_path / "S1" / "MyPoseFeatures" / "D2_Positions"
    folder.mkdir(parents=True)
    for stem in ("TakingPhoto 1.54138969", "WalkingDog.55011271", "_ALL.54138969"):
        np.savez(folder / f"{stem}.npz", pose=np.zeros((3, 64)))
    ds = Human36MDataset(tmp_path, ["S1"])
    assert sorted(i.action for i in ds.items) == ["Photo", "WalkDog"]
