"""Feature similarity loss ℓ_feat (§7.3, Eq. 21), added to G_M's objective (Eq. 9) for the pose tasks.

    ℓ_feat = Σ_i ‖C_i(I_{t+k}) − C_i(Ĩ_{t+k})‖²₂                                              (Eq. 21)

C_1 is the last convolutional layer of an ImageNet VGG16 applied to a 224×224 crop of the person, the box
computed from the ground-truth joints (§7.3); C_2 is the last layer of a stacked-hourglass pose network,
which users plug in through the `extra_extractors` hook of `build_feature_loss` (no hourglass ships here).

Weights cannot be downloaded by this library. Get torchvision's ImageNet VGG16 checkpoint
(https://download.pytorch.org/models/vgg16-397923af.pth, i.e. `torchvision.models.VGG16_Weights.IMAGENET1K_V1`,
or a safetensors conversion of it) and pass it as `loss.feat_vgg_weights=PATH` together with `loss.feat=WEIGHT`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from structvid.config import LossConfig
from structvid.errors import UserError

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
# torchvision's `cfgs["D"]`: conv widths, "M" = 2x2 max-pool. Module indices follow nn.Sequential order.
_VGG16_LAYOUT: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
MIN_VGG_CROP = 16  # conv5_3 sits after 4 pools: a 16x16 input gives a 1x1 feature map


class VGG16Features(nn.Module):
    """VGG16's convolutional trunk (13 conv3x3+ReLU, 5 max-pools), C_1 of Eq. 21.

    Parameters are named as in torchvision's `vgg16().features` (`features.0.weight` ... `features.28.bias`,
    26 tensors), so the ImageNet checkpoint loads directly (see `load_vgg16`). `forward` takes images in
    [-1, 1], maps them to [0, 1] and normalises with the ImageNet mean/std, and returns the activation of
    the last convolutional layer **after conv5_3's ReLU** (module 29; (N, 512, h/16, w/16)). pool5 (module 30)
    is kept for the checkpoint layout but not applied.
    """

    OUTPUT_INDEX = 30  # features[:30] ends with conv5_3's ReLU

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG16_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, int(item), 3, padding=1), nn.ReLU(inplace=True)]
                channels = int(item)
        self.features = nn.Sequential(*layers)
        # Not persistent: the state dict holds exactly torchvision's keys.
        self.register_buffer("mean", torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        x = ((images + 1) / 2 - self.mean.to(images.dtype)) / self.std.to(images.dtype)
        return self.features[: self.OUTPUT_INDEX](x)


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise UserError(f"VGG16 weights file not found (get torchvision's ImageNet checkpoint: {VGG16_URL})", path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt / foreign files raise many different types
        reason = (str(e).splitlines() or [""])[0][:200]
        raise UserError(f"cannot read VGG16 weights ({e.__class__.__name__}: {reason})", path) from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserError("VGG16 weights must be a state dict of tensors (name -> tensor)", path)
    return state


def load_vgg16(path: str | Path) -> VGG16Features:
    """Load `VGG16Features` from a torchvision-layout state dict (.pth/.pt via torch.load(weights_only=True),
    or .safetensors). `classifier.*` keys (a full VGG16 checkpoint) and a DataParallel `module.` prefix are
    ignored. A missing, unreadable or mismatched file raises `UserError` naming it.

    Where to get it: torchvision's ImageNet VGG16 checkpoint, `vgg16-397923af.pth` (see `VGG16_URL`);
    pass it as `loss.feat_vgg_weights=PATH`.
    """
    path = Path(path)
    state = {k.removeprefix("module."): v for k, v in _read_state_dict(path).items()}
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    model = VGG16Features()
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or unexpected:
        raise UserError(f"not a VGG16 (torchvision layout) state dict: missing {missing[:4]}, "
                        f"unexpected {unexpected[:4]}", path)
    wrong = [f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}"
             for k, v in expected.items() if state[k].shape != v.shape]
    if wrong:
        raise UserError(f"VGG16 weight shapes do not match ({'; '.join(wrong[:3])})", path)
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return model.eval().requires_grad_(False)


# ---------------------------------------------------------------- person crop


def person_boxes(joints: Tensor, height: int, width: int, margin: float = 0.15) -> Tensor:
    """(N, J, 3) joints [x, y, visibility] in pixel coordinates -> (N, 4) square boxes (x0, y0, x1, y1).

    Pixel i's centre is at coordinate i, so it covers [i − 0.5, i + 0.5] and the whole image is
    [−0.5, W − 0.5]. The box covers the pixels of every visible joint (visibility > 0): its side is the
    longer side of their bounding box times (1 + 2·margin), centred on it. A sample with no visible joint
    gets the square centred on the image with side max(H, W). No gradient flows through the box.
    """
    joints = joints.detach().float()
    xy, vis = joints[..., :2], joints[..., 2] > 0
    lo = torch.where(vis[..., None], xy, float("inf")).amin(1) - 0.5
    hi = torch.where(vis[..., None], xy, float("-inf")).amax(1) + 0.5
    any_vis = vis.any(1, keepdim=True)
    image_lo = torch.tensor([-0.5, -0.5], device=joints.device).expand_as(lo)
    image_hi = torch.tensor([width - 0.5, height - 0.5], device=joints.device).expand_as(hi)
    centre = torch.where(any_vis, (lo + hi) / 2, (image_lo + image_hi) / 2)
    side = torch.where(any_vis[:, 0], (hi - lo).amax(1) * (1 + 2 * margin), float(max(height, width)))
    half = side[:, None] / 2
    return torch.cat([centre - half, centre + half], 1)


def crop_boxes(images: Tensor, boxes: Tensor, size: int, padding_mode: str = "zeros") -> Tensor:
    """Differentiable bilinear crop of (N, C, H, W) `images` to (N, C, size, size) along (N, 4) `boxes`
    (`person_boxes` convention); output pixel j samples x0 + (j + 0.5)·side/size. Outside the image:
    `padding_mode` of grid_sample (zeros = mid-grey for images in [-1, 1])."""
    n, _, h, w = images.shape
    boxes = boxes.to(device=images.device, dtype=torch.float32)
    x0, y0, x1, y1 = boxes.unbind(1)
    theta = torch.zeros(n, 2, 3, device=images.device)
    # grid_sample (align_corners=False): normalised u = (2x + 1)/W − 1 for pixel coordinate x.
    theta[:, 0, 0], theta[:, 0, 2] = (x1 - x0) / w, (x0 + x1 + 1) / w - 1
    theta[:, 1, 1], theta[:, 1, 2] = (y1 - y0) / h, (y0 + y1 + 1) / h - 1
    grid = F.affine_grid(theta, [n, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def person_crop(images: Tensor, joints: Tensor, size: int = 224, margin: float = 0.15,
                padding_mode: str = "zeros") -> Tensor:
    """(N, 3, H, W) images -> (N, 3, size, size) square crops around the visible joints (§7.3: the box comes
    from the ground-truth joints and is scaled to 224×224). Gradients flow to `images`."""
    return crop_boxes(images, person_boxes(joints, images.shape[-2], images.shape[-1], margin), size, padding_mode)


# ---------------------------------------------------------------- the loss


class FeatureExtractor(nn.Module):
    """One C_i of Eq. 21 with its input transform: `net` (any module (N, 3, h, w) -> features, fed images in
    [-1, 1]) applied to a `crop`×`crop` person crop, or to the full image when `crop` is None. Wrap a
    stacked hourglass as `FeatureExtractor(hourglass, crop=256)` to give it its own input size."""

    def __init__(self, net: nn.Module, crop: int | None = 224, margin: float = 0.15) -> None:
        super().__init__()
        self.net, self.crop, self.margin = net, crop, margin

    def forward(self, images: Tensor, joints: Tensor) -> Tensor:
        x = images if self.crop is None else person_crop(images, joints, self.crop, self.margin)
        return self.net(x)


class FeatureLoss(nn.Module):
    """ℓ_feat of Eq. 21 over frozen extractors C_i (eval mode, requires_grad False).

    `forward(real, fake, joints)` = Σ_i mean((C_i(real) − C_i(fake))²): the squared L2 norm of Eq. 21,
    averaged over elements (batch included) rather than summed so that the weight `loss.feat` does not
    depend on feature-map size or batch size. Real features are computed without gradient; gradients reach
    `fake` only. Bare modules in `extractors` are wrapped as `FeatureExtractor(m, crop, margin)`. The module
    moves itself to the images' device on first use.
    """

    def __init__(self, extractors: Sequence[nn.Module], crop: int | None = 224, margin: float = 0.15) -> None:
        super().__init__()
        if not extractors:
            raise ValueError("FeatureLoss needs at least one extractor")
        wrapped = [m if isinstance(m, FeatureExtractor) else FeatureExtractor(m, crop, margin) for m in extractors]
        self.extractors = nn.ModuleList(wrapped)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "FeatureLoss":
        return super().train(False)  # frozen: batch-norm statistics etc. of C_i never update

    def terms(self, real: Tensor, fake: Tensor, joints: Tensor) -> list[Tensor]:
        """Per-extractor mean squared feature distances (the summands of Eq. 21)."""
        param = next(self.parameters(), None)
        if param is not None and param.device != fake.device:
            self.to(fake.device)
        out = []
        for c in self.extractors:
            with torch.no_grad():
                target = c(real, joints).float()
            out.append((c(fake, joints).float() - target).pow(2).mean())
        return out

    def forward(self, real: Tensor, fake: Tensor, joints: Tensor) -> Tensor:
        return torch.stack(self.terms(real, fake, joints)).sum()


def build_feature_loss(cfg: LossConfig, extra_extractors: Iterable[nn.Module] | None = None) -> FeatureLoss | None:
    """The §7.3 feature loss from `cfg` (None when `cfg.feat == 0`).

    C_1 = VGG16 (conv5_3 after ReLU) loaded from `cfg.feat_vgg_weights`, fed `cfg.feat_crop`² person crops.
    `extra_extractors` is the hook for C_2 (e.g. a stacked hourglass): a bare `nn.Module` gets the same
    person crop; wrap it in `FeatureExtractor(net, crop=256)` for its own input size.
    """
    if cfg.feat < 0:
        raise UserError(f"loss.feat must be >= 0, got {cfg.feat}")
    if cfg.feat == 0:
        return None
    if not cfg.feat_vgg_weights:
        raise UserError(
            "loss.feat > 0 (the §7.3 feature loss) needs ImageNet VGG16 weights: set loss.feat_vgg_weights=PATH "
            f"to torchvision's vgg16-397923af.pth ({VGG16_URL}) or a safetensors conversion of it, or "
            "loss.feat_vgg_weights=download to fetch and verify it into the cache"
        )
    if cfg.feat_crop < MIN_VGG_CROP:
        raise UserError(f"loss.feat_crop must be >= {MIN_VGG_CROP}, got {cfg.feat_crop}")
    weights = cfg.feat_vgg_weights
    if weights == "download":
        from structvid.io.download import fetch

        weights = fetch("vgg16")
    return FeatureLoss([load_vgg16(weights), *(extra_extractors or ())], crop=cfg.feat_crop)
