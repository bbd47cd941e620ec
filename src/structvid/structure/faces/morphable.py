"""The 3D morphable model of §4 (Eq. 1-2) and the per-frame face parameters the face structure renders.

Eq. 1:  S = S̄ + A_id·α + A_exp·β        (V, 3) vertices of a face
Eq. 2:  V(p) = f · Pr · R · S + t₂d     scaled orthographic projection

Conventions used everywhere in structvid's face path:

* model space: x to the subject's left on screen (viewer's right), y up, z towards the viewer (OpenGL, as the
  Surrey Face Model and the BFM store them); units are the model's (millimetres for both);
* image space: pixels, x right, y down, pixel (row r, column c) centred at (x = c, y = r) as for joint
  heatmaps; `project` returns [x, y, depth] with depth = f·(R·S)_z, larger = nearer the camera;
* α are in units of the identity basis' standard deviations (eos' "rescaled" PCA basis, α ~ N(0, I)); β are
  blendshape weights (SFM: 6 expressions, 0 = neutral, 1 = the full expression);
* a frame's parameters are one float vector (`FaceParams.pack`): rotation vector (3, axis-angle of R, model
  → camera), scale f (pixels per model unit), translation t₂d (2, pixels), α (n_id), β (n_exp).

Default model: the public Surrey Face Model (3,448 vertices, 63 identity components, 6 expression
blendshapes) read with eos-py. The paper used the BFM with FaceWarehouse expressions as fitted by 3DDFA; the
BFM needs a licence agreement and 3DDFA's files are pickles, so structvid defaults to SFM + eos (PyPI wheels,
a free model) and reads the 3DDFA layout only on request (`load_bfm`, with a restricted unpickler).
"""

from __future__ import annotations

import functools
import io
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from structvid.errors import UserError
from structvid.io.download import RemoteFile, fetch

# The public SFM files, from eos' repository at the release the PyPI package eos-py 1.5.0 was built from.
_EOS_SHARE = "https://raw.githubusercontent.com/patrikhuber/eos/v1.5.0/share/"
SFM_FILES = {
    "sfm_shape_3448.bin": "43750338ae533e7fb981e924b6f67ebde3d292f15ec4fc886ae5af14308ad980",
    "expression_blendshapes_3448.bin": "a77c81712fc5e8b08a1be4cd2824d51514e5bde6578109ae5240dfb3489efd43",
    "ibug_to_sfm.txt": "810810c457184526c7d54305ecbc5da764e2431b5e66025d921a7d424aebfac9",
    "sfm_3448_edge_topology.json": "5934e5ec34dd6779fda06d28a1f8d02ca9a238bff882e5ccd6da5af9fffe61d5",
    "sfm_model_contours.json": "c9e69bfa995ab19ac6b27abb07729eb0520a00bb192be12426ca6bce76f3fded",
}


def require(module: str):
    """Import an optional face dependency, or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        pip = {"eos": "eos-py", "dlib": "dlib-bin"}.get(module, module)
        raise UserError(f"the face path needs the optional package {pip!r}: pip install 'structvid[faces]'") from None


def sfm_folder(folder: str | Path | None = None) -> Path:
    """The folder holding the SFM files: `folder` if given, else $STRUCTVID_SFM_DIR when set, else the download
    cache (fetched on first use)."""
    folder = folder if folder is not None else os.environ.get("STRUCTVID_SFM_DIR") or None
    if folder is not None:
        folder = Path(folder)
        missing = [f for f in SFM_FILES if not (folder / f).is_file()]
        if missing:
            raise UserError(f"not a Surrey Face Model folder: missing {', '.join(missing)}", folder)
        return folder
    for name, sha in SFM_FILES.items():
        path = fetch(RemoteFile(_EOS_SHARE + name, name, sha, f"Surrey Face Model file {name}"))
    return path.parent


@dataclass
class MorphableModel:
    """Eq. 1: S = S̄ + A_id·α + A_exp·β, plus the triangles and the iBUG-68 landmark vertices."""

    mean: np.ndarray  # (V, 3) float32 S̄
    identity_basis: np.ndarray  # (V*3, n_id) float32 A_id, columns scaled by the components' std devs
    expression_basis: np.ndarray  # (V*3, n_exp) float32 A_exp (blendshape offsets)
    triangles: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside (front faces towards +z)
    landmarks: np.ndarray  # (68,) int64 vertex per iBUG landmark (0-based), -1 where the model has none
    expression_names: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        v = len(self.mean)
        if self.mean.shape != (v, 3) or self.identity_basis.shape[0] != 3 * v or self.expression_basis.shape[0] != 3 * v:
            raise ValueError(f"inconsistent morphable model shapes: mean {self.mean.shape}, A_id "
                             f"{self.identity_basis.shape}, A_exp {self.expression_basis.shape}")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3 or self.triangles.min() < 0 or self.triangles.max() >= v:
            raise ValueError(f"triangles must be (F, 3) vertex indices below {v}")

    @property
    def num_vertices(self) -> int:
        return len(self.mean)

    @property
    def n_id(self) -> int:
        return self.identity_basis.shape[1]

    @property
    def n_exp(self) -> int:
        return self.expression_basis.shape[1]

    @property
    def num_params(self) -> int:
        """Length of one frame's packed parameter vector (FaceParams)."""
        return 6 + self.n_id + self.n_exp

    def shape(self, alpha: np.ndarray | None = None, beta: np.ndarray | None = None) -> np.ndarray:
        """Eq. 1 for (..., n_id) α and (..., n_exp) β (None = 0) -> (..., V, 3) float32 vertices."""
        off = np.zeros(3 * self.num_vertices, np.float32)
        if alpha is not None:
            off = off + np.asarray(alpha, np.float32) @ self.identity_basis.T  # (..., V*3)
        if beta is not None:
            off = off + np.asarray(beta, np.float32) @ self.expression_basis.T
        return self.mean + off.reshape(*off.shape[:-1], self.num_vertices, 3)  # (..., V, 3)


