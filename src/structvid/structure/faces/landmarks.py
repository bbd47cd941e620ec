"""Facial landmarks for the face structure of §4: the 68 iBUG points that the morphable model (Eq. 1-2) is fitted
to, in still images and, tracked and smoothed, in videos.

dlib's frontal HOG face detector and its 68-point shape predictor (Kazemi & Sullivan, CVPR 2014), with the model
files of the `face_recognition_models` package. Landmarks are in structvid's image convention (pixels, x right,
y down, pixel (row r, column c) at (x = c, y = r)); dlib reports them as whole pixels.

Videos (`track_landmarks`): detect on the first frame, follow the face with dlib's correlation tracker (Danelljan et
al., BMVC 2014), re-detect when its confidence drops or every `redetect_every` frames, and smooth the landmarks with
a causal One-Euro filter (Casiez, Roussel & Vogel, "1€ filter", CHI 2012), so the whole thing streams.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np

from structvid.errors import UserError
from structvid.structure.faces.morphable import require

MIN_SIDE = 32  # smaller images cannot hold a face the HOG detector finds (its window is 80 px, upsampled x2 at most)
DETECT_SIDE = 640  # detection runs on a copy whose longer side is at most this (HOG cost grows with the area)


def model_file(name: str) -> Path:
    """A dlib model file of the `face_recognition_models` package. Its folder is found without importing the
    package (its __init__ needs pkg_resources, which recent setuptools no longer ship)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the face path needs the optional package 'face_recognition_models': "
                        "pip install 'structvid[faces]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise UserError("dlib model file missing from the face_recognition_models package; reinstall it", path)
    return path


class Box(NamedTuple):
    """A face box in full-resolution image pixels."""

    left: float
    top: float
    right: float
    bottom: float

    @property
    def area(self) -> float:
        return max(0.0, self.right - self.left) * max(0.0, self.bottom - self.top)

    def iou(self, other: "Box") -> float:
        inter = Box(max(self.left, other.left), max(self.top, other.top),
                    min(self.right, other.right), min(self.bottom, other.bottom)).area
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def scaled(self, k: float) -> "Box":
        return Box(self.left * k, self.top * k, self.right * k, self.bottom * k)


