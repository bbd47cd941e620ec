"""The pipeline's second stage: G_R over windows of K, pipeline folders (manifest, export), refining any video."""

import json

import numpy as np
import pytest
import torch
import yaml

from structvid.cli import main
from structvid.config import ForecasterConfig, RefinerConfig
from structvid.errors import UserError
from structvid.io.poses import save_poses
from structvid.io.video import read_video, write_video
from structvid.models.forecaster import Forecaster
from structvid.models.refiner import Refiner
from structvid.models.saving import save_pretrained
from structvid.pipelines.export import export_pipeline
from structvid.pipelines.image_to_video import MANIFEST, ImageToVideoPipeline

S, K = 32, 4


def forecaster() -> Forecaster:
    torch.manual_seed(0)
    return Forecaster(ForecasterConfig(resolution=S, base_width=4, max_width=16, dense_growth=4))


def refiner(**kw) -> Refiner:
    torch.manual_seed(1)
    return Refiner(RefinerConfig(resolution=S, clip_length=K, base_width=4, max_width=16, **kw))


def poses(t: int = 10, size: int = 48) -> np.ndarray:
    rng = np.random.default_rng(0)
    j = rng.uniform(8, size - 8, (t, 13, 3)).astype(np.float32)
    j[..., 2] = 1
    return j


def image(size: int = 48) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize("t", [3, 10])
def test_refined_stream_keeps_coarse_frames_and_refines_every_frame(t):
    plain = ImageToVideoPipeline(forecaster(), chunk=3)
    pipe = ImageToVideoPipeline(forecaster(), chunk=3, refiner=refiner())
    windows = []
    real = pipe._refine_window

    def spy(clip, motions):
        windows.append(clip.shape[1])
        return real(clip, motions)

    pipe._refine_window = spy
    out = pipe(image(), poses(t))
    coarse = plain(image(), poses(t))
    assert out.frames.shape == (t, S, S, 3) and out.refine_masks.shape == (t, S, S)
    np.testing.assert_array_equal(out.coarse, coarse.frames)  # G_M's frames, before G_R
    np.testing.assert_array_equal(out.masks, coarse.masks)
    assert not np.array_equal(out.frames, out.coarse)  # G_R changed them
    assert set(windows) == {K} and len(windows) == -(-t // K)  # whole windows of K only
    np.testing.assert_array_equal(out.conditions, coarse.conditions)


def test_refiner_must_fit_the_forecaster():
    with pytest.raises(UserError, match="do not belong together"):
        ImageToVideoPipeline(forecaster(), refiner=Refiner(RefinerConfig(resolution=64, clip_length=K, base_width=4,
                                                                             max_width=16)))
    with pytest.raises(UserError, match="overlap"):
        ImageToVideoPipeline(forecaster(), refiner=refiner(), window_overlap=3)


@pytest.fixture()
def runs(tmp_path):
    gm = tmp_path / "gm"
    save_pretrained(forecaster(), gm, "generator")  # a training run's G_M module name
    (gm / "config.yaml").write_text(yaml.safe_dump({"data": {"crop_margin": 0.2}, "structure": {"sigma": 2.0}}))
    gr = tmp_path / "gr"
    save_pretrained(refiner(), gr, "refiner")
    return gm, gr


def test_export_round_trip(tmp_path, runs):
    gm, gr = runs
    out = export_pipeline(tmp_path / "pipe", gm, gr, window_overlap=1)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["forecaster"] == "forecaster" and manifest["refiner"] == "refiner"
    assert manifest["structure"]["sigma"] == 2.0 and manifest["crop_margin"] == 0.2 and manifest["window_overlap"] == 1
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["pipeline.json", "config.yaml", "forecaster.json", "forecaster.safetensors", "refiner.json",
         "refiner.safetensors"])
    pipe = ImageToVideoPipeline.from_pretrained(out, device="cpu")
    assert pipe.refiner is not None and pipe.structure.sigma == 2.0 and pipe.crop_margin == 0.2
    assert pipe.window_overlap == 1
    direct = ImageToVideoPipeline(forecaster(), pipe.structure, 0.2, refiner=refiner(), window_overlap=1)
    np.testing.assert_array_equal(pipe(image(), poses()).frames, direct(image(), poses()).frames)
    assert ImageToVideoPipeline.from_pretrained(out, device="cpu", refine=False).refiner is None
    with pytest.raises(UserError, match="not empty"):
        export_pipeline(out, gm, gr)


