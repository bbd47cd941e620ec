"""Loading and saving 2-D pose sequences as float32 (T, J, 3) arrays of [x, y, visibility].

Coordinates are in pixels of the frame the poses belong to (x right, y down). A joint is
visible when its visibility is > 0; invisible joints may have any (even NaN) coordinates,
which are replaced by 0 on load so downstream arithmetic stays finite. The pose LSTM uses the
coordinates of an invisible joint as an estimate of where it is (Penn Action annotates occluded
joints), except NaN or (0, 0), which mean "unknown" (see data/pose_windows.py fill_invisible).

File formats (chosen by suffix):
- .json: a list of frames, each a list of J [x, y] or [x, y, v] points, or an object
  {"joints": <that list>, "image_size": [H, W]} whose optional image_size declares the frame;
- .npy: a (T, J, 2) array (all joints visible) or (T, J, 3);
- .mat: Penn Action labels: fields x, y, visibility (T, 13) and dimensions [H, W, T].
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.io
from scipy.io.matlab import MatReadError

from structvid.errors import UserError
from structvid.io.files import atomic_path

__all__ = ["load_poses", "save_poses"]

SUFFIXES = (".json", ".npy", ".mat")


def _bad_suffix(path: Path) -> UserError:
    return UserError(f"unknown pose file type '{path.suffix}'; use {', '.join(SUFFIXES)}", path)


def _frame_size(h: object, w: object, path: Path, what: str) -> tuple[int, int]:
    """A declared frame size (height, width) in pixels: two positive integers."""
    try:
        size = (int(h), int(w))  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        size = (0, 0)
    if min(size) < 1:
        raise UserError(f"{what} must be [height, width], two positive integers, got [{h}, {w}]", path)
    return size


def _read_json(path: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    data = json.loads(path.read_text())
    size = None
    if isinstance(data, dict):
        if "joints" not in data:
            raise UserError('is a JSON object without a "joints" list', path)
        if data.get("image_size") is not None:
            hw = data["image_size"]
            if not isinstance(hw, list) or len(hw) != 2:
                raise UserError('"image_size" must be [height, width]', path)
            size = _frame_size(*hw, path, '"image_size"')
        data = data["joints"]
    try:
        with np.errstate(over="ignore"):  # values beyond float32 become inf, reported below
            return np.asarray(data, dtype=np.float32), size
    except (TypeError, ValueError):
        raise UserError("joints must be a list of frames, each a list of [x, y] or [x, y, v] points", path) from None


def _read_mat(path: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    m = scipy.io.loadmat(str(path))
    for key in ("x", "y", "visibility"):
        if key not in m:
            raise UserError(f"has no '{key}' field (Penn Action labels need x, y, visibility)", path)
    x, y, v = (np.asarray(m[k], dtype=np.float32) for k in ("x", "y", "visibility"))
    if not (x.ndim == 2 and x.shape == y.shape == v.shape):
        raise UserError(f"fields x, y, visibility must share a (frames, joints) shape, got {x.shape}, {y.shape}, {v.shape}", path)
    dims = np.asarray(m.get("dimensions", [])).ravel()
    size = _frame_size(dims[0], dims[1], path, "dimensions") if dims.size >= 2 else None
    return np.stack([x, y, v], axis=-1), size


def _read(path: Path) -> tuple[np.ndarray, tuple[int, int] | None]:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise _bad_suffix(path)
    if not path.is_file():
        raise UserError("pose file not found", path)
    try:
        if suffix == ".json":
            return _read_json(path)
        if suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
            if arr.dtype.kind not in "biuf":
                raise UserError(f"holds {arr.dtype} values; poses are real numbers", path)
            with np.errstate(over="ignore"):
                return np.asarray(arr, dtype=np.float32), None
        return _read_mat(path)
    except UserError:
        raise
    except RecursionError:  # JSON nested thousands deep
        raise UserError("cannot read pose file (nested too deeply)", path) from None
    except (OSError, ValueError, TypeError, NotImplementedError, UnicodeDecodeError, MatReadError) as e:
        # json.JSONDecodeError is a ValueError; a .mat with a fake or truncated header is a MatReadError
        raise UserError(f"cannot read pose file ({e})", path) from None


def load_poses(
    path: str | Path,
    num_joints: int | None = 13,
    min_frames: int = 1,
    image_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Load a pose sequence as float32 (T, J, 3) [x, y, visibility] in pixels.

    Checks (each a UserError naming the file): readable, shape (T, J, 2|3), J == num_joints
    (None: any), T >= min_frames, visible joints finite. With image_size=(H, W): if the file
    declares its own frame size (JSON image_size, Penn Action dimensions) and it differs, x/y are
    rescaled to (H, W); then every visible joint must lie in [0, W] x [0, H].
    Frame and joint numbers in messages are 0-based.
    """
    path = Path(path)
    arr, declared = _read(path)

    if arr.ndim != 3 or arr.shape[-1] not in (2, 3):
        raise UserError(f"has shape {arr.shape}; expected (frames, joints, 2 or 3)", path)
    t, j, _ = arr.shape
    if num_joints is not None and j != num_joints:
        raise UserError(f"has {j} joints per frame, expected {num_joints}", path)
    if t < min_frames:
        need = "is" if min_frames == 1 else "are"
        raise UserError(f"has {t} frames, at least {min_frames} {need} needed", path)
    if arr.shape[-1] == 2:
        arr = np.concatenate([arr, np.ones((t, j, 1), np.float32)], axis=-1)

    vis = arr[..., 2]
    bad_v = ~np.isfinite(vis)
    if bad_v.any():
        f, k = np.argwhere(bad_v)[0]
        raise UserError(f"frame {f}, joint {k} has visibility {vis[f, k]}; use 0 or 1", path)
    visible = vis > 0
    bad = visible[..., None] & ~np.isfinite(arr[..., :2])
    if bad.any():
        f, k, c = np.argwhere(bad)[0]
        kind = "NaN" if np.isnan(arr[f, k, c]) else "infinite"
        raise UserError(f"frame {f}, joint {k} is {kind}", path)
    arr[..., :2][~visible] = np.nan_to_num(arr[..., :2][~visible], nan=0.0, posinf=0.0, neginf=0.0)
    if not visible.any():
        raise UserError("has no visible joint in any frame (every visibility is 0)", path)
    seen = arr[..., :2][visible]
    if (seen.max(axis=0) - seen.min(axis=0)).max() < 1:
        raise UserError(f"every visible joint of every frame lies at one point {tuple(seen[0].round(1).tolist())}: "
                        "no body to crop around or to animate", path)

    if image_size is not None:
        h, w = image_size
        if declared is not None and declared != (h, w):
            arr[..., 0] *= w / declared[1]
            arr[..., 1] *= h / declared[0]
        x, y = arr[..., 0], arr[..., 1]
        outside = visible & ((x < 0) | (x > w) | (y < 0) | (y > h))
        if outside.any():
            f, k = np.argwhere(outside)[0]
            size = f"{w}x{h}" if w == h else f"{w}x{h} (width x height)"
            raise UserError(
                f"frame {f}, joint {k} at ({x[f, k]:.1f}, {y[f, k]:.1f}) lies outside the {size} image; "
                "mark it invisible (visibility 0) or rescale the poses",
                path,
            )
    return arr


def save_poses(path: str | Path, joints: np.ndarray, image_size: tuple[int, int] | None = None) -> None:
    """Write (T, J, 2|3) poses atomically as .json or .npy (the inverse of load_poses).

    .json stores {"joints": [...], "image_size": [H, W]} when image_size is given, else the plain
    list of frames. Non-finite coordinates of invisible joints are written as 0 (JSON has no NaN).
    """
    path = Path(path)
    arr = np.array(joints, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[-1] not in (2, 3):
        raise ValueError(f"joints must be (T, J, 2 or 3), got shape {arr.shape}")
    if arr.shape[-1] == 3:
        hidden = ~(arr[..., 2] > 0)
        arr[..., :2][hidden] = np.nan_to_num(arr[..., :2][hidden], nan=0.0, posinf=0.0, neginf=0.0)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".npy"):
        raise UserError(f"cannot write pose file type '{path.suffix}'; use .json or .npy", path)
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, arr, allow_pickle=False)
        else:
            data: object = arr.tolist()
            if image_size is not None:
                data = {"joints": data, "image_size": [int(image_size[0]), int(image_size[1])]}
            tmp.write_text(json.dumps(data, allow_nan=False))
