"""Pose-forecasting protocol on Penn Action (§7.1, §7.3): normalised joint error, PCK and baselines.

Protocol (`evaluate_pose_protocol`): for every sequence, the FIRST window is used: frames 1..10 are
observed and frames 11..42 forecast (observe 10, predict 32, §7.1). A predictor receives the observed
[x, y, visibility] pixels and returns pixel predictions. At each forecast step the error of a sequence is
the mean, over the joints VISIBLE in the ground-truth future frame, of the L2 distance between predicted
and true joint, divided by the diagonal of the annotated bounding box of the LAST OBSERVED frame (frame
10). The error at horizon h is the mean over sequences of their error at step h. Sequences shorter than
observed + horizon frames are excluded and counted.

Calibration: on the 642 official-training-split label files of the paper's 8 actions (483 evaluated,
159 excluded as shorter than 42 frames), zero velocity scores 0.1780 and constant velocity 0.3457 at
h = 32, the values quoted for this protocol (0.178 / 0.346). Dividing by the box's longer side instead
(0.193 / 0.376) or also requiring visibility in the observed frames (0.177 / 0.355) does not match.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import torch

from structvid.structure.pose_norm import check_joints, fill_invisible
from structvid.structure.skeleton import LIMBS
from structvid.errors import UserError
from structvid.io.files import atomic_path, atomic_write_text

if TYPE_CHECKING:
    from structvid.data.penn_action import PennSequence

__all__ = [
    "Predictor",
    "normalized_errors",
    "pck",
    "zero_velocity",
    "constant_velocity",
    "limb_ratios",
    "evaluate_pose_protocol",
    "write_pose_report",
]

#: observed (N, T_obs, J, 3) [x, y, vis] pixels, K -> (N, K, J, 2) pixels
Predictor = Callable[[np.ndarray, int], np.ndarray]

BASELINES = ("zero_velocity", "constant_velocity")


def _np(a: Any) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, np.float64)


def _distances(pred: Any, target: Any, visible: Any, ref_bbox: Any) -> tuple[np.ndarray, np.ndarray]:
    """(L2 distance / diagonal (N, K, J), visible mask (N, K, J))."""
    pred, target = _np(pred)[..., :2], _np(target)[..., :2]
    vis = np.asarray(visible.cpu() if isinstance(visible, torch.Tensor) else visible).astype(bool)
    box = _np(ref_bbox)
    if pred.shape != target.shape or pred.ndim != 4 or vis.shape != pred.shape[:-1] or box.shape != (len(pred), 4):
        raise ValueError(
            f"expected pred/target (N, K, J, 2), visible (N, K, J), ref_bbox (N, 4); got {pred.shape}, "
            f"{target.shape}, {vis.shape}, {box.shape}"
        )
    diag = np.hypot(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1])
    if not (diag > 0).all():
        raise ValueError(f"reference boxes must have a positive diagonal, got {diag[~(diag > 0)][:3]}")
    dist = np.linalg.norm(pred - target, axis=-1) / diag[:, None, None]
    return np.where(vis, dist, 0.0), vis


def normalized_errors(pred: Any, target: Any, visible: Any, ref_bbox: Any) -> np.ndarray:
    """(N, K) mean over visible joints of ||pred - target||₂ / diagonal of `ref_bbox` (§7.3).

    `pred`, `target` (N, K, J, 2) pixels; `visible` (N, K, J) ground-truth visibility; `ref_bbox` (N, 4)
    [x1, y1, x2, y2], the box of the last observed frame. A step with no visible joint is NaN.
    """
    dist, vis = _distances(pred, target, visible, ref_bbox)
    count = vis.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, dist.sum(-1) / count, np.nan)


def pck(pred: Any, target: Any, visible: Any, ref_bbox: Any, alpha: float = 0.2) -> np.ndarray:
    """(N, K) fraction of visible joints with ||pred - target||₂ <= alpha · diagonal of `ref_bbox`.

    The normaliser is the diagonal of the last observed frame's bounding box, as for `normalized_errors`
    (PCK@0.2 of that diagonal). A step with no visible joint is NaN.
    """
    dist, vis = _distances(pred, target, visible, ref_bbox)
    count = vis.sum(-1)
    hits = ((dist <= alpha) & vis).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, hits / count, np.nan)


def _steps(observed: Any, horizon: int) -> Any:
    if isinstance(observed, torch.Tensor):
        return torch.arange(1, horizon + 1, dtype=observed.dtype, device=observed.device)[None, :, None, None]
    return np.arange(1, horizon + 1, dtype=np.float64)[None, :, None, None]


def zero_velocity(observed: Any, horizon: int) -> Any:
    """Repeat the last observed pose: (N, T, J, 2|3) -> (N, K, J, 2) (numpy or torch, as given).

    Uses the stored coordinates of every joint, visible or not (as the calibrated protocol does).
    """
    last = observed[:, -1:, :, :2]
    return last.repeat(1, horizon, 1, 1) if isinstance(last, torch.Tensor) else np.repeat(last, horizon, axis=1)


def constant_velocity(observed: Any, horizon: int) -> Any:
    """Extrapolate the last two observed poses: y_{T+k} = x_T + k (x_T - x_{T-1}); (N, T>=2, J, 2|3)."""
    if observed.shape[1] < 2:
        raise UserError(f"constant velocity needs at least 2 observed poses, got {observed.shape[1]}")
    last, prev = observed[:, -1:, :, :2], observed[:, -2:-1, :, :2]
    return last + _steps(observed, horizon) * (last - prev)


def limb_ratios(poses: Any, observed: Any) -> np.ndarray:
    """(K, L): each `skeleton.LIMBS` bone's length in every pose of `poses` (K, J, 2|3) divided by its
    median length over the `observed` poses (T, J, 2|3), all in pixels.

    A forecast that stays a body keeps these near 1 (2D foreshortening changes them, but not by factors
    of several); a skeleton collapsing into a line drives the limbs across it towards 0. A bone of zero
    median observed length gives inf / NaN.
    """
    poses, observed = _np(poses)[..., :2], _np(observed)[..., :2]
    a, b = [i for i, _ in LIMBS], [j for _, j in LIMBS]
    length = np.linalg.norm(poses[:, a] - poses[:, b], axis=-1)
    ref = np.median(np.linalg.norm(observed[:, a] - observed[:, b], axis=-1), 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return length / ref


def _mean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None


def evaluate_pose_protocol(
    sequences: Sequence["PennSequence"],
    predictors: Mapping[str, Predictor] | None = None,
    observed: int = 10,
    horizon: int = 32,
    horizons: Sequence[int] = (1, 8, 16, 32),
) -> dict[str, Any]:
    """Run the §7.3 protocol (see the module docstring) for the two baselines and `predictors`.

    Returns ``{"horizons": [...], "methods": {name: {"overall": [err@h], "pck": [pck@h],
    "curve": [err at every step 1..K], "per_action": {action: [err@h]}}}, "excluded": n_short,
    "num_sequences": n_evaluated}``
    (JSON-ready; a value with no visible joint to average is None). "zero_velocity" and
    "constant_velocity" are always included, first; a predictor may not reuse those names.
    """
    horizons = [int(h) for h in horizons]
    if observed < 2 or horizon < 1 or not horizons or any(not 1 <= h <= horizon for h in horizons):
        raise UserError(f"need observed >= 2 and horizons within 1..{horizon}, got observed={observed}, horizons={horizons}")
    predictors = dict(predictors or {})
    clash = sorted(set(predictors) & set(BASELINES))
    if clash:
        raise ValueError(f"predictor names {clash} are reserved for the built-in baselines")
    span = observed + horizon
    used = [s for s in sequences if s.nframes >= span]
    if not used:
        raise UserError(f"no sequence has the {span} frames the protocol needs ({len(sequences)} given)")
    num_joints = np.asarray(used[0].joints).shape[1]
    windows = np.stack([check_joints(np.asarray(s.joints)[:span], num_joints, span, s.name) for s in used]).astype(np.float64)
    boxes = np.stack([np.asarray(s.bbox, np.float64)[observed - 1] for s in used])
    actions = np.array([s.action for s in used])
    obs, fut = windows[:, :observed].copy(), windows[:, observed:]
    # invisible joints may hold NaN (read_label allows it): hand predictors their last visible position
    bad = ~np.isfinite(obs[..., :2])
    obs[..., :2][bad] = fill_invisible(obs)[bad]
    visible = fut[..., 2] > 0

    methods: dict[str, Predictor] = {"zero_velocity": zero_velocity, "constant_velocity": constant_velocity}
    methods.update(predictors)
    idx = [h - 1 for h in horizons]
    out: dict[str, Any] = {}
    for name, fn in methods.items():
        pred = _np(fn(obs.copy(), horizon))
        if pred.shape != fut[..., :2].shape or not np.isfinite(pred).all():
            raise ValueError(f"predictor {name!r} must return finite (N, K, J, 2) = {fut[..., :2].shape}, got {pred.shape}")
        every = normalized_errors(pred, fut, visible, boxes)  # (N, K)
        err = every[:, idx]
        acc = pck(pred, fut, visible, boxes)[:, idx]
        out[name] = {
            "overall": [_mean(err[:, i]) for i in range(len(idx))],
            "curve": [_mean(every[:, k]) for k in range(horizon)],  # error at every step 1..K (the plot)
            "pck": [_mean(acc[:, i]) for i in range(len(idx))],
            "per_action": {a: [_mean(err[actions == a, i]) for i in range(len(idx))] for a in sorted(set(actions))},
        }
    return {"horizons": horizons, "methods": out, "excluded": len(sequences) - len(used), "num_sequences": len(used)}


def _fmt(v: float | None) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def write_pose_report(result: Mapping[str, Any], out_dir: str | Path) -> None:
    """Write poses.json, poses.md (tables) and poses_error.png (error vs horizon) to `out_dir`, atomically."""
    out = Path(out_dir)
    hs, methods = list(result["horizons"]), result["methods"]
    atomic_write_text(out / "poses.json", json.dumps(result, indent=2) + "\n")

    head = "| method | " + " | ".join(f"h={h}" for h in hs) + " |\n|---|" + "---:|" * len(hs) + "\n"
    lines = [
        "# Pose forecasting (§7.3 protocol)",
        "",
        f"{result['num_sequences']} sequences evaluated (first window: observe, then forecast), "
        f"{result['excluded']} excluded as too short. Error: mean L2 over visible joints / diagonal of the "
        "last observed frame's bounding box (lower is better). PCK@0.2 of the same diagonal (higher is better).",
        "",
        "## Normalised error",
        "",
        head + "\n".join(f"| {m} | " + " | ".join(_fmt(v) for v in r["overall"]) + " |" for m, r in methods.items()),
        "",
        "## PCK@0.2",
        "",
        head + "\n".join(f"| {m} | " + " | ".join(_fmt(v) for v in r["pck"]) + " |" for m, r in methods.items()),
        "",
        f"## Normalised error per action at h={hs[-1]}",
        "",
    ]
    actions = sorted({a for r in methods.values() for a in r["per_action"]})
    names = list(methods)
    lines.append("| action | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for a in actions:
        row = [_fmt(methods[m]["per_action"].get(a, [None] * len(hs))[-1]) for m in names]
        lines.append(f"| {a} | " + " | ".join(row) + " |")
    atomic_write_text(out / "poses.md", "\n".join(lines) + "\n")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for m, r in methods.items():
        ys = [np.nan if v is None else v for v in r["overall"]]
        line = ax.plot(hs, ys, marker="o", linestyle="none" if "curve" in r else "-", label=m)[0]
        if "curve" in r:  # every step, with the reported horizons marked
            ax.plot(range(1, len(r["curve"]) + 1), [np.nan if v is None else v for v in r["curve"]],
                    color=line.get_color())
    ax.set_xlabel("forecast horizon (frames)")
    ax.set_ylabel("error / bbox diagonal")
    ax.set_title("Pose forecasting error")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(out / "poses_error.png") as tmp:
        fig.savefig(tmp, format="png")
