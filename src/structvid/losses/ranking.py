"""The ranking loss of the refining stage (§6.2, Eq. 18), on Gram matrices of D_V's feature maps."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def gram_matrix(features: Tensor) -> Tensor:
    """Gram matrix of Gatys et al. (2015): (N, C, *dims) -> (N, C, C), F·Fᵀ over all positions.

    For D_V's maps (N, C, T, H, W) the positions are spatiotemporal (C x T·H·W), so the matrix holds the
    co-activations of feature channels over the whole clip (Xiong et al. 2018's motion texture). Divided
    by the element count C·T·H·W so that layers of different sizes weigh alike. Computed in float32, also
    under autocast (the products of a bf16 matmul would lose the small differences the loss compares).
    """
    with torch.autocast(features.device.type, enabled=False):
        f = features.float().flatten(2)  # (N, C, P)
        return f @ f.transpose(1, 2) / f[0].numel()


def gram_distance(a: Sequence[Tensor], b: Sequence[Tensor]) -> Tensor:
    """‖f(a) − f(b)‖₁ per sample (N,), f(x) the concatenation of the Gram matrices of several layers."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need the same non-zero number of Gram matrices on both sides, got {len(a)} and {len(b)}")
    return sum((x - y).abs().flatten(1).sum(1) for x, y in zip(a, b))


def ranking_loss(refined: Sequence[Tensor], real: Sequence[Tensor], coarse: Sequence[Tensor]) -> Tensor:
    """Eq. 18 from the Gram matrices f(V̄), f(V), f(Ṽ) (one (N, C, C) per layer), averaged over the batch.

    −log(e^{−d(V̄,V)} / (e^{−d(V̄,V)} + e^{−d(V̄,Ṽ)})) = softplus(d(V̄,V) − d(V̄,Ṽ)), the same value
    without underflow for large distances. Small when the refined clip's features are closer to the real
    clip's than to the coarse input's; no margin (the paper has none).
    """
    return F.softplus(gram_distance(refined, real) - gram_distance(refined, coarse)).mean()
