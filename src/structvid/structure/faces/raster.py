"""A vectorised CPU triangle rasteriser with a z-buffer, for the face normal maps of §4 (Zhao et al., IJCV 2020:
"the conditional motion maps are the normal maps calculated from the 3D face models by Eq. (2)").

Conventions (those of `structvid.structure.faces.morphable`): vertices are [x, y, depth] in image pixels, x right,
y down, depth larger = nearer the camera; pixel (row r, column c) is centred at (x = c, y = r) and is covered by
a triangle when its centre lies inside it (a small barycentric tolerance closes cracks along shared edges).
Projection is orthographic (Eq. 2), so depth and attributes interpolate linearly in screen space.

How: every triangle gets the integer box of pixel centres it may cover; triangles are grouped by box size
(exact up to 4 pixels, then 1.5x-spaced classes per axis) so that each class enumerates its candidate pixels
with one broadcast; barycentric weights and depth are affine in the pixel position, so one matmul per class
evaluates the inside test and the depth of all its candidates; the z-buffer is a `scatter_reduce` (amax)
of depth per pixel (equal depths: the first candidate in (size class, triangle index) order). The only Python
loop is over the size classes (and memory-bounding chunks of them). Meshes may be batched: (..., V, 3)
vertices share one triangle list. `fragments` returns only the covered pixels (what a renderer needs);
`rasterize` spreads them into dense (H, W) arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Barycentric tolerance of the inside test: pixel centres on an edge shared by two triangles are claimed by
#: both (the z-buffer then picks one), so rounding cannot leave a crack between them.
EDGE_EPS = 1e-4
#: At most this many candidate pixels are evaluated at once (bounds memory for large triangles and batches).
_CHUNK = 1 << 20


def _tensor(a: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A CPU tensor of `dtype` sharing memory with `a` where it can (copies read-only or reversed arrays)."""
    if isinstance(a, torch.Tensor):
        return a.detach().to("cpu", dtype)
    arr = np.ascontiguousarray(a, dtype={torch.float32: np.float32, torch.int64: np.int64}[dtype])
    return torch.from_numpy(arr if arr.flags.writeable else arr.copy())


