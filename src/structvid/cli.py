"""`structvid` command line: a thin layer dispatching to library functions.

User errors (UserError) become one line on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
from pathlib import Path

import click

from structvid.errors import UserError

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_DIR = ASSETS / "demo"
FACE_DEMO_DIR = ASSETS / "face_demo"


class FiniteFloat(click.FloatRange):
    """click.FloatRange that also refuses NaN and infinity (FloatRange lets NaN through: it compares False)."""

    def convert(self, value, param, ctx):
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{rv} is not a finite number.", param, ctx)
        return rv


class Resolution(click.ParamType):
    """A square frame side the networks accept: a power of two >= 8 (their encoders halve it to 4x4)."""

    name = "resolution"

    def convert(self, value, param, ctx):
        rv = click.INT.convert(value, param, ctx)
        if rv < 8 or rv & (rv - 1):
            self.fail(f"{rv} is not a power of two >= 8 (e.g. 64, 128).", param, ctx)
        return rv


POSITIVE_INT = click.IntRange(min=1)
PRECISION_HELP = ("G_M / G_R forward passes: auto = bf16 on CPUs with native bf16 (AVX512_BF16 or AMX; it costs "
                  "the demo G_M 0.001 dB PSNR), fp32 elsewhere.")
FPS = FiniteFloat(min=0.1, max=1000.0)  # far below, a GIF's frame delay (16 bits of 10 ms) overflows
PUPPET_SIZE = click.IntRange(16, 1024)  # data/puppet.py MIN_SIZE, MAX_SIZE


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log progress messages.")
def cli(verbose: bool) -> None:
    """Structure-aware image-to-video translation (Zhao et al., IJCV 2020)."""
    _setup_logging(verbose)


# ---------------------------------------------------------------- train


@cli.group()
def train() -> None:
    """Train a stage (forecast: G_M + D_I; refine: G_R + D_V + D_I; poses: the pose LSTM)."""


def _train_options(data_help: str):
    """The options every `train` subcommand shares (one way to configure a run)."""

    def decorate(f):
        for opt in reversed([
            click.option("--config", "config_path", type=click.Path(path_type=Path), help="Experiment YAML (configs/)."),
            click.option("--out", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder."),
            click.option("--data", "data_root", help=data_help),
            click.option("--resume", is_flag=True, help="Continue from the run folder's latest checkpoint."),
            click.option("--force", is_flag=True,
                         help="Start over in a folder that holds a run: its checkpoints, logs and config are removed."),
            click.option("--device", help="auto | cpu | cuda | cuda:N | mps (overrides train.device)."),
            click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), help="Autocast precision."),
            click.option("--dry-run", is_flag=True, help="Print the resolved config and exit."),
            click.option("--no-progress", is_flag=True, help="Hide the progress bar."),
            click.argument("overrides", nargs=-1),
        ]):
            f = opt(f)
        return f

    return decorate


def _run_training(cfg_cls, train_fn, config_path, run_dir, data_root, resume, force, device, precision, dry_run,
                  no_progress, overrides) -> None:
    """Resolve the config (YAML, then flags, then section.field=value overrides) and train or print it."""
    import yaml

    from structvid.config import load_config, to_dict

    overrides = list(overrides)
    if config_path is None and resume and (run_dir / "config.yaml").is_file():
        config_path = run_dir / "config.yaml"
    for key, value in (("data.root", data_root), ("train.device", device), ("train.precision", precision)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(cfg_cls, config_path, overrides)
    if dry_run:
        click.echo(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return
    result = train_fn(cfg, run_dir, resume=resume, progress=not no_progress, force=force)
    click.echo(json.dumps({"step": result.step, "checkpoint": str(result.checkpoint), **result.stats}))


@train.command("forecast")
@_train_options("Dataset root (Penn Action layout or prepared store); overrides data.root.")
def train_forecast(**kwargs) -> None:
    """Train G_M against D_I (§5). OVERRIDES look like train.steps=1000 model.dense=false."""
    from structvid.config import ExperimentConfig
    from structvid.training.tasks import train_forecaster

    _run_training(ExperimentConfig, train_forecaster, **kwargs)


@train.command("poses")
@_train_options("Folder holding labels/NNNN.mat; overrides data.root.")
def train_poses_cmd(**kwargs) -> None:
    """Train the pose LSTM (§4, Eq. 3-5) on Penn Action joint sequences. OVERRIDES: model.horizon=32 ..."""
    from structvid.config import PoseExperimentConfig
    from structvid.training.tasks import train_poses

    _run_training(PoseExperimentConfig, train_poses, **kwargs)


@train.command("refine")
@_train_options("Dataset root (Penn Action layout or prepared store); overrides data.root.")
def train_refine_cmd(**kwargs) -> None:
    """Train G_R against D_V and D_I (§6) on the frozen G_M's coarse clips (data.forecaster=RUN) of part gr."""
    from structvid.config import RefineExperimentConfig
    from structvid.training.tasks import train_refiner

    _run_training(RefineExperimentConfig, train_refiner, **kwargs)


# ---------------------------------------------------------------- generate / demo


@cli.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), default=DEMO_DIR,
              help="Pipeline folder (structvid export), G_M run or G_R run (default: the models shipped in the package).")
@click.option("--image", type=click.Path(path_type=Path), required=True, help="Input image (I_t).")
@click.option("--poses", type=click.Path(path_type=Path),
              help="Joint sequence (.json/.npy/.mat) in the image's pixels; poses[0] is the image's pose.")
@click.option("--observed-poses", type=click.Path(path_type=Path),
              help="Observed joints (>= T_obs frames, the last one is the image's pose): the pose LSTM forecasts the rest.")
@click.option("--frames", type=click.IntRange(1, 1_000_000), default=32, show_default=True,
              help="Poses to forecast with --observed-poses (the LSTM takes one step per frame).")
@click.option("--pose-checkpoint", type=click.Path(path_type=Path), default=None,
              help="Pose LSTM run or checkpoint folder (default: the checkpoint's own, else the one shipped in the package).")
