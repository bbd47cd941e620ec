"""The paper's video protocols (§7.3): Penn Action (Table 7, Fig. 10) and Human3.6M (Table 6, Fig. 9)."""

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from structvid.config import DataConfig, ForecasterConfig
from structvid.data.clips import ClipSampler
from structvid.data.penn_action import PennActionDataset, frame_name, read_label, write_label
from structvid.data.puppet import make_puppet_dataset
from structvid.errors import UserError
from structvid.metrics.pixel import PSNR_CAP
from structvid.metrics.pose import zero_velocity
from structvid.metrics.video_protocols import (
    h36m_protocol, joint_motion, motion_deciles, penn_protocol, write_protocol_report,
)
from structvid.structure.skeleton import PAPER_ACTIONS
from structvid.structure.heatmaps import JointHeatmaps

OFFSET = 10  # grey levels added by the offset stub: PSNR = 20 log10(255 / 10)
OFFSET_PSNR = 20 * np.log10(255 / OFFSET)


class LookupPipe:
    """Stands in for ImageToVideoPipeline: finds the input image among known clips and returns the frames
    that follow it (each value `offset` away), recording the motion maps it was given."""

    def __init__(self, clips: list[np.ndarray], size: int, offset: int = 0) -> None:
        self.size, self.offset, self.structure = size, offset, JointHeatmaps(13)
        self.crop_margin = 0.15
        self.after = {}
        for frames in clips:
            for t in range(len(frames) - 1, -1, -1):  # earliest occurrence wins
                self.after[frames[t].tobytes()] = frames[t + 1 :]
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, image, motion_maps, image_motion):
        self.calls.append((motion_maps, image_motion))
        nxt = self.after[np.asarray(image).tobytes()][: len(motion_maps)]
        assert len(nxt) == len(motion_maps) and image_motion.shape == (1, *motion_maps.shape[1:])
        off = np.where(nxt > 127, -self.offset, self.offset)  # every value moves by `offset`, none clips
        return SimpleNamespace(frames=(nxt.astype(np.int16) + off).astype(np.uint8))


# ---------------------------------------------------------------- motion deciles


def moving(speed: float, frames: int = 5, joints: int = 13) -> np.ndarray:
    j = np.zeros((frames, joints, 3), np.float32)
    j[..., 0] = speed * np.arange(frames)[:, None]
    j[..., 2] = 1
    return j


def test_joint_motion_counts_visible_joints_only():
    j = moving(1.0, joints=2)
    j[:, 1, 0] = 3.0 * np.arange(5)
    assert joint_motion(j) == pytest.approx(2.0)
    j[2, 1, 2] = 0  # joint 1 invisible in frame 3: its steps 2->3 and 3->4 do not count
    j[2, 1, 0] = 1e6
    assert joint_motion(j) == pytest.approx((4 * 1 + 2 * 3) / 6)
    assert joint_motion(j[:1]) == 0.0


