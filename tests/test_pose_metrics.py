"""The §7.3 pose protocol: normalised error, PCK, baselines, report, and calibration on the real labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from structvid.data.penn_action import PennActionDataset, PennSequence
from structvid.structure.skeleton import PAPER_ACTIONS
from structvid.errors import UserError
from structvid.metrics.pose import (
    constant_velocity,
    evaluate_pose_protocol,
    limb_ratios,
    normalized_errors,
    pck,
    write_pose_report,
    zero_velocity,
)


def seq_from_xy(name: str, xy: np.ndarray, action: str = "golf_swing", bbox_side: float = 30.0) -> PennSequence:
    """xy (T, 13, 2) pixels, all visible; every frame's box is bbox_side x 40 (diagonal 50 for 30)."""
    T = len(xy)
    bbox = np.tile([10.0, 10.0, 10.0 + bbox_side, 50.0], (T, 1))
    return PennSequence(name, action, "front", xy[..., 0].copy(), xy[..., 1].copy(),
                        np.ones((T, 13), np.uint8), bbox, (100, 100, T), 1)


def test_normalized_error_and_pck_hand_computed() -> None:
    pred = np.zeros((1, 1, 3, 2))
    target = np.array([[[[3.0, 4.0], [6.0, 8.0], [300.0, 400.0]]]])  # distances 5, 10, 500
    visible = np.array([[[True, True, False]]])
    box = np.array([[0.0, 0.0, 30.0, 40.0]])  # diagonal 50
    assert normalized_errors(pred, target, visible, box)[0, 0] == pytest.approx(7.5 / 50)
    assert pck(pred, target, visible, box, alpha=0.15)[0, 0] == pytest.approx(0.5)  # 5 <= 7.5 < 10
    assert pck(pred, target, visible, box)[0, 0] == pytest.approx(1.0)  # alpha 0.2: 10 <= 10
    # torch inputs work too; a step with no visible joint is NaN
    none = np.zeros_like(visible)
    assert np.isnan(normalized_errors(torch.zeros(1, 1, 3, 2), torch.tensor(target), none, box)[0, 0])
    assert np.isnan(pck(pred, target, none, box)[0, 0])


def test_baselines_exact() -> None:
    t = np.arange(12, dtype=np.float64)[None, :, None, None]
    base = np.random.default_rng(0).uniform(0, 100, (1, 1, 13, 2))
    moving = base + t * np.array([1.5, -0.5])  # constant velocity
    np.testing.assert_allclose(constant_velocity(moving[:, :10], 2), moving[:, 10:12])
    static = np.repeat(base, 12, axis=1)
    np.testing.assert_array_equal(zero_velocity(static[:, :10], 2), static[:, 10:12])
    # [x, y, vis] input and torch input give the same
    with_vis = np.concatenate([moving, np.ones((1, 12, 13, 1))], -1)
    np.testing.assert_allclose(constant_velocity(with_vis[:, :10], 2), moving[:, 10:12])
    out = zero_velocity(torch.from_numpy(moving[:, :10]), 3)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 3, 13, 2)
    with pytest.raises(UserError):
        constant_velocity(moving[:, :1], 2)


def test_limb_ratios_hand_computed() -> None:
    from structvid.structure.skeleton import LIMBS, L_SHOULDER, R_SHOULDER

    rng = np.random.default_rng(0)
    observed = rng.uniform(0, 50, (3, 13, 3))
    observed[1] = observed[0]  # the median over 3 observed frames is then frame 0's length
    pose = observed[:1].copy()
    pose[0, R_SHOULDER, :2] = pose[0, L_SHOULDER, :2] + 0.5 * (observed[0, R_SHOULDER, :2] - observed[0, L_SHOULDER, :2])
    r = limb_ratios(pose, observed)
    assert r.shape == (1, len(LIMBS))
    k = LIMBS.index((L_SHOULDER, R_SHOULDER))
    assert r[0, k] == pytest.approx(0.5)
    moved = {i for i, l in enumerate(LIMBS) if R_SHOULDER in l}
    np.testing.assert_allclose(np.delete(r[0], sorted(moved)), 1.0)
    np.testing.assert_allclose(limb_ratios(torch.from_numpy(2 * observed[:2]), observed), 2.0)  # torch in, scale out


