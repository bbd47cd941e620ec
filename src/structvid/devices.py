"""Device and precision selection: `--device auto` picks CUDA, then Apple MPS, then CPU."""

from __future__ import annotations

import contextlib
import logging
from typing import ContextManager

import torch

from structvid.errors import UserError

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} requested but CUDA is not available (use --device cpu or auto)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {name!r} requested but Apple MPS is not available (use --device cpu or auto)")
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    """The precision actually used: falls back to fp32 (with a warning) where the device cannot run it."""
    if precision not in DTYPES:
        raise UserError(f"unknown precision {precision!r} (use fp32, bf16 or fp16)")
    if precision == "fp16" and device.type == "cpu":
        log.warning("fp16 autocast is not supported for training on CPU; falling back to fp32")
        return "fp32"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        log.warning("this GPU does not support bf16; falling back to fp32")
        return "fp32"
    if precision == "bf16" and device.type == "mps":
        log.warning("bf16 autocast is not supported on MPS; falling back to fp32")
        return "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> ContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])
