"""Long videos stream from the pipeline to the encoders in chunks; outputs appear all together or not at all."""

import errno
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from structvid.config import ForecasterConfig
from structvid.errors import UserError
from structvid.io import video
from structvid.io.video import VideoWriter, read_video, video_files, write_video
from structvid.models.forecaster import Forecaster
from structvid.pipelines.image_to_video import ImageToVideoPipeline


def tiny_pipe(chunk: int = 4, **kwargs) -> ImageToVideoPipeline:
    torch.manual_seed(0)
    cfg = ForecasterConfig(resolution=16, base_width=8, max_width=16, dense_growth=4)
    return ImageToVideoPipeline(Forecaster(cfg), chunk=chunk, **kwargs)


def poses(t: int = 10) -> np.ndarray:
    rng = np.random.default_rng(0)
    joints = rng.uniform(4, 28, (t, 13, 3)).astype(np.float32)
    joints[..., 2] = 1
    return joints


def image() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def clip(t: int = 10, size: int = 16) -> np.ndarray:
    x = np.linspace(0, 255, size, dtype=np.float32)
    frames = [np.stack(np.broadcast_arrays(x[None] + 10 * i, x[:, None], 128 + 0 * x[None]), -1) for i in range(t)]
    return np.clip(frames, 0, 255).astype(np.uint8)


def test_stream_yields_chunks_that_make_up_the_whole_video() -> None:
    # (G_R's windows over the stream: tests/test_refine_pipeline.py)
    pipe = tiny_pipe(chunk=4)
    parts = list(pipe.stream(image(), poses(10)))
    assert [len(p.frames) for p in parts] == [4, 4, 2]
    assert [len(p.conditions) for p in parts] == [4, 4, 2] and [len(p.params) for p in parts] == [4, 4, 2]
    whole = pipe(image(), poses(10))
    np.testing.assert_array_equal(whole.frames, np.concatenate([p.frames for p in parts]))
    np.testing.assert_array_equal(whole.masks, np.concatenate([p.masks for p in parts]))
    assert [len(p.frames) for p in pipe.stream(image(), poses(10), chunk=3)] == [3, 3, 3, 1]


def test_motion_maps_are_rendered_per_chunk_not_for_the_whole_video(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe = tiny_pipe(chunk=4)
    rendered = []
    real = pipe.structure.render

    def render(joints, h, w):
        rendered.append(len(joints))
        return real(joints, h, w)

    monkeypatch.setattr(pipe.structure, "render", render)
    out = pipe(image(), poses(10))
    assert len(out.frames) == 10
    assert max(rendered) <= 4  # (T, 13, S, S) float maps never exist for the whole sequence


def test_non_finite_output_is_refused() -> None:
    pipe = tiny_pipe()
    with torch.no_grad():
        next(pipe.forecaster.parameters()).fill_(float("nan"))
    with pytest.raises(UserError, match="non-finite"):
        pipe(image(), poses(6))


def test_video_writer_encodes_chunk_by_chunk(tmp_path: Path) -> None:
    frames = clip(10)
    with VideoWriter(tmp_path / "a.mp4", fps=10) as w:
        for i in range(0, 10, 3):
            w.write(frames[i : i + 3])
    got, fps = read_video(tmp_path / "a.mp4")
    assert got.shape == frames.shape and fps == pytest.approx(10)
    assert np.abs(got.astype(int) - frames).mean() < 8
    write_video(tmp_path / "b.mp4", frames, fps=10)  # the whole-array writer: the same encoder, one chunk
    whole = read_video(tmp_path / "b.mp4")[0]  # (not always bit-exact: x264's threads, under load)
    assert whole.shape == got.shape and np.abs(whole.astype(int) - frames).mean() < 8


def test_gif_preview_keeps_the_first_frames(tmp_path: Path) -> None:
    frames = clip(9)  # all different (PIL merges identical consecutive frames)
    with VideoWriter(tmp_path / "a.gif", fps=10, max_frames=4) as w:
        for i in range(0, 9, 3):
            w.write(frames[i : i + 3])
        assert w.count == 9
    with Image.open(tmp_path / "a.gif") as im:
        assert im.n_frames == 4
    got, _ = read_video(tmp_path / "a.gif")
    assert np.abs(got.astype(int) - frames[:4]).mean() < 8  # the first four, not any four


def test_video_files_appear_together_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with video_files() as out:
        mp4, gif = out.video(tmp_path / "a.mp4", 10), out.video(tmp_path / "a.gif", 10)
        mp4.write(clip(4))
        gif.write(clip(4))
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == []  # not yet
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.gif", "a.mp4"]

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(video.Image.Image, "save", full_disk)  # the GIF is written when it is closed
    target = tmp_path / "new"
    with pytest.raises(UserError, match="no space left on device") as info:
        with video_files() as out:
            mp4, gif = out.video(target / "b.mp4", 10), out.video(target / "b.gif", 10)
            mp4.write(clip(4))
            gif.write(clip(4))
    assert str(target / "b.gif") in str(info.value)
    assert list(target.iterdir()) == []  # no MP4 without its GIF, no temporary file


def test_error_while_generating_leaves_no_file(tmp_path: Path) -> None:
    def chunks():
        yield clip(4)
        raise RuntimeError("model failed")

    with pytest.raises(RuntimeError, match="model failed"):
        with video_files() as out:
            w = out.video(tmp_path / "a.mp4", 10)
            for c in chunks():
                w.write(c)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_output_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tmp_path / "file"
    parent.write_text("")
    with pytest.raises(UserError, match="file/x.mp4"):
        with video_files() as out:
            out.video(parent / "x.mp4", 10)

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("structvid.io.files.tempfile.mkstemp", read_only)
    with pytest.raises(UserError, match="read-only file system while writing .*ro.mp4"):
        write_video(tmp_path / "ro.mp4", clip(2))


def test_mp4_is_encoded_as_it_comes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = []
    real = av.VideoFrame.from_ndarray

    def spy(*args, **kwargs):
        encoded.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(video.av.VideoFrame, "from_ndarray", spy)
    with VideoWriter(tmp_path / "a.mp4", fps=10) as w:
        w.write(clip(3))
        assert len(encoded) == 3  # not buffered until close
        w.write(clip(2))
    assert len(encoded) == 5
