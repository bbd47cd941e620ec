"""`structvid` command line: a thin layer dispatching to library functions.

User errors (UserError) become one line on stderr and exit status 2, without a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from structvid.errors import UserError

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_DIR = ASSETS / "demo"


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
    """Train a stage (forecast: G_M + D_I; poses: the pose LSTM)."""


@train.command("forecast")
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="Experiment YAML (see configs/).")
@click.option("--out", "run_dir", type=click.Path(path_type=Path), required=True, help="Run folder.")
@click.option("--data", "data_root", help="Dataset root (Penn Action layout); overrides data.root.")
@click.option("--resume", is_flag=True, help="Continue from the run folder's latest checkpoint.")
@click.option("--device", help="auto | cpu | cuda | cuda:N | mps (overrides train.device).")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), help="Autocast precision.")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.argument("overrides", nargs=-1)
def train_forecast(config_path, run_dir, data_root, resume, device, precision, dry_run, no_progress, overrides) -> None:
    """Train G_M against D_I (§5). OVERRIDES look like train.steps=1000 model.dense=false."""
    import yaml

    from structvid.config import ExperimentConfig, load_config, to_dict
    from structvid.training.tasks import train_forecaster

    overrides = list(overrides)
    if config_path is None and resume and (run_dir / "config.yaml").is_file():
        config_path = run_dir / "config.yaml"
    for key, value in (("data.root", data_root), ("train.device", device), ("train.precision", precision)):
        if value is not None:
            overrides.append(f"{key}={value}")
    cfg = load_config(ExperimentConfig, config_path, overrides)
    if dry_run:
        click.echo(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        return
    result = train_forecaster(cfg, run_dir, resume=resume, progress=not no_progress)
    click.echo(json.dumps({"step": result.step, "checkpoint": str(result.checkpoint), **result.stats}))


# ---------------------------------------------------------------- generate / demo


def _write_outputs(out, mp4: Path, fps: float, panel: bool) -> list[Path]:
    """MP4 + GIF of the generated frames, and optionally the input | condition | output | mask panel."""
    import numpy as np

    from structvid.io.video import heatmap_to_rgb, side_by_side, write_video

    written = []
    write_video(mp4, out.frames, fps)
    write_video(mp4.with_suffix(".gif"), out.frames, fps)
    written += [mp4, mp4.with_suffix(".gif")]
    if panel:
        t = len(out.frames)
        cols = [np.repeat(out.input_frame[None], t, 0), heatmap_to_rgb(out.conditions), out.frames]
        labels = ["input", "condition", "output"]
        if out.masks is not None:
            cols.append(heatmap_to_rgb(out.masks[:, None]))
            labels.append("mask")
        video = side_by_side(cols, labels, scale=4 if out.frames.shape[1] <= 64 else 2)
        p = mp4.with_name(mp4.stem + "_panel.mp4")
        write_video(p, video, fps)
        written.append(p)
    return written


@cli.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True, help="Run or checkpoint folder.")
@click.option("--image", type=click.Path(path_type=Path), required=True, help="Input image (I_t).")
@click.option("--poses", type=click.Path(path_type=Path), required=True,
              help="Joint sequence (.json/.npy/.mat) in the image's pixels; poses[0] is the image's pose.")
@click.option("--out", type=click.Path(path_type=Path), default=Path("out.mp4"), show_default=True)
@click.option("--fps", type=float, default=12.0, show_default=True)
@click.option("--panel", is_flag=True, help="Also write OUT_panel.mp4: input | condition | output | mask.")
@click.option("--device", default="auto", show_default=True)
def generate(checkpoint, image, poses, out, fps, panel, device) -> None:
    """Animate IMAGE with the pose sequence POSES (one frame per pose)."""
    from structvid.io.images import load_image
    from structvid.io.poses import load_poses
    from structvid.pipelines.image_to_video import ImageToVideoPipeline

    pipe = ImageToVideoPipeline.from_pretrained(checkpoint, device=device)
    img = load_image(image)
    joints = load_poses(poses, num_joints=pipe.structure.channels, min_frames=2, image_size=img.shape[:2])
    result = pipe(img, joints)
    for p in _write_outputs(result, out, fps, panel):
        click.echo(str(p))


@cli.command()
@click.option("--out", type=click.Path(path_type=Path), default=Path("demo_out"), show_default=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=DEMO_DIR, show_default=False,
              help="Run or checkpoint folder (default: the small model shipped in the package).")
@click.option("--device", default="auto", show_default=True)
def demo(out, checkpoint, device) -> None:
    """Animate the bundled puppet image with the bundled pose sequence; writes MP4, GIF and PNG panel."""
    import numpy as np

    from structvid.io.images import load_image, make_grid, save_image
    from structvid.io.poses import load_poses
    from structvid.pipelines.image_to_video import ImageToVideoPipeline

    example = DEMO_DIR / "example"
    pipe = ImageToVideoPipeline.from_pretrained(checkpoint, device=device)
    img = load_image(example / "image.png")
    joints = load_poses(example / "poses.json", num_joints=pipe.structure.channels, image_size=img.shape[:2])
    result = pipe(img, joints)
    written = _write_outputs(result, out / "demo.mp4", 12.0, panel=True)
    step = max(1, len(result.frames) // 8)
    strip = make_grid(np.concatenate([result.input_frame[None], result.frames[::step][:8]]), ncols=9)
    save_image(out / "demo_frames.png", strip)
    for p in written + [out / "demo_frames.png"]:
        click.echo(str(p))


# ---------------------------------------------------------------- evaluate


@cli.group()
def evaluate() -> None:
    """Evaluate a trained stage on a dataset split."""


@evaluate.command("forecast")
@click.option("--checkpoint", type=click.Path(path_type=Path), required=True)
@click.option("--data", "data_root", type=click.Path(path_type=Path), required=True, help="Penn Action layout root.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True)
@click.option("--split", type=click.Choice(["all", "train", "test"]), default="all", show_default=True)
@click.option("--frames", type=int, default=32, show_default=True, help="Generated frames per video.")
@click.option("--max-videos", type=int, default=None)
@click.option("--device", default="auto", show_default=True)
def evaluate_forecast_cmd(checkpoint, data_root, out_dir, split, frames, max_videos, device) -> None:
    """MSE / PSNR / SSIM of videos generated from their first frame and ground-truth poses."""
    from structvid.config import DataConfig
    from structvid.metrics.video_eval import evaluate_forecast, write_forecast_report
    from structvid.pipelines.image_to_video import ImageToVideoPipeline

    pipe = ImageToVideoPipeline.from_pretrained(checkpoint, device=device)
    data = DataConfig(root=str(data_root), image_size=pipe.size, split=split,
                      sigma=pipe.structure.sigma, crop_margin=pipe.crop_margin)
    result = evaluate_forecast(pipe, data, frames=frames, max_videos=max_videos)
    write_forecast_report(result, out_dir)
    click.echo(json.dumps({"num_videos": result["num_videos"], **result["mean"]}))


# ---------------------------------------------------------------- data


@cli.group()
def data() -> None:
    """Make or inspect datasets."""


@data.command("puppet")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output root (Penn Action layout).")
@click.option("--num-videos", type=int, default=None, help="Default: 200 procedural, or every Penn sequence.")
@click.option("--source", type=click.Choice(["procedural", "penn", "mixed"]), default="procedural", show_default=True)
@click.option("--penn-labels", type=click.Path(path_type=Path), default=None,
              help="Folder of Penn Action NNNN.mat labels (for --source penn/mixed).")
@click.option("--size", type=int, default=64, show_default=True)
@click.option("--frames", type=int, default=48, show_default=True, help="Frames per procedural video.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--workers", type=int, default=1, show_default=True)
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


# ---------------------------------------------------------------- bench


@cli.group()
def bench() -> None:
    """Speed and memory figures (printed as a table and one JSON line)."""


@bench.command("forecast")
@click.option("--width", type=int, default=64, show_default=True, help="G_M / D_I base width (Table 1: 64).")
@click.option("--resolution", type=int, default=64, show_default=True)
@click.option("--batch", type=int, default=32, show_default=True)
@click.option("--steps", type=int, default=3, show_default=True, help="Timed training steps.")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True)
def bench_forecast_cmd(width, resolution, batch, steps, device, precision) -> None:
    """G_M GFLOP/frame, training samples/s, inference frames/s, GFLOP/s vs this machine's GEMM, peak memory."""
    from structvid.bench import bench_forecast, print_report

    print_report(bench_forecast(width, resolution, batch, steps, device, precision))


@bench.command("puppet")
@click.option("--frames", type=int, default=2000, show_default=True)
@click.option("--size", type=int, default=64, show_default=True)
def bench_puppet_cmd(frames, size) -> None:
    """Puppet rendering frames/s (target: >= 500 frames/s at 64x64 on 2 cores)."""
    from structvid.bench import print_report
    from structvid.data.puppet import bench_render

    print_report(bench_render(num_frames=frames, size=size))


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="structvid", standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
