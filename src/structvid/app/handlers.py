"""What the web page does, as plain functions: animate a person, retarget a face, refine a video.

    jobs = Jobs(AppSettings())                       # models load on first use and stay loaded
    result = jobs.animate("photo.png", source=EXAMPLE_MOTION, motion="squat")
    result.video, result.panel                       # MP4s in jobs.out_root (served to the browser)
    jobs.close()                                     # removes jobs.out_root

Each job calls the library functions the `structvid generate / retarget / refine` commands call
(`ImageToVideoPipeline.stream` and `forecast_poses`, `FaceRetarget.prepare` + `write_retarget`,
`ImageToVideoPipeline.refine_video`) and writes the same videos: the output and the panel (input | condition |
coarse | refined | mask, the paper's stages side by side: G_C's structures §4, G_M's coarse frames Eq. 7-8,
G_R's refined frames and its mask Eq. 15).

Uploads are checked against `Limits` (file size; video and pose-sequence length), copied into a job folder
(`tempfile.TemporaryDirectory`, removed when the job ends, whatever happens) and decoded there; the finished
videos are moved to `out_root/jobs/N/` (a per-process folder in the system's temp folder; the last few jobs'
videos are kept for the browser, older ones removed; `close` removes it). A problem with an upload raises
`UserError` whose message names the uploaded file by its own name, as the CLI names the file it was given
(`error_line` makes the CLI's one line). One job runs at a time per process (`Jobs.lock`); `progress(fraction,
stage)` reports each stage and raises `JobCancelled` once `cancel()` was called, so a job stops at its next
stage or chunk of frames.
"""

from __future__ import annotations

import itertools
import logging
import re
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from structvid.errors import UserError

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_DIR = ASSETS / "demo"
FACE_DEMO_DIR = ASSETS / "face_demo"
EXAMPLE_DIR = DEMO_DIR / "example"
EXAMPLE_IMAGE = EXAMPLE_DIR / "image.png"
EXAMPLE_COARSE = EXAMPLE_DIR / "coarse.mp4"  # the bundled G_M's coarse video of the example (Refine tab)
EXAMPLE_COARSE_POSES = EXAMPLE_DIR / "coarse_poses.json"
OWN_MOTION = "baseball_pitch"  # the example's own poses (example/poses.json)

# where the structures (§4, G_C) of an animation come from
EXAMPLE_MOTION, POSE_FILE, FORECAST = "example motion", "pose file", "forecast (pose LSTM)"
STRUCTURE_SOURCES = (EXAMPLE_MOTION, POSE_FILE, FORECAST)

KEEP_JOBS = 4  # finished jobs whose videos stay in out_root for the browser


@dataclass(frozen=True)
class Limits:
    """What the page accepts: upload size, and length of videos and pose sequences (generated videos too)."""

    max_upload_mb: float = 50.0
    max_seconds: float = 30.0
    fps: float = 12.0  # frame rate of generated videos, as `structvid generate` (its default)

    @property
    def max_frames(self) -> int:
        """Generated frames allowed: max_seconds at fps."""
        return max(1, int(self.max_seconds * self.fps))


@dataclass(frozen=True)
class AppSettings:
    checkpoint: Path = DEMO_DIR  # body pipeline (pipeline folder, G_M or G_R run), as `generate --checkpoint`
    face_checkpoint: Path = FACE_DEMO_DIR  # face pipeline, as `retarget --checkpoint`
    limits: Limits = field(default_factory=Limits)
    device: str = "auto"
    precision: str = "auto"


@dataclass
class JobResult:
    video: Path  # the output video (MP4)
    panel: Path  # the panel video: the stages side by side
    frames: int
    seconds: float  # the output's length at its frame rate
    summary: str  # Markdown: what was made and how long each stage took


class JobCancelled(Exception):
    """The person cancelled the job."""


Progress = Callable[[float | None, str], None]


