import json

from structvid.data.human36m import make_h36m_fixture
from structvid.data.puppet import make_puppet_dataset
from tests.test_cli import run_cli, trained  # noqa: F401 - reuse the tiny G_M fixture
from tests.test_pose_cli import pose_run  # noqa: F401 - reuse the tiny pose LSTM fixture


def test_evaluate_video_penn_protocol_gt_and_lstm(trained, pose_run, tmp_path, capsys):  # noqa: F811
    _, run = trained
    root = tmp_path / "puppet"
    make_puppet_dataset(root, 3, size=32, frames=44, seed=5)
    code, out = run_cli("evaluate", "video", "--protocol", "penn", "--checkpoint", run, "--data", root,
                        "--pose-checkpoint", pose_run, "--out", tmp_path / "eval", "--device", "cpu", capsys=capsys)
    assert code == 0, out.err
    res = json.loads((tmp_path / "eval" / "penn_action.json").read_text())
    assert set(res["conditions"]) == {"gt", "lstm"} and res["conditions"]["gt"]["num_videos"] == 3
    assert res["conditions"]["gt"]["psnr"] > 0 and res["frames"] == 32
    assert (tmp_path / "eval" / "penn_action.md").is_file()


def test_evaluate_video_h36m_protocol_on_fixture(trained, tmp_path, capsys):  # noqa: F811
    _, run = trained
    root = tmp_path / "h36m"
    make_h36m_fixture(root, subjects=("S9", "S11"), actions=("Walking",), frames=16)
    code, out = run_cli("evaluate", "video", "--protocol", "h36m", "--checkpoint", run, "--data", root,
                        "--out", tmp_path / "eval", "--device", "cpu", capsys=capsys)
    assert code == 0, out.err
    res = json.loads((tmp_path / "eval" / "human36m.json").read_text())
    assert res["psnr_next"] > 0 and res["psnr_120"] > 0


def test_data_prepare_then_train_on_the_store(puppet_root, tmp_path, capsys):
    code, out = run_cli("data", "prepare", puppet_root, "--out", tmp_path / "store", "--size", 16, "--workers", 1,
                        capsys=capsys)
    assert code == 0, out.err
    index = json.loads((tmp_path / "store" / "prepared.json").read_text())
    assert index["image_size"] == 16
    from tests.conftest import TINY

    code, out = run_cli("train", "forecast", "--out", tmp_path / "run", "--data", tmp_path / "store", "--no-progress",
                        *TINY, "train.steps=1", capsys=capsys)
    assert code == 0, out.err
    code, out = run_cli("data", "check", tmp_path / "missing", capsys=capsys)
    assert code == 2 and "missing" in out.err
