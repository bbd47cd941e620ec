"""`structvid bench faces`: speed and memory of the face path (§4: landmarks, 3DMM fit, normal maps; §5: G_M),
never asserted by tests (they depend on the machine).

`bench_faces` measures, on a real video and portrait:
- landmarks: dlib detection on the first frame + correlation tracking + 68-point prediction + One-Euro
  smoothing (`track_landmarks`), ms a frame over the video's first `frames` frames (decoded beforehand);
- fit: eos with one α per video (`FaceFitter.fit_video`: identity from 8 frames + a joint solve, then pose and
  β per frame), ms a frame over the same frames (the identity solve is a fixed cost spread over them), and the
  per-frame part alone (eos pose + β with α fixed);
- normal maps/s (`FaceNormals.render`, the motion maps M_t of §4) at each size, batches of `batch` fitted faces
  framed as the pipeline frames them, after a warm-up;
- retarget end to end at each size: `FaceRetarget.prepare` (portrait fit, reference track + fit, transfer) +
  `stream` (normal maps, G_M; G_R when the pipeline has one), no files written, over `frames` reference frames.
  Sizes without a given pipeline get a random-init G_M at the face demo's widths (configs/demo-faces-64.yaml:
  base 16, max 128): speed does not depend on the weights;
- peak resident memory (ru_maxrss of a fresh subprocess, with its resident size after loading beside it) of
  a retarget over the whole `video` and over a `long_seconds` reference made by looping `video`'s frames
  through a generator (decoded again each loop: nothing big is written or held).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from structvid.bench import significant
from structvid.structure.faces.video_fit import FaceSource

DEMO_WIDTH = 16  # configs/demo-faces-64.yaml: base_width 16, max_width 128, dense_growth 16


def random_face_pipeline(folder: str | Path, size: int, width: int = DEMO_WIDTH, seed: int = 0) -> Path:
    """A run folder with a random-init face G_M (3 normal-map channels, §4) at `size` and base `width`
    (max 8x, dense growth = width), crop margin 0.15: loadable by `FaceRetarget.from_pretrained`."""
    import yaml

    from structvid.config import ForecasterConfig
    from structvid.models.forecaster import Forecaster
    from structvid.models.saving import save_pretrained

    folder = Path(folder)
    torch.manual_seed(seed)
    g = Forecaster(ForecasterConfig(resolution=size, motion_channels=3, base_width=width, max_width=8 * width,
                                    dense_growth=width))
    save_pretrained(g, folder, "generator")
    (folder / "config.yaml").write_text(yaml.safe_dump({"structure": {"kind": "face_normals"},
                                                        "data": {"crop_margin": 0.15}}))
    return folder


@dataclass(frozen=True)
class LoopedSource(FaceSource):
    """`path`'s frames played over and over until `total` frames: a long reference without a long file."""

    total: int = 0

    def chunks(self, chunk: int = 32) -> Iterable[np.ndarray]:
        from structvid.io.video import iter_video

        done = 0
        while done < self.total:
            before = done
            for block in iter_video(self.path, chunk):
                block = block[: self.total - done]
                done += len(block)
                yield block
                if done >= self.total:
                    return
            if done == before:
                return  # an empty video: nothing to loop