def error_line(e: BaseException) -> str:
    """The one line `structvid` prints for an error (cli.main): "error: FILE: problem"."""
    from structvid.io.files import describe_os_error

    if isinstance(e, UserError):
        return f"error: {e}"
    if isinstance(e, OSError):
        return f"error: {describe_os_error(e, action='accessing')}"
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if isinstance(e, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text:
        return ("error: out of memory (could not allocate enough): use a smaller model, resolution or number of "
                "frames")
    return f"error: {type(e).__name__}: {text}"  # a bug, not the person's input: the server log has the traceback


def motions() -> dict[str, Path]:
    """Bundled example motions for the example image: name -> pose file (the example's own first)."""
    found = {OWN_MOTION: EXAMPLE_DIR / "poses.json"}
    found.update({p.stem: p for p in sorted((EXAMPLE_DIR / "motions").glob("*.json"))})
    return found


def example_faces(roots: Iterable[Path] | None = None) -> tuple[Path, Path] | None:
    """The face demo's portrait and reference video (s42.jpg, d0.mp4) where a local copy exists: the shared data
    folder beside the working directory or the repository (as `structvid demo --task face`), or the download
    cache. None when neither has them (`fetch_example_faces` downloads them)."""
    from structvid.io.download import KNOWN, cache_dir

    if roots is None:
        repo = Path(__file__).resolve().parents[3]
        roots = [Path.cwd().parent / "shared" / "data" / "faces", repo.parent / "shared" / "data" / "faces"]
    for root in [*roots, None]:
        if root is None:
            image, ref = (cache_dir() / KNOWN[k].filename for k in ("face_demo_portrait", "face_demo_reference"))
        else:
            image, ref = root / "s42.jpg", root / "d0.mp4"
        if image.is_file() and ref.is_file():
            return image, ref
    return None


def fetch_example_faces() -> tuple[Path, Path]:
    """The face demo's portrait and reference: local copies, else downloaded once (pinned checksums)."""
    from structvid.io.download import fetch

    return example_faces() or (fetch("face_demo_portrait", progress=False), fetch("face_demo_reference",
                                                                                   progress=False))


def video_seconds(path: Path) -> float:
    """Length of a video's first stream in seconds (frames / rate where the container does not say)."""
    from structvid.io.video import _video_stream

    with _video_stream(path) as (container, stream):
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / 1e6  # av.time_base: microseconds
        rate = float(stream.average_rate or stream.guessed_rate or 25)
        return sum(1 for p in container.demux(stream) if p.size) / rate if rate else 0.0


class _Job:
    """One job's folder and clock: uploads are copied in, errors name them as the person knows them."""

    def __init__(self, limits: Limits, progress: Progress) -> None:
        self.limits = limits
        self._progress = progress
        self._tmp = tempfile.TemporaryDirectory(prefix="structvid-job-")
        self.dir = Path(self._tmp.name)
        self.start = self._mark = time.perf_counter()
        self.stages: list[tuple[str, float]] = []
        self._stage: str | None = None
        self._fraction = 0.0

    def close(self) -> None:
        self._tmp.cleanup()

    def stage(self, name: str, fraction: float | None = None) -> None:
        """Start stage `name` (timed for the summary) and report it."""
        now = time.perf_counter()
        if self._stage is not None:
            self.stages.append((self._stage, now - self._mark))
        self._stage, self._mark = name, now
        self.report(fraction, name)

    def report(self, fraction: float | None, text: str) -> None:
        """Report progress; a stage without its own measure keeps the last fraction (the page shows the name
        only beside a fraction)."""
        self._fraction = self._fraction if fraction is None else fraction
        self._progress(self._fraction, text)

    def finish(self) -> float:
        """Close the last stage; seconds since the job started."""
        now = time.perf_counter()
        if self._stage is not None:
            self.stages.append((self._stage, now - self._mark))
            self._stage = None
        return now - self.start

    def upload(self, path: str | Path | None, what: str) -> Path:
        """Copy an upload into the job folder under its own name, after checking its size."""
        if path is None or str(path) == "":
            raise UserError(f"no {what} given: upload one or pick an example")
        src = Path(path)
        if not src.is_file():
            raise UserError(f"{what} not found", src.name)
        mb = src.stat().st_size / 2**20
        if mb > self.limits.max_upload_mb:
            raise UserError(f"is {mb:.3g} MB; this page accepts files up to {self.limits.max_upload_mb:g} MB "
                            "(structvid app --max-upload-mb)", src.name)
        folder = Path(tempfile.mkdtemp(dir=self.dir))  # one folder per upload: two files may share a name
        dst = folder / (re.sub(r"[^\w.\- ]", "_", src.name) or "upload")
        shutil.copyfile(src, dst)
        return dst

    def check_video(self, path: Path) -> None:
        seconds = video_seconds(path)
        if seconds > self.limits.max_seconds:
            raise UserError(f"is {seconds:.1f} s long; this page accepts videos up to {self.limits.max_seconds:g} s "
                            "(structvid app --max-seconds)", path)

    def check_frames(self, count: int, path: Path | None) -> None:
        lim = self.limits
        if count > lim.max_frames:
            raise UserError(f"has {count} poses: {count / lim.fps:.1f} s at {lim.fps:g} frames/s, over this page's "
                            f"limit of {lim.max_seconds:g} s (structvid app --max-seconds)", path)

    def user_error(self, e: UserError) -> UserError:
        """The same error, naming an uploaded file by its own name instead of its path in the job folder."""
        inside = re.compile(re.escape(str(self.dir)) + r"/[^/]+/")  # job folder / one folder per upload /
        path = None if e.path is None else inside.sub("", e.path)
        return UserError(inside.sub("", e.problem), path)


class Jobs:
    """The page's jobs with their models (loaded on first use, kept) and output folder; one job at a time."""

    def __init__(self, settings: AppSettings | None = None, out_root: Path | None = None) -> None:
        self.settings = settings or AppSettings()
        self.out_root = Path(out_root or tempfile.mkdtemp(prefix="structvid-app-"))
        self.lock = threading.Lock()  # one job at a time (the page's queue keeps the others waiting)
        self._cancel = threading.Event()
        self._owner: object = None  # who started the running job (the page: its browser session)
        self._models: dict[tuple, object] = {}
        self._count = 0

    # ------------------------------------------------------------------ plumbing

    def close(self) -> None:
        """Remove the output folder (the videos served to the browser)."""
        shutil.rmtree(self.out_root, ignore_errors=True)

    def cancel(self, owner: object = None) -> None:
        """Stop the running job (only when `owner` started it, if given) at its next stage or chunk of frames."""
        if owner is None or owner == self._owner:
            self._cancel.set()

    def _run(self, work: Callable[[_Job], JobResult], progress: Progress | None, owner: object) -> JobResult:
        say = progress or (lambda fraction, text: None)

        def checked(fraction: float | None, text: str) -> None:
            if self._cancel.is_set():
                raise JobCancelled("cancelled")
            say(fraction, text)

        with self.lock:
            self._cancel.clear()
            self._owner = owner
            job = _Job(self.settings.limits, checked)
            try:
                job.stage("loading the models", 0.0)  # the first job also imports the pipelines
                return work(job)
            except JobCancelled:
                log.info("job cancelled")
                raise
            except UserError as e:
                raise job.user_error(e) from None
            finally:
                job.close()
                self._cancel.clear()
                self._owner = None

    def _out_dir(self) -> Path:
        """A new folder for one job's videos; folders of older jobs (already sent to the browser) are removed."""
        self._count += 1
        jobs = self.out_root / "jobs"
        for old in jobs.glob("*") if jobs.is_dir() else []:
            if old.name.isdigit() and int(old.name) <= self._count - KEEP_JOBS:
                shutil.rmtree(old, ignore_errors=True)
        out = jobs / str(self._count)
        out.mkdir(parents=True)
        return out

    def _publish(self, *files: Path) -> list[Path]:
        """Move finished videos from the job folder to the served output folder."""
        out = self._out_dir()
        return [Path(shutil.move(str(f), out / f.name)) for f in files]

    def _loaded(self, key: tuple, load: Callable[[], object]):
        """Each model is loaded once per process."""
        if key not in self._models:
            self._models[key] = load()
        return self._models[key]

    def body_pipeline(self, refine: bool = True):
        """The body ImageToVideoPipeline (G_M, G_R when `refine`, pose LSTM), loaded once."""
        from structvid.pipelines.image_to_video import ImageToVideoPipeline

        s = self.settings
        return self._loaded(("body", refine), lambda: ImageToVideoPipeline.from_pretrained(
            s.checkpoint, device=s.device, refine=refine, precision=s.precision))

    def face_retarget(self, refine: bool = True):
        """The FaceRetarget (face pipeline + landmark detector + 3DMM fitter), loaded once."""
        from structvid.pipelines.face_retarget import FaceRetarget

        s = self.settings
        return self._loaded(("face", refine), lambda: FaceRetarget.from_pretrained(
            s.face_checkpoint, device=s.device, refine=refine, precision=s.precision))

    # ------------------------------------------------------------------ the three jobs

    def animate(self, image: str | Path | None, source: str = EXAMPLE_MOTION, motion: str = OWN_MOTION,
                pose_file: str | Path | None = None, frames: int = 38, refine: bool = True,
                progress: Progress | None = None, owner: object = None) -> JobResult:
        """Animate a photo (§3): with given poses (an uploaded pose file or a bundled example motion), or with
        poses the LSTM forecasts (§4, Eq. 3-5) from the observed ones (the uploaded file's, else the motion's)
        -- as `structvid generate --poses` / `--observed-poses --frames`."""
        if source not in STRUCTURE_SOURCES:
            raise UserError(f"structure source must be one of {', '.join(STRUCTURE_SOURCES)}, got {source!r}")

        def work(job: _Job) -> JobResult:
            from structvid.io.images import load_image
            from structvid.io.poses import load_poses

            pipe = self.body_pipeline(refine)
            job.stage("reading the photo")
            img = load_image(job.upload(image, "photo"))
            uploaded = source == POSE_FILE or (source == FORECAST and pose_file not in (None, ""))
            if uploaded:
                poses_path, what = job.upload(pose_file, "pose file"), "uploaded poses"
            else:
                known = motions()
                if motion not in known:
                    raise UserError(f"unknown example motion {motion!r}; one of {', '.join(known)}")
                poses_path, what = known[motion], f"example motion {motion}"
            joints = pipe.structure.channels
            observed = None
            if source == FORECAST:
                if pipe.pose_model is None:
                    pipe.load_pose_model(DEMO_DIR)
                if not 1 <= int(frames) <= job.limits.max_frames:
                    raise UserError(f"frames must be 1-{job.limits.max_frames} (structvid app --max-seconds)")
                job.stage("reading the observed poses")
                t_obs = pipe.pose_model.config.observed
                observed = load_poses(poses_path, num_joints=joints, min_frames=t_obs, image_size=img.shape[:2])
                # an uploaded file ends at the image's pose (generate --observed-poses); an example motion starts
                # at it, and its first T_obs poses are observed (structvid demo)
                image_pose = observed[-1] if uploaded else observed[0]
                observed = observed if uploaded else observed[:t_obs]
                job.stage(f"forecasting {int(frames)} poses with the pose LSTM (G_C, §4)")
                poses = pipe.forecast_poses(observed, int(frames))
                chunks = pipe.stream(img, poses, image_pose=image_pose)
                how = f"{int(frames)} poses forecast by the LSTM from the {len(observed)} observed ({what})"
            else:
                job.stage("reading the poses")
                poses = load_poses(poses_path, num_joints=joints, min_frames=2, image_size=img.shape[:2])
                job.check_frames(len(poses), poses_path if source == POSE_FILE else None)
                chunks = pipe.stream(img, poses)
                how = f"{len(poses)} given poses ({what})"
            video, panel = self._write_body(job, pipe, chunks, len(poses), "animate", observed)
            return self._result(job, pipe, video, panel, len(poses), how)

        return self._run(work, progress, owner)

    def refine(self, video: str | Path | None, pose_file: str | Path | None, progress: Progress | None = None,
               owner: object = None) -> JobResult:
        """G_R alone on a video made by any generator and its poses (§7.4, Fig. 12), as `structvid refine`."""

        def work(job: _Job) -> JobResult:
            from structvid.io.poses import load_poses
            from structvid.io.video import iter_video, video_rate

            pipe = self.body_pipeline(True)
            if pipe.refiner is None:
                raise UserError("has no refiner (G_R): train one with `structvid train refine`",
                                self.settings.checkpoint)
            job.stage("reading the video")
            path = job.upload(video, "video")
            job.check_video(path)
            rate = video_rate(path)
            first = next(iter_video(path, chunk=1))[0]
            job.stage("reading the poses")
            poses_path = job.upload(pose_file, "pose file")
            poses = load_poses(poses_path, num_joints=pipe.structure.channels, min_frames=1,
                               image_size=first.shape[:2])
            job.check_frames(len(poses), poses_path)
            chunks = pipe.refine_video(iter_video(path, pipe.chunk), poses)
            out, panel = self._write_body(job, pipe, chunks, len(poses), "refined", fps=rate, refine_only=True)
            return self._result(job, pipe, out, panel, len(poses), f"{len(poses)} frames and poses", fps=rate,
                                stages="G_R alone")

        return self._run(work, progress, owner)

    def retarget(self, portrait: str | Path | None, reference: str | Path | None, relative: bool = True,
                 intensity: float = 1.0, head_pose: bool = False, paste_back: bool = False, refine: bool = True,
                 max_frames: int | None = None, progress: Progress | None = None, owner: object = None) -> JobResult:
        """Animate a portrait with a reference video's expressions (§4: 3DMM fit, expression transfer, normal
        maps; §5-6: G_M, G_R), as `structvid retarget --panel [--absolute] [--intensity] [--head-pose]
        [--paste-back] [--max-frames]`."""

        def work(job: _Job) -> JobResult:
            from structvid.io.images import load_image
            from structvid.pipelines.face_retarget import write_retarget
            from structvid.structure.faces.transfer import TransferSettings

            settings = TransferSettings(mode="relative" if relative else "absolute", intensity=float(intensity),
                                        head_pose=bool(head_pose))
            rt = self.face_retarget(refine)
            job.stage("reading the portrait")
            img_path = job.upload(portrait, "portrait")
            img = load_image(img_path)
            ref_path = job.upload(reference, "reference video")
            job.check_video(ref_path)
            job.stage("fitting the portrait and tracking the reference (dlib landmarks, 3DMM: Eq. 1-2)")
            fit = rt.prepare(img, ref_path, settings, image_source=img_path, max_frames=max_frames,
                             progress=lambda stage, done, total: job.report(
                                 done / total if total else None,
                                 f"{stage} the reference: frame {done}" + (f"/{total}" if total else "")))
            total = len(fit.reference)
            job.stage(f"transferring expressions ({settings.mode}), G_M" + (" + G_R" if rt.pipe.refiner else ""), 0.0)
            out = job.dir / "retarget.mp4"
            written = write_retarget(_Reporting(rt, job, total), img, fit, ref_path, out, panel=True,
                                     paste=bool(paste_back), gif=False)
            video, panel = written[0], written[-1]
            how = (f"{settings.mode} expression transfer from {total} reference frames (intensity {intensity:g}"
                   f"{', head pose' if head_pose else ''}); {fit.frames_without_face} frames without a face"
                   f"{'; pasted back into the portrait' if paste_back else ''}")
            return self._result(job, rt.pipe, video, panel, total, how, fps=fit.fps)

        return self._run(work, progress, owner)

    # ------------------------------------------------------------------ outputs

    def _write_body(self, job: _Job, pipe, chunks: Iterator, total: int, name: str,
                    observed: np.ndarray | None = None, fps: float | None = None,
                    refine_only: bool = False) -> tuple[Path, Path]:
        """The video and its panel, encoded chunk by chunk as `structvid generate --panel` writes them
        (pipelines.render.write_outputs): input | condition | coarse | refined | mask (observed | forecast | ... with
        forecast poses); for a refined video: coarse | refined | mask."""
        from structvid.io.video import video_files
        from structvid.pipelines.render import write_outputs

        fps = fps or job.limits.fps
        stage = ("G_R refining clips of K frames (Eq. 15)" if refine_only else
                 "G_M coarse frames (Eq. 7-8)" + (" + G_R refining clips (Eq. 15)" if pipe.refiner else ""))
        job.stage(stage, 0.0)
        video_path = job.dir / f"{name}.mp4"
        with video_files() as files:
            written = write_outputs(files, chunks, video_path, fps, panel=True, observed=observed,
                                    structure=pipe.structure, gif=False, refine_only=refine_only,
                                    on_chunk=lambda done: job.report(done / total, f"{stage}: frame {done}/{total}"))
            job.stage("finishing the videos")
        return written[0], written[-1]

    def _result(self, job: _Job, pipe, video: Path, panel: Path, frames: int, how: str,
                fps: float | None = None, stages: str = "G_M") -> JobResult:
        fps = fps or job.limits.fps
        video, panel = self._publish(video, panel)
        total = job.finish()
        s = pipe.size
        times = ", ".join(f"{name} {secs:.1f} s" for name, secs in job.stages if secs >= 0.05)
        if pipe.refiner is not None:
            k = pipe.refiner.config.clip_length
            stages += f" + G_R in windows of {k} (overlap {pipe.window_overlap})" if stages == "G_M" else f" in windows of {k}"
        summary = (f"**{frames} frames**, {s}×{s}, {fps:g} frames/s ({frames / fps:.1f} s) from {how}. "
                   f"{stages}, {pipe.precision} on {pipe.device}. **{total:.1f} s** in all: {times}.")
        return JobResult(video, panel, frames, frames / fps, summary)


class _Reporting:
    """A FaceRetarget whose `stream` reports each chunk's frames (and stops the job when cancelled); what
    `write_retarget` uses of it (`pipe`, `stream`) is the wrapped one's."""

    def __init__(self, rt, job: _Job, total: int) -> None:
        self._rt, self._job, self._total = rt, job, total
        self.pipe = rt.pipe

    def stream(self, image, fit, chunk=None):
        done = 0
        for part in self._rt.stream(image, fit, chunk):
            done += len(part.frames)
            self._job.report(done / self._total, f"transferring expressions, G_M: frame {done}/{self._total}")
            yield part
        self._job.stage("finishing the videos, adding the reference's audio")
