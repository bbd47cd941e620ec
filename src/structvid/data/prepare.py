"""Prepared stores: every video of a Penn Action layout cropped and resized once (§7.1), read back fast.

    prepare_dataset("data/penn_action", "data/penn_action-64", image_size=64)   # once
    DataConfig(root="data/penn_action-64", image_size=64)                       # ClipSampler reads the store

A store is a folder::

    OUT/prepared.json     index: format, version, image_size, crop_margin, source root, the actions kept
                          (null: all) and, per video (in source order): its file, frame count, action,
                          pose (camera view) and official train flag
    OUT/videos/NAME.npz   frames uint8 (T, S, S, 3); joints float32 (T, J, 3) [x, y, visibility] in output
                          pixels; box float64 (3,) the crop square (cx, cy, side) in source pixels;
                          action, pose, name (strings) and train (int) as 0-d arrays

Cropping is exactly `structvid.data.clips.load_video` (the square `person_box` around the whole video plus
`crop_margin`, resized to `image_size`), so a `ClipSampler` on the store draws the same batches as one on
the source folder. The .npz files are written with fixed zip timestamps: a store's bytes depend only on
the source and the settings, not on the number of workers or the time of day.
"""

from __future__ import annotations

import functools
import io
import json
import math
import time
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, Iterable, Sequence

import numpy as np

from structvid.data.clips import Video, load_video, person_box
from structvid.data.penn_action import SPLITS, PennActionDataset, in_split
from structvid.structure.skeleton import PENN_ACTIONS
from structvid.errors import UserError
from structvid.io.files import atomic_dir, atomic_path

__all__ = ["INDEX", "PreparedStore", "is_prepared", "prepare_dataset", "bench_prepare"]

INDEX = "prepared.json"
FORMAT = "structvid.prepared"
VERSION = 1
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: reproducible bytes
# zlib level 6 (zlib's and np.savez_compressed's default): 15% smaller than level 1 on puppet frames, about
# the same as 9; decoding the JPEGs, not compressing, dominates the time.
_COMPRESSLEVEL = 6


def is_prepared(root: str | Path) -> bool:
    """True when `root` holds a prepared store (its index file exists)."""
    return (Path(root) / INDEX).is_file()


# ---------------------------------------------------------------- reading


