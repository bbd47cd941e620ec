"""`structvid bench quality`: the ablation of Table 8 (§7.4) on puppet videos driven by Penn Action motions.

Data (§7.1's three-way protocol, on puppets). The Penn Action label files of the paper's 8 actions are linked
into one labels folder and rendered as puppets twice (`structvid.data.puppet`, source penn: the figure moves as
the label's joints, look and background drawn from (seed, video)):

- the training render (seed `train_seed`), read with `data.part` gm by every G_M and gr by G_R;
- the test render (seed `test_seed`, looks and backgrounds never trained on), read with part eval: motion
  sequences that neither stage trained on (`paper_split` deals the parts, `ClipSampler` selects them, as in
  training and `evaluate video`).

Methods, each trained with the same seed, steps, widths and data (each G_M variant is one change from (iv)):

  (i)   G_M, model.residual=none (direct generation, "decays to Villegas et al. 2017b")
  (ii)  G_M, model.residual=difference (Eq. 6)
  (iii) G_M, model.residual=mask (Eq. 7), model.dense=false
  (iv)  G_M, mask + dense decoder connections (§5.1): the paper's G_M
  (v)   (iv) + G_R (§6), trained on (iv)'s coarse videos of part gr
  copy      every future frame is the last observed frame
  farneback constant-flow extrapolation (OpenCV Farnebäck) from the last two observed frames (below)

Evaluation (§7.3 with ground-truth poses, as Table 8 reports Penn Action "to get rid of the influence from the
LSTM"): in each held-out video with at least 2 + F frames (F = 32), frames 0 and 1 are observed. Every method
predicts the same F frames 2..F+1: the networks from frame 1 (the last observed frame, its pose M_t) and the
true poses of frames 2..F+1, copy repeats frame 1, and Farnebäck estimates the dense flow b from frame 1 back
to frame 0 (`cv2.calcOpticalFlowFarneback(frame1, frame0)`, so frame1(x) ≈ frame0(x + b(x))) and, assuming
every pixel keeps its velocity, renders frame 1 + n as frame1(x + n·b(x)) with one `cv2.remap` of frame 1
(bilinear, border replicated). Only Farnebäck uses frame 0. Scores (`structvid.metrics.pixel`, [0, 1] images):
MSE, PSNR (capped at 100 dB), SSIM per predicted frame, and the temporal error

    E_temp = mean over t of ‖(V̄_{t+1} − V̄_t) − (V_{t+1} − V_t)‖₁ / (H·W·3),  t, t + 1 both predicted frames,

which is 0 when the generated video changes exactly as the real one does, whatever its per-frame error, and
for a static prediction (copy) equals the mean absolute change of the real video.

Training uses the project's tasks (`train_forecaster`, `train_refiner`) with the presets `configs/puppet-64.yaml` and
`configs/demo-refine-64.yaml` plus overrides (`gm_overrides`, `gr_overrides`): reduced widths, `steps` each, lr 3e-4,
and by default only the reconstruction and mask terms (Eq. 9-11, Eq. 16): the adversarial terms and their critics
(Eq. 12-14, 17-20) cost 1.65x per G_M step and 10x per G_R step on the CPU (`adversarial=True` adds them). Renders
in `work` are reused and a run already there is resumed (exactly, `training/loop.py`).

The report (`write_quality_report`): quality.json, quality.md (table, ordering checks against Table 8, the
command), psnr_per_frame.png and temporal_error.png.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import cv2
import numpy as np

from structvid.errors import UserError

log = logging.getLogger(__name__)

REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
GM_PRESET = REPO_CONFIGS / "puppet-64.yaml"  # Table 1 design, the authors' Eq. 9 weights, max_jump 32, part gm
GR_PRESET = REPO_CONFIGS / "demo-refine-64.yaml"  # Table 2 design at base width 16, K = 16


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    overrides: tuple[str, ...] = ()


# Each variant changes one thing of (iv), the paper's G_M (so (i)/(ii) keep the dense decoder).
GM_VARIANTS: tuple[Variant, ...] = (
    Variant("none", "(i) G_M, residual none", ("model.residual=none",)),
    Variant("difference", "(ii) G_M, residual difference (Eq. 6)", ("model.residual=difference",)),
    Variant("mask", "(iii) G_M, mask (Eq. 7), no dense", ("model.dense=false",)),
    Variant("mask_dense", "(iv) G_M, mask + dense", ()),
)
REFINED = Variant("mask_dense_gr", "(v) (iv) + G_R")
BASELINES: dict[str, str] = {"copy": "copy the last observed frame",
                             "farneback": "Farnebäck flow extrapolation (last two observed frames)"}
METRICS = ("mse", "psnr", "ssim", "temporal")
OBSERVED = 2  # frames 0 and 1: Farnebäck needs two, the networks and copy start from the last


@dataclass
class QualityOptions:
    """What `structvid bench quality` trains and evaluates (defaults: the full run, ~60 min on 2 CPU cores)."""

    penn_labels: str = "../shared/data/penn_action"  # a Penn Action root or its labels/ folder
    work: str = "runs/quality"  # puppet renders, training runs, coarse-video cache (reused when present)
    out: str = "docs/quality"  # the report
    size: int = 64  # puppet frame side = model resolution
    width: int = 16  # G_M / D_I base width (Table 1: 64)
    refine_width: int = 16  # G_R / D_V base width (Table 2: 128)
    steps: int = 600  # G_M steps per variant
    refine_steps: int = 1000  # G_R steps
    batch: int = 16
    refine_batch: int = 4
    lr: float = 3e-4  # §7.1 says 1e-4; 3e-4 for the CPU budget, as the demo presets
    # Eq. 12 / Eq. 17-18 terms and their critics. Off by default for the CPU budget: they cost 1.65x per G_M
    # step and 10x per G_R step (measured, width 16, 64x64), so only the L1 and mask terms of Eq. 9 / 16 train.
    adversarial: bool = False
    clip_length: int = 16  # K of G_R (§7.1: 16 for bodies)
    frames: int = 32  # predicted frames per held-out video
    max_videos: int = 96  # held-out videos evaluated (dealt round-robin over the actions)
    train_seed: int = 0  # puppet looks of the training render
    test_seed: int = 1  # puppet looks of the held-out render
    seed: int = 0  # train.seed of every network
    per_action: int | None = None  # only the first n label files of each action (the tiny mode)
    actions: tuple[str, ...] = ()  # default: the paper's 8
    workers: int = 2  # puppet rendering processes

    @classmethod
    def tiny(cls, **kw: Any) -> "QualityOptions":
        """Seconds, not minutes: 16x16, width 4, 2 steps, 3 videos per part, 4 frames (for tests)."""
        base = dict(size=16, width=4, refine_width=4, steps=2, refine_steps=2, batch=4, refine_batch=2, clip_length=4,
                    frames=4, max_videos=6, per_action=3, actions=("golf_swing", "jumping_jacks"), workers=1)
        base.update(kw)
        return cls(**base)


# ---------------------------------------------------------------------------------------------- metrics


def temporal_error(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per step t of consecutive frames: mean |(V̄_{t+1} − V̄_t) − (V_{t+1} − V_t)| over pixels and channels on
    [0, 1] images (`metrics.pixel.to_unit` conventions) -> (T − 1,)."""
    from structvid.metrics.pixel import to_unit

    p, t = to_unit(pred), to_unit(target)
    if p.shape != t.shape:
        raise UserError(f"prediction has shape {p.shape} but target has shape {t.shape}; they must match")
    if len(p) < 2:
        raise UserError("the temporal error needs at least 2 frames")
    return np.abs(np.diff(p, axis=0) - np.diff(t, axis=0)).mean(axis=(1, 2, 3))


