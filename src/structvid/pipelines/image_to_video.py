"""Image + structure sequence -> video (§3, Fig. 2): G_C's structures -> G_M per frame -> optional G_R.

    pipe = ImageToVideoPipeline.from_pretrained("runs/puppet-64")
    out = pipe(image, poses)          # image (H, W, 3) uint8, poses (T, J, 3) [x, y, v] in image pixels
    out.frames                        # (T, S, S, 3) uint8; frame i is conditioned on poses[i]

    for part in pipe.stream(image, poses):  # the same frames in chunks: memory flat in the video's length
        ...

The input image shows the subject in `image_pose` (default: poses[0]); it is I_t and its structure is M_t.
Frames are produced by G_M's `forecast` (f_I and f_M(M_t) computed once, Eq. 8). A second stage
(`refiner`, G_R of §6) can be attached: it receives the coarse clip and its motion maps and returns the
refined clip in the same residual form (Eq. 15); frames are generated (and refined) in chunks of `chunk`
frames, so the chunk is the refiner's window.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from structvid.config import DataConfig, load_section
from structvid.data.clips import apply_affine, crop_affine, crop_frame, person_box
from structvid.errors import UserError
from structvid.io.images import to_tensor, to_uint8
from structvid.models.forecaster import Forecaster
from structvid.models.pose_lstm import PoseLSTM, forecast_poses, pose_lstm_predictor
from structvid.models.saving import load_pretrained
from structvid.structure.base import Structure
from structvid.structure.heatmaps import JointHeatmaps
from structvid.models.saving import find_checkpoint
from structvid.devices import pick_device

# (frames (1, T, 3, H, W) in [-1, 1], motion maps (1, T, C, H, W)) -> refined frames, same shape
Refiner = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class VideoOutput:
    frames: np.ndarray  # (T, S, S, 3) uint8
    conditions: np.ndarray  # (T, C, S, S) float motion maps M_{t+k}
    joints: np.ndarray | None  # (T, J, 3) joints in output pixels (None when maps were given)
    masks: np.ndarray | None  # (T, S, S) residual motion masks m in [0, 1] (Eq. 7), None without one
    input_frame: np.ndarray  # (S, S, 3) uint8, I_t as the network saw it (cropped, resized)
    affine: np.ndarray | None = None  # 2x3 map from input-image pixels to output pixels (None with maps)


class ImageToVideoPipeline:
    def __init__(self, forecaster: Forecaster, structure: Structure | None = None, crop_margin: float = 0.15,
                 refiner: Refiner | None = None, pose_model: PoseLSTM | None = None,
                 device: torch.device | str = "cpu", chunk: int = 16) -> None:
        self.device = torch.device(device)
        self.pose_model = None if pose_model is None else pose_model.to(self.device).eval()
        self.forecaster = forecaster.to(self.device, memory_format=torch.channels_last).eval()  # faster convs
        self.structure = structure or JointHeatmaps(num_joints=forecaster.config.motion_channels)
        self.crop_margin = crop_margin
        self.refiner = refiner
        self.chunk = chunk  # frames decoded per forward: bounds memory for long videos
        self.size = forecaster.config.resolution
        self.source: Path | None = None  # the checkpoint folder, named in errors about the model's output

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "auto", **kwargs) -> "ImageToVideoPipeline":
        """Load G_M from a run folder (latest checkpoint) or a checkpoint folder; data settings from the
        run's config.yaml when present (heatmap σ, crop margin)."""
        ckpt = find_checkpoint(path)
        forecaster = load_pretrained(ckpt, "generator")
        data = DataConfig()
        for cand in (ckpt / "config.yaml", ckpt.parent.parent / "config.yaml", Path(path) / "config.yaml"):
            if cand.is_file():
                data = load_section(DataConfig, cand, "data")
                break
        structure = JointHeatmaps(num_joints=forecaster.config.motion_channels, sigma=data.sigma)
        pipe = cls(forecaster, structure, data.crop_margin, device=pick_device(device), **kwargs)
        pipe.source = ckpt
        return pipe

    def load_pose_model(self, path: str | Path) -> None:
        """Attach G_C for bodies (the pose LSTM, §4) from a run or checkpoint folder."""
        self.pose_model = load_pretrained(find_checkpoint(path), "pose_lstm").to(self.device).eval()

    def forecast_poses(self, observed: np.ndarray, num_frames: int) -> np.ndarray:
        """G_C: (T_obs, J, 3) observed poses in pixels -> (num_frames, J, 3) forecast poses (visibility 1)."""
        if self.pose_model is None:
            raise UserError("no pose model attached (use load_pose_model or --pose-checkpoint)")
        return forecast_poses(pose_lstm_predictor(self.pose_model, self.device), observed, num_frames)

    def prepare(self, image: np.ndarray, poses: np.ndarray, image_pose: np.ndarray | None = None,
                crop: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Crop image and poses to the square around the person (as in training) at model resolution."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise UserError(f"image must be (H, W, 3) RGB, got shape {image.shape}")
        poses = np.asarray(poses, dtype=np.float32)
        j = self.structure.channels
        if poses.ndim != 3 or poses.shape[1:] != (j, 3):
            raise UserError(f"poses must be (T, {j}, 3) [x, y, visibility], got shape {poses.shape}")
        ref = poses[0] if image_pose is None else np.asarray(image_pose, dtype=np.float32)
        all_joints = np.concatenate([ref[None], poses])  # (T + 1, J, 3)
        if crop:
            box = person_box(np.zeros((0, 4)), all_joints, self.crop_margin)
        else:  # the whole image, padded to a square
            h, w = image.shape[:2]
            box = ((w - 1) / 2, (h - 1) / 2, float(max(h, w)))
        frame = crop_frame(image, box, self.size)
        affine = crop_affine(box, self.size)
        mapped = apply_affine(all_joints, affine)
        return frame, mapped[0], mapped[1:], affine

    def __call__(self, image: np.ndarray, poses: np.ndarray | None = None, image_pose: np.ndarray | None = None,
                 motion_maps: torch.Tensor | None = None, image_motion: torch.Tensor | None = None,
                 crop: bool = True) -> VideoOutput:
        """Generate one frame per pose (or per motion map when `motion_maps` (T, C, S, S) is given).

        The whole video in memory: for long videos iterate `stream` instead."""
        chunks = list(self.stream(image, poses, image_pose, motion_maps, image_motion, crop))
        first = chunks[0]

        def cat(name: str) -> np.ndarray | None:
            parts = [getattr(c, name) for c in chunks]
            return None if parts[0] is None else np.concatenate(parts)

        return VideoOutput(frames=cat("frames"), conditions=cat("conditions"), joints=cat("joints"),
                           masks=cat("masks"), input_frame=first.input_frame, affine=first.affine)

    @torch.no_grad()
    def stream(self, image: np.ndarray, poses: np.ndarray | None = None, image_pose: np.ndarray | None = None,
               motion_maps: torch.Tensor | None = None, image_motion: torch.Tensor | None = None,
               crop: bool = True, chunk: int | None = None) -> Iterator[VideoOutput]:
        """The video of `__call__` as consecutive VideoOutputs of at most `chunk` frames (default `self.chunk`).

        Memory is flat in the number of frames: each chunk's motion maps are rendered from its poses, decoded
        (Eq. 8, f_I and f_M(M_t) shared by all chunks), refined by `refiner` when attached (it sees one chunk:
        the chunk is its window) and checked to be finite before it is yielded. All chunks share `input_frame`
        and `affine`; their `joints`/`conditions`/`masks` cover their own frames.
        """
        s = self.size
        chunk = self.chunk if chunk is None else chunk
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        if motion_maps is None:
            if poses is None:
                raise UserError("give either poses or motion_maps")
            frame, ref, joints, affine = self.prepare(image, poses, image_pose, crop)
            image_motion = self.structure.render(torch.from_numpy(ref)[None], s, s)  # (1, C, S, S)
            total = len(joints)
        else:
            frame, joints, affine = image, None, None
            if image_motion is None:
                image_motion = motion_maps[:1]
            image_motion = image_motion.reshape(1, *motion_maps.shape[1:])
            total = len(motion_maps)
        if total == 0:
            raise UserError("no poses given: nothing to generate")
        if frame.shape[:2] != (s, s):
            raise UserError(f"image is {frame.shape[1]}x{frame.shape[0]}, the model needs {s}x{s}")
        dev = self.device
        img = to_tensor(frame)[None].to(dev)  # (1, 3, S, S)
        m_t = image_motion.to(dev)
        for i in range(0, total, chunk):
            part = None if joints is None else joints[i : i + chunk]
            # heatmaps are ~213 KB a frame at 64x64: rendered per chunk, never for the whole sequence
            maps = self.structure.render(torch.from_numpy(part), s, s) if part is not None else motion_maps[i : i + chunk]
            out = self.forecaster.forecast(img, m_t, maps.to(dev)[None])  # (1, T', ...)
            video = out.frame[0].float()  # (T', 3, S, S)
            if self.refiner is not None:
                video = self.refiner(video[None], maps.to(dev)[None])[0]
            if not bool(torch.isfinite(video).all()):  # NaN frames would be written as black, exit 0
                raise UserError(f"the model produced non-finite (NaN or Inf) values in frames {i}-{i + len(video) - 1}"
                                " (check its weights)", self.source)
            yield VideoOutput(
                frames=to_uint8(video.cpu()),
                conditions=maps.cpu().numpy(),
                joints=part,
                masks=None if out.mask is None else out.mask[0, :, 0].float().cpu().numpy(),
                input_frame=frame,
                affine=affine,
            )
