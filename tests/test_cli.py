import json
import subprocess
import sys

import numpy as np
import pytest

from structvid.cli import main
from structvid.data.penn_action import PennActionDataset
from structvid.io.images import save_image
from structvid.io.poses import save_poses
from tests.conftest import TINY


def run_cli(*args, capsys=None):
    code = main([str(a) for a in args])
    out = capsys.readouterr() if capsys else None
    return code, out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, puppet_root):
    """A tiny model trained through the CLI, plus an example image/pose file from the puppet data."""
    tmp = tmp_path_factory.mktemp("cli")
    run = tmp / "run"
    code = main(["train", "forecast", "--out", str(run), "--data", str(puppet_root), "--no-progress", *TINY])
    assert code == 0
    ds = PennActionDataset(puppet_root)
    name = ds.names[0]
    save_image(tmp / "image.png", ds.load_frames(name)[0])
    save_poses(tmp / "poses.json", ds.label(name).joints[:6])
    return tmp, run


def test_train_generate_evaluate_end_to_end(trained, puppet_root, capsys):
    tmp, run = trained
    code, out = run_cli("generate", "--checkpoint", run, "--image", tmp / "image.png", "--poses", tmp / "poses.json",
                        "--out", tmp / "gen" / "clip.mp4", "--panel", "--device", "cpu", capsys=capsys)
    assert code == 0, out.err
    for name in ("clip.mp4", "clip.gif", "clip_panel.mp4"):
        assert (tmp / "gen" / name).stat().st_size > 0
    from structvid.io.video import read_video

    frames, _ = read_video(tmp / "gen" / "clip.mp4")
    assert frames.shape[0] == 6
    panel, _ = read_video(tmp / "gen" / "clip_panel.mp4")
    assert panel.shape[2] > 3 * panel.shape[1] // 2  # several panels side by side
    code, out = run_cli("evaluate", "forecast", "--checkpoint", run, "--data", puppet_root, "--out", tmp / "eval",
                        "--frames", 4, "--max-videos", 2, "--device", "cpu", capsys=capsys)
    assert code == 0, out.err
    result = json.loads((tmp / "eval" / "metrics.json").read_text())
    assert result["num_videos"] == 2 and len(result["per_frame"]["psnr"]) == 4
    assert 0 < result["mean"]["ssim"] <= 1 and result["mean"]["psnr"] > 0
    assert "| mse | psnr | ssim |" in (tmp / "eval" / "metrics.md").read_text()


def test_dry_run_prints_resolved_config(capsys):
    code, out = run_cli("train", "forecast", "--out", "unused", "--dry-run", "train.steps=7", "model.dense=false",
                        capsys=capsys)
    assert code == 0 and "steps: 7" in out.out and "dense: false" in out.out


def _bad(tmp, trained_tmp, kind):
    img = trained_tmp / "image.png"
    poses = trained_tmp / "poses.json"
    joints = json.loads(poses.read_text())
    joints = np.asarray(joints["joints"] if isinstance(joints, dict) else joints, dtype=float)
    if kind == "missing_image":
        return tmp / "nope.png", poses, "nope.png"
    if kind == "corrupt_image":
        p = tmp / "corrupt.png"
        p.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        return p, poses, "corrupt.png"
    if kind == "gray_image":
        from PIL import Image

        p = tmp / "gray.png"
        Image.fromarray(np.zeros((32, 32), np.uint8)).save(p)
        return p, poses, "gray.png"
    p = tmp / f"{kind}.npy"
    if kind == "nan_joint":
        joints[2, 3, 0] = np.nan
    elif kind == "outside":
        joints[1, 0, :2] = [500.0, 10.0]
    elif kind == "joint_count":
        joints = joints[:, :12]
    elif kind == "too_short":
        joints = joints[:1]
    np.save(p, joints)
    return img, p, p.name


@pytest.mark.parametrize("kind", ["missing_image", "corrupt_image", "gray_image", "nan_joint", "outside",
                                  "joint_count", "too_short"])
