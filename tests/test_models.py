"""G_M (§5.1), D_I (§5.2) and their save/load, at tiny widths on CPU."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from structvid.config import CriticConfig, ForecasterConfig
from structvid.errors import UserError
from structvid.models.blocks import Encoder, blend_residual, level_widths
from structvid.models.critics import ImageCritic
from structvid.models.forecaster import Forecaster, count_gflops_per_frame
from structvid.models.saving import load_pretrained, save_pretrained

J = 5  # motion channels of the tiny configs


def tiny(**kw) -> ForecasterConfig:
    base = dict(motion_channels=J, resolution=16, base_width=8, max_width=32, dense_growth=4)
    return ForecasterConfig(**{**base, **kw})


def inputs(cfg, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = cfg.resolution
    image = torch.rand(n, cfg.image_channels, r, r, generator=g) * 2 - 1
    return image, torch.rand(n, cfg.motion_channels, r, r, generator=g), torch.rand(n, cfg.motion_channels, r, r, generator=g)


def first_conv_in(block: nn.Module) -> int:
    return next(m for m in block.modules() if isinstance(m, nn.Conv2d)).in_channels


@pytest.mark.parametrize("residual", ["mask", "difference", "none"])
@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("resolution", [32, 64])
def test_forecaster_shapes_and_ranges(residual, dense, resolution):
    torch.manual_seed(0)
    cfg = tiny(residual=residual, dense=dense, resolution=resolution)
    image, m_t, m_tk = inputs(cfg, n=3)
    out = Forecaster(cfg)(image, m_t * 5, m_tk * 5)
    assert out.frame.shape == (3, 3, resolution, resolution)
    assert out.content.shape == (3, 3, resolution, resolution)
    assert out.frame.min() >= -1 and out.frame.max() <= 1
    if residual == "mask":
        assert out.mask.shape == (3, 1, resolution, resolution)
        assert out.mask.min() >= 0 and out.mask.max() <= 1
    else:
        assert out.mask is None


def test_resolution_128_adds_a_level_with_capped_widths():
    cfg = tiny(resolution=128, max_width=32)
    assert level_widths(128, 8, 32) == [8, 8, 16, 32, 32, 32]
    assert level_widths(64, 64, 512) == [64, 64, 128, 256, 512]  # Table 1
    model = Forecaster(cfg)
    assert len(model.image_encoder.blocks) == 5
    image, m_t, m_tk = inputs(cfg, n=1)
    out = model(image, m_t, m_tk)
    assert out.frame.shape == (1, 3, 128, 128) and out.mask.shape == (1, 1, 128, 128)


def test_bad_shapes_are_reported():
    model = Forecaster(tiny())
    image, m_t, m_tk = inputs(tiny())
    with pytest.raises(ValueError, match=r"motion_tk must have shape \(2, 5, 16, 16\)"):
        model(image, m_t, m_tk[:, :3])
    with pytest.raises(ValueError, match="image_t"):
        model(image[..., :8, :8], m_t, m_tk)
    with pytest.raises(ValueError, match="motion_targets"):
        model.forecast(image, m_t, m_tk)


def test_blend_residual_is_eq7():
    g = torch.Generator().manual_seed(1)
    content, image = torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    assert torch.equal(blend_residual(torch.zeros(2, 1, 4, 4), content, image), image)
    assert torch.equal(blend_residual(torch.ones(2, 1, 4, 4), content, image), content)
    m = torch.rand(2, 1, 4, 4, generator=g)
    assert torch.allclose(blend_residual(m, content, image), m * content + (1 - m) * image)


def test_mask_forced_to_zero_returns_input_frame():
    model = Forecaster(tiny())
    with torch.no_grad():
        model.mask_head.weight.zero_()
        model.mask_head.bias.fill_(-1e4)
    image, m_t, m_tk = inputs(tiny())
    out = model(image, m_t, m_tk)
    assert torch.equal(out.mask, torch.zeros_like(out.mask))
    assert torch.equal(out.frame, image)


def test_motion_encoder_is_shared_and_both_motions_matter():
    cfg = tiny()
    model = Forecaster(cfg)
    encoders = [m for m in model.modules() if isinstance(m, Encoder)]
    assert len(encoders) == 2 and model.motion_encoder.stem.in_channels == J  # one f_M for M_t and M_{t+k}
    image, m_t, m_tk = inputs(cfg)
    m_t.requires_grad_(True)
    m_tk.requires_grad_(True)
    model(image, m_t, m_tk).frame.square().sum().backward()
    assert m_t.grad.abs().sum() > 0 and m_tk.grad.abs().sum() > 0  # both reach the output through f_M
    # every weight of f_M gets a gradient (biases are left out: where a batch-norm follows downstream, a
    # per-channel offset has no effect and its gradient is zero up to rounding, whatever the thread count)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.motion_encoder.parameters() if p.ndim > 1)

    model.eval()
    with torch.no_grad():
        base = model(image, m_t, m_tk).frame
        assert not torch.allclose(base, model(image, m_t.flip(0), m_tk).frame)
        # Eq. 8: with M_t = M_{t+k} the motion terms cancel, whichever the motion map is.
        same_a = model(image, m_t, m_t).frame
        same_b = model(image, m_tk, m_tk).frame
    assert torch.allclose(same_a, same_b, atol=1e-5)


@pytest.mark.parametrize("dense", [True, False])
def test_dense_connection_channel_counts(dense):
    # widths E0..E4 = 8, 8, 16, 32, 64; blocks D4, D3, D2, D1, D0; growth 4
    model = Forecaster(tiny(resolution=64, max_width=512, dense=dense, dense_growth=4))
    got = [first_conv_in(block) for block in model.decoder.blocks]
    # D_i: previous block (or the 64-wide embedding) + f_I skip from E_{i-1} + 4 per earlier non-adjacent block
    no_dense = [64 + 32, 64 + 16, 32 + 8, 16 + 8, 8]
    extra = [0, 0, 4, 8, 12] if dense else [0] * 5
    assert got == [a + b for a, b in zip(no_dense, extra)]
    assert len(model.decoder.projections) == (3 if dense else 0)


def test_without_skips_decoder_sees_only_the_embedding_path():
    model = Forecaster(tiny(skip=False, dense=False))
    assert [first_conv_in(b) for b in model.decoder.blocks] == [16, 16, 8]  # widths 8, 8, 16


@pytest.mark.parametrize("residual", ["mask", "difference"])
def test_forecast_equals_loop_of_forward(residual):
    torch.manual_seed(0)
    cfg = tiny(residual=residual)
    model = Forecaster(cfg).eval()
    image, m_t, _ = inputs(cfg, n=2)
    targets = torch.rand(2, 3, J, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model.forecast(image, m_t, targets)
        loop = [model(image, m_t, targets[:, i]) for i in range(3)]
    assert out.frame.shape == (2, 3, 3, 16, 16)
    assert torch.allclose(out.frame, torch.stack([o.frame for o in loop], 1), atol=1e-5)
    assert torch.allclose(out.content, torch.stack([o.content for o in loop], 1), atol=1e-5)
    if residual == "mask":
        assert out.mask.shape == (2, 3, 1, 16, 16)
        assert torch.allclose(out.mask, torch.stack([o.mask for o in loop], 1), atol=1e-5)
    else:
        assert out.mask is None


def test_critic_shape_gradient_and_no_batchnorm():
    cfg = CriticConfig(motion_channels=J, resolution=32, base_width=8, max_width=32)
    critic = ImageCritic(cfg)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in critic.modules())
    image, motion, _ = inputs(ForecasterConfig(motion_channels=J, resolution=32), n=3)
    image.requires_grad_(True)
    motion.requires_grad_(True)
    scores = critic(image, motion)
    assert scores.shape == (3,)
    gi, gm = torch.autograd.grad(scores.sum(), [image, motion])
    assert gi.abs().sum() > 0 and gm.abs().sum() > 0
    # per-sample scores: no cross-talk inside a batch (required by the gradient penalty)
    assert torch.allclose(critic(image[:1], motion[:1]), scores[:1], atol=1e-5)


@pytest.mark.parametrize("make", [
    lambda: Forecaster(tiny(residual="difference", dense=False)),
    lambda: ImageCritic(CriticConfig(motion_channels=J, resolution=16, base_width=8, max_width=32)),
])
def test_save_load_round_trip(tmp_path, make):
    torch.manual_seed(0)
    model = make()
    if isinstance(model, Forecaster):  # non-trivial BatchNorm running statistics
        model(*inputs(model.config, n=4))
    model.eval()
    save_pretrained(model, tmp_path, "net")
    assert json.loads((tmp_path / "net.json").read_text())["config"] == dataclasses.asdict(model.config)
    loaded = load_pretrained(tmp_path, "net")
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    image, m_t, m_tk = inputs(tiny(), n=2, seed=5)
    with torch.no_grad():
        if isinstance(model, Forecaster):
            assert torch.equal(model(image, m_t, m_tk).frame, loaded(image, m_t, m_tk).frame)
        else:
            assert torch.equal(model(image, m_t), loaded(image, m_t))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.json", "net.safetensors"]  # no temp files left


def test_load_errors_name_the_file(tmp_path):
    save_pretrained(Forecaster(tiny()), tmp_path, "g")
    meta = json.loads((tmp_path / "g.json").read_text())
    meta["config"]["base_width"] = 16
    (tmp_path / "g.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match="weights do not match config") as err:
        load_pretrained(tmp_path, "g")
    assert err.value.path == str(tmp_path / "g.safetensors")
    assert "shape mismatch for image_encoder.stem.weight: (8, 3, 3, 3) in the file vs (16, 3, 3, 3)" in str(err.value)

    meta["config"]["base_width"] = 8
    meta["config"]["dense"] = False
    (tmp_path / "g.json").write_text(json.dumps(meta))
    with pytest.raises(UserError, match=r"unexpected keys \[decoder.projections"):
        load_pretrained(tmp_path, "g")

    (tmp_path / "g.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UserError, match="corrupt weights") as err:
        load_pretrained(tmp_path, "g")
    assert err.value.path == str(tmp_path / "g.safetensors")

    with pytest.raises(UserError, match="model config not found") as err:
        load_pretrained(tmp_path, "missing")
    assert err.value.path == str(tmp_path / "missing.json")

    (tmp_path / "g.json").write_text("{")
    with pytest.raises(UserError, match="corrupt model config"):
        load_pretrained(tmp_path, "g")


def test_tiny_forecaster_overfits_a_fixed_batch():
    torch.manual_seed(0)
    cfg = tiny(resolution=16, base_width=8, max_width=32)
    model = Forecaster(cfg)
    image, m_t, m_tk = inputs(cfg, n=4, seed=1)
    target = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        loss = (model(image, m_t, m_tk).frame - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5, (losses[0], losses[-1])


def test_default_config_flop_budget():
    # Table 1 widths at 64x64, mask residual + dense decoder: at most 15 GFLOP per generated frame.
    cfg = ForecasterConfig()
    with torch.device("meta"):
        model = Forecaster(cfg)
    gflops = count_gflops_per_frame(model, cfg.resolution, cfg.motion_channels)
    assert 1 < gflops <= 15


# ---------------------------------------------------------------- values pinned against the paper (issue 9 §0)


def decoder_inputs(model: Forecaster, *args) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The (h, skips) that `model` hands its decoder f_D for one forward."""
    seen = {}
    handle = model.decoder.register_forward_pre_hook(lambda _m, a: seen.update(h=a[0], skips=a[1]))
    try:
        model(*args)
    finally:
        handle.remove()
    return seen["h"], seen["skips"]


