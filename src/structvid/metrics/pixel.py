"""Per-frame pixel metrics (scikit-image implementations): "mse", "psnr", "ssim".

Conventions (all three metrics):
- inputs are clips (T, H, W, 3) or single frames (H, W, 3), numpy or torch, channel-last; a
  torch tensor with 3 channels at dim -3, i.e. (..., 3, H, W), is moved to channel-last;
- uint8 values are read as [0, 255]; float values as model outputs in [-1, 1] (clipped to it);
- both are mapped to [0, 1] before scoring, so MSE is on the [0, 1] scale (as is common in
  video prediction papers) and PSNR/SSIM use data_range = 1, which equals the usual 8-bit
  PSNR (data_range 255 on [0, 255]);
- PSNR of identical frames (MSE 0, i.e. infinite) is reported as PSNR_CAP = 100 dB;
- SSIM: skimage defaults (7x7 uniform window), averaged over the colour channels.
Mismatched shapes raise UserError.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import mean_squared_error, peak_signal_noise_ratio, structural_similarity

from structvid.errors import UserError
from structvid.metrics.registry import register

__all__ = ["PSNR_CAP", "to_unit", "mse", "psnr", "ssim"]

PSNR_CAP = 100.0  # dB; keeps means and JSON reports finite when a frame is reproduced exactly


def to_unit(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """Frames -> float64 (T, H, W, 3) in [0, 1] following the module conventions."""
    if isinstance(frames, torch.Tensor):
        t = frames.detach().cpu()
        t = t.float() if t.is_floating_point() else t  # numpy has no bfloat16
        if t.ndim >= 3 and t.shape[-3] == 3 and t.shape[-1] != 3:
            t = t.movedim(-3, -1)
        frames = t.numpy()
    a = np.asarray(frames)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] != 3:
        raise ValueError(f"expected frames (T, H, W, 3), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"expected uint8 or float frames, got {a.dtype}")
    return (np.clip(a.astype(np.float64), -1.0, 1.0) + 1.0) / 2.0


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p, t = to_unit(pred), to_unit(target)
    if p.shape != t.shape:
        raise UserError(f"prediction has shape {p.shape} but target has shape {t.shape}; they must match")
    if len(p) == 0:
        raise UserError("no frames to compare")
    return p, t


@register("mse")
def mse(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-frame mean squared error on [0, 1]-scaled images."""
    p, t = _pair(pred, target)
    return np.array([mean_squared_error(t[i], p[i]) for i in range(len(p))])


@register("psnr")
def psnr(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-frame PSNR in dB (data_range 1 on [0, 1] images), capped at PSNR_CAP."""
    p, t = _pair(pred, target)
    with np.errstate(divide="ignore"):  # MSE 0 -> inf, capped below
        values = [peak_signal_noise_ratio(t[i], p[i], data_range=1.0) for i in range(len(p))]
    return np.minimum(np.array(values, dtype=np.float64), PSNR_CAP)


@register("ssim")
def ssim(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-frame SSIM (skimage, channel_axis=-1, data_range 1); frames need H, W >= 7."""
    p, t = _pair(pred, target)
    return np.array([structural_similarity(t[i], p[i], channel_axis=-1, data_range=1.0) for i in range(len(p))])
