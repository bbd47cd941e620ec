"""The paper's video evaluation protocols (§7.3) as library functions.

A pipeline here is anything called like `ImageToVideoPipeline`:
``pipe(image (S, S, 3) uint8, motion_maps=(T, C, S, S), image_motion=(1, C, S, S)) -> .frames (T, S, S, 3)
uint8``, with attributes ``size`` (S) and ``structure`` (the `Structure` that renders joints into maps; an
explicit `structure=` argument takes precedence). A pose predictor is a `structvid.metrics.pose.Predictor`:
observed (N, T_obs, J, 3) [x, y, visibility] pixels, K -> (N, K, J, 2) pixels (e.g.
`structvid.models.pose_lstm.pose_lstm_predictor(model)`, or the `zero_velocity` baseline). Invisible
observed joints whose stored coordinates are not finite are given their last visible position first
(`fill_invisible`, as `evaluate_pose_protocol` does); predicted joints are all marked visible.

Penn Action (Table 7, Fig. 10; `penn_protocol`), 1-based frame numbers of the cropped video:

- "gt": the input image is frame 1 with its pose; the conditions are the ground-truth poses of frames
  2..1+F (F = `frames` = 32); the generated frames are compared with frames 2..1+F.
- "lstm": the predictor observes the poses of frames 1..O (O = `observed` = 10) and forecasts F poses;
  the input image is frame O with its ground-truth pose, the conditions are the forecast poses, and the
  generated frames are compared with frames O+1..O+F (11..42).

Which videos (§7.1): `penn_selection` builds the `ClipSampler` of part `part` (gm, gr, eval) of the paper's
even three-way split exactly as training builds its part: the same `DataConfig` (the G_M run's actions and
official-split setting, else the protocol's: the paper's 8 actions, both official halves), the same `ClipSampler`
and its `paper_split` call, so part eval shares no video with the parts gm and gr that G_M and G_R trained on.

Every requested condition is scored on the same videos: those with at least O + F frames (42); shorter
ones are excluded and counted, whichever conditions are requested, so "gt" and "lstm" columns from
separate calls stay comparable. MSE (on [0, 1] images) and PSNR (dB, capped at `PSNR_CAP`) are
`structvid.metrics.pixel`'s, averaged over the F frames of a video, then over videos (and per action).

Human3.6M (Table 6, Fig. 9; `h36m_protocol`): each clip (already cropped with its temporal tube to the
model size, e.g. `Human36MDataset.load_clip`) has O = 10 observed frames; the input image is frame O,
the conditions are the ground-truth poses of frames O+1..O+H (or, with a predictor, the poses forecast
from frames 1..O), H = min(`long_horizon` = 120, T − O). PSNR-Next is the PSNR of the first generated
frame (frame O+1); PSNR-120 the mean PSNR over the H generated frames (fewer than 120 for short clips:
the report counts them and gives min / mean / max H). Clips with T ≤ O are excluded and counted.
32-joint Human3.6M poses are mapped to the 13 Penn joints (`to_penn13`) when the structure has 13
channels. Motion deciles (Fig. 9): `motion_deciles` ranks the clips by `joint_motion` of their ground-
truth joints over frames 1..O+H; the report gives the mean PSNR-120 of each decile.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import torch
from tqdm import tqdm

from structvid.config import DataConfig, load_section
from structvid.data.clips import ClipSampler
from structvid.structure.skeleton import PAPER_ACTIONS
from structvid.errors import UserError
from structvid.models.pose_lstm import forecast_poses
from structvid.models.saving import run_config_file
from structvid.io.files import atomic_path, atomic_write_text
from structvid.metrics import registry
from structvid.structure.base import Structure

__all__ = [
    "CONDITIONS",
    "generate",
    "forecast_poses",
    "joint_motion",
    "motion_deciles",
    "penn_protocol",
    "penn_selection",
    "training_data",
    "h36m_protocol",
    "write_protocol_report",
]

CONDITIONS = ("gt", "lstm")
Predictor = Callable[[np.ndarray, int], Any]


def _structure(pipe: Any, structure: Structure | None) -> Structure:
    s = structure if structure is not None else getattr(pipe, "structure", None)
    if s is None:
        raise ValueError("the pipeline has no `structure`; pass structure=")
    return s


def generate(pipe: Any, structure: Structure, image: np.ndarray, image_joints: np.ndarray,
             joints: np.ndarray) -> np.ndarray:
    """G_M's frames for one clip: `image` (S, S, 3) showing pose `image_joints` (J, 3), one frame per pose
    of `joints` (T, J, 3), all in the image's pixels -> (T, S, S, 3) uint8."""
    s = image.shape[0]
    all_joints = np.concatenate([np.asarray(image_joints)[None], np.asarray(joints)]).astype(np.float32)
    maps = structure.render(torch.from_numpy(all_joints), s, s)
    return np.asarray(pipe(image, motion_maps=maps[1:], image_motion=maps[:1]).frames)


