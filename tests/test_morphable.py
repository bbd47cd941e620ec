"""The morphable model (§4, Eq. 1-2), its loaders and the restricted unpickler."""

import pickle

import numpy as np
import pytest

from structvid.errors import UserError
from structvid.structure.faces.morphable import (FaceParams, MorphableModel, load_bfm, project, rotation_matrix,
                                                 safe_unpickle)


def tiny_model() -> MorphableModel:
    mean = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    ident = np.zeros((12, 2), np.float32)
    ident[0, 0] = 1  # α_0 moves vertex 0 along x
    ident[4, 1] = 2  # α_1 moves vertex 1 along y, twice as far
    expr = np.zeros((12, 1), np.float32)
    expr[8, 0] = 3  # β_0 moves vertex 2 along z
    tris = np.array([[0, 1, 2], [0, 2, 3]])
    return MorphableModel(mean, ident, expr, tris, np.full(68, -1))


def test_eq1_shapes_and_mean_at_zero_coefficients():
    m = tiny_model()
    np.testing.assert_array_equal(m.shape(np.zeros(2), np.zeros(1)), m.mean)  # S = S̄ at α = β = 0
    s = m.shape(np.array([0.5, 1.0]), np.array([2.0]))
    np.testing.assert_allclose(s[0], [0.5, 0, 0])
    np.testing.assert_allclose(s[1], [1, 2, 0])
    np.testing.assert_allclose(s[2], [0, 1, 6])
    assert m.shape(np.zeros((5, 2)), np.zeros((5, 1))).shape == (5, 4, 3) and m.num_params == 6 + 2 + 1


def test_eq1_on_the_surrey_face_model(sfm_model):
    m = sfm_model
    assert (m.num_vertices, m.n_id, m.n_exp) == (3448, 63, 6) and len(m.triangles) == 6736
    np.testing.assert_array_equal(m.shape(np.zeros(63), np.zeros(6)), m.mean)
    assert m.expression_names == ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
    assert (m.landmarks >= 0).sum() > 40  # the iBUG mapping (contour landmarks have none)


def test_eq2_scaled_orthographic_projection_on_a_constructed_mesh():
    v = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0], [0, 0, 10]], np.float64)
    # no rotation: x right, y up in the model -> rows grow downwards in the image; depth = f·z
    p = project(v, np.eye(3), 2.0, np.array([50.0, 40.0]))
    np.testing.assert_allclose(p, [[50, 40, 0], [70, 40, 0], [50, 20, 0], [50, 40, 20]])
    # 90° about y: the model's +z (towards the viewer) goes to image +x
    r = rotation_matrix(np.array([0, np.pi / 2, 0]))
    np.testing.assert_allclose(project(v, r, 1.0, np.zeros(2))[3], [10, 0, 0], atol=1e-9)
    np.testing.assert_allclose(project(v, r, 1.0, np.zeros(2))[1, 2], -10, atol=1e-9)


def test_face_params_pack_unpack_and_crop_transform():
    m = tiny_model()
    p = FaceParams(np.array([0.1, 0.2, 0.3]), np.float32(2.0), np.array([5.0, 6.0]), np.array([1.0, 2.0]),
                   np.array([0.5]))
    packed = p.pack()
    assert packed.shape == (9,)
    q = FaceParams.unpack(packed, 2, 1)
    np.testing.assert_allclose(q.vertices(m), p.vertices(m), atol=1e-5)
    affine = np.array([[0.5, 0, 3.0], [0, 0.5, -1.0]])  # a crop and resize
    moved = p.transformed(affine).vertices(m)
    expect = p.vertices(m)
    np.testing.assert_allclose(moved[:, :2], expect[:, :2] * 0.5 + [3.0, -1.0], atol=1e-5)
    with pytest.raises(ValueError):
        p.transformed(np.array([[1.0, 0.2, 0], [0, 1.0, 0]]))  # a shear is no crop


class Boom:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_code_and_reads_the_3ddfa_layout(tmp_path):
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"u": Boom()}))
    with pytest.raises(UserError, match="refusing to load posix.system|refusing to load os.system"):
        safe_unpickle(evil)
    # a tiny model in 3DDFA's bfm_noneck_v3.pkl layout: u (3V, 1), w_shp, w_exp, tri (3, F), keypoints (68·3)
    m = tiny_model()
    kp = np.zeros(68 * 3, np.int64)
    kp[0:3] = [3, 4, 5]  # landmark 1 = vertex 1 (x, y, z coordinate indices)
    bfm = {"u": m.mean.reshape(-1, 1), "w_shp": m.identity_basis, "w_exp": m.expression_basis,
           "tri": m.triangles.T.copy(), "keypoints": kp}
    path = tmp_path / "bfm_noneck_v3.pkl"
    path.write_bytes(pickle.dumps(bfm, protocol=2))
    loaded = load_bfm(path)
    np.testing.assert_array_equal(loaded.mean, m.mean)
    np.testing.assert_array_equal(loaded.triangles, m.triangles)
    assert loaded.landmarks[0] == 1 and loaded.n_id == 2 and loaded.n_exp == 1
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(UserError, match="junk.pkl"):
        load_bfm(tmp_path / "junk.pkl")
