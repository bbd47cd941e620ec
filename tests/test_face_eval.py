"""ACD evaluation of face retargeting (§7.2, Table 4) and the face bench, with a random face G_M on shared faces."""

import json
import math

import numpy as np
import pytest

pytest.importorskip("dlib")

from structvid.errors import UserError  # noqa: E402
from structvid.faces_bench import LoopedSource, bench_faces, random_face_pipeline  # noqa: E402
from structvid.metrics.face_eval import evaluate_retarget, write_face_report  # noqa: E402


@pytest.fixture(scope="module")
def faces(shared_data):
    f = shared_data / "faces"
    if not (f / "s42.jpg").is_file() or not (f / "d0.mp4").is_file():
        pytest.skip("shared face images/videos not found")
    return f


@pytest.fixture(scope="module")
def retarget(sfm_model, tmp_path_factory):
    from structvid.pipelines.face_retarget import FaceRetarget

    folder = random_face_pipeline(tmp_path_factory.mktemp("face_g") / "run", 64)
    return FaceRetarget.from_pretrained(folder, device="cpu", precision="fp32")


def test_evaluate_retarget_scores_pairs_and_the_reference(retarget, faces, tmp_path):
    result = evaluate_retarget(retarget, [faces / "s42.jpg"], [faces / "d0.mp4"], max_frames=6, progress=False)
    assert result["pairs"] == 1 and result["resolution"] == 64 and result["max_frames"] == 6
    pair = result["per_pair"][0]
    assert pair["frames"] == 6 == result["frames"] and len(pair["per_frame_acd_i"]) == 6
    found = [d for d in pair["per_frame_acd_i"] if d is not None]
    assert pair["frames_without_face"] == result["frames_without_face"] == 6 - len(found)
    if found:  # ACD-I is the mean of the per-frame distances to the input crop's embedding
        assert pair["acd_i"] == pytest.approx(np.mean(found))
    ref = result["reference"]
    video = ref["per_video"][0]
    assert ref["frames"] == video["frames"] == 6 and video["frames_without_face"] == 0  # real faces, upscaled
    assert video["per_frame_acd_i"][0] == 0.0  # the first frame against itself
    assert video["acd_i"] == pytest.approx(np.mean(video["per_frame_acd_i"])) and video["acd_i"] > 0
    assert video["acd_c"] > 0  # the reference's face moves
    assert "dlib" in result["embedder"]["name"] and "256" in result["embedder"]["upscale"]

    write_face_report(result, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["reference"]["mean"]["acd_c"] == pytest.approx(ref["mean"]["acd_c"])
    table = (tmp_path / "report.md").read_text()
    assert "| Reference |" in table and f"| {result['model']} |" in table


def test_evaluate_retarget_rejects_empty_inputs_and_a_portrait_without_face(retarget, faces):
    with pytest.raises(UserError, match="no reference video"):
        evaluate_retarget(retarget, [faces / "s42.jpg"], [], progress=False)
    with pytest.raises(UserError, match="max_frames"):
        evaluate_retarget(retarget, [faces / "s42.jpg"], [faces / "d0.mp4"], max_frames=0, progress=False)
    with pytest.raises(UserError, match="no face") as e:
        evaluate_retarget(retarget, [faces / "dog_s33.jpg"], [faces / "d0.mp4"], max_frames=2, progress=False)
    assert "dog_s33.jpg" in str(e.value)


def test_looped_source_plays_the_video_again_until_its_length(faces):
    base = LoopedSource("d0", "video", faces / "d0.mp4", (), 25.0, 100)  # d0 has 78 frames
    blocks = list(base.chunks(32))
    video = np.concatenate(blocks)
    assert len(video) == 100
    np.testing.assert_array_equal(video[78:], video[:22])  # the second pass starts from frame 0


def test_bench_faces_reports_positive_figures(retarget, faces):
    r = bench_faces(retarget, faces / "d0.mp4", faces / "s42.jpg", sizes=(64,), frames=8, skip_long=True,
                    batch=4, reps=1)
    keys = ["landmarks_ms_per_frame", "fit_video_ms_per_frame", "fit_frame_ms", "normal_maps_per_s_64",
            "e2e_frames_per_s_64", "generate_frames_per_s_64", "rss_short_peak_mib", "rss_short_loaded_mib"]
    for k in keys:
        assert math.isfinite(r[k]) and r[k] > 0, k
    assert r["rss_short_peak_mib"] >= r["rss_short_loaded_mib"]
    assert r["e2e_models"] == {"64": f"given: {retarget.pipe.source}"} and "rss_long_peak_mib" not in r
    json.dumps(r)  # JSON-able
