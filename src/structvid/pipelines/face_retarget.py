"""Facial expression retargeting (§4 + §5 + §6, Figs. 5-8): a portrait animated by a reference video.

    retarget = FaceRetarget.from_pretrained("src/structvid/assets/face_demo")
    job = retarget.prepare(image, "reference.mp4", TransferSettings(mode="relative"))
    for part in retarget.stream(image, job):      # VideoOutputs, memory flat in the reference's length
        ...

G_C for faces: the target portrait's face is fitted once (α, β_target, pose; structure/faces/fitting.py), the
reference video is tracked and fitted in chunks (only its face parameters are kept: 75 floats a frame), the
reference's expressions are transferred onto the target (structure/faces/transfer.py) and rendered as normal
maps chunk by chunk by the pipeline, which runs G_M (and G_R when attached) as for bodies.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from structvid.errors import UserError
from structvid.pipelines.conditions import ExpressionTransfer
from structvid.pipelines.image_to_video import ImageToVideoPipeline, VideoOutput
from structvid.structure.faces.transfer import TransferSettings


@dataclass
class RetargetJob:
    """What the fits found: the condition source for the pipeline and a report of the reference's frames."""

    source: ExpressionTransfer
    target: np.ndarray  # (P,) the portrait's face parameters, its pixels
    reference: np.ndarray  # (T, P) the reference's, its pixels
    found: np.ndarray  # (T,) bool: a face was detected (else the last good fit was kept)
    fps: float

    @property
    def frames_without_face(self) -> int:
        return int((~self.found).sum())


class FaceRetarget:
    """A face pipeline (structure kind face_normals) plus the landmark detector and the 3DMM fitter."""

    def __init__(self, pipe: ImageToVideoPipeline) -> None:
        from structvid.structure.faces.normals import FaceNormals

        if not isinstance(pipe.structure, FaceNormals):
            raise UserError(f"this checkpoint animates {pipe.structure.name} structures, not faces: use a face "
                            "checkpoint (structure.kind face_normals)", pipe.source)
        self.pipe = pipe
        self.model = pipe.structure.model
        self._fitter = None

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> "FaceRetarget":
        return cls(ImageToVideoPipeline.from_pretrained(path, **kwargs))

    @property
    def fitter(self):
        if self._fitter is None:
            from structvid.structure.faces.fitting import FaceFitter

            self._fitter = FaceFitter(self.model.source or None)
        return self._fitter

    def fit_image(self, image: np.ndarray, source: str | Path | None = None, pick: str = "only") -> np.ndarray:
        """(P,) packed face parameters of the portrait's face, in its pixels."""
        from structvid.structure.faces.landmarks import find_face

        lm = find_face(image, source, pick)
        return self.fitter.fit_image(lm, image.shape[:2]).pack()

    def prepare(self, image: np.ndarray, reference: str | Path, settings: TransferSettings | None = None,
                pick: str = "only", image_source: str | Path | None = None,
                max_frames: int | None = None,
                progress: Callable[[str, int, int | None], None] | None = None) -> RetargetJob:
        """Fit the portrait and the reference video (frames decoded in chunks) and set up the transfer.
        `progress(stage, done, total)`: see `structure.faces.video_fit.fit_face_video`."""
        from structvid.structure.faces.video_fit import FaceSource, fit_face_video

        target = self.fit_image(image, image_source, pick)
        ref = FaceSource.from_video(reference)
        params, found, _ = fit_face_video(ref, self.fitter, max_frames=max_frames, progress=progress)
        m = self.model
        src = ExpressionTransfer(target, params, m.n_id, m.n_exp, settings or TransferSettings())
        return RetargetJob(src, target, params, found, ref.fps)

    def stream(self, image: np.ndarray, job: RetargetJob, chunk: int | None = None) -> Iterator[VideoOutput]:
        """The retargeted video in chunks (`ImageToVideoPipeline.stream`): G_M from the portrait, conditioned on
        the transferred normal maps (and G_R when the pipeline has one)."""
        yield from self.pipe.stream(image, job.source, image_pose=job.target, chunk=chunk)


