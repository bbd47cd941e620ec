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
    sampler = ClipSampler(data)
    names = sampler.names[:max_videos] if max_videos else sampler.names
    per_index: dict[str, list[list[float]]] = {m: [[] for _ in range(frames)] for m in metrics}
    per_video: dict[str, dict[str, float]] = {}
    for name in tqdm(names, desc="evaluate", disable=not progress):
        video = sampler.video(name)
        n = min(frames, len(video.frames) - 1)
        pred = generate(pipe, sampler.structure, video.frames[0], video.joints[0], video.joints[1 : n + 1])
        scores = registry.compute(list(metrics), pred, video.frames[1 : n + 1])
        per_video[name] = {m: scores[m]["mean"] for m in metrics}
        for m in metrics:
            for i, v in enumerate(scores[m]["per_frame"]):
                per_index[m][i].append(float(v))
    if not per_video:
        raise UserError("no video to evaluate", data.root)
    return {
        "data": data.root,
        "num_videos": len(per_video),
        "frames": frames,
        "mean": {m: float(np.mean([v[m] for v in per_video.values()])) for m in metrics},
        "per_frame": {m: [float(np.mean(v)) if v else None for v in per_index[m]] for m in metrics},
        "per_video": per_video,
    }


def write_forecast_report(result: dict, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "metrics.json", json.dumps(result, indent=2))
    metrics = list(result["mean"])
    lines = [
        f"# Forecast evaluation: {result['num_videos']} videos of `{result['data']}`",
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
        if vals[0] is None:
            break
        lines.append(f"| {i + 1} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    atomic_write_text(out_dir / "metrics.md", "\n".join(lines) + "\n")