def test_eq8_embedding_subtracts_the_current_motion():
    # Eq. 8: h = f_M(M_{t+k}) − f_M(M_t) + f_I(I_t); swapping the sign of either motion term breaks this.
    model = Forecaster(tiny()).eval()
    image, m_t, m_tk = inputs(tiny(), seed=4)
    with torch.no_grad():
        h, skips = decoder_inputs(model, image, m_t, m_tk)
        expected = model.motion_encoder(m_tk)[-1] - model.motion_encoder(m_t)[-1] + model.image_encoder(image)[-1]
        assert torch.allclose(h, expected, atol=1e-6)
        assert not torch.allclose(h, model.motion_encoder(m_t)[-1] - model.motion_encoder(m_tk)[-1]
                                  + model.image_encoder(image)[-1], atol=1e-3)
        # skip_content "image" (default): the skips are f_I's E0..E_{L-1} outputs, untouched by the analogy
        assert all(torch.equal(s, f) for s, f in zip(skips, model.image_encoder(image)[:-1]))


def test_eq6_difference_residual_on_constructed_inputs():
    # Eq. 6: Ĩ_{t+k} = I_t + Δ, Δ = 2·tanh(raw); with a content head fixed to raw = atanh(0.1), Δ = 0.2
    # everywhere, and the sum is clamped to the image range [-1, 1].
    model = Forecaster(tiny(residual="difference")).eval()
    with torch.no_grad():
        model.content_head.weight.zero_()
        model.content_head.bias.fill_(math.atanh(0.1))
    image = torch.tensor([-1.0, -0.3, 0.0, 0.5, 0.85, 1.0]).repeat_interleave(16 * 16 * 3 // 6 + 1)[: 3 * 256]
    image = image.reshape(1, 3, 16, 16)
    _, m_t, m_tk = inputs(tiny(), n=1)
    with torch.no_grad():
        out = model(image, m_t, m_tk)
    assert out.mask is None
    assert torch.allclose(out.content, torch.full_like(image, 0.2), atol=1e-6)
    assert torch.allclose(out.frame, (image + 0.2).clamp(max=1.0), atol=1e-6)
    assert out.frame[image == 0.5].allclose(torch.tensor(0.7)) and out.frame[image == 0.85].eq(1.0).all()


def test_skip_content_image_motion_carries_both_motion_encodings():
    cfg = tiny(skip_content="image_motion", resolution=64, max_width=512, dense_growth=4)
    model = Forecaster(cfg).eval()
    # D_i: previous block + 3 x w_{i-1} (f_I, f_M(M_{t+k}), f_M(M_t) from E_{i-1}) + dense inputs; widths 8, 8, 16, 32, 64
    assert [first_conv_in(b) for b in model.decoder.blocks] == [64 + 3 * 32, 64 + 3 * 16, 32 + 3 * 8 + 4, 16 + 3 * 8 + 8, 8 + 12]
    image, m_t, m_tk = inputs(cfg, seed=6)
    with torch.no_grad():
        _, skips = decoder_inputs(model, image, m_t, m_tk)
        f_i, f_tk, f_t = model.image_encoder(image), model.motion_encoder(m_tk), model.motion_encoder(m_t)
    assert len(skips) == 4
    for level, s in enumerate(skips):  # the authors' order: [f_I(I_t), f_M(M_{t+k}), f_M(M_t)]
        assert torch.allclose(s, torch.cat([f_i[level], f_tk[level], f_t[level]], 1), atol=1e-6)
    # T targets decoded at once repeat f_I and f_M(M_t) per target, as forward does one at a time
    targets = torch.stack([m_tk, m_t.flip(0)], 1)
    with torch.no_grad():
        out = model.forecast(image, m_t, targets)
        loop = [model(image, m_t, targets[:, i]).frame for i in range(2)]
    assert torch.allclose(out.frame, torch.stack(loop, 1), atol=1e-5)


def test_skip_content_is_checked_and_saved(tmp_path):
    from structvid.config import ExperimentConfig, load_config

    with pytest.raises(UserError, match="model.skip_content must be one of image, image_motion"):
        load_config(ExperimentConfig, None, ["model.skip_content=motion"])
    model = Forecaster(tiny(skip_content="image_motion")).eval()
    save_pretrained(model, tmp_path, "g")
    loaded = load_pretrained(tmp_path, "g")
    assert loaded.config.skip_content == "image_motion"
    args = inputs(tiny(), seed=7)
    with torch.no_grad():
        assert torch.equal(model(*args).frame, loaded(*args).frame)


def test_bundled_demo_forecaster_output_unchanged():
    # The bundled G_M's JSON predates skip_content: it loads with the default ("image") and computes what it
    # did when it was trained (values from the code before skip_content existed, identical bit for bit then).
    from structvid.cli import DEMO_DIR

    model = load_pretrained(DEMO_DIR, "forecaster").eval()
    assert model.config.skip_content == "image"
    g = torch.Generator().manual_seed(0)
    r, j = model.config.resolution, model.config.motion_channels
    image = torch.rand(2, 3, r, r, generator=g) * 2 - 1
    m_t, m_tk = torch.rand(2, j, r, r, generator=g), torch.rand(2, j, r, r, generator=g)
    with torch.no_grad():
        out = model(image, m_t, m_tk)
    assert out.frame.double().sum().item() == pytest.approx(107.07118123935652, abs=1e-3)
    assert out.mask.double().sum().item() == pytest.approx(1824.9367632050635, abs=1e-3)
    assert out.frame[0, :, 30, 30].tolist() == pytest.approx([0.012894433, -0.332978934, 0.031401012], abs=1e-5)
    assert out.mask[1, 0, 10, 40].item() == pytest.approx(0.33954969, abs=1e-5)