def _prepare_source(retarget, image: np.ndarray, source: FaceSource, image_source: Path):
    """`FaceRetarget.prepare` for a FaceSource (not a file): fit the portrait and the source, set up the transfer."""
    from structvid.structure.faces.video_fit import fit_face_video
    from structvid.pipelines.conditions import ExpressionTransfer
    from structvid.pipelines.face_retarget import RetargetJob
    from structvid.structure.faces.transfer import TransferSettings

    target = retarget.fit_image(image, image_source, "largest")
    params, found, _ = fit_face_video(source, retarget.fitter)
    m = retarget.model
    return RetargetJob(ExpressionTransfer(target, params, m.n_id, m.n_exp, TransferSettings()), target, params,
                       found, source.fps)


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _rss_child() -> None:
    """Child process of `_peak_rss`: argv[1] is JSON {pipeline, image, video, frames (None: the whole video)};
    prints one JSON line {loaded_rss_mib, peak_rss_mib, frames, seconds}."""
    args = json.loads(sys.argv[1])
    from structvid.io.images import load_image
    from structvid.pipelines.face_retarget import FaceRetarget
    from structvid.structure.faces.landmarks import default_detector

    retarget = FaceRetarget.from_pretrained(args["pipeline"], device="cpu")
    retarget.fitter, default_detector()  # load the 3DMM and dlib's models before the baseline
    image_path, video = Path(args["image"]), Path(args["video"])
    image = load_image(image_path)
    loaded = _proc_status_kib("VmRSS")
    t0 = time.perf_counter()
    if args["frames"] is None:
        job = retarget.prepare(image, video, pick="largest", image_source=image_path)
    else:
        base = FaceSource.from_video(video)
        job = _prepare_source(retarget, image, LoopedSource(base.name, base.label, base.path, (), base.fps,
                                                            args["frames"]), image_path)
    n = sum(len(part.frames) for part in retarget.stream(image, job))  # frames dropped as they come
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    if sys.platform == "darwin":
        peak //= 1024  # bytes there
    print(json.dumps({"loaded_rss_mib": None if loaded is None else round(loaded / 1024, 1),
                      "peak_rss_mib": round(peak / 1024, 1), "frames": n,
                      "seconds": round(time.perf_counter() - t0, 1)}))


