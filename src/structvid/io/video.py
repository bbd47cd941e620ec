"""Video reading/writing (PyAV, PIL for GIF) and panel/heatmap visualisation helpers.

Frames are uint8 RGB (T, H, W, 3) throughout.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
from av.codec.context import Flags
import cv2
import numpy as np
import torch
from PIL import Image

from structvid.errors import UserError
from structvid.io.files import atomic_path

__all__ = ["write_video", "read_video", "side_by_side"]

MP4_CRF = 18  # visually near-lossless for libx264
MP4_QSCALE = 2  # fallback mpeg4 encoder: 2 is its best practical quality


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty uint8 (T, H, W, 3) array, got {frames.dtype} {frames.shape}")
    return frames


def write_video(path: str | Path, frames: np.ndarray, fps: float = 25) -> None:
    """Write uint8 (T, H, W, 3) frames atomically; the format follows the suffix.

    .mp4: H.264 (libx264, crf 18) or, where FFmpeg lacks it, MPEG-4 part 2 (qscale 2); yuv420p
    for player compatibility. yuv420p needs even sizes, so an odd height/width is padded by one
    replicated edge row/column. .gif: PIL, loops forever, frame duration 1000/fps ms (GIF has
    10 ms resolution; PIL merges identical consecutive frames into one longer frame).
    """
    path = Path(path)
    frames = _check_frames(frames)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps}")
    suffix = path.suffix.lower()
    if suffix not in (".mp4", ".gif"):
        raise UserError(f"unknown video file type '{path.suffix}'; use .mp4 or .gif", path)
    with atomic_path(path) as tmp:
        if suffix == ".mp4":
            _write_mp4(tmp, frames, fps)
        else:
            _write_gif(tmp, frames, fps)


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    _, h, w, _ = frames.shape
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": str(MP4_CRF)}
        else:
            stream.codec_context.qscale = MP4_QSCALE  # fixed quantiser, not the 200 kb/s default rate
            stream.codec_context.flags |= Flags.qscale
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))  # flush delayed frames


def _write_gif(path: Path, frames: np.ndarray, fps: float) -> None:
    images = [Image.fromarray(f, "RGB") for f in frames]
    duration = max(10, round(1000 / fps / 10) * 10)  # GIF delays are in 1/100 s
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], loop=0, duration=duration)


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Read the first video stream as uint8 (T, H, W, 3) RGB frames and its frame rate.

    Reads at most `max_frames` frames. The rate is the stream's average rate (falls back to its
    guessed/base rate). Missing, unreadable and frameless files raise UserError.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError("video file not found", path)
    frames: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UserError("contains no video stream", path)
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            for frame in container.decode(stream):
                if max_frames is not None and len(frames) >= max_frames:
                    break
                frames.append(frame.to_ndarray(format="rgb24"))
    except (av.FFmpegError, OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)  # FFmpeg messages repeat the path otherwise
        raise UserError(f"cannot read video ({reason})", path) from None
    if not frames:
        raise UserError("contains no frames", path)
    if not rate:
        raise UserError("has no frame rate", path)
    return np.stack(frames), float(rate)


def _resize(img: np.ndarray, height: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h == height:
        return img
    width = max(1, round(w * height / h))
    # nearest keeps small generated frames crisp when enlarged; area averages when shrinking
    interp = cv2.INTER_NEAREST if height > h else cv2.INTER_AREA
    return cv2.resize(img, (width, height), interpolation=interp)


def _caption(text: str, width: int, height: int) -> np.ndarray:
    strip = np.zeros((height, width, 3), np.uint8)
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, max(1, height // 24)
    (tw, th), _ = cv2.getTextSize(text, font, 1.0, thick)
    # font scale: fill ~60% of the strip height, shrink further if the label is too wide
    scale = min(0.6 * height / max(th, 1), 0.95 * width / max(tw, 1))
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    org = ((width - tw) // 2, (height + th) // 2)
    cv2.putText(strip, text, org, font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return strip


def side_by_side(
    panels: Sequence[np.ndarray], labels: Sequence[str], scale: int = 1, gap: int = 2
) -> np.ndarray:
    """Join panels left to right under caption strips: uint8 (T, H', W', 3).

    Each panel is uint8 (T, H, W, 3) or a still (H, W, 3) (or T=1) repeated over time; all clips
    with T > 1 must share T. Panels are resized (aspect kept) to the largest panel height times
    `scale`, with `gap` black columns between them.
    """
    if len(panels) != len(labels) or not panels:
        raise ValueError(f"need one label per panel, got {len(panels)} panels and {len(labels)} labels")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    clips = [np.asarray(p)[None] if np.asarray(p).ndim == 3 else np.asarray(p) for p in panels]
    for c in clips:
        _check_frames(c)
    lengths = {len(c) for c in clips if len(c) > 1}
    if len(lengths) > 1:
        raise ValueError(f"panels have different frame counts: {sorted(lengths)}")
    t = lengths.pop() if lengths else 1
    height = max(c.shape[1] for c in clips) * scale
    cap_h = max(12, height // 8)

    columns = []
    for clip, label in zip(clips, labels):
        frames = np.stack([_resize(f, height) for f in clip])
        frames = np.broadcast_to(frames, (t, *frames.shape[1:]))
        cap = np.broadcast_to(_caption(label, frames.shape[2], cap_h), (t, cap_h, frames.shape[2], 3))
        columns.append(np.concatenate([cap, frames], axis=1))
        columns.append(np.zeros((t, height + cap_h, gap, 3), np.uint8))
    return np.ascontiguousarray(np.concatenate(columns[:-1], axis=2))
