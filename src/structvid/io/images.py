"""Image loading/saving and conversions between uint8 frames and model tensors.

Conventions used across structvid:
- images on disk and in numpy are uint8 RGB, channel-last: (H, W, 3) or (T, H, W, 3);
- model tensors are float32 in [-1, 1], channel-first: (3, H, W) or (T, 3, H, W);
  `to_tensor` maps v -> v / 127.5 - 1 and `to_uint8` inverts it (rounded, clamped).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from structvid.errors import UserError
from structvid.io.files import atomic_path

__all__ = ["load_image", "save_image", "to_tensor", "to_uint8", "make_grid", "center_square", "heatmap_to_rgb"]


def _check_rgb_uint8(array: np.ndarray, what: str = "image") -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"{what} must be uint8 (H, W, 3), got {array.dtype} {array.shape}")
    return array


def center_square(image: Image.Image) -> Image.Image:
    """Crop the largest centred square (keeps the subject of a portrait centred)."""
    w, h = image.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    return image.crop((left, top, left + s, top + s))


MIN_SIDE = 8  # the smallest image side load_image accepts: less holds no person to crop (G_M's smallest input is 8)


def load_image(path: str | Path, size: int | None = None) -> np.ndarray:
    """Load an RGB image as uint8 (H, W, 3).

    EXIF orientation is applied. RGB and palette images are accepted; RGBA (or palette with
    transparency) only when every pixel is fully opaque (alpha is dropped). Anything else
    (grayscale, LA, CMYK, 16-bit, ...) raises UserError, as do missing or unreadable files and images
    with a side under MIN_SIDE pixels.
    With `size`, the largest centred square is cropped and resized (Lanczos) to size x size.
    """
    path = Path(path)
    if size is not None and size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    if path.is_dir():
        raise UserError("is a folder, not an image file", path)
    if not path.is_file():
        raise UserError("image file not found", path)
    try:
        with Image.open(path) as im:
            im.load()  # decode now: truncated/corrupt data only fails here
            im = ImageOps.exif_transpose(im)
    except UnidentifiedImageError:
        raise UserError("is not a readable image (unknown format or corrupt)", path) from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot read image ({e})", path) from None

    if im.mode == "P":  # indexed colour: expand, keeping any transparency for the check below
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode == "RGBA":
        lo, _ = im.getchannel("A").getextrema()
        if lo < 255:
            raise UserError("has transparent pixels (alpha channel); an opaque RGB image is needed", path)
        im = im.convert("RGB")
    if im.mode != "RGB":
        n = len(im.getbands())
        raise UserError(f"has {n} channel{'s' if n != 1 else ''} (mode {im.mode}); an RGB image is needed", path)
    if min(im.size) < MIN_SIDE:
        raise UserError(f"is {im.width}x{im.height} pixels; at least {MIN_SIDE}x{MIN_SIDE} is needed", path)

    if size is not None:
        im = center_square(im).resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.uint8).copy()


def save_image(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 (H, W, 3) RGB image atomically; the format follows the suffix (.png, .jpg, ...)."""
    path = Path(path)
    array = _check_rgb_uint8(array)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"unknown image file type '{path.suffix}'; use .png or .jpg", path)
    params = {"quality": 95} if fmt == "JPEG" else {}
    with atomic_path(path) as tmp:
        Image.fromarray(array, "RGB").save(tmp, format=fmt, **params)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 tensor (..., 3, H, W) in [-1, 1]."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim < 3 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 (..., H, W, 3), got {images.dtype} {images.shape}")
    t = torch.from_numpy(np.ascontiguousarray(images)).float().div_(127.5).sub_(1.0)
    return t.movedim(-1, -3).contiguous()


def to_uint8(tensor: torch.Tensor) -> np.ndarray:
    """Float tensor (..., 3, H, W) in [-1, 1] -> uint8 (..., H, W, 3); values outside are clamped."""
    if tensor.ndim < 3 or tensor.shape[-3] != 3:
        raise ValueError(f"expected a (..., 3, H, W) tensor, got shape {tuple(tensor.shape)}")
    t = tensor.detach().float().add(1.0).mul_(127.5).round_().clamp_(0, 255)
    return t.movedim(-3, -1).to(torch.uint8).cpu().numpy()


def make_grid(images: Sequence[np.ndarray] | np.ndarray, ncols: int, pad: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile N uint8 (H, W, 3) images row-major into one uint8 image, `pad` pixels around each."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"expected a non-empty uint8 (N, H, W, 3) stack, got {images.dtype} {images.shape}")
    if ncols <= 0 or pad < 0:
        raise ValueError(f"need ncols > 0 and pad >= 0, got ncols={ncols}, pad={pad}")
    n, h, w, _ = images.shape
    ncols = min(ncols, n)
    nrows = -(-n // ncols)
    grid = np.full((nrows * (h + pad) + pad, ncols * (w + pad) + pad, 3), pad_value, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, ncols)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + h, x : x + w] = img
    return grid


def heatmap_to_rgb(maps: np.ndarray | torch.Tensor, cmap: str = "inferno") -> np.ndarray:
    """Float maps (T, C, H, W) in [0, 1] -> uint8 (T, H, W, 3): max over C, then a colormap.

    Values are clipped to [0, 1] first; NaN counts as 0.
    """
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().float().cpu().numpy()
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 4:
        raise ValueError(f"expected (T, C, H, W) maps, got shape {maps.shape}")
    m = np.clip(np.nan_to_num(maps.max(axis=1), nan=0.0), 0.0, 1.0)
    rgba = matplotlib.colormaps[cmap](m, bytes=True)  # (T, H, W, 4) uint8
    return np.ascontiguousarray(rgba[..., :3])
