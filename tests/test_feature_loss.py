"""§7.3 feature similarity loss (Eq. 21), with randomly initialised extractors (no real weights here)."""

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from structvid.config import LossConfig
from structvid.errors import UserError
from structvid.losses.features import (
    FeatureExtractor,
    FeatureLoss,
    VGG16Features,
    build_feature_loss,
    load_vgg16,
    person_boxes,
    person_crop,
)
from structvid.losses.forecast import ForecastLoss

CONVS = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


@pytest.fixture(scope="module")
def vgg() -> VGG16Features:
    torch.manual_seed(0)
    return VGG16Features()


@pytest.fixture(scope="module")
def vgg_file(vgg, tmp_path_factory):
    path = tmp_path_factory.mktemp("vgg") / "vgg16.pth"
    torch.save(vgg.state_dict(), path)
    return path


def test_vgg16_state_dict_matches_torchvision_layout(vgg):
    state = vgg.state_dict()
    expected = {}
    c_in = 3
    for i, c_out in zip(CONVS, WIDTHS):
        expected[f"features.{i}.weight"] = (c_out, c_in, 3, 3)
        expected[f"features.{i}.bias"] = (c_out,)
        c_in = c_out
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert len(state) == 26 and state["features.28.weight"].shape == (512, 512, 3, 3)
    # last conv layer after ReLU (conv5_3, before pool5): stride 16, non-negative
    feats = vgg(torch.rand(1, 3, 32, 32) * 2 - 1)
    assert feats.shape == (1, 512, 2, 2) and feats.min() >= 0


def test_load_vgg16_round_trips_pth_safetensors_and_full_checkpoint(vgg, vgg_file, tmp_path):
    state = vgg.state_dict()
    sft = tmp_path / "vgg16.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(sft))
    full = tmp_path / "vgg16_full.pth"  # a whole-VGG16 checkpoint: classifier.* must be ignored
    torch.save({**state, "classifier.0.weight": torch.zeros(4, 8), "classifier.0.bias": torch.zeros(4)}, full)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    for path in (vgg_file, sft, full):
        loaded = load_vgg16(path)
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in state.items())
        assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
        assert torch.allclose(loaded(x), vgg(x))


def test_load_vgg16_bad_files_raise_user_error_naming_them(vgg, tmp_path):
    state = vgg.state_dict()
    wrong_shape = tmp_path / "wrong_shape.pth"
    torch.save({**state, "features.28.weight": torch.zeros(512, 256, 3, 3)}, wrong_shape)
    missing = tmp_path / "missing_key.pth"
    torch.save({k: v for k, v in state.items() if k != "features.0.bias"}, missing)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a checkpoint")
    for path, words in ((wrong_shape, "features.28.weight"), (missing, "features.0.bias"),
                        (corrupt, "cannot read"), (tmp_path / "absent.pth", "not found")):
        with pytest.raises(UserError) as err:
            load_vgg16(path)
        assert err.value.path == str(path) and words in str(err.value)


def test_person_boxes_contain_visible_joints_and_ignore_invisible():
    joints = torch.tensor([[[10.0, 20.0, 1], [30.0, 25.0, 1], [60.0, 2.0, 0], [15.0, 40.0, 1]],
                           [[5.0, 5.0, 0], [50.0, 50.0, 0], [0.0, 0.0, 0], [1.0, 1.0, 0]]])
    boxes = person_boxes(joints, 64, 64, margin=0.1)
    x0, y0, x1, y1 = boxes[0].tolist()
    # visible extent [9.5, 30.5] x [19.5, 40.5] (pixel edges): square side 21 * 1.2, same centre
    assert np.allclose([x1 - x0, y1 - y0], 21 * 1.2) and np.allclose([(x0 + x1) / 2, (y0 + y1) / 2], [20, 30])
    vis = joints[0, joints[0, :, 2] > 0, :2]
    assert (vis[:, 0] > x0).all() and (vis[:, 0] < x1).all() and (vis[:, 1] > y0).all() and (vis[:, 1] < y1).all()
    assert not (x0 < 60 < x1 and y0 < 2 < y1)  # the invisible joint lies outside
    assert boxes[1].tolist() == [-0.5, -0.5, 63.5, 63.5]  # nothing visible: the whole image


def test_person_crop_places_known_pixel_and_is_identity_on_whole_image():
    image = torch.zeros(1, 3, 64, 64)
    image[0, 0, 30, 20] = 1.0  # (y=30, x=20)
    joints = torch.tensor([[[10.0, 10.0, 1], [41.0, 41.0, 1], [60.0, 2.0, 0]]])  # box [9.5, 41.5]²: 32 px
    crop = person_crop(image, joints, size=32, margin=0.0)
    assert crop.shape == (1, 3, 32, 32)
    assert torch.isclose(crop[0, 0, 20, 10], torch.tensor(1.0)) and torch.isclose(crop.sum(), torch.tensor(1.0))
    img = torch.rand(2, 3, 16, 16)
    none_visible = torch.zeros(2, 4, 3)
    assert torch.allclose(person_crop(img, none_visible, size=16), img, atol=1e-6)