@click.option("--refine/--no-refine", default=True, show_default=True,
              help="Refine G_M's frames with G_R (§6) when the checkpoint has one.")
@click.option("--overlap", type=click.IntRange(0), default=None,
              help="G_R windows overlap by this many frames, cross-faded (default: the checkpoint's; 0 = the paper's "
                   "non-overlapping windows of K).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("out.mp4"), show_default=True,
              help="The video; also writes OUT.gif, a preview of its first 300 frames. All files appear once complete.")
@click.option("--fps", type=FPS, default=12.0, show_default=True)
@click.option("--panel", is_flag=True,
              help="Also write OUT_panel.mp4: input | condition | output | mask (input | condition | coarse | refined | "
                   "mask when refined).")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help=PRECISION_HELP)
def generate(checkpoint, image, poses, observed_poses, frames, pose_checkpoint, refine, overlap, out, fps, panel,
             device, precision) -> None:
    """Animate IMAGE with a pose sequence (--poses), or with poses forecast from observed ones (--observed-poses)."""
    from structvid.io.images import load_image
    from structvid.io.poses import load_poses
    from structvid.io.video import video_files
    from structvid.pipelines.image_to_video import ImageToVideoPipeline
    from structvid.pipelines.render import write_outputs

    if (poses is None) == (observed_poses is None):
        raise UserError("give exactly one of --poses or --observed-poses")
    pipe = ImageToVideoPipeline.from_pretrained(checkpoint, device=device, refine=refine, precision=precision)
    if overlap is not None and pipe.refiner is not None:
        pipe.attach_refiner(pipe.refiner, window_overlap=overlap)
    img = load_image(image)
    observed = None
    if poses is not None:
        joints = load_poses(poses, num_joints=pipe.structure.channels, min_frames=2, image_size=img.shape[:2])
        chunks = pipe.stream(img, joints)
    else:
        if pose_checkpoint is not None or pipe.pose_model is None:
            pipe.load_pose_model(pose_checkpoint or DEMO_DIR)
        observed = load_poses(observed_poses, num_joints=pipe.structure.channels,
                              min_frames=pipe.pose_model.config.observed, image_size=img.shape[:2])
        chunks = pipe.stream(img, pipe.forecast_poses(observed, frames), image_pose=observed[-1])
    with video_files() as files:
        written = write_outputs(files, chunks, out, fps, panel, observed=observed, structure=pipe.structure)
    for p in written:
        click.echo(str(p))


class Intensity(click.ParamType):
    """One factor, or one per expression coefficient: "1.2" or "1,1,0.5,1,1,1"."""

    name = "intensity"

    def convert(self, value, param, ctx):
        if isinstance(value, (float, list)):
            return value
        try:
            k = [float(v) for v in str(value).split(",")]
        except ValueError:
            self.fail(f"{value!r} is not a number or a comma-separated list of numbers", param, ctx)
        if not all(math.isfinite(v) and 0 <= v <= 10 for v in k):
            self.fail(f"{value!r}: each factor must be in [0, 10]", param, ctx)
        return k[0] if len(k) == 1 else k


@cli.command()
@click.option("--image", type=click.Path(path_type=Path), required=True, help="The target portrait.")
@click.option("--reference", type=click.Path(path_type=Path), required=True,
              help="The reference (driving) video: its expressions are transferred onto the portrait.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("retarget.mp4"), show_default=True,
              help="The video (with the reference's audio when it has one); also OUT.gif, a preview of its first "
                   "300 frames. All files appear once complete.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=FACE_DEMO_DIR,
              help="A face pipeline folder or G_M / G_R run (default: the face models shipped in the package).")
@click.option("--relative/--absolute", default=True, show_default=True,
              help="relative: the target's expression plus the reference's change from its first frame; absolute: "
                   "the reference's expression itself (§4).")
@click.option("--intensity", type=Intensity(), default="1.0", show_default=True,
              help="Scale of the transferred expression: one factor or one per coefficient (comma-separated).")
@click.option("--head-pose", is_flag=True, help="Also move the head as the reference does (relative to its first frame).")
@click.option("--face", "pick", type=click.Choice(["only", "largest"]), default="only", show_default=True,
              help="only: a portrait with several faces is an error; largest: animate the largest face.")
@click.option("--paste-back", is_flag=True,
              help="Blend the generated face back into the full-resolution portrait (else: the model's square crop).")
@click.option("--panel", is_flag=True, help="Also write OUT_panel.mp4: reference | target | normal maps | output.")
@click.option("--refine/--no-refine", default=True, show_default=True, help="Refine with G_R when the checkpoint has one.")
@click.option("--max-frames", type=POSITIVE_INT, default=None, help="Use at most this many reference frames.")
@click.option("--crop-margin", type=FiniteFloat(min=0, max=10), default=None,
              help="Margin around the portrait's face in the model's square (default: the checkpoint's; a training "
                   "run's data.crop_margin framed whole videos: see docs/faces.md, Framing).")
@click.option("--fps", type=FPS, default=None, help="Output frame rate (default: the reference's).")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help=PRECISION_HELP)
def retarget(image, reference, out, checkpoint, relative, intensity, head_pose, pick, paste_back, panel, refine,
             max_frames, crop_margin, fps, device, precision) -> None:
    """Animate a portrait with the facial expressions of a reference video (§4: 3DMM expression transfer, normal
    maps; §5-6: G_M, G_R)."""
    from structvid.io.images import load_image
    from structvid.pipelines.face_retarget import FaceRetarget, write_retarget
    from structvid.structure.faces.transfer import TransferSettings

    if out.suffix.lower() != ".mp4":  # before minutes of fitting, not after
        raise UserError(f"the output must be an .mp4 file (it carries the reference's audio), got '{out.suffix}'", out)
    settings = TransferSettings(mode="relative" if relative else "absolute", intensity=intensity, head_pose=head_pose)
    rt = FaceRetarget.from_pretrained(checkpoint, device=device, refine=refine, precision=precision)
    if crop_margin is not None:
        rt.pipe.crop_margin = crop_margin
    img = load_image(image)
    with _fit_progress() as progress:
        job = rt.prepare(img, reference, settings, pick=pick, image_source=image, max_frames=max_frames,
                         progress=progress)
    for p in write_retarget(rt, img, job, reference, out, panel=panel, paste=paste_back, fps=fps):
        click.echo(str(p))
    click.echo(json.dumps({"frames": len(job.reference), "frames_without_face": job.frames_without_face}))


