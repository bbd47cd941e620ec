"""`structvid bench`: speed and memory figures, never asserted by tests (they depend on the machine).

`bench_forecast` measures, on random inputs (no data loading):
- G_M GFLOP per frame (forward, counted by torch.utils.flop_counter),
- training samples/s for one training iteration = one D_I update (Eq. 13-14, with the gradient penalty's
  double backward) + one G_M update (Eq. 9), and the GFLOP/s that iteration achieves (its FLOPs counted the
  same way, backward included),
- inference frames/s of G_M (eval mode, no grad),
- this machine's fp32 GEMM GFLOP/s (2048x2048 matmul) measured in the same run, for comparison,
- peak memory (CUDA: max allocated; CPU: the process's peak resident set).
"""

from __future__ import annotations

import json
import platform
import resource
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from structvid.config import CriticConfig, ForecasterConfig, LossConfig
from structvid.losses.forecast import ForecastLoss
from structvid.models.critics import ImageCritic
from structvid.models.forecaster import Forecaster, count_gflops_per_frame
from structvid.devices import autocast, pick_device, resolve_precision


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_gflops(device: torch.device, n: int = 2048, reps: int = 10) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    for _ in range(2):
        a @ b
    _sync(device)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _timed(fn, device: torch.device, reps: int) -> float:
    """Median seconds of `fn` after one warm-up call."""
    fn()
    _sync(device)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def bench_forecast(width: int = 64, resolution: int = 64, batch: int = 32, steps: int = 3, device: str = "auto",
                   precision: str = "fp32", joints: int = 13, channels_last: bool = True) -> dict:
    dev = pick_device(device)
    prec = resolve_precision(precision, dev)
    gemm_before = gemm_gflops(dev)
    torch.manual_seed(0)
    gcfg = ForecasterConfig(resolution=resolution, base_width=width, motion_channels=joints)
    dcfg = CriticConfig(resolution=resolution, base_width=width, motion_channels=joints)
    fmt = torch.channels_last if channels_last else torch.contiguous_format  # as in training (train.channels_last)
    g, d = Forecaster(gcfg).to(dev, memory_format=fmt), ImageCritic(dcfg).to(dev, memory_format=fmt)
    loss = ForecastLoss(g, d, LossConfig(), critic_steps=1)
    opt_g = torch.optim.Adam(g.parameters(), lr=1e-4, betas=(0.0, 0.9))
    opt_d = torch.optim.Adam(d.parameters(), lr=1e-4, betas=(0.0, 0.9))
    img = lambda: torch.rand(batch, 3, resolution, resolution, device=dev) * 2 - 1  # noqa: E731
    mot = lambda: torch.rand(batch, joints, resolution, resolution, device=dev)  # noqa: E731
    b = {"image_t": img(), "motion_t": mot(), "image_tk": img(), "motion_tk": mot()}
    b = {k: v.contiguous(memory_format=fmt) for k, v in b.items()}

    def train_iteration() -> None:
        for phase, module, opt in (("critic", d, opt_d), ("generator", g, opt_g)):
            g.requires_grad_(module is g)
            d.requires_grad_(module is d)
            opt.zero_grad(set_to_none=True)
            with autocast(dev, prec):
                value, _ = loss.run(phase, b)
            value.backward()
            opt.step()

    counter = FlopCounterMode(display=False)
    with counter:
        train_iteration()
    train_flops = counter.get_total_flops()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t_train = _timed(train_iteration, dev, steps)

    g.eval()

    @torch.no_grad()
    def infer() -> None:
        with autocast(dev, prec):
            g(b["image_t"], b["motion_t"], b["motion_tk"])

    t_infer = _timed(infer, dev, max(steps, 3))
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    gemm = max(gemm_before, gemm_gflops(dev))  # the better of two measurements (CPU clocks vary)
    achieved = train_flops / t_train / 1e9
    return {
        "bench": "forecast",
        "device": str(dev) if dev.type != "cpu" else f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})",
        "precision": prec,
        "channels_last": channels_last,
        "width": width,
        "resolution": resolution,
        "batch": batch,
        "gm_gflop_per_frame": round(count_gflops_per_frame(g, resolution, joints), 3),
        "train_gflop_per_iteration": round(train_flops / 1e9, 1),
        "train_s_per_iteration": round(t_train, 3),
        "train_samples_per_s": round(batch / t_train, 2),
        "train_gflop_per_s": round(achieved, 1),
        "infer_frames_per_s": round(batch / t_infer, 1),
        "gemm_gflop_per_s": round(gemm, 1),
        "train_fraction_of_gemm": round(achieved / gemm, 3),
        "peak_memory_gib": round(peak / 2**30, 2),
        "params_gm_m": round(sum(p.numel() for p in g.parameters()) / 1e6, 2),
        "params_di_m": round(sum(p.numel() for p in d.parameters()) / 1e6, 2),
    }


def print_report(report: dict) -> None:
    """A human-readable table, then one JSON line for scripts."""
    width = max(len(k) for k in report)
    for k, v in report.items():
        print(f"{k:<{width}}  {v}")
    print(json.dumps(report))
