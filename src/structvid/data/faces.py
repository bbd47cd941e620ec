"""Face training data (§7.1): prepared stores of face videos with their fitted face parameters.

Both writers produce a prepared store (data/prepare.py's layout: `prepared.json` + `videos/NAME.npz` holding
`frames` (T, S, S, 3) uint8 and `params` (T, P) float32 packed FaceParams in output pixels), so `ClipSampler`,
`structvid train forecast` and `structvid train refine` read faces exactly as they read bodies:

* `synthetic_faces` (`structvid data faces`): random SFM identities making one of the six MUG expressions,
  neutral -> peak (-> neutral), with head-pose drift, procedural albedo and lighting and a background. Exact
  parameters, no fitting: training data for tests and smoke runs.
* `prepare_face_videos` (`structvid data prepare-faces`): real videos (MUG, BU-4DFE, any talking-head clip):
  landmarks tracked with dlib, the 3DMM fitted with eos (one α per video), then cropped to one square per video
  around the fitted face (§7.1, `FaceNormals.box` + `crop_margin`) and resized.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from structvid.data.prepare import FORMAT, INDEX, VERSION, write_npz
from structvid.errors import UserError
from structvid.io.files import atomic_dir, atomic_path
from structvid.structure.faces.morphable import FaceParams, MorphableModel, project, rotation_matrix
from structvid.structure.faces.video_fit import FaceSource, fit_face_video
from structvid.structure.faces.raster import interpolate, rasterize, vertex_normals
from structvid.structure.framing import crop_affine, crop_frame


def write_store(folder: Path, entries: dict[str, dict], image_size: int, crop_margin: float, source: str) -> None:
    """prepared.json for the videos already written under `folder/videos` (data/prepare.py's index format)."""
    index = {"format": FORMAT, "version": VERSION, "image_size": image_size, "crop_margin": float(crop_margin),
             "source": source, "actions": None, "structure": "face_normals", "num_videos": len(entries),
             "num_frames": sum(e["nframes"] for e in entries.values()), "videos": entries}
    with atomic_path(folder / INDEX) as p:
        p.write_text(json.dumps(index, indent=1) + "\n")


def _entry(rel: str, nframes: int, action: str) -> dict:
    return {"file": rel, "nframes": int(nframes), "action": action, "pose": "", "train": 1}


# ---------------------------------------------------------------- synthetic faces


@dataclass(frozen=True)
class _Look:
    albedo: np.ndarray  # (V, 3) float32 in [0, 1]
    light: np.ndarray  # (3,) unit direction towards the light, image axes (x right, y down, z to the viewer)
    ambient: float
    background: np.ndarray  # (S, S, 3) float32


def _regions(model: MorphableModel) -> dict[str, np.ndarray]:
    """(V,) weights in [0, 1] of the brows, eyes and lips (near their iBUG landmark vertices on the mean face)."""
    out = {}
    for name, ids, radius in (("brows", range(17, 27), 7.0), ("eyes", range(36, 48), 5.0), ("lips", range(48, 68), 5.5)):
        v = model.landmarks[list(ids)]
        pts = model.mean[v[v >= 0]]  # (L, 3)
        d = np.linalg.norm(model.mean[:, None, :2] - pts[None, :, :2], axis=-1).min(1)  # (V,)
        out[name] = np.clip(1.5 - d / radius, 0, 1).astype(np.float32)
    return out


def _random_look(model: MorphableModel, rng: np.random.Generator, size: int) -> _Look:
    skin = np.array([0.95, 0.78, 0.66]) * rng.uniform(0.45, 1.0) + rng.normal(0, 0.03, 3)
    pos = model.mean / 100.0
    waves = sum(np.sin(pos @ rng.normal(0, 3, 3) + rng.uniform(0, 6.3)) for _ in range(3)) / 3  # (V,) freckle-free
    albedo = np.clip(skin[None] * (1 + 0.06 * waves[:, None]), 0, 1)
    reg = _regions(model)
    for name, colour in (("brows", rng.uniform(0.05, 0.35) * np.ones(3)), ("eyes", np.array([0.25, 0.2, 0.2])),
                         ("lips", skin * np.array([0.85, 0.55, 0.55]))):
        w = reg[name][:, None]
        albedo = albedo * (1 - w) + colour[None] * w
    light = np.array([rng.uniform(-0.6, 0.6), rng.uniform(-0.7, 0.1), 1.0])
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    c0, c1 = rng.uniform(0.1, 0.9, 3), rng.uniform(0.1, 0.9, 3)
    t = (xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1))[..., None]
    background = np.clip(c0 + (c1 - c0) * (t - t.min()) / (np.ptp(t) + 1e-6) + rng.normal(0, 0.02, (size, size, 3)), 0, 1)
    return _Look(albedo.astype(np.float32), light / np.linalg.norm(light), float(rng.uniform(0.25, 0.45)),
                 background.astype(np.float32))


