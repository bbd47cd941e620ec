"""Self-reenactment of held-out face videos with a face pipeline: each video's first frame is the portrait and the
video itself the reference (relative transfer with its head pose), so every generated frame has a real target.

    python scripts/face_demo_report.py --checkpoint src/structvid/assets/face_demo \
        --video ../shared/data/faces/d0.mp4 --out docs/faces/self_reenactment.md

Scores (metrics/pixel.py) per video: the pipeline's frames (G_M, and G_M + G_R when the pipeline has G_R) and the
"copy the first frame" baseline, against the real frames cropped to the same square.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--video", type=Path, action="append", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    from structvid.io.video import iter_video
    from structvid.metrics.pixel import mse, psnr, ssim
    from structvid.pipelines.face_retarget import FaceRetarget, box_of
    from structvid.structure.faces.transfer import TransferSettings
    from structvid.structure.framing import crop_frame

    rows = []
    for refine in (False, True):
        rt = FaceRetarget.from_pretrained(args.checkpoint, device="cpu", refine=refine, precision="fp32")
        if refine and rt.pipe.refiner is None:
            continue
        for video in args.video:
            first = next(iter(iter_video(video, 1)))[0]
            job = rt.prepare(first, video, TransferSettings(head_pose=True))
            out = [p for p in rt.stream(first, job)]
            frames = np.concatenate([p.frames for p in out])
            box = box_of(out[0].affine, rt.pipe.size)
            real = np.stack([crop_frame(f, box, rt.pipe.size) for b in iter_video(video, 32) for f in b])[: len(frames)]
            copy = np.repeat(out[0].input_frame[None], len(frames), 0)
            for name, pred in ((("G_M + G_R" if refine else "G_M"), frames), ("copy the first frame", copy)):
                if refine and name.startswith("copy"):
                    continue
                rows.append({"video": video.name, "method": name, "frames": len(frames),
                             "mse": float(mse(pred, real).mean()), "psnr": float(psnr(pred, real).mean()),
                             "ssim": float(ssim(pred, real).mean())})
    lines = ["| video | method | frames | MSE | PSNR (dB) | SSIM |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {r['video']} | {r['method']} | {r['frames']} | {r['mse']:.5f} | {r['psnr']:.2f} | {r['ssim']:.4f} |"
              for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