def test_broken_pipeline_folders_are_one_clear_error(tmp_path, runs):
    gm, gr = runs
    out = export_pipeline(tmp_path / "pipe", gm, gr)
    (out / "refiner.safetensors").unlink()
    with pytest.raises(UserError, match="refiner.safetensors"):
        ImageToVideoPipeline.from_pretrained(out, device="cpu")
    for text in ("[1, 2]", "{not json", json.dumps({"forecaster": "../x"}), json.dumps({"stages": 1})):
        (out / MANIFEST).write_text(text)
        with pytest.raises(UserError, match="pipeline.json"):
            ImageToVideoPipeline.from_pretrained(out, device="cpu")
    small = tmp_path / "small"
    save_pretrained(Refiner(RefinerConfig(resolution=64, clip_length=K, base_width=4, max_width=16)), small, "refiner")
    with pytest.raises(UserError, match="does not fit"):
        export_pipeline(tmp_path / "other", gm, small)
    assert not (tmp_path / "other").exists()


def test_refine_video_and_cli(tmp_path, runs):
    gm, gr = runs
    pipe_dir = export_pipeline(tmp_path / "pipe", gm, gr)
    frames = np.stack([image()] * 9)
    write_video(tmp_path / "in.mp4", frames, fps=10)
    save_poses(tmp_path / "p.json", poses(9), image_size=(48, 48))
    rc = main(["refine", "--video", str(tmp_path / "in.mp4"), "--poses", str(tmp_path / "p.json"),
               "--checkpoint", str(pipe_dir), "--out", str(tmp_path / "out.mp4"), "--panel", "--device", "cpu"])
    assert rc == 0
    out, fps = read_video(tmp_path / "out.mp4")
    assert out.shape == (9, S, S, 3) and fps == pytest.approx(10)
    assert (tmp_path / "out_panel.mp4").is_file() and (tmp_path / "out.gif").is_file()
    # a pose file that does not match the video's length
    save_poses(tmp_path / "p5.json", poses(5), image_size=(48, 48))
    rc = main(["refine", "--video", str(tmp_path / "in.mp4"), "--poses", str(tmp_path / "p5.json"),
               "--checkpoint", str(pipe_dir), "--out", str(tmp_path / "bad.mp4"), "--device", "cpu"])
    assert rc == 2 and not (tmp_path / "bad.mp4").exists()
    # a checkpoint without G_R
    rc = main(["refine", "--video", str(tmp_path / "in.mp4"), "--poses", str(tmp_path / "p.json"),
               "--checkpoint", str(gm), "--out", str(tmp_path / "bad.mp4"), "--device", "cpu"])
    assert rc == 2


def test_generate_refines_by_default_and_no_refine_skips_it(tmp_path, runs):
    gm, gr = runs
    pipe_dir = export_pipeline(tmp_path / "pipe", gm, gr)
    from structvid.io.images import save_image

    save_image(tmp_path / "img.png", image())
    save_poses(tmp_path / "p.json", poses(6), image_size=(48, 48))
    args = ["generate", "--checkpoint", str(pipe_dir), "--image", str(tmp_path / "img.png"), "--poses",
            str(tmp_path / "p.json"), "--device", "cpu", "--panel"]
    assert main(args + ["--out", str(tmp_path / "a.mp4")]) == 0
    assert main(args + ["--out", str(tmp_path / "b.mp4"), "--no-refine"]) == 0
    a, b = read_video(tmp_path / "a_panel.mp4")[0], read_video(tmp_path / "b_panel.mp4")[0]
    assert a.shape[2] > b.shape[2]  # coarse | refined columns instead of one output column


def test_bundled_demo_is_a_two_stage_pipeline():
    from structvid.cli import DEMO_DIR
    from structvid.io.images import load_image
    from structvid.io.poses import load_poses

    pipe = ImageToVideoPipeline.from_pretrained(DEMO_DIR, device="cpu", precision="fp32")
    assert pipe.refiner is not None and pipe.pose_model is not None and pipe.window_overlap == 4
    img = load_image(DEMO_DIR / "example" / "image.png")
    joints = load_poses(DEMO_DIR / "example" / "poses.json", num_joints=13, image_size=img.shape[:2])[:20]
    out = pipe(img, joints)
    assert out.frames.shape == out.coarse.shape == (20, 64, 64, 3)
    diff = np.abs(out.frames.astype(int) - out.coarse.astype(int))
    assert 0 < diff.mean() < 8  # G_R touches the frames, in the residual form of Eq. 15 (mostly keeps Ṽ)
