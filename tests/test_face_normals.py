"""The face renderer of §4: z-buffered rasteriser (raster.py) and normal maps (normals.py)."""

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from structvid.structure.base import Structure
from structvid.structure.faces.morphable import FaceParams, MorphableModel
from structvid.structure.faces.normals import FaceNormals
from structvid.structure.faces.raster import face_normals, interpolate, rasterize, vertex_normals

SFM = Path(__file__).parents[1].parent / "shared" / "data" / "sfm"

# A unit square in model space (y up, z towards the viewer), counter-clockwise seen from +z.
SQUARE_XY = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float32)
SQUARE_TRIS = np.array([[0, 1, 2], [0, 2, 3]])


def plane_model(slope=(0.0, 0.0), tris=SQUARE_TRIS) -> MorphableModel:
    """A 'face' that is the tilted square z = a·x + b·y (one dummy identity and expression component)."""
    z = SQUARE_XY @ np.asarray(slope, np.float32)
    mean = np.column_stack([SQUARE_XY, z]).astype(np.float32)
    return MorphableModel(mean, np.zeros((12, 1), np.float32), np.zeros((12, 1), np.float32),
                          np.asarray(tris, np.int64), np.full(68, -1, np.int64))


def plane_params(rotvec=(0, 0, 0), scale=5.1, t=(10.3, 8.3)) -> np.ndarray:
    return FaceParams(np.array(rotvec, np.float32), np.float32(scale), np.array(t, np.float32),
                      np.zeros(1, np.float32), np.zeros(1, np.float32)).pack()


def to_image_axes(n) -> np.ndarray:
    n = np.asarray(n, np.float64)
    return n * [1, -1, 1] / np.linalg.norm(n)


# ------------------------------------------------------------------------------------------------ raster


def test_keeps_the_nearer_of_two_overlapping_triangles_in_either_order():
    far = [[2, 2, 1], [14, 2, 1], [2, 14, 1]]
    near = [[4, 4, 5], [16, 4, 5], [4, 16, 5]]
    verts = np.array(far + near, np.float32)
    for tris, near_index in (([[0, 1, 2], [3, 4, 5]], 1), ([[3, 4, 5], [0, 1, 2]], 0)):
        r = rasterize(verts, np.array(tris), 18, 18)
        assert r.tri.shape == (18, 18) and r.tri.dtype == np.int64 and r.bary.dtype == np.float32
        assert r.tri[6, 6] == near_index  # both cover it: the nearer (depth 5) wins
        assert r.tri[3, 3] == 1 - near_index  # only the far one
        assert r.tri[15, 15] == -1 and r.tri[0, 0] == -1


def test_depth_test_is_per_pixel_for_crossing_triangles():
    # depth = x on the first triangle, 5 on the second (same footprint): the nearer switches at x = 5
    verts = np.array([[0, 0, 0], [20, 0, 20], [0, 20, 0], [0, 0, 5], [20, 0, 5], [0, 20, 5]], np.float32)
    for tris, ramp in (([[0, 1, 2], [3, 4, 5]], 0), ([[3, 4, 5], [0, 1, 2]], 1)):
        r = rasterize(verts, np.array(tris), 20, 20)
        assert r.tri[2, 3] == 1 - ramp and r.tri[2, 8] == ramp


def test_barycentrics_interpolate_depth_exactly():
    verts = np.array([[1.2, 0.7, 3.0], [17.9, 2.1, -1.0], [5.3, 14.6, 8.0]], np.float32)
    r = rasterize(verts, np.array([[0, 1, 2]]), 16, 20)
    depth = interpolate(r, verts[:, 2:], np.array([[0, 1, 2]]))[..., 0]
    rows, cols = np.nonzero(r.mask)
    assert len(rows) > 50
    # the plane through the three corners, evaluated at the pixel centres (x = c, y = r)
    a, b, c = np.linalg.solve(np.column_stack([verts[:, :2], np.ones(3)]), verts[:, 2])
    np.testing.assert_allclose(depth[rows, cols], a * cols + b * rows + c, atol=1e-4)
    np.testing.assert_allclose(r.bary[r.mask].sum(-1), 1, atol=1e-6)
    assert (r.bary[r.mask] >= 0).all() and (r.bary[~r.mask] == 0).all() and (depth[~r.mask] == 0).all()


