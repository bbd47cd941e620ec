"""Image + structure sequence -> video (§3, Fig. 2): G_C's structures -> G_M per frame -> optional G_R.

    pipe = ImageToVideoPipeline.from_pretrained("runs/puppet-64")
    out = pipe(image, poses)          # image (H, W, 3) uint8, poses (T, J, 3) [x, y, v] in image pixels
    out.frames                        # (T, S, S, 3) uint8; frame i is conditioned on poses[i]

    for part in pipe.stream(image, poses):  # the same frames in chunks: memory flat in the video's length
        ...

The input image shows the subject in `image_pose` (default: poses[0]); it is I_t and its structure is M_t.
Frames are produced by G_M's `forecast` (f_I and f_M(M_t) computed once, Eq. 8). The second stage (`refiner`,
G_R of §6) refines the coarse frames in windows of its clip length K (pipelines/windows.py: the paper's
non-overlapping windows, or overlapping ones with a cross-fade) in the same residual form (Eq. 15).

A pipeline folder (`structvid export`, the bundled demo) names its stages in `pipeline.json`:

    {"forecaster": "forecaster", "refiner": "refiner", "pose_lstm": "pose_lstm",
     "structure": {"kind": "joints", "num_joints": 13, "sigma": 1.5}, "crop_margin": 0.15, "window_overlap": 0}

each value the stem of a `{stem}.safetensors` + `{stem}.json` pair beside it (models/saving.py). A training run
folder works too: a G_M run (its `generator` module), or a G_R run, which names its frozen G_M in config.yaml.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from structvid.config import DataConfig, StructureConfig, from_dict, load_section
from structvid.devices import autocast, inference_precision, pick_device
from structvid.errors import UserError
from structvid.io.images import to_tensor, to_uint8
from structvid.models.forecaster import Forecaster
from structvid.models.pose_lstm import PoseLSTM
from structvid.models.refiner import Refiner
from structvid.models.saving import find_checkpoint, find_forecaster, find_module, load_pretrained, run_config_file
from structvid.pipelines.conditions import ConditionSource, GivenStructure, PoseForecast
from structvid.pipelines.windows import check_overlap, refine_stream
from structvid.structure.base import Structure
from structvid.structure.factory import build_structure
from structvid.structure.framing import crop_affine, crop_frame
from structvid.structure.heatmaps import JointHeatmaps

MANIFEST = "pipeline.json"


@dataclass
class PipelineManifest:
    """`pipeline.json`: which files hold which stage, and the settings the stages were trained with."""

    forecaster: str = "forecaster"
    refiner: str | None = None
    pose_lstm: str | None = None
    structure: dict = field(default_factory=lambda: {"kind": "joints", "num_joints": 13, "sigma": 1.5})
    crop_margin: float = 0.15
    window_overlap: int = 0  # G_R windows: 0 = the paper's non-overlapping windows (pipelines/windows.py)

    @classmethod
    def read(cls, path: Path) -> "PipelineManifest":
        try:
            raw = json.loads(path.read_text())
            if not isinstance(raw, dict):
                raise TypeError("not a JSON object")
            unknown = set(raw) - set(cls.__dataclass_fields__)
            if unknown:
                raise KeyError(f"unknown keys {sorted(unknown)}")
            m = cls(**raw)
            for stem in (m.forecaster, m.refiner, m.pose_lstm):
                if stem is not None and (not isinstance(stem, str) or not stem or "/" in stem or stem.startswith(".")):
                    raise ValueError(f"a stage must name a file stem in this folder, got {stem!r}")
            if not isinstance(m.structure, dict):
                raise TypeError("structure must be a JSON object")
            from_dict(StructureConfig, m.structure, str(path), "structure.")
            if not (isinstance(m.window_overlap, int) and m.window_overlap >= 0):
                raise ValueError(f"window_overlap must be an integer >= 0, got {m.window_overlap!r}")
        except FileNotFoundError:
            raise UserError("pipeline manifest not found", path) from None
        except (ValueError, TypeError, KeyError, AttributeError, UnicodeDecodeError) as e:
            raise UserError(f"corrupt pipeline manifest ({e})", path) from None
        return m

    def write(self, path: Path) -> None:
        from structvid.io.files import atomic_write_text

        atomic_write_text(path, json.dumps(asdict(self), indent=2) + "\n")


@dataclass
class VideoOutput:
    frames: np.ndarray  # (T, S, S, 3) uint8: the output (refined when G_R ran)
    conditions: np.ndarray  # (T, C, S, S) float motion maps M_{t+k}
    params: np.ndarray | None  # (T, ...) structure parameters in output pixels, e.g. joints (None when maps were given)
    masks: np.ndarray | None  # (T, S, S) residual motion masks m in [0, 1] (Eq. 7), None without one
    input_frame: np.ndarray  # (S, S, 3) uint8, I_t as the network saw it (cropped, resized)
    affine: np.ndarray | None = None  # 2x3 map from input-image pixels to output pixels (None with maps)
    coarse: np.ndarray | None = None  # (T, S, S, 3) uint8 G_M frames before G_R (None when not refined)
    refine_masks: np.ndarray | None = None  # (T, S, S) G_R's spatiotemporal mask m of Eq. 15 (None: not refined)


class ImageToVideoPipeline:
    def __init__(self, forecaster: Forecaster, structure: Structure | None = None, crop_margin: float = 0.15,
                 refiner: Refiner | None = None, pose_model: PoseLSTM | None = None,
                 device: torch.device | str = "cpu", chunk: int = 16, window_overlap: int = 0,
                 precision: str = "auto") -> None:
        self.device = torch.device(device)
        # G_M's and G_R's forward passes run under autocast in this precision (devices.inference_precision:
        # "auto" = bf16 on CPUs with native bf16, fp32 elsewhere); outputs are converted back to fp32
        self.precision = inference_precision(precision, self.device)
        # G_C for bodies (§4), used by `pose_forecast`; faces get theirs from structure.faces.transfer
        self.pose_model = None if pose_model is None else pose_model.to(self.device).eval()
        self.forecaster = forecaster.to(self.device, memory_format=torch.channels_last).eval()  # faster convs
        self.structure = structure or JointHeatmaps(num_joints=forecaster.config.motion_channels)
        if self.structure.channels != forecaster.config.motion_channels:
            raise UserError(f"the {self.structure.name} structure renders {self.structure.channels} channels, G_M "
                            f"expects {forecaster.config.motion_channels} (model.motion_channels)")
        self.crop_margin = crop_margin
        self.refiner: Refiner | None = None
        self.window_overlap = window_overlap
        if refiner is not None:
            self.attach_refiner(refiner)
        self.chunk = chunk  # frames decoded per forward: bounds memory for long videos
        self.size = forecaster.config.resolution
        self.source: Path | None = None  # the checkpoint folder, named in errors about the model's output

    def attach_refiner(self, refiner: Refiner | None, window_overlap: int | None = None) -> None:
        """Attach G_R (or detach it with None); it must match G_M's resolution and structure."""
        if window_overlap is not None:
            self.window_overlap = window_overlap
        if refiner is None:
            self.refiner = None
            return
        fc, rc = self.forecaster.config, refiner.config
        if (rc.resolution, rc.motion_channels, rc.image_channels) != (fc.resolution, fc.motion_channels,
                                                                       fc.image_channels):
            raise UserError(f"G_R refines {rc.resolution}x{rc.resolution} clips with {rc.image_channels} + "
                            f"{rc.motion_channels} channels, G_M makes {fc.resolution}x{fc.resolution} frames with "
                            f"{fc.image_channels} + {fc.motion_channels}: they do not belong together")
        try:
            check_overlap(rc.clip_length, self.window_overlap)
        except ValueError as e:
            raise UserError(str(e)) from None
        self.refiner = refiner.to(self.device).eval()

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "auto", refine: bool = True,
                        **kwargs) -> "ImageToVideoPipeline":
        """Load the stages of a pipeline folder (`pipeline.json`), a G_M run or checkpoint folder, or a G_R run
        (with the G_M its config.yaml names). `refine=False` leaves G_R out."""
        path = Path(path)
        dev = pick_device(device)
        if (path / MANIFEST).is_file():
            m = PipelineManifest.read(path / MANIFEST)
            forecaster = load_pretrained(path, m.forecaster)
            structure = build_structure(m.structure, str(path / MANIFEST))
            pipe = cls(forecaster, structure, m.crop_margin, device=dev, window_overlap=m.window_overlap, **kwargs)
            if refine and m.refiner:
                pipe.attach_refiner(load_pretrained(path, m.refiner))
            if m.pose_lstm:
                pipe.pose_model = load_pretrained(path, m.pose_lstm).to(pipe.device).eval()
            pipe.source = path
            return pipe
        ckpt = find_checkpoint(path)
        refiner_file = find_module(ckpt, ("refiner",))
        config_yaml = run_config_file(ckpt, path)
        if refiner_file is not None:  # a G_R run: its frozen G_M is the one it was trained on
            if config_yaml is None:
                raise UserError("a G_R checkpoint without its run's config.yaml: cannot tell which G_M it refines",
                                ckpt)
            from structvid.config import RefineDataConfig

            gm = load_section(RefineDataConfig, config_yaml, "data").forecaster
            if not gm:
                raise UserError("data.forecaster is empty: this G_R run refined other videos, load a G_M "
                                "pipeline and attach_refiner() it instead", config_yaml)
            pipe = cls.from_pretrained(gm, device, refine=False, **kwargs)
            if refine:
                pipe.attach_refiner(load_pretrained(ckpt, "refiner"))
            pipe.source = ckpt
            return pipe
        name = find_forecaster(ckpt)
        data = DataConfig() if config_yaml is None else load_section(DataConfig, config_yaml, "data")
        forecaster = load_pretrained(ckpt, name)
        structure = (JointHeatmaps(num_joints=forecaster.config.motion_channels) if config_yaml is None
                     else build_structure(load_section(StructureConfig, config_yaml, "structure")))
        pipe = cls(forecaster, structure, data.crop_margin, device=dev, **kwargs)
        pipe.source = ckpt
        return pipe

    def load_pose_model(self, path: str | Path) -> None:
        """Attach G_C for bodies (the pose LSTM, §4) from a run or checkpoint folder."""
        self.pose_model = load_pretrained(find_checkpoint(path), "pose_lstm").to(self.device).eval()

    def pose_forecast(self, observed: np.ndarray, num_frames: int) -> PoseForecast:
        """G_C for bodies as a condition source: the LSTM forecasts `num_frames` poses after `observed`."""
        if self.pose_model is None:
            raise UserError("no pose model attached (use load_pose_model or --pose-checkpoint)")
        return PoseForecast(self.pose_model, observed, num_frames, self.device)

    def forecast_poses(self, observed: np.ndarray, num_frames: int) -> np.ndarray:
        """G_C: (T_obs, J, 3) observed poses in pixels -> (num_frames, J, 3) forecast poses (visibility 1)."""
        return self.pose_forecast(observed, num_frames).poses()

    def prepare(self, image: np.ndarray, poses: np.ndarray, image_pose: np.ndarray | None = None,
                crop: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Crop image and structures to the square around the subject (as in training) at model resolution:
        (frame, image structure, structures, affine), structures in output pixels."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise UserError(f"image must be (H, W, 3) RGB, got shape {image.shape}")
        poses = self.structure.check(poses)
        ref = poses[0] if image_pose is None else self.structure.check(np.asarray(image_pose)[None])[0]
        both = np.concatenate([ref[None], poses])  # (T + 1, ...)
        box = self._box(both, image.shape[:2], crop)
        frame = crop_frame(image, box, self.size)
        affine = crop_affine(box, self.size)
        mapped = self.structure.transform(both, affine)
        return frame, mapped[0], mapped[1:], affine

    def _box(self, params: np.ndarray, image_hw: tuple[int, int], crop: bool) -> tuple[float, float, float]:
        """The square the network sees: around the subject (the structure's framing, as in training), or the
        whole image."""
        if crop:
            return self.structure.box(params, self.crop_margin)
        h, w = image_hw  # the whole image, padded to a square
        return (w - 1) / 2, (h - 1) / 2, float(max(h, w))

    def __call__(self, image: np.ndarray, poses: np.ndarray | ConditionSource | None = None,
                 image_pose: np.ndarray | None = None,
                 motion_maps: torch.Tensor | None = None, image_motion: torch.Tensor | None = None,
                 crop: bool = True) -> VideoOutput:
        """Generate one frame per pose (or per motion map when `motion_maps` (T, C, S, S) is given).

        The whole video in memory: for long videos iterate `stream` instead."""
        return _concat(list(self.stream(image, poses, image_pose, motion_maps, image_motion, crop)))

    @torch.no_grad()
    def stream(self, image: np.ndarray, poses: np.ndarray | ConditionSource | None = None,
               image_pose: np.ndarray | None = None,
               motion_maps: torch.Tensor | None = None, image_motion: torch.Tensor | None = None,
               crop: bool = True, chunk: int | None = None) -> Iterator[VideoOutput]:
        """The video of `__call__` as consecutive VideoOutputs of at most `chunk` frames (default `self.chunk`).

        `poses` are the structure parameters of the frames (e.g. (T, J, 3) joints) or a condition source
        (pipelines/conditions.py: a pose forecast, a face expression transfer). Memory is flat in the number of
        frames: each chunk's motion maps are rendered from its poses, decoded
        (Eq. 8, f_I and f_M(M_t) shared by all chunks) and checked to be finite before it is yielded. With a
        refiner attached, G_R refines the decoded frames in windows of its K (`_refined`), so the pieces then
        follow the windows, not `chunk`. All pieces share `input_frame` and `affine`; their `params`,
        `conditions`, `masks` (and `coarse`, `refine_masks`) cover their own frames.
        """
        s = self.size
        chunk = self.chunk if chunk is None else chunk
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        if motion_maps is None:
            if poses is None:
                raise UserError("give either poses or motion_maps")
            source = poses if hasattr(poses, "conditions") else GivenStructure(poses)
            cond = source.conditions(image)
            poses, image_pose = cond.params, cond.image_params if image_pose is None else image_pose
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

        def coarse_chunks() -> Iterator[tuple[VideoOutput, torch.Tensor, torch.Tensor]]:
            for i in range(0, total, chunk):
                part = None if joints is None else joints[i : i + chunk]
                # heatmaps are ~213 KB a frame at 64x64: rendered per chunk, never for the whole sequence
                maps = self.structure.render(torch.from_numpy(part), s, s) if part is not None else motion_maps[i : i + chunk]
                with autocast(dev, self.precision):
                    out = self.forecaster.forecast(img, m_t, maps.to(dev)[None])  # (1, T', ...)
                video = out.frame[0].float()  # (T', 3, S, S)
                self._check_finite(video, i)
                yield VideoOutput(
                    frames=to_uint8(video.cpu()),
                    conditions=maps.cpu().numpy(),
                    params=part,
                    masks=None if out.mask is None else out.mask[0, :, 0].float().cpu().numpy(),
                    input_frame=frame,
                    affine=affine,
                ), video, maps.to(dev)

        if self.refiner is None:
            for out, _, _ in coarse_chunks():
                yield out
            return
        yield from self._refined(coarse_chunks())

    def _check_finite(self, video: torch.Tensor, first: int) -> None:
        if not bool(torch.isfinite(video).all()):  # NaN frames would be written as black, exit 0
            raise UserError(f"the model produced non-finite (NaN or Inf) values in frames {first}-{first + len(video) - 1}"
                            " (check its weights)", self.source)

    def _refine_window(self, clip: torch.Tensor, motions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with autocast(self.device, self.precision):
            out = self.refiner(clip, motions.to(clip.dtype))
        return out.clip.float(), out.mask.float()

    def _refined(self, chunks: Iterator[tuple[VideoOutput, torch.Tensor, torch.Tensor]]) -> Iterator[VideoOutput]:
        """G_R over the coarse chunks in windows of K (pipelines/windows.py); each refined piece is yielded with
        the coarse frames, conditions and structures of the same frames."""
        pending: deque[VideoOutput] = deque()  # coarse chunks whose frames have not all been refined yet
        done = 0  # frames yielded

        def feed() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
            for out, video, maps in chunks:
                pending.append(out)
                yield video, maps

        for refined, mask in refine_stream(feed(), self._refine_window, self.refiner.config.clip_length,
                                           self.window_overlap):
            self._check_finite(refined, done)
            need, parts = len(refined), []
            while need:  # the coarse frames these refined frames came from
                head = pending.popleft()
                if len(head.frames) > need:
                    pending.appendleft(_slice(head, need, len(head.frames)))
                    head = _slice(head, 0, need)
                parts.append(head)
                need -= len(head.frames)
            coarse = _concat(parts)
            yield replace(coarse, frames=to_uint8(refined.cpu()), coarse=coarse.frames,
                          refine_masks=None if mask is None else mask[:, 0].cpu().numpy())
            done += len(refined)

    @torch.no_grad()
    def refine_video(self, frames: Iterator[np.ndarray], poses: np.ndarray, crop: bool = True) -> Iterator[VideoOutput]:
        """G_R alone on a video made by any generator (§7.4, Fig. 12): `frames` yields uint8 (n, H, W, 3) chunks
        of the video, `poses` (T, J, 3) its structure in the video's pixels, one pose per frame. Frames are
        cropped to the square around the person (as in training) and refined in windows of K."""
        if self.refiner is None:
            raise UserError("no refiner (G_R) in this checkpoint: nothing to refine with")
        s = self.size
        poses = self.structure.check(poses)
        if len(poses) == 0:
            raise UserError("no poses given: nothing to refine")
        dev = self.device

        def coarse_chunks() -> Iterator[tuple[VideoOutput, torch.Tensor, torch.Tensor]]:
            done, b = 0, None
            for block in frames:
                block = np.asarray(block)
                if done + len(block) > len(poses):
                    raise UserError(f"the video has more frames than the pose file has poses ({len(poses)})")
                if b is None:  # one square for the whole video, as in training
                    b = self._box(poses, block.shape[1:3], crop)
                    affine = crop_affine(b, s)
                cropped = np.stack([crop_frame(f, b, s) for f in block])
                part = self.structure.transform(poses[done : done + len(block)], affine)
                maps = self.structure.render(torch.from_numpy(part), s, s)
                video = to_tensor(cropped).to(dev)
                yield VideoOutput(frames=cropped, conditions=maps.numpy(), params=part, masks=None,
                                  input_frame=cropped[0], affine=affine), video, maps.to(dev)
                done += len(block)
            if done < len(poses):
                raise UserError(f"the video has {done} frames, the pose file {len(poses)} poses: they must match")

        yield from self._refined(coarse_chunks())


def _concat(parts: list[VideoOutput]) -> VideoOutput:
    """Consecutive pieces of one video as one VideoOutput (input frame and affine from the first)."""

    def cat(name: str) -> np.ndarray | None:
        got = [getattr(p, name) for p in parts]
        return None if got[0] is None else np.concatenate(got)

    return VideoOutput(frames=cat("frames"), conditions=cat("conditions"), params=cat("params"), masks=cat("masks"),
                       input_frame=parts[0].input_frame, affine=parts[0].affine, coarse=cat("coarse"),
                       refine_masks=cat("refine_masks"))


def _slice(out: VideoOutput, a: int, b: int) -> VideoOutput:
    """Frames a..b-1 of a chunk."""

    def cut(x: np.ndarray | None) -> np.ndarray | None:
        return None if x is None else x[a:b]

    return VideoOutput(frames=out.frames[a:b], conditions=out.conditions[a:b], params=cut(out.params),
                       masks=cut(out.masks), input_frame=out.input_frame, affine=out.affine, coarse=cut(out.coarse),
                       refine_masks=cut(out.refine_masks))