def rotation_matrix(rotvec: np.ndarray) -> np.ndarray:
    """(..., 3) rotation vectors (axis-angle) -> (..., 3, 3) rotation matrices (Rodrigues)."""
    from scipy.spatial.transform import Rotation

    rv = np.asarray(rotvec, np.float64)
    return Rotation.from_rotvec(rv.reshape(-1, 3)).as_matrix().reshape(*rv.shape[:-1], 3, 3)


def project(vertices: np.ndarray, rotation: np.ndarray, scale: float | np.ndarray,
            translation: np.ndarray) -> np.ndarray:
    """Eq. 2, scaled orthographic projection: (..., V, 3) model vertices -> (..., V, 3) [x, y, depth] in image
    pixels. x = f·(R·S)_x + t_x, y = t_y − f·(R·S)_y (image rows grow downwards), depth = f·(R·S)_z."""
    cam = np.einsum("...ij,...vj->...vi", np.asarray(rotation, np.float64), np.asarray(vertices, np.float64))
    f = np.asarray(scale, np.float64)[..., None]
    t = np.asarray(translation, np.float64)
    out = np.empty(cam.shape, np.float64)
    out[..., 0] = f * cam[..., 0] + t[..., None, 0]
    out[..., 1] = t[..., None, 1] - f * cam[..., 1]
    out[..., 2] = f * cam[..., 2]
    return out


@dataclass
class FaceParams:
    """One frame's face: pose (R as a rotation vector, f, t₂d) and coefficients α, β (see module docstring)."""

    rotvec: np.ndarray  # (..., 3)
    scale: np.ndarray  # (...,)
    translation: np.ndarray  # (..., 2)
    alpha: np.ndarray  # (..., n_id)
    beta: np.ndarray  # (..., n_exp)

    def pack(self) -> np.ndarray:
        """-> (..., 6 + n_id + n_exp) float32."""
        parts = [self.rotvec, np.asarray(self.scale)[..., None], self.translation, self.alpha, self.beta]
        return np.concatenate([np.asarray(p, np.float32) for p in parts], axis=-1)

    @classmethod
    def unpack(cls, params: np.ndarray, n_id: int, n_exp: int) -> "FaceParams":
        p = np.asarray(params, np.float32)
        if p.shape[-1] != 6 + n_id + n_exp:
            raise ValueError(f"face parameters must have {6 + n_id + n_exp} values per frame, got {p.shape[-1]}")
        return cls(p[..., 0:3], p[..., 3], p[..., 4:6], p[..., 6 : 6 + n_id], p[..., 6 + n_id :])

    def vertices(self, model: MorphableModel) -> np.ndarray:
        """Eq. 1 then Eq. 2: (..., V, 3) [x, y, depth] image-space vertices."""
        return project(model.shape(self.alpha, self.beta), rotation_matrix(self.rotvec), self.scale, self.translation)

    def transformed(self, affine: np.ndarray) -> "FaceParams":
        """The same face after an image transform [[a, 0, b], [0, a, c]] (a crop and resize): f' = a·f,
        t' = a·t + (b, c). Rotation, α and β do not change."""
        a = np.asarray(affine, np.float64)
        if abs(a[0, 1]) > 1e-9 or abs(a[1, 0]) > 1e-9 or abs(a[0, 0] - a[1, 1]) > 1e-6 * abs(a[0, 0]):
            raise ValueError("face parameters follow only uniform scale + translation crops")
        k = a[0, 0]
        t = np.asarray(self.translation, np.float64) * k + a[:, 2]
        return FaceParams(self.rotvec, np.asarray(self.scale) * k, t.astype(np.float32), self.alpha, self.beta)


# ----------------------------------------------------------------------------------------------- loaders


