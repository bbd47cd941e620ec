"""Tests for structvid.io.images / video / poses (fast; real files from the shared data folder)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from structvid.errors import UserError
from structvid.io import images, poses, video
from structvid.io.images import load_image, make_grid, save_image, to_tensor, to_uint8
from structvid.io.poses import load_poses, save_poses
from structvid.io.images import heatmap_to_rgb
from structvid.io.video import read_video, side_by_side, write_video


def smooth_clip(t: int = 8, size: int = 64) -> np.ndarray:
    """A smooth moving gradient: codecs reproduce it well, so errors stay small."""
    y, x = np.mgrid[0:size, 0:size]
    return np.stack(
        [np.stack([x * 3 + i, y * 3 + i, np.full_like(x, 100) + 2 * i], axis=-1) for i in range(t)]
    ).astype(np.uint8)


def raises_naming(path: Path, match: str | None = None) -> pytest.RaisesContext:
    return pytest.raises(UserError, match=match or path.name)


# ---------------------------------------------------------------- images


def test_load_image_shared_portrait(shared_data: Path) -> None:
    img = load_image(shared_data / "faces" / "s0.jpg")
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[:2] == (704, 600)  # (H, W) of the 600x704 portrait
    small = load_image(shared_data / "faces" / "s0.jpg", size=64)
    assert small.shape == (64, 64, 3) and small.dtype == np.uint8


def test_load_image_errors(tmp_path: Path, shared_data: Path) -> None:
    missing = tmp_path / "missing.png"
    with raises_naming(missing):
        load_image(missing)

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with raises_naming(text):
        load_image(text)

    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((shared_data / "faces" / "s0.jpg").read_bytes()[:5000])
    with raises_naming(truncated):
        load_image(truncated)

    gray = tmp_path / "gray.png"
    Image.new("L", (8, 8), 128).save(gray)
    with pytest.raises(UserError, match=r"gray\.png.*1 channel \(mode L\)"):
        load_image(gray)

    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8)).save(cmyk)
    with pytest.raises(UserError, match=r"cmyk\.jpg.*4 channels \(mode CMYK\)"):
        load_image(cmyk)

    rgba = np.full((8, 8, 4), 200, np.uint8)
    rgba[0, 0, 3] = 10
    transparent = tmp_path / "transparent.png"
    Image.fromarray(rgba, "RGBA").save(transparent)
    with pytest.raises(UserError, match=r"transparent\.png.*transparent"):
        load_image(transparent)


def test_load_image_opaque_rgba(tmp_path: Path) -> None:
    rgba = np.random.default_rng(0).integers(0, 256, (8, 9, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    path = tmp_path / "opaque.png"
    Image.fromarray(rgba, "RGBA").save(path)
    np.testing.assert_array_equal(load_image(path), rgba[..., :3])


def test_save_image_round_trip(tmp_path: Path) -> None:
    img = np.random.default_rng(1).integers(0, 256, (8, 11, 3), dtype=np.uint8)  # load_image: sides >= 8
    save_image(tmp_path / "out" / "a.png", img)
    np.testing.assert_array_equal(load_image(tmp_path / "out" / "a.png"), img)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]  # no temp files left
    with raises_naming(tmp_path / "a.xyz"):
        save_image(tmp_path / "a.xyz", img)


def test_tensor_round_trip() -> None:
    clip = np.random.default_rng(2).integers(0, 256, (3, 6, 5, 3), dtype=np.uint8)
    t = to_tensor(clip)
    assert t.shape == (3, 3, 6, 5) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    np.testing.assert_array_equal(to_uint8(t), clip)
    assert to_tensor(clip[0]).shape == (3, 6, 5)
    np.testing.assert_array_equal(to_uint8(torch.full((3, 2, 2), 5.0)), np.full((2, 2, 3), 255, np.uint8))


def test_make_grid() -> None:
    tiles = np.zeros((5, 4, 6, 3), np.uint8)
    grid = make_grid(tiles, ncols=3, pad=2)
    assert grid.shape == (2 * (4 + 2) + 2, 3 * (6 + 2) + 2, 3)
    assert grid[0, 0, 0] == 255 and grid[2, 2, 0] == 0


# ---------------------------------------------------------------- video


def test_read_shared_video(shared_data: Path) -> None:
    frames, fps = read_video(shared_data / "faces" / "d0.mp4")
    assert frames.shape == (78, 512, 512, 3) and frames.dtype == np.uint8
    assert fps == pytest.approx(25.0)
    first, _ = read_video(shared_data / "faces" / "d0.mp4", max_frames=5)
    np.testing.assert_array_equal(first, frames[:5])


def test_mp4_round_trip(tmp_path: Path) -> None:
    clip = smooth_clip()
    write_video(tmp_path / "a.mp4", clip, fps=10)
    frames, fps = read_video(tmp_path / "a.mp4")
    assert frames.shape == clip.shape and fps == pytest.approx(10.0)
    assert np.abs(frames.astype(int) - clip).mean() < 8


def test_mp4_mpeg4_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video.av, "codecs_available", set())  # as if FFmpeg lacked libx264
    clip = smooth_clip()
    write_video(tmp_path / "a.mp4", clip)
    with av.open(str(tmp_path / "a.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    frames, _ = read_video(tmp_path / "a.mp4")
    assert frames.shape == clip.shape and np.abs(frames.astype(int) - clip).mean() < 8


def test_mp4_odd_size(tmp_path: Path) -> None:
    write_video(tmp_path / "odd.mp4", smooth_clip()[:, :63, :61])
    frames, _ = read_video(tmp_path / "odd.mp4")
    assert frames.shape == (8, 64, 62, 3)


def test_gif_round_trip(tmp_path: Path) -> None:
    clip = smooth_clip()
    write_video(tmp_path / "a.gif", clip, fps=25)
    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == len(clip) and im.info["loop"] == 0 and im.info["duration"] == 40
    frames, _ = read_video(tmp_path / "a.gif")
    assert frames.shape == clip.shape
    assert np.abs(frames.astype(int) - clip).mean() < 8


def test_read_video_errors(tmp_path: Path, shared_data: Path) -> None:
    missing = tmp_path / "missing.mp4"
    with raises_naming(missing):
        read_video(missing)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with raises_naming(junk):
        read_video(junk)
    truncated = tmp_path / "truncated.mp4"  # d0.mp4 keeps its index at the end
    truncated.write_bytes((shared_data / "faces" / "d0.mp4").read_bytes()[:20000])
    with raises_naming(truncated):
        read_video(truncated)
    with raises_naming(tmp_path / "a.avi"):
        write_video(tmp_path / "a.avi", smooth_clip())


@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_write_video_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str) -> None:
    calls = {"n": 0}

    def failing(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] > 3:  # fail midway, after some frames were encoded
            raise RuntimeError("encoder exploded")
        return real(*args, **kwargs)

    if suffix == ".mp4":
        real = av.VideoFrame.from_ndarray
        monkeypatch.setattr(video.av.VideoFrame, "from_ndarray", failing)
    else:
        real = Image.fromarray
        monkeypatch.setattr(video.Image, "fromarray", failing)
    target = tmp_path / f"out{suffix}"
    with pytest.raises(RuntimeError, match="exploded"):
        write_video(target, smooth_clip())
    assert list(tmp_path.iterdir()) == []  # neither the target nor a temp file


def test_side_by_side() -> None:
    clip = smooth_clip(t=4, size=32)
    still = np.zeros((64, 48, 3), np.uint8)
    out = side_by_side([clip, still, clip[:1]], ["input", "condition", "output"], scale=2)
    height = 64 * 2
    cap = max(12, height // 8)
    widths = 32 * 4 + 48 * 2 + 32 * 4 + 2 * 2  # panels resized to height 128, two 2-px gaps
    assert out.shape == (4, height + cap, widths, 3) and out.dtype == np.uint8
    # nearest upscaling: each source pixel becomes a 4x4 block
    np.testing.assert_array_equal(out[1, cap : cap + 4, :4], np.broadcast_to(clip[1, 0, 0], (4, 4, 3)))
    assert out[:, :cap].max() > 0  # captions are drawn
    with pytest.raises(ValueError):
        side_by_side([clip, clip[:2]], ["a", "b"])


def test_heatmap_to_rgb() -> None:
    maps = np.zeros((2, 13, 16, 16), np.float32)
    maps[:, 3, 4, 5] = 1.0
    rgb = heatmap_to_rgb(torch.from_numpy(maps))
    assert rgb.shape == (2, 16, 16, 3) and rgb.dtype == np.uint8
    assert rgb[0, 4, 5].sum() > rgb[0, 0, 0].sum()


# ---------------------------------------------------------------- poses


def random_poses(t: int = 12, j: int = 13, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(3)
    p = np.concatenate([rng.uniform(0, size, (t, j, 2)), np.ones((t, j, 1))], axis=-1).astype(np.float32)
    p[2, 5, 2] = 0
    return p


@pytest.mark.parametrize("suffix", [".json", ".npy"])
def test_poses_round_trip(tmp_path: Path, suffix: str) -> None:
    p = random_poses()
    save_poses(tmp_path / f"p{suffix}", p)
    np.testing.assert_array_equal(load_poses(tmp_path / f"p{suffix}", min_frames=10, image_size=(64, 64)), p)


def test_poses_json_formats(tmp_path: Path) -> None:
    xy = random_poses(t=3)[..., :2]
    (tmp_path / "list.json").write_text(json.dumps(xy.tolist()))
    loaded = load_poses(tmp_path / "list.json")
    assert loaded.shape == (3, 13, 3) and (loaded[..., 2] == 1).all()
    # a declared frame size lets the poses be rescaled to the requested one
    save_poses(tmp_path / "obj.json", random_poses(t=3), image_size=(64, 64))
    half = load_poses(tmp_path / "obj.json", image_size=(32, 32))
    np.testing.assert_allclose(half[..., :2], random_poses(t=3)[..., :2] / 2, rtol=1e-6)
    np.save(tmp_path / "xy.npy", xy)
    assert load_poses(tmp_path / "xy.npy").shape == (3, 13, 3)


def test_poses_invisible_nan_is_allowed(tmp_path: Path) -> None:
    p = random_poses()
    p[4, 2, :2] = np.nan
    p[4, 2, 2] = 0
    np.save(tmp_path / "p.npy", p)
    loaded = load_poses(tmp_path / "p.npy")
    assert np.isfinite(loaded).all() and loaded[4, 2, 2] == 0


def test_poses_penn_action(shared_data: Path) -> None:
    path = shared_data / "penn_action" / "labels" / "0002.mat"
    p = load_poses(path, min_frames=10)
    assert p.shape == (80, 13, 3) and p.dtype == np.float32
    assert p[0, 0, 0] == pytest.approx(48.0) and p[0, 2, 2] == 0
    load_poses(path, image_size=(270, 480))  # fits the labelled 480x270 frame
    assert load_poses(path, image_size=(135, 240))[0, 0, 0] == pytest.approx(24.0)


def test_poses_errors(tmp_path: Path) -> None:
    def check(name: str, array: np.ndarray, match: str, **kwargs: object) -> None:
        path = tmp_path / name
        np.save(path, array)
        with pytest.raises(UserError, match=rf"{name}.*{match}"):
            load_poses(path, **kwargs)

    p = random_poses()
    nan = p.copy()
    nan[4, 2, 0] = np.nan
    check("nan.npy", nan, r"frame 4, joint 2 is NaN")
    check("joints.npy", random_poses(j=17), r"has 17 joints per frame, expected 13")
    check("short.npy", random_poses(t=3), r"has 3 frames, at least 10 are needed", min_frames=10)
    check("shape.npy", p[0], r"shape")
    out = p.copy()
    out[7, 3, :2] = (70.0, 12.0)
    check("outside.npy", out, r"frame 7, joint 3 at \(70\.0, 12\.0\) lies outside the 64x64 image", image_size=(64, 64))

    for name, content in [("p.txt", "1 2 3"), ("bad.json", "{not json"), ("ragged.json", "[[[1, 2]], [[1, 2, 3]]]")]:
        (tmp_path / name).write_text(content)
        with pytest.raises(UserError, match=name.replace(".", r"\.")):
            load_poses(tmp_path / name, num_joints=None)
    (tmp_path / "bad.mat").write_bytes(b"MATLAB garbage" * 20)
    with pytest.raises(UserError, match=r"bad\.mat"):
        load_poses(tmp_path / "bad.mat")
    with pytest.raises(UserError, match=r"missing\.json"):
        load_poses(tmp_path / "missing.json")


def test_save_poses_is_atomic(tmp_path: Path) -> None:
    p = random_poses()
    p[1, 1, 0] = np.nan  # visible NaN cannot be written as JSON
    with pytest.raises(ValueError):
        save_poses(tmp_path / "p.json", p)
    assert list(tmp_path.iterdir()) == []


def test_module_exports() -> None:
    for module in (images, video, poses):
        for name in module.__all__:
            assert callable(getattr(module, name))
