"""The refining stage's losses (§6.2): Gram matrices, the ranking loss (Eq. 18), G_R's objective
(Eq. 16-17) and the critics' (Eq. 19-20 for D_V, Eq. 13-14 for D_I)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from structvid.config import CriticConfig, ForecasterConfig, RefineLossConfig, RefinerConfig, VideoCriticConfig
from structvid.losses.ranking import gram_matrix, ranking_loss
from structvid.losses.refine import RefineLoss
from structvid.models.critics import ImageCritic, VideoCritic
from structvid.models.forecaster import ForecastOutput, Forecaster
from structvid.models.refiner import Refiner, RefineOutput

N, K, C, J, S = 2, 2, 3, 1, 2  # clips, frames, image channels, motion channels, side


def test_gram_matrix_of_a_constructed_tensor():
    f = torch.tensor([[1.0, 2.0, 3.0], [0.0, 1.0, -1.0]]).view(1, 2, 1, 1, 3)  # (N, C, T, H, W): 2 x 3
    expected = torch.tensor([[14.0, -1.0], [-1.0, 2.0]]) / 6  # F·Fᵀ / (C·T·H·W)
    assert torch.allclose(gram_matrix(f), expected[None])
    assert torch.allclose(gram_matrix(torch.cat([f, 2 * f])), torch.stack([expected, 4 * expected]))


def test_ranking_loss_is_eq18_without_underflow():
    real = [torch.zeros(2, 1, 1), torch.zeros(2, 2, 2)]
    refined = [torch.tensor([1.0, 0.0]).view(2, 1, 1), torch.full((2, 2, 2), 0.25)]
    coarse = [torch.tensor([3.0, -0.5]).view(2, 1, 1), torch.full((2, 2, 2), -0.5)]
    # d(V̄, V) = |r1 - 0| + 4 * 0.25, d(V̄, Ṽ) = |r1 - c1| + 4 * 0.75, per clip
    d_real, d_coarse = np.array([2.0, 1.0]), np.array([5.0, 3.5])
    eq18 = -np.log(np.exp(-d_real) / (np.exp(-d_real) + np.exp(-d_coarse)))
    assert np.isclose(ranking_loss(refined, real, coarse).item(), eq18.mean(), rtol=1e-6)
    # far apart, the ratio of exponentials underflows to 0/0; the loss is the distance difference
    far = ranking_loss([torch.full((1, 1, 1), 1000.0)], [torch.zeros(1, 1, 1)], [torch.full((1, 1, 1), 1000.0)])
    assert far.item() == 1000.0
    with pytest.raises(ValueError):
        ranking_loss([], [], [])


def test_ranking_loss_gradient_moves_refined_towards_real():
    real, coarse = torch.zeros(1, 1, 1), torch.full((1, 1, 1), 2.0)
    refined = torch.full((1, 1, 1), 1.5, requires_grad=True)  # d(V̄, V) = 1.5, d(V̄, Ṽ) = 0.5
    ranking_loss([refined], [real], [coarse]).backward()
    # ∂/∂r softplus(|r| - |r - 2|) = σ(1) · (1 + 1): descent lowers r, towards V and away from Ṽ
    assert np.isclose(refined.grad.item(), 2 / (1 + np.exp(-1.0)), rtol=1e-6)
    closer = torch.full((1, 1, 1), 0.5, requires_grad=True)  # d = 0.5 vs 1.5: already ranked, a weaker pull
    ranking_loss([closer], [real], [coarse]).backward()
    assert np.isclose(closer.grad.item(), 2 / (1 + np.exp(1.0)), rtol=1e-6)


# ---------------------------------------------------------------- the loss object, on hand-computable stand-ins


def hand_gram(x: np.ndarray) -> np.ndarray:
    """Gram of a clip (N, K, C, H, W) with the clip itself as D_V's feature map (C x K·H·W)."""
    f = x.transpose(0, 2, 1, 3, 4).reshape(x.shape[0], x.shape[2], -1)
    return np.einsum("ncp,ndp->ncd", f, f) / f[0].size


def hand_rank(refined, real, coarse) -> float:
    g = hand_gram(refined)
    d_real = np.abs(g - hand_gram(real)).sum((1, 2))
    d_coarse = np.abs(g - hand_gram(coarse)).sum((1, 2))
    return float(np.mean(np.log1p(np.exp(d_real - d_coarse))))


