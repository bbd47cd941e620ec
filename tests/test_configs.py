"""Every committed experiment config loads (no unknown keys, valid values)."""

from pathlib import Path

import pytest
import yaml

from structvid.config import ExperimentConfig, PoseExperimentConfig, RefineExperimentConfig, load_config

REPO = Path(__file__).resolve().parents[1]
FILES = sorted(REPO.glob("configs/*.yaml")) + [REPO / "src/structvid/assets/demo/pose_lstm.yaml",
                                               REPO / "src/structvid/assets/demo/config.yaml"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_config_loads(path: Path) -> None:
    data = yaml.safe_load(path.read_text())
    if "hidden_size" in data.get("model", {}):
        cls = PoseExperimentConfig
    elif "clip_length" in data.get("model", {}):
        cls = RefineExperimentConfig
    else:
        cls = ExperimentConfig
    cfg = load_config(cls, path)
    assert cfg.name == data["name"]


@pytest.mark.parametrize("override, field", [("data.max_start=-1", "max_start"), ("data.speed=[1.2,0.8]", "speed"),
                                             ("train.loss=huber", "loss"), ("train.grad_clip=-1", "grad_clip"),
                                             ("train.weight_decay=-0.1", "weight_decay"),
                                             ("data.min_horizon=0", "min_horizon"),
                                             ("train.step_weights=inverse", "step_weights")])
def test_bad_pose_values_are_user_errors(override: str, field: str) -> None:
    from structvid.errors import UserError

    with pytest.raises(UserError, match=field):
        load_config(PoseExperimentConfig, None, [override])
