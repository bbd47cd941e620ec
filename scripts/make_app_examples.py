"""Example inputs of the web page (`structvid app`): a few motions for the bundled example image, and a coarse
video to refine.

    python scripts/make_app_examples.py --penn-labels ../shared/data/penn_action/labels

- src/structvid/assets/demo/example/motions/<action>.json: short Penn Action joint sequences of different
  actions, converted to the example image's 64x64 pixel frame. Each starts at the example image's own pose
  (poses[0] is the image's pose, as `structvid generate --poses` expects), moves to the sequence's first pose
  in TRANSITION frames (linear interpolation), then follows the sequence: one scale and offset per motion,
  chosen so that the first pose's torso matches the image's (hips at the same place, same torso length) and
  shrunk about the hips where the whole motion would leave the frame. Joints Penn Action marks invisible are
  filled in time (data/puppet.py `_fill_joints`), as the puppets are drawn; all joints are written visible.
- src/structvid/assets/demo/example/coarse.mp4 + coarse_poses.json: the bundled G_M's coarse video of the
  example (its own poses, no G_R) and those poses in the video's pixels: an input for the Refine tab (§7.4).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from structvid.data.penn_action import read_label
from structvid.data.puppet import _fill_joints
from structvid.structure.skeleton import L_HIP, L_SHOULDER, R_HIP, R_SHOULDER
from structvid.io.poses import load_poses
from structvid.io.video import write_video

EXAMPLE = Path(__file__).resolve().parents[1] / "src" / "structvid" / "assets" / "demo" / "example"
# action -> Penn Action sequence (front views of a standing person, chosen by eye from the shared labels)
MOTIONS = {"jumping_jacks": "1040", "squat": "1721", "tennis_serve": "2174", "jump_rope": "0963"}
FRAMES = 42  # frames of the sequence kept (after the transition)
TRANSITION = 6  # frames from the image's pose to the sequence's first pose
BORDER = 1.0  # pixels kept free at the frame's edges


def _torso(j: np.ndarray) -> tuple[np.ndarray, float]:
    """(mid-hip point, torso length) of one (13, 2) pose."""
    hips = j[[L_HIP, R_HIP]].mean(0)
    return hips, float(np.linalg.norm(j[[L_SHOULDER, R_SHOULDER]].mean(0) - hips))


def save_json(path: Path, joints: np.ndarray, image_size: tuple[int, int]) -> None:
    """Poses as `load_poses` reads them, rounded to 1/100 pixel (small files)."""
    rounded = np.round(np.asarray(joints, np.float64), 2).tolist()
    path.write_text(json.dumps({"joints": rounded, "image_size": list(image_size)}, separators=(",", ":")) + "\n")


def convert(label: Path, image_pose: np.ndarray, size: int) -> np.ndarray:
    """One Penn Action label file -> (TRANSITION + FRAMES, 13, 3) poses in the example image's pixels."""
    seq = read_label(label)
    n = min(FRAMES, seq.nframes)
    motion = _fill_joints(seq.x[:n], seq.y[:n], seq.visibility[:n])  # (n, 13, 2) source pixels
    hips0, torso0 = _torso(image_pose)
    hips1, torso1 = _torso(motion[0])
    scale = torso0 / max(torso1, 1e-6)
    placed = (motion - hips1) * scale + hips0  # first pose's torso over the image's
    lo, hi = placed.min((0, 1)), placed.max((0, 1))
    # shrink about the hips until the whole motion fits inside the frame
    room = np.minimum(hips0 - BORDER, size - 1 - BORDER - hips0)  # (2,) free pixels each way from the hips
    reach = np.maximum(hips0 - lo, hi - hips0)
    shrink = float(min(1.0, *(room / np.maximum(reach, 1e-6))))
    placed = (placed - hips0) * shrink + hips0
    w = np.linspace(0, 1, TRANSITION + 1)[:-1, None, None]  # (TRANSITION, 1, 1): image pose -> first pose
    lead = (1 - w) * image_pose[None] + w * placed[:1]
    joints = np.concatenate([lead, placed])  # (TRANSITION + n, 13, 2)
    return np.concatenate([joints, np.ones((*joints.shape[:2], 1))], -1).astype(np.float32)


def make_coarse(out: Path) -> None:
    """G_M's coarse video of the example (no G_R) and its poses in the video's pixels."""
    from structvid.io.images import load_image
    from structvid.pipelines.image_to_video import ImageToVideoPipeline

    pipe = ImageToVideoPipeline.from_pretrained(EXAMPLE.parent, device="cpu", refine=False, precision="fp32")
    img = load_image(EXAMPLE / "image.png")
    poses = load_poses(EXAMPLE / "poses.json", image_size=img.shape[:2])
    result = pipe(img, poses)
    write_video(out / "coarse.mp4", result.frames, fps=12)
    save_json(out / "coarse_poses.json", result.params, result.frames.shape[1:3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--penn-labels", type=Path, default=Path("../shared/data/penn_action/labels"))
    args = ap.parse_args()
    image_pose = load_poses(EXAMPLE / "poses.json")[0, :, :2]
    (EXAMPLE / "motions").mkdir(exist_ok=True)
    for action, name in MOTIONS.items():
        joints = convert(args.penn_labels / f"{name}.mat", image_pose, 64)
        save_json(EXAMPLE / "motions" / f"{action}.json", joints, (64, 64))
        load_poses(EXAMPLE / "motions" / f"{action}.json", image_size=(64, 64))  # inside the frame
        print(action, name, len(joints), "frames")
    make_coarse(EXAMPLE)


if __name__ == "__main__":
    main()