def test_shared_edges_leave_no_holes():
    # a jittered 9x9 grid whose unjittered vertices sit exactly on pixel centres: many centres lie on edges
    rng = np.random.default_rng(0)
    gy, gx = np.mgrid[0:9, 0:9]
    xy = np.column_stack([gx.ravel() * 3 + 2, gy.ravel() * 3 + 2]).astype(np.float32)
    inner = ((gx > 0) & (gx < 8) & (gy > 0) & (gy < 8)).ravel()
    xy[inner] += rng.uniform(-1, 1, (inner.sum(), 2)).astype(np.float32)
    verts = np.column_stack([xy, rng.uniform(0, 1, len(xy))]).astype(np.float32)
    q = (gy[:-1, :-1] * 9 + gx[:-1, :-1]).ravel()
    tris = np.concatenate([np.column_stack([q, q + 1, q + 10]), np.column_stack([q, q + 10, q + 9])])
    r = rasterize(verts, tris, 30, 30)
    expected = np.zeros((30, 30), bool)
    expected[2:27, 2:27] = True  # the grid spans x, y in [2, 26]
    np.testing.assert_array_equal(r.mask, expected)


def test_plane_inside_the_image_and_plane_covering_it():
    model_xyz = np.column_stack([SQUARE_XY, SQUARE_XY @ [0.3, 0.2]]).astype(np.float32)
    normal = vertex_normals(model_xyz, SQUARE_TRIS)
    np.testing.assert_allclose(normal, np.tile(np.array([-0.3, -0.2, 1]) / np.sqrt(1.13), (4, 1)), atol=1e-6)
    np.testing.assert_allclose(face_normals(model_xyz, SQUARE_TRIS), normal[:2], atol=1e-6)
    # image x = 5.1·x + 10.3 in [5.2, 15.4] -> columns 6..15; y = 8.3 - 5.1·y in [3.2, 13.4] -> rows 4..13
    img = np.column_stack([5.1 * SQUARE_XY[:, 0] + 10.3, 8.3 - 5.1 * SQUARE_XY[:, 1], 5.1 * model_xyz[:, 2]])
    r = rasterize(img, SQUARE_TRIS, 20, 24)
    expected = np.zeros((20, 24), bool)
    expected[4:14, 6:16] = True
    np.testing.assert_array_equal(r.mask, expected)
    const = interpolate(r, np.tile([[2.0, -3.0]], (4, 1)), SQUARE_TRIS)
    np.testing.assert_allclose(const[expected], np.tile([2.0, -3.0], (expected.sum(), 1)), atol=1e-5)
    assert (const[~expected] == 0).all()
    # two triangles much larger than the image: every pixel covered by one of them
    big = img.copy()
    big[:, :2] = (img[:, :2] - [10.3, 8.3]) * 40 + [10.3, 8.3]
    rb = rasterize(big, SQUARE_TRIS, 20, 24)
    assert rb.mask.all() and set(np.unique(rb.tri)) == {0, 1}


def test_back_faces_are_culled_on_request():
    ccw_on_screen = np.array([[2, 10, 0], [10, 10, 0], [2, 2, 0]], np.float32)  # y down: counter-clockwise seen
    for tri, front in (([0, 1, 2], True), ([0, 2, 1], False)):
        assert rasterize(ccw_on_screen, np.array([tri]), 12, 12).mask.any()
        assert rasterize(ccw_on_screen, np.array([tri]), 12, 12, cull_back=True).mask.any() == front


def test_skips_non_finite_and_offscreen_triangles_and_batches():
    verts = np.array([[[1, 1, 0], [6, 1, 0], [1, 6, 0], [np.nan, 0, 0]],
                      [[-50, -50, 0], [-40, -50, 0], [-50, -40, 0], [np.inf, 3, 0]]], np.float32)
    tris = np.array([[0, 1, 2], [0, 1, 3]])
    r = rasterize(verts, tris, 8, 8)
    assert r.tri.shape == (2, 8, 8) and r.bary.shape == (2, 8, 8, 3)
    assert set(np.unique(r.tri[0])) == {-1, 0} and (r.tri[1] == -1).all()
    np.testing.assert_array_equal(r.tri[0], rasterize(verts[0], tris, 8, 8).tri)
    # huge but finite coordinates are clipped, not overflowed: the wedge between y = x and y ~ x - 10
    huge = np.array([[-50, -50, 0], [-40, -50, 0], [1e30, 1e30, 0]], np.float32)
    wedge = rasterize(huge, np.array([[0, 1, 2]]), 8, 8).mask
    assert wedge[2, 6] and not wedge[6, 2]


# -------------------------------------------------------------------------------------------- FaceNormals