def read_ibug_mapping(path: str | Path) -> np.ndarray:
    """eos' `ibug_to_sfm.txt` (TOML `[landmark_mappings]`, 1-based iBUG id = vertex) -> (68,) vertex or -1."""
    import tomllib

    try:
        table = tomllib.loads(Path(path).read_text())["landmark_mappings"]
        out = np.full(68, -1, np.int64)
        for k, v in table.items():
            i = int(k)
            if not 1 <= i <= 68:
                raise ValueError(f"iBUG landmark {i} is not in 1..68")
            out[i - 1] = int(v)
    except (OSError, KeyError, ValueError, tomllib.TOMLDecodeError) as e:
        raise UserError(f"cannot read the landmark mapping ({e})", path) from None
    return out


def load_sfm(folder: str | Path | None = None) -> MorphableModel:
    """The Surrey Face Model + its 6 expression blendshapes, read with eos-py (downloaded when `folder` is None)."""
    eos = require("eos")
    folder = sfm_folder(folder)
    try:
        m = eos.morphablemodel.load_model(str(folder / "sfm_shape_3448.bin"))
        blend = eos.morphablemodel.load_blendshapes(str(folder / "expression_blendshapes_3448.bin"))
    except RuntimeError as e:
        raise UserError(f"eos cannot read the Surrey Face Model ({e})", folder) from None
    shape = m.get_shape_model()
    mean = np.asarray(shape.get_mean(), np.float32).reshape(-1, 3)
    ident = np.asarray(shape.get_rescaled_pca_basis(), np.float32)
    expr = np.stack([np.asarray(b.deformation, np.float32) for b in blend], axis=1)
    tris = np.asarray(shape.get_triangle_list(), np.int64)
    return MorphableModel(mean, ident, expr, tris, read_ibug_mapping(folder / "ibug_to_sfm.txt"),
                          tuple(b.name for b in blend), source=str(folder))


class _ArraysOnly(pickle.Unpickler):
    """Admits numpy arrays, numpy scalars/dtypes and plain containers; anything else (a class or function that
    loading would construct or call) is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("collections", "OrderedDict"), ("builtins", "set"), ("builtins", "frozenset"),
        ("_codecs", "encode"),  # protocol-2 pickles store array bytes as latin-1 text: str -> bytes, nothing else
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays and plain containers)")


def safe_unpickle(path: str | Path):
    """Read a pickle of numpy arrays and plain containers without running code from it."""
    try:
        data = Path(path).read_bytes()
        return _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    except FileNotFoundError:
        raise UserError("file not found", path) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise UserError(f"not a pickle of plain arrays ({e})", path) from None


def load_bfm(path: str | Path, landmarks: np.ndarray | None = None) -> MorphableModel:
    """A BFM-derived model in 3DDFA's pickle layout (`bfm_noneck_v3.pkl`: u (3V, 1), w_shp (3V, n_id),
    w_exp (3V, n_exp), tri (3, F) or (F, 3), keypoints (68·3,) flattened vertex coordinate indices).

    For users who hold the BFM licence. Read with a restricted unpickler (`safe_unpickle`). 3DDFA's
    bases are unscaled (α in model units): kept as stored. Its model space is y up, z towards the viewer."""
    d = safe_unpickle(path)
    try:
        if not isinstance(d, dict):
            raise ValueError("expected a dict of arrays")
        mean = np.asarray(d["u"], np.float32).reshape(-1, 3)
        ident = np.asarray(d["w_shp"], np.float32)
        expr = np.asarray(d["w_exp"], np.float32)
        tri = np.asarray(d["tri"], np.int64)
        if tri.shape[0] == 3 and tri.shape[1] != 3:
            tri = tri.T
        if landmarks is None and "keypoints" in d:
            kp = np.asarray(d["keypoints"], np.int64).reshape(-1)
            landmarks = kp[::3] // 3 if len(kp) == 3 * 68 else kp
        lm = np.full(68, -1, np.int64) if landmarks is None else np.asarray(landmarks, np.int64)
        return MorphableModel(mean, ident, expr, np.ascontiguousarray(tri), lm, source=str(path))
    except (KeyError, ValueError, TypeError) as e:
        raise UserError(f"not a 3DDFA BFM model file ({e})", path) from None


def load_model(spec: str | Path | None = None) -> MorphableModel:
    """`None`/""/"sfm": the SFM ($STRUCTVID_SFM_DIR when set, else the download cache); a folder: SFM files
    there; a `.pkl`: `load_bfm`."""
    if spec is None or str(spec) in ("", "sfm"):
        return load_sfm(None)
    p = Path(spec)
    if p.suffix == ".pkl":
        return load_bfm(p)
    return load_sfm(p)


@functools.lru_cache(maxsize=4)
def default_model(spec: str = "") -> MorphableModel:
    """`load_model(spec)`, read once per process (eos takes ~0.1 s and the arrays are shared read-only)."""
    m = load_model(spec)
    for a in (m.mean, m.identity_basis, m.expression_basis, m.triangles, m.landmarks):
        a.setflags(write=False)
    return m