def _size_classes(limit: int) -> torch.Tensor:
    """(limit + 1,) table: box side n -> the side of its class's candidate box: n itself up to 4 (most of a face
    mesh's triangles), then the next of 6, 8, 12, 16, 24, 32, ... (at most 1.5x larger than n)."""
    sides = [1, 2, 3, 4]
    while sides[-1] < limit:
        sides.append(sides[-1] * 3 // 2 if sides[-1] & (sides[-1] - 1) == 0 else sides[-1] * 4 // 3)
    table = torch.as_tensor(sides)
    return table[torch.searchsorted(table, torch.arange(limit + 1))]


@dataclass
class Fragments:
    """The visible surface of N rasterised meshes as a list of covered pixels (what `rasterize` spreads into
    dense arrays; renderers that only touch covered pixels use it directly)."""

    pixel: torch.Tensor  # (P,) int64 flat index into (N, H, W), ascending
    tri: torch.Tensor  # (P,) int64 visible triangle
    bary: torch.Tensor  # (P, 3) float32 its corners' weights (>= 0, sum 1)
    shape: tuple[int, int, int]  # (N, H, W)


@dataclass
class Raster:
    """Per-pixel visible triangle and barycentric weights of one or a batch of rasterised meshes."""

    tri: np.ndarray  # (..., H, W) int64 triangle index, -1 for background
    bary: np.ndarray  # (..., H, W, 3) float32 weights of the triangle's 3 corners (>= 0, sum 1; 0 on background)

    @property
    def mask(self) -> np.ndarray:
        """(..., H, W) bool: pixels covered by the mesh."""
        return self.tri >= 0


def rasterize(vertices: np.ndarray, triangles: np.ndarray, height: int, width: int, cull_back: bool = False,
              eps: float = EDGE_EPS) -> Raster:
    """Rasterise (..., V, 3) [x, y, depth] image-space vertices with (F, 3) triangles into an H x W raster,
    keeping the nearest triangle (largest interpolated depth) at every pixel.

    Both windings are drawn unless `cull_back`: then only triangles that run counter-clockwise as the viewer
    sees the screen (y up; the front faces of a model whose triangles are counter-clockwise seen from outside)
    are kept. Triangles with a non-finite corner or zero area are skipped."""
    lead = tuple(np.shape(vertices)[:-2])
    frags = fragments(vertices, triangles, height, width, cull_back, eps)
    size = frags.shape[0] * height * width
    tri = torch.full((size,), -1, dtype=torch.int64)
    bary = torch.zeros((size, 3), dtype=torch.float32)
    tri[frags.pixel] = frags.tri
    bary[frags.pixel] = frags.bary
    return Raster(tri.reshape(*lead, height, width).numpy(), bary.reshape(*lead, height, width, 3).numpy())


def fragments(vertices: np.ndarray | torch.Tensor, triangles: np.ndarray | torch.Tensor, height: int, width: int,
              cull_back: bool = False, eps: float = EDGE_EPS) -> Fragments:
    """`rasterize` as a list of covered pixels; (..., V, 3) vertices count as N = prod(...) meshes."""
    if height < 1 or width < 1:
        raise ValueError(f"raster size must be positive, got {height}x{width}")
    verts, tris = _tensor(vertices, torch.float32), _tensor(triangles, torch.int64)
    if verts.dim() < 2 or verts.shape[-1] != 3 or tris.dim() != 2 or tris.shape[1] != 3:
        raise ValueError(f"expected (..., V, 3) vertices and (F, 3) triangles, got {tuple(verts.shape)} and "
                         f"{tuple(tris.shape)}")
    if len(tris) and (int(tris.min()) < 0 or int(tris.max()) >= verts.shape[-2]):
        raise ValueError(f"triangle vertex indices must lie in [0, {verts.shape[-2]})")
    n = int(np.prod(verts.shape[:-2], dtype=np.int64))
    empty = Fragments(torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                      torch.zeros((0, 3), dtype=torch.float32), (n, height, width))
    if not len(tris) or not n:
        return empty
    # component-major corners: (9, F*N) rows x0 x1 x2 y0 y1 y2 z0 z1 z2, column f*N + b (triangle f of mesh b),
    # so that every per-triangle quantity below is a contiguous vector
    comp = verts.reshape(n, -1, 3).permute(2, 1, 0)  # (3, V, N)
    corners = comp[:, tris.T].reshape(9, -1)  # (3 comps, 3 corners, F, N) -> (9, F*N)
    return _draw(corners, n, height, width, cull_back, eps) or empty


def _draw(corners: torch.Tensor, n: int, height: int, width: int, cull_back: bool,
          eps: float) -> Fragments | None:
    """The covered pixels of n meshes given as `corners` (9, F*N) (see fragments); None when there are none."""
    x, y = corners[0:3], corners[3:6]  # (3, T) each
    area2 = (x[1] - x[0]) * (y[2] - y[0]) - (y[1] - y[0]) * (x[2] - x[0])  # twice the signed area; < 0:
    # counter-clockwise as the viewer sees it (y up)
    valid = torch.isfinite(area2) & (area2.abs() > 1e-10) & torch.isfinite(corners[6:9]).all(dim=0)
    if cull_back:
        valid &= area2 < 0
    # Integer boxes of the pixel centres each triangle may cover, clipped to the image (in float first, so huge
    # coordinates cannot overflow the integer cast).
    tol = 1e-3
    box = torch.stack([torch.ceil(x.amin(0) - tol).clamp_(0, width), torch.ceil(y.amin(0) - tol).clamp_(0, height),
                       torch.floor(x.amax(0) + tol).clamp_(-1, width - 1),
                       torch.floor(y.amax(0) + tol).clamp_(-1, height - 1)])  # (4, T) c0 r0 c1 r1
    box[2:] -= box[:2] - 1  # -> c0 r0 bw bh
    valid &= (box[2] > 0) & (box[3] > 0)
    keep = valid.nonzero().squeeze(1)
    if not len(keep):
        return None
    # Group by box-size class: sort the kept triangles once, then every class is a contiguous slice.
    box = box.index_select(1, keep).to(torch.int64)
    sizes = _size_classes(max(height, width))
    key = sizes[box[2]] * 4096 + sizes[box[3]]
    key, perm = torch.sort(key, stable=True)
    order = keep[perm]  # (T',) triangle columns, grouped by class
    classes, counts = torch.unique_consecutive(key, return_counts=True)
    c0, r0, bw, bh = box.index_select(1, perm)
    x0, x1, x2, y0, y1, y2, z0, z1, z2 = corners.index_select(1, order)
    # Everything a candidate needs is affine in its offset (dx, dy) from the box origin (c0, r0): rows
    # [depth, w0, w1, w2, bx, by] of [value at origin, d/dx, d/dy]; bx, by >= 0 inside the triangle's own box
    # (needed only where the class box is larger, i.e. sides above 4). One matmul per chunk evaluates the rows
    # for all its candidates.
    e1x, e1y, e2x, e2y, dz1, dz2 = x1 - x0, y1 - y0, x2 - x0, y2 - y0, z1 - z0, z2 - z0
    inv = 1.0 / (e1x * e2y - e1y * e2x)
    ox, oy = c0 - x0, r0 - y0
    a1, b1, o1 = e2y * inv, -e2x * inv, (ox * e2y - oy * e2x) * inv
    a2, b2, o2 = -e1y * inv, e1x * inv, (oy * e1x - ox * e1y) * inv
    coef = torch.zeros((6, 3, len(order)), dtype=torch.float32)  # (row, [origin, d/dx, d/dy], T')
    coef[0, 0], coef[0, 1], coef[0, 2] = z0 + o1 * dz1 + o2 * dz2, a1 * dz1 + a2 * dz2, b1 * dz1 + b2 * dz2
    coef[1, 0], coef[1, 1], coef[1, 2] = 1 - o1 - o2, -(a1 + a2), -(b1 + b2)
    coef[2, 0], coef[2, 1], coef[2, 2] = o1, a1, b1
    coef[3, 0], coef[3, 1], coef[3, 2] = o2, a2, b2
    coef[4, 0], coef[4, 1] = bw - 0.5, -1.0
    coef[5, 0], coef[5, 2] = bh - 0.5, -1.0
    base = ((order % n) * height + r0) * width + c0  # (T',) flat index of each box's origin pixel

    pix_parts, depth_parts, row_parts, w1_parts, w2_parts = [], [], [], [], []
    start = 0
    for k, cnt in zip(classes.tolist(), counts.tolist()):
        gw, gh = k // 4096, k % 4096
        dy, dx = torch.meshgrid(torch.arange(gh), torch.arange(gw), indexing="ij")
        dx, dy = dx.reshape(-1), dy.reshape(-1)  # (K,) offsets inside the class box
        basis = torch.stack([torch.ones(len(dx)), dx.float(), dy.float()])  # (3, K)
        off = dy * width + dx  # (K,) flat pixel offsets
        nrow = 6 if max(gw, gh) > 4 else 4
        step = max(1, _CHUNK // (gw * gh))
        for s in range(start, start + cnt, step):
            e = min(s + step, start + cnt)  # columns s:e of the sorted triangles
            vals = torch.matmul(coef[:nrow, :, s:e].transpose(1, 2), basis)  # (nrow, G, K)
            inside = (vals[1:].amin(dim=0) >= -eps).reshape(-1).nonzero().squeeze(1)  # flat (G*K) ids
            gi = inside // len(dx)
            pix_parts.append(base[s:e][gi] + off[inside - gi * len(dx)])
            depth_parts.append(vals[0].reshape(-1)[inside])
            w1_parts.append(vals[2].reshape(-1)[inside])
            w2_parts.append(vals[3].reshape(-1)[inside])
            row_parts.append(gi + s)
        start += cnt

    pix = torch.cat(pix_parts)  # (C,) candidates, in sorted-triangle order
    depth = torch.cat(depth_parts)
    # z-buffer: the largest depth per pixel; among candidates reaching it, the first (deterministic: by size
    # class, then by triangle index)
    size = n * height * width
    zbuf = torch.full((size,), -torch.inf, dtype=depth.dtype)
    zbuf.scatter_reduce_(0, pix, depth, reduce="amax")
    win = (depth == zbuf[pix]).nonzero().squeeze(1)
    best = torch.full((size,), len(pix), dtype=torch.int64)
    best.scatter_reduce_(0, pix[win], win, reduce="amin")
    hit = (best < len(pix)).nonzero().squeeze(1)
    cand = best[hit]
    tri = order[torch.cat(row_parts)[cand]] // n
    # The winners' weights, clamped into the triangle (the inside test allowed -eps) and renormalised.
    w1, w2 = torch.cat(w1_parts)[cand].clamp_(min=0), torch.cat(w2_parts)[cand].clamp_(min=0)
    w = torch.stack([(1 - w1 - w2).clamp_(min=0), w1, w2], dim=1)  # (P, 3)
    return Fragments(hit, tri, w / w.sum(dim=1, keepdim=True), (n, height, width))


def interpolate(raster: Raster, attributes: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Per-vertex attributes (V, C), or (..., V, C) with the raster's leading dims, interpolated with the
    raster's barycentric weights -> (..., H, W, C) float32, 0 on background."""
    tri = _tensor(raster.tri, torch.int64)
    lead, (h, w) = tuple(tri.shape[:-2]), tuple(tri.shape[-2:])
    n = int(np.prod(lead, dtype=np.int64))
    attr = _tensor(attributes, torch.float32)
    attr = attr.broadcast_to((*lead, *attr.shape[-2:])).reshape(n, *attr.shape[-2:])  # (N, V, C)
    pixel = (tri.reshape(-1) >= 0).nonzero().squeeze(1)
    bary = _tensor(raster.bary, torch.float32).reshape(-1, 3)[pixel]
    frags = Fragments(pixel, tri.reshape(-1)[pixel], bary, (n, h, w))
    out = torch.zeros((n * h * w, attr.shape[-1]), dtype=torch.float32)
    out[pixel] = interpolate_fragments(frags, attr, _tensor(triangles, torch.int64))
    return out.reshape(*lead, h, w, -1).numpy()


def interpolate_fragments(frags: Fragments, attributes: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """(N, V, C) per-vertex attributes at the fragments' pixels -> (P, C)."""
    n, h, w = frags.shape
    nv = attributes.shape[-2]
    vid = triangles[frags.tri] + (frags.pixel // (h * w) * nv)[:, None]  # (P, 3) rows of the (N*V, C) table
    c = attributes.shape[-1]
    vals = attributes.reshape(n * nv, c).index_select(0, vid.reshape(-1)).reshape(len(vid), 3, c)  # (P, 3, C)
    return torch.einsum("pk,pkc->pc", frags.bary, vals)


def face_normals(vertices: np.ndarray, triangles: np.ndarray, normalize: bool = True) -> np.ndarray:
    """(..., V, 3) vertices -> (..., F, 3) triangle normals (v1 - v0) × (v2 - v0): outwards for triangles that are
    counter-clockwise seen from outside in a right-handed frame. Unit length if `normalize` (0 for degenerate
    triangles), else twice the triangle's area long."""
    n = face_normals_t(_tensor(vertices, torch.float32), _tensor(triangles, torch.int64))
    return (unit_t(n) if normalize else n).numpy()


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(..., V, 3) vertices -> (..., V, 3) unit area-weighted vertex normals (sum of the adjacent triangles'
    unnormalised normals; 0 for a vertex that no triangle uses)."""
    return vertex_normals_t(_tensor(vertices, torch.float32), _tensor(triangles, torch.int64)).numpy()


def face_normals_t(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """`face_normals` on tensors, unnormalised: (..., V, 3) -> (..., F, 3)."""
    p0, p1, p2 = (vertices.index_select(-2, triangles[:, k]) for k in range(3))
    return torch.linalg.cross(p1 - p0, p2 - p0, dim=-1)


def vertex_normals_t(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """`vertex_normals` on tensors: (..., V, 3) -> (..., V, 3) unit."""
    fn = face_normals_t(vertices, triangles)
    acc = torch.zeros_like(vertices)
    for k in range(3):
        acc.index_add_(-2, triangles[:, k], fn)
    return unit_t(acc)


def unit_t(v: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit length along the last axis; zero rows stay 0."""
    length = torch.linalg.vector_norm(v, dim=-1, keepdim=True)
    return torch.where(length > 0, v / length.clamp(min=1e-30), torch.zeros_like(v))
