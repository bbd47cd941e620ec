from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only shared data folder (../shared/data relative to the repo root)."""
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


TINY = [
    "data.image_size=16", "model.resolution=16", "critic.resolution=16",
    "model.base_width=8", "critic.base_width=8", "model.max_width=32", "critic.max_width=32",
    "model.dense_growth=4", "train.batch_size=4", "train.critic_steps=1", "train.steps=4",
    "train.checkpoint_every=2", "train.log_every=1", "train.sample_every=2", "train.device=cpu",
    "data.max_jump=4",
]


@pytest.fixture(scope="session")
def puppet_root(tmp_path_factory) -> Path:
    """Six small procedural puppet videos in the Penn Action layout."""
    from structvid.data.puppet import make_puppet_dataset

    root = tmp_path_factory.mktemp("puppet") / "data"
    make_puppet_dataset(root, 6, size=32, frames=12, seed=0)
    return root


@pytest.fixture()
def tiny_config(puppet_root):
    """A factory for a tiny forecast experiment on `puppet_root` (16x16, width 8)."""
    from structvid.config import ExperimentConfig, load_config

    def make(*overrides: str):
        return load_config(ExperimentConfig, None, [f"data.root={puppet_root}", *TINY, *overrides])

    return make
