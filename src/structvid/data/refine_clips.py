"""Stage-2 training clips (§6.2): K real frames V, their motion maps M and the coarse clip Ṽ to refine.

The coarse videos come from the frozen G_M, made once per video from its first frame (as `structvid generate`
does at inference: frame i is G_M(I_0, M_0, M_i), frame 0 included) and kept on disk:

    CACHE/coarse/KEY/NNNN.npz     coarse (T, S, S, 3) uint8

KEY hashes G_M's weights and config files and the data (root, image size, crop margin, heatmap σ, and each
video's name, frame count and source file size/mtime), so a new G_M checkpoint or changed data builds a new
cache instead of reusing a stale one. Frames are stored as uint8, as a video file would hold them (§7.4:
G_R can refine any generator's videos); `coarse_videos` reads such a folder of NNNN.mp4 instead of G_M.

Every batch is a pure function of (seed, step, rank), as in stage 1, so resumed runs draw the same clips.
The phases of one step (critics, then G_R) share one batch: item i is the batch of step i // draws_per_step.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from structvid.data.clips import ClipSampler
from structvid.errors import UserError
from structvid.io.files import atomic_path
from structvid.io.images import to_tensor, to_uint8

# (image_t (1, 3, S, S), motion_t (1, J, S, S), targets (1, T, J, S, S)) -> frames (1, T, 3, S, S) in [-1, 1]
CoarseFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def data_fingerprint(sampler: ClipSampler) -> dict:
    """What the coarse videos depend on besides G_M: the data settings and each video's source file."""
    cfg = sampler.cfg
    root = Path(cfg.root).resolve()
    videos = {}
    for name in sampler.names:
        if sampler.store is not None:
            src = Path(sampler.store.root) / sampler.store.files[name]
        else:
            src = root / "labels" / f"{name}.mat"
        st = src.stat() if src.exists() else None
        videos[name] = [len(sampler.video(name).frames) if st is None else None,
                        st.st_size if st else None, st.st_mtime_ns if st else None]
    return {"root": str(root), "image_size": cfg.image_size, "crop_margin": cfg.crop_margin,
            "structure": repr(sampler.structure), "videos": videos}


def cache_key(model_files: list[Path], fingerprint: dict) -> str:
    """sha256 over the G_M files' bytes (not their names: a renamed copy is the same G_M) and the data
    fingerprint (first 16 hex digits)."""
    h = hashlib.sha256()
    for path in model_files:
        h.update(path.read_bytes())
    h.update(json.dumps(fingerprint, sort_keys=True).encode())
    return h.hexdigest()[:16]


class CoarseVideos:
    """Coarse videos Ṽ of the sampler's videos, made by `coarse_fn` (the frozen G_M) and cached in `folder`."""

    def __init__(self, sampler: ClipSampler, folder: str | Path, coarse_fn: CoarseFn | None = None,
                 device: torch.device | str = "cpu", chunk: int = 32, cache_videos: int = 4096) -> None:
        self.sampler, self.folder, self.coarse_fn = sampler, Path(folder), coarse_fn
        self.device, self.chunk = torch.device(device), chunk
        self.video = functools.lru_cache(maxsize=cache_videos)(self._load)

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.npz"

    def missing(self) -> list[str]:
        return [n for n in self.sampler.names if not self.path(n).is_file()]

    def build(self, progress: bool = True) -> int:
        """Make every missing coarse video; returns how many were made."""
        todo = self.missing()
        if todo and self.coarse_fn is None:
            raise UserError(f"{len(todo)} coarse video(s) missing and no G_M to make them", self.folder)
        size = self.sampler.cfg.image_size
        render = self.sampler.structure.render
        for name in tqdm(todo, desc="coarse clips (G_M)", unit="video", disable=not progress, dynamic_ncols=True):
            video = self.sampler.video(name)
            image = to_tensor(video.frames[:1]).to(self.device)
            joints = torch.from_numpy(video.params)
            motion_t = render(joints[:1], size, size).to(self.device)
            frames = []
            for i in range(0, len(joints), self.chunk):
                targets = render(joints[i : i + self.chunk], size, size).to(self.device)[None]
                with torch.no_grad():
                    frames.append(to_uint8(self.coarse_fn(image, motion_t, targets)[0].float().cpu()))
            with atomic_path(self.path(name)) as tmp:
                np.savez(tmp, coarse=np.concatenate(frames))
        return len(todo)

    def _load(self, name: str) -> np.ndarray:
        path = self.path(name)
        try:
            with np.load(path, allow_pickle=False) as z:
                coarse = z["coarse"]
        except (OSError, ValueError, KeyError) as e:
            raise UserError(f"unreadable coarse video ({e.__class__.__name__}); delete it to rebuild", path) from None
        expected = self.sampler.video(name).frames.shape
        if coarse.shape != expected:
            raise UserError(f"coarse video has shape {coarse.shape}, its real video {expected}; delete it to rebuild",
                            path)
        return coarse


