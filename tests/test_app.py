"""The web page's handlers (structvid.app.handlers) called directly: the jobs the page runs, their errors (the
CLI's one line), upload limits, cancelling, and the temporary folders they leave behind (none)."""

import os
import signal
import tempfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import yaml

from structvid.app import handlers as h
from structvid.cli import main


def decoded(path: Path) -> tuple[np.ndarray, list[str]]:
    """(frames (T, H, W, 3), stream kinds) of a video file."""
    with av.open(str(path)) as c:
        kinds = [s.type for s in c.streams]
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])
    return frames, kinds


@pytest.fixture()
def temp(tmp_path, monkeypatch) -> Path:
    """The system temp folder as the jobs see it: a fresh, empty one."""
    folder = tmp_path / "systemp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(scope="module")
def jobs():
    j = h.Jobs(h.AppSettings(device="cpu"))
    yield j
    j.close()


@pytest.fixture()
def notes(tmp_path) -> Path:
    """A text file uploaded as an image."""
    path = tmp_path / "notes.png"
    path.write_text("not an image\n")
    return path


def test_animate_example_writes_video_and_panel_and_leaves_no_job_folder(jobs, temp):
    seen = []

    def progress(fraction, stage):
        seen.append((fraction, stage, sorted(p.name[:14] for p in temp.iterdir())))

    r = jobs.animate(str(h.EXAMPLE_IMAGE), h.EXAMPLE_MOTION, h.OWN_MOTION, progress=progress)
    frames, _ = decoded(r.video)
    assert frames.shape == (48, 64, 64, 3) and r.frames == 48 and r.seconds == pytest.approx(4.0)
    assert frames[0].std() > 20  # a picture, not a blank frame
    panel, _ = decoded(r.panel)
    assert len(panel) == 48 and panel.shape[2] == 5 * 256 + 4 * 2  # input | condition | coarse | refined | mask
    stages = [s for _, s, _ in seen]
    assert stages[0] == "loading the models" and any("frame 48/48" in s for s in stages)
    assert all(d == ["structvid-job-"] for _, _, d in seen)  # the job's folder exists while it runs
    assert list(temp.iterdir()) == []  # and is removed after it
    assert r.video.parent.parent == jobs.out_root / "jobs" and "**48 frames**" in r.summary


def test_animate_forecast_and_uploaded_pose_file(jobs, temp, tmp_path):
    r = jobs.animate(str(h.EXAMPLE_IMAGE), h.FORECAST, "squat", frames=12)
    panel, _ = decoded(r.panel)
    assert r.frames == 12 and len(panel) == 12 and "forecast by the LSTM" in r.summary
    poses = tmp_path / "my poses.json"
    poses.write_bytes(h.motions()["jump_rope"].read_bytes())
    r = jobs.animate(str(h.EXAMPLE_IMAGE), h.POSE_FILE, pose_file=str(poses), refine=False)
    frames, _ = decoded(r.video)
    panel, _ = decoded(r.panel)
    assert len(frames) == 48 and panel.shape[2] == 4 * 256 + 3 * 2  # input | condition | output | mask: no G_R
    assert list(temp.iterdir()) == []


def test_bad_upload_gives_the_clis_line_and_the_next_job_works(jobs, temp, notes, monkeypatch, capsys):
    with pytest.raises(h.UserError) as e:
        jobs.animate(str(notes))
    line = h.error_line(e.value)
    monkeypatch.chdir(notes.parent)  # the CLI given the same file by its name
    assert main(["generate", "--image", "notes.png", "--poses", str(h.motions()["squat"])]) == 2
    assert capsys.readouterr().err.strip() == line == "error: notes.png: is not a readable image (unknown format or corrupt)"
    assert list(temp.iterdir()) == []
    assert jobs.animate(str(h.EXAMPLE_IMAGE)).frames == 48  # nothing is stuck: the lock was released


