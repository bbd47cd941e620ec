"""A run folder protects itself (issue 8 §2): refusal without --resume, --force, the lock, failed starts,
interrupted-save leftovers, metrics after a resume, latest.json's shape and reach, a full disk."""

import errno
import json
import os
import socket
import subprocess
import sys

import pytest
import torch.multiprocessing as mp

from structvid.cli import main
from structvid.errors import UserError
from structvid.training import checkpoint as ck
from structvid.training.checkpoint import latest_checkpoint
from structvid.training.run_folder import LOCK
from structvid.training.tasks import forecast_task, run_training, train_forecaster
from tests.conftest import TINY


def snapshot(root):
    """Every file and folder under `root` with its bytes, inode and mtime: equal only if nothing was touched."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.stat()
        out[str(p.relative_to(root))] = (p.read_bytes() if p.is_file() else None, st.st_ino, st.st_mtime_ns)
    return out


def steps_logged(run):
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def cli(capsys, *args):
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err


@pytest.fixture()
def run2(tmp_path, tiny_config):
    """A finished 2-step run (checkpoint at step 2)."""
    run = tmp_path / "run"
    train_forecaster(tiny_config("train.steps=2"), run, progress=False)
    return run


def test_training_into_a_run_without_resume_refuses_and_touches_nothing(run2, tiny_config, puppet_root, capsys):
    before = snapshot(run2)
    with pytest.raises(UserError, match=r"already holds a run \(config.yaml, latest.json, checkpoints, metrics"):
        train_forecaster(tiny_config("train.seed=1"), run2, progress=False)
    code, err = cli(capsys, "train", "forecast", "--out", run2, "--data", puppet_root, "--no-progress", *TINY)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--resume" in err and "--force" in err
    assert snapshot(run2) == before
    assert not (run2 / LOCK).exists()


def test_force_starts_over_and_keeps_the_users_files(run2, tmp_path, tiny_config):
    (run2 / "notes.txt").write_text("mine")
    (run2 / "eval").mkdir()
    train_forecaster(tiny_config("train.steps=4"), run2, resume=True, progress=False)  # now a 4-step run
    with pytest.raises(UserError, match="--resume .* --force"):
        train_forecaster(tiny_config(), run2, resume=True, force=True, progress=False)
    train_forecaster(tiny_config("train.steps=2", "train.seed=3"), run2, force=True, progress=False)
    assert sorted(p.name for p in (run2 / "checkpoints").iterdir()) == ["step_00000002"]
    assert steps_logged(run2) == [1, 2]
    assert sorted(p.name for p in (run2 / "samples").iterdir()) == ["step_00000002.png"]
    assert "seed: 3" in (run2 / "config.yaml").read_text()
    assert (run2 / "notes.txt").read_text() == "mine" and (run2 / "eval").is_dir()
    # the weights are those of a fresh run with the same config, not a continuation
    train_forecaster(tiny_config("train.steps=2", "train.seed=3"), tmp_path / "fresh", progress=False)
    from safetensors.torch import load_file

    a = load_file(latest_checkpoint(run2) / "generator.safetensors")
    b = load_file(latest_checkpoint(tmp_path / "fresh") / "generator.safetensors")
    assert all((a[k] == b[k]).all() for k in a)


def test_a_second_training_into_the_same_folder_at_once_refuses(tmp_path, tiny_config):
    run = tmp_path / "run"
    errors = []

    def build_and_try_again(cfg, device, info):  # the first training is starting: the folder is locked
        try:
            train_forecaster(tiny_config(), run, progress=False)
        except UserError as e:
            errors.append(str(e))
        return forecast_task(cfg, device, info)

    run_training(tiny_config("train.steps=2"), build_and_try_again, run, progress=False)
    assert len(errors) == 1
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in errors[0]
    assert latest_checkpoint(run).name == "step_00000002" and steps_logged(run) == [1, 2]
    assert not (run / LOCK).exists()


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_owners(tmp_path, tiny_config, caplog):
    run = tmp_path / "run"
    run.mkdir()
    lock = run / LOCK
    host = socket.gethostname()
    # live owner on this host: refused, named, left in place
    lock.write_text(json.dumps({"pid": os.getpid(), "host": host, "started": "2020-01-01T00:00:00"}))
    with pytest.raises(UserError, match=f"pid {os.getpid()} on host {host}"):
        train_forecaster(tiny_config("train.steps=1"), run, progress=False)
    assert lock.exists() and not (run / "config.yaml").exists()
    # another host: never presumed stale, even with a pid that is dead here; says how to remove it
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": host + "-elsewhere"}))
    with pytest.raises(UserError, match=f"{host}-elsewhere.*delete {lock}"):
        train_forecaster(tiny_config("train.steps=1"), run, progress=False)
    # a lock that is not one (empty: a crash between create and write): refused, says what to do
    lock.write_text("")
    with pytest.raises(UserError, match="delete the lock file"):
        train_forecaster(tiny_config("train.steps=1"), run, progress=False)
    # stale: this host, dead pid -> replaced with a warning, training runs, lock released at the end
    lock.write_text(json.dumps({"pid": _dead_pid(), "host": host}))
    caplog.set_level("WARNING")
    train_forecaster(tiny_config("train.steps=1"), run, progress=False)
    assert "stale lock" in caplog.text and latest_checkpoint(run).name == "step_00000001"
    assert not lock.exists() and not list(run.glob(f".{LOCK}*"))


def test_a_full_disk_while_locking_leaves_no_lock(tmp_path, tiny_config, monkeypatch):
    from structvid.training import run_folder

    class FullDisk:
        def __init__(self, fd, mode):
            os.close(fd)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(run_folder.os, "fdopen", FullDisk)
    run = tmp_path / "run"
    with pytest.raises(UserError, match=f"no space left on device while writing {run / LOCK}"):
        train_forecaster(tiny_config("train.steps=1"), run, progress=False)
    assert not run.exists()  # not even an empty lock (which would refuse every later start)


def test_failed_starts_leave_the_folder_as_it_was(tmp_path, run2, tiny_config, puppet_root, capsys):
    # a fresh folder: missing data leaves no folder behind
    fresh = tmp_path / "new" / "run"
    with pytest.raises(UserError, match="missing"):
        train_forecaster(tiny_config(f"data.root={tmp_path / 'missing'}"), fresh, progress=False)
    assert not (tmp_path / "new").exists()
    # a run resumed with a model override its checkpoint does not match: nothing changes, and a plain
    # --resume (which reads the run's config.yaml) still works afterwards
    before = snapshot(run2)
    code, err = cli(capsys, "train", "forecast", "--out", run2, "--resume", "--no-progress", "model.base_width=4",
                    "train.steps=4")
    assert code == 2 and "generator.json" in err
    code, err = cli(capsys, "train", "forecast", "--out", run2, "--resume", "--no-progress",
                    f"data.root={tmp_path / 'missing'}", "train.steps=4")
    assert code == 2
    # --force removes the previous run only once the new one has started
    with pytest.raises(UserError, match="missing"):
        train_forecaster(tiny_config(f"data.root={tmp_path / 'missing'}"), run2, force=True, progress=False)
    assert snapshot(run2) == before
    code, err = cli(capsys, "train", "forecast", "--out", run2, "--resume", "--no-progress", "train.steps=4")
    assert code == 0, err
    assert latest_checkpoint(run2).name == "step_00000004" and steps_logged(run2) == [1, 2, 3, 4]


def test_interrupted_save_leftovers_are_removed_on_the_next_start(run2, tiny_config):
    cks = run2 / "checkpoints"
    (cks / ".step_00000004.k2j3.tmp").mkdir()
    (cks / ".step_00000004.k2j3.tmp" / "state.pt").write_bytes(b"half")
    (run2 / ".latest.x81.tmp.json").write_text('{"st')
    (run2 / "samples" / ".step_00000004.q1.tmp.png").write_bytes(b"")
    # killed between atomic_dir's two renames: step_2 exists only as .step_00000002.old, which latest.json names
    os.replace(cks / "step_00000002", cks / ".step_00000002.old")
    train_forecaster(tiny_config(), run2, resume=True, progress=False)
    assert sorted(p.name for p in cks.iterdir()) == ["step_00000002", "step_00000004"]
    assert not [p for p in run2.rglob(".*") if "tmp" in p.name or p.name.endswith(".old")]
    assert steps_logged(run2) == [1, 2, 3, 4]


def test_metrics_have_no_repeated_steps_after_a_resume(tmp_path, tiny_config):
    run = tmp_path / "run"
    train_forecaster(tiny_config(), run, progress=False)
    # back to step 2, as if killed after it, with a line cut short by the kill
    (run / "latest.json").write_text(json.dumps({"step": 2, "path": "checkpoints/step_00000002"}))
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "critic/')
    train_forecaster(tiny_config(), run, resume=True, progress=False)
    assert steps_logged(run) == [1, 2, 3, 4]


@pytest.mark.parametrize("content, problem", [
    ("[]", "expected"), ("5", "expected"), ('"checkpoints/step_00000002"', "expected"), ("null", "expected"),
    ('{"path": 5, "step": 2}', "expected"), ('{"path": "checkpoints/step_00000002", "step": "x"}', "expected"),
    ('{"path": "checkpoints/step_00000002", "step": true}', "expected"),
    ('{"path": "../other/checkpoints/step_00000002", "step": 2}', "outside"),
    ("ABS", "outside"), ('{"path": "", "step": 2}', "outside"),
])
def test_latest_json_of_the_wrong_shape_or_reach_is_one_clear_line(run2, tmp_path, content, problem, capsys):
    other = tmp_path / "other" / "checkpoints" / "step_00000002"
    other.parent.mkdir(parents=True)
    os.symlink(run2 / "checkpoints" / "step_00000002", other)  # a real checkpoint outside the run folder
    if content == "ABS":
        content = json.dumps({"path": str(other), "step": 2})
    (run2 / "latest.json").write_text(content)
    with pytest.raises(UserError, match=problem) as e:
        latest_checkpoint(run2)
    assert e.value.path == str(run2 / "latest.json") and "\n" not in str(e.value)
    code, err = cli(capsys, "evaluate", "poses", "--checkpoint", run2, "--data", tmp_path, "--out", tmp_path / "ev")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "latest.json" in err


def test_full_disk_while_checkpointing(run2, tiny_config, monkeypatch, puppet_root, capsys):
    real_usage = ck.shutil.disk_usage

    def torch_save_on_a_full_disk(obj, path):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("basic_ios::clear: iostream error")

    monkeypatch.setattr(ck.torch, "save", torch_save_on_a_full_disk)
    monkeypatch.setattr(ck.shutil, "disk_usage", lambda p: real_usage(p)._replace(free=0))
    code, err = cli(capsys, "train", "forecast", "--out", run2, "--resume", "--no-progress", "train.steps=4")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"no space left on device while writing {run2 / 'checkpoints' / 'step_00000004' / 'state.pt'}" in err
    assert latest_checkpoint(run2).name == "step_00000002"
    assert sorted(p.name for p in (run2 / "checkpoints").iterdir()) == ["step_00000002"]  # no temp folder
    assert not (run2 / LOCK).exists()
    # the weights' writer reporting ENOSPC as an OSError; and a failure that is not a full disk stays itself
    monkeypatch.undo()

    def enospc(module, directory, name):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck, "save_pretrained", enospc)
    with pytest.raises(UserError, match="no space left on device while writing .*step_00000004/generator"):
        train_forecaster(tiny_config(), run2, resume=True, progress=False)
    assert latest_checkpoint(run2).name == "step_00000002"
    assert sorted(p.name for p in (run2 / "checkpoints").iterdir()) == ["step_00000002"]


def _ddp_refused(rank, world, port, cfg, run_dir, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    try:
        train_forecaster(cfg, run_dir, progress=False)
    except UserError as e:
        with open(os.path.join(out_dir, f"rank{rank}.txt"), "w") as f:
            f.write(str(e))


def test_ddp_every_rank_stops_when_rank_0_is_refused(run2, tiny_config, tmp_path, free_port):
    before = snapshot(run2)
    mp.spawn(_ddp_refused, args=(2, free_port, tiny_config(), str(run2), str(tmp_path)), nprocs=2, join=True)
    assert "already holds a run" in (tmp_path / "rank0.txt").read_text()
    assert "rank 0 could not start" in (tmp_path / "rank1.txt").read_text()
    assert snapshot(run2) == before