class VideoFolderCoarse(CoarseVideos):
    """Coarse videos made by another generator (§7.4, Fig. 12): FOLDER/NNNN.mp4, one per video name, with the
    video's frames in order (frame 0 = the input image's); resized to the data's resolution when needed."""

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.mp4"

    def _load(self, name: str) -> np.ndarray:
        from structvid.io.video import read_video

        real = self.sampler.video(name).frames
        frames, _ = read_video(self.path(name), max_frames=len(real))
        if len(frames) < len(real):
            raise UserError(f"has {len(frames)} frames, its real video {len(real)}", self.path(name))
        s = real.shape[1]
        if frames.shape[1:3] != (s, s):
            frames = np.stack([cv2.resize(f, (s, s), interpolation=cv2.INTER_AREA) for f in frames])
        return frames


class RefineBatches(torch.utils.data.Dataset):
    """Item i = the batch of step i // draws_per_step this rank draws: clips of K consecutive frames.

    Keys (see losses/refine.py): video, coarse (N, K, 3, S, S) in [-1, 1], motions (N, K, J, S, S),
    batch_id (the step). Videos shorter than K frames are left out (`skipped`).
    """

    def __init__(self, coarse: CoarseVideos, clip_length: int, batch_size: int, seed: int, rank: int = 0,
                 world: int = 1, draws_per_step: int = 1) -> None:
        if batch_size % world:
            raise UserError(f"train.batch_size ({batch_size}) must be divisible by the number of processes ({world})")
        sampler = coarse.sampler
        self.coarse, self.k, self.per_rank, self.seed, self.rank = coarse, clip_length, batch_size // world, seed, rank
        self.draws_per_step = max(1, draws_per_step)
        lengths = {n: len(sampler.video(n).frames) for n in sampler.names}
        usable = [n for n in sampler.names if lengths[n] >= clip_length]
        self.skipped = [n for n in sampler.names if lengths[n] < clip_length]
        if not usable:
            raise UserError(f"no video has the {clip_length} frames a clip needs (model.clip_length)", sampler.cfg.root)
        self.names = usable[rank::world] or usable
        self.lengths = lengths

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        step = index // self.draws_per_step
        rng = np.random.default_rng([self.seed, step, self.rank])
        sampler, k = self.coarse.sampler, self.k
        size = sampler.cfg.image_size
        real, coarse, joints = [], [], []
        for _ in range(self.per_rank):
            name = self.names[rng.integers(len(self.names))]
            s = int(rng.integers(0, self.lengths[name] - k + 1))
            video = sampler.video(name)
            real.append(video.frames[s : s + k])
            coarse.append(self.coarse.video(name)[s : s + k])
            joints.append(video.params[s : s + k])
        n = self.per_rank
        motions = sampler.structure.render(torch.from_numpy(np.concatenate(joints)), size, size)
        return {
            "video": to_tensor(np.concatenate(real)).unflatten(0, (n, k)),
            "coarse": to_tensor(np.concatenate(coarse)).unflatten(0, (n, k)),
            "motions": motions.unflatten(0, (n, k)),
            "batch_id": torch.tensor(step),
        }
