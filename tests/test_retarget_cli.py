"""`structvid retarget` end to end on real portraits and videos (issue 10 §6), and its bad inputs (§8)."""

import av
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from structvid.cli import DEMO_DIR, main
from structvid.config import ForecasterConfig
from structvid.models.forecaster import Forecaster
from structvid.models.saving import save_pretrained
from tests.test_user_errors import assert_one_line_error


@pytest.fixture(scope="module")
def face_run(tmp_path_factory, sfm_model):
    """A tiny random face G_M as a run folder (32x32, normal maps)."""
    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("facerun") / "run"
    g = Forecaster(ForecasterConfig(resolution=32, motion_channels=3, base_width=8, max_width=32, dense_growth=4))
    save_pretrained(g, run, "generator")
    (run / "config.yaml").write_text(yaml.safe_dump({"structure": {"kind": "face_normals"}}))
    return run


def streams(path):
    with av.open(str(path)) as c:
        return [s.type for s in c.streams], sum(1 for _ in c.decode(video=0))


def test_retarget_writes_video_with_audio_panel_and_paste_back(face_run, shared_data, tmp_path, capsys):
    faces = shared_data / "faces"
    out = tmp_path / "out.mp4"
    code = main(["retarget", "--checkpoint", str(face_run), "--image", str(faces / "s12.jpg"),
                 "--reference", str(faces / "d11.mp4"), "--max-frames", "6", "--panel", "--paste-back",
                 "--out", str(out), "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    kinds, n = streams(out)
    assert kinds == ["video", "audio"] and n == 6  # d11 has audio: it is kept
    assert out.with_suffix(".gif").is_file() and (tmp_path / "out_panel.mp4").is_file()
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert (v.width, v.height) == (376, 500)  # pasted back into the 375x500 portrait (width padded to even)
    report = [line for line in captured.out.splitlines() if line.startswith("{")][-1]
    assert '"frames": 6' in report and '"frames_without_face": 0' in report


def test_retarget_crop_output_without_audio(face_run, shared_data, tmp_path, capsys):
    faces = shared_data / "faces"
    out = tmp_path / "crop.mp4"
    assert main(["retarget", "--checkpoint", str(face_run), "--image", str(faces / "s9.jpg"), "--absolute",
                 "--intensity", "0.5", "--reference", str(faces / "d0.mp4"), "--max-frames", "4",
                 "--out", str(out), "--device", "cpu"]) == 0, capsys.readouterr().err
    kinds, n = streams(out)
    assert kinds == ["video"] and n == 4  # d0 has no audio
    with av.open(str(out)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (32, 32)


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, shared_data):
    d = tmp_path_factory.mktemp("badfaces")
    s12 = Image.open(shared_data / "faces" / "s12.jpg").convert("RGB")
    two = Image.new("RGB", (s12.width * 2, s12.height))
    two.paste(s12, (0, 0))
    two.paste(s12, (s12.width, 0))
    two.save(d / "two.jpg")
    Image.new("RGB", (10, 10), (128, 100, 90)).save(d / "tiny.png")
    s12.convert("L").save(d / "gray.jpg")
    (d / "text.mp4").write_text("not a video")
    (d / "empty.mp4").write_bytes(b"")
    dog = np.asarray(Image.open(shared_data / "faces" / "dog_s33.jpg").convert("RGB").resize((128, 128)))
    with av.open(str(d / "dog.mp4"), "w") as c:
        s = c.add_stream("mpeg4", rate=10)
        s.width, s.height, s.pix_fmt = 128, 128, "yuv420p"
        for _ in range(3):
            for p in s.encode(av.VideoFrame.from_ndarray(dog, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return d


BAD = [
    ("image", "dog_s33.jpg", "no face found"),
    ("image", "two.jpg", "--face largest"),
    ("image", "tiny.png", "tiny.png"),
    ("reference", "text.mp4", "text.mp4"),
    ("reference", "empty.mp4", "empty.mp4"),
    ("reference", "dog.mp4", "dog.mp4"),
    ("reference", "missing.mp4", "missing.mp4"),
    ("image", "gray.jpg", "an RGB image is needed"),
]


@pytest.mark.parametrize("which,name,expected", BAD, ids=[f"{w}={n}" for w, n, _ in BAD])
def test_bad_retarget_inputs_give_one_line(which, name, expected, face_run, bad_files, shared_data, tmp_path, capsys):
    faces = shared_data / "faces"
    def pick(kind, default):
        if which != kind:
            return default
        return faces / name if (faces / name).exists() else bad_files / name
    argv = ["retarget", "--checkpoint", face_run, "--image", pick("image", faces / "s12.jpg"),
            "--reference", pick("reference", faces / "d0.mp4"), "--max-frames", "3", "--out", tmp_path / "o.mp4"]
    assert_one_line_error(argv, capsys, expected)
    assert not (tmp_path / "o.mp4").exists()


def test_retarget_output_must_be_mp4_before_any_fitting(face_run, shared_data, tmp_path, capsys):
    faces = shared_data / "faces"
    assert_one_line_error(["retarget", "--checkpoint", face_run, "--image", faces / "s12.jpg", "--reference",
                           faces / "d0.mp4", "--out", tmp_path / "o.avi"], capsys, "must be an .mp4")


def test_retarget_refuses_a_body_checkpoint_and_picks_the_largest_face(face_run, bad_files, shared_data, tmp_path,
                                                                       capsys):
    faces = shared_data / "faces"
    assert_one_line_error(["retarget", "--checkpoint", DEMO_DIR, "--image", faces / "s12.jpg", "--reference",
                           faces / "d0.mp4", "--out", tmp_path / "o.mp4"], capsys, "not faces")
    assert main(["retarget", "--checkpoint", str(face_run), "--image", str(bad_files / "two.jpg"), "--face", "largest",
                 "--reference", str(faces / "d0.mp4"), "--max-frames", "2", "--out", str(tmp_path / "two.mp4"),
                 "--device", "cpu"]) == 0


def test_face_demo_writes_crop_panel_and_pasted_videos(face_run, shared_data, tmp_path, capsys, monkeypatch):
    from structvid.pipelines.face_retarget import FaceRetarget

    runs, stream = [], FaceRetarget.stream
    monkeypatch.setattr(FaceRetarget, "stream", lambda self, *a, **k: runs.append(1) or stream(self, *a, **k))
    assert main(["demo", "--task", "face", "--checkpoint", str(face_run), "--faces", str(shared_data / "faces"),
                 "--out", str(tmp_path), "--device", "cpu"]) == 0, capsys.readouterr().err
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["face.gif", "face.mp4", "face_panel.mp4", "face_pasted.gif", "face_pasted.mp4"]
    assert len(runs) == 1  # one pass of G_M feeds the crop video, its panel and the pasted video
    kinds, n = streams(tmp_path / "face_pasted.mp4")
    assert n == 78  # every frame of d0
    with av.open(str(tmp_path / "face_pasted.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (512, 512)  # s42's own size
