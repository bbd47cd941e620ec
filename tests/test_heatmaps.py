import math

import numpy as np
import pytest
import torch

from structvid.structure.skeleton import LIMBS, NUM_JOINTS, PAPER_ACTIONS, PENN_ACTIONS, PENN_JOINTS, draw_skeleton
from structvid.structure.base import Structure
from structvid.structure.heatmaps import JointHeatmaps


def naive(joints: np.ndarray, h: int, w: int, sigma: float) -> np.ndarray:
    rows, cols = np.mgrid[0:h, 0:w]
    out = np.zeros((len(joints), h, w))
    for j, (x, y, v) in enumerate(joints):
        if v > 0 and np.isfinite(x) and np.isfinite(y) and 0 <= x <= w - 1 and 0 <= y <= h - 1:
            out[j] = np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma**2))
    return out


def test_skeleton_constants():
    assert len(PENN_JOINTS) == NUM_JOINTS == 13
    assert len(PENN_ACTIONS) == 15 and set(PAPER_ACTIONS) <= set(PENN_ACTIONS) and len(PAPER_ACTIONS) == 8
    assert all(0 <= a < 13 and 0 <= b < 13 and a != b for a, b in LIMBS)
    assert {j for limb in LIMBS for j in limb} == set(range(13))


def test_is_a_structure():
    hm = JointHeatmaps()
    assert isinstance(hm, Structure) and hm.channels == 13 and hm.name == "joint_heatmaps"
    with pytest.raises(TypeError):
        Structure()  # abstract


def test_peak_at_joint_pixel_centre_convention():
    hm = JointHeatmaps(num_joints=2, sigma=1.5)
    joints = torch.tensor([[3.0, 5.0, 1.0], [0.0, 0.0, 1.0]])
    maps = hm.render(joints, 16, 20)
    assert maps.shape == (2, 16, 20) and maps.dtype == torch.float32
    r, c = divmod(int(maps[0].argmax()), 20)
    assert (r, c) == (5, 3)  # row = y, column = x
    assert maps[0, 5, 3].item() == 1.0  # exactly 1 at the joint
    assert maps[1, 0, 0].item() == 1.0  # the corner pixel centre is inside the frame


def test_sigma_width():
    sigma = 2.0
    hm = JointHeatmaps(num_joints=1, sigma=sigma)
    m = hm.render(torch.tensor([[8.0, 6.0, 1.0]], dtype=torch.float64), 13, 17)
    assert m[0, 6, 8 + 2].item() == pytest.approx(math.exp(-0.5), abs=1e-12)  # distance sigma
    assert m[0, 6 - 2, 8].item() == pytest.approx(math.exp(-0.5), abs=1e-12)
    assert m[0, 7, 9].item() == pytest.approx(math.exp(-2 / (2 * sigma**2)), abs=1e-12)
    assert m.sum().item() == pytest.approx(2 * math.pi * sigma**2, rel=5e-3)  # tails cut by the frame


def test_matches_direct_formula_subpixel():
    rng = np.random.default_rng(0)
    joints = np.concatenate([rng.uniform(-2, 20, (13, 2)), rng.integers(0, 2, (13, 1))], 1)
    hm = JointHeatmaps(sigma=1.7)
    got = hm.render(torch.from_numpy(joints), 15, 18).numpy()
    np.testing.assert_allclose(got, naive(joints, 15, 18, 1.7), atol=1e-12)
    np.testing.assert_allclose(hm.render_numpy(joints, 15, 18), naive(joints, 15, 18, 1.7), atol=1e-6)


@pytest.mark.parametrize("joint", [
    [5.0, 5.0, 0.0],  # invisible
    [5.0, 5.0, -1.0],
    [float("nan"), 5.0, 1.0],
    [5.0, float("nan"), 1.0],
    [float("inf"), 5.0, 1.0],
    [-0.01, 5.0, 1.0],  # outside the frame
    [9.01, 5.0, 1.0],  # x > W - 1
    [5.0, 8.5, 1.0],  # y > H - 1
    [5.0, -3.0, 1.0],
])
def test_missing_joints_give_zero_channels(joint):
    hm = JointHeatmaps(num_joints=2)
    maps = hm.render(torch.tensor([joint, [2.0, 2.0, 1.0]]), 8, 10)
    assert torch.all(maps[0] == 0) and torch.isfinite(maps).all()
    assert maps[1, 2, 2] == 1.0  # the other joint is unaffected


def test_frame_edges_are_inside():
    maps = JointHeatmaps(num_joints=1).render(torch.tensor([[9.0, 7.0, 1.0]]), 8, 10)
    assert maps[0, 7, 9] == 1.0


def test_batch_shapes_and_dtypes():
    hm = JointHeatmaps()
    joints = torch.rand(5, 13, 3) * 10
    joints[..., 2] = 1
    assert hm.render(joints, 12, 14).shape == (5, 13, 12, 14)
    assert hm.render(joints[0], 12, 14).shape == (13, 12, 14)
    assert hm.render(joints[:0], 12, 14).shape == (0, 13, 12, 14)
    assert hm.render(joints.double(), 12, 14).dtype == torch.float64
    half = hm.render(torch.tensor([[[4.0, 3.0, 1.0]] * 13]).half(), 8, 8)
    assert half.dtype == torch.float16 and half[0, 0, 3, 4].item() == 1.0
    assert hm.render(torch.tensor([[4, 3, 1]] * 13), 8, 8).dtype == torch.float32  # integer input
    batch = hm.render(joints, 12, 14)
    torch.testing.assert_close(batch[3], hm.render(joints[3], 12, 14))
    with pytest.raises(ValueError):
        hm.render(torch.zeros(2, 12, 3), 8, 8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_gpu_matches_cpu():
    hm = JointHeatmaps()
    joints = torch.rand(4, 13, 3) * 30
    out = hm.render(joints.cuda(), 32, 32)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), hm.render(joints, 32, 32))


def test_draw_skeleton():
    frame = np.zeros((32, 32, 3), np.uint8)
    joints = np.zeros((13, 3))
    joints[:, 0] = np.linspace(4, 28, 13)
    joints[:, 1] = 16
    joints[:, 2] = 1
    joints[5] = [np.nan, np.nan, 1]
    joints[0] = [28, 3, 0]  # invisible, away from the rest
    out = draw_skeleton(frame, joints, color=(0, 255, 0))
    assert frame.sum() == 0  # input untouched
    assert out[16, int(joints[3, 0]), 1] > 0 and out[..., 0].max() == 0
    assert out[:8].sum() == 0  # neither the invisible head nor its limbs are drawn
