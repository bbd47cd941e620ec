"""Pose-forecasting loss of the LSTM pose predictor (§4, Eq. 5)."""

from __future__ import annotations

import torch

from structvid.config import POSE_LOSSES

__all__ = ["pose_loss", "POSE_LOSSES"]


def pose_loss(pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, kind: str = "squared",
              reference: torch.Tensor | None = None, per_window: bool = False,
              floor: float = 0.25) -> torch.Tensor:
    """Eq. 5: mean over visible (sample, step, joint) triples of the squared L2 joint error.

    ``pred``/``target`` are (N, K, J, 2), ``visible`` (N, K, J) bool. Eq. 5 averages
    ||y^l_{t+k} - x^l_{t+k}||² over all K·L joints; Penn Action marks occluded/out-of-frame joints
    invisible and their stored positions are unreliable, so only visible joints are counted (their
    error is summed and divided by the number of visible joints in the whole batch). Invisible joints
    contribute nothing, not even to the gradient; a batch with no visible joint gives 0 (no NaN).

    ``kind="l2"`` averages the unsquared distance ||y - x|| instead (our option, not the paper's): it is
    the quantity the §7.3 protocol reports, and it lets the long, uncertain horizons (whose squared
    errors are tens of times those of the first steps) dominate the objective less.

    With ``reference`` (N, J, 2), the last observed poses (our option, ``train.step_weights: relative``),
    each step's summed error is divided by the summed error, over the same visible joints, of the
    zero-velocity forecast (the reference held still), and the K ratios are averaged: every horizon then
    counts by how far it is below zero velocity, so the first steps (errors ~15x smaller than at step 32)
    are not drowned out. Steps with no visible joint, or where zero velocity is exact, are left out.

    With ``per_window`` as well (``train.step_weights: window``, our option) the ratio is taken per window
    and step: err[i, k] / max(still[i, k], floor · mean_i still[i, k]) over windows with a visible joint at
    step k, all ratios averaged. A window whose person barely moves (jump rope: skipping in place) then counts
    as much as a pitch by how far it is below zero velocity, instead of by its tiny absolute error; the floor
    (a fraction of the batch's mean zero-velocity error at that step) keeps a window that stands still from
    dividing by ~0.
    """
    if kind not in POSE_LOSSES:
        raise ValueError(f"unknown pose loss {kind!r}; known: {POSE_LOSSES}")
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[-1] != 2:
        raise ValueError(f"pred and target must both be (N, K, J, 2), got {tuple(pred.shape)} and {tuple(target.shape)}")
    if visible.shape != pred.shape[:-1]:
        raise ValueError(f"visible must be {tuple(pred.shape[:-1])}, got {tuple(visible.shape)}")
    mask = visible.to(torch.bool)
    err = _joint_errors(pred, target, mask, kind)  # (N, K, J), 0 at invisible joints
    if reference is None:
        return err.sum() / mask.sum().clamp(min=1)
    if reference.shape != (pred.shape[0], pred.shape[2], 2):
        raise ValueError(f"reference must be (N, J, 2) = {(pred.shape[0], pred.shape[2], 2)}, got {tuple(reference.shape)}")
    with torch.no_grad():
        still = _joint_errors(reference[:, None].expand_as(pred).to(pred.dtype), target, mask, kind).sum(2)  # (N, K)
    if per_window:
        counted = mask.any(2)  # (N, K): windows with a visible joint at step k
        with torch.no_grad():
            mean = still.sum(0) / counted.sum(0).clamp(min=1)  # (K,)
            denom = torch.maximum(still, floor * mean[None])
            keep = counted & (denom > 0)
        if not keep.any():
            return err.sum() * 0.0
        return (err.sum(2)[keep] / denom[keep]).mean()
    still = still.sum(0)
    keep = still > 0  # (K,): a step with no visible joint sums to 0 for both
    if not keep.any():
        return err.sum() * 0.0
    return (err.sum((0, 2))[keep] / still[keep]).mean()


def _joint_errors(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
    # where() on the difference (not a product, nor after squaring) so that NaN/inf stored at invisible
    # joints reaches neither the value nor the gradient
    diff = torch.where(mask[..., None], pred - target, torch.zeros((), dtype=pred.dtype, device=pred.device))
    sq = diff.pow(2).sum(-1)  # (N, K, J)
    if kind == "l2":  # the epsilon keeps the gradient of sqrt finite at zero error (and at masked joints)
        sq = torch.where(mask, (sq + 1e-12).sqrt(), torch.zeros((), dtype=sq.dtype, device=sq.device))
    return sq
