"""Human3.6M reader: layout listing, pose files, Penn mapping, temporal-tube crops (§7.1)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

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


# ---------------------------------------------------------------- training on Human3.6M (§7.1)


def test_subject_halves_are_disjoint_and_cover_the_split() -> None:
    from structvid.data.human36m import SUBJECT_PARTS, subjects_of

    gm, gr, ev = (set(SUBJECT_PARTS[p]) for p in ("gm", "gr", "eval"))
    assert not (gm & gr or gm & ev or gr & ev)
    assert gm | gr == set(TRAIN_SUBJECTS) and ev == set(TEST_SUBJECTS)
    assert set(subjects_of("all")) == set(TRAIN_SUBJECTS + TEST_SUBJECTS)
    with pytest.raises(UserError, match="unknown part"):
        subjects_of("val")


def test_load_clips_crops_each_clip_with_its_own_tube(fixture_ds: Human36MDataset) -> None:
    item = fixture_ds.items[1]
    joints = fixture_ds.joints(item)
    clips = fixture_ds.load_clips(item, size=32, length=8)
    assert [len(c.frames) for c in clips] == [8, 8, 4]  # 20 frames
    for c, start in zip(clips, (0, 8, 16)):
        x1, y1, x2, y2 = temporal_tube_box(joints[start : start + 8], 0.1)
        assert c.box[0] == np.floor(x1) and c.box[1] == np.floor(y1)  # this clip's tube, not the trial's
        np.testing.assert_allclose(c.joints[0, :, :2], (joints[start, :, :2] - c.box[:2]) * 32 / (c.box[2] - c.box[0]),
                                   atol=1e-4)
    first = fixture_ds.load_clip(item, size=32, max_frames=8)
    assert np.array_equal(first.frames, clips[0].frames) and first.box == clips[0].box
    assert len(fixture_ds.load_clips(item, size=32, length=8, max_clips=2)) == 2
    assert [len(c.frames) for c in fixture_ds.load_clips(item, size=32, length=19)] == [19]  # a 1-frame rest is dropped


@pytest.fixture(scope="module")
def h36m_store(tmp_path_factory):
    from structvid.data.human36m import prepare_h36m

    root = tmp_path_factory.mktemp("h36m_train")
    make_h36m_fixture(root, ("S1", "S6", "S7", "S9"), ("Walking", "Eating"), frames=24, size=(60, 80))
    return root, prepare_h36m(root, root.parent / "store16", image_size=16, subjects=("S1", "S6", "S7", "S9"),
                              clip_frames=12, progress=False)


def test_prepared_store_feeds_the_clip_sampler_by_subject_halves(h36m_store) -> None:
    from structvid.config import DataConfig
    from structvid.data.clips import ClipSampler

    _, store = h36m_store
    index = json.loads((store / "prepared.json").read_text())
    assert index["dataset"] == "human36m" and index["num_videos"] == 4 * 2 * 2  # subjects x actions x 2 clips
    assert "S1.Walking.54138969.001" in index["videos"]

    def names(**kw) -> list[str]:
        return ClipSampler(DataConfig(root=str(store), image_size=16, crop_margin=0.1, **kw)).names

    def subjects(ns: list[str]) -> set[str]:
        return {n.split(".")[0] for n in ns}

    assert subjects(names(part="gm")) == {"S1", "S6"} and subjects(names(part="gr")) == {"S7"}
    assert subjects(names(part="eval")) == {"S9"} and subjects(names(split="train")) == {"S1", "S6", "S7"}
    with pytest.raises(UserError, match="no usable video"):  # the test subjects are not in the train split
        names(split="train", part="eval")
    assert {n.split(".")[1] for n in names(actions=["Eating"])} == {"Eating"}
    with pytest.raises(UserError, match="unknown Human3.6M action"):
        names(actions=["golf_swing"])
    sampler = ClipSampler(DataConfig(root=str(store), image_size=16, crop_margin=0.1, max_jump=11, part="gm"))
    batch = sampler.draw(np.random.default_rng(0), 4)
    assert batch["image_t"].shape == (4, 3, 16, 16) and batch["motion_tk"].shape == (4, 13, 16, 16)


def test_train_forecast_on_the_h36m_store(h36m_store, tmp_path) -> None:
    from structvid.cli import main
    from tests.conftest import TINY

    _, store = h36m_store
    assert main(["data", "prepare-h36m", str(h36m_store[0]), "--out", str(tmp_path / "s"),
                 "--size", "16", "--subjects", "S1", "--actions", "Walking", "--clip-frames", "12", "--max-clips",
                 "1"]) == 0
    assert json_index(tmp_path / "s")["num_videos"] == 1
    run = tmp_path / "run"
    preset = Path(__file__).resolve().parents[1] / "configs" / "h36m-128.yaml"
    assert main(["train", "forecast", "--config", str(preset), "--out", str(run), "--data", str(store),
                 "--no-progress", *TINY, "data.crop_margin=0.1", "data.num_workers=0", "train.steps=1"]) == 0
    assert (run / "checkpoints" / "step_00000001" / "generator.safetensors").is_file()


def json_index(store):
    return json.loads((store / "prepared.json").read_text())


def test_pose_lstm_trains_on_h36m_and_evaluates_at_a_longer_horizon(tmp_path, capsys) -> None:
    # §7.1: observe 10, predict K in training (64 in configs/poses-h36m.yaml), tested on a longer horizon (128)
    from structvid.cli import main
    from structvid.data.human36m import Human36MPoses

    root = tmp_path / "h36m"
    make_h36m_fixture(root, TRAIN_SUBJECTS + TEST_SUBJECTS, ("Walking", "Eating"), frames=30, size=(60, 80))
    poses = Human36MPoses(root, split="test")
    assert poses.names == ["S11.Eating.54138969", "S11.Walking.54138969", "S9.Eating.54138969", "S9.Walking.54138969"]
    seq = poses.label("S9.Walking.54138969")
    assert seq.joints.shape == (30, 13, 3) and seq.bbox.shape == (30, 4) and seq.action == "Walking"
    np.testing.assert_array_equal(seq.joints, to_penn13(read_pose(root / "S9/MyPoseFeatures/D2_Positions/Walking.54138969.npz")))
    preset = Path(__file__).resolve().parents[1] / "configs" / "poses-h36m.yaml"
    run = tmp_path / "run"
    assert main(["train", "poses", "--config", str(preset), "--data", str(root), "--out", str(run), "--no-progress",
                 "model.hidden_size=8", "model.num_layers=1", "model.horizon=6", "train.steps=2", "train.batch_size=4",
                 "train.checkpoint_every=2", "train.log_every=1", "train.device=cpu", "data.val_fraction=0.2"]) == 0
    summary = json.loads((run / "data.json").read_text())
    assert summary["train_sequences"] + summary["val_sequences"] == 10  # the five training subjects, 2 actions
    assert all(n.split(".")[0] in TRAIN_SUBJECTS for n in summary["val_names"])
    out = tmp_path / "eval"
    assert main(["evaluate", "poses", "--checkpoint", str(run), "--data", str(root), "--out", str(out),
                 "--horizon", "12", "--device", "cpu"]) == 0, capsys.readouterr().err
    res = json.loads((out / "poses.json").read_text())
    assert res["horizons"] == [1, 8, 12] and res["num_sequences"] == 4  # S9, S11: forecast past training's 6
    assert len(res["methods"]["lstm"]["curve"]) == 12 and set(res["methods"]["lstm"]["per_action"]) == {"Eating", "Walking"}
    assert main(["evaluate", "poses", "--checkpoint", str(run), "--data", str(root), "--out", str(out), "--heldout",
                 "--horizon", "12", "--device", "cpu"]) == 0
    assert json.loads((out / "poses.json").read_text())["num_sequences"] == summary["val_sequences"]
