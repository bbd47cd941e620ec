"""G_R (§6.1, Table 2, Eq. 15) and D_V (§6.2), at tiny widths on CPU."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from structvid.config import RefinerConfig, VideoCriticConfig
from structvid.models.critics import VideoCritic
from structvid.models.refiner import Refiner
from structvid.models.saving import load_pretrained, save_pretrained

J = 5  # motion channels of the tiny configs


def tiny(**kw) -> RefinerConfig:
    base = dict(motion_channels=J, resolution=32, clip_length=16, base_width=4, max_width=32)
    return RefinerConfig(**{**base, **kw})


def tiny_critic(**kw) -> VideoCriticConfig:
    base = dict(motion_channels=J, resolution=32, clip_length=16, base_width=4, max_width=32)
    return VideoCriticConfig(**{**base, **kw})


def clips(cfg, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    k, r = cfg.clip_length, cfg.resolution
    clip = torch.rand(n, k, cfg.image_channels, r, r, generator=g) * 2 - 1
    return clip, torch.rand(n, k, cfg.motion_channels, r, r, generator=g)


def map_sizes(model: Refiner, clip, motions):
    """(T, H, W) and width of the output of every encoder level, the bottleneck and every decoder block."""
    seen = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append((tuple(out.shape[2:]), out.shape[1])))
             for m in [*model.encoder.levels, model.encoder.bottleneck, *model.decoder]]
    try:
        out = model(clip, motions)
    finally:
        for h in hooks:
            h.remove()
    return seen, out


def test_table2_map_sizes_at_16x64x64():
    torch.manual_seed(0)
    cfg = tiny(resolution=64, base_width=4)
    model = Refiner(cfg)
    clip, motions = clips(cfg, n=1)
    seen, out = map_sizes(model, clip, motions)
    sizes = [(8, 32, 32), (4, 16, 16), (2, 8, 8), (1, 4, 4), (1, 1, 1),  # E0..E4
             (1, 4, 4), (2, 8, 8), (4, 16, 16), (8, 32, 32)]  # D3..D0
    assert [s for s, _ in seen] == sizes
    assert [w for _, w in seen] == [4, 8, 16, 32, 32, 16, 8, 4, 2]  # base 4: Table 2's widths / 32
    assert out.clip.shape == out.content.shape == (1, 16, 3, 64, 64)
    assert out.mask.shape == (1, 16, 1, 64, 64)
    assert out.mask.min() >= 0 and out.mask.max() <= 1 and out.content.abs().max() <= 1


def test_table2_widths_and_layers():
    with torch.device("meta"):
        model = Refiner(RefinerConfig())  # Table 2 defaults: 13 joint heatmaps, 16x64x64
    convs = [m for m in model.encoder.modules() if isinstance(m, nn.Conv3d)]
    assert [c.out_channels for c in convs] == [128, 256, 512, 1024, 1024]
    assert convs[0].in_channels == 3 + 13  # [Ṽ, M] per frame
    assert [c.kernel_size for c in convs] == [(4, 4, 4)] * 4 + [(1, 4, 4)]
    assert [c.stride for c in convs] == [(2, 2, 2)] * 4 + [(1, 1, 1)]
    ups = [m for m in model.decoder.modules() if isinstance(m, nn.ConvTranspose3d)]
    assert [u.out_channels for u in ups] == [512, 256, 128, 64]  # D0 = 64: our choice, Table 2 is blank
    assert not any(isinstance(m, (nn.BatchNorm3d, nn.MaxPool3d, nn.AvgPool3d)) for m in model.encoder.modules())
    assert sum(isinstance(m, nn.BatchNorm3d) for m in model.decoder.modules()) == 4


@pytest.mark.parametrize("k, r, bottleneck", [(16, 128, (1, 1, 1)), (32, 64, (2, 1, 1)), (32, 32, (4, 1, 1))])
def test_other_clip_lengths_and_resolutions(k, r, bottleneck):
    torch.manual_seed(0)
    cfg = tiny(clip_length=k, resolution=r, base_width=2, max_width=8)
    model = Refiner(cfg)
    assert len(model.encoder.levels) == r.bit_length() - 3  # one more level at 128, as G_M
    clip, motions = clips(cfg, n=1)
    seen, out = map_sizes(model, clip, motions)
    assert seen[len(model.encoder.levels)][0] == bottleneck
    assert out.clip.shape == (1, k, 3, r, r)


def test_eq15_exact_on_constructed_heads():
    torch.manual_seed(0)
    cfg = tiny()
    model = Refiner(cfg)
    clip, motions = clips(cfg)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 0.3, -0.7, 1.1]))  # m = sigmoid(0) = 0.5, c = tanh(bias)
    out = model(clip, motions)
    content = torch.tanh(torch.tensor([0.3, -0.7, 1.1])).view(1, 1, 3, 1, 1).expand_as(clip)
    assert torch.equal(out.mask, torch.full((2, 16, 1, 32, 32), 0.5))
    assert torch.equal(out.content, content)
    assert torch.equal(out.clip, 0.5 * content + 0.5 * clip)
    with torch.no_grad():
        model.head.bias[0] = -200.0  # m = 0: the coarse clip passes through unchanged
    assert torch.equal(model(clip, motions).clip, clip)
    with torch.no_grad():
        model.head.bias[0] = 200.0  # m = 1: the content replaces it
    assert torch.equal(model(clip, motions).clip, content)


def first_in(block: nn.Module) -> int:
    return next(m for m in block.modules() if isinstance(m, nn.ConvTranspose3d)).in_channels


@pytest.mark.parametrize("levels, mode", [(None, "concat"), ([], "concat"), ([0, 1, 2], "concat"), ([1], "add")])
def test_skips_exactly_where_configured(levels, mode):
    cfg = tiny(skip_levels=levels, skip_mode=mode)  # 32x32: E0..E2 (widths 4, 8, 16), D2..D0 (8, 4, 2)
    model = Refiner(cfg)
    expected = [2] if levels is None else levels  # default: none from E0, E1 (§6.1)
    assert model.skip_levels == expected
    extra = {i: (w if mode == "concat" and i in expected else 0) for i, w in enumerate([4, 8, 16])}
    # the block after D_i (D_{i-1}, or the head after D0) sees D_i's width plus E_i's when concatenated
    assert [first_in(b) for b in model.decoder] == [16, 8 + extra[2], 4 + extra[1]]
    assert model.head.in_channels == 2 + extra[0]
    assert sorted(model.projections) == ([str(i) for i in expected] if mode == "add" else [])

    # Functionally: with the bottleneck zeroed, the input reaches the heads only through the skips.
    torch.manual_seed(0)
    model.eval()
    model.encoder.bottleneck.register_forward_hook(lambda _m, _i, out: torch.zeros_like(out))
    a, b = clips(cfg, seed=1), clips(cfg, seed=2)
    same = torch.equal(model(*a).content, model(*b).content)
    assert same == (not expected)


def test_bad_config_and_shapes_are_reported():
    with pytest.raises(ValueError, match="skip_levels"):
        Refiner(tiny(skip_levels=[3]))
    with pytest.raises(ValueError, match="skip_mode"):
        Refiner(tiny(skip_mode="sum"))
    with pytest.raises(ValueError, match="clip_length"):
        Refiner(tiny(clip_length=12))
    model = Refiner(tiny())
    clip, motions = clips(tiny())
    with pytest.raises(ValueError, match=r"motions must have shape \(2, 16, 5, 32, 32\)"):
        model(clip, motions[:, :, :3])
    with pytest.raises(ValueError, match="clip"):
        model(clip[:, :8], motions)


def test_video_critic_scores_and_features():
    torch.manual_seed(0)
    cfg = tiny_critic()
    critic = VideoCritic(cfg)
    assert not any(isinstance(m, nn.BatchNorm3d) for m in critic.modules())  # WGAN-GP: no batch norm
    clip, motions = clips(cfg, n=3)
    scores = critic(clip, motions)
    assert scores.shape == (3,)
    both, feats = critic(clip, motions, [0, 1, 3])
    assert torch.equal(both, scores)
    assert [tuple(f.shape) for f in feats] == [(3, 4, 8, 16, 16), (3, 8, 4, 8, 8), (3, 16, 2, 1, 1)]
    assert all(torch.equal(a, b) for a, b in zip(critic.features(clip, motions, [0, 1, 3]), feats))
    # conditioned on the motion maps
    assert not torch.equal(critic(clip, motions + 1), scores)
    with pytest.raises(ValueError, match="layers"):
        critic(clip, motions, [4])


def test_refiner_and_video_critic_save_and_load(tmp_path):
    torch.manual_seed(0)
    cfg = tiny(skip_mode="add")
    model = Refiner(cfg).eval()
    critic = VideoCritic(tiny_critic())
    save_pretrained(model, tmp_path, "refiner")
    save_pretrained(critic, tmp_path, "video_critic")
    clip, motions = clips(cfg)
    loaded = load_pretrained(tmp_path, "refiner")
    assert isinstance(loaded, Refiner) and loaded.config == cfg
    assert torch.equal(loaded(clip, motions).clip, model(clip, motions).clip)
    assert torch.equal(load_pretrained(tmp_path, "video_critic")(clip, motions), critic(clip, motions))
