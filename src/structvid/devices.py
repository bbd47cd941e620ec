"""Device and precision selection: `--device auto` picks CUDA, then Apple MPS, then CPU; `--precision auto`
(inference) picks bf16 on a CPU that computes bf16 natively, fp32 elsewhere."""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import ContextManager

import torch

from structvid.errors import UserError

log = logging.getLogger(__name__)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
INFERENCE_PRECISIONS = ("auto", "fp32", "bf16")
# `--precision auto` picks bf16 only while it costs the bundled demo at most 0.1 dB of PSNR (docs/design.md,
# "Inference precision": -0.001 dB against the ground truth of 40 held-out puppet videos; the demo's bf16 frames
# are 60 dB from its fp32 frames). Set from that measurement, not from the capability alone.
AUTO_BF16 = True
# CPU flags (Linux /proc/cpuinfo) of native bf16 arithmetic: AVX512_BF16 dot products, AMX tiles. Without them
# oneDNN emulates bf16 with fp32 instructions plus conversions, slower than plain fp32.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


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


@functools.lru_cache(maxsize=4)
def native_bf16_cpu(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 natively (AVX512_BF16 or AMX). torch's `get_cpu_capability()` says only
    "AVX512" on such CPUs, so the kernel's flags decide; where they cannot be read (not Linux): False."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "flags":
                    return bool(NATIVE_BF16_FLAGS & set(value.split()))
    except OSError:
        pass
    return False


def inference_precision(precision: str, device: torch.device) -> str:
    """The precision of inference forward passes: fp32 or bf16 as asked (bf16 falling back as in
    `resolve_precision`), "auto": bf16 on a CPU with native bf16 (while AUTO_BF16), fp32 elsewhere."""
    if precision not in INFERENCE_PRECISIONS:
        raise UserError(f"unknown inference precision {precision!r} (use {', '.join(INFERENCE_PRECISIONS)})")
    if precision == "auto":
        return "bf16" if device.type == "cpu" and AUTO_BF16 and native_bf16_cpu() else "fp32"
    return resolve_precision(precision, device)


def autocast(device: torch.device, precision: str) -> ContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])