def as_rgb(image: np.ndarray, source: str | Path | None = None) -> np.ndarray:
    """uint8 (H, W, 3) RGB from an RGB, (H, W) or (H, W, 1) grayscale image; other layouts and images with a side
    under MIN_SIDE pixels are a UserError naming `source`."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise UserError(f"face detection needs a uint8 image, got {a.dtype}", source)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)  # (H, W) -> (H, W, 3): the detector and predictor take RGB
    if a.ndim != 3 or a.shape[-1] != 3:
        raise UserError(f"face detection needs an RGB or grayscale image, got shape {a.shape}", source)
    if min(a.shape[:2]) < MIN_SIDE:
        raise UserError(f"image is {a.shape[1]}x{a.shape[0]} pixels, too small to find a face in "
                        f"(at least {MIN_SIDE}x{MIN_SIDE})", source)
    return np.ascontiguousarray(a)


class FaceDetector:
    """dlib's frontal HOG face detector + 68-point shape predictor.

    `detect` runs on a copy shrunk to at most `detect_side` pixels on its longer side (HOG is ~4x cheaper at half
    the size; faces then need to be >= ~80·side/detect_side px wide) and retries once with the image upsampled x2
    when nothing is found (faces down to ~40 px at the detection size). Landmarks are predicted on the full image.
    """

    def __init__(self, detect_side: int = DETECT_SIDE) -> None:
        dlib = require("dlib")
        self.dlib = dlib
        self.detect_side = detect_side
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(model_file("shape_predictor_68_face_landmarks.dat")))

    def _small(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        """The detection-size copy and its scale (small pixels per full pixel)."""
        k = min(1.0, self.detect_side / max(image.shape[:2]))
        if k == 1.0:
            return image, 1.0
        import cv2

        return cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA), k

    def detect(self, image: np.ndarray) -> list[Box]:
        """Face boxes in an RGB uint8 (H, W, 3) image, largest first."""
        small, k = self._small(image)
        rects = self._detector(small, 0)
        if len(rects) == 0:
            rects = self._detector(small, 1)  # small faces: one x2 upsampling, only when needed (4x the cost)
        boxes = [Box(r.left(), r.top(), r.right(), r.bottom()).scaled(1 / k) for r in rects]
        return sorted(boxes, key=lambda b: -b.area)

    def shape(self, image: np.ndarray, box: Box):
        """dlib's full_object_detection (68 parts) for the face in `box`."""
        rect = self.dlib.rectangle(*(int(round(v)) for v in box))
        return self._predictor(image, rect)

    def landmarks(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(68, 2) float32 [x, y] iBUG landmarks of the face in `box`."""
        s = self.shape(image, box)
        return np.array([(p.x, p.y) for p in s.parts()], np.float32)


@functools.lru_cache(maxsize=1)
def default_detector() -> FaceDetector:
    """One shared detector: loading the 68-point predictor reads ~100 MB."""
    return FaceDetector()


def find_face(image: np.ndarray, source: str | Path | None = None, pick: str = "only",
              detector: FaceDetector | None = None) -> np.ndarray:
    """The (68, 2) landmarks of the face in a portrait. No face, or several with `pick="only"`, is a UserError
    naming `source`; `pick="largest"` takes the largest box."""
    if pick not in ("only", "largest"):
        raise ValueError(f"pick must be 'only' or 'largest', got {pick!r}")
    image = as_rgb(image, source)
    detector = detector or default_detector()
    boxes = detector.detect(image)
    if not boxes:
        raise UserError("no face found", source)
    if len(boxes) > 1 and pick == "only":
        raise UserError(f"{len(boxes)} faces found; use --face largest to animate the largest one", source)
    return detector.landmarks(image, boxes[0])


# ---------------------------------------------------------------------------------------------- smoothing


class OneEuroFilter:
    """Causal One-Euro filter (Casiez, Roussel & Vogel, CHI 2012) on arrays, element-wise.

    An exponential smoother whose cutoff rises with the signal's speed: fc = min_cutoff + beta·|dx/dt| (Hz, dx/dt
    itself low-passed at d_cutoff Hz). Slow motion is smoothed hard (jitter goes), fast motion passes with little lag.
    Units: `rate` in frames per second, x in the caller's units (beta is per unit of x/s)."""

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0, rate: float = 25.0) -> None:
        if not (min_cutoff > 0 and d_cutoff > 0 and rate > 0 and beta >= 0):
            raise ValueError("One-Euro filter needs min_cutoff, d_cutoff, rate > 0 and beta >= 0")
        self.min_cutoff, self.beta, self.d_cutoff, self.rate = min_cutoff, beta, d_cutoff, rate
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray | float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau * self.rate)  # te = 1 / rate

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None:
            self._x, self._dx = x.copy(), np.zeros_like(x)
            return x.copy()
        dx = (x - self._x) * self.rate
        a_d = self._alpha(self.d_cutoff)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self._dx))
        self._x = a * x + (1 - a) * self._x
        return self._x.copy()


def second_difference_rms(track: np.ndarray) -> float:
    """Jitter of a (T, ...) trajectory: RMS of x[t+1] − 2x[t] + x[t−1] (constant-velocity motion gives 0)."""
    t = np.asarray(track, np.float64)
    if len(t) < 3:
        return 0.0
    d2 = t[2:] - 2 * t[1:-1] + t[:-2]
    return float(np.sqrt(np.mean(d2 ** 2)))


# ---------------------------------------------------------------------------------------------- tracking


