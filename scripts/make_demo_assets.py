"""Build the bundled demo of `structvid demo` (src/structvid/assets/demo/).

    python scripts/make_demo_assets.py --forecast-run runs/demo-puppet-64 --pose-run runs/demo-poses \
        --penn-label ../shared/data/penn_action/labels/0099.mat --frames 48

- example/image.png + example/poses.json: one puppet video rendered by our own code with a seed the demo
  model never trained on (training data uses seed 0); the image is its first frame. The bundled example
  moves as the first 48 poses (observe 10, forecast 38) of Penn Action sequence 0099, a front-view baseball
  pitch that the bundled pose LSTM held out (its config's seed 0 part); without --penn-label the motion is
  procedural (the earlier example, jumping jacks: an action with no Penn sequence of 42 frames, whose
  forecast collapsed into a line; see TRAINING.md).
- generator.{safetensors,json} + config.yaml: G_M from the latest checkpoint of the forecast run.
- pose_lstm.{safetensors,json}: the pose LSTM from the latest checkpoint of the pose run.
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
from structvid.models.saving import find_checkpoint

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


def copy_net(run: Path, name: str) -> Path:
    ckpt = find_checkpoint(run)
    for suffix in (".safetensors", ".json"):
        shutil.copyfile(ckpt / f"{name}{suffix}", DEMO / f"{name}{suffix}")
    return ckpt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--forecast-run", type=Path)
    ap.add_argument("--pose-run", type=Path)
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--penn-label", type=Path, help="animate the example with this Penn Action label file")
    ap.add_argument("--frames", type=int, default=48, help="poses in the example (observed 10 + forecast)")
    args = ap.parse_args()
    DEMO.mkdir(parents=True, exist_ok=True)
    print("example action:", make_example(args.seed, args.frames, args.penn_label))
    if args.forecast_run:
        print("generator from", copy_net(args.forecast_run, "generator"))
        shutil.copyfile(args.forecast_run / "config.yaml", DEMO / "config.yaml")
    if args.pose_run:
        print("pose LSTM from", copy_net(args.pose_run, "pose_lstm"))


if __name__ == "__main__":
    main()
