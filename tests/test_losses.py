import numpy as np
import torch

from structvid.config import LossConfig
from structvid.losses.forecast import ForecastLoss
from structvid.losses.wgan_gp import gradient_penalty, interpolate


def test_gradient_penalty_matches_hand_computation():
    # D(x, m) = 0.5 * sum(x^2) + sum(c * m): ∇_x = x, ∇_m = c, so ‖∇‖ = sqrt(|x|² + |c|²) per sample.
    torch.manual_seed(0)
    c = torch.randn(1, 2, 3, 3)

    def critic(x, m):
        return 0.5 * (x**2).flatten(1).sum(1) + (c * m).flatten(1).sum(1)

    x = torch.randn(4, 3, 3, 3)
    m = torch.rand(4, 2, 3, 3)
    got = gradient_penalty(critic, [x, m]).item()
    xn, cn = x.numpy().reshape(4, -1), c.numpy().reshape(-1)
    norms = np.sqrt((xn**2).sum(1) + (cn**2).sum())
    assert np.isclose(got, ((norms - 1) ** 2).mean(), rtol=1e-5)


def test_gradient_penalty_zero_for_unit_gradient_critic():
    w = torch.zeros(1, 1, 2, 2)
    w[0, 0, 0, 0] = 1.0  # ‖∇‖ = 1 exactly

    def critic(x, m):
        return (w * x).flatten(1).sum(1) + 0 * m.flatten(1).sum(1)

    assert gradient_penalty(critic, [torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)]).item() == 0.0


def test_interpolate_lies_between_real_and_fake():
    real, fake = torch.ones(64, 1, 2, 2), -torch.ones(64, 1, 2, 2)
    mixed = interpolate(real, fake)
    assert mixed.min() >= -1 and mixed.max() <= 1
    per_sample = mixed.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample))  # one ε per sample
    assert per_sample[:, 0].std() > 0.1


class _Out:
    def __init__(self, frame, mask):
        self.frame, self.mask = frame, mask


def test_forecast_loss_weights_and_phases():
    torch.manual_seed(0)
    frame = torch.zeros(2, 3, 4, 4)
    mask = torch.full((2, 1, 4, 4), 0.25)
    gen = lambda i, mt, mk: _Out(frame + 0 * i, mask)  # noqa: E731
    critic = lambda x, m: x.flatten(1).sum(1) + 0 * m.flatten(1).sum(1) + 3.0  # noqa: E731
    batch = {"image_t": torch.zeros(2, 3, 4, 4), "motion_t": torch.zeros(2, 1, 4, 4),
             "image_tk": torch.full((2, 3, 4, 4), 0.5), "motion_tk": torch.zeros(2, 1, 4, 4)}
    loss = ForecastLoss(gen, critic, LossConfig(rec=2.0, sparsity=4.0, gen=0.5), critic_steps=3)
    assert [(p.name, p.repeat) for p in loss.phases] == [("critic", 3), ("generator", 1)]
    value, stats = loss.generator_phase(batch)
    # L1 summed over channels, averaged over pixels: 2 * 3 * |0 - 0.5| + 4 * 0.25 + 0.5 * -(0 + 3)
    assert np.isclose(value.item(), 2 * 1.5 + 4 * 0.25 - 0.5 * 3.0)
    assert np.isclose(stats["generator/rec_l1"], 1.5)
    assert [p.name for p in ForecastLoss(gen, critic, LossConfig(gen=0.0)).phases] == ["generator"]
    # critic: D(fake) - D(real) + λ·gp, here ‖∇_x D‖ = sqrt(48) for every sample
    value, stats = loss.critic_phase(batch)
    wdist = (0.5 * 48 + 3) - (0 + 3)
    gp = (np.sqrt(48) - 1) ** 2
    assert np.isclose(stats["critic/wasserstein"], wdist)
    assert np.isclose(stats["critic/gp"], gp, rtol=1e-5)
    assert np.isclose(value.item(), -wdist + 10 * gp, rtol=1e-5)
