"""The face path through the generic machinery: structure config, transfer (§4), G_M on normal maps, training."""

import json

import numpy as np
import pytest
import torch
import yaml

from structvid.config import ExperimentConfig, StructureConfig, load_config
from structvid.errors import UserError
from structvid.models.forecaster import Forecaster
from structvid.config import ForecasterConfig
from structvid.models.saving import save_pretrained
from structvid.pipelines.conditions import ExpressionTransfer
from structvid.pipelines.image_to_video import ImageToVideoPipeline
from structvid.structure.factory import build_structure
from structvid.structure.faces.morphable import FaceParams
from structvid.structure.faces.transfer import TransferSettings, transfer


def face(model, rng, size=64.0):
    """A random face filling about half of a size x size image."""
    return FaceParams(rng.normal(0, 0.1, 3), np.float32(size / 2 / 190), np.array([size / 2, size / 2]),
                      rng.normal(0, 1, model.n_id), rng.uniform(0, 0.5, model.n_exp)).pack()


def test_relative_transfer_of_the_target_itself_is_the_identity_and_keeps_alpha(sfm_model):
    rng = np.random.default_rng(0)
    m = sfm_model
    target, other = face(m, rng), face(m, rng)
    same = np.repeat(target[None], 5, 0)
    np.testing.assert_array_equal(transfer(target, same, m.n_id, m.n_exp), same)
    ref = np.stack([other] * 4)
    ref[:, 6 + m.n_id + 3] += np.linspace(0, 0.6, 4)  # happiness rises by 0.6 in the reference
    out = FaceParams.unpack(transfer(target, ref, m.n_id, m.n_exp, TransferSettings(intensity=0.5)), m.n_id, m.n_exp)
    t = FaceParams.unpack(target, m.n_id, m.n_exp)
    np.testing.assert_array_equal(out.alpha, np.repeat(t.alpha[None], 4, 0))  # the target's identity
    np.testing.assert_array_equal(out.rotvec, np.repeat(t.rotvec[None], 4, 0))  # and pose
    np.testing.assert_allclose(out.beta[:, 3] - t.beta[3], 0.5 * np.linspace(0, 0.6, 4), atol=1e-6)
    np.testing.assert_allclose(np.delete(out.beta, 3, 1), np.repeat(np.delete(t.beta, 3)[None], 4, 0), atol=1e-6)


def test_absolute_transfer_takes_the_reference_expression_scaled(sfm_model):
    rng = np.random.default_rng(1)
    m = sfm_model
    target, ref = face(m, rng), np.stack([face(m, rng) for _ in range(3)])
    k = [1.0, 0.5, 0, 1, 1, 1]
    out = FaceParams.unpack(transfer(target, ref, m.n_id, m.n_exp, TransferSettings("absolute", k)), m.n_id, m.n_exp)
    np.testing.assert_allclose(out.beta, FaceParams.unpack(ref, m.n_id, m.n_exp).beta * k, atol=1e-6)
    with pytest.raises(UserError, match="6 values"):
        transfer(target, ref, m.n_id, m.n_exp, TransferSettings("absolute", [1.0, 2.0]))
    with pytest.raises(UserError, match="transfer mode"):
        TransferSettings("sideways")


def test_head_pose_option_applies_the_reference_rotation_change(sfm_model):
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(2)
    m = sfm_model
    target = face(m, rng)
    ref = np.stack([face(m, rng)] * 2)
    ref[1, :3] = (Rotation.from_rotvec([0, 0.3, 0]) * Rotation.from_rotvec(ref[0, :3])).as_rotvec()
    out = transfer(target, ref, m.n_id, m.n_exp, TransferSettings(head_pose=True))
    change = Rotation.from_rotvec(out[1, :3]) * Rotation.from_rotvec(target[:3]).inv()
    np.testing.assert_allclose(change.as_rotvec(), [0, 0.3, 0], atol=1e-5)
    np.testing.assert_allclose(out[0], target, atol=1e-5)


def test_structure_config_checks_channels_and_builds_face_normals(sfm_model):
    with pytest.raises(UserError, match="must equal the face_normals structure's 3 channels"):
        load_config(ExperimentConfig, None, ["structure.kind=face_normals"])
    cfg = load_config(ExperimentConfig, None, ["structure.kind=face_normals", "model.motion_channels=3",
                                               "critic.motion_channels=3"])
    s = build_structure(cfg.structure)
    assert s.name == "face_normals" and s.channels == 3
    assert build_structure(s.config()).config() == s.config() == cfg.structure


