"""Training windows for the pose LSTM (G_C for bodies, §4 Eq. 3-5).

A window is T_obs observed poses followed by K future poses of one Penn Action sequence (§7.1: observe 10,
predict 32), normalised and filled exactly as the model does at inference (structure/pose_norm.py).

Typical use with a `PoseExperimentConfig` ``cfg``::

    ds = PennActionDataset(cfg.data.root, actions=cfg.data.actions or PAPER_ACTIONS, split=cfg.data.split)
    train, val = split_sequences(ds.names, cfg.data.val_fraction, cfg.train.seed)
    windows = PoseWindows.from_dataset(ds, train, observed=cfg.model.observed, horizon=cfg.model.horizon,
                                       stride=cfg.data.stride, invisible=cfg.model.invisible)
    batch = next(iter(DataLoader(windows, batch_size=cfg.train.batch_size, shuffle=True)))
    loss = pose_loss(model(batch["observed"], cfg.model.horizon), batch["target"], batch["visible"])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from structvid.errors import UserError
from structvid.structure.pose_norm import INVISIBLE_INPUTS, check_joints, prepare_observed

if TYPE_CHECKING:
    from structvid.data.penn_action import PennActionDataset, PennSequence

__all__ = [
    "PoseWindows",
    "split_sequences",
    "select_actions",
]

class PoseWindows(Dataset):
    """Windows of `observed` + `horizon` consecutive poses, one starting every `stride` frames (from frame 0
    up to frame `max_start` when it is given; None: anywhere the window fits).

    Each item is a dict of tensors:

    * ``observed`` (T_obs, J, 2) float32 normalised coords, prepared by `prepare_observed` (`invisible`);
    * ``target`` (K, J, 2) float32 normalised with the same PoseNorm (invisible joints as stored, or 0
      where the stored value is not finite);
    * ``visible`` (K, J) bool: the joints Eq. 5 is computed over (see `structvid.losses.pose.pose_loss`);
    * ``observed_visible`` (T_obs, J) bool;
    * ``center`` (2,) and ``scale`` () float64: the PoseNorm, for `denormalize`.

    Sequences shorter than `observed + horizon` frames give no window; their names are listed in
    ``.skipped`` (in input order) so callers can report how many were dropped. With `min_horizon` < `horizon`
    a window may instead start wherever `observed + min_horizon` frames remain: its steps past the end of
    the sequence are marked invisible (Eq. 5 then skips them), so short sequences train on shorter
    horizons; their names are in ``.partial``. A sequence with NaN or malformed joints raises UserError
    naming it.
    """

    def __init__(
        self,
        sequences: Iterable["PennSequence"],
        observed: int = 10,
        horizon: int = 32,
        stride: int = 1,
        num_joints: int = 13,
        invisible: str = "stored",
        max_start: int | None = None,
        min_horizon: int | None = None,
    ) -> None:
        if invisible not in INVISIBLE_INPUTS:
            raise UserError(f"invisible must be one of {INVISIBLE_INPUTS}, got {invisible!r}")
        if observed < 1 or horizon < 1 or stride < 1:
            raise ValueError(f"observed, horizon and stride must be >= 1, got {observed}, {horizon}, {stride}")
        if max_start is not None and max_start < 0:
            raise ValueError(f"max_start must be >= 0 or None, got {max_start}")
        min_horizon = horizon if min_horizon is None else min_horizon
        if not 1 <= min_horizon <= horizon:
            raise ValueError(f"min_horizon must be in 1..horizon ({horizon}) or None, got {min_horizon}")
        self.observed, self.horizon, self.stride, self.invisible = observed, horizon, stride, invisible
        self.names: list[str] = []
        self.skipped: list[str] = []
        self.partial: list[str] = []  # sequences shorter than observed + horizon, trained on shorter horizons
        self._joints: list[np.ndarray] = []
        self._index: list[tuple[int, int]] = []
        span = observed + horizon
        for seq in sequences:
            joints = check_joints(seq.joints, num_joints, source=seq.name).astype(np.float32)
            last_start = len(joints) - observed - min_horizon
            if last_start < 0:
                self.skipped.append(seq.name)
                continue
            if max_start is not None:
                last_start = min(last_start, max_start)
            if len(joints) < span:
                self.partial.append(seq.name)
            if len(joints) < last_start + span:  # pad with invisible copies of the last pose
                pad = np.repeat(joints[-1:], last_start + span - len(joints), 0)
                pad[..., 2] = 0
                joints = np.concatenate([joints, pad])
            i = len(self._joints)
            self.names.append(seq.name)
            self._joints.append(joints)
            self._index.extend((i, s) for s in range(0, last_start + 1, stride))

    @classmethod
    def from_dataset(
        cls, dataset: "PennActionDataset", names: Sequence[str] | None = None, **kwargs: Any
    ) -> "PoseWindows":
        """Windows over `names` (default: all) of a PennActionDataset; kwargs as for the constructor."""
        return cls((dataset.label(n) for n in (dataset.names if names is None else names)), **kwargs)

    def __len__(self) -> int:
        return len(self._index)

    def window_names(self) -> list[str]:
        """The sequence name of every window, in window order."""
        return [self.names[i] for i, _ in self._index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.window(index)

    def window(self, index: int, speed: float = 1.0) -> dict[str, torch.Tensor]:
        """Item `index` (see the class docstring), played at `speed` (augmentation; 1.0 = as recorded).

        At speed s the window samples its sequence at times start + s·i, i = 0..T_obs+K-1, interpolating
        coordinates linearly; a resampled joint is visible where both frames it lies between are (or
        the frame it falls on is). A faster window that would run past the end starts earlier, and one
        that cannot fit at all plays at the fastest speed that fits.
        """
        i, start = self._index[index]
        joints, span = self._joints[i], self.observed + self.horizon
        if speed == 1.0:
            window = joints[start : start + span].astype(np.float64)
        else:
            last = len(joints) - 1
            speed = min(speed, last / (span - 1)) if span > 1 else speed
            start = min(float(start), last - speed * (span - 1))
            t = np.clip(start + speed * np.arange(span), 0, last)
            i0 = np.floor(t).astype(int)
            i1, f = np.minimum(i0 + 1, last), (t - i0)[:, None, None]
            a, b = joints[i0].astype(np.float64), joints[i1].astype(np.float64)
            xy = np.where(f == 0, a[..., :2], (1 - f) * a[..., :2] + f * b[..., :2])
            vis = (a[..., 2] > 0) & ((b[..., 2] > 0) | (f[..., 0] == 0))
            window = np.concatenate([xy, vis[..., None].astype(np.float64)], -1)
        obs, fut = window[: self.observed], window[self.observed :]
        observed, norm = prepare_observed(obs, self.invisible)
        target = np.nan_to_num(norm.apply(fut[..., :2]), nan=0.0, posinf=0.0, neginf=0.0)  # invisible only
        return {
            "observed": torch.from_numpy(observed.astype(np.float32)),
            "target": torch.from_numpy(target.astype(np.float32)),
            "visible": torch.from_numpy(fut[..., 2] > 0),
            "observed_visible": torch.from_numpy(obs[..., 2] > 0),
            "center": torch.from_numpy(norm.center),
            "scale": torch.tensor(float(norm.scale)),
        }


# ---------------------------------------------------------------- splits


def split_sequences(names: Iterable[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Deterministic held-out split -> (train, val), both sorted.

    The names are sorted, shuffled with `numpy.random.default_rng(seed)`, and round(val_fraction * n)
    of them (at least one when val_fraction > 0 and n >= 2) go to val. The result depends only on the
    set of names, the fraction and the seed.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"val_fraction must be in [0, 1), got {val_fraction}")
    pool = sorted(set(names))
    n_val = round(val_fraction * len(pool))
    if val_fraction > 0 and n_val == 0 and len(pool) >= 2:
        n_val = 1
    order = np.random.default_rng(seed).permutation(len(pool))
    val = {pool[i] for i in order[:n_val]}
    return [n for n in pool if n not in val], sorted(val)


def select_actions(
    data: "PennActionDataset | Iterable[PennSequence]", actions: Sequence[str] | None = None
) -> list[Any]:
    """Keep only sequences of `actions` (default/empty: the paper's 8, §7.1; ["all"]: all 15).

    `data` is a PennActionDataset (returns the matching names) or an iterable of PennSequence (returns the
    matching sequences). An unknown action name raises UserError.
    """
    from structvid.structure.skeleton import PAPER_ACTIONS, PENN_ACTIONS

    wanted = list(actions) if actions else list(PAPER_ACTIONS)
    if wanted == ["all"]:
        wanted = list(PENN_ACTIONS)
    unknown = sorted(set(wanted) - set(PENN_ACTIONS))
    if unknown:
        raise UserError(f"unknown Penn Action action(s) {unknown}; known: {list(PENN_ACTIONS)}")
    keep = set(wanted)
    if hasattr(data, "label") and hasattr(data, "names"):
        return [n for n in data.names if data.label(n).action in keep]  # type: ignore[union-attr]
    return [s for s in data if s.action in keep]