def track_landmarks(frames: Iterable[np.ndarray], detector: FaceDetector | None = None, *,
                    redetect_every: int = 30, min_quality: float = 7.0, rate: float = 25.0,
                    min_cutoff: float | None = 1.0, beta: float = 10.0,
                    source: str | Path | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Landmarks of one face through a video given as uint8 (n, H, W, 3) RGB chunks (e.g. `io.video.iter_video`):
    yields, per chunk, ((n, 68, 2) float32 landmarks, (n,) bool found).

    The face is detected on the first frame (the largest one), then followed with dlib's correlation tracker on
    the detection-size copy; the detector runs again every `redetect_every` frames and whenever the tracker's
    peak-to-side-lobe ratio falls below `min_quality` (keeping the detection that overlaps the tracked box most).
    A frame without a face (detector and tracker both lost) keeps the last good landmarks and is flagged
    `found = False`; frames before the first face get the first face's landmarks (their chunks wait until then).
    A video with no face at all is a UserError naming `source`.

    Smoothing: a causal One-Euro filter (`OneEuroFilter`, Casiez et al., CHI 2012) with `min_cutoff` Hz and
    `beta` in 1/(face widths per second) — landmarks are divided by the first face's box width before filtering,
    so the same settings serve any resolution. `min_cutoff=None` turns smoothing off. The filter restarts after a
    stretch without a face (no lag across the gap)."""
    detector = detector or default_detector()
    dlib = detector.dlib
    if redetect_every < 1:
        raise ValueError(f"redetect_every must be >= 1, got {redetect_every}")
    smooth = OneEuroFilter(min_cutoff, beta, 1.0, rate) if min_cutoff is not None else None
    tracker = None  # dlib.correlation_tracker while following a face
    tracked: Box | None = None  # its box, full-resolution pixels
    since_detect = 0
    unit = None  # the first face's width in pixels: the filter's unit of length
    last: np.ndarray | None = None  # last good (smoothed) landmarks
    lost = False  # the previous frame had no face (restart the filter)
    waiting: list[int] = []  # lengths of the chunks held back until the first face

    def frame_landmarks(frame: np.ndarray) -> np.ndarray | None:
        nonlocal tracker, tracked, since_detect
        small, k = detector._small(frame)
        quality = math.inf
        if tracker is not None:
            quality = tracker.update(small)
            p = tracker.get_position()
            tracked = Box(p.left(), p.top(), p.right(), p.bottom()).scaled(1 / k)
        if tracker is None or quality < min_quality or since_detect >= redetect_every:
            boxes = detector.detect(frame)
            since_detect = 0
            if boxes:
                box = boxes[0] if tracked is None or tracker is None else max(boxes, key=tracked.iou)
                if tracker is not None and tracked is not None and box.iou(tracked) == 0:
                    box = boxes[0]  # the tracked face is gone: take the largest one
                tracker = dlib.correlation_tracker()
                tracker.start_track(small, dlib.drectangle(*box.scaled(k)))
                tracked = box
            elif tracker is None or quality < min_quality:  # no detection and no confident tracker: no face
                tracker, tracked = None, None
                return None
        since_detect += 1
        return detector.landmarks(frame, tracked)

    for chunk in frames:
        chunk = np.asarray(chunk)
        out = np.empty((len(chunk), 68, 2), np.float32)
        found = np.zeros(len(chunk), bool)
        for i, frame in enumerate(chunk):
            lm = frame_landmarks(as_rgb(frame, source))
            if lm is None:
                lost = True
                if last is not None:
                    out[i] = last
                continue
            if unit is None:
                unit = max(1.0, tracked.right - tracked.left)
            if smooth is not None:
                if lost:
                    smooth.reset()
                lm = (smooth(lm / unit) * unit).astype(np.float32)  # filter in face widths
            lost = False
            found[i] = True
            if last is None:
                for n in waiting:  # chunks before the first face: its landmarks, flagged not found
                    yield np.repeat(lm[None], n, 0), np.zeros(n, bool)
                waiting = []
                out[:i] = lm
            last = lm
            out[i] = lm
        if last is None:
            waiting.append(len(chunk))
            continue
        yield out, found
    if last is None:
        raise UserError("no face found in any frame", source)
