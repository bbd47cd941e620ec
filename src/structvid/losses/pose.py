"""Pose-forecasting loss of the LSTM pose predictor (§4, Eq. 5)."""

from __future__ import annotations

import torch

from structvid.config import POSE_LOSSES

__all__ = ["pose_loss", "POSE_LOSSES"]


def pose_loss(pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor, kind: str = "squared") -> torch.Tensor:
    """Eq. 5: mean over visible (sample, step, joint) triples of the squared L2 joint error.

    ``pred``/``target`` are (N, K, J, 2), ``visible`` (N, K, J) bool. Eq. 5 averages
    ||y^l_{t+k} - x^l_{t+k}||² over all K·L joints; Penn Action marks occluded/out-of-frame joints
    invisible and their stored positions are unreliable, so only visible joints are counted (their
    error is summed and divided by the number of visible joints in the whole batch). Invisible joints
    contribute nothing, not even to the gradient; a batch with no visible joint gives 0 (no NaN).

    ``kind="l2"`` averages the unsquared distance ||y - x|| instead (our option, not the paper's): it is
    the quantity the §7.3 protocol reports, and it lets the long, uncertain horizons (whose squared
    errors are tens of times those of the first steps) dominate the objective less.
    """
    if kind not in POSE_LOSSES:
        raise ValueError(f"unknown pose loss {kind!r}; known: {POSE_LOSSES}")
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[-1] != 2:
        raise ValueError(f"pred and target must both be (N, K, J, 2), got {tuple(pred.shape)} and {tuple(target.shape)}")
    if visible.shape != pred.shape[:-1]:
        raise ValueError(f"visible must be {tuple(pred.shape[:-1])}, got {tuple(visible.shape)}")
    mask = visible.to(torch.bool)
    # where() on the difference (not a product, nor after squaring) so that NaN/inf stored at invisible
    # joints reaches neither the value nor the gradient
    diff = torch.where(mask[..., None], pred - target, torch.zeros((), dtype=pred.dtype, device=pred.device))
    sq = diff.pow(2).sum(-1)  # (N, K, J)
    if kind == "l2":  # the epsilon keeps the gradient of sqrt finite at zero error (and at masked joints)
        sq = torch.where(mask, (sq + 1e-12).sqrt(), torch.zeros((), dtype=sq.dtype, device=sq.device))
    return sq.sum() / mask.sum().clamp(min=1)
