"""paste_back: generated crops back into the full-resolution picture (inverse of crop_frame)."""

from __future__ import annotations

import numpy as np
import pytest

from structvid.structure.framing import crop_frame, paste_back, paste_back_many

H, W, S = 240, 320, 64
Y, X = np.mgrid[0:H, 0:W].astype(np.float64)  # pixel centres
# a smooth picture: bilinear crop -> resize -> bilinear paste reproduces it closely
IMAGE = np.stack([127 + 100 * np.sin(X / 23 + Y / 41), 127 + 100 * np.cos(Y / 29),
                  127 + 80 * np.sin((X - Y) / 37)], -1).round().astype(np.uint8)

BOXES = [
    (160.0, 120.0, 100.0),  # box larger than the crop (area-downscaled by crop_frame)
    (160.0, 120.0, 50.0),  # smaller (upscaled)
    (200.3, 100.7, 77.7),  # fractional
    (10.0, 230.0, 120.0),  # partly outside the image (bottom-left corner)
]


def _in_box(box, lo=0.0, hi=1.0):
    """Pixels whose centres lie in the box's part [lo, hi] (fractions of its side, both axes)."""
    cx, cy, side = box
    x0, y0 = cx - side / 2, cy - side / 2
    return (X > x0 + lo * side) & (X < x0 + hi * side) & (Y > y0 + lo * side) & (Y < y0 + hi * side)


@pytest.mark.parametrize("box", BOXES)
def test_unmodified_crop_reproduces_the_image(box):
    out = paste_back(IMAGE, crop_frame(IMAGE, box, S), box, np.ones((S, S)))
    diff = np.abs(out.astype(int) - IMAGE).max(-1)
    inside = _in_box(box)
    assert diff[inside].max() <= 3 and diff[inside].mean() <= 0.5  # tolerance: 3 levels max, 0.5 mean
    assert (diff[~inside] == 0).all()  # bit-exact outside the box


@pytest.mark.parametrize("box", BOXES)
def test_zero_region_keeps_the_image(box):
    crop = np.random.default_rng(0).integers(0, 256, (S, S, 3), dtype=np.uint8)
    np.testing.assert_array_equal(paste_back(IMAGE, crop, box, np.zeros((S, S))), IMAGE)


@pytest.mark.parametrize("box", BOXES)
def test_red_square_lands_only_in_its_region(box):
    region = np.zeros((S, S))
    region[16:48, 16:48] = 1  # crop pixels 16..47: the box's middle half
    red = np.zeros((S, S, 3), np.uint8)
    red[..., 0] = 255
    out = paste_back(IMAGE, red, box, region).astype(int)
    changed = (out != IMAGE).any(-1)
    assert changed.any()
    assert not (changed & ~_in_box(box, 0.25, 0.75)).any()  # nothing outside the warped region
    core = _in_box(box, 0.35, 0.65) & changed  # past the feathered edge (2 * 0.03 of the side; in the image)
    assert core.sum() >= 0.9 * _in_box(box, 0.35, 0.65).sum()
    assert (out[core, 0] >= 250).all() and (out[core, 1:] <= 5).all()  # red
    band = changed & ~core
    assert (out[band, 0] >= IMAGE[band, 0]).all()  # the seam blends towards red


def test_feather_widens_the_seam():
    box = BOXES[0]
    region = np.zeros((S, S))
    region[16:48, 16:48] = 1
    red = np.full((S, S, 3), (255, 0, 0), np.uint8)

    def blended(feather):
        out = paste_back(IMAGE, red, box, region, feather=feather).astype(int)
        full = (out[..., 0] >= 254) & (out[..., 1:] <= 1).all(-1)
        return ((out != IMAGE).any(-1) & ~full).sum()  # partly red pixels

    assert 0 < blended(0.0) < blended(0.03) < blended(0.1)


def test_many_matches_single_and_broadcasts_the_region():
    box = BOXES[2]
    rng = np.random.default_rng(1)
    crops = rng.integers(0, 256, (3, S, S, 3), dtype=np.uint8)
    region = rng.random((S, S))
    many = paste_back_many(IMAGE, crops, box, region)
    assert many.shape == (3, H, W, 3) and many.dtype == np.uint8
    for i in range(3):
        np.testing.assert_array_equal(many[i], paste_back(IMAGE, crops[i], box, region))
    assert not np.array_equal(many[0], many[1])


def test_box_outside_the_image_and_bad_shapes():
    crop = np.zeros((S, S, 3), np.uint8)
    np.testing.assert_array_equal(paste_back(IMAGE, crop, (-500.0, -500.0, 100.0), np.ones((S, S))), IMAGE)
    with pytest.raises(ValueError, match="regions"):
        paste_back(IMAGE, crop, BOXES[0], np.ones((S, S + 1)))
    with pytest.raises(ValueError, match="image"):
        paste_back(IMAGE.astype(np.float32), crop, BOXES[0], np.ones((S, S)))


def test_paste_back_with_reference_adds_only_the_change():
    """With the input crop as reference, an unchanged crop leaves the full-resolution image exactly as it was
    (no blur), and a changed pixel block moves the image by the change."""
    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)  # full of detail a 32-pixel crop cannot hold
    box = (80.0, 60.0, 96.0)
    crop = crop_frame(image, box, 32)
    same = paste_back_many(image, crop[None], box, np.ones((32, 32)), reference=crop)[0]
    np.testing.assert_array_equal(same, image)
    brighter = np.clip(crop.astype(int) + 40, 0, 255).astype(np.uint8)
    out = paste_back_many(image, brighter[None], box, np.ones((32, 32)), reference=crop)[0]
    inner = (slice(50, 70), slice(70, 90))
    moved = out[inner].astype(int) - image[inner].astype(int)
    assert np.median(moved) > 25  # the change arrived (clipped where the image was already bright)
    blurred = paste_back_many(image, crop[None], box, np.ones((32, 32)))[0]
    assert np.abs(blurred[inner].astype(int) - image[inner]).mean() > 20  # without it the detail is lost
