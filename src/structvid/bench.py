"""`structvid bench`: speed and memory figures, never asserted by tests (they depend on the machine).

`bench_forecast` measures, on random inputs (no data loading):
- G_M GFLOP per frame (forward, counted by torch.utils.flop_counter),
- training samples/s for one training iteration = one D_I update (Eq. 13-14, with the gradient penalty's
  double backward) + one G_M update (Eq. 9), and the GFLOP/s that iteration achieves (its FLOPs counted the
  same way, backward included),
- inference frames/s of G_M (eval mode, no grad),
- this machine's GEMM GFLOP/s (2048x2048 matmul) in the precision the bench runs in, measured in the same
  run, for comparison (and the fp32 GEMM beside it when that precision is not fp32),
- peak memory (CUDA: max allocated; CPU: the process's peak resident set).

`bench_refine` measures the same for G_R (§6, Table 2) at K x R x R clips: GFLOP per clip, training clips/s
for one training iteration = one critics update (D_V with Eq. 19-20: WGAN, 3D gradient penalty, ranking
term; D_I with Eq. 13-14 on one frame pair per clip) + one G_R update (Eq. 16-18), both from `RefineLoss`
as `train refine` runs them, inference frames/s, and the end-to-end time of a video through both stages
(`ImageToVideoPipeline`: G_M, then G_R in windows of K).
"""

from __future__ import annotations

import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from structvid.config import (
    CriticConfig, ForecasterConfig, LossConfig, RefineCriticsConfig, RefineLossConfig, RefinerConfig,
    VideoCriticConfig,
)
from structvid.losses.forecast import ForecastLoss
from structvid.losses.refine import CRITICS, REFINER, RefineLoss
from structvid.models.critics import ImageCritic, RefineCritics
from structvid.models.forecaster import Forecaster, count_gflops_per_frame
from structvid.models.refiner import Refiner, count_gflops_per_clip
from structvid.devices import DTYPES, autocast, pick_device, resolve_precision



