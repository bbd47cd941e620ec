"""Writing a pipeline's video: the frames, a GIF preview and the side-by-side panel, chunk by chunk.

One function for every front end (`structvid generate / demo / refine` and the web page), so a panel looks the
same wherever it is made.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from structvid.pipelines.image_to_video import VideoOutput
from structvid.structure.base import Structure


def write_outputs(files, chunks: Iterable[VideoOutput], mp4: Path, fps: float, panel: bool = True,
                  observed: np.ndarray | None = None, structure: Structure | None = None, gif: bool = True,
                  refine_only: bool = False, on_chunk: Callable[[int], None] | None = None) -> list[Path]:
    """MP4 (+ GIF preview) of the generated frames, and optionally the input | condition | output | mask panel
    (input | condition | coarse | refined | mask when G_R refined G_M's frames; the mask is then G_R's, Eq. 15;
    coarse | refined | mask with `refine_only`, for a video G_R refined alone).

    `chunks` are the pipeline's VideoOutputs (`pipe.stream`): each is encoded and its panel built as it comes,
    so memory does not grow with the video's length; the GIF keeps the first GIF_PREVIEW_FRAMES frames. The
    files are staged in `files` (`io.video.video_files`): they appear together, or not at all. With `observed`
    poses (pose forecasting) the panel's first column shows the observed skeletons over the input and the second
    the forecast skeleton over each generated frame. `on_chunk(frames done)` is called after each chunk.
    """
    from structvid.structure.skeleton import draw_skeleton
    from structvid.io.images import heatmap_to_rgb
    from structvid.io.video import GIF_PREVIEW_FRAMES, side_by_side
    from structvid.structure.framing import apply_affine

    to_rgb = structure.to_rgb if structure is not None else heatmap_to_rgb
    chunks = iter(chunks)
    first = next(chunks)  # a bad input fails here, before any file is created
    gif_path, panel_path = mp4.with_suffix(".gif"), mp4.with_name(mp4.stem + "_panel.mp4")
    video = files.video(mp4, fps)
    preview = files.video(gif_path, fps, max_frames=GIF_PREVIEW_FRAMES) if gif else None
    panel_video = files.video(panel_path, fps) if panel else None
    refined = first.coarse is not None
    still, labels = first.input_frame, ["input", "condition"] + (["coarse", "refined"] if refined else ["output"])
    if observed is not None and first.params is not None:
        still = first.input_frame.copy()
        for j in apply_affine(observed, first.affine):  # observed joints in output pixels
            still = draw_skeleton(still, j, color=(60, 120, 255))
        labels[:2] = ["observed", "forecast"]
    if refine_only:
        labels = labels[2:]
    if (first.refine_masks if refined else first.masks) is not None:
        labels.append("mask")
    done = 0
    for out in itertools.chain([first], chunks):
        video.write(out.frames)
        if preview is not None and preview.count < GIF_PREVIEW_FRAMES:
            preview.write(out.frames)
        if panel_video is not None:
            cols = [out.coarse, out.frames] if refined else [out.frames]
            if not refine_only:
                cond = to_rgb(out.conditions)
                if labels[1] == "forecast":
                    cond = np.stack([draw_skeleton(f, j, color=(255, 60, 60)) for f, j in zip(out.frames, out.params)])
                cols = [still, cond] + cols
            mask = out.refine_masks if refined else out.masks
            if mask is not None:
                cols.append(heatmap_to_rgb(mask[:, None]))
            panel_video.write(side_by_side(cols, labels, scale=4 if out.frames.shape[1] <= 64 else 2))
        done += len(out.frames)
        if on_chunk is not None:
            on_chunk(done)
    return [mp4] + ([gif_path] if gif else []) + ([panel_path] if panel else [])