def _peak_rss(pipeline: Path, image: Path, video: Path, frames: int | None) -> dict:
    """Run `_rss_child` in a fresh interpreter (so earlier allocations of this process do not count)."""
    arg = json.dumps({"pipeline": str(pipeline), "image": str(image), "video": str(video), "frames": frames})
    proc = subprocess.run([sys.executable, "-c", "from structvid.faces_bench import _rss_child; _rss_child()", arg],
                          capture_output=True, text=True, env=os.environ.copy())
    if proc.returncode != 0:
        raise RuntimeError(f"peak-memory subprocess failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def bench_faces(retarget=None, video: Path = Path("../shared/data/faces/d3.mp4"),
                image: Path = Path("../shared/data/faces/s42.jpg"), sizes: Sequence[int] = (64, 128),
                frames: int = 64, skip_long: bool = False, long_seconds: float = 300.0, batch: int = 32,
                width: int = DEMO_WIDTH, reps: int = 3) -> dict:
    """The face path's figures (module docstring) as one JSON-able dict. `retarget`: a `FaceRetarget` timed at
    its own size (added to `sizes` if missing) and used for the peak-memory runs; None: random pipelines only.
    `skip_long`: leave out the `long_seconds` reference (at 300 s, 9000 frames of d3, it took ~290 s on one
    core: ~30 ms a reference frame to decode, track and fit). The other figures take ~30 s at the defaults."""
    from structvid.io.images import load_image
    from structvid.io.video import iter_video, video_rate
    from structvid.pipelines.conditions import ExpressionTransfer
    from structvid.pipelines.face_retarget import FaceRetarget, RetargetJob
    from structvid.structure.faces.fitting import FaceFitter
    from structvid.structure.faces.landmarks import default_detector, track_landmarks
    from structvid.structure.faces.morphable import default_model
    from structvid.structure.faces.normals import FaceNormals
    from structvid.structure.framing import crop_affine

    video, image = Path(video), Path(image)
    if frames < 2:
        raise ValueError(f"frames must be >= 2, got {frames}")
    sizes = list(dict.fromkeys(int(s) for s in sizes))
    if retarget is not None and retarget.pipe.size not in sizes:
        sizes.append(retarget.pipe.size)
    fps = video_rate(video)
    detector = default_detector()
    fitter = retarget.fitter if retarget is not None else FaceFitter(None)
    report: dict = {"bench": "faces",
                    "device": f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})",
                    "video": str(video), "image": str(image)}

    # landmarks (detect + track) and fit, on the first `frames` frames decoded beforehand
    chunks, got = [], 0
    for block in iter_video(video, 32):
        chunks.append(block[: frames - got])
        got += len(chunks[-1])
        if got >= frames:
            break
    hw = chunks[0].shape[1:3]
    t0 = time.perf_counter()
    tracked = list(track_landmarks(chunks, detector, rate=fps, source=video))
    t_lm = time.perf_counter() - t0
    lm, found = np.concatenate([t[0] for t in tracked]), np.concatenate([t[1] for t in tracked])
    t0 = time.perf_counter()
    params = fitter.fit_video(lm, hw, found=found, rate=fps)
    t_fit = time.perf_counter() - t0
    alpha = params[0, 6 : 6 + fitter.model.n_id]
    t0 = time.perf_counter()
    for x in lm:
        fitter.fit_image(x, hw, alpha=alpha, iterations=1)
    t_frame = time.perf_counter() - t0
    report.update({"frames": got, "video_size": f"{hw[1]}x{hw[0]}",
                   "landmarks_ms_per_frame": significant(1000 * t_lm / got),
                   "fit_video_ms_per_frame": significant(1000 * t_fit / got),
                   "fit_frame_ms": significant(1000 * t_frame / got)})

    # normal maps (§4): the fitted faces framed as the pipeline frames them (crop margin 0.15)
    structure = FaceNormals(default_model(""))
    reps_idx = np.arange(batch) % len(params)
    for s in sorted(sizes, reverse=True):
        p = structure.transform(params[reps_idx], crop_affine(structure.box(params, 0.15), s))
        pt = torch.from_numpy(np.ascontiguousarray(p, np.float32))
        structure.render(pt, s, s)  # warm-up
        t = _median_time(lambda: structure.render(pt, s, s), reps)
        report[f"normal_maps_per_s_{s}"] = significant(batch / t)
    report["normal_maps_batch"] = batch

    # retarget end to end at each size
    portrait = load_image(image)
    models: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="structvid-faces-bench-") as tmp:
        pipelines: dict[int, Path | None] = {}
        for s in sizes:
            if retarget is not None and retarget.pipe.size == s:
                r = retarget
                models[str(s)] = f"given: {retarget.pipe.source}"
                pipelines[s] = retarget.pipe.source
            else:
                folder = random_face_pipeline(Path(tmp) / f"g{s}", s, width)
                r = FaceRetarget.from_pretrained(folder, device="cpu")
                r._fitter = fitter  # one loaded 3DMM fitter for all sizes
                models[str(s)] = f"random init, base width {width}, max {8 * width}"
                pipelines[s] = folder
            t0 = time.perf_counter()
            job = r.prepare(portrait, video, pick="largest", image_source=image, max_frames=frames)
            t_prep = time.perf_counter() - t0
            m = r.model
            warm = RetargetJob(ExpressionTransfer(job.target, job.reference[:4], m.n_id, m.n_exp), job.target,
                               job.reference[:4], job.found[:4], job.fps)
            for _ in r.stream(portrait, warm):  # warm-up (oneDNN primitives)
                pass
            t0 = time.perf_counter()
            n = sum(len(part.frames) for part in r.stream(portrait, job))
            t_gen = time.perf_counter() - t0
            report[f"e2e_frames_per_s_{s}"] = significant(n / (t_prep + t_gen))
            report[f"e2e_prepare_s_{s}"] = significant(t_prep)
            report[f"generate_frames_per_s_{s}"] = significant(n / t_gen)
            report[f"precision_{s}"] = r.pipe.precision
        report["e2e_models"] = models

        # peak resident memory in fresh processes, at the first size's pipeline
        s0 = retarget.pipe.size if retarget is not None and retarget.pipe.source is not None else sizes[0]
        rss_pipe = pipelines[s0]
        if rss_pipe is None:  # an in-memory retarget cannot be reloaded in a subprocess
            s0 = sizes[0]
            rss_pipe = pipelines[s0] or random_face_pipeline(Path(tmp) / "rss", s0, width)
        n_video = sum(len(b) for b in iter_video(video, 64))
        report["rss_pipeline"] = f"{s0}x{s0}: {models.get(str(s0), 'random init')}"
        short = _peak_rss(rss_pipe, image, video, None)
        report.update({"rss_short_reference": f"{video.name}: {n_video} frames, {n_video / fps:.1f} s",
                       "rss_short_peak_mib": short["peak_rss_mib"], "rss_short_loaded_mib": short["loaded_rss_mib"],
                       "rss_short_s": short["seconds"]})
        if not skip_long:
            total = int(round(long_seconds * fps))
            long = _peak_rss(rss_pipe, image, video, total)
            report.update({"rss_long_reference": f"{video.name} looped: {long['frames']} frames, "
                                                 f"{long['frames'] / fps:.0f} s",
                           "rss_long_peak_mib": long["peak_rss_mib"], "rss_long_loaded_mib": long["loaded_rss_mib"],
                           "rss_long_s": long["seconds"]})
    return report
