"""Does G_R help? Coarse (G_M) vs refined (G_M + G_R) on held-out videos, and the seams of its windows.

    python scripts/refiner_report.py --checkpoint src/structvid/assets/demo --data data/puppet_test \
        --long data/puppet_test_long --frames 32 --out docs/refine

Quality: each held-out video is generated from its first frame with ground-truth poses, `--frames` frames, once
without and once with G_R; MSE / PSNR / SSIM per frame and the temporal error (L1 between generated and real
frame differences, `quality_bench.temporal_error`). Seams (`--long`, videos longer than several windows): the mean
frame difference where G_R's windows change vs inside one window (`metrics/seams.py`), for the paper's
non-overlapping windows and for overlapping ones (`--overlap`). Writes OUT/refine.json and OUT/refine.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from structvid.config import DataConfig
from structvid.data.clips import ClipSampler
from structvid.io.files import atomic_write_text
from structvid.metrics.seams import seam_report
from structvid.metrics.video_protocols import generate
from structvid.pipelines.image_to_video import ImageToVideoPipeline
from structvid.quality_bench import score_clip


def quality(pipe: ImageToVideoPipeline, data: str, frames: int) -> dict:
    sampler = ClipSampler(DataConfig(root=data, image_size=pipe.size, sigma=pipe.structure.sigma,
                                     crop_margin=pipe.crop_margin))
    refiner = pipe.refiner
    scores: dict[str, list[dict]] = {"coarse": [], "refined": []}
    for name in sampler.names:
        video = sampler.video(name)
        n = min(frames, len(video.frames) - 1)
        truth = video.frames[1 : n + 1]
        for kind in scores:
            pipe.attach_refiner(refiner if kind == "refined" else None)
            pred = generate(pipe, sampler.structure, video.frames[0], video.joints[0], video.joints[1 : n + 1])
            scores[kind].append(score_clip(pred, truth))
    pipe.attach_refiner(refiner)
    out = {}
    for kind, clips in scores.items():
        out[kind] = {m: float(np.mean([c[m].mean() for c in clips])) for m in ("mse", "psnr", "ssim", "temporal")}
        out[kind]["psnr_per_frame"] = [float(v) for v in np.mean([c["psnr"] for c in clips if len(c["psnr"]) == frames],
                                                                 axis=0)]
    out["videos"] = len(sampler.names)
    return out


def seams(pipe: ImageToVideoPipeline, data: str, overlaps: list[int]) -> list[dict]:
    sampler = ClipSampler(DataConfig(root=data, image_size=pipe.size, sigma=pipe.structure.sigma,
                                     crop_margin=pipe.crop_margin))
    k = pipe.refiner.config.clip_length
    rows = []
    for overlap in overlaps:
        pipe.attach_refiner(pipe.refiner, window_overlap=overlap)
        reports = []
        for name in sampler.names:
            video = sampler.video(name)
            maps = sampler.structure.render(torch.from_numpy(video.joints), pipe.size, pipe.size)
            out = pipe(video.frames[0], motion_maps=maps, image_motion=maps[:1])  # frame i from pose i, i = 0..T-1
            reports.append(seam_report(out.frames, out.coarse, k, overlap))
        keys = [k_ for k_ in reports[0] if k_.endswith(("_seam", "_inside", "_ratio"))]
        rows.append({"overlap": overlap, "k": k, "frames": reports[0]["frames"], "videos": len(reports),
                     "seams_per_video": reports[0]["seams"],
                     **{key: float(np.mean([r[key] for r in reports])) for key in keys}})
    pipe.attach_refiner(pipe.refiner, window_overlap=0)
    return rows


def markdown(result: dict) -> str:
    q = result["quality"]
    lines = [f"# G_R on held-out videos: `{result['checkpoint']}`", "",
             f"Command: `{result['command']}`", "",
             f"{q['videos']} videos of `{result['data']}`, {result['frames']} frames from the first frame with "
             "ground-truth poses.", "",
             "| output | MSE | PSNR (dB) | SSIM | temporal error (L1 of frame differences) |", "|---|---:|---:|---:|---:|"]
    for kind in ("coarse", "refined"):
        r = q[kind]
        lines.append(f"| {kind} | {r['mse']:.5f} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['temporal']:.5f} |")
    if result.get("seams"):
        lines += ["", f"Seams on `{result['long']}` (mean |V_(t+1) − V_t| where G_R's windows change vs inside one; "
                  "coarse = the same transitions of G_M's video):", "",
                  "| overlap | refined at seams | refined inside | ratio | coarse at seams | coarse inside | ratio |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in result["seams"]:
            lines.append(f"| {r['overlap']} | {r['refined_seam']:.5f} | {r['refined_inside']:.5f} | "
                         f"{r['refined_ratio']:.3f} | {r['coarse_seam']:.5f} | {r['coarse_inside']:.5f} | "
                         f"{r['coarse_ratio']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import sys

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--long", default=None)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--overlap", type=int, nargs="*", default=[0, 4])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    pipe = ImageToVideoPipeline.from_pretrained(args.checkpoint, device="cpu")
    if pipe.refiner is None:
        raise SystemExit(f"{args.checkpoint}: no refiner")
    result = {"checkpoint": args.checkpoint, "data": args.data, "long": args.long, "frames": args.frames,
              "command": "python " + " ".join(sys.argv), "quality": quality(pipe, args.data, args.frames)}
    if args.long:
        result["seams"] = seams(pipe, args.long, args.overlap)
    atomic_write_text(args.out / "refine.json", json.dumps(result, indent=2))
    atomic_write_text(args.out / "refine.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
