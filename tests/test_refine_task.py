"""Stage 2 (§6.2) as a training task: coarse-clip cache, the paper's split, exact resume, DDP, bad inputs."""

import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from structvid.config import DataConfig, RefineExperimentConfig, load_config
from structvid.structure.factory import build_structure
from structvid.data.clips import ClipSampler
from structvid.errors import UserError
from structvid.training.checkpoint import latest_checkpoint
from structvid.training.tasks import train_forecaster, train_refiner

REFINE_TINY = [
    "data.image_size=32", "model.resolution=32", "model.clip_length=8", "model.base_width=4", "model.max_width=16",
    "critic.video.resolution=32", "critic.video.clip_length=8", "critic.video.base_width=4",
    "critic.video.max_width=16", "critic.image.resolution=32", "critic.image.base_width=4",
    "critic.image.max_width=16", "train.batch_size=2", "train.steps=4", "train.checkpoint_every=2",
    "train.log_every=1", "train.sample_every=2", "train.device=cpu", "data.part=all",
]


@pytest.fixture(scope="module")
def forecaster_run(tmp_path_factory, puppet_root):
    """A 2-step G_M run at 32x32 (its weights only need to exist and differ from another run's)."""
    from structvid.config import ExperimentConfig

    run = tmp_path_factory.mktemp("gm") / "run"
    cfg = load_config(ExperimentConfig, None, [
        f"data.root={puppet_root}", "data.image_size=32", "model.resolution=32", "critic.resolution=32",
        "model.base_width=4", "critic.base_width=4", "model.max_width=16", "critic.max_width=16",
        "model.dense_growth=4", "train.batch_size=2", "train.critic_steps=1", "train.steps=2",
        "train.checkpoint_every=2", "train.device=cpu", "data.max_jump=4"])
    train_forecaster(cfg, run, progress=False)
    return run


@pytest.fixture()
def refine_config(tmp_path, puppet_root, forecaster_run):
    def make(*overrides: str) -> RefineExperimentConfig:
        return load_config(RefineExperimentConfig, None, [
            f"data.root={puppet_root}", f"data.forecaster={forecaster_run}", f"data.cache={tmp_path / 'cache'}",
            *REFINE_TINY, *overrides])

    return make


def _weights(run):
    ckpt = latest_checkpoint(run)
    return {n: load_file(ckpt / f"{n}.safetensors") for n in ("refiner", "critics")}


def test_stage_two_run_writes_refiner_and_both_critics(tmp_path, refine_config):
    result = train_refiner(refine_config(), tmp_path / "run", progress=False)
    ckpt = latest_checkpoint(tmp_path / "run")
    assert result.step == 4 and ckpt.name == "step_00000004"
    weights = _weights(tmp_path / "run")
    assert any(k.startswith("video.") for k in weights["critics"]) and any(k.startswith("image.") for k in weights["critics"])
    # both phases ran: the critics' and G_R's losses were logged
    assert "critics/video_loss" in result.stats and "refiner/rank" in result.stats
    assert (tmp_path / "run" / "samples" / "step_00000004.png").is_file()


def test_stage_two_resumes_exactly(tmp_path, refine_config):
    train_refiner(refine_config(), tmp_path / "full", progress=False)
    train_refiner(refine_config("train.steps=2"), tmp_path / "half", progress=False)
    train_refiner(refine_config(), tmp_path / "half", resume=True, progress=False)
    a, b = _weights(tmp_path / "full"), _weights(tmp_path / "half")
    for net in a:
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs after resume"


