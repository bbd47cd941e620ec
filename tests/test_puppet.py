import json
from pathlib import Path

import numpy as np
import pytest

from structvid.data import puppet
from structvid.data.penn_action import PennActionDataset, read_label
from structvid.data.puppet import (
    PROCEDURAL_ACTIONS, bench_render, fit_to_frame, make_puppet_dataset, penn_motion, procedural_motion,
    random_background, random_look, render_puppet_video,
)
from structvid.errors import UserError

PENN_NAMES = ("0002", "1047", "1865")  # baseball_pitch, jumping_jacks, and the file with a short bbox


@pytest.fixture(scope="module")
def penn_labels(shared_data: Path, tmp_path_factory) -> Path:
    """A labels folder with links to three shared label files (nothing copied)."""
    folder = tmp_path_factory.mktemp("penn") / "labels"
    folder.mkdir()
    for name in PENN_NAMES:
        (folder / f"{name}.mat").symlink_to(shared_data / "penn_action" / "labels" / f"{name}.mat")
    return folder


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def check_dataset(ds: PennActionDataset, size: int) -> None:
    for name in ds.names:
        seq = ds.label(name)
        frames = ds.load_frames(name)
        assert len(ds.frame_paths(name)) == seq.nframes == len(frames)
        assert frames.shape[1:] == (size, size, 3) and seq.dimensions == (size, size, seq.nframes)
        vis = seq.visibility > 0
        bbox = seq.bbox[:, None, :]
        inside = (seq.x >= bbox[..., 0]) & (seq.x <= bbox[..., 2]) & (seq.y >= bbox[..., 1]) & (seq.y <= bbox[..., 3])
        assert inside[vis].all()
        assert (seq.bbox >= 0).all() and (seq.bbox <= size - 1).all()


@pytest.mark.parametrize("action", PROCEDURAL_ACTIONS)
def test_procedural_motion_stays_in_frame(action):
    for i in range(10):
        rng = np.random.default_rng([7, i])
        motion = procedural_motion(rng, 40, action)
        assert motion.joints.shape == (40, 13, 2) and np.isfinite(motion.joints).all()
        assert motion.action == action and motion.visibility.shape == (40, 13)
        joints, unit_px = fit_to_frame(motion.joints, motion.unit, 64, rng)
        look = random_look(rng, unit_px)
        assert (joints - look.margin >= 0).all() and (joints + look.margin <= 63).all()  # whole figure visible
        assert np.ptp(joints, axis=0).max() > 1.0  # it moves


def test_render_determinism():
    def video(seed: int) -> np.ndarray:
        rng = np.random.default_rng([seed, 0])
        motion = procedural_motion(rng, 12)
        joints, unit_px = fit_to_frame(motion.joints, motion.unit, 48, rng)
        return render_puppet_video(joints, random_look(rng, unit_px), random_background(rng, 48))

    a, b, c = video(1), video(1), video(2)
    assert a.shape == (12, 48, 48, 3) and a.dtype == np.uint8
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[6])  # the figure moves over a static background


def test_dataset_round_trip_and_determinism(tmp_path: Path):
    ds = make_puppet_dataset(tmp_path / "a", 3, size=32, frames=10, seed=5)
    assert isinstance(ds, PennActionDataset) and ds.names == ["0001", "0002", "0003"]
    check_dataset(ds, 32)
    for name in ds.names:
        seq = ds.label(name)
        assert seq.nframes == 10 and seq.train == 1 and seq.action in PROCEDURAL_ACTIONS
        assert (seq.visibility == 1).all()
    assert json.loads((tmp_path / "a" / puppet.MARKER).read_text())["seed"] == 5
    make_puppet_dataset(tmp_path / "b", 3, size=32, frames=10, seed=5)
    make_puppet_dataset(tmp_path / "c", 3, size=32, frames=10, seed=6)
    assert tree(tmp_path / "a").keys() == tree(tmp_path / "b").keys()
    # .mat headers carry a creation time: compare the label contents, and the frame files byte for byte.
    frames = {k: v for k, v in tree(tmp_path / "a").items() if k.endswith(".jpg")}
    assert frames == {k: v for k, v in tree(tmp_path / "b").items() if k.endswith(".jpg")}
    b = PennActionDataset(tmp_path / "b")
    assert all(ds.label(n) == b.label(n) for n in ds.names)
    c = PennActionDataset(tmp_path / "c")
    assert not np.array_equal(ds.load_frames("0001"), c.load_frames("0001"))