def test_generate_bad_input_gives_one_clear_error(tmp_path, trained, kind, capsys):
    trained_tmp, run = trained
    img, poses, named = _bad(tmp_path, trained_tmp, kind)
    out_file = tmp_path / "out" / "x.mp4"
    code, out = run_cli("generate", "--checkpoint", run, "--image", img, "--poses", poses, "--out", out_file,
                        "--device", "cpu", capsys=capsys)
    assert code == 2
    assert out.err.startswith("error: ") and named in out.err and len(out.err.strip().splitlines()) == 1
    assert not out_file.exists() and not out_file.with_suffix(".gif").exists()


def test_resume_with_mismatched_config_names_the_file(trained, tmp_path, capsys):
    _, run = trained
    code, out = run_cli("train", "forecast", "--out", run, "--resume", "--no-progress", "model.base_width=16",
                        "train.steps=8", capsys=capsys)
    assert code == 2 and "generator.json" in out.err


def test_missing_checkpoint_and_bad_config(tmp_path, capsys):
    code, out = run_cli("generate", "--checkpoint", tmp_path / "none", "--image", "x.png", "--poses", "p.json",
                        capsys=capsys)
    assert code == 2 and "none" in out.err
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("model: {widht: 3}\n")
    code, out = run_cli("train", "forecast", "--config", cfg, "--out", tmp_path / "r", capsys=capsys)
    assert code == 2 and "bad.yaml" in out.err and "model.widht" in out.err


def test_user_error_has_no_traceback_in_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "structvid.cli", "generate", "--checkpoint", str(tmp_path),
                           "--image", "x.png", "--poses", "p.json"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("error: ")


