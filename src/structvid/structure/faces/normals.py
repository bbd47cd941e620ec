"""Face normal maps: the face motion maps M_t of §4 (Zhao et al., IJCV 2020: "the conditional motion maps are the
normal maps calculated from the 3D face models by Eq. (2)"), which condition G_M (Eq. 6) and G_R.

A frame's packed `FaceParams` (in the pixels of the output map) give the mesh S by Eq. 1 and its image-space
vertices by Eq. 2; the mesh is rasterised with a z-buffer (`raster.rasterize`) and every covered pixel gets the
unit normal of the visible surface. Background pixels are exactly 0; normals are unit vectors, so values lie in
[-1, 1].

Channels (x, y, z) are in IMAGE axes: x to the right, y DOWN, z towards the viewer. A face looking straight at
the camera therefore has z > 0 over its front, x > 0 on its side facing the image's right edge and y > 0 on
surfaces facing the bottom of the image (under the nose, the chin).

space:
* "camera" (default): normals of the posed mesh R·S. The map then shades like a lit render: a head turned to
  the side shows normals turned with it, so G_M sees the head's rotation inside the silhouette, not only the
  silhouette's outline. This is our reading of "normal maps calculated from the 3D face models by Eq. (2)".
* "model": normals of the unrotated mesh S (only the silhouette and visibility follow the pose). This is what
  the authors' released code renders: per-triangle normals of the unrotated mesh, i.e. space="model" with
  shading="flat".

shading: "smooth" interpolates area-weighted vertex normals and renormalises them; "flat" gives each pixel its
visible triangle's normal.

Normals point outwards: the morphable model's triangles are counter-clockwise seen from outside (SFM; checked
at construction on the mean shape, whose front faces +z in model space, and flipped for a model wound the
other way).
"""

from __future__ import annotations

import numpy as np
import torch

from structvid.errors import UserError
from structvid.structure.base import Structure
from structvid.structure.faces.morphable import FaceParams, MorphableModel, project, rotation_matrix
from structvid.structure.faces.raster import (face_normals, face_normals_t, fragments, interpolate_fragments,
                                              unit_t, vertex_normals_t)

SPACES = ("camera", "model")
SHADINGS = ("smooth", "flat")


