"""Pretrained networks on disk: `{name}.safetensors` (weights) + `{name}.json` (class and constructor config).

A network is rebuilt from the two files alone: the JSON names a registered class and holds the fields of
its config dataclass; the weights must then match that network exactly.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path, PurePath

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from structvid.config import (
    CriticConfig,
    ForecasterConfig,
    PoseLSTMConfig,
    RefineCriticsConfig,
    RefinerConfig,
    VideoCriticConfig,
    from_dict,
)
from structvid.errors import UserError
from structvid.io.files import atomic_path, atomic_write_text
from structvid.models.critics import ImageCritic, RefineCritics, VideoCritic
from structvid.models.forecaster import Forecaster
from structvid.models.pose_lstm import PoseLSTM
from structvid.models.refiner import Refiner

_REGISTRY: dict[str, tuple[type[nn.Module], type]] = {
    "Forecaster": (Forecaster, ForecasterConfig),
    "ImageCritic": (ImageCritic, CriticConfig),
    "PoseLSTM": (PoseLSTM, PoseLSTMConfig),
    "Refiner": (Refiner, RefinerConfig),
    "VideoCritic": (VideoCritic, VideoCriticConfig),
    "RefineCritics": (RefineCritics, RefineCriticsConfig),
}


def register_model(name: str, cls: type[nn.Module], cfg_cls: type) -> None:
    """Make `cls` (built as `cls(cfg_cls(...))`, keeping `self.config`) saveable and loadable as `name`."""
    _REGISTRY[name] = (cls, cfg_cls)


def state_dict_to_safetensors_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies of a state dict's tensors, as safetensors requires."""
    return {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}


def save_pretrained(model: nn.Module, directory: str | Path, name: str) -> Path:
    """Write `directory/{name}.safetensors` and `directory/{name}.json`, each atomically; returns the weights path.

    `model` must be a bare registered network (unwrap DistributedDataParallel or torch.compile first).
    """
    class_name = next((k for k, (cls, _) in _REGISTRY.items() if type(model) is cls), None)
    if class_name is None:
        raise TypeError(f"{type(model).__name__} is not a registered model class (see register_model)")
    directory = Path(directory)
    weights = directory / f"{name}.safetensors"
    with atomic_path(weights) as tmp:
        save_file(state_dict_to_safetensors_dict(model.state_dict()), str(tmp))
    meta = {"class": class_name, "config": dataclasses.asdict(model.config)}
    atomic_write_text(directory / f"{name}.json", json.dumps(meta, indent=2) + "\n")
    return weights