def score_clip(pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame MSE, PSNR, SSIM (registry) and per-step temporal error of one predicted clip."""
    from structvid.metrics import pixel, registry  # noqa: F401 - importing pixel registers the metrics

    scores = registry.compute(["mse", "psnr", "ssim"], pred, target)
    out = {m: np.asarray(scores[m]["per_frame"]) for m in ("mse", "psnr", "ssim")}
    out["temporal"] = temporal_error(pred, target)
    return out


# ---------------------------------------------------------------------------------------------- baselines


def copy_last(observed: np.ndarray, frames: int) -> np.ndarray:
    """The last observed frame, `frames` times: (frames, H, W, 3)."""
    return np.repeat(np.asarray(observed)[-1:], frames, axis=0)


def farneback_extrapolate(observed: np.ndarray, frames: int) -> np.ndarray:
    """Constant-flow extrapolation from the last two observed uint8 RGB frames -> (frames, H, W, 3) uint8.

    b = Farnebäck flow from the last frame back to the one before (last(x) ≈ prev(x + b(x))); frame n after the
    last is last(x + n·b(x)) (backward warping with `cv2.remap`, bilinear, border replicated). OpenCV's sample
    parameters (pyramid 0.5, 3 levels, window 15, 3 iterations, poly_n 5, sigma 1.2)."""
    prev, last = np.asarray(observed[-2]), np.asarray(observed[-1])
    g_prev, g_last = (cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in (prev, last))
    flow = cv2.calcOpticalFlowFarneback(g_last, g_prev, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    h, w = g_last.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([cv2.remap(last, xs + n * flow[..., 0], ys + n * flow[..., 1], cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE) for n in range(1, frames + 1)])


# ---------------------------------------------------------------------------------------------- data


def _labels_root(penn_labels: str | Path) -> Path:
    root = Path(penn_labels)
    if root.name == "labels" and not (root / "labels").is_dir():
        root = root.parent
    if not (root / "labels").is_dir():
        raise UserError("Penn Action labels not found (expected a folder holding labels/NNNN.mat)", penn_labels)
    return root


def _link_labels(opts: QualityOptions, folder: Path) -> list[Path]:
    """FOLDER/NNNN.mat links to the label files of the chosen actions (all, or the first `per_action` of each)."""
    from structvid.data.penn_action import PennActionDataset
    from structvid.structure.skeleton import PAPER_ACTIONS

    ds = PennActionDataset(_labels_root(opts.penn_labels), actions=list(opts.actions or PAPER_ACTIONS))
    names = ds.names
    if opts.per_action is not None:
        seen: dict[str, int] = {}
        names = []
        for n in ds.names:
            a = ds.label(n).action
            seen[a] = seen.get(a, 0) + 1
            if seen[a] <= opts.per_action:
                names.append(n)
    if not names:
        raise UserError("no label file of the chosen actions", ds.labels_dir)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for n in names:
        (folder / f"{n}.mat").symlink_to(ds.label_path(n).resolve())
    return [ds.label_path(n) for n in names]


def _render(labels: Path, out: Path, opts: QualityOptions, seed: int, count: int) -> Path:
    """Puppets of every linked label file (seed `seed`), reused when `out` already holds exactly that render."""
    from structvid.data.puppet import MARKER, make_puppet_dataset

    want = dict(num_videos=count, size=opts.size, seed=seed, source="penn", penn_labels=str(labels))
    try:
        meta = json.loads((out / MARKER).read_text())
        if all(meta.get(k) == v for k, v in want.items()):
            log.info("reusing the puppet render %s", out)
            return out
    except (OSError, ValueError):
        pass
    make_puppet_dataset(out, count, size=opts.size, seed=seed, source="penn", penn_labels=labels,
                        workers=opts.workers)
    return out


def make_data(opts: QualityOptions) -> tuple[Path, Path, list[Path]]:
    """(training render, held-out render, the label files they animate) under `opts.work`."""
    work = Path(opts.work)
    labels = work / "labels"
    files = _link_labels(opts, labels)
    train = _render(labels, work / "puppets_train", opts, opts.train_seed, len(files))
    test = _render(labels, work / "puppets_test", opts, opts.test_seed, len(files))
    return train, test, files


# ---------------------------------------------------------------------------------------------- training


def gm_overrides(opts: QualityOptions, data_root: Path, variant: Variant) -> list[str]:
    """`configs/puppet-64.yaml` at reduced width on the training render's part gm, plus the variant's change."""
    w, mw, grow = opts.width, 8 * opts.width, max(opts.width, 1)
    every = max(opts.steps, 1)
    return [f"data.root={data_root}", "data.part=gm", f"data.image_size={opts.size}",
            f"data.max_jump={max(1, min(32, opts.frames))}",
            f"model.resolution={opts.size}", f"critic.resolution={opts.size}",
            f"model.base_width={w}", f"model.max_width={mw}", f"model.dense_growth={grow}",
            f"critic.base_width={w}", f"critic.max_width={mw}",
            f"loss.gen={1.0 if opts.adversarial else 0.0}",
            f"train.steps={opts.steps}", f"train.batch_size={opts.batch}", f"train.lr={opts.lr}",
            f"train.seed={opts.seed}", "train.device=cpu", f"train.checkpoint_every={every}",
            f"train.sample_every={every}", f"train.log_every={max(1, min(50, opts.steps // 10))}",
            "train.keep_checkpoints=1", *variant.overrides]


def gr_overrides(opts: QualityOptions, data_root: Path, forecaster: Path, cache: Path) -> list[str]:
    """`configs/demo-refine-64.yaml` on the training render's part gr, refining `forecaster`'s videos."""
    w, mw = opts.refine_width, 8 * opts.refine_width
    every = max(opts.refine_steps, 1)
    adv = 1.0 if opts.adversarial else 0.0
    out = [f"data.root={data_root}", "data.part=gr", f"data.image_size={opts.size}", f"data.forecaster={forecaster}",
           f"data.cache={cache}", f"model.resolution={opts.size}", f"model.clip_length={opts.clip_length}",
           f"model.base_width={w}", f"model.max_width={mw}"]
    for c in ("video", "image"):
        out += [f"critic.{c}.resolution={opts.size}", f"critic.{c}.base_width={w}", f"critic.{c}.max_width={mw}"]
    out += [f"critic.video.clip_length={opts.clip_length}", f"loss.gen_video={adv}", f"loss.gen_image={adv}",
            f"loss.rank={adv}", f"train.steps={opts.refine_steps}", f"train.batch_size={opts.refine_batch}",
            f"train.lr={opts.lr}", f"train.seed={opts.seed}", "train.device=cpu", f"train.checkpoint_every={every}",
            f"train.sample_every={every}", f"train.log_every={max(1, min(25, opts.refine_steps // 10))}",
            "train.keep_checkpoints=1"]
    return out


def _train(kind: str, overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """Train one network with the project's training task (resuming the run when `run_dir` holds one)."""
    from structvid.config import ExperimentConfig, RefineExperimentConfig, load_config
    from structvid.training.tasks import train_forecaster, train_refiner

    cls, preset, fn = ((ExperimentConfig, GM_PRESET, train_forecaster) if kind == "forecast"
                       else (RefineExperimentConfig, GR_PRESET, train_refiner))
    if not preset.is_file():
        raise UserError("preset not found (bench quality runs from a source checkout)", preset)
    cfg = load_config(cls, preset, overrides)
    resume = (run_dir / "latest.json").is_file()
    t0 = time.perf_counter()
    result = fn(cfg, run_dir, resume=resume, progress=False)
    return {"run": str(run_dir), "steps": result.step, "seconds": round(time.perf_counter() - t0, 1),
            "resumed": resume, "preset": str(preset.relative_to(REPO_CONFIGS.parent)), "overrides": overrides,
            "final_stats": {k: round(float(v), 5) for k, v in result.stats.items()}}


# ---------------------------------------------------------------------------------------------- evaluation

Predictor = Callable[[Any], np.ndarray]  # Video (frames, joints) -> (F, S, S, 3) uint8 frames 2..F+1


def network_predictor(pipe: Any, frames: int) -> Predictor:
    """G_M (and G_R when attached) from the last observed frame with the true poses of the predicted frames."""
    from structvid.metrics.video_protocols import generate

    o = OBSERVED
    return lambda v: generate(pipe, pipe.structure, v.frames[o - 1], v.params[o - 1], v.params[o : o + frames])


def held_out_videos(sampler: Any, frames: int, max_videos: int | None) -> list[str]:
    """The sampler's videos with OBSERVED + `frames` frames, dealt round-robin over actions (sorted), in name order
    within each, so a cap keeps every action."""
    by_action: dict[str, list[str]] = {}
    for n in sampler.names:
        if len(sampler.video(n).frames) >= OBSERVED + frames:
            by_action.setdefault(sampler.action(n), []).append(n)
    dealt = [group[i] for i in range(max((len(g) for g in by_action.values()), default=0))
             for _, group in sorted(by_action.items()) if i < len(group)]
    return dealt[:max_videos] if max_videos else dealt


def evaluate_methods(methods: Mapping[str, Predictor], sampler: Any, names: Sequence[str],
                     frames: int) -> dict[str, dict[str, Any]]:
    """Every method on the same videos and frames: means over videos of each metric's per-video mean, per-frame
    curves (mean over videos), and the PSNR per action."""
    o = OBSERVED
    per: dict[str, dict[str, list]] = {k: {m: [] for m in METRICS} for k in methods}
    actions: list[str] = []
    for name in names:
        video = sampler.video(name)
        target = video.frames[o : o + frames]
        actions.append(sampler.action(name))
        for key, predict in methods.items():
            for m, v in score_clip(predict(video), target).items():
                per[key][m].append(v)
    out: dict[str, dict[str, Any]] = {}
    for key, curves in per.items():
        arr = {m: np.stack(curves[m]) for m in METRICS}  # (videos, frames or frames - 1)
        out[key] = {**{m: float(arr[m].mean(axis=1).mean()) for m in METRICS},
                    "per_frame": {m: arr[m].mean(axis=0).tolist() for m in METRICS},
                    "per_video": {m: arr[m].mean(axis=1).tolist() for m in METRICS},  # in the order of `names`
                    "psnr_per_action": {a: float(np.mean([p.mean() for p, b in zip(curves["psnr"], actions) if b == a]))
                                        for a in sorted(set(actions))}}
    return out


# ---------------------------------------------------------------------------------------------- the benchmark


def run_quality_bench(opts: QualityOptions, command: str | None = None,
                      say: Callable[[str], None] = lambda s: log.info("%s", s)) -> dict[str, Any]:
    """Make the data, train (i)-(v), evaluate them and the baselines on the held-out puppets; returns the result
    (`write_quality_report` writes it)."""
    import torch

    from structvid.config import DataConfig
    from structvid.data.clips import ClipSampler
    from structvid.pipelines.image_to_video import ImageToVideoPipeline

    if opts.frames < 2:
        raise UserError(f"frames must be >= 2 (the temporal error compares consecutive frames), got {opts.frames}")
    t_start = time.perf_counter()
    work = Path(opts.work)
    say(f"rendering puppets under {work}")
    t0 = time.perf_counter()
    train_root, test_root, files = make_data(opts)
    data_seconds = time.perf_counter() - t0
    training: dict[str, dict[str, Any]] = {}
    for v in GM_VARIANTS:
        say(f"training {v.label}: {opts.steps} steps")
        training[v.key] = _train("forecast", gm_overrides(opts, train_root, v), work / "runs" / v.key)
        say(f"  {training[v.key]['seconds']:.0f} s")
    say(f"training {REFINED.label}: {opts.refine_steps} steps (coarse videos of part gr made first)")
    gm_run = work / "runs" / "mask_dense"
    training[REFINED.key] = _train("refine", gr_overrides(opts, train_root, gm_run, work / "coarse_cache"),
                                   work / "runs" / REFINED.key)
    say(f"  {training[REFINED.key]['seconds']:.0f} s")

    say("evaluating on the held-out puppets")
    t0 = time.perf_counter()
    gm_pipe = ImageToVideoPipeline.from_pretrained(gm_run, device="cpu")
    test_cfg = DataConfig(root=str(test_root), image_size=opts.size, crop_margin=gm_pipe.crop_margin,
                          actions=[], part="eval")
    sampler = ClipSampler(test_cfg, gm_pipe.structure)
    names = held_out_videos(sampler, opts.frames, opts.max_videos)
    if not names:
        raise UserError(f"no held-out video has the {OBSERVED + opts.frames} frames the evaluation needs", test_root)
    methods: dict[str, Predictor] = {}
    labels: dict[str, str] = {}
    for v in GM_VARIANTS:
        pipe = gm_pipe if v.key == "mask_dense" else ImageToVideoPipeline.from_pretrained(
            work / "runs" / v.key, device="cpu")
        methods[v.key], labels[v.key] = network_predictor(pipe, opts.frames), v.label
    methods[REFINED.key] = network_predictor(ImageToVideoPipeline.from_pretrained(work / "runs" / REFINED.key,
                                                                                  device="cpu"), opts.frames)
    labels[REFINED.key] = REFINED.label
    methods["copy"] = lambda v: copy_last(v.frames[:OBSERVED], opts.frames)
    methods["farneback"] = lambda v: farneback_extrapolate(v.frames[:OBSERVED], opts.frames)
    labels.update(BASELINES)
    with torch.no_grad():
        scores = evaluate_methods(methods, sampler, names, opts.frames)
    eval_seconds = time.perf_counter() - t0

    train_parts = {p: len(ClipSampler(DataConfig(root=str(train_root), image_size=opts.size, part=p)).names)
                   for p in ("gm", "gr")}
    result = {
        "benchmark": "quality",
        "command": command,
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(opts).items()},
        "protocol": {"observed": OBSERVED, "frames": opts.frames, "input_frame": OBSERVED - 1,
                     "predicted_frames": [OBSERVED, OBSERVED + opts.frames - 1],
                     "conditions": "ground-truth poses", "temporal_steps": opts.frames - 1},
        "data": {"label_files": len(files), "train_render": str(train_root), "test_render": str(test_root),
                 "train_videos": train_parts, "eval_videos_in_part": len(sampler.names), "evaluated_videos": len(names),
                 "evaluated": names},
        "training": training,
        "methods": {k: {"label": labels[k], **scores[k]} for k in methods},
        "seconds": {"data": round(data_seconds, 1), "train": round(sum(t["seconds"] for t in training.values()), 1),
                    "evaluate": round(eval_seconds, 1), "total": round(time.perf_counter() - t_start, 1)},
        "machine": {"torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
    }
    result["ordering"] = ordering_checks(result["methods"])
    return result


# Table 8 (MSE on Penn Action): G_M (no dense) 0.027 > G_M (dense) 0.014 > + G_R 0.011; and §7.2-7.3: residual
# learning beats direct generation (Villegas et al. 2017b).
PAPER_ORDER: tuple[tuple[str, str], ...] = (("mask", "mask_dense"), ("mask_dense", "mask_dense_gr"),
                                            ("none", "mask_dense"), ("difference", "mask_dense"))
_BETTER = {"mse": -1, "psnr": 1, "ssim": 1, "temporal": -1}  # sign of "better"


def ordering_checks(methods: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For each pair (worse, better) the paper implies and each metric: whether the means agree (`holds`), the
    difference of the means, and the fraction of videos on which `better` scores better (`wins`)."""
    rows = []
    for worse, better in PAPER_ORDER:
        if worse not in methods or better not in methods:
            continue
        for m in METRICS:
            diff = float(methods[better][m] - methods[worse][m])
            a, b = (np.asarray(methods[k].get("per_video", {}).get(m, []), np.float64) for k in (worse, better))
            wins = float(np.mean((b - a) * _BETTER[m] > 0)) if len(a) and len(a) == len(b) else None
            rows.append({"worse": worse, "better": better, "metric": m, "difference": diff,
                         "holds": bool(diff * _BETTER[m] > 0), "wins": wins})
    return rows


# ---------------------------------------------------------------------------------------------- the report


def _markdown(result: Mapping[str, Any]) -> str:
    o, p, d = result["options"], result["protocol"], result["data"]
    methods = result["methods"]
    lines = [
        "# Ablation and quality benchmark (Table 8)",
        "",
        f"`{result['command']}`" if result.get("command") else "",
        "",
        f"Puppets driven by Penn Action motions ({d['label_files']} label files of "
        f"{len(o['actions']) or 8} actions), {o['size']}×{o['size']}. G_M variants: {d['train_videos']['gm']} "
        f"videos of part gm, G_R: {d['train_videos']['gr']} of part gr (training render, looks seed "
        f"{o['train_seed']}); evaluated on {d['evaluated_videos']} of the {d['eval_videos_in_part']} videos of part "
        f"eval in the held-out render (looks seed {o['test_seed']}): unseen looks and unseen motion sequences.",
        f"Frames {p['observed'] - 2} and {p['input_frame']} are observed; every method predicts frames "
        f"{p['predicted_frames'][0]}–{p['predicted_frames'][1]} (networks: from frame {p['input_frame']} with the "
        "ground-truth poses; copy: frame 1 repeated; Farnebäck: constant flow from frames 0 → 1).",
        f"Training: base widths G_M/D_I {o['width']}, G_R/D_V {o['refine_width']}, {o['steps']} G_M steps (batch "
        f"{o['batch']}), {o['refine_steps']} G_R steps (batch {o['refine_batch']}, K = {o['clip_length']}), lr "
        f"{o['lr']}, seed {o['seed']}, adversarial terms {'on' if o['adversarial'] else 'off'}. Wall time "
        f"{result['seconds']['total'] / 60:.1f} min (data {result['seconds']['data']:.0f} s, training "
        f"{result['seconds']['train']:.0f} s, evaluation {result['seconds']['evaluate']:.0f} s), torch threads "
        f"{result['machine']['torch_threads']}.",
        "",
        "| method | MSE ↓ | PSNR (dB) ↑ | SSIM ↑ | temporal error ↓ | train s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for k, r in methods.items():
        secs = result["training"].get(k, {}).get("seconds")
        lines.append(f"| {r['label']} | {r['mse']:.5f} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r['temporal']:.5f} | "
                     f"{'' if secs is None else f'{secs:.0f}'} |")
    lines += ["", "Means over videos of each video's mean over its predicted frames; temporal error: mean "
              "|(V̄_{t+1} − V̄_t) − (V_{t+1} − V_t)| on [0, 1] images over the consecutive predicted frames.", "",
              "Orderings Table 8 and §7.2–7.3 imply, worse → better: \"holds\" when the better method's mean is "
              "better; in brackets the difference of the means and the share of videos on which the better method scores "
              "better.", "",
              "| worse → better | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    for worse, better in PAPER_ORDER:
        rows = {r["metric"]: r for r in result["ordering"] if r["worse"] == worse and r["better"] == better}
        if rows:
            cells = [("holds" if rows[m]["holds"] else "**does not**") + f" ({rows[m]['difference']:+.3g}"
                     + ("" if rows[m]["wins"] is None else f", {100 * rows[m]['wins']:.0f}% of videos") + ")"
                     for m in METRICS]
            lines.append(f"| {worse} → {better} | " + " | ".join(cells) + " |")
    lines += ["", "PSNR per action:", "", "| method | " + " | ".join(next(iter(methods.values()))["psnr_per_action"])
              + " |", "|---|" + "---:|" * len(next(iter(methods.values()))["psnr_per_action"])]
    for r in methods.values():
        lines.append(f"| {r['label']} | " + " | ".join(f"{v:.2f}" for v in r["psnr_per_action"].values()) + " |")
    lines += ["", "![PSNR per predicted frame](psnr_per_frame.png)", "", "![temporal error](temporal_error.png)", ""]
    return "\n".join(lines)


def _plot(result: Mapping[str, Any], metric: str, path: Path, ylabel: str, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from structvid.io.files import atomic_path

    fig = Figure(figsize=(7, 4))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    first = result["protocol"]["predicted_frames"][0] + (1 if metric == "temporal" else 0)
    for key, r in result["methods"].items():
        curve = r["per_frame"][metric]
        style = "--" if key in BASELINES else "-"
        ax.plot(range(first, first + len(curve)), curve, style, label=r["label"])
    ax.set_xlabel("frame (0-based; frames 0 and 1 observed)" if metric != "temporal"
                  else "frame t + 1 of the step t → t + 1")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def write_quality_report(result: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """OUT/quality.json, quality.md, psnr_per_frame.png, temporal_error.png (each written atomically)."""
    from structvid.io.files import atomic_write_text, output_errors

    out = Path(out_dir)
    paths = {"json": out / "quality.json", "md": out / "quality.md", "psnr": out / "psnr_per_frame.png",
             "temporal": out / "temporal_error.png"}
    with output_errors(out):
        atomic_write_text(paths["json"], json.dumps(result, indent=2) + "\n")
        atomic_write_text(paths["md"], _markdown(result))
        _plot(result, "psnr", paths["psnr"], "PSNR (dB)", "PSNR per predicted frame (held-out puppets)")
        _plot(result, "temporal", paths["temporal"], "temporal error (L1, [0, 1])",
              "|(V̄_{t+1} − V̄_t) − (V_{t+1} − V_t)| per step")
    return paths


def summary_line(result: Mapping[str, Any]) -> dict[str, Any]:
    """The one JSON line the command prints: each method's four means, and the wall time."""
    return {"benchmark": "quality", **{k: {m: round(r[m], 6) for m in METRICS} for k, r in result["methods"].items()},
            "seconds": result["seconds"]["total"]}


__all__ = ["BASELINES", "GM_VARIANTS", "QualityOptions", "copy_last", "evaluate_methods", "farneback_extrapolate",
           "gm_overrides", "gr_overrides", "held_out_videos", "make_data", "network_predictor", "ordering_checks",
           "run_quality_bench", "score_clip", "summary_line", "temporal_error", "write_quality_report"]
