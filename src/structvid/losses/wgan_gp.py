"""WGAN-GP pieces shared by every critic (Gulrajani et al. 2017; paper Eq. 13-14 and Eq. 19-20)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor


def interpolate(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """x̂ = ε·real + (1−ε)·fake with one ε ~ U(0, 1) per sample (Eq. 14's interpolated input).

    Any shape (N, ...): for clips (N, K, C, H, W) one ε per clip, the 3D interpolation V̂ of Eq. 20.
    """
    shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    eps = torch.rand(shape, device=real.device, dtype=real.dtype, generator=generator)
    return eps * real.detach() + (1 - eps) * fake.detach()


def gradient_penalty_from_scores(scores: Tensor, inputs: Sequence[Tensor], grad_scale: float = 1.0) -> Tensor:
    """Eq. 14: mean over the batch of (‖∇_x D(x)‖₂ − 1)², x the concatenation of all `inputs`.

    Inputs of any shape (N, ...), so the same penalty serves images (Eq. 14) and clips (Eq. 20): the norm
    is taken per sample over every element of every input. `scores` must have been computed from
    `inputs` (each with requires_grad). `grad_scale` is the AMP loss scale when `scores` were scaled
    before differentiation (the gradients are divided by it again).
    """
    grads = torch.autograd.grad(scores.sum() * grad_scale, list(inputs), create_graph=True)
    flat = torch.cat([g.flatten(1) for g in grads], dim=1) / grad_scale  # (N, sum of input sizes)
    return ((flat.float().norm(2, dim=1) - 1) ** 2).mean()


def gradient_penalty(critic: Callable[..., Tensor], inputs: Sequence[Tensor]) -> Tensor:
    """Eq. 14 for a critic called as `critic(*inputs)`; the penalty is taken w.r.t. all inputs together.

    For the conditional critic D_I the inputs are (interpolated image, motion map): the image is
    interpolated between real and generated, the motion condition is kept, and the gradient norm is
    taken over the concatenation [Î, M] as written in Eq. 14.
    """
    leaves = [x.detach().requires_grad_(True) for x in inputs]
    return gradient_penalty_from_scores(critic(*leaves), leaves)


def conditional_critic_terms(critic: Callable[[Tensor, Tensor], Tensor], real: Tensor, fake: Tensor,
                             condition: Tensor, grad_scale: float = 1.0) -> tuple[Tensor, Tensor]:
    """Eq. 13-14 for a critic called as `critic(x, condition)`: (D(fake) − D(real), ℓ_gp), batch means.

    One forward over [real; fake; interpolated] (DDP needs a single forward per backward). The input is
    interpolated between real and fake, the condition is kept, and the penalty is taken over [x̂, condition].
    """
    n = real.shape[0]
    fake = fake.detach().to(real.dtype)
    mixed = interpolate(real, fake).requires_grad_(True)
    condition_gp = condition.detach().clone().requires_grad_(True)
    scores = critic(torch.cat([real, fake, mixed]), torch.cat([condition, condition, condition_gp])).float()
    gp = gradient_penalty_from_scores(scores[2 * n :], [mixed, condition_gp], grad_scale)
    return critic_loss(scores[n : 2 * n], scores[:n]), gp


def critic_loss(fake_scores: Tensor, real_scores: Tensor) -> Tensor:
    """Eq. 13 without the penalty: D(fake) − D(real), averaged over the batch."""
    return fake_scores.mean() - real_scores.mean()


def generator_adversarial_loss(fake_scores: Tensor) -> Tensor:
    """Eq. 12: ℓ_gen = −D([Ĩ, M]), averaged over the batch."""
    return -fake_scores.mean()
