"""Sequence-to-sequence pose LSTM: the motion condition generator G_C for human bodies (§4, Eq. 3-5).

Following Villegas et al. (2017b) the pose of a frame is its J joints' 2D coordinates, flattened to a
2J vector (normalised per window, see `structvid.structure.pose_norm`).

* Encoder (Eq. 3): a `num_layers`-deep LSTM reads the T_obs observed poses x_1..x_T.
* Decoder: a second LSTM of the same shape, started from the encoder's final (h, c), is unrolled for K
  steps; any K works at inference. Its input at each step is its own previous prediction
  (autoregressive; the first step gets the last observed pose x_T). The paper does not say whether the
  decoder is teacher-forced; feeding predictions makes training and inference identical.
* Output (Eq. 4): y = f(wᵀh), w a learnable linear map (with bias) from the top hidden state to 2J
  coordinates, f the identity (normalised coordinates are unbounded; the paper leaves f open).
  With ``cfg.residual`` (our choice where the paper is silent) the projection is a displacement added
  to the previous pose, y_k = y_{k-1} + wᵀh_k, so an untrained model starts as the zero-velocity baseline.
* With ``cfg.velocity_input`` each step's input is [x_t, x_t − x_{t−1}] instead of x_t alone: the
  current velocity is then given rather than learned by differencing (our choice; the paper feeds poses).
* With ``cfg.mirror_average`` an eval-mode forward returns the mean of the forecast and the mirrored
  forecast of the mirror image (test-time augmentation, not in the paper). Training, which mirrors half
  the windows, is unchanged; the two forecasts differ because a trained model is not exactly
  mirror-symmetric, and their mean has lower variance (TRAINING.md: 0.148 -> 0.142 at h=32).
* With ``cfg.zero_velocity_blend`` = b an eval-mode forecast is x_T + (1 − b)(y_k − x_T): every step
  moved the fraction b back towards the last observed pose (shrinkage towards the zero-velocity
  baseline, not in the paper). An L2-trained forecaster that has fit its ~430 training sequences moves
  too far on unseen ones (held-out error at h=32 falls when its displacement is scaled down); b is
  chosen on training-split sequences held out of a second model's training (TRAINING.md), never on the
  part it is evaluated on. Training is unchanged.

A training step is ``pose_loss(model(batch["observed"], K), batch["target"], batch["visible"])``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from structvid.config import PoseLSTMConfig
from structvid.structure.pose_norm import INVISIBLE_INPUTS, check_joints, fill_invisible, prepare_observed
from structvid.structure.skeleton import NUM_JOINTS, mirror_joints
from structvid.errors import UserError

__all__ = ["PoseLSTM", "pose_lstm_predictor", "forecast_poses"]


class PoseLSTM(nn.Module):
    """G_C for bodies: ``forward(observed (N, T_obs, J, 2), horizon K) -> (N, K, J, 2)``, all normalised."""

    def __init__(self, cfg: PoseLSTMConfig) -> None:
        super().__init__()
        if cfg.num_joints < 1 or cfg.hidden_size < 1 or cfg.num_layers < 1 or cfg.observed < 1:
            raise UserError(f"invalid pose LSTM config {cfg}")
        if cfg.invisible not in INVISIBLE_INPUTS:
            raise UserError(f"pose LSTM config: invisible must be one of {INVISIBLE_INPUTS}, got {cfg.invisible!r}")
        if not 0.0 <= cfg.zero_velocity_blend <= 1.0:
            raise UserError(f"pose LSTM config: zero_velocity_blend must be in [0, 1], got {cfg.zero_velocity_blend}")
        if cfg.mirror_average and cfg.num_joints != NUM_JOINTS:
            raise UserError(f"pose LSTM config: mirror_average needs the {NUM_JOINTS}-joint Penn Action skeleton, "
                            f"got num_joints={cfg.num_joints}")
        self.config = cfg
        dim = 2 * cfg.num_joints
        in_dim = 2 * dim if cfg.velocity_input else dim
        drop = cfg.dropout if cfg.num_layers > 1 else 0.0
        self.encoder = nn.LSTM(in_dim, cfg.hidden_size, cfg.num_layers, batch_first=True, dropout=drop)  # Eq. 3
        self.decoder = nn.LSTM(in_dim, cfg.hidden_size, cfg.num_layers, batch_first=True, dropout=drop)
        self.project = nn.Linear(cfg.hidden_size, dim)  # w of Eq. 4
        if cfg.residual:  # start from zero displacement: an untrained model is the zero-velocity baseline
            nn.init.zeros_(self.project.weight)
            nn.init.zeros_(self.project.bias)

    def forward(self, observed: torch.Tensor, horizon: int) -> torch.Tensor:
        """Predict `horizon` future poses from (N, T, J, 2) observed ones (the last T_obs are used).

        Fewer than T_obs observed poses, a wrong joint count or NaN/inf inputs raise UserError.
        """
        cfg = self.config
        if observed.ndim != 4 or observed.shape[-1] != 2:
            raise UserError(f"observed poses must have shape (N, T, J, 2), got {tuple(observed.shape)}")
        n, t, j, _ = observed.shape
        if j != cfg.num_joints:
            raise UserError(f"expected {cfg.num_joints} joints per pose, got {j}")
        if t < cfg.observed:
            raise UserError(f"the pose LSTM observes {cfg.observed} poses, got {t}")
        if horizon < 1:
            raise UserError(f"horizon must be >= 1, got {horizon}")
        if not torch.isfinite(observed).all():
            raise UserError("observed poses contain NaN or infinite values")
        if self.training:
            return self._forecast(observed, horizon)
        if cfg.mirror_average:
            both = self._forecast(torch.cat([observed, mirror_joints(observed)]), horizon)
            out = 0.5 * (both[:n] + mirror_joints(both[n:]))
        else:
            out = self._forecast(observed, horizon)
        if cfg.zero_velocity_blend:
            last = observed[:, -1:]
            out = last + (1.0 - cfg.zero_velocity_blend) * (out - last)
        return out

    def _forecast(self, observed: torch.Tensor, horizon: int) -> torch.Tensor:
        cfg = self.config
        n, _, j, _ = observed.shape
        x = observed[:, -cfg.observed :].reshape(n, cfg.observed, 2 * j)  # (N, T_obs, 2J)
        if cfg.velocity_input:
            vel = torch.cat([torch.zeros_like(x[:, :1]), x[:, 1:] - x[:, :-1]], 1)  # (N, T_obs, 2J)
            _, state = self.encoder(torch.cat([x, vel], -1))
        else:
            _, state = self.encoder(x)
        prev, before, out = x[:, -1], x[:, -2] if cfg.observed > 1 else x[:, -1], []
        for _ in range(horizon):
            step = torch.cat([prev, prev - before], -1) if cfg.velocity_input else prev  # (N, in_dim)
            h, state = self.decoder(step[:, None], state)
            y = self.project(h[:, 0])  # Eq. 4, f = identity
            before, prev = prev, (prev + y if cfg.residual else y)
            out.append(prev)
        return torch.stack(out, 1).reshape(n, horizon, j, 2)


def pose_lstm_predictor(
    model: PoseLSTM, device: str | torch.device | None = None, batch_size: int = 256
) -> Callable[[np.ndarray, int], np.ndarray]:
    """Wrap `model` as a pixel-space predictor for `structvid.metrics.pose.evaluate_pose_protocol`.

    The returned callable maps observed (N, T_obs, J, 3) [x, y, vis] pixels and K to (N, K, J, 2)
    pixels, applying exactly the training-time preparation of `PoseWindows` (`prepare_observed`: fill
    invisible joints as ``model.config.invisible`` says, normalise by the observed poses' box) and its
    inverse. Runs in eval mode without gradients.
    """
    dev = torch.device(device) if device is not None else next(model.parameters()).device

    def predict(observed: np.ndarray, horizon: int) -> np.ndarray:
        obs = check_joints(observed, model.config.num_joints, model.config.observed).astype(np.float64)
        coords, norm = prepare_observed(obs, model.config.invisible)
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = [
                    model(torch.from_numpy(c).float().to(dev), horizon).double().cpu().numpy()
                    for c in np.array_split(coords, max(1, -(-len(coords) // batch_size)))
                    if len(c)
                ]
        finally:
            model.train(was_training)
        return norm.invert(np.concatenate(out))

    return predict


def forecast_poses(predictor: Callable[[np.ndarray, int], Any], observed: np.ndarray, horizon: int) -> np.ndarray:
    """Run a pose predictor on one sequence: observed (T_obs, J, 3) -> (horizon, J, 3), visibility 1."""
    obs = np.asarray(observed, np.float64).copy()
    bad = ~np.isfinite(obs[..., :2])
    if bad.any():
        obs[..., :2][bad] = fill_invisible(obs)[bad]
    pred = predictor(obs[None], horizon)
    pred = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    want = (1, horizon, obs.shape[1])
    if pred.ndim != 4 or pred.shape[:3] != want or pred.shape[3] < 2 or not np.isfinite(pred[..., :2]).all():
        raise ValueError(f"pose predictor must return finite (1, {horizon}, {obs.shape[1]}, 2) poses, got {pred.shape}")
    return np.concatenate([pred[0, ..., :2], np.ones((horizon, obs.shape[1], 1))], -1).astype(np.float32)
