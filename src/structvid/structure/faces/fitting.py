"""Fitting the morphable model of §4 (Eq. 1-2) to 68 iBUG landmarks: a face's identity α, expression β and pose.

The paper takes these parameters from 3DDFA fits of the BFM; structvid fits the Surrey Face Model with eos
(Huber et al., VISAPP 2016): `eos.fitting.fit_shape_and_pose` alternates a linear scaled-orthographic pose
estimate, a ridge fit of the identity coefficients, a non-negative least-squares fit of the expression
blendshapes and contour correspondences (front-facing contour and occluding edge).

eos' result is converted to structvid's convention (`morphable.project`: x = f·(R·S)_x + t_x,
y = t_y − f·(R·S)_y, pixels, y down): eos' 3x4 affine camera (`get_3x4_affine_camera_matrix`, OpenCV viewport,
y down) is [f·R₀, t_x; −f·R₁, t_y], so f, t₂d are read from it and R from eos' rotation quaternion (model →
camera, both y-up model spaces). `FaceParams.vertices(model)[model.landmarks]` then lands on the landmarks.

β are eos' blendshape weights, fitted by NNLS: never negative (no clipping needed), not bounded by 1.

Videos (`fit_video`): one α per video, a joint least-squares fit over frames spread through it (`solve_identity`);
then eos fits pose and β per frame with α fixed; then a causal One-Euro filter (Casiez et al., CHI 2012) on
pose and β.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from structvid.errors import UserError
from structvid.structure.faces.landmarks import OneEuroFilter
from structvid.structure.faces.morphable import FaceParams, load_sfm, require, sfm_folder

FRONTAL_YAW = 7.5  # degrees: eos uses both contours within ±this yaw (`select_contour`)
DETECTOR_VARIANCE = 3.0  # px²: eos' default landmark noise (detector sd √3) in its linear shape fit


class FaceFitter:
    """eos fitting of the SFM (+ its 6 expression blendshapes) read from `model_dir` (None: the download cache,
    the same folder `load_sfm` reads). `self.model` is the matching structvid MorphableModel."""

    def __init__(self, model_dir: str | Path | None = None, iterations: int = 5,
                 lambda_identity: float = 30.0) -> None:
        eos = require("eos")
        self.eos = eos
        folder = sfm_folder(model_dir)
        self.model = load_sfm(folder)
        self.iterations, self.lambda_identity = iterations, lambda_identity
        try:
            base = eos.morphablemodel.load_model(str(folder / "sfm_shape_3448.bin"))
            self._blendshapes = eos.morphablemodel.load_blendshapes(str(folder / "expression_blendshapes_3448.bin"))
            self._mapper = eos.core.LandmarkMapper(str(folder / "ibug_to_sfm.txt"))
            self._edges = eos.morphablemodel.load_edge_topology(str(folder / "sfm_3448_edge_topology.json"))
            self._contour_landmarks = eos.fitting.ContourLandmarks.load(str(folder / "ibug_to_sfm.txt"))
            self._model_contour = eos.fitting.ModelContour.load(str(folder / "sfm_model_contours.json"))
            contour = json.loads((folder / "sfm_model_contours.json").read_text())["model_contour"]
        except (RuntimeError, ValueError, KeyError, OSError) as e:
            raise UserError(f"eos cannot read the Surrey Face Model fitting files ({e})", folder) from None
        self._shape_model = base.get_shape_model()
        self._texcoords = base.get_texture_coordinates()
        self._eos_model = self._with_expressions(self._shape_model)
        self._fixed: tuple[bytes, object] | None = None  # (α bytes, eos model with that identity frozen)
        # front-facing contour for the joint identity solve: iBUG ids 1-8 (right), 10-17 (left) -> model vertices
        self._contours = {"right": (np.arange(0, 8), np.asarray(contour["right_contour"])),
                          "left": (np.arange(9, 17), np.asarray(contour["left_contour"]))}

    def _with_expressions(self, shape_model):
        eos = self.eos
        return eos.morphablemodel.MorphableModel(shape_model, self._blendshapes,
                                                 color_model=eos.morphablemodel.PcaModel(), vertex_definitions=None,
                                                 texture_coordinates=self._texcoords)

    def _identity_model(self, alpha: np.ndarray):
        """An eos model whose mean is S̄ + A_id·α and whose one PCA component is zero, so eos' identity fit can
        only return 0 and α stays fixed. (eos-py 1.5.0 crashes with num_shape_coefficients_to_fit=0, and
        `pca_coeffs` is only a starting value that the fit overwrites.)"""
        key = np.asarray(alpha, np.float32).tobytes()
        if self._fixed is None or self._fixed[0] != key:
            m = self.model
            mean = (m.mean.reshape(-1) + m.identity_basis @ np.asarray(alpha, np.float32)).astype(np.float32)
            pca = self.eos.morphablemodel.PcaModel(mean, np.zeros((len(mean), 1), np.float32),
                                                   np.ones(1, np.float32), self._shape_model.get_triangle_list())
            self._fixed = (key, self._with_expressions(pca))
        return self._fixed[1]

    # ------------------------------------------------------------------------------------------ one frame

    def fit_image(self, landmarks: np.ndarray, image_hw: tuple[int, int], alpha: np.ndarray | None = None,
                  iterations: int | None = None) -> FaceParams:
        """(68, 2) iBUG landmarks (pixels; NaN rows are left out) in an image of `image_hw` = (H, W) -> FaceParams.

        With `alpha` (n_id,), identity stays fixed and only pose and β are fitted."""
        lm = np.asarray(landmarks, np.float64)
        if lm.shape != (68, 2):
            raise ValueError(f"landmarks must be (68, 2), got {lm.shape}")
        h, w = int(image_hw[0]), int(image_hw[1])
        keep = np.flatnonzero(np.isfinite(lm).all(axis=1))
        if np.count_nonzero(self.model.landmarks[keep] >= 0) < 4:
            raise ValueError("at least 4 landmarks with a model vertex are needed to fit a pose")
        points = [self.eos.core.Landmark(str(i + 1), lm[i].astype(np.float32)) for i in keep]  # iBUG ids are 1-based
        eos_model = self._eos_model if alpha is None else self._identity_model(alpha)
        _, rp, shape_coeffs, beta = self.eos.fitting.fit_shape_and_pose(
            eos_model, points, self._mapper, w, h, self._edges, self._contour_landmarks, self._model_contour,
            num_iterations=iterations or self.iterations, lambda_identity=self.lambda_identity)
        a = np.asarray(alpha, np.float32) if alpha is not None else np.asarray(shape_coeffs, np.float32)
        return self._params(rp, w, h, a, np.asarray(beta, np.float32))

    def _params(self, rp, w: int, h: int, alpha: np.ndarray, beta: np.ndarray) -> FaceParams:
        """eos RenderingParameters -> FaceParams in structvid's projection convention (module docstring)."""
        from scipy.spatial.transform import Rotation

        cam = np.asarray(self.eos.fitting.get_3x4_affine_camera_matrix(rp, w, h), np.float64)  # (3, 4)
        f = np.linalg.norm(cam[0, :3])
        rotvec = Rotation.from_quat(np.asarray(rp.get_rotation(), np.float64)).as_rotvec()  # eos: [x, y, z, w]
        full = np.zeros(self.model.n_id, np.float32)
        full[: len(alpha)] = alpha
        return FaceParams(rotvec.astype(np.float32), np.float32(f), cam[:2, 3].astype(np.float32), full, beta)

    def reprojection_error(self, params: FaceParams, landmarks: np.ndarray) -> np.ndarray:
        """Pixel distance between each landmark with a fixed model vertex (model.landmarks >= 0, not the contour)
        and that vertex under `params`: (..., n) for (..., 68, 2) landmarks."""
        ok = np.flatnonzero(self.model.landmarks >= 0)
        v = params.vertices(self.model)[..., self.model.landmarks[ok], :2]
        return np.linalg.norm(v - np.asarray(landmarks)[..., ok, :], axis=-1)

    # ------------------------------------------------------------------------------------------ videos

    def _correspondences(self, p: FaceParams, lm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(landmark index, vertex) pairs: the fixed ones plus eos' front-facing contour rule (nearest projected
        model-contour vertex to each contour landmark of the side(s) facing the camera; the occluding-edge
        search of eos is left out)."""
        from scipy.spatial.transform import Rotation

        m = self.model
        ids = [np.flatnonzero(m.landmarks >= 0)]
        verts = [m.landmarks[ids[0]]]
        yaw = np.degrees(Rotation.from_rotvec(np.asarray(p.rotvec, np.float64)).as_euler("YXZ")[0])
        sides = (["right"] if yaw >= -FRONTAL_YAW else []) + (["left"] if yaw <= FRONTAL_YAW else [])
        v2d = p.vertices(m)[:, :2]  # (V, 2)
        for side in sides:
            lms, contour = self._contours[side]
            d = np.linalg.norm(v2d[contour][None] - lm[lms][:, None], axis=-1)  # (8, n_contour)
            ids.append(lms)
            verts.append(contour[d.argmin(axis=1)])
        ids, verts = np.concatenate(ids), np.concatenate(verts)
        ok = np.isfinite(lm[ids]).all(axis=1)
        return ids[ok], verts[ok]

    def solve_identity(self, frames: list[FaceParams], landmarks: np.ndarray, rounds: int = 2) -> list[FaceParams]:
        """Joint fit of one α to K frames: minimises, over α and every frame's pose and β >= 0,
        Σ_k |x_k − Pr_k(S̄ + A_id·α + A_exp·β_k)|² / σ² + K·λ·|α|² (σ² = DETECTOR_VARIANCE, λ = lambda_identity:
        eos' linear shape-fit cost, summed over frames with its multi-image prior weight K·λ) with
        scipy's least_squares, started from `frames` (eos fits). Correspondences: the fixed landmarks plus the
        front-facing contour (`_correspondences`), recomputed for each of `rounds` rounds.
        -> the K frames' FaceParams, all with the same α."""
        from scipy.optimize import least_squares
        from scipy.spatial.transform import Rotation

        m = self.model
        n_id, n_exp, k_frames = m.n_id, m.n_exp, len(frames)
        lms = np.asarray(landmarks, np.float64)
        mean = m.mean.astype(np.float64)
        ident = m.identity_basis.reshape(m.num_vertices, 3, n_id).astype(np.float64)  # (V, 3, n_id)
        expr = m.expression_basis.reshape(m.num_vertices, 3, n_exp).astype(np.float64)  # (V, 3, n_exp)
        per = 6 + n_exp  # one frame's unknowns: rotvec, f, t (2), β
        sd = np.sqrt(DETECTOR_VARIANCE)
        prior = np.sqrt(k_frames * self.lambda_identity)
        current = list(frames)
        lower = np.full(n_id + k_frames * per, -np.inf)
        lower[n_id:].reshape(k_frames, per)[:, 6:] = 0.0  # β >= 0, as eos' NNLS
        for _ in range(rounds):
            corr = [self._correspondences(p, lm) for p, lm in zip(current, lms)]
            frame = np.concatenate([np.full(len(ids), k) for k, (ids, _) in enumerate(corr)])  # (N,)
            verts = np.concatenate([v for _, v in corr])
            target = np.concatenate([lms[k, ids] for k, (ids, _) in enumerate(corr)])  # (N, 2)
            base, a_id, a_exp = mean[verts], ident[verts], expr[verts]

            def project(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
                """-> (N, 2) image points, (N, 3, 3) rotations, (N, 3) rotated shape points."""
                alpha, q = x[:n_id], x[n_id:].reshape(k_frames, per)  # q: (K, rotvec 3 | f | t 2 | β)
                shape = base + a_id @ alpha + np.einsum("nce,ne->nc", a_exp, q[frame, 6:])  # (N, 3) Eq. 1
                rot = Rotation.from_rotvec(q[:, :3]).as_matrix()[frame]  # (N, 3, 3)
                cam = np.einsum("nij,nj->ni", rot, shape)
                f, t = q[frame, 3], q[frame, 4:6]
                return np.stack([f * cam[:, 0] + t[:, 0], t[:, 1] - f * cam[:, 1]], axis=1), rot, cam  # Eq. 2

            def residuals(x: np.ndarray) -> np.ndarray:
                return np.concatenate([prior * x[:n_id], ((project(x)[0] - target) / sd).reshape(-1)])

            def jacobian(x: np.ndarray) -> np.ndarray:
                """Analytic in α, β, f, t; forward differences in the rotation vectors (frame k's residuals
                depend on its own rotation only, so all frames move at once)."""
                q = x[n_id:].reshape(k_frames, per)
                xy, rot, cam = project(x)
                f = q[frame, 3]
                n = len(frame)
                jac = np.zeros((n, 2, len(x)))
                # d(x, y)/d(shape point) = f·(R₀, −R₁): (N, 2, 3)
                d_shape = f[:, None, None] * rot[:, :2, :] * np.array([1.0, -1.0])[None, :, None]
                jac[:, :, :n_id] = d_shape @ a_id  # (N, 2, n_id)
                cols = n_id + frame * per  # first column of each residual's frame
                rows = np.arange(n)
                d_exp = d_shape @ a_exp  # (N, 2, n_exp)
                for e in range(n_exp):
                    jac[rows, :, cols + 6 + e] = d_exp[:, :, e]
                jac[rows, 0, cols + 3], jac[rows, 1, cols + 3] = cam[:, 0], -cam[:, 1]  # d/df
                jac[rows, 0, cols + 4] = 1.0  # d/dt
                jac[rows, 1, cols + 5] = 1.0
                for i in range(3):
                    h = 1e-6
                    xh = x.copy()
                    xh[n_id:].reshape(k_frames, per)[:, i] += h
                    jac[rows, :, cols + i] = (project(xh)[0] - xy) / h
                return np.concatenate([prior * np.eye(n_id, len(x)), jac.reshape(2 * n, -1) / sd])

            x0 = np.concatenate([current[0].alpha] + [np.concatenate(
                [p.rotvec, [p.scale], p.translation, p.beta]) for p in current]).astype(np.float64)
            x = least_squares(residuals, np.maximum(x0, lower), jac=jacobian, bounds=(lower, np.inf),
                              method="trf", x_scale="jac").x
            alpha, q = x[:n_id].astype(np.float32), x[n_id:].reshape(k_frames, per).astype(np.float32)
            current = [FaceParams(r[:3], r[3], r[4:6], alpha, r[6:]) for r in q]
        return current

    def fit_video(self, landmarks: np.ndarray, image_hw: tuple[int, int], identity_frames: int = 8,
                  found: np.ndarray | None = None, rate: float = 25.0, min_cutoff: float | None = 3.0,
                  beta: float = 10.0, iterations: int = 1,
                  progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """(T, 68, 2) landmarks (e.g. `track_landmarks`) -> (T, P) packed FaceParams with one α for the video.

        α: eos fits (`fit_image`) `identity_frames` frames spread evenly through the video (among `found` ones),
        then one α is fitted to all of them at once together with their poses and β (`solve_identity`). Every
        frame is then fitted by eos with α fixed (pose and β only, `iterations` alternations: eos' advice for
        tracking is 1-5; more did not lower the reprojection error on the shared videos), and pose and β are
        smoothed by a causal One-Euro filter (`min_cutoff` Hz, `beta`; None: no smoothing) — rotation vectors
        in radians, scale relative to its median, translation in face widths, β as is. The defaults are
        lighter than `track_landmarks`' because its landmarks come smoothed already. `progress(done, T)` is
        called every 16 frames of the per-frame fit and after the last (an exception it raises stops the fit)."""
        lm = np.asarray(landmarks, np.float64)
        if lm.ndim != 3 or lm.shape[1:] != (68, 2) or len(lm) == 0:
            raise ValueError(f"landmarks must be (T, 68, 2) with T > 0, got {lm.shape}")
        candidates = np.arange(len(lm)) if found is None else np.flatnonzero(np.asarray(found, bool))
        if len(candidates) == 0:
            candidates = np.arange(len(lm))
        pick = candidates[np.unique(np.round(np.linspace(0, len(candidates) - 1, max(1, identity_frames))).astype(int))]
        chosen = [self.fit_image(lm[k], image_hw) for k in pick]
        alpha = self.solve_identity(chosen, lm[pick])[0].alpha
        packed = []
        for k, x in enumerate(lm, 1):
            packed.append(self.fit_image(x, image_hw, alpha=alpha, iterations=iterations).pack())
            if progress is not None and (k % 16 == 0 or k == len(lm)):
                progress(k, len(lm))
        params = FaceParams.unpack(np.stack(packed), self.model.n_id, self.model.n_exp)
        if min_cutoff is not None:
            params = self._smooth(params, rate, min_cutoff, beta)
        return params.pack()

    def _smooth(self, p: FaceParams, rate: float, min_cutoff: float, beta: float) -> FaceParams:
        """Causal One-Euro filtering of pose and β, each in comparable units (see `fit_video`)."""
        width = float(np.ptp(self.model.mean[:, 0]))  # model units
        unit = float(np.median(p.scale)) * width  # the face's width in pixels
        signal = np.concatenate([p.rotvec, (p.scale / np.median(p.scale))[:, None], p.translation / unit, p.beta],
                                axis=1)  # (T, 3 + 1 + 2 + n_exp)
        f = OneEuroFilter(min_cutoff, beta, 1.0, rate)
        out = np.stack([f(s) for s in signal])
        return FaceParams(out[:, 0:3].astype(np.float32), (out[:, 3] * np.median(p.scale)).astype(np.float32),
                          (out[:, 4:6] * unit).astype(np.float32), p.alpha, out[:, 6:].astype(np.float32))