def test_face_normals_of_a_tilted_plane():
    fn = FaceNormals(plane_model((0.3, 0.2)))
    assert isinstance(fn, Structure) and fn.channels == 3 and fn.name == "face_normals"
    assert "camera" in repr(fn) and "smooth" in repr(fn)
    maps = fn.render(torch.from_numpy(plane_params()), 20, 24)
    assert maps.shape == (3, 20, 24) and maps.dtype == torch.float32
    mask = np.zeros((20, 24), bool)
    mask[4:14, 6:16] = True
    m = maps.numpy()
    # image axes: the plane rises to the right (faces -x) and rises upwards, i.e. faces down the image (+y)
    np.testing.assert_allclose(m[:, mask].T, np.tile(to_image_axes([-0.3, -0.2, 1]), (mask.sum(), 1)), atol=1e-5)
    assert (m[:, ~mask] == 0).all()
    flat = FaceNormals(plane_model((0.3, 0.2)), shading="flat").render(torch.from_numpy(plane_params()), 20, 24)
    np.testing.assert_allclose(flat.numpy(), m, atol=1e-5)


def test_camera_space_follows_rotation_model_space_does_not():
    rotvec = (0.1, 0.5, 0.0)
    n_model = np.array([-0.3, -0.2, 1.0])
    n_cam = Rotation.from_rotvec(rotvec).apply(n_model)
    for space, expected in (("camera", n_cam), ("model", n_model)):
        for shading in ("smooth", "flat"):
            m = FaceNormals(plane_model((0.3, 0.2)), space, shading).render_numpy(plane_params(rotvec), 20, 24)
            covered = (m != 0).any(0)
            assert covered.sum() > 50
            np.testing.assert_allclose(m[:, covered].T, np.tile(to_image_axes(expected), (covered.sum(), 1)),
                                       atol=1e-5)


def test_normals_point_outwards_whatever_the_winding():
    params = torch.from_numpy(plane_params())
    ccw = FaceNormals(plane_model((0.3, 0.2))).render(params, 20, 24)
    cw = FaceNormals(plane_model((0.3, 0.2), tris=SQUARE_TRIS[:, ::-1])).render(params, 20, 24)
    assert ccw[2].max() > 0.9
    torch.testing.assert_close(cw, ccw)


def test_render_dtype_device_shape_and_bad_input():
    fn = FaceNormals(plane_model())
    p = torch.from_numpy(np.stack([plane_params(), plane_params((0, 0, 0.3), 3.0, (5, 6))]))
    out = fn.render(p.double(), 16, 16)
    assert out.shape == (2, 3, 16, 16) and out.dtype == torch.float64 and out.device == p.device
    single = fn.render(p[1], 16, 16)
    torch.testing.assert_close(single, out[1].float())
    with pytest.raises(ValueError):
        fn.render(torch.zeros(2, 5), 16, 16)
    with pytest.raises(ValueError):
        FaceNormals(plane_model(), space="world")
    with pytest.raises(ValueError):
        FaceNormals(plane_model(), shading="gouraud")
    # non-finite parameters draw nothing rather than garbage
    bad = p.clone()
    bad[0, 3] = float("nan")
    assert (fn.render(bad, 16, 16)[0] == 0).all() and fn.render(bad, 16, 16)[1].any()
    for i, value in ((0, float("nan")), (4, 1e6)):  # nothing drawn at all: a NaN rotation, a face off the map
        alone = p[:1].clone()
        alone[0, i] = value
        for shading in ("smooth", "flat"):
            assert (FaceNormals(plane_model(), shading=shading).render(alone, 16, 16) == 0).all()


def test_structure_helpers():
    from structvid.errors import UserError

    fn = FaceNormals(plane_model(), "model", "flat", face_model="my/bfm.pkl")
    cfg = fn.config()
    assert (cfg.kind, cfg.face_model, cfg.normal_space, cfg.shading, cfg.channels) == (
        "face_normals", "my/bfm.pkl", "model", "flat", 3)
    p = np.stack([plane_params(), plane_params((0, 0.2, 0), 4.0, (12, 9))])
    np.testing.assert_array_equal(fn.check(p), p)
    with pytest.raises(UserError):
        fn.check(p[:, :5], "poses.npy")
    # a crop that halves and shifts moves the maps with it
    affine = np.array([[0.5, 0, 1.0], [0, 0.5, 2.0]])
    moved = fn.transform(p, affine)
    np.testing.assert_allclose(moved[:, 3], p[:, 3] * 0.5)
    np.testing.assert_allclose(moved[:, 4:6], p[:, 4:6] * 0.5 + [1.0, 2.0])
    cx, cy, side = fn.box(p[:1], 0.0)
    np.testing.assert_allclose([cx, cy, side], [10.3, 8.3, 10.2], atol=1e-4)  # the square's projection
    rgb = fn.to_rgb(fn.render_numpy(p, 20, 24))
    assert rgb.shape == (2, 20, 24, 3) and rgb.dtype == np.uint8 and (rgb[0, 0, 0] == 0).all()


