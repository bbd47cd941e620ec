"""`structvid evaluate forecast`: generate every test video from its first frame and compare to the truth.

For each video of a Penn Action layout folder, G_M sees the first (cropped) frame I_1 with its pose and the
ground-truth poses of frames 2..1+F; the generated frames are scored against the real ones with the
registered pixel metrics (MSE, PSNR, SSIM), per frame index and averaged. The paper's protocols (Table 6 /
Table 7, fixed frame windows, LSTM conditions, motion deciles) are in `structvid.metrics.video_protocols`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from structvid.config import DataConfig
from structvid.data.clips import ClipSampler
from structvid.errors import UserError
from structvid.io.files import atomic_write_text
from structvid.metrics import pixel, registry  # noqa: F401 - importing pixel registers mse/psnr/ssim
from structvid.metrics.video_protocols import generate
from structvid.pipelines.image_to_video import ImageToVideoPipeline


def evaluate_forecast(pipe: ImageToVideoPipeline, data: DataConfig, frames: int = 32, max_videos: int | None = None,
                      metrics: Sequence[str] = ("mse", "psnr", "ssim"), progress: bool = True) -> dict:
    """Score each video's first min(`frames`, T - 1) generated frames; a video with a single frame is skipped.

    The result records what was evaluated: "frames" is the longest evaluated stretch (the length of
    "per_frame"; fewer than requested when every video is shorter), "frames_requested" the request, and
    each video's entry in "per_video" its own number of frames.
    """
    if frames < 1:
        raise UserError(f"frames must be >= 1, got {frames}")
    if max_videos is not None and max_videos < 1:
        raise UserError(f"max_videos must be >= 1, got {max_videos}")
    sampler = ClipSampler(data, pipe.structure)
    names = sampler.names[:max_videos] if max_videos else sampler.names
    per_index: dict[str, list[list[float]]] = {m: [[] for _ in range(frames)] for m in metrics}
    per_video: dict[str, dict[str, float]] = {}
    skipped = 0
    for name in tqdm(names, desc="evaluate", disable=not progress):
        video = sampler.video(name)
        n = min(frames, len(video.frames) - 1)
        if n < 1:  # nothing after the input frame
            skipped += 1
            continue
        pred = generate(pipe, sampler.structure, video.frames[0], video.params[0], video.params[1 : n + 1])
        scores = registry.compute(list(metrics), pred, video.frames[1 : n + 1])
        per_video[name] = {**{m: scores[m]["mean"] for m in metrics}, "frames": n}
        for m in metrics:
            for i, v in enumerate(scores[m]["per_frame"]):
                per_index[m][i].append(float(v))
    if not per_video:
        raise UserError("no video to evaluate (each needs at least 2 frames)", data.root)
    evaluated = max(v["frames"] for v in per_video.values())
    return {
        "data": data.root,
        "num_videos": len(per_video),
        "skipped_videos": skipped,
        "frames": evaluated,
        "frames_requested": frames,
        "mean": {m: float(np.mean([v[m] for v in per_video.values()])) for m in metrics},
        "per_frame": {m: [float(np.mean(v)) for v in per_index[m][:evaluated]] for m in metrics},
        "per_frame_videos": [len(v) for v in per_index[metrics[0]][:evaluated]] if metrics else [],
        "per_video": per_video,
    }


def write_forecast_report(result: dict, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=2))
    metrics = list(result["mean"])
    lines = [
        f"# Forecast evaluation: {result['num_videos']} videos of `{result['data']}`",
        "",
        f"Up to {result['frames']} generated frames per video ({result['frames_requested']}"
        " requested; a video shorter than that is scored on the frames it has).",
        "",
        "| " + " | ".join(metrics) + " |",
        "|" + "---|" * len(metrics),
        "| " + " | ".join(f"{result['mean'][m]:.4f}" for m in metrics) + " |",
        "",
        "Per generated frame (mean over videos):",
        "",
        "| frame | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for i in range(result["frames"]):
        vals = [result["per_frame"][m][i] for m in metrics]
        lines.append(f"| {i + 1} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    atomic_write_text(out_dir / "metrics.md", "\n".join(lines) + "\n")