@contextlib.contextmanager
def _fit_progress():
    """Progress bars (on a terminal only) for tracking and fitting a reference video: `FaceRetarget.prepare`'s
    `progress(stage, done, total)`."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(stage: str, done: int, total: int | None) -> None:
        if stage not in bars:
            for bar in bars.values():  # one bar at a time: tracking ends where fitting starts
                bar.close()
            bars[stage] = tqdm(total=total, desc=f"{stage} the reference", unit="frame", disable=None, leave=False)
        bars[stage].update(done - bars[stage].n)

    try:
        yield progress
    finally:
        for bar in bars.values():
            bar.close()


def _face_demo(out: Path, checkpoint: Path, faces: Path, device: str, precision: str) -> None:
    from structvid.io.download import fetch
    from structvid.io.images import load_image
    from structvid.pipelines.face_retarget import FaceRetarget, write_retarget

    image, reference = faces / "s42.jpg", faces / "d0.mp4"
    if not (image.is_file() and reference.is_file()):
        image, reference = fetch("face_demo_portrait"), fetch("face_demo_reference")
    rt = FaceRetarget.from_pretrained(checkpoint, device=device, precision=precision)
    img = load_image(image)
    with _fit_progress() as progress:
        job = rt.prepare(img, reference, image_source=image, progress=progress)
    written = write_retarget(rt, img, job, reference, out / "face.mp4", panel=True, pasted=out / "face_pasted.mp4")
    for p in written:
        click.echo(str(p))


@cli.command()
@click.option("--task", type=click.Choice(["body", "face"]), default="body", show_default=True,
              help="body: the bundled puppet and the pose LSTM; face: a real portrait retargeted by a real video.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, show_default=False,
              help="Pipeline folder, G_M run or G_R run (default: the models shipped in the package for the task).")
@click.option("--pose-checkpoint", type=click.Path(path_type=Path), default=None, show_default=False,
              help="Pose LSTM run or checkpoint folder (default: the checkpoint's own, else the one shipped).")
@click.option("--faces", type=click.Path(path_type=Path), default=Path("../shared/data/faces"), show_default=True,
              help="--task face: folder holding s42.jpg and d0.mp4 (else both are downloaded once, checksums pinned).")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help=PRECISION_HELP)
def demo(task, out, checkpoint, pose_checkpoint, faces, device, precision) -> None:
    """Animate the bundled puppet with its pose sequence, and with poses the LSTM forecasts from 10 of them
    (--task body); or animate a real portrait with a real reference video's expressions (--task face).

    body writes demo.mp4/.gif + demo_panel.mp4 + demo_frames.png (given poses) and forecast.mp4/.gif +
    forecast_panel.mp4 (the pose LSTM observes the first 10 poses and forecasts the rest). face writes
    face.mp4/.gif (the model's crop) + face_panel.mp4 (reference | target | normal maps | output) and
    face_pasted.mp4/.gif (the face pasted back into the full portrait).
    """
    if task == "face":
        _face_demo(out, checkpoint or FACE_DEMO_DIR, faces, device, precision)
        return
    checkpoint = checkpoint or DEMO_DIR
    import numpy as np

    from structvid.io.files import output_errors
    from structvid.io.images import load_image, make_grid, save_image
    from structvid.io.poses import load_poses
    from structvid.io.video import video_files
    from structvid.pipelines.image_to_video import ImageToVideoPipeline
    from structvid.pipelines.render import write_outputs

    example = DEMO_DIR / "example"
    pipe = ImageToVideoPipeline.from_pretrained(checkpoint, device=device, precision=precision)
    img = load_image(example / "image.png")
    joints = load_poses(example / "poses.json", num_joints=pipe.structure.channels, image_size=img.shape[:2])
    result = pipe(img, joints)  # 48 frames: whole, for the strip of stills
    if pose_checkpoint is not None or pipe.pose_model is None:
        pipe.load_pose_model(pose_checkpoint or DEMO_DIR)
    t_obs = pipe.pose_model.config.observed
    observed = joints[:t_obs]
    forecast = pipe.forecast_poses(observed, len(joints) - t_obs)
    with video_files() as files:  # every file appears once all are complete, or none does
        written = write_outputs(files, [result], out / "demo.mp4", 12.0, panel=True, structure=pipe.structure)
        step = max(1, len(result.frames) // 8)
        rows = [np.concatenate([result.input_frame[None], result.frames[::step][:8]])]
        if result.coarse is not None:  # coarse (G_M) above refined (G_R)
            rows.insert(0, np.concatenate([result.input_frame[None], result.coarse[::step][:8]]))
        strip = make_grid(np.concatenate(rows), ncols=9)
        with output_errors(out / "demo_frames.png"):
            save_image(files.temp_path(out / "demo_frames.png"), strip)
        written.append(out / "demo_frames.png")
        written += write_outputs(files, pipe.stream(img, forecast, image_pose=joints[0]), out / "forecast.mp4",
                                  12.0, panel=True, observed=observed, structure=pipe.structure)
    for p in written:
        click.echo(str(p))


@cli.command()
@click.option("--video", type=click.Path(path_type=Path), required=True,
              help="A video made by any generator (or any video) to refine (§7.4).")
@click.option("--poses", type=click.Path(path_type=Path), required=True,
              help="Its structure: one pose per frame (.json/.npy/.mat) in the video's pixels.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=DEMO_DIR,
              help="Pipeline folder or G_R run holding a refiner (default: the one shipped in the package).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("refined.mp4"), show_default=True,
              help="The refined video; also OUT.gif (a preview of its first 300 frames).")
@click.option("--overlap", type=click.IntRange(0), default=None,
              help="G_R windows overlap by this many frames, cross-faded (default: the checkpoint's).")
@click.option("--fps", type=FPS, default=None, help="Frame rate of the output (default: the input video's).")
@click.option("--panel", is_flag=True, help="Also write OUT_panel.mp4: input | condition | coarse | refined | mask.")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True,
              help=PRECISION_HELP)
def refine(video, poses, checkpoint, out, overlap, fps, panel, device, precision) -> None:
    """Refine VIDEO with G_R (§6) given its pose sequence: the paper's Fig. 12 on other generators' videos.

    The frames are cropped to the square around the person, at the model's resolution, as in training."""
    from structvid.io.poses import load_poses
    from structvid.io.video import iter_video, video_files, video_rate
    from structvid.pipelines.image_to_video import ImageToVideoPipeline
    from structvid.pipelines.render import write_outputs

    pipe = ImageToVideoPipeline.from_pretrained(checkpoint, device=device, precision=precision)
    if pipe.refiner is None:
        raise UserError("has no refiner (G_R): train one with `structvid train refine`", checkpoint)
    if overlap is not None:
        pipe.attach_refiner(pipe.refiner, window_overlap=overlap)
    rate = video_rate(video) if fps is None else fps
    first = next(iter_video(video, chunk=1))[0]
    joints = load_poses(poses, num_joints=pipe.structure.channels, min_frames=1, image_size=first.shape[:2])
    with video_files() as files:
        written = write_outputs(files, pipe.refine_video(iter_video(video, pipe.chunk), joints), out, rate, panel,
                                 structure=pipe.structure)
    for p in written:
        click.echo(str(p))


@cli.command()
@click.option("--forecast", type=click.Path(path_type=Path), required=True, help="G_M run, checkpoint or pipeline folder.")
@click.option("--refine", "refine_run", type=click.Path(path_type=Path), default=None, help="G_R run or checkpoint folder.")
@click.option("--poses", "pose_run", type=click.Path(path_type=Path), default=None, help="Pose LSTM run or checkpoint folder.")
@click.option("--overlap", type=click.IntRange(0), default=0, show_default=True,
              help="G_R window overlap the pipeline uses (0 = the paper's non-overlapping windows).")
@click.option("--crop-margin", type=FiniteFloat(min=0, max=10), default=None,
              help="Margin around the subject at inference (default: the training data's data.crop_margin).")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New pipeline folder.")
def export(forecast, refine_run, pose_run, overlap, crop_margin, out) -> None:
    """Write one pipeline folder (pipeline.json + forecaster / refiner / pose_lstm files) for from_pretrained."""
    from structvid.pipelines.export import export_pipeline

    click.echo(str(export_pipeline(out, forecast, refine_run, pose_run, window_overlap=overlap,
                                   crop_margin=crop_margin)))


# ---------------------------------------------------------------- evaluate


@cli.group()
def evaluate() -> None:
    """Evaluate a trained stage on a dataset split."""


@evaluate.command("forecast")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True)
@click.option("--data", "data_root", type=click.Path(path_type=Path), required=True, help="Penn Action layout root.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--split", type=click.Choice(["all", "train", "test"]), default="all", show_default=True)
@click.option("--frames", type=POSITIVE_INT, default=32, show_default=True, help="Generated frames per video.")
@click.option("--max-videos", type=POSITIVE_INT, default=None)
@click.option("--device", default="auto", show_default=True)
def evaluate_forecast_cmd(checkpoint, data_root, out_dir, split, frames, max_videos, device) -> None:
    """MSE / PSNR / SSIM of videos generated from their first frame and ground-truth poses."""
    from structvid.config import DataConfig
    from structvid.metrics.video_eval import evaluate_forecast, write_forecast_report
    from structvid.pipelines.image_to_video import ImageToVideoPipeline

    pipe = ImageToVideoPipeline.from_pretrained(checkpoint, device=device)
    data = DataConfig(root=str(data_root), image_size=pipe.size, split=split, crop_margin=pipe.crop_margin)
    result = evaluate_forecast(pipe, data, frames=frames, max_videos=max_videos)
    write_forecast_report(result, out_dir)
    click.echo(json.dumps({"num_videos": result["num_videos"], "frames": result["frames"], **result["mean"]}))


