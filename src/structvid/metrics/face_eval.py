"""`structvid evaluate retarget`: ACD-I / ACD-C (§7.2, Table 4) of retargeted face videos, and of the real ones.

For every (portrait, reference video) pair the face pipeline runs as `structvid retarget` does (fit the portrait
and the reference, transfer the expressions, render normal maps, G_M (+ G_R); `FaceRetarget.prepare` +
`FaceRetarget.stream`, no files written) and its frames are scored with `metrics.acd.acd`:

* ACD-I: mean L2 distance between each generated frame's face embedding and the INPUT portrait's. The portrait is
  embedded as the network saw it: the pipeline's cropped, resized `input_frame` (S x S), not the full photo, so
  both sides of the distance went through the same crop and resolution.
* ACD-C: mean pairwise L2 distance among the clip's frame embeddings.

The "Reference" row (Table 4's) scores the real reference videos the same way: their frames cropped to the
reference's face square at the model's resolution (as `write_retarget`'s panel shows them), ACD-C among them and
ACD-I of each against the clip's first frame (the first frame's own 0 included in the mean).

Resolution: every image (generated frames, input crop, reference crops) is upscaled (bicubic) so its longer side
is `embed_side` (256) before dlib's HOG detector and 68-point alignment see it. Measured on the shared faces
(crops of d0/d3/d11/d12/d18 and of the seven portraits around their fitted faces): at 64 x 64 with crop margin
0.15 dlib found every face (its detector retries with a x2 upsampling), but with margin 0.3 it missed 6/20 frames
of d12 and 1/7 portraits; upscaled to 128 or 256 it found all of them, at the same cost (~90 ms a frame, the
ResNet dominates). Frames where no face is found are left out of the means and counted.

Embedder: dlib's 128-d ResNet (metrics/acd.py), not the paper's OpenFace: values are NOT comparable with the
paper's Table 4 numbers, only between methods scored here.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from structvid.errors import UserError
from structvid.io.files import atomic_write_text
from structvid.metrics.acd import FaceEmbedder, acd

EMBED_SIDE = 256  # images are upscaled to this longer side before detection (see the module docstring)


class UpscalingEmbedder:
    """`FaceEmbedder` behind a bicubic upscale to `side` pixels (longer side); it records every embedding it
    returns, in call order (None where no face was found), so per-frame distances can be read after `acd`."""

    def __init__(self, embedder: FaceEmbedder | None = None, side: int = EMBED_SIDE) -> None:
        self.inner = embedder or FaceEmbedder()
        self.side = side
        self.seen: list[np.ndarray | None] = []

    def upscale(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        if max(h, w) >= self.side:
            return image
        k = self.side / max(h, w)
        return cv2.resize(image, (round(w * k), round(h * k)), interpolation=cv2.INTER_CUBIC)

    def embed(self, image: np.ndarray, source: str | Path | None = None) -> np.ndarray | None:
        e = self.inner.embed(self.upscale(np.asarray(image)), source)
        self.seen.append(e)
        return e


def _scored(frames: np.ndarray, input_image: np.ndarray, embedder: UpscalingEmbedder, source: str | Path | None,
            what: str) -> dict:
    """`acd` of `frames` against `input_image`, plus "per_frame_acd_i": each frame's distance to the input
    (None where no face was found)."""
    embedder.seen = []
    try:
        out = acd(frames, input_image, embedder, source)
    except UserError as e:
        if e.problem != "no face found in the input image":
            raise
        raise UserError(f"no face found in {what}", source) from None
    ref, per = embedder.seen[0], embedder.seen[1:]
    if len(per) != len(frames):  # acd embeds the input, then every frame in order
        raise RuntimeError(f"expected {len(frames)} frame embeddings, got {len(per)}")
    out["per_frame_acd_i"] = [None if e is None else float(np.linalg.norm(e.astype(np.float64) - ref)) for e in per]
    return out


def _mean(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if r[key] is not None and math.isfinite(r[key])]
    return float(np.mean(vals)) if vals else float("nan")


def _summary(rows: list[dict]) -> dict:
    return {"mean": {"acd_i": _mean(rows, "acd_i"), "acd_c": _mean(rows, "acd_c")},
            "frames": sum(r["frames"] for r in rows),
            "frames_without_face": sum(r["frames_without_face"] for r in rows)}


def evaluate_retarget(retarget, images: Sequence[Path], references: Sequence[Path], max_frames: int | None = None,
                      settings=None, progress: bool = True, *, pick: str = "largest", embed_side: int = EMBED_SIDE,
                      embedder: FaceEmbedder | None = None) -> dict:
    """ACD of every (portrait, reference) pair retargeted by `retarget` (a `FaceRetarget`), and the references' own.

    `max_frames`: at most this many frames of each reference (so of each generated clip). `settings`: the
    `TransferSettings` (default relative, intensity 1). `pick`: which face of a portrait with several.

    Each reference is tracked and fitted once (`FaceRetarget.prepare` with the first portrait), each portrait
    fitted once; the other pairs reuse those fits (the same job `prepare` would build).

    Returns {"model", "resolution", "refined", "transfer", "max_frames", "embedder", "pairs": n, "mean": {acd_i,
    acd_c} over pairs, "frames", "frames_without_face", "per_pair": [...], "reference": {"mean", "frames",
    "frames_without_face", "per_video": [...]}}. Per pair / per video: acd_i, acd_c, frames, frames_without_face,
    per_frame_acd_i (None where no face), and for pairs reference_frames_without_face (frames where the
    reference's tracker lost the face and the last fit was kept). Means skip NaN entries (no face at all)."""
    from structvid.io.images import load_image
    from structvid.io.video import iter_video
    from structvid.pipelines.conditions import ExpressionTransfer
    from structvid.pipelines.face_retarget import RetargetJob
    from structvid.structure.faces.transfer import TransferSettings
    from structvid.structure.framing import crop_frame

    images, references = [Path(p) for p in images], [Path(p) for p in references]
    if not images:
        raise UserError("no portrait given to evaluate")
    if not references:
        raise UserError("no reference video given to evaluate")
    if max_frames is not None and max_frames < 1:
        raise UserError(f"max_frames must be >= 1, got {max_frames}")
    settings = settings or TransferSettings()
    pipe, model = retarget.pipe, retarget.model
    s = pipe.size
    scorer = UpscalingEmbedder(embedder, embed_side)
    portraits = {p: load_image(p) for p in images}
    targets: dict[Path, np.ndarray] = {}
    per_pair, per_video = [], []
    bar = tqdm(total=len(images) * len(references), desc="evaluate retarget", unit="pair", disable=not progress)
    for ref_path in references:
        first: RetargetJob | None = None
        for img_path in images:
            image = portraits[img_path]
            if first is None:
                job = first = retarget.prepare(image, ref_path, settings, pick, img_path, max_frames)
                targets.setdefault(img_path, job.target)
            else:
                if img_path not in targets:
                    targets[img_path] = retarget.fit_image(image, img_path, pick)
                target = targets[img_path]
                job = RetargetJob(ExpressionTransfer(target, first.reference, model.n_id, model.n_exp, settings),
                                  target, first.reference, first.found, first.fps)
            parts = list(retarget.stream(image, job))
            frames = np.concatenate([p.frames for p in parts])  # (T, S, S, 3)
            row = _scored(frames, parts[0].input_frame, scorer, img_path,
                          f"the portrait as the model sees it ({s}x{s} crop, upscaled to {embed_side})")
            per_pair.append({"image": str(img_path), "reference": str(ref_path), **row,
                             "reference_frames_without_face": job.frames_without_face})
            bar.update()
        # the real reference, cropped to its face square at the model's resolution (as write_retarget's panel)
        ref_box = pipe.structure.box(first.reference[first.found] if first.found.any() else first.reference,
                                     pipe.crop_margin)
        crops: list[np.ndarray] = []
        for block in iter_video(ref_path, 32):
            crops.extend(crop_frame(f, ref_box, s) for f in block[: len(first.reference) - len(crops)])
            if len(crops) >= len(first.reference):
                break
        crops_arr = np.stack(crops)  # (T, S, S, 3)
        per_video.append({"reference": str(ref_path),
                          **_scored(crops_arr, crops_arr[0], scorer, ref_path,
                                    f"the reference's first frame ({s}x{s} crop, upscaled to {embed_side})")})
    bar.close()
    return {
        "model": str(pipe.source) if pipe.source is not None else "(in memory)",
        "resolution": s,
        "refined": pipe.refiner is not None,
        "transfer": asdict(settings),
        "max_frames": max_frames,
        "embedder": {"name": "dlib_face_recognition_resnet_model_v1 (128-d), HOG detector, 68-point alignment",
                     "upscale": f"bicubic to {embed_side} px (longer side) before detection",
                     "input": f"ACD-I against the pipeline's {s}x{s} input crop (input_frame), not the full "
                              "portrait; the Reference row against each clip's first frame, same crop size",
                     "comparable_with_paper": False},
        "pairs": len(per_pair),
        **_summary(per_pair),
        "per_pair": per_pair,
        "reference": {**_summary(per_video), "per_video": per_video},
    }


def _json_safe(x):
    """NaN / inf -> None (JSON has no NaN), recursively."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def _fmt(x: float | None) -> str:
    return "n/a" if x is None or not math.isfinite(x) else f"{x:.4f}"


def write_face_report(result: dict, out_dir: str | Path) -> None:
    """OUT_DIR/metrics.json (the whole result, NaN as null) and OUT_DIR/report.md (Table 4's layout: rows model,
    Reference), each written atomically."""
    out_dir = Path(out_dir)
    atomic_write_text(out_dir / "metrics.json", json.dumps(_json_safe(result), indent=2) + "\n")
    ref = result["reference"]
    s = result["resolution"]
    lines = [
        f"# Retargeting evaluation: {result['pairs']} portrait x reference pairs",
        "",
        "ACD (§7.2, Table 4; lower is better): mean L2 distance between face embeddings: ACD-I to the input, "
        "ACD-C among the clip's frames. Means over pairs (Reference: over videos) with a face.",
        "",
        "| | ACD-I | ACD-C | frames | frames without face |",
        "|---|---|---|---|---|",
        f"| {result['model']} | {_fmt(result['mean']['acd_i'])} | {_fmt(result['mean']['acd_c'])} | "
        f"{result['frames']} | {result['frames_without_face']} |",
        f"| Reference | {_fmt(ref['mean']['acd_i'])} | {_fmt(ref['mean']['acd_c'])} | {ref['frames']} | "
        f"{ref['frames_without_face']} |",
        "",
        f"Embedder: {result['embedder']['name']}; every {s}x{s} image {result['embedder']['upscale']}. "
        f"{result['embedder']['input']}. Not comparable with the paper's OpenFace values.",
        "",
        "| portrait | reference | ACD-I | ACD-C | frames | without face |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["per_pair"]:
        lines.append(f"| {Path(r['image']).name} | {Path(r['reference']).name} | {_fmt(r['acd_i'])} | "
                     f"{_fmt(r['acd_c'])} | {r['frames']} | {r['frames_without_face']} |")
    atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")