def tiny_face_pipeline(sfm_model, tmp_path, **kw):
    torch.manual_seed(0)
    g = Forecaster(ForecasterConfig(resolution=32, motion_channels=3, base_width=8, max_width=32, dense_growth=4))
    run = tmp_path / "run"
    save_pretrained(g, run, "generator")
    (run / "config.yaml").write_text(yaml.safe_dump({"structure": {"kind": "face_normals"},
                                                     "data": {"crop_margin": 0.3}}))
    return ImageToVideoPipeline.from_pretrained(run, device="cpu", precision="fp32", **kw)


def test_pipeline_generates_from_face_parameters_framed_on_the_face(sfm_model, tmp_path):
    pipe = tiny_face_pipeline(sfm_model, tmp_path)
    assert pipe.structure.name == "face_normals" and pipe.crop_margin == 0.3
    rng = np.random.default_rng(3)
    m = sfm_model
    target = face(m, rng, size=200.0)  # a face in the middle of a 200 x 300 image
    target[4:6] = [150, 100]
    image = np.zeros((200, 300, 3), np.uint8)
    ref = np.repeat(target[None], 6, 0)
    ref[:, 6 + m.n_id + 5] = np.linspace(0, 1, 6)  # surprise
    out = pipe(image, ExpressionTransfer(target, ref, m.n_id, m.n_exp))
    assert out.frames.shape == (6, 32, 32, 3) and out.conditions.shape == (6, 3, 32, 32)
    covered = (out.conditions != 0).any(1)
    # the crop is the face's box plus 30% on each side: the face covers the middle, not the border
    # (an open mouth leaves a hole, so "most of the middle")
    assert covered[:, 10:22, 10:22].mean() > 0.75 and not covered[:, :3].any() and not covered[:, :, :3].any()
    assert not np.array_equal(out.conditions[0], out.conditions[-1])  # the expression moves
    with pytest.raises(UserError, match="face parameters must be"):
        pipe(image, np.zeros((4, 13, 3)))


def test_face_training_on_synthetic_store_then_pipeline(face_store, tmp_path):
    from structvid.training.tasks import train_forecaster
    from tests.conftest import TINY

    store = json.loads((face_store / "prepared.json").read_text())
    assert store["num_videos"] == 6 and len({v["action"] for v in store["videos"].values()}) == 6
    cfg = load_config(ExperimentConfig, None, [*TINY, f"data.root={face_store}", "data.image_size=32",
                                               "model.resolution=32", "critic.resolution=32",
                                               "structure.kind=face_normals", "model.motion_channels=3",
                                               "critic.motion_channels=3"])
    train_forecaster(cfg, tmp_path / "run")
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["structure"]["kind"] == "face_normals"  # saved with the checkpoint
    pipe = ImageToVideoPipeline.from_pretrained(tmp_path / "run", device="cpu")
    assert pipe.structure.name == "face_normals" and pipe.forecaster.config.motion_channels == 3
    assert (tmp_path / "run" / "samples").is_dir()

    # stage 2 (§6) on the same faces: G_R on normal maps, then the G_R run loads as a whole face pipeline
    from structvid.config import RefineExperimentConfig
    from structvid.training.tasks import train_refiner
    from tests.test_refine_task import REFINE_TINY

    rcfg = load_config(RefineExperimentConfig, None, [
        f"data.root={face_store}", f"data.forecaster={tmp_path / 'run'}", f"data.cache={tmp_path / 'cache'}",
        *REFINE_TINY, "structure.kind=face_normals", "model.motion_channels=3", "critic.video.motion_channels=3",
        "critic.image.motion_channels=3"])
    train_refiner(rcfg, tmp_path / "gr", progress=False)
    refined = ImageToVideoPipeline.from_pretrained(tmp_path / "gr", device="cpu")
    assert refined.refiner is not None and refined.structure.name == "face_normals"


def test_prepare_faces_from_real_videos_same_with_workers(faces, tmp_path, capsys):
    """`structvid data prepare-faces`: tracked, fitted and cropped once; two workers write the same store."""
    from structvid.cli import main
    from structvid.data.prepare import PreparedStore

    videos = [str(faces / "d0.mp4"), str(faces / "d12.mp4")]
    for w in ("1", "2"):
        assert main(["data", "prepare-faces", *videos, "--out", str(tmp_path / f"w{w}"), "--size", "32",
                     "--max-frames", "5", "--workers", w]) == 0, capsys.readouterr().err
    one, two = PreparedStore(tmp_path / "w1"), PreparedStore(tmp_path / "w2")
    assert one.names == two.names == ["d0", "d12"] and one.nframes == {"d0": 5, "d12": 5}
    for n in one.names:
        a, b = one.video(n), two.video(n)
        assert a.frames.shape == (5, 32, 32, 3) and a.params.shape == (5, 75)
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_allclose(a.params, b.params, rtol=1e-5, atol=1e-4)
