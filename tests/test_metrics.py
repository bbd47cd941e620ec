"""Tests for structvid.metrics (registry + pixel metrics), checked against closed forms."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from structvid.errors import UserError
from structvid.io.images import to_tensor
from structvid.metrics import registry
from structvid.metrics.pixel import PSNR_CAP, mse, psnr, ssim


def textured(t: int = 3, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(20, 220, (t, size, size, 3), dtype=np.uint8)


def test_constant_offset_closed_form() -> None:
    target = textured()
    pred = target + 10  # values stay below 255: no wrap-around
    expected_mse = (10 / 255) ** 2
    np.testing.assert_allclose(mse(pred, target), expected_mse, rtol=1e-12)
    np.testing.assert_allclose(psnr(pred, target), 20 * math.log10(255 / 10), rtol=1e-12)  # 28.13 dB


def test_float_inputs_follow_minus_one_to_one_convention() -> None:
    target = textured()
    pred = target + 10
    # torch (T, 3, H, W) in [-1, 1] and numpy floats give the same values as uint8
    np.testing.assert_allclose(psnr(to_tensor(pred), to_tensor(target)), psnr(pred, target), rtol=1e-5)
    np.testing.assert_allclose(mse(to_tensor(pred).movedim(1, -1).numpy(), target), mse(pred, target), rtol=1e-5)


def test_identical_and_noise() -> None:
    target = textured()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the infinite PSNR is capped without warnings
        assert (psnr(target, target) == PSNR_CAP).all()
    np.testing.assert_allclose(ssim(target, target), 1.0)
    assert (mse(target, target) == 0).all()
    smooth = np.broadcast_to(np.linspace(40, 200, 32)[None, None, :, None], target.shape).astype(np.uint8)
    noisy = np.clip(smooth + np.random.default_rng(1).normal(0, 25, target.shape), 0, 255).astype(np.uint8)
    values = ssim(noisy, smooth)
    assert values.shape == (3,) and (values < 0.5).all()
    assert (psnr(noisy, smooth) < 25).all()


def test_single_frame_and_shape_mismatch() -> None:
    a = textured(t=1)[0]
    assert mse(a, a).shape == (1,)
    with pytest.raises(UserError, match="shape"):
        mse(textured(size=32), textured(size=16))
    with pytest.raises(UserError, match="shape"):
        ssim(textured(t=3), textured(t=2))


def test_registry_compute() -> None:
    assert {"mse", "psnr", "ssim"} <= set(registry.available())
    target = textured()
    pred = target.copy()
    pred[1] += 10
    out = registry.compute(["mse", "psnr"], pred, target)
    assert set(out) == {"mse", "psnr"}
    assert out["psnr"]["per_frame"][0] == PSNR_CAP
    assert out["psnr"]["mean"] == pytest.approx((2 * PSNR_CAP + 20 * math.log10(25.5)) / 3)
    assert isinstance(out["mse"]["mean"], float) and len(out["mse"]["per_frame"]) == 3


def test_registry_errors() -> None:
    with pytest.raises(UserError, match=r"unknown metric 'fvd'; available: .*mse.*psnr.*ssim"):
        registry.get("fvd")
    with pytest.raises(UserError, match="unknown metric"):
        registry.compute(["psnr", "nope"], textured(), textured())
    with pytest.raises(ValueError, match="already registered"):
        registry.register("mse")(lambda p, t: np.zeros(len(p)))


def test_register_custom_metric() -> None:
    @registry.register("test_mean_abs")
    def mean_abs(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
        return np.abs(pred.astype(float) - target).mean(axis=(1, 2, 3))

    try:
        assert registry.get("test_mean_abs") is mean_abs
        t = textured()
        assert registry.compute(["test_mean_abs"], t + 3, t)["test_mean_abs"]["mean"] == pytest.approx(3.0)
    finally:
        registry._METRICS.pop("test_mean_abs")
