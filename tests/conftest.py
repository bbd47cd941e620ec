import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SFM = SHARED / "sfm"
if SFM.is_dir():  # the face path's 3DMM: the shared Surrey Face Model instead of a download (offline CI)
    os.environ.setdefault("STRUCTVID_SFM_DIR", str(SFM))


@pytest.fixture(scope="session")
def faces(shared_data) -> Path:
    """The shared real portraits and videos (../shared/data/faces)."""
    if not (shared_data / "faces" / "s42.jpg").is_file():
        pytest.skip("shared face images not found")
    return shared_data / "faces"


@pytest.fixture(scope="session")
def sfm_model():
    """The Surrey Face Model (MorphableModel), or a skip when the shared copy or eos-py is missing."""
    if not SFM.is_dir():
        pytest.skip(f"Surrey Face Model not found at {SFM}")
    pytest.importorskip("eos")
    from structvid.structure.faces.morphable import default_model

    return default_model("")


@pytest.fixture(scope="session")
def face_store(tmp_path_factory, sfm_model) -> Path:
    """Six synthetic 32x32 face videos of 12 frames (a prepared store)."""
    from structvid.data.faces import synthetic_faces

    return synthetic_faces(tmp_path_factory.mktemp("faces") / "store", sfm_model, videos=6, frames=12, size=32,
                           progress=False)


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


def _ddp_worker(rank, world, port, train, cfg, run_dir, out_dir):
    """One rank of a local gloo run of `structvid.training.tasks.<train>`; saves its modules' parameters."""
    import os

    import torch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from structvid.training import tasks

    captured = {}
    real_loop = tasks.run_loop

    def spy(task, *a, **k):
        captured["modules"] = task.modules
        return real_loop(task, *a, **k)

    tasks.run_loop = spy
    getattr(tasks, train)(cfg, run_dir, progress=False)
    # Parameters only: BN running statistics are broadcast from rank 0 at each forward, so rank 1's buffers
    # legitimately hold its own last batch's statistics.
    params = {n: {k: v.detach().clone() for k, v in m.named_parameters()} for n, m in captured["modules"].items()}
    torch.save(params, os.path.join(out_dir, f"rank{rank}.pt"))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def free_port() -> int:
    """A free TCP port on 127.0.0.1 for a local gloo rendezvous."""
    return _free_port()


@pytest.fixture()
def run_ddp(tmp_path):
    """run_ddp("train_refiner", cfg) trains with 2 gloo processes into tmp_path/run -> (rank 0's, rank 1's
    parameters per module)."""
    import torch
    import torch.multiprocessing as mp

    def run(train: str, cfg, world: int = 2):
        mp.spawn(_ddp_worker, args=(world, _free_port(), train, cfg, str(tmp_path / "run"), str(tmp_path)), nprocs=world,
                 join=True)
        return tuple(torch.load(tmp_path / f"rank{r}.pt") for r in range(world))

    return run
