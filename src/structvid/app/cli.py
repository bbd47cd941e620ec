"""`structvid app`: serve the web page (registered in structvid.cli with `cli.add_command(app_command, "app")`)."""

from __future__ import annotations

import atexit
import math
import os
import signal
import sys
from pathlib import Path

import click

from structvid.app.handlers import DEMO_DIR, FACE_DEMO_DIR, AppSettings, Limits
from structvid.errors import UserError

ALL_INTERFACES = ("0.0.0.0", "::", "")


def _positive(ctx, param, value: float) -> float:
    if not (math.isfinite(value) and value > 0):
        raise click.BadParameter(f"{value} is not a positive number")
    return value


@click.command("app")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 makes the page reachable from other computers (a warning is printed).")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=DEMO_DIR,
              help="Body pipeline folder, G_M run or G_R run (default: the models shipped in the package).")
@click.option("--face-checkpoint", type=click.Path(path_type=Path), default=FACE_DEMO_DIR,
              help="Face pipeline folder or run (default: the face models shipped in the package).")
@click.option("--max-upload-mb", type=float, default=Limits.max_upload_mb, show_default=True, callback=_positive,
              help="Largest upload accepted, in MB.")
@click.option("--max-seconds", type=float, default=Limits.max_seconds, show_default=True, callback=_positive,
              help="Longest uploaded video, and longest generated video (at 12 frames/s), in seconds.")
@click.option("--threads", type=click.IntRange(0), default=0, show_default=True,
              help="CPU threads for the models (0: one per core but one, which is left to the server and the "
                   "browser). Where other programs keep the cores busy, fewer threads can be many times faster.")
@click.option("--device", default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default="auto", show_default=True)
def app_command(host, port, checkpoint, face_checkpoint, max_upload_mb, max_seconds, threads, device,
                precision) -> None:
    """A local web page for the three jobs: animate a person, retarget a face, refine a video (needs
    structvid[app])."""
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise UserError("the web page needs the optional package 'gradio': pip install 'structvid[app]'") from None
    from structvid.app.page import build_page, launch

    import torch

    torch.set_num_threads(threads or model_threads())

    if host in ALL_INTERFACES:
        click.echo(f"warning: listening on all interfaces ({host or '0.0.0.0'}): anyone who can reach this computer "
                   f"on port {port} can use the page and upload files", err=True)
    settings = AppSettings(Path(checkpoint), Path(face_checkpoint), Limits(max_upload_mb, max_seconds), device,
                           precision)
    demo, jobs = build_page(settings)
    atexit.register(jobs.close)  # uploads, gradio's cache and the served videos
    click.echo(f"files: {jobs.out_root} (uploads and results; removed when the server stops)")
    signal.signal(signal.SIGTERM, _stop)  # `kill` stops the server as Ctrl-C does, and the cleanup runs
    launch(demo, jobs, host=host, port=port)


def model_threads(cores: int | None = None) -> int:
    """Default model threads: one per core but one. With every core busy, a job on a 2-core CPU shared with one
    other busy process took 7-10x longer with 2 threads than with 1 (OpenMP threads wait on each other)."""
    cores = cores or os.cpu_count() or 2
    return max(1, cores - 1)


def _stop(signum, frame) -> None:
    """SIGTERM: stop as on Ctrl-C (gradio closes the server, then the atexit cleanup runs); later ones are ignored."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """`python -m structvid.app.cli [OPTIONS]`: the command on its own, with the CLI's one-line errors."""
    try:
        app_command.main(args=argv, prog_name="structvid app", standalone_mode=False)
    except UserError as e:
        click.echo(f"error: {e}", err=True)
        return 2
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except (KeyboardInterrupt, click.exceptions.Abort):
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
