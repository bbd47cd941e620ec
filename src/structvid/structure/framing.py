"""Framing (§7.1): the square crop the networks see, and how image coordinates follow it.

A structure decides its own square (`Structure.box`: around a person's joints and boxes, or a face's
landmarks); these helpers crop frames to it and map coordinates through the crop's affine.
"""

from __future__ import annotations

import cv2
import numpy as np


def person_box(bbox: np.ndarray, joints: np.ndarray, margin: float) -> tuple[float, float, float]:
    """Square (cx, cy, side) around every frame's bounding box (and visible joints), enlarged by `margin`."""
    boxes = np.asarray(bbox, dtype=np.float64).reshape(-1, 4)
    vis = joints[..., 2] > 0
    xs, ys = joints[..., 0][vis], joints[..., 1][vis]
    ok = np.isfinite(boxes).all(1) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    x1 = np.concatenate([boxes[ok, 0], xs]).min()
    y1 = np.concatenate([boxes[ok, 1], ys]).min()
    x2 = np.concatenate([boxes[ok, 2], xs]).max()
    y2 = np.concatenate([boxes[ok, 3], ys]).max()
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    return (x1 + x2) / 2, (y1 + y2) / 2, max(side, 1.0)


def crop_affine(box: tuple[float, float, float], size: int) -> np.ndarray:
    """2x3 affine mapping the square box onto a size x size image (pixel-centre convention)."""
    cx, cy, side = box
    s = size / side
    # The box [c - side/2, c + side/2] maps onto the output's pixel edges [-0.5, size - 0.5].
    return np.array([[s, 0, s * (side / 2 - cx) - 0.5], [0, s, s * (side / 2 - cy) - 0.5]])