def test_protocol_shape_exclusion_and_exact_baselines(tmp_path) -> None:
    rng = np.random.default_rng(1)
    t = np.arange(45, dtype=np.float64)[:, None, None]
    start = rng.uniform(20, 80, (1, 13, 2))
    moving = seq_from_xy("moving", start + t * np.array([0.5, 0.25]), "golf_swing")
    static = seq_from_xy("static", np.repeat(start, 42, 0), "jump_rope")
    short = seq_from_xy("short", np.repeat(start, 41, 0), "jump_rope")

    def shifted(observed: np.ndarray, horizon: int) -> np.ndarray:
        return zero_velocity(observed, horizon) + np.array([3.0, 4.0])  # 5 px off the static pose

    result = evaluate_pose_protocol([moving, static, short], {"shifted": shifted})
    assert set(result) == {"horizons", "methods", "excluded", "num_sequences"}
    assert result["horizons"] == [1, 8, 16, 32] and result["excluded"] == 1 and result["num_sequences"] == 2
    assert list(result["methods"]) == ["zero_velocity", "constant_velocity", "shifted"]
    for r in result["methods"].values():
        assert set(r) == {"overall", "pck", "curve", "per_action"}
        assert len(r["overall"]) == len(r["pck"]) == 4 and len(r["curve"]) == 32
        assert [r["curve"][h - 1] for h in (1, 8, 16, 32)] == r["overall"]
        assert set(r["per_action"]) == {"golf_swing", "jump_rope"}
    m = result["methods"]
    # exact up to float32 rounding of PennSequence.joints (~1e-7 px here)
    assert m["constant_velocity"]["per_action"]["golf_swing"] == pytest.approx([0, 0, 0, 0], abs=1e-7)
    assert m["zero_velocity"]["per_action"]["jump_rope"] == [0.0, 0.0, 0.0, 0.0]
    # zero velocity on the moving one: k steps of |(0.5, 0.25)| px / diagonal 50
    speed = np.hypot(0.5, 0.25) / 50
    assert m["zero_velocity"]["per_action"]["golf_swing"] == pytest.approx([speed * h for h in (1, 8, 16, 32)])
    assert m["zero_velocity"]["overall"][3] == pytest.approx(speed * 32 / 2)
    assert m["zero_velocity"]["curve"] == pytest.approx([speed * k / 2 for k in range(1, 33)])
    assert m["shifted"]["per_action"]["jump_rope"] == pytest.approx([0.1] * 4)
    assert m["constant_velocity"]["pck"] == [1.0] * 4
    json.dumps(result)  # JSON-ready

    write_pose_report(result, tmp_path / "report")
    assert json.loads((tmp_path / "report" / "poses.json").read_text()) == result
    md = (tmp_path / "report" / "poses.md").read_text()
    assert "| zero_velocity |" in md and "| jump_rope |" in md and "h=32" in md
    assert (tmp_path / "report" / "poses_error.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["poses.json", "poses.md", "poses_error.png"]


def test_protocol_bad_inputs() -> None:
    start = np.zeros((1, 13, 2)) + 50
    ok = seq_from_xy("ok", np.repeat(start, 42, 0))
    with pytest.raises(UserError, match="no sequence"):
        evaluate_pose_protocol([seq_from_xy("short", np.repeat(start, 20, 0))])
    with pytest.raises(ValueError, match="reserved"):
        evaluate_pose_protocol([ok], {"zero_velocity": zero_velocity})
    with pytest.raises(ValueError, match="must return"):
        evaluate_pose_protocol([ok], {"bad": lambda o, k: np.zeros((1, k, 12, 2))})
    with pytest.raises(UserError, match="horizons"):
        evaluate_pose_protocol([ok], horizons=(1, 64))
    nan = seq_from_xy("nan", np.repeat(start, 42, 0))
    nan.x[3, 0] = np.nan
    with pytest.raises(UserError, match="NaN") as e:
        evaluate_pose_protocol([nan])
    assert e.value.path == "nan"


def test_paper_baseline_numbers_on_real_labels(shared_data) -> None:
    """§7.3 protocol on the official-training labels of the paper's 8 actions: 0.178 / 0.346 at h=32."""
    ds = PennActionDataset(shared_data / "penn_action", actions=PAPER_ACTIONS)
    result = evaluate_pose_protocol([ds.label(n) for n in ds.names])
    assert result["num_sequences"] + result["excluded"] == len(ds.names) == 642
    assert result["excluded"] == 159
    assert result["methods"]["zero_velocity"]["overall"][-1] == pytest.approx(0.178, abs=0.002)
    assert result["methods"]["constant_velocity"]["overall"][-1] == pytest.approx(0.346, abs=0.002)
    assert set(result["methods"]["zero_velocity"]["per_action"]) == set(PAPER_ACTIONS)