class StandIns:
    """G_R halves Ṽ (mask 0.25); D_V(x, m) = ½Σx² + Σ c·m + 3 with x itself as the feature of block 0;
    D_I(x, m) = Σ b·x + Σ m². D_I records what it was shown."""

    def __init__(self, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.c = torch.randn(1, K, J, S, S, generator=g)
        self.b = torch.randn(1, C, S, S, generator=g)
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.batch = {"video": torch.rand(N, K, C, S, S, generator=g) * 2 - 1,
                      "motions": torch.rand(N, K, J, S, S, generator=g),
                      "coarse": torch.rand(N, K, C, S, S, generator=g) * 2 - 1}

    def refiner(self, coarse, motions):
        return RefineOutput(0.5 * coarse, torch.full((N, K, 1, S, S), 0.25), coarse)

    def video_critic(self, x, m, layers=None):
        scores = 0.5 * (x**2).flatten(1).sum(1) + (self.c * m).flatten(1).sum(1) + 3.0
        return scores, [x.transpose(1, 2) for _ in layers]

    def image_critic(self, x, m):
        self.seen.append((x.detach().clone(), m.detach().clone()))
        return (self.b * x).flatten(1).sum(1) + (m**2).flatten(1).sum(1)


WEIGHTS = RefineLossConfig(rec=2.0, sparsity=4.0, gen_video=0.5, gen_image=0.25, rank=0.5, rank_layers=[0])


def test_phases_follow_the_weights():
    s = StandIns()
    loss = RefineLoss(s.refiner, s.video_critic, s.image_critic, WEIGHTS, critic_steps=3)
    assert [(p.name, p.module, p.repeat) for p in loss.phases] == [("critics", "critics", 3), ("refiner", "refiner", 1)]
    off = RefineLossConfig(gen_video=0.0, gen_image=0.0, rank=0.0)
    assert [p.name for p in RefineLoss(s.refiner, s.video_critic, s.image_critic, off).phases] == ["refiner"]
    image_only = RefineLoss(s.refiner, s.video_critic, s.image_critic, RefineLossConfig(gen_video=0.0, rank=0.0))
    _, stats = image_only.critic_phase(s.batch)
    assert "critics/image_loss" in stats and "critics/video_loss" not in stats


def test_refiner_phase_is_eq16_17():
    s = StandIns()
    loss = RefineLoss(s.refiner, s.video_critic, s.image_critic, WEIGHTS)
    value, stats = loss.refiner_phase(s.batch)
    real, motions, coarse = (s.batch[k].numpy() for k in ("video", "motions", "coarse"))
    refined = 0.5 * coarse
    rec = np.abs(refined - real).sum(2).mean()  # ℓ_rec(V, V̄): summed over channels, mean over pixels
    adv_video = -np.mean(0.5 * (refined**2).reshape(N, -1).sum(1) + (s.c.numpy() * motions).reshape(N, -1).sum(1) + 3)
    frames, maps = refined.reshape(N * K, C, S, S), motions.reshape(N * K, J, S, S)
    adv_image = -np.mean((s.b.numpy() * frames).reshape(N * K, -1).sum(1) + (maps**2).reshape(N * K, -1).sum(1))
    rank = hand_rank(refined, real, coarse)
    assert np.isclose(stats["refiner/rec_l1"], rec, rtol=1e-6)
    assert np.isclose(stats["refiner/mask_l1"], 0.25)
    assert np.isclose(stats["refiner/adv_video"], adv_video, rtol=1e-5)
    assert np.isclose(stats["refiner/adv_image"], adv_image, rtol=1e-5)
    assert np.isclose(stats["refiner/rank"], rank, rtol=1e-5)
    assert np.isclose(value.item(), 2 * rec + 4 * 0.25 + 0.5 * adv_video + 0.25 * adv_image + 0.5 * rank, rtol=1e-5)


def test_critic_phase_is_eq19_20_with_the_3d_penalty_and_one_frame_pair_per_clip():
    s = StandIns()
    loss = RefineLoss(s.refiner, s.video_critic, s.image_critic, WEIGHTS)
    torch.manual_seed(5)
    value, stats = loss.critic_phase(s.batch)
    torch.manual_seed(5)  # the draws, in the order the phase makes them
    eps_video = torch.rand(N, 1, 1, 1, 1).numpy()  # one ε per clip (Eq. 20's V̂)
    frame = torch.randint(K, (N,)).numpy()  # D_I's frame of each clip
    eps_image = torch.rand(N, 1, 1, 1).numpy()

    real, motions, coarse = (s.batch[k].numpy() for k in ("video", "motions", "coarse"))
    fake, c, b = 0.5 * coarse, s.c.numpy(), s.b.numpy()

    def d_v(x):
        return 0.5 * (x**2).reshape(N, -1).sum(1) + (c * motions).reshape(N, -1).sum(1) + 3

    mixed = eps_video * real + (1 - eps_video) * fake
    # ∇_V̂ D_V = V̂, ∇_M D_V = c: the norm is over the whole clip and its motion maps
    gp_video = np.mean((np.sqrt((mixed**2).reshape(N, -1).sum(1) + (c**2).sum()) - 1) ** 2)
    wgan_video = d_v(fake).mean() - d_v(real).mean()
    rank = hand_rank(fake, real, coarse)
    video = wgan_video + 10 * gp_video - 0.5 * rank
    assert np.isclose(stats["critics/video_gp"], gp_video, rtol=1e-5)
    assert np.isclose(stats["critics/rank"], rank, rtol=1e-5)
    assert np.isclose(stats["critics/video_loss"], video, rtol=1e-5)

    rows = np.arange(N)
    shown, maps = s.seen[0]  # [real; fake; interpolated] frames, frame i of each clip
    assert np.allclose(shown[:N].numpy(), real[rows, frame])
    assert np.allclose(shown[N : 2 * N].numpy(), fake[rows, frame])
    assert np.allclose(maps[:N].numpy(), motions[rows, frame])
    m = motions[rows, frame]
    gp_image = np.mean((np.sqrt((b**2).sum() + 4 * (m**2).reshape(N, -1).sum(1)) - 1) ** 2)
    wgan_image = ((b * fake[rows, frame]).reshape(N, -1).sum(1) - (b * real[rows, frame]).reshape(N, -1).sum(1)).mean()
    assert np.allclose(shown[2 * N :].numpy(), eps_image * real[rows, frame] + (1 - eps_image) * fake[rows, frame])
    assert np.isclose(stats["critics/image_gp"], gp_image, rtol=1e-5)
    assert np.isclose(value.item(), video + wgan_image + 10 * gp_image, rtol=1e-5)


class CountingForecaster(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forecast(self, image_t, motion_t, targets):
        self.calls += 1
        frames = image_t[:, None].expand(-1, targets.shape[1], -1, -1, -1) + self.calls
        return ForecastOutput(frames, None, frames)


def test_coarse_clip_runs_the_frozen_forecaster_once_per_batch_id():
    s = StandIns()
    g = CountingForecaster()
    loss = RefineLoss(s.refiner, s.video_critic, s.image_critic, WEIGHTS, forecaster=g)
    batch = {k: v for k, v in s.batch.items() if k != "coarse"}
    batch.update(image_t=torch.zeros(N, C, S, S), motion_t=torch.zeros(N, J, S, S), batch_id=torch.tensor(7))
    first = loss.coarse(batch)
    assert first.shape == (N, K, C, S, S) and g.calls == 1
    loss.critic_phase(dict(batch))  # another batch object with the same id: the same clips
    loss.refiner_phase(dict(batch))
    assert g.calls == 1
    assert torch.equal(loss.coarse({**batch, "batch_id": torch.tensor(8)}), first + 1) and g.calls == 2
    del batch["batch_id"]
    loss.coarse(batch), loss.coarse(batch)
    assert g.calls == 4  # no id: no caching
    assert loss.coarse(s.batch) is not None and g.calls == 4  # a given coarse clip is used as is
    with pytest.raises(ValueError, match="forecaster"):
        RefineLoss(s.refiner, s.video_critic, s.image_critic, WEIGHTS).coarse(batch)


def test_both_phases_train_the_right_modules_with_real_networks():
    torch.manual_seed(0)
    common = dict(motion_channels=J, resolution=16)
    refiner = Refiner(RefinerConfig(**common, clip_length=4, base_width=4, max_width=8, skip_levels=[0]))
    video = VideoCritic(VideoCriticConfig(**common, clip_length=4, base_width=4, max_width=8))
    image = ImageCritic(CriticConfig(**common, base_width=4, max_width=8))
    forecaster = Forecaster(ForecasterConfig(**common, base_width=4, max_width=8, dense_growth=2))
    loss = RefineLoss(refiner, video, image, RefineLossConfig(), forecaster=forecaster)
    batch = {"video": torch.rand(2, 4, 3, 16, 16) * 2 - 1, "motions": torch.rand(2, 4, J, 16, 16),
             "image_t": torch.rand(2, 3, 16, 16) * 2 - 1, "motion_t": torch.rand(2, J, 16, 16),
             "batch_id": torch.tensor(0)}
    critics = nn.ModuleDict({"video": video, "image": image})
    for phase in loss.phases:
        for m in (refiner, critics):
            m.zero_grad(set_to_none=True)
        value, stats = loss.run(phase.name, batch)
        value.backward()
        assert np.isfinite(value.item()) and all(np.isfinite(v) for v in stats.values())
        trained, frozen = (critics, refiner) if phase.module == "critics" else (refiner, critics)
        assert all(p.grad is not None for p in trained.parameters())
        if phase.module == "critics":
            assert all(p.grad is None for p in frozen.parameters())  # V̄ is made without gradient
    assert not any(p.requires_grad for p in forecaster.parameters()) and not forecaster.training