def _expression_curve(frames: int, rng: np.random.Generator) -> np.ndarray:
    """(T,) neutral -> peak (-> neutral): MUG's takes start and often end neutral (smoothstep ramps)."""
    t = np.linspace(0, 1, frames)
    on, peak = rng.uniform(0.05, 0.25), rng.uniform(0.4, 0.6)
    up = np.clip((t - on) / (peak - on), 0, 1)
    curve = up * up * (3 - 2 * up)
    if rng.random() < 0.5:  # back to neutral
        off = rng.uniform(0.7, 0.8)
        down = np.clip((t - off) / (1 - off), 0, 1)
        curve = curve * (1 - down * down * (3 - 2 * down))
    return curve


def render_face(model: MorphableModel, params: np.ndarray, look: _Look, size: int, supersample: int = 2) -> np.ndarray:
    """One (S, S, 3) uint8 frame of a shaded face: Lambert shading of camera-space normals, over the background."""
    big = size * supersample
    k = supersample
    p = FaceParams.unpack(params, model.n_id, model.n_exp).transformed(
        np.array([[k, 0, (k - 1) / 2], [0, k, (k - 1) / 2]]))  # pixel centres of the big image
    shape, rot = model.shape(p.alpha, p.beta), rotation_matrix(p.rotvec)  # Eq. 1 once, for both uses below
    r = rasterize(project(shape, rot, p.scale, p.translation), model.triangles, big, big)  # Eq. 2
    cam = shape @ rot.T  # (V, 3) posed, model axes (y up)
    normals = vertex_normals(cam, model.triangles) * np.array([1, -1, 1])  # image axes: y down
    n = interpolate(r, normals, model.triangles)  # (H, W, 3)
    n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-8
    alb = interpolate(r, look.albedo, model.triangles)
    shade = look.ambient + (1 - look.ambient) * np.clip(n @ look.light, 0, 1)[..., None]
    bg = cv2.resize(look.background, (big, big), interpolation=cv2.INTER_LINEAR)
    img = np.where(r.mask[..., None], alb * shade, bg)
    img = cv2.resize(img.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def synthetic_video(model: MorphableModel, index: int, frames: int, size: int, seed: int = 0,
                    crop_margin: float = 0.15) -> tuple[np.ndarray, np.ndarray, str]:
    """Video `index`: (frames (T, S, S, 3) uint8, params (T, P) float32 in output pixels, expression name)."""
    rng = np.random.default_rng([seed, index])
    names = model.expression_names or tuple(f"expression{i}" for i in range(model.n_exp))
    e = index % len(names)  # expressions dealt evenly
    alpha = rng.normal(0, 0.8, model.n_id) * (np.arange(model.n_id) < 20)
    beta = np.zeros((frames, model.n_exp))
    beta[:, e] = _expression_curve(frames, rng) * rng.uniform(0.7, 1.0)
    t = np.arange(frames)[:, None]
    base = np.radians(rng.uniform([-15, -10, -6], [15, 10, 6]))  # pitch (x), yaw (y), roll (z)
    drift = np.radians(rng.uniform(1, 5, 3)) * np.sin(2 * np.pi * t / rng.uniform(20, 60, 3) + rng.uniform(0, 6.3, 3))
    rotvec = base + drift  # small angles: Euler ~ rotation vector
    # the mean SFM face spans ~190 model units: fill the square the data's framing would crop (margin each side)
    f = size / (1 + 2 * crop_margin) / 190.0 * rng.uniform(0.9, 1.05)
    centre = size / 2 + rng.normal(0, 0.03 * size, 2) + np.array([0, 0.05 * size])
    trans = centre[None] + np.cumsum(rng.normal(0, 0.003 * size, (frames, 2)), 0)
    params = FaceParams(rotvec, np.full(frames, f), trans, np.repeat(alpha[None], frames, 0), beta).pack()
    look = _random_look(model, rng, size)
    video = np.stack([render_face(model, p, look, size) for p in params])
    return video, params, names[e]


def synthetic_faces(out: str | Path, model: MorphableModel, videos: int = 24, frames: int = 32, size: int = 64,
                    seed: int = 0, crop_margin: float = 0.15, progress: bool = True) -> Path:
    """A prepared store of `videos` synthetic face videos (see module docstring); written all or nothing."""
    if videos < 1 or frames < 2 or size < 8:
        raise UserError(f"need videos >= 1, frames >= 2 and size >= 8, got {videos}, {frames}, {size}")
    out = Path(out)
    entries = {}
    with atomic_dir(out) as tmp:
        for i in tqdm(range(videos), desc="synthetic faces", unit="video", disable=not progress):
            video, params, expression = synthetic_video(model, i, frames, size, seed, crop_margin)
            name = f"synth{i:05d}"
            rel = f"videos/{name}.npz"
            write_npz(tmp / rel, {"frames": video, "params": params.astype(np.float32), "name": np.array(name),
                                  "action": np.array(expression)})
            entries[name] = _entry(rel, frames, expression)
        write_store(tmp, entries, size, crop_margin, f"synthetic SFM faces (seed {seed})")
    return out


# ---------------------------------------------------------------- real videos


def _prepare_face(args: tuple[FaceSource, Path, int, float, int | None, str | None]) -> tuple[str, dict]:
    """Track, fit, crop and write one video (a worker's job): (name, index entry)."""
    from structvid.structure.faces.morphable import default_model
    from structvid.structure.faces.normals import FaceNormals

    src, folder, size, crop_margin, max_frames, model_dir = args
    fitter = _fitter(model_dir)
    structure = FaceNormals(default_model(model_dir or ""))
    params, found, _ = fit_face_video(src, fitter, max_frames=max_frames)
    box = structure.box(params[found] if found.any() else params, crop_margin)  # one square per video
    frames: list[np.ndarray] = []
    for block in src.chunks(32):
        frames.extend(crop_frame(f, box, size) for f in block[: len(params) - len(frames)])
        if len(frames) >= len(params):
            break
    rel = f"videos/{src.name}.npz"
    write_npz(folder / rel, {"frames": np.stack(frames), "params": structure.transform(params, crop_affine(box, size)),
                             "found": found, "box": np.asarray(box), "name": np.array(src.name)})
    return src.name, _entry(rel, len(frames), src.label)


@functools.lru_cache(maxsize=2)
def _fitter(model_dir: str | None):
    from structvid.structure.faces.fitting import FaceFitter

    return FaceFitter(model_dir)  # one per process: eos loads the model and its topology once


def _init_face_worker() -> None:
    cv2.setNumThreads(1)  # the processes are the parallelism
    import torch

    torch.set_num_threads(1)


def prepare_face_videos(sources: Sequence[FaceSource], out: str | Path, size: int = 64, crop_margin: float = 0.15,
                        max_frames: int | None = None, model_dir: str | Path | None = None,
                        progress: bool = True, workers: int = 1) -> Path:
    """A prepared store of real face videos (see module docstring): landmarks + fit once per video, one square
    crop per video around its fitted faces; `workers` processes fit videos in parallel. Written all or nothing:
    the store is the cache (normal maps are rendered from the stored parameters when batches are drawn)."""
    if not sources:
        raise UserError("no face videos given")
    names = [s.name for s in sources]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise UserError(f"two videos are named {dup[0]!r}: rename one", sources[names.index(dup[0])].path)
    out = Path(out)
    md = str(model_dir) if model_dir else None
    entries: dict[str, dict] = {}
    with atomic_dir(out) as tmp:
        jobs = [(src, tmp, size, crop_margin, max_frames, md) for src in sources]
        bar = tqdm(total=len(jobs), desc="fit faces", unit="video", disable=not progress)
        if workers > 1 and len(jobs) > 1:
            from concurrent.futures import ProcessPoolExecutor
            from multiprocessing import get_context

            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn"),
                                     initializer=_init_face_worker) as pool:
                for name, entry in pool.map(_prepare_face, jobs):
                    entries[name] = entry
                    bar.update()
        else:
            for job in jobs:
                name, entry = _prepare_face(job)
                entries[name] = entry
                bar.update()
        bar.close()
        write_store(tmp, {n: entries[n] for n in names}, size, crop_margin, "fitted face videos")
    return out