class PreparedStore:
    """Reader of a prepared store: `names` (sorted as in the source), per-name dicts `nframes`, `actions`,
    `poses`, `train` (official split flag) and `video(name)` -> `Video` in output pixels."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.index_path = self.root / INDEX
        if not self.index_path.is_file():
            raise UserError(f"not a prepared store: {INDEX} missing", self.root)
        try:
            meta = json.loads(self.index_path.read_text())
            if meta.get("format") != FORMAT:
                raise ValueError(f"format is {meta.get('format')!r}, expected {FORMAT!r}")
            if meta.get("version") != VERSION:
                raise ValueError(f"version {meta.get('version')!r} is not supported (expected {VERSION})")
            self.image_size = int(meta["image_size"])
            self.crop_margin = float(meta["crop_margin"])
            self.source = str(meta["source"])
            videos: dict[str, dict[str, Any]] = meta["videos"]
            self.names: list[str] = list(videos)
            self.files = {n: str(v["file"]) for n, v in videos.items()}
            self.nframes = {n: int(v["nframes"]) for n, v in videos.items()}
            self.actions = {n: str(v["action"]) for n, v in videos.items()}
            self.poses = {n: str(v["pose"]) for n, v in videos.items()}
            self.train = {n: int(v["train"]) for n, v in videos.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise UserError(f"not a valid prepared-store index ({type(e).__name__}: {e})", self.index_path) from None

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return f"PreparedStore({str(self.root)!r}, {len(self)} videos, {self.image_size}px)"

    def check(self, image_size: int, crop_margin: float) -> None:
        """UserError naming prepared.json when the store was made with other crop settings."""
        if image_size != self.image_size or not math.isclose(crop_margin, self.crop_margin, rel_tol=1e-9):
            raise UserError(
                f"store was prepared with image_size={self.image_size}, crop_margin={self.crop_margin} but the "
                f"config asks for image_size={image_size}, crop_margin={crop_margin}; prepare it again "
                f"(structvid.data.prepare.prepare_dataset) or change data.image_size / data.crop_margin",
                self.index_path)

    def select(self, actions: Iterable[str] | None = None, split: str = "all") -> list[str]:
        """Names filtered like `PennActionDataset(actions=..., split=...)` (same checks, same order)."""
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}", self.root)
        names = self.names
        if actions is not None:
            actions = tuple(actions)
            unknown = sorted(set(actions) - set(PENN_ACTIONS))
            if unknown:
                raise UserError(f"unknown action(s) {', '.join(unknown)}; known: {', '.join(PENN_ACTIONS)}", self.root)
            names = [n for n in names if self.actions[n] in actions]
        if split != "all":
            names = [n for n in names if in_split(self.train[n], split)]
        return list(names)

    def frame_count(self, name: str) -> int:
        if name not in self.nframes:
            raise UserError(f"video {name!r} is not in the store", self.index_path)
        return self.nframes[name]

    def video(self, name: str) -> Video:
        """Frames (T, S, S, 3) uint8 and structure parameters (T, ...) float32 of video `name` (bodies: "joints"
        (T, J, 3); faces: "params" (T, P), data/faces.py)."""
        self.frame_count(name)
        path = self.root / self.files[name]
        try:
            with np.load(path, allow_pickle=False) as data:
                frames, joints = data["frames"], data["params" if "params" in data.files else "joints"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as e:
            raise UserError(f"cannot read prepared video ({type(e).__name__}: {e})", path) from None
        s, t = self.image_size, self.nframes[name]
        if frames.shape != (t, s, s, 3) or frames.dtype != np.uint8 or joints.shape[:1] != (t,) or joints.ndim < 2:
            raise UserError(f"frames {frames.shape} {frames.dtype} / joints {joints.shape} disagree with the index "
                            f"({t} frames of {s}x{s})", path)
        return Video(frames, joints)


# ---------------------------------------------------------------- writing


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez_compressed with fixed member timestamps (byte-reproducible), written atomically."""
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w") as zf:
            for key, arr in arrays.items():
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.asanyarray(arr), allow_pickle=False)
                zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_TIME), buf.getvalue(),
                            compress_type=zipfile.ZIP_DEFLATED, compresslevel=_COMPRESSLEVEL)


@dataclass(frozen=True)
class _Job:
    root: str
    out: str  # the temporary store folder
    name: str
    size: int
    margin: float


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)  # the processes are the parallelism: no oversubscribed OpenCV thread pools


@functools.lru_cache(maxsize=4)
def _dataset(root: str) -> PennActionDataset:
    return PennActionDataset(root)  # one per worker process: lists the labels once, caches them


def _prepare_one(job: _Job) -> tuple[str, dict[str, Any] | None, str | None]:
    """Crop, resize and write one video: (name, index entry, None) or (name, None, problem)."""
    try:
        dataset = _dataset(job.root)
        seq = dataset.label(job.name)
        video = load_video(dataset, job.name, job.size, job.margin)
        box = np.asarray(person_box(seq.bbox, seq.joints, job.margin), np.float64)
        rel = f"videos/{job.name}.npz"
        write_npz(Path(job.out) / rel, {
            "frames": video.frames, "joints": video.params.astype(np.float32), "box": box,
            "action": np.array(seq.action), "pose": np.array(seq.pose), "name": np.array(job.name),
            "train": np.array(int(seq.train)),
        })
        return job.name, {"file": rel, "nframes": int(len(video.frames)), "action": seq.action, "pose": seq.pose,
                          "train": int(seq.train)}, None
    except UserError as e:
        return job.name, None, str(e)
    except Exception as e:  # noqa: BLE001 - a corrupt input can make cv2 / scipy raise anything; report it
        return job.name, None, f"{job.name}: {type(e).__name__}: {e}"