def test_coarse_cache_is_reused_and_rebuilt_when_gm_or_data_change(tmp_path, refine_config, forecaster_run, puppet_root):
    from structvid.data.refine_clips import CoarseVideos, cache_key, data_fingerprint
    from structvid.training.tasks import forecaster_files

    cfg = refine_config()
    sampler = ClipSampler(cfg.data)
    _, files = forecaster_files(latest_checkpoint(forecaster_run))
    key = cache_key(files, data_fingerprint(sampler))
    assert key == cache_key(files, data_fingerprint(ClipSampler(cfg.data)))  # deterministic
    train_refiner(cfg, tmp_path / "run", progress=False)
    folder = tmp_path / "cache" / key
    assert sorted(p.stem for p in folder.glob("*.npz")) == sorted(sampler.names)
    # a second build makes nothing: every coarse video is found
    assert CoarseVideos(sampler, folder).missing() == []
    # the same G_M under other file names (a training run's generator.* exported as forecaster.*) -> same key
    renamed = tmp_path / "renamed"
    renamed.mkdir()
    for f in files:
        renamed.joinpath("forecaster" + f.suffix).write_bytes(f.read_bytes())
    assert cache_key([renamed / "forecaster.safetensors", renamed / "forecaster.json"], data_fingerprint(sampler)) == key
    # another G_M (different weights) -> another key
    other = tmp_path / "gm2"
    other.mkdir()
    for f in files:
        other.joinpath(f.name).write_bytes(f.read_bytes())
    w = load_file(other / files[0].name)
    from safetensors.torch import save_file

    save_file({k: v + 1 for k, v in w.items()}, str(other / files[0].name))
    assert cache_key([other / f.name for f in files], data_fingerprint(sampler)) != key
    # different data settings (heatmap σ) or a touched label file -> another key
    sigma_cfg = refine_config("structure.sigma=3.0")
    assert cache_key(files, data_fingerprint(ClipSampler(sigma_cfg.data, build_structure(sigma_cfg.structure)))) != key
    label = puppet_root / "labels" / f"{sampler.names[0]}.mat"
    st = label.stat()
    try:
        os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert cache_key(files, data_fingerprint(ClipSampler(cfg.data))) != key
    finally:
        os.utime(label, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_refine_batches_share_a_step_and_cover_clips(refine_config, tmp_path):
    from structvid.data.refine_clips import CoarseVideos, RefineBatches

    cfg = refine_config()
    sampler = ClipSampler(cfg.data)
    coarse = CoarseVideos(sampler, tmp_path / "c", lambda i, m, t: -torch.ones(1, t.shape[1], 3, 32, 32))
    assert coarse.build(progress=False) == len(sampler.names)
    ds = RefineBatches(coarse, 8, 4, seed=3, draws_per_step=2)
    a, b, c = ds[0], ds[1], ds[2]
    assert torch.equal(a["video"], b["video"]) and not torch.equal(a["video"], c["video"])  # phases share a step
    assert a["video"].shape == (4, 8, 3, 32, 32) and a["motions"].shape == (4, 8, 13, 32, 32)
    assert torch.equal(a["coarse"], -torch.ones_like(a["coarse"]))  # the cached G_M output, not the real frames
    # clips are K consecutive real frames of one video
    from structvid.io.images import to_uint8

    got = to_uint8(a["video"][0])
    found = any(np.array_equal(got, sampler.video(n).frames[s : s + 8])
                for n in sampler.names for s in range(len(sampler.video(n).frames) - 7))
    assert found


def test_paper_parts_are_disjoint_and_cover_the_videos(puppet_root):
    parts = {p: set(ClipSampler(DataConfig(root=str(puppet_root), image_size=32, part=p)).names)
             for p in ("gm", "gr", "eval")}
    everything = set(ClipSampler(DataConfig(root=str(puppet_root), image_size=32)).names)
    assert parts["gm"].isdisjoint(parts["gr"]) and parts["gm"].isdisjoint(parts["eval"])
    assert parts["gr"].isdisjoint(parts["eval"])
    assert set.union(*parts.values()) == everything
    assert max(map(len, parts.values())) - min(map(len, parts.values())) <= 1


def test_gm_and_gr_mismatch_is_one_clear_error(tmp_path, refine_config):
    cfg = refine_config("data.image_size=16", "model.resolution=16", "critic.video.resolution=16",
                        "critic.image.resolution=16")
    with pytest.raises(UserError, match="G_M makes 32x32"):
        train_refiner(cfg, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "config.yaml").exists()


@pytest.mark.parametrize("overrides, message", [
    (["model.clip_length=6", "critic.video.clip_length=6"], "power of two"),
    (["critic.video.clip_length=4"], "must agree"),
    (["data.forecaster="], "data.forecaster"),
    (["loss.rec=0", "loss.sparsity=0", "loss.gen_video=0", "loss.gen_image=0", "loss.rank=0"], "every loss weight"),
    (["model.skip_mode=sum"], "skip_mode"),
])
def test_bad_stage_two_configs(refine_config, overrides, message):
    with pytest.raises(UserError, match=message):
        refine_config(*overrides)


def test_clip_longer_than_every_video_is_one_clear_error(tmp_path, refine_config):
    cfg = refine_config("model.clip_length=16", "critic.video.clip_length=16")  # puppet videos have 12 frames
    with pytest.raises(UserError, match="16 frames a clip needs"):
        train_refiner(cfg, tmp_path / "run", progress=False)


def test_ddp_alternating_critics_and_refiner_step(tmp_path, refine_config, run_ddp):
    cfg = refine_config("train.steps=1", "train.checkpoint_every=1")
    # rank 0 builds the coarse cache before the others read it (barrier)
    r0, r1 = run_ddp("train_refiner", cfg)
    for net in r0:
        for k in r0[net]:
            assert torch.equal(r0[net][k], r1[net][k]), f"{net}.{k} differs between ranks"
    torch.manual_seed(cfg.train.seed)
    from structvid.models.refiner import Refiner

    init = dict(Refiner(cfg.model).named_parameters())
    assert any(not torch.equal(init[k], r0["refiner"][k]) for k in init)


def test_a_stage_two_run_loads_as_a_pipeline_with_its_gm(tmp_path, refine_config, forecaster_run):
    from structvid.pipelines.image_to_video import ImageToVideoPipeline

    train_refiner(refine_config("train.steps=1", "train.checkpoint_every=1"), tmp_path / "run", progress=False)
    pipe = ImageToVideoPipeline.from_pretrained(tmp_path / "run", device="cpu")
    assert pipe.refiner is not None and pipe.refiner.config.clip_length == 8
    gm = ImageToVideoPipeline.from_pretrained(forecaster_run, device="cpu")
    for a, b in zip(pipe.forecaster.state_dict().values(), gm.forecaster.state_dict().values()):
        assert torch.equal(a, b)  # the G_M its config.yaml names
    assert ImageToVideoPipeline.from_pretrained(tmp_path / "run", device="cpu", refine=False).refiner is None


def test_stage_two_trains_on_another_generators_videos(tmp_path, refine_config, puppet_root):
    """§7.4: G_R learns to refine a folder of NNNN.mp4 made by any method (here: blurred real videos)."""
    import cv2

    from structvid.data.refine_clips import VideoFolderCoarse
    from structvid.io.video import write_video

    cfg = refine_config("data.forecaster=", f"data.coarse_videos={tmp_path / 'other'}")
    sampler = ClipSampler(cfg.data)
    for name in sampler.names:
        frames = sampler.video(name).frames
        write_video(tmp_path / "other" / f"{name}.mp4", np.stack([cv2.GaussianBlur(f, (5, 5), 2) for f in frames]), 10)
    coarse = VideoFolderCoarse(sampler, tmp_path / "other")
    got = coarse.video(sampler.names[0])
    assert got.shape == sampler.video(sampler.names[0]).frames.shape
    result = train_refiner(cfg, tmp_path / "run", progress=False)
    assert result.step == 4 and "coarse_videos" in (tmp_path / "run" / "data.json").read_text()
    (tmp_path / "other" / f"{sampler.names[0]}.mp4").unlink()
    with pytest.raises(UserError, match="no coarse video"):
        train_refiner(cfg, tmp_path / "run2", progress=False)
