
import pytest
import torch
from safetensors.torch import load_file

from structvid.training.checkpoint import latest_checkpoint, save_checkpoint
from structvid.training.tasks import train_forecaster


def _weights(run_dir):
    ckpt = latest_checkpoint(run_dir)
    return {n: load_file(ckpt / f"{n}.safetensors") for n in ("generator", "critic")}


def _assert_same(a, b):
    for net in a:
        assert a[net].keys() == b[net].keys()
        for k in a[net]:
            assert torch.equal(a[net][k], b[net][k]), f"{net}.{k} differs"


def test_run_folder_contents(tmp_path, tiny_config):
    result = train_forecaster(tiny_config(), tmp_path / "run", progress=False)
    run = tmp_path / "run"
    assert result.step == 4
    assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step_00000002", "step_00000004"]
    assert (run / "samples" / "step_00000004.png").is_file()
    assert list((run / "tb").glob("events.out.tfevents.*"))
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 4 and '"critic/gp"' in lines[0] and '"generator/rec_l1"' in lines[0]


def test_resume_equals_uninterrupted_run(tmp_path, tiny_config):
    train_forecaster(tiny_config(), tmp_path / "a", progress=False)
    train_forecaster(tiny_config("train.steps=2"), tmp_path / "b", progress=False)
    assert latest_checkpoint(tmp_path / "b").name == "step_00000002"
    train_forecaster(tiny_config(), tmp_path / "b", resume=True, progress=False)
    _assert_same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    # and a different seed really gives different weights (the comparison can fail)
    train_forecaster(tiny_config("train.seed=1"), tmp_path / "c", progress=False)
    with pytest.raises(AssertionError):
        _assert_same(_weights(tmp_path / "a"), _weights(tmp_path / "c"))


def test_interrupted_checkpoint_is_not_picked(tmp_path, tiny_config, monkeypatch):
    train_forecaster(tiny_config("train.steps=2"), tmp_path / "run", progress=False)
    import structvid.training.checkpoint as ck

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ck.torch, "save", boom)
    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path / "run", 3, {}, {})
    assert latest_checkpoint(tmp_path / "run").name == "step_00000002"
    assert not (tmp_path / "run" / "checkpoints" / "step_00000003").exists()


def test_ddp_two_gloo_processes_keep_identical_parameters(tmp_path, tiny_config, run_ddp):
    cfg = tiny_config("train.steps=3", "train.checkpoint_every=3")
    r0, r1 = run_ddp("train_forecaster", cfg)
    _assert_same(r0, r1)
    # rank 0 alone wrote the run folder, and training moved the weights away from their initial values
    assert latest_checkpoint(tmp_path / "run").name == "step_00000003"
    torch.manual_seed(cfg.train.seed)
    from structvid.models.forecaster import Forecaster

    init = dict(Forecaster(cfg.model).named_parameters())
    assert any(not torch.equal(init[k], r0["generator"][k]) for k in init)


def test_cosine_schedule_and_clipping_resume_exactly(tmp_path, tiny_config):
    import json

    from structvid.training.loop import lr_factor

    assert lr_factor("constant", 3, 4) == 1.0
    assert lr_factor("cosine", 0, 4) == 1.0 and lr_factor("cosine", 2, 4) == pytest.approx(0.5)
    assert lr_factor("cosine", 4, 4) == pytest.approx(0.0, abs=1e-12)
    opts = ("train.lr_schedule=cosine", "train.grad_clip=0.001")
    train_forecaster(tiny_config(*opts), tmp_path / "a", progress=False)
    # the same 4-step run, interrupted after step 2: resuming must follow the 4-step schedule exactly
    train_forecaster(tiny_config(*opts), tmp_path / "b", progress=False)
    latest = tmp_path / "b" / "latest.json"
    latest.write_text(latest.read_text().replace("step_00000004", "step_00000002"))
    train_forecaster(tiny_config(*opts), tmp_path / "b", resume=True, progress=False)
    _assert_same(_weights(tmp_path / "a"), _weights(tmp_path / "b"))
    # the last step (index 3 of 4) ran at initial_lr * lr_factor(3)
    state = torch.load(latest_checkpoint(tmp_path / "a") / "state.pt", weights_only=True)
    group = state["optimizers"]["generator"]["param_groups"][0]
    assert group["lr"] == pytest.approx(group["initial_lr"] * lr_factor("cosine", 3, 4))
    # clipping and the schedule both change the result (each comparison can fail)
    train_forecaster(tiny_config("train.lr_schedule=cosine"), tmp_path / "c", progress=False)
    train_forecaster(tiny_config("train.grad_clip=0.001"), tmp_path / "d", progress=False)
    for other in ("c", "d"):
        with pytest.raises(AssertionError):
            _assert_same(_weights(tmp_path / "a"), _weights(tmp_path / other))
    assert json.loads(latest.read_text())


def test_bad_schedule_is_a_user_error(tmp_path, tiny_config):
    from structvid.errors import UserError

    with pytest.raises(UserError, match="lr_schedule"):
        train_forecaster(tiny_config("train.lr_schedule=linear"), tmp_path / "x", progress=False)
