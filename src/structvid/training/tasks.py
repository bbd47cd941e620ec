"""Training entry points: build a Task (networks, optimizers, loss, data) and hand it to the loop."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from structvid.config import ExperimentConfig, LoopConfig, PoseExperimentConfig, RefineExperimentConfig, save_yaml
from structvid.data.clips import ClipSampler, ForecastBatches
from structvid.data.penn_action import PennActionDataset
from structvid.data.pose_windows import PoseWindows, select_actions, split_sequences
from structvid.errors import UserError
from structvid.io.files import atomic_write_text
from structvid.losses.phases import Phase
from structvid.losses.pose import pose_loss
from structvid.metrics.pose import evaluate_pose_protocol
from structvid.models.pose_lstm import PoseLSTM, pose_lstm_predictor
from structvid.io.images import heatmap_to_rgb, make_grid, to_uint8
from structvid.losses.forecast import ForecastLoss
from structvid.models.critics import ImageCritic
from structvid.models.forecaster import Forecaster
from structvid.models.saving import find_forecaster, load_pretrained
from structvid.devices import pick_device, resolve_precision
from structvid.training.distributed import DistInfo, cleanup, init_distributed, wrap
from structvid.training.loop import LoopResult, LoopSettings, Task, run_loop
from structvid.training.run_folder import RunFolder
from structvid.structure.factory import build_structure

log = logging.getLogger(__name__)

SAMPLE_SEED = 20200101  # fixed draw for sample grids, so grids of successive steps are comparable


def batch_to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def images_channels_last(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Like `batch_to_device`, with (N, C, H, W) tensors in channels-last (NHWC) memory format."""
    return {k: v.to(device, non_blocking=True, memory_format=torch.channels_last) if v.dim() == 4
            else v.to(device, non_blocking=True) for k, v in batch.items()}


def forecast_task(cfg: ExperimentConfig, device: torch.device, info: DistInfo) -> Task:
    """G_M + D_I with Eq. 9-14 (§5.2), Adam(lr, betas) for both (§7.1)."""
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank
    fmt = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    generator = Forecaster(cfg.model).to(device, memory_format=fmt)
    critic = ImageCritic(cfg.critic).to(device, memory_format=fmt)
    structure = build_structure(cfg.structure)
    sampler = ClipSampler(cfg.data, structure)
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
        cols = [to_uint8(b["image_t"].cpu()), structure.to_rgb(b["motion_tk"].cpu().numpy()),
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
        to_device=images_channels_last if cfg.train.channels_last else batch_to_device,
        sample_grid=sample_grid,
        num_workers=cfg.data.num_workers,
    )


def settings_from(train_cfg: LoopConfig, precision: str, progress: bool) -> LoopSettings:
    return LoopSettings(
        steps=train_cfg.steps, seed=train_cfg.seed, precision=precision,
        checkpoint_every=train_cfg.checkpoint_every, log_every=train_cfg.log_every,
        sample_every=train_cfg.sample_every, keep_checkpoints=train_cfg.keep_checkpoints, progress=progress,
        lr_schedule=train_cfg.lr_schedule, grad_clip=train_cfg.grad_clip,
    )


