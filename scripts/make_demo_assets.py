"""Build the bundled demo of `structvid demo` (src/structvid/assets/demo/).

    python scripts/make_demo_assets.py --forecast-run runs/demo-puppet-64 --pose-run runs/demo-poses \
        --refine-run runs/demo-refine-64 --penn-label ../shared/data/penn_action/labels/0099.mat --frames 48

- example/image.png + example/poses.json: one puppet video rendered by our own code with a seed the demo
  model never trained on (training data uses seed 0); the image is its first frame. The bundled example
  moves as the first 48 poses (observe 10, forecast 38) of Penn Action sequence 0099, a front-view baseball
  pitch that the bundled pose LSTM held out (its config's seed 0 part); without --penn-label the motion is
  procedural (the earlier example, jumping jacks: an action with no Penn sequence of 42 frames, whose
  forecast collapsed into a line; see TRAINING.md).
- forecaster.{safetensors,json} + config.yaml: G_M from the latest checkpoint of the forecast run (which names
  it `generator`).
- refiner.{safetensors,json} + refiner.yaml: G_R from the latest checkpoint of the refine run.
- pose_lstm.{safetensors,json}: the pose LSTM from the latest checkpoint of the pose run.
- pipeline.json: which file holds which stage (pipelines/image_to_video.py PipelineManifest).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

from structvid.data.penn_action import read_label, write_label
from structvid.data.puppet import make_puppet_dataset
from structvid.io.images import save_image
from structvid.io.poses import save_poses
from structvid.models.saving import FORECASTER_NAMES, find_checkpoint, find_module
from structvid.pipelines.image_to_video import MANIFEST, PipelineManifest

DEMO = Path(__file__).resolve().parents[1] / "src" / "structvid" / "assets" / "demo"


def make_example(seed: int = 2020, frames: int = 48, penn_label: Path | None = None) -> str:
    """Render the example; with `penn_label` the puppet moves as the first `frames` poses of that Penn
    Action label file (a sequence the bundled pose LSTM held out), otherwise procedurally."""
    with tempfile.TemporaryDirectory() as tmp:
        kw = {}
        if penn_label is not None:
            seq = read_label(penn_label)
            if seq.nframes < frames:
                raise SystemExit(f"{penn_label}: {seq.nframes} frames, fewer than {frames}")
            cut = {f: getattr(seq, f)[:frames] for f in ("x", "y", "visibility", "bbox")}
            write_label(Path(tmp) / "labels" / f"{seq.name}.mat",
                        replace(seq, **cut, dimensions=(*seq.dimensions[:2], frames)))
            kw = dict(source="penn", penn_labels=Path(tmp) / "labels")
        ds = make_puppet_dataset(Path(tmp) / "example", 1, size=64, frames=frames, seed=seed, **kw)
        name = ds.names[0]
        label = ds.label(name)
        save_image(DEMO / "example" / "image.png", ds.load_frames(name)[0])
        save_poses(DEMO / "example" / "poses.json", label.joints, image_size=(64, 64))
        return label.action


def copy_net(run: Path, names: tuple[str, ...], stage: str) -> Path:
    """Copy the first of `names` found in the run's latest checkpoint to DEMO/{stage}.*."""
    ckpt = find_checkpoint(run)
    name = find_module(ckpt, names)
    if name is None:
        raise SystemExit(f"{ckpt}: none of {names}")
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(ckpt / f"{name}{suffix}", DEMO / f"{stage}{suffix}")
    return ckpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--forecast-run", type=Path)
    ap.add_argument("--pose-run", type=Path)
    ap.add_argument("--refine-run", type=Path)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--penn-label", type=Path, help="animate the example with this Penn Action label file")
    ap.add_argument("--frames", type=int, default=48, help="poses in the example (observed 10 + forecast)")
    args = ap.parse_args()
    DEMO.mkdir(parents=True, exist_ok=True)
    print("example action:", make_example(args.seed, args.frames, args.penn_label))
    manifest = PipelineManifest.read(DEMO / MANIFEST) if (DEMO / MANIFEST).is_file() else PipelineManifest()
    if args.forecast_run:
        print("G_M from", copy_net(args.forecast_run, FORECASTER_NAMES, "forecaster"))
        shutil.copyfile(args.forecast_run / "config.yaml", DEMO / "config.yaml")
    if args.refine_run:
        print("G_R from", copy_net(args.refine_run, ("refiner",), "refiner"))
        shutil.copyfile(args.refine_run / "config.yaml", DEMO / "refiner.yaml")
        manifest.refiner = "refiner"
    if args.pose_run:
        print("pose LSTM from", copy_net(args.pose_run, ("pose_lstm",), "pose_lstm"))
        manifest.pose_lstm = "pose_lstm"
    manifest.write(DEMO / MANIFEST)


if __name__ == "__main__":
    main()
