"""The training loop: schedules the phases a loss object declares, steps optimizers, logs, checkpoints.

It knows nothing about GANs or poses. A `Task` supplies named modules, their optimizers, a loss object
with `phases` and `run(phase, batch)`, a dataset whose item i is the i-th batch this rank draws, and
optionally a sample grid. The same loop trains G_M + D_I, the pose LSTM, and later G_R + D_I + D_V.

Exact resume: every step reseeds torch's RNG from (seed, step, rank) and batch i is a pure function of
(seed, i, rank), so a run resumed from a checkpoint reproduces an uninterrupted run bit for bit
(on the same device and thread count).
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from structvid.config import LR_SCHEDULES
from structvid.io.files import atomic_path, output_errors
from structvid.losses.phases import Phase
from structvid.training import checkpoint as ckpt
from structvid.devices import autocast
from structvid.training.distributed import DistInfo, barrier, mean_across_ranks

log = logging.getLogger(__name__)


class Loss(Protocol):
    phases: tuple[Phase, ...]
    grad_scale: Callable[[], float]

    def run(self, phase: str, batch: Any) -> tuple[torch.Tensor, dict[str, float]]: ...


@dataclass
class Task:
    modules: dict[str, nn.Module]  # bare modules: what checkpoints hold
    optimizers: dict[str, torch.optim.Optimizer]  # keyed like the modules they update
    loss: Loss
    dataset: torch.utils.data.Dataset  # item i = i-th batch of this rank
    to_device: Callable[[Any, torch.device], Any]
    sample_grid: Callable[[], np.ndarray] | None = None  # uint8 (H, W, 3) for TensorBoard / PNG
    validate: Callable[[], dict[str, float]] | None = None  # held-out figures, run at each checkpoint
    summary: dict[str, Any] = field(default_factory=dict)  # data counts etc., written to RUN/data.json
    num_workers: int = 0


@dataclass
class LoopSettings:
    steps: int
    seed: int = 0
    precision: str = "fp32"
    checkpoint_every: int = 1000
    log_every: int = 50
    sample_every: int = 500
    keep_checkpoints: int = 2
    progress: bool = True
    lr_schedule: str = "constant"
    grad_clip: float = 0.0


@dataclass
class LoopResult:
    step: int
    stats: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None


def lr_factor(schedule: str, step: int, steps: int) -> float:
    """Multiplier of each optimizer group's `initial_lr` at 0-based `step` of `steps`.

    A pure function of the step, so a resumed run follows exactly the schedule of an uninterrupted one.
    """
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / max(steps, 1)))
    raise ValueError(f"unknown lr_schedule {schedule!r}; known: {LR_SCHEDULES}")


def step_seed(seed: int, step: int, rank: int) -> int:
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, dtype=np.uint64)[0] >> 1)


def append_metrics(run_dir: Path, row: dict[str, float]) -> None:
    """One line of RUN/metrics.jsonl (a full disk: one line naming the file)."""
    path = run_dir / "metrics.jsonl"
    with output_errors(path), open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def run_loop(task: Task, settings: LoopSettings, run_dir: Path, device: torch.device, info: DistInfo,
             resume: bool = False, on_start: Callable[[int], None] | None = None) -> LoopResult:
    """Train from step 0 (or the latest checkpoint with `resume`) to `settings.steps`.

    `on_start(step)` runs once the checkpoint is restored and before the first write into `run_dir`
    (run_folder.RunFolder.begin: config.yaml, metrics cut back to `step`); a run already at its last step
    writes nothing.
    """
    run_dir = Path(run_dir)
    start = 0
    if resume:
        latest = ckpt.latest_checkpoint(run_dir)
        if latest is not None:
            state = ckpt.load_checkpoint(latest, task.modules, task.optimizers)
            start = int(state["step"])
            if info.is_main:
                log.info("resumed from %s (step %d)", latest, start)
    if start >= settings.steps:
        return LoopResult(start, checkpoint=ckpt.latest_checkpoint(run_dir))
    if on_start is not None:
        on_start(start)

    for opt in task.optimizers.values():  # the schedule scales the lr each group was built with
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
    scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == "fp16")
    task.loss.grad_scale = scaler.get_scale if scaler.is_enabled() else (lambda: 1.0)
    draws_per_step = sum(p.repeat for p in task.loss.phases)
    loader = torch.utils.data.DataLoader(
        task.dataset, batch_size=None, num_workers=task.num_workers,
        sampler=range(start * draws_per_step, settings.steps * draws_per_step),
        persistent_workers=False, prefetch_factor=4 if task.num_workers else None,
    )
    batches: Iterator[Any] = iter(loader)

    writer = None
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"), purge_step=start + 1 if start else None)
    bar = tqdm(total=settings.steps, initial=start, disable=not (info.is_main and settings.progress),
               desc="train", unit="step", dynamic_ncols=True)
    totals: dict[str, float] = {}
    counts: dict[str, int] = {}
    last: dict[str, float] = {}
    saved: Path | None = None
    t0 = time.perf_counter()
    for step in range(start, settings.steps):
        torch.manual_seed(step_seed(settings.seed, step, info.rank))
        factor = lr_factor(settings.lr_schedule, step, settings.steps)
        for opt in task.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = group["initial_lr"] * factor
        for phase in task.loss.phases:
            for module_name, module in task.modules.items():
                module.requires_grad_(module_name == phase.module)
            opt = task.optimizers[phase.module]
            for _ in range(phase.repeat):
                batch = task.to_device(next(batches), device)
                opt.zero_grad(set_to_none=True)
                with autocast(device, settings.precision):
                    loss, stats = task.loss.run(phase.name, batch)
                scaler.scale(loss).backward()
                if settings.grad_clip > 0:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(task.modules[phase.module].parameters(), settings.grad_clip)
                scaler.step(opt)
                scaler.update()
                for k, v in stats.items():
                    totals[k] = totals.get(k, 0.0) + v
                    counts[k] = counts.get(k, 0) + 1
        for module in task.modules.values():
            module.requires_grad_(True)
        done = step + 1
        bar.update(1)
        if done % settings.log_every == 0 or done == settings.steps:
            last = mean_across_ranks({k: totals[k] / counts[k] for k in totals}, info, device)
            totals, counts = {}, {}
            if info.is_main:
                rate = (done - start) / max(time.perf_counter() - t0, 1e-9)
                last["train/steps_per_s"] = rate
                for k, v in last.items():
                    writer.add_scalar(k, v, done)
                append_metrics(run_dir, {"step": done, **last})
                bar.set_postfix({k.split("/")[-1]: f"{v:.3g}" for k, v in list(last.items())[:4]})
        if info.is_main and task.sample_grid is not None and (done % settings.sample_every == 0 or done == settings.steps):
            grid = task.sample_grid()
            writer.add_image("samples", grid, done, dataformats="HWC")
            from PIL import Image

            png = run_dir / "samples" / f"step_{done:08d}.png"
            with output_errors(png), atomic_path(png) as tmp:
                Image.fromarray(grid).save(tmp)
        if done % settings.checkpoint_every == 0 or done == settings.steps:
            if info.is_main and task.validate is not None:
                val = task.validate()
                for k, v in val.items():
                    writer.add_scalar(k, v, done)
                append_metrics(run_dir, {"step": done, **val})
                last.update(val)
            if info.is_main:
                saved = ckpt.save_checkpoint(run_dir, done, task.modules, task.optimizers,
                                             keep=settings.keep_checkpoints)
            barrier(info)
    bar.close()
    if writer is not None:
        writer.close()
    return LoopResult(settings.steps, last, saved)
