"""A face video to fit (§4, G_C for faces): read in chunks, landmarks tracked (landmarks.py) and the 3DMM fitted
(fitting.py) with one identity per video; only the face parameters are kept (75 floats a frame), so memory is
flat in the video's length. Used by retargeting (pipelines/face_retarget.py) and by face data preparation
(data/faces.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from structvid.errors import UserError


@dataclass(frozen=True)
class FaceSource:
    """One video to fit: a video file, or a dataset entry's frame files (data/face_videos.py)."""

    name: str
    label: str  # the expression ("video" when unknown)
    path: Path  # the file, or the entry's folder (named in errors)
    frames: tuple[Path, ...] = ()  # frame files (MUG / BU-4DFE); empty: `path` is a video file
    fps: float = 25.0

    @classmethod
    def from_entry(cls, entry) -> "FaceSource":
        return cls(entry.stem, entry.expression, entry.frames[0].parent, tuple(entry.frames))

    @classmethod
    def from_video(cls, path: str | Path) -> "FaceSource":
        from structvid.io.video import video_rate

        path = Path(path)
        return cls(path.stem, "video", path, (), video_rate(path))

    def chunks(self, chunk: int = 32) -> Iterable[np.ndarray]:
        """(n, H, W, 3) uint8 RGB chunks of the video."""
        if not self.frames:
            from structvid.io.video import iter_video

            yield from iter_video(self.path, chunk)
            return
        from structvid.io.images import load_image

        for i in range(0, len(self.frames), chunk):
            yield np.stack([load_image(f) for f in self.frames[i : i + chunk]])


def fit_face_video(source: FaceSource, fitter, detector=None, max_frames: int | None = None, chunk: int = 32,
                   progress: Callable[[str, int, int | None], None] | None = None
                   ) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Track and fit one video: (params (T, P) in source pixels, found (T,) bool, (H, W)). Frames are decoded in
    chunks; only landmarks are kept. `progress(stage, done, total)` hears of each tracked chunk ("tracking",
    total None: the frame count is not known before decoding) and of the fit ("fitting", total T); an exception
    it raises stops the work (the web page's Cancel)."""
    from structvid.structure.faces.landmarks import track_landmarks

    hw: list[tuple[int, int]] = []

    def frames() -> Iterable[np.ndarray]:
        done = 0
        for block in source.chunks(chunk):
            if max_frames is not None:
                block = block[: max_frames - done]
            if not len(block):
                return
            hw.append(block.shape[1:3])
            done += len(block)
            yield block

    lms, found, tracked = [], [], 0
    for lm, ok in track_landmarks(frames(), detector, rate=source.fps, source=source.path):
        lms.append(lm)
        found.append(ok)
        tracked += len(lm)
        if progress is not None:
            progress("tracking", tracked, None)
    if not lms:
        raise UserError("the video has no frames", source.path)
    lm, ok = np.concatenate(lms), np.concatenate(found)
    fit_progress = None if progress is None else (lambda done, total: progress("fitting", done, total))
    params = fitter.fit_video(lm, hw[0], found=ok, rate=source.fps, progress=fit_progress)
    return params.astype(np.float32), ok, hw[0]