def test_missing_inputs_and_bad_pose_file_are_one_line(jobs, tmp_path):
    with pytest.raises(h.UserError, match="no photo given"):
        jobs.animate(None)
    with pytest.raises(h.UserError, match="no pose file given"):
        jobs.animate(str(h.EXAMPLE_IMAGE), h.POSE_FILE)
    bad = tmp_path / "poses.json"
    bad.write_text("[[1, 2]]")
    with pytest.raises(h.UserError) as e:
        jobs.animate(str(h.EXAMPLE_IMAGE), h.POSE_FILE, pose_file=str(bad))
    assert h.error_line(e.value) == "error: poses.json: has shape (1, 2); expected (frames, joints, 2 or 3)"


def test_upload_size_and_length_limits(temp, tmp_path):
    def jobs_with(**limits):
        return h.Jobs(h.AppSettings(device="cpu", limits=h.Limits(**limits)), out_root=tmp_path / "out")

    small = jobs_with(max_upload_mb=0.005)
    try:
        with pytest.raises(h.UserError) as e:  # the example image is 7,166 bytes
            small.animate(str(h.EXAMPLE_IMAGE))
        assert h.error_line(e.value) == ("error: image.png: is 0.00683 MB; this page accepts files up to 0.005 MB "
                                         "(structvid app --max-upload-mb)")
    finally:
        small.close()
    short = jobs_with(max_seconds=1.0)
    try:
        with pytest.raises(h.UserError, match=r"^coarse.mp4: is 4.0 s long; this page accepts videos up to 1 s"):
            short.refine(str(h.EXAMPLE_COARSE), str(h.EXAMPLE_COARSE_POSES))
    finally:
        short.close()
    assert list(temp.iterdir()) == [] and not (tmp_path / "out").exists()  # close() removes the output folder


def test_pose_sequence_longer_than_the_limit(temp, tmp_path):
    short = h.Jobs(h.AppSettings(device="cpu", limits=h.Limits(max_seconds=2.0)), out_root=tmp_path / "out")
    try:
        with pytest.raises(h.UserError) as e:
            short.animate(str(h.EXAMPLE_IMAGE), h.POSE_FILE, pose_file=str(h.motions()["squat"]))
        assert h.error_line(e.value) == ("error: squat.json: has 48 poses: 4.0 s at 12 frames/s, over this page's "
                                         "limit of 2 s (structvid app --max-seconds)")
        with pytest.raises(h.UserError, match=r"frames must be 1-24 \(structvid app --max-seconds\)"):
            short.animate(str(h.EXAMPLE_IMAGE), h.FORECAST, frames=25)
    finally:
        short.close()


def test_cancel_stops_the_job_and_cleans_up(jobs, temp):
    published = sorted((jobs.out_root / "jobs").iterdir()) if (jobs.out_root / "jobs").is_dir() else []

    frames = []

    def progress(fraction, stage):
        if "frame" in stage and fraction:
            frames.append(stage)
            # another browser's Cancel leaves this job alone; its own stops it at the next chunk
            jobs.cancel(owner="someone else" if len(frames) == 1 else "me")

    with pytest.raises(h.JobCancelled):
        jobs.animate(str(h.EXAMPLE_IMAGE), progress=progress, owner="me")
    assert len(frames) == 2  # stopped at the chunk after the Cancel
    assert list(temp.iterdir()) == []
    now = sorted((jobs.out_root / "jobs").iterdir()) if (jobs.out_root / "jobs").is_dir() else []
    assert now == published  # nothing half-made was published
    assert jobs.animate(str(h.EXAMPLE_IMAGE), owner="me").frames == 48  # the flag does not outlive the job


