"""Training samples for G_M: (I_t, M_t, I_{t+k}, M_{t+k}) with random jumps in time (§5.2).

Frames are cropped to a square around the person (the union of the video's per-frame bounding boxes,
plus a margin) so the camera stays static within a clip, then resized to `image_size`; joints follow the
same affine map and become motion maps through a `Structure` renderer (joint heatmaps for bodies).

Every batch is a pure function of (seed, draw index, rank): resuming at a step redraws exactly the
batches an uninterrupted run would have seen, and no sampler state needs saving.

`cfg.root` may also be a prepared store (`structvid.data.prepare`: videos cropped and resized once, one
.npz per video); the sampler then reads those instead of decoding JPEGs, with identical batches.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from structvid.config import DataConfig
from structvid.data.penn_action import PennActionDataset
from structvid.errors import UserError
from structvid.io.images import to_tensor
from structvid.structure.base import Structure
from structvid.structure.framing import apply_affine, crop_affine, crop_frame, person_box
from structvid.structure.heatmaps import JointHeatmaps


@dataclass
class Video:
    frames: np.ndarray  # (T, S, S, 3) uint8, cropped and resized
    params: np.ndarray  # (T, ...) float32 structure parameters in output pixels (joints: (T, J, 3) [x, y, v])


def load_video(dataset: PennActionDataset, name: str, size: int, margin: float) -> Video:
    """Sequence `name` cropped to its `person_box` (one square for the whole video) and resized to `size`.

    Frames are decoded and cropped 32 at a time, so memory scales with the output, not the source.
    """
    seq = dataset.label(name)
    joints = seq.joints
    box = person_box(seq.bbox, joints, margin)
    chunks = (dataset.load_frames(name, range(i, min(i + 32, seq.nframes))) for i in range(0, seq.nframes, 32))
    frames = np.stack([crop_frame(f, box, size) for chunk in chunks for f in chunk])  # (T, S, S, 3)
    return Video(frames, apply_affine(joints, crop_affine(box, size)))


class ClipSampler:
    """Loads, crops and caches videos of a Penn Action layout folder and draws G_M samples from them."""

    def __init__(self, cfg: DataConfig, structure: Structure | None = None, names: list[str] | None = None,
                 cache_videos: int = 4096) -> None:
        self.cfg = cfg
        actions = cfg.actions or None
        # A prepared store (structvid.data.prepare) replaces JPEG decoding; `dataset` is then None.
        from structvid.data.prepare import PreparedStore, is_prepared

        self.store: PreparedStore | None = None
        self.dataset: PennActionDataset | None = None
        self.subjects: dict[str, str] | None = None  # a Human3.6M store's video -> subject (data/human36m.py)
        if is_prepared(cfg.root):
            from structvid.data.human36m import select_store_videos, store_subjects

            self.store = PreparedStore(cfg.root)
            self.store.check(cfg.image_size, cfg.crop_margin)
            self.subjects = store_subjects(self.store)
            listed = (self.store.select(actions, cfg.split) if self.subjects is None
                      else select_store_videos(self.store, self.subjects, actions, cfg.split))
            nframes = self.store.frame_count
        else:
            self.dataset = PennActionDataset(cfg.root, actions=actions, split=cfg.split)
            listed = self.dataset.names
            nframes = lambda n: self.dataset.label(n).nframes  # noqa: E731
        self.names = list(names) if names is not None else list(listed)
        self.structure = structure or JointHeatmaps()
        self.names = [n for n in self.names if nframes(n) >= 2]
        if cfg.part != "all" and self.subjects is not None:  # §7.1, Human3.6M: halves of the subjects
            from structvid.data.human36m import subjects_of

            self.names = [n for n in self.names if self.subjects[n] in subjects_of(cfg.part)]
        elif cfg.part != "all":  # §7.1: one third of the videos per stage, each action dealt evenly
            from structvid.data.penn_action import paper_split

            self.names = paper_split(self.names, cfg.part, actions={n: self.action(n) for n in self.names})
        if not self.names:
            raise UserError("no usable video (at least 2 frames) found", cfg.root)
        self.video = functools.lru_cache(maxsize=cache_videos)(self._load_video)

    def action(self, name: str) -> str:
        """The action label of video `name`."""
        return self.store.actions[name] if self.store is not None else self.dataset.label(name).action

    def _load_video(self, name: str) -> Video:
        if self.store is not None:
            return self.store.video(name)
        return load_video(self.dataset, name, self.cfg.image_size, self.cfg.crop_margin)

    def draw(self, rng: np.random.Generator, batch_size: int, names: list[str] | None = None) -> dict[str, Tensor]:
        """A batch of random jumps: video, t and k ∈ [1, max_jump] drawn per sample (§5.2)."""
        names = names if names is not None else self.names
        imgs_t, imgs_tk, joints_t, joints_tk = [], [], [], []
        for _ in range(batch_size):
            video = self.video(names[rng.integers(len(names))])
            n = len(video.frames)
            k = int(rng.integers(1, min(self.cfg.max_jump, n - 1) + 1))
            t = int(rng.integers(0, n - k))
            imgs_t.append(video.frames[t])
            imgs_tk.append(video.frames[t + k])
            joints_t.append(video.params[t])
            joints_tk.append(video.params[t + k])
        return self.to_batch(np.stack(imgs_t), np.stack(joints_t), np.stack(imgs_tk), np.stack(joints_tk))

    def to_batch(self, img_t: np.ndarray, j_t: np.ndarray, img_tk: np.ndarray, j_tk: np.ndarray) -> dict[str, Tensor]:
        size = self.cfg.image_size

        def maps(j: np.ndarray) -> Tensor:  # (N, J, 3) -> (N, J, S, S)
            return self.structure.render(torch.from_numpy(j), size, size)

        return {"image_t": to_tensor(img_t), "motion_t": maps(j_t), "image_tk": to_tensor(img_tk), "motion_tk": maps(j_tk),
                "joints_t": torch.from_numpy(j_t), "joints_tk": torch.from_numpy(j_tk)}  # (N, J, 3) output pixels


class ForecastBatches(torch.utils.data.Dataset):
    """Map-style dataset whose item `i` is the i-th batch drawn by this rank (use with batch_size=None).

    Sharded by rank: rank r draws only from videos r, r + world, ... and contributes batch_size / world
    samples to the global batch.
    """

    def __init__(self, sampler: ClipSampler, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 total: int = 1 << 62) -> None:
        if batch_size % world:
            raise UserError(f"train.batch_size ({batch_size}) must be divisible by the number of processes ({world})")
        self.sampler, self.per_rank, self.seed, self.rank, self.total = sampler, batch_size // world, seed, rank, total
        self.names = sampler.names[rank::world] or sampler.names

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([self.seed, index, self.rank])
        return self.sampler.draw(rng, self.per_rank, self.names)