@evaluate.command("poses")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="Pose LSTM run folder.")
@click.option("--data", "data_root", type=click.Path(path_type=Path), required=True,
              help="Folder holding labels/ (Penn Action), or a Human3.6M folder (S9/MyPoseFeatures/...).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--heldout", is_flag=True, help="Only the sequences the run held out for validation (data.json).")
@click.option("--actions", default="",
              help="Comma-separated actions (default: Penn Action: the paper's 8; Human3.6M: all 15).")
@click.option("--horizon", type=POSITIVE_INT, default=32, show_default=True,
              help="Poses forecast after the observed ones (§7.3: 32 on Penn Action, 128 on Human3.6M).")
@click.option("--mirror-average/--no-mirror-average", default=None,
              help="Override the model's mirror averaging at inference (default: as its config says).")
@click.option("--device", default="auto", show_default=True)
def evaluate_poses_cmd(checkpoint, data_root, out_dir, heldout, actions, horizon, mirror_average, device) -> None:
    """§7.3 pose protocol: observe 10 poses, forecast --horizon more; LSTM vs zero/constant velocity.

    On Human3.6M the test subjects S9, S11 (with --heldout: the training subjects' sequences the run held out)."""
    from structvid.data.human36m import TEST_SUBJECTS, TRAIN_SUBJECTS, Human36MPoses, is_h36m_root
    from structvid.data.penn_action import PennActionDataset
    from structvid.data.pose_windows import select_actions
    from structvid.metrics.pose import evaluate_pose_protocol, write_pose_report
    from structvid.models.pose_lstm import pose_lstm_predictor
    from structvid.models.saving import load_pretrained
    from structvid.models.saving import find_checkpoint
    from structvid.devices import pick_device

    ckpt = find_checkpoint(checkpoint)
    dev = pick_device(device)
    model = load_pretrained(ckpt, "pose_lstm").to(dev)
    if mirror_average is not None:
        model.config.mirror_average = mirror_average
    wanted = [a for a in actions.split(",") if a] or None
    if is_h36m_root(data_root):  # the LSTM trained on the training subjects; §7.3 tests on S9, S11
        ds = Human36MPoses(data_root, TRAIN_SUBJECTS if heldout else TEST_SUBJECTS, wanted)
        names = ds.names
    else:
        ds = PennActionDataset(data_root)
        names = select_actions(ds, wanted)
    if heldout:
        summary = Path(checkpoint) / "data.json"
        if not summary.is_file():
            raise UserError("--heldout needs the run folder's data.json (pass the run folder as --checkpoint)", summary)
        try:
            keep = json.loads(summary.read_text())["val_names"]
            if not (isinstance(keep, list) and all(isinstance(n, str) for n in keep)):
                raise TypeError
        except (ValueError, KeyError, TypeError, RecursionError):  # JSONDecodeError and UnicodeDecodeError too
            raise UserError('is not a training run\'s data.json (a JSON object with a "val_names" list)',
                            summary) from None
        names = [n for n in names if n in keep]
    cfg = model.config
    horizons = [h for h in (1, 8, 16, 32, 64) if h < horizon] + [horizon]
    result = evaluate_pose_protocol([ds.label(n) for n in names], {"lstm": pose_lstm_predictor(model, dev)},
                                    observed=cfg.observed, horizon=horizon, horizons=horizons)
    write_pose_report(result, out_dir)
    summary = {m: v["overall"] for m, v in result["methods"].items()}
    click.echo(json.dumps({"horizons": result["horizons"], **summary, "excluded": result["excluded"],
                           "num_sequences": result["num_sequences"]}))