def test_refine_example_side_by_side(jobs, temp):
    r = jobs.refine(str(h.EXAMPLE_COARSE), str(h.EXAMPLE_COARSE_POSES))
    refined, _ = decoded(r.video)
    panel, _ = decoded(r.panel)
    coarse, _ = decoded(h.EXAMPLE_COARSE)
    assert refined.shape == coarse.shape == (48, 64, 64, 3)
    assert panel.shape[1:3] == (256 + 32, 3 * 256 + 2 * 2)  # caption + coarse | refined | mask
    assert "G_R alone" in r.summary and list(temp.iterdir()) == []


def test_old_jobs_videos_are_removed(tmp_path):
    j = h.Jobs(h.AppSettings(device="cpu"), out_root=tmp_path / "out")
    try:
        folders = [j._out_dir() for _ in range(h.KEEP_JOBS + 2)]
        assert [f.exists() for f in folders] == [False, False] + [True] * h.KEEP_JOBS
    finally:
        j.close()


# ---------------------------------------------------------------- faces


@pytest.fixture(scope="module")
def face_jobs(tmp_path_factory, sfm_model):
    """Jobs with a tiny random face G_M (32x32 normal maps): the handler's machinery, not the model's quality."""
    pytest.importorskip("dlib")
    from structvid.models.forecaster import Forecaster, ForecasterConfig
    from structvid.models.saving import save_pretrained

    torch.manual_seed(0)
    run = tmp_path_factory.mktemp("facerun") / "run"
    g = Forecaster(ForecasterConfig(resolution=32, motion_channels=3, base_width=8, max_width=32, dense_growth=4))
    save_pretrained(g, run, "generator")
    (run / "config.yaml").write_text(yaml.safe_dump({"structure": {"kind": "face_normals"}}))
    j = h.Jobs(h.AppSettings(face_checkpoint=run, device="cpu"))
    yield j
    j.close()


def test_retarget_keeps_audio_pastes_back_and_writes_panel(face_jobs, shared_data, temp):
    faces = shared_data / "faces"
    r = face_jobs.retarget(str(faces / "s12.jpg"), str(faces / "d11.mp4"), paste_back=True, max_frames=6)
    frames, kinds = decoded(r.video)
    assert kinds == ["video", "audio"] and frames.shape == (6, 500, 376, 3)  # the 375x500 portrait, width even
    panel, _ = decoded(r.panel)
    assert len(panel) == 6 and "0 frames without a face" in r.summary
    assert list(temp.iterdir()) == []


def test_retarget_reports_tracking_and_fitting_and_cancels_inside_the_fit(face_jobs, shared_data, temp, monkeypatch):
    from structvid.pipelines.face_retarget import FaceRetarget

    faces, seen = shared_data / "faces", []
    streamed = []
    monkeypatch.setattr(FaceRetarget, "stream", lambda *a, **k: streamed.append(1) or iter(()))

    def progress(fraction, stage):
        seen.append((fraction, stage))
        if stage.startswith("fitting the reference: frame 16/"):
            face_jobs.cancel()

    with pytest.raises(h.JobCancelled):
        face_jobs.retarget(str(faces / "s12.jpg"), str(faces / "d0.mp4"), max_frames=40, progress=progress)
    stages = [s for _, s in seen]
    assert "tracking the reference: frame 32" in stages and "tracking the reference: frame 40" in stages
    assert (0.4, "fitting the reference: frame 16/40") in seen
    assert not any(s.startswith("fitting the reference: frame 32") for s in stages)  # stopped at the next report
    assert streamed == [] and list(temp.iterdir()) == []  # G_M never ran, nothing left behind


def test_retarget_no_face_is_the_clis_line(face_jobs, shared_data, tmp_path, monkeypatch, capsys):
    faces = shared_data / "faces"
    with pytest.raises(h.UserError) as e:
        face_jobs.retarget(str(faces / "dog_s33.jpg"), str(faces / "d0.mp4"))
    monkeypatch.chdir(faces)
    assert main(["retarget", "--checkpoint", str(face_jobs.settings.face_checkpoint), "--image", "dog_s33.jpg",
                 "--reference", "d0.mp4", "--out", str(tmp_path / "x.mp4"), "--device", "cpu"]) == 2
    assert capsys.readouterr().err.strip() == h.error_line(e.value)