def test_motion_deciles_known_order():
    speeds = np.random.default_rng(0).permutation(20).astype(float)
    deciles = motion_deciles([moving(s) for s in speeds])
    assert deciles == [int(s) // 2 for s in speeds]  # 20 sequences: 2 per decile, 0 = least motion
    assert np.bincount(deciles).tolist() == [2] * 10
    # ties keep input order
    assert motion_deciles([moving(1.0)] * 10) == list(range(10))
    assert motion_deciles([moving(s) for s in (3, 1, 2)]) == [6, 0, 3]


# ---------------------------------------------------------------- Human3.6M


def h36m_clips(lengths=(130, 50, 10), size=16, seed=0):
    rng = np.random.default_rng(seed)
    clips = []
    for i, t in enumerate(lengths):
        frames = rng.integers(0, 200, (t, size, size, 3), dtype=np.uint8)
        base = np.concatenate([rng.uniform(1, size - 2, (32, 2)), np.ones((32, 1))], -1)
        joints = np.repeat(base[None], t, 0).astype(np.float32)
        joints[..., 0] += 0.05 * (i + 1) * np.arange(t)[:, None]  # later clips move faster
        clips.append((frames, joints))
    return clips


def test_h36m_protocol_ground_truth_and_offset():
    clips = h36m_clips()
    exact = h36m_protocol(LookupPipe([c[0] for c in clips], 16), clips)
    assert exact["psnr_next"] == exact["psnr_120"] == PSNR_CAP and exact["condition"] == "gt"
    assert (exact["num_clips"], exact["excluded"], exact["short_clips"]) == (2, 1, 1)
    assert exact["generated_frames"] == {"min": 40, "mean": 80.0, "max": 120}
    assert len(exact["per_frame"]["psnr"]) == 120 and len(exact["deciles"]) == 10
    assert [e["frames"] for e in exact["per_clip"]] == [120, 40]
    assert [e["decile"] for e in exact["per_clip"]] == [0, 5]
    assert sum(d["num_clips"] for d in exact["deciles"]) == 2 and exact["deciles"][1]["psnr"] is None

    pipe = LookupPipe([c[0] for c in clips], 16, offset=OFFSET)
    off = h36m_protocol(pipe, clips, long_horizon=30)
    assert off["psnr_next"] == pytest.approx(OFFSET_PSNR) and off["psnr_120"] == pytest.approx(OFFSET_PSNR)
    assert off["short_clips"] == 0 and off["generated_frames"]["max"] == 30
    maps, image_maps = pipe.calls[0]
    assert maps.shape == (30, 13, 16, 16)  # 32 H36M joints mapped to 13 Penn joints
    from structvid.data.human36m import to_penn13

    want = JointHeatmaps(13).render(torch.from_numpy(to_penn13(clips[0][1])[10:40]), 16, 16)
    assert torch.equal(maps, want)
    assert torch.equal(image_maps[0], JointHeatmaps(13).render(torch.from_numpy(to_penn13(clips[0][1])[9]), 16, 16))


def test_h36m_protocol_with_pose_predictor():
    clips = h36m_clips((40,))
    pipe = LookupPipe([c[0] for c in clips], 16)
    res = h36m_protocol(pipe, clips, pose_predictor=zero_velocity, long_horizon=20)
    assert res["condition"] == "lstm" and res["generated_frames"]["max"] == 20
    maps, image_maps = pipe.calls[0]
    assert torch.equal(maps, image_maps.expand_as(maps))  # zero velocity: the last observed pose repeated
    with pytest.raises(UserError, match="cropped"):
        h36m_protocol(pipe, [(clips[0][0][:, :8], clips[0][1])])


# ---------------------------------------------------------------- Penn Action


@pytest.fixture(scope="module")
def penn_root(tmp_path_factory) -> Path:
    """Three 44-frame puppet videos; the third is cut to 20 frames (too short for the protocol)."""
    root = tmp_path_factory.mktemp("penn") / "puppet"
    make_puppet_dataset(root, 3, size=32, frames=44, seed=1)
    seq = read_label(root / "labels/0003.mat")
    for f in ("x", "y", "visibility", "bbox"):
        setattr(seq, f, getattr(seq, f)[:20])
    seq.dimensions = (*seq.dimensions[:2], 20)
    write_label(root / "labels/0003.mat", seq)
    for t in range(20, 44):
        (root / "frames/0003" / frame_name(t)).unlink()
    return root


def test_penn_protocol_structure(penn_root: Path):
    sampler = ClipSampler(DataConfig(root=str(penn_root), image_size=32))
    pipe = LookupPipe([sampler.video(n).frames for n in sampler.names], 32)
    res = penn_protocol(pipe, sampler, conditions=("gt", "lstm"), pose_predictor=zero_velocity)
    assert res["protocol"] == "penn_action" and (res["frames"], res["observed"], res["min_frames"]) == (32, 10, 42)
    assert (res["num_videos"], res["excluded"], res["excluded_videos"]) == (2, 1, ["0003"])
    actions = sorted({sampler.action(n) for n in ("0001", "0002")})
    for c in ("gt", "lstm"):
        r = res["conditions"][c]
        assert (r["mse"], r["psnr"], r["num_videos"]) == (0.0, PSNR_CAP, 2)
        assert sorted(r["psnr_per_action"]) == actions and len(r["per_frame"]["psnr"]) == 32
    assert set(res["per_video"]) == {"0001", "0002"}
    # what was generated: gt from frame 1 with poses 2..33; lstm from frame 10 with forecast poses
    video = sampler.video("0001")
    (gt_maps, gt_img), (lstm_maps, lstm_img) = pipe.calls[:2]

    def render(j: np.ndarray) -> torch.Tensor:
        return pipe.structure.render(torch.from_numpy(np.ascontiguousarray(j, np.float32)), 32, 32)

    assert torch.equal(gt_maps, render(video.params[1:33])) and torch.equal(gt_img[0], render(video.params[0]))
    assert torch.equal(lstm_img[0], render(video.params[9])) and lstm_maps.shape == (32, 13, 32, 32)
    last = video.params[9].copy()
    last[:, 2] = 1
    assert torch.allclose(lstm_maps, render(np.repeat(last[None], 32, 0)))

    off = penn_protocol(LookupPipe([sampler.video(n).frames for n in sampler.names], 32, OFFSET), str(penn_root))
    assert list(off["conditions"]) == ["gt"] and off["excluded"] == 1  # same videos whatever the conditions
    assert off["conditions"]["gt"]["psnr"] == pytest.approx(OFFSET_PSNR)
    assert off["conditions"]["gt"]["mse"] == pytest.approx((OFFSET / 255) ** 2)


def test_penn_protocol_errors(penn_root: Path):
    pipe = LookupPipe([], 32)
    with pytest.raises(UserError, match="pose predictor"):
        penn_protocol(pipe, str(penn_root), conditions=("lstm",))
    with pytest.raises(UserError, match="subset"):
        penn_protocol(pipe, str(penn_root), conditions=("oracle",))
    with pytest.raises(UserError, match="too short"):
        penn_protocol(pipe, str(penn_root), names=["0003"])
    with pytest.raises(UserError, match="16px"):
        penn_protocol(SimpleNamespace(size=16, structure=JointHeatmaps(13)), DataConfig(root=str(penn_root)))


def test_penn_protocol_with_a_real_pipeline(penn_root: Path):
    from structvid.models.forecaster import Forecaster
    from structvid.pipelines.image_to_video import ImageToVideoPipeline

    torch.manual_seed(0)
    cfg = ForecasterConfig(motion_channels=13, resolution=16, base_width=8, max_width=32, dense_growth=4)
    pipe = ImageToVideoPipeline(Forecaster(cfg), JointHeatmaps(13))
    res = penn_protocol(pipe, str(penn_root), frames=4, observed=3, conditions=("gt", "lstm"),
                        pose_predictor=zero_velocity, names=["0001"])
    assert res["num_videos"] == 1 and all(0 < r["psnr"] < PSNR_CAP for r in res["conditions"].values())


def test_reports(penn_root: Path, tmp_path: Path):
    sampler = ClipSampler(DataConfig(root=str(penn_root), image_size=32))
    pipe = LookupPipe([sampler.video(n).frames for n in sampler.names], 32, OFFSET)
    clips = h36m_clips((30, 25))
    results = [penn_protocol(pipe, sampler, conditions=("gt", "lstm"), pose_predictor=zero_velocity),
               h36m_protocol(LookupPipe([c[0] for c in clips], 16, OFFSET), clips)]
    for res in results:
        paths = write_protocol_report(res, tmp_path)
        assert json.loads(paths["json"].read_text()) == json.loads(json.dumps(res))
        assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "human36m.md").read_text()
    assert "PSNR-Next" in md and "| 10 |" in md
    assert "| GT |" in (tmp_path / "penn_action.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{s}.{e}" for s in ("penn_action", "human36m") for e in ("json", "md", "png"))
    assert PennActionDataset(penn_root).names == ["0001", "0002", "0003"]