def box_of(affine: np.ndarray, size: int) -> tuple[float, float, float]:
    """The square (cx, cy, side) whose `crop_affine(box, size)` is `affine` (framing.crop_affine inverted)."""
    a = float(affine[0, 0])
    side = size / a
    return side / 2 - (float(affine[0, 2]) + 0.5) / a, side / 2 - (float(affine[1, 2]) + 0.5) / a, side


def write_retarget(retarget: FaceRetarget, image: np.ndarray, job: RetargetJob, reference: str | Path, out: Path,
                   panel: bool = False, paste: bool = False, fps: float | None = None, gif: bool = True,
                   pasted: Path | None = None) -> list[Path]:
    """Write OUT (the reference's audio kept when it has one), OUT.gif (preview) and with `panel` OUT_panel.mp4:
    reference | target | normal maps | output (coarse | refined when G_R ran). `paste`: what the model changed in
    the face is added back into the full-resolution portrait (structure.framing.paste_back_many with the input
    crop as reference). `pasted`: also write that pasted video (and its preview) to PASTED from the same frames,
    so the model runs once for both. All files appear together when complete, or none."""
    import tempfile

    from structvid.io.video import (GIF_PREVIEW_FRAMES, VideoWriter, copy_audio, iter_video, side_by_side,
                                    video_files)
    from structvid.structure.framing import crop_frame, paste_back_many

    pipe = retarget.pipe
    s = pipe.size
    fps = fps or job.fps
    structure = pipe.structure
    ref_box = structure.box(job.reference[job.found] if job.found.any() else job.reference, pipe.crop_margin)
    ref_frames = (crop_frame(f, ref_box, s) for block in iter_video(reference, 32) for f in block)
    panel_path = out.with_name(out.stem + "_panel.mp4")
    targets = [(out, paste)] + ([(pasted, True)] if pasted is not None else [])  # (path, pasted frames?)
    with video_files() as files, tempfile.TemporaryDirectory() as tmp:
        silent = [VideoWriter(Path(tmp) / f"silent{i}.mp4", fps, name=path) for i, (path, _) in enumerate(targets)]
        previews = [files.video(path.with_suffix(".gif"), fps, max_frames=GIF_PREVIEW_FRAMES) if gif else None
                    for path, _ in targets]
        panel_video = files.video(panel_path, fps) if panel else None
        try:
            for part in retarget.stream(image, job):
                both = {False: part.frames}
                if any(p for _, p in targets):
                    region = (np.abs(part.conditions) > 0).any(axis=1).astype(np.float32)  # (T, S, S) face pixels
                    both[True] = paste_back_many(image, part.frames, box_of(part.affine, s), region,
                                                 reference=part.input_frame)
                for (_, p), writer, preview in zip(targets, silent, previews):
                    writer.write(both[p])
                    if preview is not None and preview.count < GIF_PREVIEW_FRAMES:
                        preview.write(both[p])
                if panel_video is not None:
                    refs = np.stack([next(ref_frames) for _ in range(len(part.frames))])
                    outs = [part.coarse, part.frames] if part.coarse is not None else [part.frames]
                    cols = [refs, part.input_frame, structure.to_rgb(part.conditions), *outs]
                    labels = ["reference", "target", "normal maps"] + (["coarse", "refined"] if len(outs) == 2
                                                                       else ["output"])
                    panel_video.write(side_by_side(cols, labels, scale=4 if s <= 64 else 2))
            for writer in silent:
                writer.close()
        except BaseException:
            for writer in silent:
                writer.abort()
            raise
        for i, (path, _) in enumerate(targets):
            copy_audio(Path(reference), Path(tmp) / f"silent{i}.mp4", files.temp_path(path))
    written = []
    for path, _ in targets:
        written += [path] + ([path.with_suffix(".gif")] if gif else [])
        if path == out and panel:
            written.append(panel_path)
    return written
