"""Run-folder checkpoints: safetensors weights + JSON config per network, optimizer/step/RNG state.

Layout of a run folder::

    RUN/config.yaml                      resolved experiment config
    RUN/checkpoints/step_00001000/       one folder per checkpoint, renamed into place when complete
        generator.safetensors + .json    weights + constructor config (models.saving)
        critic.safetensors + .json
        state.pt                         optimizers, AMP scaler, step, torch/python RNG states
    RUN/latest.json                      {"step": 1000, "path": "checkpoints/step_00001000"}

`latest.json` is replaced atomically only after the checkpoint folder is complete, so an interrupted
write never becomes the checkpoint that `--resume` or `from_pretrained` picks.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from structvid.errors import UserError
from structvid.io.files import atomic_dir, atomic_write_text
from structvid.models.saving import load_pretrained, save_pretrained

STATE_FILE = "state.pt"
LATEST = "latest.json"


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:08d}"


def save_checkpoint(run_dir: str | Path, step: int, modules: dict[str, nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer], extra: dict[str, Any] | None = None,
                    keep: int = 2) -> Path:
    """Write a complete checkpoint for `step`, point latest.json at it and prune all but `keep` newest."""
    run_dir = Path(run_dir)
    target = checkpoint_dir(run_dir, step)
    with atomic_dir(target) as tmp:
        for name, module in modules.items():
            save_pretrained(module, tmp, name)
        state = {
            "step": step,
            "optimizers": {k: opt.state_dict() for k, opt in optimizers.items()},
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python": random.getstate(),
            },
            "extra": extra or {},
        }
        torch.save(state, tmp / STATE_FILE)
    atomic_write_text(run_dir / LATEST, json.dumps({"step": step, "path": str(target.relative_to(run_dir))}))
    if keep > 0:
        for old in sorted((run_dir / "checkpoints").glob("step_*"))[:-keep]:
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    return target


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None when the run has none."""
    run_dir = Path(run_dir)
    latest = run_dir / LATEST
    if not latest.is_file():
        return None
    try:
        path = run_dir / json.loads(latest.read_text())["path"]
    except (ValueError, KeyError):
        raise UserError("corrupt latest.json (delete it to start over)", latest) from None
    if not path.is_dir():
        raise UserError(f"latest.json points to a missing checkpoint {path}", latest)
    return path


def find_checkpoint(path: str | Path) -> Path:
    """Accept a run folder (its latest checkpoint) or a checkpoint folder itself."""
    path = Path(path)
    if not path.exists():
        raise UserError("checkpoint or run folder not found", path)
    if (path / STATE_FILE).is_file() or any(path.glob("*.safetensors")):
        return path
    ckpt = latest_checkpoint(path)
    if ckpt is None:
        raise UserError("no checkpoint found (expected latest.json or *.safetensors)", path)
    return ckpt


def load_checkpoint(ckpt: Path, modules: dict[str, nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """Restore modules (strictly, configs must match), optimizers and RNG states; returns the state dict."""
    for name, module in modules.items():
        loaded = load_pretrained(ckpt, name)
        if getattr(loaded, "config", None) != getattr(module, "config", None):
            raise UserError(
                f"{name} config in the checkpoint ({loaded.config}) differs from the experiment's "
                f"({module.config}); resume with the run's own config.yaml",
                ckpt / f"{name}.json",
            )
        module.load_state_dict(loaded.state_dict())
    state_path = ckpt / STATE_FILE
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError("checkpoint has no training state (state.pt); cannot resume from it", state_path) from None
    except Exception as e:  # noqa: BLE001 - any load error means a corrupt file
        raise UserError(f"corrupt training state ({e.__class__.__name__})", state_path) from None
    for name, opt in optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
    torch.set_rng_state(state["rng"]["torch"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    random.setstate(state["rng"]["python"])
    return state
