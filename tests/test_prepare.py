"""Prepared stores (structvid.data.prepare), ClipSampler on them, and the paper's Penn Action split (§7.1)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from structvid.config import DataConfig
from structvid.data.clips import ClipSampler
from structvid.data.penn_action import PennActionDataset, paper_split
from structvid.data.prepare import INDEX, PreparedStore, bench_prepare, is_prepared, prepare_dataset
from structvid.data.puppet import make_puppet_dataset
from structvid.errors import UserError


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prep") / "puppet"
    make_puppet_dataset(root, 4, size=32, frames=12, seed=3)
    return root


@pytest.fixture(scope="module")
def store(source: Path) -> Path:
    return prepare_dataset(source, source.parent / "store", 32, workers=1, progress=False)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_store_layout(source: Path, store: Path):
    assert is_prepared(store) and not is_prepared(source)
    assert sorted(_files(store)) == [INDEX] + [f"videos/000{i}.npz" for i in range(1, 5)]
    index = json.loads((store / INDEX).read_text())
    assert (index["image_size"], index["crop_margin"], index["num_videos"]) == (32, 0.15, 4)
    assert index["source"] == str(source.resolve())
    s = PreparedStore(store)
    ds = PennActionDataset(source)
    assert s.names == ds.names
    for n in s.names:
        seq = ds.label(n)
        assert (s.nframes[n], s.actions[n], s.poses[n], s.train[n]) == (seq.nframes, seq.action, seq.pose, seq.train)
        v = s.video(n)
        assert v.frames.shape == (12, 32, 32, 3) and v.frames.dtype == np.uint8 and v.params.shape == (12, 13, 3)
    with np.load(store / "videos/0002.npz") as z:
        assert str(z["name"]) == "0002" and str(z["action"]) == s.actions["0002"] and z["box"].shape == (3,)


def test_sampler_on_store_draws_identical_batches(source: Path, store: Path):
    a = ClipSampler(DataConfig(root=str(source), image_size=32, max_jump=4))
    b = ClipSampler(DataConfig(root=str(store), image_size=32, max_jump=4))
    assert a.names == b.names and b.store is not None and b.dataset is None and a.store is None
    assert [a.action(n) for n in a.names] == [b.action(n) for n in b.names]
    for seed in range(3):
        x, y = a.draw(np.random.default_rng(seed), 6), b.draw(np.random.default_rng(seed), 6)
        assert x.keys() == y.keys()
        for k in x:
            assert np.array_equal(x[k].numpy(), y[k].numpy()), k


def test_worker_count_does_not_change_the_store(source: Path, store: Path, tmp_path: Path):
    two = prepare_dataset(source, tmp_path / "two", 32, workers=2, progress=False)
    assert _files(two) == _files(store)  # byte-identical, including the .npz zip members
    again = prepare_dataset(source, two, 32, workers=1, progress=False)  # replacing a store is allowed
    assert _files(again) == _files(store)


def test_config_mismatch_names_index(store: Path):
    root = str(store)
    for cfg in (DataConfig(root=root, image_size=16), DataConfig(root=root, image_size=32, crop_margin=0.3)):
        with pytest.raises(UserError) as e:
            ClipSampler(cfg)
        assert e.value.path == str(store / INDEX) and "image_size=32" in e.value.problem


def test_bad_videos_are_all_reported_and_nothing_is_written(source: Path, tmp_path: Path):
    bad = tmp_path / "bad"
    shutil.copytree(source, bad)
    (bad / "frames/0002/000003.jpg").write_bytes(b"not a jpeg")
    (bad / "frames/0004/000007.jpg").unlink()
    out = tmp_path / "out"
    with pytest.raises(UserError) as e:
        prepare_dataset(bad, out, 32, workers=1, progress=False)
    msg = str(e.value)
    assert "2 of 4" in msg and "0002/000003.jpg" in msg and "unreadable" in msg and "0004/000007.jpg" in msg
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad"]


def test_refuses_to_replace_other_folders(source: Path, tmp_path: Path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="refusing"):
        prepare_dataset(source, other, 32, workers=1, progress=False)
    with pytest.raises(UserError):
        prepare_dataset(source, source, 32, workers=1, progress=False)
    assert (other / "keep.txt").read_text() == "x"


def test_paper_split():
    names = [f"{i:04d}" for i in range(1, 101)]
    parts = {p: paper_split(names, p) for p in ("gm", "gr", "eval")}
    assert sorted(len(v) for v in parts.values()) == [33, 33, 34]
    assert sorted(sum(parts.values(), [])) == names  # disjoint and complete
    rng = np.random.default_rng(1)
    shuffled = list(rng.permutation(names))
    assert all(paper_split(shuffled, p) == v for p, v in parts.items())  # order-free, deterministic
    assert paper_split(names, "eval", seed=1) != parts["eval"]
    # with actions: each action is split evenly too
    actions = {n: ("golf_swing", "jump_rope", "bowl")[i % 3] if i < 70 else "squat" for i, n in enumerate(names)}
    strat = {p: paper_split(names, p, actions=actions) for p in ("gm", "gr", "eval")}
    assert sorted(len(v) for v in strat.values()) == [33, 33, 34]
    for a in set(actions.values()):
        counts = [sum(actions[n] == a for n in v) for v in strat.values()]
        assert max(counts) - min(counts) <= 1
    assert [len(paper_split(names[:4], p)) for p in ("gm", "gr", "eval")] == [2, 1, 1]
    with pytest.raises(UserError):
        paper_split(names, "test")
    with pytest.raises(ValueError):
        paper_split(names + ["0001"], "gm")


def test_bench_prepare_smoke(shared_data: Path, tmp_path: Path):
    r = bench_prepare(shared_data / "penn_action" / "labels", size=32, workers=1, num_videos=2, work_dir=tmp_path)
    assert r["videos"] == 2 and r["frames"] > 0 and r["prepare_s"] > 0 and r["store_mb"] > 0
    assert list(tmp_path.iterdir()) == []