def crop_frame(frame: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """Crop the square box (replicating the border outside the image) and resize it to size x size."""
    side = box[2]
    if side <= size:
        return cv2.warpAffine(frame, crop_affine(box, size), (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    # Downscaling: crop at native scale first, then area-average (warpAffine alone would alias).
    native = max(int(round(side)), size)
    crop = cv2.warpAffine(frame, crop_affine(box, native), (native, native), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def apply_affine(joints: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map (..., J, 3) [x, y, v] joints through a 2x3 affine; visibility is kept."""
    out = joints.astype(np.float32).copy()
    xy = joints[..., :2].astype(np.float64)
    out[..., :2] = xy @ affine[:, :2].T + affine[:, 2]
    return out


PASTE_FEATHER = 0.03  # soft edge of a pasted region, as a fraction of the box side


def _paste_window(shape: tuple[int, int], box: tuple[float, float, float],
                  margin: int) -> tuple[int, int, int, int]:
    """Pixel window (x0, y0, x1, y1) of the image that holds the box plus `margin` pixels, clipped to it."""
    h, w = shape
    cx, cy, side = box
    x0 = max(0, int(np.floor(cx - side / 2)) - margin)
    y0 = max(0, int(np.floor(cy - side / 2)) - margin)
    x1 = min(w, int(np.ceil(cx + side / 2)) + margin + 1)
    y1 = min(h, int(np.ceil(cy + side / 2)) + margin + 1)
    return x0, y0, max(x0, x1), max(y0, y1)


def paste_back_many(image: np.ndarray, crops: np.ndarray, box: tuple[float, float, float], regions: np.ndarray,
                    feather: float = PASTE_FEATHER, reference: np.ndarray | None = None) -> np.ndarray:
    """Paste generated crops (T, S, S, 3) back into one full-resolution uint8 image (H, W, 3): (T, H, W, 3).

    The inverse of `crop_frame`: each crop goes back through the inverse of `crop_affine(box, S)` (bilinear),
    so a portrait animated at the networks' resolution (Zhao et al., IJCV 2020, §4: the face crop of §7.1)
    is shown in the original picture. `regions` (T, S, S) or (S, S), in [0, 1] and in crop pixels, says
    where the crop replaces the image (e.g. the rendered normal map's coverage); it is warped the same way,
    eroded by r + 1 image pixels, r = max(feather * side, side / S, 1) (at least one crop pixel, the bilinear
    spread of its edge), and Gaussian-blurred within r (sigma r / 3), so the seam fades over ~r pixels and
    the blend weight is exactly 0 outside the region: there the image is kept bit-exact. Where the region meets the image's
    border it is not eroded (a face cut by the frame stays pasted to the edge).

    `reference` (S, S, 3): the crop the crops were made from (the network's input frame). Then only the change
    crop − reference is pasted (added to the image, upsampled the same way): a 64-pixel model then alters the
    full-resolution portrait only where it changed the face, instead of blurring all of it.
    """
    image, crops, regions = np.asarray(image), np.asarray(crops), np.asarray(regions)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[3] != 3 or crops.shape[1] != crops.shape[2]:
        raise ValueError(f"crops must be uint8 (T, S, S, 3), got {crops.dtype} {crops.shape}")
    t, size = crops.shape[:2]
    if regions.ndim == 2:
        regions = np.broadcast_to(regions, (t, *regions.shape))
    if regions.shape != (t, size, size):
        raise ValueError(f"regions must be (T, S, S) = {(t, size, size)} or (S, S), got {regions.shape}")
    if not feather >= 0:
        raise ValueError(f"feather must be >= 0, got {feather}")
    side = float(box[2])
    r = max(1, int(np.ceil(side / size)), int(round(feather * side)))
    x0, y0, x1, y1 = _paste_window(image.shape[:2], box, margin=r + int(np.ceil(side / size)) + 2)
    out = np.repeat(image[None], t, axis=0)  # (T, H, W, 3)
    if x1 <= x0 or y1 <= y0:
        return out  # the box lies outside the image
    # image -> crop affine of the window; WARP_INVERSE_MAP samples the crop at each window pixel
    affine = crop_affine(box, size) @ np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
    window = (x1 - x0, y1 - y0)
    # one pixel more than the blur's reach: the blended band ends a pixel inside the region's edge
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 3, 2 * r + 3))
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    original = image[y0:y1, x0:x1].astype(np.float32)
    base = None
    if reference is not None:
        base = cv2.warpAffine(np.asarray(reference, np.float32), affine, window, flags=flags,
                              borderMode=cv2.BORDER_REPLICATE)
    for i in range(t):
        pasted = cv2.warpAffine(crops[i].astype(np.float32), affine, window, flags=flags,
                                borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(np.clip(regions[i], 0, 1).astype(np.float32), affine, window, flags=flags,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        # erode (the default border value leaves the image's edges alone), then blur within the eroded band
        mask = cv2.erode(mask, kernel)
        mask = cv2.GaussianBlur(mask, (2 * r + 1, 2 * r + 1), r / 3, borderType=cv2.BORDER_REPLICATE)
        mask[mask < 1e-3] = 0  # float dust of the blur: the weight outside the region is exactly 0
        inside = mask > 0
        if not inside.any():
            continue
        m = mask[inside][:, None]  # (N, 1)
        if base is None:
            blend = original[inside] * (1 - m) + pasted[inside] * m
        else:  # only what the model changed
            blend = original[inside] + (pasted[inside] - base[inside]) * m
        out[i, y0:y1, x0:x1][inside] = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    return out


def paste_back(image: np.ndarray, crop: np.ndarray, box: tuple[float, float, float], region: np.ndarray,
               feather: float = PASTE_FEATHER) -> np.ndarray:
    """Paste one generated S x S crop back into the uint8 (H, W, 3) image it was cropped from (`crop_frame`
    with `box`), blended by `region` (S, S) in [0, 1]; see `paste_back_many`. Returns a new (H, W, 3) image."""
    crop, region = np.asarray(crop), np.asarray(region)
    if crop.ndim != 3:
        raise ValueError(f"crop must be uint8 (S, S, 3), got {crop.dtype} {crop.shape}")
    return paste_back_many(image, crop[None], box, region[None], feather)[0]