# ---------------------------------------------------------------- §7.1: training and evaluation parts


REPO = Path(__file__).resolve().parents[1]


def labels_only(root: Path, per_action: int = 7) -> Path:
    """A Penn layout of labels alone (enough to select videos): `per_action` videos of each of the 8 paper actions
    and of two others, alternating between the official halves (train flag 1 / -1)."""
    from structvid.data.penn_action import PennSequence

    actions = list(PAPER_ACTIONS) + ["bowl", "situp"]
    rng = np.random.default_rng(0)
    for i in range(per_action * len(actions)):
        t = 3 + i % 5
        seq = PennSequence(name=f"{i + 1:04d}", action=actions[i % len(actions)], pose="front",
                           x=rng.uniform(0, 40, (t, 13)), y=rng.uniform(0, 40, (t, 13)),
                           visibility=np.ones((t, 13), np.uint8), bbox=np.tile([0.0, 0.0, 40.0, 40.0], (t, 1)),
                           dimensions=(48, 48, t), train=1 if (i // len(actions)) % 2 == 0 else -1)
        write_label(root / "labels" / f"{seq.name}.mat", seq)
    return root


def test_training_and_evaluation_parts_are_disjoint(tmp_path: Path):
    from structvid.config import ExperimentConfig, RefineExperimentConfig, load_config
    from structvid.metrics.video_protocols import penn_selection

    root = labels_only(tmp_path / "penn")
    gm = load_config(ExperimentConfig, REPO / "configs/penn-128.yaml", [f"data.root={root}"])
    gr = load_config(RefineExperimentConfig, None, [f"data.root={root}", "data.forecaster=runs/gm",
                                                    f"data.actions={list(gm.data.actions)}", "data.image_size=128",
                                                    "model.resolution=128", "critic.video.resolution=128",
                                                    "critic.image.resolution=128"])
    pipe = SimpleNamespace(size=128, crop_margin=0.15, structure=JointHeatmaps(13, sigma=3.0))
    parts = {"gm": ClipSampler(gm.data).names, "gr": ClipSampler(gr.data).names,  # G_M's preset, G_R's default
             "eval": penn_selection(pipe, root, "eval", gm.data).names}
    assert penn_selection(pipe, root, "eval").names == parts["eval"]  # the protocol default selects the same
    everything = [n for n in PennActionDataset(root, actions=PAPER_ACTIONS).names]  # both official halves
    assert sorted(sum(parts.values(), [])) == sorted(everything) and len(everything) == 56
    for a, b in (("gm", "gr"), ("gm", "eval"), ("gr", "eval")):
        assert not set(parts[a]) & set(parts[b]), (a, b)
    ds = PennActionDataset(root)
    for action in PAPER_ACTIONS:  # each action dealt evenly: 7 videos -> 3 / 2 / 2 in some order
        counts = sorted(sum(ds.label(n).action == action for n in names) for names in parts.values())
        assert counts == [2, 2, 3]


def test_evaluate_video_cli_scores_the_eval_part_of_the_runs_selection(tmp_path: Path, monkeypatch, capsys):
    import structvid.metrics.video_protocols as protocols
    from structvid.cli import main
    from structvid.config import ExperimentConfig, load_config, save_yaml
    from structvid.models.forecaster import Forecaster
    from structvid.models.saving import save_pretrained

    root = labels_only(tmp_path / "penn")
    # a G_M "run": weights plus the config it trained with (the penn-128 preset at 16 px, on 2 actions)
    actions = ["golf_swing", "tennis_serve"]
    cfg = load_config(ExperimentConfig, REPO / "configs/penn-128.yaml", [
        f"data.root={root}", f"data.actions={actions}", "data.image_size=16", "model.resolution=16",
        "critic.resolution=16", "model.base_width=4", "model.max_width=8", "model.dense_growth=2"])
    ckpt = tmp_path / "gm"
    save_pretrained(Forecaster(cfg.model), ckpt, "generator")
    save_yaml(cfg, ckpt / "config.yaml")
    seen = {}

    def capture(pipe, sampler, names=None, **kw):
        seen["names"] = list(names)
        raise UserError("captured")

    monkeypatch.setattr(protocols, "penn_protocol", capture)
    args = ["evaluate", "video", "--protocol", "penn", "--checkpoint", str(ckpt), "--data", str(root),
            "--out", str(tmp_path / "out"), "--device", "cpu"]
    assert main([*args, "--part", "eval"]) == 2 and "captured" in capsys.readouterr().err
    evaluated = seen["names"]
    trained = ClipSampler(cfg.data).names  # part gm of the same 2 actions
    assert evaluated and trained and not set(evaluated) & set(trained)
    ds = PennActionDataset(root)
    assert {ds.label(n).action for n in evaluated} == set(actions)
    assert len(evaluated) + len(trained) + len(ClipSampler(dataclasses.replace(cfg.data, part="gr")).names) == 2 * 7
    # --actions all widens the selection (a different deal over all 10 actions)
    assert main([*args, "--part", "eval", "--actions", "all"]) == 2
    assert {ds.label(n).action for n in seen["names"]} == set(PAPER_ACTIONS) | {"bowl", "situp"}
    # evaluating the run's own part is flagged
    assert main([*args, "--part", "gm"]) == 2 and "not held out" in capsys.readouterr().err
    assert seen["names"] == trained