def test_demo_runs_on_the_bundled_models(tmp_path, capsys):
    code, out = run_cli("demo", "--out", tmp_path, "--device", "cpu", capsys=capsys)
    assert code == 0, out.err
    from structvid.io.poses import load_poses
    from structvid.io.video import read_video

    poses = load_poses(__import__("structvid.cli", fromlist=["DEMO_DIR"]).DEMO_DIR / "example" / "poses.json")
    frames, _ = read_video(tmp_path / "demo.mp4")
    assert frames.shape == (len(poses), 64, 64, 3)
    forecast, _ = read_video(tmp_path / "forecast.mp4")
    assert forecast.shape[0] == len(poses) - 10
    for name in ("demo.gif", "demo_panel.mp4", "demo_frames.png", "forecast_panel.mp4"):
        assert (tmp_path / name).stat().st_size > 0
    # the model animates: generated frames differ from the input image (and from each other)
    assert np.abs(frames[len(frames) // 2].astype(int) - frames[0].astype(int)).mean() > 1.0


def _demo_args(out):
    from structvid.cli import DEMO_DIR

    return ("generate", "--image", DEMO_DIR / "example" / "image.png", "--poses", DEMO_DIR / "example" / "poses.json",
            "--out", out, "--device", "cpu")


def test_generate_failed_gif_leaves_no_mp4(tmp_path, monkeypatch, capsys):
    """All or nothing: a GIF that cannot be written (full disk) leaves neither it nor the MP4 or panel."""
    import errno

    from PIL import Image

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full_disk)
    out = tmp_path / "gen" / "x.mp4"
    code, res = run_cli(*_demo_args(out), "--panel", capsys=capsys)
    assert code == 2 and len(res.err.strip().splitlines()) == 1
    assert "no space left on device" in res.err and "x.gif" in res.err
    assert list((tmp_path / "gen").iterdir()) == []  # no x.mp4, no x_panel.mp4, no temporary file


def test_generate_output_under_a_file_is_one_line(tmp_path, capsys):
    parent = tmp_path / "a_file"
    parent.write_text("")
    code, res = run_cli(*_demo_args(parent / "x.mp4"), capsys=capsys)
    assert code == 2 and len(res.err.strip().splitlines()) == 1 and "a_file/x.mp4" in res.err


def test_generate_output_that_is_a_folder_leaves_no_other_file(tmp_path, capsys):
    (tmp_path / "x.mp4").mkdir()
    code, res = run_cli(*_demo_args(tmp_path / "x.mp4"), "--panel", capsys=capsys)
    assert code == 2 and len(res.err.strip().splitlines()) == 1 and str(tmp_path / "x.mp4") in res.err
    assert [p.name for p in tmp_path.iterdir()] == ["x.mp4"]  # no x.gif, no x_panel.mp4


def test_generate_refuses_nan_weights_naming_the_tensor(tmp_path, capsys):
    import shutil

    from safetensors.torch import load_file, save_file

    from structvid.cli import DEMO_DIR

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for suffix in (".json", ".safetensors"):  # the bundled G_M, as a training checkpoint names it
        shutil.copy(DEMO_DIR / f"forecaster{suffix}", ckpt / f"generator{suffix}")
    shutil.copy(DEMO_DIR / "config.yaml", ckpt / "config.yaml")
    state = load_file(str(ckpt / "generator.safetensors"))
    name = sorted(k for k, v in state.items() if v.is_floating_point() and v.numel() > 100)[-1]
    state[name].view(-1)[::2] = float("nan")
    save_file(state, str(ckpt / "generator.safetensors"))
    out = tmp_path / "gen" / "x.mp4"
    code, res = run_cli(*_demo_args(out), "--checkpoint", ckpt, capsys=capsys)
    assert code == 2 and "non-finite" in res.err and name in res.err and "generator.safetensors" in res.err
    assert not out.exists() and not out.with_suffix(".gif").exists()


def test_generate_long_video_streams_and_caps_the_gif(tmp_path, monkeypatch, capsys):
    """Frames reach the encoders chunk by chunk (the panel too); the GIF preview keeps the first N frames."""
    from PIL import Image

    from structvid.cli import DEMO_DIR
    from structvid.io import video
    from structvid.io.poses import load_poses
    from structvid.io.video import read_video

    monkeypatch.setattr(video, "GIF_PREVIEW_FRAMES", 20)
    sizes = []
    real = video.VideoWriter.write

    def write(self, frames):
        sizes.append(len(frames))
        return real(self, frames)

    monkeypatch.setattr(video.VideoWriter, "write", write)
    joints = load_poses(DEMO_DIR / "example" / "poses.json")
    poses = tmp_path / "long.npy"
    np.save(poses, np.concatenate([joints, joints[::-1]]))  # 96 poses
    out = tmp_path / "x.mp4"
    args = list(_demo_args(out))
    args[args.index("--poses") + 1] = poses
    code, res = run_cli(*args, "--panel", capsys=capsys)
    assert code == 0, res.err
    assert max(sizes) <= 16  # the pipeline's chunk, never the whole video
    assert read_video(out)[0].shape[0] == 96 and read_video(out.with_name("x_panel.mp4"))[0].shape[0] == 96
    with Image.open(out.with_suffix(".gif")) as im:
        assert 10 <= im.n_frames <= 20  # (PIL merges identical consecutive frames)


def test_evaluate_forecast_records_the_frames_evaluated(trained, puppet_root, tmp_path, capsys):
    _, run = trained
    code, out = run_cli("evaluate", "forecast", "--checkpoint", run, "--data", puppet_root, "--out", tmp_path,
                        "--frames", 50, "--max-videos", 1, "--device", "cpu", capsys=capsys)
    assert code == 0, out.err
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["frames"] == 11 and result["frames_requested"] == 50  # the puppet videos have 12 frames
    assert len(result["per_frame"]["psnr"]) == 11
    assert all(v["frames"] == 11 for v in result["per_video"].values())


def test_generate_help_states_the_gif_preview_length(capsys):
    from structvid.io.video import GIF_PREVIEW_FRAMES

    code, out = run_cli("generate", "--help", capsys=capsys)
    assert code == 0 and f"first {GIF_PREVIEW_FRAMES} frames" in " ".join(out.out.split())