@evaluate.command("retarget")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=FACE_DEMO_DIR,
              help="Face pipeline folder or run (default: the face models shipped in the package).")
@click.option("--image", "images", type=click.Path(path_type=Path), multiple=True, required=True,
              help="A target portrait (repeat the option for several).")
@click.option("--reference", "references", type=click.Path(path_type=Path), multiple=True, required=True,
              help="A reference video (repeat the option for several); every portrait is driven by every reference.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--max-frames", type=POSITIVE_INT, default=None, help="At most this many frames per reference.")
@click.option("--relative/--absolute", default=True, show_default=True)
@click.option("--device", default="auto", show_default=True)
def evaluate_retarget_cmd(checkpoint, images, references, out_dir, max_frames, relative, device) -> None:
    """ACD-I / ACD-C (§7.2, Table 4) of retargeted videos, with the real references' own scores ("Reference")."""
    from structvid.metrics.face_eval import evaluate_retarget, write_face_report
    from structvid.pipelines.face_retarget import FaceRetarget
    from structvid.structure.faces.transfer import TransferSettings

    rt = FaceRetarget.from_pretrained(checkpoint, device=device)
    result = evaluate_retarget(rt, list(images), list(references), max_frames,
                               TransferSettings(mode="relative" if relative else "absolute"))
    write_face_report(result, out_dir)
    click.echo(json.dumps({k: result[k] for k in result if not isinstance(result[k], (list, dict))}))


@evaluate.command("video")
@click.option("--protocol", type=click.Choice(["penn", "h36m"]), required=True,
              help="penn: Table 7 / Fig. 10 (MSE, PSNR over 32 frames); h36m: Table 6 / Fig. 9 (PSNR-Next, "
                   "PSNR-120, motion deciles).")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="G_M run or checkpoint folder.")
@click.option("--data", "data_root", type=click.Path(path_type=Path), required=True,
              help="penn: Penn Action layout or prepared store; h36m: Human3.6M root (see data/human36m.py).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--pose-checkpoint", type=click.Path(path_type=Path), default=None,
              help="Pose LSTM run folder: adds LSTM-conditioned results (penn) / forecast poses (h36m).")
@click.option("--part", type=click.Choice(["all", "gm", "gr", "eval"]), default=None,
              help="The paper's split (§7.1). penn: 'eval' keeps the evaluation third of the videos, dealt exactly as "
                   "training deals gm / gr (default: all videos); h36m: eval = S9, S11 (default), gm / gr = the "
                   "training subject halves, all = every subject.")
@click.option("--actions", default=None,
              help="penn: comma-separated actions, 'all' for every one (default: the G_M run's data.actions, else "
                   "the paper's 8).")
@click.option("--max-videos", type=POSITIVE_INT, default=None)
@click.option("--device", default="auto", show_default=True)
def evaluate_video_cmd(protocol, checkpoint, data_root, out_dir, pose_checkpoint, part, actions, max_videos,
                       device) -> None:
    """The paper's video protocols on a dataset; writes JSON, Markdown and a plot."""
    from structvid.metrics.video_protocols import h36m_protocol, penn_protocol, write_protocol_report
    from structvid.models.pose_lstm import pose_lstm_predictor
    from structvid.pipelines.image_to_video import ImageToVideoPipeline

    pipe = ImageToVideoPipeline.from_pretrained(checkpoint, device=device)
    predictor = None
    if pose_checkpoint is not None:
        pipe.load_pose_model(pose_checkpoint)
        predictor = pose_lstm_predictor(pipe.pose_model, pipe.device)
    if protocol == "penn":
        from structvid.metrics.video_protocols import penn_selection, training_data

        training, config_path = training_data(pipe)
        wanted = None if actions is None else [a for a in actions.split(",") if a and a != "all"]
        sampler = penn_selection(pipe, data_root, part or "all", training, wanted)
        if training is not None and part not in (None, "all") and training.part in ("all", part):
            click.echo(f"warning: the G_M run trained on data.part {training.part} ({config_path}), so part {part} "
                       "is not held out from it", err=True)
        names = sampler.names
        result = penn_protocol(pipe, sampler, conditions=("gt", "lstm") if predictor else ("gt",),
                               pose_predictor=predictor, names=names[:max_videos] if max_videos else names,
                               progress=True)
        result["selection"] = {"part": part or "all", "actions": sampler.cfg.actions or "all",
                               "split": sampler.cfg.split, "from": str(config_path or "protocol default")}
    else:
        from structvid.data.human36m import Human36MDataset, subjects_of

        ds = Human36MDataset(data_root, subjects_of(part or "eval"))
        items = ds.items[:max_videos] if max_videos else ds.items
        clips = (ds.load_clip(item, size=pipe.size, margin=pipe.crop_margin, max_frames=130) for item in items)
        result = h36m_protocol(pipe, clips, pose_predictor=predictor, progress=True)
    paths = write_protocol_report(result, out_dir)
    for p in paths.values():
        click.echo(str(p))