class FaceNormals(Structure):
    """3-channel normal maps of a morphable model's face, one per row of packed face parameters (§4)."""

    name = "face_normals"

    def __init__(self, model: MorphableModel, space: str = "camera", shading: str = "smooth",
                 face_model: str = "") -> None:
        """`face_model`: the spec `model` was loaded from (morphable.load_model), kept for `config()`."""
        if space not in SPACES:
            raise ValueError(f"space must be one of {SPACES}, got {space!r}")
        if shading not in SHADINGS:
            raise ValueError(f"shading must be one of {SHADINGS}, got {shading!r}")
        self.model = model
        self.space = space
        self.shading = shading
        self.face_model = str(face_model)
        self._tris = torch.from_numpy(np.array(model.triangles, dtype=np.int64))  # a writable, contiguous copy
        # Outwards = the mean face's normals summed point to +z (the model's front faces the viewer).
        total_z = face_normals(model.mean, model.triangles, normalize=False)[:, 2].sum()
        self._sign = 1.0 if total_z >= 0 else -1.0

    @property
    def channels(self) -> int:
        return 3

    def render(self, params: torch.Tensor, height: int, width: int) -> torch.Tensor:
        """(N, num_params) or (num_params,) packed FaceParams in output pixels -> (N, 3, H, W) or (3, H, W) maps.

        Output has params' dtype when floating (float32 otherwise) and params' device; computed on the CPU in
        float32."""
        p = torch.as_tensor(params)
        single = p.dim() == 1
        if single:
            p = p.unsqueeze(0)
        if p.dim() != 2 or p.shape[1] != self.model.num_params:
            raise ValueError(f"expected face parameters of shape (N, {self.model.num_params}), got {tuple(p.shape)}")
        out_dtype = p.dtype if p.is_floating_point() else torch.float32
        maps = self._render(p.detach().to("cpu", torch.float32).numpy(), height, width)
        maps = maps.to(device=p.device, dtype=out_dtype)
        return maps[0] if single else maps

    def render_numpy(self, params: np.ndarray, height: int, width: int) -> np.ndarray:
        """numpy convenience: (N, P) or (P,) -> float32 (N, 3, H, W) or (3, H, W)."""
        return self.render(torch.from_numpy(np.ascontiguousarray(params, dtype=np.float32)), height, width).numpy()

    def _render(self, params: np.ndarray, height: int, width: int) -> torch.Tensor:
        """(N, P) float32 -> (N, 3, H, W) float32 CPU tensor."""
        m, tris = self.model, self._tris
        fp = FaceParams.unpack(params, m.n_id, m.n_exp)
        shape = m.shape(fp.alpha, fp.beta)  # (N, V, 3) Eq. 1
        rot = rotation_matrix(fp.rotvec)  # (N, 3, 3)
        verts = project(shape, rot, fp.scale, fp.translation)  # (N, V, 3) Eq. 2, as FaceParams.vertices
        frags = fragments(verts, tris, height, width)
        s = torch.from_numpy(np.ascontiguousarray(shape, np.float32))
        # Normals of the unrotated mesh S; those of the posed mesh R·S are the same vectors rotated by R.
        nrm = vertex_normals_t(s, tris) if self.shading == "smooth" else unit_t(face_normals_t(s, tris))
        if self.space == "camera":
            nrm = torch.einsum("nij,nvj->nvi", torch.from_numpy(rot.astype(np.float32)), nrm)
        # model/camera axes (y up) -> image axes (y down), and the outwards sign of the model's winding
        nrm = nrm * (self._sign * torch.tensor([1.0, -1.0, 1.0]))
        n, hw = len(params), height * width
        mesh = frags.pixel // hw
        if self.shading == "smooth":
            at_pixels = unit_t(interpolate_fragments(frags, nrm, tris))  # (P, 3)
        else:
            at_pixels = nrm.reshape(-1, 3)[mesh * len(tris) + frags.tri]  # (P, 3)
        out = torch.zeros((n, 3, hw), dtype=torch.float32)
        out[mesh, :, frags.pixel - mesh * hw] = at_pixels
        return out.reshape(n, 3, height, width)

    # ---- the rest of the Structure interface: parameters' shape, crops and framing (§7.1)

    def config(self):
        from structvid.config import StructureConfig

        return StructureConfig(kind="face_normals", face_model=self.face_model, normal_space=self.space,
                               shading=self.shading)

    def check(self, params, source: str | None = None) -> np.ndarray:
        """(T, num_params) finite packed FaceParams as float32."""
        p = np.asarray(params, dtype=np.float32)
        if p.ndim != 2 or p.shape[1] != self.model.num_params:
            raise UserError(f"face parameters must be (T, {self.model.num_params}) packed FaceParams "
                            f"(rotation 3, scale 1, translation 2, alpha {self.model.n_id}, beta "
                            f"{self.model.n_exp}), got shape {p.shape}", source)
        if not np.isfinite(p).all():
            raise UserError("face parameters contain NaN or infinite values", source)
        return p

    def transform(self, params: np.ndarray, affine: np.ndarray) -> np.ndarray:
        """Crops and resizes move the face in the image: f and t₂d follow the affine (FaceParams.transformed)."""
        m = self.model
        return FaceParams.unpack(params, m.n_id, m.n_exp).transformed(affine).pack()

    def box(self, params: np.ndarray, margin: float) -> tuple[float, float, float]:
        """The square (cx, cy, side) around the projected mesh of every frame (what the normal map covers),
        enlarged by `margin` on each side."""
        m = self.model
        params = np.asarray(params, np.float32).reshape(-1, m.num_params)
        lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
        for i in range(0, len(params), 256):  # blocks: memory flat in the number of frames (~0.1 MB a frame)
            verts = FaceParams.unpack(params[i : i + 256], m.n_id, m.n_exp).vertices(m)  # (n, V, 3)
            xy = verts[..., :2].reshape(-1, 2)
            xy = xy[np.isfinite(xy).all(1)]
            if len(xy):
                lo, hi = np.minimum(lo, xy.min(0)), np.maximum(hi, xy.max(0))
        if not np.isfinite(lo).all():
            raise UserError("no finite face vertices to frame")
        (x1, y1), (x2, y2) = lo, hi
        side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
        return float(x1 + x2) / 2, float(y1 + y2) / 2, max(float(side), 1.0)

    def to_rgb(self, maps: np.ndarray | torch.Tensor) -> np.ndarray:
        """(T, 3, H, W) normal maps -> (T, H, W, 3) uint8: the usual (n + 1) / 2 colours, background black."""
        if isinstance(maps, torch.Tensor):
            maps = maps.detach().float().cpu().numpy()
        maps = np.nan_to_num(np.asarray(maps, np.float32))
        if maps.ndim != 4 or maps.shape[1] != 3:
            raise ValueError(f"expected (T, 3, H, W) normal maps, got shape {maps.shape}")
        rgb = np.clip((maps + 1) * 127.5, 0, 255).round().astype(np.uint8)
        rgb[np.repeat((maps == 0).all(axis=1, keepdims=True), 3, axis=1)] = 0
        return np.ascontiguousarray(rgb.transpose(0, 2, 3, 1))

    def __repr__(self) -> str:
        return (f"FaceNormals(model={self.model.num_vertices} vertices, space={self.space!r}, "
                f"shading={self.shading!r})")
