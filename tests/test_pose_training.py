import torch

from structvid.structure.skeleton import PENN_JOINTS
from structvid.training.tasks import mirror_poses


def test_mirror_negates_x_swaps_sides_and_is_an_involution():
    torch.manual_seed(0)
    batch = {"observed": torch.randn(3, 10, 13, 2), "target": torch.randn(3, 4, 13, 2),
             "visible": torch.rand(3, 4, 13) > 0.3}
    which = torch.tensor([True, False, True])
    out = mirror_poses(batch, which)
    lw, rw = PENN_JOINTS.index("left_wrist"), PENN_JOINTS.index("right_wrist")
    assert torch.equal(out["observed"][0, :, lw, 0], -batch["observed"][0, :, rw, 0])
    assert torch.equal(out["observed"][0, :, lw, 1], batch["observed"][0, :, rw, 1])
    assert torch.equal(out["visible"][2, :, lw], batch["visible"][2, :, rw])
    assert torch.equal(out["target"][1], batch["target"][1])  # not selected: unchanged
    back = mirror_poses(out, which)
    for k in batch:
        assert torch.equal(back[k], batch[k])
