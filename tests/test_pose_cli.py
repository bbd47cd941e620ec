import json

import numpy as np
import pytest

from structvid.cli import main
from structvid.io.poses import save_poses
from tests.test_cli import run_cli, trained  # noqa: F401 - reuse the tiny G_M fixture

TINY_POSE = ["model.hidden_size=16", "model.num_layers=1", "model.horizon=4", "train.steps=4", "train.batch_size=8",
             "train.checkpoint_every=2", "train.log_every=2", "train.device=cpu", "data.actions=[baseball_pitch]",
             # the training options beyond the paper's defaults, exercised end to end
             "data.extra_train_actions=[jump_rope]", "data.speed=[0.8,1.25]", "train.loss=l2",
             "train.lr_schedule=cosine", "train.grad_clip=1.0", "data.max_start=20", "train.weight_decay=0.01", "data.min_horizon=2", "train.step_weights=relative"]


@pytest.fixture(scope="module")
def pose_run(tmp_path_factory, shared_data):
    run = tmp_path_factory.mktemp("poses") / "run"
    assert main(["train", "poses", "--data", str(shared_data / "penn_action"), "--out", str(run), "--no-progress",
                 *TINY_POSE]) == 0
    return run


def test_train_poses_writes_counts_and_validation(pose_run):
    summary = json.loads((pose_run / "data.json").read_text())
    assert summary["train_sequences"] > 0 and summary["val_sequences"] > 0 and summary["extra_train_sequences"] > 0
    assert summary["skipped_short"] == len(summary["skipped_names"])
    assert summary["partial_horizon"] == len(summary["partial_names"])
    rows = [json.loads(line) for line in (pose_run / "metrics.jsonl").read_text().splitlines()]
    assert any("val/lstm@4" in r and "val/zero_velocity@4" in r for r in rows)
    assert (pose_run / "checkpoints" / "step_00000004" / "pose_lstm.safetensors").is_file()


def test_evaluate_poses_protocol_files(pose_run, shared_data, tmp_path, capsys):
    code, out = run_cli("evaluate", "poses", "--checkpoint", pose_run, "--data", shared_data / "penn_action",
                        "--out", tmp_path, "--heldout", "--actions", "baseball_pitch", "--device", "cpu", capsys=capsys)
    assert code == 0, out.err
    res = json.loads((tmp_path / "poses.json").read_text())
    assert res["horizons"] == [1, 8, 16, 32]
    assert set(res["methods"]) == {"lstm", "zero_velocity", "constant_velocity"}
    assert set(res["methods"]["lstm"]["per_action"]) == {"baseball_pitch"} and res["num_sequences"] > 0
    assert (tmp_path / "poses.md").is_file() and (tmp_path / "poses_error.png").stat().st_size > 0


def test_generate_from_observed_poses(trained, pose_run, tmp_path, capsys):  # noqa: F811
    tmp, run = trained
    joints = json.loads((tmp / "poses.json").read_text())
    joints = np.asarray(joints["joints"] if isinstance(joints, dict) else joints, dtype=np.float32)
    observed = np.concatenate([joints, joints[-1:].repeat(10, 0)])[:10]  # 10 observed poses, last = image pose
    observed[-1] = joints[0]
    save_poses(tmp_path / "observed.json", observed)
    out = tmp_path / "f.mp4"
    code, res = run_cli("generate", "--checkpoint", run, "--pose-checkpoint", pose_run, "--image", tmp / "image.png",
                        "--observed-poses", tmp_path / "observed.json", "--frames", 5, "--out", out, "--panel",
                        "--device", "cpu", capsys=capsys)
    assert code == 0, res.err
    from structvid.io.video import read_video

    assert read_video(out)[0].shape[0] == 5 and out.with_name("f_panel.mp4").is_file()
    # fewer observed poses than the LSTM needs: one clear error naming the file
    save_poses(tmp_path / "short.json", observed[:3])
    code, res = run_cli("generate", "--checkpoint", run, "--pose-checkpoint", pose_run, "--image", tmp / "image.png",
                        "--observed-poses", tmp_path / "short.json", "--out", tmp_path / "g.mp4", capsys=capsys)
    assert code == 2 and "short.json" in res.err and "10" in res.err