# ---------------------------------------------------------------- data


@cli.group()
def data() -> None:
    """Make or inspect datasets."""


@data.command("puppet")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output root (Penn Action layout).")
@click.option("--num-videos", type=POSITIVE_INT, default=None, help="Default: 200 procedural, or every Penn sequence.")
@click.option("--source", type=click.Choice(["procedural", "penn", "mixed"]), default="procedural", show_default=True)
@click.option("--penn-labels", type=click.Path(path_type=Path), default=None,
              help="Folder of Penn Action NNNN.mat labels (for --source penn/mixed).")
@click.option("--size", type=PUPPET_SIZE, default=64, show_default=True, help="Frame side in pixels.")
@click.option("--frames", type=click.IntRange(min=2), default=48, show_default=True, help="Frames per procedural video.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--workers", type=POSITIVE_INT, default=1, show_default=True)
def data_puppet(out, num_videos, source, penn_labels, size, frames, seed, workers) -> None:
    """Render synthetic puppet videos of the 13 Penn Action joints."""
    from structvid.data.puppet import make_puppet_dataset

    if source != "procedural" and penn_labels is None:
        raise UserError(f"--source {source} needs --penn-labels (a folder of Penn Action .mat files)")
    if num_videos is None and source == "procedural":
        num_videos = 200
    ds = make_puppet_dataset(out, num_videos, size=size, frames=frames, seed=seed, source=source,
                             penn_labels=penn_labels, workers=workers)
    click.echo(f"{len(ds.names)} videos -> {out}")


@data.command("prepare")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Prepared store folder.")
@click.option("--size", type=Resolution(), default=64, show_default=True, help="Output resolution (data.image_size).")
@click.option("--crop-margin", type=FiniteFloat(min=0), default=0.15, show_default=True)
@click.option("--workers", type=POSITIVE_INT, default=2, show_default=True)
@click.option("--actions", default="", help="Comma-separated actions to keep (default: all).")
def data_prepare(root, out, size, crop_margin, workers, actions) -> None:
    """Crop around the person, resize and store every video once (one .npz per video); train with data.root=OUT."""
    from structvid.data.prepare import prepare_dataset

    prepare_dataset(root, out, size, crop_margin=crop_margin, workers=workers,
                    actions=[a for a in actions.split(",") if a] or None)
    click.echo(str(out))


@data.command("faces")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Prepared store folder.")
@click.option("--num-videos", type=POSITIVE_INT, default=24, show_default=True)
@click.option("--frames", type=click.IntRange(min=2, max=10_000), default=32, show_default=True)
@click.option("--size", type=Resolution(), default=64, show_default=True, help="Frame side (data.image_size).")
@click.option("--crop-margin", type=FiniteFloat(min=0), default=0.15, show_default=True)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--face-model", default="", help="3DMM: empty = Surrey Face Model; a folder of SFM files; a BFM .pkl.")
def data_faces(out, num_videos, frames, size, crop_margin, seed, face_model) -> None:
    """Synthetic face videos from the 3DMM (six MUG expressions, pose drift, procedural looks) with exact face
    parameters, as a prepared store: train with data.root=OUT structure.kind=face_normals."""
    from structvid.data.faces import synthetic_faces
    from structvid.structure.faces.morphable import default_model

    synthetic_faces(out, default_model(face_model), num_videos, frames, size, seed, crop_margin)
    click.echo(str(out))


@data.command("prepare-faces")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Prepared store folder.")
@click.option("--dataset", type=click.Choice(["videos", "mug", "bu4dfe"]), default="videos", show_default=True,
              help="videos: INPUTS are video files; mug / bu4dfe: INPUTS is the dataset root in its released layout.")
@click.option("--part", default="all", show_default=True,
              help="mug: gm | gr | eval (the paper's split by subject, §7.1) or train | val | test with --split-lists; "
                   "bu4dfe: gm | gr; all: every video.")
@click.option("--split-lists", type=click.Path(path_type=Path), default=None,
              help="Folder of the authors' MUG split lists (train.txt, val.txt, test.txt).")
@click.option("--size", type=Resolution(), default=64, show_default=True, help="Output resolution (data.image_size).")
@click.option("--crop-margin", type=FiniteFloat(min=0), default=0.15, show_default=True)
@click.option("--max-frames", type=POSITIVE_INT, default=None, help="At most this many frames per video.")
@click.option("--workers", type=POSITIVE_INT, default=1, show_default=True, help="Videos fitted in parallel.")
def data_prepare_faces(inputs, out, dataset, part, split_lists, size, crop_margin, max_frames, workers) -> None:
    """Track landmarks (dlib), fit the 3DMM (eos) and crop every face video once (§7.1); train with data.root=OUT
    structure.kind=face_normals model.motion_channels=3."""
    from structvid.data.faces import prepare_face_videos
    from structvid.structure.faces.video_fit import FaceSource

    if dataset == "videos":
        sources = [FaceSource.from_video(p) for p in inputs]
    else:
        if len(inputs) != 1:
            raise UserError(f"--dataset {dataset} takes one dataset root, got {len(inputs)} inputs")
        if dataset == "mug":
            from structvid.data.mug import AUTHORS_PARTS, authors_split, paper_split, scan_mug

            videos = scan_mug(inputs[0])
            if part != "all":
                parts = authors_split(videos, split_lists) if split_lists else paper_split(videos)
                if part not in parts:
                    raise UserError(f"--part must be one of all, {', '.join(parts)}, got {part!r}")
                videos = parts[part]
        else:
            from structvid.data.bu4dfe import paper_split, scan_bu4dfe

            videos = scan_bu4dfe(inputs[0])
            if part != "all":
                parts = paper_split(videos)
                if part not in parts:
                    raise UserError(f"--part must be one of all, {', '.join(parts)}, got {part!r}")
                videos = parts[part]
        sources = [FaceSource.from_entry(v) for v in videos]
    prepare_face_videos(sources, out, size, crop_margin, max_frames, workers=workers)
    click.echo(str(out))