def test_example_faces_found_in_a_folder(tmp_path):
    (tmp_path / "s42.jpg").write_bytes(b"x")
    assert h.example_faces([tmp_path]) != (tmp_path / "s42.jpg", tmp_path / "d0.mp4")  # needs both
    (tmp_path / "d0.mp4").write_bytes(b"x")
    assert h.example_faces([tmp_path]) == (tmp_path / "s42.jpg", tmp_path / "d0.mp4")


# ---------------------------------------------------------------- the page and the command


def test_page_has_three_tabs_one_queue_and_cancel(tmp_path, monkeypatch):
    pytest.importorskip("gradio")
    from structvid.app.page import build_page

    monkeypatch.setenv("GRADIO_TEMP_DIR", "")  # build_page points it into the jobs' folder; restored after
    demo, j = build_page(jobs=h.Jobs(h.AppSettings(device="cpu"), out_root=tmp_path / "out"))
    try:
        config = demo.get_config_file()
        tabs = [c["props"]["label"] for c in config["components"] if c["type"] == "tabitem"]
        assert tabs == ["Animate a person", "Retarget a face", "Refine a video"]
        fns = {f.name: f for f in demo.fns.values() if f.name in ("animate", "retarget", "refine")}
        assert {(f.concurrency_id, f.concurrency_limit, f.queue) for f in fns.values()} == {("job", 1, True)}
        assert len(fns) == 3  # one worker for the three jobs: the rest wait in the queue
        cancelled = [c for d in config["dependencies"] for c in d["cancels"]]
        assert sorted(cancelled) == sorted(f._id for f in fns.values())  # each job has its Cancel
        assert [f.queue for f in demo.fns.values() if f.name == "cancel"] == [False] * 3  # not behind the job
        assert os.environ["GRADIO_TEMP_DIR"] == str(tmp_path / "out" / "gradio")  # uploads: in the jobs' folder
    finally:
        j.close()


def test_app_command_refuses_bad_limits(capsys):
    from structvid.app.cli import main as app_main

    assert app_main(["--max-upload-mb", "0"]) == 2
    assert "is not a positive number" in capsys.readouterr().err


def test_app_command_binds_localhost_unless_told_and_warns_on_all_interfaces(monkeypatch, tmp_path, capsys):
    pytest.importorskip("gradio")
    import structvid.app.page as page
    from structvid.app.cli import main as app_main, model_threads

    assert (model_threads(1), model_threads(2), model_threads(8)) == (1, 1, 7)
    served = []
    made = []

    def fake_build(settings):
        made.append(h.Jobs(settings, out_root=tmp_path / f"out{len(made)}"))
        return "page", made[-1]

    monkeypatch.setattr(page, "build_page", fake_build)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # the command's SIGTERM handler: not in pytest
    monkeypatch.setattr(page, "launch", lambda demo, jobs, host, port: served.append((host, port, jobs.settings)))
    monkeypatch.setattr(torch, "set_num_threads", lambda n: served.append(("threads", n)))
    assert app_main(["--max-seconds", "5", "--max-upload-mb", "2", "--threads", "3"]) == 0
    assert served.pop(0) == ("threads", 3)
    assert served[0][:2] == ("127.0.0.1", 7860) and served[0][2].limits == h.Limits(max_upload_mb=2, max_seconds=5)
    assert "warning" not in capsys.readouterr().err
    assert app_main(["--host", "0.0.0.0", "--port", "8080"]) == 0
    assert served[1] == ("threads", model_threads()) and served[2][:2] == ("0.0.0.0", 8080)
    assert "warning: listening on all interfaces" in capsys.readouterr().err
    for j in made:
        j.close()