def prepare_dataset(root: str | Path, out: str | Path, image_size: int, crop_margin: float = 0.15, workers: int = 2,
                    progress: bool = True, actions: Sequence[str] | None = None) -> Path:
    """Crop, resize and store every video of the Penn Action layout `root` once; returns `out`.

    `actions` keeps only those actions (e.g. the paper's 8, §7.1). Videos are processed by `workers`
    spawned processes (1: in this process); the store does not depend on `workers`. Everything is written
    into a temporary folder beside `out` and renamed at the end. Unreadable videos are all collected and
    reported together as one UserError, leaving nothing behind. An existing `out` is replaced only if it is
    empty or a prepared store.
    """
    root, out = Path(root), Path(out)
    if image_size < 1 or crop_margin < 0 or workers < 1:
        raise UserError(f"need image_size >= 1, crop_margin >= 0 and workers >= 1, got {image_size}, {crop_margin}, "
                        f"{workers}")
    if out.resolve() == root.resolve():
        raise UserError("the prepared store must not replace its source folder", out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not is_prepared(out))):
        raise UserError(f"exists and is not a prepared store ({INDEX} missing); refusing to replace it", out)
    dataset = PennActionDataset(root, actions=actions)
    if not dataset.names:
        raise UserError("no video to prepare", root)
    _dataset.cache_clear()  # workers == 1 runs here: never reuse labels read by an earlier call
    entries: dict[str, dict[str, Any]] = {}
    problems: dict[str, str] = {}
    with atomic_dir(out) as tmp:
        jobs = [_Job(str(root.resolve()), str(tmp), n, image_size, float(crop_margin)) for n in dataset.names]
        from tqdm import tqdm

        with tqdm(total=len(jobs), desc="prepare", unit="video", disable=not progress) as bar:
            if workers == 1:
                results: Iterable = map(_prepare_one, jobs)
                pool = None
            else:  # spawn: never fork a parent that may hold torch / BLAS threads
                pool = ProcessPoolExecutor(min(workers, len(jobs)), mp_context=get_context("spawn"),
                                           initializer=_init_worker)
                results = pool.map(_prepare_one, jobs, chunksize=max(1, min(16, len(jobs) // (8 * workers))))
            try:
                for name, entry, problem in results:
                    if problem is None:
                        entries[name] = entry  # type: ignore[assignment]
                    else:
                        problems[name] = problem
                    bar.update()
            finally:
                if pool is not None:
                    pool.shutdown(cancel_futures=True)
        if problems:
            listed = "; ".join(problems[n] for n in dataset.names if n in problems)
            raise UserError(f"{len(problems)} of {len(jobs)} video(s) could not be prepared, nothing was written: "
                            f"{listed}", root)
        index = {"format": FORMAT, "version": VERSION, "image_size": image_size, "crop_margin": float(crop_margin),
                 "source": str(root.resolve()), "actions": None if actions is None else sorted(actions),
                 "num_videos": len(entries),
                 "num_frames": sum(e["nframes"] for e in entries.values()),
                 "videos": {n: entries[n] for n in dataset.names}}
        with atomic_path(tmp / INDEX) as p:
            p.write_text(json.dumps(index, indent=1) + "\n")
    return out


# ---------------------------------------------------------------- benchmark


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def bench_prepare(penn_labels: str | Path | None = None, size: int = 64, workers: int = 2,
                  num_videos: int | None = None, work_dir: str | Path | None = None,
                  source: str | Path | None = None) -> dict[str, float]:
    """Time `prepare_dataset` on puppet renders of the Penn labels (`make_puppet_dataset(source="penn")`),
    or on an existing Penn layout folder `source` (then nothing is rendered and render_s is 0).

    Returns videos, frames, seconds for rendering the puppets and for preparing, prepared frames / s,
    and the source (JPEG) and store sizes in MB. `work_dir` (default: a temporary folder) receives both.
    """
    from structvid.data.puppet import make_puppet_dataset

    with TemporaryDirectory(dir=work_dir) as tmp:
        src, dst = (Path(tmp) / "puppet" if source is None else Path(source)), Path(tmp) / "prepared"
        t0 = time.perf_counter()
        if source is None:
            if penn_labels is None:
                raise UserError("bench_prepare needs penn_labels (a Penn Action labels folder) or source")
            make_puppet_dataset(src, num_videos, size=size, source="penn", penn_labels=penn_labels, workers=workers)
        render_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        prepare_dataset(src, dst, size, workers=workers, progress=False)
        prepare_s = time.perf_counter() - t0
        store = PreparedStore(dst)
        frames = sum(store.nframes.values())
        return {"videos": float(len(store)), "frames": float(frames), "size": float(size), "workers": float(workers),
                "render_s": render_s, "prepare_s": prepare_s, "prepare_fps": frames / prepare_s,
                "source_mb": _folder_bytes(src) / 1e6, "store_mb": _folder_bytes(dst) / 1e6}