@data.command("prepare-h36m")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Prepared store folder.")
@click.option("--size", type=Resolution(), default=128, show_default=True, help="Output resolution (data.image_size).")
@click.option("--crop-margin", type=FiniteFloat(min=0), default=0.1, show_default=True,
              help="Temporal-tube margin (data.crop_margin).")
@click.option("--subjects", default="S1,S5,S6,S7,S8", show_default=True,
              help="Comma-separated subjects (data.part gm = S1,S5,S6, gr = S7,S8).")
@click.option("--actions", default="", help="Comma-separated actions to keep (default: all 15).")
@click.option("--clip-frames", type=click.IntRange(min=2), default=130, show_default=True,
              help="Frames per clip, each cropped with its own temporal tube (130 = 10 observed + 120 generated).")
@click.option("--step", type=POSITIVE_INT, default=1, show_default=True, help="Keep every step-th frame (50 Hz / step).")
@click.option("--max-clips", type=POSITIVE_INT, default=None, help="At most this many clips per trial and camera.")
def data_prepare_h36m(root, out, size, crop_margin, subjects, actions, clip_frames, step, max_clips) -> None:
    """Cut Human3.6M trials into temporal-tube crops (§7.1), one .npz per clip; train G_M / G_R with data.root=OUT."""
    from structvid.data.human36m import prepare_h36m

    prepare_h36m(root, out, size, [s for s in subjects.split(",") if s], [a for a in actions.split(",") if a] or None,
                 crop_margin, clip_frames, step, max_clips)
    click.echo(str(out))


@data.command("check")
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--no-images", is_flag=True, help="Skip decoding every frame (faster).")
def data_check(root, no_images) -> None:
    """List every missing, unreadable or inconsistent file of a Penn Action layout folder."""
    from structvid.data.check import check_penn_dataset

    problems = check_penn_dataset(root, read_images=not no_images)
    for p in problems:
        click.echo(str(p))
    if problems:
        raise UserError(f"{len(problems)} problem(s) found", root)
    click.echo(f"{root}: no problems found")


# ---------------------------------------------------------------- bench


@cli.group()
def bench() -> None:
    """Speed and memory figures (printed as a table and one JSON line)."""


@bench.command("forecast")
@click.option("--width", type=POSITIVE_INT, default=64, show_default=True, help="G_M / D_I base width (Table 1: 64).")
@click.option("--resolution", type=Resolution(), default=64, show_default=True)
@click.option("--batch", type=POSITIVE_INT, default=32, show_default=True)
@click.option("--steps", type=POSITIVE_INT, default=3, show_default=True, help="Timed training steps.")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True)
@click.option("--channels-last/--no-channels-last", default=True, show_default=True, help="NHWC memory format.")
def bench_forecast_cmd(width, resolution, batch, steps, device, precision, channels_last) -> None:
    """G_M GFLOP/frame, training samples/s, inference frames/s, GFLOP/s vs this machine's GEMM, peak memory."""
    from structvid.bench import bench_forecast, print_report

    print_report(bench_forecast(width, resolution, batch, steps, device, precision, channels_last=channels_last))


def _clip_length(ctx, param, value: int) -> int:
    if value < 2 or value & (value - 1):
        raise click.BadParameter(f"{value} is not a power of two >= 2 (§7.1: 16 for bodies, 32 for faces).")
    return value


@bench.command("refine")
@click.option("--width", type=POSITIVE_INT, default=128, show_default=True,
              help="G_R / D_V base width (Table 2: 128; the demo: 16); D_I at min(width, 64).")
@click.option("--resolution", type=Resolution(), default=64, show_default=True)
@click.option("--clip-length", type=int, default=16, show_default=True, callback=_clip_length, help="K frames a clip.")
@click.option("--batch", type=POSITIVE_INT, default=32, show_default=True, help="Clips a training iteration (§7.1: 32).")
@click.option("--steps", type=POSITIVE_INT, default=2, show_default=True, help="Timed training iterations.")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=DEMO_DIR,
              help="Pipeline folder or G_M run timed end to end (default: the bundled demo; without a G_R, one at "
                   "the demo's width with random weights).")
@click.option("--frames", type=click.IntRange(1, 100_000), default=128, show_default=True,
              help="Frames of the end-to-end video.")
@click.option("--end-to-end/--no-end-to-end", default=True, show_default=True,
              help="Also time a video through G_M and G_R.")
def bench_refine_cmd(width, resolution, clip_length, batch, steps, device, precision, checkpoint, frames,
                     end_to_end) -> None:
    """G_R GFLOP/clip, training clips/s, inference frames/s, GFLOP/s vs this machine's GEMM in the same
    precision, peak memory; then seconds for a --frames video through both stages."""
    from structvid.bench import bench_refine, print_report

    print_report(bench_refine(width, resolution, clip_length, batch, steps, device, precision,
                              pipeline=checkpoint if end_to_end else None, frames=frames))