# ----------------------------------------------------------------------------------------- SFM mean face


@pytest.fixture(scope="module")
def sfm():
    pytest.importorskip("eos", reason="eos-py (structvid[faces]) is not installed")
    if not SFM.is_dir():
        pytest.skip(f"Surrey Face Model not found at {SFM}")
    from structvid.structure.faces.morphable import load_sfm

    return load_sfm(SFM)


def sfm_params(model, rotvec=(0, 0, 0), scale=0.35) -> np.ndarray:
    """The SFM face centred on a 64x64 map: model x = 0 on the image's middle column."""
    t = np.array([31.5, 31.5 + scale * 11.3], np.float32)  # the mean face spans model y in [-83, 105]
    return FaceParams(np.array(rotvec, np.float32), np.float32(scale), t, np.zeros(model.n_id, np.float32),
                      np.zeros(model.n_exp, np.float32)).pack()


def test_sfm_mean_face(sfm):
    p = sfm_params(sfm)
    m = FaceNormals(sfm).render_numpy(p, 64, 64)
    verts = FaceParams.unpack(p, sfm.n_id, sfm.n_exp).vertices(sfm)
    covered = rasterize(verts, sfm.triangles, 64, 64).mask
    assert m.shape == (3, 64, 64) and m.min() >= -1 and m.max() <= 1
    np.testing.assert_array_equal((m != 0).any(0), covered)  # background exactly 0, face pixels unit normals
    np.testing.assert_allclose(np.linalg.norm(m[:, covered], axis=0), 1, atol=1e-5)
    # covered pixels ~ the projected area of the front-facing triangles (the mean face barely self-occludes)
    x, y = verts[sfm.triangles, 0], verts[sfm.triangles, 1]
    area2 = (x[:, 1] - x[:, 0]) * (y[:, 2] - y[:, 0]) - (y[:, 1] - y[:, 0]) * (x[:, 2] - x[:, 0])
    front = -area2[area2 < 0].sum() / 2
    assert abs(covered.sum() - front) < 0.03 * front
    # the nose tip faces the camera
    nose = verts[sfm.landmarks[30]]
    assert m[2, int(round(nose[1])), int(round(nose[0]))] > 0.9
    assert m[2, covered].mean() > 0.5
    # left-right symmetric: mirroring the map negates x and keeps y, z
    mirror = m[:, :, ::-1]
    both = covered & covered[:, ::-1]
    assert (covered != covered[:, ::-1]).sum() < 0.03 * covered.sum()
    assert np.abs(m[0] + mirror[0])[both].mean() < 0.03
    assert np.abs(m[1:] - mirror[1:])[:, both].mean() < 0.03
    # the right half of the face (image right) turns to the right
    assert m[0, both & (np.arange(64) > 40)].mean() > 0.3


def test_sfm_rotation_and_batch(sfm):
    rng = np.random.default_rng(0)
    p = np.stack([sfm_params(sfm, rng.normal(0, 0.3, 3)) for _ in range(4)])
    p[:, 6 : 6 + sfm.n_id] = rng.normal(0, 1, (4, sfm.n_id))
    p[:, 6 + sfm.n_id :] = rng.uniform(0, 1, (4, sfm.n_exp))
    for space in ("camera", "model"):
        fn = FaceNormals(sfm, space)
        batch = fn.render_numpy(p, 64, 64)
        for i in range(4):
            np.testing.assert_allclose(fn.render_numpy(p[i], 64, 64), batch[i], atol=1e-4)
    # a head turned by +0.5 rad about y shows its nose tip turned towards +x (image right) in camera space only
    turned = sfm_params(sfm, (0, 0.5, 0))
    nose = FaceParams.unpack(turned, sfm.n_id, sfm.n_exp).vertices(sfm)[sfm.landmarks[30]]
    rc = (int(round(nose[1])), int(round(nose[0])))
    cam = FaceNormals(sfm, "camera").render_numpy(turned, 64, 64)
    model = FaceNormals(sfm, "model").render_numpy(turned, 64, 64)
    assert cam[0][rc] > 0.3 and abs(model[0][rc]) < 0.3
    front = sfm_params(sfm)
    np.testing.assert_allclose(FaceNormals(sfm, "camera").render_numpy(front, 64, 64),
                               FaceNormals(sfm, "model").render_numpy(front, 64, 64), atol=1e-5)