def load_pretrained(directory: str | Path, name: str, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network saved as `name` in `directory`, load its weights strictly; returned in eval mode.

    Raises UserError naming the file for a missing or corrupt file, an unknown class, a bad config, weights
    whose shapes do not match the config (checked against the safetensors header before anything is
    allocated), or non-finite (NaN/Inf) weights.
    """
    directory = Path(directory)
    meta_path, weights_path = directory / f"{name}.json", directory / f"{name}.safetensors"
    try:
        meta = json.loads(meta_path.read_text())
        class_name, config = meta["class"], meta["config"]
    except FileNotFoundError:
        raise UserError("model config not found", meta_path) from None
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"corrupt model config ({e.__class__.__name__}: {e})", meta_path) from None
    if class_name not in _REGISTRY:
        raise UserError(f"unknown model class {class_name!r} (known: {sorted(_REGISTRY)})", meta_path)
    cls, cfg_cls = _REGISTRY[class_name]
    cfg = from_dict(cfg_cls, config, str(meta_path))
    if not weights_path.is_file():
        raise UserError("weights file not found", weights_path)
    # Shapes first, from the safetensors header and a model built on the meta device (no storage): a config
    # asking for absurd widths is refused before a single tensor is allocated.
    try:
        with torch.device("meta"):
            skeleton = cls(cfg)
    except (ValueError, RuntimeError) as e:
        raise UserError(f"invalid model config: {e}", meta_path) from None
    problems = _mismatches(skeleton.state_dict(), _header_shapes(weights_path))
    if problems:
        raise UserError(f"weights do not match config {meta_path.name}: {'; '.join(problems)}", weights_path)
    try:
        state = load_file(str(weights_path), device="cpu")
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a damaged file
        raise UserError(f"corrupt weights file ({e.__class__.__name__}: {e})", weights_path) from None
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:  # NaN weights would generate black frames and exit 0
        raise UserError(f"non-finite values (NaN or Inf) in {len(bad)} tensor(s): {_listing(bad)}", weights_path)
    model = cls(cfg)
    model.load_state_dict(state, strict=True)
    return model.to(map_location).eval()


def _header_shapes(weights_path: Path) -> dict[str, torch.Size]:
    """Each tensor's shape as the safetensors header states it (reads the header only, no tensor data)."""
    try:
        with safe_open(str(weights_path), "pt") as f:
            return {k: torch.Size(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a damaged header
        raise UserError(f"corrupt weights file ({e.__class__.__name__}: {e})", weights_path) from None


def _listing(keys: list[str], limit: int = 5) -> str:
    more = f" ... ({len(keys) - limit} more)" if len(keys) > limit else ""
    return f"[{', '.join(keys[:limit])}{more}]"


def _mismatches(expected: dict[str, torch.Tensor], found: dict[str, torch.Size], limit: int = 5) -> list[str]:
    """Missing / unexpected keys and shape differences between a model's state dict and a file's shapes."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = [
        f"shape mismatch for {k}: {tuple(found[k])} in the file vs {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in found and found[k] != v.shape
    ]
    return (
        ([f"missing keys {_listing(missing, limit)}"] if missing else [])
        + ([f"unexpected keys {_listing(unexpected, limit)}"] if unexpected else [])
        + shapes[:limit]
        + ([f"... ({len(shapes) - limit} more shape mismatches)"] if len(shapes) > limit else [])
    )


# ---------------------------------------------------------------- run folders

STATE_FILE = "state.pt"  # training state of a checkpoint (training/checkpoint.py)
LATEST = "latest.json"  # a run folder's pointer to its newest complete checkpoint


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None when the run has none.

    latest.json must be {"step": int, "path": "relative/folder"} and point inside the run folder.
    """
    run_dir = Path(run_dir)
    latest = run_dir / LATEST
    if not latest.is_file():
        return None
    try:
        entry = json.loads(latest.read_text())
    except (ValueError, UnicodeDecodeError):
        raise UserError("corrupt latest.json, not JSON (delete it to start over)", latest) from None
    if not (isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("step"), int)
            and not isinstance(entry["step"], bool)):
        raise UserError('corrupt latest.json: expected {"step": <int>, "path": "checkpoints/step_N"}, got '
                        f"{json.dumps(entry)[:80]}", latest)
    rel = PurePath(entry["path"])
    if rel.is_absolute() or ".." in rel.parts or not rel.parts or str(rel) == ".":
        raise UserError(f"latest.json points outside its run folder ({entry['path']!r}); it must name a "
                        "checkpoint folder inside the run", latest)
    path = run_dir / rel
    if path.exists() and not path.is_dir():
        raise UserError(f"latest.json points to {path}, a file, not a checkpoint folder", latest)
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


FORECASTER_NAMES = ("forecaster", "generator")  # G_M's file stem: by stage, or the training loop's module name


def find_module(directory: str | Path, names: tuple[str, ...]) -> str | None:
    """The first of `names` saved in `directory` (both `{name}.safetensors` and `{name}.json`), or None."""
    directory = Path(directory)
    for name in names:
        if (directory / f"{name}.safetensors").is_file() and (directory / f"{name}.json").is_file():
            return name
    return None


def find_forecaster(directory: str | Path) -> str:
    """G_M's file stem in a checkpoint or pipeline folder (FORECASTER_NAMES); UserError when there is none."""
    name = find_module(directory, FORECASTER_NAMES)
    if name is None:
        raise UserError("no G_M in this folder (forecaster.safetensors or generator.safetensors)", directory)
    return name


def run_config_file(ckpt: str | Path, run: str | Path | None = None) -> Path | None:
    """The config.yaml a checkpoint was trained with: the checkpoint folder's own, its run folder's
    (RUN/checkpoints/step_N -> RUN), else `run`'s (the folder the user named); None when there is none."""
    ckpt = Path(ckpt)
    candidates = [ckpt / "config.yaml", ckpt.parent.parent / "config.yaml"]
    if run is not None:
        candidates.append(Path(run) / "config.yaml")
    return next((c for c in candidates if c.is_file()), None)