def run_training(cfg: Any, build_task, run_dir: str | Path, resume: bool = False, progress: bool = True,
                 force: bool = False) -> LoopResult:
    """Device/precision/DDP set-up shared by every task. Under the run folder's lock (`training.run_folder`)
    the task is built and the checkpoint restored before rank 0 writes anything: a start that fails on a
    bad value, missing data or a mismatched `--resume` leaves the folder as it was."""
    run_dir = Path(run_dir)
    probe = pick_device(cfg.train.device)
    info = init_distributed(probe.type)
    device = pick_device(cfg.train.device, info.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    precision = resolve_precision(cfg.train.precision, device)
    try:
        with RunFolder(run_dir, info, device, resume, force) as folder:
            task = build_task(cfg, device, info)

            def begin(step: int) -> None:
                folder.begin(step)
                if not info.is_main:
                    return
                save_yaml(cfg, run_dir / "config.yaml")
                if task.summary:
                    atomic_write_text(run_dir / "data.json", json.dumps(task.summary, indent=2))
                    log.info("data: %s", {k: v for k, v in task.summary.items() if not isinstance(v, list)})
                log.info("training %s on %s (%s, %d process(es)) from step %d -> %s", cfg.name, device, precision,
                         info.world, step, run_dir)

            return run_loop(task, settings_from(cfg.train, precision, progress), run_dir, device, info, resume,
                            on_start=begin)
    finally:
        cleanup(info)


def train_forecaster(cfg: ExperimentConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
                     force: bool = False) -> LoopResult:
    return run_training(cfg, forecast_task, run_dir, resume, progress, force)


# ---------------------------------------------------------------- pose LSTM (G_C for bodies, §4)


class PoseLoss:
    """Eq. 5 (or the unsquared l2 option, `train.loss`) over visible joints; one phase updating the LSTM."""

    def __init__(self, model: torch.nn.Module, horizon: int, kind: str = "squared", step_weights: str = "uniform") -> None:
        self.model, self.horizon, self.kind = model, horizon, kind
        self.relative, self.per_window = step_weights in ("relative", "window"), step_weights == "window"
        self.phases = (Phase("pose", "pose_lstm", 1),)
        self.grad_scale = lambda: 1.0

    def run(self, phase: str, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        pred = self.model(batch["observed"], self.horizon)
        reference = batch["observed"][:, -1] if self.relative else None  # train.step_weights: relative | window
        loss = pose_loss(pred.float(), batch["target"], batch["visible"], self.kind, reference, self.per_window)
        return loss, {"pose/loss": loss.item()}


def mirror_poses(batch: dict[str, torch.Tensor], which: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mirror the windows selected by `which` (N,) bool: negate x (coordinates are box-centred) and swap
    left/right joints, so a left-handed swing becomes a right-handed one."""
    from structvid.structure.skeleton import MIRROR_ORDER, mirror_joints

    out = dict(batch)
    for key in ("observed", "target"):  # (N, T, J, 2)
        out[key] = torch.where(which[:, None, None, None], mirror_joints(batch[key]), batch[key])
    out["visible"] = torch.where(which[:, None, None], batch["visible"][:, :, list(MIRROR_ORDER)], batch["visible"])
    return out


class PoseBatches(torch.utils.data.Dataset):
    """Item i = the i-th batch of windows this rank draws (pure function of seed, i, rank)."""

    def __init__(self, windows: PoseWindows, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 mirror: bool = True, speed: tuple[float, float] = (1.0, 1.0),
                 weights: np.ndarray | None = None) -> None:
        if batch_size % world:
            raise UserError(f"train.batch_size ({batch_size}) must be divisible by the number of processes ({world})")
        self.windows, self.per_rank, self.seed, self.rank = windows, batch_size // world, seed, rank
        self.indices = np.arange(len(windows))[rank::world]
        # sampling probability of each of this rank's windows (None: uniform)
        self.p = None if weights is None else np.asarray(weights, np.float64)[rank::world] / np.sum(
            np.asarray(weights, np.float64)[rank::world])
        self.mirror, self.speed = mirror, (float(speed[0]), float(speed[1]))

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, index, self.rank])
        chosen = rng.choice(self.indices, self.per_rank, p=self.p)
        if self.speed == (1.0, 1.0):
            items = [self.windows[int(i)] for i in chosen]
        else:  # log-uniform, so that 0.8x and 1.25x are equally likely
            speeds = np.exp(rng.uniform(np.log(self.speed[0]), np.log(self.speed[1]), self.per_rank))
            items = [self.windows.window(int(i), float(s)) for i, s in zip(chosen, speeds)]
        batch = {k: torch.stack([it[k] for it in items]) for k in ("observed", "target", "visible")}
        if self.mirror:
            batch = mirror_poses(batch, torch.from_numpy(rng.random(self.per_rank) < 0.5))
        return batch


def action_weights(ds: PennActionDataset, windows: PoseWindows) -> np.ndarray:
    """(len(windows),) weights 1 / (windows of the same action): every action is drawn equally often."""
    actions = [ds.label(name).action for name in windows.window_names()]
    counts: dict[str, int] = {}
    for a in actions:
        counts[a] = counts.get(a, 0) + 1
    return np.array([1.0 / counts[a] for a in actions])


def pose_sequences(cfg: PoseExperimentConfig) -> tuple[PennActionDataset, list[str], list[str]]:
    """The configured actions of the split, and its deterministic train / held-out validation parts."""
    if cfg.data.dataset == "human36m":  # §7.1: the 2D poses of the split's subjects, mapped to the 13 Penn joints
        from structvid.data.human36m import Human36MPoses

        if cfg.data.extra_train_actions:
            raise UserError("data.extra_train_actions is for Penn Action (data.dataset: penn_action)")
        ds = Human36MPoses(cfg.data.root, actions=cfg.data.actions, split=cfg.data.split)
        names = ds.names
    else:
        ds = PennActionDataset(cfg.data.root, split=cfg.data.split)
        names = select_actions(ds, cfg.data.actions or None)
    if not names:
        raise UserError(f"no sequence of actions {cfg.data.actions or 'PAPER_ACTIONS'} in split {cfg.data.split}",
                        cfg.data.root)
    train, val = split_sequences(names, cfg.data.val_fraction, cfg.train.seed)
    return ds, train, val


def pose_task(cfg: PoseExperimentConfig, device: torch.device, info: DistInfo) -> Task:
    """The pose LSTM trained with Eq. 5 on windows of T_obs + K poses; validated with the §7.3 protocol."""
    torch.manual_seed(cfg.train.seed)
    model = PoseLSTM(cfg.model).to(device)
    ds, train_names, val_names = pose_sequences(cfg)
    m = cfg.model
    extra = sorted(set(select_actions(ds, cfg.data.extra_train_actions)) - set(train_names) - set(val_names)) \
        if cfg.data.extra_train_actions else []
    windows = PoseWindows.from_dataset(ds, train_names + extra, observed=m.observed, horizon=m.horizon,
                                       stride=cfg.data.stride, invisible=m.invisible,
                                       max_start=cfg.data.max_start, min_horizon=cfg.data.min_horizon)
    if len(windows) == 0:
        need = m.observed + (cfg.data.min_horizon or m.horizon)
        raise UserError(f"no training sequence has the {need} frames a window needs", cfg.data.root)
    val_seqs = [ds.label(n) for n in val_names]

    def validate() -> dict[str, float]:
        if not any(s.nframes >= m.observed + m.horizon for s in val_seqs):
            return {}
        horizons = sorted({h for h in (1, 8, 16, m.horizon) if h <= m.horizon})
        res = evaluate_pose_protocol(val_seqs, {"lstm": pose_lstm_predictor(model)}, m.observed, m.horizon,
                                     horizons=horizons)
        out = {}
        for name in ("lstm", "zero_velocity"):
            for h, err in zip(horizons, res["methods"][name]["overall"]):
                out[f"val/{name}@{h}"] = err
        return {k: v for k, v in out.items() if v is not None}

    return Task(
        modules={"pose_lstm": model},
        optimizers={"pose_lstm": torch.optim.AdamW(model.parameters(), lr=cfg.train.lr,
                                                   weight_decay=cfg.train.weight_decay)},
        loss=PoseLoss(wrap(model, info, device), m.horizon, cfg.train.loss, cfg.train.step_weights),
        dataset=PoseBatches(windows, cfg.train.batch_size, cfg.train.seed, info.rank, info.world, cfg.data.mirror,
                            cfg.data.speed, weights=action_weights(ds, windows) if cfg.data.balance_actions else None),
        to_device=batch_to_device,
        validate=validate,
        summary={
            "train_sequences": len(train_names), "extra_train_sequences": len(extra),
            "val_sequences": len(val_names), "train_windows": len(windows),
            "skipped_short": len(windows.skipped), "skipped_names": windows.skipped,
            "partial_horizon": len(windows.partial), "partial_names": windows.partial,
            "val_names": val_names,
        },
    )


def train_poses(cfg: PoseExperimentConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
                force: bool = False) -> LoopResult:
    return run_training(cfg, pose_task, run_dir, resume, progress, force)


# ---------------------------------------------------------------- motion refining stage (G_R, §6)


def forecaster_files(ckpt: Path) -> tuple[str, list[Path]]:
    """The G_M module name in a checkpoint folder ("forecaster", or "generator" in training runs) and its files."""
    name = find_forecaster(ckpt)
    return name, [ckpt / f"{name}.safetensors", ckpt / f"{name}.json"]


def refine_task(cfg: RefineExperimentConfig, device: torch.device, info: DistInfo) -> Task:
    """G_R against D_V and D_I with Eq. 15-20 (§6.2) on clips of part gr; the frozen G_M's coarse videos are
    made once and cached (data/refine_clips.py). One critics update, then one G_R update (§6.2)."""
    from structvid.data.refine_clips import CoarseVideos, RefineBatches, VideoFolderCoarse, cache_key, data_fingerprint
    from structvid.io.download import cache_dir
    from structvid.losses.refine import RefineLoss
    from structvid.models.critics import RefineCritics
    from structvid.models.refiner import Refiner
    from structvid.training.checkpoint import find_checkpoint
    from structvid.training.distributed import barrier

    d, m = cfg.data, cfg.model
    sampler = ClipSampler(d, build_structure(cfg.structure))
    if d.coarse_videos:
        coarse = VideoFolderCoarse(sampler, d.coarse_videos)
        missing = coarse.missing()
        if missing:
            raise UserError(f"no coarse video for {len(missing)} video(s), e.g. {coarse.path(missing[0]).name}",
                            d.coarse_videos)
        source = {"coarse_videos": str(Path(d.coarse_videos).resolve())}
    else:
        ckpt = find_checkpoint(d.forecaster)
        name, files = forecaster_files(ckpt)
        forecaster = load_pretrained(ckpt, name).to(device).eval().requires_grad_(False)
        fc = forecaster.config
        if (fc.resolution, fc.motion_channels, fc.image_channels) != (m.resolution, m.motion_channels, m.image_channels):
            raise UserError(f"G_M makes {fc.resolution}x{fc.resolution} frames with {fc.image_channels} + "
                            f"{fc.motion_channels} channels, G_R is configured for {m.resolution}x{m.resolution} with "
                            f"{m.image_channels} + {m.motion_channels} (model.resolution / model.motion_channels)",
                            files[1])
        key = cache_key(files, data_fingerprint(sampler))
        folder = Path(d.cache) if d.cache else cache_dir() / "coarse"
        coarse = CoarseVideos(sampler, folder / key, lambda i, mt, tg: forecaster.forecast(i, mt, tg).frame, device)
        if info.is_main:
            made = coarse.build(progress=True)
            log.info("coarse videos: %d made, %d cached -> %s", made, len(sampler.names) - made, coarse.folder)
        barrier(info)
        source = {"forecaster": str(ckpt.resolve()), "coarse_cache": str(coarse.folder)}

    torch.manual_seed(cfg.train.seed)
    refiner = Refiner(m).to(device)
    critics = RefineCritics(cfg.critic).to(device)
    loss = RefineLoss(wrap(refiner, info, device), wrap(critics.video, info, device), wrap(critics.image, info, device),
                      cfg.loss, critic_steps=cfg.train.critic_steps)
    t = cfg.train
    optimizers = {  # §7.1: Adam, lr 1e-4, β = (0, 0.9) for every network
        "refiner": torch.optim.Adam(refiner.parameters(), lr=t.lr, betas=t.betas),
        "critics": torch.optim.Adam(critics.parameters(), lr=t.lr, betas=t.betas),
    }
    draws = sum(p.repeat for p in loss.phases)
    dataset = RefineBatches(coarse, m.clip_length, t.batch_size, t.seed, info.rank, info.world, draws_per_step=draws)
    fixed = RefineBatches(coarse, m.clip_length, 2, SAMPLE_SEED)[0]

    @torch.no_grad()
    def sample_grid() -> np.ndarray:
        """Per clip, rows real V | coarse Ṽ | refined V̄ | mask m over (up to) 8 of its K frames."""
        refiner.eval()
        b = batch_to_device(fixed, device)
        out = refiner(b["coarse"], b["motions"])
        refiner.train()
        step = max(1, m.clip_length // 8)
        rows = []
        for i in range(b["video"].shape[0]):
            sel = slice(None, None, step)
            rows += [to_uint8(b["video"][i, sel].cpu()), to_uint8(b["coarse"][i, sel].cpu()),
                     to_uint8(out.clip[i, sel].float().cpu()), heatmap_to_rgb(out.mask[i, sel].float().cpu().numpy())]
        return make_grid(np.concatenate(rows), ncols=len(range(0, m.clip_length, step)))

    return Task(
        modules={"refiner": refiner, "critics": critics},
        optimizers=optimizers,
        loss=loss,
        dataset=dataset,
        to_device=batch_to_device,
        sample_grid=sample_grid,
        num_workers=d.num_workers,
        summary={"part": d.part, "videos": len(sampler.names), "clip_videos": len(dataset.names),
                 "skipped_short": len(dataset.skipped), **source},
    )


def train_refiner(cfg: RefineExperimentConfig, run_dir: str | Path, resume: bool = False, progress: bool = True,
                  force: bool = False) -> LoopResult:
    return run_training(cfg, refine_task, run_dir, resume, progress, force)
