"""Losses of the motion forecasting stage G_M (§5.2, Eq. 9-14). The loss object owns the GAN phases."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from structvid.config import LossConfig
from structvid.losses.features import FeatureLoss, build_feature_loss
from structvid.losses.phases import Phase, unwrap
from structvid.losses.wgan_gp import (
    critic_loss,
    generator_adversarial_loss,
    gradient_penalty_from_scores,
    interpolate,
)

Batch = dict[str, Tensor]


class ForecastLoss:
    """Eq. 9 for G_M and Eq. 13-14 for the conditional image critic D_I.

    The training loop only schedules `phases` and steps optimizers; everything about what a phase
    computes lives here. Batches hold image_t, motion_t, image_tk, motion_tk (N, C, H, W), images in [-1, 1],
    and (for the §7.3 feature loss) joints_tk (N, J, 3) [x, y, visibility] in pixels.

    `features` is ℓ_feat of Eq. 21 (§7.3); when None and `weights.feat > 0` it is built from `weights`
    (`build_feature_loss`), so pass one explicitly only to add extractors (e.g. an hourglass as C_2).
    """

    def __init__(self, generator: nn.Module, critic: nn.Module, weights: LossConfig, critic_steps: int = 5,
                 features: FeatureLoss | None = None) -> None:
        self.generator = generator
        self.critic = critic
        self.w = weights
        self.features = features if features is not None else build_feature_loss(weights)
        # With ℓ_gen switched off (weight 0) the critic has no influence, so its phase is skipped.
        adversarial = weights.gen > 0
        self.phases: tuple[Phase, ...] = (
            (Phase("critic", "critic", critic_steps),) if adversarial else ()
        ) + (Phase("generator", "generator", 1),)
        self.grad_scale: Callable[[], float] = lambda: 1.0  # set by the loop under fp16 GradScaler

    def run(self, phase: str, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        if phase == "critic":
            return self.critic_phase(batch)
        if phase == "generator":
            return self.generator_phase(batch)
        raise KeyError(phase)

    def critic_phase(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Eq. 13: D(fake) − D(real) + λ·ℓ_gp, one critic forward over [real; fake; interpolated]."""
        real, motion = batch["image_tk"], batch["motion_tk"]
        with torch.no_grad():
            fake = self.generator(batch["image_t"], batch["motion_t"], motion).frame
        n = real.shape[0]
        # Eq. 14: interpolate the image, keep the motion condition; the gradient is taken w.r.t. both.
        mixed = interpolate(real, fake.to(real.dtype)).requires_grad_(True)
        motion_gp = motion.detach().clone().requires_grad_(True)
        # One forward (not three) so DDP sees a single forward per backward.
        scores = self.critic(
            torch.cat([real, fake.to(real.dtype), mixed]), torch.cat([motion, motion, motion_gp])
        ).float()  # (3N,)
        real_s, fake_s, mixed_s = scores[:n], scores[n : 2 * n], scores[2 * n :]
        gp = gradient_penalty_from_scores(mixed_s, [mixed, motion_gp], self.grad_scale())
        wdist = real_s.mean() - fake_s.mean()
        loss = critic_loss(fake_s, real_s) + self.w.gp_lambda * gp
        return loss, {"critic/loss": loss.item(), "critic/gp": gp.item(), "critic/wasserstein": wdist.item()}

    def generator_phase(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Eq. 9: ℓ_rec (Eq. 10) + ℓ_r (Eq. 11) + ℓ_gen (Eq. 12), each with its configured weight, plus
        ℓ_feat (Eq. 21, §7.3) when `weights.feat > 0`.

        Both L1 norms are taken over channels and averaged over pixels and the batch, i.e. the paper's
        ‖·‖₁ divided by N·H·W: weights keep the paper's ratio between Eq. 10 (3 channels) and Eq. 11
        (1 channel) and do not depend on resolution or batch size.
        """
        out = self.generator(batch["image_t"], batch["motion_t"], batch["motion_tk"])
        rec = (out.frame.float() - batch["image_tk"].float()).abs().sum(1).mean()
        loss = self.w.rec * rec
        stats = {"generator/rec_l1": rec.item()}
        if out.mask is not None:
            sparsity = out.mask.float().abs().sum(1).mean()
            loss = loss + self.w.sparsity * sparsity
            stats["generator/mask_l1"] = sparsity.item()
        if self.w.gen > 0:
            # D_I is used bare (not through DDP): its parameters are frozen in this phase.
            gen = generator_adversarial_loss(unwrap(self.critic)(out.frame, batch["motion_tk"]).float())
            loss = loss + self.w.gen * gen
            stats["generator/adv"] = gen.item()
        if self.features is not None and self.w.feat > 0:
            # §7.3: person crops from the ground-truth joints of frame t+k, for both I_{t+k} and Ĩ_{t+k}.
            feat = self.features(batch["image_tk"], out.frame, batch["joints_tk"])
            loss = loss + self.w.feat * feat
            stats["generator/feat"] = feat.item()
        stats["generator/loss"] = loss.item()
        return loss, stats