def joint_motion(joints: np.ndarray) -> float:
    """Mean over frames t and joints of ‖x_{t+1} − x_t‖ (pixels), over the joints visible (and finite) in
    both frames; 0 for fewer than 2 frames or no such joint. (T, J, 2) counts every joint as visible."""
    j = np.asarray(joints, np.float64)
    if j.ndim != 3 or j.shape[-1] < 2:
        raise UserError(f"joints must have shape (T, J, 2 or 3), got {j.shape}")
    if len(j) < 2:
        return 0.0
    step = np.linalg.norm(j[1:, :, :2] - j[:-1, :, :2], axis=-1)
    ok = np.isfinite(step)
    if j.shape[-1] > 2:
        ok &= (j[1:, :, 2] > 0) & (j[:-1, :, 2] > 0)
    return float(step[ok].mean()) if ok.any() else 0.0


def _deciles(values: Sequence[float]) -> list[int]:
    n = len(values)
    rank = np.empty(n, np.int64)
    rank[np.argsort(np.asarray(values, np.float64), kind="stable")] = np.arange(n)
    return [int(r) * 10 // n for r in rank]


def motion_deciles(joint_sequences: Iterable[np.ndarray]) -> list[int]:
    """Decile 0..9 of each sequence by `joint_motion` (0 = least motion, Fig. 9's 1st decile): sequences are
    ranked by motion (ties keep their input order) and rank r of n goes to decile ⌊10 r / n⌋, so deciles
    differ in size by at most one (20 sequences: 2 each)."""
    return _deciles([joint_motion(j) for j in joint_sequences])


def _mean(values: Iterable[float]) -> float | None:
    v = [float(x) for x in values]
    return float(np.mean(v)) if v else None


def _sampler(source: Any, pipe: Any) -> ClipSampler:
    if isinstance(source, ClipSampler):
        sampler = source
    else:
        cfg = source if isinstance(source, DataConfig) else DataConfig(
            root=str(source), image_size=int(pipe.size), crop_margin=float(getattr(pipe, "crop_margin", 0.15)))
        sampler = ClipSampler(cfg, _structure(pipe, None))
    if sampler.cfg.image_size != int(pipe.size):
        raise UserError(f"videos are cropped to {sampler.cfg.image_size}px but the model works at {pipe.size}px",
                        sampler.cfg.root)
    return sampler


def training_data(pipe: Any) -> tuple[DataConfig | None, Path | None]:
    """The data section of the run `pipe` was loaded from (`pipe.source`, the checkpoint folder: its own
    config.yaml or its run folder's, as `ImageToVideoPipeline.from_pretrained` finds it) and that file's path;
    (None, None) without one."""
    source = getattr(pipe, "source", None)
    if source is None:
        return None, None
    path = run_config_file(source)
    return (None, None) if path is None else (load_section(DataConfig, path, "data"), path)


def penn_selection(pipe: Any, root: str | Path, part: str = "eval", training: DataConfig | None = None,
                   actions: Sequence[str] | None = None) -> ClipSampler:
    """The videos of `root` (Penn layout or prepared store) in part `part` of the paper's split (§7.1: gm, gr, eval;
    all), cropped as the pipeline needs, selected as training selects its part: a `DataConfig` with `training`'s
    actions and official split (the G_M run's data section, `training_data`; without one the protocol's: the
    paper's 8 actions, both official halves; `actions` overrides, [] = every action) read by a `ClipSampler`,
    which deals the parts with `paper_split`. Part eval is thus disjoint from the gm / gr parts of that run."""
    if actions is None:
        actions = list(training.actions) if training is not None else list(PAPER_ACTIONS)
    cfg = DataConfig(root=str(root), image_size=int(pipe.size), crop_margin=float(getattr(pipe, "crop_margin", 0.15)),
                     actions=list(actions), split=training.split if training is not None else "all", part=part)
    return ClipSampler(cfg, _structure(pipe, None))


def penn_protocol(pipe: Any, sequences_source: ClipSampler | DataConfig | str | Path, frames: int = 32,
                  conditions: Sequence[str] = ("gt",), pose_predictor: Predictor | None = None, observed: int = 10,
                  names: Sequence[str] | None = None, structure: Structure | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """Penn Action protocol of Table 7 / Fig. 10 (see the module docstring for what is compared).

    `sequences_source`: a `ClipSampler`, a `DataConfig`, or a Penn layout / prepared store folder (cropped
    with the pipeline's size and crop margin). `names` restricts the videos; default: all of the source's videos
    (`penn_selection` makes the sampler of the paper's evaluation part, §7.1).

    Returns ``{"protocol": "penn_action", "frames": F, "observed": O, "min_frames": O + F,
    "conditions": {c: {"mse", "psnr", "psnr_per_action", "mse_per_action", "per_frame": {"mse", "psnr"},
    "num_videos"}}, "excluded": k, "excluded_videos": [...], "num_videos": n, "per_video": {name:
    {"action", c: {"mse", "psnr"}}}}``.
    """
    conditions = tuple(dict.fromkeys(conditions))
    if not conditions or any(c not in CONDITIONS for c in conditions):
        raise UserError(f"conditions must be a non-empty subset of {CONDITIONS}, got {list(conditions)}")
    if "lstm" in conditions and pose_predictor is None:
        raise UserError("condition 'lstm' needs a pose predictor (a pose LSTM checkpoint)")
    if frames < 1 or observed < 1:
        raise UserError(f"need frames >= 1 and observed >= 1, got {frames}, {observed}")
    sampler = _sampler(sequences_source, pipe)
    struct = _structure(pipe, structure)
    names = list(sampler.names if names is None else names)
    min_frames = observed + frames
    excluded: list[str] = []
    per_video: dict[str, dict[str, Any]] = {}
    curves = {c: {"mse": [], "psnr": []} for c in conditions}  # per video: (F,) arrays
    for name in tqdm(names, desc="penn protocol", unit="video", disable=not progress):
        video = sampler.video(name)
        if len(video.frames) < min_frames:
            excluded.append(name)
            continue
        entry: dict[str, Any] = {"action": sampler.action(name)}
        for c in conditions:
            start = 0 if c == "gt" else observed - 1  # 0-based index of the input frame
            cond = (video.params[1 : 1 + frames] if c == "gt"
                    else forecast_poses(pose_predictor, video.params[:observed], frames))  # type: ignore[arg-type]
            pred = generate(pipe, struct, video.frames[start], video.params[start], cond)
            scores = registry.compute(["mse", "psnr"], pred, video.frames[start + 1 : start + 1 + frames])
            entry[c] = {m: scores[m]["mean"] for m in ("mse", "psnr")}
            for m in ("mse", "psnr"):
                curves[c][m].append(scores[m]["per_frame"])
        per_video[name] = entry
    if not per_video:
        raise UserError(f"no video has the {min_frames} frames the protocol needs ({len(names)} given, all too short)",
                        sampler.cfg.root)
    actions = sorted({v["action"] for v in per_video.values()})
    out_conditions: dict[str, Any] = {}
    for c in conditions:
        scored = [(v["action"], v[c]) for v in per_video.values()]
        out_conditions[c] = {
            "mse": _mean(s["mse"] for _, s in scored),
            "psnr": _mean(s["psnr"] for _, s in scored),
            "psnr_per_action": {a: _mean(s["psnr"] for b, s in scored if b == a) for a in actions},
            "mse_per_action": {a: _mean(s["mse"] for b, s in scored if b == a) for a in actions},
            "per_frame": {m: np.mean(curves[c][m], axis=0).tolist() for m in ("mse", "psnr")},
            "num_videos": len(per_video),
        }
    return {"protocol": "penn_action", "source": str(sampler.cfg.root), "frames": frames, "observed": observed,
            "min_frames": min_frames, "conditions": out_conditions, "excluded": len(excluded),
            "excluded_videos": excluded, "num_videos": len(per_video), "per_video": per_video}


def _clip_arrays(clip: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(clip, "frames") and hasattr(clip, "params"):  # a Video
        return np.asarray(clip.frames), np.asarray(clip.params)
    if hasattr(clip, "frames") and hasattr(clip, "joints"):  # a Human3.6M clip
        return np.asarray(clip.frames), np.asarray(clip.joints)
    frames, joints = clip
    return np.asarray(frames), np.asarray(joints)


def h36m_protocol(pipe: Any, clips: Iterable[Any], observed: int = 10, long_horizon: int = 120,
                  pose_predictor: Predictor | None = None, structure: Structure | None = None,
                  progress: bool = False) -> dict[str, Any]:
    """Human3.6M protocol of Table 6 (PSNR-Next, PSNR-120) and Fig. 9 (PSNR per motion decile).

    `clips`: (frames (T, S, S, 3) uint8, joints (T, J, 3) in those pixels) pairs or objects with `frames`
    and `joints` (e.g. `H36MClip`), consumed one at a time. Conditions are the ground-truth poses, or the
    poses forecast by `pose_predictor` ("lstm"). See the module docstring for what is compared.

    Returns ``{"protocol": "human36m", "condition": "gt" | "lstm", "observed", "long_horizon",
    "psnr_next", "psnr_120", "mse_120", "num_clips", "excluded", "short_clips", "generated_frames":
    {"min", "mean", "max"}, "per_frame": {"psnr": [...]} (mean over the clips reaching each frame),
    "deciles": [{"decile" (0 = least motion), "num_clips", "psnr", "psnr_next", "motion_min",
    "motion_max"}] * 10, "per_clip": [{"index", "frames", "motion", "decile", "psnr_next", "psnr"}]}``.
    """
    if observed < 1 or long_horizon < 1:
        raise UserError(f"need observed >= 1 and long_horizon >= 1, got {observed}, {long_horizon}")
    struct = _structure(pipe, structure)
    size = int(pipe.size)
    per_clip: list[dict[str, Any]] = []
    sums, counts = np.zeros(long_horizon), np.zeros(long_horizon, np.int64)
    excluded = 0
    for index, clip in enumerate(tqdm(clips, desc="h36m protocol", unit="clip", disable=not progress)):
        frames, joints = _clip_arrays(clip)
        if frames.ndim != 4 or frames.shape[1:] != (size, size, 3):
            raise UserError(f"clip {index}: frames must be (T, {size}, {size}, 3) (cropped to the model size), "
                            f"got {frames.shape}")
        if joints.ndim == 3 and joints.shape[1] != struct.channels and joints.shape[1] == 32 and struct.channels == 13:
            from structvid.data.human36m import to_penn13

            joints = to_penn13(joints)
        t = min(len(frames), len(joints))
        horizon = min(long_horizon, t - observed)
        if horizon < 1:
            excluded += 1
            continue
        cond = (joints[observed : observed + horizon] if pose_predictor is None
                else forecast_poses(pose_predictor, joints[:observed], horizon))
        pred = generate(pipe, struct, frames[observed - 1], joints[observed - 1], cond)
        scores = registry.compute(["psnr", "mse"], pred, frames[observed : observed + horizon])
        psnr = np.asarray(scores["psnr"]["per_frame"])
        sums[:horizon] += psnr
        counts[:horizon] += 1
        per_clip.append({"index": index, "frames": horizon, "motion": joint_motion(joints[: observed + horizon]),
                         "psnr_next": float(psnr[0]), "psnr": float(psnr.mean()), "mse": scores["mse"]["mean"]})
    if not per_clip:
        raise UserError(f"no clip has more than the {observed} observed frames ({excluded} given)")
    for entry, d in zip(per_clip, _deciles([e["motion"] for e in per_clip])):
        entry["decile"] = d
    deciles = []
    for d in range(10):
        members = [e for e in per_clip if e["decile"] == d]
        motions = [e["motion"] for e in members]
        deciles.append({"decile": d, "num_clips": len(members), "psnr": _mean(e["psnr"] for e in members),
                        "psnr_next": _mean(e["psnr_next"] for e in members),
                        "motion_min": min(motions, default=None), "motion_max": max(motions, default=None)})
    lengths = [e["frames"] for e in per_clip]
    reached = counts > 0
    return {
        "protocol": "human36m", "condition": "gt" if pose_predictor is None else "lstm", "observed": observed,
        "long_horizon": long_horizon, "psnr_next": _mean(e["psnr_next"] for e in per_clip),
        "psnr_120": _mean(e["psnr"] for e in per_clip), "mse_120": _mean(e["mse"] for e in per_clip),
        "num_clips": len(per_clip), "excluded": excluded,
        "short_clips": sum(n < long_horizon for n in lengths),
        "generated_frames": {"min": min(lengths), "mean": float(np.mean(lengths)), "max": max(lengths)},
        "per_frame": {"psnr": (sums[reached] / counts[reached]).tolist()},
        "deciles": deciles, "per_clip": per_clip,
    }


# ---------------------------------------------------------------- reports


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _markdown(result: Mapping[str, Any]) -> str:
    if result["protocol"] == "penn_action":
        conds = result["conditions"]
        lines = [f"# Penn Action video protocol (Table 7, Fig. 10): {result['num_videos']} videos of "
                 f"`{result['source']}`", "",
                 f"{result['frames']} generated frames per video; {result['excluded']} video(s) shorter than "
                 f"{result['min_frames']} frames excluded.", "",
                 "| conditions | videos | MSE | PSNR (dB) |", "|---|---|---|---|"]
        lines += [f"| {c.upper()} | {r['num_videos']} | {_fmt(r['mse'])} | {_fmt(r['psnr'], 2)} |"
                  for c, r in conds.items()]
        actions = sorted({a for r in conds.values() for a in r["psnr_per_action"]})
        lines += ["", "PSNR (dB) per action (Fig. 10):", "",
                  "| action | " + " | ".join(c.upper() for c in conds) + " |", "|---|" + "---|" * len(conds)]
        lines += [f"| {a} | " + " | ".join(_fmt(r["psnr_per_action"].get(a), 2) for r in conds.values()) + " |"
                  for a in actions]
        return "\n".join(lines) + "\n"
    g = result["generated_frames"]
    lines = [f"# Human3.6M video protocol (Table 6, Fig. 9): {result['num_clips']} clips, "
             f"{result['condition'].upper()} conditions", "",
             f"{result['observed']} observed frames; {result['excluded']} clip(s) excluded (too short); "
             f"{result['short_clips']} clip(s) with fewer than {result['long_horizon']} generated frames "
             f"(min {g['min']}, mean {g['mean']:.1f}, max {g['max']}).", "",
             f"| PSNR-Next (dB) | PSNR-{result['long_horizon']} (dB) |", "|---|---|",
             f"| {_fmt(result['psnr_next'], 2)} | {_fmt(result['psnr_120'], 2)} |", "",
             "PSNR per motion decile (Fig. 9; 1st = least motion):", "",
             "| decile | clips | motion (px/frame) | PSNR (dB) |", "|---|---|---|---|"]
    for d in result["deciles"]:
        motion = "—" if d["motion_min"] is None else f"{d['motion_min']:.2f}–{d['motion_max']:.2f}"
        lines.append(f"| {d['decile'] + 1} | {d['num_clips']} | {motion} | {_fmt(d['psnr'], 2)} |")
    return "\n".join(lines) + "\n"


def _plot(result: Mapping[str, Any], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    if result["protocol"] == "penn_action":
        conds = result["conditions"]
        for c, r in conds.items():
            curve = r["per_frame"]["psnr"]
            left.plot(range(1, len(curve) + 1), curve, label=c.upper())
        actions = sorted({a for r in conds.values() for a in r["psnr_per_action"]})
        width = 0.8 / max(len(conds), 1)
        for i, (c, r) in enumerate(conds.items()):
            vals = [r["psnr_per_action"].get(a) or 0.0 for a in actions]
            right.bar(np.arange(len(actions)) + i * width, vals, width, label=c.upper())
        right.set_xticks(np.arange(len(actions)) + width * (len(conds) - 1) / 2, actions, rotation=45, ha="right",
                         fontsize=7)
        right.set_title("PSNR per action (Fig. 10)")
        right.legend(fontsize=7)
    else:
        curve = result["per_frame"]["psnr"]
        left.plot(range(1, len(curve) + 1), curve, label=result["condition"].upper())
        dec = result["deciles"]
        right.bar([d["decile"] + 1 for d in dec], [d["psnr"] or 0.0 for d in dec])
        right.set_xticks(range(1, 11))
        right.set_xlabel("motion decile (1 = least motion)")
        right.set_title("PSNR per motion decile (Fig. 9)")
    left.set_xlabel("generated frame")
    left.set_ylabel("PSNR (dB)")
    left.set_title("PSNR per generated frame")
    left.legend(fontsize=7)
    right.set_ylabel("PSNR (dB)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def write_protocol_report(result: Mapping[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write OUT/{protocol}.json, .md (tables) and .png (PSNR per frame and per action / decile), each
    atomically; returns their paths by kind ("json", "md", "png")."""
    out_dir = Path(out_dir)
    stem = out_dir / str(result["protocol"])
    paths = {"json": stem.with_suffix(".json"), "md": stem.with_suffix(".md"), "png": stem.with_suffix(".png")}
    atomic_write_text(paths["json"], json.dumps(result, indent=2) + "\n")
    atomic_write_text(paths["md"], _markdown(result))
    _plot(result, paths["png"])
    return paths
