"""Losses of the motion refining stage G_R (§6.2, Eq. 16-20). The loss object owns the GAN phases.

Batches (what a `refine_task` draws), clips as (N, K, C, H, W), images in [-1, 1]:

    video     V = [I_{t+1} .. I_{t+K}]   the real clip                       (N, K, C, H, W)
    motions   M = [M_{t+1} .. M_{t+K}]   its motion maps                     (N, K, J, H, W)
    coarse    Ṽ, G_M's clip (optional: given, e.g. another method's output to refine, §7.4)
    image_t, motion_t  I_t (N, C, H, W) and M_t (N, J, H, W): G_M's input when `coarse` is absent
    batch_id  optional integer scalar: batches with the same id hold the same clips

Without `coarse` the loss runs the frozen G_M (`forecaster.forecast`, no gradient) and keeps the last
clip it made under its `batch_id`: a dataset that hands the phases of one step the same clips under one
id (e.g. item i = the clips of step i // draws per step, id = that step) gets one G_M run per step, and
both phases see the same batch (§6.2's alternation on one batch). Without `batch_id`, G_M runs per call.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from structvid.config import RefineLossConfig
from structvid.losses.phases import Phase, unwrap
from structvid.losses.ranking import gram_matrix, ranking_loss
from structvid.losses.wgan_gp import (
    conditional_critic_terms,
    critic_loss,
    generator_adversarial_loss,
    gradient_penalty_from_scores,
    interpolate,
)

Batch = dict[str, Tensor]
REFINER, CRITICS = "refiner", "critics"  # module names the phases step


class RefineLoss:
    """Eq. 16-17 for G_R and Eq. 19-20 (D_V) with Eq. 13-14 (D_I) for the critics.

    Two phases per step (§6.2: "we update D_I and D_V in one step while fixing G_R; in the alternating
    step, we fix D_I and D_V while updating G_R"): `critics` (repeated `critic_steps` times, §6.2: once)
    then `refiner`. The task registers G_R as module "refiner" and both critics as one module "critics"
    (e.g. `nn.ModuleDict({"video": D_V, "image": D_I})`) with one Adam over both: Adam is per parameter,
    so this is the same update as two Adams with the same settings. `video_critic` and `image_critic`
    may be DDP-wrapped; each is called once per phase.
    """

    def __init__(self, refiner: nn.Module, video_critic: nn.Module, image_critic: nn.Module,
                 weights: RefineLossConfig, forecaster: nn.Module | None = None, critic_steps: int = 1) -> None:
        self.refiner = refiner
        self.video_critic = video_critic
        self.image_critic = image_critic
        self.w = weights
        self.forecaster = None if forecaster is None else forecaster.eval().requires_grad_(False)  # frozen G_M
        # D_V is trained while it has a say in G_R's loss: through Eq. 17 or through the ranking features.
        self.train_video = weights.gen_video > 0 or weights.rank > 0
        self.train_image = weights.gen_image > 0
        critics = self.train_video or self.train_image
        self.phases: tuple[Phase, ...] = (
            (Phase(CRITICS, CRITICS, critic_steps),) if critics else ()
        ) + (Phase(REFINER, REFINER, 1),)
        self.grad_scale: Callable[[], float] = lambda: 1.0  # set by the loop under fp16 GradScaler
        self._cached: tuple[int, Tensor] | None = None  # (batch_id, Ṽ)

    def run(self, phase: str, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        if phase == CRITICS:
            return self.critic_phase(batch)
        if phase == REFINER:
            return self.refiner_phase(batch)
        raise KeyError(phase)

    def coarse(self, batch: Batch) -> Tensor:
        """Ṽ (N, K, C, H, W) for `batch`: its `coarse` clip, or the frozen G_M's (see the module docstring)."""
        real = batch["video"]
        if "coarse" in batch:
            return batch["coarse"].to(real.dtype)
        if self.forecaster is None:
            raise ValueError("the batch has no 'coarse' clip and the loss was given no forecaster (G_M)")
        key = int(batch["batch_id"]) if "batch_id" in batch else None
        if key is not None and self._cached is not None and self._cached[0] == key:
            return self._cached[1]
        with torch.no_grad():
            clip = self.forecaster.forecast(batch["image_t"], batch["motion_t"], batch["motions"]).frame.to(real.dtype)
        self._cached = None if key is None else (key, clip)
        return clip

    def critic_phase(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Eq. 19-20 for D_V plus Eq. 13-14 for D_I on one random (real, refined) frame pair per clip."""
        real, motions = batch["video"], batch["motions"]
        coarse = self.coarse(batch)
        with torch.no_grad():
            fake = self.refiner(coarse, motions).clip.to(real.dtype)
        n, k = real.shape[:2]
        loss, stats = real.new_zeros((), dtype=torch.float32), {}
        if self.train_video:
            # Eq. 20: the penalty at V̂, interpolated between V and V̄ (Eq. 20 prints V̄), motion kept.
            mixed = interpolate(real, fake).requires_grad_(True)
            motions_gp = motions.detach().clone().requires_grad_(True)
            rank = self.w.rank > 0
            clips = [real, fake, mixed] + ([coarse] if rank else [])
            conditions = [motions, motions, motions_gp] + ([motions] if rank else [])
            layers = list(self.w.rank_layers) if rank else []
            scores, features = self.video_critic(torch.cat(clips), torch.cat(conditions), layers)
            scores = scores.float()
            gp = gradient_penalty_from_scores(scores[2 * n : 3 * n], [mixed, motions_gp], self.grad_scale())
            wgan = critic_loss(scores[n : 2 * n], scores[:n])
            video = wgan + self.w.gp_lambda * gp
            stats.update({"critics/video_gp": gp.item(), "critics/video_wasserstein": -wgan.item()})
            if rank:  # Eq. 19: D_V maximises ℓ_rank, pulling V̄'s features away from V's
                grams = [gram_matrix(f) for f in features]  # each (4N, C, C): [V; V̄; V̂; Ṽ]
                r = ranking_loss([g[n : 2 * n] for g in grams], [g[:n] for g in grams], [g[3 * n :] for g in grams])
                video = video - self.w.rank * r
                stats["critics/rank"] = r.item()
            loss = loss + video
            stats["critics/video_loss"] = video.item()
        if self.train_image:
            # §6.2: D_I trains on one (real, refined) pair per clip, frame i drawn per clip.
            frame = torch.randint(k, (n,), device=real.device)
            rows = torch.arange(n, device=real.device)
            wgan, gp = conditional_critic_terms(self.image_critic, real[rows, frame], fake[rows, frame],
                                                motions[rows, frame], self.grad_scale())
            image = wgan + self.w.gp_lambda * gp
            loss = loss + image
            stats.update({"critics/image_loss": image.item(), "critics/image_gp": gp.item(),
                          "critics/image_wasserstein": -wgan.item()})
        stats["critics/loss"] = loss.item()
        return loss, stats

    def refiner_phase(self, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        """Eq. 16: ℓ_rec(V, V̄) + ℓ_r(m) + ℓ̄_gen (Eq. 17) + γ·ℓ_rank (Eq. 18), each with its weight.

        Eq. 16 prints ℓ_rec(V, Ṽ); only V̄ depends on G_R, so the reconstruction is taken on V̄. The L1
        norms are normalised as in stage 1 (ForecastLoss): summed over channels, averaged over pixels,
        frames and the batch. Eq. 17's D_I term averages over the K frames of every clip.
        """
        real, motions = batch["video"], batch["motions"]
        coarse = self.coarse(batch)
        out = self.refiner(coarse, motions)
        n = real.shape[0]
        rec = (out.clip.float() - real.float()).abs().sum(2).mean()
        sparsity = out.mask.float().abs().sum(2).mean()
        loss = self.w.rec * rec + self.w.sparsity * sparsity
        stats = {"refiner/rec_l1": rec.item(), "refiner/mask_l1": sparsity.item()}
        rank = self.w.rank > 0
        if self.w.gen_video > 0 or rank:
            # The critics are used bare (not through DDP): their parameters are frozen in this phase.
            clips = [out.clip.to(real.dtype)] + ([real, coarse] if rank else [])
            layers = list(self.w.rank_layers) if rank else []
            scores, features = unwrap(self.video_critic)(torch.cat(clips), torch.cat([motions] * len(clips)), layers)
            if self.w.gen_video > 0:
                adv = generator_adversarial_loss(scores[:n].float())
                loss = loss + self.w.gen_video * adv
                stats["refiner/adv_video"] = adv.item()
            if rank:
                grams = [gram_matrix(f) for f in features]  # each (3N, C, C): [V̄; V; Ṽ]
                r = ranking_loss([g[:n] for g in grams], [g[n : 2 * n] for g in grams], [g[2 * n :] for g in grams])
                loss = loss + self.w.rank * r
                stats["refiner/rank"] = r.item()
        if self.w.gen_image > 0:
            frames, conditions = out.clip.flatten(0, 1).to(real.dtype), motions.flatten(0, 1)  # (N·K, ...)
            adv = generator_adversarial_loss(unwrap(self.image_critic)(frames, conditions).float())
            loss = loss + self.w.gen_image * adv
            stats["refiner/adv_image"] = adv.item()
        stats["refiner/loss"] = loss.item()
        return loss, stats
