"""ACD-I / ACD-C of §7.2 (Table 4) with dlib's 128-d face embedding, on the shared real faces."""

import numpy as np
import pytest

pytest.importorskip("dlib")

from structvid.errors import UserError  # noqa: E402
from structvid.io.images import load_image  # noqa: E402
from structvid.metrics.acd import FaceEmbedder, acd  # noqa: E402


@pytest.fixture(scope="module")
def embedder():
    return FaceEmbedder()


@pytest.fixture(scope="module")
def s42(faces):
    import cv2

    return cv2.resize(load_image(faces / "s42.jpg"), (256, 256))


def test_identical_frames_give_zero(s42, embedder):
    e = embedder.embed(s42)
    assert e.shape == (128,) and e.dtype == np.float32 and np.isfinite(e).all() and np.linalg.norm(e) > 0.1
    r = acd(np.stack([s42] * 3), s42, embedder)
    assert r == {"acd_i": 0.0, "acd_c": 0.0, "frames": 3, "frames_without_face": 0}


def test_another_person_is_far(faces, s42, embedder):
    # measured: 0.54-0.86 between the 7 shared portraits (21 pairs), 0.13-0.30 ACD-I within a shared video
    other = load_image(faces / "s12.jpg")
    r = acd(np.stack([s42] * 2), other, embedder)
    assert r["acd_i"] > 0.4 and r["acd_c"] == 0.0


def test_frames_without_face_are_counted(faces, s42, embedder):
    import cv2

    dog = cv2.resize(load_image(faces / "dog_s33.jpg"), (256, 256))
    assert embedder.embed(dog) is None
    r = acd(np.stack([s42, dog, s42, dog, dog]), s42, embedder)
    assert r["frames"] == 5 and r["frames_without_face"] == 3 and r["acd_i"] == 0.0 and r["acd_c"] == 0.0
    r = acd(np.stack([dog, dog]), s42, embedder)
    assert r["frames_without_face"] == 2 and np.isnan(r["acd_i"]) and np.isnan(r["acd_c"])
    with pytest.raises(UserError, match="no face found in the input image"):
        acd(np.stack([s42]), dog, embedder, source="dog.jpg")
