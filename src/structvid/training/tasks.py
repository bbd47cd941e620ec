"""Training entry points: build a Task (networks, optimizers, loss, data) and hand it to the loop."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from structvid.config import ExperimentConfig, save_yaml
from structvid.data.clips import ClipSampler, ForecastBatches
from structvid.io.images import make_grid, to_uint8
from structvid.io.video import heatmap_to_rgb
from structvid.losses.forecast import ForecastLoss
from structvid.models.critics import ImageCritic
from structvid.models.forecaster import Forecaster
from structvid.training.devices import pick_device, resolve_precision
from structvid.training.distributed import DistInfo, cleanup, init_distributed, wrap
from structvid.training.loop import LoopResult, LoopSettings, Task, run_loop

log = logging.getLogger(__name__)

SAMPLE_SEED = 20200101  # fixed draw for sample grids, so grids of successive steps are comparable


def batch_to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def forecast_task(cfg: ExperimentConfig, device: torch.device, info: DistInfo) -> Task:
    """G_M + D_I with Eq. 9-14 (§5.2), Adam(lr, betas) for both (§7.1)."""
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    generator = Forecaster(cfg.model).to(device)
    critic = ImageCritic(cfg.critic).to(device)
    sampler = ClipSampler(cfg.data)
    loss = ForecastLoss(wrap(generator, info, device), wrap(critic, info, device), cfg.loss, cfg.train.critic_steps)
    t = cfg.train
    optimizers = {
        "generator": torch.optim.Adam(generator.parameters(), lr=t.lr, betas=t.betas),
        "critic": torch.optim.Adam(critic.parameters(), lr=t.lr, betas=t.betas),
    }
    dataset = ForecastBatches(sampler, t.batch_size, t.seed, info.rank, info.world)
    fixed = sampler.draw(np.random.default_rng(SAMPLE_SEED), 8)

    @torch.no_grad()
    def sample_grid() -> np.ndarray:
        """Rows of: input I_t | condition M_{t+k} | target I_{t+k} | output Ĩ_{t+k} | mask m."""
        generator.eval()
        b = batch_to_device(fixed, device)
        out = generator(b["image_t"], b["motion_t"], b["motion_tk"])
        generator.train()
        cols = [to_uint8(b["image_t"].cpu()), heatmap_to_rgb(b["motion_tk"].cpu().numpy()),
                to_uint8(b["image_tk"].cpu()), to_uint8(out.frame.float().cpu())]
        if out.mask is not None:
            cols.append(heatmap_to_rgb(out.mask.float().cpu().numpy()))
        tiles = np.stack(cols, axis=1).reshape(-1, *cols[0].shape[1:])  # (8 * cols, H, W, 3)
        return make_grid(tiles, ncols=len(cols))

    return Task(
        modules={"generator": generator, "critic": critic},
        optimizers=optimizers,
        loss=loss,
        dataset=dataset,
        to_device=batch_to_device,
        sample_grid=sample_grid,
        num_workers=cfg.data.num_workers,
    )


def settings_from(train_cfg: Any, precision: str, progress: bool) -> LoopSettings:
    return LoopSettings(
        steps=train_cfg.steps, seed=train_cfg.seed, precision=precision,
        checkpoint_every=train_cfg.checkpoint_every, log_every=train_cfg.log_every,
        sample_every=getattr(train_cfg, "sample_every", train_cfg.checkpoint_every),
        keep_checkpoints=train_cfg.keep_checkpoints, progress=progress,
    )


def run_training(cfg: Any, build_task, run_dir: str | Path, resume: bool = False, progress: bool = True) -> LoopResult:
    """Device/precision/DDP set-up shared by every task; rank 0 writes the resolved config."""
    run_dir = Path(run_dir)
    probe = pick_device(cfg.train.device)
    info = init_distributed(probe.type)
    device = pick_device(cfg.train.device, info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    precision = resolve_precision(cfg.train.precision, device)
    try:
        if info.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            save_yaml(cfg, run_dir / "config.yaml")
            log.info("training %s on %s (%s, %d process(es)) -> %s", cfg.name, device, precision, info.world, run_dir)
        task = build_task(cfg, device, info)
        return run_loop(task, settings_from(cfg.train, precision, progress), run_dir, device, info, resume)
    finally:
        cleanup(info)


def train_forecaster(cfg: ExperimentConfig, run_dir: str | Path, resume: bool = False, progress: bool = True) -> LoopResult:
    return run_training(cfg, forecast_task, run_dir, resume, progress)