@bench.command("faces")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="A face pipeline to time end to end (default: random G_Ms at the face demo's widths, 64 and 128).")
@click.option("--video", type=click.Path(path_type=Path), default=Path("../shared/data/faces/d3.mp4"), show_default=True)
@click.option("--image", type=click.Path(path_type=Path), default=Path("../shared/data/faces/s42.jpg"), show_default=True)
@click.option("--frames", type=click.IntRange(min=2), default=64, show_default=True)
@click.option("--long/--no-long", default=True, show_default=True,
              help="Also measure peak memory over a 5-minute reference (the video looped; ~5 minutes).")
@click.option("--long-seconds", type=FiniteFloat(min=1), default=300.0, show_default=True)
def bench_faces_cmd(checkpoint, video, image, frames, long, long_seconds) -> None:
    """Landmarks + fit per frame, normal maps/s at 64 and 128, retarget frames/s end to end, peak memory for a
    10-second and a 5-minute reference: one JSON line."""
    from structvid.bench import print_report
    from structvid.faces_bench import bench_faces
    from structvid.pipelines.face_retarget import FaceRetarget

    rt = FaceRetarget.from_pretrained(checkpoint) if checkpoint else None
    print_report(bench_faces(rt, video, image, frames=frames, skip_long=not long, long_seconds=long_seconds))


@bench.command("puppet")
@click.option("--frames", type=POSITIVE_INT, default=2000, show_default=True)
@click.option("--size", type=PUPPET_SIZE, default=64, show_default=True)
def bench_puppet_cmd(frames, size) -> None:
    """Puppet rendering frames/s (target: >= 500 frames/s at 64x64 on 2 cores)."""
    from structvid.bench import print_report
    from structvid.data.puppet import bench_render

    print_report(bench_render(num_frames=frames, size=size))


def _given_command() -> str:
    """The running command with the options given on its command line (for reports)."""
    import shlex

    ctx = click.get_current_context()
    words = [ctx.command_path]
    for p in ctx.command.params:
        if ctx.get_parameter_source(p.name) is not click.core.ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[p.name]
        if isinstance(p, click.Option) and (p.is_flag or p.secondary_opts):
            words.append(p.opts[0] if value else (p.secondary_opts or p.opts)[0])
        else:
            words += [p.opts[0], shlex.quote(str(value))]
    return " ".join(words)


@bench.command("quality")
@click.option("--penn-labels", type=click.Path(path_type=Path), default=Path("../shared/data/penn_action"),
              show_default=True, help="Penn Action root (or its labels/ folder): the motions the puppets follow.")
@click.option("--work", type=click.Path(path_type=Path), default=None,
              help="Renders, runs and caches; a run already there is resumed (default runs/quality; tiny: "
                   "runs/quality-tiny).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Report folder (default docs/quality, tiny: WORK/report).")
@click.option("--steps", type=POSITIVE_INT, default=None, help="G_M steps per variant (default 600).")
@click.option("--refine-steps", type=POSITIVE_INT, default=None, help="G_R steps (default 1000).")
@click.option("--max-videos", type=POSITIVE_INT, default=None, help="Held-out videos evaluated (default 96).")
@click.option("--frames", type=click.IntRange(2, 1000), default=None, help="Predicted frames per video (default 32).")
@click.option("--adversarial/--no-adversarial", default=None,
              help="Train with the GAN terms and critics (Eq. 12, 17, 18); default off (CPU budget).")
@click.option("--tiny", is_flag=True, help="A seconds-long run at 16x16 (checks the machinery, not the models).")
def bench_quality_cmd(penn_labels, work, out, steps, refine_steps, max_videos, frames, adversarial, tiny) -> None:
    """Table 8's ablation: G_M residual none / difference / mask / mask + dense, + G_R, copy and Farnebäck baselines,
    on held-out puppets driven by Penn Action motions -> OUT/quality.{json,md} and plots."""
    from structvid.quality_bench import QualityOptions, run_quality_bench, summary_line, write_quality_report

    given = dict(penn_labels=str(penn_labels), steps=steps, refine_steps=refine_steps, max_videos=max_videos,
                 frames=frames, adversarial=adversarial)
    given = {k: v for k, v in given.items() if v is not None}
    given["work"] = str(work or ("runs/quality-tiny" if tiny else "runs/quality"))
    given["out"] = str(out or (Path(given["work"]) / "report" if tiny else "docs/quality"))
    opts = QualityOptions.tiny(**given) if tiny else QualityOptions(**given)
    result = run_quality_bench(opts, _given_command(), say=lambda line: click.echo(line, err=True))
    paths = write_quality_report(result, opts.out)
    click.echo(f"report: {paths['md']}", err=True)
    click.echo(json.dumps(summary_line(result)))


from structvid.app.cli import app_command  # noqa: E402  (light: gradio is imported when the page starts)

cli.add_command(app_command, "app")


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="structvid", standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.UsageError as e:  # a bad option or argument: one line, like a UserError
        if isinstance(e, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # no command given: the help
            e.show()
            return e.exit_code
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        click.echo(f"error: {e.format_message()}{hint}", err=True)
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except OSError as e:  # a file the user named could not be read or written: one line, no traceback
        from structvid.io.files import describe_os_error

        click.echo(f"error: {describe_os_error(e, action='accessing')}", err=True)
        return 2
    except (MemoryError, RuntimeError) as e:  # torch reports a failed allocation as a RuntimeError
        line = _out_of_memory(e)
        if line is None:
            raise
        click.echo(f"error: {line}", err=True)
        return 2
    return 0


def _out_of_memory(e: BaseException) -> str | None:
    """One line for an allocation that failed (a model, batch or image too large for the machine), else None."""
    import re

    text = str(e)
    if not (isinstance(e, MemoryError) or "out of memory" in text.lower() or "can't allocate memory" in text):
        return None
    size = re.search(r"allocate (\d+) bytes", text)
    amount = f" {int(size.group(1)) / 2**30:.1f} GiB" if size else ""
    size = re.search(r"[Tt]ried to allocate ([\d.]+ [KMGT]iB)", text)
    amount = f" {size.group(1)}" if size else amount
    return (f"out of memory (could not allocate{amount or ' enough'}): use a smaller model, batch, resolution or "
            "number of frames")


if __name__ == "__main__":
    sys.exit(main())