def test_feature_loss_matches_hand_computation():
    torch.manual_seed(0)
    c1, c2 = nn.Conv2d(3, 2, 1), nn.Conv2d(3, 4, 1, bias=False)
    loss = FeatureLoss([c1, c2], crop=16)
    real, fake = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(2, 3, 16, 16) * 2 - 1
    joints = torch.zeros(2, 5, 3)  # nothing visible -> the crop is the whole 16x16 image
    diff = (real - fake).numpy()  # linear extractors: C(real) - C(fake) = W (real - fake)
    expected = sum(np.mean(np.einsum("oc,nchw->nohw", c.weight.detach().numpy()[:, :, 0, 0], diff) ** 2)
                   for c in (c1, c2))
    assert np.isclose(loss(real, fake, joints).item(), expected, rtol=1e-5)
    assert loss(real, real.clone(), joints).item() == 0.0


def test_feature_loss_gradient_reaches_fake_only(vgg):
    loss = FeatureLoss([vgg], crop=32)
    loss.train()  # stays frozen in eval mode
    assert not any(m.training for m in loss.modules())
    joints = torch.tensor([[[8.0, 8.0, 1], [40.0, 50.0, 1]]])
    real = torch.rand(1, 3, 64, 64) * 2 - 1
    assert loss(real, real.clone(), joints).item() == 0.0
    fake = (torch.rand(1, 3, 64, 64) * 2 - 1).requires_grad_(True)
    value = loss(real, fake, joints)
    assert value.item() > 0
    value.backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.parameters())


class _Out:
    def __init__(self, frame):
        self.frame, self.mask = frame, None


def test_forecast_loss_adds_weighted_feature_term():
    torch.manual_seed(0)
    gen = lambda i, mt, mk: _Out(torch.tanh(i * 2))  # noqa: E731
    critic = lambda x, m: x.flatten(1).sum(1)  # noqa: E731
    batch = {"image_t": torch.rand(2, 3, 16, 16), "motion_t": torch.zeros(2, 1, 16, 16),
             "image_tk": torch.rand(2, 3, 16, 16) * 2 - 1, "motion_tk": torch.zeros(2, 1, 16, 16),
             "joints_tk": torch.tensor([[[2.0, 3.0, 1], [12.0, 9.0, 1]]] * 2)}
    features = FeatureLoss([nn.Conv2d(3, 2, 3)], crop=16)
    base, base_stats = ForecastLoss(gen, critic, LossConfig(), features=features).generator_phase(batch)
    assert "generator/feat" not in base_stats  # weight 0: off
    value, stats = ForecastLoss(gen, critic, LossConfig(feat=0.7), features=features).generator_phase(batch)
    expected = features(batch["image_tk"], gen(batch["image_t"], None, None).frame, batch["joints_tk"]).item()
    assert expected > 0 and np.isclose(stats["generator/feat"], expected)
    assert np.isclose(value.item(), base.item() + 0.7 * expected, rtol=1e-6)


def test_build_feature_loss(vgg_file):
    assert build_feature_loss(LossConfig()) is None
    with pytest.raises(UserError, match="loss.feat_vgg_weights=PATH"):
        build_feature_loss(LossConfig(feat=1.0))
    with pytest.raises(UserError, match="loss.feat_vgg_weights=PATH"):  # ForecastLoss builds it itself
        ForecastLoss(lambda *a: None, lambda *a: None, LossConfig(feat=1.0))
    with pytest.raises(UserError, match="not found"):
        build_feature_loss(LossConfig(feat=1.0, feat_vgg_weights=str(vgg_file) + ".nope"))
    hourglass = FeatureExtractor(nn.Conv2d(3, 1, 1), crop=24)  # the C_2 hook with its own input size
    loss = build_feature_loss(LossConfig(feat=1.0, feat_vgg_weights=str(vgg_file), feat_crop=32),
                              [hourglass, nn.Identity()])
    assert isinstance(loss.extractors[0].net, VGG16Features) and loss.extractors[0].crop == 32
    assert loss.extractors[1] is hourglass and loss.extractors[2].crop == 32
    joints = torch.tensor([[[4.0, 4.0, 1], [20.0, 28.0, 1]]])
    assert loss(torch.zeros(1, 3, 32, 32), torch.ones(1, 3, 32, 32), joints).item() > 0
