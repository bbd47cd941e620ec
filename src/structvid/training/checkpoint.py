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

import errno
import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import nn

from structvid.errors import UserError
from structvid.io.files import atomic_dir, atomic_write_text, describe_os_error, output_errors
from structvid.models.saving import (  # noqa: F401 - run-folder lookup lives beside the loader; re-exported
    LATEST, STATE_FILE, find_checkpoint, latest_checkpoint, load_pretrained, save_pretrained,
)

FULL_DISK_BYTES = 1 << 20  # free space below which a failed checkpoint write is taken for a full disk


def checkpoint_dir(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"step_{step:08d}"


def _full_disk(e: BaseException, where: Path) -> bool:
    """Whether a failed write was a full disk.

    Python's own writes raise OSError(ENOSPC/EDQUOT). torch.save's C++ writer reports it as a RuntimeError
    ("basic_ios::clear: iostream error", "file write failed") and safetensors as its own error, both without
    an errno, so for those the file system is asked: a write fails for lack of space only once the disk is
    full, and the partial file still fills it (the caller checks before that file is removed).
    """
    if isinstance(e, OSError):
        return e.errno in (errno.ENOSPC, errno.EDQUOT)
    if "No space left on device" in str(e):
        return True
    try:
        return shutil.disk_usage(where).free < FULL_DISK_BYTES
    except OSError:
        return False


def save_checkpoint(run_dir: str | Path, step: int, modules: dict[str, nn.Module],
                    optimizers: dict[str, torch.optim.Optimizer], extra: dict[str, Any] | None = None,
                    keep: int = 2) -> Path:
    """Write a complete checkpoint for `step`, point latest.json at it and prune all but `keep` newest.

    A full disk is one line naming the file that did not fit; latest.json keeps pointing at the previous
    complete checkpoint and no temporary folder stays behind (atomic_dir).
    """
    run_dir = Path(run_dir)
    target = checkpoint_dir(run_dir, step)
    writing = target
    try:
        with atomic_dir(target) as tmp:
            try:
                for name, module in modules.items():
                    writing = target / f"{name}.safetensors"
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
                writing = target / STATE_FILE
                torch.save(state, tmp / STATE_FILE)
            except Exception as e:  # noqa: BLE001 - torch and safetensors report a full disk in their own ways
                if _full_disk(e, tmp):
                    raise UserError(f"no space left on device while writing {writing}") from None
                raise
        with output_errors(run_dir / LATEST):
            atomic_write_text(run_dir / LATEST, json.dumps({"step": step, "path": str(target.relative_to(run_dir))}))
    except OSError as e:  # the rename into place, the temp folder itself
        raise UserError(describe_os_error(e, writing)) from None
    if keep > 0:
        for old in sorted((run_dir / "checkpoints").glob("step_*"))[:-keep]:
            if old != target:
                shutil.rmtree(old, ignore_errors=True)
    return target


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