def significant(x: float, digits: int = 3) -> float:
    """`x` to `digits` significant figures: small rates on a slow or busy machine do not round to 0."""
    return float(f"{x:.{digits}g}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


GEMM_SIZE = 2048  # n of the reference n x n matmul


def gemm_gflops(device: torch.device, n: int | None = None, reps: int = 10, precision: str = "fp32") -> float:
    """Best-of-`reps` GFLOP/s of an n x n matmul in `precision` (the reference a model's GFLOP/s is held to)."""
    n = GEMM_SIZE if n is None else n
    a = torch.randn(n, n, device=device, dtype=DTYPES[precision])
    b = torch.randn(n, n, device=device, dtype=DTYPES[precision])
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


def _gemm_reference(device: torch.device, precision: str, earlier: dict[str, float] | None = None) -> dict[str, float]:
    """GEMM GFLOP/s in `precision` (and fp32 beside it); with `earlier`, the better of the two measurements
    (CPU clocks and the machine's load vary within a run)."""
    now = {p: gemm_gflops(device, precision=p) for p in dict.fromkeys((precision, "fp32"))}
    return now if earlier is None else {p: max(v, earlier[p]) for p, v in now.items()}


def _gemm_fields(gemm: dict[str, float], precision: str, achieved: float) -> dict:
    fields = {"gemm_gflop_per_s": significant(gemm[precision])}
    if precision != "fp32":
        fields["gemm_fp32_gflop_per_s"] = significant(gemm["fp32"])
    fields["train_fraction_of_gemm"] = round(achieved / gemm[precision], 3)
    return fields


def _alternating(loss, updates: list[tuple[str, torch.nn.Module, torch.optim.Optimizer]], batch: dict,
                 device: torch.device, precision: str):
    """One training iteration on `batch`: each (phase, module, optimizer) in turn, the other modules frozen,
    as the training loop steps a loss's phases."""

    def iteration() -> None:
        for phase, module, opt in updates:
            for _, other, _ in updates:
                other.requires_grad_(other is module)
            opt.zero_grad(set_to_none=True)
            with autocast(device, precision):
                value, _ = loss.run(phase, batch)
            value.backward()
            opt.step()

    return iteration


def _device_name(dev: torch.device) -> str:
    return str(dev) if dev.type != "cpu" else f"cpu ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()})"


def _peak_memory(dev: torch.device) -> int:
    return (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _timed(fn, device: torch.device, reps: int, warm_up: bool = True) -> float:
    """Median seconds of `reps` calls of `fn` (after one warm-up call unless the caller made it)."""
    if warm_up:
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
    gemm = _gemm_reference(dev, prec)
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
    train_iteration = _alternating(loss, [("critic", d, opt_d), ("generator", g, opt_g)], b, dev, prec)

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
    peak = _peak_memory(dev)
    gemm = _gemm_reference(dev, prec, gemm)
    achieved = train_flops / t_train / 1e9
    return {
        "bench": "forecast",
        "device": _device_name(dev),
        "precision": prec,
        "channels_last": channels_last,
        "width": width,
        "resolution": resolution,
        "batch": batch,
        "gm_gflop_per_frame": significant(count_gflops_per_frame(g, resolution, joints)),
        "train_gflop_per_iteration": significant(train_flops / 1e9),
        "train_s_per_iteration": round(t_train, 3),
        "train_samples_per_s": significant(batch / t_train),
        "train_gflop_per_s": significant(achieved),
        "infer_frames_per_s": significant(batch / t_infer),
        **_gemm_fields(gemm, prec, achieved),
        "peak_memory_gib": round(peak / 2**30, 2),
        "params_gm_m": round(sum(p.numel() for p in g.parameters()) / 1e6, 2),
        "params_di_m": round(sum(p.numel() for p in d.parameters()) / 1e6, 2),
    }


def bench_refine(width: int = 128, resolution: int = 64, clip_length: int = 16, batch: int = 32, steps: int = 2,
                 device: str = "auto", precision: str = "fp32", pipeline: Path | None = None,
                 frames: int = 128) -> dict:
    """G_R's figures at base `width` (Table 2: 128; D_V alike, D_I at min(width, 64), Table 1's 64, each level
    capped at 8x its base as Table 2's 1024), then, with a `pipeline` folder (G_M, optionally G_R), the time of a
    `frames`-frame video through both stages. A pipeline without G_R gets one at the demo's width (16, K = 16)
    with random weights: speed does not depend on them. Below fp32 the end-to-end frames are also compared with
    fp32's (PSNR of the uint8 frames, the cost `--precision auto` is allowed: devices.AUTO_BF16)."""
    dev = pick_device(device)
    prec = resolve_precision(precision, dev)
    gemm = _gemm_reference(dev, prec)
    torch.manual_seed(0)
    rcfg = RefinerConfig(resolution=resolution, clip_length=clip_length, base_width=width, max_width=8 * width)
    d_i = min(width, 64)
    ccfg = RefineCriticsConfig(
        video=VideoCriticConfig(resolution=resolution, clip_length=clip_length, base_width=width, max_width=8 * width),
        image=CriticConfig(resolution=resolution, base_width=d_i, max_width=8 * d_i))
    refiner, critics = Refiner(rcfg).to(dev), RefineCritics(ccfg).to(dev)
    loss = RefineLoss(refiner, critics.video, critics.image, RefineLossConfig(), critic_steps=1)  # every term on
    opt_r = torch.optim.Adam(refiner.parameters(), lr=1e-4, betas=(0.0, 0.9))  # §7.1
    opt_c = torch.optim.Adam(critics.parameters(), lr=1e-4, betas=(0.0, 0.9))
    clip = lambda c: torch.rand(batch, clip_length, c, resolution, resolution, device=dev)  # noqa: E731
    b = {"video": clip(3) * 2 - 1, "coarse": clip(3) * 2 - 1, "motions": clip(rcfg.motion_channels)}
    train_iteration = _alternating(loss, [(CRITICS, critics, opt_c), (REFINER, refiner, opt_r)], b, dev, prec)
    counter = FlopCounterMode(display=False)
    with counter:
        train_iteration()  # also the warm-up of the timed iterations
    train_flops = counter.get_total_flops()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    t_train = _timed(train_iteration, dev, steps, warm_up=False)

    refiner.eval()

    @torch.no_grad()
    def infer() -> None:
        with autocast(dev, prec):
            refiner(b["coarse"], b["motions"])

    t_infer = _timed(infer, dev, max(steps, 2))
    peak = _peak_memory(dev)
    gflop_clip = count_gflops_per_clip(refiner)
    gemm = _gemm_reference(dev, prec, gemm)
    achieved = train_flops / t_train / 1e9
    report = {
        "bench": "refine",
        "device": _device_name(dev),
        "precision": prec,
        "width": width,
        "resolution": resolution,
        "clip_length": clip_length,
        "batch": batch,
        "gr_gflop_per_clip": significant(gflop_clip),
        "train_gflop_per_iteration": significant(train_flops / 1e9),
        "train_s_per_iteration": round(t_train, 3),
        "train_clips_per_s": significant(batch / t_train),
        "train_gflop_per_s": significant(achieved),
        "infer_frames_per_s": significant(batch * clip_length / t_infer),
        "infer_gflop_per_s": significant(gflop_clip * batch / t_infer),
        **_gemm_fields(gemm, prec, achieved),
        "peak_memory_gib": round(peak / 2**30, 2),
        "params_gr_m": round(sum(p.numel() for p in refiner.parameters()) / 1e6, 2),
        "params_dv_m": round(sum(p.numel() for p in critics.video.parameters()) / 1e6, 2),
        "params_di_m": round(sum(p.numel() for p in critics.image.parameters()) / 1e6, 2),
    }
    del refiner, critics, loss, opt_r, opt_c, b
    if pipeline is not None:
        report.update(bench_two_stages(pipeline, frames, dev, prec))
    return report


def bench_two_stages(pipeline: Path, frames: int, device: torch.device, precision: str, reps: int = 2) -> dict:
    """Seconds for `frames` frames through G_M then G_R (`ImageToVideoPipeline.__call__`: poses in, uint8 frames
    out; no files), the better of `reps` runs after a warm-up; the pipeline folder's example image and poses
    (played back and forth to `frames`), else a grey image and a still pose."""
    from structvid.io.images import load_image
    from structvid.io.poses import load_poses
    from structvid.metrics.pixel import psnr
    from structvid.pipelines.image_to_video import ImageToVideoPipeline

    def load(prec: str) -> tuple[ImageToVideoPipeline, bool]:
        pipe = ImageToVideoPipeline.from_pretrained(pipeline, device=str(device), precision=prec)
        random_gr = pipe.refiner is None
        if random_gr:  # the same random G_R in every precision (seeded)
            fc = pipe.forecaster.config
            torch.manual_seed(0)
            pipe.attach_refiner(Refiner(RefinerConfig(resolution=fc.resolution, clip_length=16, base_width=16,
                                                      max_width=128, motion_channels=fc.motion_channels)))
        return pipe, random_gr

    pipe, random_gr = load(precision)
    example = Path(pipeline) / "example"
    j = pipe.structure.channels
    if (example / "image.png").is_file() and (example / "poses.json").is_file():
        image = load_image(example / "image.png")
        poses = load_poses(example / "poses.json", num_joints=j, image_size=image.shape[:2])
    else:
        image = np.full((pipe.size, pipe.size, 3), 128, np.uint8)
        poses = np.concatenate([np.random.default_rng(0).uniform(0.2, 0.8, (1, j, 2)) * pipe.size,
                                np.ones((1, j, 1))], axis=2).astype(np.float32)
    cycle = np.concatenate([poses, poses[-2:0:-1]]) if len(poses) > 2 else poses  # back and forth
    poses = cycle[np.arange(frames) % len(cycle)]
    pipe(image, poses[: min(frames, 2 * pipe.refiner.config.clip_length)])  # warm-up (oneDNN primitives)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        out = pipe(image, poses)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    fields = {
        "e2e_pipeline": str(pipeline),
        "e2e_refiner": "random init, width 16, K = 16" if random_gr else "the pipeline's",
        "e2e_frames": frames,
        "e2e_s": round(best, 2),
        "e2e_frames_per_s": significant(frames / best),
    }
    if precision != "fp32":  # the quality cost of the precision: its frames against fp32's
        reference = load("fp32")[0](image, poses).frames
        fields["e2e_psnr_vs_fp32_db"] = round(float(psnr(out.frames, reference).mean()), 2)
    return fields


def print_report(report: dict) -> None:
    """A human-readable table, then one JSON line for scripts."""
    width = max(len(k) for k in report)
    for k, v in report.items():
        print(f"{k:<{width}}  {v}")
    print(json.dumps(report))