def test_workers_do_not_change_results(tmp_path: Path):
    make_puppet_dataset(tmp_path / "one", 3, size=32, frames=6, seed=3, workers=1)
    make_puppet_dataset(tmp_path / "two", 3, size=32, frames=6, seed=3, workers=2)
    one, two = tree(tmp_path / "one"), tree(tmp_path / "two")
    assert {k: v for k, v in one.items() if k.endswith(".jpg")} == {k: v for k, v in two.items() if k.endswith(".jpg")}
    a, b = PennActionDataset(tmp_path / "one"), PennActionDataset(tmp_path / "two")
    assert all(a.label(n) == b.label(n) for n in a.names)


def test_penn_source(tmp_path: Path, penn_labels: Path):
    ds = make_puppet_dataset(tmp_path / "p", None, size=48, source="penn", penn_labels=penn_labels)
    assert len(ds) == len(PENN_NAMES)
    check_dataset(ds, 48)
    for name, src_name in zip(ds.names, PENN_NAMES):
        src, seq = read_label(penn_labels / f"{src_name}.mat"), ds.label(name)
        assert (seq.action, seq.pose, seq.train, seq.nframes) == (src.action, src.pose, src.train, src.nframes)
        np.testing.assert_array_equal(seq.visibility, src.visibility)
        assert (seq.x >= 0).all() and (seq.x <= 47).all() and (seq.y >= 0).all() and (seq.y <= 47).all()
    # The motion follows the source: joint tracks are an affine image of the visible source joints.
    src, seq = read_label(penn_labels / "0002.mat"), ds.label("0001")
    vis = src.visibility > 0
    scale = np.polyfit(src.x[vis], seq.x[vis], 1)[0]
    np.testing.assert_allclose(seq.x[vis], scale * src.x[vis] + np.mean(seq.x[vis] - scale * src.x[vis]), atol=1e-6)


def test_penn_cycling_and_mixed(tmp_path: Path, penn_labels: Path):
    ds = make_puppet_dataset(tmp_path / "cyc", 4, size=32, source="penn", penn_labels=penn_labels)
    assert ds.label("0004").nframes == read_label(penn_labels / f"{PENN_NAMES[0]}.mat").nframes
    mixed = make_puppet_dataset(tmp_path / "mix", 4, size=32, frames=8, source="mixed", penn_labels=penn_labels)
    assert [mixed.label(n).nframes for n in mixed.names] == [8, 80, 8, read_label(penn_labels / "1047.mat").nframes]
    check_dataset(mixed, 32)


def test_penn_motion_fills_invisible_joints(shared_data: Path):
    seq = read_label(shared_data / "penn_action" / "labels" / "1516.mat")  # nothing visible at all
    motion = penn_motion(seq)
    assert np.isfinite(motion.joints).all() and (motion.visibility == 0).all()
    seq = read_label(shared_data / "penn_action" / "labels" / "0002.mat")
    seq.x[seq.visibility == 0] = np.nan  # invisible coordinates are never used
    motion = penn_motion(seq)
    assert np.isfinite(motion.joints).all() and np.abs(motion.joints).max() <= 0.5 + 1e-9


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch):
    out = tmp_path / "data" / "puppet"
    make_puppet_dataset(out, 2, size=32, frames=4, seed=0)
    before = tree(tmp_path)
    calls = []

    def boom(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk on fire")
        return real(*args, **kwargs)

    real = puppet.render_puppet_video
    monkeypatch.setattr(puppet, "render_puppet_video", boom)
    with pytest.raises(RuntimeError, match="disk on fire"):
        make_puppet_dataset(out, 3, size=32, frames=4, seed=1)
    assert sorted(p.name for p in out.parent.iterdir()) == ["puppet"]  # no temp folder left
    assert tree(tmp_path) == before  # the previous dataset is intact
    calls.clear()
    with pytest.raises(RuntimeError):
        make_puppet_dataset(tmp_path / "fresh", 3, size=32, frames=4)
    assert not (tmp_path / "fresh").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_user_errors(tmp_path: Path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("precious")
    with pytest.raises(UserError, match="mine.*not a puppet dataset"):
        make_puppet_dataset(tmp_path / "mine", 1, size=32, frames=2)
    assert (tmp_path / "mine" / "thesis.txt").read_text() == "precious"
    with pytest.raises(UserError, match="source"):
        make_puppet_dataset(tmp_path / "x", 1, source="video")
    with pytest.raises(UserError, match="penn_labels"):
        make_puppet_dataset(tmp_path / "x", 1, source="penn")
    with pytest.raises(UserError, match="not found"):
        make_puppet_dataset(tmp_path / "x", 1, source="penn", penn_labels=tmp_path / "none")
    with pytest.raises(UserError, match="num_videos"):
        make_puppet_dataset(tmp_path / "x", None)
    assert not (tmp_path / "x").exists()


def test_bench_render_reports_rates():
    stats = bench_render(num_frames=30, size=32)
    assert stats["frames"] == 30 and stats["render_fps"] > 0 and stats["render_write_fps"] > 0
